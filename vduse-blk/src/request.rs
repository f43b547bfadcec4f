//! Parsing a virtio-blk request (virtio 1.2, 5.2.6) out of a descriptor chain.
//!
//! A request is a 16-byte header (`type`, `reserved`, `sector`) at the start of the
//! device-readable part, data, and a status byte: the last device-writable byte. The driver
//! may split any of these over descriptors as it likes, so the chain is first flattened into
//! its readable and writable byte ranges, then cut at byte offsets. Parsing never touches
//! the disk: it yields a [`Request`] whose data is owned [`GuestData`] (the memory
//! snapshot's `Arc` with the ranges), which the device backend ([`crate::backend`]) turns
//! into a disk operation that may stay in flight after the chain is gone. Used by the
//! backend only.

use std::mem::{offset_of, size_of};

use std::ops::Deref;
use std::sync::Arc;

use smallvec::SmallVec;
use vduse::backend::Memory;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
    virtio_blk_discard_write_zeroes, virtio_blk_outhdr,
};
use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemory};

pub use crate::guest::GuestBuffers;
use crate::guest::{GuestData, GuestRange};

/// Bytes in a sector, the unit of `sector` and of data lengths, whatever the block size.
pub const SECTOR_SIZE: u64 = 512;

/// Size of the request header (`struct virtio_blk_outhdr`).
const HEADER_SIZE: usize = size_of::<virtio_blk_outhdr>();
/// Size of one discard or write-zeroes segment.
pub const SEGMENT_SIZE: usize = size_of::<virtio_blk_discard_write_zeroes>();

const _: () = assert!(HEADER_SIZE == 16 && SEGMENT_SIZE == 16);

/// A status byte (`VIRTIO_BLK_S_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// `VIRTIO_BLK_S_OK`.
    Ok = virtio_bindings::virtio_blk::VIRTIO_BLK_S_OK as u8,
    /// `VIRTIO_BLK_S_IOERR`: a device or driver error.
    IoErr = virtio_bindings::virtio_blk::VIRTIO_BLK_S_IOERR as u8,
    /// `VIRTIO_BLK_S_UNSUPP`: a request the device does not support.
    Unsupp = virtio_bindings::virtio_blk::VIRTIO_BLK_S_UNSUPP as u8,
}

/// One range of a discard or write-zeroes request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First sector.
    pub sector: u64,
    /// Number of sectors.
    pub num_sectors: u32,
    /// The `unmap` flag: the device may deallocate the range (write zeroes only).
    pub unmap: bool,
}

/// A request the device understood.
#[derive(Debug)]
pub enum Request {
    /// `VIRTIO_BLK_T_IN`: read sectors into `buffers`.
    Read {
        /// First sector.
        sector: u64,
        /// Where the data goes; a multiple of 512 bytes long.
        data: GuestData,
    },
    /// `VIRTIO_BLK_T_OUT`: write `buffers` to sectors.
    Write {
        /// First sector.
        sector: u64,
        /// The data; a multiple of 512 bytes long.
        data: GuestData,
    },
    /// `VIRTIO_BLK_T_FLUSH`: make completed writes durable.
    Flush,
    /// `VIRTIO_BLK_T_GET_ID`: the serial number into `buffers`.
    GetId {
        /// Where the serial goes.
        data: GuestData,
    },
    /// `VIRTIO_BLK_T_DISCARD`.
    Discard {
        /// The ranges.
        segments: Vec<Segment>,
    },
    /// `VIRTIO_BLK_T_WRITE_ZEROES`.
    WriteZeroes {
        /// The ranges.
        segments: Vec<Segment>,
    },
    /// A discard or write-zeroes segment sets a flag the request type does not allow.
    UnsupportedFlags,
    /// A request type this device does not implement.
    Unsupported {
        /// The `type` field.
        request_type: u32,
    },
}

