//! The command line, as clap sees it. The rest of the crate never sees clap: [`Cli`] becomes
//! a [`Settings`] layer laid over the configuration file.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, ValueEnum};
pub use vduse_kit::config::cli::{AttachArg, DeviceArgs, FileArgs, LogLevelArg, RunAsArgs};

use crate::config::{self, Settings};

const AFTER_HELP: &str = "\
Every flag but --config, --check-config and --print-config overrides the configuration file's
key of the same name. Boolean keys take --KEY (true) or --KEY=false.

Once the device is attached, mount it on this host with
  mount -t virtiofs TAG /mnt
or hand it to a VM with --attach vhost. Linux 7.2 or later is needed: older kernels' VDUSE
refuses virtio-fs devices.

Sandbox: the threads that serve the filesystem run in a mount namespace that holds only the
shared directory and /proc (--sandbox, needs CAP_SYS_ADMIN), with only the capabilities
the passthrough needs, and under a seccomp allow-list (--seccomp). See vduse-fs(8).

--user USER: once the sandbox is set up, serve as USER, every guest request acting as USER
(an unprivileged server cannot act as each guest user). See SERVING AS ONE USER in vduse-fs(8).

Signals:
  SIGINT, SIGTERM  remove the device and exit (unmount it first)
  SIGUSR1          log each queue's ring state

Exit status:
  0   stopped cleanly (SIGINT or SIGTERM), or the configuration is valid
  64  usage error
  69  VDUSE is not available, or this kernel's VDUSE does not take virtio-fs devices
  70  internal error
  77  no permission (creating VDUSE devices needs root or access to /dev/vduse/control;
      sandbox: namespace needs CAP_SYS_ADMIN)
  78  configuration error (a bad key or value, a missing directory, a name in use)

Examples:
  vduse-fs --name fs0 --shared-dir /srv/share
  vduse-fs --name docs --shared-dir /usr/share/doc --read-only --cache always
  vduse-fs --config /etc/vduse/fs/fs0.yaml";

/// Share a host directory as a virtio-fs device over VDUSE.
///
/// Creates the VDUSE virtio-fs device NAME, attaches it to the vdpa bus (where virtio_vdpa
/// makes its tag mountable with `mount -t virtiofs`), and serves the shared directory
/// through fuse-backend-rs's passthrough filesystem until SIGINT or SIGTERM, then removes
/// the device.
#[derive(Debug, Parser)]
#[command(
    name = "vduse-fs",
    version,
    long_version = vduse_kit::long_version!(),
    after_long_help = AFTER_HELP
)]
pub struct Cli {
    /// The configuration file, --check-config, --print-config, --log-level.
    #[command(flatten)]
    pub file: FileArgs,

    /// Device name: the node becomes /dev/vduse/NAME.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// The directory to share.
    #[arg(long, value_name = "DIR")]
    pub shared_dir: Option<PathBuf>,

    /// The tag `mount -t virtiofs` names, at most 36 bytes [default: the device name].
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,

    /// Refuse every change with EROFS [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub read_only: Option<bool>,

    /// What the guest may cache [default: auto].
    #[arg(long, value_enum, value_name = "POLICY")]
    pub cache: Option<CacheArg>,

    /// Let the guest cache writes and send them later; only when nothing else changes the
    /// directory [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub writeback: Option<bool>,

    /// Extended attributes [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub xattr: Option<bool>,

    /// Mark host mount points inside the directory as submounts, so the guest gives them
    /// device numbers of their own [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub announce_submounts: Option<bool>,

    /// How inodes are held: never (an O_PATH descriptor each) or prefer (a file handle
    /// where the host file system has them; needs CAP_DAC_READ_SEARCH and excludes the
    /// mount namespace sandbox) [default: never].
    #[arg(long, value_enum, value_name = "WHEN")]
    pub inode_file_handles: Option<InodeFileHandlesArg>,

    /// Request queues, 1 to 16, besides the high-priority queue [default: 1].
    #[arg(long, value_name = "N")]
    pub num_request_queues: Option<u16>,

    /// Size of each queue, a power of two from 16 to 1024 [default: 128].
    #[arg(long, value_name = "N")]
    pub queue_size: Option<u16>,

    /// Threads serving the filesystem, 1 to 64 [default: 4].
    #[arg(long, value_name = "N")]
    pub threads: Option<u16>,

    /// Mount namespace of the filesystem threads [default: auto].
    #[arg(long, value_enum, value_name = "MODE")]
    pub sandbox: Option<SandboxArg>,

    /// System call filter of the filesystem threads [default: kill].
    #[arg(long, value_enum, value_name = "ACTION")]
    pub seccomp: Option<SeccompArg>,

    /// --attach, --keep-device, --bounce-size, --busy-poll-us.
    #[command(flatten)]
    pub device: DeviceArgs,

    /// --user, --group.
    #[command(flatten)]
    pub run_as: RunAsArgs,

    /// Where to record the requests in flight (and, beside it with extension .nodes, the
    /// guest's files), so that a server started after this one was killed takes the
    /// device over: an absolute path, or none [default: /run/vduse/fs/NAME.inflight].
    #[arg(long, value_name = "PATH")]
    pub inflight_log: Option<String>,
}

