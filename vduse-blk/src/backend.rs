//! [`BlockBackend`]: the virtio-blk device, served by the `vduse` runtime.
//!
//! `handle` parses a chain into a [`Request`], executes it against the [`Backing`] and
//! writes the status byte, one request at a time. With `io-engine` other than `sync`,
//! [`Backend::engine`] gives each queue's worker a [`crate::engine`] that keeps up to the
//! queue's size of requests in flight (io_uring, or a thread pool).

use std::mem::offset_of;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use vduse::DeviceType;
use vduse::backend::{Backend, Chain, Memory, QueueEngine};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ,
    VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_TOPOLOGY,
    VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_ID_BYTES, virtio_blk_config,
};
use virtio_queue::DescriptorChain;

use crate::backing::Backing;
use crate::engine::IoEngine;
use crate::nbd::NbdDisk;
use crate::request::{self, GuestBuffers, ParseLimits, Request, SECTOR_SIZE, Segment, Status};

/// The largest data segment (SIZE_MAX): 1 MiB. Without it Linux takes the transport's
/// largest DMA mapping, which for VDUSE is the whole bounce buffer. Requests are at most
/// 1280 KiB by default (`max_sectors_kb`), so this seldom splits a segment; 128 KiB, the
/// largest range the kernel's IOVA allocator caches per CPU, was measured and did not
/// make the server touch less of the bounce buffer (BENCHMARKS.md, "What shapes these
/// figures"; docs/kernel-facts.md, section 7).
pub const SIZE_MAX_BYTES: u32 = 1 << 20;

/// Largest physical block size.
pub const MAX_PHYSICAL_BLOCK_SIZE: u32 = 64 * 1024;

/// Most sectors one discard or write-zeroes segment may cover: 1 GiB keeps each request's
/// time bounded when the backing has to write zeros.
pub const MAX_DISCARD_SECTORS: u32 = 1 << 21;
/// Most segments in one discard or write-zeroes request.
pub const MAX_DISCARD_SEGMENTS: u32 = 32;

/// The device's shape, as the configuration gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockOptions {
    /// Logical block size.
    pub logical_block_size: u32,
    /// Physical block size; `None` means the backing's (a block device's, or the logical
    /// block size).
    pub physical_block_size: Option<u32>,
    /// Number of request queues.
    pub num_queues: u16,
    /// Size of each queue.
    pub queue_size: u16,
    /// Serial number for GET_ID (at most 20 bytes).
    pub serial: Option<String>,
    /// Offer DISCARD (never on a read-only disk).
    pub discard: bool,
    /// Offer WRITE_ZEROES (never on a read-only disk).
    pub write_zeroes: bool,
    /// How requests are executed (`auto` picks when the device is made).
    pub io_engine: IoEngine,
}

/// How a request ended: its status and how many data bytes it wrote into the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The status byte.
    pub status: Status,
    /// Bytes written to the device-writable data buffers (not counting the status).
    pub written: u32,
}

impl Completion {
    pub(crate) fn status(status: Status) -> Self {
        Self { status, written: 0 }
    }
}

/// Where the disk's data is.
#[derive(Debug)]
pub enum Store {
    /// A file or block device on this host.
    Local(Backing),
    /// An NBD export.
    Nbd(NbdDisk),
}

impl From<Backing> for Store {
    fn from(backing: Backing) -> Self {
        Store::Local(backing)
    }
}

impl From<NbdDisk> for Store {
    fn from(disk: NbdDisk) -> Self {
        Store::Nbd(disk)
    }
}

impl Store {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Store::Local(backing) => backing.size(),
            Store::Nbd(disk) => disk.size(),
        }
    }

    /// Whether the disk is read-only.
    pub fn is_read_only(&self) -> bool {
        match self {
            Store::Local(backing) => backing.is_read_only(),
            Store::Nbd(disk) => disk.is_read_only(),
        }
    }

    /// The path or URI, for messages.
    pub fn describe(&self) -> String {
        match self {
            Store::Local(backing) => backing.path().display().to_string(),
            Store::Nbd(disk) => disk.uri().to_string(),
        }
    }
}

