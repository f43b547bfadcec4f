//! `vduse-probe`: report whether and how VDUSE works on this host, for people (a readable
//! report), programs (`--json`) and shells (`--format env`, `get KEY`, `--require EXPR`).

pub mod cli;
pub mod host;
pub mod remove;
pub mod render;
pub mod report;
pub mod require;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{Cli, Command, Format, Key};
use crate::host::{Host, RealHost};
use crate::report::{Interrupt, Interrupted, ProbeOptions, Report};
use crate::require::Requirement;

/// Exit statuses (sysexits.h where one fits), shared with the other tools. Documented in
/// `--help` and vduse-probe(1).
pub use vduse_kit::exit::Exit;

/// Environment variable that keeps each throwaway device for this many milliseconds before
/// destroying it; a testing aid that makes interruption mid-probe reproducible.
pub const HOLD_ENV: &str = "VDUSE_PROBE_HOLD_MS";

/// The exit status the report itself implies (without `--require`).
pub fn report_exit(report: &Report) -> Exit {
    if report.usable {
        Exit::Ok
    } else if !report.available {
        Exit::Unavailable
    } else if !report.needs_privilege.is_empty() {
        Exit::NoPermission
    } else {
        Exit::Software
    }
}

/// Runs the tool with `args` (the program name first) and returns its exit status.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli: Cli = match vduse_kit::exit::parse_args(args) {
        Ok(cli) => cli,
        Err(exit) => return exit.into(),
    };
    let interrupt = Interrupt::default();
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        if let Err(err) =
            signal_hook::flag::register_usize(signal, interrupt.0.clone(), signal as usize)
        {
            eprintln!("vduse-probe: error: cannot handle signal {signal}: {err}");
            return Exit::Software.into();
        }
    }
    let hold = std::env::var(HOLD_ENV)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0);
    let options = ProbeOptions {
        no_create: cli.no_create,
        hold: Duration::from_millis(hold),
    };
    run(&cli, &RealHost::new(), &options, &interrupt)
}

/// Runs a parsed command line against `host`.
pub fn run(cli: &Cli, host: &dyn Host, options: &ProbeOptions, interrupt: &Interrupt) -> ExitCode {
    let requirements: Vec<Requirement> = match cli
        .requirements
        .iter()
        .map(|expr| expr.parse())
        .collect::<Result<_, _>>()
    {
        Ok(requirements) => requirements,
        Err(err) => {
            eprintln!("vduse-probe: error: {err}");
            return Exit::Usage.into();
        }
    };
    if let Some(Command::Remove { name }) = &cli.command {
        return match remove::remove(name) {
            Ok(done) => {
                if !cli.quiet {
                    print(&format!("{done}\n"));
                }
                Exit::Ok.into()
            }
            Err(refused) => {
                eprintln!("vduse-probe: error: {}", refused.message);
                refused.exit.into()
            }
        };
    }
    let report = match report::collect(host, options, interrupt) {
        Ok(report) => report,
        Err(Interrupted(signal)) => {
            let name = match signal {
                signal_hook::consts::SIGINT => "SIGINT".to_owned(),
                signal_hook::consts::SIGTERM => "SIGTERM".to_owned(),
                signal_hook::consts::SIGHUP => "SIGHUP".to_owned(),
                other => format!("signal {other}"),
            };
            eprintln!("vduse-probe: interrupted by {name}; every throwaway device was removed");
            return ExitCode::from(128 + signal as u8);
        }
    };

    if let Some(Command::Get { key }) = &cli.command {
        return match value(&report, *key) {
            Ok(value) => {
                if !cli.quiet {
                    print(&format!("{value}\n"));
                }
                Exit::Ok.into()
            }
            Err(why) => {
                eprintln!("vduse-probe: error: {why}");
                report_exit(&report).into()
            }
        };
    }

    if !cli.quiet {
        let format = if cli.json { Format::Json } else { cli.format };
        print(&match format {
            Format::Human => render::human(&report),
            Format::Json => render::json(&report),
            Format::Env => render::env(&report),
        });
    }

    if requirements.is_empty() {
        return report_exit(&report).into();
    }
    let mut all_met = true;
    for requirement in &requirements {
        if let Some(why) = requirement.unmet(&report) {
            eprintln!("vduse-probe: requirement not met: {requirement}: {why}");
            all_met = false;
        }
    }
    if all_met { Exit::Ok } else { Exit::Unmet }.into()
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn print(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// One value of the report for `get`, or why it is unknown.
pub fn value(report: &Report, key: Key) -> Result<String, String> {
    let flag = |value: bool| if value { "1" } else { "0" }.to_owned();
    let why_unknown = || {
        report
            .control
            .error
            .clone()
            .unwrap_or_else(|| "VDUSE is not available".to_owned())
    };
    let words = |items: Vec<&str>| items.join(" ");
    Ok(match key {
        Key::Available => flag(report.available),
        Key::Usable => flag(report.usable),
        Key::KernelRelease => report.kernel_release.clone(),
        Key::Module => report.module.state.clone(),
        Key::ApiVersion => report.api_version.ok_or_else(why_unknown)?.to_string(),
        Key::Features => report
            .features
            .as_ref()
            .ok_or_else(why_unknown)?
            .bits
            .clone(),
        Key::FeatureNames => report
            .features
            .as_ref()
            .ok_or_else(why_unknown)?
            .names
            .join(" "),
        Key::DeviceTypes => report
            .device_types
            .as_ref()
            .ok_or_else(|| {
                if report.usable {
                    "device types were not probed (--no-create)".to_owned()
                } else {
                    why_unknown()
                }
            })?
            .join(" "),
        Key::VdpaBus => flag(report.vdpa_bus.management_device),
        Key::Drivers => words(
            report
                .vdpa_bus
                .drivers
                .iter()
                .filter(|(_, l)| **l)
                .map(|(d, _)| d.as_str())
                .collect(),
        ),
        Key::Devices => words(report.devices.iter().map(|d| d.name.as_str()).collect()),
        Key::OrphanedDevices => words(
            report
                .devices
                .iter()
                .filter(|d| d.orphaned == Some(true))
                .map(|d| d.name.as_str())
                .collect(),
        ),
    })
}
