//! One virtqueue's worker: a thread that sleeps on the queue's kick eventfd, drains the
//! available ring into the backend, fills the used ring and interrupts the driver once
//! per batch when its notification suppression asks for it.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering, fence};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::io::Errno;
use virtio_bindings::virtio_ring::VRING_AVAIL_F_NO_INTERRUPT;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::device_io::DeviceIo;
use super::event::Event;
use super::inflight::QueueLog;
use super::iotlb::MemorySource;
use crate::backend::{Backend, Memory, QueueEngine, Used};
use crate::error::{Error, Result};

/// What a worker shares with the thread that started it.
#[derive(Debug)]
struct Shared {
    progress: Progress,
    /// Set as the thread ends, before the request thread is woken: a `JoinHandle` only
    /// says it has finished a little later, after the wake-up has been looked at.
    exited: AtomicBool,
    /// Wakes the thread to see `progress.stopping`.
    stop_event: Event,
    /// Wakes the thread to log its ring state (see [`QueueWorker::request_state_log`]).
    log_event: Event,
}

/// Where a drain is, and whether it should stop.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Set to stop between two requests.
    pub stopping: AtomicBool,
    /// The next available-ring index the worker will read (`GET_VQ_STATE`).
    pub next_avail: AtomicU16,
}

/// A running (or stopping) queue worker.
#[derive(Debug)]
pub(crate) struct QueueWorker {
    index: u16,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Everything a worker needs besides its queue.
pub(crate) struct WorkerContext {
    pub index: u16,
    pub backend: Arc<dyn Backend>,
    pub memory: Arc<dyn MemorySource>,
    pub dev: Arc<dyn DeviceIo>,
    /// Written when the worker ends, so the request thread can answer what waited for it.
    pub wake: Arc<Event>,
    /// How long to watch an emptied available ring before sleeping.
    pub busy_poll: Duration,
    /// The queue's part of the in-flight log, if the server keeps one.
    pub log: Option<QueueLog>,
    /// The queue was served by a server that ended: recover its state from the log and
    /// the rings instead of starting from the kernel's.
    pub take_over: bool,
}

impl QueueWorker {
    /// Starts the worker of a configured, ready `queue`, woken by `kick`.
    pub fn start(context: WorkerContext, queue: Queue, kick: Event) -> Result<Self> {
        let shared = Arc::new(Shared {
            progress: Progress {
                stopping: AtomicBool::new(false),
                next_avail: AtomicU16::new(queue.next_avail()),
            },
            stop_event: Event::new("stop")?,
            log_event: Event::new("state log")?,
            exited: AtomicBool::new(false),
        });
        let index = context.index;
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("vduse-vq{index}"))
            .spawn(move || run(context, queue, kick, &thread_shared))
            .map_err(|source| Error::Io {
                op: format!("starting the worker thread of queue {index}"),
                source,
            })?;
        Ok(Self {
            index,
            shared,
            thread: Some(thread),
        })
    }

    /// Asks the worker to stop after the request it is serving; does not wait.
    pub fn request_stop(&self) {
        self.shared.progress.stopping.store(true, Ordering::Release);
        self.shared.stop_event.notify();
    }

    /// Asks the worker to log its ring state (both rings' indices and flags, what is in
    /// flight) when it next wakes, which is at once: tells a request the driver never
    /// made available from one the worker missed.
    pub fn request_state_log(&self) {
        self.shared.log_event.notify();
    }

    /// Whether the thread has ended (or is ending: joining it does not wait for the
    /// backend any more).
    pub fn has_exited(&self) -> bool {
        self.shared.exited.load(Ordering::Acquire)
    }

    /// The next available index the worker will read (or stopped at).
    pub fn next_avail(&self) -> u16 {
        self.shared.progress.next_avail.load(Ordering::Acquire)
    }

    /// Stops the worker and waits for it; returns where it stopped in the available ring.
    /// Blocks for as long as the backend's current request takes.
    pub fn join(mut self) -> u16 {
        self.request_stop();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("the worker of queue {} panicked", self.index);
            }
        }
        self.next_avail()
    }
}

impl Drop for QueueWorker {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.request_stop();
            let _ = thread.join();
        }
    }
}

/// Marks the worker ended and wakes the request thread, also on a panic in the backend.
struct WakeOnExit<'a> {
    shared: &'a Shared,
    wake: Arc<Event>,
}

impl Drop for WakeOnExit<'_> {
    fn drop(&mut self) {
        self.shared.exited.store(true, Ordering::Release);
        self.wake.notify();
    }
}

fn run(mut context: WorkerContext, mut queue: Queue, kick: Event, shared: &Shared) {
    let _wake = WakeOnExit {
        shared,
        wake: context.wake.clone(),
    };
    let mut engine = Engine::new(context.backend.clone().engine(context.index, queue.size()))
        .with_busy_poll(context.busy_poll);
    engine.log = context.log.take();
    if context.take_over {
        take_over(
            &mut queue,
            context.memory.as_ref(),
            context.backend.as_ref(),
            &mut engine,
            context.index,
        );
        shared
            .progress
            .next_avail
            .store(queue.next_avail(), Ordering::Release);
        // The server before may have filled the used ring and died before interrupting.
        if let Err(error) = context.dev.inject_vq_irq(u32::from(context.index)) {
            log::warn!("queue {}: {error}", context.index);
        }
    }
    log::debug!(
        "queue {}: worker started at avail index {} ({})",
        context.index,
        queue.next_avail(),
        if engine.is_concurrent() {
            "requests served concurrently"
        } else {
            "requests served one at a time"
        }
    );
    let mut warned_unmapped = false;
    let mut interrupts: u64 = 0;
    let mut drains: u64 = 0;
    // Requests may be waiting already: the driver can kick before the kick eventfd is set.
    let mut serve = |queue: &mut Queue, engine: &mut Engine| {
        let outcome = drain(
            queue,
            context.memory.as_ref(),
            context.backend.as_ref(),
            engine,
            context.index,
            &shared.progress,
        );
        match outcome {
            Drained::Unmapped if !warned_unmapped => {
                warned_unmapped = true;
                log::error!(
                    "queue {}: its rings are not in the IOTLB; not serving it",
                    context.index
                );
            }
            Drained::Handled { notify, more, .. } => {
                drains += 1;
                if notify {
                    interrupts += 1;
                    if let Err(error) = context.dev.inject_vq_irq(u32::from(context.index)) {
                        log::warn!("queue {}: {error}", context.index);
                    }
                }
                return more;
            }
            _ => {}
        }
        false
    };
    while serve(&mut queue, &mut engine) {}
    let mut released = false;
    loop {
        let stopping = shared.progress.stopping.load(Ordering::Acquire);
        if stopping && !released {
            released = true;
            let count = engine.release_unstarted();
            if count > 0 {
                if let Some(log) = engine.log.as_mut() {
                    log.given_back(count);
                }
                queue.set_next_avail(queue.next_avail().wrapping_sub(count));
                shared
                    .progress
                    .next_avail
                    .store(queue.next_avail(), Ordering::Release);
                log::debug!(
                    "queue {}: {count} buffers given back to the available ring",
                    context.index
                );
            }
        }
        if stopping && engine.in_flight() == 0 {
            log::debug!(
                "queue {}: worker stopped at avail index {} ({drains} drains, {interrupts} \
                 interrupts)",
                context.index,
                queue.next_avail()
            );
            return;
        }
        let kicked = {
            let completion = engine.completion_fd();
            // Stopping: only the requests in flight are waited for (the stop eventfd stays
            // readable, so it is left out).
            let mut fds = Vec::with_capacity(4);
            fds.push(PollFd::new(&shared.log_event, PollFlags::IN));
            if !stopping {
                fds.push(PollFd::new(&kick, PollFlags::IN));
                fds.push(PollFd::new(&shared.stop_event, PollFlags::IN));
            }
            if let Some(fd) = completion {
                fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
            }
            match poll(&mut fds, None) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(errno) => {
                    log::error!("queue {}: poll: {errno}", context.index);
                    return;
                }
            }
            if fds[0].revents().contains(PollFlags::IN) {
                shared.log_event.drain();
                log_state(&queue, context.memory.as_ref(), &engine, context.index);
            }
            !stopping && fds[1].revents().contains(PollFlags::IN)
        };
        if kicked {
            // Non-blocking: a spurious wake-up reads EAGAIN.
            kick.drain();
        }
        // Asked to stop while asleep: no new request is served; the top of the loop
        // decides whether anything is still in flight.
        if !stopping && shared.progress.stopping.load(Ordering::Acquire) {
            continue;
        }
        while serve(&mut queue, &mut engine) {}
    }
}

