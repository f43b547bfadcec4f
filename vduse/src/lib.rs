//! Userspace side of Linux VDUSE (vDPA Device in Userspace).
//!
//! - [`uapi`]: `repr(C)` mirrors of `include/uapi/linux/vduse.h` (Linux 7.3).
//! - [`Control`]: the control device `/dev/vduse/control`: API version and VDUSE feature
//!   negotiation, creating and destroying devices, with one typed [`Error`].
//! - [`DeviceFd`]: a device node, the fd a device server owns.
//! - [`DeviceConfig`]: what a device is created with, checked against the kernel's rules.
//! - [`host`]: the module, existing devices and their users, as sysfs and procfs show them.
//! - [`vdpa`]: the vdpa bus over generic netlink.
//! - [`privileges`]: serving as an unprivileged user once the device is attached.
//! - [`backend`] and [`runtime`]: what a device type implements, and the runtime that
//!   serves it (requests, IOTLB, virtqueue workers, vdpa attachment).
//!
//! [`vm_memory`] and [`virtio_queue`] are re-exported, so that backends use the versions
//! the runtime was built with.

pub mod backend;
#[cfg(feature = "config")]
pub mod config;
pub mod control;
pub mod device;
pub mod device_config;
pub mod error;
pub mod exit;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod host;
pub mod privileges;
pub mod runtime;
pub mod uapi;
pub mod vdpa;

pub use control::{Control, ControlFd, ControlIoctls, feature_name, feature_names};
pub use device::DeviceFd;
pub use device_config::{ConfigError, DeviceConfig, DeviceType};
pub use error::{Error, Result};

pub use virtio_queue;
pub use vm_memory;
