//! [`DurableFs`]: the node IDs and file handles the guest holds, numbered by the server and
//! written down, so that a server started after a crash can take the device over.
//!
//! The guest's FUSE client names inodes by the node IDs lookups returned and open files by
//! the handles opens returned. Both are the passthrough's own numbers for objects only its
//! process had, so they die with it. This layer hands the guest numbers of its own, maps
//! them to the passthrough's, and appends each change of that map to a journal file (a
//! shared mapping of it: no system call per record) before the reply reaches the guest:
//! a node (its parent node, name and host inode number), a node forgotten, renamed, a
//! file opened (node and flags), released, and the options agreed at INIT. A server
//! taking over replays the journal: it looks every node up again by name from the root,
//! checks the host inode number, reopens every handle (never with `O_CREAT`, `O_EXCL` or
//! `O_TRUNC`) and answers the guest's old numbers.
//!
//! What cannot be brought back answers `ESTALE`: a node whose name no longer leads to the
//! same inode (renamed or removed on the host meanwhile, or unlinked while the guest held
//! it), and the handles open on it. The lookup counts are not journaled (a record per
//! lookup would make every request write one): nodes restored are kept until the guest
//! unmounts.

use std::collections::HashMap;
use std::ffi::OsString;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{
    CreateIn, FsOptions, OpenOptions, SetattrValid, stat64, statvfs64,
};
use fuse_backend_rs::abi::virtio_fs::RemovemappingOne;
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileLock, FileSystem, GetxattrReply, IoctlData, ListxattrReply,
    ZeroCopyReader, ZeroCopyWriter,
};
use fuse_backend_rs::transport::FsCacheReqHandler;
use rustix::fs::{Mode, OFlags};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestRegionMmap, MemoryRegionAddress};

/// The root's node ID, the same for the guest and the passthrough.
const ROOT: u64 = 1;

/// Lookup count of a node restored from the journal: unknown, so never reached by forgets.
const RESTORED: u64 = u64::MAX / 2;

/// The journal's first bytes.
const MAGIC: &[u8; 8] = b"VDUSEFSN";

/// Journal size that starts a compaction (rewriting it as the live table), at least.
const COMPACT_AT: u64 = 4 << 20;

/// The journal file's first length: records go into a shared mapping of the file, which
/// doubles when they reach its end (tmpfs allocates only the pages written).
const MAPPED_AT_LEAST: u64 = 256 << 10;

fn errno<T>(code: i32) -> io::Result<T> {
    Err(io::Error::from_raw_os_error(code))
}

thread_local! {
    /// The request this thread serves is one a killed server had in flight.
    static AGAIN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `serve` for a request, telling [`DurableFs`] whether a killed server had it in
/// flight (`again`), in which case it may have been carried out already.
pub fn running_again<T>(again: bool, serve: impl FnOnce() -> T) -> T {
    AGAIN.with(|flag| flag.set(again));
    let result = serve();
    AGAIN.with(|flag| flag.set(false));
    result
}

/// Whether `result` is the error a request that a killed server carried out gets when it
/// runs again (`errno`: ENOENT for a removal or rename, EEXIST for a creation); then it
/// was done, and is answered as such.
fn done_before<T>(result: &io::Result<T>, errno: i32, what: &str) -> bool {
    let done = matches!(result, Err(error) if error.raw_os_error() == Some(errno))
        && AGAIN.with(|flag| flag.get());
    if done {
        log::info!("{what} run again after a takeover had been done: answered as done");
    }
    done
}

/// A node the guest holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    /// The passthrough's number; `None` once it could not be found again.
    inner: Option<u64>,
    parent: u64,
    name: CString,
    /// Host inode number, to tell the same file from another one now at its name.
    ino: u64,
    lookups: u64,
}

/// A handle the guest holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OpenFile {
    inner: Option<u64>,
    node: u64,
    flags: u32,
    dir: bool,
}

/// One change of the tables, as the journal holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
    Init {
        capable: u64,
    },
    Node {
        id: u64,
        parent: u64,
        ino: u64,
        name: CString,
    },
    Forgotten {
        id: u64,
    },
    Renamed {
        id: u64,
        parent: u64,
        name: CString,
    },
    Opened {
        fh: u64,
        node: u64,
        flags: u32,
        dir: bool,
    },
    Released {
        fh: u64,
    },
}

impl Record {
    fn encode(&self, out: &mut Vec<u8>) {
        let name = |out: &mut Vec<u8>, name: &CString| {
            let bytes = name.as_bytes();
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        match self {
            Record::Init { capable } => {
                out.push(1);
                out.extend_from_slice(&capable.to_le_bytes());
            }
            Record::Node {
                id,
                parent,
                ino,
                name: n,
            } => {
                out.push(2);
                for value in [id, parent, ino] {
                    out.extend_from_slice(&value.to_le_bytes());
                }
                name(out, n);
            }
            Record::Forgotten { id } => {
                out.push(3);
                out.extend_from_slice(&id.to_le_bytes());
            }
            Record::Renamed {
                id,
                parent,
                name: n,
            } => {
                out.push(4);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&parent.to_le_bytes());
                name(out, n);
            }
            Record::Opened {
                fh,
                node,
                flags,
                dir,
            } => {
                out.push(5);
                out.extend_from_slice(&fh.to_le_bytes());
                out.extend_from_slice(&node.to_le_bytes());
                out.extend_from_slice(&flags.to_le_bytes());
                out.push(u8::from(*dir));
            }
            Record::Released { fh } => {
                out.push(6);
                out.extend_from_slice(&fh.to_le_bytes());
            }
        }
    }

