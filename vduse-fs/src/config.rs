//! The configuration: a YAML file, command-line overrides, and the checked result.
//!
//! [`Settings`] is one layer of keys, every one optional: the file is one layer, the flags
//! another. [`Config::resolve`] lays the flags over the file, fills in defaults and checks
//! every value, naming the key and where it came from when one is wrong.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use vduse_kit::config::{Attach, ByteSize, ConfigError, Origin};
pub use vduse_kit::device_keys::DeviceKeys;

/// The configuration file of vduse-fs.
pub type ConfigFile = vduse_kit::config::ConfigFile<Settings>;

/// Longest tag: `virtio_fs_config.tag` has 36 bytes, with no terminating NUL needed.
pub const MAX_TAG_LEN: usize = 36;

/// Most request queues (the high-priority queue comes on top).
pub const MAX_REQUEST_QUEUES: u16 = 16;

/// Smallest and largest queue size.
pub const QUEUE_SIZE_RANGE: (u16, u16) = (16, 1024);

/// Most threads serving the filesystem.
pub const MAX_THREADS: u16 = 64;

/// Every key of the configuration file, in the order `--print-config` shows them.
pub const KEYS: [&str; 21] = vduse_kit::keys![
    "shared-dir",
    "tag",
    "read-only",
    "cache",
    "writeback",
    "xattr",
    "announce-submounts",
    "inode-file-handles",
    "num-request-queues",
    "queue-size",
    "threads",
    "sandbox",
    "seccomp",
];

/// Why file handles and the mount namespace exclude each other.
pub const NO_HANDLES_IN_NAMESPACE: &str = "fuse-backend-rs 0.14 opens file handles through \
    the mounts /proc/self/mountinfo lists, which are the server's and not the sandbox's; use \
    sandbox: none, or inode-file-handles: never";

/// Defaults of the keys that have one.
pub mod defaults {
    use super::{Attach, Cache, InodeFileHandles, Sandbox, Seccomp};
    /// `cache`.
    pub const CACHE: Cache = Cache::Auto;
    /// `inode-file-handles`.
    pub const INODE_FILE_HANDLES: InodeFileHandles = InodeFileHandles::Never;
    /// `num-request-queues`.
    pub const NUM_REQUEST_QUEUES: u16 = 1;
    /// `queue-size`.
    pub const QUEUE_SIZE: u16 = 128;
    /// `threads`.
    pub const THREADS: u16 = 4;
    /// `sandbox`.
    pub const SANDBOX: Sandbox = Sandbox::Auto;
    /// `seccomp`.
    pub const SECCOMP: Seccomp = Seccomp::Kill;
    /// `attach`.
    pub const ATTACH: Attach = Attach::Virtio;

    /// `inflight-log`: under the runtime directory, which lasts until the machine stops,
    /// not across a reboot (after which no device is left to take over).
    pub fn inflight_log(name: &str) -> String {
        format!("/run/vduse/fs/{name}.inflight")
    }
}

/// How long the guest may cache what it learns (`cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cache {
    /// Nothing is cached: every access asks the server. For directories that change on
    /// the host while the guest uses them.
    Never,
    /// Names and attributes are cached, file data is not.
    Metadata,
    /// Names and attributes for a second; file data until the file is opened again
    /// (close-to-open consistency).
    Auto,
    /// Everything is cached for a day: only for directories nothing else changes.
    Always,
}

impl Cache {
    /// The word the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            Cache::Never => "never",
            Cache::Metadata => "metadata",
            Cache::Auto => "auto",
            Cache::Always => "always",
        }
    }
}

/// How the server keeps hold of the inodes the guest knows (`inode-file-handles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InodeFileHandles {
    /// An `O_PATH` file descriptor per inode.
    Never,
    /// A file handle (`name_to_handle_at`) where the host file system gives one, which
    /// keeps far fewer files open; a descriptor elsewhere. Needs CAP_DAC_READ_SEARCH.
    Prefer,
}

/// Isolation of the threads that run the filesystem (`sandbox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sandbox {
    /// `namespace` when the server has CAP_SYS_ADMIN, else `none` with a warning.
    Auto,
    /// A mount namespace of their own that holds only the shared directory (and `/proc`);
    /// failing to set it up is an error.
    Namespace,
    /// No mount namespace.
    None,
}

