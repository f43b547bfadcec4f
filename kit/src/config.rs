//! What every server's configuration shares: the YAML file and where its keys are, sizes
//! with binary suffixes, the `attach` choice, and errors that name the key and where its
//! value came from (the file's line and column, or the flag).
//!
//! Each tool defines its own layer of optional keys (`Settings`, deserialized with
//! `deny_unknown_fields`) and its checked configuration; this module does the rest.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What the device is attached to once it is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attach {
    /// Add it to the vdpa bus and bind `virtio_vdpa`: the kernel's own virtio driver
    /// takes it (a disk `/dev/vdX`, a network interface, a virtiofs tag).
    Virtio,
    /// Add it to the vdpa bus and bind `vhost_vdpa`, which hands it to VMs and user
    /// programs as `/dev/vhost-vdpa-N`.
    Vhost,
    /// Leave it off the bus (`vdpa dev add` by hand).
    None,
}

impl Attach {
    /// Whether the server adds the device to the vdpa bus.
    pub fn attaches(self) -> bool {
        self != Attach::None
    }

    /// The vdpa bus driver this choice binds.
    pub fn driver(self) -> Option<&'static str> {
        match self {
            Attach::Virtio => Some("virtio_vdpa"),
            Attach::Vhost => Some("vhost_vdpa"),
            Attach::None => None,
        }
    }
}

/// `--attach` and `--log-level` values for the servers' command lines.
pub mod cli {
    /// `--attach` values.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
    pub enum AttachArg {
        /// Add it to the vdpa bus, bound to virtio_vdpa (the kernel's own driver takes it).
        Virtio,
        /// Add it to the vdpa bus, bound to vhost_vdpa (/dev/vhost-vdpa-N, for VMs).
        Vhost,
        /// Leave it off the bus.
        None,
    }

    impl From<AttachArg> for super::Attach {
        fn from(arg: AttachArg) -> Self {
            match arg {
                AttachArg::Virtio => super::Attach::Virtio,
                AttachArg::Vhost => super::Attach::Vhost,
                AttachArg::None => super::Attach::None,
            }
        }
    }

    use std::path::PathBuf;

    use super::ByteSize;

    /// The options every server has before its own: the configuration file, checking or
    /// printing it, and the log level.
    #[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
    pub struct FileArgs {
        /// YAML configuration file (see vduse.yaml(5)); flags override its keys.
        #[arg(short, long, value_name = "FILE")]
        pub config: Option<PathBuf>,

        /// Check the configuration and exit: 0 valid, 78 not (or the status of another
        /// problem found, e.g. 69 for a server that cannot be reached).
        #[arg(long, conflicts_with = "print_config")]
        pub check_config: bool,

        /// Print the effective configuration as YAML and exit.
        #[arg(long)]
        pub print_config: bool,

        /// Log level on stderr [default: VDUSE_LOG or RUST_LOG, else info].
        #[arg(long, value_enum, value_name = "LEVEL")]
        pub log_level: Option<LogLevelArg>,
    }

    /// The options every server has after its own: the device's life on the vdpa bus and
    /// in the kernel.
    #[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
    pub struct DeviceArgs {
        /// Where the device goes once set up [default: virtio].
        #[arg(long, value_enum, value_name = "TO")]
        pub attach: Option<AttachArg>,

        /// Leave the VDUSE device in place when stopping.
        #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        pub keep_device: Option<bool>,

        /// Size of the kernel's bounce buffer for the device, 1M to 1G [default: the
        /// kernel's, 64M].
        #[arg(long, value_name = "SIZE")]
        pub bounce_size: Option<ByteSize>,

        /// Microseconds each queue's worker keeps watching its emptied ring before it
        /// sleeps, 0 to 100000: fewer kicks and wake-ups, one CPU busy meanwhile
        /// [default: 0, off].
        #[arg(long, value_name = "MICROS")]
        pub busy_poll_us: Option<u32>,
    }

    /// `--user` and `--group`, for the servers that can drop their privileges.
    #[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
    pub struct RunAsArgs {
        /// Once the device is attached, serve as this user (a name or a uid), keeping no
        /// capability but CAP_NET_ADMIN in the main thread (to detach at exit). Needs root.
        #[arg(long, value_name = "USER")]
        pub user: Option<String>,

