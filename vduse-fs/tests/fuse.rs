//! FUSE requests, laid out byte for byte as the Linux virtio-fs driver sends them, handed
//! through virtio descriptor chains (built with virtio-queue's `MockSplitQueue`) to
//! `serve_request` over a passthrough of a temporary directory. The replies are read back
//! from guest memory and checked against the host directory. No kernel involved.
//!
//! Every test exports `export/` of a fresh temporary directory, next to a file
//! `outside-secret` that no request may reach.

mod common;

use std::cell::Cell;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{IN_HEADER_LEN, OUT_HEADER_LEN, message, pieces, readable, writable};
use fuse_backend_rs::abi::fuse_abi::{
    AttrOut, CreateIn, EntryOut, FsOptions, GetattrIn, InitIn, InitIn2, InitOut, Kstatfs, MkdirIn,
    Opcode, OpenIn, OpenOut, OutHeader, ReadIn, ReleaseIn, RenameIn, SetattrIn, WriteIn, WriteOut,
};
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::passthrough::{Config, PassthroughFs};
use tempfile::TempDir;
use vduse::backend::Memory;
use vduse_fs::backend::{FsServer, serve_request};
use vduse_fs::durable::DurableFs;
use vduse_fs::fs::ExportFs;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Address, ByteValued, Bytes, GuestAddress};

const MEMORY_SIZE: usize = 4 << 20;
const QUEUE_SIZE: u16 = 16;
/// Where requests are written (device-readable).
const REQUEST_AT: u64 = 0x10_0000;
/// Where replies land (device-writable), and how much room they get.
const REPLY_AT: u64 = 0x20_0000;
const REPLY_ROOM: u32 = 0x10_0000;

const HELLO: &[u8] = b"hello from the host\n";
const SECRET: &[u8] = b"outside the export: never served\n";

/// `arg`'s bytes followed by each of `names`, NUL-terminated.
fn args<T: ByteValued>(arg: T, names: &[&str]) -> Vec<u8> {
    let mut body = arg.as_slice().to_vec();
    body.extend_from_slice(&name_list(names));
    body
}

/// `names`, each NUL-terminated.
fn name_list(names: &[&str]) -> Vec<u8> {
    let mut body = Vec::new();
    for name in names {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
    }
    body
}

/// A reply as read back from guest memory.
#[derive(Debug)]
struct Reply {
    header: OutHeader,
    payload: Vec<u8>,
}

impl Reply {
    fn error(&self) -> i32 {
        self.header.error
    }

    /// Asserts the request succeeded.
    fn ok(self) -> Self {
        assert_eq!(self.header.error, 0, "the request failed: {self:?}");
        self
    }

    /// Asserts the request failed with `errno` and carried nothing else.
    fn assert_error(&self, errno: i32) {
        assert_eq!(
            self.header.error, -errno,
            "expected errno {errno}: {self:?}"
        );
        assert!(self.payload.is_empty());
    }

    /// The reply's payload as `T` (its first `size_of::<T>()` bytes).
    fn obj<T: ByteValued + Default>(&self) -> T {
        self.obj_at(0)
    }

    /// The `T` at `offset` in the reply's payload.
    fn obj_at<T: ByteValued + Default>(&self, offset: usize) -> T {
        let mut value = T::default();
        let end = offset + value.as_slice().len();
        assert!(
            self.payload.len() >= end,
            "reply too short for the struct: {self:?}"
        );
        value
            .as_mut_slice()
            .copy_from_slice(&self.payload[offset..end]);
        value
    }
}

/// A passthrough of `export/` in a temporary directory, its FUSE server and guest memory.
struct Export {
    dir: TempDir,
    server: FsServer,
    memory: Memory,
    unique: Cell<u64>,
}

impl Export {
    /// A read-write export, initialized.
    fn new() -> Self {
        let export = Self::unstarted(false, false);
        export.init(0).ok();
        export
    }

    /// A read-only export, initialized.
    fn read_only() -> Self {
        let export = Self::unstarted(true, false);
        export.init(0).ok();
        export
    }

    /// An export that has not been sent INIT yet. The tree:
    ///
    /// ```text
    /// outside-secret
    /// export/hello.txt
    /// export/sub/inner.txt
    /// export/escape    -> ../outside-secret
    /// export/absolute  -> <absolute path of outside-secret>
    /// export/up        -> ..
    /// ```
    fn unstarted(read_only: bool, writeback: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("export");
        fs::create_dir(&root).unwrap();
        fs::write(dir.path().join("outside-secret"), SECRET).unwrap();
        fs::write(root.join("hello.txt"), HELLO).unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("sub/inner.txt"), b"inner\n").unwrap();
        symlink("../outside-secret", root.join("escape")).unwrap();
        symlink(dir.path().join("outside-secret"), root.join("absolute")).unwrap();
        symlink("..", root.join("up")).unwrap();

