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

/// The types of `FileSystem`'s signatures, as [`forward!`]'s expansions name them.
pub(crate) mod sig {
    pub(crate) use std::ffi::CStr;
    pub(crate) use std::time::Duration;

    pub(crate) use fuse_backend_rs::abi::fuse_abi::{
        CreateIn, FsOptions, OpenOptions, SetattrValid, stat64, statvfs64,
    };
    pub(crate) use fuse_backend_rs::abi::virtio_fs::RemovemappingOne;
    pub(crate) use fuse_backend_rs::api::filesystem::{
        Context, DirEntry, Entry, FileLock, GetxattrReply, IoctlData, ListxattrReply,
        ZeroCopyReader, ZeroCopyWriter,
    };
    pub(crate) use fuse_backend_rs::transport::FsCacheReqHandler;
}

/// The inner filesystem's inode numbers, as a layer `L` hands them on.
pub(crate) type InnerInode<L> = <<L as Layer>::Inner as FileSystem>::Inode;
/// The inner filesystem's handles, as a layer `L` hands them on.
pub(crate) type InnerHandle<L> = <<L as Layer>::Inner as FileSystem>::Handle;

/// A filesystem that serves requests by handing them to an inner one, as [`forward!`] does.
pub(crate) trait Layer: FileSystem {
    /// The filesystem requests are handed to.
    type Inner: FileSystem;

    /// The inner filesystem itself.
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