        /// The group to serve as with --user [default: the user's primary group].
        #[arg(long, value_name = "GROUP", requires = "user")]
        pub group: Option<String>,
    }

    /// `--log-level` values.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
    pub enum LogLevelArg {
        /// Nothing.
        Off,
        /// Failures only.
        Error,
        /// Failures and warnings.
        Warn,
        /// What the server does (the default).
        Info,
        /// Every request to the device, every queue start and stop.
        Debug,
        /// Everything.
        Trace,
    }

    impl From<LogLevelArg> for log::LevelFilter {
        fn from(arg: LogLevelArg) -> Self {
            match arg {
                LogLevelArg::Off => log::LevelFilter::Off,
                LogLevelArg::Error => log::LevelFilter::Error,
                LogLevelArg::Warn => log::LevelFilter::Warn,
                LogLevelArg::Info => log::LevelFilter::Info,
                LogLevelArg::Debug => log::LevelFilter::Debug,
                LogLevelArg::Trace => log::LevelFilter::Trace,
            }
        }
    }
}

/// What every server's configuration says about its device's life, as the runtime's
/// [`ServerOptions`](vduse::runtime::ServerOptions): `attach`, `keep-device`, `bounce-size`,
/// `busy-poll-us` and, for the servers that have them, `user` and `group`, checked (the
/// error names the key).
pub fn server_options(
    name: &str,
    attach: Attach,
    keep_device: bool,
    bounce_size: Option<ByteSize>,
    busy_poll_us: u32,
    (user, group): (Option<&str>, Option<&str>),
) -> Result<vduse::runtime::ServerOptions, String> {
    let mut options = vduse::runtime::ServerOptions::new(name);
    options.attach = attach.attaches();
    options.driver = attach.driver().map(str::to_owned);
    options.keep_device = keep_device;
    options.bounce_size = bounce_size
        .map(check_bounce_size)
        .transpose()
        .map_err(|problem| format!("bounce-size: {problem}"))?;
    options.busy_poll =
        check_busy_poll_us(busy_poll_us).map_err(|problem| format!("busy-poll-us: {problem}"))?;
    options.run_as = user
        .map(|user| vduse::privileges::resolve(user, group))
        .transpose()
        .map_err(|(key, problem)| format!("{}: {problem}", key.name()))?;
    Ok(options)
}

/// The path an `inflight-log` value names; `None` for `none`.
pub fn inflight_log_path(value: &str) -> Option<std::path::PathBuf> {
    (value != "none").then(|| value.into())
}

/// The sizes the kernel accepts for a device's bounce buffer (`bounce-size`).
pub const BOUNCE_SIZE_RANGE: (u64, u64) = (1 << 20, 1 << 30);

/// Checks a `bounce-size` value: 1 MiB to 1 GiB, whole 4 KiB pages. The error says so.
pub fn check_bounce_size(size: ByteSize) -> Result<u32, String> {
    let (min, max) = BOUNCE_SIZE_RANGE;
    if !(min..=max).contains(&size.0) || size.0 % 4096 != 0 {
        return Err(format!(
            "{size} is not a bounce buffer size the kernel takes: use whole 4K pages from \
             {} to {}, e.g. 16M (leave it out for the kernel's 64M)",
            ByteSize(min),
            ByteSize(max)
        ));
    }
    u32::try_from(size.0).map_err(|_| format!("{size} is too large"))
}

/// The largest `busy-poll-us`: 100 ms.
pub const MAX_BUSY_POLL_US: u32 = 100_000;

/// Checks a `busy-poll-us` value (microseconds each queue's worker watches its emptied
/// ring before sleeping).
pub fn check_busy_poll_us(micros: u32) -> Result<std::time::Duration, String> {
    if micros > MAX_BUSY_POLL_US {
        return Err(format!(
            "{micros} us is too long: use 0 (off) to {MAX_BUSY_POLL_US}; 20 to 100 is typical"
        ));
    }
    Ok(std::time::Duration::from_micros(micros.into()))
}