/// A virtio-blk device over a [`Store`]: a [`Backing`] or an NBD export.
#[derive(Debug)]
pub struct BlockBackend {
    store: Store,
    options: BlockOptions,
    physical_block_size: u32,
    serial: [u8; VIRTIO_BLK_ID_BYTES as usize],
    /// Backing I/O errors so far, to log them sparingly.
    io_errors: AtomicU64,
    /// The engine in use: never `Auto`.
    io_engine: IoEngine,
}

impl BlockBackend {
    /// A device over `store` shaped by `options` (checked by `Config::resolve`).
    pub fn new(store: impl Into<Store>, options: BlockOptions) -> Self {
        let store = store.into();
        let lbs = options.logical_block_size;
        let device_pbs = match &store {
            Store::Local(backing) => backing.device_physical_block_size(),
            // The server's preferred block, as a physical block: writes of less cost it a
            // read-modify-write.
            Store::Nbd(disk) => disk
                .preferred_block()
                .filter(|&size| size.is_power_of_two() && size <= MAX_PHYSICAL_BLOCK_SIZE),
        };
        let physical_block_size = options
            .physical_block_size
            .unwrap_or_else(|| device_pbs.unwrap_or(lbs).max(lbs));
        let mut serial = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        if let Some(text) = &options.serial {
            let len = text.len().min(serial.len());
            serial[..len].copy_from_slice(&text.as_bytes()[..len]);
        }
        let io_engine = crate::engine::resolve(options.io_engine);
        Self {
            store,
            options,
            physical_block_size,
            serial,
            io_errors: AtomicU64::new(0),
            io_engine,
        }
    }

    /// The file or block device, when the disk is one.
    pub fn backing(&self) -> Option<&Backing> {
        match &self.store {
            Store::Local(backing) => Some(backing),
            Store::Nbd(_) => None,
        }
    }

    /// The NBD export, when the disk is one.
    pub fn nbd(&self) -> Option<&NbdDisk> {
        match &self.store {
            Store::Nbd(disk) => Some(disk),
            Store::Local(_) => None,
        }
    }

    /// Where the data is.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The engine requests are executed with (`auto` resolved).
    pub fn io_engine(&self) -> IoEngine {
        self.io_engine
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.store.size() / SECTOR_SIZE
    }

    /// Whether the disk is read-only.
    pub fn is_read_only(&self) -> bool {
        self.store.is_read_only()
    }

    /// The physical block size the guest is told.
    pub fn physical_block_size(&self) -> u32 {
        self.physical_block_size
    }

    pub(crate) fn offers_discard(&self) -> bool {
        self.options.discard
            && !self.is_read_only()
            && self.nbd().is_none_or(|disk| disk.can_trim())
    }

    pub(crate) fn offers_write_zeroes(&self) -> bool {
        self.options.write_zeroes
            && !self.is_read_only()
            && self.nbd().is_none_or(|disk| disk.can_write_zeroes())
    }

    /// Most data segments in one request: the queue less the header and status.
    fn seg_max(&self) -> u32 {
        u32::from(self.options.queue_size).saturating_sub(2).max(1)
    }

    /// Executes a parsed request.
    pub fn execute(&self, request: Request<'_>) -> Completion {
        let writes = matches!(
            request,
            Request::Write { .. } | Request::Discard { .. } | Request::WriteZeroes { .. }
        );
        if writes && self.is_read_only() {
            return Completion::status(Status::IoErr);
        }
        let backing = match &self.store {
            Store::Local(backing) => backing,
            Store::Nbd(disk) => return crate::engine::nbd::execute(self, disk, request),
        };
        match request {
            Request::Read { sector, buffers } => {
                let Some(offset) = self.checked_range(sector, buffers.len() as u64) else {
                    return Completion::status(Status::IoErr);
                };
                match backing.read_into(offset, &buffers) {
                    Ok(()) => Completion {
                        status: Status::Ok,
                        written: u32::try_from(buffers.len()).unwrap_or(u32::MAX),
                    },
                    Err(err) => self.io_failed("read", err),
                }
            }
            Request::Write { sector, buffers } => {
                let Some(offset) = self.checked_range(sector, buffers.len() as u64) else {
                    return Completion::status(Status::IoErr);
                };
                match backing.write_from(offset, &buffers) {
                    Ok(()) => Completion::status(Status::Ok),
                    Err(err) => self.io_failed("write", err),
                }
            }
            Request::Flush => match backing.flush() {
                Ok(()) => Completion::status(Status::Ok),
                Err(err) => self.io_failed("flush", err),
            },
            Request::GetId { buffers } => self.get_id(&buffers),
            Request::Discard { segments } => {
                if !self.offers_discard() {
                    return Completion::status(Status::Unsupp);
                }
                self.for_each_segment(&segments, "discard", |offset, len, _| {
                    backing.discard(offset, len)
                })
            }
            Request::WriteZeroes { segments } => {
                if !self.offers_write_zeroes() {
                    return Completion::status(Status::Unsupp);
                }
                self.for_each_segment(&segments, "write zeroes", |offset, len, unmap| {
                    backing.write_zeroes(offset, len, unmap)
                })
            }
            Request::UnsupportedFlags | Request::Unsupported { .. } => {
                Completion::status(Status::Unsupp)
            }
        }
    }

