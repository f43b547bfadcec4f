//! `BlockBackend::handle` on descriptor chains built with virtio-queue's `MockSplitQueue`:
//! every request type, and chains a driver should never send. No kernel involved.
//!
//! The suite runs with the `sync` engine (`handle`); `every_engine_passes_the_suite` runs
//! it again in child processes with `VDUSE_BLK_TEST_ENGINE=threads` and `=io-uring`, where
//! each request goes through the queue engine the runtime would use (`start`, `submit`,
//! wait on the completion eventfd, `reap`), and with `=nbd`, where the same file is
//! exported by a real `qemu-nbd` (qemu-utils) on a Unix socket and served through the NBD
//! backend and its engine, and `=nbd-tls`, the same over TLS (certificates made by
//! `openssl`).

use bytes::same;
use vduse_testkit::bytes;

use vduse_testkit::tls_certs;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use vduse::backend::{Backend, Memory, QueueEngine, Used};
use vduse_blk::config::{CacheMode, IoEngine};
use vduse_blk::nbd::tls::TlsOptions;
use vduse_blk::nbd::{NbdDisk, NbdOptions, NbdUri};
use vduse_blk::{BlockBackend, BlockOptions, FileDisk, FileDiskOptions};
use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{RawDescriptor, split::Descriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress};

const QUEUE_SIZE: u16 = 16;
/// Guest memory size: room for the queue at 0 and data from `DATA` on.
const MEMORY_SIZE: usize = 8 << 20;
/// Where test buffers start.
const DATA: u64 = 0x1_0000;
/// Status byte value before the device writes it.
const UNTOUCHED: u8 = 0xee;

const OK: u8 = VIRTIO_BLK_S_OK as u8;
const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
const UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;

/// A disk over a temporary file, and guest memory to talk to it through.
struct Disk {
    /// With the NBD engine: the `qemu-nbd` exporting the file (killed on drop).
    _nbd_server: Option<NbdServer>,
    _dir: tempfile::TempDir,
    path: PathBuf,
    backend: Arc<BlockBackend>,
    memory: Arc<Memory>,
    /// The queue engine requests go through; `None`: `Backend::handle`.
    engine: Option<Mutex<Box<dyn QueueEngine>>>,
}

/// The environment variable that picks the engine under test.
const ENGINE_VAR: &str = "VDUSE_BLK_TEST_ENGINE";

/// The engine the suite runs with (`threads` stands for the NBD engine too).
fn engine_under_test() -> IoEngine {
    match std::env::var(ENGINE_VAR).as_deref() {
        Ok("threads") | Ok("nbd") | Ok("nbd-tls") => IoEngine::Threads,
        Ok("io-uring") => IoEngine::IoUring,
        Ok("sync") | Err(_) => IoEngine::Sync,
        Ok(other) => panic!("{ENGINE_VAR}={other}: use sync, threads, io-uring, nbd or nbd-tls"),
    }
}

/// Whether the suite runs over NBD.
fn over_nbd() -> bool {
    matches!(
        std::env::var(ENGINE_VAR).as_deref(),
        Ok("nbd") | Ok("nbd-tls")
    )
}

/// Whether the suite runs over NBD with TLS.
fn over_tls() -> bool {
    std::env::var(ENGINE_VAR).as_deref() == Ok("nbd-tls")
}

/// A `qemu-nbd` exporting a file on a Unix socket.
struct NbdServer {
    child: std::process::Child,
    socket: PathBuf,
}

impl NbdServer {
    fn start(
        file: &std::path::Path,
        socket: PathBuf,
        tls: Option<&tls_certs::Credentials>,
    ) -> NbdServer {
        let child = std::process::Command::new("qemu-nbd")
            .args([
                "--persistent",
                "--shared=8",
                "--format=raw",
                "--discard=unmap",
            ])
            .args(tls.map(tls_certs::qemu_nbd_args).unwrap_or_default())
            .arg(format!("--socket={}", socket.display()))
            .arg(file)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot run qemu-nbd ({error}): install qemu-utils (tests/run-all does)")
            });
        // Connectable, not just there: qemu-nbd binds (making the file) before it listens.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "qemu-nbd did not listen on its socket within 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        NbdServer { child, socket }
    }
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
struct Setup {
    size: u64,
    read_only: bool,
    cache: CacheMode,
    logical_block_size: u32,
    physical_block_size: Option<u32>,
    num_queues: u16,
    serial: Option<String>,
    discard: bool,
    write_zeroes: bool,
    regions: Vec<(GuestAddress, usize)>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            size: 1 << 20,
            read_only: false,
            cache: CacheMode::Writeback,
            logical_block_size: 512,
            physical_block_size: None,
            num_queues: 1,
            serial: Some("SN-42".into()),
            discard: true,
            write_zeroes: true,
            regions: vec![(GuestAddress(0), MEMORY_SIZE)],
        }
    }
}

/// The byte the test pattern has at `offset` of the backing file.
fn pattern(offset: u64) -> u8 {
    (offset % 251) as u8 ^ 0x5a
}

impl Disk {
    fn new() -> Disk {
        Disk::with(Setup::default())
    }

