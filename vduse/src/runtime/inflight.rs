//! The in-flight log: which requests each queue has taken from its available ring and not
//! yet put in its used ring, kept in a shared file mapping so that it outlives the server.
//!
//! A server killed with requests in flight leaves them unanswered, and the driver waits
//! for them for good. The server started next for the same device reads this log, runs
//! those requests again (oldest first) and goes on from where the rings stand. Running a
//! block request twice is harmless: the driver owns its buffers until the answer comes.
//!
//! # The protocol, per queue
//!
//! - A chain taken from the available ring is marked with the next value of a counter
//!   before it is served (`started`). Chains are taken in ring order, so a crash can
//!   only leave the newest unmarked, and the recovery below takes it from the ring again.
//! - Answers go into the used ring as a batch: the log first records the used-ring range
//!   the batch fills (`publishing`), then the runtime writes the elements and the used
//!   index, then the marks are cleared and the range dropped (`published`).
//! - Recovery: a range still recorded whose end is the ring's used index was published,
//!   so its heads (read from the used ring) are cleared; otherwise it was not, and its
//!   requests run again. The next available index is then the used index plus the number
//!   still marked, as every chain taken is either answered or marked.
//!
//! Every store is atomic with release ordering, so a later store is never seen without
//! the earlier ones: a process killed between two of them leaves the first.
//!
//! # The file
//!
//! A header (magic, version, queue count and size, the hashes of the configuration's
//! [`Identity`]), then one 64-byte-aligned block per queue: the recorded range, the
//! counter, and one u64 mark per descriptor head (0: not in flight).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use vm_memory::{Bytes, MemoryRegionAddress};

use crate::error::{Error, Result};
use crate::mapped_file::{FilePlace, MappedFile, Removal};

const MAGIC: u64 = u64::from_le_bytes(*b"VDUSEIFL");
const VERSION: u32 = 1;
const HEADER_LEN: u64 = 256;

// Header fields.
const NUM_QUEUES_AT: u64 = 12;
const QUEUE_SIZE_AT: u64 = 14;
const ITEM_COUNT_AT: u64 = 16;
/// Identity items: (hash of the name, hash of the value), 16 bytes each.
const ITEMS_AT: u64 = 32;
/// Most identity items a log holds.
pub const MAX_IDENTITY_ITEMS: usize = ((HEADER_LEN - ITEMS_AT) / 16) as usize;

// Queue block fields, from the block's start.
const RANGE_ACTIVE_AT: u64 = 0;
const RANGE_START_AT: u64 = 2;
const RANGE_END_AT: u64 = 4;
const COUNTER_AT: u64 = 8;
const MARKS_AT: u64 = 32;

/// A 64-bit FNV-1a hash.
fn hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// What must be the same for a server to take a device over: named values (device type,
/// features, config space, a disk's backing...), kept in the log's header as hashes, so
/// that a refusal can say which differ.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    items: Vec<(String, u64)>,
}

impl Identity {
    /// Adds a named value (at most [`MAX_IDENTITY_ITEMS`] are kept).
    pub fn with(mut self, name: impl Into<String>, value: &[u8]) -> Self {
        if self.items.len() < MAX_IDENTITY_ITEMS {
            self.items.push((name.into(), hash(value)));
        }
        self
    }

