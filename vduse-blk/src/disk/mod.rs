//! The disk: what stores the device's blocks, and the asynchronous interface the
//! virtio-blk backend drives it through. Nothing here knows about virtio or descriptor
//! chains: the unit is an [`Operation`] on byte offsets (read, write, flush, discard,
//! write zeroes), whose reads and writes move data straight between the disk and guest
//! memory ([`GuestData`], which keeps the memory snapshot mapped until the operation is
//! dropped).
//!
//! A [`Disk`] is one of:
//!
//! - [`file::FileDisk`]: a regular file or a block device on this host. Its operations run
//!   with the executor `io-engine` names: `sync` ([`FileDisk::execute`] on the caller's
//!   thread), `threads` ([`threads::ThreadPool`]) or `io-uring` ([`uring::UringQueue`]);
//!   `auto` is io-uring when this process may set up a ring (io_uring_setup fails with
//!   ENOSYS on kernels without it, EPERM where it is disabled by sysctl or seccomp), else
//!   threads.
//! - [`NbdDisk`]: an export of an NBD server, its operations pipelined on the queue's
//!   connection ([`nbd::NbdQueue`]).
//!
//! Each of a device's queues gets a [`DiskQueue`] from [`Disk::queue`]: operations are
//! started with a [`Token`], handed over in one batch by [`DiskQueue::submit`], and come
//! back as `(token, result)` from [`DiskQueue::reap`] when [`DiskQueue::completion_fd`]
//! is readable. A disk without one (`io-engine: sync`) is used through [`Disk::execute`],
//! one operation at a time.
//!
//! Layering: `disk` uses [`crate::guest`] and the NBD client ([`crate::nbd`]); it never
//! imports `config`, `request` or `backend`.

pub mod file;
mod io_engine;
pub mod nbd;
pub mod threads;
pub mod uring;

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use vduse::event::Event;

pub use self::file::{CacheMode, FileDisk};
pub use self::io_engine::{IoEngine, MAX_THREADS_PER_QUEUE, io_uring_available, resolve};
use crate::guest::GuestData;
use crate::nbd::NbdDisk;

/// The eventfd a queue's executor writes when operations have finished, which the
/// queue's worker polls.
fn completion_event(executor: &str) -> io::Result<Event> {
    Event::new(&format!("{executor} completion")).map_err(io::Error::other)
}

/// A byte range of a discard or write zeroes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First byte.
    pub offset: u64,
    /// Length in bytes (not 0).
    pub len: u64,
    /// Write zeroes only: the range may be deallocated, as long as it reads as zeros.
    pub may_unmap: bool,
}

/// What a disk is asked to do. Offsets and lengths are checked against the disk's size
/// (and, with O_DIRECT, its alignment) by the caller.
#[derive(Debug)]
pub enum Operation {
    /// Read `data.len()` bytes at `offset` into `data`.
    Read {
        /// First byte.
        offset: u64,
        /// Where the bytes go.
        data: GuestData,
    },
    /// Write `data` at `offset`.
    Write {
        /// First byte.
        offset: u64,
        /// The bytes.
        data: GuestData,
    },
    /// Make the writes that completed before it durable.
    Flush,
    /// Deallocate these ranges where the disk can (a hint: a disk that cannot succeeds).
    Discard {
        /// The ranges.
        extents: Vec<Extent>,
    },
    /// Make these ranges read as zeros.
    WriteZeroes {
        /// The ranges.
        extents: Vec<Extent>,
    },
}

impl Operation {
    /// What it is, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Read { .. } => "read",
            Operation::Write { .. } => "write",
            Operation::Flush => "flush",
            Operation::Discard { .. } => "discard",
            Operation::WriteZeroes { .. } => "write zeroes",
        }
    }
}

/// Names an operation in flight: given to [`DiskQueue::start`], handed back by
/// [`DiskQueue::reap`]. The caller picks it; the disk only carries it.
pub type Token = u64;

/// A finished operation.
pub type Finished = (Token, io::Result<()>);

/// One queue's operations in flight on a disk; owned by that queue's worker thread.
pub trait DiskQueue: Send {
    /// Starts `operation`. Returns its result when it was carried out at once; `None` when
    /// it completes later through [`DiskQueue::reap`], the queue then keeping `operation`
    /// (and the guest memory it holds) until it has.
    fn start(&mut self, token: Token, operation: Operation) -> Option<io::Result<()>>;

    /// Hands the operations started since the last call to whatever executes them, at
    /// once (one system call for the batch where the executor allows).
    fn submit(&mut self) {}