    /// A disk whose backing file holds `pattern` everywhere.
    fn with(setup: Setup) -> Disk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let bytes: Vec<u8> = (0..setup.size).map(pattern).collect();
        std::fs::write(&path, bytes).unwrap();
        let mut nbd_server = None;
        let store: vduse_blk::Disk = if over_nbd() {
            let credentials = over_tls().then(|| tls_certs::make(dir.path()));
            let server = NbdServer::start(&path, dir.path().join("nbd.sock"), credentials.as_ref());
            let scheme = if over_tls() { "nbds+unix" } else { "nbd+unix" };
            let uri = format!("{scheme}:///?socket={}", server.socket.display());
            nbd_server = Some(server);
            NbdDisk::connect(&NbdOptions {
                uri: NbdUri::parse(&uri).unwrap(),
                timeout: std::time::Duration::from_secs(10),
                connections: 1,
                read_only: setup.read_only,
                logical_block_size: setup.logical_block_size,
                tls: credentials.map(|credentials| TlsOptions {
                    ca: credentials.ca,
                    client_cert: None,
                    server_name: "localhost".into(),
                }),
            })
            .unwrap()
            .into()
        } else {
            FileDisk::open(&FileDiskOptions {
                path: path.clone(),
                size: None,
                create: false,
                read_only: setup.read_only,
                cache: setup.cache,
                logical_block_size: setup.logical_block_size,
            })
            .unwrap()
            .into()
        };
        let backend = BlockBackend::new(
            store,
            BlockOptions {
                logical_block_size: setup.logical_block_size,
                physical_block_size: setup.physical_block_size,
                num_queues: setup.num_queues,
                queue_size: 256,
                serial: setup.serial,
                discard: setup.discard,
                write_zeroes: setup.write_zeroes,
                io_engine: engine_under_test(),
            },
        );
        let backend = Arc::new(backend);
        let engine = backend.clone().engine(0, QUEUE_SIZE).map(Mutex::new);
        assert_eq!(engine.is_some(), engine_under_test() != IoEngine::Sync);
        let memory = Arc::new(Memory::from_ranges(&setup.regions).unwrap());
        Disk {
            _nbd_server: nbd_server,
            _dir: dir,
            path,
            backend,
            memory,
            engine,
        }
    }

    /// Hands the chain `descriptors` to the backend; returns the used length.
    fn submit(&self, descriptors: &[RawDescriptor]) -> u32 {
        let queue = MockSplitQueue::new(self.memory.as_ref(), QUEUE_SIZE);
        // Each submission starts from an empty available ring.
        self.memory
            .write_obj(0u16, queue.avail_addr().unchecked_add(2))
            .unwrap();
        // The chain, popped as the runtime pops it.
        let head = queue.build_desc_chain(descriptors).unwrap().head_index();
        let mut ring: Queue = queue.create_queue().unwrap();
        let chain = ring.pop_descriptor_chain(self.memory.clone()).unwrap();
        let Some(engine) = &self.engine else {
            return self.backend.handle(0, &self.memory, chain);
        };
        let mut engine = engine.lock().unwrap();
        if let Some(len) = engine.start(self.memory.clone(), chain) {
            return len;
        }
        engine.submit();
        assert_eq!(engine.in_flight(), 1);
        let mut done: Vec<Used> = Vec::new();
        while done.is_empty() {
            let mut fds = [rustix::event::PollFd::from_borrowed_fd(
                engine.completion_fd().expect("the request completes later"),
                rustix::event::PollFlags::IN,
            )];
            let timeout = rustix::event::Timespec {
                tv_sec: 10,
                tv_nsec: 0,
            };
            let ready = rustix::event::poll(&mut fds, Some(&timeout)).unwrap();
            assert_eq!(ready, 1, "no completion within 10 s");
            engine.reap(&mut done);
            engine.submit();
        }
        assert_eq!(engine.in_flight(), 0);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].head, head);
        done[0].len
    }

    fn file_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }

    fn put(&self, addr: u64, bytes: &[u8]) {
        self.memory.write_slice(bytes, GuestAddress(addr)).unwrap();
    }

    fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        self.memory
            .read_slice(&mut bytes, GuestAddress(addr))
            .unwrap();
        bytes
    }

    /// Writes a request header at `addr`.
    fn header(&self, addr: u64, request_type: u32, sector: u64) {
        let mut header = [0u8; 16];
        header[..4].copy_from_slice(&request_type.to_le_bytes());
        header[8..].copy_from_slice(&sector.to_le_bytes());
        self.put(addr, &header);
    }

    /// Writes discard/write-zeroes segments at `addr`; returns their length in bytes.
    fn segments(&self, addr: u64, segments: &[(u64, u32, u32)]) -> u32 {
        let mut bytes = Vec::new();
        for &(sector, num_sectors, flags) in segments {
            bytes.extend_from_slice(&sector.to_le_bytes());
            bytes.extend_from_slice(&num_sectors.to_le_bytes());
            bytes.extend_from_slice(&flags.to_le_bytes());
        }
        self.put(addr, &bytes);
        bytes.len() as u32
    }

    /// A status descriptor at `addr`, primed with `UNTOUCHED`.
    fn status(&self, addr: u64) -> RawDescriptor {
        self.put(addr, &[UNTOUCHED]);
        writable(addr, 1)
    }

    fn status_at(&self, addr: u64) -> u8 {
        self.get(addr, 1)[0]
    }

    /// A request with a header at `DATA` and data and status descriptors after it, the
    /// status at `STATUS`. Returns (used length, status byte).
    fn simple(&self, request_type: u32, sector: u64, data: &[RawDescriptor]) -> (u32, u8) {
        self.header(DATA, request_type, sector);
        let mut chain = vec![readable(DATA, 16)];
        chain.extend_from_slice(data);
        chain.push(self.status(STATUS));
        let used = self.submit(&chain);
        (used, self.status_at(STATUS))
    }
}

