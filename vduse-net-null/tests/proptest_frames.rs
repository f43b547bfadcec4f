//! Property tests of the frame path: arbitrary transmit chains (any length, direction,
//! address inside or outside memory, NEXT loops, indirect tables) and arbitrary receive
//! buffers, handed to `NetBackend`'s queue engines as the runtime hands them, over chains
//! built with virtio-queue's `MockSplitQueue`. No kernel involved.
//!
//! For every run: no panic, no hang; every transmit chain is counted once, as a frame or
//! as an error; in echo mode every frame is accounted for on the receive side (received,
//! dropped for want of buffers, or an error); no byte of guest memory outside the offered
//! receive buffers changes, and no used length exceeds its buffer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use vduse::backend::{Backend, Memory, Used};
use vduse_net_null::net::{self, Header, Mac, RX_QUEUE, TX_QUEUE};
use vduse_net_null::{Mode, NetBackend, NetOptions};
use virtio_bindings::virtio_net::*;
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{RawDescriptor, split::Descriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress};

const QUEUE_SIZE: u16 = 16;
/// Two regions with a hole between them.
const REGION_A: (u64, usize) = (0, 0x20_0000);
const REGION_B: (u64, usize) = (0x28_0000, 0x2_0000);
const HOLE: u64 = 0x24_0000;
/// The receive queue's rings are at 0, the transmit queue's here.
const TX_RING: u64 = 0x8000;
/// Where an indirect table of a transmit chain goes.
const INDIRECT_AT: u64 = 0x9000;
/// Frames to transmit: a header, then a payload.
const TX_DATA: u64 = 0x1_0000;
/// Receive buffers.
const RX_DATA: u64 = 0x10_0000;

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
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(thread.join().unwrap_err())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("no answer within {limit:?}: a hang"),
    }
}

/// Where a descriptor points.
#[derive(Debug, Clone, Copy)]
enum Place {
    TxData(u64),
    RxData(u64),
    RegionB(u64),
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
            Place::TxData(offset) => TX_DATA + offset,
            Place::RxData(offset) => RX_DATA + offset,
            Place::RegionB(offset) => REGION_B.0 + offset,
            Place::Hole => HOLE,
            Place::EndOfA(n) => REGION_A.0 + REGION_A.1 as u64 - n,
            Place::EndOfB(n) => REGION_B.0 + REGION_B.1 as u64 - n,
            Place::Top(n) => u64::MAX - n,
            Place::Anywhere(addr) => addr,
        }
    }
}

fn odd_place() -> impl Strategy<Value = Place> {
    prop_oneof![
        (0u64..0x1_0000).prop_map(Place::RegionB),
        Just(Place::Hole),
        (1u64..3000).prop_map(Place::EndOfA),
        (1u64..3000).prop_map(Place::EndOfB),
        (0u64..3000).prop_map(Place::Top),
        any::<u64>().prop_map(Place::Anywhere),
    ]
}

fn tx_place() -> impl Strategy<Value = Place> {
    prop_oneof![
        6 => Just(Place::TxData(0)),
        4 => (0u64..0x2_0000).prop_map(Place::TxData),
        1 => (0u64..0x1_0000).prop_map(Place::RxData),
        2 => odd_place(),
    ]
}

fn rx_place() -> impl Strategy<Value = Place> {
    prop_oneof![16 => (0u64..0x8_0000).prop_map(Place::RxData), 1 => odd_place()]
}

fn tx_len() -> impl Strategy<Value = u32> {
    prop_oneof![
        1 => Just(0u32),
        2 => 0u32..=12,
        4 => 12u32..1600,
        2 => 1600u32..70_000,
        1 => any::<u32>(),
    ]
}

fn rx_len() -> impl Strategy<Value = u32> {
    prop_oneof![
        1 => 0u32..=12,
        12 => 12u32..4096,
        3 => 4096u32..70_000,
        1 => any::<u32>(),
    ]
}

/// One descriptor as the driver wrote it.
#[derive(Debug, Clone)]
struct Desc {
    place: Place,
    len: u32,
    write: bool,
    /// NEXT and its target, used as given in chains with raw links.
    next: Option<u16>,
    indirect: bool,
}

