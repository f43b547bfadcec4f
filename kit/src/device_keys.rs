//! The keys every device server shares, declared once: `name` first in every configuration,
//! and after a server's own keys `attach`, `keep-device`, `bounce-size`, `busy-poll-us`,
//! `user`, `group` and `inflight-log`.
//!
//! A server declares its layer of optional keys with [`settings!`](crate::settings), which
//! adds these to the struct (so that the YAML file is still read with
//! `deny_unknown_fields`, and an error still names the key and its line), and resolves them
//! into a [`DeviceKeys`] that its checked configuration holds (flattened: `--print-config`
//! shows them after the server's own).

use serde::Serialize;

use crate::config::{Attach, ByteSize, ConfigError, Layers, server_options};

/// The shared keys of one layer (the file, or the flags); [`settings!`](crate::settings)
/// implements it.
pub trait DeviceLayer {
    /// `name`.
    fn name(&self) -> &Option<String>;
    /// `attach`.
    fn attach(&self) -> &Option<Attach>;
    /// `keep-device`.
    fn keep_device(&self) -> &Option<bool>;
    /// `bounce-size`.
    fn bounce_size(&self) -> &Option<ByteSize>;
    /// `busy-poll-us`.
    fn busy_poll_us(&self) -> &Option<u32>;
    /// `user`.
    fn user(&self) -> &Option<String>;
    /// `group`.
    fn group(&self) -> &Option<String>;
    /// `inflight-log`.
    fn inflight_log(&self) -> &Option<String>;
}

/// The shared keys after a server's own, checked, every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DeviceKeys {
    /// Where the device goes once it is set up.
    pub attach: Attach,
    /// Leave the VDUSE device in place when the server stops.
    pub keep_device: bool,
    /// Size of the kernel's bounce buffer; `None`: the kernel's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounce_size: Option<ByteSize>,
    /// Microseconds each queue's worker watches its emptied ring before sleeping; 0: off.
    pub busy_poll_us: u32,
    /// User to serve as once the device is attached (a name or a uid); `None`: stay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Group to serve as with `user`; `None`: the user's primary group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Where the requests in flight are recorded, so that a server started after this one
    /// was killed takes the device over: an absolute path, or `none`.
    pub inflight_log: String,
}

impl DeviceKeys {
    /// Checks the shared keys of `layers`: `attach` is `default_attach` and `inflight-log`
    /// `default_inflight_log` when not set, `keep-device` false and `busy-poll-us` 0.
    pub fn resolve<S: DeviceLayer + Default>(
        layers: &Layers<'_, S>,
        default_attach: Attach,
        default_inflight_log: String,
    ) -> Result<DeviceKeys, ConfigError> {
        let busy_poll_us = layers.busy_poll_us(S::busy_poll_us)?;
        let bounce_size = layers.bounce_size(S::bounce_size)?;
        let (user, group) = layers.run_as(S::user, S::group)?;
        let inflight_log = layers.inflight_log(S::inflight_log, default_inflight_log)?;
        Ok(DeviceKeys {
            attach: layers.pick(S::attach).0.unwrap_or(default_attach),
            keep_device: layers.pick(S::keep_device).0.unwrap_or(false),
            bounce_size,
            busy_poll_us,
            user,
            group,
            inflight_log,
        })
    }

    /// The runtime's options for device `name`, as these keys say (see
    /// [`server_options`]), the in-flight log's path included.
    pub fn server_options(&self, name: &str) -> Result<vduse::runtime::ServerOptions, String> {
        let mut options = server_options(
            name,
            self.attach,
            self.keep_device,
            self.bounce_size,
            self.busy_poll_us,
            (self.user.as_deref(), self.group.as_deref()),
        )?;
        options.inflight_log = self.inflight_log_path();
        Ok(options)
    }

    /// The in-flight log's path; `None` for `none`.
    pub fn inflight_log_path(&self) -> Option<std::path::PathBuf> {
        crate::config::inflight_log_path(&self.inflight_log)
    }
}

/// Declares a server's layer of optional configuration keys: the struct as written, with
/// `name` (`Option<String>`) before its fields and the other shared keys after them, and
/// its [`DeviceLayer`](crate::device_keys::DeviceLayer). The caller writes the derives
/// and serde attributes; the struct's fields must be public.
///
/// ```
/// vduse_kit::settings! {
///     /// One layer of keys.
///     #[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
///     #[serde(deny_unknown_fields, rename_all = "kebab-case")]
///     pub struct Settings {
///         /// Size of each queue.
///         pub queue_size: Option<u16>,
///     }
/// }
/// let settings: Settings = serde_yaml::from_str("name: d0\nqueue-size: 64\nkeep-device: true\n").unwrap();
/// assert_eq!((settings.name.as_deref(), settings.keep_device), (Some("d0"), Some(true)));
/// ```
#[macro_export]
macro_rules! settings {
    (
        $(#[$meta:meta])*
        $vis:vis struct $settings:ident { $($fields:tt)* }
    ) => {
        $(#[$meta])*
        $vis struct $settings {
            /// Device name: the node becomes `/dev/vduse/NAME`.
            pub name: ::core::option::Option<::std::string::String>,
            $($fields)*
            /// Where the device goes once it is set up.
            pub attach: ::core::option::Option<$crate::config::Attach>,
            /// Leave the VDUSE device in place when the server stops.
            pub keep_device: ::core::option::Option<bool>,
            /// Size of the kernel's bounce buffer for the device.
            pub bounce_size: ::core::option::Option<$crate::config::ByteSize>,
            /// Microseconds each queue's worker watches its emptied ring before sleeping.
            pub busy_poll_us: ::core::option::Option<u32>,
            /// User to serve as once the device is attached.
            pub user: ::core::option::Option<::std::string::String>,
            /// Group to serve as once the device is attached.
            pub group: ::core::option::Option<::std::string::String>,
            /// The in-flight log's path, or `none`.
            pub inflight_log: ::core::option::Option<::std::string::String>,
        }

        impl $crate::device_keys::DeviceLayer for $settings {
            fn name(&self) -> &::core::option::Option<::std::string::String> {
                &self.name
            }
            fn attach(&self) -> &::core::option::Option<$crate::config::Attach> {
                &self.attach
            }
            fn keep_device(&self) -> &::core::option::Option<bool> {
                &self.keep_device
            }
            fn bounce_size(&self) -> &::core::option::Option<$crate::config::ByteSize> {
                &self.bounce_size
            }
            fn busy_poll_us(&self) -> &::core::option::Option<u32> {
                &self.busy_poll_us
            }
            fn user(&self) -> &::core::option::Option<::std::string::String> {
                &self.user
            }
            fn group(&self) -> &::core::option::Option<::std::string::String> {
                &self.group
            }
            fn inflight_log(&self) -> &::core::option::Option<::std::string::String> {
                &self.inflight_log
            }
        }
    };
}

/// Every key of a server's configuration, in the order `--print-config` shows them:
/// `name`, the server's own keys as given, then the shared ones.
///
/// ```
/// const KEYS: [&str; 9] = vduse_kit::keys!["queue-size"];
/// assert_eq!((KEYS[0], KEYS[1], KEYS[2], KEYS[8]), ("name", "queue-size", "attach", "inflight-log"));
/// ```
#[macro_export]
macro_rules! keys {
    ($($key:literal),* $(,)?) => {
        [
            "name",
            $($key,)*
            "attach",
            "keep-device",
            "bounce-size",
            "busy-poll-us",
            "user",
            "group",
            "inflight-log",
        ]
    };
}