/// How a worker serves its requests: one at a time through `Backend::handle`, or
/// concurrently through the backend's [`QueueEngine`]; with the completions reaped and not
/// yet in the used ring.
#[derive(Default)]
pub(crate) struct Engine {
    inner: Option<Box<dyn QueueEngine>>,
    done: Vec<Used>,
    /// How long to watch an emptied available ring before sleeping (zero: not at all).
    busy_poll: Duration,
    /// Where the requests taken and not yet answered are recorded, if anywhere.
    log: Option<QueueLog>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("concurrent", &self.is_concurrent())
            .field("in_flight", &self.in_flight())
            .field("done", &self.done)
            .finish()
    }
}

impl Engine {
    /// `None`: synchronous.
    pub fn new(inner: Option<Box<dyn QueueEngine>>) -> Self {
        Self {
            inner,
            done: Vec::new(),
            busy_poll: Duration::ZERO,
            log: None,
        }
    }

    /// Watches an emptied available ring for `busy_poll` before sleeping.
    pub fn with_busy_poll(mut self, busy_poll: Duration) -> Self {
        self.busy_poll = busy_poll;
        self
    }

    fn is_concurrent(&self) -> bool {
        self.inner.is_some()
    }

    /// Requests started and not yet in the used ring.
    pub fn in_flight(&self) -> usize {
        self.inner.as_ref().map_or(0, |e| e.in_flight()) + self.done.len()
    }

    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.as_ref().map(|e| e.completion_fd())
    }

    fn release_unstarted(&mut self) -> u16 {
        self.inner.as_mut().map_or(0, |e| e.release_unstarted())
    }
}

/// Most requests started by one drain: a queue the driver keeps busy still gets its
/// started requests submitted and its interrupts at least this often.
pub(crate) const MAX_BATCH: usize = 32;

/// What one drain did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drained {
    /// The rings are outside the mapped memory, even after remapping the IOTLB.
    Unmapped,
    /// `count` used elements were added; `notify` when the driver wants an interrupt;
    /// `more` when the drain stopped at [`MAX_BATCH`] requests with more perhaps waiting
    /// (drain again at once: notifications are still off).
    Handled {
        count: usize,
        notify: bool,
        more: bool,
    },
}

