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
    pub fn for_error(error: &crate::Error) -> Exit {
        if error.is_unavailable() {
            Exit::Unavailable
        } else if error.is_permission() {
            Exit::NoPermission
        } else {
            match error {
                crate::Error::NameInUse { .. }
                | crate::Error::InvalidConfig { .. }
                | crate::Error::Backend { .. } => Exit::Config,
                crate::Error::DeviceTypeRejected { .. } => Exit::Unavailable,
                _ => Exit::Software,
            }
        }
    }
}

/// Parses a tool's command line. On `--help` or `--version` the text is printed and the
/// result is `Err(Exit::Ok)`; on a usage error the message is printed and it is
/// `Err(Exit::Usage)`.
#[cfg(feature = "cli")]
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
