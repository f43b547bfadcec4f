//! Guest memory as the I/O moves it: the leaf every other module of the crate builds on.
//!
//! - [`GuestBuffers`]: the slices of guest memory one read or write covers, borrowed
//!   from a memory snapshot.
//! - [`GuestData`]: the same, owned: the snapshot's `Arc` and the byte ranges, so that an
//!   operation in flight keeps the mappings its I/O points into.
//! - `IoVecs`: those buffers as the iovecs handed to the kernel (io_uring, `preadv`,
//!   `sendmsg` on an NBD socket).

use std::sync::Arc;

use vduse::backend::Memory;
use vm_memory::{GuestAddress, GuestMemory, VolatileSlice};

/// How many iovecs one `preadv`/`pwritev`/`sendmsg` takes (`IOV_MAX` on Linux).
pub(crate) const IOV_MAX: usize = 1024;

/// Guest memory one request reads or writes: slices in chain order.
#[derive(Debug, Clone, Default)]
pub struct GuestBuffers<'m> {
    slices: Vec<VolatileSlice<'m>>,
    len: usize,
}

impl<'m> GuestBuffers<'m> {
    /// The memory of `ranges`, or `None` when some byte of them is not mapped.
    pub(crate) fn from_ranges(memory: &'m Memory, ranges: &[GuestRange]) -> Option<Self> {
        let mut buffers = GuestBuffers::default();
        for range in ranges {
            for slice in memory.get_slices(range.addr, range.len) {
                let slice = slice.ok()?;
                buffers.len = buffers.len.checked_add(slice.len())?;
                buffers.slices.push(slice);
            }
        }
        Some(buffers)
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slices, in order.
    pub fn slices(&self) -> &[VolatileSlice<'m>] {
        &self.slices
    }

    /// True when every slice starts at an address and has a length that are multiples of
    /// `alignment` (what O_DIRECT needs of memory).
    pub fn is_aligned(&self, alignment: usize) -> bool {
        self.slices.iter().all(|slice| {
            slice.len() % alignment == 0 && (slice.ptr_guard().as_ptr() as usize) % alignment == 0
        })
    }

    /// Copies `bytes` into the buffers starting `position` bytes in; returns how many were
    /// copied (fewer when the buffers end first).
    pub fn write_at(&self, position: usize, bytes: &[u8]) -> usize {
        let mut copied = 0;
        self.for_each_piece(position, bytes.len(), |slice, at| {
            slice.copy_from(&bytes[at..at + slice.len()]);
            copied += slice.len();
        });
        copied
    }

    /// Copies from the buffers, starting `position` bytes in, into `bytes`; returns how
    /// many were copied.
    pub fn read_at(&self, position: usize, bytes: &mut [u8]) -> usize {
        let mut copied = 0;
        self.for_each_piece(position, bytes.len(), |slice, at| {
            copied += slice.copy_to(&mut bytes[at..at + slice.len()]);
        });
        copied
    }

    /// Calls `f(piece, offset)` for the pieces of the slices covering `len` bytes from
    /// `position`; `offset` counts from `position`.
    fn for_each_piece(
        &self,
        position: usize,
        len: usize,
        mut f: impl FnMut(VolatileSlice<'m>, usize),
    ) {
        let mut skip = position;
        let mut done = 0;
        for slice in &self.slices {
            if done == len {
                break;
            }
            if skip >= slice.len() {
                skip -= slice.len();
                continue;
            }
            let take = (slice.len() - skip).min(len - done);
            // In bounds: skip < slice.len() and take <= slice.len() - skip.
            if let Ok(piece) = slice.subslice(skip, take) {
                f(piece, done);
            }
            skip = 0;
            done += take;
        }
    }
}

/// A byte range of guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GuestRange {
    pub addr: GuestAddress,
    pub len: usize,
}

/// Guest memory a read or write moves data to or from, owned: the request's memory
/// snapshot and the byte ranges in it. The snapshot's mappings stay while this lives, so an
/// operation that holds it can have I/O in flight on them.
#[derive(Debug, Clone)]
pub struct GuestData {
    memory: Arc<Memory>,
    ranges: Vec<GuestRange>,
    len: usize,
}

impl GuestData {
    /// The memory of `ranges` in `memory`, or `None` when some byte of them is not mapped.
    pub(crate) fn new(memory: &Arc<Memory>, ranges: Vec<GuestRange>) -> Option<Self> {
        // Checked without making the slices: `buffers` makes them once, when the I/O runs.
        let mut len: usize = 0;
        for range in &ranges {
            if !memory.check_range(range.addr, range.len) {
                return None;
            }
            len = len.checked_add(range.len)?;
        }
        Some(Self {
            memory: memory.clone(),
            ranges,
            len,
        })
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffers, borrowed from the snapshot this holds. `new` checked that every range
    /// is mapped in it, and a snapshot never changes (a remap publishes a new one), so this
    /// finds the same slices again.
    pub fn buffers(&self) -> GuestBuffers<'_> {
        GuestBuffers::from_ranges(&self.memory, &self.ranges).unwrap_or_default()
    }
}

/// iovecs that point into guest memory, handed to the kernel (io_uring, `readv` and
/// `sendmsg` on an NBD socket). They hold raw pointers, which is why they are not `Send`
/// or `Sync` by themselves.
pub(crate) struct IoVecs(pub Vec<libc::iovec>);

// SAFETY: the pointers are only dereferenced by the kernel or by copies into and out of
// them, during the I/O of the request that owns both them and the memory snapshot they
// point into; moving or sharing the list between threads changes neither.
unsafe impl Send for IoVecs {}
// SAFETY: as for `Send`: the list itself is never changed through a shared reference.
unsafe impl Sync for IoVecs {}

impl IoVecs {
    /// The iovecs of `buffers`, in order.
    pub fn of(buffers: &GuestBuffers<'_>) -> Self {
        IoVecs(
            buffers
                .slices()
                .iter()
                .map(|slice| libc::iovec {
                    iov_base: slice.ptr_guard_mut().as_ptr().cast(),
                    iov_len: slice.len(),
                })
                .collect(),
        )
    }

