//! The NBD client's failure handling against a real `qemu-nbd` (qemu-utils) on this host:
//! the server killed with requests in flight and started again, a server that stays away
//! past `nbd-timeout`, a sparse qcow2 image (hole chunks), several connections over TCP,
//! and requests larger than the server's largest payload. No kernel involved: requests are
//! descriptor chains built with virtio-queue's `MockSplitQueue`, served through
//! `Backend::handle` (one at a time) or through a queue's engine (`start`, `submit`, wait
//! on the completion eventfd, `reap`), which keeps many in flight.

use bytes::same;
use vduse_testkit::bytes;

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vduse::backend::{Backend, Memory, QueueEngine, Used};
use vduse_blk::config::IoEngine;
use vduse_blk::nbd::protocol::flags::CAN_MULTI_CONN;
use vduse_blk::nbd::{NbdDisk, NbdOptions, NbdUri};
use vduse_blk::{BlockBackend, BlockOptions};
use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{RawDescriptor, split::Descriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress};

/// Size of every mock queue: room for 42 requests of three descriptors.
const QUEUE_SIZE: u16 = 128;
/// Each batch of requests has its own area: its queue at `area * AREA`, its request
/// headers and status bytes at `HEADERS + area * AREA`.
const AREA: u64 = 0x1000;
/// The area `Rig::handle` uses.
const HANDLE_AREA: u64 = 15;
const HEADERS: u64 = 0x1_0000;
/// Where data buffers start.
const DATA: u64 = 0x10_0000;
/// Status byte value before the device writes it.
const UNTOUCHED: u8 = 0xee;
const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

const OK: u8 = VIRTIO_BLK_S_OK as u8;
const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;

/// Where a `qemu-nbd` listens.
#[derive(Clone)]
enum Listen {
    Unix(PathBuf),
    Tcp(u16),
}

impl Listen {
    fn uri(&self) -> NbdUri {
        let text = match self {
            Listen::Unix(path) => format!("nbd+unix:///?socket={}", path.display()),
            Listen::Tcp(port) => format!("nbd://127.0.0.1:{port}/"),
        };
        NbdUri::parse(&text).unwrap()
    }

    fn accepts(&self) -> bool {
        match self {
            Listen::Unix(path) => UnixStream::connect(path).is_ok(),
            Listen::Tcp(port) => TcpStream::connect(("127.0.0.1", *port)).is_ok(),
        }
    }
}

/// A `qemu-nbd` process exporting an image (killed on drop).
struct Server {
    child: Child,
}

