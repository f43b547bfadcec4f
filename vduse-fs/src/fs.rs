//! [`ExportFs`]: fuse-backend-rs's passthrough filesystem with the two export options it
//! lacks: a read-only export, and submount announcement.
//!
//! Every call is handed to the passthrough; the wrapper only refuses what a read-only
//! export must not do (with `EROFS`, before the host is touched) and marks the entries that
//! are mount points on the host, so the guest gives them a device number of their own.

use std::ffi::CStr;
use std::io;

use fuse_backend_rs::abi::fuse_abi::{FsOptions, OpenOptions, statvfs64};
use fuse_backend_rs::abi::virtio_fs::RemovemappingOne;
use fuse_backend_rs::api::filesystem::{Context, DirEntry, Entry, FileSystem};
use fuse_backend_rs::passthrough::PassthroughFs;
use fuse_backend_rs::transport::FsCacheReqHandler;

use crate::forward::{Layer, forward};

/// The passthrough's inode and handle numbers.
type Inode = u64;
type Handle = u64;

/// `FUSE_ATTR_SUBMOUNT`: the entry is the root of a mount on the server's side.
const FUSE_ATTR_SUBMOUNT: u32 = 1 << 0;

/// Options every export takes when the guest's kernel offers them: requests of up to
/// 1 MiB (`MAX_PAGES`, `BIG_WRITES`), reads and direct I/O in parallel, lookups in one
/// directory in parallel, and page cache invalidation when a file changes on the host.
const STREAMLINED: FsOptions = FsOptions::ASYNC_READ
    .union(FsOptions::BIG_WRITES)
    .union(FsOptions::MAX_PAGES)
    .union(FsOptions::ASYNC_DIO)
    .union(FsOptions::PARALLEL_DIROPS)
    .union(FsOptions::AUTO_INVAL_DATA);

/// The exported directory, as the guest sees it.
pub struct ExportFs {
    inner: PassthroughFs<()>,
    read_only: bool,
    announce_submounts: bool,
    one_user: Option<(libc::uid_t, libc::gid_t)>,
}

impl std::fmt::Debug for ExportFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportFs")
            .field("read_only", &self.read_only)
            .field("announce_submounts", &self.announce_submounts)
            .field("one_user", &self.one_user)
            .finish_non_exhaustive()
    }
}

fn erofs<T>() -> io::Result<T> {
    Err(io::Error::from_raw_os_error(libc::EROFS))
}

/// Whether `open(2)` flags ask for more than reading.
fn opens_for_writing(flags: u32) -> bool {
    let flags = flags as i32;
    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0
}

impl ExportFs {
    /// Serves `inner`; `read_only` refuses every change, `announce_submounts` marks host
    /// mount points.
    pub fn new(inner: PassthroughFs<()>, read_only: bool, announce_submounts: bool) -> Self {
        Self {
            inner,
            read_only,
            announce_submounts,
            one_user: None,
        }
    }

    /// Serves every request as the user and group the server runs as (`user:`), whoever
    /// the guest's caller is. The passthrough switches to the caller's ids for each request
    /// unless the caller is root, and an unprivileged server may not switch: so every
    /// caller is presented as root, and the host's permission checks are the server's own.
    pub fn serving_as(mut self, uid: libc::uid_t, gid: libc::gid_t) -> Self {
        self.one_user = Some((uid, gid));
        self
    }

    /// The caller the passthrough acts for: the guest's, or root when serving as one user.
    fn caller(&self, ctx: &Context) -> Context {
        match self.one_user {
            Some(_) => Context {
                uid: 0,
                gid: 0,
                pid: ctx.pid,
            },
            None => *ctx,
        }
    }

    /// The caller ACCESS checks against: when serving as one user, that user (the
    /// passthrough's check lets root read and write anything).
    fn access_caller(&self, ctx: &Context) -> Context {
        match self.one_user {
            Some((uid, gid)) => Context {
                uid,
                gid,
                pid: ctx.pid,
            },
            None => *ctx,
        }
    }

    fn refuse_writes(&self) -> io::Result<()> {
        if self.read_only { erofs() } else { Ok(()) }
    }

    /// Marks `entry` a submount when it lies on another host file system than `parent`.
    fn mark_submount(&self, ctx: &Context, parent: Inode, entry: &mut Entry) {
        if !self.announce_submounts || entry.inode == 0 {
            return;
        }
        if let Ok((parent_attr, _)) = self.inner.getattr(&self.caller(ctx), parent, None) {
            if parent_attr.st_dev != entry.attr.st_dev
                && entry.attr.st_mode & libc::S_IFMT == libc::S_IFDIR
            {
                entry.attr_flags |= FUSE_ATTR_SUBMOUNT;
            }
        }
    }
}