        let passthrough = PassthroughFs::<()>::new(Config {
            root_dir: root.to_str().unwrap().to_owned(),
            do_import: true,
            writeback,
            ..Default::default()
        })
        .unwrap();
        let memory = Memory::from_ranges(&[(GuestAddress(0), MEMORY_SIZE)]).unwrap();
        Self {
            dir,
            server: Server::new(Arc::new(
                DurableFs::new(ExportFs::new(passthrough, read_only, false), None).unwrap(),
            )),
            memory,
            unique: Cell::new(0),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("export")
    }

    fn outside(&self) -> PathBuf {
        self.dir.path().join("outside-secret")
    }

    fn next_unique(&self) -> u64 {
        self.unique.set(self.unique.get() + 1);
        self.unique.get()
    }

    /// Hands one chain made of `descriptors` to `serve_request`; returns the used length.
    fn serve(&self, descriptors: &[RawDescriptor]) -> u32 {
        let queue = MockSplitQueue::create(&self.memory, GuestAddress(0), QUEUE_SIZE);
        // An empty available ring, so the chain is the first one popped.
        self.memory
            .write_obj(0u16, queue.avail_addr().unchecked_add(2))
            .unwrap();
        let chain = queue.build_desc_chain(descriptors).unwrap();
        serve_request(&self.server, &self.memory, chain)
    }

    /// Writes `request` at `REQUEST_AT`, clears the reply area, and serves a chain whose
    /// readable part is cut at `request_cuts` and whose writable part is the buffers of
    /// `reply_sizes`, one after another from `REPLY_AT`. Returns the used length.
    fn exchange(&self, request: &[u8], request_cuts: &[usize], reply_sizes: &[u32]) -> u32 {
        self.memory
            .write_slice(request, GuestAddress(REQUEST_AT))
            .unwrap();
        self.memory
            .write_slice(&vec![0; REPLY_ROOM as usize], GuestAddress(REPLY_AT))
            .unwrap();
        let mut descriptors = pieces(REQUEST_AT, request.len(), request_cuts, readable);
        let mut at = REPLY_AT;
        for &size in reply_sizes {
            descriptors.push(writable(at, size));
            at += u64::from(size);
        }
        self.serve(&descriptors)
    }

    /// Reads the reply of `used` bytes at `REPLY_AT`, checking its header against `used`.
    fn reply(&self, used: u32) -> Reply {
        assert!(
            used as usize >= OUT_HEADER_LEN,
            "no reply (used length {used})"
        );
        let header: OutHeader = self.memory.read_obj(GuestAddress(REPLY_AT)).unwrap();
        assert_eq!(header.len, used, "the out header's len is the used length");
        let mut payload = vec![0; used as usize - OUT_HEADER_LEN];
        self.memory
            .read_slice(&mut payload, GuestAddress(REPLY_AT + OUT_HEADER_LEN as u64))
            .unwrap();
        Reply { header, payload }
    }

    /// Sends one request as the Linux driver lays it out (the in header in a buffer of its
    /// own, the out header too) and returns its reply, whose `unique` must be the request's.
    fn call(&self, opcode: Opcode, nodeid: u64, body: &[u8]) -> Reply {
        self.call_raw(opcode as u32, nodeid, body)
    }

    fn call_raw(&self, opcode: u32, nodeid: u64, body: &[u8]) -> Reply {
        let unique = self.next_unique();
        let request = message(opcode, unique, nodeid, body);
        let used = self.exchange(
            &request,
            &[IN_HEADER_LEN],
            &[OUT_HEADER_LEN as u32, REPLY_ROOM - OUT_HEADER_LEN as u32],
        );
        let reply = self.reply(used);
        assert_eq!(
            reply.header.unique, unique,
            "the reply echoes the request's unique"
        );
        reply
    }

    /// INIT at protocol 7.31 with the usual flags and `extra` ones.
    fn init(&self, extra: u64) -> Reply {
        let flags = FsOptions::ASYNC_READ
            | FsOptions::BIG_WRITES
            | FsOptions::DO_READDIRPLUS
            | FsOptions::READDIRPLUS_AUTO
            | FsOptions::PARALLEL_DIROPS
            | FsOptions::MAX_PAGES;
        let init = InitIn {
            major: 7,
            minor: 31,
            max_readahead: 128 << 10,
            flags: (flags.bits() | extra) as u32,
        };
        self.call(Opcode::Init, 0, init.as_slice())
    }

