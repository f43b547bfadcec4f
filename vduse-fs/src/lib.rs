//! `vduse-fs`: share a host directory as a virtio-fs device over VDUSE.
//!
//! - [`config`]: the YAML file, flag overrides, and the checked [`Config`].
//! - [`cli`]: the command line ([`cli::command`] for man pages).
//! - [`fs`]: [`fs::ExportFs`], fuse-backend-rs's passthrough with read-only exports and
//!   submount announcement.
//! - [`durable`]: [`durable::DurableFs`], node IDs and handles that survive a takeover.
//! - `forward`: the forwarding of requests from a layer to the filesystem it wraps.
//! - [`backend`]: [`FsBackend`], the device the runtime serves, and the filesystem threads.
//! - [`sandbox`]: the mount namespace, capabilities and seccomp filter of those threads.

pub mod backend;
pub mod cli;
pub mod config;
pub mod durable;
mod forward;
pub mod fs;
pub mod sandbox;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use fuse_backend_rs::passthrough::{CachePolicy, PassthroughFs};

pub use crate::backend::FsBackend;
use crate::config::{Cache, InodeFileHandles, Sandbox};
pub use crate::config::{Config, ConfigError};
use crate::durable::{DurableFs, JournalPlace};
use crate::sandbox::{MountNamespace, SandboxError};
use std::path::Path;
use vduse::privileges::RunAs;

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
        if let Some(err) = cause.downcast_ref::<SandboxError>() {
            return if err.is_permission() {
                Exit::NoPermission
            } else {
                Exit::Software
            };
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
    if log::max_level() > log::LevelFilter::Debug {
        // fuse-backend-rs 0.14 names each request's opcode at trace level by transmuting
        // the guest's number into its enum, which is undefined behaviour for the unused
        // numbers a guest may send. No trace, then.
        log::set_max_level(log::LevelFilter::Debug);
        log::warn!("log level trace is capped at debug in vduse-fs (fuse-backend-rs)");
    }
    match main_with_cli(&cli) {
        Ok(()) => Exit::Ok.into(),
        Err(err) => {
            vduse_kit::exit::print_error("vduse-fs", &err);
            exit_for(&err).into()
        }
    }
}

fn main_with_cli(cli: &cli::Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.file.config.as_deref(), &cli.settings())?;
    if cli.file.print_config {
        print(&config.to_yaml()?);
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
        "configuration OK: device {} shares {} as tag {:?} ({}, cache {}, {} request \
         queue{} of {})",
        config.name,
        config.shared_dir.display(),
        config.tag,
        if config.read_only {
            "read-only"
        } else {
            "read-write"
        },
        config.cache.name(),
        config.num_request_queues,
        if config.num_request_queues == 1 {
            ""
        } else {
            "s"
        },
        config.queue_size,
    )
}

/// Writes to stdout; a closed pipe is not an error.
fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// The passthrough's settings for `config`, exporting `root` (the shared directory's path
/// as the filesystem threads see it).
pub fn passthrough_config(config: &Config, root: &str) -> fuse_backend_rs::passthrough::Config {
    let (policy, timeout) = match config.cache {
        Cache::Never => (CachePolicy::Never, Duration::ZERO),
        Cache::Metadata => (CachePolicy::Metadata, Duration::from_secs(86400)),
        Cache::Auto => (CachePolicy::Auto, Duration::from_secs(1)),
        Cache::Always => (CachePolicy::Always, Duration::from_secs(86400)),
    };
    fuse_backend_rs::passthrough::Config {
        root_dir: root.to_owned(),
        cache_policy: policy,
        entry_timeout: timeout,
        attr_timeout: timeout,
        writeback: config.writeback,
        xattr: config.xattr,
        inode_file_handles: config.inode_file_handles == InodeFileHandles::Prefer,
        do_import: true,
        ..Default::default()
    }
}

