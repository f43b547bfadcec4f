//! What the host says about VDUSE outside the control device: the kernel module, the
//! existing devices in sysfs, the vdpa bus as sysfs shows it, and who holds device nodes.

use std::fs;
use std::path::{Path, PathBuf};

/// `/sys/class/vduse`: one entry per VDUSE device (and `control`).
pub const SYS_CLASS_VDUSE: &str = "/sys/class/vduse";
/// `/sys/bus/vdpa/devices`: devices attached to the vdpa bus.
pub const SYS_VDPA_DEVICES: &str = "/sys/bus/vdpa/devices";

/// Whether the running kernel has the `vduse` module, and whether it is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleState {
    /// Loaded (or built in).
    Loaded,
    /// Installed for the running kernel but not loaded.
    Available,
    /// Neither loaded nor installed for the running kernel.
    Absent,
}

impl ModuleState {
    /// `loaded`, `available` or `absent`.
    pub fn name(self) -> &'static str {
        match self {
            ModuleState::Loaded => "loaded",
            ModuleState::Available => "available",
            ModuleState::Absent => "absent",
        }
    }
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// Whether a kernel module is loaded (or built in with a sysfs presence).
pub fn module_loaded(name: &str) -> bool {
    Path::new("/sys/module").join(name).exists()
}

/// The state of the `vduse` module.
pub fn vduse_module_state() -> ModuleState {
    if module_loaded("vduse") || Path::new(SYS_CLASS_VDUSE).exists() {
        ModuleState::Loaded
    } else if module_installed(&kernel_release(), "vduse") {
        ModuleState::Available
    } else {
        ModuleState::Absent
    }
}

/// Whether `/lib/modules/RELEASE` holds the module `name` (`name.ko`, possibly compressed).
pub fn module_installed(release: &str, name: &str) -> bool {
    let prefix = format!("{name}.ko");
    ["/lib/modules", "/usr/lib/modules"]
        .iter()
        .map(|root| Path::new(root).join(release))
        .any(|dir| find_file(&dir, &|file| file.starts_with(&prefix), 8))
}

fn find_file(dir: &Path, matches: &dyn Fn(&str) -> bool, depth: usize) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let Ok(kind) = entry.file_type() else {
            return false;
        };
        if kind.is_dir() {
            depth > 0 && find_file(&entry.path(), matches, depth - 1)
        } else {
            matches(&name.to_string_lossy())
        }
    })
}

/// The value of `CONFIG_VDPA_USER` in the running kernel's config (`y`, `m`), `None` when
/// it is not set, or when no config file was found (then the outer `Option` is `None`).
pub fn kernel_config_vdpa_user(release: &str) -> Option<Option<String>> {
    let candidates = [
        format!("/boot/config-{release}"),
        format!("/lib/modules/{release}/config"),
    ];
    let text = candidates
        .iter()
        .find_map(|path| fs::read_to_string(path).ok())?;
    Some(config_value(&text, "CONFIG_VDPA_USER"))
}

/// The value of `key` in a kernel config text, `None` when it is unset.
pub fn config_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix('=')?;
        Some(value.trim().to_owned())
    })
}

/// An existing VDUSE device as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsDevice {
    /// Device name.
    pub name: String,
    /// `msg_timeout` in seconds.
    pub msg_timeout: Option<u64>,
    /// `bounce_size` in bytes.
    pub bounce_size: Option<u64>,
    /// Whether the device is on the vdpa bus.
    pub attached: bool,
    /// The driver bound on the vdpa bus (`virtio_vdpa`, `vhost_vdpa`).
    pub driver: Option<String>,
    /// The virtio device id, when a bound virtio device shows it in sysfs.
    pub virtio_id: Option<u32>,
}

/// The VDUSE devices in `/sys/class/vduse` (without `control`), sorted by name.
pub fn sysfs_devices() -> Vec<SysfsDevice> {
    sysfs_devices_in(Path::new(SYS_CLASS_VDUSE), Path::new(SYS_VDPA_DEVICES))
}

/// [`sysfs_devices`] under other roots, for tests.
pub fn sysfs_devices_in(class_dir: &Path, vdpa_dir: &Path) -> Vec<SysfsDevice> {
    let Ok(entries) = fs::read_dir(class_dir) else {
        return Vec::new();
    };
    let mut devices: Vec<SysfsDevice> = entries
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "control")
        .map(|name| {
            let dir = class_dir.join(&name);
            let vdpa = vdpa_dir.join(&name);
            let attached = vdpa.exists();
            let driver = fs::read_link(vdpa.join("driver"))
                .ok()
                .and_then(|link| link.file_name().map(|n| n.to_string_lossy().into_owned()));
            SysfsDevice {
                msg_timeout: read_number(&dir.join("msg_timeout")),
                bounce_size: read_number(&dir.join("bounce_size")),
                attached,
                driver,
                virtio_id: virtio_child_id(&vdpa),
                name,
            }
        })
        .collect();
    devices.sort_by(|a, b| a.name.cmp(&b.name));
    devices
}