    fn lookup(&self, parent: u64, name: &str) -> Reply {
        self.call(Opcode::Lookup, parent, &name_list(&[name]))
    }

    /// LOOKUP that must succeed.
    fn entry(&self, parent: u64, name: &str) -> EntryOut {
        let entry: EntryOut = self.lookup(parent, name).ok().obj();
        assert_ne!(entry.nodeid, 0);
        entry
    }

    fn getattr(&self, node: u64) -> Reply {
        self.call(Opcode::Getattr, node, GetattrIn::default().as_slice())
    }

    fn open(&self, node: u64, flags: i32) -> Reply {
        let open = OpenIn {
            flags: flags as u32,
            fuse_flags: 0,
        };
        self.call(Opcode::Open, node, open.as_slice())
    }

    /// OPEN that must succeed; returns the handle.
    fn handle(&self, node: u64, flags: i32) -> u64 {
        self.open(node, flags).ok().obj::<OpenOut>().fh
    }

    fn read(&self, node: u64, fh: u64, offset: u64, size: u32) -> Reply {
        let read = ReadIn {
            fh,
            offset,
            size,
            ..Default::default()
        };
        self.call(Opcode::Read, node, read.as_slice())
    }

    fn write(&self, node: u64, fh: u64, offset: u64, data: &[u8]) -> Reply {
        let write = WriteIn {
            fh,
            offset,
            size: data.len() as u32,
            ..Default::default()
        };
        let mut body = write.as_slice().to_vec();
        body.extend_from_slice(data);
        self.call(Opcode::Write, node, &body)
    }

    fn release(&self, node: u64, fh: u64) {
        let release = ReleaseIn {
            fh,
            ..Default::default()
        };
        let reply = self.call(Opcode::Release, node, release.as_slice()).ok();
        assert!(reply.payload.is_empty());
    }

    fn create(&self, parent: u64, name: &str, flags: i32) -> Reply {
        let create = CreateIn {
            flags: flags as u32,
            mode: libc::S_IFREG | 0o644,
            umask: 0o022,
            fuse_flags: 0,
        };
        self.call(Opcode::Create, parent, &args(create, &[name]))
    }

    fn mkdir(&self, parent: u64, name: &str) -> Reply {
        let mkdir = MkdirIn {
            mode: 0o755,
            umask: 0o022,
        };
        self.call(Opcode::Mkdir, parent, &args(mkdir, &[name]))
    }

    fn unlink(&self, parent: u64, name: &str) -> Reply {
        self.call(Opcode::Unlink, parent, &name_list(&[name]))
    }

    fn rename(&self, parent: u64, from: &str, to: &str) -> Reply {
        let rename = RenameIn { newdir: parent };
        self.call(Opcode::Rename, parent, &args(rename, &[from, to]))
    }
}

/// The file type bits of a mode.
fn file_type(mode: u32) -> u32 {
    mode & libc::S_IFMT
}

/// Everything a request could change under `dir`: each entry's path, mode, size, mtime and
/// contents (or link text), sorted.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u32, u64, i64, i64, Vec<u8>)> {
    let mut entries = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        let contents = if meta.is_file() {
            fs::read(&path).unwrap()
        } else if meta.is_symlink() {
            fs::read_link(&path)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else {
            pending.extend(
                fs::read_dir(&path)
                    .unwrap()
                    .map(|entry| entry.unwrap().path()),
            );
            Vec::new()
        };
        entries.push((
            path,
            meta.mode(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            contents,
        ));
    }
    entries.sort();
    entries
}

// ---------------------------------------------------------------------------------------
// INIT, LOOKUP, GETATTR

#[test]
fn init_answers_protocol_7_with_the_full_init_out() {
    let export = Export::unstarted(false, false);
    let reply = export.init(0).ok();
    assert_eq!(reply.payload.len(), std::mem::size_of::<InitOut>());
    let init: InitOut = reply.obj();
    assert_eq!(init.major, 7);
    assert!(init.minor >= 31, "minor {}", init.minor);
    assert_eq!(init.max_readahead, 128 << 10);
    assert!(init.max_write > 0);
    let flags = FsOptions::from_bits_truncate(u64::from(init.flags));
    assert!(flags.contains(FsOptions::DO_READDIRPLUS), "{flags:?}");
    assert!(
        !flags.contains(FsOptions::WRITEBACK_CACHE),
        "not asked for, not granted"
    );
}

