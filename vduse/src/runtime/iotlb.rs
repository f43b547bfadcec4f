//! The device's IOTLB as vm-memory guest memory, addressed by IOVA.
//!
//! The kernel keeps one IOTLB per address space: with `virtio_vdpa` its bounce region
//! (IOVA 0 to `bounce_size`, created at the driver's first DMA mapping) and one region per
//! coherent allocation (the rings); with `vhost_vdpa`, the user's memory. Each region is a
//! file and an offset; `VDUSE_IOTLB_GET_FD` hands out the first region overlapping a range.
//! [`IotlbMemory::refresh`] walks the whole IOVA space, mmaps every region (keeping the
//! mappings of regions that did not change) and publishes the result to the queue workers
//! through a [`GuestMemoryAtomic`], so a worker holds a consistent snapshot for a batch.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};

use vm_memory::{
    FileOffset, GuestAddress, GuestAddressSpace, GuestMemory, GuestMemoryAtomic, GuestMemoryRegion,
    GuestRegionMmap, MmapRegion,
};

use super::device_io::{DeviceIo, IotlbEntry};
use crate::backend::Memory;
use crate::error::{Error, Result};
use crate::uapi::{VDUSE_ACCESS_RO, VDUSE_ACCESS_RW, VDUSE_ACCESS_WO};

/// More regions than any IOTLB holds (the kernel's default cap is 2048): a walk that gets
/// this far is going round in circles.
const MAX_REGIONS: usize = 65536;

/// Where guest memory comes from, for the queue workers: a snapshot per batch, and a way
/// to pick up regions the kernel added without telling the device.
pub(crate) trait MemorySource: Send + Sync {
    /// The current memory.
    fn snapshot(&self) -> Arc<Memory>;
    /// Maps what the IOTLB holds now, after an address was not found. True when the memory
    /// changed.
    fn refresh_after_miss(&self) -> bool;
}

/// Identifies the file behind a region, so that regions of one file share one fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileKey {
    dev: u64,
    ino: u64,
    /// The kernel opens the fd with the region's access mode; a writable mapping needs a
    /// writable fd.
    writable: bool,
}

#[derive(Debug, Clone)]
struct MappedRegion {
    entry: IotlbEntry,
    file: FileKey,
    region: Arc<GuestRegionMmap<()>>,
}

/// The IOTLB of one address space, mapped.
#[derive(Debug)]
pub(crate) struct IotlbMemory {
    dev: Arc<dyn DeviceIo>,
    /// `Some(asid)` with API version 1 (`VDUSE_IOTLB_GET_FD2`), `None` with version 0.
    asid: Option<u32>,
    memory: GuestMemoryAtomic<Memory>,
    /// What `memory` holds, with the IOTLB entry each region came from. Its lock also keeps
    /// two refreshes from interleaving.
    mapped: Mutex<Vec<MappedRegion>>,
}

