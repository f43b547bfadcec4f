//! Operations on an [`NbdDisk`]: each becomes NBD commands on a connection, all in flight
//! at once; the connection's receiver finishes them.
//!
//! An operation may become several commands (a read or write longer than the server's
//! largest payload, a discard with several ranges); it finishes when the last one is
//! answered, failed if any failed. It is held until then, so the receiver can copy read
//! data straight into the guest's buffers.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use vduse::event::Event;

use super::{DiskQueue, Finished, Operation, Token, completion_event};
use crate::guest::IoVecs;
use crate::nbd::client::Finish;
use crate::nbd::protocol::{CMD_FLAG_NO_HOLE, command};
use crate::nbd::{Client, Command, NbdDisk};

/// The error an operation fails with when a command did: the client has logged why (an
/// error answer, or no answer within `nbd-timeout`).
fn failed() -> io::Error {
    io::Error::other("the NBD server failed the request")
}

/// The commands `operation` needs on an export whose largest payload is `max_payload` and
/// that takes FLUSH when `sends_flush`; none when there is nothing to ask the server.
fn commands(max_payload: u32, sends_flush: bool, operation: &Operation) -> Vec<Command> {
    match operation {
        Operation::Read { offset, data } | Operation::Write { offset, data } => {
            let read = matches!(operation, Operation::Read { .. });
            let len = data.len();
            let iovecs = IoVecs::of(data);
            let max = max_payload as usize;
            (0..len)
                .step_by(max)
                .map(|position| {
                    let piece = max.min(len - position);
                    Command {
                        command: if read { command::READ } else { command::WRITE },
                        flags: 0,
                        offset: offset + position as u64,
                        len: piece as u32,
                        data: Some(IoVecs(iovecs.range(position, piece))),
                    }
                })
                .collect()
        }
        Operation::Flush if sends_flush => vec![Command {
            command: command::FLUSH,
            flags: 0,
            offset: 0,
            len: 0,
            data: None,
        }],
        // A server without FLUSH has nothing to make durable: its answers already are.
        Operation::Flush => Vec::new(),
        // An extent is at most 1 GiB (the device's largest discard): it fits a command's
        // length.
        Operation::Discard { extents } => extents
            .iter()
            .map(|extent| Command {
                command: command::TRIM,
                flags: 0,
                offset: extent.offset,
                len: extent.len as u32,
                data: None,
            })
            .collect(),
        Operation::WriteZeroes { extents } => extents
            .iter()
            .map(|extent| Command {
                command: command::WRITE_ZEROES,
                flags: if extent.may_unmap {
                    0
                } else {
                    CMD_FLAG_NO_HOLE
                },
                offset: extent.offset,
                len: extent.len as u32,
                data: None,
            })
            .collect(),
    }
}

/// Carries out `operation` on `disk` and waits for the answers: the path without a queue.
pub(crate) fn execute(disk: &NbdDisk, operation: Operation) -> io::Result<()> {
    let commands = commands(disk.max_payload(), disk.sends_flush(), &operation);
    let client = disk.client_for(0);
    let (answered, answers) = mpsc::channel();
    let count = commands.len();
    for command in commands {
        let answered = answered.clone();
        client.submit(
            command,
            Box::new(move |ok| {
                let _ = answered.send(ok);
            }),
        );
    }
    drop(answered);
    // Every command is waited for, even after a failure: they all point into the
    // operation's buffers.
    let mut ok = true;
    for _ in 0..count {
        ok &= answers.recv().unwrap_or(false);
    }
    drop(operation);
    if ok { Ok(()) } else { Err(failed()) }
}

/// Finished operations, waiting for the worker.
struct Done {
    finished: Mutex<Vec<Finished>>,
    notifier: Event,
}

/// An operation whose commands are out.
struct Pending {
    token: Token,
    /// Commands not answered yet.
    remaining: AtomicUsize,
    failed: AtomicBool,
    /// Held until the last answer; then dropped, so the guest memory can go before the
    /// worker hears of the completion.
    operation: Mutex<Option<Operation>>,
    done: Arc<Done>,
}

impl Pending {
    fn answered(&self, ok: bool) {
        if !ok {
            self.failed.store(true, Ordering::Relaxed);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        drop(
            self.operation
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let result = if self.failed.load(Ordering::Relaxed) {
            Err(failed())
        } else {
            Ok(())
        };
        let first = {
            let mut finished = self.done.finished.lock().unwrap_or_else(|e| e.into_inner());
            finished.push((self.token, result));
            finished.len() == 1
        };
        // The worker clears the eventfd before it takes the list: a list that was not
        // empty has a wake-up pending already, so only the first completion writes it.
        if first {
            self.done.notifier.notify();
        }
    }
}

/// A queue's operations on its NBD connection.
pub struct NbdQueue {
    client: Arc<Client>,
    /// What the export allows, to plan commands without the disk.
    max_payload: u32,
    sends_flush: bool,
    done: Arc<Done>,
    in_flight: usize,
    /// Commands started since the last `submit`: they go out in one `sendmsg`.
    batch: Vec<(Command, Finish)>,
}

impl std::fmt::Debug for NbdQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdQueue")
            .field("client", &self.client)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl NbdQueue {
    /// The queue of the device's queue `queue`, on the connection it uses.
    pub fn new(disk: &NbdDisk, queue: u16) -> io::Result<Self> {
        Ok(Self {
            client: disk.client_for(queue),
            max_payload: disk.max_payload(),
            sends_flush: disk.sends_flush(),
            done: Arc::new(Done {
                finished: Mutex::new(Vec::new()),
                notifier: completion_event("NBD")?,
            }),
            in_flight: 0,
            batch: Vec::new(),
        })
    }
}

impl DiskQueue for NbdQueue {
    fn start(&mut self, token: Token, operation: Operation) -> Option<io::Result<()>> {
        let commands = commands(self.max_payload, self.sends_flush, &operation);
        if commands.is_empty() {
            return Some(Ok(()));
        }
        let pending = Arc::new(Pending {
            token,
            remaining: AtomicUsize::new(commands.len()),
            failed: AtomicBool::new(false),
            operation: Mutex::new(Some(operation)),
            done: self.done.clone(),
        });
        self.in_flight += 1;
        for command in commands {
            let pending = pending.clone();
            self.batch
                .push((command, Box::new(move |ok| pending.answered(ok))));
        }
        None
    }

    fn submit(&mut self) {
        self.client.submit_all(std::mem::take(&mut self.batch));
    }

    fn completion_fd(&self) -> BorrowedFd<'_> {
        self.done.notifier.as_fd()
    }

    fn reap(&mut self, done: &mut Vec<Finished>) {
        self.done.notifier.drain();
        let mut finished = self.done.finished.lock().unwrap_or_else(|e| e.into_inner());
        self.in_flight -= finished.len();
        done.append(&mut finished);
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}

impl Drop for NbdQueue {
    fn drop(&mut self) {
        // Never the case with the runtime (it submits after every batch), but an operation
        // started must never be dropped unanswered.
        self.client.submit_all(std::mem::take(&mut self.batch));
    }
}
