//! `NetBackend`'s queue engines on descriptor chains built with virtio-queue's
//! `MockSplitQueue`: transmitted frames counted and dropped or echoed, receive buffers held
//! and filled (one or several per frame), and chains a driver should never send. No
//! kernel involved.

use std::sync::Arc;

use vduse::backend::{Backend, Memory, QueueEngine, Used};
use vduse_net_null::net::{HEADER_LEN, Header, Mac, RX_QUEUE, TX_QUEUE};
use vduse_net_null::{Mode, NetBackend, NetOptions, Stats};
use virtio_bindings::virtio_net::*;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{RawDescriptor, split::Descriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress};

const QUEUE_SIZE: u16 = 16;
const MEMORY_SIZE: usize = 4 << 20;
/// Where the transmit queue's rings are (the receive queue's are at 0).
const TX_RING: u64 = 0x8000;
/// Where frames to transmit are written.
const TX_DATA: u64 = 0x10_0000;
/// Where receive buffers are.
const RX_DATA: u64 = 0x20_0000;

fn bit(feature: u32) -> u64 {
    1 << feature
}

fn readable(addr: u64, len: u32) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, 0, 0))
}

fn writable(addr: u64, len: u32) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, VRING_DESC_F_WRITE as u16, 0))
}

/// A device with its two queue engines and guest memory.
struct Device {
    backend: Arc<NetBackend>,
    memory: Arc<Memory>,
    rx: Box<dyn QueueEngine>,
    tx: Box<dyn QueueEngine>,
}

impl Device {
    fn new(mode: Mode, negotiated: u64) -> Device {
        let backend = Arc::new(
            NetBackend::new(NetOptions {
                mac: Mac([2, 0, 0, 0, 0, 1]),
                mtu: 1500,
                link_up: true,
                mode,
                queue_size: QUEUE_SIZE,
                offloads: true,
            })
            .unwrap(),
        );
        backend.activate(negotiated);
        let memory = Arc::new(Memory::from_ranges(&[(GuestAddress(0), MEMORY_SIZE)]).unwrap());
        let rx = backend.clone().engine(RX_QUEUE, QUEUE_SIZE).unwrap();
        let tx = backend.clone().engine(TX_QUEUE, QUEUE_SIZE).unwrap();
        Device {
            backend,
            memory,
            rx,
            tx,
        }
    }

    fn echo() -> Device {
        Device::new(Mode::Echo, 0)
    }

    /// Offers receive buffers, each the chain of descriptors given, in order; returns
    /// their heads and what `start` answered for each.
    fn offer(&mut self, chains: &[Vec<RawDescriptor>]) -> Vec<(u16, Option<u32>)> {
        let queue = fresh_queue(&self.memory, GuestAddress(0));
        queue.add_desc_chains(&table(chains), 0).unwrap();
        let mut ring: Queue = queue.create_queue().unwrap();
        let mut answers = Vec::new();
        while let Some(chain) = ring.pop_descriptor_chain(self.memory.clone()) {
            let head = chain.head_index();
            answers.push((head, self.rx.start(self.memory.clone(), chain)));
        }
        self.rx.submit();
        answers
    }

    /// Sends `header` + `payload` as one transmit chain split in `pieces` descriptors;
    /// returns the used length.
    fn send_split(&mut self, header: Header, payload: &[u8], pieces: usize) -> u32 {
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend_from_slice(payload);
        self.memory
            .write_slice(&bytes, GuestAddress(TX_DATA))
            .unwrap();
        let piece = bytes.len().div_ceil(pieces).max(1);
        let descriptors: Vec<RawDescriptor> = (0..bytes.len())
            .step_by(piece)
            .map(|at| readable(TX_DATA + at as u64, piece.min(bytes.len() - at) as u32))
            .collect();
        self.send_chain(&descriptors)
    }

    fn send(&mut self, header: Header, payload: &[u8]) -> u32 {
        self.send_split(header, payload, 1)
    }