impl Sandbox {
    /// The word the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            Sandbox::Auto => "auto",
            Sandbox::Namespace => "namespace",
            Sandbox::None => "none",
        }
    }
}

/// The system call filter of the threads that run the filesystem (`seccomp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seccomp {
    /// A call outside the allow-list kills the server.
    Kill,
    /// A call outside the allow-list is allowed and logged by the kernel (audit), to find
    /// what a host needs.
    Log,
    /// No filter.
    None,
}

impl Seccomp {
    /// The word the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            Seccomp::Kill => "kill",
            Seccomp::Log => "log",
            Seccomp::None => "none",
        }
    }
}

vduse_kit::settings! {
    /// One layer of configuration keys: the file, or the command-line flags.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub struct Settings {
        /// The directory to share.
        pub shared_dir: Option<PathBuf>,
        /// The tag `mount -t virtiofs` names; the device name when not given.
        pub tag: Option<String>,
        /// Refuse every change.
        pub read_only: Option<bool>,
        /// Cache policy.
        pub cache: Option<Cache>,
        /// Let the guest cache writes and send them later.
        pub writeback: Option<bool>,
        /// Extended attributes.
        pub xattr: Option<bool>,
        /// Mark host mount points inside the shared directory as submounts.
        pub announce_submounts: Option<bool>,
        /// How inodes are held.
        pub inode_file_handles: Option<InodeFileHandles>,
        /// Request queues, on top of the high-priority queue.
        pub num_request_queues: Option<u16>,
        /// Size of each queue.
        pub queue_size: Option<u16>,
        /// Threads serving the filesystem.
        pub threads: Option<u16>,
        /// Mount namespace of the filesystem threads.
        pub sandbox: Option<Sandbox>,
        /// System call filter of the filesystem threads.
        pub seccomp: Option<Seccomp>,
    }
}

/// The checked configuration, every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    /// Device name.
    pub name: String,
    /// The shared directory, absolute and without symbolic links.
    pub shared_dir: PathBuf,
    /// The virtiofs tag.
    pub tag: String,
    /// Refuse every change.
    pub read_only: bool,
    /// Cache policy.
    pub cache: Cache,
    /// Let the guest cache writes.
    pub writeback: bool,
    /// Extended attributes.
    pub xattr: bool,
    /// Mark host mount points as submounts.
    pub announce_submounts: bool,
    /// How inodes are held.
    pub inode_file_handles: InodeFileHandles,
    /// Request queues.
    pub num_request_queues: u16,
    /// Size of each queue: a power of two in [16, 1024].
    pub queue_size: u16,
    /// Threads serving the filesystem.
    pub threads: u16,
    /// Mount namespace of the filesystem threads.
    pub sandbox: Sandbox,
    /// System call filter of the filesystem threads.
    pub seccomp: Seccomp,
    /// The keys every server shares. With `user`, every request is served as that user
    /// (without it, as each guest user's own ids, by root); the node journal lies beside
    /// the in-flight log.
    #[serde(flatten)]
    pub device: DeviceKeys,
}

impl Config {
    /// Lays `flags` over `file`, fills in defaults and checks every value.
    pub fn resolve(file: Option<&ConfigFile>, flags: &Settings) -> Result<Config, ConfigError> {
        let layers = vduse_kit::config::Layers::new(file, flags);
        let invalid = |key: &'static str, from_flag: bool, problem: String| {
            layers.invalid(key, from_flag, problem)
        };

        let name = layers.name(|s| &s.name)?;

        let (shared_dir, shared_dir_flag) = layers.pick(|s| &s.shared_dir);
        let shared_dir = shared_dir.ok_or(ConfigError::Missing {
            key: "shared-dir",
            what: "DIR",
        })?;
        let shared_dir = check_shared_dir(&shared_dir)
            .map_err(|problem| invalid("shared-dir", shared_dir_flag, problem))?;

        let (tag, tag_flag) = layers.pick(|s| &s.tag);
        let tag = tag.unwrap_or_else(|| name.clone());
        check_tag(&tag).map_err(|problem| invalid("tag", tag_flag, problem))?;

