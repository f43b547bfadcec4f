//! What the device servers of vduse-rs (`vduse-probe`, `vduse-blk`, `vduse-net-null`,
//! `vduse-fs`) share, on top of the [`vduse`] library, which has no command line,
//! configuration file or exit status of its own:
//!
//! - [`exit`]: the tools' exit statuses (sysexits.h where one fits, and the status each
//!   [`vduse::Error`] calls for), argument parsing with those statuses, logging to stderr
//!   or the journal ([`exit::init_logging`]), fatal errors ([`exit::print_error`]), and the
//!   SIGINT, SIGTERM and SIGUSR1 flags a server runs until ([`exit::ServeSignals`]).
//! - [`config`]: what every server's YAML configuration shares: the file and where its
//!   keys are, sizes with binary suffixes, the `attach` choice, the device keys a server
//!   turns into [`vduse::runtime::ServerOptions`], errors naming the key and where its
//!   value came from, and the `--attach` and `--log-level` values ([`config::cli`]).
//! - [`device_keys`]: the keys every server shares (`name`, `attach`, `keep-device`,
//!   `bounce-size`, `busy-poll-us`, `user`, `group`, `inflight-log`), declared once
//!   ([`settings!`], [`keys!`]) and checked once ([`device_keys::DeviceKeys`]).
//! - [`jobs`]: requests a queue's worker hands to a pool of threads, and the answers
//!   handed back through an eventfd the worker polls.
//! - [`live`]: the line of counters a server redraws on a terminal.

#![warn(missing_docs)]

pub mod config;
pub mod device_keys;
pub mod exit;
pub mod jobs;
pub mod live;