    /// Readable when finished operations may be waiting to be reaped.
    fn completion_fd(&self) -> BorrowedFd<'_>;

    /// Moves the operations that have finished into `done`, without blocking, and resets
    /// the readiness of [`DiskQueue::completion_fd`].
    fn reap(&mut self, done: &mut Vec<Finished>);

    /// Operations started and not yet reaped.
    fn in_flight(&self) -> usize;
}

/// What stores the device's blocks.
// One per device, made once: boxing the NBD variant would save nothing that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Disk {
    /// A file or block device on this host.
    File(Arc<FileDisk>),
    /// An NBD export.
    Nbd(NbdDisk),
}

impl From<FileDisk> for Disk {
    fn from(file: FileDisk) -> Self {
        Disk::File(Arc::new(file))
    }
}

impl From<NbdDisk> for Disk {
    fn from(disk: NbdDisk) -> Self {
        Disk::Nbd(disk)
    }
}

impl Disk {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Disk::File(file) => file.size(),
            Disk::Nbd(disk) => disk.size(),
        }
    }

    /// Whether the disk is read-only.
    pub fn is_read_only(&self) -> bool {
        match self {
            Disk::File(file) => file.is_read_only(),
            Disk::Nbd(disk) => disk.is_read_only(),
        }
    }

    /// The path or URI, for messages.
    pub fn describe(&self) -> String {
        match self {
            Disk::File(file) => file.path().display().to_string(),
            Disk::Nbd(disk) => disk.uri().to_string(),
        }
    }

    /// Whether [`Operation::Discard`] does anything.
    pub fn can_discard(&self) -> bool {
        match self {
            Disk::File(_) => true,
            Disk::Nbd(disk) => disk.can_trim(),
        }
    }

    /// Whether [`Operation::WriteZeroes`] is understood.
    pub fn can_write_zeroes(&self) -> bool {
        match self {
            Disk::File(_) => true,
            Disk::Nbd(disk) => disk.can_write_zeroes(),
        }
    }

    /// The block the disk itself works in, when it says: a block device's physical block,
    /// or the NBD server's preferred block (writes of less cost it a read-modify-write).
    pub fn preferred_block_size(&self) -> Option<u32> {
        match self {
            Disk::File(file) => file.device_physical_block_size(),
            Disk::Nbd(disk) => disk.preferred_block(),
        }
    }

    /// The alignment every offset and length must have (O_DIRECT), if any.
    pub fn alignment(&self) -> Option<usize> {
        match self {
            Disk::File(file) => file.direct_alignment(),
            Disk::Nbd(_) => None,
        }
    }

    /// Carries out `operation` and waits for it.
    pub fn execute(&self, operation: Operation) -> io::Result<()> {
        match self {
            Disk::File(file) => file.execute(&operation),
            Disk::Nbd(disk) => nbd::execute(disk, operation),
        }
    }

    /// The queue that keeps several operations of the device's queue `queue` (of `size`
    /// entries) in flight, as `io_engine` (resolved: not `auto`) says for a file disk; an
    /// NBD export always has one. `None`: [`Disk::execute`], one at a time.
    pub fn queue(&self, io_engine: IoEngine, queue: u16, size: u16) -> Option<Box<dyn DiskQueue>> {
        let file = match self {
            Disk::File(file) => file,
            Disk::Nbd(disk) => {
                return match nbd::NbdQueue::new(disk, queue) {
                    Ok(nbd) => Some(Box::new(nbd)),
                    Err(error) => {
                        log::warn!(
                            "queue {queue}: cannot set up its NBD engine ({error}); one request at a time"
                        );
                        None
                    }
                };
            }
        };
        match io_engine {
            IoEngine::Sync | IoEngine::Auto => None,
            IoEngine::Threads => thread_pool(file, queue, size),
            IoEngine::IoUring => match uring::UringQueue::new(file.clone(), size) {
                Ok(ring) => Some(Box::new(ring)),
                Err(error) => {
                    log::warn!("queue {queue}: cannot set up io_uring ({error}); using threads");
                    thread_pool(file, queue, size)
                }
            },
        }
    }
}

fn thread_pool(file: &Arc<FileDisk>, queue: u16, size: u16) -> Option<Box<dyn DiskQueue>> {
    let count = size.clamp(1, MAX_THREADS_PER_QUEUE);
    match threads::ThreadPool::new(file.clone(), queue, count) {
        Ok(pool) => Some(Box::new(pool)),
        Err(error) => {
            log::warn!(
                "queue {queue}: cannot start its I/O threads ({error}); one request at a time"
            );
            None
        }
    }
}
