//! The configuration: a YAML file, command-line overrides, and the checked result.
//!
//! [`Settings`] is one layer of keys, every one optional: the file is one layer, the flags
//! another. [`Config::resolve`] lays the flags over the file, fills in defaults and checks
//! every value, naming the key and where it came from (the file's line and column, or the
//! flag) when one is wrong.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use vduse_kit::config::{Attach, ByteSize, ConfigError, Origin};
pub use vduse_kit::device_keys::DeviceKeys;

pub use crate::disk::{CacheMode, IoEngine};

mod resolve;

/// The configuration file of vduse-blk.
pub type ConfigFile = vduse_kit::config::ConfigFile<Settings>;

/// Smallest and largest logical block size.
pub const BLOCK_SIZE_RANGE: (u32, u32) = (512, 4096);
pub use crate::backend::MAX_PHYSICAL_BLOCK_SIZE;
/// Largest number of request queues.
pub const MAX_NUM_QUEUES: u16 = 64;
/// Smallest and largest queue size: a request needs a header and a status descriptor
/// besides its data, and the kernel's virtio-blk driver asks for no more than 1024.
pub const QUEUE_SIZE_RANGE: (u16, u16) = (4, 1024);
/// Longest serial number (`VIRTIO_BLK_ID_BYTES`).
pub const MAX_SERIAL_LEN: usize = virtio_bindings::virtio_blk::VIRTIO_BLK_ID_BYTES as usize;

/// Every key of the configuration file, in the order `--print-config` shows them.
pub const KEYS: [&str; 30] = vduse_kit::keys![
    "backend",
    "backing",
    "nbd-uri",
    "nbd-timeout",
    "nbd-connections",
    "nbd-tls-ca",
    "nbd-tls-cert",
    "nbd-tls-key",
    "nbd-tls-hostname",
    "size",
    "create",
    "read-only",
    "cache",
    "io-engine",
    "logical-block-size",
    "physical-block-size",
    "num-queues",
    "queue-size",
    "serial",
    "discard",
    "write-zeroes",
    "stats-interval",
];

/// Defaults of the keys that have one.
pub mod defaults {
    use super::{Attach, CacheMode, IoEngine};
    /// `cache`.
    pub const CACHE: CacheMode = CacheMode::Writeback;
    /// `io-engine`.
    pub const IO_ENGINE: IoEngine = IoEngine::Auto;
    /// `logical-block-size`.
    pub const LOGICAL_BLOCK_SIZE: u32 = 512;
    /// `inflight-log`: under the runtime directory, which lasts until the machine stops,
    /// as the device does.
    pub fn inflight_log(name: &str) -> String {
        format!("/run/vduse/blk/{name}.inflight")
    }
    /// `num-queues`.
    pub const NUM_QUEUES: u16 = 1;
    /// `queue-size`.
    pub const QUEUE_SIZE: u16 = 256;
    /// `discard`.
    pub const DISCARD: bool = true;
    /// `write-zeroes`.
    pub const WRITE_ZEROES: bool = true;
    /// `stats-interval` (0: never).
    pub const STATS_INTERVAL: u32 = 0;
    /// `attach`.
    pub const ATTACH: Attach = Attach::Virtio;
    /// `nbd-timeout`, in seconds.
    pub const NBD_TIMEOUT: u32 = 60;
}

/// Longest `nbd-timeout`, in seconds (a day).
pub const MAX_NBD_TIMEOUT: u32 = 86_400;

/// Where the disk's data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskKind {
    /// A regular file or a block device on this host (`backing`).
    File,
    /// An export of an NBD server (`nbd-uri`).
    Nbd,
}

impl DiskKind {
    /// The word the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            DiskKind::File => "file",
            DiskKind::Nbd => "nbd",
        }
    }
}

