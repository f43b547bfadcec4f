//! One virtqueue's worker: a thread that sleeps on the queue's kick eventfd, drains the
//! available ring into the backend, fills the used ring and interrupts the driver once
//! per batch when its notification suppression asks for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, poll};
use rustix::io::Errno;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

use super::device_io::DeviceIo;
use super::drain::{Drained, Serving, drain};
use super::inflight::QueueLog;
use super::iotlb::MemorySource;
use super::recovery::take_over_queue;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::event::Event;

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

fn run(context: WorkerContext, queue: Queue, kick: Event, shared: &Shared) {
    let _wake = WakeOnExit {
        shared,
        wake: context.wake.clone(),
    };
    let mut worker = Worker::new(context, queue, kick, shared);
    if worker.context.take_over {
        worker.take_over();
    }
    log::debug!(
        "queue {}: worker started at avail index {}",
        worker.context.index,
        worker.queue.next_avail(),
    );
    // Requests may be waiting already: the driver can kick before the kick eventfd is set.
    worker.serve();
    let mut gave_back = false;
    loop {
        let stopping = shared.progress.stopping.load(Ordering::Acquire);
        if stopping && !gave_back {
            gave_back = true;
            worker.give_back_unstarted();
        }
        if stopping && worker.serving.in_flight() == 0 {
            log::debug!(
                "queue {}: worker stopped at avail index {} ({} drains, {} interrupts)",
                worker.context.index,
                worker.queue.next_avail(),
                worker.drains,
                worker.interrupts,
            );
            return;
        }
        if !worker.sleep(stopping) {
            return;
        }
        // Asked to stop while asleep: no new request is served; the top of the loop
        // decides whether anything is still in flight.
        if !stopping && shared.progress.stopping.load(Ordering::Acquire) {
            continue;
        }
        worker.serve();
    }
}

/// A worker thread's state: its queue, how it serves it, and what it counts.
struct Worker<'a> {
    context: WorkerContext,
    queue: Queue,
    kick: Event,
    shared: &'a Shared,
    serving: Serving,
    warned_unmapped: bool,
    drains: u64,
    interrupts: u64,
}

impl<'a> Worker<'a> {
    fn new(mut context: WorkerContext, queue: Queue, kick: Event, shared: &'a Shared) -> Self {
        let mut serving = Serving::for_queue(context.backend.clone(), context.index, queue.size());
        serving.busy_poll = context.busy_poll;
        serving.log = context.log.take();
        Self {
            context,
            queue,
            kick,
            shared,
            serving,
            warned_unmapped: false,
            drains: 0,
            interrupts: 0,
        }
    }

    /// Goes on from where a server that ended left the queue (`recovery.rs`).
    fn take_over(&mut self) {
        take_over_queue(
            &mut self.queue,
            self.context.memory.as_ref(),
            &mut self.serving,
            self.context.index,
        );
        self.publish_next_avail();
        // The server before may have filled the used ring and died before interrupting.
        self.interrupt();
    }

    /// Drains the queue until a drain stops short of its batch limit.
    fn serve(&mut self) {
        loop {
            let outcome = drain(
                &mut self.queue,
                self.context.memory.as_ref(),
                &mut self.serving,
                self.context.index,
                &self.shared.progress,
            );
            match outcome {
                Drained::Unmapped => {
                    if !self.warned_unmapped {
                        self.warned_unmapped = true;
                        log::error!(
                            "queue {}: its rings are not in the IOTLB; not serving it",
                            self.context.index
                        );
                    }
                    return;
                }
                Drained::Handled { notify, more, .. } => {
                    self.drains += 1;
                    if notify {
                        self.interrupts += 1;
                        self.interrupt();
                    }
                    if !more {
                        return;
                    }
                }
            }
        }
    }

    /// Stopping: rewinds the available index over the buffers the engine held without
    /// using them, so a later server (or this one after `SUSPEND`) takes them again.
    fn give_back_unstarted(&mut self) {
        let count = self.serving.engine.release_unstarted();
        if count == 0 {
            return;
        }
        if let Some(log) = self.serving.log.as_mut() {
            log.given_back(count);
        }
        self.queue
            .set_next_avail(self.queue.next_avail().wrapping_sub(count));
        self.publish_next_avail();
        log::debug!(
            "queue {}: {count} buffers given back to the available ring",
            self.context.index
        );
    }

    /// Sleeps until a kick, a stop, a completion or a state-log request; when `stopping`,
    /// only completions and state-log requests wake it (the stop eventfd stays readable).
    /// False when poll(2) fails and the worker must end.
    fn sleep(&mut self, stopping: bool) -> bool {
        let shared = self.shared;
        let kicked = {
            let mut fds = Vec::with_capacity(4);
            fds.push(PollFd::new(&shared.log_event, PollFlags::IN));
            if !stopping {
                fds.push(PollFd::new(&self.kick, PollFlags::IN));
                fds.push(PollFd::new(&shared.stop_event, PollFlags::IN));
            }
            if let Some(fd) = self.serving.engine.completion_fd() {
                fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
            }
            match poll(&mut fds, None) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(errno) => {
                    log::error!("queue {}: poll: {errno}", self.context.index);
                    return false;
                }
            }
            if fds[0].revents().contains(PollFlags::IN) {
                shared.log_event.drain();
                log_state(
                    &self.queue,
                    self.context.memory.as_ref(),
                    &self.serving,
                    self.context.index,
                );
            }
            !stopping && fds[1].revents().contains(PollFlags::IN)
        };
        if kicked {
            // Non-blocking: a spurious wake-up reads EAGAIN.
            self.kick.drain();
        }
        true
    }

    fn interrupt(&self) {
        if let Err(error) = self
            .context
            .dev
            .inject_vq_irq(u32::from(self.context.index))
        {
            log::warn!("queue {}: {error}", self.context.index);
        }
    }

    fn publish_next_avail(&self) {
        self.shared
            .progress
            .next_avail
            .store(self.queue.next_avail(), Ordering::Release);
    }
}

/// The ring state as the driver and this worker see it, logged at `warn` so it shows at
/// the default log level: a driver index ahead of the worker's with the worker asleep is
/// a missed kick; a used index past `used_event` the driver has not consumed is a missed
/// interrupt; everything equal with nothing in flight puts a stuck request before the ring.
fn log_state(queue: &Queue, source: &dyn MemorySource, serving: &Serving, index: u16) {
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
        serving.in_flight(),
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
mod tests {
    use super::*;

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
