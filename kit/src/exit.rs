//! Exit statuses shared by the tools: sysexits.h where one fits.

use std::process::ExitCode;

/// How a tool ends. Each tool documents which of these it uses and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// A condition the caller asked about does not hold (e.g. `vduse-probe --require`).
    Unmet = 1,
    /// EX_USAGE: bad command line.
    Usage = 64,
    /// EX_UNAVAILABLE: no VDUSE on this host.
    Unavailable = 69,
    /// EX_SOFTWARE: an unexpected failure.
    Software = 70,
    /// EX_IOERR: I/O on a backing store failed.
    IoError = 74,
    /// EX_NOPERM: VDUSE is present but this user may not use it.
    NoPermission = 77,
    /// EX_CONFIG: the configuration is wrong.
    Config = 78,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

impl Exit {
    /// The status a `vduse` error calls for: 69 when VDUSE (or a needed module) is not
    /// there, 77 when this user may not use it, 78 for what the configuration can fix (a
    /// name in use, a configuration the kernel refuses), 70 otherwise.
    pub fn for_error(error: &vduse::Error) -> Exit {
        if error.is_unavailable() {
            Exit::Unavailable
        } else if error.is_permission() {
            Exit::NoPermission
        } else {
            match error {
                vduse::Error::NameInUse { .. }
                | vduse::Error::DeviceServed { .. }
                | vduse::Error::TakeOverRefused { .. }
                | vduse::Error::InvalidConfig { .. }
                | vduse::Error::Backend { .. } => Exit::Config,
                vduse::Error::DeviceTypeRejected { .. } => Exit::Unavailable,
                _ => Exit::Software,
            }
        }
    }
}

/// Parses a tool's command line. On `--help` or `--version` the text is printed and the
/// result is `Err(Exit::Ok)`; on a usage error the message is printed and it is
/// `Err(Exit::Usage)`.
pub fn parse_args<P: clap::Parser>(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<P, Exit> {
    P::try_parse_from(args).map_err(|error| {
        let _ = error.print();
        match error.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                Exit::Ok
            }
            _ => Exit::Usage,
        }
    })
}

/// The `--version` text of a tool: its version (of the crate that expands the macro) and
/// the VDUSE interface this library knows, plus any further lines given.
#[macro_export]
macro_rules! long_version {
    ($($extra:literal),* $(,)?) => {
        concat!(
            env!("CARGO_PKG_VERSION"),
            "\nVDUSE API versions: 0, 1",
            "\nVDUSE features: queue-ready (bit 0), suspend (bit 1)"
            $(, $extra)*
        )
    };
}

// The text above names what the uapi mirror has: keep them together.
const _: () = assert!(vduse::control::MAX_API_VERSION == 1);
const _: () = assert!(vduse::uapi::VDUSE_F_QUEUE_READY == 0 && vduse::uapi::VDUSE_F_SUSPEND == 1);

/// Sets up logging to stderr for a tool.
///
/// The level comes from `level` (a `--log-level` flag) if given, else from `VDUSE_LOG` or
/// `RUST_LOG` (env_logger's syntax, e.g. `debug` or `vduse=debug`), else `info`. When
/// stderr is the journal (see [`stderr_is_journal`]) each line starts with its syslog
/// priority (`<3>` error ... `<7>` debug), which journald reads as the message's priority,
/// and carries no timestamp, which journald adds; elsewhere lines look like
/// `[INFO  target] message`.
pub fn init_logging(level: Option<log::LevelFilter>) {
    use std::io::Write;

    let mut builder = env_logger::Builder::new();
    match level {
        Some(level) => {
            builder.filter_level(level);
        }
        None => match std::env::var("VDUSE_LOG").or_else(|_| std::env::var("RUST_LOG")) {
            Ok(spec) => {
                builder.parse_filters(&spec);
            }
            Err(_) => {
                builder.filter_level(log::LevelFilter::Info);
            }
        },
    }
    if stderr_is_journal() {
        builder.format(|out, record| {
            let priority = match record.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(out, "<{priority}>{}: {}", record.target(), record.args())
        });
    }
    let _ = builder.try_init();
}

