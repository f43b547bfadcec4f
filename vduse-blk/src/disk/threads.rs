//! [`ThreadPool`]: the `threads` executor of a file disk. A pool of threads per queue,
//! each carrying out whole operations synchronously ([`FileDisk::execute`]: `preadv` and
//! `pwritev` on guest memory, bounce buffers with `cache: none`), with the finished ones
//! handed back through a list and an eventfd.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use vduse::event::Event;

use super::{DiskQueue, FileDisk, Finished, Operation, Token, completion_event};

/// An operation waiting for a pool thread.
struct Job {
    token: Token,
    operation: Operation,
}

#[derive(Default)]
struct Jobs {
    queue: VecDeque<Job>,
    shutdown: bool,
}

struct Shared {
    jobs: Mutex<Jobs>,
    more: Condvar,
    done: Mutex<Vec<Finished>>,
    notifier: Event,
}

impl Shared {
    fn jobs(&self) -> MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn done(&self) -> MutexGuard<'_, Vec<Finished>> {
        self.done.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A queue's thread pool over a file disk.
pub struct ThreadPool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    in_flight: usize,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("threads", &self.threads.len())
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl ThreadPool {
    /// `count` threads carrying out the operations of queue `queue` on `disk`.
    pub fn new(disk: Arc<FileDisk>, queue: u16, count: u16) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            jobs: Mutex::new(Jobs::default()),
            more: Condvar::new(),
            done: Mutex::new(Vec::new()),
            notifier: completion_event("thread pool")?,
        });
        let mut pool = Self {
            shared: shared.clone(),
            threads: Vec::new(),
            in_flight: 0,
        };
        for i in 0..count {
            let (shared, disk) = (shared.clone(), disk.clone());
            let thread = std::thread::Builder::new()
                .name(format!("vduse-vq{queue}-io{i}"))
                .spawn(move || run_jobs(&shared, &disk))?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }
}

fn run_jobs(shared: &Shared, disk: &FileDisk) {
    loop {
        let job = {
            let mut jobs = shared.jobs();
            loop {
                if let Some(job) = jobs.queue.pop_front() {
                    break job;
                }
                if jobs.shutdown {
                    return;
                }
                jobs = shared.more.wait(jobs).unwrap_or_else(|e| e.into_inner());
            }
        };
        let result = disk.execute(&job.operation);
        // The operation (and the guest memory it holds) goes before the completion is
        // told: nothing of it is left on this thread.
        drop(job.operation);
        shared.done().push((job.token, result));
        shared.notifier.notify();
    }
}

impl DiskQueue for ThreadPool {
    fn start(&mut self, token: Token, operation: Operation) -> Option<io::Result<()>> {
        self.shared.jobs().queue.push_back(Job { token, operation });
        self.shared.more.notify_one();
        self.in_flight += 1;
        None
    }

    fn completion_fd(&self) -> BorrowedFd<'_> {
        self.shared.notifier.as_fd()
    }

    fn reap(&mut self, done: &mut Vec<Finished>) {
        self.shared.notifier.drain();
        let mut finished = self.shared.done();
        self.in_flight -= finished.len();
        done.append(&mut finished);
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        // The threads finish what was queued, then end.
        self.shared.jobs().shutdown = true;
        self.shared.more.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
