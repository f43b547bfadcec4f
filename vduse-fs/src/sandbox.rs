//! The sandbox of the threads that run the filesystem: the only code that acts on what the
//! guest asks (names, offsets, attributes).
//!
//! - **Mount namespace** ([`MountNamespace`]): the calling thread gets a mount
//!   namespace of its own whose root (after pivot_root, the old root detached) is an
//!   empty read-only tmpfs holding only a bind mount of the shared directory and a
//!   `/proc`. Nothing else of the host exists for it, and a directory moved out of the
//!   export by a host process cannot be walked out of (the kernel refuses `..` from a
//!   dentry outside its bind mount); the passthrough keeps a guest's `..` at the export's
//!   root. A read-only export is also mounted read-only, so the kernel refuses writes
//!   even if the filesystem code let one through. Needs CAP_SYS_ADMIN. Threads started
//!   afterwards by this thread inherit it; the rest of the server (device requests,
//!   vdpa netlink, shutdown) keeps the host's view it needs.
//! - **Capabilities** ([`drop_capabilities`]): the filesystem threads keep only those the
//!   passthrough needs to act for the guest's users (changing owners, bypassing
//!   permission checks as root does, setting set-id bits, making device nodes).
//! - **System calls** ([`apply_seccomp`]): an allow-list of what the passthrough, the
//!   allocator and the thread pool call; anything else kills the server (or is logged).

use std::collections::BTreeMap;
use std::path::Path;

use caps::{CapSet, Capability, CapsHashSet};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

use crate::config::Seccomp;

/// Why a sandbox step failed, and whether for want of privilege.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct SandboxError {
    step: &'static str,
    #[source]
    source: std::io::Error,
}

impl SandboxError {
    fn at(step: &'static str) -> impl FnOnce(rustix::io::Errno) -> SandboxError {
        move |errno| SandboxError {
            step,
            source: errno.into(),
        }
    }

    /// The step failed for want of CAP_SYS_ADMIN (or a user namespace that allows it).
    pub fn is_permission(&self) -> bool {
        matches!(self.source.raw_os_error(), Some(libc::EPERM | libc::EACCES))
    }
}

/// Where the shared directory appears inside the sandbox.
pub const EXPORT_IN_SANDBOX: &str = "/export";

/// A mount namespace of the calling thread's own, set up but not entered yet: its future
/// root is a small tmpfs holding the shared directory (a recursive bind, read-only when
/// asked) at [`EXPORT_IN_SANDBOX`] and a `/proc` (fuse-backend-rs reaches extended
/// attributes through `/proc/self/fd`). The host's tree is still visible until
/// [`MountNamespace::pivot`]. See the module documentation.
#[derive(Debug)]
#[must_use = "pivot into the namespace, or the thread still sees the host's tree"]
pub struct MountNamespace {
    new_root: std::path::PathBuf,
}

impl MountNamespace {
    /// Gives the calling thread a new mount namespace and builds its future root.
    pub fn prepare(shared_dir: &Path, read_only: bool) -> Result<Self, SandboxError> {
        use rustix::fs::{CWD, Mode};
        use rustix::mount::{MoveMountFlags, OpenTreeFlags};
        use rustix::thread::{UnshareFlags, unshare_unsafe};
        // CLONE_FS too: the thread's root and working directory become its own, so the
        // pivot moves only this thread (and the threads it starts afterwards).
        // SAFETY: neither flag is FILES: the descriptor table stays shared by every thread.
        unsafe { unshare_unsafe(UnshareFlags::NEWNS | UnshareFlags::FS) }
            .map_err(SandboxError::at("unshare(CLONE_NEWNS)"))?;
        // Mounts made or removed here must not reach the host; the host's still reach
        // here (a disk mounted later inside the export shows up).
        rustix::mount::mount_change(
            "/",
            MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
        )
        .map_err(SandboxError::at("making mounts private (MS_SLAVE)"))?;
        // A detached copy of the shared directory's tree, taken before anything covers it.
        let export = rustix::mount::open_tree(
            CWD,
            shared_dir,
            OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_RECURSIVE,
        )
        .map_err(SandboxError::at(
            "cloning the shared directory's mounts (open_tree)",
        ))?;
        // The new root covers the shared directory's path in this namespace only (any
        // existing directory would do; this one is known to exist).
        let new_root = if shared_dir == Path::new("/") {
            Path::new("/tmp")
        } else {
            shared_dir
        };
        rustix::mount::mount(
            "vduse-fs-sandbox",
            new_root,
            "tmpfs",
            MountFlags::NODEV | MountFlags::NOSUID | MountFlags::NOEXEC,
            c"size=64k,mode=0755",
        )
        .map_err(SandboxError::at("mounting the sandbox's root (tmpfs)"))?;
        let export_at = new_root.join(&EXPORT_IN_SANDBOX[1..]);
        let proc_at = new_root.join("proc");
        for dir in [&export_at, &proc_at] {
            rustix::fs::mkdir(dir, Mode::from_raw_mode(0o755))
                .map_err(SandboxError::at("making the sandbox's directories"))?;
        }
        rustix::mount::move_mount(
            &export,
            "",
            CWD,
            &export_at,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(SandboxError::at(
            "placing the shared directory in the sandbox (move_mount)",
        ))?;
        if read_only {
            rustix::mount::mount_remount(&export_at, MountFlags::BIND | MountFlags::RDONLY, "")
                .map_err(SandboxError::at(
                    "remounting the shared directory read-only",
                ))?;
        }
        rustix::mount::mount(
            "proc",
            &proc_at,
            "proc",
            MountFlags::NODEV | MountFlags::NOSUID | MountFlags::NOEXEC,
            c"",
        )
        .map_err(SandboxError::at("mounting /proc in the sandbox"))?;
        rustix::mount::mount_remount(
            new_root,
            MountFlags::RDONLY | MountFlags::NODEV | MountFlags::NOSUID | MountFlags::NOEXEC,
            "",
        )
        .map_err(SandboxError::at("making the sandbox's root read-only"))?;
        Ok(Self {
            new_root: new_root.to_owned(),
        })
    }

    /// Makes the prepared tmpfs the thread's root and detaches the host's tree.
    pub fn pivot(self) -> Result<(), SandboxError> {
        rustix::process::chdir(&self.new_root)
            .map_err(SandboxError::at("chdir to the sandbox's root"))?;
        // pivot_root(".", ".") stacks the old root under the new one; detaching it
        // leaves only the sandbox.
        rustix::process::pivot_root(".", ".").map_err(SandboxError::at("pivot_root"))?;
        rustix::mount::unmount(".", UnmountFlags::DETACH)
            .map_err(SandboxError::at("detaching the old root"))?;
        rustix::process::chdir("/").map_err(SandboxError::at("chdir /"))?;
        Ok(())
    }
}

/// The capabilities the passthrough uses on behalf of the guest's users.
pub const KEPT_CAPABILITIES: [Capability; 9] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_MKNOD,
    Capability::CAP_SETFCAP,
];

