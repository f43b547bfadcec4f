//! The configuration: a YAML file, command-line overrides, and the checked result.
//!
//! [`Settings`] is one layer of keys, every one optional: the file is one layer, the flags
//! another. [`Config::resolve`] lays the flags over the file, fills in defaults and checks
//! every value, naming the key and where it came from when one is wrong.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::backend::Mode;
use crate::net::{MIN_MTU, Mac};
pub use vduse_kit::config::{Attach, ByteSize, ConfigError, Origin};
pub use vduse_kit::device_keys::DeviceKeys;

/// The configuration file of vduse-net-null.
pub type ConfigFile = vduse_kit::config::ConfigFile<Settings>;

/// Smallest and largest queue size (the kernel's virtio-net driver takes up to 32768; a
/// receive queue needs a few buffers to be useful).
pub const QUEUE_SIZE_RANGE: (u16, u16) = (16, 4096);

/// Every key of the configuration file, in the order `--print-config` shows them.
pub const KEYS: [&str; 15] = vduse_kit::keys![
    "mode",
    "mac",
    "mtu",
    "link",
    "queue-size",
    "offloads",
    "stats-interval",
];

/// Defaults of the keys that have one.
pub mod defaults {
    use super::{Attach, Link, Mode};
    /// `mode`.
    pub const MODE: Mode = Mode::Drop;
    /// `mtu`.
    pub const MTU: u16 = 1500;
    /// `link`.
    pub const LINK: Link = Link::Up;
    /// `queue-size`.
    pub const QUEUE_SIZE: u16 = 256;
    /// `offloads`.
    pub const OFFLOADS: bool = true;
    /// `stats-interval` (0: never).
    pub const STATS_INTERVAL: u32 = 0;
    /// `attach`.
    pub const ATTACH: Attach = Attach::Virtio;
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    /// Carrier on.
    Up,
    /// Carrier off.
    Down,
}

impl Link {
    /// The word the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            Link::Up => "up",
            Link::Down => "down",
        }
    }
}

/// A MAC address in the configuration: `02:00:00:00:00:01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacAddress(pub Mac);

impl Serialize for MacAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MacAddress {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Parsed inside a visitor: an error made there gets the key and the line from
        // serde_yaml, one made after `String::deserialize` returns gets neither.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = MacAddress;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a MAC address such as 02:00:00:00:00:01")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<MacAddress, E> {
                text.parse().map(MacAddress).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl std::str::FromStr for MacAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        text.parse().map(MacAddress)
    }
}

vduse_kit::settings! {
    /// One layer of configuration keys: the file, or the command-line flags.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub struct Settings {
        /// `drop` or `echo`.
        pub mode: Option<Mode>,
        /// MAC address; random (locally administered) when not given.
        pub mac: Option<MacAddress>,
        /// MTU.
        pub mtu: Option<u16>,
        /// Link state at start.
        pub link: Option<Link>,
        /// Size of each queue.
        pub queue_size: Option<u16>,
        /// Offer checksum and segmentation offloads.
        pub offloads: Option<bool>,
        /// Seconds between two lines of counters on stdout; 0: never.
        pub stats_interval: Option<u32>,
    }
}