        let (queues, queues_flag) = layers.pick(|s| &s.num_request_queues);
        let num_request_queues = queues.unwrap_or(defaults::NUM_REQUEST_QUEUES);
        if !(1..=MAX_REQUEST_QUEUES).contains(&num_request_queues) {
            return Err(invalid(
                "num-request-queues",
                queues_flag,
                format!("{num_request_queues} is out of range: use 1 to {MAX_REQUEST_QUEUES}"),
            ));
        }

        let queue_size = layers.queue_size(
            |s| &s.queue_size,
            defaults::QUEUE_SIZE,
            QUEUE_SIZE_RANGE,
            "128 or 1024",
        )?;

        let (threads, threads_flag) = layers.pick(|s| &s.threads);
        let threads = threads.unwrap_or(defaults::THREADS);
        if !(1..=MAX_THREADS).contains(&threads) {
            return Err(invalid(
                "threads",
                threads_flag,
                format!("{threads} is out of range: use 1 to {MAX_THREADS}"),
            ));
        }

        let read_only = layers.pick(|s| &s.read_only).0.unwrap_or(false);
        let (writeback, writeback_flag) = layers.pick(|s| &s.writeback);
        let writeback = writeback.unwrap_or(false);
        if writeback && read_only {
            return Err(invalid(
                "writeback",
                writeback_flag,
                "a read-only export has no writes to cache: drop `writeback` or `read-only`".into(),
            ));
        }

        let (handles, handles_flag) = layers.pick(|s| &s.inode_file_handles);
        let inode_file_handles = handles.unwrap_or(defaults::INODE_FILE_HANDLES);
        let sandbox = layers.pick(|s| &s.sandbox).0.unwrap_or(defaults::SANDBOX);
        if inode_file_handles == InodeFileHandles::Prefer && sandbox == Sandbox::Namespace {
            return Err(invalid(
                "inode-file-handles",
                handles_flag,
                format!("prefer does not work with sandbox: namespace: {NO_HANDLES_IN_NAMESPACE}"),
            ));
        }

        let device = DeviceKeys::resolve(&layers, defaults::ATTACH, defaults::inflight_log(&name))?;
        if device.user.is_some() && inode_file_handles == InodeFileHandles::Prefer {
            return Err(invalid(
                "inode-file-handles",
                handles_flag,
                "prefer needs CAP_DAC_READ_SEARCH, which a server running as `user` does not \
                 keep: use never, or leave `user` out"
                    .into(),
            ));
        }

        Ok(Config {
            name,
            shared_dir,
            tag,
            read_only,
            cache: layers.pick(|s| &s.cache).0.unwrap_or(defaults::CACHE),
            writeback,
            xattr: layers.pick(|s| &s.xattr).0.unwrap_or(false),
            announce_submounts: layers.pick(|s| &s.announce_submounts).0.unwrap_or(false),
            inode_file_handles,
            num_request_queues,
            queue_size,
            threads,
            sandbox,
            seccomp: layers.pick(|s| &s.seccomp).0.unwrap_or(defaults::SECCOMP),
            device,
        })
    }

    /// The node journal's path: beside the in-flight log, with extension `nodes`.
    pub fn node_journal_path(&self) -> Option<PathBuf> {
        self.device
            .inflight_log_path()
            .map(|log| log.with_extension("nodes"))
    }

    /// What a server taking the device over must share with the one that made it, on top
    /// of the device's type, features and config space (tag, queues): the directory.
    pub fn identity(&self) -> Vec<(String, Vec<u8>)> {
        vec![(
            "shared-dir".into(),
            self.shared_dir
                .clone()
                .into_os_string()
                .into_encoded_bytes(),
        )]
    }

    /// Reads the file at `path` (when given), lays `flags` over it and checks the result.
    pub fn load(path: Option<&Path>, flags: &Settings) -> Result<Config, ConfigError> {
        let file = path.map(ConfigFile::load).transpose()?;
        Self::resolve(file.as_ref(), flags)
    }

    /// The configuration as YAML, as `--print-config` shows it.
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        let body = serde_yaml::to_string(self)?;
        Ok(format!("# vduse-fs: effective configuration\n{body}"))
    }
}

