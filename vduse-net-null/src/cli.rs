//! The command line, as clap sees it. The rest of the crate never sees clap: [`Cli`] becomes
//! a [`Settings`] layer laid over the configuration file.

use clap::{CommandFactory, Parser, ValueEnum};
pub use vduse_kit::config::cli::{AttachArg, DeviceArgs, FileArgs, LogLevelArg, RunAsArgs};

use crate::config::{self, MacAddress, Settings};

const AFTER_HELP: &str = "\
Every flag but --config, --check-config and --print-config overrides the configuration file's
key of the same name. Boolean keys take --KEY (true) or --KEY=false.

Counters (frames and bytes each way, drops, errors) go to stdout as one JSON object per
line: on SIGUSR1, every --stats-interval seconds, and when the server stops. While a person
watches (stderr is a terminal) they are also shown live on stderr.

Signals:
  SIGINT, SIGTERM  remove the device and exit
  SIGUSR1          print the counters
  SIGUSR2          toggle the link (carrier) state; the guest sees it change

Exit status:
  0   stopped cleanly (SIGINT or SIGTERM), or the configuration is valid
  64  usage error
  69  VDUSE is not available on this host
  70  internal error
  77  no permission: creating a network device needs CAP_NET_ADMIN
  78  configuration error (a bad key or value, a name in use)

Examples:
  vduse-net-null --name null0
  vduse-net-null --name echo0 --mode echo --mac 02:00:00:00:00:01 --mtu 9000
  vduse-net-null --config /etc/vduse/net-null/null0.yaml --stats-interval 10";

/// A null virtio-net device over VDUSE: every frame sent is counted, and dropped or echoed.
///
/// Creates the VDUSE network device NAME, attaches it to the vdpa bus (where virtio_vdpa
/// turns it into a network interface), and serves it until SIGINT or SIGTERM, then removes
/// the device.
#[derive(Debug, Parser)]
#[command(
    name = "vduse-net-null",
    version,
    long_version = vduse_kit::long_version!(),
    after_long_help = AFTER_HELP
)]
pub struct Cli {
    /// The configuration file, --check-config, --print-config, --log-level.
    #[command(flatten)]
    pub file: FileArgs,

    /// Device name: the node becomes /dev/vduse/NAME.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// drop: count and discard every frame; echo: send every frame back [default: drop].
    #[arg(long, value_enum, value_name = "MODE")]
    pub mode: Option<ModeArg>,

    /// MAC address, e.g. 02:00:00:00:00:01 [default: random, locally administered].
    #[arg(long, value_name = "MAC")]
    pub mac: Option<MacAddress>,

    /// MTU, 68 to 65535 [default: 1500].
    #[arg(long, value_name = "BYTES")]
    pub mtu: Option<u16>,

    /// Link state at start [default: up].
    #[arg(long, value_enum, value_name = "STATE")]
    pub link: Option<LinkArg>,

    /// Size of each queue, a power of two from 16 to 4096 [default: 256].
    #[arg(long, value_name = "N")]
    pub queue_size: Option<u16>,

    /// Offer checksum and segmentation offloads [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub offloads: Option<bool>,

    /// Print the counters as JSON every SECS seconds; 0: never [default: 0].
    #[arg(long, value_name = "SECS")]
    pub stats_interval: Option<u32>,

    /// --attach, --keep-device, --bounce-size, --busy-poll-us.
    #[command(flatten)]
    pub device: DeviceArgs,

    /// --user, --group.
    #[command(flatten)]
    pub run_as: RunAsArgs,

    /// Where to record the frames and buffers in flight, so that a server started after
    /// this one was killed takes the device over: an absolute path, or none [default:
    /// /run/vduse/net/NAME.inflight].
    #[arg(long, value_name = "PATH")]
    pub inflight_log: Option<String>,
}

/// `--mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Count and discard every frame.
    Drop,
    /// Send every frame back on the receive queue.
    Echo,
}

/// `--link` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LinkArg {
    /// Carrier on.
    Up,
    /// Carrier off.
    Down,
}

impl Cli {
    /// The flags as a configuration layer.
    pub fn settings(&self) -> Settings {
        Settings {
            name: self.name.clone(),
            mode: self.mode.map(|mode| match mode {
                ModeArg::Drop => config::Mode::Drop,
                ModeArg::Echo => config::Mode::Echo,
            }),
            mac: self.mac,
            mtu: self.mtu,
            link: self.link.map(|link| match link {
                LinkArg::Up => config::Link::Up,
                LinkArg::Down => config::Link::Down,
            }),
            queue_size: self.queue_size,
            offloads: self.offloads,
            stats_interval: self.stats_interval,
            attach: self.device.attach.map(config::Attach::from),
            keep_device: self.device.keep_device,
            bounce_size: self.device.bounce_size,
            busy_poll_us: self.device.busy_poll_us,
            user: self.run_as.user.clone(),
            group: self.run_as.group.clone(),
            inflight_log: self.inflight_log.clone(),
        }
    }
}

/// The clap command, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Mac;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vduse-net-null").chain(args.iter().copied()))
    }

    #[test]
    fn every_key_has_a_flag() {
        let cli = parse(&[
            "--name=n",
            "--mode=echo",
            "--mac=02:00:00:00:00:07",
            "--mtu=9000",
            "--link=down",
            "--queue-size=512",
            "--offloads=false",
            "--stats-interval=3",
            "--attach=none",
            "--keep-device",
            "--bounce-size=4M",
            "--busy-poll-us=25",
            "--user=nobody",
            "--group=root",
            "--inflight-log=none",
        ])
        .unwrap();
        assert_eq!(
            cli.settings(),
            Settings {
                name: Some("n".into()),
                mode: Some(config::Mode::Echo),
                mac: Some(MacAddress(Mac([2, 0, 0, 0, 0, 7]))),
                mtu: Some(9000),
                link: Some(config::Link::Down),
                queue_size: Some(512),
                offloads: Some(false),
                stats_interval: Some(3),
                attach: Some(config::Attach::None),
                keep_device: Some(true),
                bounce_size: Some(config::ByteSize(4 << 20)),
                busy_poll_us: Some(25),
                user: Some("nobody".into()),
                group: Some("root".into()),
                inflight_log: Some("none".into()),
            }
        );
    }

    #[test]
    fn bad_flags_are_usage_errors_that_name_the_flag() {
        for args in [
            &["--mac=zz"][..],
            &["--mtu=-1"],
            &["--mode=loop"],
            &["--bounce-size=lots"],
        ] {
            let error = parse(args).unwrap_err();
            assert!(
                matches!(
                    error.kind(),
                    clap::error::ErrorKind::ValueValidation | clap::error::ErrorKind::InvalidValue
                ),
                "{args:?}: {:?}",
                error.kind()
            );
            let flag = args[0].split('=').next().unwrap();
            assert!(error.to_string().contains(flag), "{error}");
        }
        assert!(parse(&["--check-config", "--print-config"]).is_err());
    }

    #[test]
    fn the_command_is_consistent() {
        command().debug_assert();
    }
}
