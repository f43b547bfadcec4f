//! The NBD engine: a queue's requests become NBD commands on the queue's connection,
//! all in flight at once; the connection's receiver finishes them.
//!
//! A virtio-blk request may become several commands (a read or write longer than the
//! server's largest payload, a discard with several segments); it is answered when the
//! last one is, with IOERR if any failed. Its memory snapshot is held until then, so the
//! receiver can copy read data straight into the guest's buffers.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use vduse::backend::{Chain, Memory, QueueEngine, Used};
use vm_memory::GuestAddress;

use super::{IoVecs, Notifier};
use crate::backend::{BlockBackend, Completion, LIMITS, answer};
use crate::nbd::protocol::{CMD_FLAG_NO_HOLE, command};
use crate::nbd::{Client, Command, NbdDisk};
use crate::request::{self, Request, Status};

/// What a request comes to.
pub(crate) enum Plan {
    /// Answered without the server.
    Done(Completion),
    /// These commands; `written` data bytes go into the chain when they all succeed.
    Send {
        commands: Vec<Command>,
        written: u32,
    },
}

/// The NBD commands `request` needs on `disk`.
pub(crate) fn plan(backend: &BlockBackend, disk: &NbdDisk, request: Request<'_>) -> Plan {
    let writes = matches!(
        request,
        Request::Write { .. } | Request::Discard { .. } | Request::WriteZeroes { .. }
    );
    if writes && backend.is_read_only() {
        return Plan::Done(Completion::status(Status::IoErr));
    }
    match request {
        Request::Read { sector, buffers } | Request::Write { sector, buffers } => {
            let read = !writes;
            let len = buffers.len();
            let Some(offset) = backend.checked_range(sector, len as u64) else {
                return Plan::Done(Completion::status(Status::IoErr));
            };
            if len == 0 {
                return Plan::Done(Completion::status(Status::Ok));
            }
            let iovecs = IoVecs::of(&buffers);
            let max = disk.max_payload() as usize;
            let commands = (0..len)
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
                .collect();
            Plan::Send {
                commands,
                written: if read { len as u32 } else { 0 },
            }
        }
        Request::Flush if disk.sends_flush() => Plan::Send {
            commands: vec![Command {
                command: command::FLUSH,
                flags: 0,
                offset: 0,
                len: 0,
                data: None,
            }],
            written: 0,
        },
        // A server without FLUSH has nothing to make durable: its answers already are.
        Request::Flush => Plan::Done(Completion::status(Status::Ok)),
        Request::Discard { segments } => {
            if !backend.offers_discard() {
                return Plan::Done(Completion::status(Status::Unsupp));
            }
            ranges(backend, &segments, "discard", |offset, len, _| Command {
                command: command::TRIM,
                flags: 0,
                offset,
                len,
                data: None,
            })
        }
        Request::WriteZeroes { segments } => {
            if !backend.offers_write_zeroes() {
                return Plan::Done(Completion::status(Status::Unsupp));
            }
            ranges(backend, &segments, "write zeroes", |offset, len, unmap| {
                Command {
                    command: command::WRITE_ZEROES,
                    flags: if unmap { 0 } else { CMD_FLAG_NO_HOLE },
                    offset,
                    len,
                    data: None,
                }
            })
        }
        Request::GetId { buffers } => Plan::Done(backend.get_id(&buffers)),
        Request::UnsupportedFlags | Request::Unsupported { .. } => {
            Plan::Done(Completion::status(Status::Unsupp))
        }
    }
}

/// One command per non-empty segment, once every segment is checked.
fn ranges(
    backend: &BlockBackend,
    segments: &[request::Segment],
    what: &str,
    command: impl Fn(u64, u32, bool) -> Command,
) -> Plan {
    let mut commands = Vec::with_capacity(segments.len());
    let checked = backend.for_each_segment(segments, what, |offset, len, unmap| {
        // A segment is at most MAX_DISCARD_SECTORS (1 GiB): it fits a command's length.
        commands.push(command(offset, len as u32, unmap));
        Ok(())
    });
    if checked.status != Status::Ok || commands.is_empty() {
        return Plan::Done(checked);
    }
    Plan::Send {
        commands,
        written: 0,
    }
}