/// Where `Disk::simple` puts the status byte.
const STATUS: u64 = DATA + 0xff0;
/// Where data buffers start.
const BUF: u64 = DATA + 0x1000;

fn readable(addr: u64, len: u32) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, 0, 0))
}

fn writable(addr: u64, len: u32) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, VRING_DESC_F_WRITE as u16, 0))
}

fn expected(offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64).map(pattern).collect()
}

#[test]
fn reads_land_in_guest_memory_across_descriptors() {
    let disk = Disk::new();
    let (used, status) = disk.simple(
        VIRTIO_BLK_T_IN,
        3,
        &[writable(BUF, 512), writable(BUF + 0x10000, 1024)],
    );
    assert_eq!((status, used), (OK, 1536 + 1));
    same(&disk.get(BUF, 512), &expected(3 * 512, 512));
    same(&disk.get(BUF + 0x10000, 1024), &expected(4 * 512, 1024));
}

#[test]
fn writes_reach_the_file() {
    let disk = Disk::new();
    disk.put(BUF, &[0xab; 1024]);
    disk.put(BUF + 0x8000, &[0xcd; 512]);
    let (used, status) = disk.simple(
        VIRTIO_BLK_T_OUT,
        10,
        &[readable(BUF, 1024), readable(BUF + 0x8000, 512)],
    );
    assert_eq!((status, used), (OK, 1));
    let file = disk.file_bytes();
    assert!(file[10 * 512..12 * 512].iter().all(|&b| b == 0xab));
    assert!(file[12 * 512..13 * 512].iter().all(|&b| b == 0xcd));
    same(&file[..10 * 512], &expected(0, 10 * 512));
    same(&file[13 * 512..], &expected(13 * 512, (1 << 20) - 13 * 512));
}

#[test]
fn any_framing_of_header_data_and_status_is_understood() {
    let disk = Disk::new();
    // The header split 5 + 11, data and status sharing one descriptor.
    disk.header(DATA, VIRTIO_BLK_T_IN, 1);
    disk.put(BUF + 512, &[UNTOUCHED]);
    let used = disk.submit(&[
        readable(DATA, 5),
        readable(DATA + 5, 11),
        writable(BUF, 512 + 1),
    ]);
    assert_eq!((disk.status_at(BUF + 512), used), (OK, 513));
    same(&disk.get(BUF, 512), &expected(512, 512));
    // Header and write data in one descriptor; a zero-length descriptor in between.
    disk.header(BUF, VIRTIO_BLK_T_OUT, 0);
    disk.put(BUF + 16, &[0x11; 512]);
    let used = disk.submit(&[
        readable(BUF, 16 + 512),
        writable(DATA, 0),
        disk.status(STATUS),
    ]);
    assert_eq!((disk.status_at(STATUS), used), (OK, 1));
    assert!(disk.file_bytes()[..512].iter().all(|&b| b == 0x11));
}

#[test]
fn an_indirect_table_is_followed() {
    let disk = Disk::new();
    let table = DATA + 0x4000;
    disk.header(DATA, VIRTIO_BLK_T_IN, 2);
    disk.put(STATUS, &[UNTOUCHED]);
    let entries = [
        Descriptor::new(
            DATA,
            16,
            virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16,
            1,
        ),
        Descriptor::new(
            BUF,
            512,
            (VRING_DESC_F_WRITE | virtio_bindings::virtio_ring::VRING_DESC_F_NEXT) as u16,
            2,
        ),
        Descriptor::new(STATUS, 1, VRING_DESC_F_WRITE as u16, 0),
    ];
    for (index, entry) in entries.iter().enumerate() {
        disk.memory
            .write_obj(
                RawDescriptor::from(*entry),
                GuestAddress(table + 16 * index as u64),
            )
            .unwrap();
    }
    let used = disk.submit(&[RawDescriptor::from(Descriptor::new(
        table,
        48,
        VRING_DESC_F_INDIRECT as u16,
        0,
    ))]);
    assert_eq!((disk.status_at(STATUS), used), (OK, 513));
    same(&disk.get(BUF, 512), &expected(1024, 512));
}

