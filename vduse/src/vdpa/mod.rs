//! The vdpa bus over generic netlink: list management devices and vdpa
//! devices, and attach (`VDPA_CMD_DEV_NEW`) or detach (`VDPA_CMD_DEV_DEL`) a
//! VDUSE device without the iproute2 `vdpa` tool.
//!
//! The kernel side is `drivers/vdpa/vdpa.c`: the generic netlink family
//! `"vdpa"` (version 1), registered when the `vdpa` module loads (`vduse`
//! depends on it, so loading `vduse` loads it too). [`VdpaBus`] owns one
//! `NETLINK_GENERIC` socket and speaks four of its commands:
//!
//! | method | command | kernel permission |
//! |---|---|---|
//! | [`VdpaBus::management_devices`] | `VDPA_CMD_MGMTDEV_GET`, dump | anyone |
//! | [`VdpaBus::devices`], [`VdpaBus::device`] | `VDPA_CMD_DEV_GET`, dump or single | anyone |
//! | [`VdpaBus::add_device`] | `VDPA_CMD_DEV_NEW` | `GENL_ADMIN_PERM`: CAP_NET_ADMIN |
//! | [`VdpaBus::remove_device`] | `VDPA_CMD_DEV_DEL` | `GENL_ADMIN_PERM`: CAP_NET_ADMIN |
//!
//! Kernel facts this module relies on (Linux 7.3, `vdpa.c`, `vduse_dev.c`):
//! - The family is registered with `netnsok = false`: from a network namespace
//!   other than the initial one it does not exist (the controller answers
//!   ENOENT exactly as when the module is not loaded). So [`VdpaError::NotLoaded`]
//!   also covers "this process is in another network namespace".
//! - The `vduse` management device has no bus, so it has no bus name; its
//!   classes (`id_table`) are block and net only, though an fs VDUSE device
//!   can be added through it all the same.
//! - `VDPA_CMD_DEV_NEW` on `vduse` answers **EINVAL** (not ENODEV) when no VDUSE
//!   device of that name exists *or* when one of its virtqueues never had
//!   `VDUSE_VQ_SETUP` (`vduse_dev_is_ready` checks every vq's `num_max`); that
//!   is [`VdpaError::DeviceNotReady`]. EEXIST when the device is already on the
//!   bus; ENODEV when the management device does not exist.
//! - `VDPA_CMD_DEV_DEL` answers ENODEV for an unknown name.
//! - The device dump leaves out vdpa devices that no management device created.
//! - Both dumps are allowed to any user; a dump datagram is at most 32 KiB, so
//!   a long device list spans several datagrams.
//!
//! Seen on Debian's 7.3.4 kernel under QEMU: `vduse` reports classes net and
//! block, `max_supported_vqs` 0 and `supported_features` 0; adding a VDUSE
//! device before (or with only some of) its `VDUSE_VQ_SETUP` calls gets EINVAL,
//! after them succeeds, a second add gets EEXIST; removing a name twice or an
//! unknown name gets ENODEV; add and remove as an unprivileged user get EPERM;
//! `VDUSE_DESTROY_DEV` on a device still on the bus gets EBUSY.
//!
//! A caution for device servers: with a virtio driver bound to the bus
//! (`virtio_vdpa`, `vhost_vdpa`), `VDPA_CMD_DEV_NEW` and `VDPA_CMD_DEV_DEL`
//! probe or remove that driver *inside* the netlink request, and the driver
//! talks to the VDUSE device (status changes, resets) through requests that the
//! device server must answer. Call [`VdpaBus::add_device`] and
//! [`VdpaBus::remove_device`] from a thread other than the one answering the
//! device's requests, or the call stalls until the device's `msg_timeout`
//! expires and the device is marked broken.

mod bus;
mod codec;
mod device;
mod error;
mod sysfs;

pub use bus::{VDUSE_MANAGEMENT_DEVICE, VdpaBus};
pub use codec::{DecodeError, VDPA_GENL_NAME, VDPA_GENL_VERSION};
pub use device::{ManagementDevice, VdpaDevice, virtio_device_name};
pub use error::VdpaError;
pub use sysfs::{VDPA_DRIVERS, bind_driver};
