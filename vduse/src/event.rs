//! An eventfd, for kicks, wake-ups and completions: the runtime's queue kicks and
//! wake-ups, and what a [`QueueEngine`](crate::backend::QueueEngine) hands the worker as
//! its completion fd.
//!
//! rustix's rather than vmm-sys-util's `EventFd`: this one is an `OwnedFd`, so it goes to
//! poll(2) and to `VDUSE_VQ_SETUP_KICKFD` as a `BorrowedFd` without `unsafe`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{EventfdFlags, eventfd};

use crate::error::{Error, Result};

/// A non-blocking, close-on-exec eventfd.
#[derive(Debug)]
pub struct Event(OwnedFd);

impl Event {
    /// A new eventfd; `what` names it in the error.
    pub fn new(what: &str) -> Result<Self> {
        eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map(Self)
            .map_err(|errno| Error::Io {
                op: format!("creating the {what} eventfd"),
                source: errno.into(),
            })
    }

    /// Wakes whoever polls it. Cannot block: the counter only overflows after 2^64 - 2
    /// unread notifications.
    pub fn notify(&self) {
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }

    /// Resets the counter; true when it was notified.
    pub fn drain(&self) -> bool {
        let mut value = [0u8; 8];
        rustix::io::read(&self.0, &mut value).is_ok()
    }
}

impl AsFd for Event {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_then_drain() {
        let event = Event::new("test").unwrap();
        assert!(!event.drain());
        event.notify();
        event.notify();
        assert!(event.drain());
        assert!(!event.drain());
    }
}