    /// Decodes the records of `bytes`; a record cut short at the end (a write the crash
    /// interrupted) or a kind of 0 (the file's unwritten rest, or a record whose kind, the
    /// byte written last, the crash came before) ends the list. An unknown kind is an error.
    fn decode_all(mut bytes: &[u8]) -> Result<Vec<Record>, String> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, tail) = (bytes.get(..n)?, bytes.get(n..)?);
            *bytes = tail;
            Some(head)
        }
        fn u64_of(bytes: &mut &[u8]) -> Option<u64> {
            take(bytes, 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        }
        fn u32_of(bytes: &mut &[u8]) -> Option<u32> {
            take(bytes, 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()))
        }
        fn name_of(bytes: &mut &[u8]) -> Option<Option<CString>> {
            let len = u32_of(bytes)? as usize;
            take(bytes, len).map(|b| CString::new(b).ok())
        }
        let mut records = Vec::new();
        while let Some(&kind) = bytes.first() {
            let mut rest = &bytes[1..];
            let record = match kind {
                0 => break,
                1 => u64_of(&mut rest).map(|capable| Some(Record::Init { capable })),
                2 => (|| {
                    let (id, parent, ino) =
                        (u64_of(&mut rest)?, u64_of(&mut rest)?, u64_of(&mut rest)?);
                    Some(name_of(&mut rest)?.map(|name| Record::Node {
                        id,
                        parent,
                        ino,
                        name,
                    }))
                })(),
                3 => u64_of(&mut rest).map(|id| Some(Record::Forgotten { id })),
                4 => (|| {
                    let (id, parent) = (u64_of(&mut rest)?, u64_of(&mut rest)?);
                    Some(name_of(&mut rest)?.map(|name| Record::Renamed { id, parent, name }))
                })(),
                5 => (|| {
                    let (fh, node, flags) =
                        (u64_of(&mut rest)?, u64_of(&mut rest)?, u32_of(&mut rest)?);
                    let dir = take(&mut rest, 1)?[0] != 0;
                    Some(Some(Record::Opened {
                        fh,
                        node,
                        flags,
                        dir,
                    }))
                })(),
                6 => u64_of(&mut rest).map(|fh| Some(Record::Released { fh })),
                other => return Err(format!("unknown record kind {other}")),
            };
            match record {
                None => break,
                Some(None) => return Err("a name holds a NUL byte".into()),
                Some(Some(record)) => records.push(record),
            }
            bytes = rest;
        }
        Ok(records)
    }
}

/// The guest's numbers and what they stand for.
#[derive(Debug, Default)]
struct Tables {
    nodes: HashMap<u64, Node>,
    by_inner: HashMap<u64, u64>,
    by_name: HashMap<(u64, CString), u64>,
    next_node: u64,
    files: HashMap<u64, OpenFile>,
    next_fh: u64,
    capable: Option<u64>,
}

impl Tables {
    fn new() -> Self {
        Tables {
            next_node: ROOT + 1,
            next_fh: 1,
            ..Default::default()
        }
    }

    fn apply(&mut self, record: Record) {
        match record {
            Record::Init { capable } => {
                *self = Tables::new();
                self.capable = Some(capable);
            }
            Record::Node {
                id,
                parent,
                ino,
                name,
            } => {
                self.by_name.insert((parent, name.clone()), id);
                self.nodes.insert(
                    id,
                    Node {
                        inner: None,
                        parent,
                        name,
                        ino,
                        lookups: RESTORED,
                    },
                );
                self.next_node = self.next_node.max(id + 1);
            }
            Record::Forgotten { id } => {
                if let Some(node) = self.nodes.remove(&id) {
                    self.unname(id, &node);
                }
            }
            Record::Renamed { id, parent, name } => self.rename(id, parent, name),
            Record::Opened {
                fh,
                node,
                flags,
                dir,
            } => {
                self.files.insert(
                    fh,
                    OpenFile {
                        inner: None,
                        node,
                        flags,
                        dir,
                    },
                );
                self.next_fh = self.next_fh.max(fh + 1);
            }
            Record::Released { fh } => {
                self.files.remove(&fh);
            }
        }
    }

    fn unname(&mut self, id: u64, node: &Node) {
        let key = (node.parent, node.name.clone());
        if self.by_name.get(&key) == Some(&id) {
            self.by_name.remove(&key);
        }
    }

    fn rename(&mut self, id: u64, parent: u64, name: CString) {
        if let Some(mut node) = self.nodes.remove(&id) {
            self.unname(id, &node);
            node.parent = parent;
            node.name = name.clone();
            self.by_name.insert((parent, name), id);
            self.nodes.insert(id, node);
        }
    }

    /// The live tables as records, in an order that replays to them.
    fn snapshot(&self) -> Vec<Record> {
        let mut records = Vec::new();
        if let Some(capable) = self.capable {
            records.push(Record::Init { capable });
        }
        let mut ids: Vec<&u64> = self.nodes.keys().collect();
        ids.sort();
        for id in ids {
            let node = &self.nodes[id];
            records.push(Record::Node {
                id: *id,
                parent: node.parent,
                ino: node.ino,
                name: node.name.clone(),
            });
        }
        let mut fhs: Vec<&u64> = self.files.keys().collect();
        fhs.sort();
        for fh in fhs {
            let file = &self.files[fh];
            records.push(Record::Opened {
                fh: *fh,
                node: file.node,
                flags: file.flags,
                dir: file.dir,
            });
        }
        records
    }
}

/// The journal file, reached through its directory's descriptor: the filesystem threads
/// that write it live in a mount namespace without that directory. Records are copied into
/// a shared mapping of the file, so appending one costs no system call; a killed server's
/// stores are in the page cache all the same.
#[derive(Debug)]
struct Journal {
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
    shown: String,
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
    fn read(&self) -> Result<Vec<Record>, String> {
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
    fn create(place: JournalPlace, records: &[Record]) -> io::Result<Journal> {
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
    fn map(file: &File, len: u64) -> io::Result<GuestRegionMmap<()>> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        GuestRegionMmap::from_range(
            GuestAddress(0),
            len,
            Some(FileOffset::new(file.try_clone()?, 0)),
        )
        .map_err(|error| io::Error::other(error.to_string()))
    }

    fn bytes(head: &[u8], records: &[Record]) -> Vec<u8> {
        let mut bytes = head.to_vec();
        for record in records {
            record.encode(&mut bytes);
        }
        bytes
    }

    fn shown(&self) -> &str {
        &self.place.shown
    }

    fn append(&mut self, tables: &Tables, records: &[Record]) {
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
    fn rewrite(&mut self, records: &[Record]) {
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

/// The node journal of a [`DurableFs`], kept to remove it.
#[derive(Debug, Clone)]
pub struct NodeJournal(Arc<Mutex<Journal>>);

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

/// What a takeover brought back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// Nodes found again.
    pub nodes: usize,
    /// Nodes whose name no longer leads to their inode.
    pub lost_nodes: usize,
    /// Handles opened again.
    pub files: usize,
    /// Handles that could not be.
    pub lost_files: usize,
}

/// The filesystem `F` with node IDs and handles that survive the server (see the module).
pub struct DurableFs<F> {
    inner: F,
    tables: RwLock<Tables>,
    journal: Option<Arc<Mutex<Journal>>>,
}

impl<F> std::fmt::Debug for DurableFs<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableFs")
            .field("journal", &self.journal)
            .finish_non_exhaustive()
    }
}

type Inode = u64;
type Handle = u64;

impl<F: FileSystem<Inode = Inode, Handle = Handle>> DurableFs<F> {
    /// Serves `inner` with a new journal at `journal` (`None`: no journal, no takeover).
    pub fn new(inner: F, journal: Option<JournalPlace>) -> io::Result<Self> {
        let journal = journal
            .map(|place| Journal::create(place, &[]).map(|j| Arc::new(Mutex::new(j))))
            .transpose()?;
        Ok(DurableFs {
            inner,
            tables: RwLock::new(Tables::new()),
            journal,
        })
    }