vduse_kit::settings! {
    /// One layer of configuration keys: the file, or the command-line flags. Every key is
    /// optional; [`Config::resolve`] fills in the defaults.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub struct Settings {
        /// `file` or `nbd`.
        pub backend: Option<DiskKind>,
        /// The file or block device holding the disk's data.
        pub backing: Option<PathBuf>,
        /// The NBD export holding the disk's data.
        pub nbd_uri: Option<String>,
        /// Seconds a request may wait for the NBD server before it fails.
        pub nbd_timeout: Option<u32>,
        /// Most NBD connections (one per queue) when the server allows several.
        pub nbd_connections: Option<u16>,
        /// CA certificates (PEM) the NBD server's certificate must chain to (nbds).
        pub nbd_tls_ca: Option<PathBuf>,
        /// Client certificate chain (PEM) for servers that verify clients (nbds).
        pub nbd_tls_cert: Option<PathBuf>,
        /// The client certificate's private key (PEM) (nbds).
        pub nbd_tls_key: Option<PathBuf>,
        /// The name the server's certificate must carry (nbds).
        pub nbd_tls_hostname: Option<String>,
        /// Size of the disk; the backing's size when not given.
        pub size: Option<ByteSize>,
        /// Create a missing backing file, and extend one smaller than `size`.
        pub create: Option<bool>,
        /// Serve the disk read-only.
        pub read_only: Option<bool>,
        /// `writeback` or `none` (O_DIRECT).
        pub cache: Option<CacheMode>,
        /// `auto`, `io-uring`, `threads` or `sync`.
        pub io_engine: Option<IoEngine>,
        /// Logical block size the guest sees.
        pub logical_block_size: Option<u32>,
        /// Physical block size the guest sees.
        pub physical_block_size: Option<u32>,
        /// Number of request queues.
        pub num_queues: Option<u16>,
        /// Size of each request queue.
        pub queue_size: Option<u16>,
        /// Serial number the guest reads with GET_ID.
        pub serial: Option<String>,
        /// Offer DISCARD.
        pub discard: Option<bool>,
        /// Offer WRITE_ZEROES.
        pub write_zeroes: Option<bool>,
        /// Seconds between two lines of counters on stdout; 0: never.
        pub stats_interval: Option<u32>,
    }
}

/// The checked configuration, every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    /// Device name: the node becomes `/dev/vduse/NAME`.
    pub name: String,
    /// Where the data is.
    pub backend: DiskKind,
    /// The file or block device holding the disk's data (backend `file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing: Option<PathBuf>,
    /// The NBD export (backend `nbd`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbd_uri: Option<String>,
    /// Seconds a request may wait for the NBD server, across reconnections, before it
    /// fails with IOERR (backend `nbd`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbd_timeout: Option<u32>,
    /// Most NBD connections when the server allows multi-conn (backend `nbd`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbd_connections: Option<u16>,
    /// CA certificates (PEM) the server's certificate must chain to (`nbds` URIs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbd_tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM), with `nbd-tls-key` (`nbds` URIs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbd_tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM) (`nbds` URIs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbd_tls_key: Option<PathBuf>,
    /// The name the server's certificate must carry; default: the URI's host, or
    /// `localhost` for a Unix socket (`nbds` URIs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbd_tls_hostname: Option<String>,
    /// Size of the disk; `None` means the backing's size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<ByteSize>,
    /// Create a missing backing file, and extend one smaller than `size`.
    pub create: bool,
    /// Serve the disk read-only.
    pub read_only: bool,
    /// Page cache or O_DIRECT.
    pub cache: CacheMode,
    /// How requests are executed.
    pub io_engine: IoEngine,
    /// Logical block size: a power of two in [512, 4096].
    pub logical_block_size: u32,
    /// Physical block size; `None` means the backing's (a block device's, or the logical
    /// block size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub physical_block_size: Option<u32>,
    /// Number of request queues, 1 to 64.
    pub num_queues: u16,
    /// Size of each request queue: a power of two in [4, 1024].
    pub queue_size: u16,
    /// Serial number (at most 20 ASCII bytes) the guest reads with GET_ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Offer DISCARD (not when read-only).
    pub discard: bool,
    /// Offer WRITE_ZEROES (not when read-only).
    pub write_zeroes: bool,
    /// Seconds between two lines of counters on stdout; 0: never.
    pub stats_interval: u32,
    /// The keys every server shares.
    #[serde(flatten)]
    pub device: DeviceKeys,
}

impl Config {
    /// What a server taking the device over must also agree on, besides what the device
    /// shows the kernel: where the data is (the backing file, as its canonical path, or the
    /// NBD export) and the serial the guest has read.
    pub fn identity(&self) -> Vec<(String, Vec<u8>)> {
        let store = match (&self.backing, &self.nbd_uri) {
            (Some(path), _) => std::fs::canonicalize(path)
                .unwrap_or_else(|_| path.clone())
                .into_os_string()
                .into_encoded_bytes(),
            (None, Some(uri)) => uri.clone().into_bytes(),
            (None, None) => Vec::new(),
        };
        vec![
            ("backing".into(), store),
            (
                "serial".into(),
                self.serial.clone().unwrap_or_default().into_bytes(),
            ),
        ]
    }