    fn header(&self, num_queues: u16, queue_size: u16) -> Vec<u8> {
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(&MAGIC.to_le_bytes());
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&num_queues.to_le_bytes());
        header.extend_from_slice(&queue_size.to_le_bytes());
        header.extend_from_slice(&(self.items.len() as u16).to_le_bytes());
        header.resize(ITEMS_AT as usize, 0);
        for (name, value) in &self.items {
            header.extend_from_slice(&hash(name.as_bytes()).to_le_bytes());
            header.extend_from_slice(&value.to_le_bytes());
        }
        header.resize(HEADER_LEN as usize, 0);
        header
    }

    /// The names of what differs between this identity and a header's.
    fn differences(&self, header: &[u8], num_queues: u16, queue_size: u16) -> Vec<String> {
        let u16_at = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
        let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8"));
        let mut differences = Vec::new();
        if u16_at(NUM_QUEUES_AT as usize) != num_queues {
            differences.push(format!(
                "queues ({} there, {num_queues} here)",
                u16_at(NUM_QUEUES_AT as usize)
            ));
        }
        if u16_at(QUEUE_SIZE_AT as usize) != queue_size {
            differences.push(format!(
                "queue size ({} there, {queue_size} here)",
                u16_at(QUEUE_SIZE_AT as usize)
            ));
        }
        let count = usize::from(u16_at(ITEM_COUNT_AT as usize)).min(MAX_IDENTITY_ITEMS);
        let theirs: Vec<(u64, u64)> = (0..count)
            .map(|i| {
                let at = ITEMS_AT as usize + 16 * i;
                (u64_at(at), u64_at(at + 8))
            })
            .collect();
        for (name, value) in &self.items {
            match theirs.iter().find(|(n, _)| *n == hash(name.as_bytes())) {
                Some((_, v)) if v == value => {}
                _ => differences.push(name.clone()),
            }
        }
        if theirs.len() != self.items.len() && differences.is_empty() {
            differences.push("the kind of server".into());
        }
        differences
    }
}

/// The log file of one device, mapped.
#[derive(Debug, Clone)]
pub struct InflightLog {
    path: PathBuf,
    file: Arc<MappedFile>,
    num_queues: u16,
    queue_size: u16,
}

fn queue_block_len(queue_size: u16) -> u64 {
    (MARKS_AT + 8 * u64::from(queue_size)).next_multiple_of(64)
}

fn file_len(num_queues: u16, queue_size: u16) -> u64 {
    HEADER_LEN + u64::from(num_queues) * queue_block_len(queue_size)
}

impl InflightLog {
    /// Creates the log at `path` for a new device (replacing any file there), every queue
    /// empty, recording `identity`.
    pub fn create(
        path: &Path,
        identity: &Identity,
        num_queues: u16,
        queue_size: u16,
    ) -> Result<Self> {
        let io = |source| Error::Io {
            op: format!("creating the in-flight log {}", path.display()),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let file = FilePlace::locate(path)
            .and_then(|place| {
                MappedFile::create(
                    place,
                    &identity.header(num_queues, queue_size),
                    file_len(num_queues, queue_size),
                )
            })
            .map_err(io)?;
        Ok(Self::with(path, file, num_queues, queue_size))
    }

    /// Opens the log a previous server of the device left, checking it was made for the
    /// same configuration; the error names what differs.
    pub fn open(
        path: &Path,
        identity: &Identity,
        num_queues: u16,
        queue_size: u16,
    ) -> Result<Self> {
        let problem = |what: String| Error::Io {
            op: format!("reading the in-flight log {}", path.display()),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, what),
        };
        let opening = |source| Error::Io {
            op: format!("opening the in-flight log {}", path.display()),
            source,
        };
        let place = FilePlace::locate(path).map_err(opening)?;
        let bytes = place.read().map_err(opening)?;
        if bytes.is_empty() {
            return Err(problem(
                "it is empty: the server that wrote it ended and removed its device".into(),
            ));
        }
        let header = bytes.get(..HEADER_LEN as usize).unwrap_or(&[]);
        if header.len() < HEADER_LEN as usize
            || header[..8] != MAGIC.to_le_bytes()
            || header[8..12] != VERSION.to_le_bytes()
        {
            return Err(problem("it is not an in-flight log of this version".into()));
        }
        let differences = identity.differences(header, num_queues, queue_size);
        if !differences.is_empty() {
            return Err(problem(format!(
                "it was written by a server with another configuration: {} differ{}",
                differences.join(", "),
                if differences.len() == 1 { "s" } else { "" }
            )));
        }
        let len = bytes.len() as u64;
        if len != file_len(num_queues, queue_size) {
            return Err(problem(format!(
                "it is {len} bytes, not {}: it is damaged",
                file_len(num_queues, queue_size)
            )));
        }
        let file = MappedFile::open(place, len).map_err(|source| Error::Io {
            op: format!("mapping the in-flight log {}", path.display()),
            source,
        })?;
        Ok(Self::with(path, file, num_queues, queue_size))
    }