/// `--cache` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CacheArg {
    /// Nothing is cached: every access asks the server.
    Never,
    /// Names and attributes are cached, file data is not.
    Metadata,
    /// Attributes for a second, file data until the next open.
    Auto,
    /// Everything, for a day: only when nothing else changes the directory.
    Always,
}

/// `--inode-file-handles` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InodeFileHandlesArg {
    /// An O_PATH descriptor per inode.
    Never,
    /// A file handle where the host file system has them.
    Prefer,
}

/// `--sandbox` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SandboxArg {
    /// namespace with CAP_SYS_ADMIN, else none (with a warning).
    Auto,
    /// A mount namespace holding only the shared directory; an error without privilege.
    Namespace,
    /// None.
    None,
}

/// `--seccomp` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SeccompArg {
    /// A system call outside the allow-list kills the server.
    Kill,
    /// Allowed, and logged by the kernel's audit.
    Log,
    /// No filter.
    None,
}

impl Cli {
    /// The flags as a configuration layer.
    pub fn settings(&self) -> Settings {
        Settings {
            name: self.name.clone(),
            shared_dir: self.shared_dir.clone(),
            tag: self.tag.clone(),
            read_only: self.read_only,
            cache: self.cache.map(|cache| match cache {
                CacheArg::Never => config::Cache::Never,
                CacheArg::Metadata => config::Cache::Metadata,
                CacheArg::Auto => config::Cache::Auto,
                CacheArg::Always => config::Cache::Always,
            }),
            writeback: self.writeback,
            xattr: self.xattr,
            announce_submounts: self.announce_submounts,
            inode_file_handles: self.inode_file_handles.map(|handles| match handles {
                InodeFileHandlesArg::Never => config::InodeFileHandles::Never,
                InodeFileHandlesArg::Prefer => config::InodeFileHandles::Prefer,
            }),
            num_request_queues: self.num_request_queues,
            queue_size: self.queue_size,
            threads: self.threads,
            sandbox: self.sandbox.map(|sandbox| match sandbox {
                SandboxArg::Auto => config::Sandbox::Auto,
                SandboxArg::Namespace => config::Sandbox::Namespace,
                SandboxArg::None => config::Sandbox::None,
            }),
            seccomp: self.seccomp.map(|seccomp| match seccomp {
                SeccompArg::Kill => config::Seccomp::Kill,
                SeccompArg::Log => config::Seccomp::Log,
                SeccompArg::None => config::Seccomp::None,
            }),
            attach: self.device.attach.map(config::Attach::from),
            keep_device: self.device.keep_device,
            bounce_size: self.device.bounce_size,
            busy_poll_us: self.device.busy_poll_us,
            user: self.run_as.user.clone(),
            group: self.run_as.group.clone(),
            inflight_log: self.inflight_log.clone(),
        }
    }
}

/// The clap command, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vduse-fs").chain(args.iter().copied()))
    }

    #[test]
    fn every_key_has_a_flag() {
        let cli = parse(&[
            "--name=n",
            "--shared-dir=/srv",
            "--tag=t",
            "--read-only",
            "--cache=never",
            "--writeback=false",
            "--xattr",
            "--announce-submounts",
            "--inode-file-handles=prefer",
            "--num-request-queues=2",
            "--queue-size=256",
            "--threads=3",
            "--sandbox=none",
            "--seccomp=log",
            "--attach=none",
            "--keep-device",
            "--bounce-size=4M",
            "--busy-poll-us=25",
            "--user=nobody",
            "--group=root",
            "--inflight-log=/run/x.log",
        ])
        .unwrap();
        assert_eq!(
            cli.settings(),
            Settings {
                name: Some("n".into()),
                shared_dir: Some("/srv".into()),
                tag: Some("t".into()),
                read_only: Some(true),
                cache: Some(config::Cache::Never),
                writeback: Some(false),
                xattr: Some(true),
                announce_submounts: Some(true),
                inode_file_handles: Some(config::InodeFileHandles::Prefer),
                num_request_queues: Some(2),
                queue_size: Some(256),
                threads: Some(3),
                sandbox: Some(config::Sandbox::None),
                seccomp: Some(config::Seccomp::Log),
                attach: Some(config::Attach::None),
                keep_device: Some(true),
                bounce_size: Some(config::ByteSize(4 << 20)),
                busy_poll_us: Some(25),
                user: Some("nobody".into()),
                group: Some("root".into()),
                inflight_log: Some("/run/x.log".into()),
            }
        );
    }

    #[test]
    fn bad_flags_are_usage_errors_that_name_the_flag() {
        for args in [
            &["--cache=sometimes"][..],
            &["--threads=-1"],
            &["--sandbox=chroot"],
        ] {
            let error = parse(args).unwrap_err();
            let flag = args[0].split('=').next().unwrap();
            assert!(error.to_string().contains(flag), "{error}");
        }
    }

    #[test]
    fn the_command_is_consistent() {
        command().debug_assert();
    }
}