/// Puts the engine's finished requests in the used ring, then starts every request in the
/// available ring, until it stays empty with notifications re-enabled, the queue's size is
/// in flight, or `stopping` is set. Remaps the IOTLB once per request whose buffers are
/// not all mapped: the kernel adds regions (its bounce region) without telling the device.
/// Asks for one interrupt for everything used in the call.
pub(crate) fn drain(
    queue: &mut Queue,
    source: &dyn MemorySource,
    backend: &dyn Backend,
    engine: &mut Engine,
    index: u16,
    progress: &Progress,
) -> Drained {
    let stopping = &progress.stopping;
    if let Some(inner) = engine.inner.as_deref_mut() {
        inner.reap(&mut engine.done);
    }
    let mut memory = source.snapshot();
    if !rings_mapped(queue, &memory) {
        source.refresh_after_miss();
        memory = source.snapshot();
        if !rings_mapped(queue, &memory) {
            return Drained::Unmapped;
        }
    }
    // Where the used ring stood when the driver last heard from this queue: every drain
    // that adds elements ends by deciding on an interrupt for them.
    let used_before = queue.next_used();
    let mut count = publish_used(
        queue,
        memory.as_ref(),
        &engine.done,
        index,
        engine.log.as_ref(),
    );
    engine.done.clear();
    let limit = usize::from(queue.size());
    let mut remapped_for_this_request = false;
    let mut started = 0;
    let mut more = false;
    'batches: loop {
        if stopping.load(Ordering::Acquire) {
            break;
        }
        if let Err(error) = queue.disable_notification(memory.as_ref()) {
            log::warn!("queue {index}: {error}");
            break;
        }
        while !stopping.load(Ordering::Acquire) {
            // The queue's size in flight: the next completion brings the worker back, with
            // notifications still disabled.
            if engine.in_flight() >= limit {
                break 'batches;
            }
            // A batch ends here even while the driver keeps adding requests: what was
            // started is submitted, and the driver gets its interrupt.
            if started >= MAX_BATCH {
                more = true;
                break 'batches;
            }
            let (head, len) = if let Some(inner) = engine.inner.as_deref_mut() {
                let Some(chain) = queue.pop_descriptor_chain(memory.clone()) else {
                    break;
                };
                if !remapped_for_this_request && !chain_mapped(&chain) {
                    queue.go_to_previous_position();
                    remapped_for_this_request = true;
                    if source.refresh_after_miss() {
                        memory = source.snapshot();
                    }
                    continue;
                }
                progress
                    .next_avail
                    .store(queue.next_avail(), Ordering::Release);
                let head = chain.head_index();
                if let Some(log) = engine.log.as_mut() {
                    log.started(head);
                }
                (head, inner.start(memory.clone(), chain))
            } else {
                let Some(chain) = queue.pop_descriptor_chain(memory.as_ref()) else {
                    break;
                };
                if !remapped_for_this_request && !chain_mapped(&chain) {
                    queue.go_to_previous_position();
                    remapped_for_this_request = true;
                    if source.refresh_after_miss() {
                        memory = source.snapshot();
                    }
                    continue;
                }
                progress
                    .next_avail
                    .store(queue.next_avail(), Ordering::Release);
                let head = chain.head_index();
                if let Some(log) = engine.log.as_mut() {
                    log.started(head);
                }
                (head, Some(backend.handle(index, memory.as_ref(), chain)))
            };
            remapped_for_this_request = false;
            started += 1;
            let Some(len) = len else {
                continue;
            };
            let used = queue.next_used();
            if let Some(log) = &engine.log {
                log.publishing(used, used.wrapping_add(1));
            }
            if let Err(error) = queue.add_used(memory.as_ref(), head, len) {
                log::warn!("queue {index}: {error}");
                break 'batches;
            }
            if let Some(log) = &engine.log {
                log.published([head]);
            }
            count += 1;
        }
        if stopping.load(Ordering::Acquire) {
            break;
        }
        // Nothing in flight, so only the driver can bring more work: with busy polling,
        // watch the available ring a while before asking the driver for a kick.
        if !engine.busy_poll.is_zero()
            && engine.in_flight() == 0
            && busy_poll(queue, memory.as_ref(), engine.busy_poll, stopping)
        {
            continue;
        }
        match queue.enable_notification(memory.as_ref()) {
            Ok(true) => continue,
            Ok(false) => break,
            Err(error) => {
                log::warn!("queue {index}: {error}");
                break;
            }
        }
    }
    if let Some(inner) = engine.inner.as_deref_mut() {
        inner.submit();
    }
    let notify = count > 0 && needs_interrupt(queue, &memory, used_before);
    Drained::Handled {
        count,
        notify,
        more,
    }
}

/// Whether the driver wants an interrupt for what was just used: its `used_event` with
/// EVENT_IDX, else the avail ring's `VRING_AVAIL_F_NO_INTERRUPT` flag (which virtio-queue
/// leaves to the device).
///
/// With EVENT_IDX, the driver wants one when the used index passed its `used_event` since
/// `used_before` (the used index at the previous decision), as the kernel's
/// `vring_need_event` computes it.
fn needs_interrupt(queue: &Queue, memory: &Memory, used_before: u16) -> bool {
    // The used index was published before `used_event` is read, and the driver writes
    // `used_event` before it reads the used index: a full fence on each side.
    fence(Ordering::SeqCst);
    if queue.event_idx_enabled() {
        let used_event_at = queue.avail_ring() + 4 + 2 * u64::from(queue.size());
        let Ok(used_event) = memory
            .load::<u16>(GuestAddress(used_event_at), Ordering::Relaxed)
            .map(u16::from_le)
        else {
            return true;
        };
        let used = queue.next_used();
        return used.wrapping_sub(used_event).wrapping_sub(1) < used.wrapping_sub(used_before);
    }
    let flags: u16 = memory
        .load(GuestAddress(queue.avail_ring()), Ordering::Acquire)
        .map_or(0, u16::from_le);
    flags & VRING_AVAIL_F_NO_INTERRUPT as u16 == 0
}

/// Spins for up to `limit` until the driver adds to the available ring (true), or the
/// worker is asked to stop (false). Spares the driver a kick and this thread a wake-up
/// when requests come close together, at the price of a CPU kept busy meanwhile.
fn busy_poll(queue: &Queue, memory: &Memory, limit: Duration, stopping: &AtomicBool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit && !stopping.load(Ordering::Relaxed) {
        if queue
            .avail_idx(memory, Ordering::Acquire)
            .is_ok_and(|idx| idx.0 != queue.next_avail())
        {
            return true;
        }
        std::hint::spin_loop();
    }
    false
}

/// Puts `done` in the used ring with one update of the used index, so the driver sees all
/// of them at once (a network frame spread over several receive buffers must not be seen
/// in part). Returns how many were put.
fn publish_used(
    queue: &mut Queue,
    memory: &Memory,
    done: &[Used],
    index: u16,
    log: Option<&QueueLog>,
) -> usize {
    let size = queue.size();
    let valid: Vec<Used> = done
        .iter()
        .filter(|used| {
            let ok = used.head < size;
            if !ok {
                log::warn!(
                    "queue {index}: no used element for head {} (out of range)",
                    used.head
                );
            }
            ok
        })
        .copied()
        .collect();
    let Some((last, first)) = valid.split_last() else {
        return 0;
    };
    let start = queue.next_used();
    if let Some(log) = log {
        log.publishing(start, start.wrapping_add(valid.len() as u16));
    }
    for (offset, used) in first.iter().enumerate() {
        let slot = u64::from(start.wrapping_add(offset as u16) % size);
        // struct virtq_used_elem: le32 id, le32 len.
        let mut element = [0u8; 8];
        element[..4].copy_from_slice(&u32::from(used.head).to_le_bytes());
        element[4..].copy_from_slice(&used.len.to_le_bytes());
        let at = GuestAddress(queue.used_ring() + 4 + 8 * slot);
        if let Err(error) = memory.write_slice(&element, at) {
            log::warn!("queue {index}: writing the used ring: {error}");
        }
    }
    // add_used writes the last element and publishes the index with release ordering, so
    // the elements above are visible before it.
    queue.set_next_used(start.wrapping_add(first.len() as u16));
    match queue.add_used(memory, last.head, last.len) {
        Ok(()) => {
            if let Some(log) = log {
                log.published(valid.iter().map(|used| used.head));
            }
            valid.len()
        }
        Err(error) => {
            log::warn!("queue {index}: {error}");
            queue.set_next_used(start);
            0
        }
    }
}

