//! The command line, as clap sees it. The rest of the crate never sees clap: [`Cli`] becomes
//! a [`Settings`] layer laid over the configuration file.
// The doc comments below are clap's help texts too: `HOST[:PORT]` is written for people,
// not as a link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::{CommandFactory, Parser, ValueEnum};
pub use vduse_kit::config::cli::{AttachArg, DeviceArgs, FileArgs, LogLevelArg, RunAsArgs};

use crate::config::{self, ByteSize, Settings};

const AFTER_HELP: &str = "\
Every flag but --config, --check-config and --print-config overrides the configuration file's
key of the same name. Boolean keys take --KEY (true) or --KEY=false.

Signals: SIGINT and SIGTERM stop and remove the device; SIGHUP reads the configuration again
and serves the disk at its new size, if it grew; SIGUSR1 prints the counters (one line of
JSON on stdout, as every --stats-interval seconds and at exit) and logs each queue's state.

Exit status:
  0   stopped cleanly (SIGINT or SIGTERM), or the configuration is valid
  64  usage error
  69  VDUSE is not available on this host, or the NBD server cannot be reached
  70  internal error
  74  I/O error on the backing
  77  no permission to use VDUSE
  78  configuration error (a bad key or value, an unusable backing, a name in use)

Examples:
  vduse-blk --config /etc/vduse/blk/disk0.yaml
  vduse-blk --name disk0 --backing /var/lib/vduse/disk0.img --size 1G --create
  vduse-blk --config disk0.yaml --read-only --check-config
  vduse-blk --name disk1 --nbd-uri 'nbd+unix:///disk?socket=/run/qemu-nbd.sock'";

/// Serve a file, a block device or an NBD export as a virtio-blk disk over VDUSE.
///
/// Creates the VDUSE block device NAME, attaches it to the vdpa bus (where virtio_vdpa
/// turns it into /dev/vdX), and serves its requests from the backing file or block device, or
/// from an NBD export (--nbd-uri),
/// until SIGINT or SIGTERM, then removes the device.
#[derive(Debug, Parser)]
#[command(
    name = "vduse-blk",
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

    /// Where the disk's data is: a file or block device, or an NBD export
    /// [default: nbd when --nbd-uri is given, else file].
    #[arg(long, value_enum, value_name = "KIND")]
    pub backend: Option<BackendArg>,

    /// The file or block device that holds the disk (backend file).
    #[arg(long, value_name = "PATH")]
    pub backing: Option<PathBuf>,

    /// The NBD export that holds the disk: nbd://HOST[:PORT]/EXPORT or
    /// nbd+unix:///EXPORT?socket=PATH (backend nbd).
    #[arg(long, value_name = "URI")]
    pub nbd_uri: Option<String>,

    /// Seconds a request may wait for the NBD server, across reconnections, before it
    /// fails with an I/O error [default: 60].
    #[arg(long, value_name = "SECONDS")]
    pub nbd_timeout: Option<u32>,

    /// Most NBD connections, one per queue, when the server allows multi-conn
    /// [default: --num-queues].
    #[arg(long, value_name = "N")]
    pub nbd_connections: Option<u16>,

    /// CA certificates (PEM) the NBD server's certificate must chain to (nbds:// URIs).
    #[arg(long, value_name = "PATH")]
    pub nbd_tls_ca: Option<PathBuf>,

    /// Client certificate chain (PEM) for servers that verify clients, with --nbd-tls-key.
    #[arg(long, value_name = "PATH")]
    pub nbd_tls_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "PATH")]
    pub nbd_tls_key: Option<PathBuf>,

    /// The name the server's certificate must carry [default: the URI's host, or
    /// localhost for a Unix socket].
    #[arg(long, value_name = "NAME")]
    pub nbd_tls_hostname: Option<String>,

    /// Disk size: bytes, or a number with K, M, G or T (e.g. 1G); default: the backing's.
    #[arg(long, value_name = "SIZE")]
    pub size: Option<ByteSize>,

    /// Create a missing backing file, and extend one smaller than --size.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub create: Option<bool>,

    /// Serve the disk read-only.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub read_only: Option<bool>,

    /// Host caching of the backing [default: writeback].
    #[arg(long, value_enum, value_name = "MODE")]
    pub cache: Option<CacheArg>,

    /// How each queue's requests are executed [default: auto].
    #[arg(long, value_enum, value_name = "ENGINE")]
    pub io_engine: Option<IoEngineArg>,

    /// Logical block size: 512, 1024, 2048 or 4096 [default: 512].
    #[arg(long, value_name = "BYTES")]
    pub logical_block_size: Option<u32>,

    /// Physical block size, a power of two >= the logical one [default: the backing's].
    #[arg(long, value_name = "BYTES")]
    pub physical_block_size: Option<u32>,

    /// Number of request queues, 1 to 64 [default: 1].
    #[arg(long, value_name = "N")]
    pub num_queues: Option<u16>,

    /// Size of each queue: a power of two from 4 to 1024 [default: 256].
    #[arg(long, value_name = "N")]
    pub queue_size: Option<u16>,

    /// Serial number the guest reads (at most 20 ASCII characters).
    #[arg(long, value_name = "TEXT")]
    pub serial: Option<String>,

    /// Offer DISCARD to the guest [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub discard: Option<bool>,

    /// Offer WRITE_ZEROES to the guest [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub write_zeroes: Option<bool>,

    /// Print the counters as JSON every SECS seconds; 0: never [default: 0].
    #[arg(long, value_name = "SECS")]
    pub stats_interval: Option<u32>,

    /// --attach, --keep-device, --bounce-size, --busy-poll-us.
    #[command(flatten)]
    pub device: DeviceArgs,

    /// --user, --group.
    #[command(flatten)]
    pub run_as: RunAsArgs,

    /// Where to record the requests in flight, so that a server started after this one
    /// was killed takes the device over: an absolute path, or none [default:
    /// /run/vduse/blk/NAME.inflight].
    #[arg(long, value_name = "PATH")]
    pub inflight_log: Option<String>,
}