impl Server {
    /// `qemu-nbd --persistent --shared=8 --format=FORMAT` on `listen`; returns once it
    /// accepts connections. Its messages go to `qemu-nbd.log` next to the image.
    fn start(listen: &Listen, format: &str, image: &Path) -> Server {
        let mut command = Command::new("qemu-nbd");
        command.args(["--persistent", "--shared=8", &format!("--format={format}")]);
        match listen {
            Listen::Unix(path) => {
                // A killed qemu-nbd leaves its socket behind: only a new one may count.
                let _ = std::fs::remove_file(path);
                command.arg("-k").arg(path);
            }
            Listen::Tcp(port) => {
                command.args(["-b", "127.0.0.1", "-p", &port.to_string()]);
            }
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(image.with_file_name("qemu-nbd.log"))
            .unwrap();
        let mut child = command
            .arg(image)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot run qemu-nbd ({error}): install qemu-utils (tests/run-all does)")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !listen.accepts() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("qemu-nbd exited ({status}); see qemu-nbd.log");
            }
            assert!(
                Instant::now() < deadline,
                "qemu-nbd accepted no connection within 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Server { child }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child, which has not been reaped (reaping takes
        // `&mut self`), so the pid is still its.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// SIGSTOP: the server keeps its connections but reads and answers nothing.
    fn stop(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT: a stopped server goes on.
    fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// SIGKILL, and waits for it to be gone.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM: qemu-nbd closes the image cleanly; waits for it to exit.
    fn terminate(mut self) {
        self.signal(libc::SIGTERM);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "qemu-nbd after SIGTERM: {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a qemu-img command, which must succeed.
fn qemu_img(args: &[&str]) -> String {
    let output = Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run qemu-img ({error}): install qemu-utils"));
    assert!(
        output.status.success(),
        "qemu-img {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `len` pseudo-random bytes, different for each `seed`.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// A virtio-blk request: `len` bytes of data in guest memory at `buf`.
#[derive(Debug, Clone, Copy)]
struct Req {
    kind: u32,
    offset: u64,
    buf: u64,
    len: u32,
    /// When not 0: the data is two descriptors, the first of `split` bytes.
    split: u32,
}

impl Req {
    fn split_at(self, split: u64) -> Req {
        Req {
            split: u32::try_from(split).unwrap(),
            ..self
        }
    }
}

fn read(offset: u64, buf: u64, len: u64) -> Req {
    Req {
        kind: VIRTIO_BLK_T_IN,
        offset,
        buf,
        len: u32::try_from(len).unwrap(),
        split: 0,
    }
}

fn write(offset: u64, buf: u64, len: u64) -> Req {
    Req {
        kind: VIRTIO_BLK_T_OUT,
        ..read(offset, buf, len)
    }
}

fn flush() -> Req {
    Req {
        kind: VIRTIO_BLK_T_FLUSH,
        offset: 0,
        buf: 0,
        len: 0,
        split: 0,
    }
}

fn descriptor(addr: u64, len: u32, flags: u32, next: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags as u16, next))
}

/// Requests started on an engine, not all reaped yet.
struct Batch {
    heads: Vec<u16>,
    statuses: Vec<u64>,
    /// Used length of each finished head.
    done: HashMap<u16, u32>,
}

/// The disk's options: the export at `listen`, read-write, 512-byte blocks.
fn options(listen: &Listen, timeout: Duration, connections: u16) -> NbdOptions {
    NbdOptions {
        uri: listen.uri(),
        timeout,
        connections,
        read_only: false,
        logical_block_size: 512,
        tls: None,
    }
}

/// A virtio-blk device over an NBD export, and guest memory to talk to it through.
struct Rig {
    backend: Arc<BlockBackend>,
    memory: Arc<Memory>,
}

impl Rig {
    /// Connects to `listen` with `timeout`, up to `connections` connections, `num_queues`
    /// queues; guest memory of `memory` bytes.
    fn new(
        listen: &Listen,
        timeout: Duration,
        connections: u16,
        num_queues: u16,
        memory: u64,
    ) -> Rig {
        let disk = NbdDisk::connect(&options(listen, timeout, connections)).unwrap();
        let backend = BlockBackend::new(
            disk,
            BlockOptions {
                logical_block_size: 512,
                physical_block_size: None,
                num_queues,
                queue_size: 256,
                serial: None,
                discard: true,
                write_zeroes: true,
                io_engine: IoEngine::Threads,
            },
        );
        let memory =
            Memory::from_ranges(&[(GuestAddress(0), usize::try_from(memory).unwrap())]).unwrap();
        Rig {
            backend: Arc::new(backend),
            memory: Arc::new(memory),
        }
    }

    fn disk(&self) -> &NbdDisk {
        self.backend.nbd().unwrap()
    }

    fn engine(&self, queue: u16) -> Box<dyn QueueEngine> {
        self.backend
            .clone()
            .engine(queue, QUEUE_SIZE)
            .expect("an NBD disk has an engine")
    }

    fn put(&self, addr: u64, bytes: &[u8]) {
        self.memory.write_slice(bytes, GuestAddress(addr)).unwrap();
    }

    fn get(&self, addr: u64, len: u64) -> Vec<u8> {
        let mut bytes = vec![0; usize::try_from(len).unwrap()];
        self.memory
            .read_slice(&mut bytes, GuestAddress(addr))
            .unwrap();
        bytes
    }

    /// Writes the requests' headers and primed status bytes in `area`, and their chains
    /// into a fresh mock queue there; returns the queue and the status addresses.
    fn queue(&self, area: u64, requests: &[Req]) -> (Queue, Vec<u64>) {
        assert!(area < 16 && requests.len() * 3 <= usize::from(QUEUE_SIZE));
        let mock =
            MockSplitQueue::create(self.memory.as_ref(), GuestAddress(area * AREA), QUEUE_SIZE);
        // Each batch starts from an empty available ring.
        self.memory
            .write_obj(0u16, mock.avail_addr().unchecked_add(2))
            .unwrap();
        let mut descriptors = Vec::new();
        let mut statuses = Vec::new();
        for (slot, request) in requests.iter().enumerate() {
            let header_addr = HEADERS + area * AREA + slot as u64 * 32;
            let status_addr = header_addr + 16;
            let mut header = [0u8; 16];
            header[..4].copy_from_slice(&request.kind.to_le_bytes());
            header[8..].copy_from_slice(&(request.offset / 512).to_le_bytes());
            assert_eq!(request.offset % 512, 0);
            self.put(header_addr, &header);
            self.put(status_addr, &[UNTOUCHED]);
            let first = descriptors.len() as u16;
            descriptors.push(descriptor(header_addr, 16, VRING_DESC_F_NEXT, first + 1));
            if request.len > 0 {
                let flags = if request.kind == VIRTIO_BLK_T_IN {
                    VRING_DESC_F_WRITE
                } else {
                    0
                };
                let mut pieces = vec![(request.buf, request.len)];
                if request.split > 0 {
                    assert!(request.split < request.len);
                    pieces = vec![
                        (request.buf, request.split),
                        (
                            request.buf + u64::from(request.split),
                            request.len - request.split,
                        ),
                    ];
                }
                for (addr, len) in pieces {
                    let next = descriptors.len() as u16 + 1;
                    descriptors.push(descriptor(addr, len, flags | VRING_DESC_F_NEXT, next));
                }
            }
            descriptors.push(descriptor(status_addr, 1, VRING_DESC_F_WRITE, 0));
            statuses.push(status_addr);
        }
        mock.add_desc_chains(&descriptors, 0).unwrap();
        (mock.create_queue().unwrap(), statuses)
    }

    /// Starts `requests` on `engine`, using `area` of guest memory for their queue.
    fn start(&self, engine: &mut dyn QueueEngine, area: u64, requests: &[Req]) -> Batch {
        let (mut queue, statuses) = self.queue(area, requests);
        let mut batch = Batch {
            heads: Vec::new(),
            statuses,
            done: HashMap::new(),
        };
        for _ in requests {
            let chain = queue.pop_descriptor_chain(self.memory.clone()).unwrap();
            let head = chain.head_index();
            batch.heads.push(head);
            if let Some(len) = engine.start(self.memory.clone(), chain) {
                batch.done.insert(head, len);
            }
        }
        engine.submit();
        batch
    }

    /// Reaps `batch` from `engine`, which must finish it within `limit`; returns each
    /// request's (used length, status byte).
    fn wait(
        &self,
        engine: &mut dyn QueueEngine,
        mut batch: Batch,
        limit: Duration,
    ) -> Vec<(u32, u8)> {
        let deadline = Instant::now() + limit;
        let mut reaped: Vec<Used> = Vec::new();
        while batch.done.len() < batch.heads.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{} of {} requests unfinished after {limit:?}",
                batch.heads.len() - batch.done.len(),
                batch.heads.len()
            );
            let mut fds = [rustix::event::PollFd::from_borrowed_fd(
                engine
                    .completion_fd()
                    .expect("an NBD engine completes later"),
                rustix::event::PollFlags::IN,
            )];
            let timeout = rustix::event::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            rustix::event::poll(&mut fds, Some(&timeout)).unwrap();
            engine.reap(&mut reaped);
            for used in reaped.drain(..) {
                assert!(
                    batch.heads.contains(&used.head),
                    "unknown head {}",
                    used.head
                );
                let before = batch.done.insert(used.head, used.len);
                assert!(before.is_none(), "head {} completed twice", used.head);
            }
            engine.submit();
        }
        batch
            .heads
            .iter()
            .zip(&batch.statuses)
            .map(|(head, &status)| (batch.done[head], self.get(status, 1)[0]))
            .collect()
    }

    /// Starts `requests` on `engine` all at once and waits for them.
    fn run(&self, engine: &mut dyn QueueEngine, requests: &[Req]) -> Vec<(u32, u8)> {
        let batch = self.start(engine, 0, requests);
        let results = self.wait(engine, batch, Duration::from_secs(30));
        assert_eq!(engine.in_flight(), 0);
        results
    }

    /// Serves `request` through `Backend::handle`; returns (used length, status byte).
    fn handle(&self, request: Req) -> (u32, u8) {
        let (mut queue, statuses) = self.queue(HANDLE_AREA, &[request]);
        let chain = queue.pop_descriptor_chain(self.memory.clone()).unwrap();
        let used = self.backend.handle(0, &self.memory, chain);
        (used, self.get(statuses[0], 1)[0])
    }
}

/// What a successful request's used element says: data read, plus the status byte.
fn ok(request: &Req) -> (u32, u8) {
    if request.kind == VIRTIO_BLK_T_IN {
        (request.len + 1, OK)
    } else {
        (1, OK)
    }
}

#[track_caller]
fn all_ok(requests: &[Req], results: &[(u32, u8)]) {
    let wanted: Vec<(u32, u8)> = requests.iter().map(ok).collect();
    assert_eq!(results, wanted.as_slice());
}

/// A temporary directory with a raw image of `size` bytes holding `pattern(seed)`.
fn raw_image(size: u64, seed: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    std::fs::write(&image, pattern(seed, size as usize)).unwrap();
    (dir, image)
}

/// Kills the server while 32 writes are in flight, starts another: every write is sent
/// again and succeeds, and the file holds all of them.
#[test]
fn requests_in_flight_survive_a_killed_server() {
    const SIZE: u64 = 8 * MIB;
    const COUNT: u64 = 32;
    const LEN: u64 = 64 * KIB;
    let (dir, image) = raw_image(SIZE, 1);
    let listen = Listen::Unix(dir.path().join("nbd.sock"));
    let mut server = Server::start(&listen, "raw", &image);
    let rig = Rig::new(&listen, Duration::from_secs(30), 1, 1, 6 * MIB);
    let mut engine = rig.engine(0);
    let mut wanted = std::fs::read(&image).unwrap();
    // Write `i` goes to offset i * 192 KiB from DATA + i * LEN.
    let writes: Vec<Req> = (0..COUNT)
        .map(|i| write(i * 192 * KIB, DATA + i * LEN, LEN))
        .collect();

    for round in 0..2u64 {
        for (i, request) in writes.iter().enumerate() {
            let bytes = pattern(1000 * (round + 1) + i as u64, LEN as usize);
            rig.put(request.buf, &bytes);
            let at = request.offset as usize;
            wanted[at..at + LEN as usize].copy_from_slice(&bytes);
        }
        let batch = if round == 0 {
            // Round 0: the server is stopped, so nothing can be answered; 2 MiB do not
            // fit the socket's buffer, so `start` blocks in a send until the kill, which
            // cuts one write off in the middle. Every write is in flight when it dies.
            server.stop();
            let pid = server.child.id();
            let killer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(500));
                // SAFETY: kill(2) on the stopped child; the main thread reaps it only
                // after joining this thread.
                unsafe { libc::kill(libc::pid_t::try_from(pid).unwrap(), libc::SIGKILL) };
            });
            let batch = rig.start(engine.as_mut(), 0, &writes);
            killer.join().unwrap();
            assert_eq!(
                rig.disk().client_for(0).outstanding(),
                COUNT as usize,
                "every write waits for the server"
            );
            batch
        } else {
            // Round 1: the server is killed right after the writes go out; it has
            // done some, all or none of them, answered or not.
            rig.start(engine.as_mut(), 0, &writes)
        };
        server.kill();
        std::thread::sleep(Duration::from_secs(1));
        if round == 0 {
            assert_eq!(
                rig.disk().client_for(0).outstanding(),
                COUNT as usize,
                "nothing may fail or finish without a server"
            );
        }
        server = Server::start(&listen, "raw", &image);
        let results = rig.wait(engine.as_mut(), batch, Duration::from_secs(15));
        all_ok(&writes, &results);
        same(&std::fs::read(&image).unwrap(), &wanted);
    }

