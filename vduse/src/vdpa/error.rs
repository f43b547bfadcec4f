//! [`VdpaError`]: what goes wrong on the vdpa bus, and the kernel's errnos mapped to it.

use rustix::io::Errno;

use super::codec::DecodeError;

/// What went wrong talking to the vdpa bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VdpaError {
    /// The kernel has no "vdpa" generic netlink family here.
    #[error(
        "the vdpa bus is not available: the kernel has no \"vdpa\" generic netlink family \
         (run `modprobe vdpa`, or `modprobe vduse`, which loads it; the family is also \
         invisible from a network namespace other than the initial one)"
    )]
    NotLoaded,
    /// The command needs CAP_NET_ADMIN (the kernel answered EPERM).
    #[error("{op}: permission denied (needs CAP_NET_ADMIN)")]
    PermissionDenied {
        /// What was attempted.
        op: String,
    },
    /// A vdpa device of that name is already on the bus (EEXIST).
    #[error("vdpa device {name:?} already exists on the vdpa bus")]
    AlreadyExists {
        /// The device name.
        name: String,
    },
    /// The management device refused the new device with EINVAL. For `vduse`
    /// that means no VDUSE device of that name exists, or not every one of its
    /// virtqueues was set up with `VDUSE_VQ_SETUP`.
    #[error(
        "management device {management_device:?} refused vdpa device {name:?} (EINVAL); \
         for vduse: no VDUSE device of that name exists, or not all of its virtqueues \
         were set up with VDUSE_VQ_SETUP"
    )]
    DeviceNotReady {
        /// The device name.
        name: String,
        /// The management device asked to create it.
        management_device: String,
    },
    /// No management device of that name (ENODEV from `VDPA_CMD_DEV_NEW`).
    #[error("no management device {0:?} on the vdpa bus (for \"vduse\": run `modprobe vduse`)")]
    NoSuchManagementDevice(String),
    /// No vdpa device of that name (ENODEV).
    #[error("no vdpa device {0:?} on the vdpa bus")]
    NoSuchDevice(String),
    /// The kernel refused a request with another error.
    #[error("{op}: {}", std::io::Error::from_raw_os_error(*errno))]
    Kernel {
        /// What was attempted.
        op: String,
        /// The positive errno the kernel answered.
        errno: i32,
    },
    /// A system call on the netlink socket failed.
    #[error("netlink socket: {what}: {source}")]
    Socket {
        /// The system call.
        what: &'static str,
        /// Its error (in the message, not as a `source`, so it prints once).
        source: std::io::Error,
    },
    /// The kernel's reply could not be decoded.
    #[error("malformed netlink reply: {0}")]
    Malformed(DecodeError),
    /// A vdpa bus driver asked for is not loaded.
    #[error("the vdpa bus driver {0} is not loaded: load it with `modprobe {0}`")]
    DriverNotLoaded(String),
    /// A sysfs file of the vdpa bus could not be written.
    #[error("{what}: {source}")]
    Sysfs {
        /// What was attempted.
        what: String,
        /// Its error (in the message, not as a `source`, so it prints once).
        source: std::io::Error,
    },
    /// The driver did not take the device.
    #[error("vdpa device {name:?} should be bound to {driver} but is bound to {bound}")]
    NotBound {
        /// The device.
        name: String,
        /// The driver asked for.
        driver: String,
        /// What it is bound to.
        bound: String,
    },
}

// By hand rather than `#[from]`, which would also make the error a `source` and print it
// twice under `{:#}`.
impl From<DecodeError> for VdpaError {
    fn from(error: DecodeError) -> Self {
        VdpaError::Malformed(error)
    }
}

/// Maps the errnos every vdpa command may get; `None` for the rest.
fn common_error(op: &str, errno: i32) -> Option<VdpaError> {
    match Errno::from_raw_os_error(errno) {
        Errno::PERM => Some(VdpaError::PermissionDenied { op: op.to_owned() }),
        // genetlink answers ENOENT for a family id that was unregistered
        // since `open` (the vdpa module was unloaded).
        Errno::NOENT => Some(VdpaError::NotLoaded),
        _ => None,
    }
}

pub(super) fn kernel_error(op: &str, errno: i32) -> VdpaError {
    common_error(op, errno).unwrap_or_else(|| VdpaError::Kernel {
        op: op.to_owned(),
        errno,
    })
}

#[cfg(test)]
mod tests {
    use super::super::device::virtio_device_name;
    use super::*;

    #[test]
    fn errors_read_well() {
        assert!(VdpaError::NotLoaded.to_string().contains("modprobe vdpa"));
        let e = VdpaError::PermissionDenied {
            op: "add vdpa device \"blk0\"".into(),
        };
        assert!(e.to_string().contains("CAP_NET_ADMIN"));
        let e = kernel_error("remove vdpa device \"x\"", libc::EOPNOTSUPP);
        assert!(matches!(e, VdpaError::Kernel { errno, .. } if errno == libc::EOPNOTSUPP));
        assert!(
            e.to_string().starts_with("remove vdpa device \"x\": "),
            "{e}"
        );
        assert!(matches!(
            kernel_error("x", libc::EPERM),
            VdpaError::PermissionDenied { .. }
        ));
        assert!(matches!(
            kernel_error("x", libc::ENOENT),
            VdpaError::NotLoaded
        ));
        assert_eq!(virtio_device_name(26), Some("fs"));
        assert_eq!(virtio_device_name(1000), None);
    }
}