    /// Serves `inner` for a guest that holds what the journal at `path` lists: runs INIT
    /// again with the options the guest offered, finds every node and reopens every
    /// handle. The journal is then rewritten as what was found.
    pub fn restore(inner: F, place: JournalPlace) -> Result<(Self, Restored), String> {
        let mut tables = Tables::new();
        for record in place.read()? {
            tables.apply(record);
        }
        let fs = DurableFs {
            inner,
            tables: RwLock::new(Tables::new()),
            journal: None,
        };
        // The passthrough opens the shared directory at INIT: there is none to come.
        let capable = FsOptions::from_bits_truncate(tables.capable.unwrap_or(0));
        fs.inner
            .init(capable)
            .map_err(|error| format!("INIT with the guest's options failed: {error}"))?;
        let mut restored = Restored::default();
        let ids: Vec<u64> = {
            let mut ids: Vec<u64> = tables.nodes.keys().copied().collect();
            ids.sort();
            ids
        };
        for id in ids {
            fs.find(&mut tables, id, 0);
        }
        for (id, node) in &tables.nodes {
            match node.inner {
                Some(inner) => {
                    tables.by_inner.insert(inner, *id);
                    restored.nodes += 1;
                }
                None => restored.lost_nodes += 1,
            }
        }
        let root = Context::default();
        for file in tables.files.values_mut() {
            let inner_node = if file.node == ROOT {
                Some(ROOT)
            } else {
                tables.nodes.get(&file.node).and_then(|node| node.inner)
            };
            let flags = file.flags & !((libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC) as u32);
            file.inner = inner_node.and_then(|inode| {
                let opened = if file.dir {
                    fs.inner.opendir(&root, inode, flags).map(|(fh, _)| fh)
                } else {
                    fs.inner.open(&root, inode, flags, 0).map(|(fh, _, _)| fh)
                };
                opened.ok().flatten()
            });
            if file.inner.is_some() {
                restored.files += 1;
            } else {
                restored.lost_files += 1;
            }
        }
        let shown = place.shown.clone();
        let journal = Journal::create(place, &tables.snapshot())
            .map_err(|error| format!("cannot rewrite {shown}: {error}"))?;
        *fs.tables.write().unwrap() = tables;
        Ok((
            DurableFs {
                journal: Some(Arc::new(Mutex::new(journal))),
                ..fs
            },
            restored,
        ))
    }

    /// The journal, to remove it with the device once the filesystem has stopped.
    pub fn journal(&self) -> Option<NodeJournal> {
        self.journal.clone().map(NodeJournal)
    }

    /// Looks node `id` up again under its parent (found first); `depth` bounds the walk.
    fn find(&self, tables: &mut Tables, id: u64, depth: u32) -> Option<u64> {
        if id == ROOT {
            return Some(ROOT);
        }
        let node = tables.nodes.get(&id)?;
        if node.inner.is_some() || depth > 4096 {
            return node.inner;
        }
        let (parent, name, ino) = (node.parent, node.name.clone(), node.ino);
        let parent_inner = self.find(tables, parent, depth + 1)?;
        let entry = self
            .inner
            .lookup(&Context::default(), parent_inner, &name)
            .ok()?;
        if entry.inode == 0 {
            return None;
        }
        if entry.attr.st_ino != ino || tables.by_inner.contains_key(&entry.inode) {
            // Another file now has this name (or another node holds this one).
            self.inner.forget(&Context::default(), entry.inode, 1);
            return None;
        }
        tables.by_inner.insert(entry.inode, id);
        tables.nodes.get_mut(&id)?.inner = Some(entry.inode);
        Some(entry.inode)
    }

    /// The passthrough's number for node `id`.
    fn node(&self, id: Inode) -> io::Result<Inode> {
        if id == ROOT {
            return Ok(ROOT);
        }
        match self.tables.read().unwrap().nodes.get(&id) {
            Some(Node {
                inner: Some(inner), ..
            }) => Ok(*inner),
            Some(_) => errno(libc::ESTALE),
            None => errno(libc::EBADF),
        }
    }

    /// The passthrough's number for handle `fh`.
    fn file(&self, fh: Handle) -> io::Result<Handle> {
        match self.tables.read().unwrap().files.get(&fh) {
            Some(OpenFile {
                inner: Some(inner), ..
            }) => Ok(*inner),
            Some(_) => errno(libc::ESTALE),
            None => errno(libc::EBADF),
        }
    }

    fn optional_file(&self, fh: Option<Handle>) -> io::Result<Option<Handle>> {
        fh.map(|fh| self.file(fh)).transpose()
    }

    fn write_down(&self, tables: &Tables, records: &[Record]) {
        if let Some(journal) = &self.journal {
            journal.lock().unwrap().append(tables, records);
        }
    }