    // The signature of each method, as `@fn` reads it: `[may_change]` for the requests
    // that change the filesystem, then each argument with what it is: `[ctx]` the caller,
    // `[node]` an inode, `[handle]` a handle, `[handle?]` an optional one, `[khandle]` the
    // kernel's poll handle (handed on as it is), or else its type (handed on as it is);
    // last what the request answers.
    (@method destroy) => {
        fn destroy(&self) {
            use $crate::forward::Layer as _;
            self.inner_fs().destroy()
        }
    };
    (@method forget) => {
        fn forget(&self, ctx: &$crate::forward::sig::Context, inode: Self::Inode, count: u64) {
            use $crate::forward::Layer as _;
            if let Ok(inode) = self.inner_node(inode) {
                self.inner_fs().forget(&self.inner_caller(ctx), inode, count)
            }
        }
    };
    (@method batch_forget) => {
        fn batch_forget(
            &self,
            ctx: &$crate::forward::sig::Context,
            requests: Vec<(Self::Inode, u64)>,
        ) {
            use $crate::forward::Layer as _;
            // Collected in place: the vector is reused, nothing is allocated.
            let requests = requests
                .into_iter()
                .filter_map(|(inode, count)| Some((self.inner_node(inode).ok()?, count)))
                .collect();
            self.inner_fs().batch_forget(&self.inner_caller(ctx), requests)
        }
    };
    (@method init) => { $crate::forward::forward!(@fn [] init(
        capable [$crate::forward::sig::FsOptions]) -> $crate::forward::sig::FsOptions); };
    (@method lookup) => { $crate::forward::forward!(@fn [] lookup(
        ctx [ctx], parent [node], name [&$crate::forward::sig::CStr])
        -> $crate::forward::sig::Entry); };
    (@method getattr) => { $crate::forward::forward!(@fn [] getattr(
        ctx [ctx], inode [node], handle [handle?])
        -> ($crate::forward::sig::stat64, $crate::forward::sig::Duration)); };
    (@method setattr) => { $crate::forward::forward!(@fn [may_change] setattr(
        ctx [ctx], inode [node], attr [$crate::forward::sig::stat64], handle [handle?],
        valid [$crate::forward::sig::SetattrValid])
        -> ($crate::forward::sig::stat64, $crate::forward::sig::Duration)); };
    (@method readlink) => { $crate::forward::forward!(@fn [] readlink(
        ctx [ctx], inode [node]) -> Vec<u8>); };
    (@method symlink) => { $crate::forward::forward!(@fn [may_change] symlink(
        ctx [ctx], linkname [&$crate::forward::sig::CStr], parent [node],
        name [&$crate::forward::sig::CStr]) -> $crate::forward::sig::Entry); };
    (@method mknod) => { $crate::forward::forward!(@fn [may_change] mknod(
        ctx [ctx], parent [node], name [&$crate::forward::sig::CStr], mode [u32],
        rdev [u32], umask [u32]) -> $crate::forward::sig::Entry); };
    (@method mkdir) => { $crate::forward::forward!(@fn [may_change] mkdir(
        ctx [ctx], parent [node], name [&$crate::forward::sig::CStr], mode [u32],
        umask [u32]) -> $crate::forward::sig::Entry); };
    (@method unlink) => { $crate::forward::forward!(@fn [may_change] unlink(
        ctx [ctx], parent [node], name [&$crate::forward::sig::CStr]) -> ()); };
    (@method rmdir) => { $crate::forward::forward!(@fn [may_change] rmdir(
        ctx [ctx], parent [node], name [&$crate::forward::sig::CStr]) -> ()); };
    (@method rename) => { $crate::forward::forward!(@fn [may_change] rename(
        ctx [ctx], olddir [node], oldname [&$crate::forward::sig::CStr], newdir [node],
        newname [&$crate::forward::sig::CStr], flags [u32]) -> ()); };
    (@method link) => { $crate::forward::forward!(@fn [may_change] link(
        ctx [ctx], inode [node], newparent [node], newname [&$crate::forward::sig::CStr])
        -> $crate::forward::sig::Entry); };
    (@method open) => { $crate::forward::forward!(@fn [] open(
        ctx [ctx], inode [node], flags [u32], fuse_flags [u32])
        -> (Option<Self::Handle>, $crate::forward::sig::OpenOptions, Option<u32>)); };
    (@method create) => { $crate::forward::forward!(@fn [may_change] create(
        ctx [ctx], parent [node], name [&$crate::forward::sig::CStr],
        args [$crate::forward::sig::CreateIn])
        -> ($crate::forward::sig::Entry, Option<Self::Handle>,
            $crate::forward::sig::OpenOptions, Option<u32>)); };
    (@method read) => { $crate::forward::forward!(@fn [] read(
        ctx [ctx], inode [node], handle [handle],
        w [&mut dyn $crate::forward::sig::ZeroCopyWriter], size [u32], offset [u64],
        lock_owner [Option<u64>], flags [u32]) -> usize); };
    (@method write) => { $crate::forward::forward!(@fn [may_change] write(
        ctx [ctx], inode [node], handle [handle],
        r [&mut dyn $crate::forward::sig::ZeroCopyReader], size [u32], offset [u64],
        lock_owner [Option<u64>], delayed_write [bool], flags [u32], fuse_flags [u32])
        -> usize); };
    (@method flush) => { $crate::forward::forward!(@fn [] flush(
        ctx [ctx], inode [node], handle [handle], lock_owner [u64]) -> ()); };
    (@method fsync) => { $crate::forward::forward!(@fn [] fsync(
        ctx [ctx], inode [node], datasync [bool], handle [handle]) -> ()); };
    (@method fallocate) => { $crate::forward::forward!(@fn [may_change] fallocate(
        ctx [ctx], inode [node], handle [handle], mode [u32], offset [u64], length [u64])
        -> ()); };
    (@method release) => { $crate::forward::forward!(@fn [] release(
        ctx [ctx], inode [node], flags [u32], handle [handle], flush [bool],
        flock_release [bool], lock_owner [Option<u64>]) -> ()); };
    (@method statfs) => { $crate::forward::forward!(@fn [] statfs(
        ctx [ctx], inode [node]) -> $crate::forward::sig::statvfs64); };
    (@method setxattr) => { $crate::forward::forward!(@fn [may_change] setxattr(
        ctx [ctx], inode [node], name [&$crate::forward::sig::CStr], value [&[u8]],
        flags [u32]) -> ()); };
    (@method getxattr) => { $crate::forward::forward!(@fn [] getxattr(
        ctx [ctx], inode [node], name [&$crate::forward::sig::CStr], size [u32])
        -> $crate::forward::sig::GetxattrReply); };
    (@method listxattr) => { $crate::forward::forward!(@fn [] listxattr(
        ctx [ctx], inode [node], size [u32]) -> $crate::forward::sig::ListxattrReply); };
    (@method removexattr) => { $crate::forward::forward!(@fn [may_change] removexattr(
        ctx [ctx], inode [node], name [&$crate::forward::sig::CStr]) -> ()); };
    (@method opendir) => { $crate::forward::forward!(@fn [] opendir(
        ctx [ctx], inode [node], flags [u32])
        -> (Option<Self::Handle>, $crate::forward::sig::OpenOptions)); };
    (@method readdir) => { $crate::forward::forward!(@fn [] readdir(
        ctx [ctx], inode [node], handle [handle], size [u32], offset [u64],
        add_entry [&mut dyn FnMut($crate::forward::sig::DirEntry) -> ::std::io::Result<usize>])
        -> ()); };
    (@method readdirplus) => { $crate::forward::forward!(@fn [] readdirplus(
        ctx [ctx], inode [node], handle [handle], size [u32], offset [u64],
        add_entry [&mut dyn FnMut(
            $crate::forward::sig::DirEntry,
            $crate::forward::sig::Entry,
        ) -> ::std::io::Result<usize>]) -> ()); };
    (@method fsyncdir) => { $crate::forward::forward!(@fn [] fsyncdir(
        ctx [ctx], inode [node], datasync [bool], handle [handle]) -> ()); };
    (@method releasedir) => { $crate::forward::forward!(@fn [] releasedir(
        ctx [ctx], inode [node], flags [u32], handle [handle]) -> ()); };
    (@method setupmapping) => { $crate::forward::forward!(@fn [] setupmapping(
        ctx [ctx], inode [node], handle [handle], foffset [u64], len [u64], flags [u64],
        moffset [u64], vu_req [&mut dyn $crate::forward::sig::FsCacheReqHandler]) -> ()); };
    (@method removemapping) => { $crate::forward::forward!(@fn [] removemapping(
        ctx [ctx], inode [node], requests [Vec<$crate::forward::sig::RemovemappingOne>],
        vu_req [&mut dyn $crate::forward::sig::FsCacheReqHandler]) -> ()); };
    (@method access) => { $crate::forward::forward!(@fn [] access(
        ctx [ctx], inode [node], mask [u32]) -> ()); };
    (@method lseek) => { $crate::forward::forward!(@fn [] lseek(
        ctx [ctx], inode [node], handle [handle], offset [u64], whence [u32]) -> u64); };
    (@method getlk) => { $crate::forward::forward!(@fn [] getlk(
        ctx [ctx], inode [node], handle [handle], owner [u64],
        lock [$crate::forward::sig::FileLock], flags [u32])
        -> $crate::forward::sig::FileLock); };
    (@method setlk) => { $crate::forward::forward!(@fn [] setlk(
        ctx [ctx], inode [node], handle [handle], owner [u64],
        lock [$crate::forward::sig::FileLock], flags [u32]) -> ()); };
    (@method setlkw) => { $crate::forward::forward!(@fn [] setlkw(
        ctx [ctx], inode [node], handle [handle], owner [u64],
        lock [$crate::forward::sig::FileLock], flags [u32]) -> ()); };
    (@method ioctl) => { $crate::forward::forward!(@fn [] ioctl(
        ctx [ctx], inode [node], handle [handle], flags [u32], cmd [u32],
        data [$crate::forward::sig::IoctlData], out_size [u32])
        -> $crate::forward::sig::IoctlData<'_>); };
    (@method bmap) => { $crate::forward::forward!(@fn [] bmap(
        ctx [ctx], inode [node], block [u64], blocksize [u32]) -> u64); };
    (@method poll) => { $crate::forward::forward!(@fn [] poll(
        ctx [ctx], inode [node], handle [handle], khandle [khandle], flags [u32],
        events [u32]) -> u32); };
    (@method notify_reply) => { $crate::forward::forward!(@fn [] notify_reply() -> ()); };
    (@method id_remap) => { $crate::forward::forward!(@fn [] id_remap(
        ctx [&mut $crate::forward::sig::Context]) -> ()); };

    // One method from its signature.
    (@fn [$($guard:ident)?] $name:ident($($arg:ident [$($what:tt)*]),* $(,)?) -> $answer:ty) => {
        fn $name(
            &self,
            $($arg: $crate::forward::forward!(@type $($what)*)),*
        ) -> ::std::io::Result<$answer> {
            use $crate::forward::Layer as _;
            $(self.$guard()?;)?
            self.inner_fs()
                .$name($($crate::forward::forward!(@pass self $arg $($what)*)),*)
        }
    };
    (@type ctx) => { &$crate::forward::sig::Context };
    (@type node) => { Self::Inode };
    (@type handle) => { Self::Handle };
    (@type handle?) => { Option<Self::Handle> };
    (@type khandle) => { Self::Handle };
    (@type $($type:tt)*) => { $($type)* };
    (@pass $self:ident $arg:ident ctx) => { &$self.inner_caller($arg) };
    (@pass $self:ident $arg:ident node) => { $self.inner_node($arg)? };
    (@pass $self:ident $arg:ident handle) => { $self.inner_handle($arg)? };
    (@pass $self:ident $arg:ident handle?) => {
        $arg.map(|handle| $self.inner_handle(handle)).transpose()?
    };
    (@pass $self:ident $arg:ident khandle) => {
        From::from(Into::<u64>::into($arg))
    };
    (@pass $self:ident $arg:ident $($type:tt)*) => { $arg };
}

pub(crate) use forward;