#[test]
fn init_with_the_second_flags_word_is_understood() {
    let export = Export::unstarted(false, false);
    let init = InitIn {
        major: 7,
        minor: 38,
        max_readahead: 0,
        flags: (FsOptions::ASYNC_READ | FsOptions::INIT_EXT).bits() as u32,
    };
    let mut body = init.as_slice().to_vec();
    body.extend_from_slice(InitIn2::default().as_slice());
    let reply = export.call(Opcode::Init, 0, &body).ok();
    assert_eq!(reply.obj::<InitOut>().major, 7);
    // The export is usable after it.
    export.entry(1, "hello.txt");
}

#[test]
fn lookup_reports_the_host_file() {
    let export = Export::new();
    let host = fs::metadata(export.root().join("hello.txt")).unwrap();
    let reply = export.lookup(1, "hello.txt").ok();
    assert_eq!(reply.payload.len(), std::mem::size_of::<EntryOut>());
    let entry: EntryOut = reply.obj();
    assert!(entry.nodeid > 1, "a node of its own: {}", entry.nodeid);
    assert_eq!(entry.attr.size, HELLO.len() as u64);
    assert_eq!(entry.attr.size, host.size());
    assert_eq!(entry.attr.mode, host.mode());
    assert_eq!(entry.attr.ino, host.ino());
    assert_eq!(entry.attr.nlink, 1);

    // The same name again: the same node.
    assert_eq!(export.entry(1, "hello.txt").nodeid, entry.nodeid);

    // A directory, and a file inside it.
    let sub = export.entry(1, "sub");
    assert_eq!(file_type(sub.attr.mode), libc::S_IFDIR);
    let inner = export.entry(sub.nodeid, "inner.txt");
    assert_eq!(
        inner.attr.ino,
        fs::metadata(export.root().join("sub/inner.txt"))
            .unwrap()
            .ino()
    );
}

#[test]
fn lookup_of_a_missing_name_is_enoent() {
    let export = Export::new();
    export.lookup(1, "no-such-file").assert_error(libc::ENOENT);
    let sub = export.entry(1, "sub");
    export
        .lookup(sub.nodeid, "hello.txt")
        .assert_error(libc::ENOENT);
}

#[test]
fn getattr_of_a_looked_up_node_matches_the_host() {
    let export = Export::new();
    let entry = export.entry(1, "hello.txt");
    let reply = export.getattr(entry.nodeid).ok();
    assert_eq!(reply.payload.len(), std::mem::size_of::<AttrOut>());
    let attr = reply.obj::<AttrOut>().attr;
    let host = fs::metadata(export.root().join("hello.txt")).unwrap();
    assert_eq!(
        (attr.ino, attr.size, attr.mode),
        (host.ino(), host.size(), host.mode())
    );
    assert_eq!((attr.uid, attr.gid), (host.uid(), host.gid()));
    assert_eq!(attr.mtime as i64, host.mtime());

    // The root is node 1 and is the exported directory.
    let root = export.getattr(1).ok().obj::<AttrOut>().attr;
    assert_eq!(root.ino, fs::metadata(export.root()).unwrap().ino());
    assert_eq!(file_type(root.mode), libc::S_IFDIR);

    // A change on the host shows.
    fs::write(
        export.root().join("hello.txt"),
        b"longer than it was before\n",
    )
    .unwrap();
    let attr = export.getattr(entry.nodeid).ok().obj::<AttrOut>().attr;
    assert_eq!(attr.size, 26);
}

// ---------------------------------------------------------------------------------------
// OPEN, READ, WRITE, CREATE, MKDIR, RENAME, UNLINK

#[test]
fn open_and_read_return_the_host_bytes() {
    let export = Export::new();
    let node = export.entry(1, "hello.txt").nodeid;
    let fh = export.handle(node, libc::O_RDONLY);

    let reply = export.read(node, fh, 0, 4096).ok();
    assert_eq!(reply.payload, HELLO);
    let reply = export.read(node, fh, 6, 4).ok();
    assert_eq!(reply.payload, b"from");
    let reply = export.read(node, fh, 1 << 20, 4096).ok();
    assert!(reply.payload.is_empty(), "past the end: nothing");
    export.release(node, fh);
}