    fn with(path: &Path, file: MappedFile, num_queues: u16, queue_size: u16) -> Self {
        Self {
            path: path.to_owned(),
            file: Arc::new(file),
            num_queues,
            queue_size,
        }
    }

    /// Records a new value of the identity item `name` (a config space the server
    /// changed while serving, such as a disk's capacity), so that the server taking the
    /// device over next compares against the device as it is now. One atomic store: a
    /// crash leaves the old value or the new. Returns false when the log has no such item.
    pub fn change_identity(&self, name: &str, value: &[u8]) -> bool {
        let region = self.file.region();
        let load = |at: u64| {
            region
                .load::<u64>(MemoryRegionAddress(at), Ordering::Acquire)
                .unwrap_or(0)
        };
        let count = region
            .load::<u16>(MemoryRegionAddress(ITEM_COUNT_AT), Ordering::Acquire)
            .unwrap_or(0);
        let wanted = hash(name.as_bytes());
        for item in 0..usize::from(count).min(MAX_IDENTITY_ITEMS) {
            let at = ITEMS_AT + 16 * item as u64;
            if load(at) == wanted {
                return region
                    .store(hash(value), MemoryRegionAddress(at + 8), Ordering::Release)
                    .is_ok();
            }
        }
        false
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log of queue `index`.
    pub fn queue(&self, index: u16) -> QueueLog {
        assert!(index < self.num_queues, "queue {index} is not in the log");
        let base = HEADER_LEN + u64::from(index) * queue_block_len(self.queue_size);
        let counter = self
            .file
            .region()
            .load::<u64>(MemoryRegionAddress(base + COUNTER_AT), Ordering::Acquire)
            .unwrap_or(0);
        QueueLog {
            file: self.file.clone(),
            base,
            size: self.queue_size,
            counter,
        }
    }

    /// Removes the file (the device is gone). A server that dropped its privileges may
    /// not remove it from a directory root owns: it empties it instead, and an empty log is
    /// none.
    pub fn remove(self) -> Result<()> {
        match self.file.remove() {
            Ok(Removal::Removed) => Ok(()),
            Ok(Removal::Emptied) => {
                log::info!(
                    "emptied the in-flight log {} (this user may not remove it)",
                    self.path.display()
                );
                Ok(())
            }
            Err(source) => Err(Error::Io {
                op: format!("removing the in-flight log {}", self.path.display()),
                source,
            }),
        }
    }
}

/// What a queue's log says after a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Where to go on reading the available ring.
    pub next_avail: u16,
    /// The heads of the requests to run again, oldest first.
    pub replay: Vec<u16>,
}

/// One queue's part of the log, used by its worker only.
#[derive(Debug)]
pub struct QueueLog {
    file: Arc<MappedFile>,
    base: u64,
    size: u16,
    counter: u64,
}

impl QueueLog {
    fn store<T: vm_memory::AtomicAccess>(&self, at: u64, value: T) {
        // In range by construction: the file has every queue's block.
        let _ = self.file.region().store(
            value,
            MemoryRegionAddress(self.base + at),
            Ordering::Release,
        );
    }

    fn load<T: vm_memory::AtomicAccess + Default>(&self, at: u64) -> T {
        self.file
            .region()
            .load(MemoryRegionAddress(self.base + at), Ordering::Acquire)
            .unwrap_or_default()
    }

