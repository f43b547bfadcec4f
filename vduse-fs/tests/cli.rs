//! The command line end to end (short of serving): exit statuses, `--check-config`,
//! `--print-config`, and the example configuration in config/vduse-fs.yaml.
//!
//! The example shares `/srv/share`, which `Config::resolve` requires to exist: the tests
//! point `shared-dir` at a temporary directory, in the file or with the flag over it.

use std::path::Path;
use std::process::Command;

use vduse_fs::config::{Attach, Cache, ConfigFile, InodeFileHandles, Sandbox, Seccomp, Settings};
use vduse_fs::{Config, Exit, exit_for};

const EXAMPLE: &str = include_str!("../../config/vduse-fs.yaml");
const EXAMPLE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/vduse-fs.yaml");

fn vduse_fs(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vduse-fs"))
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

/// The example with `shared-dir` pointed at `dir`.
fn example_sharing(dir: &Path) -> String {
    let mut replaced = 0;
    let text = EXAMPLE
        .lines()
        .map(|line| {
            if line.starts_with("shared-dir: ") {
                replaced += 1;
                format!("shared-dir: {}\n", dir.display())
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert_eq!(replaced, 1, "the example has one shared-dir line");
    text
}

#[test]
fn the_example_configuration_is_valid_and_every_commented_key_too() {
    assert!(EXAMPLE.contains("\nshared-dir: /srv/share\n"));
    let dir = tempfile::tempdir().unwrap();
    let shared = std::fs::canonicalize(dir.path()).unwrap();
    let text = example_sharing(&shared);
    let file = ConfigFile::parse(Path::new("config/vduse-fs.yaml"), text.clone()).unwrap();
    let config = Config::resolve(Some(&file), &Settings::default()).unwrap();
    assert_eq!(config.name, "fs0");
    assert_eq!(config.shared_dir, shared);
    assert_eq!(config.tag, "fs0");
    assert!(!config.read_only && !config.writeback && !config.xattr);
    assert!(!config.announce_submounts);
    assert_eq!(config.cache, Cache::Auto);
    assert_eq!(config.inode_file_handles, InodeFileHandles::Never);
    assert_eq!((config.num_request_queues, config.queue_size), (1, 128));
    assert_eq!(config.threads, 4);
    assert_eq!(
        (config.sandbox, config.seccomp),
        (Sandbox::Auto, Seccomp::Kill)
    );
    assert_eq!(config.device.attach, Attach::Virtio);
    assert!(!config.device.keep_device);
    assert_eq!(
        (config.device.bounce_size, config.device.busy_poll_us),
        (None, 0)
    );
    // The example's values are the defaults, as its comments say.
    let defaults = Config::resolve(
        None,
        &Settings {
            name: Some("fs0".into()),
            shared_dir: Some(shared.clone()),
            ..Settings::default()
        },
    )
    .unwrap();
    assert_eq!(config, defaults);

    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest
                    .split_once(": ")
                    .is_some_and(|(key, _)| vduse_fs::config::KEYS.contains(&key)) =>
            {
                rest
            }
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let all = ConfigFile::parse(Path::new("all.yaml"), uncommented).unwrap();
    let all = Config::resolve(Some(&all), &Settings::default()).unwrap();
    assert_eq!(all.tag, "share");
    assert_eq!(all.device.bounce_size.map(|size| size.0), Some(16 << 20));
    // Every key of the format appears in the example.
    for key in vduse_fs::config::KEYS {
        assert!(
            EXAMPLE.contains(&format!("\n{key}: ")) || EXAMPLE.contains(&format!("# {key}: ")),
            "{key} is not in the example"
        );
    }
}

#[test]
fn check_and_print_config_read_the_example_with_flags_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let shared = std::fs::canonicalize(dir.path()).unwrap();
    let shared_arg = shared.to_str().unwrap();

    // The file as it is, shared-dir from the flag.
    let check = vduse_fs(&[
        "--config",
        EXAMPLE_PATH,
        "--shared-dir",
        shared_arg,
        "--check-config",
    ]);
    assert_eq!(code(&check), 0, "{}", stderr(&check));
    assert_eq!(
        stdout(&check),
        format!(
            "configuration OK: device fs0 shares {} as tag \"fs0\" (read-write, cache auto, 1 \
             request queue of 128)\n",
            shared.display()
        )
    );

    // A copy pointed at the directory, with overrides.
    let copy = dir.path().join("fs0.yaml");
    std::fs::write(&copy, example_sharing(&shared)).unwrap();
    let copy = copy.to_str().unwrap();
    let check = vduse_fs(&[
        "--config",
        copy,
        "--read-only",
        "--cache",
        "never",
        "--num-request-queues",
        "2",
        "--check-config",
    ]);
    assert_eq!(code(&check), 0, "{}", stderr(&check));
    assert_eq!(
        stdout(&check),
        format!(
            "configuration OK: device fs0 shares {} as tag \"fs0\" (read-only, cache never, 2 \
             request queues of 128)\n",
            shared.display()
        )
    );

    let print = vduse_fs(&[
        "--config",
        copy,
        "--tag",
        "share",
        "--sandbox",
        "none",
        "--print-config",
    ]);
    assert_eq!(code(&print), 0, "{}", stderr(&print));
    assert_eq!(
        stdout(&print),
        format!(
            "# vduse-fs: effective configuration\n\
             name: fs0\n\
             shared-dir: {}\n\
             tag: share\n\
             read-only: false\n\
             cache: auto\n\
             writeback: false\n\
             xattr: false\n\
             announce-submounts: false\n\
             inode-file-handles: never\n\
             num-request-queues: 1\n\
             queue-size: 128\n\
             threads: 4\n\
             sandbox: none\n\
             seccomp: kill\n\
             attach: virtio\n\
             keep-device: false\n\
             busy-poll-us: 0\n\
             inflight-log: /run/vduse/fs/fs0.inflight\n",
            shared.display()
        )
    );
    // What --print-config prints is a configuration file that reads back the same.
    let printed = dir.path().join("printed.yaml");
    std::fs::write(&printed, stdout(&print)).unwrap();
    let again = vduse_fs(&["--config", printed.to_str().unwrap(), "--print-config"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(stdout(&again), stdout(&print));
}

#[test]
fn exit_statuses_follow_sysexits() {
    for (args, status, needle) in [
        (&["--help"][..], 0, "Exit status"),
        (&["--version"], 0, "vduse-fs"),
        (&["--bogus"], 64, "--bogus"),
        (
            &["--name", "x", "--shared-dir", "/", "--cache", "sometimes"],
            64,
            "sometimes",
        ),
        (
            &["--name", "x", "--shared-dir", "/", "--sandbox", "chroot"],
            64,
            "chroot",
        ),
        (
            &["--shared-dir", "/", "--check-config"],
            78,
            "name is not set",
        ),
        (
            &["--name", "x", "--check-config"],
            78,
            "shared-dir is not set",
        ),
        (
            &["--name", "x", "--shared-dir", "/nonexistent"],
            78,
            "--shared-dir: /nonexistent does not exist",
        ),
        (
            &[
                "--name",
                "x",
                "--shared-dir",
                "/",
                "--tag",
                &"t".repeat(37),
                "--check-config",
            ],
            78,
            "--tag",
        ),
        (
            &[
                "--name",
                "x",
                "--shared-dir",
                "/",
                "--read-only",
                "--writeback",
                "--check-config",
            ],
            78,
            "--writeback",
        ),
        (
            &["--config", "/nonexistent.yaml", "--check-config"],
            78,
            "/nonexistent.yaml",
        ),
    ] {
        let output = vduse_fs(args);
        assert_eq!(code(&output), status, "{args:?}: {}", stderr(&output));
        assert!(
            stderr(&output).contains(needle) || stdout(&output).contains(needle),
            "{args:?}: {}{}",
            stdout(&output),
            stderr(&output)
        );
    }
    let help = stdout(&vduse_fs(&["--help"]));
    for needle in [
        "mount -t virtiofs",
        "Linux 7.2",
        "CAP_SYS_ADMIN",
        "seccomp",
        "SIGTERM",
        "Exit status",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}

#[test]
fn version_names_the_vduse_interface() {
    let version = stdout(&vduse_fs(&["--version"]));
    assert!(version.starts_with("vduse-fs 0."), "{version}");
    assert!(version.contains("VDUSE API versions: 0, 1"), "{version}");
    assert!(version.contains("suspend (bit 1)"), "{version}");
}

#[test]
fn errors_carry_a_syslog_priority_only_when_stderr_is_the_journal() {
    // A configuration error: fatal before anything touches VDUSE.
    vduse_testkit::journal_stream::assert_priority_only_when_stderr_is_the_journal(
        Path::new(env!("CARGO_BIN_EXE_vduse-fs")),
        "vduse-fs",
        &["--config", "/nonexistent/fs.yaml"],
    );
}

#[test]
fn errors_map_to_exit_statuses() {
    let config = anyhow::Error::new(vduse_fs::ConfigError::Missing {
        key: "shared-dir",
        what: "DIR",
    });
    assert_eq!(exit_for(&config), Exit::Config);
    let permission = anyhow::Error::new(vduse::Error::PermissionDenied {
        path: "/dev/vduse/control".into(),
    });
    assert_eq!(exit_for(&permission), Exit::NoPermission);
    // A kernel whose VDUSE refuses virtio-fs (before 7.2): unavailable.
    let refused = anyhow::Error::new(vduse::Error::DeviceTypeRejected {
        name: "fs0".into(),
        device_type: vduse::DeviceType::Fs,
        hint: "",
    });
    assert_eq!(exit_for(&refused), Exit::Unavailable);
    assert_eq!(exit_for(&anyhow::anyhow!("something else")), Exit::Software);
}