    /// Gives `entry` (the passthrough's answer for `name` in `parent`) the guest's number:
    /// a node already known counts one more lookup (and gives the passthrough's extra
    /// reference back through `give_back`), a new one is numbered and journaled.
    fn adopt(
        &self,
        parent: Inode,
        name: &CStr,
        entry: &mut Entry,
        give_back: &mut Vec<Inode>,
    ) -> Inode {
        let inner = entry.inode;
        if inner == 0 || inner == ROOT {
            return inner;
        }
        let mut tables = self.tables.write().unwrap();
        if let Some(&id) = tables.by_inner.get(&inner) {
            let node = tables.nodes.get_mut(&id).expect("by_inner names a node");
            node.lookups = node.lookups.saturating_add(1);
            give_back.push(inner);
            entry.inode = id;
            return id;
        }
        let id = tables.next_node;
        tables.next_node += 1;
        let name = name.to_owned();
        tables.by_inner.insert(inner, id);
        tables.by_name.insert((parent, name.clone()), id);
        tables.nodes.insert(
            id,
            Node {
                inner: Some(inner),
                parent,
                name: name.clone(),
                ino: entry.attr.st_ino,
                lookups: 1,
            },
        );
        let record = Record::Node {
            id,
            parent,
            ino: entry.attr.st_ino,
            name,
        };
        self.write_down(&tables, &[record]);
        entry.inode = id;
        id
    }

    fn give_back(&self, inner: Vec<Inode>) {
        for inode in inner {
            self.inner.forget(&Context::default(), inode, 1);
        }
    }

    fn entry(&self, parent: Inode, name: &CStr, mut entry: Entry) -> Entry {
        let mut extra = Vec::new();
        self.adopt(parent, name, &mut entry, &mut extra);
        self.give_back(extra);
        entry
    }

    fn opened(&self, inner: Option<Handle>, node: Inode, flags: u32, dir: bool) -> Option<Handle> {
        let inner = inner?;
        let mut tables = self.tables.write().unwrap();
        let fh = tables.next_fh;
        tables.next_fh += 1;
        tables.files.insert(
            fh,
            OpenFile {
                inner: Some(inner),
                node,
                flags,
                dir,
            },
        );
        self.write_down(
            &tables,
            &[Record::Opened {
                fh,
                node,
                flags,
                dir,
            }],
        );
        Some(fh)
    }

    fn released(&self, fh: Handle) -> io::Result<Handle> {
        let mut tables = self.tables.write().unwrap();
        match tables.files.remove(&fh) {
            Some(file) => {
                self.write_down(&tables, &[Record::Released { fh }]);
                file.inner.map_or_else(|| errno(libc::ESTALE), Ok)
            }
            None => errno(libc::EBADF),
        }
    }

    fn forget_node(&self, id: Inode, count: u64) -> Option<Inode> {
        let mut tables = self.tables.write().unwrap();
        let node = tables.nodes.get_mut(&id)?;
        node.lookups = node.lookups.saturating_sub(count);
        if node.lookups > 0 {
            return None;
        }
        let node = tables.nodes.remove(&id)?;
        tables.unname(id, &node);
        if let Some(inner) = node.inner {
            tables.by_inner.remove(&inner);
        }
        self.write_down(&tables, &[Record::Forgotten { id }]);
        node.inner
    }

    /// `name` in `parent` is gone: the node there (if any) keeps its number, not its name.
    fn unlinked(&self, parent: Inode, name: &CStr) {
        let mut tables = self.tables.write().unwrap();
        tables.by_name.remove(&(parent, name.to_owned()));
    }
}

impl<F: FileSystem<Inode = Inode, Handle = Handle>> FileSystem for DurableFs<F> {
    type Inode = Inode;
    type Handle = Handle;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        let options = self.inner.init(capable)?;
        let mut tables = self.tables.write().unwrap();
        let record = Record::Init {
            capable: capable.bits(),
        };
        tables.apply(record.clone());
        if let Some(journal) = &self.journal {
            journal.lock().unwrap().rewrite(&[record]);
        }
        Ok(options)
    }

    fn destroy(&self) {
        self.inner.destroy();
        let mut tables = self.tables.write().unwrap();
        *tables = Tables::new();
        if let Some(journal) = &self.journal {
            journal.lock().unwrap().rewrite(&[]);
        }
    }

    fn lookup(&self, ctx: &Context, parent: Inode, name: &CStr) -> io::Result<Entry> {
        let entry = self.inner.lookup(ctx, self.node(parent)?, name)?;
        Ok(self.entry(parent, name, entry))
    }

    fn forget(&self, ctx: &Context, inode: Inode, count: u64) {
        if let Some(inner) = self.forget_node(inode, count) {
            self.inner.forget(ctx, inner, 1);
        }
    }

    fn batch_forget(&self, ctx: &Context, requests: Vec<(Inode, u64)>) {
        for (inode, count) in requests {
            self.forget(ctx, inode, count);
        }
    }

    fn getattr(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Option<Handle>,
    ) -> io::Result<(stat64, Duration)> {
        self.inner
            .getattr(ctx, self.node(inode)?, self.optional_file(handle)?)
    }

    fn setattr(
        &self,
        ctx: &Context,
        inode: Inode,
        attr: stat64,
        handle: Option<Handle>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        self.inner.setattr(
            ctx,
            self.node(inode)?,
            attr,
            self.optional_file(handle)?,
            valid,
        )
    }

    fn readlink(&self, ctx: &Context, inode: Inode) -> io::Result<Vec<u8>> {
        self.inner.readlink(ctx, self.node(inode)?)
    }

    fn symlink(
        &self,
        ctx: &Context,
        linkname: &CStr,
        parent: Inode,
        name: &CStr,
    ) -> io::Result<Entry> {
        let parent_inner = self.node(parent)?;
        let made = self.inner.symlink(ctx, linkname, parent_inner, name);
        let entry = if done_before(&made, libc::EEXIST, "SYMLINK") {
            self.inner.lookup(ctx, parent_inner, name)?
        } else {
            made?
        };
        Ok(self.entry(parent, name, entry))
    }

