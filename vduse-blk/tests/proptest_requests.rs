//! Property tests of the virtio-blk request path (`BlockBackend::handle`) on descriptor
//! chains no driver should send: arbitrary lengths, flags and addresses (inside memory,
//! in a hole between two regions, straddling a region's end, wrapping around the address
//! space), NEXT links that loop or point past the table, readable and writable buffers in
//! any order, and indirect tables of any length. Chains are built with virtio-queue's
//! `MockSplitQueue`; no kernel is involved.
//!
//! For every chain: no panic, no hang; when the chain has a device-writable byte that can
//! hold a status, that byte is OK, IOERR or UNSUPP and the used length counts it; when it
//! has none, nothing is answered and guest memory is untouched; no byte outside the
//! chain's device-writable buffers changes; and a request that did not succeed leaves the
//! disk as it was.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use vduse::backend::{Backend, Memory};
use vduse_blk::config::{CacheMode, IoEngine};
use vduse_blk::{Backing, BackingOptions, BlockBackend, BlockOptions};
use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{RawDescriptor, split::Descriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

const QUEUE_SIZE: u16 = 16;
/// Two regions with a hole between them, so addresses can fall in neither.
const REGION_A: (u64, usize) = (0, 0x10_0000);
const REGION_B: (u64, usize) = (0x18_0000, 0x8_0000);
const HOLE: u64 = 0x14_0000;
/// The request header, then discard/write-zeroes segments right after it.
const HEADER_AT: u64 = 0x1000;
const SEGMENTS_AT: u64 = HEADER_AT + 16;
/// Where an indirect table goes.
const INDIRECT_AT: u64 = 0x2000;
/// Data buffers in each region.
const DATA_A: u64 = 0x1_0000;
const DATA_B: u64 = REGION_B.0;
/// The disk: 64 KiB.
const DISK_SIZE: u64 = 64 << 10;

const STATUSES: [u8; 3] = [
    VIRTIO_BLK_S_OK as u8,
    VIRTIO_BLK_S_IOERR as u8,
    VIRTIO_BLK_S_UNSUPP as u8,
];

/// Runs `f` on another thread and fails if it takes longer than `limit`: a chain that
/// made the device loop would otherwise hang the test instead of failing it.
fn within(limit: Duration, f: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match finished.recv_timeout(limit) {
        Ok(()) => thread.join().unwrap(),
        // The thread ended without a word: it panicked; show why.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(thread.join().unwrap_err())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("no answer within {limit:?}: a hang"),
    }
}

/// A disk over a temporary file, and guest memory of two regions.
struct Disk {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    backend: Arc<BlockBackend>,
    memory: Memory,
}

impl Disk {
    fn new() -> Disk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let bytes: Vec<u8> = (0..DISK_SIZE).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, bytes).unwrap();
        let backing = Backing::open(&BackingOptions {
            path: path.clone(),
            size: None,
            create: false,
            read_only: false,
            cache: CacheMode::Writeback,
            logical_block_size: 512,
        })
        .unwrap();
        let backend = BlockBackend::new(
            backing,
            BlockOptions {
                logical_block_size: 512,
                physical_block_size: None,
                num_queues: 1,
                queue_size: QUEUE_SIZE,
                serial: Some("PROPTEST".into()),
                discard: true,
                write_zeroes: true,
                io_engine: IoEngine::Sync,
            },
        );
        let memory = Memory::from_ranges(&[
            (GuestAddress(REGION_A.0), REGION_A.1),
            (GuestAddress(REGION_B.0), REGION_B.1),
        ])
        .unwrap();
        Disk {
            _dir: dir,
            path,
            backend: Arc::new(backend),
            memory,
        }
    }

    /// Every byte of guest memory, region after region.
    fn snapshot(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; REGION_A.1 + REGION_B.1];
        let (a, b) = bytes.split_at_mut(REGION_A.1);
        self.memory.read_slice(a, GuestAddress(REGION_A.0)).unwrap();
        self.memory.read_slice(b, GuestAddress(REGION_B.0)).unwrap();
        bytes
    }
}