fn tx_desc() -> impl Strategy<Value = Desc> {
    (
        tx_place(),
        tx_len(),
        proptest::bool::weighted(0.05),
        proptest::option::of(0u16..QUEUE_SIZE + 4),
        proptest::bool::weighted(0.03),
    )
        .prop_map(|(place, len, write, next, indirect)| Desc {
            place,
            len,
            write,
            next,
            indirect,
        })
}

fn rx_desc() -> impl Strategy<Value = Desc> {
    (rx_place(), rx_len(), proptest::bool::weighted(0.97)).prop_map(|(place, len, write)| Desc {
        place,
        len,
        write,
        next: None,
        indirect: false,
    })
}

/// How a transmit chain's descriptors are linked.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Each to the next, the last without NEXT.
    Linear,
    /// NEXT and its target as generated: loops, links out of the table, early ends.
    Raw,
    /// One INDIRECT descriptor whose table holds the descriptors linked in order; its
    /// length is off by `skew` bytes.
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

fn flags_of(desc: &Desc) -> u32 {
    let mut flags = if desc.write { VRING_DESC_F_WRITE } else { 0 };
    if desc.indirect {
        flags |= VRING_DESC_F_INDIRECT;
    }
    flags
}

fn raw(addr: u64, len: u32, flags: u32, next: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags as u16, next))
}

/// Table entries for `descs` from index `first`, each linked to the one after it.
fn linked(descs: &[Desc], first: u16) -> Vec<RawDescriptor> {
    descs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let last = i + 1 == descs.len();
            let flags = flags_of(d) | if last { 0 } else { VRING_DESC_F_NEXT };
            let next = if last { 0 } else { first + i as u16 + 1 };
            raw(d.place.addr(), d.len, flags, next)
        })
        .collect()
}

/// A virtio-net header: mostly plausible, sometimes anything.
fn header() -> impl Strategy<Value = Header> {
    let flags = prop_oneof![
        4 => Just(0u8),
        1 => Just(VIRTIO_NET_HDR_F_NEEDS_CSUM as u8),
        1 => any::<u8>(),
    ];
    let gso_type = prop_oneof![
        6 => Just(VIRTIO_NET_HDR_GSO_NONE as u8),
        1 => Just(VIRTIO_NET_HDR_GSO_TCPV4 as u8),
        1 => Just(VIRTIO_NET_HDR_GSO_TCPV6 as u8),
        1 => Just((VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN) as u8),
        1 => any::<u8>(),
    ];
    let small = || prop_oneof![0u16..128, any::<u16>()];
    (
        flags,
        gso_type,
        small(),
        small(),
        small(),
        small(),
        any::<u16>(),
    )
        .prop_map(
            |(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers)| Header {
                flags,
                gso_type,
                hdr_len,
                gso_size,
                csum_start,
                csum_offset,
                num_buffers,
            },
        )
}

/// Features the driver may have accepted.
fn negotiated() -> impl Strategy<Value = u64> {
    let features = [
        VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_GUEST_TSO6,
        VIRTIO_NET_F_GUEST_ECN,
    ];
    proptest::collection::vec(any::<bool>(), features.len()).prop_map(move |on| {
        features
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .fold(0u64, |bits, (&feature, _)| bits | 1 << feature)
    })
}

/// Every byte of guest memory, region after region.
fn snapshot(memory: &Memory) -> Vec<u8> {
    let mut bytes = vec![0u8; REGION_A.1 + REGION_B.1];
    let (a, b) = bytes.split_at_mut(REGION_A.1);
    memory.read_slice(a, GuestAddress(REGION_A.0)).unwrap();
    memory.read_slice(b, GuestAddress(REGION_B.0)).unwrap();
    bytes
}

fn address_of(index: usize) -> u64 {
    if index < REGION_A.1 {
        REGION_A.0 + index as u64
    } else {
        REGION_B.0 + (index - REGION_A.1) as u64
    }
}

