//! [`ExportFs`]: fuse-backend-rs's passthrough filesystem with the two export options it
//! lacks: a read-only export, and submount announcement.
//!
//! Every call is handed to the passthrough; the wrapper only refuses what a read-only
//! export must not do (with `EROFS`, before the host is touched) and marks the entries that
//! are mount points on the host, so the guest gives them a device number of their own.

use std::ffi::CStr;
use std::io;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{
    CreateIn, FsOptions, OpenOptions, SetattrValid, stat64, statvfs64,
};
use fuse_backend_rs::abi::virtio_fs::RemovemappingOne;
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileLock, FileSystem, GetxattrReply, IoctlData, ListxattrReply,
    ZeroCopyReader, ZeroCopyWriter,
};
use fuse_backend_rs::passthrough::PassthroughFs;

/// The passthrough's inode and handle numbers.
type Inode = u64;
type Handle = u64;
use fuse_backend_rs::transport::FsCacheReqHandler;

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

impl FileSystem for ExportFs {
    type Inode = Inode;
    type Handle = Handle;

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

    fn destroy(&self) {
        self.inner.destroy()
    }

    fn lookup(&self, ctx: &Context, parent: Inode, name: &CStr) -> io::Result<Entry> {
        let mut entry = self.inner.lookup(&self.caller(ctx), parent, name)?;
        self.mark_submount(ctx, parent, &mut entry);
        Ok(entry)
    }

    fn forget(&self, ctx: &Context, inode: Inode, count: u64) {
        self.inner.forget(&self.caller(ctx), inode, count)
    }

    fn batch_forget(&self, ctx: &Context, requests: Vec<(Inode, u64)>) {
        self.inner.batch_forget(&self.caller(ctx), requests)
    }

    fn getattr(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Option<Handle>,
    ) -> io::Result<(stat64, Duration)> {
        self.inner.getattr(&self.caller(ctx), inode, handle)
    }

    fn setattr(
        &self,
        ctx: &Context,
        inode: Inode,
        attr: stat64,
        handle: Option<Handle>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        self.refuse_writes()?;
        self.inner
            .setattr(&self.caller(ctx), inode, attr, handle, valid)
    }

    fn readlink(&self, ctx: &Context, inode: Inode) -> io::Result<Vec<u8>> {
        self.inner.readlink(&self.caller(ctx), inode)
    }

    fn symlink(
        &self,
        ctx: &Context,
        linkname: &CStr,
        parent: Inode,
        name: &CStr,
    ) -> io::Result<Entry> {
        self.refuse_writes()?;
        self.inner
            .symlink(&self.caller(ctx), linkname, parent, name)
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
        self.refuse_writes()?;
        self.inner
            .mknod(&self.caller(ctx), parent, name, mode, rdev, umask)
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &CStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        self.refuse_writes()?;
        self.inner
            .mkdir(&self.caller(ctx), parent, name, mode, umask)
    }

    fn unlink(&self, ctx: &Context, parent: Inode, name: &CStr) -> io::Result<()> {
        self.refuse_writes()?;
        self.inner.unlink(&self.caller(ctx), parent, name)
    }

    fn rmdir(&self, ctx: &Context, parent: Inode, name: &CStr) -> io::Result<()> {
        self.refuse_writes()?;
        self.inner.rmdir(&self.caller(ctx), parent, name)
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
        self.refuse_writes()?;
        self.inner
            .rename(&self.caller(ctx), olddir, oldname, newdir, newname, flags)
    }

