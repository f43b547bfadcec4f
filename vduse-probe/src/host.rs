//! Everything the probe asks of the host, behind one trait so that tests can stand in a fake
//! host that behaves like a given kernel.

use std::path::{Path, PathBuf};

use vduse::host::{Holders, ModuleState, SysfsDevice};
use vduse::vdpa::{ManagementDevice, VdpaBus, VdpaDevice};
use vduse::{Control, ControlIoctls};

/// A control device handle whose ioctls may be real or fake.
pub type DynControl = Control<Box<dyn ControlIoctls>>;

/// Owner and mode of a device node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Permission bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Owner name, if the passwd file has it.
    pub owner: Option<String>,
    /// Group name, if the group file has it.
    pub group: Option<String>,
}

/// What the vdpa bus answered over netlink.
#[derive(Debug, Clone, Default)]
pub struct VdpaView {
    /// Management devices.
    pub management_devices: Vec<ManagementDevice>,
    /// Devices on the bus.
    pub devices: Vec<VdpaDevice>,
}

/// The questions the probe asks the host.
pub trait Host {
    /// `uname -r`.
    fn kernel_release(&self) -> String;
    /// The `vduse` module's state.
    fn module_state(&self) -> ModuleState;
    /// `CONFIG_VDPA_USER` from the kernel config, if a config file is found.
    fn config_vdpa_user(&self) -> Option<Option<String>>;
    /// Whether a module is loaded.
    fn module_loaded(&self, name: &str) -> bool;
    /// The control device node, if present.
    fn control_node(&self) -> Option<NodeInfo>;
    /// Opens the control device and negotiates the API version.
    fn open_control(&self) -> vduse::Result<DynControl>;
    /// Asks the vdpa bus; `Err` carries the reason it could not be asked.
    fn vdpa(&self) -> Result<VdpaView, String>;
    /// The VDUSE devices in sysfs.
    fn sysfs_devices(&self) -> Vec<SysfsDevice>;
    /// The processes holding a device's node open.
    fn holders(&self, device: &str) -> Holders;
    /// Whether a process exists.
    fn process_exists(&self, pid: u32) -> bool;
    /// This process's id (used in throwaway device names).
    fn pid(&self) -> u32;
}

/// The real host.
#[derive(Debug, Default)]
pub struct RealHost {
    /// The control device path.
    pub control_path: PathBuf,
}

impl RealHost {
    /// The host as the kernel shows it, with the control device at its usual place.
    pub fn new() -> Self {
        Self {
            control_path: PathBuf::from(vduse::control::CONTROL_PATH),
        }
    }
}

impl Host for RealHost {
    fn kernel_release(&self) -> String {
        vduse::host::kernel_release()
    }

    fn module_state(&self) -> ModuleState {
        vduse::host::vduse_module_state()
    }

    fn config_vdpa_user(&self) -> Option<Option<String>> {
        vduse::host::kernel_config_vdpa_user(&self.kernel_release())
    }

    fn module_loaded(&self, name: &str) -> bool {
        vduse::host::module_loaded(name)
    }

    fn control_node(&self) -> Option<NodeInfo> {
        let stat = rustix::fs::stat(&self.control_path).ok()?;
        Some(NodeInfo {
            mode: stat.st_mode & 0o7777,
            uid: stat.st_uid,
            gid: stat.st_gid,
            owner: name_in(Path::new("/etc/passwd"), stat.st_uid),
            group: name_in(Path::new("/etc/group"), stat.st_gid),
        })
    }

    fn open_control(&self) -> vduse::Result<DynControl> {
        let fd = vduse::ControlFd::open(&self.control_path)?;
        Control::with_ioctls(Box::new(fd) as Box<dyn ControlIoctls>, &self.control_path)
    }

    fn vdpa(&self) -> Result<VdpaView, String> {
        let mut bus = VdpaBus::open().map_err(|e| e.to_string())?;
        Ok(VdpaView {
            management_devices: bus.management_devices().map_err(|e| e.to_string())?,
            devices: bus.devices().map_err(|e| e.to_string())?,
        })
    }

    fn sysfs_devices(&self) -> Vec<SysfsDevice> {
        vduse::host::sysfs_devices()
    }

    fn holders(&self, device: &str) -> Holders {
        vduse::host::node_holders(&vduse::host::device_node(device))
    }

    fn process_exists(&self, pid: u32) -> bool {
        Path::new("/proc").join(pid.to_string()).exists()
    }

    fn pid(&self) -> u32 {
        std::process::id()
    }
}

/// The name of `id` in a passwd- or group-format file.
fn name_in(file: &Path, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let found: u32 = fields.nth(1)?.parse().ok()?;
        (found == id).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_third_field() {
        let path = std::env::temp_dir().join(format!("probe-passwd-{}", std::process::id()));
        std::fs::write(&path, "root:x:0:0:root:/root:/bin/sh\nkvm:x:104:\n").unwrap();
        assert_eq!(name_in(&path, 0).as_deref(), Some("root"));
        assert_eq!(name_in(&path, 104).as_deref(), Some("kvm"));
        assert_eq!(name_in(&path, 5), None);
        std::fs::remove_file(&path).unwrap();
    }
}