    // Reads through the device return the file's bytes, also when the server is killed
    // while it sends their data (32 x 128 KiB, killed right after they go out).
    const READ_LEN: u64 = 2 * LEN;
    let reads: Vec<Req> = (0..COUNT)
        .map(|i| read(i * SIZE / COUNT, DATA + i * READ_LEN, READ_LEN))
        .collect();
    rig.put(DATA, &vec![0xa5; (COUNT * READ_LEN) as usize]);
    let batch = rig.start(engine.as_mut(), 0, &reads);
    server.kill();
    std::thread::sleep(Duration::from_secs(1));
    let server = Server::start(&listen, "raw", &image);
    let results = rig.wait(engine.as_mut(), batch, Duration::from_secs(15));
    all_ok(&reads, &results);
    for request in &reads {
        let at = request.offset as usize;
        same(
            &rig.get(request.buf, READ_LEN),
            &wanted[at..at + READ_LEN as usize],
        );
    }
    let request = read(SIZE - LEN, DATA, LEN);
    assert_eq!(rig.handle(request), ok(&request));
    same(&rig.get(DATA, LEN), &wanted[(SIZE - LEN) as usize..]);
    drop(server);
}

/// Asserts a request that failed after `waited` did so once `timeout` had passed, and
/// soon after: the client looks at the clock at each deadline, not only between
/// reconnection attempts (up to 2 s apart). Usually it is within 0.3 s; 3 s is slack for
/// a loaded machine (one run in about 30 with several test binaries at once took 2 s
/// more with a hung server, cause not found), and still far from "never".
#[track_caller]
fn on_time(waited: Duration, timeout: Duration) {
    assert!(
        waited >= timeout,
        "failed after {waited:?}, before nbd-timeout"
    );
    assert!(
        waited < timeout + Duration::from_secs(3),
        "failed only after {waited:?}, with nbd-timeout {timeout:?}"
    );
}