/// The guest address of byte `index` of a snapshot.
fn address_of(index: usize) -> u64 {
    if index < REGION_A.1 {
        REGION_A.0 + index as u64
    } else {
        REGION_B.0 + (index - REGION_A.1) as u64
    }
}

/// Where a descriptor points.
#[derive(Debug, Clone, Copy)]
enum Place {
    Header,
    Segments,
    DataA(u64),
    DataB(u64),
    Hole,
    /// `n` bytes before the end of region A (a buffer may run into the hole).
    EndOfA(u64),
    /// `n` bytes before the end of memory.
    EndOfB(u64),
    /// `n` bytes before the top of the address space (a buffer may wrap).
    Top(u64),
    Anywhere(u64),
}

impl Place {
    fn addr(self) -> u64 {
        match self {
            Place::Header => HEADER_AT,
            Place::Segments => SEGMENTS_AT,
            Place::DataA(offset) => DATA_A + offset,
            Place::DataB(offset) => DATA_B + offset,
            Place::Hole => HOLE,
            Place::EndOfA(n) => REGION_A.0 + REGION_A.1 as u64 - n,
            Place::EndOfB(n) => REGION_B.0 + REGION_B.1 as u64 - n,
            Place::Top(n) => u64::MAX - n,
            Place::Anywhere(addr) => addr,
        }
    }
}

fn place() -> impl Strategy<Value = Place> {
    prop_oneof![
        3 => Just(Place::Header),
        2 => Just(Place::Segments),
        4 => (0u64..0x8000).prop_map(Place::DataA),
        2 => (0u64..0x8000).prop_map(Place::DataB),
        1 => Just(Place::Hole),
        1 => (1u64..600).prop_map(Place::EndOfA),
        1 => (1u64..600).prop_map(Place::EndOfB),
        1 => (0u64..600).prop_map(Place::Top),
        1 => any::<u64>().prop_map(Place::Anywhere),
    ]
}

fn length() -> impl Strategy<Value = u32> {
    prop_oneof![
        2 => Just(0u32),
        2 => Just(1u32),
        3 => Just(16u32),
        1 => 0u32..40,
        4 => (1u32..=8).prop_map(|n| n * 512),
        2 => 0u32..5000,
        1 => any::<u32>(),
    ]
}

/// One descriptor as the driver wrote it.
#[derive(Debug, Clone)]
struct Desc {
    place: Place,
    len: u32,
    write: bool,
    /// NEXT and its target, used as given in tables with raw links.
    next: Option<u16>,
    indirect: bool,
}

fn desc() -> impl Strategy<Value = Desc> {
    (
        place(),
        length(),
        any::<bool>(),
        // Past QUEUE_SIZE too: a link out of the table.
        proptest::option::of(0u16..QUEUE_SIZE + 4),
        proptest::bool::weighted(0.05),
    )
        .prop_map(|(place, len, write, next, indirect)| Desc {
            place,
            len,
            write,
            next,
            indirect,
        })
}

/// How the descriptors are linked.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Each to the next, the last without NEXT (as `build_desc_chain` links them).
    Linear,
    /// NEXT and its target as generated: loops, links out of the table, early ends.
    Raw,
    /// One INDIRECT descriptor whose table holds the descriptors linked in order; the
    /// table's length in the descriptor is off by `skew` bytes.
    Indirect { skew: i32 },
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        4 => Just(Shape::Linear),
        2 => Just(Shape::Raw),
        1 => Just(Shape::Indirect { skew: 0 }),
        1 => (-20i32..20).prop_map(|skew| Shape::Indirect { skew }),
    ]
}

fn raw(addr: u64, len: u32, flags: u32, next: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags as u16, next))
}

/// The descriptor table entries for `descs`, each linked to the one after it.
fn linked(descs: &[Desc]) -> Vec<RawDescriptor> {
    descs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut flags = if d.write { VRING_DESC_F_WRITE } else { 0 };
            if d.indirect {
                flags |= VRING_DESC_F_INDIRECT;
            }
            let last = i + 1 == descs.len();
            if !last {
                flags |= VRING_DESC_F_NEXT;
            }
            let next = if last { 0 } else { i as u16 + 1 };
            raw(d.place.addr(), d.len, flags, next)
        })
        .collect()
}