/// Serves `request` on `disk` and waits for the answer: the path without an engine.
pub(crate) fn execute(backend: &BlockBackend, disk: &NbdDisk, request: Request<'_>) -> Completion {
    let (commands, written) = match plan(backend, disk, request) {
        Plan::Done(completion) => return completion,
        Plan::Send { commands, written } => (commands, written),
    };
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
    // caller's buffers.
    let mut ok = true;
    for _ in 0..count {
        ok &= answers.recv().unwrap_or(false);
    }
    if ok {
        Completion {
            status: Status::Ok,
            written,
        }
    } else {
        Completion::status(Status::IoErr)
    }
}

/// Finished requests, waiting for the worker.
struct Finished {
    used: Mutex<Vec<Used>>,
    notifier: Notifier,
}

/// A request whose commands are out.
struct Pending {
    head: u16,
    status_addr: GuestAddress,
    written: u32,
    /// Commands not answered yet.
    remaining: AtomicUsize,
    failed: AtomicBool,
    /// Held until the last answer; then taken, so the mapping can go before the worker
    /// hears of the completion.
    memory: Mutex<Option<Arc<Memory>>>,
    finished: Arc<Finished>,
}

impl Pending {
    fn answered(&self, ok: bool) {
        if !ok {
            self.failed.store(true, Ordering::Relaxed);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let completion = if self.failed.load(Ordering::Relaxed) {
            Completion::status(Status::IoErr)
        } else {
            Completion {
                status: Status::Ok,
                written: self.written,
            }
        };
        let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner()).take();
        let len = memory.map_or(0, |memory| answer(&memory, self.status_addr, completion));
        let first = {
            let mut used = self.finished.used.lock().unwrap_or_else(|e| e.into_inner());
            used.push(Used {
                head: self.head,
                len,
            });
            used.len() == 1
        };
        // The worker clears the eventfd before it takes the list: a list that was not
        // empty has a wake-up pending already, so only the first completion writes it.
        if first {
            self.finished.notifier.notify();
        }
    }
}

/// A queue's engine over its NBD connection.
pub struct NbdEngine {
    backend: Arc<BlockBackend>,
    client: Arc<Client>,
    finished: Arc<Finished>,
    in_flight: usize,
    /// Commands started since the last `submit`: they go out in one `sendmsg`.
    batch: Vec<(Command, crate::nbd::client::Finish)>,
}

impl std::fmt::Debug for NbdEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdEngine")
            .field("client", &self.client)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl NbdEngine {
    /// The engine of queue `queue`, or `None` when `backend` is not over NBD.
    pub fn new(backend: Arc<BlockBackend>, queue: u16) -> std::io::Result<Option<Self>> {
        let Some(client) = backend.nbd().map(|disk| disk.client_for(queue)) else {
            return Ok(None);
        };
        Ok(Some(Self {
            backend,
            client,
            finished: Arc::new(Finished {
                used: Mutex::new(Vec::new()),
                notifier: Notifier::new()?,
            }),
            in_flight: 0,
            batch: Vec::new(),
        }))
    }
}

impl QueueEngine for NbdEngine {
    fn start(&mut self, memory: Arc<Memory>, chain: Chain) -> Option<u32> {
        let head = chain.head_index();
        let Some(parsed) = request::parse(&memory, chain, LIMITS) else {
            // Nowhere to put a status: the request cannot be answered.
            return Some(0);
        };
        let status_addr = parsed.status_addr;
        let Ok(request) = parsed.request else {
            return Some(answer(
                &memory,
                status_addr,
                Completion::status(Status::IoErr),
            ));
        };
        let Some(disk) = self.backend.nbd() else {
            return Some(answer(
                &memory,
                status_addr,
                Completion::status(Status::IoErr),
            ));
        };
        let (commands, written) = match plan(&self.backend, disk, request) {
            Plan::Done(completion) => return Some(answer(&memory, status_addr, completion)),
            Plan::Send { commands, written } => (commands, written),
        };
        let pending = Arc::new(Pending {
            head,
            status_addr,
            written,
            remaining: AtomicUsize::new(commands.len()),
            failed: AtomicBool::new(false),
            memory: Mutex::new(Some(memory)),
            finished: self.finished.clone(),
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

    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.finished.notifier.as_fd())
    }

    fn reap(&mut self, done: &mut Vec<Used>) {
        self.finished.notifier.drain();
        let mut used = self.finished.used.lock().unwrap_or_else(|e| e.into_inner());
        self.in_flight -= used.len();
        done.append(&mut used);
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}

impl Drop for NbdEngine {
    fn drop(&mut self) {
        // Never the case with the runtime (it submits after every batch), but a request
        // started must never be dropped unanswered.
        self.client.submit_all(std::mem::take(&mut self.batch));
    }
}