/// With the server gone and not coming back, a request fails with IOERR once
/// `nbd-timeout` has passed, not before; once the server is back, requests succeed again.
#[test]
fn a_request_fails_after_nbd_timeout_and_the_client_keeps_reconnecting() {
    const SIZE: u64 = MIB;
    const TIMEOUT: Duration = Duration::from_secs(2);
    let (dir, image) = raw_image(SIZE, 2);
    let file = std::fs::read(&image).unwrap();
    let listen = Listen::Unix(dir.path().join("nbd.sock"));
    let server = Server::start(&listen, "raw", &image);
    let rig = Rig::new(&listen, TIMEOUT, 1, 1, 2 * MIB);
    let mut engine = rig.engine(0);
    let request = read(64 * KIB, DATA, 4 * KIB);
    assert_eq!(rig.handle(request), ok(&request));
    same(
        &rig.get(DATA, 4 * KIB),
        &file[64 * KIB as usize..68 * KIB as usize],
    );

    server.kill();
    // Through the engine...
    let started = Instant::now();
    let batch = rig.start(engine.as_mut(), 0, &[request]);
    let results = rig.wait(engine.as_mut(), batch, Duration::from_secs(10));
    let waited = started.elapsed();
    assert_eq!(results, [(1, IOERR)]);
    on_time(waited, TIMEOUT);
    assert_eq!(engine.in_flight(), 0);
    // ... and through `handle`.
    let started = Instant::now();
    assert_eq!(rig.handle(request), (1, IOERR));
    on_time(started.elapsed(), TIMEOUT);
    assert_eq!(rig.disk().client_for(0).outstanding(), 0);

    let _server = Server::start(&listen, "raw", &image);
    let request = read(128 * KIB, DATA, 8 * KIB);
    rig.put(DATA, &[0xa5; 8 * KIB as usize]);
    assert_eq!(rig.handle(request), ok(&request));
    same(
        &rig.get(DATA, 8 * KIB),
        &file[128 * KIB as usize..136 * KIB as usize],
    );
    let requests = [
        read(0, DATA, 64 * KIB),
        read(SIZE - 64 * KIB, DATA + MIB / 2, 64 * KIB),
    ];
    let results = rig.run(engine.as_mut(), &requests);
    all_ok(&requests, &results);
    same(&rig.get(DATA, 64 * KIB), &file[..64 * KIB as usize]);
    same(
        &rig.get(DATA + MIB / 2, 64 * KIB),
        &file[(SIZE - 64 * KIB) as usize..],
    );
}

