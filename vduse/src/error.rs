//! The one error type of the control plane.

use std::path::PathBuf;

use rustix::io::Errno;

use crate::device_config::{ConfigError, DeviceType};

/// What can go wrong talking to `/dev/vduse/control`. Each message names the problem and,
/// where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The control device does not exist and the module is not loaded.
    #[error("{path} does not exist: the vduse module is not loaded; load it with `modprobe vduse`")]
    NotLoaded {
        /// The control device path.
        path: PathBuf,
    },
    /// This kernel has no VDUSE at all.
    #[error(
        "{path} does not exist and this kernel has no vduse module: VDUSE needs a kernel built \
         with CONFIG_VDPA_USER (Linux 5.15 or later; Debian from 6.12)"
    )]
    NoVduseInKernel {
        /// The control device path.
        path: PathBuf,
    },
    /// The module is loaded but the node is missing.
    #[error(
        "the vduse module is loaded but {path} does not exist: mount devtmpfs on /dev or let \
         udev create the node"
    )]
    NodeMissing {
        /// The control device path.
        path: PathBuf,
    },
    /// The caller may not open a node.
    #[error(
        "permission denied opening {path}: run as root, or get read-write access to the node \
         (for example a udev rule giving a group rw access)"
    )]
    PermissionDenied {
        /// The node.
        path: PathBuf,
    },
    /// Creating a net device without CAP_NET_ADMIN.
    #[error(
        "creating the net device {name:?} needs CAP_NET_ADMIN: run as root or grant the capability"
    )]
    NetNeedsCapNetAdmin {
        /// The device name.
        name: String,
    },
    /// The kernel refused an operation for lack of privilege.
    #[error("{op}: operation not permitted; it needs root (CAP_SYS_ADMIN)")]
    NotPermitted {
        /// What was attempted.
        op: String,
    },
    /// A device with this name exists.
    #[error(
        "a VDUSE device named {name:?} already exists: choose another name, or remove it \
         (it must be detached from the vdpa bus and its node closed first)"
    )]
    NameInUse {
        /// The device name.
        name: String,
    },
    /// A device with this name exists and another process has its node open.
    #[error(
        "a VDUSE device named {name:?} already exists and another process serves it: choose \
         another name, or stop that server first"
    )]
    DeviceServed {
        /// The device name.
        name: String,
    },
    /// A device with this name exists, left by a server that ended, and this server cannot
    /// take it over.
    #[error(
        "a VDUSE device named {name:?} already exists, left by a server that ended, and \
         cannot be taken over: {reason}; remove it with `vduse-probe remove {name}` (its \
         unanswered requests fail) or start a server with the same configuration"
    )]
    TakeOverRefused {
        /// The device name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The configuration breaks one of the kernel's rules.
    #[error("invalid configuration for device {name:?}: {source}")]
    InvalidConfig {
        /// The device name.
        name: String,
        /// The rule.
        #[source]
        source: ConfigError,
    },
    /// The kernel refused a configuration that meets every rule known in advance.
    #[error(
        "the kernel refused to create the {device_type} device {name:?} (EINVAL) although its \
         configuration meets every known rule: this kernel's VDUSE does not support {device_type} \
         devices{hint}"
    )]
    DeviceTypeRejected {
        /// The device name.
        name: String,
        /// The device type.
        device_type: DeviceType,
        /// A hint on which kernel is needed, with a leading separator, or empty.
        hint: &'static str,
    },
    /// An API version the kernel does not know.
    #[error(
        "VDUSE API version {requested} is not supported by this kernel (it supports up to {max})"
    )]
    UnsupportedApiVersion {
        /// The requested version.
        requested: u64,
        /// The kernel's maximum.
        max: u64,
    },
    /// VDUSE feature bits the kernel does not have.
    #[error(
        "VDUSE features {requested:#x} are not all supported by this kernel (it supports {supported:#x})"
    )]
    UnsupportedFeatures {
        /// The requested bits.
        requested: u64,
        /// The kernel's bits.
        supported: u64,
    },
    /// No device with this name exists.
    #[error("there is no VDUSE device named {name:?}")]
    NoSuchDevice {
        /// The device name.
        name: String,
    },
    /// The device cannot be destroyed now.
    #[error(
        "the VDUSE device {name:?} is in use: its node /dev/vduse/{name} is open or it is attached \
         to the vdpa bus; stop the process serving it or detach it (`vdpa dev del {name}`) first"
    )]
    DeviceBusy {
        /// The device name.
        name: String,
    },
    /// The vdpa bus refused to attach or detach the device, or could not be reached.
    // Transparent: VdpaError's messages already say "vdpa bus", and a cause both in the
    // message and as `source` would print twice under `{:#}`.
    #[error(transparent)]
    Vdpa(#[from] crate::vdpa::VdpaError),
    /// The kernel marked a device broken: a request went unanswered for `msg_timeout`
    /// seconds, or a queue could not be made ready. It stays broken until destroyed.
    #[error(
        "the kernel marked VDUSE device {name:?} broken (a request went unanswered for \
         msg_timeout seconds, see /sys/class/vduse/{name}/msg_timeout): it cannot recover; \
         stop the server, which removes the device, and start it again"
    )]
    DeviceBroken {
        /// The device name.
        name: String,
    },
    /// The backend describes a device the runtime cannot serve.
    #[error("the backend of device {name:?} cannot be served: {problem}")]
    Backend {
        /// The device name.
        name: String,
        /// What is wrong, and how to fix it.
        problem: String,
    },
    /// A system resource (a thread, an eventfd) could not be had.
    #[error("{op}: {source}")]
    Io {
        /// What was attempted.
        op: String,
        /// The error (in the message, not as a `source`, so it prints once).
        source: std::io::Error,
    },
    /// Any other refusal from the kernel.
    #[error("{op}: {errno}")]
    Kernel {
        /// What was attempted.
        op: String,
        /// The kernel's answer.
        errno: Errno,
    },
}

impl Error {
    /// True when the error is a lack of privilege (for exit codes).
    pub fn is_permission(&self) -> bool {
        matches!(
            self,
            Error::PermissionDenied { .. }
                | Error::NetNeedsCapNetAdmin { .. }
                | Error::NotPermitted { .. }
                | Error::Vdpa(crate::vdpa::VdpaError::PermissionDenied { .. })
        )
    }

    /// True when VDUSE, the vdpa bus or a vdpa driver is not available on this host (for
    /// exit codes).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::NotLoaded { .. }
                | Error::NoVduseInKernel { .. }
                | Error::NodeMissing { .. }
                | Error::Vdpa(
                    crate::vdpa::VdpaError::NotLoaded | crate::vdpa::VdpaError::DriverNotLoaded(_)
                )
        )
    }
}

/// Result of the control plane.
pub type Result<T, E = Error> = std::result::Result<T, E>;
