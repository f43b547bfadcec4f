//! Guest memory as the I/O moves it: the leaf every other module of the crate builds on.
//!
//! - [`GuestBuffers`]: the slices of guest memory one read or write covers, borrowed
//!   from a memory snapshot.
//! - [`GuestData`]: the same, owned: the snapshot's `Arc` and where the bytes are in this
//!   process, found once per request, so that an operation in flight keeps the mappings
//!   its I/O points into.
//! - `IoVecs`: those buffers as the iovecs handed to the kernel (io_uring, `preadv`,
//!   `sendmsg` on an NBD socket).

use std::sync::Arc;

use smallvec::SmallVec;
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

/// Pieces of guest memory a request's data usually comes in, kept without a heap
/// allocation: Linux's virtio-blk driver sends one descriptor per segment of the request,
/// and a segment is one to a few pages.
const INLINE_PIECES: usize = 4;

/// Guest memory a read or write moves data to or from, owned: the request's memory
/// snapshot and where its bytes are in this process, found once when the request is
/// parsed. The snapshot's mappings stay while this lives, so an operation that holds it
/// can have I/O in flight on them.
///
/// The host addresses are taken once, from the slices of the snapshot: a region of
/// `GuestMemoryMmap` is one mapping for the region's whole life (vm-memory's `xen`
/// feature, where a slice maps on demand, is not enabled), and the snapshot keeps every
/// region it holds, so the addresses stay valid for as long as this holds its `Arc`.
#[derive(Debug, Clone)]
pub struct GuestData {
    /// Keeps the mappings `iovecs` point into.
    _memory: Arc<Memory>,
    iovecs: SmallVec<[libc::iovec; INLINE_PIECES]>,
    len: usize,
}

// SAFETY: the iovecs point into the mappings of `memory`, which this owns; they are only
// dereferenced by the kernel or by copies, during the I/O of the request that owns this.
// Moving it to or sharing it with another thread (the thread pool) changes neither.
unsafe impl Send for GuestData {}
// SAFETY: as for `Send`: the iovecs are never changed through a shared reference.
unsafe impl Sync for GuestData {}

impl GuestData {
    /// The memory of `ranges` in `memory`, or `None` when some byte of them is not mapped.
    pub(crate) fn new(memory: &Arc<Memory>, ranges: &[GuestRange]) -> Option<Self> {
        let mut iovecs = SmallVec::new();
        let mut len: usize = 0;
        for range in ranges {
            for slice in memory.get_slices(range.addr, range.len) {
                let slice = slice.ok()?;
                len = len.checked_add(slice.len())?;
                iovecs.push(libc::iovec {
                    iov_base: slice.ptr_guard_mut().as_ptr().cast(),
                    iov_len: slice.len(),
                });
            }
        }
        Some(Self {
            _memory: memory.clone(),
            iovecs,
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

    /// Where the bytes are, in order: what `preadv`, io_uring and `sendmsg` take. Valid
    /// while `self` lives.
    pub(crate) fn iovecs(&self) -> &[libc::iovec] {
        &self.iovecs
    }

    /// True when every piece starts at an address and has a length that are multiples
    /// of `alignment` (what O_DIRECT needs of memory).
    pub fn is_aligned(&self, alignment: usize) -> bool {
        self.iovecs.iter().all(|iovec| {
            iovec.iov_len % alignment == 0 && (iovec.iov_base as usize) % alignment == 0
        })
    }

    /// The buffers, to copy into or out of (a bounce buffer, the serial number).
    pub fn buffers(&self) -> GuestBuffers<'_> {
        let slices = self
            .iovecs
            .iter()
            // SAFETY: each iovec is a slice of a region of `self._memory` (see the type's
            // documentation), mapped for as long as `self` lives, which the returned
            // slices borrow; guest memory is only ever accessed volatilely.
            .map(|iovec| unsafe { VolatileSlice::new(iovec.iov_base.cast(), iovec.iov_len) })
            .collect();
        GuestBuffers {
            slices,
            len: self.len,
        }
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
    /// A copy of the iovecs of `data`, which can be advanced after a short transfer.
    pub fn of(data: &GuestData) -> Self {
        IoVecs(data.iovecs().to_vec())
    }

    /// The iovecs of `len` bytes starting `position` bytes in (fewer when the list ends
    /// first).
    pub fn range(&self, position: usize, len: usize) -> Vec<libc::iovec> {
        range(&self.0, position, len)
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

/// The iovecs of `len` bytes of `iovecs` starting `position` bytes in (fewer when the
/// list ends first).
pub(crate) fn range(
    iovecs: &[libc::iovec],
    mut position: usize,
    mut len: usize,
) -> Vec<libc::iovec> {
    let mut out = Vec::new();
    for iovec in iovecs {
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
