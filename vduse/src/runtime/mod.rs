//! The device runtime: serves a [`Backend`](crate::backend::Backend) as a VDUSE device.
//!
//! [`Server::start`] creates the device, answers the kernel's requests, maps the IOTLB as
//! guest memory, runs one worker thread per virtqueue and attaches the device to the vdpa
//! bus; [`Server::shutdown`] undoes all of it.
//!
//! # Threads, and what blocks where
//!
//! - The **request thread** (`requests.rs`) reads the kernel's requests from the device
//!   node and answers each one. Every request holds a kernel caller for up to `msg_timeout`
//!   seconds and a timeout breaks the device for good, so this thread never waits for
//!   backend I/O: a request that must wait for workers to go quiet (reset, `SUSPEND`, a
//!   queue made not ready) is answered later, when the last worker concerned has stopped
//!   and woken it through an eventfd.
//! - One **queue worker** per ready virtqueue (`worker.rs`) sleeps in poll(2) on its kick
//!   eventfd and a stop eventfd. Each time it wakes it drains the queue (`drain.rs`): the
//!   requests its [`QueueEngine`](crate::backend::QueueEngine) finished go into the used
//!   ring, every available chain goes to the engine, and the driver gets one interrupt per
//!   batch when its notification suppression allows it. The engine is the backend's own,
//!   which may keep up to the queue's size of requests in flight (the worker then also
//!   polls its completion fd, and before it ends takes no new chain and waits for what is
//!   in flight; each request holds its memory snapshot meanwhile), or the built-in
//!   [`Synchronous`](crate::backend::Synchronous) one, which serves each request in
//!   [`Backend::handle`](crate::backend::Backend::handle) on the worker thread. Backend
//!   I/O blocks here only.
//! - The **caller's thread** attaches and detaches the device over netlink
//!   ([`crate::vdpa::VdpaBus`]): with a virtio driver bound, the kernel runs the driver's
//!   probe or remove inside that call, and they send requests the request thread answers.
//!
//! A server that finds its device left by one that ended takes it over (`recovery.rs`):
//! it checks the device and the in-flight log against its own configuration, starts the
//! device as at `DRIVER_OK`, and each queue runs again what the ended server had in flight.
//!
//! The IOTLB (`iotlb.rs`) is mapped when the driver sets `DRIVER_OK`, remapped after
//! `UPDATE_IOTLB`, and on a miss: with `virtio_vdpa` the kernel creates its bounce region
//! at the first DMA mapping, after `DRIVER_OK`, without telling the device.

mod device_io;
mod drain;
pub mod inflight;
mod iotlb;
mod recovery;
mod requests;
mod server;
mod worker;

#[cfg(test)]
mod fake_device;
#[cfg(test)]
mod test_doubles;

pub use server::{Server, ServerOptions, notify_ready, notify_status};

impl std::fmt::Debug for dyn crate::backend::Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("device_type", &self.device_type())
            .finish_non_exhaustive()
    }
}