#[test]
fn write_reaches_the_host_file() {
    let export = Export::new();
    let node = export.entry(1, "hello.txt").nodeid;
    let fh = export.handle(node, libc::O_RDWR);

    let reply = export.write(node, fh, 6, b"FROM").ok();
    assert_eq!(reply.payload.len(), std::mem::size_of::<WriteOut>());
    assert_eq!(reply.obj::<WriteOut>().size, 4);
    let reply = export.write(node, fh, HELLO.len() as u64, b"more\n").ok();
    assert_eq!(reply.obj::<WriteOut>().size, 5);
    export.release(node, fh);

    assert_eq!(
        fs::read(export.root().join("hello.txt")).unwrap(),
        b"hello FROM the host\nmore\n"
    );
    // And it reads back through the server.
    let fh = export.handle(node, libc::O_RDONLY);
    assert_eq!(
        export.read(node, fh, 0, 4096).ok().payload,
        b"hello FROM the host\nmore\n"
    );
    export.release(node, fh);
}

#[test]
fn create_mkdir_rename_and_unlink_change_the_host() {
    let export = Export::new();
    let root = export.root();

    let reply = export
        .create(1, "new.txt", libc::O_RDWR | libc::O_CREAT)
        .ok();
    let size = std::mem::size_of::<EntryOut>() + std::mem::size_of::<OpenOut>();
    assert_eq!(
        reply.payload.len(),
        size,
        "CREATE answers an entry and an open handle"
    );
    let entry: EntryOut = reply.obj();
    let open: OpenOut = reply.obj_at(std::mem::size_of::<EntryOut>());
    let host = fs::metadata(root.join("new.txt")).unwrap();
    assert_eq!(entry.attr.ino, host.ino());
    assert_eq!(file_type(entry.attr.mode), libc::S_IFREG);
    assert_eq!(host.mode() & 0o777, 0o644);
    assert_eq!(
        export
            .write(entry.nodeid, open.fh, 0, b"created")
            .ok()
            .obj::<WriteOut>()
            .size,
        7
    );
    export.release(entry.nodeid, open.fh);
    assert_eq!(fs::read(root.join("new.txt")).unwrap(), b"created");

    // CREATE with O_EXCL of an existing name.
    export
        .create(1, "hello.txt", libc::O_RDWR | libc::O_CREAT | libc::O_EXCL)
        .assert_error(libc::EEXIST);

    let dir: EntryOut = export.mkdir(1, "made").ok().obj();
    assert_eq!(file_type(dir.attr.mode), libc::S_IFDIR);
    assert!(root.join("made").is_dir());
    assert_eq!(dir.attr.ino, fs::metadata(root.join("made")).unwrap().ino());
    export.mkdir(1, "made").assert_error(libc::EEXIST);

    assert!(
        export
            .rename(1, "new.txt", "renamed.txt")
            .ok()
            .payload
            .is_empty()
    );
    assert!(!root.join("new.txt").exists());
    assert_eq!(fs::read(root.join("renamed.txt")).unwrap(), b"created");

    assert!(export.unlink(1, "renamed.txt").ok().payload.is_empty());
    assert!(!root.join("renamed.txt").exists());
    export.unlink(1, "renamed.txt").assert_error(libc::ENOENT);
    export.lookup(1, "renamed.txt").assert_error(libc::ENOENT);
}

// ---------------------------------------------------------------------------------------
// Escapes

#[test]
fn dotdot_at_the_root_is_the_root() {
    let export = Export::new();
    let root_ino = fs::metadata(export.root()).unwrap().ino();
    let parent_ino = fs::metadata(export.dir.path()).unwrap().ino();
    assert_ne!(root_ino, parent_ino);

    let up = export.entry(1, "..");
    assert_eq!(up.nodeid, 1, "the root's own node");
    assert_eq!(up.attr.ino, root_ino, "the export, not its parent");
    export
        .lookup(up.nodeid, "outside-secret")
        .assert_error(libc::ENOENT);
    export.entry(up.nodeid, "hello.txt");

    // Up from a subdirectory, then up again: still the root.
    let sub = export.entry(1, "sub");
    let up = export.entry(sub.nodeid, "..");
    assert_eq!((up.nodeid, up.attr.ino), (1, root_ino));
    let up = export.entry(up.nodeid, "..");
    assert_eq!((up.nodeid, up.attr.ino), (1, root_ino));
    export
        .lookup(up.nodeid, "outside-secret")
        .assert_error(libc::ENOENT);

    // "." is the root too.
    assert_eq!(export.entry(1, ".").attr.ino, root_ino);
}

