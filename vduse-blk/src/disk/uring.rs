//! [`UringQueue`]: the `io-uring` executor of a file disk: a queue's reads, writes and
//! flushes in flight at once.
//!
//! The queue's worker thread does everything: [`UringQueue::start`] queues an SQE
//! (`READV`/`WRITEV` straight on guest memory, or `FSYNC` with `DATASYNC`),
//! [`UringQueue::submit`] submits the batch in one `io_uring_enter`, and when the eventfd
//! registered with the ring fires, [`UringQueue::reap`] turns the CQEs into finished
//! operations. Each operation in flight has a slot, indexed by the SQE's `user_data`, that
//! owns its iovecs and the guest memory they point into. Operations io_uring does not help
//! with (discard, write zeroes, and with `cache: none` guest buffers that need an aligned
//! bounce buffer) are carried out synchronously on the worker.
//!
//! FLUSH: virtio-blk promises that a flush makes durable the writes that *completed*
//! before the driver submitted it. A write completes for the driver only after its CQE
//! came back and the worker put it in the used ring, so every such write is done in the
//! kernel before the flush's `fdatasync` is even queued: `IORING_OP_FSYNC` with
//! `IORING_FSYNC_DATASYNC` needs no drain or link. Writes still in flight next to the flush
//! are not covered, and need not be.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;

use io_uring::{IoUring, opcode, types};

use vduse::event::Event;

use super::{DiskQueue, FileDisk, Finished, Operation, Token, completion_event};
use crate::guest::{GuestData, IOV_MAX, IoVecs};

/// Largest read or write on a file in memory (tmpfs) done inline on the queue's thread.
/// io_uring cannot try such a file without blocking (tmpfs has no `RWF_NOWAIT`), so it
/// hands every operation to an io-wq worker thread; for a few pages, that hand-off and
/// wake-up cost more than the copy itself. Larger copies still go to io-wq, where several
/// proceed in parallel.
const INLINE_MEMORY_COPY: usize = 64 * 1024;

/// What a slot's SQE does.
enum Op {
    Read {
        offset: u64,
        left: usize,
        iovecs: IoVecs,
    },
    Write {
        offset: u64,
        left: usize,
        iovecs: IoVecs,
    },
    Flush,
}

/// One operation in flight.
struct Slot {
    token: Token,
    /// Keeps the buffers mapped until the CQE is reaped (see `push`); `None` for a flush.
    _data: Option<GuestData>,
    op: Op,
}

/// A queue's io_uring over a file disk.
pub struct UringQueue {
    disk: Arc<FileDisk>,
    ring: IoUring,
    notifier: Event,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    in_flight: usize,
    unsubmitted: usize,
}