#[test]
fn more_segments_than_one_preadv_takes_are_all_read() {
    // 1100 data descriptors through an indirect table: more than IOV_MAX (1024) iovecs.
    let disk = Disk::new();
    let count = 1100u64;
    let table = DATA + 0x2_0000;
    let data = DATA + 0x4_0000;
    disk.header(DATA, VIRTIO_BLK_T_IN, 0);
    disk.put(STATUS, &[UNTOUCHED]);
    let next = virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16;
    let write = VRING_DESC_F_WRITE as u16;
    let mut entries = vec![Descriptor::new(DATA, 16, next, 1)];
    for index in 0..count {
        entries.push(Descriptor::new(
            data + index * 512,
            512,
            write | next,
            (index + 2) as u16,
        ));
    }
    entries.push(Descriptor::new(STATUS, 1, write, 0));
    for (index, entry) in entries.iter().enumerate() {
        disk.memory
            .write_obj(
                RawDescriptor::from(*entry),
                GuestAddress(table + 16 * index as u64),
            )
            .unwrap();
    }
    let used = disk.submit(&[RawDescriptor::from(Descriptor::new(
        table,
        16 * entries.len() as u32,
        VRING_DESC_F_INDIRECT as u16,
        0,
    ))]);
    assert_eq!(disk.status_at(STATUS), OK);
    assert_eq!(used, (count * 512 + 1) as u32);
    same(
        &disk.get(data, (count * 512) as usize),
        &expected(0, (count * 512) as usize),
    );
}

#[test]
fn buffers_that_cross_memory_regions_are_served() {
    let disk = Disk::with(Setup {
        regions: vec![
            (GuestAddress(0), 0x2_0000),
            (GuestAddress(0x2_0000), 0x2_0000),
        ],
        ..Setup::default()
    });
    let start = 0x2_0000 - 700;
    let (used, status) = disk.simple(VIRTIO_BLK_T_IN, 0, &[writable(start, 2048)]);
    assert_eq!((status, used), (OK, 2049));
    same(&disk.get(start, 2048), &expected(0, 2048));
}

#[test]
fn flush_succeeds() {
    let disk = Disk::new();
    assert_eq!(disk.simple(VIRTIO_BLK_T_FLUSH, 0, &[]), (1, OK));
    // The sector of a flush is ignored.
    assert_eq!(disk.simple(VIRTIO_BLK_T_FLUSH, 99, &[]), (1, OK));
}

#[test]
fn get_id_returns_the_nul_padded_serial() {
    let disk = Disk::new();
    disk.put(BUF, &[0xff; 32]);
    let (used, status) = disk.simple(VIRTIO_BLK_T_GET_ID, 0, &[writable(BUF, 20)]);
    assert_eq!((status, used), (OK, 21));
    let mut serial = b"SN-42".to_vec();
    serial.resize(20, 0);
    assert_eq!(disk.get(BUF, 20), serial);
    // A short buffer gets what fits.
    disk.put(BUF, &[0xff; 32]);
    let (used, status) = disk.simple(VIRTIO_BLK_T_GET_ID, 0, &[writable(BUF, 4)]);
    assert_eq!((status, used), (OK, 5));
    assert_eq!(disk.get(BUF, 5), b"SN-4\xff");
    // A full 20-byte serial has no NUL.
    let disk = Disk::with(Setup {
        serial: Some("ABCDEFGHIJKLMNOPQRST".into()),
        ..Setup::default()
    });
    let (_, status) = disk.simple(VIRTIO_BLK_T_GET_ID, 0, &[writable(BUF, 20)]);
    assert_eq!(status, OK);
    assert_eq!(disk.get(BUF, 20), b"ABCDEFGHIJKLMNOPQRST");
    // No serial: all NULs.
    let disk = Disk::with(Setup {
        serial: None,
        ..Setup::default()
    });
    disk.put(BUF, &[0xff; 20]);
    disk.simple(VIRTIO_BLK_T_GET_ID, 0, &[writable(BUF, 20)]);
    assert_eq!(disk.get(BUF, 20), [0; 20]);
}

/// The file's first hole at or after `from`, or its length when there is none.
fn next_hole(disk: &Disk, from: u64) -> u64 {
    let file = File::open(&disk.path).unwrap();
    rustix::fs::seek(&file, rustix::fs::SeekFrom::Hole(from)).unwrap()
}

#[test]
fn discard_punches_a_hole() {
    let disk = Disk::new();
    let blocks_before = std::fs::metadata(&disk.path).unwrap().blocks();
    assert_eq!(
        next_hole(&disk, 0),
        1 << 20,
        "the test file starts fully allocated"
    );
    let len = disk.segments(BUF, &[(256, 512, 0)]);
    let (used, status) = disk.simple(VIRTIO_BLK_T_DISCARD, 0, &[readable(BUF, len)]);
    assert_eq!((status, used), (OK, 1));
    assert_eq!(next_hole(&disk, 0), 256 * 512);
    let metadata = std::fs::metadata(&disk.path).unwrap();
    assert!(metadata.blocks() < blocks_before);
    assert_eq!(metadata.len(), 1 << 20, "discard keeps the size");
    // Outside the range the data is intact.
    let file = disk.file_bytes();
    same(&file[..256 * 512], &expected(0, 256 * 512));
    same(&file[768 * 512..], &expected(768 * 512, (2048 - 768) * 512));
}

#[test]
fn discard_takes_several_segments() {
    let disk = Disk::new();
    let len = disk.segments(BUF, &[(0, 8, 0), (1024, 512, 0), (2040, 8, 0)]);
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_DISCARD, 0, &[readable(BUF, len)]),
        (1, OK)
    );
    assert_eq!(next_hole(&disk, 0), 0);
    assert_eq!(next_hole(&disk, 4096), 1024 * 512);
}