#[test]
fn names_with_a_slash_are_einval() {
    let export = Export::new();
    for name in [
        "sub/inner.txt",
        "a/b",
        "../outside-secret",
        "/",
        "/etc",
        "sub/",
    ] {
        let reply = export.lookup(1, name);
        assert_eq!(reply.error(), -libc::EINVAL, "LOOKUP {name:?}: {reply:?}");
    }
    let sub = export.entry(1, "sub");
    export
        .lookup(sub.nodeid, "../../outside-secret")
        .assert_error(libc::EINVAL);
    export
        .create(1, "sub/x", libc::O_RDWR | libc::O_CREAT)
        .assert_error(libc::EINVAL);
    export.mkdir(1, "../made").assert_error(libc::EINVAL);
    export
        .unlink(1, "../outside-secret")
        .assert_error(libc::EINVAL);
    assert!(export.outside().exists());
    assert!(!export.dir.path().join("made").exists());
}

#[test]
fn a_symlink_out_of_the_export_is_a_link_the_server_does_not_follow() {
    let export = Export::new();
    for (name, target) in [
        ("escape", PathBuf::from("../outside-secret")),
        ("absolute", export.outside()),
    ] {
        let entry = export.entry(1, name);
        assert_eq!(file_type(entry.attr.mode), libc::S_IFLNK, "{name}");
        let host = fs::symlink_metadata(export.root().join(name)).unwrap();
        assert_eq!(entry.attr.ino, host.ino());
        assert_eq!(entry.attr.size, target.as_os_str().len() as u64);

        let reply = export.call(Opcode::Readlink, entry.nodeid, &[]).ok();
        assert_eq!(reply.payload, target.as_os_str().as_encoded_bytes());

        // The node is the link itself: it cannot be opened, read or changed through.
        for flags in [libc::O_RDONLY, libc::O_RDWR, libc::O_WRONLY | libc::O_TRUNC] {
            let reply = export.open(entry.nodeid, flags);
            assert!(reply.error() < 0, "OPEN {name} {flags:#o}: {reply:?}");
        }
        let reply = export.create(1, name, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC);
        assert!(reply.error() < 0, "CREATE over {name}: {reply:?}");
        let attr = export.getattr(entry.nodeid).ok().obj::<AttrOut>().attr;
        assert_eq!(file_type(attr.mode), libc::S_IFLNK);
    }
    assert_eq!(fs::read(export.outside()).unwrap(), SECRET);

    // A link to the parent cannot serve as a directory.
    let up = export.entry(1, "up");
    assert_eq!(file_type(up.attr.mode), libc::S_IFLNK);
    let reply = export.lookup(up.nodeid, "outside-secret");
    assert!(reply.error() < 0, "LOOKUP through a link: {reply:?}");
    let reply = export.create(up.nodeid, "planted", libc::O_RDWR | libc::O_CREAT);
    assert!(reply.error() < 0, "CREATE through a link: {reply:?}");
    assert!(!export.dir.path().join("planted").exists());
}

// ---------------------------------------------------------------------------------------
// Read-only exports

#[test]
fn a_read_only_export_refuses_every_change_with_erofs() {
    let export = Export::read_only();
    let before = snapshot(export.dir.path());
    let hello = export.entry(1, "hello.txt").nodeid;
    let sub = export.entry(1, "sub").nodeid;

    export
        .create(1, "new.txt", libc::O_RDWR | libc::O_CREAT)
        .assert_error(libc::EROFS);
    export
        .create(
            sub,
            "new.txt",
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        )
        .assert_error(libc::EROFS);
    export.mkdir(1, "made").assert_error(libc::EROFS);
    export.unlink(1, "hello.txt").assert_error(libc::EROFS);
    export
        .call(Opcode::Rmdir, 1, &name_list(&["sub"]))
        .assert_error(libc::EROFS);
    export
        .rename(1, "hello.txt", "moved.txt")
        .assert_error(libc::EROFS);
    export
        .call(Opcode::Symlink, 1, &name_list(&["link", "hello.txt"]))
        .assert_error(libc::EROFS);
    let link = fuse_backend_rs::abi::fuse_abi::LinkIn { oldnodeid: hello };
    export
        .call(Opcode::Link, 1, &args(link, &["hard"]))
        .assert_error(libc::EROFS);
    let truncate = SetattrIn {
        valid: fuse_backend_rs::abi::fuse_abi::SetattrValid::SIZE.bits(),
        size: 0,
        ..Default::default()
    };
    export
        .call(Opcode::Setattr, hello, truncate.as_slice())
        .assert_error(libc::EROFS);
    let chmod = SetattrIn {
        valid: fuse_backend_rs::abi::fuse_abi::SetattrValid::MODE.bits(),
        mode: libc::S_IFREG | 0o777,
        ..Default::default()
    };
    export
        .call(Opcode::Setattr, hello, chmod.as_slice())
        .assert_error(libc::EROFS);
    for flags in [
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_RDONLY | libc::O_TRUNC,
        libc::O_WRONLY | libc::O_APPEND,
    ] {
        let reply = export.open(hello, flags);
        assert_eq!(reply.error(), -libc::EROFS, "OPEN {flags:#o}: {reply:?}");
    }
    // A handle opened for reading cannot be written through.
    let fh = export.handle(hello, libc::O_RDONLY);
    export
        .write(hello, fh, 0, b"HELLO")
        .assert_error(libc::EROFS);
    export.release(hello, fh);

    assert_eq!(
        snapshot(export.dir.path()),
        before,
        "the host directory is unchanged"
    );
}