impl IotlbMemory {
    /// An empty map of address space `asid` (`None`: API version 0).
    pub fn new(dev: Arc<dyn DeviceIo>, asid: Option<u32>) -> Self {
        Self {
            dev,
            asid,
            memory: GuestMemoryAtomic::new(Memory::new()),
            mapped: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<MappedRegion>> {
        self.mapped.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Walks the IOTLB and publishes what it holds now. Returns the number of regions.
    pub fn refresh(&self) -> Result<usize> {
        let mut mapped = self.lock();
        let found = without_overlaps(self.walk()?);
        let mut files: Vec<(FileKey, Arc<File>)> = mapped
            .iter()
            .filter_map(|m| Some((m.file, m.region.file_offset()?.arc().clone())))
            .collect();
        let starts: Vec<u64> = found.iter().map(|(e, _)| e.start).collect();
        let mut next = Vec::with_capacity(found.len());
        // Each fd the walk returned closes at the end of its iteration unless it becomes
        // the one fd kept for its file.
        for (i, (entry, fd)) in found.into_iter().enumerate() {
            let file = match file_key(&fd, entry.perm) {
                Ok(key) => key,
                Err(error) => {
                    log::warn!("IOTLB region {}: {error}", describe(&entry));
                    continue;
                }
            };
            // Same region of the same file: keep its mapping.
            if let Some(old) = mapped.iter().find(|m| m.entry == entry && m.file == file) {
                next.push(old.clone());
                continue;
            }
            let shared = match files.iter().find(|(key, _)| *key == file) {
                Some((_, shared)) => shared.clone(),
                None => {
                    let owned = Arc::new(File::from(fd));
                    files.push((file, owned.clone()));
                    owned
                }
            };
            match map_region(&entry, starts.get(i + 1).copied(), shared) {
                Ok(region) => next.push(MappedRegion {
                    entry,
                    file,
                    region: Arc::new(region),
                }),
                Err(problem) => log::warn!("IOTLB region {}: {problem}", describe(&entry)),
            }
        }
        self.publish(&mut mapped, next)?;
        log::debug!(
            "IOTLB mapped: {}",
            mapped
                .iter()
                .map(|m| describe(&m.entry))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(mapped.len())
    }

    /// Drops every mapping (device reset: the kernel frees what they map).
    pub fn clear(&self) {
        let mut mapped = self.lock();
        // An empty list always builds.
        let _ = self.publish(&mut mapped, Vec::new());
    }

    /// Whether a mapped region overlaps `[start, last]`.
    pub fn touches(&self, start: u64, last: u64) -> bool {
        self.lock()
            .iter()
            .any(|m| m.entry.start <= last && start <= m.entry.last)
    }

    /// Number of mapped regions.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn publish(&self, mapped: &mut Vec<MappedRegion>, next: Vec<MappedRegion>) -> Result<()> {
        let memory = if next.is_empty() {
            Memory::new()
        } else {
            Memory::from_arc_regions(next.iter().map(|m| m.region.clone()).collect()).map_err(
                |error| Error::Io {
                    op: "building guest memory from the IOTLB".into(),
                    source: std::io::Error::other(error.to_string()),
                },
            )?
        };
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(memory);
        *mapped = next;
        Ok(())
    }

    /// Every region of the IOVA space, in the kernel's order (lowest start first).
    fn walk(&self) -> Result<Vec<(IotlbEntry, OwnedFd)>> {
        let mut found = Vec::new();
        let mut start = 0u64;
        while let Some((entry, fd)) = self.dev.iotlb_fd(self.asid, start, u64::MAX)? {
            let last = entry.last;
            found.push((entry, fd));
            if last < start || last == u64::MAX || found.len() >= MAX_REGIONS {
                break;
            }
            start = last + 1;
        }
        Ok(found)
    }
}

impl MemorySource for IotlbMemory {
    fn snapshot(&self) -> Arc<Memory> {
        self.memory.memory().into_inner()
    }

    fn refresh_after_miss(&self) -> bool {
        let before = self.snapshot();
        match self.refresh() {
            Ok(_) => !same_regions(&before, &self.snapshot()),
            Err(error) => {
                log::warn!("remapping the IOTLB after a miss: {error}");
                false
            }
        }
    }
}

/// Whether two memories are made of the very same mappings.
fn same_regions(a: &Memory, b: &Memory) -> bool {
    a.iter().count() == b.iter().count()
        && a.iter()
            .zip(b.iter())
            .all(|(x, y)| x.as_ptr() == y.as_ptr() && x.len() == y.len())
}

fn describe(entry: &IotlbEntry) -> String {
    format!(
        "{:#x}-{:#x} (offset {:#x}, perm {})",
        entry.start, entry.last, entry.offset, entry.perm
    )
}

fn file_key(fd: &OwnedFd, perm: u8) -> std::result::Result<FileKey, String> {
    let stat = rustix::fs::fstat(fd).map_err(|errno| format!("fstat: {errno}"))?;
    Ok(FileKey {
        dev: stat.st_dev,
        ino: stat.st_ino,
        writable: perm & VDUSE_ACCESS_WO != 0,
    })
}

/// Sorts the regions by start and drops each one that overlaps one before it: vm-memory
/// regions must not overlap, and the kernel's IOTLB does not promise they don't.
pub(crate) fn without_overlaps<T>(mut entries: Vec<(IotlbEntry, T)>) -> Vec<(IotlbEntry, T)> {
    entries.sort_by_key(|(e, _)| e.start);
    let mut kept: Vec<(IotlbEntry, T)> = Vec::with_capacity(entries.len());
    for (entry, value) in entries {
        if entry.last < entry.start {
            continue;
        }
        if let Some((previous, _)) = kept.last() {
            if entry.start <= previous.last {
                log::warn!(
                    "IOTLB region {} overlaps {}: left unmapped",
                    describe(&entry),
                    describe(previous)
                );
                continue;
            }
        }
        kept.push((entry, value));
    }
    kept
}

/// How many bytes to map for `entry`: its length rounded up to whole pages (the kernel
/// maps whole pages, and a ring that ends a region exactly fails virtio-queue's
/// one-past-the-end check), but never into the next region.
pub(crate) fn mapped_len(entry: &IotlbEntry, next_start: Option<u64>, page: u64) -> u64 {
    let len = (entry.last - entry.start).saturating_add(1);
    let rounded = len.checked_next_multiple_of(page).unwrap_or(len);
    match next_start {
        Some(next) if next > entry.start => rounded.min(next - entry.start).max(len),
        _ => rounded,
    }
}

fn map_region(
    entry: &IotlbEntry,
    next_start: Option<u64>,
    file: Arc<File>,
) -> std::result::Result<GuestRegionMmap<()>, String> {
    let page = rustix::param::page_size() as u64;
    if entry.offset % page != 0 {
        return Err("its file offset is not page-aligned".into());
    }
    let len = usize::try_from(mapped_len(entry, next_start, page))
        .map_err(|_| "too large to map".to_string())?;
    let (prot, flags) = match entry.perm {
        VDUSE_ACCESS_RW => (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED),
        // The fd is read-only, so a shared mapping cannot be writable; a private writable
        // one keeps a stray device write from crashing the server (the driver never sees
        // it, as it must not).
        VDUSE_ACCESS_RO => (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE),
        VDUSE_ACCESS_WO => {
            return Err("write-only regions cannot be mapped (mmap needs a readable fd)".into());
        }
        other => return Err(format!("unknown access {other}")),
    };
    let mapping = MmapRegion::<()>::build(
        Some(FileOffset::from_arc(file, entry.offset)),
        len,
        prot,
        flags | libc::MAP_NORESERVE,
    )
    .map_err(|error| format!("mmap: {error}"))?;
    GuestRegionMmap::new(mapping, GuestAddress(entry.start))
        .ok_or_else(|| "it runs past the end of the IOVA space".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake_device::FakeDevice;
    use vm_memory::{Bytes, GuestMemory};

    fn entry(start: u64, last: u64) -> IotlbEntry {
        IotlbEntry {
            start,
            last,
            offset: start,
            perm: VDUSE_ACCESS_RW,
        }
    }

    #[test]
    fn overlapping_regions_are_dropped_and_the_rest_sorted() {
        let entries = vec![
            (entry(0x3000, 0x3fff), 'c'),
            (entry(0x0, 0x1fff), 'a'),
            (entry(0x1000, 0x2fff), 'x'), // overlaps a
            (entry(0x2000, 0x2fff), 'b'),
            (entry(0x3fff, 0x4fff), 'y'), // overlaps c by one byte
            (entry(0x9000, 0x8000), 'z'), // empty
        ];
        let kept: Vec<char> = without_overlaps(entries).into_iter().map(|e| e.1).collect();
        assert_eq!(kept, ['a', 'b', 'c']);
    }

    #[test]
    fn mapped_length_rounds_to_pages_but_not_into_the_next_region() {
        let page = 4096;
        // A ring of 0x2806 bytes: rounded up to three pages.
        assert_eq!(
            mapped_len(&entry(0x4000_0000, 0x4000_2805), None, page),
            0x3000
        );
        assert_eq!(
            mapped_len(&entry(0x4000_0000, 0x4000_2805), Some(0x4000_3000), page),
            0x3000
        );
        // A next region closer than the rounded end cuts it short, never below the region.
        assert_eq!(
            mapped_len(&entry(0x4000_0000, 0x4000_2805), Some(0x4000_2900), page),
            0x2900
        );
        assert_eq!(mapped_len(&entry(0, 0x3ff_ffff), None, page), 0x400_0000);
        assert_eq!(mapped_len(&entry(0, u64::MAX - 1), None, page), u64::MAX);
        assert_eq!(mapped_len(&entry(0, u64::MAX), None, page), u64::MAX);
    }

    #[test]
    fn refresh_maps_every_region_and_keeps_unchanged_ones() {
        let fake = Arc::new(FakeDevice::new(1, 0x10_0000));
        fake.set_regions(&[entry(0, 0xffff), entry(0x2_0000, 0x2_0805)]);
        let iotlb = IotlbMemory::new(fake.clone(), Some(0));
        assert_eq!(iotlb.refresh().unwrap(), 2);
        let first = iotlb.snapshot();
        // Through the fake's memfd, what one side writes the other reads.
        first
            .write_obj(0x1234_5678u32, GuestAddress(0x2_0800))
            .unwrap();
        assert_eq!(fake.read_u32(0x2_0800), 0x1234_5678);
        // The ring region was rounded up to a page.
        assert!(first.check_range(GuestAddress(0x2_0000), 0x1000));
        assert!(!first.address_in_range(GuestAddress(0x1_0000)));
        assert!(iotlb.touches(0x2_0805, 0x2_0805) && !iotlb.touches(0x1_0000, 0x1_ffff));

        // A region appears (the bounce region, say): the old mappings stay as they were.
        fake.set_regions(&[
            entry(0, 0xffff),
            entry(0x1_0000, 0x1_ffff),
            entry(0x2_0000, 0x2_0805),
        ]);
        assert!(iotlb.refresh_after_miss());
        let second = iotlb.snapshot();
        assert_eq!(second.num_regions(), 3);
        let base = |m: &Memory, a: u64| m.find_region(GuestAddress(a)).unwrap().as_ptr();
        assert_eq!(base(&first, 0), base(&second, 0));
        assert_eq!(base(&first, 0x2_0000), base(&second, 0x2_0000));
        // Nothing changed: a miss refresh says so.
        assert!(!iotlb.refresh_after_miss());
        // Each walk went on after each region until the kernel had none left.
        assert_eq!(fake.iotlb_calls(), 3 + 4 + 4);

        iotlb.clear();
        assert_eq!(iotlb.len(), 0);
        assert_eq!(iotlb.snapshot().num_regions(), 0);
    }

    #[test]
    fn read_only_regions_are_mapped_privately_and_write_only_ones_skipped() {
        let fake = Arc::new(FakeDevice::new(1, 0x10_0000));
        fake.write_u32(0x1000, 7);
        let ro = IotlbEntry {
            perm: VDUSE_ACCESS_RO,
            ..entry(0, 0xfff)
        };
        let wo = IotlbEntry {
            perm: VDUSE_ACCESS_WO,
            ..entry(0x1_0000, 0x1_0fff)
        };
        let ro2 = IotlbEntry {
            perm: VDUSE_ACCESS_RO,
            ..entry(0x1000, 0x1fff)
        };
        fake.set_regions(&[ro, wo, ro2]);
        let iotlb = IotlbMemory::new(fake.clone(), None);
        assert_eq!(iotlb.refresh().unwrap(), 2);
        let memory = iotlb.snapshot();
        assert_eq!(memory.read_obj::<u32>(GuestAddress(0x1000)).unwrap(), 7);
        // A write does not fault and does not reach the driver's memory.
        memory.write_obj(9u32, GuestAddress(0x1000)).unwrap();
        assert_eq!(fake.read_u32(0x1000), 7);
        assert!(!memory.address_in_range(GuestAddress(0x1_0000)));
    }
}