/// Why a request that can be answered is malformed (answered with IOERR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// A device-readable descriptor follows a device-writable one.
    ReadableAfterWritable,
    /// Fewer than 16 device-readable bytes for the header.
    ShortHeader,
    /// Some descriptor points outside the device's memory.
    BadAddress,
    /// Read or write data that is not a whole number of sectors.
    PartialSector,
    /// Data in a direction the request type does not have.
    UnexpectedData,
    /// Discard or write-zeroes data that is not a whole number of segments, or none.
    BadSegments,
    /// More discard or write-zeroes segments than the device takes.
    TooManySegments,
}

/// A parsed chain that has somewhere to put its status byte.
#[derive(Debug)]
pub struct Parsed {
    /// Where the status byte goes.
    pub status_addr: GuestAddress,
    /// The request, or why it is malformed.
    pub request: Result<Request, Malformed>,
}

/// The byte ranges of one direction of a chain; a request has a few.
type Ranges = SmallVec<[GuestRange; 4]>;

/// Reads the first `bytes.len()` bytes of `ranges` into `bytes` and removes them from
/// `ranges`; `None` when one of them is not in `memory`. `ranges` holds at least that many.
fn take_front(memory: &Memory, ranges: &mut Ranges, bytes: &mut [u8]) -> Option<()> {
    let mut done = 0;
    let mut whole = 0;
    for range in ranges.iter_mut() {
        if done == bytes.len() {
            break;
        }
        let take = range.len.min(bytes.len() - done);
        memory
            .read_slice(&mut bytes[done..done + take], range.addr)
            .ok()?;
        done += take;
        if take == range.len {
            whole += 1;
        } else {
            // No overflow: ranges that wrap around the address space never get here.
            range.addr = GuestAddress(range.addr.0 + take as u64);
            range.len -= take;
        }
    }
    ranges.drain(..whole);
    Some(())
}

/// Total length of `ranges` (saturating: a chain holds at most 4 GiB, more than a 32-bit
/// `usize`).
fn total(ranges: &[GuestRange]) -> usize {
    ranges
        .iter()
        .fold(0usize, |sum, range| sum.saturating_add(range.len))
}

/// Limits the parser enforces before reading variable-size data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Most segments of a discard request.
    pub max_discard_segments: u32,
    /// Most segments of a write-zeroes request.
    pub max_write_zeroes_segments: u32,
}

/// Parses `chain`. Returns `None` when the chain has no device-writable byte that can hold
/// a status: such a request cannot be answered at all.
pub fn parse<M>(
    memory: &Arc<Memory>,
    chain: DescriptorChain<M>,
    limits: ParseLimits,
) -> Option<Parsed>
where
    M: Deref<Target = Memory> + Clone,
{
    let mut readable = Ranges::new();
    let mut writable = Ranges::new();
    let mut misordered = false;
    let mut wraps = false;
    for descriptor in chain {
        let len = descriptor.len() as usize;
        if len == 0 {
            continue;
        }
        // A range that wraps around the address space is in no memory.
        wraps |= descriptor.addr().0.checked_add(len as u64 - 1).is_none();
        let range = GuestRange {
            addr: descriptor.addr(),
            len,
        };
        if descriptor.is_write_only() {
            writable.push(range);
        } else {
            misordered |= !writable.is_empty();
            readable.push(range);
        }
    }

    // The status byte is the last writable byte.
    let last = writable.last_mut()?;
    let status_addr = GuestAddress(last.addr.0.checked_add(last.len as u64 - 1)?);
    last.len -= 1;
    if last.len == 0 {
        writable.pop();
    }
    memory.check_address(status_addr)?;

    let request = if misordered {
        Err(Malformed::ReadableAfterWritable)
    } else if wraps {
        Err(Malformed::BadAddress)
    } else {
        parse_request(memory, readable, writable, limits)
    };
    Some(Parsed {
        status_addr,
        request,
    })
}