#[test]
fn a_read_only_export_still_reads() {
    let export = Export::read_only();
    let hello = export.entry(1, "hello.txt").nodeid;
    let fh = export.handle(hello, libc::O_RDONLY);
    assert_eq!(export.read(hello, fh, 0, 4096).ok().payload, HELLO);
    export.release(hello, fh);
    let attr = export.getattr(hello).ok().obj::<AttrOut>().attr;
    assert_eq!(attr.size, HELLO.len() as u64);

    // STATFS answers; `fuse_kstatfs` has no flags field, so ST_RDONLY cannot travel in it.
    let reply = export.call(Opcode::Statfs, 1, &[]).ok();
    assert_eq!(reply.payload.len(), std::mem::size_of::<Kstatfs>());
    let statfs: Kstatfs = reply.obj();
    assert!(statfs.bsize > 0 && statfs.namelen > 0, "{statfs:?}");
}

#[test]
fn a_read_only_export_never_grants_the_writeback_cache() {
    let writeback = FsOptions::WRITEBACK_CACHE.bits();
    let granted = |read_only| {
        let export = Export::unstarted(read_only, true);
        let init: InitOut = export.init(writeback).ok().obj();
        u64::from(init.flags) & writeback != 0
    };
    assert!(
        granted(false),
        "a read-write export with writeback grants it"
    );
    assert!(!granted(true));
}

// ---------------------------------------------------------------------------------------
// Chains a driver should never send

#[test]
fn a_request_shorter_than_the_in_header_gets_no_reply() {
    let export = Export::new();
    let request = message(
        Opcode::Getattr as u32,
        7,
        1,
        GetattrIn::default().as_slice(),
    );
    for len in [1, 20, IN_HEADER_LEN - 1] {
        let used = export.exchange(&request[..len], &[], &[4096]);
        assert_eq!(used, 0, "a {len}-byte request");
        let header: OutHeader = export.memory.read_obj(GuestAddress(REPLY_AT)).unwrap();
        assert_eq!(header.len, 0, "nothing written");
    }
    // Nor does a chain with no readable buffer at all.
    assert_eq!(export.serve(&[writable(REPLY_AT, 4096)]), 0);
    // The server still works.
    export.entry(1, "hello.txt");
}

#[test]
fn an_in_header_len_beyond_the_chain_does_no_harm() {
    let export = Export::new();
    for claimed in [IN_HEADER_LEN as u32 + 200, 1 << 20, u32::MAX] {
        let mut request = message(Opcode::Lookup as u32, 9, 1, &name_list(&["hello.txt"]));
        request[..4].copy_from_slice(&claimed.to_le_bytes());
        let used = export.exchange(&request, &[IN_HEADER_LEN], &[16, 4096]);
        if used != 0 {
            let reply = export.reply(used);
            assert!(reply.error() < 0, "len {claimed}: {reply:?}");
            assert_eq!(reply.header.unique, 9);
        }
    }
    // A len shorter than the header itself.
    for claimed in [0, 10, IN_HEADER_LEN as u32 - 1] {
        let mut request = message(Opcode::Lookup as u32, 10, 1, &name_list(&["hello.txt"]));
        request[..4].copy_from_slice(&claimed.to_le_bytes());
        let used = export.exchange(&request, &[], &[4096]);
        if used != 0 {
            assert!(export.reply(used).error() < 0, "len {claimed}");
        }
    }
    export.entry(1, "hello.txt");
}

#[test]
fn a_name_without_its_nul_is_refused() {
    let export = Export::new();
    let request = message(Opcode::Lookup as u32, 50, 1, b"hello.txt");
    let used = export.exchange(&request, &[IN_HEADER_LEN], &[16, 4096]);
    // fuse-backend-rs writes an EINVAL reply and then reports the request failed, so
    // `serve_request` answers 0 although the reply is in the buffer.
    let header: OutHeader = export.memory.read_obj(GuestAddress(REPLY_AT)).unwrap();
    assert_eq!(
        (header.error, header.unique),
        (-libc::EINVAL, 50),
        "{header:?}"
    );
    assert!(used == 0 || used == header.len, "used {used}, {header:?}");
}