/// Limits the calling thread's capabilities to [`KEPT_CAPABILITIES`] (those it has).
pub fn drop_capabilities() -> Result<(), caps::errors::CapsError> {
    let kept: CapsHashSet = KEPT_CAPABILITIES.into_iter().collect();
    let permitted = caps::read(None, CapSet::Permitted)?;
    let keep: CapsHashSet = permitted.intersection(&kept).copied().collect();
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new())?;
    caps::set(None, CapSet::Effective, &keep)?;
    caps::set(None, CapSet::Permitted, &keep)?;
    Ok(())
}

/// The system calls the filesystem threads make: the passthrough's file operations, the
/// credential switches it makes per request, memory allocation, locks, logging, and the
/// eventfd write that reports a finished request.
const ALLOWED_SYSCALLS: &[libc::c_long] = &[
    // Files and directories.
    libc::SYS_openat,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_close,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_read,
    libc::SYS_pread64,
    libc::SYS_preadv,
    libc::SYS_preadv2,
    libc::SYS_write,
    libc::SYS_pwrite64,
    libc::SYS_pwritev,
    libc::SYS_pwritev2,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_lseek,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_fstatfs,
    libc::SYS_statfs,
    libc::SYS_getdents64,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_fallocate,
    libc::SYS_ftruncate,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_utimensat,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_symlinkat,
    libc::SYS_linkat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_readlinkat,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_fcntl,
    libc::SYS_flock,
    libc::SYS_copy_file_range,
    libc::SYS_fgetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_flistxattr,
    libc::SYS_fremovexattr,
    libc::SYS_getxattr,
    libc::SYS_setxattr,
    libc::SYS_listxattr,
    libc::SYS_removexattr,
    libc::SYS_lgetxattr,
    libc::SYS_lsetxattr,
    libc::SYS_llistxattr,
    libc::SYS_lremovexattr,
    libc::SYS_umask,
    libc::SYS_ioctl,
    // Acting as the guest's user, per thread.
    libc::SYS_setresuid,
    libc::SYS_setresgid,
    libc::SYS_setfsuid,
    libc::SYS_setfsgid,
    libc::SYS_capget,
    libc::SYS_capset,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    // `user:`: glibc has every thread make the switch (setgroups, setresgid, setresuid).
    libc::SYS_setgroups,
    // Memory, locks, threads, time, signals.
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getrandom,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_tgkill,
    libc::SYS_prctl,
    libc::SYS_rseq,
    libc::SYS_set_robust_list,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// The allow-list as a BPF program for this architecture; `None` for `seccomp: none`.
pub fn seccomp_program(mode: Seccomp) -> Result<Option<BpfProgram>, seccompiler::BackendError> {
    let mismatch = match mode {
        Seccomp::None => return Ok(None),
        Seccomp::Kill => SeccompAction::KillProcess,
        Seccomp::Log => SeccompAction::Log,
    };
    let arch: TargetArch = std::env::consts::ARCH
        .try_into()
        .map_err(|_| seccompiler::BackendError::InvalidTargetArch(std::env::consts::ARCH.into()))?;
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = ALLOWED_SYSCALLS
        .iter()
        .map(|&nr| (nr, Vec::new()))
        .collect();
    let filter = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, arch)?;
    Ok(Some(filter.try_into()?))
}

/// Installs `program` on the calling thread (with no_new_privs, as the kernel requires).
pub fn apply_seccomp(program: &BpfProgram) -> Result<(), seccompiler::Error> {
    seccompiler::apply_filter(program)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_compiles_for_this_architecture() {
        assert!(seccomp_program(Seccomp::None).unwrap().is_none());
        let program = seccomp_program(Seccomp::Kill).unwrap().unwrap();
        assert!(program.len() > ALLOWED_SYSCALLS.len());
        seccomp_program(Seccomp::Log).unwrap().unwrap();
    }

    #[test]
    fn a_filtered_thread_still_does_file_work_and_others_are_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let program = seccomp_program(Seccomp::Kill).unwrap().unwrap();
        std::thread::spawn(move || {
            apply_seccomp(&program).unwrap();
            std::fs::write(&path, b"data").unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"data");
            rustix::fs::unlinkat(rustix::fs::CWD, &path, rustix::fs::AtFlags::empty()).unwrap();
        })
        .join()
        .unwrap();
        // This thread has no filter: a call outside the list (socket) still works.
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    }
}
