//! `vduse-net-null`: a null virtio-net device over VDUSE, for testing network stacks and
//! measuring the virtio datapath without a network. In `drop` mode every transmitted frame
//! is counted and discarded; in `echo` mode it comes back on the receive queue.
//!
//! - [`config`]: the YAML file, flag overrides, and the checked [`Config`].
//! - [`cli`]: the command line ([`cli::command`] for man pages).
//! - [`net`]: the virtio-net header, config space and features.
//! - [`backend`](mod@backend): [`NetBackend`], the `vduse::backend::Backend` the runtime serves.
//! - [`stats`]: the counters as JSON lines and as a live display.

pub mod backend;
pub mod cli;
pub mod config;
pub mod net;
pub mod stats;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

pub use crate::backend::{Mode, NetBackend, NetOptions, Stats};
pub use crate::config::{Config, ConfigError};

/// Exit statuses (sysexits.h), shared with the other tools. Documented in `--help`.
pub use vduse_kit::exit::Exit;

/// The exit status an error calls for: the first error in its chain that this crate or
/// `vduse` knows decides.
pub fn exit_for(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if cause.downcast_ref::<ConfigError>().is_some() {
            return Exit::Config;
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
            vduse_kit::exit::print_error("vduse-net-null", &err);
            exit_for(&err).into()
        }
    }
}

fn main_with_cli(cli: &cli::Cli) -> anyhow::Result<()> {
    let settings = cli.settings();
    let file = cli
        .file
        .config
        .as_deref()
        .map(config::ConfigFile::load)
        .transpose()?;
    let mac_is_random = settings.mac.is_none() && !file.as_ref().is_some_and(|f| f.has("mac"));
    let config = Config::resolve(file.as_ref(), &settings)?;
    if cli.file.print_config {
        print(&config.to_yaml(mac_is_random)?);
        return Ok(());
    }
    if cli.file.check_config {
        print(&format!("{}\n", summary(&config)));
        return Ok(());
    }
    run(&config)
}

/// One line that describes the device `config` makes.
pub fn summary(config: &Config) -> String {
    format!(
        "configuration OK: device {} ({} mode, MAC {}, MTU {}, link {}, queues of {}{})",
        config.name,
        config.mode.name(),
        config.mac.0,
        config.mtu,
        config.link.name(),
        config.queue_size,
        if config.offloads { ", offloads" } else { "" }
    )
}

/// Writes to stdout; a closed pipe is not an error.
fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// The device `config` describes.
pub fn backend(config: &Config) -> vduse::Result<NetBackend> {
    NetBackend::new(NetOptions {
        mac: config.mac.0,
        mtu: config.mtu,
        link_up: config.link == config::Link::Up,
        mode: config.mode,
        queue_size: config.queue_size,
        offloads: config.offloads,
    })
}

/// Signals the server acts on, as flags its loop polls.
struct Signals {
    stop: Arc<AtomicBool>,
    dump: Arc<AtomicBool>,
    toggle_link: Arc<AtomicBool>,
}

impl Signals {
    fn register() -> anyhow::Result<Signals> {
        use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
        let signals = Signals {
            stop: Arc::default(),
            dump: Arc::default(),
            toggle_link: Arc::default(),
        };
        for (signal, flag) in [
            (SIGINT, &signals.stop),
            (SIGTERM, &signals.stop),
            (SIGUSR1, &signals.dump),
            (SIGUSR2, &signals.toggle_link),
        ] {
            signal_hook::flag::register(signal, Arc::clone(flag))
                .with_context(|| format!("cannot handle signal {signal}"))?;
        }
        Ok(signals)
    }
}

/// How often the loop looks at the signals and the live display.
const TICK: Duration = Duration::from_millis(50);

/// Serves the device `config` describes until SIGINT or SIGTERM, then removes it (unless
/// `keep-device`) and prints the final counters.
pub fn run(config: &Config) -> anyhow::Result<()> {
    use vduse::runtime::{Server, notify_ready};

    let backend = Arc::new(backend(config).context("cannot set up the device's eventfds")?);
    let signals = Signals::register()?;
    let options = config
        .device
        .server_options(&config.name)
        .map_err(anyhow::Error::msg)?;
    let server = Server::start(
        Arc::clone(&backend) as Arc<dyn vduse::backend::Backend>,
        options,
    )?;
    log::info!(
        "serving VDUSE network device {} ({} mode, MAC {}, MTU {}, link {})",
        config.name,
        config.mode.name(),
        config.mac.0,
        config.mtu,
        config.link.name()
    );
    notify_ready();

    let started = Instant::now();
    let report = |event: &str| {
        let line = stats::json_line(
            &config.name,
            event,
            config.mode,
            backend.link_up(),
            started.elapsed(),
            &backend.stats(),
        );
        print(&format!("{line}\n"));
    };
    let live = vduse_kit::live::LiveLine::new(&config.name);
    let interval = Duration::from_secs(config.stats_interval.into());
    let mut next_report = started + interval;
    let mut failure = None;
    while !signals.stop.load(Ordering::Acquire) && server.is_serving() {
        std::thread::sleep(TICK);
        if signals.dump.swap(false, Ordering::AcqRel) {
            report("signal");
            server.log_state();
        }
        if !interval.is_zero() && Instant::now() >= next_report {
            report("interval");
            next_report += interval;
        }
        if signals.toggle_link.swap(false, Ordering::AcqRel) {
            let up = !backend.link_up();
            let status = backend.set_link_up(up);
            match server.update_config(net::CONFIG_STATUS_OFFSET, &status) {
                Ok(()) => log::info!("link {}", if up { "up" } else { "down" }),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        live.show(|| stats::summary(&backend.stats(), backend.link_up()));
    }
    live.finish();
    let shutdown = server.shutdown();
    report("exit");
    if let Some(error) = failure {
        return Err(error).context("cannot change the link state");
    }
    shutdown?;
    Ok(())
}
