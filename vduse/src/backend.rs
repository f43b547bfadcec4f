//! What a device type implements to be served by the device runtime.
//!
//! The runtime owns the kernel side (device node, control requests, IOTLB, virtqueues,
//! kick eventfds, interrupts); a backend owns the device semantics: its features, config
//! space, queues, and what a request does. Backends are tested without a kernel with
//! `virtio-queue`'s `MockSplitQueue` over a `GuestMemoryMmap`.
//!
//! # How a queue's requests are served
//!
//! Every queue's worker thread serves its requests through one interface, a
//! [`QueueEngine`]. A backend that serves one request at a time needs none: it implements
//! [`Backend::handle`], and the worker uses the built-in [`Synchronous`] engine, which calls
//! it and answers at once. A backend that keeps several requests of a queue in flight
//! (io_uring, a thread pool) gives each queue an engine of its own with
//! [`Backend::engine`]. Either way:
//!
//! - The worker pops each chain with an [`Arc`] of the memory snapshot it was read from
//!   ([`Chain`]) and hands both to [`QueueEngine::start`]. The engine either answers
//!   at once or keeps the request, **and the `Arc` with it, until the request has
//!   completed**: the buffers' mappings cannot be unmapped under an I/O in flight, even if
//!   the IOTLB is remapped meanwhile (a remap publishes a new snapshot; the old mappings
//!   go when the last `Arc` does).
//! - After a batch of starts the worker calls [`QueueEngine::submit`] once (one syscall
//!   for the batch).
//! - The worker polls [`QueueEngine::completion_fd`] next to its kick eventfd. When it is
//!   readable it calls [`QueueEngine::reap`], which returns what has finished in any order;
//!   the worker fills the used ring for the whole batch and injects at most one interrupt.
//!   The used ring is only ever touched by the worker.
//! - It keeps at most the queue's size in flight, and before it reports that it has stopped
//!   (reset, `SUSPEND`, queue made not ready) it stops taking chains and reaps until
//!   [`QueueEngine::in_flight`] is 0. The request thread never waits for that: it is woken
//!   when the worker ends.
//! - A server taking over the device of a server that was killed hands the requests that
//!   one had in flight to [`QueueEngine::start_again`] first, oldest first.

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use virtio_queue::DescriptorChain;
use vm_memory::GuestMemoryMmap;

use crate::DeviceType;

/// Guest memory as the runtime maps it: the device's IOTLB regions, addressed by IOVA.
pub type Memory = GuestMemoryMmap<()>;

/// A request's descriptor chain. It holds the memory snapshot it lives in, so it can be
/// kept past the worker's current batch and sent to another thread.
pub type Chain = DescriptorChain<Arc<Memory>>;

/// A finished request: the head of its chain and the `len` of its used element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    /// Head descriptor index.
    pub head: u16,
    /// Bytes written into the chain's device-writable buffers.
    pub len: u32,
}

/// Serves the requests of one queue; owned by that queue's worker thread. See the module
/// documentation for the contract.
pub trait QueueEngine: Send {
    /// Starts the request `chain` (whose buffers lie in `memory`). Returns `Some(len)` when
    /// it was served at once, `None` when it completes later through [`QueueEngine::reap`];
    /// then the engine keeps `memory` alive until that completion has been reaped.
    fn start(&mut self, memory: Arc<Memory>, chain: Chain) -> Option<u32>;

    /// Starts again a request a killed server had in flight, when taking its device over:
    /// it may have been carried out already. Engines whose requests cannot all run twice
    /// (a FUSE unlink, mkdir or rename) tell their executor; the default starts it anew.
    fn start_again(&mut self, memory: Arc<Memory>, chain: Chain) -> Option<u32> {
        self.start(memory, chain)
    }

    /// Hands the requests started since the last call to whatever executes them.
    fn submit(&mut self) {}

    /// Readable when completions may be waiting to be reaped; `None` for an engine that
    /// answers every request in [`QueueEngine::start`].
    fn completion_fd(&self) -> Option<BorrowedFd<'_>>;

    /// Moves the requests that have finished into `done`, without blocking. Resets the
    /// readiness of [`QueueEngine::completion_fd`].
    fn reap(&mut self, done: &mut Vec<Used>);

    /// Requests started and not yet reaped.
    fn in_flight(&self) -> usize;

    /// Called once when the worker stops: gives up the requests the engine holds without
    /// having done anything with them yet (a network device's receive buffers waiting for
    /// a frame), and returns how many. They must be the most recently started ones: the
    /// worker rewinds its available index over them, so the driver's buffers are not lost
    /// (a later server, or the same one after `SUSPEND`, takes them again). The default
    /// gives up nothing.
    fn release_unstarted(&mut self) -> u16 {
        0
    }
}

/// A virtio device type served over VDUSE.
pub trait Backend: Send + Sync + 'static {
    /// The virtio device type.
    fn device_type(&self) -> DeviceType;

    /// Virtio feature bits the device offers. The runtime adds `VIRTIO_F_VERSION_1`,
    /// `VIRTIO_F_ACCESS_PLATFORM` and the ring features it implements
    /// (`VIRTIO_RING_F_INDIRECT_DESC`, `VIRTIO_RING_F_EVENT_IDX`).
    fn features(&self) -> u64;

    /// The initial config space.
    fn config(&self) -> Vec<u8>;

    /// Number of virtqueues.
    fn num_queues(&self) -> u16;

    /// Largest size of each virtqueue.
    fn max_queue_size(&self) -> u16;

    /// The driver accepted these features (called when it sets DRIVER_OK, before any
    /// request).
    fn activate(&self, _negotiated_features: u64) {}

    /// Serves one request of queue `queue` and returns how many bytes it wrote into the
    /// chain's device-writable buffers (the `len` of the used element). `memory` is the
    /// snapshot the chain was read from (clone the `Arc` to keep it past the call). Must not
    /// panic on malformed chains: answer them with the device type's error status.
    fn handle(&self, queue: u16, memory: &Arc<Memory>, chain: Chain) -> u32;

    /// An engine that keeps several requests of queue `queue` (of `size` entries) in
    /// flight, or `None` (the default) to have every request served by
    /// [`Backend::handle`], one at a time (the [`Synchronous`] engine). Called on the queue's worker thread each time it
    /// starts; the engine is dropped when the worker stops, with nothing in flight.
    fn engine(self: Arc<Self>, _queue: u16, _size: u16) -> Option<Box<dyn QueueEngine>> {
        None
    }

    /// The device was reset by the driver: drop per-driver state.
    fn reset(&self) {}
}

/// The engine of a queue whose backend has none of its own: each request is served by
/// [`Backend::handle`] on the worker thread and answered at once.
pub struct Synchronous {
    backend: Arc<dyn Backend>,
    queue: u16,
}

impl Synchronous {
    /// Serves queue `queue` with `backend`'s [`Backend::handle`].
    pub fn new(backend: Arc<dyn Backend>, queue: u16) -> Self {
        Self { backend, queue }
    }
}

impl std::fmt::Debug for Synchronous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Synchronous")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl QueueEngine for Synchronous {
    fn start(&mut self, memory: Arc<Memory>, chain: Chain) -> Option<u32> {
        Some(self.backend.handle(self.queue, &memory, chain))
    }

    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn reap(&mut self, _done: &mut Vec<Used>) {}

    fn in_flight(&self) -> usize {
        0
    }
}