    /// Hands one transmit chain to the transmit engine, as the runtime does.
    fn send_chain(&mut self, descriptors: &[RawDescriptor]) -> u32 {
        let queue = fresh_queue(&self.memory, GuestAddress(TX_RING));
        queue
            .add_desc_chains(&table(&[descriptors.to_vec()]), 0)
            .unwrap();
        let mut ring: Queue = queue.create_queue().unwrap();
        let chain = ring.pop_descriptor_chain(self.memory.clone()).unwrap();
        let len = self.tx.start(self.memory.clone(), chain);
        self.tx.submit();
        assert_eq!(self.tx.in_flight(), 0);
        len.expect("the transmit engine answers at once")
    }

    /// What the receive worker would reap now, if woken.
    fn received(&mut self) -> Vec<Used> {
        let mut done = Vec::new();
        if readable_now(self.rx.as_ref()) {
            self.rx.reap(&mut done);
        }
        done
    }

    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        self.memory
            .read_slice(&mut bytes, GuestAddress(addr))
            .unwrap();
        bytes
    }

    fn stats(&self) -> Stats {
        self.backend.stats()
    }
}

/// A mock queue at `at` with an empty available ring.
fn fresh_queue(memory: &Memory, at: GuestAddress) -> MockSplitQueue<'_, Memory> {
    let queue = MockSplitQueue::create(memory, at, QUEUE_SIZE);
    memory
        .write_obj(0u16, queue.avail_addr().unchecked_add(2))
        .unwrap();
    queue
}

/// A descriptor table holding `chains` one after another, each linked with NEXT.
fn table(chains: &[Vec<RawDescriptor>]) -> Vec<RawDescriptor> {
    let mut table = Vec::new();
    for chain in chains {
        for (i, descriptor) in chain.iter().enumerate() {
            let descriptor = Descriptor::from(*descriptor);
            let index = table.len() as u16;
            let (flags, next) = if i + 1 < chain.len() {
                (descriptor.flags() | VRING_DESC_F_NEXT as u16, index + 1)
            } else {
                (descriptor.flags() & !(VRING_DESC_F_NEXT as u16), 0)
            };
            table.push(RawDescriptor::from(Descriptor::new(
                descriptor.addr().0,
                descriptor.len(),
                flags,
                next,
            )));
        }
    }
    table
}

/// Whether the engine's completion eventfd is readable.
fn readable_now(engine: &dyn QueueEngine) -> bool {
    let mut fds = [rustix::event::PollFd::from_borrowed_fd(
        engine
            .completion_fd()
            .expect("a receive engine completes later"),
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&zero)).unwrap() == 1
}