/// A queue at `at` with an empty available ring.
fn fresh_queue(memory: &Memory, at: u64) -> MockSplitQueue<'_, Memory> {
    let queue = MockSplitQueue::create(memory, GuestAddress(at), QUEUE_SIZE);
    memory
        .write_obj(0u16, queue.avail_addr().unchecked_add(2))
        .unwrap();
    queue
}

/// One run: receive buffers offered, then transmit chains sent one by one.
#[derive(Debug, Clone)]
struct Run {
    mode: Mode,
    negotiated: u64,
    rx_chains: Vec<Vec<Desc>>,
    tx_chains: Vec<(Header, Vec<Desc>, Shape)>,
}

fn run_strategy() -> impl Strategy<Value = Run> {
    (
        prop_oneof![1 => Just(Mode::Drop), 3 => Just(Mode::Echo)],
        negotiated(),
        proptest::collection::vec(proptest::collection::vec(rx_desc(), 1..=3), 0..=5),
        proptest::collection::vec(
            (
                header(),
                proptest::collection::vec(tx_desc(), 1..=4),
                shape(),
            ),
            1..=6,
        ),
    )
        .prop_map(|(mode, negotiated, rx_chains, tx_chains)| Run {
            mode,
            negotiated,
            rx_chains,
            tx_chains,
        })
}

fn run(case: Run) {
    within(Duration::from_secs(60), move || check(case));
}