/// A size in bytes, written as a number of bytes or with a binary suffix: `512`, `64K`,
/// `100M`, `1G`, `2T` (also `KiB`, `MiB`, `GiB`, `TiB`; 1K = 1024 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

const SIZE_UNITS: [(&str, u32); 4] = [("T", 40), ("G", 30), ("M", 20), ("K", 10)];

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not a size: write a number of bytes or a number with K, M, G or T \
                 (powers of 1024), e.g. 1073741824 or 1G"
            )
        };
        let text_trimmed = text.trim();
        let digits_end = text_trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text_trimmed.len());
        let (digits, suffix) = text_trimmed.split_at(digits_end);
        let number: u64 = digits.parse().map_err(|_| bad())?;
        let suffix = suffix.trim();
        let shift = if suffix.is_empty() {
            0
        } else {
            let unit = suffix
                .strip_suffix("iB")
                .unwrap_or(suffix)
                .to_ascii_uppercase();
            SIZE_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|&(_, shift)| shift)
                .ok_or_else(bad)?
        };
        number
            .checked_mul(1 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("{text:?} is too large: sizes must fit in 64 bits"))
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that divides the size exactly: `1G`, `1536M`, `1000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, shift) in SIZE_UNITS {
            let unit = 1u64 << shift;
            if self.0 != 0 && self.0 % unit == 0 {
                return write!(f, "{}{name}", self.0 / unit);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 >= 1024 && self.0 % 1024 == 0 {
            serializer.serialize_str(&self.to_string())
        } else {
            serializer.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size in bytes, or a number with K, M, G or T such as 1G")
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(value))
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<ByteSize, E> {
                u64::try_from(value)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("{value} is negative: a size cannot be")))
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<ByteSize, E> {
                value.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The configuration file as read: its path, text and keys (`S`, the tool's layer of
/// settings).
#[derive(Debug, Clone)]
pub struct ConfigFile<S> {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its text, for finding where a key is when its value is wrong.
    pub text: String,
    /// Its keys.
    pub settings: S,
    /// The top-level keys it sets, as written.
    pub keys: Vec<String>,
}

impl<S: DeserializeOwned + Default> ConfigFile<S> {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(path, text)
    }

    /// Parses `text` as the file at `path`.
    pub fn parse(path: &Path, text: String) -> Result<Self, ConfigError> {
        // A file of comments only is an empty mapping, not an error.
        if text
            .lines()
            .all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'))
        {
            return Ok(Self {
                path: path.to_owned(),
                text,
                settings: S::default(),
                keys: Vec::new(),
            });
        }
        let syntax = |error| ConfigError::Syntax {
            path: path.to_owned(),
            error,
        };
        let settings = serde_yaml::from_str(&text).map_err(syntax)?;
        // The settings parsed, so the text is a mapping.
        let mapping: serde_yaml::Mapping = serde_yaml::from_str(&text).map_err(syntax)?;
        let keys = mapping
            .keys()
            .filter_map(|key| key.as_str().map(str::to_owned))
            .collect();
        Ok(Self {
            path: path.to_owned(),
            text,
            settings,
            keys,
        })
    }
}

impl<S> ConfigFile<S> {
    /// Whether the file sets the top-level `key`.
    pub fn has(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key)
    }

    /// Where the value of `key` came from: this file (at its line and column) when it sets
    /// it, else the default.
    pub fn origin(&self, key: &str) -> Origin {
        if self.has(key) {
            Origin::File {
                path: self.path.clone(),
                position: self.locate(key),
            }
        } else {
            Origin::Default
        }
    }

    /// Line and column (1-based) of the value of the top-level `key`, if the file writes it
    /// in block style (`key: value` at the start of a line).
    pub fn locate(&self, key: &str) -> Option<(usize, usize)> {
        self.text.lines().enumerate().find_map(|(index, line)| {
            let rest = line.strip_prefix(key)?;
            let after_colon = rest.trim_start_matches([' ', '\t']).strip_prefix(':')?;
            let value = after_colon.trim_start_matches([' ', '\t']);
            let column = line.len() - value.len() + 1;
            Some((index + 1, column))
        })
    }
}

/// The two layers of a configuration, the file (if any) and the flags over it, while a
/// tool resolves them.
#[derive(Debug)]
pub struct Layers<'a, S> {
    file: Option<&'a ConfigFile<S>>,
    flags: &'a S,
    empty: S,
}

impl<'a, S: Default> Layers<'a, S> {
    /// The flags laid over `file`.
    pub fn new(file: Option<&'a ConfigFile<S>>, flags: &'a S) -> Self {
        Self {
            file,
            flags,
            empty: S::default(),
        }
    }

    /// A key's value, the flag's over the file's, and whether it came from the flag.
    pub fn pick<T: Clone>(&self, key: impl Fn(&S) -> &Option<T>) -> (Option<T>, bool) {
        let from_file = self.file.map_or(&self.empty, |file| &file.settings);
        match key(self.flags) {
            Some(value) => (Some(value.clone()), true),
            None => (key(from_file).clone(), false),
        }
    }

    /// The `name` key, which every server requires: a valid VDUSE device name.
    pub fn name(&self, key: impl Fn(&S) -> &Option<String>) -> Result<String, ConfigError> {
        let (name, from_flag) = self.pick(key);
        let name = name.ok_or(ConfigError::Missing {
            key: "name",
            what: "NAME",
        })?;
        vduse::device_config::validate_name(&name)
            .map_err(|err| self.invalid("name", from_flag, err.to_string()))?;
        Ok(name)
    }

    /// The `bounce-size` key, checked against the kernel's range.
    pub fn bounce_size(
        &self,
        key: impl Fn(&S) -> &Option<ByteSize>,
    ) -> Result<Option<ByteSize>, ConfigError> {
        let (size, from_flag) = self.pick(key);
        if let Some(size) = size {
            check_bounce_size(size)
                .map_err(|problem| self.invalid("bounce-size", from_flag, problem))?;
        }
        Ok(size)
    }

    /// The `inflight-log` key: an absolute path or `none`; when not set, `default`.
    pub fn inflight_log(
        &self,
        key: impl Fn(&S) -> &Option<String>,
        default: String,
    ) -> Result<String, ConfigError> {
        let (path, from_flag) = self.pick(key);
        let path = path.unwrap_or_else(|| default.clone());
        if path != "none" && !path.starts_with('/') {
            return Err(self.invalid(
                "inflight-log",
                from_flag,
                format!(
                    "{path:?} is not an absolute path: give one (the default is {default}), or \
                     none to keep no log"
                ),
            ));
        }
        Ok(path)
    }

    /// The `queue-size` key (`default` when not set): a power of two in `range`; the
    /// error suggests `examples`.
    pub fn queue_size(
        &self,
        key: impl Fn(&S) -> &Option<u16>,
        default: u16,
        (min, max): (u16, u16),
        examples: &str,
    ) -> Result<u16, ConfigError> {
        let (size, from_flag) = self.pick(key);
        let size = size.unwrap_or(default);
        if !size.is_power_of_two() || !(min..=max).contains(&size) {
            return Err(self.invalid(
                "queue-size",
                from_flag,
                format!(
                    "{size} is not a power of two between {min} and {max}: use for example \
                     {examples}"
                ),
            ));
        }
        Ok(size)
    }

    /// The `busy-poll-us` key (0 when not set), checked.
    pub fn busy_poll_us(&self, key: impl Fn(&S) -> &Option<u32>) -> Result<u32, ConfigError> {
        let (micros, from_flag) = self.pick(key);
        let micros = micros.unwrap_or(0);
        check_busy_poll_us(micros)
            .map_err(|problem| self.invalid("busy-poll-us", from_flag, problem))?;
        Ok(micros)
    }

    /// The `user` and `group` keys: the user (and group) to serve as once the device is
    /// attached, each checked against the host's user database.
    pub fn run_as(
        &self,
        user: impl Fn(&S) -> &Option<String>,
        group: impl Fn(&S) -> &Option<String>,
    ) -> Result<(Option<String>, Option<String>), ConfigError> {
        let (user, user_flag) = self.pick(user);
        let (group, group_flag) = self.pick(group);
        match &user {
            None if group.is_some() => Err(self.invalid(
                "group",
                group_flag,
                "needs `user` too: the server switches group and user together".to_owned(),
            )),
            None => Ok((None, None)),
            Some(name) => match vduse::privileges::resolve(name, group.as_deref()) {
                Ok(_) => Ok((user, group)),
                Err((vduse::privileges::Key::User, problem)) => {
                    Err(self.invalid("user", user_flag, problem))
                }
                Err((vduse::privileges::Key::Group, problem)) => {
                    Err(self.invalid("group", group_flag, problem))
                }
            },
        }
    }

    /// The error for a bad value of `key`, naming where it came from: the flag, or the
    /// file's line and column.
    pub fn invalid(&self, key: &'static str, from_flag: bool, problem: String) -> ConfigError {
        let origin = match self.file {
            _ if from_flag => Origin::Flag,
            Some(file) => file.origin(key),
            None => Origin::Default,
        };
        ConfigError::Invalid {
            origin,
            key,
            problem,
        }
    }
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file, at this line and column when known.
    File {
        /// The file.
        path: PathBuf,
        /// Line and column of the value.
        position: Option<(usize, usize)>,
    },
    /// A command-line flag.
    Flag,
    /// Neither: the default, or nothing at all.
    Default,
}

/// What is wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the configuration file {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (part of the message, so not also a `source`).
        error: std::io::Error,
    },
    /// The file is not valid YAML, has an unknown key or a value of the wrong type.
    /// serde_yaml's message names the key and ends with "at line N column M".
    #[error("{}: {error}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (part of the message, so not also a `source`).
        error: serde_yaml::Error,
    },
    /// A key that has no default is not set.
    #[error("{key} is not set: set `{key}:` in the configuration file or pass --{key} {what}")]
    Missing {
        /// The key.
        key: &'static str,
        /// What it takes, for the hint.
        what: &'static str,
    },
    /// A value is out of range or conflicts with another.
    #[error("{}", invalid_message(origin, key, problem))]
    Invalid {
        /// Where the value came from.
        origin: Origin,
        /// The key.
        key: &'static str,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

fn invalid_message(origin: &Origin, key: &str, problem: &str) -> String {
    match origin {
        Origin::File {
            path,
            position: Some((line, column)),
        } => format!(
            "{}: {key}: {problem} at line {line} column {column}",
            path.display()
        ),
        Origin::File {
            path,
            position: None,
        } => format!("{}: {key}: {problem}", path.display()),
        Origin::Flag => format!("--{key}: {problem}"),
        Origin::Default => format!("{key}: {problem}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct Layer {
        name: Option<String>,
        size: Option<ByteSize>,
    }

    #[test]
    fn sizes_parse_with_and_without_suffixes() {
        for (text, bytes) in [
            ("512", 512),
            ("64K", 64 << 10),
            ("64k", 64 << 10),
            ("100M", 100 << 20),
            ("1G", 1 << 30),
            ("1GiB", 1 << 30),
            ("2T", 2 << 40),
            (" 3 G ", 3 << 30),
        ] {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
        }
        for bad in [
            "",
            "G",
            "1.5G",
            "1GB",
            "-1",
            "1P",
            "0x10",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
        assert!(
            "20000000T"
                .parse::<ByteSize>()
                .unwrap_err()
                .contains("too large")
        );
        assert_eq!(ByteSize(1 << 30).to_string(), "1G");
        assert_eq!(ByteSize(1536 << 20).to_string(), "1536M");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }

    #[test]
    fn bounce_sizes_are_checked_against_the_kernels_range() {
        assert_eq!(check_bounce_size(ByteSize(16 << 20)), Ok(16 << 20));
        assert_eq!(check_bounce_size(ByteSize(1 << 20)), Ok(1 << 20));
        assert_eq!(check_bounce_size(ByteSize(1 << 30)), Ok(1 << 30));
        for bad in [0, 4096, (1 << 20) - 4096, (1 << 30) + 4096, (16 << 20) + 1] {
            let error = check_bounce_size(ByteSize(bad)).unwrap_err();
            assert!(error.contains("1M to 1G"), "{error}");
        }
    }

    #[test]
    fn server_options_carry_the_common_keys() {
        let options = server_options(
            "d",
            Attach::Vhost,
            true,
            Some(ByteSize(16 << 20)),
            50,
            (None, None),
        )
        .unwrap();
        assert!(options.attach && options.keep_device);
        assert_eq!(options.driver.as_deref(), Some("vhost_vdpa"));
        assert_eq!(options.bounce_size, Some(16 << 20));
        assert_eq!(options.busy_poll, std::time::Duration::from_micros(50));
        let detached = server_options("d", Attach::None, false, None, 0, (None, None)).unwrap();
        assert!(!detached.attach && detached.driver.is_none());
        assert!(
            server_options("d", Attach::None, false, Some(ByteSize(1)), 0, (None, None))
                .unwrap_err()
                .starts_with("bounce-size: ")
        );
        let as_nobody =
            server_options("d", Attach::None, false, None, 0, (Some("nobody"), None)).unwrap();
        assert_eq!(as_nobody.run_as.map(|r| r.user), Some("nobody".to_owned()));
        assert!(
            server_options(
                "d",
                Attach::None,
                false,
                None,
                0,
                (Some("nobody"), Some("no-such"))
            )
            .unwrap_err()
            .starts_with("group: no group \"no-such\"")
        );
    }

    #[test]
    fn busy_poll_is_bounded() {
        assert_eq!(check_busy_poll_us(0), Ok(std::time::Duration::ZERO));
        assert_eq!(
            check_busy_poll_us(50),
            Ok(std::time::Duration::from_micros(50))
        );
        assert!(
            check_busy_poll_us(100_001)
                .unwrap_err()
                .contains("0 (off) to 100000")
        );
    }

    #[test]
    fn keys_are_found_where_the_file_writes_them() {
        let file = ConfigFile::<Layer>::parse(
            Path::new("x.yaml"),
            "name:   d\n# size: 1G\nsize: 1G\n".into(),
        )
        .unwrap();
        assert_eq!(file.settings.name.as_deref(), Some("d"));
        assert_eq!(file.settings.size, Some(ByteSize(1 << 30)));
        assert_eq!(file.locate("size"), Some((3, 7)));
        assert_eq!(
            file.origin("name"),
            Origin::File {
                path: "x.yaml".into(),
                position: Some((1, 9))
            }
        );
        assert_eq!(file.keys, ["name", "size"]);
        assert!(file.has("size") && !file.has("mtu"));
        let partial = ConfigFile::<Layer>::parse(Path::new("x.yaml"), "size: 1M\n".into()).unwrap();
        assert_eq!(partial.origin("name"), Origin::Default);
        let flags = Layer {
            name: Some("flag".into()),
            size: None,
        };
        let layers = Layers::new(Some(&partial), &flags);
        assert_eq!(layers.pick(|s| &s.name), (Some("flag".into()), true));
        assert_eq!(layers.pick(|s| &s.size), (Some(ByteSize(1 << 20)), false));
        assert_eq!(
            layers.invalid("size", false, "bad".into()).to_string(),
            "x.yaml: size: bad at line 1 column 7"
        );
        assert_eq!(
            layers.invalid("name", true, "bad".into()).to_string(),
            "--name: bad"
        );
        let no_file = Layers::new(None, &flags);
        assert_eq!(no_file.pick(|s| &s.size), (None, false));
    }

    #[test]
    fn comments_only_is_an_empty_file_and_unknown_keys_are_named() {
        let empty = ConfigFile::<Layer>::parse(Path::new("x.yaml"), "# nothing\n\n".into());
        assert!(empty.unwrap().settings.name.is_none());
        let error = ConfigFile::<Layer>::parse(Path::new("x.yaml"), "name: d\nnmae: d\n".into())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("x.yaml") && error.contains("nmae"),
            "{error}"
        );
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn invalid_values_name_where_they_came_from() {
        let at = |origin| {
            ConfigError::Invalid {
                origin,
                key: "size",
                problem: "too big".into(),
            }
            .to_string()
        };
        assert_eq!(at(Origin::Flag), "--size: too big");
        assert_eq!(at(Origin::Default), "size: too big");
        assert_eq!(
            at(Origin::File {
                path: "x.yaml".into(),
                position: Some((3, 7))
            }),
            "x.yaml: size: too big at line 3 column 7"
        );
    }
}