fn frame(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn drop_mode_counts_every_frame_and_receives_nothing() {
    let mut device = Device::new(Mode::Drop, 0);
    let offered = device.offer(&[vec![writable(RX_DATA, 2048)]]);
    assert_eq!(offered[0].1, None, "receive buffers are held");
    for len in [60, 1514, 9000] {
        assert_eq!(device.send(Header::default(), &frame(len)), 0);
    }
    assert_eq!(device.send_split(Header::default(), &frame(100), 4), 0);
    let stats = device.stats();
    assert_eq!(
        (stats.tx.frames, stats.tx.bytes, stats.tx.errors),
        (4, 60 + 1514 + 9000 + 100, 0)
    );
    assert_eq!(stats.rx.frames, 0);
    assert!(device.received().is_empty());
    assert_eq!(device.rx.in_flight(), 1);
}

#[test]
fn echo_puts_each_frame_in_the_oldest_receive_buffer() {
    let mut device = Device::echo();
    let offered = device.offer(&[
        vec![writable(RX_DATA, 2048)],
        vec![writable(RX_DATA + 0x1000, 2048)],
    ]);
    assert!(offered.iter().all(|&(_, answer)| answer.is_none()));
    assert_eq!(device.rx.in_flight(), 2);

    let payload = frame(1514);
    assert_eq!(device.send_split(Header::default(), &payload, 3), 0);
    let used = device.received();
    assert_eq!(
        used,
        [Used {
            head: offered[0].0,
            len: (HEADER_LEN + 1514) as u32
        }]
    );
    let header = Header::parse(&device.read(RX_DATA, HEADER_LEN).try_into().unwrap());
    assert_eq!(header.num_buffers, 1);
    assert_eq!(header.flags, 0);
    assert_eq!(device.read(RX_DATA + HEADER_LEN as u64, 1514), payload);
    // The second buffer takes the next frame.
    device.send(Header::default(), &frame(60));
    assert_eq!(device.received()[0].head, offered[1].0);
    let stats = device.stats();
    assert_eq!((stats.rx.frames, stats.rx.bytes), (2, 1514 + 60));
    assert_eq!((stats.rx.dropped, stats.rx.errors), (0, 0));
    assert_eq!(device.rx.in_flight(), 0);
}

#[test]
fn one_wake_up_per_batch_of_echoed_frames() {
    let mut device = Device::echo();
    let chains: Vec<Vec<RawDescriptor>> = (0..8)
        .map(|i| vec![writable(RX_DATA + i * 0x1000, 2048)])
        .collect();
    let offered = device.offer(&chains);
    for _ in 0..5 {
        device.send(Header::default(), &frame(100));
    }
    let used = device.received();
    assert_eq!(used.len(), 5);
    let heads: Vec<u16> = used.iter().map(|u| u.head).collect();
    let expected: Vec<u16> = offered[..5].iter().map(|&(head, _)| head).collect();
    assert_eq!(heads, expected, "in the order the driver offered them");
    assert!(
        !readable_now(device.rx.as_ref()),
        "the wake-up was consumed"
    );
}

#[test]
fn mergeable_buffers_spread_a_frame_and_say_how_many() {
    let mut device = Device::new(Mode::Echo, bit(VIRTIO_NET_F_MRG_RXBUF));
    let offered = device.offer(&[
        vec![writable(RX_DATA, 100)],
        vec![
            writable(RX_DATA + 0x1000, 60),
            writable(RX_DATA + 0x1800, 40),
        ],
        vec![writable(RX_DATA + 0x2000, 100)],
        vec![writable(RX_DATA + 0x3000, 100)],
    ]);
    let payload = frame(238); // 250 bytes with the header: 100 + 100 + 50
    device.send(Header::default(), &payload);
    let used = device.received();
    let lens: Vec<(u16, u32)> = used.iter().map(|u| (u.head, u.len)).collect();
    assert_eq!(
        lens,
        [(offered[0].0, 100), (offered[1].0, 100), (offered[2].0, 50)]
    );
    let header = Header::parse(&device.read(RX_DATA, HEADER_LEN).try_into().unwrap());
    assert_eq!(header.num_buffers, 3);
    let mut got = device.read(RX_DATA + HEADER_LEN as u64, 100 - HEADER_LEN);
    got.extend(device.read(RX_DATA + 0x1000, 60));
    got.extend(device.read(RX_DATA + 0x1800, 40));
    got.extend(device.read(RX_DATA + 0x2000, 50));
    assert_eq!(got, payload);
    // One buffer of 100 left: a frame needing 112 bytes waits for none; it is dropped.
    device.send(Header::default(), &frame(100));
    assert_eq!(device.stats().rx.dropped, 1);
    assert_eq!(device.rx.in_flight(), 1);
}

#[test]
fn frames_without_a_receive_buffer_are_dropped_and_counted() {
    let mut device = Device::echo();
    device.send(Header::default(), &frame(60));
    device.send(Header::default(), &frame(60));
    let stats = device.stats();
    assert_eq!(
        (stats.tx.frames, stats.rx.frames, stats.rx.dropped),
        (2, 0, 2)
    );
    assert!(device.received().is_empty());
}

#[test]
fn a_receive_buffer_too_small_without_mergeable_buffers_is_an_error_and_is_kept() {
    let mut device = Device::echo();
    device.offer(&[vec![writable(RX_DATA, 64)]]);
    device.send(Header::default(), &frame(1514));
    let stats = device.stats();
    assert_eq!((stats.rx.frames, stats.rx.errors), (0, 1));
    assert_eq!(
        device.rx.in_flight(),
        1,
        "the buffer waits for a frame that fits"
    );
    device.send(Header::default(), &frame(52));
    assert_eq!(device.received()[0].len, 64);
}

#[test]
fn partial_checksums_are_completed_unless_the_driver_takes_them() {
    // An IPv4/UDP-like layout: checksum over bytes 34.. stored at 34 + 6.
    let mut payload = frame(80);
    payload[40] = 0;
    payload[41] = 0;
    let partial = Header {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM as u8,
        csum_start: 34,
        csum_offset: 6,
        ..Header::default()
    };

    let mut device = Device::echo();
    device.offer(&[vec![writable(RX_DATA, 2048)]]);
    device.send(partial, &payload);
    let header = Header::parse(&device.read(RX_DATA, HEADER_LEN).try_into().unwrap());
    assert!(!header.needs_csum(), "completed, so no longer partial");
    let got = device.read(RX_DATA + HEADER_LEN as u64, 80);
    let mut sum: u32 = got[34..]
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    assert_eq!(sum, 0xffff, "the checksum verifies");

    let mut device = Device::new(Mode::Echo, bit(VIRTIO_NET_F_GUEST_CSUM));
    device.offer(&[vec![writable(RX_DATA, 2048)]]);
    device.send(partial, &payload);
    let header = Header::parse(&device.read(RX_DATA, HEADER_LEN).try_into().unwrap());
    assert_eq!(
        header,
        Header {
            num_buffers: 1,
            ..partial
        }
    );
    assert_eq!(device.read(RX_DATA + HEADER_LEN as u64, 80), payload);

    // A checksum position outside the frame cannot be completed.
    let mut device = Device::echo();
    device.offer(&[vec![writable(RX_DATA, 2048)]]);
    device.send(
        Header {
            csum_start: 200,
            ..partial
        },
        &payload,
    );
    assert_eq!(device.stats().rx.errors, 1);
}

#[test]
fn segments_go_back_whole_only_to_a_driver_that_takes_them() {
    let tso = Header {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM as u8,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4 as u8,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    };
    let payload = frame(20_000);
    let negotiated =
        bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_TSO4) | bit(VIRTIO_NET_F_MRG_RXBUF);
    let mut device = Device::new(Mode::Echo, negotiated);
    let chains: Vec<Vec<RawDescriptor>> = (0..8)
        .map(|i| vec![writable(RX_DATA + i * 0x1000, 4096)])
        .collect();
    device.offer(&chains);
    device.send_split(tso, &payload, 5);
    let used = device.received();
    assert_eq!(used.len(), 5, "20012 bytes in 4096-byte buffers");
    let header = Header::parse(&device.read(RX_DATA, HEADER_LEN).try_into().unwrap());
    assert_eq!(
        header,
        Header {
            num_buffers: 5,
            ..tso
        }
    );

    // Without GUEST_TSO4 (or with ECN but no GUEST_ECN), nothing here can segment it.
    for (negotiated, gso_type) in [
        (bit(VIRTIO_NET_F_MRG_RXBUF), VIRTIO_NET_HDR_GSO_TCPV4),
        (
            bit(VIRTIO_NET_F_MRG_RXBUF) | bit(VIRTIO_NET_F_GUEST_TSO4),
            VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN,
        ),
        (bit(VIRTIO_NET_F_MRG_RXBUF), VIRTIO_NET_HDR_GSO_UDP),
    ] {
        let mut device = Device::new(Mode::Echo, negotiated | bit(VIRTIO_NET_F_GUEST_CSUM));
        device.offer(&chains);
        device.send(
            Header {
                gso_type: gso_type as u8,
                ..tso
            },
            &payload,
        );
        let stats = device.stats();
        assert_eq!((stats.rx.frames, stats.rx.errors), (0, 1), "{gso_type:#x}");
        assert!(device.received().is_empty());
    }
}