#[test]
fn discard_flags_are_unsupported() {
    let disk = Disk::new();
    for flags in [VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP, 0x8000_0000] {
        let len = disk.segments(BUF, &[(0, 8, flags)]);
        assert_eq!(
            disk.simple(VIRTIO_BLK_T_DISCARD, 0, &[readable(BUF, len)]),
            (1, UNSUPP)
        );
    }
    same(&disk.file_bytes(), &expected(0, 1 << 20));
}

#[test]
fn write_zeroes_zeroes_with_and_without_unmap() {
    let disk = Disk::new();
    let len = disk.segments(BUF, &[(16, 16, 0)]);
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_WRITE_ZEROES, 0, &[readable(BUF, len)]),
        (1, OK)
    );
    let file = disk.file_bytes();
    assert!(file[16 * 512..32 * 512].iter().all(|&b| b == 0));
    same(&file[..16 * 512], &expected(0, 16 * 512));
    same(&file[32 * 512..], &expected(32 * 512, (1 << 20) - 32 * 512));

    let len = disk.segments(BUF, &[(1024, 1024, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)]);
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_WRITE_ZEROES, 0, &[readable(BUF, len)]),
        (1, OK)
    );
    let file = disk.file_bytes();
    assert!(file[1024 * 512..].iter().all(|&b| b == 0));
    // (The zeroed range above may read as a hole too: start looking after it.)
    assert_eq!(
        next_hole(&disk, 64 * 512),
        1024 * 512,
        "unmap punched a hole"
    );
    assert_eq!(file.len(), 1 << 20);

    let len = disk.segments(BUF, &[(0, 8, 0x2)]);
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_WRITE_ZEROES, 0, &[readable(BUF, len)]),
        (1, UNSUPP),
        "unknown flag"
    );
}

#[test]
fn unknown_request_types_are_unsupported() {
    let disk = Disk::new();
    for request_type in [
        2,
        10, // GET_LIFETIME
        VIRTIO_BLK_T_SECURE_ERASE,
        VIRTIO_BLK_T_ZONE_REPORT,
        VIRTIO_BLK_T_BARRIER | VIRTIO_BLK_T_OUT,
        0xdead_beef,
    ] {
        assert_eq!(
            disk.simple(request_type, 0, &[writable(BUF, 512)]),
            (1, UNSUPP),
            "{request_type}"
        );
    }
    same(&disk.file_bytes(), &expected(0, 1 << 20));
}

#[test]
fn disabled_discard_and_write_zeroes_are_unsupported() {
    let disk = Disk::with(Setup {
        discard: false,
        write_zeroes: false,
        ..Setup::default()
    });
    let len = disk.segments(BUF, &[(0, 8, 0)]);
    for request_type in [VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES] {
        assert_eq!(
            disk.simple(request_type, 0, &[readable(BUF, len)]),
            (1, UNSUPP)
        );
    }
    let features = disk.backend.features();
    assert_eq!(features & (1 << VIRTIO_BLK_F_DISCARD), 0);
    assert_eq!(features & (1 << VIRTIO_BLK_F_WRITE_ZEROES), 0);
}

#[test]
fn a_read_only_disk_refuses_every_write() {
    let disk = Disk::with(Setup {
        read_only: true,
        ..Setup::default()
    });
    disk.put(BUF, &[0xab; 512]);
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_OUT, 0, &[readable(BUF, 512)]),
        (1, IOERR)
    );
    let len = disk.segments(BUF + 0x1000, &[(0, 8, 0)]);
    for request_type in [VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES] {
        assert_eq!(
            disk.simple(request_type, 0, &[readable(BUF + 0x1000, len)]),
            (1, IOERR)
        );
    }
    same(&disk.file_bytes(), &expected(0, 1 << 20));
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_IN, 0, &[writable(BUF, 512)]),
        (513, OK)
    );
    assert_eq!(disk.simple(VIRTIO_BLK_T_FLUSH, 0, &[]), (1, OK));
    let features = disk.backend.features();
    assert_ne!(features & (1 << VIRTIO_BLK_F_RO), 0);
    assert_eq!(features & (1 << VIRTIO_BLK_F_DISCARD), 0);
    assert_eq!(features & (1 << VIRTIO_BLK_F_WRITE_ZEROES), 0);
}

#[test]
fn requests_beyond_the_capacity_fail() {
    let disk = Disk::new();
    let capacity = (1 << 20) / 512;
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_IN, capacity - 1, &[writable(BUF, 512)])
            .1,
        OK
    );
    for sector in [
        capacity,
        capacity - 1,
        u64::MAX,
        u64::MAX / 512,
        u64::MAX / 512 + 1,
    ] {
        assert_eq!(
            disk.simple(VIRTIO_BLK_T_IN, sector, &[writable(BUF, 1024)]),
            (1, IOERR),
            "read at {sector}"
        );
        disk.put(BUF, &[0; 1024]);
        assert_eq!(
            disk.simple(VIRTIO_BLK_T_OUT, sector, &[readable(BUF, 1024)]),
            (1, IOERR),
            "write at {sector}"
        );
    }
    for segment in [
        (capacity - 8, 16, 0),
        (u64::MAX - 4, 8, 0),
        (0, vduse_blk::backend::MAX_DISCARD_SECTORS + 1, 0),
    ] {
        let len = disk.segments(BUF, &[(0, 8, 0), segment]);
        for request_type in [VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES] {
            assert_eq!(
                disk.simple(request_type, 0, &[readable(BUF, len)]),
                (1, IOERR),
                "{segment:?}"
            );
        }
    }
    // No segment ran when one was bad.
    same(&disk.file_bytes(), &expected(0, 1 << 20));
}