    /// Where the data is, for messages: the backing's path or the export's URI.
    pub fn store_name(&self) -> String {
        match (&self.backing, &self.nbd_uri) {
            (Some(path), _) => path.display().to_string(),
            (None, Some(uri)) => uri.clone(),
            (None, None) => String::new(),
        }
    }

    /// Reads the file at `path` (when given), lays `flags` over it and checks the result.
    pub fn load(path: Option<&Path>, flags: &Settings) -> Result<Config, ConfigError> {
        let file = path.map(ConfigFile::load).transpose()?;
        Self::resolve(file.as_ref(), flags)
    }

    /// The configuration as YAML, as `--print-config` shows it.
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        let mut value = serde_yaml::to_value(self)?;
        if self.backend == DiskKind::Nbd {
            // Keys of a local backing mean nothing for an export.
            if let Some(map) = value.as_mapping_mut() {
                for key in ["create", "cache", "io-engine"] {
                    // shift_remove keeps the order of the other keys.
                    map.shift_remove(key);
                }
            }
        }
        let body = serde_yaml::to_string(&value)?;
        Ok(format!(
            "# vduse-blk: effective configuration\n\
             # (keys left out take their value from the backing or the export)\n{body}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse(Path::new("disk.yaml"), text.to_owned())
    }

    fn resolve(text: &str) -> Result<Config, ConfigError> {
        Config::resolve(Some(&file(text)?), &Settings::default())
    }

    fn error(text: &str) -> String {
        resolve(text).unwrap_err().to_string()
    }

    const MINIMAL: &str = "name: disk0\nbacking: /var/lib/vduse/disk0.img\n";

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let config = resolve(MINIMAL).unwrap();
        assert_eq!(
            config,
            Config {
                name: "disk0".into(),
                backend: DiskKind::File,
                backing: Some("/var/lib/vduse/disk0.img".into()),
                nbd_uri: None,
                nbd_timeout: None,
                nbd_connections: None,
                nbd_tls_ca: None,
                nbd_tls_cert: None,
                nbd_tls_key: None,
                nbd_tls_hostname: None,
                size: None,
                create: false,
                read_only: false,
                cache: CacheMode::Writeback,
                io_engine: IoEngine::Auto,
                logical_block_size: 512,
                physical_block_size: None,
                num_queues: 1,
                queue_size: 256,
                serial: None,
                discard: true,
                write_zeroes: true,
                stats_interval: 0,
                device: DeviceKeys {
                    attach: Attach::Virtio,
                    keep_device: false,
                    bounce_size: None,
                    busy_poll_us: 0,
                    user: None,
                    group: None,
                    inflight_log: "/run/vduse/blk/disk0.inflight".into(),
                },
            }
        );
    }

    #[test]
    fn every_key_is_read() {
        let config = resolve(
            "name: disk1\nbacking: /dev/sdb\nsize: 2G\nread-only: true\ncache: none\n\
             logical-block-size: 4096\nphysical-block-size: 8192\nnum-queues: 4\n\
             queue-size: 128\nserial: SN-0001\ndiscard: false\nwrite-zeroes: false\n\
             stats-interval: 5\nattach: none\nkeep-device: true\nbounce-size: 16M\n",
        )
        .unwrap();
        assert_eq!(config.stats_interval, 5);
        assert_eq!(config.device.bounce_size, Some(ByteSize(16 << 20)));
        assert_eq!(config.size, Some(ByteSize(2 << 30)));
        assert!(config.read_only);
        assert_eq!(config.cache, CacheMode::None);
        assert_eq!(config.logical_block_size, 4096);
        assert_eq!(config.physical_block_size, Some(8192));
        assert_eq!((config.num_queues, config.queue_size), (4, 128));
        assert_eq!(config.serial.as_deref(), Some("SN-0001"));
        assert!(!config.discard && !config.write_zeroes);
        assert_eq!(config.device.attach, Attach::None);
        assert!(config.device.keep_device);
        assert_eq!(
            resolve(&format!("{MINIMAL}size: 1048576\n")).unwrap().size,
            Some(ByteSize(1 << 20))
        );
    }