    /// The byte offset of `len` bytes from `sector` when they lie within the disk (and, with
    /// O_DIRECT, are aligned as it needs).
    pub(crate) fn checked_range(&self, sector: u64, len: u64) -> Option<u64> {
        let offset = sector.checked_mul(SECTOR_SIZE)?;
        let end = offset.checked_add(len)?;
        if end > self.store.size() {
            return None;
        }
        if let Some(alignment) = self.backing().and_then(Backing::direct_alignment) {
            let alignment = alignment as u64;
            if offset % alignment != 0 || len % alignment != 0 {
                return None;
            }
        }
        Some(offset)
    }

    pub(crate) fn get_id(&self, buffers: &GuestBuffers<'_>) -> Completion {
        let written = buffers.write_at(0, &self.serial);
        Completion {
            status: Status::Ok,
            written: written as u32,
        }
    }

    /// Checks every segment first (none is executed when one is bad), then runs `op` with
    /// each one's byte offset, length and unmap flag.
    pub(crate) fn for_each_segment(
        &self,
        segments: &[Segment],
        what: &str,
        mut op: impl FnMut(u64, u64, bool) -> std::io::Result<()>,
    ) -> Completion {
        let mut ranges = Vec::with_capacity(segments.len());
        for segment in segments {
            if segment.num_sectors > MAX_DISCARD_SECTORS {
                return Completion::status(Status::IoErr);
            }
            let len = u64::from(segment.num_sectors) * SECTOR_SIZE;
            let Some(offset) = self.checked_range(segment.sector, len) else {
                return Completion::status(Status::IoErr);
            };
            ranges.push((offset, len, segment.unmap));
        }
        for (offset, len, unmap) in ranges {
            if len == 0 {
                continue;
            }
            if let Err(err) = op(offset, len, unmap) {
                return self.io_failed(what, err);
            }
        }
        Completion::status(Status::Ok)
    }

    /// Logs a backing failure (the 1st, 2nd, 4th, 8th... so a failing disk cannot flood
    /// the log) and answers IOERR.
    pub(crate) fn io_failed(&self, what: &str, err: std::io::Error) -> Completion {
        let count = self.io_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if count.is_power_of_two() {
            log::warn!(
                "{what} on {} failed: {err} ({count} backing I/O error{} so far)",
                self.store.describe(),
                if count == 1 { "" } else { "s" }
            );
        }
        Completion::status(Status::IoErr)
    }

