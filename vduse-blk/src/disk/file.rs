//! [`FileDisk`]: a regular file or a block device on this host that holds the disk's data
//! (the configuration's `backing`), opened and sized as its [`FileDiskOptions`] say, with
//! synchronous positional I/O straight into and out of guest memory. This is the `sync`
//! executor; the thread pool ([`super::threads`]) and io_uring ([`super::uring`]) build on
//! it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::FallocateFlags;
use rustix::io::Errno;
use rustix::ioctl::{Getter, Opcode, Setter, ioctl};

use serde::{Deserialize, Serialize};
use vduse_kit::config::ByteSize;

use super::{Extent, Operation};
use crate::guest::{GuestData, IOV_MAX};

/// `BLKGETSIZE64`: `_IOR(0x12, 114, size_t)`, the size of a block device in bytes.
const BLKGETSIZE64: Opcode = rustix::ioctl::opcode::read::<usize>(0x12, 114);
/// `BLKDISCARD`: `_IO(0x12, 119)`, takes `u64[2]` (offset, length in bytes).
const BLKDISCARD: Opcode = rustix::ioctl::opcode::none(0x12, 119);

/// Largest piece a bounce buffer or a run of zeros is written in, so that a huge request
/// never becomes a huge allocation.
const CHUNK_SIZE: usize = 1 << 20;

/// What the file disk is opened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A block device.
    BlockDevice,
}

/// How to open a file disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiskOptions {
    /// The file or block device.
    pub path: PathBuf,
    /// Size the disk should have; `None` means the backing's size.
    pub size: Option<u64>,
    /// Create a missing file and extend a short one to `size`.
    pub create: bool,
    /// Open read-only.
    pub read_only: bool,
    /// Page cache or O_DIRECT.
    pub cache: CacheMode,
    /// The disk's logical block size: the size must be a multiple of it, and with O_DIRECT
    /// it is the alignment of every transfer.
    pub logical_block_size: u32,
}

/// How writes reach the backing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Through the host's page cache; FLUSH makes them durable.
    Writeback,
    /// With O_DIRECT, bypassing the page cache; FLUSH still makes them durable.
    None,
}

impl CacheMode {
    /// The word the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            CacheMode::Writeback => "writeback",
            CacheMode::None => "none",
        }
    }
}

