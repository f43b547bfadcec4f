//! [`DurableFs`]: the layer itself, which hands the guest numbers of its own, maps them to
//! the inner filesystem's, writes each change down, and restores them from the journal
//! after a takeover.

use std::ffi::CStr;
use std::io;
use std::sync::{Arc, Mutex, RwLock};

use fuse_backend_rs::abi::fuse_abi::FsOptions;
use fuse_backend_rs::api::filesystem::{Context, Entry, FileSystem};

use super::journal::{Journal, JournalPlace, NodeJournal};
use super::record::Record;
use super::table::{Node, OpenFile, Tables};
use super::{ROOT, errno};

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
    pub(super) inner: F,
    pub(super) tables: RwLock<Tables>,
    pub(super) journal: Option<Arc<Mutex<Journal>>>,
}

impl<F> std::fmt::Debug for DurableFs<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableFs")
            .field("journal", &self.journal)
            .finish_non_exhaustive()
    }
}

pub(super) type Inode = u64;
pub(super) type Handle = u64;

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
        let shown = place.shown().to_owned();
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
    pub(super) fn node(&self, id: Inode) -> io::Result<Inode> {
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
    pub(super) fn file(&self, fh: Handle) -> io::Result<Handle> {
        match self.tables.read().unwrap().files.get(&fh) {
            Some(OpenFile {
                inner: Some(inner), ..
            }) => Ok(*inner),
            Some(_) => errno(libc::ESTALE),
            None => errno(libc::EBADF),
        }
    }

    pub(super) fn write_down(&self, tables: &Tables, records: &[Record]) {
        if let Some(journal) = &self.journal {
            journal.lock().unwrap().append(tables, records);
        }
    }

    /// Gives `entry` (the passthrough's answer for `name` in `parent`) the guest's number:
    /// a node already known counts one more lookup (and gives the passthrough's extra
    /// reference back through `give_back`), a new one is numbered and journaled.
    pub(super) fn adopt(
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

    pub(super) fn give_back(&self, inner: Vec<Inode>) {
        for inode in inner {
            self.inner.forget(&Context::default(), inode, 1);
        }
    }

    pub(super) fn entry(&self, parent: Inode, name: &CStr, mut entry: Entry) -> Entry {
        let mut extra = Vec::new();
        self.adopt(parent, name, &mut entry, &mut extra);
        self.give_back(extra);
        entry
    }

    pub(super) fn opened(
        &self,
        inner: Option<Handle>,
        node: Inode,
        flags: u32,
        dir: bool,
    ) -> Option<Handle> {
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

    pub(super) fn released(&self, fh: Handle) -> io::Result<Handle> {
        let mut tables = self.tables.write().unwrap();
        match tables.files.remove(&fh) {
            Some(file) => {
                self.write_down(&tables, &[Record::Released { fh }]);
                file.inner.map_or_else(|| errno(libc::ESTALE), Ok)
            }
            None => errno(libc::EBADF),
        }
    }

    pub(super) fn forget_node(&self, id: Inode, count: u64) -> Option<Inode> {
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
    pub(super) fn unlinked(&self, parent: Inode, name: &CStr) {
        let mut tables = self.tables.write().unwrap();
        tables.by_name.remove(&(parent, name.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::path::Path;

    use fuse_backend_rs::abi::fuse_abi::CreateIn;
    use fuse_backend_rs::passthrough::{Config, PassthroughFs};

    use super::super::Replayed;
    use super::*;

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
        std::fs::write(share.path().join("kept"), b"written").unwrap();
        let ctx = Context::default();
        let fs = Arc::new(DurableFs::new(passthrough(share.path()), None).unwrap());
        fs.init(FsOptions::empty()).unwrap();
        let gone = name("gone");
        let create = CreateIn {
            flags: (libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC) as u32,
            mode: 0o644,
            umask: 0,
            fuse_flags: 0,
        };
        // A first run: the errors stand.
        assert_eq!(errno_of(fs.unlink(&ctx, ROOT, &gone)), libc::ENOENT);
        assert_eq!(
            errno_of(fs.mkdir(&ctx, ROOT, &name("made"), 0o755, 0)),
            libc::EEXIST
        );
        assert_eq!(
            errno_of(fs.create(&ctx, ROOT, &name("kept"), create)),
            libc::EEXIST
        );
        // Run again after a takeover: the removal and the creation were done.
        let again = Replayed::new(fs.clone());
        again.unlink(&ctx, ROOT, &gone).unwrap();
        again.rmdir(&ctx, ROOT, &gone).unwrap();
        again
            .rename(&ctx, ROOT, &gone, ROOT, &name("new"), 0)
            .unwrap();
        let made = again.mkdir(&ctx, ROOT, &name("made"), 0o755, 0).unwrap();
        assert_eq!(made.inode, lookup(&fs, ROOT, "made"));
        // The file made is opened, not truncated.
        let (kept, fh, _, _) = again.create(&ctx, ROOT, &name("kept"), create).unwrap();
        assert_eq!(kept.inode, lookup(&fs, ROOT, "kept"));
        assert_eq!(size(&fs, kept.inode, fh), 7);
        // Other errors still stand.
        assert_eq!(
            errno_of(again.unlink(&ctx, ROOT, &name("made"))),
            libc::EISDIR
        );
        // Requests that come for the first time are not answered as done.
        assert_eq!(errno_of(fs.unlink(&ctx, ROOT, &gone)), libc::ENOENT);
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