    #[test]
    fn flags_override_the_file() {
        let file = file(&format!("{MINIMAL}queue-size: 64\nread-only: true\n")).unwrap();
        let flags = Settings {
            name: Some("disk9".into()),
            queue_size: Some(512),
            read_only: Some(false),
            size: Some(ByteSize(1 << 20)),
            ..Settings::default()
        };
        let config = Config::resolve(Some(&file), &flags).unwrap();
        assert_eq!(config.name, "disk9");
        assert_eq!(config.queue_size, 512);
        assert!(!config.read_only);
        assert_eq!(config.size, Some(ByteSize(1 << 20)));
        assert_eq!(
            config.backing.as_deref(),
            Some(Path::new("/var/lib/vduse/disk0.img"))
        );
        // Flags alone are a whole configuration.
        let flags = Settings {
            name: Some("d".into()),
            backing: Some("/tmp/d.img".into()),
            ..Settings::default()
        };
        assert_eq!(Config::resolve(None, &flags).unwrap().name, "d");
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_line() {
        let message = error(&format!("{MINIMAL}qeue-size: 64\n"));
        assert!(message.starts_with("disk.yaml: "), "{message}");
        assert!(message.contains("unknown field `qeue-size`"), "{message}");
        assert!(message.contains("line 3 column 1"), "{message}");
    }

    #[test]
    fn values_of_the_wrong_type_name_the_key_and_the_line() {
        for (text, key, position) in [
            ("queue-size: big\n", "queue-size", "line 3 column 13"),
            ("num-queues: 100000\n", "num-queues", "line 3 column 13"),
            ("size: 1.5G\n", "size", "line 3 column 7"),
            ("size: -4096\n", "size", "line 3 column 7"),
            ("cache: sometimes\n", "cache", "line 3 column 8"),
            ("read-only: perhaps\n", "read-only", "line 3 column 12"),
        ] {
            let message = error(&format!("{MINIMAL}{text}"));
            assert!(message.contains(key), "{message}");
            assert!(message.contains(position), "{text}: {message}");
        }
        let message = error("name: [a\n");
        assert!(message.contains("line"), "{message}");
    }

    #[test]
    fn nbd_exports_have_their_own_keys() {
        const NBD: &str = "name: d\nnbd-uri: nbd+unix:///disk?socket=/run/nbd.sock\n";
        let config = resolve(NBD).unwrap();
        assert_eq!(config.backend, DiskKind::Nbd, "inferred from nbd-uri");
        assert_eq!(config.backing, None);
        assert_eq!(config.nbd_timeout, Some(defaults::NBD_TIMEOUT));
        assert_eq!(config.nbd_connections, Some(1));
        let options = config.nbd_options().unwrap();
        assert_eq!(options.timeout.as_secs(), 60);
        assert_eq!(options.tls, None);
        let tls = resolve("name: d\nnbd-uri: nbds://disks.example/d\nnbd-tls-ca: /ca.pem\n")
            .unwrap()
            .nbd_options()
            .unwrap()
            .tls
            .unwrap();
        assert_eq!(
            tls.server_name, "disks.example",
            "the URI's host by default"
        );
        assert_eq!(tls.client_cert, None);
        let tls = resolve(
            "name: d\nnbd-uri: nbds+unix:///d?socket=/s\nnbd-tls-ca: /ca.pem\n\
             nbd-tls-cert: /c.pem\nnbd-tls-key: /k.pem\n",
        )
        .unwrap()
        .nbd_options()
        .unwrap()
        .tls
        .unwrap();
        assert_eq!(tls.server_name, "localhost", "a Unix socket has no host");
        assert_eq!(tls.client_cert, Some(("/c.pem".into(), "/k.pem".into())));
        assert_eq!(resolve(&config.to_yaml().unwrap()).unwrap(), config);
        let config = resolve(&format!(
            "{NBD}backend: nbd\nnum-queues: 4\nnbd-timeout: 5\n"
        ))
        .unwrap();
        assert_eq!(config.nbd_connections, Some(4), "one per queue by default");
        assert_eq!(config.nbd_options().unwrap().timeout.as_secs(), 5);
        for (text, says) in [
            ("name: d\nbackend: nbd\n", "nbd-uri"),
            (
                "name: d\nnbd-uri: /dev/nbd0\n",
                "nbd-uri: \"/dev/nbd0\" is not an NBD URI",
            ),
            (
                &format!("{NBD}backing: /x\n")[..],
                "nbd-uri: only used with backend: nbd",
            ),
            (
                &format!("{NBD}backend: nbd\nbacking: /x\n")[..],
                "backing: not used",
            ),
            (
                &format!("{NBD}size: 1G\n")[..],
                "size: not used with backend: nbd",
            ),
            (&format!("{NBD}create: true\n")[..], "create: not used"),
            (&format!("{NBD}cache: none\n")[..], "qemu-nbd --cache=none"),
            (
                &format!("{NBD}io-engine: threads\n")[..],
                "io-engine: not used",
            ),
            (
                &format!("{NBD}nbd-timeout: 0\n")[..],
                "nbd-timeout: 0 is out of range",
            ),
            (
                &format!("{NBD}nbd-connections: 2\n")[..],
                "use 1 to num-queues (1)",
            ),
            (
                "name: d\nbacking: /x\nnbd-timeout: 5\n",
                "only used with backend: nbd",
            ),
            (
                "name: d\nbacking: /x\nnbd-tls-ca: /ca\n",
                "only used with backend: nbd",
            ),
            (
                &format!("{NBD}nbd-tls-ca: /ca\n")[..],
                "nbd-tls-ca: only used with TLS",
            ),
            ("name: d\nnbd-uri: nbds://h/e\n", "nbd-tls-ca"),
            (
                "name: d\nnbd-uri: nbds://h/e\nnbd-tls-ca: /ca\nnbd-tls-key: /k\n",
                "nbd-tls-key: a client certificate needs both",
            ),
        ] {
            let error = error(text);
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }

    #[test]
    fn bad_values_name_the_key_the_line_and_the_fix() {
        for (text, expected) in [
            (
                "bounce-size: 512K\n",
                "disk.yaml: bounce-size: 512K is not a bounce buffer size the kernel takes: \
                 use whole 4K pages from 1M to 1G, e.g. 16M (leave it out for the kernel's \
                 64M) at line 3 column 14",
            ),
            (
                "logical-block-size: 1000\n",
                "disk.yaml: logical-block-size: 1000 is not a power of two between 512 and 4096: \
                 use 512, 1024, 2048 or 4096 at line 3 column 21",
            ),
            (
                "logical-block-size: 8192\n",
                "logical-block-size: 8192 is not a power of two",
            ),
            (
                "logical-block-size: 256\n",
                "logical-block-size: 256 is not a power of two",
            ),
            (
                "size: 1000\n",
                "disk.yaml: size: 1000 bytes is not a multiple of the logical block size (512): \
                 use 512 or 1024 at line 3 column 7",
            ),
            ("size: 0\n", "size: the disk cannot be empty"),
            (
                "group: root\n",
                "disk.yaml: group: needs `user` too: the server switches group and user \
                 together at line 3 column 8",
            ),
            (
                "user: no-such-user-here\n",
                "user: no user \"no-such-user-here\" on this host",
            ),
            ("user: root\n", "user: \"root\" is root"),
            (
                "inflight-log: run/disk0.log\n",
                "disk.yaml: inflight-log: \"run/disk0.log\" is not an absolute path: give one \
                 (the default is /run/vduse/blk/disk0.inflight), or none to keep no log at line 3",
            ),
            (
                "num-queues: 0\n",
                "num-queues: 0 is out of range: use 1 to 64 queues at line 3",
            ),
            ("num-queues: 65\n", "num-queues: 65 is out of range"),
            (
                "queue-size: 100\n",
                "queue-size: 100 is not a power of two between 4 and 1024",
            ),
            (
                "queue-size: 2048\n",
                "queue-size: 2048 is not a power of two",
            ),
            ("queue-size: 2\n", "queue-size: 2 is not a power of two"),
            (
                "serial: ABCDEFGHIJKLMNOPQRSTU\n",
                "serial: \"ABCDEFGHIJKLMNOPQRSTU\" is 21 bytes long; a virtio-blk serial holds \
                 at most 20 at line 3 column 9",
            ),
            ("serial: \"caf\u{e9}\"\n", "must be printable ASCII"),
            (
                "physical-block-size: 256\n",
                "physical-block-size: 256 must be a power of two between the logical block size",
            ),
            (
                "create: true\n",
                "create: creating or extending the backing file needs a `size`",
            ),
            (
                "create: true\nsize: 1G\nread-only: true\n",
                "create: a read-only disk cannot create or extend its backing file",
            ),
            ("backing: ''\n", "backing: the path is empty"),
        ] {
            let text = format!("{MINIMAL}{text}").replace(
                "backing: /var/lib/vduse/disk0.img\nbacking: ''",
                "backing: ''",
            );
            let message = error(&text);
            assert!(message.contains(expected), "{text}\n{message}");
        }
        let message = error("name: a/b\nbacking: /x\n");
        assert!(
            message.starts_with("disk.yaml: name: the device name \"a/b\" cannot name a node"),
            "{message}"
        );
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let flags = Settings {
            name: Some("d".into()),
            backing: Some("/x".into()),
            queue_size: Some(3),
            ..Settings::default()
        };
        let message = Config::resolve(None, &flags).unwrap_err().to_string();
        assert!(
            message.starts_with("--queue-size: 3 is not a power of two"),
            "{message}"
        );
        // A flag that fixes the file's bad value wins.
        let file = file(&format!("{MINIMAL}queue-size: 3\n")).unwrap();
        let flags = Settings {
            queue_size: Some(64),
            ..Settings::default()
        };
        assert_eq!(Config::resolve(Some(&file), &flags).unwrap().queue_size, 64);
    }

    #[test]
    fn missing_keys_say_how_to_set_them() {
        assert_eq!(
            error("backing: /x\n"),
            "name is not set: set `name:` in the configuration file or pass --name NAME"
        );
        assert_eq!(
            error("name: d\n"),
            "backing is not set: set `backing:` in the configuration file or pass --backing PATH"
        );
        assert_eq!(
            error("# nothing here\n\n"),
            "name is not set: set `name:` in the configuration file or pass --name NAME"
        );
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let message = Config::load(
            Some(Path::new("/nonexistent/vduse-blk.yaml")),
            &Settings::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.starts_with("cannot read the configuration file /nonexistent/vduse-blk.yaml: "),
            "{message}"
        );
    }

    #[test]
    fn printed_configuration_reads_back_the_same() {
        let config = resolve(&format!(
            "{MINIMAL}size: 3G\nserial: SN1\nphysical-block-size: 4096\n"
        ))
        .unwrap();
        let yaml = config.to_yaml().unwrap();
        assert!(yaml.contains("size: 3G\n"), "{yaml}");
        assert!(yaml.contains("queue-size: 256\n"), "{yaml}");
        let again = resolve(&yaml).unwrap();
        assert_eq!(again, config);
        let odd = resolve(&format!("{MINIMAL}size: 1536\n")).unwrap();
        assert_eq!(resolve(&odd.to_yaml().unwrap()).unwrap(), odd);
    }

    #[test]
    fn keys_lists_every_key() {
        let full = Settings {
            name: Some("d".into()),
            backend: Some(DiskKind::File),
            backing: Some("/x".into()),
            nbd_uri: Some("nbd://h/e".into()),
            nbd_timeout: Some(1),
            nbd_connections: Some(1),
            nbd_tls_ca: Some("/ca.pem".into()),
            nbd_tls_cert: Some("/c.pem".into()),
            nbd_tls_key: Some("/k.pem".into()),
            nbd_tls_hostname: Some("h".into()),
            size: Some(ByteSize(1 << 20)),
            create: Some(true),
            read_only: Some(false),
            cache: Some(CacheMode::None),
            io_engine: Some(IoEngine::Threads),
            logical_block_size: Some(512),
            physical_block_size: Some(512),
            num_queues: Some(1),
            queue_size: Some(4),
            serial: Some("s".into()),
            discard: Some(true),
            write_zeroes: Some(true),
            stats_interval: Some(7),
            attach: Some(Attach::None),
            keep_device: Some(false),
            bounce_size: Some(ByteSize(1 << 20)),
            busy_poll_us: Some(0),
            user: Some("nobody".into()),
            group: Some("root".into()),
            inflight_log: Some("none".into()),
        };
        let yaml = serde_yaml::to_string(&full).unwrap();
        let keys: Vec<&str> = yaml
            .lines()
            .map(|line| line.split_once(':').unwrap().0)
            .collect();
        assert_eq!(keys, KEYS);
        let file = file(&yaml).unwrap();
        assert!(KEYS.iter().all(|key| file.has(key)));
        assert!(!file.has("nonsense"));
    }

    #[test]
    fn keys_are_located_in_block_style_only() {
        let file = file("name: d\nbacking:   /x\n# size: 1G\nsize: 1G\n").unwrap();
        assert_eq!(file.locate("name"), Some((1, 7)));
        assert_eq!(file.locate("backing"), Some((2, 12)));
        assert_eq!(file.locate("size"), Some((4, 7)));
        assert_eq!(file.locate("serial"), None);
    }
}
