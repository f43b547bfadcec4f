//! The journal file: where each change of the tables goes before the reply reaches the
//! guest (through a shared mapping, so no system call per record), and what a server taking
//! over reads back. It is compacted to the live tables when it grows.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use rustix::fs::{Mode, OFlags};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestRegionMmap, MemoryRegionAddress};

use super::record::Record;
use super::table::Tables;

/// The journal's first bytes.
const MAGIC: &[u8; 8] = b"VDUSEFSN";

/// Journal size that starts a compaction (rewriting it as the live table), at least.
const COMPACT_AT: u64 = 4 << 20;

/// The journal file's first length: records go into a shared mapping of the file, which
/// doubles when they reach its end (tmpfs allocates only the pages written).
const MAPPED_AT_LEAST: u64 = 256 << 10;

/// The journal file, reached through its directory's descriptor: the filesystem threads
/// that write it live in a mount namespace without that directory. Records are copied into
/// a shared mapping of the file, so appending one costs no system call; a killed server's
/// stores are in the page cache all the same.
#[derive(Debug)]
pub(super) struct Journal {
    place: JournalPlace,
    file: File,
    /// `None` once the journal is removed (or could not be mapped again).
    mapped: Option<GuestRegionMmap<()>>,
    /// Bytes in use: the magic and the records.
    written: u64,
    /// The file's length, all mapped.
    capacity: u64,
    compact_at: u64,
}

/// Where the journal goes: its directory, opened (before the filesystem threads enter
/// their namespace, which has no such directory), and its file name.
#[derive(Debug)]
pub struct JournalPlace {
    dir: OwnedFd,
    name: OsString,
    pub(super) shown: String,
}

impl JournalPlace {
    /// Opens the directory of `path`.
    pub fn locate(path: &Path) -> io::Result<JournalPlace> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let dir = rustix::fs::open(
            dir,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(JournalPlace {
            dir,
            name: name.to_owned(),
            shown: path.display().to_string(),
        })
    }

    /// The records of the journal there; an empty file holds none.
    pub(super) fn read(&self) -> Result<Vec<Record>, String> {
        let shown = &self.shown;
        let mut bytes = Vec::new();
        rustix::fs::openat(
            &self.dir,
            self.name.as_os_str(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)
        .and_then(|fd| File::from(fd).read_to_end(&mut bytes))
        .map_err(|error| format!("cannot read {shown}: {error}"))?;
        if bytes.is_empty() {
            return Ok(Vec::new());
        }
        match bytes.strip_prefix(MAGIC) {
            Some(records) => Record::decode_all(records)
                .map_err(|problem| format!("{shown} is damaged: {problem}")),
            None => Err(format!("{shown} is not a node journal")),
        }
    }
}

impl Journal {
    /// Writes `records` as a new journal at `place` (through a file renamed over it, so a
    /// crash leaves the old one or the new one).
    pub(super) fn create(place: JournalPlace, records: &[Record]) -> io::Result<Journal> {
        let bytes = Journal::bytes(MAGIC, records);
        let written = bytes.len() as u64;
        let capacity = MAPPED_AT_LEAST.max((2 * written).next_power_of_two());
        let mut staged_name = place.name.clone();
        staged_name.push(".new");
        let mut file = File::from(rustix::fs::openat(
            &place.dir,
            staged_name.as_os_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?);
        file.write_all(&bytes)?;
        file.set_len(capacity)?;
        let mapped = Journal::map(&file, capacity)?;
        rustix::fs::renameat(
            &place.dir,
            staged_name.as_os_str(),
            &place.dir,
            place.name.as_os_str(),
        )?;
        Ok(Journal {
            place,
            file,
            mapped: Some(mapped),
            written,
            capacity,
            compact_at: COMPACT_AT.max(2 * written),
        })
    }

    /// A shared mapping of the first `len` bytes of `file`.
    pub(super) fn map(file: &File, len: u64) -> io::Result<GuestRegionMmap<()>> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        GuestRegionMmap::from_range(
            GuestAddress(0),
            len,
            Some(FileOffset::new(file.try_clone()?, 0)),
        )
        .map_err(|error| io::Error::other(error.to_string()))
    }

    pub(super) fn bytes(head: &[u8], records: &[Record]) -> Vec<u8> {
        let mut bytes = head.to_vec();
        for record in records {
            record.encode(&mut bytes);
        }
        bytes
    }

    pub(super) fn shown(&self) -> &str {
        &self.place.shown
    }

    pub(super) fn append(&mut self, tables: &Tables, records: &[Record]) {
        self.put(records);
        // The records written already stand for the live table: a compaction that cannot
        // be done is skipped, not appended.
        if self.written >= self.compact_at {
            self.replace(&tables.snapshot());
        }
    }

    /// Copies `records` into the mapping after the last one. Each record's kind byte is
    /// stored last, with release ordering: a server killed while copying leaves a record
    /// whose kind is still 0, which ends the list for the server that reads it.
    fn put(&mut self, records: &[Record]) {
        let mut bytes = Vec::new();
        for record in records {
            bytes.clear();
            record.encode(&mut bytes);
            let end = self.written + bytes.len() as u64;
            let grown = if end > self.capacity {
                self.grow(end)
            } else {
                Ok(())
            };
            if let Err(error) = grown {
                log::error!(
                    "cannot grow the node journal {}: {error}; a server taking this device \
                     over may not find every file the guest holds",
                    self.shown()
                );
                return;
            }
            let Some(mapped) = &self.mapped else {
                return;
            };
            let at = MemoryRegionAddress(self.written);
            let copied = mapped
                .write_slice(&bytes[1..], MemoryRegionAddress(at.0 + 1))
                .and_then(|()| mapped.store(bytes[0], at, Ordering::Release));
            if let Err(error) = copied {
                log::error!("cannot write the node journal {}: {error}", self.shown());
                return;
            }
            self.written = end;
        }
    }