    /// The iovecs of `len` bytes starting `position` bytes in (fewer when the list ends
    /// first).
    pub fn range(&self, mut position: usize, mut len: usize) -> Vec<libc::iovec> {
        let mut out = Vec::new();
        for iovec in &self.0 {
            if len == 0 {
                break;
            }
            if position >= iovec.iov_len {
                position -= iovec.iov_len;
                continue;
            }
            let take = (iovec.iov_len - position).min(len);
            out.push(libc::iovec {
                iov_base: iovec.iov_base.cast::<u8>().wrapping_add(position).cast(),
                iov_len: take,
            });
            position = 0;
            len -= take;
        }
        out
    }

    /// Drops the first `count` bytes (after a short transfer).
    pub fn advance(&mut self, count: usize) {
        advance(&mut self.0, count);
    }
}

impl std::fmt::Debug for IoVecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes: usize = self.0.iter().map(|iovec| iovec.iov_len).sum();
        write!(f, "IoVecs({} iovecs, {bytes} bytes)", self.0.len())
    }
}

/// Drops the first `count` bytes of `iovecs` (after a short transfer).
pub(crate) fn advance(iovecs: &mut Vec<libc::iovec>, mut count: usize) {
    let mut drop_whole = 0;
    for iovec in iovecs.iter_mut() {
        if count == 0 {
            break;
        }
        if iovec.iov_len <= count {
            count -= iovec.iov_len;
            drop_whole += 1;
        } else {
            iovec.iov_base = iovec.iov_base.cast::<u8>().wrapping_add(count).cast();
            iovec.iov_len -= count;
            count = 0;
        }
    }
    iovecs.drain(..drop_whole);
}
