//! The command line, as clap sees it. The rest of the crate never sees clap: [`Cli`] becomes
//! plain options in [`crate::run`].

use clap::{Parser, Subcommand, ValueEnum};

/// `--version` text: the tool's version and the VDUSE interface it knows.
pub const LONG_VERSION: &str = vduse_kit::long_version!("\nJSON/env schema: 1");

const AFTER_HELP: &str = "\
Requirements (--require, repeatable; all must hold):
  available               VDUSE is present (module loaded, control device exists)
  usable                  this user can open /dev/vduse/control
  api-version>=N          also >, <=, <, =, !=
  feature=NAME            queue-ready, suspend, or bit-N
  device=TYPE             block, net or fs can be created
  vdpa-bus                the vdpa bus and its vduse management device exist
  driver=NAME             virtio_vdpa or vhost_vdpa is loaded

Exit status:
  0   VDUSE is available and usable (with --require: every requirement holds;
      with remove: the device was removed)
  1   a requirement does not hold (stderr names each one); remove: no such device,
      or a process serves it
  64  usage error, e.g. a malformed requirement
  69  VDUSE is not available (module not loaded, or no VDUSE in this kernel)
  70  internal error
  77  VDUSE is present but this user may not use /dev/vduse/control
  130, 143  interrupted by SIGINT, SIGTERM; every throwaway device was removed

Examples:
  vduse-probe
  vduse-probe --json | jq .device_types
  eval \"$(vduse-probe --format env)\"; echo \"$VDUSE_API_VERSION\"
  vduse-probe get api-version
  vduse-probe -q --require api-version>=1 --require device=fs && echo ready
  vduse-probe remove disk0          # an orphan: detach and destroy it";

/// Report whether and how VDUSE works on this host.
///
/// Checks the vduse module and /dev/vduse/control, asks the kernel for its VDUSE API
/// version and feature bits, finds the device types it accepts by creating and at once
/// destroying a throwaway device of each type, and lists the vdpa bus and existing VDUSE
/// devices, flagging devices that are attached but served by nobody. Nothing it does
/// outlives the command, even when interrupted.
#[derive(Debug, Parser)]
#[command(
    name = "vduse-probe",
    version,
    long_version = LONG_VERSION,
    after_long_help = AFTER_HELP,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,

    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,

    /// Require EXPR to hold; exit 1 naming each one that does not (repeatable).
    #[arg(long = "require", value_name = "EXPR")]
    pub requirements: Vec<String>,

    /// Print nothing on standard output (errors and unmet requirements still go to stderr).
    #[arg(short, long)]
    pub quiet: bool,

    /// Do not create throwaway devices: device types are then reported as unknown.
    #[arg(long)]
    pub no_create: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a single value, e.g. `vduse-probe get api-version` prints `1`.
    Get {
        /// The value to print.
        #[arg(value_enum)]
        key: Key,
    },
    /// Detach and destroy a device no process serves (an orphan, or one kept with
    /// keep-device); a served one is refused. Needs root.
    Remove {
        /// The device's name (as in /dev/vduse/NAME).
        name: String,
    },
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A readable report.
    Human,
    /// JSON (schema 1, documented in vduse-probe(1)).
    Json,
    /// KEY=VALUE lines for a shell's eval.
    Env,
}

/// Values `get` can print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Key {
    /// 1 when VDUSE is present, else 0.
    Available,
    /// 1 when this user can use the control device, else 0.
    Usable,
    /// The kernel release.
    KernelRelease,
    /// loaded, available or absent.
    Module,
    /// The kernel's maximum VDUSE API version.
    ApiVersion,
    /// VDUSE feature bits in hex.
    Features,
    /// VDUSE feature names, space-separated.
    FeatureNames,
    /// Device types the kernel accepts, space-separated.
    DeviceTypes,
    /// 1 when the vdpa bus and its vduse management device exist, else 0.
    VdpaBus,
    /// Loaded vdpa bus drivers, space-separated.
    Drivers,
    /// Existing VDUSE devices, space-separated.
    Devices,
    /// Devices attached but served by nobody, space-separated.
    OrphanedDevices,
}

/// The clap command, for man pages and completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
