//! `vduse-blk`: serve a regular file, a block device or an NBD export as a virtio-blk disk
//! over VDUSE.
//!
//! The modules form layers, each using only those below it:
//!
//! 1. [`cli`], [`config`]: the command line, the YAML file and flag overrides, and the
//!    checked [`Config`] (man pages come from [`cli::command`]).
//! 2. This file and [`options`]: the [`Config`] turned into each layer's typed options,
//!    the device built, `--check-config`, and the runtime.
//! 3. [`backend`]: [`BlockBackend`], the virtio-blk device (the `vduse::backend::Backend`
//!    the runtime serves) and its queue engine; it alone parses chains ([`request`]).
//! 4. [`disk`]: [`Disk`], what stores the blocks, and its asynchronous interface
//!    (operations on byte offsets, started with a token and reaped as `(token, result)`):
//!    a [`FileDisk`] with the sync, threads or io_uring executor, or an NBD export.
//! 5. [`nbd`]: the NBD client (URIs, protocol, connections, TLS).
//! 6. [`guest`]: guest memory as the I/O moves it (buffers, owned data, iovecs).
//!
//! Storage code (`disk`, `nbd`) never imports `config`, `request` or `backend`.

pub mod backend;
pub mod cli;
pub mod config;
pub mod disk;
pub mod guest;
pub mod nbd;
pub mod options;
pub mod request;
pub mod resize;
pub mod stats;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub use crate::backend::{BlockBackend, BlockOptions};
pub use crate::config::{Config, ConfigError};
pub use crate::disk::Disk;
pub use crate::disk::file::{FileDisk, FileDiskError, FileDiskOptions};

/// Exit statuses (sysexits.h), shared with the other tools. Documented in `--help`.
pub use vduse_kit::exit::Exit;

/// The exit status an error calls for: the first error in its chain that this crate or
/// `vduse` knows decides.
pub fn exit_for(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if cause.downcast_ref::<ConfigError>().is_some() {
            return Exit::Config;
        }
        if let Some(err) = cause.downcast_ref::<FileDiskError>() {
            return if err.is_io() {
                Exit::IoError
            } else {
                Exit::Config
            };
        }
        if let Some(err) = cause.downcast_ref::<nbd::NbdError>() {
            return if err.is_config() {
                Exit::Config
            } else {
                Exit::Unavailable
            };
        }
        if let Some(err) = cause.downcast_ref::<vduse::Error>() {
            return Exit::for_error(err);
        }
    }
    Exit::Software
}

/// Runs the tool with `args` (the program name first) and returns its exit status.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli: cli::Cli = match vduse_kit::exit::parse_args(args) {
        Ok(cli) => cli,
        Err(exit) => return exit.into(),
    };
    vduse_kit::exit::init_logging(cli.file.log_level.map(log::LevelFilter::from));
    match main_with_cli(&cli) {
        Ok(()) => Exit::Ok.into(),
        Err(err) => {
            vduse_kit::exit::print_error("vduse-blk", &err);
            exit_for(&err).into()
        }
    }
}

/// Everything after parsing the command line.
fn main_with_cli(cli: &cli::Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.file.config.as_deref(), &cli.settings())?;
    if cli.file.print_config {
        print(&config.to_yaml()?);
        return Ok(());
    }
    if cli.file.check_config {
        let report = check(&config)?;
        print(&format!("{report}\n"));
        return Ok(());
    }
    let reload = || Ok(Config::load(cli.file.config.as_deref(), &cli.settings())?);
    run(&config, &reload)
}