#[test]
fn malformed_chains_fail_with_ioerr_when_a_status_can_be_written() {
    let disk = Disk::new();
    let unchanged = expected(0, 1 << 20);
    let outside = (MEMORY_SIZE as u64) + 0x1000;

    // Header too short (8 bytes), whatever the type would have been.
    disk.header(DATA, VIRTIO_BLK_T_IN, 0);
    let used = disk.submit(&[readable(DATA, 8), disk.status(STATUS)]);
    assert_eq!((used, disk.status_at(STATUS)), (1, IOERR));
    // No header at all.
    let used = disk.submit(&[disk.status(STATUS)]);
    assert_eq!((used, disk.status_at(STATUS)), (1, IOERR));

    // Data not a whole number of sectors.
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_IN, 0, &[writable(BUF, 1000)]),
        (1, IOERR)
    );
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_OUT, 0, &[readable(BUF, 100)]),
        (1, IOERR)
    );
    // Read data in a device-readable descriptor, write data in a writable one.
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_IN, 0, &[readable(BUF, 512)]),
        (1, IOERR)
    );
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_OUT, 0, &[writable(BUF, 512)]),
        (1, IOERR)
    );
    // A readable descriptor after a writable one.
    assert_eq!(
        disk.simple(
            VIRTIO_BLK_T_OUT,
            0,
            &[writable(BUF, 512), readable(BUF, 512)]
        ),
        (1, IOERR)
    );
    // Data or header outside guest memory.
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_IN, 0, &[writable(outside, 512)]),
        (1, IOERR)
    );
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_OUT, 0, &[readable(outside, 512)]),
        (1, IOERR)
    );
    assert_eq!(
        disk.simple(
            VIRTIO_BLK_T_IN,
            0,
            &[writable(MEMORY_SIZE as u64 - 256, 512)]
        ),
        (1, IOERR),
        "straddles the end of memory"
    );
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_IN, 0, &[writable(u64::MAX - 100, 512)]),
        (1, IOERR),
        "wraps around the address space"
    );
    let used = disk.submit(&[readable(outside, 16), disk.status(STATUS)]);
    assert_eq!((used, disk.status_at(STATUS)), (1, IOERR));
    // Discard data that is not whole segments, none, or too many.
    for len in [0u32, 15, 17] {
        assert_eq!(
            disk.simple(VIRTIO_BLK_T_DISCARD, 0, &[readable(BUF, len)]),
            (1, IOERR),
            "{len} bytes of segments"
        );
    }
    let many = vec![(0, 8, 0); vduse_blk::backend::MAX_DISCARD_SEGMENTS as usize + 1];
    let len = disk.segments(BUF, &many);
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_WRITE_ZEROES, 0, &[readable(BUF, len)]),
        (1, IOERR)
    );
    same(&disk.file_bytes(), &unchanged);
}

#[test]
fn chains_without_a_writable_status_byte_are_left_unanswered() {
    let disk = Disk::new();
    disk.header(DATA, VIRTIO_BLK_T_IN, 0);
    disk.put(STATUS, &[UNTOUCHED]);
    // The status descriptor is device-readable.
    assert_eq!(disk.submit(&[readable(DATA, 16), readable(STATUS, 1)]), 0);
    assert_eq!(disk.status_at(STATUS), UNTOUCHED);
    // The writable descriptors are all empty.
    assert_eq!(disk.submit(&[readable(DATA, 16), writable(STATUS, 0)]), 0);
    assert_eq!(disk.status_at(STATUS), UNTOUCHED);
    // The status byte is outside memory, or wraps around.
    let outside = MEMORY_SIZE as u64 + 0x1000;
    assert_eq!(disk.submit(&[readable(DATA, 16), writable(outside, 1)]), 0);
    assert_eq!(disk.submit(&[readable(DATA, 16), writable(u64::MAX, 2)]), 0);
    // Only a header.
    assert_eq!(disk.submit(&[readable(DATA, 16)]), 0);
    // An OUT whose data would have been written: nothing reaches the file.
    disk.header(DATA, VIRTIO_BLK_T_OUT, 0);
    disk.put(BUF, &[0xab; 512]);
    assert_eq!(disk.submit(&[readable(DATA, 16), readable(BUF, 512)]), 0);
    same(&disk.file_bytes(), &expected(0, 1 << 20));
}

/// Whether O_DIRECT works in the temporary directory.
fn direct_io_works() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe");
    std::fs::write(&path, [0u8; 4096]).unwrap();
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_direct())
        .open(&path)
        .is_ok()
}

fn libc_o_direct() -> i32 {
    rustix::fs::OFlags::DIRECT.bits() as i32
}

