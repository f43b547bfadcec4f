//! [`IoEngine`]: which executor carries out a file disk's operations (`io-engine`), and
//! what `auto` comes to on this host.

use std::io;

use serde::{Deserialize, Serialize};

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
pub fn io_uring_available() -> io::Result<()> {
    io_uring::IoUring::new(2).map(drop)
}

/// The executor `wanted` comes to on this host: `auto` is io-uring where a ring can be set
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
