//! `dist/install`: the installed tree, and a server started the way systemd would start it
//! from that tree, on the newest kernel of the matrix.
//!
//! 1. `dist/install --prefix /usr --destdir TMP --from <this build>` lays out every binary,
//!    man page, completion, unit, the modules-load.d snippet and the examples, and the
//!    units' `ExecStart` lines point at the installed binaries and `/etc/vduse/...`.
//! 2. In a 7.3 guest holding that tree at `/`: the modules named by the installed
//!    modules-load.d snippet are loaded, the installed example configurations are copied
//!    to `/etc/vduse/{blk,net-null,fs}/NAME.yaml` (what an administrator does; the fs
//!    example's `shared-dir` pointed at an existing directory), and each server runs from
//!    its installed unit's `ExecStart` line with `%i` = NAME under a `NOTIFY_SOCKET`, as
//!    `Type=notify` has it: READY=1 arrives, the disk appears with the example's size and
//!    serial, the interface with the example's MAC, the virtiofs tag mounts with
//!    `mount -t virtiofs fs0 /mnt` and shows the shared directory, and SIGTERM (systemd's
//!    stop) removes the three devices. The guest's steps are the shell files of
//!    `tests/scenarios/install/`, each checked by the function of the same name below.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vduse_tests::{Boot, Guest, Kernel, Scenario, Step, kernel_tests, step, workspace_binary};

const TOOLS: [&str; 4] = ["vduse-probe", "vduse-blk", "vduse-net-null", "vduse-fs"];

/// Every file the install lays out, under the prefix /usr and sysconfdir /etc.
const FILES: [&str; 29] = [
    "/usr/bin/vduse-probe",
    "/usr/bin/vduse-blk",
    "/usr/bin/vduse-net-null",
    "/usr/bin/vduse-fs",
    "/usr/share/man/man1/vduse-probe.1",
    "/usr/share/man/man8/vduse-blk.8",
    "/usr/share/man/man8/vduse-net-null.8",
    "/usr/share/man/man8/vduse-fs.8",
    "/usr/share/man/man5/vduse.yaml.5",
    "/usr/share/bash-completion/completions/vduse-probe",
    "/usr/share/bash-completion/completions/vduse-blk",
    "/usr/share/bash-completion/completions/vduse-net-null",
    "/usr/share/bash-completion/completions/vduse-fs",
    "/usr/share/zsh/site-functions/_vduse-probe",
    "/usr/share/zsh/site-functions/_vduse-blk",
    "/usr/share/zsh/site-functions/_vduse-net-null",
    "/usr/share/zsh/site-functions/_vduse-fs",
    "/usr/share/fish/vendor_completions.d/vduse-probe.fish",
    "/usr/share/fish/vendor_completions.d/vduse-blk.fish",
    "/usr/share/fish/vendor_completions.d/vduse-net-null.fish",
    "/usr/share/fish/vendor_completions.d/vduse-fs.fish",
    "/usr/lib/systemd/system/vduse-blk@.service",
    "/usr/lib/systemd/system/vduse-net-null@.service",
    "/usr/lib/systemd/system/vduse-fs@.service",
    "/usr/lib/modules-load.d/vduse.conf",
    "/usr/share/doc/vduse/examples/vduse-blk.yaml",
    "/usr/share/doc/vduse/examples/vduse-net-null.yaml",
    "/usr/share/doc/vduse/examples/vduse-fs.yaml",
    "/usr/share/doc/vduse/examples/60-vduse-control.rules",
];