/// The ring state as the driver and this worker see it, logged at `warn` so it shows at
/// the default log level: a driver index ahead of the worker's with the worker asleep is
/// a missed kick; a used index past `used_event` the driver has not consumed is a missed
/// interrupt; everything equal with nothing in flight puts a stuck request before the ring.
fn log_state(queue: &Queue, source: &dyn MemorySource, engine: &Engine, index: u16) {
    let memory = source.snapshot();
    let size = u64::from(queue.size());
    let read = |at: u64| -> String {
        memory
            .load::<u16>(GuestAddress(at), Ordering::Acquire)
            .map_or_else(|_| "unmapped".into(), |v| u16::from_le(v).to_string())
    };
    let avail = queue.avail_ring();
    let used = queue.used_ring();
    log::warn!(
        "queue {index}: size {size}; avail ring: idx {}, flags {}, used_event {}; worker: \
         next avail {}, next used {}, {} in flight{}; used ring: idx {}, flags {}, \
         avail_event {}",
        read(avail + 2),
        read(avail),
        read(avail + 4 + 2 * size),
        queue.next_avail(),
        queue.next_used(),
        engine.in_flight(),
        if queue.event_idx_enabled() {
            ", EVENT_IDX"
        } else {
            ""
        },
        read(used + 2),
        read(used),
        read(used + 4 + 8 * size),
    );
}

/// Takes over a queue a server that ended was serving: brings its in-flight log in line
/// with the used ring, goes on from where the rings stand, and runs again the requests
/// that were in flight, oldest first (their answers go out with the first drain). The
/// server takes a device over only with a log.
fn take_over(
    queue: &mut Queue,
    source: &dyn MemorySource,
    backend: &dyn Backend,
    engine: &mut Engine,
    index: u16,
) {
    let mut memory = source.snapshot();
    if !rings_mapped(queue, &memory) {
        source.refresh_after_miss();
        memory = source.snapshot();
    }
    let Ok(used_idx) = queue.used_idx(memory.as_ref(), Ordering::Acquire) else {
        log::error!("queue {index}: its used ring is not mapped; not taken over");
        return;
    };
    let used_idx = used_idx.0;
    let size = queue.size();
    let used_ring = queue.used_ring();
    let used_head_at = |position: u16| {
        let at = used_ring + 4 + 8 * u64::from(position % size);
        memory
            .load::<u32>(GuestAddress(at), Ordering::Acquire)
            .ok()
            .map(|id| u32::from_le(id) as u16)
    };
    let Some(log) = engine.log.as_mut() else {
        log::error!("queue {index}: no in-flight log to take it over with");
        return;
    };
    let recovery = log.recover(used_idx, used_head_at);
    queue.set_next_used(used_idx);
    queue.set_next_avail(recovery.next_avail);
    log::info!(
        "queue {index}: taken over at avail index {}, used index {used_idx}; {} request(s) \
         in flight run again",
        recovery.next_avail,
        recovery.replay.len()
    );
    if recovery.replay.is_empty() {
        return;
    }
    let (mut replay, memory) = match replay_queue(queue, &memory, &recovery.replay) {
        Ok(replay) => replay,
        Err(problem) => {
            log::error!("queue {index}: cannot run the requests in flight again: {problem}");
            return;
        }
    };
    let memory = Arc::new(memory);
    for _ in 0..recovery.replay.len() {
        let (head, len) = if let Some(inner) = engine.inner.as_deref_mut() {
            let Some(chain) = replay.pop_descriptor_chain(memory.clone()) else {
                break;
            };
            let head = chain.head_index();
            (head, inner.start_again(memory.clone(), chain))
        } else {
            let Some(chain) = replay.pop_descriptor_chain(memory.as_ref()) else {
                break;
            };
            let head = chain.head_index();
            (head, Some(backend.handle(index, memory.as_ref(), chain)))
        };
        if let Some(len) = len {
            engine.done.push(Used { head, len });
        }
    }
    if let Some(inner) = engine.inner.as_deref_mut() {
        inner.submit();
    }
}

/// A queue whose available ring, in private memory past the end of `memory`, lists
/// `heads`; its descriptor table is `queue`'s. virtio-queue makes descriptor chains only
/// from an available ring, and the driver's may hold other heads by now.
fn replay_queue(
    queue: &Queue,
    memory: &Memory,
    heads: &[u16],
) -> std::result::Result<(Queue, Memory), String> {
    let size = queue.size();
    let avail_len = (6 + 2 * u64::from(size)).next_multiple_of(4096);
    let used_len = (6 + 8 * u64::from(size)).next_multiple_of(4096);
    let base = memory
        .last_addr()
        .0
        .checked_add(1)
        .and_then(|end| end.checked_next_multiple_of(4096))
        .ok_or("no address is free past the IOTLB")?;
    let region = vm_memory::GuestRegionMmap::<()>::from_range(
        GuestAddress(base),
        (avail_len + used_len) as usize,
        None,
    )
    .map_err(|e| e.to_string())?;
    let memory = memory
        .insert_region(Arc::new(region))
        .map_err(|e| e.to_string())?;
    let mut ring = Vec::with_capacity(4 + 2 * heads.len());
    ring.extend_from_slice(&0u16.to_le_bytes());
    ring.extend_from_slice(&(heads.len() as u16).to_le_bytes());
    for head in heads {
        ring.extend_from_slice(&head.to_le_bytes());
    }
    memory
        .write_slice(&ring, GuestAddress(base))
        .map_err(|e| e.to_string())?;
    let mut replay = Queue::new(size).map_err(|e| e.to_string())?;
    replay.try_set_size(size).map_err(|e| e.to_string())?;
    replay
        .try_set_desc_table_address(GuestAddress(queue.desc_table()))
        .map_err(|e| e.to_string())?;
    replay
        .try_set_avail_ring_address(GuestAddress(base))
        .map_err(|e| e.to_string())?;
    replay
        .try_set_used_ring_address(GuestAddress(base + avail_len))
        .map_err(|e| e.to_string())?;
    replay.set_ready(true);
    Ok((replay, memory))
}

/// Whether the descriptor table and both rings are in `memory`.
fn rings_mapped(queue: &Queue, memory: &Memory) -> bool {
    let size = u64::from(queue.size());
    // Descriptor table, avail ring (flags, idx, ring, used_event), used ring (flags, idx,
    // ring, avail_event).
    [
        (queue.desc_table(), 16 * size),
        (queue.avail_ring(), 6 + 2 * size),
        (queue.used_ring(), 6 + 8 * size),
    ]
    .into_iter()
    .all(|(address, len)| memory.check_range(GuestAddress(address), len as usize))
}

/// Whether every buffer of `chain` is mapped and the chain reads to its end: an indirect
/// table outside the memory ends the iteration early, without an error.
fn chain_mapped<M>(chain: &DescriptorChain<M>) -> bool
where
    M: std::ops::Deref<Target = Memory> + Clone,
{
    let memory = chain.memory();
    let mut last_has_next = true;
    for descriptor in chain.clone() {
        if descriptor.len() > 0 && !memory.check_range(descriptor.addr(), descriptor.len() as usize)
        {
            return false;
        }
        last_has_next = descriptor.has_next();
    }
    !last_has_next
}

