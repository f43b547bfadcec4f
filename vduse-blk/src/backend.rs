//! [`BlockBackend`]: the virtio-blk device, served by the `vduse` runtime, over a [`Disk`].
//!
//! A chain is parsed into a [`Request`] ([`crate::request`]), which [`BlockBackend`]
//! answers itself (GET_ID, unsupported or malformed requests, ranges off the disk, writes
//! to a read-only disk) or turns into a disk [`Operation`]; its result becomes the status
//! byte. [`Backend::handle`] does that one request at a time with [`Disk::execute`]; when
//! the disk gives the queue a [`crate::disk::DiskQueue`] (an NBD export, or a file with
//! `io-engine` threads or io-uring), [`Backend::engine`] gives the queue's worker a
//! [`queue::BlockQueue`] that keeps up to the queue's size of requests in flight on it.
//!
//! Layering: the backend uses `request` and `disk`; nothing below it knows about virtio.

pub mod queue;

use std::mem::offset_of;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use vduse::DeviceType;
use vduse::backend::{Backend, Chain, Memory, QueueEngine};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ,
    VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_TOPOLOGY,
    VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_ID_BYTES, virtio_blk_config,
};

use crate::disk::{Disk, Extent, FileDisk, IoEngine, Operation};
use crate::guest::GuestBuffers;
use crate::nbd::NbdDisk;
use crate::request::{self, ParseLimits, Request, SECTOR_SIZE, Segment, Status};
use crate::stats::{Counts, Kind, QueueCounters};

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

/// What a request comes to.
pub(crate) enum Prepared {
    /// Answered without the disk.
    Answer(Completion),
    /// This operation; `written` data bytes go into the chain when it succeeds.
    Disk { operation: Operation, written: u32 },
}

/// A virtio-blk device over a [`Disk`]: a file or block device, or an NBD export.
#[derive(Debug)]
pub struct BlockBackend {
    disk: Disk,
    options: BlockOptions,
    physical_block_size: u32,
    serial: [u8; VIRTIO_BLK_ID_BYTES as usize],
    /// The disk's size in bytes as the guest is told it: the disk's when opened, then
    /// what [`BlockBackend::grow`] set (a reloaded configuration, SIGHUP).
    size: AtomicU64,
    /// Disk I/O errors so far, to log them sparingly.
    io_errors: AtomicU64,
    /// Each queue's counters.
    counters: Vec<QueueCounters>,
    /// The executor of a file disk's operations: never `Auto`.
    io_engine: IoEngine,
}