/// Sets up the sandbox on a thread of its own and starts the filesystem threads in it, so
/// the rest of the server keeps the host's view (`/dev`, `/sys`) it needs to remove the
/// device later.
fn start_filesystem(
    config: &Config,
    backend: &Arc<FsBackend>,
    run_as: Option<&RunAs>,
    taken_over: bool,
) -> anyhow::Result<(backend::Threads, Option<durable::NodeJournal>)> {
    let seccomp =
        sandbox::seccomp_program(config.seccomp).context("cannot build the seccomp filter")?;
    let (config, backend) = (config.clone(), backend.clone());
    let one_user = run_as.map(|run_as| (run_as.uid, run_as.gid));
    std::thread::Builder::new()
        .name("vduse-fs-sandbox".into())
        .spawn(move || {
            let shared = config.shared_dir.to_string_lossy().into_owned();
            let namespace = match config.sandbox {
                Sandbox::None => None,
                Sandbox::Auto if config.inode_file_handles == InodeFileHandles::Prefer => {
                    log::warn!(
                        "no mount namespace for the filesystem: inode-file-handles: prefer \
                         excludes it ({})",
                        config::NO_HANDLES_IN_NAMESPACE
                    );
                    None
                }
                Sandbox::Namespace => Some(
                    MountNamespace::prepare(&config.shared_dir, config.read_only).context(
                        "cannot set up the mount namespace (sandbox: namespace needs \
                         CAP_SYS_ADMIN; use sandbox: none to run without one)",
                    )?,
                ),
                Sandbox::Auto => {
                    match MountNamespace::prepare(&config.shared_dir, config.read_only) {
                        Ok(namespace) => Some(namespace),
                        Err(error) if error.is_permission() => {
                            log::warn!(
                                "no mount namespace for the filesystem ({error}): it needs \
                             CAP_SYS_ADMIN; the passthrough's own checks keep lookups inside \
                             {shared}"
                            );
                            None
                        }
                        Err(error) => {
                            return Err(error).context("cannot set up the mount namespace");
                        }
                    }
                }
            };
            // The passthrough opens /proc/self/fd now, while /proc is still visible.
            let root = if namespace.is_some() {
                sandbox::EXPORT_IN_SANDBOX
            } else {
                shared.as_str()
            };
            let passthrough = PassthroughFs::<()>::new(passthrough_config(&config, root))
                .context("cannot set up the passthrough filesystem")?;
            let mut fs =
                fs::ExportFs::new(passthrough, config.read_only, config.announce_submounts);
            if let Some((uid, gid)) = one_user {
                fs = fs.serving_as(uid, gid);
            }
            // The journal's directory is opened now: the namespace has none. The rest
            // waits for the namespace, where the passthrough finds the shared directory.
            let journal_path = config.node_journal_path();
            let journal = journal_path
                .as_deref()
                .map(JournalPlace::locate)
                .transpose()
                .with_context(|| {
                    format!(
                        "cannot open the directory of the node journal {}",
                        journal_path.as_deref().unwrap_or(Path::new("")).display()
                    )
                })?;
            if let Some(namespace) = namespace {
                namespace
                    .pivot()
                    .context("cannot enter the mount namespace")?;
                log::info!(
                    "filesystem threads sandboxed: {shared} is their {}",
                    sandbox::EXPORT_IN_SANDBOX
                );
            }
            let fs = match (journal, taken_over) {
                (Some(place), true) => {
                    let (fs, restored) = DurableFs::restore(fs, place).map_err(|problem| {
                        anyhow::anyhow!(
                            "cannot take over the guest's files: {problem} (remove the device \
                             with `vduse-probe remove {}`)",
                            config.name
                        )
                    })?;
                    log::info!(
                        "device {}: {} nodes and {} open files of the guest found again",
                        config.name,
                        restored.nodes,
                        restored.files
                    );
                    if restored.lost_nodes + restored.lost_files > 0 {
                        log::warn!(
                            "device {}: {} nodes and {} open files are gone (renamed or \
                             removed on the host meanwhile): the guest gets ESTALE for them",
                            config.name,
                            restored.lost_nodes,
                            restored.lost_files
                        );
                    }
                    fs
                }
                (journal, _) => DurableFs::new(fs, journal).with_context(|| {
                    format!(
                        "cannot create the node journal {}",
                        journal_path.as_deref().unwrap_or(Path::new("")).display()
                    )
                })?,
            };
            let journal = fs.journal();
            let threads = backend.serve(Arc::new(fs), config.threads, move || {
                sandbox::drop_capabilities()
                    .map_err(|error| format!("cannot drop capabilities: {error}"))?;
                if let Some(program) = &seccomp {
                    sandbox::apply_seccomp(program)
                        .map_err(|error| format!("cannot install the seccomp filter: {error}"))?;
                }
                Ok(())
            })?;
            Ok((threads, journal))
        })
        .context("cannot start the sandbox thread")?
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the sandbox thread panicked")))
}