#[test]
fn cache_none_serves_aligned_and_unaligned_guest_buffers() {
    if !direct_io_works() {
        eprintln!("skipped: no O_DIRECT in the temporary directory");
        return;
    }
    let disk = Disk::with(Setup {
        cache: CacheMode::None,
        logical_block_size: 4096,
        size: 4 << 20,
        ..Setup::default()
    });
    // Aligned: straight into guest memory.
    let (used, status) = disk.simple(VIRTIO_BLK_T_IN, 8, &[writable(BUF, 8192)]);
    assert_eq!((status, used), (OK, 8193));
    same(&disk.get(BUF, 8192), &expected(4096, 8192));
    // Unaligned guest addresses and lengths: through the bounce buffer, both ways.
    let odd = BUF + 0x10001;
    let (used, status) = disk.simple(
        VIRTIO_BLK_T_IN,
        0,
        &[writable(odd, 512), writable(odd + 0x1000, 3584)],
    );
    assert_eq!((status, used), (OK, 4097));
    same(&disk.get(odd, 512), &expected(0, 512));
    same(&disk.get(odd + 0x1000, 3584), &expected(512, 3584));
    disk.put(odd, &[0x77; 4096]);
    let (_, status) = disk.simple(VIRTIO_BLK_T_OUT, 16, &[readable(odd, 4096)]);
    assert_eq!(status, OK);
    // More than one bounce chunk (1 MiB).
    let big = 3 << 20;
    let (used, status) = disk.simple(VIRTIO_BLK_T_IN, 0, &[writable(odd, big as u32)]);
    assert_eq!((status, used), (OK, big as u32 + 1));
    let mut want = expected(0, big);
    want[16 * 512..16 * 512 + 4096].fill(0x77);
    same(&disk.get(odd, big), &want);
    // Offsets and lengths the direct I/O alignment cannot serve.
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_IN, 1, &[writable(BUF, 4096)]),
        (1, IOERR)
    );
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_IN, 0, &[writable(BUF, 512)]),
        (1, IOERR)
    );
    // Write zeroes and flush work with O_DIRECT too.
    let len = disk.segments(BUF, &[(64, 8, 0)]);
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_WRITE_ZEROES, 0, &[readable(BUF, len)]),
        (1, OK)
    );
    assert_eq!(disk.simple(VIRTIO_BLK_T_FLUSH, 0, &[]), (1, OK));
    let file = disk.file_bytes();
    assert!(file[64 * 512..72 * 512].iter().all(|&b| b == 0));
    assert!(file[16 * 512..24 * 512].iter().all(|&b| b == 0x77));
}

#[test]
fn the_config_space_describes_the_disk() {
    let disk = Disk::with(Setup {
        physical_block_size: Some(4096),
        num_queues: 4,
        ..Setup::default()
    });
    let config = disk.backend.config();
    assert_eq!(config.len(), size_of::<virtio_blk_config>());
    let u32_at = |offset: usize| u32::from_le_bytes(config[offset..offset + 4].try_into().unwrap());
    assert_eq!(
        u64::from_le_bytes(config[0..8].try_into().unwrap()),
        (1 << 20) / 512,
        "capacity"
    );
    assert_eq!(u32_at(8), 1 << 20, "size_max");
    assert_eq!(u32_at(12), 254, "seg_max");
    assert_eq!(u32_at(20), 512, "blk_size");
    assert_eq!(config[24], 3, "physical_block_exp: 4096 / 512 = 2^3");
    assert_eq!(config[25], 0, "alignment_offset");
    assert_eq!(
        u16::from_le_bytes([config[26], config[27]]),
        8,
        "min_io_size"
    );
    assert_eq!(config[32], 0, "writeback");
    assert_eq!(
        u16::from_le_bytes([config[34], config[35]]),
        4,
        "num_queues"
    );
    assert_eq!(u32_at(36), vduse_blk::backend::MAX_DISCARD_SECTORS);
    assert_eq!(u32_at(40), vduse_blk::backend::MAX_DISCARD_SEGMENTS);
    assert_eq!(u32_at(44), 1, "discard_sector_alignment");
    assert_eq!(u32_at(48), vduse_blk::backend::MAX_DISCARD_SECTORS);
    assert_eq!(u32_at(52), vduse_blk::backend::MAX_DISCARD_SEGMENTS);
    assert_eq!(config[56], 1, "write_zeroes_may_unmap");

    let features = disk.backend.features();
    for bit in [
        VIRTIO_BLK_F_SIZE_MAX,
        VIRTIO_BLK_F_SEG_MAX,
        VIRTIO_BLK_F_BLK_SIZE,
        VIRTIO_BLK_F_TOPOLOGY,
        VIRTIO_BLK_F_FLUSH,
        VIRTIO_BLK_F_MQ,
        VIRTIO_BLK_F_DISCARD,
        VIRTIO_BLK_F_WRITE_ZEROES,
    ] {
        assert_ne!(features & (1 << bit), 0, "bit {bit}");
    }
    for bit in [
        VIRTIO_BLK_F_CONFIG_WCE,
        VIRTIO_BLK_F_RO,
        VIRTIO_BLK_F_GEOMETRY,
    ] {
        assert_eq!(features & (1 << bit), 0, "bit {bit}");
    }
    assert_eq!(disk.backend.num_queues(), 4);
    assert_eq!(disk.backend.max_queue_size(), 256);
    assert_eq!(disk.backend.device_type(), vduse::DeviceType::Block);

    // What the kernel is sent passes its rules.
    let mut device = vduse::DeviceConfig::new("disk0", vduse::DeviceType::Block, 4);
    device.features |= features;
    device.config = config;
    device.validate(1).unwrap();
    device.validate(0).unwrap();

    // One queue: no MQ; 4096-byte logical blocks: alignment in 512-byte sectors.
    let disk = Disk::with(Setup {
        logical_block_size: 4096,
        ..Setup::default()
    });
    assert_eq!(disk.backend.features() & (1 << VIRTIO_BLK_F_MQ), 0);
    let config = disk.backend.config();
    assert_eq!(u32::from_le_bytes(config[20..24].try_into().unwrap()), 4096);
    assert_eq!(config[24], 0);
    assert_eq!(u32::from_le_bytes(config[44..48].try_into().unwrap()), 8);
}