/// Installs into a fresh staging root; returns it (removed when dropped).
fn install() -> (vduse_tests::TempDir, PathBuf) {
    let stage = vduse_tests::TempDir::new("vduse-install");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let built = workspace_binary("vduse-blk");
    let output = Command::new(root.join("dist/install"))
        .args(["--prefix", "/usr", "--sysconfdir", "/etc", "--destdir"])
        .arg(stage.path())
        .arg("--from")
        .arg(built.parent().unwrap())
        .output()
        .expect("cannot run dist/install");
    assert!(
        output.status.success(),
        "dist/install failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed = String::from_utf8_lossy(&output.stdout).into_owned();
    for file in FILES {
        assert!(
            listed.lines().any(|line| line == file),
            "not listed: {file}\n{listed}"
        );
    }
    let path = stage.path().to_path_buf();
    (stage, path)
}

#[test]
fn the_installed_tree_has_everything_in_its_place() {
    let (_stage, root) = install();
    let at = |path: &str| root.join(path.trim_start_matches('/'));
    for file in FILES {
        let meta = std::fs::metadata(at(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(meta.len() > 0, "{file} is empty");
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        let expected = if file.starts_with("/usr/bin/") {
            0o755
        } else {
            0o644
        };
        assert_eq!(mode, expected, "{file}: mode {mode:o}");
    }
    for dir in ["/etc/vduse/blk", "/etc/vduse/net-null", "/etc/vduse/fs"] {
        assert!(at(dir).is_dir(), "{dir} missing");
    }
    for (unit, tool, dir) in [
        ("vduse-blk@.service", "vduse-blk", "blk"),
        ("vduse-net-null@.service", "vduse-net-null", "net-null"),
        ("vduse-fs@.service", "vduse-fs", "fs"),
    ] {
        let text = std::fs::read_to_string(at(&format!("/usr/lib/systemd/system/{unit}"))).unwrap();
        for placeholder in ["@BINDIR@", "@SYSCONFDIR@", "@DOCDIR@"] {
            assert!(!text.contains(placeholder), "{unit}: {placeholder} left");
        }
        assert!(
            text.lines().any(
                |l| l == format!("ExecStart=/usr/bin/{tool} --config /etc/vduse/{dir}/%i.yaml")
            ),
            "{unit}:\n{text}"
        );
        for line in ["Type=notify", "NoNewPrivileges=yes", "[Install]"] {
            assert!(text.lines().any(|l| l == line), "{unit} lacks {line}");
        }
    }
    // vduse-fs's unit leaves its sandbox what it needs: the mount namespace, the
    // capabilities of the filesystem threads (sandbox::KEPT_CAPABILITIES), and a writable
    // view of wherever the shared directory is.
    let fs_unit = std::fs::read_to_string(at("/usr/lib/systemd/system/vduse-fs@.service")).unwrap();
    let bounding = fs_unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("vduse-fs@.service has a CapabilityBoundingSet");
    for cap in [
        "CAP_SYS_ADMIN",
        "CAP_NET_ADMIN",
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_MKNOD",
        "CAP_SETFCAP",
    ] {
        assert!(
            bounding.split(' ').any(|c| c == cap),
            "vduse-fs@.service lacks {cap}"
        );
    }
    for line in [
        "RestrictNamespaces=mnt",
        "ProtectSystem=no",
        "ProtectHome=no",
        "PrivateTmp=no",
        "RestrictSUIDSGID=no",
    ] {
        assert!(
            fs_unit.lines().any(|l| l == line),
            "vduse-fs@.service lacks {line}"
        );
    }
    let modules = std::fs::read_to_string(at("/usr/lib/modules-load.d/vduse.conf")).unwrap();
    let names: Vec<&str> = modules
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(names, ["vduse", "virtio_vdpa"]);
    // The installed binaries are this build's.
    for tool in TOOLS {
        let installed = std::fs::read(at(&format!("/usr/bin/{tool}"))).unwrap();
        assert_eq!(
            installed,
            std::fs::read(workspace_binary(tool)).unwrap(),
            "{tool}"
        );
    }
}

#[test]
fn the_installed_units_pass_systemd_analyze_verify() {
    // Installed for real under a temporary prefix, so each ExecStart names an existing
    // binary; the instance names the template (tests/run-all installs systemd).
    let prefix = vduse_tests::TempDir::new("vduse-units");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let built = workspace_binary("vduse-blk");
    let status = Command::new(root.join("dist/install"))
        .arg("--prefix")
        .arg(prefix.path())
        .arg("--sysconfdir")
        .arg(prefix.path().join("etc"))
        .arg("--from")
        .arg(built.parent().unwrap())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let units = prefix.path().join("lib/systemd/system");
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(units.join("vduse-blk@disk0.service"))
        .arg(units.join("vduse-net-null@null0.service"))
        .arg(units.join("vduse-fs@fs0.service"))
        .output()
        .expect("systemd-analyze (package systemd) is needed: tests/run-all installs it");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        output.status
    );
    // The servers open /dev/vduse/* (and vduse-blk a backing disk): nothing may restrict
    // the unit's devices, as ProtectClock= does by implying DeviceAllow=char-rtc.
    for unit in [
        "vduse-blk@.service",
        "vduse-net-null@.service",
        "vduse-fs@.service",
    ] {
        let text = std::fs::read_to_string(units.join(unit)).unwrap();
        for line in text.lines() {
            for restricting in ["ProtectClock=yes", "DeviceAllow=", "PrivateDevices=yes"] {
                assert!(!line.starts_with(restricting), "{unit}: {line}");
            }
        }
    }
}

const STEPS: &[Step] = &[
    step!("install/01-modules.sh", modules),
    step!("install/02-configure.sh", configure),
    step!("install/03-start.sh", start),
    step!("install/04-devices.sh", devices),
    step!("install/05-stop.sh", stop),
];

/// The servers run from their installed units, in a guest holding the installed tree.
fn installed_units(series: &str) {
    let (_stage, root) = install();
    let at = |path: &str| root.join(path.trim_start_matches('/'));
    let kernel = Kernel::load(series);
    let mut guest = Guest::new(&kernel).binary("notify-listen");
    for tool in TOOLS {
        let path = format!("/usr/bin/{tool}");
        guest = guest.program(at(&path), &path);
    }
    for file in FILES.iter().filter(|f| !f.starts_with("/usr/bin/")) {
        guest = guest.file(at(file), file);
    }
    let guest = guest.modules(&[]).timeout(Duration::from_secs(120));
    Scenario::new(guest).steps(STEPS).run();
}

kernel_tests!(installed_units: linux_7_3);

/// What the servers left, for failure messages.
fn servers(run: &Boot) -> String {
    ["blk.err", "blk.rc", "net.err", "net.rc", "fs.err", "fs.rc"]
        .iter()
        .filter(|name| run.has(name))
        .map(|name| format!("--- {name}:\n{}", run.text(name)))
        .collect::<String>()
}

fn modules(run: &Boot) {
    let modules = run.text("modules");
    for module in ["vduse", "virtio_vdpa"] {
        assert!(
            modules.lines().any(|l| l == module),
            "{module} not loaded:\n{modules}"
        );
    }
}

fn configure(run: &Boot) {
    assert_eq!(run.text("fs.shared-dir").trim(), "shared-dir: /srv/share");
}

fn start(run: &Boot) {
    assert_eq!(
        run.text("blk.exec").trim(),
        "/usr/bin/vduse-blk --config /etc/vduse/blk/disk0.yaml"
    );
    assert_eq!(
        run.text("net.exec").trim(),
        "/usr/bin/vduse-net-null --config /etc/vduse/net-null/null0.yaml"
    );
    assert_eq!(
        run.text("fs.exec").trim(),
        "/usr/bin/vduse-fs --config /etc/vduse/fs/fs0.yaml"
    );
    for name in ["blk-ready", "net-ready", "fs-ready"] {
        assert_eq!(
            run.rc(name),
            0,
            "{name}: no READY=1\n{}\n{}",
            run.report(name),
            servers(run)
        );
    }
}

fn devices(run: &Boot) {
    // The example: size 8G (in 512-byte sectors), serial disk0-0001, MAC 02:00:00:00:00:01.
    assert_eq!(
        run.text("disk0.size").trim(),
        "16777216",
        "{}",
        servers(run)
    );
    assert_eq!(
        run.text("null0.mac").trim(),
        "02:00:00:00:00:01",
        "{}",
        servers(run)
    );
    assert_eq!(
        run.rc("fs-tag"),
        0,
        "the virtiofs driver registered no tag fs0 in 60 s\n{}",
        servers(run)
    );
    // The example's tag is its name: `mount -t virtiofs fs0 /mnt` shows /srv/share, both ways.
    assert_eq!(
        run.rc("fs-mount"),
        0,
        "{}\n{}",
        run.report("fs-mount"),
        servers(run)
    );
    assert_eq!(
        run.text("fs0.hello").trim(),
        "from-the-host",
        "{}",
        servers(run)
    );
    assert_eq!(
        run.text("fs0.written").trim(),
        "from-the-guest",
        "{}",
        servers(run)
    );
    assert_eq!(run.rc("fs-umount"), 0, "{}", run.report("fs-umount"));
    assert!(run.text("version").contains("VDUSE API versions: 0, 1"));
}

fn stop(run: &Boot) {
    assert_eq!(
        (run.rc("blk"), run.rc("net"), run.rc("fs")),
        (0, 0, 0),
        "{}",
        servers(run)
    );
    assert_eq!(
        run.text("after.vduse").trim(),
        "control",
        "{}",
        servers(run)
    );
    assert_eq!(run.text("after.bus").trim(), "", "{}", servers(run));
}