/// A request header and segments the descriptors may point at.
#[derive(Debug, Clone)]
struct Content {
    request_type: u32,
    sector: u64,
    segments: Vec<(u64, u32, u32)>,
}

fn content() -> impl Strategy<Value = Content> {
    let request_type = prop_oneof![
        Just(VIRTIO_BLK_T_IN),
        Just(VIRTIO_BLK_T_OUT),
        Just(VIRTIO_BLK_T_FLUSH),
        Just(VIRTIO_BLK_T_GET_ID),
        Just(VIRTIO_BLK_T_DISCARD),
        Just(VIRTIO_BLK_T_WRITE_ZEROES),
        any::<u32>(),
    ];
    let sector = prop_oneof![3 => 0u64..(DISK_SIZE / 512 + 4), 1 => any::<u64>()];
    let segment = (
        prop_oneof![0u64..(DISK_SIZE / 512 + 4), any::<u64>()],
        prop_oneof![0u32..64, any::<u32>()],
        prop_oneof![0u32..3, any::<u32>()],
    );
    (
        request_type,
        sector,
        proptest::collection::vec(segment, 0..4),
    )
        .prop_map(|(request_type, sector, segments)| Content {
            request_type,
            sector,
            segments,
        })
}

/// Writes the header and the segments where `Place::Header` and `Place::Segments` are.
fn write_content(memory: &Memory, content: &Content) {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&content.request_type.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&content.sector.to_le_bytes());
    for &(sector, num_sectors, flags) in &content.segments {
        bytes.extend_from_slice(&sector.to_le_bytes());
        bytes.extend_from_slice(&num_sectors.to_le_bytes());
        bytes.extend_from_slice(&flags.to_le_bytes());
    }
    memory.write_slice(&bytes, GuestAddress(HEADER_AT)).unwrap();
}

/// Puts `descs` in the queue as `shape` says and serves the chain at its head. Returns
/// the used length and the descriptors the device was shown (the chain, walked as the
/// device walks it).
fn serve(
    disk: &Disk,
    descs: &[Desc],
    shape: Shape,
    snapshot: &mut Vec<u8>,
) -> (u32, Vec<Descriptor>) {
    let memory = &disk.memory;
    let queue = MockSplitQueue::new(memory, QUEUE_SIZE);
    // An empty available ring, so the chain is the first one popped.
    memory
        .write_obj(0u16, queue.avail_addr().unchecked_add(2))
        .unwrap();
    let table: Vec<RawDescriptor> = match shape {
        Shape::Linear => linked(descs),
        Shape::Raw => descs
            .iter()
            .map(|d| {
                let mut flags = if d.write { VRING_DESC_F_WRITE } else { 0 };
                if d.indirect {
                    flags |= VRING_DESC_F_INDIRECT;
                }
                if d.next.is_some() {
                    flags |= VRING_DESC_F_NEXT;
                }
                raw(d.place.addr(), d.len, flags, d.next.unwrap_or(0))
            })
            .collect(),
        Shape::Indirect { skew } => {
            let entries = linked(descs);
            for (i, entry) in entries.iter().enumerate() {
                memory
                    .write_obj(*entry, GuestAddress(INDIRECT_AT + 16 * i as u64))
                    .unwrap();
            }
            let len = (16 * entries.len() as i64 + i64::from(skew)).max(0) as u32;
            vec![raw(INDIRECT_AT, len, VRING_DESC_F_INDIRECT, 0)]
        }
    };
    queue.add_desc_chains(&table, 0).unwrap();
    let mut ring: Queue = queue.create_queue().unwrap();
    let chain = ring.pop_descriptor_chain(memory).unwrap();
    let seen: Vec<Descriptor> = chain.clone().collect();
    // Everything the driver wrote is in place: what changes from here is the device's.
    *snapshot = disk.snapshot();
    (disk.backend.handle(0, memory, chain), seen)
}