/// Why the backing cannot be used. Every variant but [`FileDiskError::Io`] is a
/// configuration problem and says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum FileDiskError {
    /// The path does not exist.
    #[error(
        "the backing file {} does not exist: create it (for example `truncate -s 1G {}`), \
         or set `create: true` and a `size`", path.display(), path.display()
    )]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The directory that should hold a new backing file does not exist.
    #[error(
        "cannot create the backing file {}: its directory does not exist; create the \
         directory first", path.display()
    )]
    NoDirectory {
        /// The path.
        path: PathBuf,
    },
    /// This user may not open it as needed.
    #[error(
        "permission denied opening the backing {} for {}: give this user access to it{}",
        path.display(),
        if *read_only { "reading" } else { "reading and writing" },
        if *read_only { "" } else { ", or set `read-only: true`" }
    )]
    PermissionDenied {
        /// The path.
        path: PathBuf,
        /// Whether it was opened read-only.
        read_only: bool,
    },
    /// It is on a read-only filesystem or a read-only block device.
    #[error(
        "the backing {} cannot be written (read-only filesystem or device): set `read-only: true`",
        path.display()
    )]
    ReadOnlyMedium {
        /// The path.
        path: PathBuf,
    },
    /// It is neither a regular file nor a block device.
    #[error("the backing {} is {what}, not a regular file or a block device", path.display())]
    NotFileOrBlockDevice {
        /// The path.
        path: PathBuf,
        /// What it is.
        what: &'static str,
    },
    /// Another program holds the block device exclusively.
    #[error("the backing {} is in use (mounted or held exclusively by another program)", path.display())]
    Busy {
        /// The path.
        path: PathBuf,
    },
    /// O_DIRECT is not available there.
    #[error(
        "`cache: none` needs O_DIRECT, which the filesystem holding {} does not support: \
         use `cache: writeback`", path.display()
    )]
    DirectIoUnsupported {
        /// The path.
        path: PathBuf,
    },
    /// O_DIRECT needs a larger alignment than the logical block size.
    #[error(
        "`cache: none` with logical-block-size {logical_block_size}: {} rejects direct I/O of \
         {logical_block_size} bytes; set `logical-block-size: 4096` or `cache: writeback`",
        path.display()
    )]
    DirectIoAlignment {
        /// The path.
        path: PathBuf,
        /// The configured logical block size.
        logical_block_size: u32,
    },
    /// The block device's own logical block size is larger than the configured one.
    #[error(
        "{} has {device_block_size}-byte logical blocks, so `cache: none` cannot serve \
         {logical_block_size}-byte blocks: set `logical-block-size: {device_block_size}` or \
         `cache: writeback`", path.display()
    )]
    BlockSizeBelowDevice {
        /// The path.
        path: PathBuf,
        /// The configured logical block size.
        logical_block_size: u32,
        /// The device's.
        device_block_size: u32,
    },
    /// The configured size is larger than the block device.
    #[error(
        "size {} is larger than the block device {} ({} bytes): lower `size` or leave it out",
        ByteSize(*size), path.display(), available
    )]
    LargerThanDevice {
        /// The path.
        path: PathBuf,
        /// The configured size.
        size: u64,
        /// The device's size.
        available: u64,
    },
    /// The configured size is larger than the file and extending it was not asked for.
    #[error(
        "size {} is larger than the backing file {} ({} bytes): set `create: true` to extend \
         the file, or lower `size`", ByteSize(*size), path.display(), available
    )]
    LargerThanFile {
        /// The path.
        path: PathBuf,
        /// The configured size.
        size: u64,
        /// The file's size.
        available: u64,
    },
    /// The backing is empty and no size was given.
    #[error(
        "the backing {} is empty: give a `size` and set `create: true` to extend it",
        path.display()
    )]
    Empty {
        /// The path.
        path: PathBuf,
    },
    /// The backing's size is not a whole number of logical blocks.
    #[error(
        "the backing {} is {size} bytes, not a multiple of the logical block size \
         ({logical_block_size}): set `size: {usable}` to serve the whole blocks",
        path.display()
    )]
    NotWholeBlocks {
        /// The path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The logical block size.
        logical_block_size: u32,
        /// The largest size of whole blocks that fits.
        usable: u64,
    },
    /// Reading, writing or querying the backing failed.
    #[error("{op} {}: {error}", path.display())]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error (part of the message, so not also a `source`).
        error: io::Error,
    },
}

impl FileDiskError {
    /// True for failures of the backing's I/O, as opposed to configuration problems.
    pub fn is_io(&self) -> bool {
        matches!(self, FileDiskError::Io { .. })
    }
}

/// What checking the backing found, for `--check-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiskReport {
    /// File or block device (a file that does not exist yet counts as a file).
    pub kind: FileKind,
    /// The size the disk will have.
    pub size: u64,
    /// What serving would do to the backing first, if anything.
    pub pending: Option<&'static str>,
}

/// `statfs` magic numbers of the file systems that keep files in memory.
const TMPFS_MAGIC: u64 = 0x0102_1994;
const RAMFS_MAGIC: u64 = 0x8584_58f6;

/// A disk whose data is in a regular file or a block device on this host.
#[derive(Debug)]
pub struct FileDisk {
    file: File,
    path: PathBuf,
    kind: FileKind,
    size: u64,
    read_only: bool,
    /// With O_DIRECT, the alignment of every offset, length and memory buffer.
    direct_alignment: Option<usize>,
    /// The physical block size a block device reports.
    device_physical_block_size: Option<u32>,
    /// A file in memory (tmpfs, ramfs) used through the page cache: its I/O never waits
    /// for a device.
    memory_backed: bool,
}