impl std::fmt::Debug for UringQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringQueue")
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl UringQueue {
    /// A ring for a queue of `size` entries.
    pub fn new(disk: Arc<FileDisk>, size: u16) -> std::io::Result<Self> {
        let entries = u32::from(size.max(1)).next_power_of_two();
        let ring = IoUring::new(entries)?;
        let notifier = completion_event("io_uring")?;
        ring.submitter()
            .register_eventfd(notifier.as_fd().as_raw_fd())?;
        let slots = usize::from(size.max(1));
        Ok(Self {
            disk,
            ring,
            notifier,
            slots: (0..slots).map(|_| None).collect(),
            free: (0..slots).rev().collect(),
            in_flight: 0,
            unsubmitted: 0,
        })
    }

    /// The SQE `operation` becomes, or `None` when it is better carried out at once.
    fn op(&self, operation: &Operation) -> Option<Op> {
        let (offset, data, write) = match operation {
            Operation::Flush => return Some(Op::Flush),
            Operation::Read { offset, data } => (*offset, data, false),
            Operation::Write { offset, data } => (*offset, data, true),
            Operation::Discard { .. } | Operation::WriteZeroes { .. } => return None,
        };
        if (self.disk.is_memory_backed() && data.len() <= INLINE_MEMORY_COPY)
            || data.is_empty()
            || data.iovecs().len() > IOV_MAX
            || self.disk.needs_bounce(data)
        {
            return None;
        }
        let iovecs = IoVecs::of(data);
        let left = data.len();
        Some(if write {
            Op::Write {
                offset,
                left,
                iovecs,
            }
        } else {
            Op::Read {
                offset,
                left,
                iovecs,
            }
        })
    }

    /// Queues the SQE of slot `index`.
    fn push(&mut self, index: usize) {
        let fd = types::Fd(self.disk.file().as_raw_fd());
        let Some(slot) = &self.slots[index] else {
            return;
        };
        let entry = match &slot.op {
            Op::Read { offset, iovecs, .. } => {
                opcode::Readv::new(fd, iovecs.0.as_ptr(), iovecs.0.len() as u32)
                    .offset(*offset)
                    .build()
            }
            Op::Write { offset, iovecs, .. } => {
                opcode::Writev::new(fd, iovecs.0.as_ptr().cast(), iovecs.0.len() as u32)
                    .offset(*offset)
                    .build()
            }
            Op::Flush => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
        }
        .user_data(index as u64);
        loop {
            // SAFETY: the SQE points at the slot's iovecs (a heap buffer that stays put
            // while the slot lives) and through them into guest memory of the memory
            // snapshot the slot's `GuestData` holds. The slot, and with it that `Arc`, is
            // only dropped once the CQE for `index` is reaped (or, in `Drop`, after every
            // CQE came back), so a remap or reset of the IOTLB cannot unmap the buffers
            // under the I/O; the file descriptor belongs to the disk, which the queue's
            // `Arc` keeps open.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            match pushed {
                Ok(()) => break,
                // The SQ is full of unsubmitted entries (it holds the queue's size, so
                // this does not happen): make room.
                Err(_full) => {
                    if let Err(error) = self.ring.submit() {
                        log::warn!("io_uring submit: {error}");
                    }
                }
            }
        }
        self.unsubmitted += 1;
    }

    /// Handles one CQE; returns the finished operation when it is done.
    fn complete(&mut self, index: usize, result: i32) -> Option<Finished> {
        let slot = self.slots.get_mut(index)?.as_mut()?;
        let outcome = match &mut slot.op {
            Op::Read {
                offset,
                left,
                iovecs,
            }
            | Op::Write {
                offset,
                left,
                iovecs,
            } => match result {
                moved if moved > 0 && (moved as usize) < *left => {
                    // Short transfer: the rest goes again.
                    *offset += moved as u64;
                    *left -= moved as usize;
                    iovecs.advance(moved as usize);
                    None
                }
                moved if moved > 0 => Some(Ok(())),
                0 => Some(Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof))),
                error if -error == libc::EAGAIN || -error == libc::EINTR => None,
                error => Some(Err(std::io::Error::from_raw_os_error(-error))),
            },
            Op::Flush => Some(if result < 0 {
                Err(std::io::Error::from_raw_os_error(-result))
            } else {
                Ok(())
            }),
        };
        let Some(outcome) = outcome else {
            self.push(index);
            return None;
        };
        let slot = self.slots[index].take()?;
        self.free.push(index);
        self.in_flight -= 1;
        Some((slot.token, outcome))
    }
}

impl DiskQueue for UringQueue {
    fn start(&mut self, token: Token, operation: Operation) -> Option<std::io::Result<()>> {
        let (op, index) = match (self.op(&operation), self.free.pop()) {
            (Some(op), Some(index)) => (op, index),
            (_, free) => {
                self.free.extend(free);
                return Some(self.disk.execute(&operation));
            }
        };
        let data = match operation {
            Operation::Read { data, .. } | Operation::Write { data, .. } => Some(data),
            _ => None,
        };
        self.slots[index] = Some(Slot {
            token,
            _data: data,
            op,
        });
        self.in_flight += 1;
        self.push(index);
        None
    }

    fn submit(&mut self) {
        if self.unsubmitted == 0 {
            return;
        }
        loop {
            match self.ring.submit() {
                Ok(_) => break,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // Left in the SQ: the next submit takes them.
                    log::warn!("io_uring submit: {error}");
                    return;
                }
            }
        }
        self.unsubmitted = 0;
    }

    fn completion_fd(&self) -> BorrowedFd<'_> {
        self.notifier.as_fd()
    }

    fn reap(&mut self, done: &mut Vec<Finished>) {
        self.notifier.drain();
        let finished: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|cqe| (cqe.user_data(), cqe.result()))
            .collect();
        for (index, result) in finished {
            if let Some(finished) = self.complete(index as usize, result) {
                done.push(finished);
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}

impl Drop for UringQueue {
    fn drop(&mut self) {
        // The worker drops the engine with nothing in flight; should it not (an error
        // path), wait for the kernel to be done with every buffer before the memory goes.
        while self.in_flight > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    log::error!(
                        "io_uring: {error} while waiting for {} requests: their memory is kept",
                        self.in_flight
                    );
                    std::mem::forget(std::mem::take(&mut self.slots));
                    return;
                }
            }
            let finished: Vec<u64> = self.ring.completion().map(|cqe| cqe.user_data()).collect();
            for index in finished {
                if let Some(slot) = self.slots.get_mut(index as usize).and_then(Option::take) {
                    drop(slot);
                    self.in_flight -= 1;
                }
            }
        }
    }
}
