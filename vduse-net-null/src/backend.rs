//! [`NetBackend`]: the null network device the `vduse` runtime serves.
//!
//! - **Transmit queue**: every frame is counted and, in `drop` mode, forgotten. Its buffers
//!   go back to the driver at once, with nothing written.
//! - **Receive queue**: its buffers are held (the [`QueueEngine`] of queue 0 keeps them,
//!   in the order the driver offered them) until a frame arrives, which only happens in
//!   `echo` mode: the transmit worker writes each frame, header adjusted to what the
//!   driver negotiated, into the oldest held buffers (several with mergeable buffers),
//!   and after each batch wakes the receive worker, which puts them in the used ring and
//!   sends one interrupt. Without a buffer a frame is dropped and counted.
//! - When the receive worker stops (reset, `SUSPEND`), the buffers still waiting for a
//!   frame are given back to the available ring ([`QueueEngine::release_unstarted`]).

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use vduse::DeviceType;
use vduse::backend::{Backend, Chain, Memory, QueueEngine, Used};
use vduse::event::Event;
use virtio_bindings::virtio_net::*;
use virtio_queue::DescriptorChain;
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use crate::net::{self, HEADER_LEN, Header, Mac, RX_QUEUE, TX_QUEUE};

/// Largest frame accepted from the driver, header left out: a 64 KiB TSO segment plus
/// room for its headers. Longer chains are malformed.
pub const MAX_FRAME: usize = 65_535 + 256;

/// What happens to transmitted frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Count and discard every frame; nothing is received.
    Drop,
    /// Every frame comes back on the receive queue.
    Echo,
}

impl Mode {
    /// The word the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Drop => "drop",
            Mode::Echo => "echo",
        }
    }
}

/// What the device looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetOptions {
    /// Its MAC address.
    pub mac: Mac,
    /// Its MTU.
    pub mtu: u16,
    /// Whether the link is up when the driver first looks.
    pub link_up: bool,
    /// Drop or echo.
    pub mode: Mode,
    /// Size of each queue.
    pub queue_size: u16,
    /// Offer the checksum and segmentation offloads.
    pub offloads: bool,
}

/// Frame counters, updated by the queue workers and read at any time.
#[derive(Debug, Default)]
pub struct Counters {
    tx_frames: AtomicU64,
    tx_bytes: AtomicU64,
    tx_errors: AtomicU64,
    rx_frames: AtomicU64,
    rx_bytes: AtomicU64,
    rx_dropped: AtomicU64,
    rx_errors: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Transmitted by the driver.
    pub tx: TxStats,
    /// Received by the driver (echo mode).
    pub rx: RxStats,
}

/// Transmit counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TxStats {
    /// Frames the driver sent.
    pub frames: u64,
    /// Their bytes, virtio-net header left out (as the interface counts them).
    pub bytes: u64,
    /// Malformed chains (no header, device-writable buffers, too long, unmapped).
    pub errors: u64,
}

/// Receive counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RxStats {
    /// Frames put in the driver's receive buffers.
    pub frames: u64,
    /// Their bytes, header left out.
    pub bytes: u64,
    /// Frames dropped because the driver had not offered enough receive buffers.
    pub dropped: u64,
    /// Frames that could not be delivered as they were (a receive buffer too small without
    /// mergeable buffers, an offload the driver did not accept, a bad checksum position),
    /// and malformed receive chains.
    pub errors: u64,
}

impl Counters {
    /// The current values.
    pub fn snapshot(&self) -> Stats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            tx: TxStats {
                frames: get(&self.tx_frames),
                bytes: get(&self.tx_bytes),
                errors: get(&self.tx_errors),
            },
            rx: RxStats {
                frames: get(&self.rx_frames),
                bytes: get(&self.rx_bytes),
                dropped: get(&self.rx_dropped),
                errors: get(&self.rx_errors),
            },
        }
    }

    fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }
}

/// A receive buffer held until a frame arrives.
#[derive(Debug)]
struct RxBuffer {
    head: u16,
    /// The memory snapshot its segments live in, kept mapped while it is held.
    memory: Arc<Memory>,
    segments: Vec<(GuestAddress, usize)>,
    capacity: usize,
}

