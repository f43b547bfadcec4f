//! [`FsBackend`]: the virtio-fs device the runtime serves, and the threads that run the
//! filesystem.
//!
//! Queue 0 is the high-priority queue (FORGET, INTERRUPT), queues 1..=N the request
//! queues. Every queue's worker hands its requests to one shared pool of filesystem
//! threads (`FsEngine`), so a slow request (an fsync, a large read) never holds up the
//! others of its queue, and a queue depth of 16 keeps up to `threads` host calls going.
//!
//! The pool's threads are started by [`FsBackend::serve`], which the caller runs once it
//! has set up the sandbox the threads are to live in (the device must exist first: the
//! sandbox hides `/dev` and `/sys`). Requests that arrive before that wait in the pool.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use fuse_backend_rs::api::filesystem::FileSystem;
use fuse_backend_rs::api::server::Server as FuseServer;
use fuse_backend_rs::transport::{Reader, VirtioFsWriter};
use vduse::DeviceType;
use vduse::backend::{Backend, Chain, Memory, QueueEngine, Used};
use vduse_kit::jobs::{Completions, JobQueue};
use virtio_queue::DescriptorChain;

use crate::durable::{DurableFs, Replayed};
use crate::fs::ExportFs;

/// The filesystem the pool serves.
pub type Fs = DurableFs<ExportFs>;

/// The FUSE server of the requests that come for the first time.
pub type FsServer = FuseServer<Arc<Fs>>;

/// The two FUSE servers of one [`Fs`]: whether a request is one a killed server had in
/// flight decides which serves it, so the filesystem learns it with the request.
struct Servers {
    first: FsServer,
    /// For the requests run again, through [`Replayed`]. Its protocol version stays
    /// fuse-backend-rs's own (7.33) when INIT came through `first`; the version only
    /// matters to the answers of clients older than 7.4, and virtio-fs needs 7.27.
    again: FuseServer<Replayed<ExportFs>>,
}

/// `struct virtio_fs_config`: `tag[36]`, then `num_request_queues` (le32).
pub fn config_space(tag: &str, num_request_queues: u16) -> Vec<u8> {
    let mut config = vec![0u8; vduse::device_config::VIRTIO_FS_CONFIG_SIZE];
    config[..tag.len()].copy_from_slice(tag.as_bytes());
    config[36..40].copy_from_slice(&u32::from(num_request_queues).to_le_bytes());
    config
}

/// Serves one FUSE request held in `chain` and returns the bytes written into its
/// device-writable buffers. A chain that does not hold a FUSE message gets no reply (0).
pub fn serve_request<F, M>(
    server: &FuseServer<F>,
    memory: &Memory,
    chain: DescriptorChain<M>,
) -> u32
where
    F: FileSystem + Sync,
    M: std::ops::Deref<Target = Memory> + Clone,
{
    let reader = match Reader::from_descriptor_chain(memory, chain.clone()) {
        Ok(reader) => reader,
        Err(error) => {
            log::debug!("request {}: unreadable chain: {error}", chain.head_index());
            return 0;
        }
    };
    let writer = match VirtioFsWriter::new(memory, chain.clone()) {
        Ok(writer) => writer,
        Err(error) => {
            log::debug!("request {}: unwritable chain: {error}", chain.head_index());
            return 0;
        }
    };
    match server.handle_message(reader, writer.into(), None, None) {
        Ok(written) => u32::try_from(written).unwrap_or(u32::MAX),
        Err(error) => {
            log::debug!("request {}: {error}", chain.head_index());
            0
        }
    }
}

/// A request waiting for a filesystem thread, with the queue it answers to.
struct Job {
    memory: Arc<Memory>,
    chain: Chain,
    sink: Arc<Sink>,
    /// A request the killed server had in flight: served through [`Replayed`].
    again: bool,
}

/// Where one queue's finished requests wait for its worker.
type Sink = Completions<Used>;

/// The requests of every queue, waiting for a filesystem thread.
type Pool = JobQueue<Job>;

/// The virtio-fs device.
pub struct FsBackend {
    tag: String,
    num_request_queues: u16,
    queue_size: u16,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for FsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsBackend")
            .field("tag", &self.tag)
            .field("num_request_queues", &self.num_request_queues)
            .field("queue_size", &self.queue_size)
            .finish_non_exhaustive()
    }
}

impl FsBackend {
    /// A device with tag `tag` (at most 36 bytes), `num_request_queues` request queues and
    /// queues of `queue_size` entries.
    pub fn new(tag: &str, num_request_queues: u16, queue_size: u16) -> Self {
        Self {
            tag: tag.to_owned(),
            num_request_queues,
            queue_size,
            pool: Arc::default(),
        }
    }