    /// `struct virtio_blk_config` as the guest reads it (little-endian).
    pub fn config_space(&self) -> Vec<u8> {
        let mut config = vec![0u8; size_of::<virtio_blk_config>()];
        let mut put = |offset: usize, bytes: &[u8]| {
            config[offset..offset + bytes.len()].copy_from_slice(bytes);
        };
        let lbs = self.options.logical_block_size;
        let sectors_per_block = lbs / SECTOR_SIZE as u32;
        put(
            offset_of!(virtio_blk_config, capacity),
            &self.capacity().to_le_bytes(),
        );
        put(
            offset_of!(virtio_blk_config, size_max),
            &SIZE_MAX_BYTES.to_le_bytes(),
        );
        put(
            offset_of!(virtio_blk_config, seg_max),
            &self.seg_max().to_le_bytes(),
        );
        put(offset_of!(virtio_blk_config, blk_size), &lbs.to_le_bytes());
        let blocks_per_physical = self.physical_block_size / lbs;
        put(
            offset_of!(virtio_blk_config, physical_block_exp),
            &[blocks_per_physical.trailing_zeros() as u8],
        );
        put(
            offset_of!(virtio_blk_config, min_io_size),
            &(blocks_per_physical as u16).to_le_bytes(),
        );
        put(
            offset_of!(virtio_blk_config, num_queues),
            &self.options.num_queues.to_le_bytes(),
        );
        if self.offers_discard() {
            put(
                offset_of!(virtio_blk_config, max_discard_sectors),
                &MAX_DISCARD_SECTORS.to_le_bytes(),
            );
            put(
                offset_of!(virtio_blk_config, max_discard_seg),
                &MAX_DISCARD_SEGMENTS.to_le_bytes(),
            );
            put(
                offset_of!(virtio_blk_config, discard_sector_alignment),
                &sectors_per_block.to_le_bytes(),
            );
        }
        if self.offers_write_zeroes() {
            put(
                offset_of!(virtio_blk_config, max_write_zeroes_sectors),
                &MAX_DISCARD_SECTORS.to_le_bytes(),
            );
            put(
                offset_of!(virtio_blk_config, max_write_zeroes_seg),
                &MAX_DISCARD_SEGMENTS.to_le_bytes(),
            );
            // Unmapping a range (punching a hole) leaves it reading as zeros.
            put(offset_of!(virtio_blk_config, write_zeroes_may_unmap), &[1]);
        }
        config
    }
}

impl Backend for BlockBackend {
    fn device_type(&self) -> DeviceType {
        DeviceType::Block
    }

    fn features(&self) -> u64 {
        let mut features = [
            VIRTIO_BLK_F_SIZE_MAX,
            VIRTIO_BLK_F_SEG_MAX,
            VIRTIO_BLK_F_BLK_SIZE,
            VIRTIO_BLK_F_TOPOLOGY,
            VIRTIO_BLK_F_FLUSH,
        ]
        .iter()
        .fold(0u64, |bits, &bit| bits | 1 << bit);
        if self.is_read_only() {
            features |= 1 << VIRTIO_BLK_F_RO;
        }
        if self.options.num_queues > 1 {
            features |= 1 << VIRTIO_BLK_F_MQ;
        }
        if self.offers_discard() {
            features |= 1 << VIRTIO_BLK_F_DISCARD;
        }
        if self.offers_write_zeroes() {
            features |= 1 << VIRTIO_BLK_F_WRITE_ZEROES;
        }
        features
    }

    fn config(&self) -> Vec<u8> {
        self.config_space()
    }

    fn num_queues(&self) -> u16 {
        self.options.num_queues
    }

    fn max_queue_size(&self) -> u16 {
        self.options.queue_size
    }

    fn handle(&self, _queue: u16, memory: &Memory, chain: Chain) -> u32 {
        self.serve(memory, chain)
    }

    fn engine(self: Arc<Self>, queue: u16, size: u16) -> Option<Box<dyn QueueEngine>> {
        crate::engine::for_queue(self, queue, size)
    }
}

/// The limits the parser enforces.
pub(crate) const LIMITS: ParseLimits = ParseLimits {
    max_discard_segments: MAX_DISCARD_SEGMENTS,
    max_write_zeroes_segments: MAX_DISCARD_SEGMENTS,
};

impl BlockBackend {
    /// Parses, executes and answers one request synchronously; returns the used length.
    pub(crate) fn serve<M>(&self, memory: &Memory, chain: DescriptorChain<M>) -> u32
    where
        M: Deref<Target = Memory> + Clone,
    {
        let Some(parsed) = request::parse(memory, chain, LIMITS) else {
            // Nowhere to put a status: the request cannot be answered.
            return 0;
        };
        let completion = match parsed.request {
            Ok(request) => self.execute(request),
            Err(_malformed) => Completion::status(Status::IoErr),
        };
        answer(memory, parsed.status_addr, completion)
    }
}

/// Writes the status byte of a finished request; returns the used length.
pub(crate) fn answer(
    memory: &Memory,
    status_addr: vm_memory::GuestAddress,
    completion: Completion,
) -> u32 {
    if !request::write_status(memory, status_addr, completion.status) {
        return 0;
    }
    completion.written.saturating_add(1)
}
