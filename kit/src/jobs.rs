//! Requests a queue's worker hands to a pool of threads, and the answers the pool hands
//! back: the two halves of a [`QueueEngine`](vduse::backend::QueueEngine) whose requests
//! run on other threads (vduse-blk's `threads` executor, vduse-fs's filesystem threads).
//!
//! - [`JobQueue`]: the worker pushes, the pool's threads take, sleeping while it is empty;
//!   closing it ends them once what was queued is taken.
//! - [`Completions`]: the pool's threads put what finished there and write its eventfd,
//!   which the worker polls ([`Completions::fd`] is the engine's completion fd); the
//!   worker takes them all at once with [`Completions::reap`].

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Condvar, Mutex, MutexGuard};

use vduse::event::Event;

/// Jobs waiting for a pool of threads.
pub struct JobQueue<J> {
    state: Mutex<Queued<J>>,
    more: Condvar,
}

struct Queued<J> {
    jobs: VecDeque<J>,
    closed: bool,
}

impl<J> Default for JobQueue<J> {
    fn default() -> Self {
        Self {
            state: Mutex::new(Queued {
                jobs: VecDeque::new(),
                closed: false,
            }),
            more: Condvar::new(),
        }
    }
}

impl<J> std::fmt::Debug for JobQueue<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("JobQueue")
            .field("queued", &state.jobs.len())
            .field("closed", &state.closed)
            .finish()
    }
}

impl<J> JobQueue<J> {
    /// An empty, open queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, Queued<J>> {
        // A thread that panicked holding the lock left the queue consistent (every change
        // is one push or pop): go on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job` and wakes one waiting thread.
    pub fn push(&self, job: J) {
        self.state().jobs.push_back(job);
        self.more.notify_one();
    }

    /// The oldest job, waiting for one; `None` once the queue is closed and empty.
    pub fn next(&self) -> Option<J> {
        let mut state = self.state();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state = self.more.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Takes no more jobs: every thread's [`JobQueue::next`] returns `None` once the jobs
    /// already queued are taken.
    pub fn close(&self) {
        self.state().closed = true;
        self.more.notify_all();
    }
}

/// Finished requests waiting for the worker, and the eventfd that tells it.
#[derive(Debug)]
pub struct Completions<T> {
    done: Mutex<Vec<T>>,
    ready: Event,
}

impl<T> Completions<T> {
    /// An empty list; `what` names its eventfd in the error.
    pub fn new(what: &str) -> vduse::Result<Self> {
        Ok(Self {
            done: Mutex::new(Vec::new()),
            ready: Event::new(what)?,
        })
    }

    fn done(&self) -> MutexGuard<'_, Vec<T>> {
        self.done.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `item` and wakes the worker.
    pub fn finish(&self, item: T) {
        self.done().push(item);
        self.ready.notify();
    }

    /// Moves everything finished into `into`; returns how many. The eventfd is reset
    /// first, so an item finished meanwhile wakes the worker again rather than being left.
    pub fn reap(&self, into: &mut Vec<T>) -> usize {
        self.ready.drain();
        let mut done = self.done();
        let count = done.len();
        into.append(&mut done);
        count
    }

    /// Readable when something has finished since the last [`Completions::reap`].
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.ready.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn readable(fd: BorrowedFd<'_>) -> bool {
        let mut fds = [rustix::event::PollFd::from_borrowed_fd(
            fd,
            rustix::event::PollFlags::IN,
        )];
        rustix::event::poll(&mut fds, Some(&rustix::event::Timespec::default())).unwrap() == 1
    }

    #[test]
    fn a_pool_takes_every_job_then_ends_when_closed() {
        let jobs = Arc::new(JobQueue::new());
        let done = Arc::new(Completions::new("test").unwrap());
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (jobs, done) = (jobs.clone(), done.clone());
                std::thread::spawn(move || {
                    while let Some(job) = jobs.next() {
                        done.finish(job * 10);
                    }
                })
            })
            .collect();
        for job in 0..100u32 {
            jobs.push(job);
        }
        jobs.close();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(readable(done.fd()));
        let mut reaped = Vec::new();
        assert_eq!(done.reap(&mut reaped), 100);
        reaped.sort_unstable();
        assert_eq!(reaped, (0..100).map(|job| job * 10).collect::<Vec<_>>());
        // Reaped: nothing is left, and the worker is not woken for nothing.
        assert!(!readable(done.fd()));
        assert_eq!(done.reap(&mut reaped), 0);
        assert!(jobs.next().is_none());
    }
}
