//! Engines that keep many requests of one queue in flight (`io-engine`).
//!
//! The `vduse` runtime gives each queue's worker thread the [`QueueEngine`] that
//! `for_queue` makes (see `vduse::backend` for the contract):
//!
//! - **io-uring** ([`uring::UringEngine`]): reads, writes and flushes become io_uring
//!   operations straight on guest memory, submitted once per batch and reaped by the
//!   worker itself when the ring's eventfd fires. No other thread is involved. Requests
//!   io_uring does not help with (discard, write zeroes, GET_ID, malformed chains, and with
//!   `cache: none` guest buffers that need an aligned bounce buffer) run synchronously on
//!   the worker.
//! - **threads** ([`ThreadsEngine`]): a pool of threads per queue, each serving a whole
//!   request synchronously (`preadv`/`pwritev`, bounce buffers with `cache: none`), with
//!   the finished ones handed back through a list and an eventfd.
//! - **sync**: no engine: the worker calls `Backend::handle`, one request at a time.
//!
//! `auto` is io-uring when this process may set up a ring (io_uring_setup fails with
//! ENOSYS on kernels without it, EPERM where it is disabled by sysctl or seccomp), else
//! threads.

pub mod nbd;
pub mod uring;

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rustix::event::{EventfdFlags, eventfd};
use serde::{Deserialize, Serialize};
use vduse::backend::{Chain, Memory, QueueEngine, Used};

use crate::backend::BlockBackend;
use crate::request::GuestBuffers;

/// How the requests of a queue are executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IoEngine {
    /// io_uring where the kernel allows it, else `threads`.
    Auto,
    /// io_uring: each queue's reads, writes and flushes in flight at once, submitted and
    /// reaped by the queue's thread.
    IoUring,
    /// A pool of threads per queue doing synchronous I/O.
    Threads,
    /// One request at a time per queue, on the queue's thread.
    Sync,
}

impl IoEngine {
    /// The word the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            IoEngine::Auto => "auto",
            IoEngine::IoUring => "io-uring",
            IoEngine::Threads => "threads",
            IoEngine::Sync => "sync",
        }
    }
}

/// Most threads of one queue's pool.
pub const MAX_THREADS_PER_QUEUE: u16 = 16;

/// Whether this process can set up an io_uring; the error says why not.
pub fn io_uring_available() -> std::io::Result<()> {
    io_uring::IoUring::new(2).map(drop)
}

/// The engine `wanted` comes to on this host: `auto` is io-uring where a ring can be set
/// up, else threads; io-uring where it cannot is threads, with a warning.
pub fn resolve(wanted: IoEngine) -> IoEngine {
    match wanted {
        IoEngine::Sync | IoEngine::Threads => wanted,
        IoEngine::Auto | IoEngine::IoUring => match io_uring_available() {
            Ok(()) => IoEngine::IoUring,
            Err(error) => {
                if wanted == IoEngine::IoUring {
                    log::warn!(
                        "io-engine io-uring: io_uring is not available ({error}); using threads"
                    );
                } else {
                    log::info!("io_uring is not available ({error}): requests go to a thread pool");
                }
                IoEngine::Threads
            }
        },
    }
}

/// The engine of queue `queue` (`size` entries) of `backend`, as its `io-engine` says.
pub(crate) fn for_queue(
    backend: Arc<BlockBackend>,
    queue: u16,
    size: u16,
) -> Option<Box<dyn QueueEngine>> {
    if backend.nbd().is_some() {
        return match nbd::NbdEngine::new(backend, queue) {
            Ok(engine) => engine.map(|engine| Box::new(engine) as Box<dyn QueueEngine>),
            Err(error) => {
                log::warn!(
                    "queue {queue}: cannot set up its NBD engine ({error}); one request at a time"
                );
                None
            }
        };
    }
    match backend.io_engine() {
        IoEngine::Sync | IoEngine::Auto => None,
        IoEngine::Threads => threads(backend, queue, size),
        IoEngine::IoUring => match uring::UringEngine::new(backend.clone(), size) {
            Ok(engine) => Some(Box::new(engine)),
            Err(error) => {
                log::warn!("queue {queue}: cannot set up io_uring ({error}); using threads");
                threads(backend, queue, size)
            }
        },
    }
}

fn threads(backend: Arc<BlockBackend>, queue: u16, size: u16) -> Option<Box<dyn QueueEngine>> {
    match ThreadsEngine::new(backend, queue, size.clamp(1, MAX_THREADS_PER_QUEUE)) {
        Ok(engine) => Some(Box::new(engine)),
        Err(error) => {
            log::warn!(
                "queue {queue}: cannot start its I/O threads ({error}); one request at a time"
            );
            None
        }
    }
}

/// iovecs that point into guest memory, handed to the kernel (io_uring, `readv` and
/// `sendmsg` on an NBD socket). They hold raw pointers, which is why they are not `Send`
/// or `Sync` by themselves.
pub(crate) struct IoVecs(pub Vec<libc::iovec>);

// SAFETY: the pointers are only dereferenced by the kernel or by copies into and out of
// them, during the I/O of the request that owns both them and the memory snapshot they
// point into; moving or sharing the list between threads changes neither.
unsafe impl Send for IoVecs {}
// SAFETY: as for `Send`: the list itself is never changed through a shared reference.
unsafe impl Sync for IoVecs {}