    /// Starts `threads` filesystem threads serving `fs`. Each runs `setup` first (its
    /// sandbox: capabilities, system call filter); if that fails for any, every thread is
    /// stopped and the first error returned. The threads inherit the calling thread's
    /// mount namespace. They end when the returned [`Threads`] is dropped, after the
    /// requests already queued.
    pub fn serve<F>(&self, fs: Arc<Fs>, threads: u16, setup: F) -> anyhow::Result<Threads>
    where
        F: Fn() -> Result<(), String> + Send + Sync + 'static,
    {
        let servers = Arc::new(Servers {
            first: FuseServer::new(fs.clone()),
            again: FuseServer::new(Replayed::new(fs)),
        });
        let setup = Arc::new(setup);
        let (report, reports) = std::sync::mpsc::channel();
        let mut handles = Threads {
            pool: self.pool.clone(),
            threads: Vec::new(),
        };
        for i in 0..threads {
            let (pool, servers, setup) = (self.pool.clone(), servers.clone(), setup.clone());
            let report = report.clone();
            let thread = std::thread::Builder::new()
                .name(format!("vduse-fs-{i}"))
                .spawn(move || {
                    let ready = setup();
                    let failed = ready.is_err();
                    let _ = report.send(ready);
                    if failed {
                        return;
                    }
                    while let Some(job) = pool.next() {
                        let head = job.chain.head_index();
                        let len = if job.again {
                            serve_request(&servers.again, &job.memory, job.chain)
                        } else {
                            serve_request(&servers.first, &job.memory, job.chain)
                        };
                        drop(job.memory);
                        job.sink.finish(Used { head, len });
                    }
                })?;
            handles.threads.push(thread);
        }
        drop(report);
        for _ in 0..threads {
            // A thread that ended without a word panicked in its setup.
            let ready = reports
                .recv()
                .unwrap_or_else(|_| Err("a thread panicked".into()));
            ready.map_err(anyhow::Error::msg)?;
        }
        Ok(handles)
    }
}

/// The running filesystem threads; dropping it ends them.
#[derive(Debug)]
pub struct Threads {
    pool: Arc<Pool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.pool.close();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One queue's door to the pool.
struct FsEngine {
    pool: Arc<Pool>,
    sink: Arc<Sink>,
    in_flight: usize,
}

impl FsEngine {
    fn queue(&mut self, memory: Arc<Memory>, chain: Chain, again: bool) -> Option<u32> {
        self.pool.push(Job {
            memory,
            chain,
            sink: self.sink.clone(),
            again,
        });
        self.in_flight += 1;
        None
    }
}

impl QueueEngine for FsEngine {
    fn start(&mut self, memory: Arc<Memory>, chain: Chain) -> Option<u32> {
        self.queue(memory, chain, false)
    }

    fn start_again(&mut self, memory: Arc<Memory>, chain: Chain) -> Option<u32> {
        self.queue(memory, chain, true)
    }

    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.sink.fd())
    }

    fn reap(&mut self, done: &mut Vec<Used>) {
        self.in_flight -= self.sink.reap(done);
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}

impl Backend for FsBackend {
    fn device_type(&self) -> DeviceType {
        DeviceType::Fs
    }

    fn features(&self) -> u64 {
        // No VIRTIO_FS_F_NOTIFICATION: there is no notification queue.
        0
    }

    fn config(&self) -> Vec<u8> {
        config_space(&self.tag, self.num_request_queues)
    }

    fn num_queues(&self) -> u16 {
        1 + self.num_request_queues
    }

    fn max_queue_size(&self) -> u16 {
        self.queue_size
    }

    fn handle(&self, _queue: u16, _memory: &Arc<Memory>, chain: Chain) -> u32 {
        // Only reached when a queue's engine could not be made (no eventfd): such a queue
        // cannot be served by the sandboxed threads, and answers nothing.
        log::error!(
            "request {} dropped: its queue has no engine",
            chain.head_index()
        );
        0
    }

    fn engine(self: Arc<Self>, queue: u16, _size: u16) -> Option<Box<dyn QueueEngine>> {
        match Sink::new("completion") {
            Ok(sink) => Some(Box::new(FsEngine {
                pool: self.pool.clone(),
                sink: Arc::new(sink),
                in_flight: 0,
            })),
            Err(error) => {
                log::error!("queue {queue}: cannot make its completion eventfd: {error}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_space_holds_the_tag_and_the_queue_count() {
        let config = config_space("share", 3);
        assert_eq!(config.len(), 40);
        assert_eq!(&config[..6], b"share\0");
        assert_eq!(&config[36..], &3u32.to_le_bytes());
        let full = "x".repeat(36);
        assert_eq!(&config_space(&full, 1)[..36], full.as_bytes());
    }
}