impl BlockBackend {
    /// A device over `disk` shaped by `options` (checked by `Config::resolve`).
    pub fn new(disk: impl Into<Disk>, options: BlockOptions) -> Self {
        let disk = disk.into();
        let lbs = options.logical_block_size;
        // A block device's physical block as it reports it; an NBD server's preferred block
        // only when the guest can be told it.
        let device_pbs = match &disk {
            Disk::File(_) => disk.preferred_block_size(),
            Disk::Nbd(_) => disk
                .preferred_block_size()
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
        let io_engine = crate::disk::resolve(options.io_engine);
        let counters = (0..options.num_queues.max(1))
            .map(|_| QueueCounters::default())
            .collect();
        Self {
            size: AtomicU64::new(disk.size()),
            disk,
            options,
            physical_block_size,
            serial,
            io_errors: AtomicU64::new(0),
            counters,
            io_engine,
        }
    }

    /// The file or block device, when the disk is one.
    pub fn file(&self) -> Option<&FileDisk> {
        match &self.disk {
            Disk::File(file) => Some(file),
            Disk::Nbd(_) => None,
        }
    }

    /// The NBD export, when the disk is one.
    pub fn nbd(&self) -> Option<&NbdDisk> {
        match &self.disk {
            Disk::Nbd(disk) => Some(disk),
            Disk::File(_) => None,
        }
    }

    /// Where the data is.
    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    /// The executor a file disk's operations run with (`auto` resolved).
    pub fn io_engine(&self) -> IoEngine {
        self.io_engine
    }

    /// The counters of queue `queue`.
    pub fn counters(&self, queue: u16) -> &QueueCounters {
        // Queues are below `num_queues`; a stray index counts with the last queue.
        let index = usize::from(queue).min(self.counters.len() - 1);
        &self.counters[index]
    }

    /// Every queue's counters now.
    pub fn counts(&self) -> Vec<Counts> {
        self.counters.iter().map(QueueCounters::counts).collect()
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.size() / SECTOR_SIZE
    }

    /// Serves `size` bytes from now on, up from [`BlockBackend::size`] (the disk has grown
    /// to at least that: the caller checked), and returns the config space bytes that
    /// tell the driver: the `capacity` field's offset and its new value.
    pub fn grow(&self, size: u64) -> (u32, [u8; 8]) {
        self.size.fetch_max(size, Ordering::AcqRel);
        (
            offset_of!(virtio_blk_config, capacity) as u32,
            self.capacity().to_le_bytes(),
        )
    }

    /// Whether the disk is read-only.
    pub fn is_read_only(&self) -> bool {
        self.disk.is_read_only()
    }

    /// The physical block size the guest is told.
    pub fn physical_block_size(&self) -> u32 {
        self.physical_block_size
    }

    pub(crate) fn offers_discard(&self) -> bool {
        self.options.discard && !self.is_read_only() && self.disk.can_discard()
    }

    pub(crate) fn offers_write_zeroes(&self) -> bool {
        self.options.write_zeroes && !self.is_read_only() && self.disk.can_write_zeroes()
    }

    /// Most data segments in one request: the queue less the header and status.
    fn seg_max(&self) -> u32 {
        u32::from(self.options.queue_size).saturating_sub(2).max(1)
    }

    /// What a parsed request comes to: an answer at once, or an operation on the disk
    /// (and the data bytes the request writes into the chain when that succeeds).
    pub(crate) fn prepare(&self, request: Request) -> Prepared {
        let writes = matches!(
            request,
            Request::Write { .. } | Request::Discard { .. } | Request::WriteZeroes { .. }
        );
        if writes && self.is_read_only() {
            return Prepared::Answer(Completion::status(Status::IoErr));
        }
        let (operation, written) = match request {
            Request::Read { sector, data } => {
                let Some(offset) = self.checked_range(sector, data.len() as u64) else {
                    return Prepared::Answer(Completion::status(Status::IoErr));
                };
                let written = u32::try_from(data.len()).unwrap_or(u32::MAX);
                (Operation::Read { offset, data }, written)
            }
            Request::Write { sector, data } => {
                let Some(offset) = self.checked_range(sector, data.len() as u64) else {
                    return Prepared::Answer(Completion::status(Status::IoErr));
                };
                (Operation::Write { offset, data }, 0)
            }
            Request::Flush => (Operation::Flush, 0),
            Request::GetId { data } => return Prepared::Answer(self.get_id(&data.buffers())),
            Request::Discard { segments } => {
                if !self.offers_discard() {
                    return Prepared::Answer(Completion::status(Status::Unsupp));
                }
                match self.extents(&segments) {
                    Some(extents) if extents.is_empty() => {
                        return Prepared::Answer(Completion::status(Status::Ok));
                    }
                    Some(extents) => (Operation::Discard { extents }, 0),
                    None => return Prepared::Answer(Completion::status(Status::IoErr)),
                }
            }
            Request::WriteZeroes { segments } => {
                if !self.offers_write_zeroes() {
                    return Prepared::Answer(Completion::status(Status::Unsupp));
                }
                match self.extents(&segments) {
                    Some(extents) if extents.is_empty() => {
                        return Prepared::Answer(Completion::status(Status::Ok));
                    }
                    Some(extents) => (Operation::WriteZeroes { extents }, 0),
                    None => return Prepared::Answer(Completion::status(Status::IoErr)),
                }
            }
            Request::UnsupportedFlags | Request::Unsupported { .. } => {
                return Prepared::Answer(Completion::status(Status::Unsupp));
            }
        };
        Prepared::Disk { operation, written }
    }

    /// The completion of a request whose operation ended with `result` and, when it
    /// succeeded, wrote `written` data bytes into the chain.
    pub(crate) fn completion(
        &self,
        what: &str,
        written: u32,
        result: std::io::Result<()>,
    ) -> Completion {
        match result {
            Ok(()) => Completion {
                status: Status::Ok,
                written,
            },
            Err(error) => self.io_failed(what, error),
        }
    }

    /// The byte offset of `len` bytes from `sector` when they lie within the disk (and, with
    /// O_DIRECT, are aligned as it needs).
    pub(crate) fn checked_range(&self, sector: u64, len: u64) -> Option<u64> {
        let offset = sector.checked_mul(SECTOR_SIZE)?;
        let end = offset.checked_add(len)?;
        if end > self.size() {
            return None;
        }
        if let Some(alignment) = self.disk.alignment() {
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

    /// The byte ranges of `segments`, without the empty ones; `None` when one is bad (too
    /// long, or off the disk), so that none is carried out.
    fn extents(&self, segments: &[Segment]) -> Option<Vec<Extent>> {
        let mut extents = Vec::with_capacity(segments.len());
        for segment in segments {
            if segment.num_sectors > MAX_DISCARD_SECTORS {
                return None;
            }
            let len = u64::from(segment.num_sectors) * SECTOR_SIZE;
            let offset = self.checked_range(segment.sector, len)?;
            if len > 0 {
                extents.push(Extent {
                    offset,
                    len,
                    may_unmap: segment.unmap,
                });
            }
        }
        Some(extents)
    }

    /// Logs a disk failure (the 1st, 2nd, 4th, 8th... so a failing disk cannot flood
    /// the log) and answers IOERR. An NBD export's failures are not logged here: its client
    /// logs why its requests fail (an error answer, no answer within `nbd-timeout`).
    pub(crate) fn io_failed(&self, what: &str, err: std::io::Error) -> Completion {
        if self.nbd().is_some() {
            return Completion::status(Status::IoErr);
        }
        let count = self.io_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if count.is_power_of_two() {
            log::warn!(
                "{what} on {} failed: {err} ({count} backing I/O error{} so far)",
                self.disk.describe(),
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

    fn handle(&self, queue: u16, memory: &Arc<Memory>, chain: Chain) -> u32 {
        let counters = self.counters(queue);
        let started = Instant::now();
        counters.started();
        let Some(parsed) = request::parse(memory, chain, LIMITS) else {
            // Nowhere to put a status: the request cannot be answered.
            log::debug!("queue {queue}: a chain without a status byte");
            counters.finished(Kind::Other, 0, Status::IoErr, started.elapsed());
            return 0;
        };
        let (kind, bytes) = parsed.request.as_ref().map_or((Kind::Other, 0), Kind::of);
        let completion = match parsed.request.map(|request| self.prepare(request)) {
            Ok(Prepared::Answer(completion)) => completion,
            Ok(Prepared::Disk { operation, written }) => {
                let what = operation.name();
                self.completion(what, written, self.disk.execute(operation))
            }
            Err(malformed) => {
                log::debug!("queue {queue}: malformed request: {malformed:?}");
                Completion::status(Status::IoErr)
            }
        };
        counters.finished(kind, bytes, completion.status, started.elapsed());
        answer(memory, parsed.status_addr, completion)
    }

    fn engine(self: Arc<Self>, queue: u16, size: u16) -> Option<Box<dyn QueueEngine>> {
        let disk_queue = self.disk.queue(self.io_engine, queue, size)?;
        Some(Box::new(queue::BlockQueue::new(
            self, queue, disk_queue, size,
        )))
    }
}

/// The limits the parser enforces.
pub(crate) const LIMITS: ParseLimits = ParseLimits {
    max_discard_segments: MAX_DISCARD_SEGMENTS,
    max_write_zeroes_segments: MAX_DISCARD_SEGMENTS,
};

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