/// Writes to stdout; a closed pipe is not an error.
fn print(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Checks `config` as `--check-config` does: the keys, then the file disk (without creating
/// or extending anything) or the NBD export (a handshake). Returns a one-line summary.
pub fn check(config: &Config) -> anyhow::Result<String> {
    let mode = if config.read_only {
        "read-only"
    } else {
        "read-write"
    };
    if let Some(options) = config.nbd_options() {
        let report = nbd::NbdDisk::check(&options)?;
        let info = report.info;
        let export_mode = if info.has(nbd::protocol::flags::READ_ONLY) {
            "read-only"
        } else {
            mode
        };
        return Ok(format!(
            "configuration OK: device {} over NBD export {} ({} bytes, {export_mode}{}{})",
            config.name,
            options.uri,
            info.size,
            if info.has(nbd::protocol::flags::CAN_MULTI_CONN) {
                ", multi-conn"
            } else {
                ""
            },
            if info.structured {
                ", structured replies"
            } else {
                ""
            },
        ));
    }
    let report = FileDisk::check(&FileDiskOptions::from(config))?;
    let kind = match report.kind {
        disk::file::FileKind::File => "file",
        disk::file::FileKind::BlockDevice => "block device",
    };
    let pending = report
        .pending
        .map(|pending| format!(", {pending}"))
        .unwrap_or_default();
    Ok(format!(
        "configuration OK: device {} over {kind} {} ({} bytes{pending}, {mode}{})",
        config.name,
        config.store_name(),
        report.size,
        match config.cache {
            config::CacheMode::Writeback => ", cache writeback",
            config::CacheMode::None => ", cache none",
        }
    ))
}

/// Opens the file disk, or connects to the NBD export, and builds the device `config`
/// describes.
pub fn prepare(config: &Config) -> anyhow::Result<BlockBackend> {
    if let Some(options) = config.nbd_options() {
        let disk = nbd::NbdDisk::connect(&options)?;
        return Ok(BlockBackend::new(disk, BlockOptions::from(config)));
    }
    let file = FileDisk::open(&FileDiskOptions::from(config))?;
    Ok(BlockBackend::new(file, BlockOptions::from(config)))
}

// ---------------------------------------------------------------------------------------
// The device runtime (`vduse::runtime`): the only code that touches it.
// ---------------------------------------------------------------------------------------

/// Serves the device `config` describes until SIGINT or SIGTERM, then removes it (unless
/// `keep-device`). On SIGHUP, `reload` reads the configuration again and a disk that grew
/// is served at its new size ([`resize`]). The counters ([`stats`]) go to stdout as a
/// line of JSON on SIGUSR1 (which also logs the queues' state), every `stats-interval`
/// seconds and at exit; to a live line on a terminal; to systemd as `STATUS=`.
pub fn run(config: &Config, reload: &dyn Fn() -> anyhow::Result<Config>) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use vduse::runtime::{Server, notify_ready, notify_status};

    let backend = Arc::new(prepare(config)?);
    let io_engine = backend.io_engine();
    let server_nbd_connections = backend.nbd().map(nbd::NbdDisk::connections);
    let signals =
        vduse_kit::exit::ServeSignals::register_with_reload().map_err(anyhow::Error::msg)?;
    let mut options = config
        .device
        .server_options(&config.name)
        .map_err(anyhow::Error::msg)?;
    options.identity = config.identity();
    let server = Server::start(
        Arc::clone(&backend) as Arc<dyn vduse::backend::Backend>,
        options,
    )?;
    match server_nbd_connections {
        Some(connections) => log::info!(
            "serving NBD export {} as VDUSE block device {} ({connections} connection{})",
            config.store_name(),
            config.name,
            if connections == 1 { "" } else { "s" }
        ),
        None => log::info!(
            "serving {} as VDUSE block device {} (io-engine {})",
            config.store_name(),
            config.name,
            io_engine.name()
        ),
    }
    notify_ready();
    let started = Instant::now();
    let report = |event: &str| {
        let line = stats::json_line(&config.name, event, started.elapsed(), backend.counts());
        print(&format!("{line}\n"));
    };
    let live = vduse_kit::live::LiveLine::new(&config.name);
    let mut running = config.clone();
    let mut next_report = None;
    let mut next_status = started;
    while !signals.stop.load(Ordering::Acquire) && server.is_serving() {
        if signals.log_state.swap(false, Ordering::AcqRel) {
            report("signal");
            server.log_state();
        }
        if signals.reload.swap(false, Ordering::AcqRel) {
            apply_reload(&server, &backend, &mut running, reload);
            next_report = None;
        }
        let now = Instant::now();
        let interval = Duration::from_secs(running.stats_interval.into());
        match next_report {
            _ if interval.is_zero() => {}
            None => next_report = Some(now + interval),
            Some(due) if now >= due => {
                report("interval");
                next_report = Some(due + interval);
            }
            Some(_) => {}
        }
        if now >= next_status || !live.is_hidden() {
            let total = stats::Counts::total(&backend.counts());
            live.show(|| total.summary());
            if now >= next_status {
                notify_status(&total.summary());
                next_status = now + STATUS_INTERVAL;
            }
        }
        std::thread::sleep(TICK);
    }
    live.finish();
    let shutdown = server.shutdown();
    report("exit");
    shutdown?;
    Ok(())
}

/// How often the main thread looks at the signals and the counters.
const TICK: Duration = Duration::from_millis(50);

/// How often systemd is told the counters (`STATUS=`, shown by `systemctl status`).
const STATUS_INTERVAL: Duration = Duration::from_secs(2);

/// Reads the configuration again and serves the disk at the size it asks for, or logs why
/// not (a warning: the device goes on as it was, which the operator can mend and reload).
fn apply_reload(
    server: &vduse::runtime::Server,
    backend: &BlockBackend,
    running: &mut Config,
    reload: &dyn Fn() -> anyhow::Result<Config>,
) {
    let size = backend.size();
    let reloaded = match reload() {
        Ok(reloaded) => reloaded,
        Err(error) => {
            log::warn!("reload refused: {error:#}; the device goes on unchanged ({size} bytes)");
            return;
        }
    };
    match resize::new_size(running, &reloaded, size) {
        Ok(None) => log::info!("reloaded: the size is unchanged ({size} bytes)"),
        Ok(Some(new_size)) => {
            let (offset, capacity) = backend.grow(new_size);
            if let Err(error) = server.reconfigure(offset, &capacity) {
                // Requests up to the new size are served; the driver has not heard of it.
                log::error!(
                    "reload: the disk grew to {new_size} bytes, but telling the driver failed: {error}"
                );
                return;
            }
            log::info!("reloaded: the disk grew from {size} to {new_size} bytes");
        }
        Err(refused) => {
            log::warn!("reload refused: {refused}; the device goes on unchanged ({size} bytes)");
            return;
        }
    }
    *running = reloaded;
}
