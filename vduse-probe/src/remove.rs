//! `vduse-probe remove NAME`: take a VDUSE device nobody serves (an orphan left by a server
//! that was killed, or one kept with `keep-device`) off the vdpa bus and destroy it.
//!
//! A device whose node a process holds open is refused: that process is its server, and
//! stopping it removes the device. Before detaching an orphan, its `msg_timeout` is cut to
//! one second: the driver resets the device on its way out and waits that long for an
//! answer that no server will give (the kernel's default is 30 s).

use std::path::Path;
use std::time::{Duration, Instant};

use vduse::host::{SYS_CLASS_VDUSE, device_node, node_holders, sysfs_devices};
use vduse::vdpa::{VdpaBus, VdpaError};
use vduse::{Control, Error};
use vduse_kit::exit::Exit;

/// Why a device was not removed, and the exit status that says so.
#[derive(Debug)]
pub struct Refused {
    /// What to tell the user.
    pub message: String,
    /// 1 (no such device, or served), 69, 77 or 70.
    pub exit: Exit,
}

fn refused(exit: Exit, message: impl Into<String>) -> Refused {
    Refused {
        message: message.into(),
        exit,
    }
}

fn from_error(error: Error) -> Refused {
    refused(Exit::for_error(&error), error.to_string())
}

fn from_vdpa(name: &str, error: VdpaError) -> Refused {
    match error {
        VdpaError::NoSuchDevice(_) => refused(
            Exit::Software,
            format!("{name} left the vdpa bus while being detached: try again"),
        ),
        other => from_error(Error::from(other)),
    }
}

/// Removes the orphaned device `name`; returns what was done, for the user.
pub fn remove(name: &str) -> Result<String, Refused> {
    if name.is_empty() || name.contains('/') || name == "control" {
        return Err(refused(
            Exit::Usage,
            format!("{name:?} is not a VDUSE device name"),
        ));
    }
    let Some(device) = sysfs_devices().into_iter().find(|d| d.name == name) else {
        return Err(refused(
            Exit::Unmet,
            format!("there is no VDUSE device named {name} (`vduse-probe get devices` lists them)"),
        ));
    };
    let holders = node_holders(&device_node(name));
    if let Some(holder) = holders.holders.first() {
        return Err(refused(
            Exit::Unmet,
            format!(
                "{name} is served by process {} ({}): stop that server (SIGTERM), which \
                 removes its device, instead",
                holder.pid, holder.comm
            ),
        ));
    }
    if !holders.complete {
        return Err(refused(
            Exit::NoPermission,
            format!(
                "cannot tell whether a process serves {name} (other users' processes cannot \
                 be looked at): run as root"
            ),
        ));
    }

    let mut done = Vec::new();
    if device.attached {
        // The driver's reset on detach would otherwise wait msg_timeout for nobody.
        // Kernels before 6.x without the attribute wait the default instead.
        let _ = std::fs::write(
            Path::new(SYS_CLASS_VDUSE).join(name).join("msg_timeout"),
            "1",
        );
        VdpaBus::open()
            .map_err(|error| from_error(Error::from(error)))?
            .remove_device(name)
            .map_err(|error| from_vdpa(name, error))?;
        done.push("detached it from the vdpa bus");
    }
    let mut control = Control::open().map_err(from_error)?;
    // The node may still be in use for a moment after the driver let go.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match control.destroy_device(name) {
            Ok(()) => break,
            Err(Error::DeviceBusy { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => return Err(from_error(error)),
        }
    }
    done.push("destroyed it");
    Ok(format!("{name}: {}", done.join(", ")))
}
