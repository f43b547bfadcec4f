//! The journal file: where each change of the tables goes before the reply reaches the
//! guest (through a shared mapping, so no system call per record), and what a server taking
//! over reads back. It is compacted to the live tables when it grows.

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use vduse::mapped_file::{FilePlace, MappedFile};
use vm_memory::{Bytes, MemoryRegionAddress};

use super::record::Record;
use super::table::Tables;

/// The journal's first bytes.
const MAGIC: &[u8; 8] = b"VDUSEFSN";

/// Journal size that starts a compaction (rewriting it as the live table), at least.
const COMPACT_AT: u64 = 4 << 20;

/// The journal file's first length: records go into a shared mapping of the file, which
/// doubles when they reach its end (tmpfs allocates only the pages written).
const MAPPED_AT_LEAST: u64 = 256 << 10;

/// The journal file, a [`MappedFile`] reached through its directory's descriptor: the
/// filesystem threads that write it live in a mount namespace without that directory.
/// Records are copied into the shared mapping, so appending one costs no system call; a
/// killed server's stores are in the page cache all the same.
#[derive(Debug)]
pub(super) struct Journal {
    place: JournalPlace,
    /// `None` once the journal is removed.
    file: Option<MappedFile>,
    /// Bytes in use: the magic and the records.
    written: u64,
    compact_at: u64,
}

/// Where the journal goes: its directory, opened (before the filesystem threads enter
/// their namespace, which has no such directory), and its file name.
#[derive(Debug)]
pub struct JournalPlace(FilePlace);

impl JournalPlace {
    /// Opens the directory of `path`.
    pub fn locate(path: &Path) -> io::Result<JournalPlace> {
        FilePlace::locate(path).map(JournalPlace)
    }

    /// The path, for messages.
    pub(super) fn shown(&self) -> &str {
        self.0.shown()
    }

    /// The records of the journal there; an empty file holds none.
    pub(super) fn read(&self) -> Result<Vec<Record>, String> {
        let shown = self.shown();
        let bytes = self
            .0
            .read()
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
        let file = MappedFile::create(place.0.try_clone()?, &bytes, capacity)?;
        Ok(Journal {
            place,
            file: Some(file),
            written,
            compact_at: COMPACT_AT.max(2 * written),
        })
    }

    pub(super) fn bytes(head: &[u8], records: &[Record]) -> Vec<u8> {
        let mut bytes = head.to_vec();
        for record in records {
            record.encode(&mut bytes);
        }
        bytes
    }

    pub(super) fn shown(&self) -> &str {
        self.place.shown()
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
            let Some(file) = self.file.as_mut() else {
                return;
            };
            let grown = if end > file.len() {
                // At least twice the length: the mapping is made again each time.
                file.grow((2 * file.len()).max(end.next_power_of_two()))
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
            let mapped = file.region();
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
        let replaced = self
            .place
            .0
            .try_clone()
            .and_then(|place| Journal::create(JournalPlace(place), records));
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
        // Nothing is written after this (a store into an emptied file's mapping would
        // fault): the mapping goes with the file.
        match journal.file.take() {
            Some(file) => file.remove().map(drop),
            None => Ok(()),
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
        let mapped = journal.file.as_ref().unwrap().region();
        mapped
            .write_slice(&torn[1..], MemoryRegionAddress(at + 1))
            .unwrap();
        drop(journal);
        assert_eq!(place(&path).read().unwrap(), [node(2), node(3)]);
    }
}