/// The receive queue's buffers and finished frames, shared by both workers.
#[derive(Debug, Default)]
struct RxState {
    /// Whether a receive worker is running (its engine exists).
    active: bool,
    /// Held buffers, oldest first.
    buffers: VecDeque<RxBuffer>,
    /// Buffers filled and not yet reaped by the receive worker, in order.
    done: Vec<Used>,
}

/// The null virtio-net device.
#[derive(Debug)]
pub struct NetBackend {
    options: NetOptions,
    counters: Counters,
    negotiated: AtomicU64,
    link_up: AtomicBool,
    rx: Mutex<RxState>,
    /// Wakes the receive worker when frames were delivered.
    rx_ready: Event,
    /// Never signalled: the transmit engine completes everything at once.
    tx_idle: Event,
}

impl NetBackend {
    /// A device as `options` say.
    pub fn new(options: NetOptions) -> vduse::Result<NetBackend> {
        Ok(NetBackend {
            link_up: AtomicBool::new(options.link_up),
            options,
            counters: Counters::default(),
            negotiated: AtomicU64::new(0),
            rx: Mutex::new(RxState::default()),
            rx_ready: Event::new("receive")?,
            tx_idle: Event::new("transmit")?,
        })
    }

    /// The options it was made with.
    pub fn options(&self) -> &NetOptions {
        &self.options
    }

    /// The frame counters.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Whether the link is up (as the config space says).
    pub fn link_up(&self) -> bool {
        self.link_up.load(Ordering::Acquire)
    }

    /// Records a new link state and returns the config space's `status` bytes for it.
    pub fn set_link_up(&self, up: bool) -> [u8; 2] {
        self.link_up.store(up, Ordering::Release);
        net::status(up)
    }

    fn rx_state(&self) -> MutexGuard<'_, RxState> {
        // A worker that panicked holding the lock left consistent state (every update is
        // a push or pop): go on with it.
        self.rx
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Serves one transmitted chain; returns whether a frame was delivered to the receive
    /// queue (its worker then needs waking).
    /// `scratch` holds the chain's segments and, in echo mode, the frame: reused from
    /// frame to frame, so drop mode allocates nothing per frame.
    fn transmit<M>(&self, mut chain: DescriptorChain<M>, scratch: &mut TxScratch) -> bool
    where
        M: std::ops::Deref<Target = Memory>,
    {
        let segments = &mut scratch.segments;
        segments.clear();
        let mut readable = true;
        for descriptor in chain.by_ref() {
            readable &= !descriptor.is_write_only();
            segments.push((descriptor.addr(), descriptor.len() as usize));
        }
        let memory = chain.memory();
        let Some(total) = readable
            .then(|| checked_total(segments, memory, MAX_FRAME + HEADER_LEN))
            .flatten()
        else {
            Counters::add(&self.counters.tx_errors, 1);
            return false;
        };
        if total < HEADER_LEN {
            Counters::add(&self.counters.tx_errors, 1);
            return false;
        }
        let frame_len = total - HEADER_LEN;
        Counters::add(&self.counters.tx_frames, 1);
        Counters::add(&self.counters.tx_bytes, frame_len as u64);
        if self.options.mode == Mode::Drop {
            return false;
        }
        let frame = &mut scratch.frame;
        frame.clear();
        frame.resize(total, 0);
        let mut at = 0;
        for &(addr, len) in segments.iter() {
            if memory.read_slice(&mut frame[at..at + len], addr).is_err() {
                Counters::add(&self.counters.rx_errors, 1);
                return false;
            }
            at += len;
        }
        let (header, payload) = frame.split_at_mut(HEADER_LEN);
        let header = Header::parse(&(&*header).try_into().expect("HEADER_LEN bytes"));
        self.echo(header, payload)
    }