#[test]
fn malformed_transmit_chains_are_counted_and_answered() {
    let mut device = Device::echo();
    device.offer(&[vec![writable(RX_DATA, 2048)]]);
    // A device-writable buffer in a transmit chain.
    assert_eq!(
        device.send_chain(&[readable(TX_DATA, 12), writable(TX_DATA + 12, 60)]),
        0
    );
    // Shorter than the header.
    assert_eq!(device.send_chain(&[readable(TX_DATA, 8)]), 0);
    // Outside guest memory.
    assert_eq!(
        device.send_chain(&[readable(TX_DATA, 12), readable(MEMORY_SIZE as u64 - 8, 64)]),
        0
    );
    // Longer than any frame.
    let huge: Vec<RawDescriptor> = (0..3)
        .map(|i| readable(TX_DATA + i * 0x10000, 0x10000))
        .collect();
    assert_eq!(device.send_chain(&huge), 0);
    let stats = device.stats();
    assert_eq!((stats.tx.frames, stats.tx.errors), (0, 4));
    assert_eq!(stats.rx.frames, 0);
    assert_eq!(device.rx.in_flight(), 1, "the receive buffer is untouched");
}

#[test]
fn malformed_receive_chains_go_back_at_once() {
    let mut device = Device::echo();
    let offered = device.offer(&[
        vec![readable(RX_DATA, 2048)],
        vec![writable(RX_DATA, 8)],
        vec![writable(MEMORY_SIZE as u64 - 100, 2048)],
        vec![writable(RX_DATA, 2048)],
    ]);
    let answers: Vec<Option<u32>> = offered.iter().map(|&(_, answer)| answer).collect();
    assert_eq!(answers, [Some(0), Some(0), Some(0), None]);
    assert_eq!(device.stats().rx.errors, 3);
    assert_eq!(device.rx.in_flight(), 1);
}

