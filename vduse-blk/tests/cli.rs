//! The command line end to end (short of serving): exit statuses, `--check-config`,
//! `--print-config`, and the example configurations in config/vduse-blk.yaml and
//! config/vduse-blk-nbd.yaml.

use std::path::Path;
use std::process::{Command, ExitCode};

use vduse_blk::config::{Attach, ByteSize, CacheMode, ConfigFile, DeviceKeys, DiskKind, Settings};
use vduse_blk::nbd::{Endpoint, NbdUri};
use vduse_blk::{Config, Exit, exit_for};

const EXAMPLE: &str = include_str!("../../config/vduse-blk.yaml");
const EXAMPLE_BACKING: &str = "/var/lib/vduse/disk0.img";
const NBD_EXAMPLE: &str = "../config/vduse-blk-nbd.yaml";
const NBD_EXAMPLE_URI: &str = "nbd+unix:///disk1?socket=/run/nbd-disk1.sock";

fn vduse_blk(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vduse-blk"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

fn code(output: &std::process::Output) -> i32 {
    output.status.code().unwrap()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `example` with every commented-out `key: value` line of a known key uncommented.
fn uncomment(example: &str) -> String {
    example
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest
                    .split_once(": ")
                    .is_some_and(|(key, _)| vduse_blk::config::KEYS.contains(&key)) =>
            {
                rest
            }
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn the_example_configuration_is_valid_and_realistic() {
    let file = ConfigFile::parse(Path::new("config/vduse-blk.yaml"), EXAMPLE.to_owned()).unwrap();
    let config = Config::resolve(Some(&file), &Settings::default()).unwrap();
    assert_eq!(config.name, "disk0");
    assert_eq!(config.backing.as_deref(), Some(Path::new(EXAMPLE_BACKING)));
    assert_eq!(config.size, Some(ByteSize(8 << 30)));
    assert!(config.create && !config.read_only);
    assert_eq!(config.cache, CacheMode::Writeback);
    assert_eq!(config.physical_block_size, Some(4096));
    assert_eq!(config.num_queues, 2);
    assert_eq!(config.serial.as_deref(), Some("disk0-0001"));
    assert_eq!(config.device.attach, Attach::Virtio);

    // Every commented-out `key: value` line is valid, and the default but for bounce-size.
    let all = ConfigFile::parse(Path::new("all.yaml"), uncomment(EXAMPLE)).unwrap();
    let all = Config::resolve(Some(&all), &Settings::default()).unwrap();
    // bounce-size has no value that means "the kernel's default": its example is a choice.
    assert_eq!(all.device.bounce_size, Some(ByteSize(16 << 20)));
    // Nor do user and group: not set, the server stays who it is.
    assert_eq!(
        (all.device.user.as_deref(), all.device.group.as_deref()),
        (Some("nobody"), Some("nogroup"))
    );
    assert_eq!(
        Config {
            device: DeviceKeys {
                bounce_size: None,
                user: None,
                group: None,
                ..all.device
            },
            ..all
        },
        config
    );
}

#[test]
fn the_nbd_example_configuration_is_valid_and_realistic() {
    // Loaded as the server loads it; nothing here connects to a server.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(NBD_EXAMPLE);
    let config = Config::load(Some(&path), &Settings::default()).unwrap();
    assert_eq!(config.name, "disk1");
    assert_eq!(config.backend, DiskKind::Nbd, "inferred from nbd-uri");
    assert_eq!(config.backing, None);
    assert_eq!(config.nbd_uri.as_deref(), Some(NBD_EXAMPLE_URI));
    assert_eq!(config.nbd_timeout, Some(60));
    assert_eq!(config.num_queues, 2);
    assert_eq!(config.nbd_connections, Some(2), "one per queue by default");
    assert_eq!(config.size, None);
    assert!(!config.create && !config.read_only);
    assert_eq!(
        config.physical_block_size, None,
        "the server's preferred block"
    );
    assert_eq!(config.serial.as_deref(), Some("disk1-nbd"));
    assert_eq!(config.device.attach, Attach::Virtio);
    let options = config.nbd_options().unwrap();
    assert_eq!(
        options.uri.endpoint,
        Endpoint::Unix("/run/nbd-disk1.sock".into())
    );
    assert_eq!(options.uri.export, "disk1");
    assert_eq!(options.timeout.as_secs(), 60);
    assert_eq!(options.connections, 2);

    // Every commented-out `key: value` line is valid and the default.
    let text = std::fs::read_to_string(&path).unwrap();
    let all = ConfigFile::parse(Path::new("all.yaml"), uncomment(&text)).unwrap();
    assert_eq!(
        Config::resolve(Some(&all), &Settings::default()).unwrap(),
        config
    );

    // Every URI the comments show parses, the TCP forms included.
    // (Placeholders such as HOST and EXPORT aside, and a bare scheme in a sentence.)
    let uris: Vec<&str> = text
        .split_whitespace()
        .map(|word| word.trim_end_matches([',', '.', ')', ';']))
        .filter(|word| word.starts_with("nbd://") || word.starts_with("nbd+unix://"))
        .filter(|word| !word.ends_with("://") && !word.contains("EXPORT"))
        .collect();
    assert_eq!(uris.len(), 3, "{uris:?}");
    for uri in &uris {
        NbdUri::parse(uri).unwrap_or_else(|error| panic!("{uri}: {error}"));
    }
    assert!(
        uris.iter().any(|uri| uri.starts_with("nbd://[")),
        "{uris:?}"
    );

    // The keys of a local backing are refused, each by name.
    for (flags, key) in [
        (
            Settings {
                size: Some(ByteSize(1 << 30)),
                ..Settings::default()
            },
            "--size",
        ),
        (
            Settings {
                cache: Some(CacheMode::None),
                ..Settings::default()
            },
            "--cache",
        ),
        (
            Settings {
                backend: Some(DiskKind::Nbd),
                backing: Some("/x".into()),
                ..Settings::default()
            },
            "--backing",
        ),
    ] {
        let error = Config::load(Some(&path), &flags).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("{key}: not used with backend: nbd")),
            "{error}"
        );
    }
}

#[test]
fn the_nbd_example_prints_and_reports_a_missing_server() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(NBD_EXAMPLE);
    let path = path.to_str().unwrap();
    let output = vduse_blk(&["--config", path, "--print-config"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let printed = String::from_utf8(output.stdout).unwrap();
    let reread = ConfigFile::parse(Path::new("printed.yaml"), printed.clone()).unwrap();
    let reread = Config::resolve(Some(&reread), &Settings::default()).unwrap();
    assert_eq!(
        reread,
        Config::load(Some(Path::new(path)), &Settings::default()).unwrap()
    );
    assert!(printed.contains("backend: nbd\n"), "{printed}");

    // No server behind the socket: EX_UNAVAILABLE, naming the export.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    let uri = format!("nbd+unix:///disk1?socket={}", socket.display());
    let output = vduse_blk(&["--config", path, "--nbd-uri", &uri, "--check-config"]);
    assert_eq!(code(&output), 69, "{}", stderr(&output));
    assert!(
        stderr(&output).starts_with(&format!(
            "vduse-blk: error: cannot reach the NBD server for {uri}: "
        )),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_example_passes_check_config_against_a_real_backing() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("disk0.img");
    let config = dir.path().join("disk0.yaml");
    std::fs::write(
        &config,
        EXAMPLE.replace(EXAMPLE_BACKING, backing.to_str().unwrap()),
    )
    .unwrap();
    let output = vduse_blk(&["--config", config.to_str().unwrap(), "--check-config"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!(
            "configuration OK: device disk0 over file {} (8589934592 bytes, would be created, \
             read-write, cache writeback)\n",
            backing.display()
        )
    );
    assert!(!backing.exists(), "--check-config creates nothing");

    // Without `create`, the missing backing is a configuration error naming the fix.
    let output = vduse_blk(&[
        "--config",
        config.to_str().unwrap(),
        "--create=false",
        "--check-config",
    ]);
    assert_eq!(code(&output), 78);
    assert_eq!(
        stderr(&output),
        format!(
            "vduse-blk: error: the backing file {0} does not exist: create it (for example \
             `truncate -s 1G {0}`), or set `create: true` and a `size`\n",
            backing.display()
        )
    );
}

#[test]
fn print_config_shows_the_flags_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("disk0.yaml");
    std::fs::write(&config, EXAMPLE).unwrap();
    let output = vduse_blk(&[
        "--config",
        config.to_str().unwrap(),
        "--print-config",
        "--queue-size=512",
        "--read-only",
        "--create=false",
        "--cache",
        "none",
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let printed = String::from_utf8(output.stdout).unwrap();
    let reread = ConfigFile::parse(Path::new("printed.yaml"), printed.clone()).unwrap();
    let reread = Config::resolve(Some(&reread), &Settings::default()).unwrap();
    assert_eq!(reread.queue_size, 512);
    assert!(reread.read_only && !reread.create);
    assert_eq!(reread.cache, CacheMode::None);
    assert_eq!(reread.name, "disk0");
    assert!(printed.contains("size: 8G\n"), "{printed}");
}

#[test]
fn exit_statuses_follow_sysexits() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("disk.img");
    std::fs::write(&backing, vec![0u8; 1 << 20]).unwrap();
    let backing = backing.to_str().unwrap();

    assert_eq!(code(&vduse_blk(&["--help"])), 0);
    assert_eq!(code(&vduse_blk(&["--version"])), 0);
    assert_eq!(code(&vduse_blk(&["--no-such-flag"])), 64);
    assert_eq!(code(&vduse_blk(&["--queue-size", "many"])), 64);
    let ok = vduse_blk(&["--name", "d", "--backing", backing, "--check-config"]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));

    let bad = vduse_blk(&[
        "--name",
        "d",
        "--backing",
        backing,
        "--queue-size=100",
        "--check-config",
    ]);
    assert_eq!(code(&bad), 78);
    assert_eq!(
        stderr(&bad),
        "vduse-blk: error: --queue-size: 100 is not a power of two between 4 and 1024: use for \
         example 128, 256 or 1024\n"
    );
    let missing = vduse_blk(&["--name", "d", "--check-config"]);
    assert_eq!(code(&missing), 78);
    let no_file = vduse_blk(&["--config", "/nonexistent/disk.yaml"]);
    assert_eq!(code(&no_file), 78);
    assert!(stderr(&no_file).starts_with(
        "vduse-blk: error: cannot read the configuration file /nonexistent/disk.yaml: "
    ));
    let too_big = vduse_blk(&[
        "--name",
        "d",
        "--backing",
        backing,
        "--size=2M",
        "--check-config",
    ]);
    assert_eq!(code(&too_big), 78);
    assert!(stderr(&too_big).contains("set `create: true` to extend the file"));

    // A bad key in the file: one line, naming the file, the key and where it is.
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        "name: d\nbacking: /x\nserial: ABCDEFGHIJKLMNOPQRSTUVWXYZ\n",
    )
    .unwrap();
    let output = vduse_blk(&["--config", config.to_str().unwrap()]);
    assert_eq!(code(&output), 78);
    assert_eq!(
        stderr(&output),
        format!(
            "vduse-blk: error: {}: serial: \"ABCDEFGHIJKLMNOPQRSTUVWXYZ\" is 26 bytes long; a \
             virtio-blk serial holds at most 20 at line 3 column 9\n",
            config.display()
        )
    );
}

#[test]
fn errors_map_to_exit_statuses() {
    let config_error = anyhow::Error::new(Config::resolve(None, &Settings::default()).unwrap_err());
    assert_eq!(exit_for(&config_error), Exit::Config);
    let io = anyhow::Error::new(vduse_blk::FileDiskError::Io {
        op: "reading",
        path: "/x".into(),
        error: std::io::Error::from_raw_os_error(5),
    });
    assert_eq!(exit_for(&io), Exit::IoError);
    let missing = anyhow::Error::new(vduse_blk::FileDiskError::NotFound { path: "/x".into() });
    assert_eq!(exit_for(&missing), Exit::Config);
    for (error, exit) in [
        (
            vduse::Error::NameInUse {
                name: "disk0".into(),
            },
            Exit::Config,
        ),
        (
            vduse::Error::NotLoaded {
                path: "/dev/vduse/control".into(),
            },
            Exit::Unavailable,
        ),
        (
            vduse::Error::NoVduseInKernel {
                path: "/dev/vduse/control".into(),
            },
            Exit::Unavailable,
        ),
        (
            vduse::Error::PermissionDenied {
                path: "/dev/vduse/control".into(),
            },
            Exit::NoPermission,
        ),
        (
            vduse::Error::NoSuchDevice {
                name: "disk0".into(),
            },
            Exit::Software,
        ),
    ] {
        // However deep in the chain the error sits.
        let wrapped = anyhow::Error::new(error).context("starting the device");
        assert_eq!(exit_for(&wrapped), exit, "{wrapped:#}");
    }
    assert_eq!(exit_for(&anyhow::anyhow!("something else")), Exit::Software);
    assert_eq!(ExitCode::from(Exit::Config), ExitCode::from(78));
}