    fn mark_at(head: u16) -> u64 {
        MARKS_AT + 8 * u64::from(head)
    }

    /// The chain with this head was taken from the available ring.
    pub fn started(&mut self, head: u16) {
        if head >= self.size {
            return;
        }
        self.counter += 1;
        self.store(COUNTER_AT, self.counter);
        self.store(Self::mark_at(head), self.counter);
    }

    /// The used ring is about to get the elements from `start` to `end` (exclusive).
    pub fn publishing(&self, start: u16, end: u16) {
        self.store(RANGE_START_AT, start);
        self.store(RANGE_END_AT, end);
        self.store(RANGE_ACTIVE_AT, 1u16);
    }

    /// The used index now covers `heads`: they are no longer in flight.
    pub fn published(&self, heads: impl IntoIterator<Item = u16>) {
        for head in heads {
            if head < self.size {
                self.store(Self::mark_at(head), 0u64);
            }
        }
        self.store(RANGE_ACTIVE_AT, 0u16);
    }

    /// The `count` newest chains were given back to the available ring unserved.
    pub fn given_back(&mut self, count: u16) {
        let mut marked = self.marked();
        marked.sort_unstable_by_key(|&(_, counter)| std::cmp::Reverse(counter));
        for (head, _) in marked.into_iter().take(count.into()) {
            self.store(Self::mark_at(head), 0u64);
        }
    }

    /// Nothing is in flight any more (a reset).
    pub fn clear(&self) {
        for head in 0..self.size {
            self.store(Self::mark_at(head), 0u64);
        }
        self.store(RANGE_ACTIVE_AT, 0u16);
    }

    /// Heads marked in flight, with their marks.
    fn marked(&self) -> Vec<(u16, u64)> {
        (0..self.size)
            .map(|head| (head, self.load::<u64>(Self::mark_at(head))))
            .filter(|&(_, mark)| mark != 0)
            .collect()
    }