#[test]
fn stopping_gives_back_the_buffers_still_waiting() {
    let mut device = Device::echo();
    device.offer(&[
        vec![writable(RX_DATA, 2048)],
        vec![writable(RX_DATA + 0x1000, 2048)],
        vec![writable(RX_DATA + 0x2000, 2048)],
    ]);
    device.send(Header::default(), &frame(60));
    assert_eq!(device.rx.release_unstarted(), 2);
    assert_eq!(
        device.rx.in_flight(),
        1,
        "the filled one is still to be reaped"
    );
    assert_eq!(device.received().len(), 1);
    assert_eq!(device.rx.in_flight(), 0);
    // Nothing to receive into any more.
    device.send(Header::default(), &frame(60));
    assert_eq!(device.stats().rx.dropped, 1);
}

#[test]
fn without_a_receive_worker_echoed_frames_are_dropped() {
    let mut device = Device::echo();
    device.offer(&[vec![writable(RX_DATA, 2048)]]);
    // The receive worker stops (reset): its engine goes, and its buffers with it.
    let Device {
        backend,
        memory,
        rx,
        mut tx,
    } = device;
    drop(rx);
    backend.reset();
    let queue = fresh_queue(&memory, GuestAddress(TX_RING));
    memory
        .write_slice(&[0u8; 72], GuestAddress(TX_DATA))
        .unwrap();
    queue
        .add_desc_chains(&table(&[vec![readable(TX_DATA, 72)]]), 0)
        .unwrap();
    let mut ring: Queue = queue.create_queue().unwrap();
    let chain = ring.pop_descriptor_chain(memory.clone()).unwrap();
    assert_eq!(tx.start(memory.clone(), chain), Some(0));
    let stats = backend.stats();
    assert_eq!((stats.tx.frames, stats.rx.dropped), (1, 1));
}

#[test]
fn the_device_offers_what_the_kernel_accepts_for_vduse_net() {
    let device = Device::echo();
    let features = device.backend.features();
    for feature in [
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_MTU,
        VIRTIO_NET_F_STATUS,
        VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_GUEST_TSO6,
    ] {
        assert_ne!(features & bit(feature), 0, "feature {feature}");
    }
    // VDUSE refuses net devices with a control queue; no multiqueue without it.
    assert_eq!(features & bit(VIRTIO_NET_F_CTRL_VQ), 0);
    assert_eq!(features & bit(VIRTIO_NET_F_MQ), 0);
    assert_eq!(device.backend.num_queues(), 2);
    let config = device.backend.config();
    assert_eq!(&config[..6], &[2, 0, 0, 0, 0, 1]);
    assert_eq!(&config[6..8], &[1, 0], "link up");
    let status = device.backend.set_link_up(false);
    assert_eq!(status, [0, 0]);
    assert!(!device.backend.link_up());
}
