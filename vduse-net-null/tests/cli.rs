//! The command line end to end (short of serving): exit statuses, `--check-config`,
//! `--print-config`, and the example configuration in config/vduse-net-null.yaml.

use std::path::Path;
use std::process::Command;

use vduse_net_null::config::{Attach, ConfigFile, Link, Mode, Settings};
use vduse_net_null::{Config, Exit, exit_for};

const EXAMPLE: &str = include_str!("../../config/vduse-net-null.yaml");
const EXAMPLE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/vduse-net-null.yaml");

fn vduse_net_null(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vduse-net-null"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

fn code(output: &std::process::Output) -> i32 {
    output.status.code().unwrap()
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_example_configuration_is_valid_and_every_commented_key_too() {
    let file = ConfigFile::parse(Path::new("config/vduse-net-null.yaml"), EXAMPLE.into()).unwrap();
    let config = Config::resolve(Some(&file), &Settings::default()).unwrap();
    assert_eq!(config.name, "null0");
    assert_eq!(config.mode, Mode::Drop);
    assert_eq!(config.mac.0.to_string(), "02:00:00:00:00:01");
    assert_eq!((config.mtu, config.link), (1500, Link::Up));
    assert_eq!(config.device.attach, Attach::Virtio);

    let uncommented: String = EXAMPLE
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest
                    .split_once(": ")
                    .is_some_and(|(key, _)| vduse_net_null::config::KEYS.contains(&key)) =>
            {
                rest
            }
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let all = ConfigFile::parse(Path::new("all.yaml"), uncommented).unwrap();
    let all = Config::resolve(Some(&all), &Settings::default()).unwrap();
    assert_eq!(all.device.bounce_size.map(|size| size.0), Some(16 << 20));
    assert_eq!(
        (all.device.user.as_deref(), all.device.group.as_deref()),
        (Some("nobody"), Some("nogroup"))
    );
    // Every key of the format appears in the example.
    for key in vduse_net_null::config::KEYS {
        assert!(
            EXAMPLE.contains(&format!("\n{key}: ")) || EXAMPLE.contains(&format!("# {key}: ")),
            "{key} is not in the example"
        );
    }
}

#[test]
fn check_and_print_config_read_the_example_with_flags_over_it() {
    let check = vduse_net_null(&["--config", EXAMPLE_PATH, "--check-config"]);
    assert_eq!(code(&check), 0, "{}", stderr(&check));
    assert_eq!(
        stdout(&check),
        "configuration OK: device null0 (drop mode, MAC 02:00:00:00:00:01, MTU 1500, link up, \
         queues of 256, offloads)\n"
    );
    let print = vduse_net_null(&["--config", EXAMPLE_PATH, "--mode", "echo", "--print-config"]);
    assert_eq!(code(&print), 0, "{}", stderr(&print));
    let text = stdout(&print);
    assert!(text.contains("mode: echo\n"), "{text}");
    assert!(text.contains("mac: 02:00:00:00:00:01\n"), "{text}");
    assert!(!text.contains("drawn at random"), "{text}");
    // Without a MAC anywhere, one is drawn, and --print-config says so.
    let random = vduse_net_null(&["--name", "n0", "--print-config"]);
    assert!(
        stdout(&random).contains("drawn at random"),
        "{}",
        stdout(&random)
    );
}

#[test]
fn exit_statuses_follow_sysexits() {
    for (args, status, needle) in [
        (&["--help"][..], 0, ""),
        (&["--version"], 0, ""),
        (&["--bogus"], 64, "--bogus"),
        (&["--mode", "loop", "--name", "n"], 64, "loop"),
        (&["--check-config"], 78, "name is not set"),
        (&["--name", "a/b", "--check-config"], 78, "name"),
        (
            &["--name", "n", "--mtu", "20", "--check-config"],
            78,
            "--mtu: 20 is below",
        ),
        (
            &["--config", "/nonexistent.yaml", "--check-config"],
            78,
            "/nonexistent.yaml",
        ),
    ] {
        let output = vduse_net_null(args);
        assert_eq!(code(&output), status, "{args:?}: {}", stderr(&output));
        assert!(
            stderr(&output).contains(needle) || stdout(&output).contains(needle),
            "{args:?}"
        );
    }
    let help = stdout(&vduse_net_null(&["--help"]));
    for needle in ["SIGUSR1", "SIGUSR2", "CAP_NET_ADMIN", "Exit status"] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}

#[test]
fn version_names_the_vduse_interface() {
    let version = stdout(&vduse_net_null(&["--version"]));
    assert!(version.starts_with("vduse-net-null 0."), "{version}");
    assert!(version.contains("VDUSE API versions: 0, 1"), "{version}");
    assert!(version.contains("suspend (bit 1)"), "{version}");
}

#[test]
fn errors_carry_a_syslog_priority_only_when_stderr_is_the_journal() {
    // A configuration error: fatal before anything touches VDUSE.
    vduse_testkit::journal_stream::assert_priority_only_when_stderr_is_the_journal(
        Path::new(env!("CARGO_BIN_EXE_vduse-net-null")),
        "vduse-net-null",
        &["--config", "/nonexistent/net.yaml"],
    );
}

#[test]
fn errors_map_to_exit_statuses() {
    let config = anyhow::Error::new(vduse_net_null::ConfigError::Missing {
        key: "name",
        what: "NAME",
    });
    assert_eq!(exit_for(&config), Exit::Config);
    let permission = anyhow::Error::new(vduse::Error::NetNeedsCapNetAdmin { name: "n".into() });
    assert_eq!(exit_for(&permission), Exit::NoPermission);
    assert_eq!(exit_for(&anyhow::anyhow!("something else")), Exit::Software);
}