/// The shared directory made absolute with its symbolic links resolved, so that what is
/// exported does not change when a link does; it must be a directory.
fn check_shared_dir(dir: &Path) -> Result<PathBuf, String> {
    let shown = dir.display();
    let resolved = std::fs::canonicalize(dir).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => format!("{shown} does not exist: create it or fix the path"),
        std::io::ErrorKind::PermissionDenied => {
            format!("{shown} cannot be reached ({error}): the server needs search permission on its path")
        }
        _ => format!("{shown} cannot be resolved: {error}"),
    })?;
    if !resolved.is_dir() {
        return Err(format!("{shown} is not a directory: share a directory"));
    }
    Ok(resolved)
}

/// A tag fits the config space's 36 bytes and holds no NUL.
fn check_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("is empty: give the name `mount -t virtiofs` will use".into());
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!(
            "{tag:?} is {} bytes long: a tag holds at most {MAX_TAG_LEN}",
            tag.len()
        ));
    }
    if tag.contains('\0') {
        return Err(format!("{tag:?} contains a NUL byte"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse(Path::new("fs.yaml"), text.to_owned())
    }

    fn resolve(text: &str) -> Result<Config, ConfigError> {
        Config::resolve(Some(&file(text)?), &Settings::default())
    }

    fn error(text: &str) -> String {
        resolve(text).unwrap_err().to_string()
    }

    #[test]
    fn a_name_and_a_directory_are_enough() {
        let config = resolve("name: fs0\nshared-dir: /tmp\n").unwrap();
        assert_eq!(config.tag, "fs0");
        assert_eq!(config.shared_dir, std::fs::canonicalize("/tmp").unwrap());
        assert!(!config.read_only && !config.writeback && !config.xattr);
        assert!(!config.announce_submounts);
        assert_eq!(config.cache, Cache::Auto);
        assert_eq!(config.inode_file_handles, InodeFileHandles::Never);
        assert_eq!((config.num_request_queues, config.queue_size), (1, 128));
        assert_eq!(config.threads, 4);
        assert_eq!(
            (config.sandbox, config.seccomp),
            (Sandbox::Auto, Seccomp::Kill)
        );
        assert_eq!(config.device.attach, Attach::Virtio);
    }

    #[test]
    fn every_key_is_read() {
        let config = resolve(
            "name: fs1\nshared-dir: /\ntag: share\nread-only: true\ncache: never\n\
             xattr: true\nannounce-submounts: true\ninode-file-handles: prefer\n\
             num-request-queues: 4\nqueue-size: 1024\nthreads: 8\nsandbox: none\n\
             seccomp: log\nattach: none\nkeep-device: true\nbounce-size: 8M\nbusy-poll-us: 5\n",
        )
        .unwrap();
        assert_eq!(config.tag, "share");
        assert!(config.read_only && config.xattr && config.announce_submounts);
        assert_eq!(config.cache, Cache::Never);
        assert_eq!(config.inode_file_handles, InodeFileHandles::Prefer);
        assert_eq!((config.num_request_queues, config.queue_size), (4, 1024));
        assert_eq!(config.threads, 8);
        assert_eq!(
            (config.sandbox, config.seccomp),
            (Sandbox::None, Seccomp::Log)
        );
        assert!(config.device.keep_device);
        assert_eq!(config.device.bounce_size, Some(ByteSize(8 << 20)));
        assert_eq!(config.device.busy_poll_us, 5);
    }

    #[test]
    fn flags_override_the_file() {
        let flags = Settings {
            cache: Some(Cache::Always),
            tag: Some("other".into()),
            ..Settings::default()
        };
        let config = Config::resolve(
            Some(&file("name: n\nshared-dir: /\ncache: never\n").unwrap()),
            &flags,
        )
        .unwrap();
        assert_eq!(
            (config.cache, config.tag.as_str()),
            (Cache::Always, "other")
        );
    }

    #[test]
    fn bad_values_name_the_key_the_line_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"").unwrap();
        for (text, expected) in [
            (
                "name: n\n".to_owned(),
                "shared-dir is not set: set `shared-dir:` in the configuration file or pass \
                 --shared-dir DIR"
                    .to_owned(),
            ),
            (
                "name: n\nshared-dir: /no/such/dir\n".into(),
                "fs.yaml: shared-dir: /no/such/dir does not exist: create it or fix the path \
                 at line 2 column 13"
                    .into(),
            ),
            (
                format!("name: n\nshared-dir: {}\n", plain.display()),
                "is not a directory: share a directory".into(),
            ),
            (
                "name: n\nshared-dir: /\ntag: 0123456789012345678901234567890123456\n".into(),
                "is 37 bytes long: a tag holds at most 36".into(),
            ),
            (
                "name: n\nshared-dir: /\nnum-request-queues: 0\n".into(),
                "num-request-queues: 0 is out of range: use 1 to 16".into(),
            ),
            (
                "name: n\nshared-dir: /\nqueue-size: 2048\n".into(),
                "not a power of two between 16 and 1024".into(),
            ),
            (
                "name: n\nshared-dir: /\ninode-file-handles: prefer\nsandbox: namespace\n".into(),
                "inode-file-handles: prefer does not work with sandbox: namespace".into(),
            ),
            (
                "name: n\nshared-dir: /\nthreads: 0\n".into(),
                "threads: 0 is out of range: use 1 to 64".into(),
            ),
            (
                "name: n\nshared-dir: /\nread-only: true\nwriteback: true\n".into(),
                "a read-only export has no writes to cache".into(),
            ),
            (
                "name: n\nshared-dir: /\ncache: sometimes\n".into(),
                "unknown variant `sometimes`, expected one of `never`, `metadata`, `auto`, `always`"
                    .into(),
            ),
            (
                "name: n\nshared-dir: /\nsandbox: chroot\n".into(),
                "unknown variant `chroot`".into(),
            ),
            ("name: n\nshared-dir: /\nsource: /\n".into(), "unknown field `source`".into()),
            ("name: n\nshared-dir: /\nxattr: maybe\n".into(), "xattr".into()),
        ] {
            let message = error(&text);
            assert!(message.contains(&expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn serving_as_a_user_is_checked_and_excludes_file_handles() {
        let config = resolve("name: n\nshared-dir: /\nuser: nobody\n").unwrap();
        assert_eq!(config.device.user.as_deref(), Some("nobody"));
        let again = resolve(&config.to_yaml().unwrap()).unwrap();
        assert_eq!(again, config);
        for (text, expected) in [
            ("user: root\n", "fs.yaml: user: \"root\" is root"),
            ("user: no-such-user-here\n", "no user \"no-such-user-here\""),
            ("group: root\n", "group: needs `user` too"),
            (
                "user: nobody\ninode-file-handles: prefer\n",
                "inode-file-handles: prefer needs CAP_DAC_READ_SEARCH",
            ),
        ] {
            let message = error(&format!("name: n\nshared-dir: /\n{text}"));
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn printed_configuration_reads_back_the_same() {
        let config =
            resolve("name: fs0\nshared-dir: /\nread-only: true\nbounce-size: 16M\n").unwrap();
        let again = resolve(&config.to_yaml().unwrap()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn keys_lists_every_key() {
        let full = Settings {
            name: Some("n".into()),
            shared_dir: Some("/".into()),
            tag: Some("t".into()),
            read_only: Some(false),
            cache: Some(Cache::Auto),
            writeback: Some(false),
            xattr: Some(false),
            announce_submounts: Some(false),
            inode_file_handles: Some(InodeFileHandles::Never),
            num_request_queues: Some(1),
            queue_size: Some(128),
            threads: Some(4),
            sandbox: Some(Sandbox::Auto),
            seccomp: Some(Seccomp::Kill),
            attach: Some(Attach::Virtio),
            keep_device: Some(false),
            bounce_size: Some(ByteSize(1 << 20)),
            busy_poll_us: Some(0),
            user: Some("nobody".into()),
            group: Some("nogroup".into()),
            inflight_log: Some("none".into()),
        };
        let yaml = serde_yaml::to_string(&full).unwrap();
        let keys: Vec<&str> = yaml
            .lines()
            .map(|line| line.split_once(':').unwrap().0)
            .collect();
        assert_eq!(keys, KEYS);
        let file = file(&yaml).unwrap();
        for key in KEYS {
            assert!(file.has(key), "{key}");
        }
    }
}