impl IoVecs {
    /// The iovecs of `buffers`, in order.
    pub fn of(buffers: &GuestBuffers<'_>) -> Self {
        IoVecs(
            buffers
                .slices()
                .iter()
                .map(|slice| libc::iovec {
                    iov_base: slice.ptr_guard_mut().as_ptr().cast(),
                    iov_len: slice.len(),
                })
                .collect(),
        )
    }

    /// The iovecs of `len` bytes starting `position` bytes in (fewer when the list ends
    /// first).
    pub fn range(&self, mut position: usize, mut len: usize) -> Vec<libc::iovec> {
        let mut out = Vec::new();
        for iovec in &self.0 {
            if len == 0 {
                break;
            }
            if position >= iovec.iov_len {
                position -= iovec.iov_len;
                continue;
            }
            let take = (iovec.iov_len - position).min(len);
            out.push(libc::iovec {
                iov_base: iovec.iov_base.cast::<u8>().wrapping_add(position).cast(),
                iov_len: take,
            });
            position = 0;
            len -= take;
        }
        out
    }

    /// Drops the first `count` bytes (after a short transfer).
    pub fn advance(&mut self, count: usize) {
        advance(&mut self.0, count);
    }
}

impl std::fmt::Debug for IoVecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes: usize = self.0.iter().map(|iovec| iovec.iov_len).sum();
        write!(f, "IoVecs({} iovecs, {bytes} bytes)", self.0.len())
    }
}

/// Drops the first `count` bytes of `iovecs` (after a short transfer).
pub(crate) fn advance(iovecs: &mut Vec<libc::iovec>, mut count: usize) {
    let mut drop_whole = 0;
    for iovec in iovecs.iter_mut() {
        if count == 0 {
            break;
        }
        if iovec.iov_len <= count {
            count -= iovec.iov_len;
            drop_whole += 1;
        } else {
            iovec.iov_base = iovec.iov_base.cast::<u8>().wrapping_add(count).cast();
            iovec.iov_len -= count;
            count = 0;
        }
    }
    iovecs.drain(..drop_whole);
}

/// A non-blocking eventfd that says completions are waiting.
#[derive(Debug)]
pub(crate) struct Notifier(OwnedFd);

impl Notifier {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self(eventfd(
            0,
            EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK,
        )?))
    }

    pub fn notify(&self) {
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }

    pub fn drain(&self) {
        let mut value = [0u8; 8];
        let _ = rustix::io::read(&self.0, &mut value);
    }
}

impl AsFd for Notifier {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A request waiting for a pool thread: the chain and the memory it holds.
struct Job {
    memory: Arc<Memory>,
    chain: Chain,
}

#[derive(Default)]
struct Jobs {
    queue: VecDeque<Job>,
    shutdown: bool,
}

struct Pool {
    jobs: Mutex<Jobs>,
    more: Condvar,
    done: Mutex<Vec<Used>>,
    notifier: Notifier,
}

impl Pool {
    fn jobs(&self) -> MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn done(&self) -> MutexGuard<'_, Vec<Used>> {
        self.done.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A queue's thread pool: each thread serves whole requests synchronously.
pub struct ThreadsEngine {
    pool: Arc<Pool>,
    threads: Vec<JoinHandle<()>>,
    in_flight: usize,
}

impl std::fmt::Debug for ThreadsEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadsEngine")
            .field("threads", &self.threads.len())
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl ThreadsEngine {
    /// `count` threads serving queue `queue` of `backend`.
    pub fn new(backend: Arc<BlockBackend>, queue: u16, count: u16) -> std::io::Result<Self> {
        let pool = Arc::new(Pool {
            jobs: Mutex::new(Jobs::default()),
            more: Condvar::new(),
            done: Mutex::new(Vec::new()),
            notifier: Notifier::new()?,
        });
        let mut engine = Self {
            pool: pool.clone(),
            threads: Vec::new(),
            in_flight: 0,
        };
        for i in 0..count {
            let (pool, backend) = (pool.clone(), backend.clone());
            let thread = std::thread::Builder::new()
                .name(format!("vduse-vq{queue}-io{i}"))
                .spawn(move || serve_jobs(&pool, &backend))?;
            engine.threads.push(thread);
        }
        Ok(engine)
    }
}

fn serve_jobs(pool: &Pool, backend: &BlockBackend) {
    loop {
        let job = {
            let mut jobs = pool.jobs();
            loop {
                if let Some(job) = jobs.queue.pop_front() {
                    break job;
                }
                if jobs.shutdown {
                    return;
                }
                jobs = pool.more.wait(jobs).unwrap_or_else(|e| e.into_inner());
            }
        };
        let head = job.chain.head_index();
        let len = backend.serve(&job.memory, job.chain);
        // The memory goes before the completion is told: nothing of the request is left.
        drop(job.memory);
        pool.done().push(Used { head, len });
        pool.notifier.notify();
    }
}

impl QueueEngine for ThreadsEngine {
    fn start(&mut self, memory: Arc<Memory>, chain: Chain) -> Option<u32> {
        self.pool.jobs().queue.push_back(Job { memory, chain });
        self.pool.more.notify_one();
        self.in_flight += 1;
        None
    }

    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.pool.notifier.as_fd())
    }

    fn reap(&mut self, done: &mut Vec<Used>) {
        self.pool.notifier.drain();
        let mut finished = self.pool.done();
        self.in_flight -= finished.len();
        done.append(&mut finished);
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}

impl Drop for ThreadsEngine {
    fn drop(&mut self) {
        // The threads finish what was queued, then end.
        self.pool.jobs().shutdown = true;
        self.pool.more.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