/// The checked configuration, every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    /// Device name.
    pub name: String,
    /// Drop or echo.
    pub mode: Mode,
    /// MAC address (chosen at random when the configuration has none).
    pub mac: MacAddress,
    /// MTU, 68 to 65535.
    pub mtu: u16,
    /// Link state at start.
    pub link: Link,
    /// Size of each queue: a power of two in [16, 4096].
    pub queue_size: u16,
    /// Offer checksum and segmentation offloads.
    pub offloads: bool,
    /// Seconds between two lines of counters on stdout; 0: never.
    pub stats_interval: u32,
    /// The keys every server shares.
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

        let (mac, mac_flag) = layers.pick(|s| &s.mac);
        let mac = match mac {
            Some(MacAddress(mac)) if !mac.is_unicast() => {
                return Err(invalid(
                    "mac",
                    mac_flag,
                    format!(
                        "{mac} cannot be an interface's address (multicast or all zeros): \
                         clear the lowest bit of the first byte, e.g. 02:00:00:00:00:01"
                    ),
                ));
            }
            Some(mac) => mac,
            None => MacAddress(Mac::random().map_err(|error| {
                invalid(
                    "mac",
                    false,
                    format!("no random address could be drawn ({error}): set one"),
                )
            })?),
        };

        let (mtu, mtu_flag) = layers.pick(|s| &s.mtu);
        let mtu = mtu.unwrap_or(defaults::MTU);
        if mtu < MIN_MTU {
            return Err(invalid(
                "mtu",
                mtu_flag,
                format!("{mtu} is below the smallest MTU, {MIN_MTU}: use 68 to 65535"),
            ));
        }

        let queue_size = layers.queue_size(
            |s| &s.queue_size,
            defaults::QUEUE_SIZE,
            QUEUE_SIZE_RANGE,
            "256 or 1024",
        )?;

        let device = DeviceKeys::resolve(
            &layers,
            defaults::ATTACH,
            format!("/run/vduse/net/{name}.inflight"),
        )?;

        Ok(Config {
            name,
            mode: layers.pick(|s| &s.mode).0.unwrap_or(defaults::MODE),
            mac,
            mtu,
            link: layers.pick(|s| &s.link).0.unwrap_or(defaults::LINK),
            queue_size,
            offloads: layers.pick(|s| &s.offloads).0.unwrap_or(defaults::OFFLOADS),
            stats_interval: layers
                .pick(|s| &s.stats_interval)
                .0
                .unwrap_or(defaults::STATS_INTERVAL),
            device,
        })
    }

    /// Reads the file at `path` (when given), lays `flags` over it and checks the result.
    pub fn load(path: Option<&Path>, flags: &Settings) -> Result<Config, ConfigError> {
        let file = path.map(ConfigFile::load).transpose()?;
        Self::resolve(file.as_ref(), flags)
    }

    /// The configuration as YAML, as `--print-config` shows it.
    pub fn to_yaml(&self, mac_is_random: bool) -> Result<String, serde_yaml::Error> {
        let body = serde_yaml::to_string(self)?;
        let note = if mac_is_random {
            "# (mac: drawn at random for this run; set it to keep one address)\n"
        } else {
            ""
        };
        Ok(format!(
            "# vduse-net-null: effective configuration\n{note}{body}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse(Path::new("net.yaml"), text.to_owned())
    }

    fn resolve(text: &str) -> Result<Config, ConfigError> {
        Config::resolve(Some(&file(text)?), &Settings::default())
    }

    fn error(text: &str) -> String {
        resolve(text).unwrap_err().to_string()
    }

    #[test]
    fn a_name_is_enough_and_the_mac_is_random_local_unicast() {
        let config = resolve("name: net0\n").unwrap();
        assert_eq!(config.mode, Mode::Drop);
        assert_eq!((config.mtu, config.link), (1500, Link::Up));
        assert_eq!(config.queue_size, 256);
        assert!(config.offloads);
        assert_eq!(config.stats_interval, 0);
        assert_eq!(config.device.attach, Attach::Virtio);
        assert!(!config.device.keep_device);
        assert!(config.mac.0.is_unicast() && config.mac.0.0[0] & 0x02 != 0);
        assert_ne!(resolve("name: net0\n").unwrap().mac, config.mac);
    }

    #[test]
    fn every_key_is_read() {
        let config = resolve(
            "name: net1\nmode: echo\nmac: 02:11:22:33:44:55\nmtu: 9000\nlink: down\n\
             queue-size: 1024\noffloads: false\nstats-interval: 5\nattach: none\n\
             keep-device: true\nbounce-size: 8M\n",
        )
        .unwrap();
        assert_eq!(config.mode, Mode::Echo);
        assert_eq!(config.mac.0.to_string(), "02:11:22:33:44:55");
        assert_eq!((config.mtu, config.link), (9000, Link::Down));
        assert_eq!(config.queue_size, 1024);
        assert!(!config.offloads && config.device.keep_device);
        assert_eq!(config.stats_interval, 5);
        assert_eq!(config.device.attach, Attach::None);
        assert_eq!(config.device.bounce_size, Some(ByteSize(8 << 20)));
    }

    #[test]
    fn flags_override_the_file() {
        let flags = Settings {
            mode: Some(Mode::Echo),
            mtu: Some(4000),
            ..Settings::default()
        };
        let config = Config::resolve(
            Some(&file("name: n\nmode: drop\nmtu: 1500\n").unwrap()),
            &flags,
        )
        .unwrap();
        assert_eq!((config.mode, config.mtu), (Mode::Echo, 4000));
    }

    #[test]
    fn bad_values_name_the_key_the_line_and_the_fix() {
        for (text, expected) in [
            (
                "name: n\nmtu: 60\n",
                "net.yaml: mtu: 60 is below the smallest MTU, 68: use 68 to 65535 at line 2 column 6",
            ),
            (
                "name: n\nmac: 01:00:5e:00:00:01\n",
                "net.yaml: mac: 01:00:5e:00:00:01 cannot be an interface's address",
            ),
            ("name: n\nmac: 02:00\n", "not a MAC address"),
            (
                "name: n\nqueue-size: 100\n",
                "not a power of two between 16 and 4096",
            ),
            ("name: n\nqueue-size: 8\n", "at line 2 column 13"),
            (
                "name: n\nmode: loop\n",
                "unknown variant `loop`, expected `drop` or `echo`",
            ),
            ("name: n\nlink: maybe\n", "unknown variant `maybe`"),
            ("name: n\nmtu: 70000\n", "mtu"),
            (
                "name: n\nbounce-size: 100K\n",
                "use whole 4K pages from 1M to 1G",
            ),
            ("name: a/b\n", "name"),
            ("name: n\nspeed: 10G\n", "unknown field `speed`"),
        ] {
            let message = error(text);
            assert!(message.contains(expected), "{text:?}: {message}");
        }
        assert_eq!(
            Config::resolve(None, &Settings::default())
                .unwrap_err()
                .to_string(),
            "name is not set: set `name:` in the configuration file or pass --name NAME"
        );
    }

    #[test]
    fn printed_configuration_reads_back_the_same() {
        let config = resolve("name: net0\nmode: echo\nbounce-size: 16M\n").unwrap();
        let printed = config.to_yaml(true).unwrap();
        assert!(printed.contains("drawn at random"), "{printed}");
        let again = resolve(&printed).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn keys_lists_every_key() {
        let full = Settings {
            name: Some("n".into()),
            mode: Some(Mode::Drop),
            mac: Some(MacAddress(Mac([2, 0, 0, 0, 0, 1]))),
            mtu: Some(1500),
            link: Some(Link::Up),
            queue_size: Some(256),
            offloads: Some(true),
            stats_interval: Some(0),
            attach: Some(Attach::Virtio),
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
        for key in KEYS {
            assert!(file.has(key), "{key}");
        }
    }
}
