//! `dist/install` on the host, with fake binaries (`--from`) into a staging root
//! (`--destdir`): the whole tree it lays out, file by file, with the default unit and doc
//! directories, with `--unitdir` and `--docdir`, with their environment variables, and the
//! Makefile's pass-through of `UNITDIR` and `DOCDIR`. Nothing is built and nothing runs as
//! root; the real build, installed and started in a guest, is tests/tests/install.rs.
//!
//! Needs bash and coreutils' `install` (always there on Debian) and make (Debian package
//! make) for the Makefile check.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const TOOLS: [&str; 4] = ["vduse-probe", "vduse-blk", "vduse-net-null", "vduse-fs"];

/// The variables dist/install reads; removed from every run unless a test sets them.
const VARIABLES: [&str; 5] = ["PREFIX", "SYSCONFDIR", "UNITDIR", "DOCDIR", "DESTDIR"];

/// A directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "vduse-xtask-{what}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A staging root and a directory of fake binaries (shell scripts naming themselves).
struct Setup {
    stage: TempDir,
    build: TempDir,
}

impl Setup {
    fn new() -> Self {
        let build = TempDir::new("build");
        for tool in TOOLS {
            let path = build.0.join(tool);
            std::fs::write(&path, format!("#!/bin/sh\necho fake {tool}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Setup {
            stage: TempDir::new("stage"),
            build,
        }
    }

    /// Runs dist/install with `args` and `env`, then `--destdir STAGE --from BUILD`.
    fn install(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(xtask::workspace_root().join("dist/install"));
        for name in VARIABLES {
            command.env_remove(name);
        }
        command
            .envs(env.iter().copied())
            .args(args)
            .arg("--destdir")
            .arg(&self.stage.0)
            .arg("--from")
            .arg(&self.build.0)
            .output()
            .expect("cannot run dist/install (bash)")
    }
}

/// Where everything should land: installed path -> the file it is a copy of (relative to
/// the workspace root; `None` for the binaries, the units made from templates and the
/// empty configuration directories, which end in `/`).
fn expected(
    prefix: &str,
    unitdir: &str,
    docdir: &str,
    sysconfdir: &str,
) -> BTreeMap<String, Option<String>> {
    let mut files = BTreeMap::new();
    let mut put = |path: String, source: Option<String>| {
        assert!(files.insert(path, source).is_none());
    };
    for tool in TOOLS {
        put(format!("{prefix}/bin/{tool}"), None);
        put(
            format!("{prefix}/share/bash-completion/completions/{tool}"),
            Some(format!("completions/{tool}.bash")),
        );
        put(
            format!("{prefix}/share/zsh/site-functions/_{tool}"),
            Some(format!("completions/_{tool}")),
        );
        put(
            format!("{prefix}/share/fish/vendor_completions.d/{tool}.fish"),
            Some(format!("completions/{tool}.fish")),
        );
    }
    for page in [
        "vduse-probe.1",
        "vduse.yaml.5",
        "vduse-blk.8",
        "vduse-net-null.8",
        "vduse-fs.8",
    ] {
        let section = page.rsplit('.').next().unwrap();
        put(
            format!("{prefix}/share/man/man{section}/{page}"),
            Some(format!("man/{page}")),
        );
    }
    for unit in [
        "vduse-blk@.service",
        "vduse-net-null@.service",
        "vduse-fs@.service",
    ] {
        put(format!("{unitdir}/{unit}"), None);
    }
    put(
        format!("{prefix}/lib/modules-load.d/vduse.conf"),
        Some("dist/modules-load.d/vduse.conf".into()),
    );
    for example in [
        "vduse-blk.yaml",
        "vduse-blk-nbd.yaml",
        "vduse-net-null.yaml",
        "vduse-fs.yaml",
    ] {
        put(
            format!("{docdir}/examples/{example}"),
            Some(format!("config/{example}")),
        );
    }
    put(
        format!("{docdir}/examples/60-vduse-control.rules"),
        Some("dist/udev/60-vduse-control.rules".into()),
    );
    for dir in ["blk", "net-null", "fs"] {
        put(format!("{sysconfdir}/vduse/{dir}/"), None);
    }
    files
}

/// Every file under `root`, and every empty directory (with a trailing `/`), as absolute
/// paths inside the staging root.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        entries.sort();
        let inside = format!("/{}", dir.strip_prefix(root).unwrap().display());
        if entries.is_empty() && dir != root {
            out.push(format!("{inside}/"));
        }
        for path in entries {
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(format!("/{}", path.strip_prefix(root).unwrap().display()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Checks the run succeeded and laid out exactly `expected`: the same paths printed and on
/// disk, copies identical to their sources, modes, and the units filled in.
fn check_layout(
    setup: &Setup,
    output: &Output,
    (prefix, unitdir, docdir, sysconfdir): (&str, &str, &str, &str),
) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "dist/install failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = expected(prefix, unitdir, docdir, sysconfdir);
    let wanted: Vec<&str> = expected.keys().map(String::as_str).collect();
    let mut listed: Vec<&str> = stdout.lines().collect();
    listed.sort();
    assert_eq!(listed, wanted, "the paths dist/install prints");
    assert_eq!(
        tree(&setup.stage.0),
        wanted,
        "the files in the staging root"
    );

    let root = xtask::workspace_root();
    let at = |path: &str| setup.stage.0.join(path.trim_start_matches('/'));
    for (path, source) in &expected {
        if path.ends_with('/') {
            continue;
        }
        let mode = std::fs::metadata(at(path)).unwrap().permissions().mode() & 0o777;
        let bin = path.starts_with(&format!("{prefix}/bin/"));
        assert_eq!(
            mode,
            if bin { 0o755 } else { 0o644 },
            "{path}: mode {mode:o}"
        );
        if let Some(source) = source {
            assert!(
                std::fs::read(at(path)).unwrap() == std::fs::read(root.join(source)).unwrap(),
                "{path} is not a copy of {source}"
            );
        }
    }
    for tool in TOOLS {
        assert_eq!(
            std::fs::read_to_string(at(&format!("{prefix}/bin/{tool}"))).unwrap(),
            format!("#!/bin/sh\necho fake {tool}\n"),
            "{tool} is not the binary from --from"
        );
    }
    for (unit, tool, dir) in [
        ("vduse-blk@.service", "vduse-blk", "blk"),
        ("vduse-net-null@.service", "vduse-net-null", "net-null"),
        ("vduse-fs@.service", "vduse-fs", "fs"),
    ] {
        let text = std::fs::read_to_string(at(&format!("{unitdir}/{unit}"))).unwrap();
        for placeholder in ["@BINDIR@", "@SYSCONFDIR@", "@DOCDIR@"] {
            assert!(!text.contains(placeholder), "{unit}: {placeholder} left");
        }
        let exec =
            format!("ExecStart={prefix}/bin/{tool} --config {sysconfdir}/vduse/{dir}/%i.yaml");
        assert!(
            text.lines().any(|l| l == exec),
            "{unit} lacks {exec}:\n{text}"
        );
        // The unit's comment points at the installed example, wherever the docs went.
        let example = format!("{docdir}/examples/{tool}.yaml");
        assert!(
            text.contains(&example),
            "{unit} does not name {example}:\n{text}"
        );
    }
}

#[test]
fn the_default_layout_puts_units_and_docs_under_the_prefix() {
    let setup = Setup::new();
    let output = setup.install(&["--prefix", "/usr", "--sysconfdir", "/etc"], &[]);
    check_layout(
        &setup,
        &output,
        (
            "/usr",
            "/usr/lib/systemd/system",
            "/usr/share/doc/vduse",
            "/etc",
        ),
    );

    let setup = Setup::new();
    let output = setup.install(&[], &[]);
    check_layout(
        &setup,
        &output,
        (
            "/usr/local",
            "/usr/local/lib/systemd/system",
            "/usr/local/share/doc/vduse",
            "/etc",
        ),
    );
}

#[test]
fn unitdir_and_docdir_flags_move_the_units_and_the_docs() {
    let setup = Setup::new();
    let output = setup.install(
        &[
            "--prefix",
            "/usr",
            "--unitdir",
            "/lib/systemd/system",
            "--docdir",
            "/usr/share/doc/vduse-rs",
        ],
        &[],
    );
    check_layout(
        &setup,
        &output,
        (
            "/usr",
            "/lib/systemd/system",
            "/usr/share/doc/vduse-rs",
            "/etc",
        ),
    );
}

#[test]
fn unitdir_and_docdir_come_from_the_environment_and_a_flag_wins() {
    let setup = Setup::new();
    let output = setup.install(
        &[],
        &[
            ("PREFIX", "/opt/vduse"),
            ("SYSCONFDIR", "/etc/opt/vduse"),
            ("UNITDIR", "/etc/systemd/system"),
            ("DOCDIR", "/opt/vduse/doc"),
        ],
    );
    check_layout(
        &setup,
        &output,
        (
            "/opt/vduse",
            "/etc/systemd/system",
            "/opt/vduse/doc",
            "/etc/opt/vduse",
        ),
    );

    let setup = Setup::new();
    let output = setup.install(
        &[
            "--prefix",
            "/usr",
            "--unitdir",
            "/usr/lib/systemd/system",
            "--docdir",
            "/usr/share/doc/vduse-rs",
        ],
        &[("UNITDIR", "/wrong/units"), ("DOCDIR", "/wrong/doc")],
    );
    check_layout(
        &setup,
        &output,
        (
            "/usr",
            "/usr/lib/systemd/system",
            "/usr/share/doc/vduse-rs",
            "/etc",
        ),
    );
}

#[test]
fn relative_or_empty_unitdir_and_docdir_are_usage_errors() {
    for (args, said) in [
        (
            &["--unitdir", "lib/systemd/system"][..],
            "--unitdir must be absolute",
        ),
        (
            &["--docdir", "share/doc/vduse"][..],
            "--docdir must be absolute",
        ),
        (&["--unitdir", ""][..], "--unitdir needs a directory"),
        (&["--docdir"][..], "--docdir needs a directory"),
    ] {
        let setup = Setup::new();
        // The flag last, so that `--docdir` alone has no value.
        let mut command = Command::new(xtask::workspace_root().join("dist/install"));
        for name in VARIABLES {
            command.env_remove(name);
        }
        let output = command
            .arg("--destdir")
            .arg(&setup.stage.0)
            .arg("--from")
            .arg(&setup.build.0)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(said), "{args:?}: {stderr}");
        assert!(
            tree(&setup.stage.0).is_empty(),
            "{args:?} installed something"
        );
    }
}

/// The command `make install VARS` would run (`make -n`), on one line.
fn make_install(vars: &[&str]) -> String {
    let mut command = Command::new("make");
    for name in VARIABLES {
        command.env_remove(name);
    }
    let output = command
        .arg("-n")
        .arg("-C")
        .arg(xtask::workspace_root())
        .arg("--no-print-directory")
        .arg("install")
        .args(vars)
        .output()
        .unwrap_or_else(|e| panic!("cannot run make ({e}): install the Debian package make"));
    assert!(
        output.status.success(),
        "make -n install failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .replace("\\\n", " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_makefile_passes_unitdir_and_docdir_through_when_set() {
    assert_eq!(
        make_install(&["PREFIX=/usr", "DESTDIR=/stage"]),
        r#"dist/install --prefix "/usr" --sysconfdir "/etc" --destdir "/stage""#
    );
    assert_eq!(
        make_install(&[
            "PREFIX=/usr",
            "UNITDIR=/lib/systemd/system",
            "DOCDIR=/usr/share/doc/vduse-rs",
            "DESTDIR=/stage",
        ]),
        r#"dist/install --prefix "/usr" --sysconfdir "/etc" --unitdir "/lib/systemd/system" --docdir "/usr/share/doc/vduse-rs" --destdir "/stage""#
    );
}
