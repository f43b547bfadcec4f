//! [`ThreadPool`]: the `threads` executor of a file disk. A pool of threads per queue,
//! each carrying out whole operations synchronously ([`FileDisk::execute`]: `preadv` and
//! `pwritev` on guest memory, bounce buffers with `cache: none`), with the finished ones
//! handed back through a list and an eventfd.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use vduse_kit::jobs::{Completions, JobQueue};

use super::{DiskQueue, FileDisk, Finished, Operation, Token};

/// An operation waiting for a pool thread.
struct Job {
    token: Token,
    operation: Operation,
}

/// A queue's thread pool over a file disk.
pub struct ThreadPool {
    jobs: Arc<JobQueue<Job>>,
    done: Arc<Completions<Finished>>,
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
        let mut pool = Self {
            jobs: Arc::new(JobQueue::new()),
            done: Arc::new(Completions::new("thread pool completion").map_err(io::Error::other)?),
            threads: Vec::new(),
            in_flight: 0,
        };
        for i in 0..count {
            let (jobs, done, disk) = (pool.jobs.clone(), pool.done.clone(), disk.clone());
            let thread = std::thread::Builder::new()
                .name(format!("vduse-vq{queue}-io{i}"))
                .spawn(move || {
                    while let Some(job) = jobs.next() {
                        let result = disk.execute(&job.operation);
                        // The operation (and the guest memory it holds) goes before the
                        // completion is told: nothing of it is left on this thread.
                        drop(job.operation);
                        done.finish((job.token, result));
                    }
                })?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }
}

impl DiskQueue for ThreadPool {
    fn start(&mut self, token: Token, operation: Operation) -> Option<io::Result<()>> {
        self.jobs.push(Job { token, operation });
        self.in_flight += 1;
        None
    }

    fn completion_fd(&self) -> BorrowedFd<'_> {
        self.done.fd()
    }

    fn reap(&mut self, done: &mut Vec<Finished>) {
        self.in_flight -= self.done.reap(done);
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        // The threads finish what was queued, then end.
        self.jobs.close();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