    /// Puts `payload` with `header` (as the driver sent it) into the receive queue.
    fn echo(&self, mut header: Header, payload: &mut [u8]) -> bool {
        let negotiated = self.negotiated.load(Ordering::Acquire);
        let error = || {
            Counters::add(&self.counters.rx_errors, 1);
            false
        };
        match header.gso_feature() {
            None => {}
            Some(Ok(feature))
                if net::has(negotiated, feature)
                    && (!header.gso_ecn() || net::has(negotiated, VIRTIO_NET_F_GUEST_ECN)) => {}
            // The driver cannot take this segment whole, and nothing here segments it.
            Some(_) => return error(),
        }
        if header.needs_csum() && !net::has(negotiated, VIRTIO_NET_F_GUEST_CSUM) {
            if !net::complete_checksum(payload, header.csum_start.into(), header.csum_offset.into())
            {
                return error();
            }
            header.flags &= !(VIRTIO_NET_HDR_F_NEEDS_CSUM as u8);
        }
        let mergeable = net::has(negotiated, VIRTIO_NET_F_MRG_RXBUF);
        let total = HEADER_LEN + payload.len();

        let mut rx = self.rx_state();
        if !rx.active || rx.buffers.is_empty() {
            Counters::add(&self.counters.rx_dropped, 1);
            return false;
        }
        // How many of the oldest buffers the frame takes.
        let count = if mergeable {
            let mut room = 0;
            let Some(count) = rx.buffers.iter().position(|buffer| {
                room += buffer.capacity;
                room >= total
            }) else {
                log::debug!(
                    "receive queue: {} buffers of {room} bytes in all held, a {total}-byte \
                     frame dropped",
                    rx.buffers.len()
                );
                Counters::add(&self.counters.rx_dropped, 1);
                return false;
            };
            count + 1
        } else if rx.buffers[0].capacity >= total {
            1
        } else {
            drop(rx);
            return error();
        };
        header.num_buffers = u16::try_from(count).unwrap_or(u16::MAX);
        let header = header.to_bytes();
        let mut source = header.iter().chain(payload.iter()).copied();
        let mut left = total;
        let mut used = Vec::with_capacity(count);
        for buffer in rx.buffers.drain(..count) {
            let mut written = 0;
            for &(addr, len) in &buffer.segments {
                if left == 0 {
                    break;
                }
                let take = len.min(left);
                let bytes: Vec<u8> = source.by_ref().take(take).collect();
                // Checked mappable when the buffer was taken, and its memory is held.
                let _ = buffer.memory.write_slice(&bytes, addr);
                written += take;
                left -= take;
            }
            used.push(Used {
                head: buffer.head,
                len: u32::try_from(written).unwrap_or(u32::MAX),
            });
        }
        rx.done.extend(used);
        drop(rx);
        Counters::add(&self.counters.rx_frames, 1);
        Counters::add(&self.counters.rx_bytes, payload.len() as u64);
        true
    }

    /// Takes a receive chain: held until a frame arrives, or answered at once (`Some`)
    /// when it is malformed.
    fn take_rx_buffer(&self, memory: Arc<Memory>, chain: Chain) -> Option<u32> {
        let head = chain.head_index();
        let descriptors: Vec<Descriptor> = chain.collect();
        let Some(segments) = writable_segments(&descriptors, &memory) else {
            Counters::add(&self.counters.rx_errors, 1);
            return Some(0);
        };
        let capacity = segments.iter().map(|&(_, len)| len).sum();
        if capacity < HEADER_LEN {
            Counters::add(&self.counters.rx_errors, 1);
            return Some(0);
        }
        self.rx_state().buffers.push_back(RxBuffer {
            head,
            memory,
            segments,
            capacity,
        });
        None
    }
}

/// The total length of a transmit chain's `segments`; `None` when one lies outside
/// `memory` or they add up to more than `limit`.
fn checked_total(
    segments: &[(GuestAddress, usize)],
    memory: &Memory,
    limit: usize,
) -> Option<usize> {
    let mut total = 0usize;
    for &(addr, len) in segments {
        total = total.checked_add(len)?;
        if total > limit || !memory.check_range(addr, len) {
            return None;
        }
    }
    Some(total)
}

/// What the transmit path reuses from frame to frame.
#[derive(Debug, Default)]
pub struct TxScratch {
    segments: Vec<(GuestAddress, usize)>,
    frame: Vec<u8>,
}

/// The device-writable segments of a chain's `descriptors`; `None` when one is
/// device-readable or outside `memory`.
fn writable_segments(
    descriptors: &[Descriptor],
    memory: &Memory,
) -> Option<Vec<(GuestAddress, usize)>> {
    let mut segments = Vec::new();
    for descriptor in descriptors {
        let len = descriptor.len() as usize;
        if !descriptor.is_write_only() || !memory.check_range(descriptor.addr(), len) {
            return None;
        }
        if len > 0 {
            segments.push((descriptor.addr(), len));
        }
    }
    Some(segments)
}

