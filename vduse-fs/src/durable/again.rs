//! Requests run again: a request a killed server had in flight comes to the server taking
//! over once more, and may have been carried out already. [`Replayed`] is the view of a
//! [`DurableFs`] such requests are served through (the pool hands them to a FUSE server of
//! their own), so that what a replayed request must know travels with it: the view
//! answers as done a change whose second run fails only because the first one happened.

use std::ffi::CStr;
use std::io;
use std::sync::Arc;

use fuse_backend_rs::abi::fuse_abi::{CreateIn, OpenOptions};
use fuse_backend_rs::api::filesystem::{Context, Entry, FileSystem};

use super::layer::{DurableFs, Handle, Inode};
use crate::forward::{Layer, forward};

/// `fs` as it serves the requests a killed server had in flight: a removal or rename
/// answered ENOENT and a creation answered EEXIST were done by the first run, and are
/// answered as such; every other request and answer is `fs`'s own.
pub struct Replayed<F> {
    fs: Arc<DurableFs<F>>,
}

impl<F> Replayed<F> {
    /// The view of `fs` for requests run again.
    pub fn new(fs: Arc<DurableFs<F>>) -> Self {
        Self { fs }
    }
}

impl<F> std::fmt::Debug for Replayed<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Replayed").field(&self.fs).finish()
    }
}

/// Whether `result` is the error a request that a killed server carried out gets when it
/// runs again (`errno`: ENOENT for a removal or rename, EEXIST for a creation); then it
/// was done, and is answered as such.
fn done_before<T>(result: &io::Result<T>, errno: i32, what: &str) -> bool {
    let done = matches!(result, Err(error) if error.raw_os_error() == Some(errno));
    if done {
        log::info!("{what} run again after a takeover had been done: answered as done");
    }
    done
}

impl<F: FileSystem<Inode = Inode, Handle = Handle>> Layer for Replayed<F> {
    type Inner = DurableFs<F>;

    fn inner_fs(&self) -> &DurableFs<F> {
        &self.fs
    }

    fn inner_node(&self, inode: Inode) -> io::Result<Inode> {
        Ok(inode)
    }

    fn inner_handle(&self, handle: Handle) -> io::Result<Handle> {
        Ok(handle)
    }
}

#[deny(clippy::missing_trait_methods)]
impl<F: FileSystem<Inode = Inode, Handle = Handle>> FileSystem for Replayed<F> {
    type Inode = Inode;
    type Handle = Handle;

    forward! {
        init, destroy, lookup, forget, batch_forget, getattr, setattr, readlink, open, read,
        write, flush, fsync, fallocate, release, statfs, setxattr, getxattr, listxattr,
        removexattr, opendir, readdir, readdirplus, fsyncdir, releasedir, setupmapping,
        removemapping, access, lseek, getlk, setlk, setlkw, ioctl, bmap, poll, notify_reply,
        id_remap,
    }

    // A creation run again finds what the first run made: its answer is that entry.

    fn symlink(
        &self,
        ctx: &Context,
        linkname: &CStr,
        parent: Inode,
        name: &CStr,
    ) -> io::Result<Entry> {
        let made = self.fs.symlink(ctx, linkname, parent, name);
        if done_before(&made, libc::EEXIST, "SYMLINK") {
            return self.fs.lookup(ctx, parent, name);
        }
        made
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
        let made = self.fs.mknod(ctx, parent, name, mode, rdev, umask);
        if done_before(&made, libc::EEXIST, "MKNOD") {
            return self.fs.lookup(ctx, parent, name);
        }
        made
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &CStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        let made = self.fs.mkdir(ctx, parent, name, mode, umask);
        if done_before(&made, libc::EEXIST, "MKDIR") {
            return self.fs.lookup(ctx, parent, name);
        }
        made
    }

    fn link(
        &self,
        ctx: &Context,
        inode: Inode,
        newparent: Inode,
        newname: &CStr,
    ) -> io::Result<Entry> {
        let made = self.fs.link(ctx, inode, newparent, newname);
        if done_before(&made, libc::EEXIST, "LINK") {
            return self.fs.lookup(ctx, newparent, newname);
        }
        made
    }

    /// The file the first run made is opened as the guest asked, less what a new file
    /// alone allows (`O_CREAT`, `O_EXCL`, `O_TRUNC`: the data written since stays).
    fn create(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &CStr,
        args: CreateIn,
    ) -> io::Result<(Entry, Option<Handle>, OpenOptions, Option<u32>)> {
        let made = self.fs.create(ctx, parent, name, args);
        if !done_before(&made, libc::EEXIST, "CREATE") {
            return made;
        }
        let fs = &*self.fs;
        let entry = fs.inner.lookup(ctx, fs.node(parent)?, name)?;
        let reopen = args.flags & !((libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC) as u32);
        let (fh, options, passthrough) =
            match fs.inner.open(ctx, entry.inode, reopen, args.fuse_flags) {
                Ok(opened) => opened,
                Err(error) => {
                    fs.inner.forget(ctx, entry.inode, 1);
                    return Err(error);
                }
            };
        let entry = fs.entry(parent, name, entry);
        let fh = fs.opened(fh, entry.inode, args.flags, false);
        Ok((entry, fh, options, passthrough))
    }

    // A removal or rename run again finds the name gone: the first run took it away.

    fn unlink(&self, ctx: &Context, parent: Inode, name: &CStr) -> io::Result<()> {
        let removed = self.fs.unlink(ctx, parent, name);
        if done_before(&removed, libc::ENOENT, "UNLINK") {
            self.fs.unlinked(parent, name);
            return Ok(());
        }
        removed
    }

    fn rmdir(&self, ctx: &Context, parent: Inode, name: &CStr) -> io::Result<()> {
        let removed = self.fs.rmdir(ctx, parent, name);
        if done_before(&removed, libc::ENOENT, "RMDIR") {
            self.fs.unlinked(parent, name);
            return Ok(());
        }
        removed
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
        let renamed = self.fs.rename(ctx, olddir, oldname, newdir, newname, flags);
        if done_before(&renamed, libc::ENOENT, "RENAME") {
            return Ok(());
        }
        renamed
    }
}