impl Layer for ExportFs {
    type Inner = PassthroughFs<()>;

    fn inner_fs(&self) -> &PassthroughFs<()> {
        &self.inner
    }

    fn inner_caller(&self, ctx: &Context) -> Context {
        self.caller(ctx)
    }

    fn inner_node(&self, inode: Inode) -> io::Result<Inode> {
        Ok(inode)
    }

    fn inner_handle(&self, handle: Handle) -> io::Result<Handle> {
        Ok(handle)
    }

    fn may_change(&self) -> io::Result<()> {
        self.refuse_writes()
    }
}

#[deny(clippy::missing_trait_methods)]
impl FileSystem for ExportFs {
    type Inode = Inode;
    type Handle = Handle;

    forward! {
        destroy, forget, batch_forget, getattr, setattr, readlink, symlink, mknod, mkdir,
        unlink, rmdir, rename, link, create, read, write, flush, fsync, fallocate, release,
        setxattr, getxattr, listxattr, removexattr, opendir, readdir, fsyncdir, releasedir,
        lseek, getlk, setlk, setlkw, ioctl, bmap, poll, notify_reply, id_remap,
    }

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        let mut options = self.inner.init(capable)?;
        // What the passthrough serves but does not ask for. Without BIG_WRITES and
        // MAX_PAGES the kernel sends writes of at most 8 KiB (measured on 7.3: 4 KiB per
        // WRITE, 2.7 MiB/s); without ASYNC_DIO an O_DIRECT AIO waits for each request.
        options |= capable & STREAMLINED;
        if self.read_only {
            options.remove(FsOptions::WRITEBACK_CACHE);
        }
        if self.announce_submounts && capable.contains(FsOptions::SUBMOUNTS) {
            options |= FsOptions::SUBMOUNTS;
        }
        Ok(options)
    }

    fn lookup(&self, ctx: &Context, parent: Inode, name: &CStr) -> io::Result<Entry> {
        let mut entry = self.inner.lookup(&self.caller(ctx), parent, name)?;
        self.mark_submount(ctx, parent, &mut entry);
        Ok(entry)
    }

    fn open(
        &self,
        ctx: &Context,
        inode: Inode,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<(Option<Handle>, OpenOptions, Option<u32>)> {
        if opens_for_writing(flags) {
            self.refuse_writes()?;
        }
        self.inner.open(&self.caller(ctx), inode, flags, fuse_flags)
    }

    fn statfs(&self, ctx: &Context, inode: Inode) -> io::Result<statvfs64> {
        let mut stat = self.inner.statfs(&self.caller(ctx), inode)?;
        if self.read_only {
            stat.f_flag |= libc::ST_RDONLY;
        }
        Ok(stat)
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
        if !self.announce_submounts {
            return self.inner.readdirplus(
                &self.caller(ctx),
                inode,
                handle,
                size,
                offset,
                add_entry,
            );
        }
        self.inner.readdirplus(
            &self.caller(ctx),
            inode,
            handle,
            size,
            offset,
            &mut |dir_entry, mut entry| {
                self.mark_submount(ctx, inode, &mut entry);
                add_entry(dir_entry, entry)
            },
        )
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
        // No DAX window: a VDUSE device has no shared memory region.
        let _ = (ctx, inode, handle, foffset, len, flags, moffset, vu_req);
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }

    fn removemapping(
        &self,
        ctx: &Context,
        inode: Inode,
        requests: Vec<RemovemappingOne>,
        vu_req: &mut dyn FsCacheReqHandler,
    ) -> io::Result<()> {
        let _ = (ctx, inode, requests, vu_req);
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }

    fn access(&self, ctx: &Context, inode: Inode, mask: u32) -> io::Result<()> {
        if mask as i32 & libc::W_OK != 0 {
            self.refuse_writes()?;
        }
        self.inner.access(&self.access_caller(ctx), inode, mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_for_writing_is_any_write_mode_or_truncation() {
        assert!(!opens_for_writing(libc::O_RDONLY as u32));
        assert!(!opens_for_writing(
            (libc::O_RDONLY | libc::O_NOFOLLOW) as u32
        ));
        assert!(opens_for_writing(libc::O_WRONLY as u32));
        assert!(opens_for_writing(libc::O_RDWR as u32));
        assert!(opens_for_writing((libc::O_RDONLY | libc::O_TRUNC) as u32));
    }
}