    fn mknod(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &CStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        let parent_inner = self.node(parent)?;
        let made = self.inner.mknod(ctx, parent_inner, name, mode, rdev, umask);
        let entry = if done_before(&made, libc::EEXIST, "MKNOD") {
            self.inner.lookup(ctx, parent_inner, name)?
        } else {
            made?
        };
        Ok(self.entry(parent, name, entry))
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &CStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        let parent_inner = self.node(parent)?;
        let made = self.inner.mkdir(ctx, parent_inner, name, mode, umask);
        let entry = if done_before(&made, libc::EEXIST, "MKDIR") {
            self.inner.lookup(ctx, parent_inner, name)?
        } else {
            made?
        };
        Ok(self.entry(parent, name, entry))
    }

    fn unlink(&self, ctx: &Context, parent: Inode, name: &CStr) -> io::Result<()> {
        let removed = self.inner.unlink(ctx, self.node(parent)?, name);
        if !done_before(&removed, libc::ENOENT, "UNLINK") {
            removed?;
        }
        self.unlinked(parent, name);
        Ok(())
    }

    fn rmdir(&self, ctx: &Context, parent: Inode, name: &CStr) -> io::Result<()> {
        let removed = self.inner.rmdir(ctx, self.node(parent)?, name);
        if !done_before(&removed, libc::ENOENT, "RMDIR") {
            removed?;
        }
        self.unlinked(parent, name);
        Ok(())
    }

    fn rename(
        &self,
        ctx: &Context,
        olddir: Inode,
        oldname: &CStr,
        newdir: Inode,
        newname: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        let renamed = self.inner.rename(
            ctx,
            self.node(olddir)?,
            oldname,
            self.node(newdir)?,
            newname,
            flags,
        );
        if done_before(&renamed, libc::ENOENT, "RENAME") {
            return Ok(());
        }
        renamed?;
        let mut tables = self.tables.write().unwrap();
        let old_key = (olddir, oldname.to_owned());
        let new_key = (newdir, newname.to_owned());
        let moved = tables.by_name.get(&old_key).copied();
        let target = tables.by_name.get(&new_key).copied();
        let mut records = Vec::new();
        if flags & libc::RENAME_EXCHANGE != 0 {
            if let Some(id) = target {
                tables.rename(id, olddir, oldname.to_owned());
                records.push(Record::Renamed {
                    id,
                    parent: olddir,
                    name: oldname.to_owned(),
                });
            }
        } else {
            tables.by_name.remove(&new_key);
        }
        if let Some(id) = moved {
            if tables.by_name.get(&old_key) == Some(&id) {
                tables.by_name.remove(&old_key);
            }
            tables.rename(id, newdir, newname.to_owned());
            records.push(Record::Renamed {
                id,
                parent: newdir,
                name: newname.to_owned(),
            });
        }
        self.write_down(&tables, &records);
        Ok(())
    }

    fn link(
        &self,
        ctx: &Context,
        inode: Inode,
        newparent: Inode,
        newname: &CStr,
    ) -> io::Result<Entry> {
        let newparent_inner = self.node(newparent)?;
        let made = self
            .inner
            .link(ctx, self.node(inode)?, newparent_inner, newname);
        let entry = if done_before(&made, libc::EEXIST, "LINK") {
            self.inner.lookup(ctx, newparent_inner, newname)?
        } else {
            made?
        };
        Ok(self.entry(newparent, newname, entry))
    }