fn read_number(path: &Path) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// The device id of the `virtioN` child that virtio_vdpa creates under a vdpa device.
fn virtio_child_id(vdpa: &Path) -> Option<u32> {
    fs::read_dir(vdpa).ok()?.flatten().find_map(|entry| {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with("virtio") {
            return None;
        }
        read_number(&entry.path().join("device")).map(|id| id as u32)
    })
}

/// A process holding a file open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// Command name (`/proc/PID/comm`).
    pub comm: String,
}

/// The processes that hold `node` open, found through `/proc/*/fd`. `complete` is false
/// when some processes' fds could not be read (other users' processes, without root).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holders {
    /// The processes found.
    pub holders: Vec<Holder>,
    /// Whether every process could be looked at.
    pub complete: bool,
}

/// Finds the processes holding the character device `node` open.
pub fn node_holders(node: &Path) -> Holders {
    let Ok(target) = rustix::fs::stat(node) else {
        return Holders {
            holders: Vec::new(),
            complete: true,
        };
    };
    let Ok(procs) = fs::read_dir("/proc") else {
        return Holders::default();
    };
    let mut found = Holders {
        holders: Vec::new(),
        complete: true,
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let fd_dir = entry.path().join("fd");
        let Ok(fds) = fs::read_dir(&fd_dir) else {
            // A process that exited meanwhile is fine; one we may not look at is not.
            if entry.path().exists() {
                found.complete = false;
            }
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| is_same_node(&fd.path(), node, &target));
        if holds {
            let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            found.holders.push(Holder {
                pid,
                comm: comm.trim().to_owned(),
            });
        }
    }
    found
}

fn is_same_node(fd_link: &Path, node: &Path, target: &rustix::fs::Stat) -> bool {
    let Ok(link) = fs::read_link(fd_link) else {
        return false;
    };
    if link == node {
        return true;
    }
    // Another mount namespace may name the node differently: compare device numbers.
    if !link.is_absolute() {
        return false;
    }
    rustix::fs::stat(fd_link)
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == target.st_rdev)
}

/// The node of a VDUSE device.
pub fn device_node(name: &str) -> PathBuf {
    Path::new("/dev/vduse").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_are_read_exactly() {
        let text = "# CONFIG_VDPA is not set\nCONFIG_VDPA_USER=m\nCONFIG_VDPA_USER_X=y\n";
        assert_eq!(config_value(text, "CONFIG_VDPA_USER").as_deref(), Some("m"));
        assert_eq!(config_value(text, "CONFIG_VDPA"), None);
    }

    #[test]
    fn sysfs_devices_are_read_from_the_class_and_bus_dirs() {
        let root = std::env::temp_dir().join(format!("vduse-sysfs-{}", std::process::id()));
        let class = root.join("class");
        let bus = root.join("bus");
        fs::create_dir_all(class.join("control")).unwrap();
        fs::create_dir_all(class.join("disk1")).unwrap();
        fs::write(class.join("disk1/msg_timeout"), "30\n").unwrap();
        fs::write(class.join("disk1/bounce_size"), "67108864\n").unwrap();
        fs::create_dir_all(class.join("disk0")).unwrap();
        fs::create_dir_all(bus.join("disk1/virtio3")).unwrap();
        fs::write(bus.join("disk1/virtio3/device"), "0x0002\n").unwrap();
        fs::create_dir_all(root.join("drivers/virtio_vdpa")).unwrap();
        std::os::unix::fs::symlink(root.join("drivers/virtio_vdpa"), bus.join("disk1/driver"))
            .unwrap();

        let devices = sysfs_devices_in(&class, &bus);
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[0].name, "disk0");
        assert!(!devices[0].attached);
        assert_eq!(devices[0].msg_timeout, None);
        assert_eq!(
            devices[1],
            SysfsDevice {
                name: "disk1".into(),
                msg_timeout: Some(30),
                bounce_size: Some(64 << 20),
                attached: true,
                driver: Some("virtio_vdpa".into()),
                virtio_id: Some(2),
            }
        );
    }

    #[test]
    fn holders_of_an_open_file_include_this_process() {
        let path = std::env::temp_dir().join(format!("vduse-holder-{}", std::process::id()));
        fs::write(&path, b"x").unwrap();
        let _file = fs::File::open(&path).unwrap();
        let found = node_holders(&path);
        fs::remove_file(&path).unwrap();
        assert!(found.holders.iter().any(|h| h.pid == std::process::id()));
    }
}
