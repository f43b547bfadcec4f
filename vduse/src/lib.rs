//! The userspace side of Linux VDUSE (vDPA Device in Userspace).
//!
//! VDUSE lets a program be a virtio device: the program creates the device through
//! `/dev/vduse/control`, and the kernel forwards the device's control requests (status,
//! queue state, address mappings) to it on `/dev/vduse/NAME` and lets it map the memory
//! the virtqueues and buffers are in. Once the device is on the vdpa bus, the kernel's
//! own virtio drivers use it (`virtio_vdpa`: a disk `/dev/vdX`, a network interface, a
//! virtiofs tag) or a VM does (`vhost_vdpa`).
//!
//! This crate speaks that interface, and its [`runtime`] serves a device whose semantics
//! (what a request does) you write as a [`Backend`](backend::Backend).
//!
//! # The data flow
//!
//! ```text
//!  kernel: virtio driver, vduse module         this process: the runtime, your Backend
//!  ───────────────────────────────────         ───────────────────────────────────────
//!  requests on /dev/vduse/NAME  ────────────►  request thread: answers them, never
//!  (SET_STATUS, UPDATE_IOTLB, ...)              waiting for the backend's I/O
//!  IOTLB regions (rings, buffers)  ── mmap ─►  guest memory as vm-memory, by IOVA
//!  the driver kicks a queue  ─ kick eventfd ►  queue worker (one per queue) pops the
//!                                               descriptor chains (virtio-queue) and
//!                                               hands each to Backend::handle (or to
//!                                               the queue's own QueueEngine)
//!  the driver completes it  ◄─── used ring ──  the worker fills the used ring and
//!                           ◄── VQ_INJECT_IRQ  injects one interrupt per batch
//! ```
//!
//! The request thread reads the kernel's requests from the device node and answers each
//! within the kernel's timeout; when the driver sets `DRIVER_OK` it maps the device's IOTLB
//! (the memory the driver's buffers are in) as [`vm_memory`] guest memory and starts a
//! worker for each ready queue. A worker sleeps on its kick eventfd; when the driver kicks,
//! it pops each descriptor chain with [`virtio_queue`] and hands it to your backend, which
//! reads the request from the chain's device-readable buffers, writes the answer into its
//! device-writable buffers and returns how many bytes it wrote. The worker puts that in the
//! used ring and injects an interrupt, and the driver completes the request. Your code
//! describes the device and serves requests in
//! [`Backend::handle`](backend::Backend::handle), on the queue's worker thread; the
//! threads, the mappings, the rings and the vdpa bus are the runtime's.
//!
//! # Where to start
//!
//! The modules, in the order a new device meets them:
//!
//! 1. [`backend`]: the [`Backend`](backend::Backend) trait a device type implements
//!    (device type, features, config space, queues, request handler), and
//!    [`QueueEngine`](backend::QueueEngine) for backends that keep several requests in
//!    flight.
//! 2. [`runtime`]: [`Server::start`](runtime::Server::start) serves a backend: it creates
//!    the device with the newest API version and VDUSE features both sides know, runs the
//!    request thread and the queue workers, and attaches the device to the vdpa bus;
//!    [`ServerOptions`](runtime::ServerOptions) chooses the name, the driver, crash
//!    takeover ([`runtime::inflight`]) and more.
//! 3. [`Error`]: the one error type; it says whether VDUSE is missing or this user may not
//!    use it (the `vduse-kit` crate turns it into the tools' exit statuses).
//! 4. [`privileges`]: serving as an unprivileged user once the device is attached.
//! 5. [`vdpa`]: the vdpa bus over generic netlink (attach, detach, list), which the runtime
//!    uses so that no `vdpa` tool is needed.
//! 6. [`host`]: the module, existing devices and who holds their nodes, as sysfs and procfs
//!    show them.
//!
//! Below the runtime, for programs that drive VDUSE themselves:
//!
//! - [`Control`]: the control device `/dev/vduse/control`: API version and VDUSE feature
//!   negotiation, creating and destroying devices.
//! - [`DeviceConfig`]: what a device is created with, checked against the kernel's rules
//!   first so that a refusal says which rule was broken.
//! - [`DeviceFd`]: a device node, the fd a device server owns (queue setup, kick eventfds,
//!   interrupts, config space).
//! - [`uapi`]: `repr(C)` mirrors of `include/uapi/linux/vduse.h` (Linux 7.3: API versions
//!   0 and 1, the VDUSE features).
//!
//! [`vm_memory`] and [`virtio_queue`] are re-exported, so that backends use the versions
//! the runtime was built with.
//!
//! # Features
//!
//! - `fake`: the `fake` module: a control device that answers like each kernel of the
//!   support matrix, for tests of code built on [`Control`] without VDUSE.
//!
//! This crate has no command line, configuration file or exit status of its own: what the
//! workspace's tools share there (exit statuses, logging, signal flags, the YAML
//! configuration and its device keys) is the `vduse-kit` crate.
//!
//! # An example
//!
//! A complete device is `examples/ramdisk.rs` in this crate's sources: a virtio-blk RAM
//! disk in one file, and the template a new device starts from. Its documentation says
//! how to run it (`cargo run --example ramdisk -- --name ram0 --size-mib 64`, as root) and
//! what to change for another device type. Its shape:
//!
//! ```no_run
//! use std::io::Write;
//! use std::sync::Arc;
//! use std::sync::atomic::AtomicBool;
//!
//! use vduse::DeviceType;
//! use vduse::backend::{Backend, Chain, Memory};
//! use vduse::device_config::VIRTIO_BLK_CONFIG_SIZE;
//! use vduse::runtime::{Server, ServerOptions};
//!
//! /// A 1 MiB virtio-blk disk that answers every request "unsupported".
//! struct Refuser;
//!
//! impl Backend for Refuser {
//!     fn device_type(&self) -> DeviceType {
//!         DeviceType::Block
//!     }
//!     fn features(&self) -> u64 {
//!         0
//!     }
//!     fn config(&self) -> Vec<u8> {
//!         // struct virtio_blk_config: the capacity in 512-byte sectors comes first.
//!         let mut config = vec![0; VIRTIO_BLK_CONFIG_SIZE];
//!         config[..8].copy_from_slice(&2048u64.to_le_bytes());
//!         config
//!     }
//!     fn num_queues(&self) -> u16 {
//!         1
//!     }
//!     fn max_queue_size(&self) -> u16 {
//!         128
//!     }
//!     fn handle(&self, _queue: u16, memory: &Arc<Memory>, chain: Chain) -> u32 {
//!         // The request is in chain.clone().reader(memory); the answer goes to the
//!         // writer. A virtio-blk status is the last writable byte: 2, unsupported.
//!         let Ok(mut writer) = chain.writer(memory) else {
//!             return 0;
//!         };
//!         let Some(data_len) = writer.available_bytes().checked_sub(1) else {
//!             return 0;
//!         };
//!         let Ok(mut status) = writer.split_at(data_len) else {
//!             return 0;
//!         };
//!         // The used length: the bytes written, here the status byte alone.
//!         u32::from(status.write_all(&[2]).is_ok())
//!     }
//! }
//!
//! fn main() -> Result<(), vduse::Error> {
//!     // Creates /dev/vduse/disk0, serves it and attaches it: virtio_blk binds to it.
//!     let server = Server::start(Arc::new(Refuser), ServerOptions::new("disk0"))?;
//!     // A SIGTERM handler would set `stop`; SIGUSR1's would set the second flag, which
//!     // logs the queues' state. Then the server detaches and destroys the device.
//!     let stop = AtomicBool::new(false);
//!     server.run_until(&stop, &AtomicBool::new(false))
//! }
//! ```
//!
//! The tools of this workspace are larger devices on the same runtime: `vduse-blk` (files,
//! block devices and NBD exports, with io_uring), `vduse-net-null` (a network device) and
//! `vduse-fs` (virtio-fs).

#![warn(missing_docs)]

pub mod backend;
pub mod control;
pub mod device;
pub mod device_config;
pub mod error;
pub mod event;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod host;
pub mod mapped_file;
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