/// A server that hangs (SIGSTOP) with a read and a 4 MiB write in flight, the write
/// stuck in the socket: the connection is dropped and both fail with IOERR once
/// `nbd-timeout` has passed; when the server goes on, a new connection serves requests.
#[test]
fn a_hung_server_fails_requests_after_nbd_timeout() {
    const SIZE: u64 = 8 * MIB;
    const TIMEOUT: Duration = Duration::from_secs(2);
    let (dir, image) = raw_image(SIZE, 3);
    let file = std::fs::read(&image).unwrap();
    let listen = Listen::Unix(dir.path().join("nbd.sock"));
    let server = Server::start(&listen, "raw", &image);
    let rig = Rig::new(&listen, TIMEOUT, 1, 1, 8 * MIB);
    let mut engine = rig.engine(0);
    let request = read(0, DATA, 4 * KIB);
    assert_eq!(rig.run(engine.as_mut(), &[request]), [ok(&request)]);

    server.stop();
    let requests = [read(0, DATA, 4 * KIB), write(4 * MIB, DATA + MIB, 4 * MIB)];
    let started = Instant::now();
    let batch = rig.start(engine.as_mut(), 0, &requests);
    let results = rig.wait(engine.as_mut(), batch, Duration::from_secs(10));
    let waited = started.elapsed();
    assert_eq!(results, [(1, IOERR), (1, IOERR)]);
    on_time(waited, TIMEOUT);

    server.resume();
    let request = read(MIB, DATA, 64 * KIB);
    rig.put(DATA, &[0xa5; 64 * KIB as usize]);
    assert_eq!(rig.handle(request), ok(&request));
    same(
        &rig.get(DATA, 64 * KIB),
        &file[MIB as usize..(MIB + 64 * KIB) as usize],
    );
    let results = rig.run(engine.as_mut(), &[request]);
    all_ok(&[request], &results);
}

