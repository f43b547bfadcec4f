//! [`forward!`]: the plain forwarding of FUSE requests from a filesystem layer to the
//! filesystem it wraps, written once for every layer.
//!
//! A layer ([`ExportFs`](crate::fs::ExportFs), [`DurableFs`](crate::durable::DurableFs),
//! [`Replayed`](crate::durable::Replayed)) changes a few requests and hands every other one
//! on. Inside its `impl FileSystem` it writes the methods it changes and lists the others in
//! `forward!`, which knows the signature of each method of fuse-backend-rs 0.14's
//! `FileSystem`. How a request is handed on is the layer's [`Layer`] implementation: the
//! caller the inner filesystem acts for, the inner filesystem's numbers for the layer's
//! inodes and handles, and whether a change may be made at all.
//!
//! A method that is neither written nor listed would fall back to the trait's default
//! (mostly `ENOSYS`): every layer's impl denies `clippy::missing_trait_methods`, so that
//! cannot happen unnoticed.

use std::io;

use fuse_backend_rs::api::filesystem::{Context, FileSystem};

/// The inner filesystem's inode numbers, as a layer `L` hands them on.
pub(crate) type InnerInode<L> = <<L as Layer>::Inner as FileSystem>::Inode;
/// The inner filesystem's handles, as a layer `L` hands them on.
pub(crate) type InnerHandle<L> = <<L as Layer>::Inner as FileSystem>::Handle;

/// A filesystem that serves requests by handing them to an inner one, as [`forward!`] does.
pub(crate) trait Layer: FileSystem {
    /// The filesystem requests are handed to.
    type Inner: FileSystem;

    fn inner_fs(&self) -> &Self::Inner;

    /// The caller the inner filesystem acts for.
    fn inner_caller(&self, ctx: &Context) -> Context {
        *ctx
    }

    /// The inner filesystem's number for `inode`.
    fn inner_node(&self, inode: Self::Inode) -> io::Result<InnerInode<Self>>;

    /// The inner filesystem's handle for `handle`.
    fn inner_handle(&self, handle: Self::Handle) -> io::Result<InnerHandle<Self>>;