    /// Lengthens the file to hold `end` bytes (at least twice its length) and maps it
    /// again.
    fn grow(&mut self, end: u64) -> io::Result<()> {
        if self.mapped.is_none() {
            return Ok(());
        }
        let capacity = (2 * self.capacity).max(end.next_power_of_two());
        self.file.set_len(capacity)?;
        self.mapped = None;
        self.mapped = Some(Journal::map(&self.file, capacity)?);
        self.capacity = capacity;
        Ok(())
    }

    /// Replaces the journal by `records` (INIT, DESTROY); where it cannot be replaced,
    /// appends them.
    pub(super) fn rewrite(&mut self, records: &[Record]) {
        if !self.replace(records) {
            self.put(records);
        }
    }

    /// Writes `records` as a new journal renamed over this one; false when that cannot be
    /// done (a server running as `user:` cannot create a file in root's directory), in
    /// which case this one stays, and keeps growing.
    fn replace(&mut self, records: &[Record]) -> bool {
        let replaced = rustix::io::dup(&self.place.dir)
            .map_err(io::Error::from)
            .and_then(|dir| {
                let place = JournalPlace {
                    dir,
                    name: self.place.name.clone(),
                    shown: self.place.shown.clone(),
                };
                Journal::create(place, records)
            });
        match replaced {
            Ok(journal) => {
                *self = journal;
                true
            }
            Err(error) => {
                log::warn!(
                    "cannot rewrite the node journal {} ({error}); it keeps growing",
                    self.shown()
                );
                self.compact_at = self.compact_at.saturating_mul(2);
                false
            }
        }
    }
}

/// The node journal of a [`DurableFs`](super::DurableFs), kept to remove it.
#[derive(Debug, Clone)]
pub struct NodeJournal(pub(super) Arc<Mutex<Journal>>);

impl NodeJournal {
    /// Removes the journal (its device is gone). A server running as `user:` may not
    /// remove a file from root's directory: it empties it instead, and an empty journal
    /// holds nothing.
    pub fn remove(&self) -> io::Result<()> {
        let mut journal = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Nothing is written after this (a store into a truncated mapping would fault).
        journal.mapped = None;
        match rustix::fs::unlinkat(
            &journal.place.dir,
            journal.place.name.as_os_str(),
            rustix::fs::AtFlags::empty(),
        ) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM) => journal.file.set_len(0),
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;

    use super::super::ROOT;
    use super::*;

    fn place(path: &Path) -> JournalPlace {
        JournalPlace::locate(path).unwrap()
    }

    fn name(text: &str) -> CString {
        CString::new(text).unwrap()
    }

    fn node(id: u64) -> Record {
        Record::Node {
            id,
            parent: ROOT,
            ino: 1000 + id,
            name: name(&format!("file number {id} of many")),
        }
    }

    #[test]
    fn the_mapping_grows_and_every_record_reads_back() {
        let state = tempfile::tempdir().unwrap();
        let path = state.path().join("j.nodes");
        let mut journal = Journal::create(place(&path), &[Record::Init { capable: 7 }]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), MAPPED_AT_LEAST);
        // About 45 bytes each: past the first length twice over.
        let records: Vec<Record> = (2..15_000).map(node).collect();
        for chunk in records.chunks(3) {
            journal.put(chunk);
        }
        assert!(std::fs::metadata(&path).unwrap().len() >= 4 * MAPPED_AT_LEAST);
        let mut expected = vec![Record::Init { capable: 7 }];
        expected.extend(records);
        // Read by another descriptor, as a server taking over reads it.
        assert_eq!(place(&path).read().unwrap(), expected);
    }

    #[test]
    fn a_compaction_that_cannot_replace_the_file_appends_nothing() {
        let state = tempfile::tempdir().unwrap();
        let path = state.path().join("j.nodes");
        let mut journal = Journal::create(place(&path), &[]).unwrap();
        let mut tables = Tables::new();
        // The staged file cannot be created, as for a server running as `user:` in root's
        // directory.
        let blocker = state.path().join("j.nodes.new");
        std::fs::create_dir(&blocker).unwrap();
        journal.compact_at = 64;
        for id in 2..10 {
            tables.apply(node(id));
            journal.append(&tables, &[node(id)]);
        }
        assert_eq!(
            place(&path).read().unwrap(),
            (2..10).map(node).collect::<Vec<_>>()
        );
        assert!(journal.compact_at > 64);
        // Once it can, the journal is rewritten as the live table.
        std::fs::remove_dir(&blocker).unwrap();
        tables.apply(Record::Forgotten { id: 3 });
        journal.compact_at = 64;
        journal.append(&tables, &[Record::Forgotten { id: 3 }]);
        let live: Vec<Record> = [2, 4, 5, 6, 7, 8, 9].into_iter().map(node).collect();
        assert_eq!(place(&path).read().unwrap(), live);
        assert!(!blocker.exists());
    }

    #[test]
    fn a_record_whose_kind_was_not_stored_yet_is_not_read() {
        let state = tempfile::tempdir().unwrap();
        let path = state.path().join("j.nodes");
        let mut journal = Journal::create(place(&path), &[]).unwrap();
        journal.put(&[node(2), node(3)]);
        // A server killed after copying a record's body, before its kind byte.
        let mut torn = Vec::new();
        node(4).encode(&mut torn);
        let at = journal.written;
        let mapped = journal.mapped.as_ref().unwrap();
        mapped
            .write_slice(&torn[1..], MemoryRegionAddress(at + 1))
            .unwrap();
        drop(journal);
        assert_eq!(place(&path).read().unwrap(), [node(2), node(3)]);
    }
}