fn check(case: Run) {
    let backend = Arc::new(
        NetBackend::new(NetOptions {
            mac: Mac([2, 0, 0, 0, 0, 1]),
            mtu: 9000,
            link_up: true,
            mode: case.mode,
            queue_size: QUEUE_SIZE,
            offloads: true,
        })
        .unwrap(),
    );
    backend.activate(case.negotiated);
    let memory = Arc::new(
        Memory::from_ranges(&[
            (GuestAddress(REGION_A.0), REGION_A.1),
            (GuestAddress(REGION_B.0), REGION_B.1),
        ])
        .unwrap(),
    );
    let payload: Vec<u8> = (0..0x2_0000u32).map(|i| (i * 7 + 3) as u8).collect();
    memory.write_slice(&payload, GuestAddress(TX_DATA)).unwrap();
    let mut rx = backend.clone().engine(RX_QUEUE, QUEUE_SIZE).unwrap();
    let mut tx = backend.clone().engine(TX_QUEUE, QUEUE_SIZE).unwrap();

    // Offer the receive buffers; note each held one's writable bytes.
    let rx_queue = fresh_queue(&memory, 0);
    let mut table = Vec::new();
    for chain in &case.rx_chains {
        table.extend(linked(chain, table.len() as u16));
    }
    rx_queue.add_desc_chains(&table, 0).unwrap();
    let mut ring: Queue = rx_queue.create_queue().unwrap();
    let mut held: HashMap<u16, Vec<(u64, u64)>> = HashMap::new();
    let mut malformed_rx = 0;
    while let Some(chain) = ring.pop_descriptor_chain(memory.clone()) {
        let head = chain.head_index();
        let writable: Vec<(u64, u64)> = chain
            .clone()
            .filter(|d| d.is_write_only() && d.len() > 0)
            .map(|d| (d.addr().0, u64::from(d.len())))
            .collect();
        match rx.start(memory.clone(), chain) {
            Some(len) => {
                assert_eq!(len, 0, "a malformed receive chain reports data");
                malformed_rx += 1;
            }
            None => {
                held.insert(head, writable);
            }
        }
    }
    rx.submit();
    let stats = backend.stats();
    assert_eq!(stats.rx.errors, malformed_rx);

    let inside = |addr: u64| {
        held.values()
            .flatten()
            .any(|&(start, len)| addr >= start && addr - start < len)
    };
    let mut received: Vec<Used> = Vec::new();
    for (header, descs, shape) in &case.tx_chains {
        memory
            .write_slice(&header.to_bytes(), GuestAddress(TX_DATA))
            .unwrap();
        let queue = fresh_queue(&memory, TX_RING);
        let table = match shape {
            Shape::Linear => linked(descs, 0),
            Shape::Raw => descs
                .iter()
                .map(|d| {
                    let next = d.next.unwrap_or(0);
                    let flags = flags_of(d)
                        | if d.next.is_some() {
                            VRING_DESC_F_NEXT
                        } else {
                            0
                        };
                    raw(d.place.addr(), d.len, flags, next)
                })
                .collect(),
            Shape::Indirect { skew } => {
                let entries = linked(descs, 0);
                for (i, entry) in entries.iter().enumerate() {
                    memory
                        .write_obj(*entry, GuestAddress(INDIRECT_AT + 16 * i as u64))
                        .unwrap();
                }
                let len = (16 * entries.len() as i64 + i64::from(*skew)).max(0) as u32;
                vec![raw(INDIRECT_AT, len, VRING_DESC_F_INDIRECT, 0)]
            }
        };
        queue.add_desc_chains(&table, 0).unwrap();
        let mut ring: Queue = queue.create_queue().unwrap();
        let chain = ring.pop_descriptor_chain(memory.clone()).unwrap();
        let before = snapshot(&memory);
        assert_eq!(
            tx.start(memory.clone(), chain),
            Some(0),
            "transmit chains use nothing"
        );
        tx.submit();
        let after = snapshot(&memory);
        for (chunk, (old, new)) in before.chunks(4096).zip(after.chunks(4096)).enumerate() {
            if old == new {
                continue;
            }
            for (i, (o, n)) in old.iter().zip(new).enumerate() {
                let addr = address_of(chunk * 4096 + i);
                assert!(
                    o == n || inside(addr),
                    "byte {addr:#x} changed outside the receive buffers"
                );
            }
        }
        rx.reap(&mut received);
    }

    let stats = backend.stats();
    let chains = case.tx_chains.len() as u64;
    assert_eq!(stats.tx.frames + stats.tx.errors, chains, "{stats:?}");
    match case.mode {
        Mode::Drop => {
            assert_eq!(stats.rx.frames + stats.rx.dropped, 0, "{stats:?}");
            assert!(received.is_empty());
        }
        Mode::Echo => assert_eq!(
            stats.rx.frames + stats.rx.dropped + stats.rx.errors,
            stats.tx.frames + malformed_rx,
            "every echoed frame is received, dropped or an error: {stats:?}"
        ),
    }
    // Each used buffer was held, is used once, and is not overfilled.
    let mut seen = std::collections::HashSet::new();
    for used in &received {
        let segments = held.get(&used.head).expect("a buffer the device held");
        assert!(seen.insert(used.head), "buffer {} used twice", used.head);
        let capacity: u64 = segments.iter().map(|&(_, len)| len).sum();
        assert!(u64::from(used.len) <= capacity, "{used:?} > {capacity}");
    }
    assert!(
        stats.rx.frames as usize <= received.len(),
        "each received frame takes at least one buffer"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary transmit chains and receive buffers, in drop and echo modes.
    #[test]
    fn arbitrary_chains_are_counted_and_never_overflow_receive_buffers(case in run_strategy()) {
        run(case);
    }

    /// Completing a checksum at arbitrary positions of an arbitrary frame changes only the
    /// two bytes of its field, inside the frame; when the field is 16-bit aligned from the
    /// start, the range then sums (with the pseudo-header sum the field held) to 0xffff.
    #[test]
    fn checksums_at_any_position_stay_inside_the_frame(
        frame in proptest::collection::vec(any::<u8>(), 0..200),
        start in prop_oneof![0usize..220, any::<usize>()],
        offset in prop_oneof![0usize..220, any::<usize>()],
    ) {
        let mut completed = frame.clone();
        if !net::complete_checksum(&mut completed, start, offset) {
            prop_assert_eq!(completed, frame);
            return Ok(());
        }
        let field = start + offset;
        prop_assert!(field + 2 <= frame.len());
        for (i, (old, new)) in frame.iter().zip(&completed).enumerate() {
            prop_assert!(old == new || (field..field + 2).contains(&i), "byte {} changed", i);
        }
        if offset % 2 == 0 {
            let pseudo = u32::from(u16::from_be_bytes([frame[field], frame[field + 1]]));
            let mut sum: u32 = completed[start..]
                .chunks(2)
                .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
                .sum::<u32>()
                + pseudo;
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            prop_assert_eq!(sum, 0xffff);
        }
    }
}
