//! [`BlockQueue`]: the one [`QueueEngine`] of the virtio-blk device, whatever the disk
//! and its executor (thread pool, io_uring, NBD connection).
//!
//! The queue's worker hands it chains; it parses each, answers at once what needs no disk
//! (or what the disk carried out at once), and starts the rest as disk operations whose
//! token is the chain's head. A request in flight keeps its memory snapshot (for the
//! status byte; the operation holds its own for the data) until the worker reaps it, and
//! only then is its status written: the used ring and the guest's status bytes are only
//! ever touched on the worker.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Instant;

use vduse::backend::{Chain, Memory, QueueEngine, Used};
use vm_memory::GuestAddress;

use super::{BlockBackend, Completion, LIMITS, Prepared, answer};
use crate::disk::{DiskQueue, Finished, Token};
use crate::request::{self, Status};
use crate::stats::Kind;

/// A request whose operation is on the disk.
struct InFlight {
    /// Keeps the status byte mapped until it is written.
    memory: Arc<Memory>,
    status_addr: GuestAddress,
    /// Data bytes the request writes into the chain when it succeeds.
    written: u32,
    /// The operation's name, for the log when it fails.
    what: &'static str,
    /// What it is and the bytes it moves, for the counters.
    kind: Kind,
    bytes: u64,
    /// When it was taken from the ring.
    started: Instant,
}

/// A queue of the device, over its disk queue.
pub struct BlockQueue {
    backend: Arc<BlockBackend>,
    /// The queue's index.
    queue: u16,
    disk: Box<dyn DiskQueue>,
    /// The requests in flight, by head index.
    requests: Vec<Option<InFlight>>,
    /// Reused by `reap`, so that a batch does not allocate.
    finished: Vec<Finished>,
}

impl std::fmt::Debug for BlockQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockQueue")
            .field("in_flight", &self.disk.in_flight())
            .finish_non_exhaustive()
    }
}

impl BlockQueue {
    /// Queue `queue`, of `size` entries, of `backend`, its operations on `disk`.
    pub fn new(
        backend: Arc<BlockBackend>,
        queue: u16,
        disk: Box<dyn DiskQueue>,
        size: u16,
    ) -> Self {
        Self {
            backend,
            queue,
            disk,
            requests: (0..size.max(1)).map(|_| None).collect(),
            finished: Vec::new(),
        }
    }

    /// Puts `request` in the place of head `head`.
    fn keep(&mut self, head: u16, request: InFlight) {
        let index = usize::from(head);
        if index >= self.requests.len() {
            // Heads are below the queue's size; should one not be, make room.
            self.requests.resize_with(index + 1, || None);
        }
        self.requests[index] = Some(request);
    }
}

impl QueueEngine for BlockQueue {
    fn start(&mut self, memory: Arc<Memory>, chain: Chain) -> Option<u32> {
        let started = Instant::now();
        let counters = self.backend.counters(self.queue);
        counters.started();
        let head = chain.head_index();
        let Some(parsed) = request::parse(&memory, chain, LIMITS) else {
            // Nowhere to put a status: the request cannot be answered.
            log::debug!("queue {}: a chain without a status byte", self.queue);
            counters.finished(Kind::Other, 0, Status::IoErr, started.elapsed());
            return Some(0);
        };
        let status_addr = parsed.status_addr;
        let (kind, bytes) = parsed.request.as_ref().map_or((Kind::Other, 0), Kind::of);
        let answered = |completion: Completion| {
            counters.finished(kind, bytes, completion.status, started.elapsed());
            Some(answer(&memory, status_addr, completion))
        };
        let (operation, written) = match parsed.request.map(|request| self.backend.prepare(request))
        {
            Ok(Prepared::Disk { operation, written }) => (operation, written),
            Ok(Prepared::Answer(completion)) => return answered(completion),
            Err(malformed) => {
                log::debug!("queue {}: malformed request: {malformed:?}", self.queue);
                return answered(Completion::status(Status::IoErr));
            }
        };
        let what = operation.name();
        if let Some(result) = self.disk.start(Token::from(head), operation) {
            return answered(self.backend.completion(what, written, result));
        }
        self.keep(
            head,
            InFlight {
                memory,
                status_addr,
                written,
                what,
                kind,
                bytes,
                started,
            },
        );
        None
    }

    fn submit(&mut self) {
        self.disk.submit();
    }

    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.disk.completion_fd())
    }

    fn reap(&mut self, done: &mut Vec<Used>) {
        self.disk.reap(&mut self.finished);
        for (token, result) in self.finished.drain(..) {
            let Ok(head) = u16::try_from(token) else {
                continue;
            };
            let Some(request) = self
                .requests
                .get_mut(usize::from(head))
                .and_then(Option::take)
            else {
                continue;
            };
            let completion = self
                .backend
                .completion(request.what, request.written, result);
            self.backend.counters(self.queue).finished(
                request.kind,
                request.bytes,
                completion.status,
                request.started.elapsed(),
            );
            done.push(Used {
                head,
                len: answer(&request.memory, request.status_addr, completion),
            });
        }
    }

    fn in_flight(&self) -> usize {
        self.disk.in_flight()
    }
}