/// Queue parameters as `VDUSE_VQ_GET_INFO` reports them, made into a ready split queue.
pub(crate) fn configure_queue(
    max_size: u16,
    info: &crate::uapi::VduseVqInfo,
    event_idx: bool,
) -> std::result::Result<Queue, String> {
    let mut queue = Queue::new(max_size).map_err(|e| format!("queue of {max_size}: {e}"))?;
    let size = u16::try_from(info.num).map_err(|_| format!("size {} too large", info.num))?;
    queue
        .try_set_size(size)
        .map_err(|e| format!("size {size}: {e}"))?;
    queue
        .try_set_desc_table_address(GuestAddress(info.desc_addr))
        .map_err(|e| format!("descriptor table {:#x}: {e}", info.desc_addr))?;
    queue
        .try_set_avail_ring_address(GuestAddress(info.driver_addr))
        .map_err(|e| format!("driver area {:#x}: {e}", info.driver_addr))?;
    queue
        .try_set_used_ring_address(GuestAddress(info.device_addr))
        .map_err(|e| format!("device area {:#x}: {e}", info.device_addr))?;
    queue.set_event_idx(event_idx);
    // The ring state the kernel holds (0 for a fresh ring): nothing is in flight, so the
    // used index starts there too.
    let avail_index = info.state.split().avail_index;
    queue.set_next_avail(avail_index);
    queue.set_next_used(avail_index);
    queue.set_ready(true);
    Ok(queue)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::DeviceType;
    use crate::backend::Chain;
    use std::sync::Mutex;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::desc::split::Descriptor as SplitDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestMemoryMmap};

    /// Memory that never changes; counts the refreshes asked for.
    pub(crate) struct FixedMemory {
        pub memory: Arc<Memory>,
        pub refreshes: Mutex<usize>,
    }

    impl MemorySource for FixedMemory {
        fn snapshot(&self) -> Arc<Memory> {
            self.memory.clone()
        }
        fn refresh_after_miss(&self) -> bool {
            *self.refreshes.lock().unwrap() += 1;
            false
        }
    }

    /// Writes the first byte of each request's first writable buffer; records the calls.
    #[derive(Default)]
    pub(crate) struct Recorder {
        pub calls: Mutex<Vec<(u16, u16, usize)>>,
    }

    impl Backend for Recorder {
        fn device_type(&self) -> DeviceType {
            DeviceType::Block
        }
        fn features(&self) -> u64 {
            0
        }
        fn config(&self) -> Vec<u8> {
            Vec::new()
        }
        fn num_queues(&self) -> u16 {
            1
        }
        fn max_queue_size(&self) -> u16 {
            16
        }
        fn handle(&self, queue: u16, memory: &Memory, chain: Chain<'_>) -> u32 {
            let head = chain.head_index();
            let descriptors: Vec<_> = chain.collect();
            let mut written = 0;
            if let Some(d) = descriptors.iter().find(|d| d.is_write_only()) {
                memory.write_obj(0xabu8, d.addr()).unwrap();
                written = 1;
            }
            self.calls
                .lock()
                .unwrap()
                .push((queue, head, descriptors.len()));
            written
        }
    }

    /// What a [`Deferred`] backend's engine shares with the test: requests started and not
    /// finished (with the memory they hold), and requests finished and not reaped.
    #[derive(Default)]
    pub(crate) struct DeferredState {
        pub started: Mutex<Vec<(u16, Arc<Memory>)>>,
        pub finished: Mutex<Vec<Used>>,
        /// Every batch `submit` was called with, as counts.
        pub submits: Mutex<Vec<usize>>,
        pub event: Option<Event>,
    }

    impl DeferredState {
        pub fn new() -> Arc<Self> {
            Arc::new(Self {
                event: Some(Event::new("completions").unwrap()),
                ..Self::default()
            })
        }

        /// Finishes every started request, the newest first, each with `len` = 10 + head.
        pub fn finish_in_reverse(&self) {
            let mut started = self.started.lock().unwrap();
            let mut finished = self.finished.lock().unwrap();
            while let Some((head, _memory)) = started.pop() {
                finished.push(Used {
                    head,
                    len: 10 + u32::from(head),
                });
            }
            self.event.as_ref().unwrap().notify();
        }

        pub fn started(&self) -> usize {
            self.started.lock().unwrap().len()
        }
    }

    /// Keeps every request in flight until the test finishes it.
    pub(crate) struct DeferredEngine {
        state: Arc<DeferredState>,
        since_submit: usize,
    }

    impl QueueEngine for DeferredEngine {
        fn start(&mut self, memory: Arc<Memory>, chain: crate::backend::OwnedChain) -> Option<u32> {
            self.state
                .started
                .lock()
                .unwrap()
                .push((chain.head_index(), memory));
            self.since_submit += 1;
            None
        }
        fn submit(&mut self) {
            self.state.submits.lock().unwrap().push(self.since_submit);
            self.since_submit = 0;
        }
        fn completion_fd(&self) -> BorrowedFd<'_> {
            use std::os::fd::AsFd;
            self.state.event.as_ref().unwrap().as_fd()
        }
        fn reap(&mut self, done: &mut Vec<Used>) {
            self.state.event.as_ref().unwrap().drain();
            done.append(&mut self.state.finished.lock().unwrap());
        }
        fn in_flight(&self) -> usize {
            self.state.started() + self.state.finished.lock().unwrap().len()
        }
    }

    /// A backend whose requests all go through a [`DeferredEngine`].
    pub(crate) struct Deferred(pub Arc<DeferredState>);

    impl Backend for Deferred {
        fn device_type(&self) -> DeviceType {
            DeviceType::Block
        }
        fn features(&self) -> u64 {
            0
        }
        fn config(&self) -> Vec<u8> {
            Vec::new()
        }
        fn num_queues(&self) -> u16 {
            1
        }
        fn max_queue_size(&self) -> u16 {
            16
        }
        fn handle(&self, _: u16, _: &Memory, _: Chain<'_>) -> u32 {
            panic!("a deferred backend is served by its engine")
        }
        fn engine(self: Arc<Self>, _: u16, _: u16) -> Option<Box<dyn QueueEngine>> {
            Some(Box::new(DeferredEngine {
                state: self.0.clone(),
                since_submit: 0,
            }))
        }
    }

    fn stopped() -> Progress {
        Progress {
            stopping: AtomicBool::new(true),
            ..Progress::default()
        }
    }

    fn memory() -> Arc<Memory> {
        Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1_0000)]).unwrap())
    }

    fn fixed(memory: &Arc<Memory>) -> FixedMemory {
        FixedMemory {
            memory: memory.clone(),
            refreshes: Mutex::new(0),
        }
    }

    fn descriptor(addr: u64, len: u32, write: bool) -> RawDescriptor {
        let flags = if write {
            virtio_bindings::virtio_ring::VRING_DESC_F_WRITE as u16
        } else {
            0
        };
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
    }

    #[test]
    fn busy_polling_sees_new_requests_and_gives_up_in_time() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        let queue: Queue = mock.create_queue().unwrap();
        let running = AtomicBool::new(false);
        // Nothing comes: false after the limit.
        let start = Instant::now();
        assert!(!busy_poll(
            &queue,
            &memory,
            Duration::from_millis(20),
            &running
        ));
        assert!(start.elapsed() >= Duration::from_millis(20));
        // Asked to stop: false at once, however long the limit.
        let start = Instant::now();
        assert!(!busy_poll(
            &queue,
            &memory,
            Duration::from_secs(60),
            &AtomicBool::new(true)
        ));
        assert!(start.elapsed() < Duration::from_secs(5));
        // The driver adds a request meanwhile: seen.
        let avail_idx = GuestAddress(mock.avail_addr().0 + 2);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(10));
                memory
                    .store(1u16.to_le(), avail_idx, Ordering::Release)
                    .unwrap();
            });
            assert!(busy_poll(
                &queue,
                &memory,
                Duration::from_secs(60),
                &running
            ));
        });
    }

    #[test]
    fn completions_are_published_together_and_bad_heads_left_out() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        let mut queue: Queue = mock.create_queue().unwrap();
        queue.set_next_used(14);
        let done = [
            Used { head: 5, len: 10 },
            Used { head: 99, len: 1 },
            Used { head: 2, len: 20 },
            Used { head: 7, len: 30 },
        ];
        assert_eq!(publish_used(&mut queue, &memory, &done, 0, None), 3);
        assert_eq!(queue.next_used(), 17);
        assert_eq!(mock.used().idx().load(), 17);
        // Slots 14, 15, then 0 (the ring wraps).
        let slots: Vec<(u32, u32)> = [14, 15, 0]
            .into_iter()
            .map(|slot| {
                let e = mock.used().ring().ref_at(slot).unwrap().load();
                (e.id(), e.len())
            })
            .collect();
        assert_eq!(slots, [(5, 10), (2, 20), (7, 30)]);
        assert_eq!(publish_used(&mut queue, &memory, &[], 0, None), 0);
        assert_eq!(mock.used().idx().load(), 17);
    }

    #[test]
    fn a_busy_queue_is_served_in_batches_each_with_its_interrupt() {
        let memory = memory();
        let size = 128u16;
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), size);
        let requests = MAX_BATCH + 5;
        let single: Vec<RawDescriptor> = (0..requests)
            .map(|i| descriptor(0x8000 + 0x100 * i as u64, 16, false))
            .collect();
        mock.add_desc_chains(&single, 0).unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        let backend = Recorder::default();
        let source = fixed(&memory);
        let drain_once = |queue: &mut Queue| {
            drain(
                queue,
                &source,
                &backend,
                &mut Engine::default(),
                0,
                &Progress::default(),
            )
        };
        assert_eq!(
            drain_once(&mut queue),
            Drained::Handled {
                count: MAX_BATCH,
                notify: true,
                more: true
            }
        );
        assert_eq!(mock.used().idx().load(), MAX_BATCH as u16);
        assert_eq!(
            drain_once(&mut queue),
            Drained::Handled {
                count: 5,
                notify: true,
                more: false
            }
        );
        assert_eq!(queue.next_avail(), requests as u16);
    }

    #[test]
    fn a_killed_servers_requests_run_again_in_order_and_serving_goes_on() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        // Six one-descriptor chains, heads 0 to 5, each with a byte to write.
        let chains: Vec<RawDescriptor> = (0..6)
            .map(|i| descriptor(0x8000 + 0x100 * i as u64, 1, true))
            .collect();
        mock.add_desc_chains(&chains, 0).unwrap();
        let path = std::env::temp_dir().join(format!("vduse-takeover-{}", std::process::id()));
        let log = crate::runtime::inflight::InflightLog::create(
            &path,
            &crate::runtime::inflight::Identity::default(),
            1,
            16,
        )
        .unwrap();
        // The first server took five, answered 1 and 3, and was killed.
        {
            let mut first: Queue = mock.create_queue().unwrap();
            let mut queue_log = log.queue(0);
            for head in 0..5 {
                first.pop_descriptor_chain(memory.as_ref()).unwrap();
                queue_log.started(head);
            }
            let done = [Used { head: 1, len: 1 }, Used { head: 3, len: 1 }];
            assert_eq!(
                publish_used(&mut first, &memory, &done, 0, Some(&queue_log)),
                2
            );
        }
        // The next one runs 0, 2 and 4 again, oldest first, and goes on at 5.
        let mut queue: Queue = mock.create_queue().unwrap();
        let backend = Recorder::default();
        let source = fixed(&memory);
        let mut engine = Engine {
            log: Some(log.queue(0)),
            ..Engine::default()
        };
        take_over(&mut queue, &source, &backend, &mut engine, 0);
        assert_eq!((queue.next_avail(), queue.next_used()), (5, 2));
        let heads = |backend: &Recorder| -> Vec<u16> {
            backend.calls.lock().unwrap().iter().map(|c| c.1).collect()
        };
        assert_eq!(heads(&backend), [0, 2, 4]);
        let outcome = drain(
            &mut queue,
            &source,
            &backend,
            &mut engine,
            0,
            &Progress::default(),
        );
        assert!(
            matches!(outcome, Drained::Handled { count: 4, .. }),
            "{outcome:?}"
        );
        assert_eq!(heads(&backend), [0, 2, 4, 5]);
        assert_eq!(mock.used().idx().load(), 6);
        let used: Vec<u32> = (0..6)
            .map(|slot| mock.used().ring().ref_at(slot).unwrap().load().id())
            .collect();
        assert_eq!(used, [1, 3, 0, 2, 4, 5]);
        // Nothing is left in flight for a third server.
        let recovery = log.queue(0).recover(6, |_| None);
        assert_eq!((recovery.next_avail, recovery.replay.len()), (6, 0));
        log.remove().unwrap();
    }

    #[test]
    fn drains_every_request_and_notifies_once() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        // Three chains: (read, write), (read), (read, read, write).
        let chains = [
            vec![descriptor(0x2000, 16, false), descriptor(0x3000, 1, true)],
            vec![descriptor(0x2100, 16, false)],
            vec![
                descriptor(0x2200, 16, false),
                descriptor(0x2300, 512, false),
                descriptor(0x3100, 1, true),
            ],
        ];
        let mut offset = 0;
        for chain in &chains {
            let mut linked = chain.clone();
            let n = linked.len();
            for (i, d) in linked.iter_mut().enumerate() {
                let s = SplitDescriptor::from(*d);
                let (flags, next) = if i + 1 < n {
                    (
                        s.flags() | virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16,
                        offset + i as u16 + 1,
                    )
                } else {
                    (s.flags(), 0)
                };
                *d = RawDescriptor::from(SplitDescriptor::new(s.addr().0, s.len(), flags, next));
            }
            mock.add_desc_chains(&linked, offset).unwrap();
            offset += n as u16;
        }
        let mut queue: Queue = mock.create_queue().unwrap();
        let backend = Recorder::default();
        let source = fixed(&memory);
        let outcome = drain(
            &mut queue,
            &source,
            &backend,
            &mut Engine::default(),
            0,
            &Progress::default(),
        );
        assert_eq!(
            outcome,
            Drained::Handled {
                count: 3,
                notify: true,
                more: false
            }
        );
        assert_eq!(
            *backend.calls.lock().unwrap(),
            vec![(0, 0, 2), (0, 2, 1), (0, 3, 3)]
        );
        assert_eq!(mock.used().idx().load(), 3);
        let used: Vec<(u32, u32)> = (0..3)
            .map(|i| {
                let e = mock.used().ring().ref_at(i).unwrap().load();
                (e.id(), e.len())
            })
            .collect();
        assert_eq!(used, vec![(0, 1), (2, 0), (3, 1)]);
        assert_eq!(memory.read_obj::<u8>(GuestAddress(0x3100)).unwrap(), 0xab);
        assert_eq!(queue.next_avail(), 3);
        assert_eq!(*source.refreshes.lock().unwrap(), 0);

        // Nothing new: no request, no interrupt.
        let outcome = drain(
            &mut queue,
            &source,
            &backend,
            &mut Engine::default(),
            0,
            &Progress::default(),
        );
        assert_eq!(
            outcome,
            Drained::Handled {
                count: 0,
                notify: false,
                more: false
            }
        );
    }

    #[test]
    fn indirect_chains_are_followed() {
        // The mock puts indirect tables at 0x3000_0000: give it memory there too.
        let memory = Arc::new(
            GuestMemoryMmap::from_ranges(&[
                (GuestAddress(0), 0x1_0000),
                (GuestAddress(0x3000_0000), 0x1000),
            ])
            .unwrap(),
        );
        let mut mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        mock.add_indirect_chain(3).unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        let backend = Recorder::default();
        let source = fixed(&memory);
        drain(
            &mut queue,
            &source,
            &backend,
            &mut Engine::default(),
            2,
            &Progress::default(),
        );
        assert_eq!(*backend.calls.lock().unwrap(), vec![(2, 0, 3)]);
    }

    #[test]
    fn an_unmapped_buffer_asks_for_a_remap_once_then_is_served() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        // A buffer past the end of the memory (a bounce region the worker has not mapped).
        mock.add_desc_chains(&[descriptor(0x100_0000, 16, false)], 0)
            .unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        let backend = Recorder::default();
        let source = fixed(&memory);
        drain(
            &mut queue,
            &source,
            &backend,
            &mut Engine::default(),
            0,
            &Progress::default(),
        );
        assert_eq!(*source.refreshes.lock().unwrap(), 1);
        // Still unmapped after the remap: the backend answers it (with an error status).
        assert_eq!(backend.calls.lock().unwrap().len(), 1);
        assert_eq!(mock.used().idx().load(), 1);
    }

    #[test]
    fn rings_outside_memory_are_not_served() {
        let memory = memory();
        let other: Arc<Memory> =
            Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1_0000)]).unwrap());
        let mock = MockSplitQueue::create(other.as_ref(), GuestAddress(0x8000), 16);
        let mut queue: Queue = mock.create_queue().unwrap();
        queue.set_desc_table_address(Some(0x2_0000), Some(0));
        let source = fixed(&memory);
        let outcome = drain(
            &mut queue,
            &source,
            &Recorder::default(),
            &mut Engine::default(),
            0,
            &Progress::default(),
        );
        assert_eq!(outcome, Drained::Unmapped);
        assert_eq!(*source.refreshes.lock().unwrap(), 1);
    }

    #[test]
    fn event_idx_decides_the_interrupt() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        let mut queue: Queue = mock.create_queue().unwrap();
        queue.set_event_idx(true);
        let backend = Recorder::default();
        let source = fixed(&memory);
        // used_event sits after the avail ring: avail + 4 + 2 * size.
        let used_event = GuestAddress(mock.avail_addr().0 + 4 + 2 * 16);

        // The driver wants an interrupt once used idx passes 1: two requests cross it.
        memory.write_obj(1u16.to_le(), used_event).unwrap();
        mock.add_desc_chains(
            &[descriptor(0x2000, 16, false), descriptor(0x2100, 16, false)],
            0,
        )
        .unwrap();
        let outcome = drain(
            &mut queue,
            &source,
            &backend,
            &mut Engine::default(),
            0,
            &Progress::default(),
        );
        assert_eq!(
            outcome,
            Drained::Handled {
                count: 2,
                notify: true,
                more: false
            }
        );
        // The worker asked for a kick at the next avail index (avail_event).
        let avail_event = GuestAddress(mock.used_addr().0 + 4 + 8 * 16);
        assert_eq!(memory.read_obj::<u16>(avail_event).unwrap(), 2);

        // Next it wants one only after used idx passes 10: one request does not get there.
        memory.write_obj(10u16.to_le(), used_event).unwrap();
        mock.add_desc_chains(&[descriptor(0x2200, 16, false)], 2)
            .unwrap();
        let outcome = drain(
            &mut queue,
            &source,
            &backend,
            &mut Engine::default(),
            0,
            &Progress::default(),
        );
        assert_eq!(
            outcome,
            Drained::Handled {
                count: 1,
                notify: false,
                more: false
            }
        );
    }

    #[test]
    fn no_interrupt_flag_is_honoured_without_event_idx() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        let mut queue: Queue = mock.create_queue().unwrap();
        // avail->flags, the ring's first field.
        memory
            .write_obj(
                (virtio_bindings::virtio_ring::VRING_AVAIL_F_NO_INTERRUPT as u16).to_le(),
                mock.avail_addr(),
            )
            .unwrap();
        mock.add_desc_chains(&[descriptor(0x2000, 16, false)], 0)
            .unwrap();
        let outcome = drain(
            &mut queue,
            &fixed(&memory),
            &Recorder::default(),
            &mut Engine::default(),
            0,
            &Progress::default(),
        );
        assert_eq!(
            outcome,
            Drained::Handled {
                count: 1,
                notify: false,
                more: false
            }
        );
    }

    #[test]
    fn completions_out_of_order_fill_the_used_ring_in_one_batch() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        mock.add_desc_chains(
            &[
                descriptor(0x2000, 16, false),
                descriptor(0x2100, 16, false),
                descriptor(0x2200, 16, false),
            ],
            0,
        )
        .unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        let state = DeferredState::new();
        let backend = Arc::new(Deferred(state.clone()));
        let mut engine = Engine::new(backend.clone().engine(0, 16));
        let source = fixed(&memory);
        // All three start; none is finished: nothing used, no interrupt, one submit.
        let outcome = drain(
            &mut queue,
            &source,
            backend.as_ref(),
            &mut engine,
            0,
            &Progress::default(),
        );
        assert_eq!(
            outcome,
            Drained::Handled {
                count: 0,
                notify: false,
                more: false
            }
        );
        assert_eq!((state.started(), engine.in_flight()), (3, 3));
        assert_eq!(*state.submits.lock().unwrap(), [3]);
        assert_eq!(mock.used().idx().load(), 0);
        // Each request holds the memory it was started with.
        assert_eq!(Arc::strong_count(&memory), 2 + 3);

        // They finish newest first: the used ring says so, and one interrupt covers them.
        state.finish_in_reverse();
        let outcome = drain(
            &mut queue,
            &source,
            backend.as_ref(),
            &mut engine,
            0,
            &Progress::default(),
        );
        assert_eq!(
            outcome,
            Drained::Handled {
                count: 3,
                notify: true,
                more: false
            }
        );
        assert_eq!(engine.in_flight(), 0);
        assert_eq!(mock.used().idx().load(), 3);
        let used: Vec<(u32, u32)> = (0..3)
            .map(|i| {
                let e = mock.used().ring().ref_at(i).unwrap().load();
                (e.id(), e.len())
            })
            .collect();
        assert_eq!(used, [(2, 12), (1, 11), (0, 10)]);
        // Reaped: the memory is let go.
        assert_eq!(Arc::strong_count(&memory), 2);
    }

    #[test]
    fn no_more_than_the_queue_size_is_in_flight() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 4);
        let chains: Vec<_> = (0..4)
            .map(|i| descriptor(0x2000 + 0x100 * i, 16, false))
            .collect();
        mock.add_desc_chains(&chains, 0).unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        let state = DeferredState::new();
        let backend = Arc::new(Deferred(state.clone()));
        let mut engine = Engine::new(backend.clone().engine(0, 4));
        let source = fixed(&memory);
        drain(
            &mut queue,
            &source,
            backend.as_ref(),
            &mut engine,
            0,
            &Progress::default(),
        );
        assert_eq!(state.started(), 4);
        // A driver that makes the same heads available again (it must not) gets nothing
        // started past the queue's size.
        let avail_idx = GuestAddress(mock.avail_addr().0 + 2);
        memory.write_obj(8u16.to_le(), avail_idx).unwrap();
        drain(
            &mut queue,
            &source,
            backend.as_ref(),
            &mut engine,
            0,
            &Progress::default(),
        );
        assert_eq!((state.started(), queue.next_avail()), (4, 4));
        state.finish_in_reverse();
        drain(
            &mut queue,
            &source,
            backend.as_ref(),
            &mut engine,
            0,
            &Progress::default(),
        );
        assert_eq!(mock.used().idx().load(), 4);
        assert_eq!(queue.next_avail(), 8);
    }

    #[test]
    fn stopping_still_reaps_what_is_in_flight() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        mock.add_desc_chains(&[descriptor(0x2000, 16, false)], 0)
            .unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        let state = DeferredState::new();
        let backend = Arc::new(Deferred(state.clone()));
        let mut engine = Engine::new(backend.clone().engine(0, 16));
        let source = fixed(&memory);
        drain(
            &mut queue,
            &source,
            backend.as_ref(),
            &mut engine,
            0,
            &Progress::default(),
        );
        mock.add_desc_chains(&[descriptor(0x2100, 16, false)], 1)
            .unwrap();
        state.finish_in_reverse();
        let outcome = drain(
            &mut queue,
            &source,
            backend.as_ref(),
            &mut engine,
            0,
            &stopped(),
        );
        assert_eq!(
            outcome,
            Drained::Handled {
                count: 1,
                notify: true,
                more: false
            }
        );
        // The second request stays available.
        assert_eq!((queue.next_avail(), state.started()), (1, 0));
    }

    #[test]
    fn stopping_leaves_the_rest_available() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        mock.add_desc_chains(
            &[descriptor(0x2000, 16, false), descriptor(0x2100, 16, false)],
            0,
        )
        .unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        let outcome = drain(
            &mut queue,
            &fixed(&memory),
            &Recorder::default(),
            &mut Engine::default(),
            0,
            &stopped(),
        );
        assert_eq!(
            outcome,
            Drained::Handled {
                count: 0,
                notify: false,
                more: false
            }
        );
        assert_eq!(queue.next_avail(), 0);
    }

    #[test]
    fn queue_parameters_come_from_vq_info() {
        let mut info = crate::uapi::VduseVqInfo {
            index: 0,
            num: 64,
            desc_addr: 0x1000,
            driver_addr: 0x2000,
            device_addr: 0x3000,
            ready: 1,
            ..Default::default()
        };
        info.state = crate::uapi::VduseVqStateUnion::from_split(crate::uapi::VduseVqStateSplit {
            avail_index: 5,
        });
        let queue = configure_queue(256, &info, true).unwrap();
        assert_eq!(
            (
                queue.size(),
                queue.desc_table(),
                queue.avail_ring(),
                queue.used_ring()
            ),
            (64, 0x1000, 0x2000, 0x3000)
        );
        assert_eq!((queue.next_avail(), queue.next_used()), (5, 5));
        assert!(queue.event_idx_enabled() && queue.ready());
        info.num = 512;
        assert!(configure_queue(256, &info, false).is_err());
        info.num = 48;
        assert!(configure_queue(256, &info, false).is_err());
        assert!(configure_queue(100, &info, false).is_err());
    }
}