/// The limit on open files the server asks for, as virtiofsd does (bounded by the
/// kernel's `fs.nr_open`).
const WANTED_OPEN_FILES: u64 = 1_000_000;

/// Raises the limit on open files: the passthrough holds a descriptor per inode the guest
/// remembers (`inode-file-handles: never`), and the usual soft limit of 1024 runs out
/// after about a thousand files (EMFILE in the guest). With CAP_SYS_RESOURCE both limits
/// go up to [`WANTED_OPEN_FILES`]; without, the soft limit goes up to the hard one.
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or(WANTED_OPEN_FILES);
    let wanted = WANTED_OPEN_FILES.min(nr_open);
    let limit = getrlimit(Resource::Nofile);
    if limit.current.unwrap_or(u64::MAX) >= wanted {
        return;
    }
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let set = |soft: u64, hard: u64| {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(soft),
                maximum: Some(hard),
            },
        )
    };
    // Raising the hard limit needs CAP_SYS_RESOURCE; the soft one may go up to it freely.
    let raised = if hard < wanted && set(wanted, wanted).is_ok() {
        Ok(wanted)
    } else {
        let files = hard.min(wanted);
        set(files, hard).map(|()| files)
    };
    match raised {
        Ok(files) if files < 65536 => log::warn!(
            "at most {files} open files: the guest gets EMFILE once it holds about as many \
             inodes (raise the hard limit: ulimit -Hn, or LimitNOFILE= in the unit)"
        ),
        Ok(files) => log::debug!("open files: limit raised to {files}"),
        Err(error) => log::warn!("cannot raise the limit on open files: {error}"),
    }
}

/// Serves the device `config` describes until SIGINT or SIGTERM, then removes it (unless
/// `keep-device`).
pub fn run(config: &Config) -> anyhow::Result<()> {
    use vduse::runtime::{Server, notify_ready};

    raise_open_file_limit();
    let backend = Arc::new(FsBackend::new(
        &config.tag,
        config.num_request_queues,
        config.queue_size,
    ));
    let signals = vduse_kit::exit::ServeSignals::register().map_err(anyhow::Error::msg)?;
    let mut options = config
        .device
        .server_options(&config.name)
        .map_err(anyhow::Error::msg)?;
    // The switch to `user` waits for the sandbox, which needs root: it is made below.
    let run_as = options.run_as.take();
    options.identity = config.identity();
    let mut server = Server::start(
        Arc::clone(&backend) as Arc<dyn vduse::backend::Backend>,
        options,
    )?;
    let taken_over = server.taken_over();
    let (threads, journal) = match start_filesystem(config, &backend, run_as.as_ref(), taken_over) {
        Ok(started) => started,
        Err(error) => {
            // A device taken over stays as it was found, with its guest's mount.
            server.set_keep_device(taken_over || config.device.keep_device);
            if let Err(shutdown) = server.shutdown() {
                log::error!("{shutdown}");
            }
            return Err(error);
        }
    };
    let server = match run_as {
        Some(run_as) => {
            let server = server.serve_as(Some(&run_as))?;
            // Changing users made the process undumpable, which leaves /proc/self (the
            // passthrough reopens its inodes through /proc/self/fd) to root. The process
            // is the user's now: let /proc/self be the user's too.
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::Dumpable)
                .context("cannot make /proc/self the server's after switching users")?;
            server
        }
        None => server,
    };
    log::info!(
        "serving {} as virtio-fs device {} (tag {:?}{}); mount it with: mount -t virtiofs {} DIR",
        config.shared_dir.display(),
        config.name,
        config.tag,
        if config.read_only { ", read-only" } else { "" },
        config.tag,
    );
    notify_ready();
    while !signals.stop.load(Ordering::Acquire) && server.is_serving() {
        if signals.log_state.swap(false, Ordering::AcqRel) {
            server.log_state();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let keeps_device = server.keeps_device();
    let shutdown = server.shutdown();
    // The queues have stopped: nothing more reaches the filesystem threads.
    drop(threads);
    shutdown?;
    if let (false, Some(journal)) = (keeps_device, journal) {
        // Gone with the device, as the in-flight log is.
        if let Err(error) = journal.remove() {
            log::warn!("cannot remove the node journal: {error}");
        }
    }
    Ok(())
}
