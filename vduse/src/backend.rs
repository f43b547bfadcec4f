//! What a device type implements to be served by the device runtime.
//!
//! The runtime owns the kernel side (device node, control requests, IOTLB, virtqueues,
//! kick eventfds, interrupts); a backend owns the device semantics: its features, config
//! space, queues, and what a request does. Backends are tested without a kernel with
//! `virtio-queue`'s `MockSplitQueue` over a `GuestMemoryMmap`.

use virtio_queue::DescriptorChain;
use vm_memory::GuestMemoryMmap;

use crate::DeviceType;

/// Guest memory as the runtime maps it: the device's IOTLB regions, addressed by IOVA.
pub type Memory = GuestMemoryMmap<()>;

/// A descriptor chain over the device's memory.
pub type Chain<'a> = DescriptorChain<&'a Memory>;

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
    /// chain's device-writable buffers (the `len` of the used element). Must not panic on
    /// malformed chains: answer them with the device type's error status.
    fn handle(&self, queue: u16, memory: &Memory, chain: Chain<'_>) -> u32;

    /// The device was reset by the driver: drop per-driver state.
    fn reset(&self) {}
}