/// Checks one served chain against the properties in the module documentation.
fn check(disk: &Disk, before: &[u8], disk_before: &[u8], used: u32, seen: &[Descriptor]) {
    let memory = &disk.memory;
    let writable: Vec<(u64, u64)> = seen
        .iter()
        .filter(|d| d.is_write_only() && d.len() > 0)
        .map(|d| (d.addr().0, u64::from(d.len())))
        .collect();
    let writable_bytes: u64 = writable.iter().map(|&(_, len)| len).sum();
    // Where the status goes: the last writable byte, when it is in memory.
    let status_addr = writable
        .last()
        .and_then(|&(addr, len)| addr.checked_add(len - 1))
        .filter(|&addr| memory.check_address(GuestAddress(addr)).is_some());

    let after = disk.snapshot();
    let inside = |addr: u64| {
        writable
            .iter()
            .any(|&(start, len)| addr >= start && addr - start < len)
    };
    for (chunk, (old, new)) in before.chunks(4096).zip(after.chunks(4096)).enumerate() {
        if old == new {
            continue;
        }
        for (i, (o, n)) in old.iter().zip(new).enumerate() {
            let addr = address_of(chunk * 4096 + i);
            assert!(
                o == n || inside(addr),
                "byte {addr:#x} changed ({o:#x} -> {n:#x}) outside the writable buffers {writable:x?}"
            );
        }
    }

    let disk_after = std::fs::read(&disk.path).unwrap();
    match status_addr {
        None => {
            assert_eq!(used, 0, "answered a chain with nowhere to put a status");
            assert!(
                before == after,
                "guest memory changed for an unanswered chain"
            );
            assert!(
                disk_before == disk_after,
                "the disk changed for an unanswered chain"
            );
        }
        Some(addr) => {
            let status: u8 = memory.read_obj(GuestAddress(addr)).unwrap();
            assert!(STATUSES.contains(&status), "status byte {status:#x}");
            assert!(used >= 1, "the status byte is not counted");
            assert!(
                u64::from(used) <= writable_bytes,
                "used {used} > {writable_bytes} writable bytes"
            );
            if status != VIRTIO_BLK_S_OK as u8 {
                assert_eq!(used, 1, "a failed request reports data");
                assert!(
                    disk_before == disk_after,
                    "a failed request changed the disk"
                );
            }
        }
    }
}

fn run(descs: Vec<Desc>, shape: Shape, content: Content) {
    within(Duration::from_secs(60), move || {
        let disk = Disk::new();
        write_content(&disk.memory, &content);
        let disk_before = std::fs::read(&disk.path).unwrap();
        let mut before = Vec::new();
        let (used, seen) = serve(&disk, &descs, shape, &mut before);
        check(&disk, &before, &disk_before, used, &seen);
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary chains: any place, length, direction and link.
    #[test]
    fn arbitrary_chains_get_a_valid_status_or_none(
        descs in proptest::collection::vec(desc(), 1..8),
        shape in shape(),
        content in content(),
    ) {
        run(descs, shape, content);
    }

    /// Chains shaped like requests (header, data, status) with one thing wrong at most:
    /// these reach the parser's later checks more often than arbitrary chains do.
    #[test]
    fn nearly_well_formed_requests_get_a_valid_status(
        header_split in 0u32..=16,
        data in proptest::collection::vec((place(), length(), any::<bool>()), 0..4),
        status_place in prop_oneof![3 => (0x9000u64..0xa000).prop_map(Place::DataA), 1 => place()],
        status_len in prop_oneof![4 => Just(1u32), 1 => length()],
        status_write in proptest::bool::weighted(0.9),
        shape in prop_oneof![4 => Just(Shape::Linear), 1 => Just(Shape::Indirect { skew: 0 })],
        content in content(),
    ) {
        let plain = |place, len, write| Desc { place, len, write, next: None, indirect: false };
        // The header in one or two pieces.
        let mut descs = vec![plain(Place::Header, header_split, false)];
        if header_split < 16 {
            descs.push(plain(Place::DataA(0x7000), 16 - header_split, false));
        }
        descs.extend(data.into_iter().map(|(place, len, write)| plain(place, len, write)));
        descs.push(plain(status_place, status_len, status_write));
        run(descs, shape, content);
    }
}