    fn open(
        &self,
        ctx: &Context,
        inode: Inode,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<(Option<Handle>, OpenOptions, Option<u32>)> {
        let (fh, options, passthrough) =
            self.inner.open(ctx, self.node(inode)?, flags, fuse_flags)?;
        Ok((self.opened(fh, inode, flags, false), options, passthrough))
    }

    fn create(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &CStr,
        args: CreateIn,
    ) -> io::Result<(Entry, Option<Handle>, OpenOptions, Option<u32>)> {
        let flags = args.flags;
        let parent_inner = self.node(parent)?;
        let made = self.inner.create(ctx, parent_inner, name, args);
        let (entry, fh, options, passthrough) = if done_before(&made, libc::EEXIST, "CREATE") {
            let entry = self.inner.lookup(ctx, parent_inner, name)?;
            let reopen = flags & !((libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC) as u32);
            match self.inner.open(ctx, entry.inode, reopen, args.fuse_flags) {
                Ok((fh, options, passthrough)) => (entry, fh, options, passthrough),
                Err(error) => {
                    self.inner.forget(ctx, entry.inode, 1);
                    return Err(error);
                }
            }
        } else {
            made?
        };
        let entry = self.entry(parent, name, entry);
        let fh = self.opened(fh, entry.inode, flags, false);
        Ok((entry, fh, options, passthrough))
    }

    fn read(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        flags: u32,
    ) -> io::Result<usize> {
        self.inner.read(
            ctx,
            self.node(inode)?,
            self.file(handle)?,
            w,
            size,
            offset,
            lock_owner,
            flags,
        )
    }

    fn write(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        r: &mut dyn ZeroCopyReader,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        delayed_write: bool,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<usize> {
        self.inner.write(
            ctx,
            self.node(inode)?,
            self.file(handle)?,
            r,
            size,
            offset,
            lock_owner,
            delayed_write,
            flags,
            fuse_flags,
        )
    }

    fn flush(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        lock_owner: u64,
    ) -> io::Result<()> {
        self.inner
            .flush(ctx, self.node(inode)?, self.file(handle)?, lock_owner)
    }

    fn fsync(&self, ctx: &Context, inode: Inode, datasync: bool, handle: Handle) -> io::Result<()> {
        self.inner
            .fsync(ctx, self.node(inode)?, datasync, self.file(handle)?)
    }

    fn fallocate(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        self.inner.fallocate(
            ctx,
            self.node(inode)?,
            self.file(handle)?,
            mode,
            offset,
            length,
        )
    }

    fn release(
        &self,
        ctx: &Context,
        inode: Inode,
        flags: u32,
        handle: Handle,
        flush: bool,
        flock_release: bool,
        lock_owner: Option<u64>,
    ) -> io::Result<()> {
        let node = self.node(inode);
        let inner = self.released(handle)?;
        self.inner
            .release(ctx, node?, flags, inner, flush, flock_release, lock_owner)
    }

    fn statfs(&self, ctx: &Context, inode: Inode) -> io::Result<statvfs64> {
        self.inner.statfs(ctx, self.node(inode)?)
    }

    fn setxattr(
        &self,
        ctx: &Context,
        inode: Inode,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        self.inner
            .setxattr(ctx, self.node(inode)?, name, value, flags)
    }

    fn getxattr(
        &self,
        ctx: &Context,
        inode: Inode,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        self.inner.getxattr(ctx, self.node(inode)?, name, size)
    }

    fn listxattr(&self, ctx: &Context, inode: Inode, size: u32) -> io::Result<ListxattrReply> {
        self.inner.listxattr(ctx, self.node(inode)?, size)
    }

    fn removexattr(&self, ctx: &Context, inode: Inode, name: &CStr) -> io::Result<()> {
        self.inner.removexattr(ctx, self.node(inode)?, name)
    }

    fn opendir(
        &self,
        ctx: &Context,
        inode: Inode,
        flags: u32,
    ) -> io::Result<(Option<Handle>, OpenOptions)> {
        let (fh, options) = self.inner.opendir(ctx, self.node(inode)?, flags)?;
        Ok((self.opened(fh, inode, flags, true), options))
    }

    fn readdir(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
    ) -> io::Result<()> {
        self.inner.readdir(
            ctx,
            self.node(inode)?,
            self.file(handle)?,
            size,
            offset,
            add_entry,
        )
    }

    fn readdirplus(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>,
    ) -> io::Result<()> {
        let mut extra = Vec::new();
        let result = self.inner.readdirplus(
            ctx,
            self.node(inode)?,
            self.file(handle)?,
            size,
            offset,
            &mut |dir_entry, mut entry| {
                let name = CString::new(dir_entry.name)
                    .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
                let inner = entry.inode;
                let before = extra.len();
                self.adopt(inode, &name, &mut entry, &mut extra);
                // A node already known gave its extra reference to `extra`.
                let known = extra.len() > before;
                let id = entry.inode;
                let added = add_entry(dir_entry, entry)?;
                if added == 0 && inner != 0 && inner != ROOT {
                    // Not sent: the passthrough gives its reference back itself; undo ours.
                    if known {
                        extra.pop();
                        let mut tables = self.tables.write().unwrap();
                        if let Some(node) = tables.nodes.get_mut(&id) {
                            node.lookups = node.lookups.saturating_sub(1);
                        }
                    } else if self.forget_node(id, 1).is_none() {
                        log::debug!("node {id} was looked up meanwhile");
                    }
                }
                Ok(added)
            },
        );
        self.give_back(extra);
        result
    }

    fn fsyncdir(
        &self,
        ctx: &Context,
        inode: Inode,
        datasync: bool,
        handle: Handle,
    ) -> io::Result<()> {
        self.inner
            .fsyncdir(ctx, self.node(inode)?, datasync, self.file(handle)?)
    }

    fn releasedir(
        &self,
        ctx: &Context,
        inode: Inode,
        flags: u32,
        handle: Handle,
    ) -> io::Result<()> {
        let node = self.node(inode);
        let inner = self.released(handle)?;
        self.inner.releasedir(ctx, node?, flags, inner)
    }

    fn setupmapping(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        foffset: u64,
        len: u64,
        flags: u64,
        moffset: u64,
        vu_req: &mut dyn FsCacheReqHandler,
    ) -> io::Result<()> {
        let _ = (ctx, inode, handle, foffset, len, flags, moffset, vu_req);
        errno(libc::ENOSYS)
    }

    fn removemapping(
        &self,
        ctx: &Context,
        inode: Inode,
        requests: Vec<RemovemappingOne>,
        vu_req: &mut dyn FsCacheReqHandler,
    ) -> io::Result<()> {
        let _ = (ctx, inode, requests, vu_req);
        errno(libc::ENOSYS)
    }

    fn access(&self, ctx: &Context, inode: Inode, mask: u32) -> io::Result<()> {
        self.inner.access(ctx, self.node(inode)?, mask)
    }

    fn lseek(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        offset: u64,
        whence: u32,
    ) -> io::Result<u64> {
        self.inner
            .lseek(ctx, self.node(inode)?, self.file(handle)?, offset, whence)
    }

    fn getlk(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<FileLock> {
        self.inner.getlk(
            ctx,
            self.node(inode)?,
            self.file(handle)?,
            owner,
            lock,
            flags,
        )
    }

    fn setlk(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<()> {
        self.inner.setlk(
            ctx,
            self.node(inode)?,
            self.file(handle)?,
            owner,
            lock,
            flags,
        )
    }

    fn setlkw(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<()> {
        self.inner.setlkw(
            ctx,
            self.node(inode)?,
            self.file(handle)?,
            owner,
            lock,
            flags,
        )
    }

    fn ioctl(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        flags: u32,
        cmd: u32,
        data: IoctlData,
        out_size: u32,
    ) -> io::Result<IoctlData<'_>> {
        self.inner.ioctl(
            ctx,
            self.node(inode)?,
            self.file(handle)?,
            flags,
            cmd,
            data,
            out_size,
        )
    }

    fn bmap(&self, ctx: &Context, inode: Inode, block: u64, blocksize: u32) -> io::Result<u64> {
        self.inner.bmap(ctx, self.node(inode)?, block, blocksize)
    }

    fn poll(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        khandle: Handle,
        flags: u32,
        events: u32,
    ) -> io::Result<u32> {
        self.inner.poll(
            ctx,
            self.node(inode)?,
            self.file(handle)?,
            khandle,
            flags,
            events,
        )
    }

    fn notify_reply(&self) -> io::Result<()> {
        self.inner.notify_reply()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuse_backend_rs::passthrough::{Config, PassthroughFs};

    fn passthrough(dir: &Path) -> PassthroughFs<()> {
        PassthroughFs::<()>::new(Config {
            root_dir: dir.to_str().unwrap().to_owned(),
            do_import: true,
            ..Default::default()
        })
        .unwrap()
    }

    fn place(path: &Path) -> JournalPlace {
        JournalPlace::locate(path).unwrap()
    }

    fn name(text: &str) -> CString {
        CString::new(text).unwrap()
    }

    fn errno_of<T: std::fmt::Debug>(result: io::Result<T>) -> i32 {
        result.unwrap_err().raw_os_error().unwrap()
    }

    type Fs = DurableFs<PassthroughFs<()>>;

    fn lookup(fs: &Fs, parent: u64, text: &str) -> u64 {
        fs.lookup(&Context::default(), parent, &name(text))
            .unwrap()
            .inode
    }

    fn size(fs: &Fs, inode: u64, fh: Option<u64>) -> i64 {
        fs.getattr(&Context::default(), inode, fh)
            .unwrap()
            .0
            .st_size
    }

    #[test]
    fn a_new_server_answers_the_old_servers_nodes_and_handles() {
        let share = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let journal = state.path().join("fs0.nodes");
        let root = share.path();
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(root.join("d/f"), b"hello").unwrap();
        std::fs::write(root.join("g"), b"moved").unwrap();
        std::fs::write(root.join("lost"), b"old").unwrap();
        let ctx = Context::default();

        let fs = DurableFs::new(passthrough(root), Some(place(&journal))).unwrap();
        fs.init(FsOptions::empty()).unwrap();
        let d = lookup(&fs, ROOT, "d");
        let f = lookup(&fs, d, "f");
        let (fh, _, _) = fs.open(&ctx, f, libc::O_RDWR as u32, 0).unwrap();
        let fh = fh.unwrap();
        let g = lookup(&fs, ROOT, "g");
        fs.rename(&ctx, ROOT, &name("g"), d, &name("h"), 0).unwrap();
        let create = CreateIn {
            flags: (libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC) as u32,
            mode: 0o644,
            umask: 0,
            fuse_flags: 0,
        };
        let (entry, created_fh, _, _) = fs.create(&ctx, d, &name("new"), create).unwrap();
        let (created, created_fh) = (entry.inode, created_fh.unwrap());
        let (dir_fh, _) = fs.opendir(&ctx, d, libc::O_RDONLY as u32).unwrap();
        let lost = lookup(&fs, ROOT, "lost");
        // What the guest holds, and on the host meanwhile: data in the created file, and
        // another file under the name `lost`.
        std::fs::write(root.join("d/new"), b"written").unwrap();
        std::fs::remove_file(root.join("lost")).unwrap();
        std::fs::write(root.join("lost"), b"another").unwrap();
        let ids = [d, f, g, created, lost];
        drop(fs);

        let (fs, restored) = DurableFs::restore(passthrough(root), place(&journal)).unwrap();
        assert_eq!(
            restored,
            Restored {
                nodes: 4,
                lost_nodes: 1,
                files: 3,
                lost_files: 0
            }
        );
        assert_eq!(size(&fs, f, Some(fh)), 5);
        assert_eq!(size(&fs, g, None), 5, "the renamed file");
        // Reopened without O_TRUNC: the data written since is still there.
        assert_eq!(size(&fs, created, Some(created_fh)), 7);
        assert_eq!(std::fs::read(root.join("d/new")).unwrap(), b"written");
        assert!(fs.fsyncdir(&ctx, d, false, dir_fh.unwrap()).is_ok());
        assert_eq!(errno_of(fs.getattr(&ctx, lost, None)), libc::ESTALE);
        // The same names lead to the same numbers; new nodes get new ones.
        assert_eq!(lookup(&fs, d, "f"), f);
        assert_eq!(lookup(&fs, d, "h"), g);
        let fresh = lookup(&fs, ROOT, "lost");
        assert!(!ids.contains(&fresh), "{fresh} reused");
        fs.release(&ctx, f, 0, fh, false, false, None).unwrap();
        assert_eq!(errno_of(fs.getattr(&ctx, f, Some(fh))), libc::EBADF);

        // A second takeover finds the same again, minus what was released.
        drop(fs);
        let (_, again) = DurableFs::restore(passthrough(root), place(&journal)).unwrap();
        assert_eq!(
            again,
            Restored {
                nodes: 5,
                lost_nodes: 1,
                files: 2,
                lost_files: 0
            }
        );
    }

    #[test]
    fn readdirplus_counts_only_the_entries_the_kernel_took() {
        let share = tempfile::tempdir().unwrap();
        for file in ["a", "b", "c"] {
            std::fs::write(share.path().join(file), file).unwrap();
        }
        let ctx = Context::default();
        let fs = DurableFs::new(passthrough(share.path()), None).unwrap();
        fs.init(FsOptions::empty()).unwrap();
        let known = lookup(&fs, ROOT, "b");
        let (dir, _) = fs.opendir(&ctx, ROOT, libc::O_RDONLY as u32).unwrap();
        let mut taken = Vec::new();
        fs.readdirplus(
            &ctx,
            ROOT,
            dir.unwrap(),
            4096,
            0,
            &mut |dir_entry, entry| {
                if dir_entry.name.starts_with(b".") || !taken.is_empty() {
                    return Ok(0);
                }
                taken.push(entry.inode);
                Ok(1)
            },
        )
        .unwrap();
        assert_eq!(taken.len(), 1);
        let nodes: Vec<u64> = fs.tables.read().unwrap().nodes.keys().copied().collect();
        let mut expected = vec![known, taken[0]];
        expected.dedup();
        let mut nodes = nodes;
        nodes.sort();
        expected.sort();
        assert_eq!(
            nodes, expected,
            "only the node taken and the one known are left"
        );
        // One forget per lookup takes each away, and the passthrough still has each.
        if taken[0] == known {
            fs.forget(&ctx, known, 1);
        }
        assert_eq!(size(&fs, known, None), 1);
        fs.forget(&ctx, known, 1);
        assert_eq!(errno_of(fs.getattr(&ctx, known, None)), libc::EBADF);
        if taken[0] != known {
            assert_eq!(size(&fs, taken[0], None), 1);
            fs.forget(&ctx, taken[0], 1);
        }
        assert!(fs.tables.read().unwrap().nodes.is_empty());
        // The passthrough's references were given back too: the names look up afresh.
        assert!(lookup(&fs, ROOT, "b") > 0);
    }

    #[test]
    fn the_journal_goes_with_the_device() {
        let share = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let path = state.path().join("fs0.nodes");
        let fs = DurableFs::new(passthrough(share.path()), Some(place(&path))).unwrap();
        assert!(path.exists());
        fs.journal().unwrap().remove().unwrap();
        assert!(!path.exists());
        assert!(
            DurableFs::new(passthrough(share.path()), None)
                .unwrap()
                .journal()
                .is_none()
        );
    }

    #[test]
    fn a_node_goes_once_every_lookup_is_forgotten() {
        let share = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let journal = state.path().join("j.nodes");
        std::fs::write(share.path().join("a"), b"a").unwrap();
        let ctx = Context::default();
        let fs = DurableFs::new(passthrough(share.path()), Some(place(&journal))).unwrap();
        fs.init(FsOptions::empty()).unwrap();
        let a = lookup(&fs, ROOT, "a");
        assert_eq!(lookup(&fs, ROOT, "a"), a);
        fs.forget(&ctx, a, 1);
        assert_eq!(size(&fs, a, None), 1);
        fs.batch_forget(&ctx, vec![(a, 1)]);
        assert_eq!(errno_of(fs.getattr(&ctx, a, None)), libc::EBADF);
        drop(fs);
        let (_, restored) = DurableFs::restore(passthrough(share.path()), place(&journal)).unwrap();
        assert_eq!(restored, Restored::default());
    }

    #[test]
    fn a_request_run_again_answers_as_done_what_the_first_run_did() {
        let share = tempfile::tempdir().unwrap();
        std::fs::create_dir(share.path().join("made")).unwrap();
        let ctx = Context::default();
        let fs = DurableFs::new(passthrough(share.path()), None).unwrap();
        fs.init(FsOptions::empty()).unwrap();
        let gone = name("gone");
        // A first run: the errors stand.
        assert_eq!(errno_of(fs.unlink(&ctx, ROOT, &gone)), libc::ENOENT);
        assert_eq!(
            errno_of(fs.mkdir(&ctx, ROOT, &name("made"), 0o755, 0)),
            libc::EEXIST
        );
        // Run again after a takeover: the removal and the creation were done.
        running_again(true, || {
            fs.unlink(&ctx, ROOT, &gone).unwrap();
            fs.rmdir(&ctx, ROOT, &gone).unwrap();
            fs.rename(&ctx, ROOT, &gone, ROOT, &name("new"), 0).unwrap();
            let made = fs.mkdir(&ctx, ROOT, &name("made"), 0o755, 0).unwrap();
            assert_eq!(made.inode, lookup(&fs, ROOT, "made"));
            // Other errors still stand.
            assert_eq!(errno_of(fs.unlink(&ctx, ROOT, &name("made"))), libc::EISDIR);
        });
        assert_eq!(errno_of(fs.unlink(&ctx, ROOT, &gone)), libc::ENOENT);
    }

    #[test]
    fn records_read_back_and_a_torn_last_one_is_dropped() {
        let records = vec![
            Record::Init { capable: 0x1234 },
            Record::Node {
                id: 2,
                parent: 1,
                ino: 77,
                name: name("a file\nwith a newline"),
            },
            Record::Renamed {
                id: 2,
                parent: 1,
                name: name("b"),
            },
            Record::Opened {
                fh: 9,
                node: 2,
                flags: 2,
                dir: false,
            },
            Record::Released { fh: 9 },
            Record::Forgotten { id: 2 },
        ];
        let bytes = Journal::bytes(&[], &records);
        assert_eq!(Record::decode_all(&bytes).unwrap(), records);
        for cut in 1..=9 {
            let decoded = Record::decode_all(&bytes[..bytes.len() - cut]).unwrap();
            assert_eq!(decoded, records[..records.len() - 1], "cut {cut}");
        }
        assert!(
            Record::decode_all(&[42])
                .unwrap_err()
                .contains("unknown record kind 42")
        );
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
    fn a_takeover_restores_only_the_last_mount_of_a_journal_that_grew() {
        let share = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let path = state.path().join("j.nodes");
        std::fs::write(share.path().join("a"), b"a").unwrap();
        std::fs::write(share.path().join("b"), b"b").unwrap();
        let fs = DurableFs::new(passthrough(share.path()), Some(place(&path))).unwrap();
        // From here the journal cannot be replaced: INIT and DESTROY append.
        std::fs::create_dir(state.path().join("j.nodes.new")).unwrap();
        fs.init(FsOptions::empty()).unwrap();
        lookup(&fs, ROOT, "a");
        lookup(&fs, ROOT, "b");
        fs.destroy();
        fs.init(FsOptions::empty()).unwrap();
        let b = lookup(&fs, ROOT, "b");
        drop(fs);
        std::fs::remove_dir(state.path().join("j.nodes.new")).unwrap();
        let (fs, restored) = DurableFs::restore(passthrough(share.path()), place(&path)).unwrap();
        // The first mount's nodes are gone with its DESTROY: only b, under its new number.
        assert_eq!(
            restored,
            Restored {
                nodes: 1,
                ..Restored::default()
            }
        );
        assert_eq!(fs.tables.read().unwrap().nodes.len(), 1);
        assert_eq!(size(&fs, b, None), 1);
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

    #[test]
    fn nothing_is_written_once_the_journal_is_removed() {
        let share = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let path = state.path().join("j.nodes");
        std::fs::write(share.path().join("a"), b"a").unwrap();
        let fs = DurableFs::new(passthrough(share.path()), Some(place(&path))).unwrap();
        fs.init(FsOptions::empty()).unwrap();
        fs.journal().unwrap().remove().unwrap();
        // A request after the removal (the device is gone) writes nowhere and faults not.
        assert!(lookup(&fs, ROOT, "a") > ROOT);
        assert!(!path.exists());
    }

    #[test]
    fn a_file_that_is_no_journal_is_refused_by_name() {
        let state = tempfile::tempdir().unwrap();
        let share = tempfile::tempdir().unwrap();
        let path = state.path().join("fs0.nodes");
        std::fs::write(&path, b"something else").unwrap();
        let error = DurableFs::restore(passthrough(share.path()), place(&path)).unwrap_err();
        assert!(error.contains("fs0.nodes is not a node journal"), "{error}");
        let missing =
            DurableFs::restore(passthrough(share.path()), place(&state.path().join("none")))
                .unwrap_err();
        assert!(missing.contains("cannot read"), "{missing}");
    }
}