    /// What to do after a crash, given the used ring's index and a way to read the head
    /// of the used element at a position. Brings the log in line with the ring first.
    pub fn recover(
        &mut self,
        used_idx: u16,
        used_head_at: impl Fn(u16) -> Option<u16>,
    ) -> Recovery {
        if self.load::<u16>(RANGE_ACTIVE_AT) != 0 {
            let start: u16 = self.load(RANGE_START_AT);
            let end: u16 = self.load(RANGE_END_AT);
            if end == used_idx {
                let mut position = start;
                while position != end {
                    if let Some(head) = used_head_at(position) {
                        if head < self.size {
                            self.store(Self::mark_at(head), 0u64);
                        }
                    }
                    position = position.wrapping_add(1);
                }
            }
            self.store(RANGE_ACTIVE_AT, 0u16);
        }
        let mut marked = self.marked();
        marked.sort_unstable_by_key(|&(_, counter)| counter);
        self.counter = self.counter.max(marked.last().map_or(0, |&(_, c)| c));
        Recovery {
            next_avail: used_idx.wrapping_add(marked.len() as u16),
            replay: marked.into_iter().map(|(head, _)| head).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(value: u8) -> Identity {
        Identity::default()
            .with("device type", &[2])
            .with("config space", &[value])
    }

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vduse-inflight-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn marks_survive_the_mapping_and_recovery_replays_them_oldest_first() {
        let path = temp_path("replay");
        let log = InflightLog::create(&path, &id(7), 2, 8).unwrap();
        let mut queue = log.queue(1);
        for head in [5, 2, 7] {
            queue.started(head);
        }
        // 2 was answered.
        queue.publishing(10, 11);
        queue.published([2]);
        drop((queue, log));

        let log = InflightLog::open(&path, &id(7), 2, 8).unwrap();
        let mut queue = log.queue(1);
        let recovery = queue.recover(11, |_| None);
        assert_eq!(
            recovery,
            Recovery {
                next_avail: 13,
                replay: vec![5, 7]
            }
        );
        assert!(log.queue(0).marked().is_empty());
        // The counter goes on from the log's.
        queue.started(1);
        assert_eq!(queue.marked(), vec![(1, 4), (5, 1), (7, 3)]);
        log.remove().unwrap();
    }

    #[test]
    fn a_batch_cut_short_after_its_used_index_is_not_run_again() {
        let path = temp_path("published");
        let log = InflightLog::create(&path, &id(1), 1, 16).unwrap();
        let mut queue = log.queue(0);
        for head in [3, 4, 9] {
            queue.started(head);
        }
        // Killed after the used index covered 3 and 4, before their marks were cleared.
        queue.publishing(65535, 1);
        let used = |position: u16| match position {
            65535 => Some(3),
            0 => Some(4),
            _ => None,
        };
        let recovery = log.queue(0).recover(1, used);
        assert_eq!(
            recovery,
            Recovery {
                next_avail: 2,
                replay: vec![9]
            }
        );
        log.remove().unwrap();
    }

    #[test]
    fn a_batch_cut_short_before_its_used_index_runs_again() {
        let path = temp_path("unpublished");
        let log = InflightLog::create(&path, &id(1), 1, 16).unwrap();
        let mut queue = log.queue(0);
        queue.started(3);
        queue.started(4);
        queue.publishing(20, 22);
        let recovery = log.queue(0).recover(20, |_| Some(3));
        assert_eq!(
            recovery,
            Recovery {
                next_avail: 22,
                replay: vec![3, 4]
            }
        );
        log.remove().unwrap();
    }

    #[test]
    fn given_back_chains_are_the_newest_and_a_reset_clears_all() {
        let path = temp_path("given-back");
        let log = InflightLog::create(&path, &id(1), 1, 8).unwrap();
        let mut queue = log.queue(0);
        for head in [6, 1, 4] {
            queue.started(head);
        }
        queue.given_back(2);
        assert_eq!(queue.marked(), vec![(6, 1)]);
        queue.clear();
        assert!(queue.marked().is_empty());
        log.remove().unwrap();
    }

    #[test]
    fn a_changed_identity_item_is_what_the_next_server_must_match() {
        let path = temp_path("changed");
        let log = InflightLog::create(&path, &id(1), 1, 8).unwrap();
        assert!(log.change_identity("config space", &[2]));
        assert!(!log.change_identity("no such item", &[2]));
        let error = InflightLog::open(&path, &id(1), 1, 8).unwrap_err();
        assert!(
            error.to_string().contains("config space differs"),
            "{error}"
        );
        InflightLog::open(&path, &id(2), 1, 8).unwrap();
        log.remove().unwrap();
    }

    #[test]
    fn a_log_of_another_configuration_is_refused_naming_what_differs() {
        let path = temp_path("other");
        InflightLog::create(&path, &id(1), 1, 8).unwrap();
        let refused = |identity: &Identity, queues, size| {
            InflightLog::open(&path, identity, queues, size)
                .unwrap_err()
                .to_string()
        };
        let error = refused(&id(2), 1, 8);
        assert!(
            error.contains("another configuration: config space differs"),
            "{error}"
        );
        let error = refused(&id(1), 2, 16);
        assert!(
            error.contains("queues (1 there, 2 here), queue size (8 there, 16 here) differ"),
            "{error}"
        );
        let backing = id(1).with("backing", b"/srv/a.img");
        assert!(refused(&backing, 1, 8).contains("backing differs"));
        std::fs::write(&path, vec![0u8; file_len(1, 8) as usize]).unwrap();
        let error = refused(&id(1), 1, 8);
        assert!(error.contains("not an in-flight log"), "{error}");
        std::fs::write(&path, b"").unwrap();
        assert!(refused(&id(1), 1, 8).contains("it is empty"));
        std::fs::remove_file(&path).unwrap();
    }
}