impl Backend for NetBackend {
    fn device_type(&self) -> DeviceType {
        DeviceType::Net
    }

    fn features(&self) -> u64 {
        net::BASE_FEATURES
            | if self.options.offloads {
                net::OFFLOAD_FEATURES
            } else {
                0
            }
    }

    fn config(&self) -> Vec<u8> {
        net::config_space(self.options.mac, self.link_up(), self.options.mtu)
    }

    fn num_queues(&self) -> u16 {
        2
    }

    fn max_queue_size(&self) -> u16 {
        self.options.queue_size
    }

    fn activate(&self, negotiated_features: u64) {
        self.negotiated
            .store(negotiated_features, Ordering::Release);
    }

    /// Only used without engines (tests): a receive chain cannot be answered without a
    /// frame, so it goes back empty.
    fn handle(&self, queue: u16, _memory: &Arc<Memory>, chain: Chain) -> u32 {
        match queue {
            TX_QUEUE => {
                if self.transmit(chain, &mut TxScratch::default()) {
                    self.rx_ready.notify();
                }
            }
            _ => Counters::add(&self.counters.rx_errors, 1),
        }
        0
    }

    fn engine(self: Arc<Self>, queue: u16, _size: u16) -> Option<Box<dyn QueueEngine>> {
        match queue {
            RX_QUEUE => Some(Box::new(RxEngine::new(self))),
            TX_QUEUE => Some(Box::new(TxEngine {
                backend: self,
                scratch: TxScratch::default(),
                delivered: false,
            })),
            _ => None,
        }
    }

    fn reset(&self) {
        self.negotiated.store(0, Ordering::Release);
    }
}

/// The receive queue's engine: holds the driver's buffers for `NetBackend::echo`.
#[derive(Debug)]
pub struct RxEngine {
    backend: Arc<NetBackend>,
}

impl RxEngine {
    /// Starts holding receive buffers (none yet).
    pub fn new(backend: Arc<NetBackend>) -> RxEngine {
        {
            let mut rx = backend.rx_state();
            rx.active = true;
            rx.buffers.clear();
            rx.done.clear();
        }
        RxEngine { backend }
    }
}

impl QueueEngine for RxEngine {
    fn start(&mut self, memory: Arc<Memory>, chain: Chain) -> Option<u32> {
        self.backend.take_rx_buffer(memory, chain)
    }

    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.backend.rx_ready.as_fd())
    }

    fn reap(&mut self, done: &mut Vec<Used>) {
        self.backend.rx_ready.drain();
        done.append(&mut self.backend.rx_state().done);
    }

    fn in_flight(&self) -> usize {
        let rx = self.backend.rx_state();
        rx.buffers.len() + rx.done.len()
    }

    fn release_unstarted(&mut self) -> u16 {
        let mut rx = self.backend.rx_state();
        let count = rx.buffers.len();
        rx.buffers.clear();
        u16::try_from(count).unwrap_or(u16::MAX)
    }
}

impl Drop for RxEngine {
    fn drop(&mut self) {
        let mut rx = self.backend.rx_state();
        rx.active = false;
        rx.buffers.clear();
        rx.done.clear();
    }
}

/// The transmit queue's engine: serves every frame at once, and wakes the receive worker
/// once per batch rather than once per echoed frame.
#[derive(Debug)]
pub struct TxEngine {
    backend: Arc<NetBackend>,
    /// Reused for each frame.
    scratch: TxScratch,
    /// A frame went to the receive queue since the last batch.
    delivered: bool,
}

impl QueueEngine for TxEngine {
    fn start(&mut self, _memory: Arc<Memory>, chain: Chain) -> Option<u32> {
        self.delivered |= self.backend.transmit(chain, &mut self.scratch);
        Some(0)
    }

    fn submit(&mut self) {
        if std::mem::take(&mut self.delivered) {
            self.backend.rx_ready.notify();
        }
    }

    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.backend.tx_idle.as_fd())
    }

    fn reap(&mut self, _done: &mut Vec<Used>) {}

    fn in_flight(&self) -> usize {
        0
    }
}