    fn link(
        &self,
        ctx: &Context,
        inode: Inode,
        newparent: Inode,
        newname: &CStr,
    ) -> io::Result<Entry> {
        self.refuse_writes()?;
        self.inner
            .link(&self.caller(ctx), inode, newparent, newname)
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

    fn create(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &CStr,
        args: CreateIn,
    ) -> io::Result<(Entry, Option<Handle>, OpenOptions, Option<u32>)> {
        self.refuse_writes()?;
        self.inner.create(&self.caller(ctx), parent, name, args)
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
            &self.caller(ctx),
            inode,
            handle,
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
        self.refuse_writes()?;
        self.inner.write(
            &self.caller(ctx),
            inode,
            handle,
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
            .flush(&self.caller(ctx), inode, handle, lock_owner)
    }

    fn fsync(&self, ctx: &Context, inode: Inode, datasync: bool, handle: Handle) -> io::Result<()> {
        self.inner.fsync(&self.caller(ctx), inode, datasync, handle)
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
        self.refuse_writes()?;
        self.inner
            .fallocate(&self.caller(ctx), inode, handle, mode, offset, length)
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
        self.inner.release(
            &self.caller(ctx),
            inode,
            flags,
            handle,
            flush,
            flock_release,
            lock_owner,
        )
    }

    fn statfs(&self, ctx: &Context, inode: Inode) -> io::Result<statvfs64> {
        let mut stat = self.inner.statfs(&self.caller(ctx), inode)?;
        if self.read_only {
            stat.f_flag |= libc::ST_RDONLY;
        }
        Ok(stat)
    }

    fn setxattr(
        &self,
        ctx: &Context,
        inode: Inode,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        self.refuse_writes()?;
        self.inner
            .setxattr(&self.caller(ctx), inode, name, value, flags)
    }

    fn getxattr(
        &self,
        ctx: &Context,
        inode: Inode,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        self.inner.getxattr(&self.caller(ctx), inode, name, size)
    }

    fn listxattr(&self, ctx: &Context, inode: Inode, size: u32) -> io::Result<ListxattrReply> {
        self.inner.listxattr(&self.caller(ctx), inode, size)
    }

    fn removexattr(&self, ctx: &Context, inode: Inode, name: &CStr) -> io::Result<()> {
        self.refuse_writes()?;
        self.inner.removexattr(&self.caller(ctx), inode, name)
    }

    fn opendir(
        &self,
        ctx: &Context,
        inode: Inode,
        flags: u32,
    ) -> io::Result<(Option<Handle>, OpenOptions)> {
        self.inner.opendir(&self.caller(ctx), inode, flags)
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
        self.inner
            .readdir(&self.caller(ctx), inode, handle, size, offset, add_entry)
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

    fn fsyncdir(
        &self,
        ctx: &Context,
        inode: Inode,
        datasync: bool,
        handle: Handle,
    ) -> io::Result<()> {
        self.inner
            .fsyncdir(&self.caller(ctx), inode, datasync, handle)
    }

    fn releasedir(
        &self,
        ctx: &Context,
        inode: Inode,
        flags: u32,
        handle: Handle,
    ) -> io::Result<()> {
        self.inner
            .releasedir(&self.caller(ctx), inode, flags, handle)
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

    fn lseek(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        offset: u64,
        whence: u32,
    ) -> io::Result<u64> {
        self.inner
            .lseek(&self.caller(ctx), inode, handle, offset, whence)
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
        self.inner
            .getlk(&self.caller(ctx), inode, handle, owner, lock, flags)
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
        self.inner
            .setlk(&self.caller(ctx), inode, handle, owner, lock, flags)
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
        self.inner
            .setlkw(&self.caller(ctx), inode, handle, owner, lock, flags)
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
        self.inner
            .ioctl(&self.caller(ctx), inode, handle, flags, cmd, data, out_size)
    }

    fn bmap(&self, ctx: &Context, inode: Inode, block: u64, blocksize: u32) -> io::Result<u64> {
        self.inner.bmap(&self.caller(ctx), inode, block, blocksize)
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
        self.inner
            .poll(&self.caller(ctx), inode, handle, khandle, flags, events)
    }

    fn notify_reply(&self) -> io::Result<()> {
        self.inner.notify_reply()
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
