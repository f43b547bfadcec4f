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
