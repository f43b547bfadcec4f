//! How [`DurableFs`] serves each FUSE request: every request goes to the inner filesystem
//! with the guest's numbers mapped to its own; the replies are mapped back and written
//! down. The requests that only map numbers are handed on by [`forward!`].

use std::ffi::{CStr, CString};
use std::io;

use fuse_backend_rs::abi::fuse_abi::{CreateIn, FsOptions, OpenOptions};
use fuse_backend_rs::abi::virtio_fs::RemovemappingOne;
use fuse_backend_rs::api::filesystem::{Context, DirEntry, Entry, FileSystem};
use fuse_backend_rs::transport::FsCacheReqHandler;

use super::layer::{DurableFs, Handle, Inode};
use super::record::Record;
use super::table::Tables;
use super::{ROOT, errno};
use crate::forward::{Layer, forward};

impl<F: FileSystem<Inode = Inode, Handle = Handle>> Layer for DurableFs<F> {
    type Inner = F;

    fn inner_fs(&self) -> &F {
        &self.inner
    }

    fn inner_node(&self, inode: Inode) -> io::Result<Inode> {
        self.node(inode)
    }

    fn inner_handle(&self, handle: Handle) -> io::Result<Handle> {
        self.file(handle)
    }
}

#[deny(clippy::missing_trait_methods)]
impl<F: FileSystem<Inode = Inode, Handle = Handle>> FileSystem for DurableFs<F> {
    type Inode = Inode;
    type Handle = Handle;

    forward! {
        getattr, setattr, readlink, read, write, flush, fsync, fallocate, statfs, setxattr,
        getxattr, listxattr, removexattr, readdir, fsyncdir, access, lseek, getlk, setlk,
        setlkw, ioctl, bmap, poll, notify_reply, id_remap,
    }

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

    fn symlink(
        &self,
        ctx: &Context,
        linkname: &CStr,
        parent: Inode,
        name: &CStr,
    ) -> io::Result<Entry> {
        let entry = self
            .inner
            .symlink(ctx, linkname, self.node(parent)?, name)?;
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
        let entry = self
            .inner
            .mknod(ctx, self.node(parent)?, name, mode, rdev, umask)?;
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
        let entry = self
            .inner
            .mkdir(ctx, self.node(parent)?, name, mode, umask)?;
        Ok(self.entry(parent, name, entry))
    }

    fn unlink(&self, ctx: &Context, parent: Inode, name: &CStr) -> io::Result<()> {
        self.inner.unlink(ctx, self.node(parent)?, name)?;
        self.unlinked(parent, name);
        Ok(())
    }

    fn rmdir(&self, ctx: &Context, parent: Inode, name: &CStr) -> io::Result<()> {
        self.inner.rmdir(ctx, self.node(parent)?, name)?;
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
        self.inner.rename(
            ctx,
            self.node(olddir)?,
            oldname,
            self.node(newdir)?,
            newname,
            flags,
        )?;
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
        // The new parent is mapped first, as the inner filesystem has always been asked.
        let newparent_inner = self.node(newparent)?;
        let entry = self
            .inner
            .link(ctx, self.node(inode)?, newparent_inner, newname)?;
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
        let (entry, fh, options, passthrough) =
            self.inner.create(ctx, self.node(parent)?, name, args)?;
        let entry = self.entry(parent, name, entry);
        let fh = self.opened(fh, entry.inode, args.flags, false);
        Ok((entry, fh, options, passthrough))
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

    fn opendir(
        &self,
        ctx: &Context,
        inode: Inode,
        flags: u32,
    ) -> io::Result<(Option<Handle>, OpenOptions)> {
        let (fh, options) = self.inner.opendir(ctx, self.node(inode)?, flags)?;
        Ok((self.opened(fh, inode, flags, true), options))
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
}