    /// Asked before every forwarded request that changes the filesystem (SETATTR, SYMLINK,
    /// MKNOD, MKDIR, UNLINK, RMDIR, RENAME, LINK, CREATE, WRITE, FALLOCATE, SETXATTR,
    /// REMOVEXATTR); an error is the answer, and the inner filesystem is not asked.
    fn may_change(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Generates, inside an `impl FileSystem for L` where `L: Layer`, the methods listed, each
/// handing its request to [`Layer::inner_fs`] with the caller, inodes and handles mapped by
/// `L`'s [`Layer`] methods (in the order of the arguments: the first that fails answers).
/// `khandle` (POLL) is the kernel's, and `batch_forget` drops the nodes that do not map.
macro_rules! forward {
    ($($method:ident),* $(,)?) => {
        $($crate::forward::forward!(@method $method);)*
    };

    (@method init) => {
        fn init(
            &self,
            capable: ::fuse_backend_rs::abi::fuse_abi::FsOptions,
        ) -> ::std::io::Result<::fuse_backend_rs::abi::fuse_abi::FsOptions> {
            use $crate::forward::Layer as _;
            self.inner_fs().init(capable)
        }
    };
    (@method destroy) => {
        fn destroy(&self) {
            use $crate::forward::Layer as _;
            self.inner_fs().destroy()
        }
    };
    (@method lookup) => {
        fn lookup(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            parent: Self::Inode,
            name: &::std::ffi::CStr,
        ) -> ::std::io::Result<::fuse_backend_rs::api::filesystem::Entry> {
            use $crate::forward::Layer as _;
            self.inner_fs()
                .lookup(&self.inner_caller(ctx), self.inner_node(parent)?, name)
        }
    };
    (@method forget) => {
        fn forget(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            count: u64,
        ) {
            use $crate::forward::Layer as _;
            if let Ok(inode) = self.inner_node(inode) {
                self.inner_fs().forget(&self.inner_caller(ctx), inode, count)
            }
        }
    };
    (@method batch_forget) => {
        fn batch_forget(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            requests: ::std::vec::Vec<(Self::Inode, u64)>,
        ) {
            use $crate::forward::Layer as _;
            // Collected in place: the vector is reused, nothing is allocated.
            let requests = requests
                .into_iter()
                .filter_map(|(inode, count)| Some((self.inner_node(inode).ok()?, count)))
                .collect();
            self.inner_fs()
                .batch_forget(&self.inner_caller(ctx), requests)
        }
    };
    (@method getattr) => {
        fn getattr(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            handle: ::std::option::Option<Self::Handle>,
        ) -> ::std::io::Result<(
            ::fuse_backend_rs::abi::fuse_abi::stat64,
            ::std::time::Duration,
        )> {
            use $crate::forward::Layer as _;
            self.inner_fs().getattr(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                handle.map(|handle| self.inner_handle(handle)).transpose()?,
            )
        }
    };
    (@method setattr) => {
        fn setattr(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            attr: ::fuse_backend_rs::abi::fuse_abi::stat64,
            handle: ::std::option::Option<Self::Handle>,
            valid: ::fuse_backend_rs::abi::fuse_abi::SetattrValid,
        ) -> ::std::io::Result<(
            ::fuse_backend_rs::abi::fuse_abi::stat64,
            ::std::time::Duration,
        )> {
            use $crate::forward::Layer as _;
            self.may_change()?;
            self.inner_fs().setattr(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                attr,
                handle.map(|handle| self.inner_handle(handle)).transpose()?,
                valid,
            )
        }
    };
    (@method readlink) => {
        fn readlink(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
        ) -> ::std::io::Result<::std::vec::Vec<u8>> {
            use $crate::forward::Layer as _;
            self.inner_fs()
                .readlink(&self.inner_caller(ctx), self.inner_node(inode)?)
        }
    };
    (@method symlink) => {
        fn symlink(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            linkname: &::std::ffi::CStr,
            parent: Self::Inode,
            name: &::std::ffi::CStr,
        ) -> ::std::io::Result<::fuse_backend_rs::api::filesystem::Entry> {
            use $crate::forward::Layer as _;
            self.may_change()?;
            self.inner_fs().symlink(
                &self.inner_caller(ctx),
                linkname,
                self.inner_node(parent)?,
                name,
            )
        }
    };
    (@method mknod) => {
        fn mknod(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            parent: Self::Inode,
            name: &::std::ffi::CStr,
            mode: u32,
            rdev: u32,
            umask: u32,
        ) -> ::std::io::Result<::fuse_backend_rs::api::filesystem::Entry> {
            use $crate::forward::Layer as _;
            self.may_change()?;
            self.inner_fs().mknod(
                &self.inner_caller(ctx),
                self.inner_node(parent)?,
                name,
                mode,
                rdev,
                umask,
            )
        }
    };
    (@method mkdir) => {
        fn mkdir(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            parent: Self::Inode,
            name: &::std::ffi::CStr,
            mode: u32,
            umask: u32,
        ) -> ::std::io::Result<::fuse_backend_rs::api::filesystem::Entry> {
            use $crate::forward::Layer as _;
            self.may_change()?;
            self.inner_fs().mkdir(
                &self.inner_caller(ctx),
                self.inner_node(parent)?,
                name,
                mode,
                umask,
            )
        }
    };
    (@method unlink) => {
        fn unlink(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            parent: Self::Inode,
            name: &::std::ffi::CStr,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.may_change()?;
            self.inner_fs()
                .unlink(&self.inner_caller(ctx), self.inner_node(parent)?, name)
        }
    };
    (@method rmdir) => {
        fn rmdir(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            parent: Self::Inode,
            name: &::std::ffi::CStr,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.may_change()?;
            self.inner_fs()
                .rmdir(&self.inner_caller(ctx), self.inner_node(parent)?, name)
        }
    };
    (@method rename) => {
        fn rename(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            olddir: Self::Inode,
            oldname: &::std::ffi::CStr,
            newdir: Self::Inode,
            newname: &::std::ffi::CStr,
            flags: u32,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.may_change()?;
            self.inner_fs().rename(
                &self.inner_caller(ctx),
                self.inner_node(olddir)?,
                oldname,
                self.inner_node(newdir)?,
                newname,
                flags,
            )
        }
    };
    (@method link) => {
        fn link(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            newparent: Self::Inode,
            newname: &::std::ffi::CStr,
        ) -> ::std::io::Result<::fuse_backend_rs::api::filesystem::Entry> {
            use $crate::forward::Layer as _;
            self.may_change()?;
            self.inner_fs().link(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                self.inner_node(newparent)?,
                newname,
            )
        }
    };
    (@method open) => {
        fn open(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            flags: u32,
            fuse_flags: u32,
        ) -> ::std::io::Result<(
            ::std::option::Option<Self::Handle>,
            ::fuse_backend_rs::abi::fuse_abi::OpenOptions,
            ::std::option::Option<u32>,
        )> {
            use $crate::forward::Layer as _;
            self.inner_fs().open(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                flags,
                fuse_flags,
            )
        }
    };
    (@method create) => {
        fn create(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            parent: Self::Inode,
            name: &::std::ffi::CStr,
            args: ::fuse_backend_rs::abi::fuse_abi::CreateIn,
        ) -> ::std::io::Result<(
            ::fuse_backend_rs::api::filesystem::Entry,
            ::std::option::Option<Self::Handle>,
            ::fuse_backend_rs::abi::fuse_abi::OpenOptions,
            ::std::option::Option<u32>,
        )> {
            use $crate::forward::Layer as _;
            self.may_change()?;
            self.inner_fs().create(
                &self.inner_caller(ctx),
                self.inner_node(parent)?,
                name,
                args,
            )
        }
    };
    (@method read) => {
        fn read(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            handle: Self::Handle,
            w: &mut dyn ::fuse_backend_rs::api::filesystem::ZeroCopyWriter,
            size: u32,
            offset: u64,
            lock_owner: ::std::option::Option<u64>,
            flags: u32,
        ) -> ::std::io::Result<usize> {
            use $crate::forward::Layer as _;
            self.inner_fs().read(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                self.inner_handle(handle)?,
                w,
                size,
                offset,
                lock_owner,
                flags,
            )
        }
    };
    (@method write) => {
        fn write(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            handle: Self::Handle,
            r: &mut dyn ::fuse_backend_rs::api::filesystem::ZeroCopyReader,
            size: u32,
            offset: u64,
            lock_owner: ::std::option::Option<u64>,
            delayed_write: bool,
            flags: u32,
            fuse_flags: u32,
        ) -> ::std::io::Result<usize> {
            use $crate::forward::Layer as _;
            self.may_change()?;
            self.inner_fs().write(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                self.inner_handle(handle)?,
                r,
                size,
                offset,
                lock_owner,
                delayed_write,
                flags,
                fuse_flags,
            )
        }
    };
    (@method flush) => {
        fn flush(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            handle: Self::Handle,
            lock_owner: u64,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.inner_fs().flush(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                self.inner_handle(handle)?,
                lock_owner,
            )
        }
    };
    (@method fsync) => {
        fn fsync(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            datasync: bool,
            handle: Self::Handle,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.inner_fs().fsync(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                datasync,
                self.inner_handle(handle)?,
            )
        }
    };
    (@method fallocate) => {
        fn fallocate(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            handle: Self::Handle,
            mode: u32,
            offset: u64,
            length: u64,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.may_change()?;
            self.inner_fs().fallocate(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                self.inner_handle(handle)?,
                mode,
                offset,
                length,
            )
        }
    };
    (@method release) => {
        fn release(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            flags: u32,
            handle: Self::Handle,
            flush: bool,
            flock_release: bool,
            lock_owner: ::std::option::Option<u64>,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.inner_fs().release(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                flags,
                self.inner_handle(handle)?,
                flush,
                flock_release,
                lock_owner,
            )
        }
    };
    (@method statfs) => {
        fn statfs(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
        ) -> ::std::io::Result<::fuse_backend_rs::abi::fuse_abi::statvfs64> {
            use $crate::forward::Layer as _;
            self.inner_fs()
                .statfs(&self.inner_caller(ctx), self.inner_node(inode)?)
        }
    };
    (@method setxattr) => {
        fn setxattr(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            name: &::std::ffi::CStr,
            value: &[u8],
            flags: u32,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.may_change()?;
            self.inner_fs().setxattr(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                name,
                value,
                flags,
            )
        }
    };
    (@method getxattr) => {
        fn getxattr(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            name: &::std::ffi::CStr,
            size: u32,
        ) -> ::std::io::Result<::fuse_backend_rs::api::filesystem::GetxattrReply> {
            use $crate::forward::Layer as _;
            self.inner_fs().getxattr(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                name,
                size,
            )
        }
    };
    (@method listxattr) => {
        fn listxattr(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            size: u32,
        ) -> ::std::io::Result<::fuse_backend_rs::api::filesystem::ListxattrReply> {
            use $crate::forward::Layer as _;
            self.inner_fs()
                .listxattr(&self.inner_caller(ctx), self.inner_node(inode)?, size)
        }
    };
    (@method removexattr) => {
        fn removexattr(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            name: &::std::ffi::CStr,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.may_change()?;
            self.inner_fs()
                .removexattr(&self.inner_caller(ctx), self.inner_node(inode)?, name)
        }
    };
    (@method opendir) => {
        fn opendir(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            flags: u32,
        ) -> ::std::io::Result<(
            ::std::option::Option<Self::Handle>,
            ::fuse_backend_rs::abi::fuse_abi::OpenOptions,
        )> {
            use $crate::forward::Layer as _;
            self.inner_fs()
                .opendir(&self.inner_caller(ctx), self.inner_node(inode)?, flags)
        }
    };
    (@method readdir) => {
        fn readdir(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            handle: Self::Handle,
            size: u32,
            offset: u64,
            add_entry: &mut dyn FnMut(
                ::fuse_backend_rs::api::filesystem::DirEntry,
            ) -> ::std::io::Result<usize>,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.inner_fs().readdir(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                self.inner_handle(handle)?,
                size,
                offset,
                add_entry,
            )
        }
    };
    (@method readdirplus) => {
        fn readdirplus(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            handle: Self::Handle,
            size: u32,
            offset: u64,
            add_entry: &mut dyn FnMut(
                ::fuse_backend_rs::api::filesystem::DirEntry,
                ::fuse_backend_rs::api::filesystem::Entry,
            ) -> ::std::io::Result<usize>,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.inner_fs().readdirplus(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                self.inner_handle(handle)?,
                size,
                offset,
                add_entry,
            )
        }
    };
    (@method fsyncdir) => {
        fn fsyncdir(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            datasync: bool,
            handle: Self::Handle,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.inner_fs().fsyncdir(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                datasync,
                self.inner_handle(handle)?,
            )
        }
    };
    (@method releasedir) => {
        fn releasedir(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            flags: u32,
            handle: Self::Handle,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.inner_fs().releasedir(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                flags,
                self.inner_handle(handle)?,
            )
        }
    };
    (@method setupmapping) => {
        fn setupmapping(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            handle: Self::Handle,
            foffset: u64,
            len: u64,
            flags: u64,
            moffset: u64,
            vu_req: &mut dyn ::fuse_backend_rs::transport::FsCacheReqHandler,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.inner_fs().setupmapping(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                self.inner_handle(handle)?,
                foffset,
                len,
                flags,
                moffset,
                vu_req,
            )
        }
    };
    (@method removemapping) => {
        fn removemapping(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            requests: ::std::vec::Vec<::fuse_backend_rs::abi::virtio_fs::RemovemappingOne>,
            vu_req: &mut dyn ::fuse_backend_rs::transport::FsCacheReqHandler,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.inner_fs().removemapping(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                requests,
                vu_req,
            )
        }
    };
    (@method access) => {
        fn access(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            mask: u32,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.inner_fs()
                .access(&self.inner_caller(ctx), self.inner_node(inode)?, mask)
        }
    };
    (@method lseek) => {
        fn lseek(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            handle: Self::Handle,
            offset: u64,
            whence: u32,
        ) -> ::std::io::Result<u64> {
            use $crate::forward::Layer as _;
            self.inner_fs().lseek(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                self.inner_handle(handle)?,
                offset,
                whence,
            )
        }
    };
    (@method getlk) => {
        fn getlk(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            handle: Self::Handle,
            owner: u64,
            lock: ::fuse_backend_rs::api::filesystem::FileLock,
            flags: u32,
        ) -> ::std::io::Result<::fuse_backend_rs::api::filesystem::FileLock> {
            use $crate::forward::Layer as _;
            self.inner_fs().getlk(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                self.inner_handle(handle)?,
                owner,
                lock,
                flags,
            )
        }
    };
    (@method setlk) => {
        fn setlk(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            handle: Self::Handle,
            owner: u64,
            lock: ::fuse_backend_rs::api::filesystem::FileLock,
            flags: u32,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.inner_fs().setlk(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                self.inner_handle(handle)?,
                owner,
                lock,
                flags,
            )
        }
    };
    (@method setlkw) => {
        fn setlkw(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            handle: Self::Handle,
            owner: u64,
            lock: ::fuse_backend_rs::api::filesystem::FileLock,
            flags: u32,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.inner_fs().setlkw(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                self.inner_handle(handle)?,
                owner,
                lock,
                flags,
            )
        }
    };
    (@method ioctl) => {
        fn ioctl(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            handle: Self::Handle,
            flags: u32,
            cmd: u32,
            data: ::fuse_backend_rs::api::filesystem::IoctlData,
            out_size: u32,
        ) -> ::std::io::Result<::fuse_backend_rs::api::filesystem::IoctlData<'_>> {
            use $crate::forward::Layer as _;
            self.inner_fs().ioctl(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                self.inner_handle(handle)?,
                flags,
                cmd,
                data,
                out_size,
            )
        }
    };
    (@method bmap) => {
        fn bmap(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            block: u64,
            blocksize: u32,
        ) -> ::std::io::Result<u64> {
            use $crate::forward::Layer as _;
            self.inner_fs().bmap(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                block,
                blocksize,
            )
        }
    };
    (@method poll) => {
        fn poll(
            &self,
            ctx: &::fuse_backend_rs::api::filesystem::Context,
            inode: Self::Inode,
            handle: Self::Handle,
            khandle: Self::Handle,
            flags: u32,
            events: u32,
        ) -> ::std::io::Result<u32> {
            use $crate::forward::Layer as _;
            self.inner_fs().poll(
                &self.inner_caller(ctx),
                self.inner_node(inode)?,
                self.inner_handle(handle)?,
                ::std::convert::From::from(::std::convert::Into::<u64>::into(khandle)),
                flags,
                events,
            )
        }
    };
    (@method notify_reply) => {
        fn notify_reply(&self) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.inner_fs().notify_reply()
        }
    };
    (@method id_remap) => {
        fn id_remap(
            &self,
            ctx: &mut ::fuse_backend_rs::api::filesystem::Context,
        ) -> ::std::io::Result<()> {
            use $crate::forward::Layer as _;
            self.inner_fs().id_remap(ctx)
        }
    };
}

pub(crate) use forward;
