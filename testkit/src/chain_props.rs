//! What the property tests of the servers' request paths share: descriptors generated
//! anywhere (places and lengths are each test's own), the ways they are linked (in order,
//! as generated, or in an indirect table), the split queue they are laid into with
//! virtio-queue's `MockSplitQueue`, guest memory of a few regions, and the check that no
//! byte changed outside the buffers the device may write.
//!
//! `vduse-blk/tests/proptest_requests.rs` and `vduse-net-null/tests/proptest_frames.rs`
//! use it.

use std::fmt::{Debug, Display};
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use vduse::backend::Memory;
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::Queue;
use virtio_queue::desc::{RawDescriptor, split::Descriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Address, Bytes, GuestAddress};

/// The size of every queue.
pub const QUEUE_SIZE: u16 = 16;

/// Runs `f` on another thread and fails if it takes longer than `limit`: a chain that
/// made the device loop would otherwise hang the test instead of failing it.
pub fn within(limit: Duration, f: impl FnOnce() + Send + 'static) {
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

/// Where a descriptor points: each test has its own places.
pub trait Location: Copy + Debug {
    /// The guest address of the place.
    fn addr(self) -> u64;
}

/// A place at an edge of guest memory of two regions, or anywhere: where a buffer may
/// fall outside memory, run out of it or wrap around the address space.
#[derive(Debug, Clone, Copy)]
pub enum Edge {
    /// Halfway between the two regions.
    Hole,
    /// `n` bytes before the end of the first region (a buffer may run into the hole).
    EndOfA(u64),
    /// `n` bytes before the end of memory.
    EndOfB(u64),
    /// `n` bytes before the top of the address space (a buffer may wrap).
    Top(u64),
    Anywhere(u64),
}

impl Edge {
    /// The guest address of the place in memory of `regions` (start, size).
    pub fn addr(self, regions: &[(u64, usize); 2]) -> u64 {
        let end = |(start, size): (u64, usize)| start + size as u64;
        match self {
            Edge::Hole => end(regions[0]) + (regions[1].0 - end(regions[0])) / 2,
            Edge::EndOfA(n) => end(regions[0]) - n,
            Edge::EndOfB(n) => end(regions[1]) - n,
            Edge::Top(n) => u64::MAX - n,
            Edge::Anywhere(addr) => addr,
        }
    }
}

/// Each edge as likely as the others, `n` below `limit`.
pub fn edge(limit: u64) -> impl Strategy<Value = Edge> {
    prop_oneof![
        Just(Edge::Hole),
        (1..limit).prop_map(Edge::EndOfA),
        (1..limit).prop_map(Edge::EndOfB),
        (0..limit).prop_map(Edge::Top),
        any::<u64>().prop_map(Edge::Anywhere),
    ]
}

/// One descriptor as the driver wrote it.
#[derive(Debug, Clone)]
pub struct Desc<P> {
    pub place: P,
    pub len: u32,
    pub write: bool,
    /// NEXT and its target, used as given in tables with raw links.
    pub next: Option<u16>,
    pub indirect: bool,
}

impl<P> Desc<P> {
    /// A descriptor without NEXT or INDIRECT of its own.
    pub fn plain(place: P, len: u32, write: bool) -> Desc<P> {
        Desc {
            place,
            len,
            write,
            next: None,
            indirect: false,
        }
    }
}

/// Descriptors at `place`s, of `len`gths, with WRITE and INDIRECT as `write` and
/// `indirect` say, and a NEXT target half the time, past `QUEUE_SIZE` too (a link out of
/// the table).
pub fn desc<P: Location>(
    place: impl Strategy<Value = P>,
    len: impl Strategy<Value = u32>,
    write: impl Strategy<Value = bool>,
    indirect: impl Strategy<Value = bool>,
) -> impl Strategy<Value = Desc<P>> {
    (
        place,
        len,
        write,
        proptest::option::of(0u16..QUEUE_SIZE + 4),
        indirect,
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
pub enum Shape {
    /// Each to the next, the last without NEXT (as `build_desc_chain` links them).
    Linear,
    /// NEXT and its target as generated: loops, links out of the table, early ends.
    Raw,
    /// One INDIRECT descriptor whose table holds the descriptors linked in order; the
    /// table's length in the descriptor is off by `skew` bytes.
    Indirect { skew: i32 },
}

pub fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        4 => Just(Shape::Linear),
        2 => Just(Shape::Raw),
        1 => Just(Shape::Indirect { skew: 0 }),
        1 => (-20i32..20).prop_map(|skew| Shape::Indirect { skew }),
    ]
}

/// WRITE and INDIRECT as `desc` has them.
fn flags_of<P>(desc: &Desc<P>) -> u32 {
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
pub fn linked<P: Location>(descs: &[Desc<P>], first: u16) -> Vec<RawDescriptor> {
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

/// The descriptor table of one chain of `descs` linked as `shape` says; an indirect
/// table is written to `indirect_at`.
pub fn table<P: Location>(
    memory: &Memory,
    descs: &[Desc<P>],
    shape: Shape,
    indirect_at: u64,
) -> Vec<RawDescriptor> {
    match shape {
        Shape::Linear => linked(descs, 0),
        Shape::Raw => descs
            .iter()
            .map(|d| {
                let mut flags = flags_of(d);
                if d.next.is_some() {
                    flags |= VRING_DESC_F_NEXT;
                }
                raw(d.place.addr(), d.len, flags, d.next.unwrap_or(0))
            })
            .collect(),
        Shape::Indirect { skew } => {
            let entries = linked(descs, 0);
            for (i, entry) in entries.iter().enumerate() {
                memory
                    .write_obj(*entry, GuestAddress(indirect_at + 16 * i as u64))
                    .unwrap();
            }
            let len = (16 * entries.len() as i64 + i64::from(skew)).max(0) as u32;
            vec![raw(indirect_at, len, VRING_DESC_F_INDIRECT, 0)]
        }
    }
}

/// A queue at `at` whose available ring offers the chains of `table` (and no others),
/// ready to pop them.
pub fn queue(memory: &Memory, at: u64, table: &[RawDescriptor]) -> Queue {
    let queue = MockSplitQueue::create(memory, GuestAddress(at), QUEUE_SIZE);
    // An empty available ring, so the chains of `table` are the first ones popped.
    memory
        .write_obj(0u16, queue.avail_addr().unchecked_add(2))
        .unwrap();
    queue.add_desc_chains(table, 0).unwrap();
    queue.create_queue().unwrap()
}

/// Guest memory of `regions` (start, size).
pub fn memory(regions: &[(u64, usize)]) -> Memory {
    let ranges: Vec<(GuestAddress, usize)> = regions
        .iter()
        .map(|&(start, size)| (GuestAddress(start), size))
        .collect();
    Memory::from_ranges(&ranges).unwrap()
}

/// Every byte of guest memory, region after region.
pub fn snapshot(memory: &Memory, regions: &[(u64, usize)]) -> Vec<u8> {
    let mut bytes = vec![0u8; regions.iter().map(|&(_, size)| size).sum()];
    let mut rest = &mut bytes[..];
    for &(start, size) in regions {
        let (region, after) = rest.split_at_mut(size);
        memory.read_slice(region, GuestAddress(start)).unwrap();
        rest = after;
    }
    bytes
}

/// The guest address of byte `index` of a snapshot of `regions`.
fn address_of(mut index: usize, regions: &[(u64, usize)]) -> u64 {
    for &(start, size) in regions {
        if index < size {
            return start + index as u64;
        }
        index -= size;
    }
    panic!("byte {index} past the regions {regions:x?}")
}

/// The (address, length) of each device-writable buffer of `descs` that is not empty.
pub fn writable(descs: impl IntoIterator<Item = Descriptor>) -> Vec<(u64, u64)> {
    descs
        .into_iter()
        .filter(|d| d.is_write_only() && d.len() > 0)
        .map(|d| (d.addr().0, u64::from(d.len())))
        .collect()
}

/// Whether `addr` is in one of the (address, length) `buffers`.
pub fn covers<'a>(buffers: impl IntoIterator<Item = &'a (u64, u64)>, addr: u64) -> bool {
    buffers
        .into_iter()
        .any(|&(start, len)| addr >= start && addr - start < len)
}

/// Checks that no byte of the snapshots `before` and `after` of `regions` changed where
/// `inside` (the buffers the device may write, which `what` names) does not hold.
pub fn assert_unchanged_outside(
    before: &[u8],
    after: &[u8],
    regions: &[(u64, usize)],
    inside: impl Fn(u64) -> bool,
    what: impl Display,
) {
    for (chunk, (old, new)) in before.chunks(4096).zip(after.chunks(4096)).enumerate() {
        if old == new {
            continue;
        }
        for (i, (o, n)) in old.iter().zip(new).enumerate() {
            let addr = address_of(chunk * 4096 + i, regions);
            assert!(
                o == n || inside(addr),
                "byte {addr:#x} changed ({o:#x} -> {n:#x}) outside {what}"
            );
        }
    }
}