/// A sparse qcow2 image: unallocated ranges read as zeros (qemu answers them with hole
/// chunks), written ranges read back, and the image holds exactly what was written.
#[test]
fn a_sparse_qcow2_export_reads_holes_as_zeros() {
    const SIZE: u64 = 16 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        image.to_str().unwrap(),
        "16M",
    ]);
    let listen = Listen::Unix(dir.path().join("nbd.sock"));
    let server = Server::start(&listen, "qcow2", &image);
    let rig = Rig::new(&listen, Duration::from_secs(30), 1, 1, DATA + 2 * SIZE);
    assert_eq!(rig.disk().size(), SIZE);
    let mut engine = rig.engine(0);
    let mut wanted = vec![0u8; SIZE as usize];

    // Three writes: a whole cluster, a few sectors inside another, the disk's last 4 KiB.
    let writes = [
        write(MIB, DATA, 64 * KIB),
        write(5 * MIB + 512, DATA + MIB, 3 * KIB),
        write(SIZE - 4 * KIB, DATA + 2 * MIB, 4 * KIB),
    ];
    for (i, request) in writes.iter().enumerate() {
        let bytes = pattern(300 + i as u64, request.len as usize);
        rig.put(request.buf, &bytes);
        let at = request.offset as usize;
        wanted[at..at + bytes.len()].copy_from_slice(&bytes);
    }
    let results = rig.run(engine.as_mut(), &writes[..2]);
    all_ok(&writes[..2], &results);
    assert_eq!(rig.handle(writes[2]), ok(&writes[2]));

    // Reads into buffers full of 0xa5, so zeros must have been put there.
    let reads = [
        // Never written.
        read(8 * MIB, DATA + 4 * MIB, MIB),
        // A hole, the written cluster, a hole.
        read(MIB - 64 * KIB, DATA + 6 * MIB, 192 * KIB),
        // The partly written cluster.
        read(5 * MIB, DATA + 7 * MIB, 64 * KIB),
        // The end of the disk.
        read(SIZE - 64 * KIB, DATA + 8 * MIB, 64 * KIB),
    ];
    rig.put(DATA + 4 * MIB, &vec![0xa5; 5 * MIB as usize]);
    let results = rig.run(engine.as_mut(), &reads);
    all_ok(&reads, &results);
    for request in &reads {
        let at = request.offset as usize;
        same(
            &rig.get(request.buf, request.len.into()),
            &wanted[at..at + request.len as usize],
        );
    }
    // The whole disk through `handle`.
    let whole = read(0, DATA + SIZE, SIZE);
    rig.put(DATA + SIZE, &vec![0xa5; SIZE as usize]);
    assert_eq!(rig.handle(whole), ok(&whole));
    same(&rig.get(DATA + SIZE, SIZE), &wanted);
    let results = rig.run(engine.as_mut(), &[flush()]);
    assert_eq!(results, [(1, OK)]);

    drop(engine);
    drop(rig);
    server.terminate();
    qemu_img(&["check", "-q", image.to_str().unwrap()]);
    let raw = dir.path().join("converted.raw");
    qemu_img(&[
        "convert",
        "-f",
        "qcow2",
        "-O",
        "raw",
        image.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
    same(&std::fs::read(&raw).unwrap(), &wanted);
}

/// Four queues over TCP: one connection each when qemu-nbd offers multi-conn, and I/O
/// from every queue's engine, all in flight together, lands and reads back.
#[test]
fn four_queues_over_tcp() {
    const SIZE: u64 = 8 * MIB;
    const PER_QUEUE: u64 = 8;
    const LEN: u64 = 32 * KIB;
    let (_dir, image) = raw_image(SIZE, 4);
    let listen = Listen::Tcp(free_port());
    let server = Server::start(&listen, "raw", &image);
    let options = options(&listen, Duration::from_secs(30), 4);
    let report = NbdDisk::check(&options).unwrap();
    let rig = Rig::new(&listen, Duration::from_secs(30), 4, 4, 4 * MIB);
    // qemu-nbd 7.2 offers CAN_MULTI_CONN on a writable export when --shared allows
    // more than one client (qemu 7.1 made that its default), so each queue gets its own.
    assert!(
        report.info.has(CAN_MULTI_CONN),
        "qemu-nbd --shared=8 offers no multi-conn: flags {:#x}",
        report.info.flags
    );
    assert_eq!(rig.disk().connections(), 4);
    let clients: Vec<_> = (0..4).map(|queue| rig.disk().client_for(queue)).collect();
    for (i, a) in clients.iter().enumerate() {
        for b in &clients[i + 1..] {
            assert!(!Arc::ptr_eq(a, b), "two queues share a connection");
        }
    }

    let mut engines: Vec<_> = (0..4).map(|queue| rig.engine(queue)).collect();
    let mut wanted = std::fs::read(&image).unwrap();
    // Queue q writes PER_QUEUE pieces, interleaved with the other queues' pieces.
    let plan = |q: u64, i: u64| ((i * 4 + q) * 2 * LEN, DATA + (q * PER_QUEUE + i) * LEN);
    let writes: Vec<Vec<Req>> = (0..4)
        .map(|q| {
            (0..PER_QUEUE)
                .map(|i| {
                    let (offset, buf) = plan(q, i);
                    write(offset, buf, LEN)
                })
                .collect()
        })
        .collect();
    for (q, requests) in writes.iter().enumerate() {
        for (i, request) in requests.iter().enumerate() {
            let bytes = pattern(400 + (q * 100 + i) as u64, LEN as usize);
            rig.put(request.buf, &bytes);
            let at = request.offset as usize;
            wanted[at..at + LEN as usize].copy_from_slice(&bytes);
        }
    }
    let batches: Vec<Batch> = engines
        .iter_mut()
        .zip(&writes)
        .enumerate()
        .map(|(q, (engine, requests))| rig.start(engine.as_mut(), q as u64, requests))
        .collect();
    for ((engine, batch), requests) in engines.iter_mut().zip(batches).zip(&writes) {
        let results = rig.wait(engine.as_mut(), batch, Duration::from_secs(30));
        all_ok(requests, &results);
    }
    // Every queue flushes; each connection's flush covers what all of them wrote.
    for (q, engine) in engines.iter_mut().enumerate() {
        let batch = rig.start(engine.as_mut(), q as u64, &[flush()]);
        assert_eq!(
            rig.wait(engine.as_mut(), batch, Duration::from_secs(30)),
            [(1, OK)]
        );
    }
    same(&std::fs::read(&image).unwrap(), &wanted);

    // Queue q reads back what queue q + 1 wrote, through its own connection; the server
    // is killed as soon as they are out and started again on the same port a second
    // later, so all four connections reconnect and send their reads again.
    rig.put(DATA, &vec![0xa5; (4 * PER_QUEUE * LEN) as usize]);
    let reads: Vec<Vec<Req>> = (0..4)
        .map(|q| {
            (0..PER_QUEUE)
                .map(|i| {
                    let (offset, _) = plan((q + 1) % 4, i);
                    let (_, buf) = plan(q, i);
                    read(offset, buf, LEN)
                })
                .collect()
        })
        .collect();
    let batches: Vec<Batch> = engines
        .iter_mut()
        .zip(&reads)
        .enumerate()
        .map(|(q, (engine, requests))| rig.start(engine.as_mut(), q as u64, requests))
        .collect();
    server.kill();
    std::thread::sleep(Duration::from_secs(1));
    let _server = Server::start(&listen, "raw", &image);
    for ((engine, batch), requests) in engines.iter_mut().zip(batches).zip(&reads) {
        let results = rig.wait(engine.as_mut(), batch, Duration::from_secs(30));
        all_ok(requests, &results);
        for request in requests {
            let at = request.offset as usize;
            same(&rig.get(request.buf, LEN), &wanted[at..at + LEN as usize]);
        }
    }
}

/// Reads and writes of 40 MiB, more than qemu-nbd's largest payload (32 MiB), are split
/// into several commands and complete whole, through the engine and through `handle`.
#[test]
fn requests_larger_than_the_largest_payload_are_split() {
    const SIZE: u64 = 48 * MIB;
    const LEN: u64 = 40 * MIB;
    /// Where the second 40 MiB buffer starts.
    const SECOND: u64 = DATA + 41 * MIB;
    let (dir, image) = raw_image(SIZE, 5);
    let mut wanted = std::fs::read(&image).unwrap();
    let listen = Listen::Unix(dir.path().join("nbd.sock"));
    let _server = Server::start(&listen, "raw", &image);
    let rig = Rig::new(&listen, Duration::from_secs(30), 1, 1, SECOND + LEN + MIB);
    assert!(
        u64::from(rig.disk().max_payload()) < LEN,
        "max payload {} does not make 40 MiB a split request",
        rig.disk().max_payload()
    );
    let mut engine = rig.engine(0);

    // A write through `handle`, at an offset that is no multiple of the payload.
    let offset = 3 * MIB + 4608;
    let bytes = pattern(500, LEN as usize);
    rig.put(DATA, &bytes);
    wanted[offset as usize..(offset + LEN) as usize].copy_from_slice(&bytes);
    let request = write(offset, DATA, LEN);
    assert_eq!(rig.handle(request), ok(&request));
    same(&std::fs::read(&image).unwrap(), &wanted);

    // A read through the engine, overlapping it.
    let request = read(MIB, SECOND, LEN);
    rig.put(SECOND, &vec![0xa5; LEN as usize]);
    let results = rig.run(engine.as_mut(), &[request]);
    all_ok(&[request], &results);
    same(
        &rig.get(SECOND, LEN),
        &wanted[MIB as usize..(MIB + LEN) as usize],
    );

    // A write through the engine from two descriptors (25 + 15 MiB: the split falls
    // inside the second), next to a small read in flight with it.
    let offset = 8 * MIB - 512;
    let bytes = pattern(501, LEN as usize);
    rig.put(DATA, &bytes);
    wanted[offset as usize..(offset + LEN) as usize].copy_from_slice(&bytes);
    let requests = [
        write(offset, DATA, LEN).split_at(25 * MIB),
        read(0, SECOND, 4 * KIB),
    ];
    let results = rig.run(engine.as_mut(), &requests);
    all_ok(&requests, &results);
    same(&rig.get(SECOND, 4 * KIB), &wanted[..4 * KIB as usize]);
    same(&std::fs::read(&image).unwrap(), &wanted);

    // A read through `handle`.
    let request = read(SIZE - LEN, SECOND, LEN);
    rig.put(SECOND, &vec![0xa5; LEN as usize]);
    assert_eq!(rig.handle(request), ok(&request));
    same(&rig.get(SECOND, LEN), &wanted[(SIZE - LEN) as usize..]);
}