#[test]
fn an_unknown_opcode_is_enosys() {
    let export = Export::new();
    for opcode in [9999, Opcode::MaxOpcode as u32, 0, 1 << 31] {
        export
            .call_raw(opcode, 1, &[0; 16])
            .assert_error(libc::ENOSYS);
    }
}

#[test]
fn a_request_without_room_for_its_reply_does_no_harm() {
    let export = Export::new();
    let node = export.entry(1, "hello.txt").nodeid;
    let fh = export.handle(node, libc::O_RDONLY);
    let requests = [
        message(
            Opcode::Getattr as u32,
            20,
            node,
            GetattrIn::default().as_slice(),
        ),
        message(Opcode::Lookup as u32, 21, 1, &name_list(&["hello.txt"])),
        message(Opcode::Lookup as u32, 22, 1, &name_list(&["missing"])),
        message(
            Opcode::Read as u32,
            23,
            node,
            ReadIn {
                fh,
                size: 4096,
                ..Default::default()
            }
            .as_slice(),
        ),
        message(Opcode::Statfs as u32, 24, 1, &[]),
        message(9999, 25, 1, &[]),
    ];
    for request in &requests {
        // No writable buffer at all.
        export
            .memory
            .write_slice(request, GuestAddress(REQUEST_AT))
            .unwrap();
        assert_eq!(
            export.serve(&[readable(REQUEST_AT, request.len() as u32)]),
            0
        );
        // Too little room for the header, or for the header and its payload.
        for room in [1, 8, OUT_HEADER_LEN as u32 + 8] {
            let used = export.exchange(request, &[], &[room]);
            assert!(used <= room, "used {used} of {room}");
            if used != 0 {
                assert!(export.reply(used).error() < 0);
            }
        }
    }
    // The handle and the server still work.
    assert_eq!(export.read(node, fh, 0, 4096).ok().payload, HELLO);
}

#[test]
fn buffers_outside_guest_memory_get_no_reply() {
    let export = Export::new();
    let request = message(
        Opcode::Getattr as u32,
        30,
        1,
        GetattrIn::default().as_slice(),
    );
    export
        .memory
        .write_slice(&request, GuestAddress(REQUEST_AT))
        .unwrap();
    let beyond = MEMORY_SIZE as u64 + 0x1000;
    assert_eq!(
        export.serve(&[readable(beyond, 56), writable(REPLY_AT, 4096)]),
        0
    );
    assert_eq!(
        export.serve(&[
            readable(REQUEST_AT, request.len() as u32),
            writable(beyond, 4096)
        ]),
        0
    );
    // Straddling the end of memory.
    let end = MEMORY_SIZE as u64 - 8;
    assert_eq!(
        export.serve(&[
            readable(REQUEST_AT, request.len() as u32),
            writable(end, 4096)
        ]),
        0
    );
}

#[test]
fn a_node_id_the_server_never_gave_is_refused() {
    let export = Export::new();
    for node in [0, 2, 12345, u64::MAX] {
        let reply = export.getattr(node);
        assert!(reply.error() < 0, "GETATTR {node}: {reply:?}");
        let reply = export.lookup(node, "hello.txt");
        assert!(reply.error() < 0, "LOOKUP in {node}: {reply:?}");
    }
}

#[test]
fn requests_and_replies_scattered_over_small_buffers() {
    let export = Export::new();
    let node = export.entry(1, "hello.txt").nodeid;
    let host = fs::metadata(export.root().join("hello.txt")).unwrap();

    // The in header cut mid-field, the reply in odd pieces.
    let request = message(
        Opcode::Getattr as u32,
        40,
        node,
        GetattrIn::default().as_slice(),
    );
    let used = export.exchange(&request, &[3, 13, 39, 41, 50], &[5, 11, 7, 33, 100]);
    let reply = export.reply(used).ok();
    assert_eq!(reply.header.unique, 40);
    let attr = reply.obj::<AttrOut>().attr;
    assert_eq!((attr.ino, attr.size), (host.ino(), host.size()));

    // A READ whose data is spread over several buffers.
    let fh = export.handle(node, libc::O_RDONLY);
    let read = ReadIn {
        fh,
        size: 4096,
        ..Default::default()
    };
    let request = message(Opcode::Read as u32, 41, node, read.as_slice());
    let used = export.exchange(&request, &[IN_HEADER_LEN], &[16, 3, 4, 5, 4096]);
    let reply = export.reply(used).ok();
    assert_eq!(reply.payload, HELLO);
    export.release(node, fh);
}
