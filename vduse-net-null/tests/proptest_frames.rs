//! Property tests of the frame path: arbitrary transmit chains (any length, direction,
//! address inside or outside memory, NEXT loops, indirect tables) and arbitrary receive
//! buffers, handed to `NetBackend`'s queue engines as the runtime hands them, over chains
//! built with virtio-queue's `MockSplitQueue`. No kernel involved.
//!
//! For every run: no panic, no hang; every transmit chain is counted once, as a frame or
//! as an error; in echo mode every frame is accounted for on the receive side (received,
//! dropped for want of buffers, or an error); no byte of guest memory outside the offered
//! receive buffers changes, and no used length exceeds its buffer.

use vduse_testkit::chain_props;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chain_props::{Desc, Edge, Location, QUEUE_SIZE, Shape, desc, edge, shape, within};
use proptest::prelude::*;
use vduse::backend::{Backend, Used};
use vduse_net_null::net::{self, Header, Mac, RX_QUEUE, TX_QUEUE};
use vduse_net_null::{Mode, NetBackend, NetOptions};
use virtio_bindings::virtio_net::*;
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};

/// Two regions (start, size) with a hole between them.
const REGIONS: [(u64, usize); 2] = [(0, 0x20_0000), (0x28_0000, 0x2_0000)];
/// The receive queue's rings are at 0, the transmit queue's here.
const TX_RING: u64 = 0x8000;
/// Where an indirect table of a transmit chain goes.
const INDIRECT_AT: u64 = 0x9000;
/// Frames to transmit: a header, then a payload.
const TX_DATA: u64 = 0x1_0000;
/// Receive buffers.
const RX_DATA: u64 = 0x10_0000;

/// Where a descriptor points.
#[derive(Debug, Clone, Copy)]
enum Place {
    TxData(u64),
    RxData(u64),
    RegionB(u64),
    Edge(Edge),
}

impl Location for Place {
    fn addr(self) -> u64 {
        match self {
            Place::TxData(offset) => TX_DATA + offset,
            Place::RxData(offset) => RX_DATA + offset,
            Place::RegionB(offset) => REGIONS[1].0 + offset,
            Place::Edge(edge) => edge.addr(&REGIONS),
        }
    }
}

fn odd_place() -> impl Strategy<Value = Place> {
    prop_oneof![
        1 => (0u64..0x1_0000).prop_map(Place::RegionB),
        5 => edge(3000).prop_map(Place::Edge),
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

fn rx_desc() -> impl Strategy<Value = Desc<Place>> {
    (rx_place(), rx_len(), proptest::bool::weighted(0.97))
        .prop_map(|(place, len, write)| Desc::plain(place, len, write))
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

/// One run: receive buffers offered, then transmit chains sent one by one.
#[derive(Debug, Clone)]
struct Run {
    mode: Mode,
    negotiated: u64,
    rx_chains: Vec<Vec<Desc<Place>>>,
    tx_chains: Vec<(Header, Vec<Desc<Place>>, Shape)>,
}

fn run_strategy() -> impl Strategy<Value = Run> {
    (
        prop_oneof![1 => Just(Mode::Drop), 3 => Just(Mode::Echo)],
        negotiated(),
        proptest::collection::vec(proptest::collection::vec(rx_desc(), 1..=3), 0..=5),
        proptest::collection::vec(
            (
                header(),
                proptest::collection::vec(
                    desc(
                        tx_place(),
                        tx_len(),
                        proptest::bool::weighted(0.05),
                        proptest::bool::weighted(0.03),
                    ),
                    1..=4,
                ),
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
    let memory = Arc::new(chain_props::memory(&REGIONS));
    let payload: Vec<u8> = (0..0x2_0000u32).map(|i| (i * 7 + 3) as u8).collect();
    memory.write_slice(&payload, GuestAddress(TX_DATA)).unwrap();
    let mut rx = backend.clone().engine(RX_QUEUE, QUEUE_SIZE).unwrap();
    let mut tx = backend.clone().engine(TX_QUEUE, QUEUE_SIZE).unwrap();

    // Offer the receive buffers; note each held one's writable bytes.
    let mut table = Vec::new();
    for chain in &case.rx_chains {
        table.extend(chain_props::linked(chain, table.len() as u16));
    }
    let mut ring = chain_props::queue(&memory, 0, &table);
    let mut held: HashMap<u16, Vec<(u64, u64)>> = HashMap::new();
    let mut malformed_rx = 0;
    while let Some(chain) = ring.pop_descriptor_chain(memory.clone()) {
        let head = chain.head_index();
        let writable = chain_props::writable(chain.clone());
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

    let inside = |addr: u64| chain_props::covers(held.values().flatten(), addr);
    let mut received: Vec<Used> = Vec::new();
    for (header, descs, shape) in &case.tx_chains {
        memory
            .write_slice(&header.to_bytes(), GuestAddress(TX_DATA))
            .unwrap();
        let table = chain_props::table(&memory, descs, *shape, INDIRECT_AT);
        let mut ring = chain_props::queue(&memory, TX_RING, &table);
        let chain = ring.pop_descriptor_chain(memory.clone()).unwrap();
        let before = chain_props::snapshot(&memory, &REGIONS);
        assert_eq!(
            tx.start(memory.clone(), chain),
            Some(0),
            "transmit chains use nothing"
        );
        tx.submit();
        let after = chain_props::snapshot(&memory, &REGIONS);
        chain_props::assert_unchanged_outside(
            &before,
            &after,
            &REGIONS,
            inside,
            "the receive buffers",
        );
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
