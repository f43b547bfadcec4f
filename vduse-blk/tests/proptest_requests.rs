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

use vduse_testkit::chain_props;

use std::sync::Arc;
use std::time::Duration;

use chain_props::{Desc, Edge, Location, QUEUE_SIZE, Shape, desc, edge, shape, within};
use proptest::prelude::*;
use vduse::backend::{Backend, Memory};
use vduse_blk::config::{CacheMode, IoEngine};
use vduse_blk::{BlockBackend, BlockOptions, FileDisk, FileDiskOptions};
use virtio_bindings::virtio_blk::*;
use virtio_queue::QueueT;
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemory};

/// Two regions (start, size) with a hole between them, so addresses can fall in neither.
const REGIONS: [(u64, usize); 2] = [(0, 0x10_0000), (0x18_0000, 0x8_0000)];
/// The request header, then discard/write-zeroes segments right after it.
const HEADER_AT: u64 = 0x1000;
const SEGMENTS_AT: u64 = HEADER_AT + 16;
/// Where an indirect table goes.
const INDIRECT_AT: u64 = 0x2000;
/// Data buffers in each region.
const DATA_A: u64 = 0x1_0000;
const DATA_B: u64 = REGIONS[1].0;
/// The disk: 64 KiB.
const DISK_SIZE: u64 = 64 << 10;

const STATUSES: [u8; 3] = [
    VIRTIO_BLK_S_OK as u8,
    VIRTIO_BLK_S_IOERR as u8,
    VIRTIO_BLK_S_UNSUPP as u8,
];

/// A disk over a temporary file, and guest memory of two regions.
struct Disk {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    backend: Arc<BlockBackend>,
    memory: Arc<Memory>,
}

impl Disk {
    fn new() -> Disk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let bytes: Vec<u8> = (0..DISK_SIZE).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, bytes).unwrap();
        let backing = FileDisk::open(&FileDiskOptions {
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
        Disk {
            _dir: dir,
            path,
            backend: Arc::new(backend),
            memory: Arc::new(chain_props::memory(&REGIONS)),
        }
    }

    /// Every byte of guest memory, region after region.
    fn snapshot(&self) -> Vec<u8> {
        chain_props::snapshot(&self.memory, &REGIONS)
    }
}

/// Where a descriptor points.
#[derive(Debug, Clone, Copy)]
enum Place {
    Header,
    Segments,
    DataA(u64),
    DataB(u64),
    Edge(Edge),
}

impl Location for Place {
    fn addr(self) -> u64 {
        match self {
            Place::Header => HEADER_AT,
            Place::Segments => SEGMENTS_AT,
            Place::DataA(offset) => DATA_A + offset,
            Place::DataB(offset) => DATA_B + offset,
            Place::Edge(edge) => edge.addr(&REGIONS),
        }
    }
}

fn place() -> impl Strategy<Value = Place> {
    prop_oneof![
        3 => Just(Place::Header),
        2 => Just(Place::Segments),
        4 => (0u64..0x8000).prop_map(Place::DataA),
        2 => (0u64..0x8000).prop_map(Place::DataB),
        5 => edge(600).prop_map(Place::Edge),
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
    descs: &[Desc<Place>],
    shape: Shape,
    snapshot: &mut Vec<u8>,
) -> (u32, Vec<Descriptor>) {
    let memory = &disk.memory;
    let table = chain_props::table(memory, descs, shape, INDIRECT_AT);
    let mut ring = chain_props::queue(memory, 0, &table);
    let chain = ring.pop_descriptor_chain(memory.clone()).unwrap();
    let seen: Vec<Descriptor> = chain.clone().collect();
    // Everything the driver wrote is in place: what changes from here is the device's.
    *snapshot = disk.snapshot();
    (disk.backend.handle(0, memory, chain), seen)
}

/// Checks one served chain against the properties in the module documentation.
fn check(disk: &Disk, before: &[u8], disk_before: &[u8], used: u32, seen: &[Descriptor]) {
    let memory = &disk.memory;
    let writable = chain_props::writable(seen.iter().copied());
    let writable_bytes: u64 = writable.iter().map(|&(_, len)| len).sum();
    // Where the status goes: the last writable byte, when it is in memory.
    let status_addr = writable
        .last()
        .and_then(|&(addr, len)| addr.checked_add(len - 1))
        .filter(|&addr| memory.check_address(GuestAddress(addr)).is_some());

    let after = disk.snapshot();
    chain_props::assert_unchanged_outside(
        before,
        &after,
        &REGIONS,
        |addr| chain_props::covers(&writable, addr),
        format_args!("the writable buffers {writable:x?}"),
    );

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

fn run(descs: Vec<Desc<Place>>, shape: Shape, content: Content) {
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
        descs in proptest::collection::vec(
            desc(place(), length(), any::<bool>(), proptest::bool::weighted(0.05)),
            1..8,
        ),
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
        let plain = Desc::plain;
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