/// Prints a tool's fatal error on stderr as `TOOL: error: ...` (all causes, `{:#}`), with
/// the syslog priority prefix `<3>` when stderr goes to the journal (see
/// [`stderr_is_journal`]; [`init_logging`] does the same for log lines).
pub fn print_error(tool: &str, error: &dyn std::fmt::Display) {
    let priority = if stderr_is_journal() { "<3>" } else { "" };
    eprintln!("{priority}{tool}: error: {error:#}");
}

/// Whether stderr is the stream systemd connected to the journal. systemd names that stream
/// in `JOURNAL_STREAM` as `DEVICE:INODE`; a child whose stderr was redirected (to a file, a
/// pipe, a terminal) inherits the variable all the same, so it counts only if it names
/// stderr itself.
pub fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    // A duplicate of the descriptor, to read its metadata through `File`; closed at once.
    let stderr = match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(stderr) => std::fs::File::from(stderr),
        Err(_) => return false,
    };
    match stderr.metadata() {
        Ok(metadata) => journal_stream_is(&value, metadata.dev(), metadata.ino()),
        Err(_) => false,
    }
}

/// Whether `value`, a `JOURNAL_STREAM`, names the stream with device `dev` and inode `ino`.
/// Anything but two decimal numbers around a colon names no stream.
fn journal_stream_is(value: &std::ffi::OsStr, dev: u64, ino: u64) -> bool {
    let decimal = |text: &str| {
        if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        text.parse::<u64>().ok()
    };
    let Some((value_dev, value_ino)) = value.to_str().and_then(|value| value.split_once(':'))
    else {
        return false;
    };
    decimal(value_dev) == Some(dev) && decimal(value_ino) == Some(ino)
}

/// The flags a server's signal handlers set: `stop` on SIGINT and SIGTERM, `log_state` on
/// SIGUSR1 (see [`vduse::runtime::Server::run_until`]), and, for a server that can take a
/// new configuration while it serves, `reload` on SIGHUP.
#[derive(Debug, Default)]
pub struct ServeSignals {
    /// Set by SIGINT and SIGTERM.
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Set by SIGUSR1.
    pub log_state: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Set by SIGHUP, when registered with [`ServeSignals::register_with_reload`].
    pub reload: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ServeSignals {
    /// Installs the handlers of SIGINT, SIGTERM and SIGUSR1; the error names the signal.
    /// SIGHUP keeps its default action (the server ends).
    pub fn register() -> Result<Self, String> {
        use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
        let signals = Self::default();
        for (signal, flag) in [
            (SIGINT, &signals.stop),
            (SIGTERM, &signals.stop),
            (SIGUSR1, &signals.log_state),
        ] {
            signal_hook::flag::register(signal, std::sync::Arc::clone(flag))
                .map_err(|error| format!("cannot handle signal {signal}: {error}"))?;
        }
        Ok(signals)
    }

    /// As [`ServeSignals::register`], and SIGHUP sets `reload`.
    pub fn register_with_reload() -> Result<Self, String> {
        use signal_hook::consts::SIGHUP;
        let signals = Self::register()?;
        signal_hook::flag::register(SIGHUP, std::sync::Arc::clone(&signals.reload))
            .map_err(|error| format!("cannot handle signal {SIGHUP}: {error}"))?;
        Ok(signals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_names_one_device_and_inode() {
        let is = |value: &str| journal_stream_is(value.as_ref(), 8, 12345);
        assert!(is("8:12345"));
        assert!(!is("8:12346"));
        assert!(!is("9:12345"));
        assert!(!is("12345:8"));
        // What is not two decimal numbers names nothing, even with the right digits in it.
        for value in [
            "",
            ":",
            "8",
            "8:",
            ":12345",
            "8:12345:0",
            " 8:12345",
            "8:12345\n",
            "+8:12345",
            "0x8:12345",
            "8:-12345",
            "8;12345",
            "8:99999999999999999999",
        ] {
            assert!(!is(value), "{value:?}");
        }
        // A value that is not UTF-8 names nothing either.
        use std::os::unix::ffi::OsStrExt;
        assert!(!journal_stream_is(
            std::ffi::OsStr::from_bytes(b"8:12345\xff"),
            8,
            12345
        ));
        // The largest device and inode numbers parse.
        assert!(journal_stream_is(
            format!("{}:{}", u64::MAX, u64::MAX).as_ref(),
            u64::MAX,
            u64::MAX
        ));
    }
}