#[test]
fn status_goes_in_the_last_writable_byte_even_after_read_data() {
    // The status shares the last data descriptor: used length covers data and status.
    let disk = Disk::new();
    disk.header(DATA, VIRTIO_BLK_T_IN, 0);
    let used = disk.submit(&[
        readable(DATA, 16),
        writable(BUF, 256),
        writable(BUF + 0x1000, 256 + 1),
    ]);
    assert_eq!(used, 513);
    assert_eq!(disk.get(BUF + 0x1000 + 256, 1), [OK]);
    same(&disk.get(BUF, 256), &expected(0, 256));
    same(&disk.get(BUF + 0x1000, 256), &expected(256, 256));
}

#[test]
fn file_contents_survive_a_reopen() {
    let disk = Disk::new();
    disk.put(BUF, &[0x42; 512]);
    assert_eq!(
        disk.simple(VIRTIO_BLK_T_OUT, 5, &[readable(BUF, 512)]).1,
        OK
    );
    assert_eq!(disk.simple(VIRTIO_BLK_T_FLUSH, 0, &[]).1, OK);
    let mut file = File::open(&disk.path).unwrap();
    file.seek(SeekFrom::Start(5 * 512)).unwrap();
    let mut sector = [0u8; 512];
    file.read_exact(&mut sector).unwrap();
    assert_eq!(sector, [0x42; 512]);
    // And a write to the file is seen by the next read.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&disk.path)
        .unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.write_all(&[0x24; 512]).unwrap();
    assert_eq!(disk.simple(VIRTIO_BLK_T_IN, 0, &[writable(BUF, 512)]).1, OK);
    assert_eq!(disk.get(BUF, 512), [0x24; 512]);
}

#[test]
fn random_chains_never_panic_and_never_overreport() {
    // A small xorshift generator: reproducible without another dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let disk = Disk::new();
    let types = [
        VIRTIO_BLK_T_IN,
        VIRTIO_BLK_T_OUT,
        VIRTIO_BLK_T_FLUSH,
        VIRTIO_BLK_T_GET_ID,
        VIRTIO_BLK_T_DISCARD,
        VIRTIO_BLK_T_WRITE_ZEROES,
        7,
    ];
    for _ in 0..3000 {
        let request_type = types[(next() % types.len() as u64) as usize];
        let sector = match next() % 4 {
            0 => next(),
            _ => next() % 4096,
        };
        disk.header(DATA, request_type, sector);
        // Random segments, some with flags, for discard and write zeroes.
        let segments: Vec<(u64, u32, u32)> = (0..next() % 4)
            .map(|_| (next() % 4096, (next() % 64) as u32, (next() % 3) as u32))
            .collect();
        disk.segments(BUF, &segments);
        let mut chain = Vec::new();
        let mut writable_total = 0u64;
        for _ in 0..1 + next() % 6 {
            let addr = match next() % 8 {
                0 => next(),
                1 => MEMORY_SIZE as u64 - next() % 1024,
                2 => DATA,
                _ => BUF + (next() % 0x10000),
            };
            let len = match next() % 4 {
                0 => (next() % 40) as u32,
                1 => 16,
                _ => 512 * (next() % 9) as u32,
            };
            if next() % 2 == 0 {
                writable_total += u64::from(len);
                chain.push(writable(addr, len));
            } else {
                chain.push(readable(addr, len));
            }
        }
        let used = disk.submit(&chain);
        assert!(
            u64::from(used) <= writable_total,
            "{used} > {writable_total}"
        );
    }
}

#[test]
fn every_engine_passes_the_suite() {
    if std::env::var_os(ENGINE_VAR).is_some() {
        return;
    }
    for name in ["threads", "io-uring", "nbd", "nbd-tls"] {
        if name == "io-uring" {
            if let Err(error) = vduse_blk::disk::io_uring_available() {
                eprintln!("io_uring unavailable here ({error}): io-uring runs as threads");
            }
        }
        let mut suite = std::process::Command::new(std::env::current_exe().unwrap());
        suite
            .env(ENGINE_VAR, name)
            .args(["--skip", "every_engine_passes_the_suite"]);
        if name.starts_with("nbd") {
            // `cache` is the NBD server's business (and an error in the configuration).
            suite.args([
                "--skip",
                "cache_none_serves_aligned_and_unaligned_guest_buffers",
            ]);
        }
        let output = suite.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let summary = stdout
            .lines()
            .find(|line| line.starts_with("test result"))
            .unwrap_or("no summary");
        eprintln!("engine {name}: {summary}");
        assert!(!summary.contains(" 0 passed"), "engine {name} ran no test");
        assert!(
            output.status.success(),
            "the suite fails with engine {name}:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