impl FileDisk {
    /// Opens the backing as `options` say, creating or extending a file when asked.
    pub fn open(options: &FileDiskOptions) -> Result<FileDisk, FileDiskError> {
        Self::open_with(options, true)
    }

    /// Checks what [`FileDisk::open`] would do, without creating or extending anything.
    pub fn check(options: &FileDiskOptions) -> Result<FileDiskReport, FileDiskError> {
        let path = &options.path;
        let missing =
            matches!(std::fs::metadata(path), Err(err) if err.kind() == io::ErrorKind::NotFound);
        if missing && options.create {
            let parent = path
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(FileDiskError::NoDirectory { path: path.clone() });
            }
            return Ok(FileDiskReport {
                kind: FileKind::File,
                size: options.size.unwrap_or(0),
                pending: Some("would be created"),
            });
        }
        let backing = Self::open_with(options, false)?;
        let current_len = backing
            .file
            .metadata()
            .map_err(|error| FileDiskError::Io {
                op: "reading the size of",
                path: path.clone(),
                error,
            })?
            .len();
        let grows = backing.kind == FileKind::File && backing.size > current_len;
        Ok(FileDiskReport {
            kind: backing.kind,
            size: backing.size,
            pending: grows.then_some("would be extended"),
        })
    }

    /// Opens the backing; creates or extends a file only when `modify`.
    fn open_with(options: &FileDiskOptions, modify: bool) -> Result<FileDisk, FileDiskError> {
        let path = &options.path;
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => Some(metadata),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => return Err(open_error(path, options, err)),
        };
        if let Some(metadata) = &metadata {
            check_file_type(path, metadata)?;
        }
        let is_block_device = metadata
            .as_ref()
            .is_some_and(|m| m.file_type().is_block_device());
        if metadata.is_none() && !(options.create && modify) {
            return Err(FileDiskError::NotFound { path: path.clone() });
        }

        let mut open_options = OpenOptions::new();
        open_options.read(true).write(!options.read_only);
        if options.create && modify && !is_block_device {
            // A new disk image's contents are nobody else's business.
            open_options.create(true).mode(0o600);
        }
        if options.cache == CacheMode::None {
            open_options.custom_flags(libc::O_DIRECT);
        }
        let file = open_options
            .open(path)
            .map_err(|err| open_error(path, options, err))?;
        let io_error = |op: &'static str| {
            let path = path.clone();
            move |error: io::Error| FileDiskError::Io { op, path, error }
        };

        let (kind, available, device_block_sizes) = if is_block_device {
            let size = block_device_size(&file).map_err(io_error("reading the size of"))?;
            let logical = rustix::fs::ioctl_blksszget(&file)
                .map_err(|errno| io_error("querying the block sizes of")(errno.into()))?;
            let physical = rustix::fs::ioctl_blkpbszget(&file)
                .map_err(|errno| io_error("querying the block sizes of")(errno.into()))?;
            (FileKind::BlockDevice, size, Some((logical, physical)))
        } else {
            let size = file
                .metadata()
                .map_err(io_error("reading the size of"))?
                .len();
            (FileKind::File, size, None)
        };

        let size = resolve_size(path, options, kind, available)?;
        if modify && kind == FileKind::File && size > available {
            // resolve_size allows this only with `create`.
            file.set_len(size).map_err(io_error("extending"))?;
        }

        let lbs = options.logical_block_size;
        let direct_alignment = if options.cache == CacheMode::None {
            if let Some((device_lbs, _)) = device_block_sizes {
                if device_lbs > lbs {
                    return Err(FileDiskError::BlockSizeBelowDevice {
                        path: path.clone(),
                        logical_block_size: lbs,
                        device_block_size: device_lbs,
                    });
                }
            }
            probe_direct_io(&file, path, lbs)?;
            Some(lbs as usize)
        } else {
            None
        };

        let memory_backed = kind == FileKind::File
            && direct_alignment.is_none()
            && rustix::fs::fstatfs(&file).is_ok_and(|fs| {
                // The type is a signed or unsigned integer depending on the libc.
                #[allow(clippy::unnecessary_cast)]
                let magic = fs.f_type as u64;
                matches!(magic, TMPFS_MAGIC | RAMFS_MAGIC)
            });
        Ok(FileDisk {
            file,
            path: path.clone(),
            kind,
            size,
            read_only: options.read_only,
            direct_alignment,
            device_physical_block_size: device_block_sizes.map(|(_, physical)| physical),
            memory_backed,
        })
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// File or block device.
    pub fn kind(&self) -> FileKind {
        self.kind
    }

    /// Size of the disk in bytes: a whole number of logical blocks.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether it was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// With O_DIRECT, the alignment every transfer needs.
    pub fn direct_alignment(&self) -> Option<usize> {
        self.direct_alignment
    }

    /// The physical block size a block device reports.
    pub fn device_physical_block_size(&self) -> Option<u32> {
        self.device_physical_block_size
    }

    /// Whether it is a file in memory (tmpfs, ramfs) used through the page cache, whose
    /// reads and writes are memory copies that never wait for a device.
    pub fn is_memory_backed(&self) -> bool {
        self.memory_backed
    }

    /// Reads `data.len()` bytes at `offset` into `data`.
    pub fn read_into(&self, offset: u64, data: &GuestData) -> io::Result<()> {
        if self.needs_bounce(data) {
            let buffers = data.buffers();
            let alignment = self.direct_alignment.unwrap_or(1);
            let mut bounce = AlignedBuffer::new(buffers.len().min(CHUNK_SIZE), alignment);
            let mut done = 0;
            while done < buffers.len() {
                let chunk = bounce.bytes_mut((buffers.len() - done).min(CHUNK_SIZE));
                self.file.read_exact_at(chunk, offset + done as u64)?;
                buffers.write_at(done, chunk);
                done += chunk.len();
            }
            return Ok(());
        }
        self.transfer(offset, data, Direction::Read)
    }

    /// Writes `data` at `offset`.
    pub fn write_from(&self, offset: u64, data: &GuestData) -> io::Result<()> {
        if self.needs_bounce(data) {
            let buffers = data.buffers();
            let alignment = self.direct_alignment.unwrap_or(1);
            let mut bounce = AlignedBuffer::new(buffers.len().min(CHUNK_SIZE), alignment);
            let mut done = 0;
            while done < buffers.len() {
                let chunk = bounce.bytes_mut((buffers.len() - done).min(CHUNK_SIZE));
                buffers.read_at(done, chunk);
                self.file.write_all_at(chunk, offset + done as u64)?;
                done += chunk.len();
            }
            return Ok(());
        }
        self.transfer(offset, data, Direction::Write)
    }

    /// Makes completed writes durable.
    pub fn flush(&self) -> io::Result<()> {
        rustix::fs::fdatasync(&self.file)?;
        Ok(())
    }

    /// Deallocates `len` bytes at `offset` where the backing can; a backing that cannot is
    /// not an error (discard is a hint).
    pub fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        let result = match self.kind {
            FileKind::File => rustix::fs::fallocate(
                &self.file,
                FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                offset,
                len,
            ),
            FileKind::BlockDevice => {
                // SAFETY: BLKDISCARD reads a `u64[2]` (offset, length) from the pointer the
                // Setter passes; the array lives for the call.
                unsafe {
                    ioctl(
                        &self.file,
                        Setter::<BLKDISCARD, [u64; 2]>::new([offset, len]),
                    )
                }
            }
        };
        match result {
            Err(Errno::OPNOTSUPP) => Ok(()),
            other => Ok(other?),
        }
    }

    /// Makes `len` bytes at `offset` read as zeros, deallocating them when `may_unmap`
    /// and the backing can.
    pub fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> io::Result<()> {
        // Both a file and a block device (since Linux 4.9) guarantee zeros after these.
        let punch = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        let zero = FallocateFlags::ZERO_RANGE | FallocateFlags::KEEP_SIZE;
        let attempts = if may_unmap {
            &[punch, zero][..]
        } else {
            &[zero][..]
        };
        for &mode in attempts {
            match rustix::fs::fallocate(&self.file, mode, offset, len) {
                Ok(()) => return Ok(()),
                // Not supported here, or not for this alignment: try the next way.
                Err(Errno::OPNOTSUPP | Errno::INVAL | Errno::NOTTY | Errno::NODEV) => {}
                Err(err) => return Err(err.into()),
            }
        }
        let alignment = self.direct_alignment.unwrap_or(1);
        let chunk = usize::try_from(len).unwrap_or(usize::MAX).min(CHUNK_SIZE);
        let mut zeros = AlignedBuffer::new(chunk, alignment);
        let mut done = 0u64;
        while done < len {
            let piece = zeros.bytes_mut(
                usize::try_from(len - done)
                    .unwrap_or(usize::MAX)
                    .min(CHUNK_SIZE),
            );
            self.file.write_all_at(piece, offset + done)?;
            done += piece.len() as u64;
        }
        Ok(())
    }

    /// Carries out `operation` and waits for it (a discard or write zeroes range by range,
    /// stopping at the first failure).
    pub fn execute(&self, operation: &Operation) -> io::Result<()> {
        match operation {
            Operation::Read { offset, data } => self.read_into(*offset, data),
            Operation::Write { offset, data } => self.write_from(*offset, data),
            Operation::Flush => self.flush(),
            Operation::Discard { extents } => extents
                .iter()
                .try_for_each(|extent: &Extent| self.discard(extent.offset, extent.len)),
            Operation::WriteZeroes { extents } => extents.iter().try_for_each(|extent| {
                self.write_zeroes(extent.offset, extent.len, extent.may_unmap)
            }),
        }
    }

    /// The open file or block device.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Whether O_DIRECT forces a bounce buffer: guest memory that is not aligned.
    pub(crate) fn needs_bounce(&self, data: &GuestData) -> bool {
        self.direct_alignment
            .is_some_and(|alignment| !data.is_aligned(alignment))
    }

    /// `preadv`/`pwritev` straight between the backing and guest memory, until every byte
    /// has moved.
    fn transfer(&self, offset: u64, data: &GuestData, direction: Direction) -> io::Result<()> {
        let mut done = 0usize;
        while done < data.len() {
            // The request's own iovecs the first time (no copy); after a short transfer
            // or beyond IOV_MAX, those of the bytes still to move.
            let rest;
            let iovecs = if done == 0 && data.iovecs().len() <= IOV_MAX {
                data.iovecs()
            } else {
                rest = crate::guest::range(data.iovecs(), done, data.len() - done);
                &rest[..rest.len().min(IOV_MAX)]
            };
            let position = offset
                .checked_add(done as u64)
                .and_then(|position| libc::off_t::try_from(position).ok())
                .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
            let count = iovecs.len() as libc::c_int;
            let moved = match direction {
                // SAFETY: every iovec points into guest memory mapped for as long as
                // `data` lives (it holds the memory snapshot); the kernel writes at most
                // each iovec's length.
                Direction::Read => unsafe {
                    libc::preadv(self.file.as_raw_fd(), iovecs.as_ptr(), count, position)
                },
                // SAFETY: as above; the kernel only reads the iovecs' memory.
                Direction::Write => unsafe {
                    libc::pwritev(self.file.as_raw_fd(), iovecs.as_ptr(), count, position)
                },
            };
            match moved {
                -1 => {
                    let err = io::Error::last_os_error();
                    if err.kind() != io::ErrorKind::Interrupted {
                        return Err(err);
                    }
                }
                0 => {
                    return Err(match direction {
                        Direction::Read => io::ErrorKind::UnexpectedEof.into(),
                        Direction::Write => io::ErrorKind::WriteZero.into(),
                    });
                }
                moved => done += moved as usize,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Read,
    Write,
}

/// A heap buffer whose start is aligned, for O_DIRECT; made without unsafe code by
/// over-allocating and starting at the first aligned byte.
struct AlignedBuffer {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuffer {
    /// `len` zeroed bytes starting at a multiple of `alignment` (a power of two).
    fn new(len: usize, alignment: usize) -> Self {
        let storage = vec![0u8; len + alignment];
        let start = storage.as_ptr().align_offset(alignment);
        Self {
            storage,
            start,
            len,
        }
    }

    /// The first `len` bytes (at most the buffer's length).
    fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        let len = len.min(self.len);
        &mut self.storage[self.start..self.start + len]
    }
}

/// The size of a block device.
fn block_device_size(file: &File) -> io::Result<u64> {
    // SAFETY: BLKGETSIZE64 writes one u64 to the pointer the Getter passes.
    Ok(unsafe { ioctl(file, Getter::<BLKGETSIZE64, u64>::new()) }?)
}

/// Rejects what cannot back a disk, before opening it (opening a FIFO would block).
fn check_file_type(path: &Path, metadata: &std::fs::Metadata) -> Result<(), FileDiskError> {
    let file_type = metadata.file_type();
    let what = if file_type.is_file() || file_type.is_block_device() {
        return Ok(());
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(FileDiskError::NotFileOrBlockDevice {
        path: path.to_owned(),
        what,
    })
}

/// The disk's size from the configured size and what the backing has.
fn resolve_size(
    path: &Path,
    options: &FileDiskOptions,
    kind: FileKind,
    available: u64,
) -> Result<u64, FileDiskError> {
    let lbs = u64::from(options.logical_block_size);
    let size = match (options.size, kind) {
        (Some(size), FileKind::BlockDevice) if size > available => {
            return Err(FileDiskError::LargerThanDevice {
                path: path.to_owned(),
                size,
                available,
            });
        }
        (Some(size), FileKind::File) if size > available && !options.create => {
            return Err(FileDiskError::LargerThanFile {
                path: path.to_owned(),
                size,
                available,
            });
        }
        (Some(size), _) => size,
        (None, _) => available,
    };
    if size == 0 {
        return Err(FileDiskError::Empty {
            path: path.to_owned(),
        });
    }
    if size % lbs != 0 {
        let usable = size - size % lbs;
        if usable == 0 {
            return Err(FileDiskError::Empty {
                path: path.to_owned(),
            });
        }
        return Err(FileDiskError::NotWholeBlocks {
            path: path.to_owned(),
            size,
            logical_block_size: options.logical_block_size,
            usable,
        });
    }
    Ok(size)
}

/// One aligned O_DIRECT read, so that an alignment the filesystem rejects is found now
/// rather than by the guest's first request.
fn probe_direct_io(file: &File, path: &Path, logical_block_size: u32) -> Result<(), FileDiskError> {
    let mut buffer = AlignedBuffer::new(logical_block_size as usize, logical_block_size as usize);
    match file.read_at(buffer.bytes_mut(logical_block_size as usize), 0) {
        Ok(_) => Ok(()),
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
            Err(FileDiskError::DirectIoAlignment {
                path: path.to_owned(),
                logical_block_size,
            })
        }
        Err(error) => Err(FileDiskError::Io {
            op: "reading",
            path: path.to_owned(),
            error,
        }),
    }
}

/// Turns a failed `open` into the error that says what to do.
fn open_error(path: &Path, options: &FileDiskOptions, err: io::Error) -> FileDiskError {
    let path = path.to_owned();
    match err.raw_os_error() {
        Some(libc::ENOENT) if options.create => FileDiskError::NoDirectory { path },
        Some(libc::ENOENT) => FileDiskError::NotFound { path },
        Some(libc::EACCES | libc::EPERM) => FileDiskError::PermissionDenied {
            path,
            read_only: options.read_only,
        },
        Some(libc::EROFS) => FileDiskError::ReadOnlyMedium { path },
        Some(libc::EISDIR) => FileDiskError::NotFileOrBlockDevice {
            path,
            what: "a directory",
        },
        Some(libc::EBUSY) => FileDiskError::Busy { path },
        Some(libc::EINVAL) if options.cache == CacheMode::None => {
            FileDiskError::DirectIoUnsupported { path }
        }
        _ => FileDiskError::Io {
            op: "opening",
            path,
            error: err,
        },
    }
}