/// Parses the header and data once the status byte is set aside.
fn parse_request(
    memory: &Arc<Memory>,
    mut readable: Ranges,
    writable: Ranges,
    limits: ParseLimits,
) -> Result<Request, Malformed> {
    if total(&readable) < HEADER_SIZE {
        return Err(Malformed::ShortHeader);
    }
    let mut header = [0u8; HEADER_SIZE];
    take_front(memory, &mut readable, &mut header).ok_or(Malformed::BadAddress)?;
    let request_type = le_u32(&header, offset_of!(virtio_blk_outhdr, type_));
    let sector = le_u64(&header, offset_of!(virtio_blk_outhdr, sector));
    let out_data = readable;
    let in_data = writable;

    match request_type {
        VIRTIO_BLK_T_IN => {
            if !out_data.is_empty() {
                return Err(Malformed::UnexpectedData);
            }
            let data = data(memory, in_data)?;
            if data.len() as u64 % SECTOR_SIZE != 0 {
                return Err(Malformed::PartialSector);
            }
            Ok(Request::Read { sector, data })
        }
        VIRTIO_BLK_T_OUT => {
            if !in_data.is_empty() {
                return Err(Malformed::UnexpectedData);
            }
            let data = data(memory, out_data)?;
            if data.len() as u64 % SECTOR_SIZE != 0 {
                return Err(Malformed::PartialSector);
            }
            Ok(Request::Write { sector, data })
        }
        VIRTIO_BLK_T_FLUSH => Ok(Request::Flush),
        VIRTIO_BLK_T_GET_ID => Ok(Request::GetId {
            data: data(memory, in_data)?,
        }),
        VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES => {
            if !in_data.is_empty() {
                return Err(Malformed::UnexpectedData);
            }
            let discard = request_type == VIRTIO_BLK_T_DISCARD;
            let max_segments = if discard {
                limits.max_discard_segments
            } else {
                limits.max_write_zeroes_segments
            };
            let len = total(&out_data);
            if len == 0 || len % SEGMENT_SIZE != 0 {
                return Err(Malformed::BadSegments);
            }
            // Checked before reading, so a huge chain never becomes a huge allocation.
            if len / SEGMENT_SIZE > max_segments as usize {
                return Err(Malformed::TooManySegments);
            }
            let mut bytes = vec![0u8; len];
            buffers(memory, &out_data)?.read_at(0, &mut bytes);
            let mut segments = Vec::with_capacity(len / SEGMENT_SIZE);
            for raw in bytes.chunks_exact(SEGMENT_SIZE) {
                let flags = le_u32(raw, offset_of!(virtio_blk_discard_write_zeroes, flags));
                // Discard takes no flags; write zeroes takes only `unmap` (5.2.6.2).
                let allowed = if discard {
                    0
                } else {
                    VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP
                };
                if flags & !allowed != 0 {
                    return Ok(Request::UnsupportedFlags);
                }
                segments.push(Segment {
                    sector: le_u64(raw, offset_of!(virtio_blk_discard_write_zeroes, sector)),
                    num_sectors: le_u32(
                        raw,
                        offset_of!(virtio_blk_discard_write_zeroes, num_sectors),
                    ),
                    unmap: flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0,
                });
            }
            Ok(if discard {
                Request::Discard { segments }
            } else {
                Request::WriteZeroes { segments }
            })
        }
        request_type => Ok(Request::Unsupported { request_type }),
    }
}

/// The little-endian `u32` at `offset` of `bytes`.
fn le_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(std::array::from_fn(|i| bytes[offset + i]))
}

/// The little-endian `u64` at `offset` of `bytes`.
fn le_u64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(std::array::from_fn(|i| bytes[offset + i]))
}

fn buffers<'m>(memory: &'m Memory, ranges: &[GuestRange]) -> Result<GuestBuffers<'m>, Malformed> {
    GuestBuffers::from_ranges(memory, ranges).ok_or(Malformed::BadAddress)
}

fn data(memory: &Arc<Memory>, ranges: Ranges) -> Result<GuestData, Malformed> {
    GuestData::new(memory, &ranges).ok_or(Malformed::BadAddress)
}

/// Writes the status byte; false when it could not be written.
pub fn write_status(memory: &Memory, addr: GuestAddress, status: Status) -> bool {
    memory.write_obj(status as u8, addr).is_ok()
}