/// `--backend` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// A regular file or a block device (--backing).
    File,
    /// An export of an NBD server (--nbd-uri).
    Nbd,
}

/// `--cache` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CacheArg {
    /// Through the host page cache; FLUSH makes writes durable.
    Writeback,
    /// O_DIRECT, bypassing the page cache.
    None,
}

/// `--io-engine` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IoEngineArg {
    /// io_uring where the kernel allows it, else threads.
    Auto,
    /// io_uring: a queue's requests in flight at once.
    IoUring,
    /// A pool of threads per queue doing synchronous I/O.
    Threads,
    /// One request at a time per queue.
    Sync,
}

impl Cli {
    /// The flags as a configuration layer.
    pub fn settings(&self) -> Settings {
        Settings {
            name: self.name.clone(),
            backend: self.backend.map(|backend| match backend {
                BackendArg::File => config::DiskKind::File,
                BackendArg::Nbd => config::DiskKind::Nbd,
            }),
            backing: self.backing.clone(),
            nbd_uri: self.nbd_uri.clone(),
            nbd_timeout: self.nbd_timeout,
            nbd_connections: self.nbd_connections,
            nbd_tls_ca: self.nbd_tls_ca.clone(),
            nbd_tls_cert: self.nbd_tls_cert.clone(),
            nbd_tls_key: self.nbd_tls_key.clone(),
            nbd_tls_hostname: self.nbd_tls_hostname.clone(),
            size: self.size,
            create: self.create,
            read_only: self.read_only,
            cache: self.cache.map(|cache| match cache {
                CacheArg::Writeback => config::CacheMode::Writeback,
                CacheArg::None => config::CacheMode::None,
            }),
            io_engine: self.io_engine.map(|engine| match engine {
                IoEngineArg::Auto => config::IoEngine::Auto,
                IoEngineArg::IoUring => config::IoEngine::IoUring,
                IoEngineArg::Threads => config::IoEngine::Threads,
                IoEngineArg::Sync => config::IoEngine::Sync,
            }),
            logical_block_size: self.logical_block_size,
            physical_block_size: self.physical_block_size,
            num_queues: self.num_queues,
            queue_size: self.queue_size,
            serial: self.serial.clone(),
            discard: self.discard,
            write_zeroes: self.write_zeroes,
            stats_interval: self.stats_interval,
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
        Cli::try_parse_from(std::iter::once("vduse-blk").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn every_key_has_a_flag() {
        let cli = parse(&[
            "--name=d",
            "--backing=/x",
            "--size=1G",
            "--create",
            "--read-only=false",
            "--cache=none",
            "--logical-block-size=4096",
            "--physical-block-size=4096",
            "--num-queues=2",
            "--queue-size=128",
            "--serial=S",
            "--discard=false",
            "--write-zeroes",
            "--stats-interval=3",
            "--attach=none",
            "--keep-device",
            "--bounce-size=16M",
            "--busy-poll-us=25",
            "--user=nobody",
            "--group=root",
            "--inflight-log=/run/x.log",
        ])
        .unwrap();
        assert_eq!(
            cli.settings(),
            Settings {
                name: Some("d".into()),
                backend: None,
                backing: Some("/x".into()),
                nbd_uri: None,
                nbd_timeout: None,
                nbd_connections: None,
                nbd_tls_ca: None,
                nbd_tls_cert: None,
                nbd_tls_key: None,
                nbd_tls_hostname: None,
                size: Some(ByteSize(1 << 30)),
                create: Some(true),
                read_only: Some(false),
                cache: Some(config::CacheMode::None),
                io_engine: None,
                logical_block_size: Some(4096),
                physical_block_size: Some(4096),
                num_queues: Some(2),
                queue_size: Some(128),
                serial: Some("S".into()),
                discard: Some(false),
                write_zeroes: Some(true),
                stats_interval: Some(3),
                attach: Some(config::Attach::None),
                keep_device: Some(true),
                bounce_size: Some(ByteSize(16 << 20)),
                busy_poll_us: Some(25),
                user: Some("nobody".into()),
                group: Some("root".into()),
                inflight_log: Some("/run/x.log".into()),
            }
        );
        let cli = parse(&[
            "--backend=nbd",
            "--nbd-uri=nbd://h/e",
            "--nbd-timeout=5",
            "--nbd-connections=2",
            "--io-engine=sync",
            "--nbd-tls-ca=/ca.pem",
            "--nbd-tls-cert=/c.pem",
            "--nbd-tls-key=/k.pem",
            "--nbd-tls-hostname=h",
        ])
        .unwrap();
        assert_eq!(
            cli.settings(),
            Settings {
                backend: Some(config::DiskKind::Nbd),
                nbd_uri: Some("nbd://h/e".into()),
                nbd_timeout: Some(5),
                nbd_connections: Some(2),
                io_engine: Some(config::IoEngine::Sync),
                nbd_tls_ca: Some("/ca.pem".into()),
                nbd_tls_cert: Some("/c.pem".into()),
                nbd_tls_key: Some("/k.pem".into()),
                nbd_tls_hostname: Some("h".into()),
                ..Settings::default()
            }
        );
    }

    #[test]
    fn bad_flag_values_are_usage_errors() {
        for args in [
            &["--size", "lots"][..],
            &["--cache", "always"],
            &["--num-queues", "-1"],
            &["--read-only=maybe"],
            &["--check-config", "--print-config"],
            &["--no-such-flag"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
        let message = parse(&["--size", "lots"]).unwrap_err().to_string();
        assert!(message.contains("\"lots\" is not a size"), "{message}");
    }
}
