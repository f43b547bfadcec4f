//! `tests/setup-host`, the install step of `tests/run-all`, against machine states that
//! broke it before: apt resolves each state for real (`apt-get -s` over a copy of this
//! machine's dpkg status, edited), so what is checked is the transaction apt would run.
//!
//! Needs apt's package lists (present on Debian images; `apt-get update` refreshes them),
//! and runs after `tests/setup-host` has installed the test packages on this machine.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vduse_tests::TempDir;

fn setup_host() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("setup-host")
}

/// This machine's dpkg status without any `qemu-*` package, plus `extra` stanzas, in a
/// directory `tests/setup-host` reads through `VDUSE_SETUP_ADMINDIR`.
fn dpkg_state(extra: &[&str]) -> TempDir {
    let status = fs::read_to_string("/var/lib/dpkg/status").expect("read /var/lib/dpkg/status");
    let mut kept: Vec<&str> = status
        .split("\n\n")
        .filter(|stanza| !stanza.trim().is_empty())
        .filter(|stanza| !stanza.starts_with("Package: qemu-"))
        .collect();
    kept.extend(extra);
    let dir = TempDir::new("setup-host");
    fs::create_dir(dir.path().join("updates")).unwrap();
    fs::create_dir(dir.path().join("info")).unwrap();
    fs::write(dir.path().join("status"), kept.join("\n\n") + "\n\n").unwrap();
    dir
}

fn simulate(state: &TempDir) -> Output {
    Command::new(setup_host())
        .arg("--simulate")
        .env("VDUSE_SETUP_ADMINDIR", state.path())
        .output()
        .expect("run tests/setup-host")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The version apt's simulation installs `package` at (`Inst PKG [OLD] (NEW ...)`).
fn installed_at<'a>(plan: &'a str, package: &str) -> Option<&'a str> {
    let prefix = format!("Inst {package} ");
    let line = plan.lines().find(|line| line.starts_with(&prefix))?;
    let after = line.split_once('(')?.1;
    after.split_whitespace().next()
}

/// A qemu-utils newer than anything the apt sources offer, which Breaks the older
/// qemu-system-common (as 10.0's Breaks 7.2's): installing qemu-system-x86 alone makes
/// apt remove it. The plan must instead install both at one version.
const NEWER_QEMU_UTILS: &str = "Package: qemu-utils
Status: install ok installed
Priority: optional
Section: otherosfs
Architecture: amd64
Version: 1:99.0+test
Breaks: qemu-system-common (<< 1:99~)
Description: QEMU utilities, newer than the apt sources";

#[test]
fn a_newer_qemu_utils_is_replaced_by_the_matching_one_not_removed() {
    let state = dpkg_state(&[NEWER_QEMU_UTILS]);
    let output = simulate(&state);
    let plan = text(&output);
    assert!(
        output.status.success(),
        "setup-host --simulate failed:\n{plan}"
    );
    assert!(
        !plan.lines().any(|line| line.starts_with("Remv ")),
        "apt would remove a package:\n{plan}"
    );
    let utils = installed_at(&plan, "qemu-utils")
        .unwrap_or_else(|| panic!("qemu-utils is not part of the transaction:\n{plan}"));
    let system = installed_at(&plan, "qemu-system-x86")
        .unwrap_or_else(|| panic!("qemu-system-x86 is not installed:\n{plan}"));
    assert_eq!(
        utils, system,
        "qemu-utils and qemu-system-x86 differ:\n{plan}"
    );
    assert!(
        plan.contains("Inst qemu-utils [1:99.0+test]"),
        "the newer qemu-utils is not what gets replaced:\n{plan}"
    );
}

#[test]
fn matching_qemu_packages_already_installed_are_left_alone() {
    // Both at a version the sources do not offer (as from a backports suite the machine
    // still lists): nothing to align, and nothing of QEMU to install.
    let newer_system = "Package: qemu-system-x86
Status: install ok installed
Priority: optional
Section: otherosfs
Architecture: amd64
Version: 1:99.0+test
Description: QEMU full system emulation binaries (x86), newer than the apt sources";
    let newer_common = newer_system
        .replace("qemu-system-x86", "qemu-system-common")
        .replace(" (x86)", "");
    let newer_utils = NEWER_QEMU_UTILS.replace("Breaks: qemu-system-common (<< 1:99~)\n", "");
    let state = dpkg_state(&[newer_system, &newer_common, &newer_utils]);
    let output = simulate(&state);
    let plan = text(&output);
    assert!(
        output.status.success(),
        "setup-host --simulate failed:\n{plan}"
    );
    let requests = plan
        .lines()
        .find_map(|line| line.strip_prefix("setup-host: would install "))
        .unwrap_or("");
    assert!(
        !requests
            .split(' ')
            .any(|request| request.starts_with("qemu-")),
        "QEMU packages requested although installed at one version:\n{plan}"
    );
}

#[test]
fn this_machine_after_setup_needs_nothing() {
    // tests/run-all ran setup-host before the tests: its work is done, so a second run
    // installs nothing (this also checks the plan reads the real state right).
    let output = Command::new(setup_host())
        .arg("--simulate")
        .output()
        .expect("run tests/setup-host");
    let plan = text(&output);
    assert!(output.status.success(), "{plan}");
    assert!(plan.contains("setup-host: nothing to install"), "{plan}");
}

#[test]
fn a_missing_program_fails_the_check_naming_it_and_its_package() {
    // Every program of /usr/bin but qemu-nbd, as after apt removed qemu-utils.
    let bin = TempDir::new("setup-host-path");
    for entry in fs::read_dir("/usr/bin").unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "qemu-nbd" {
            std::os::unix::fs::symlink(entry.path(), bin.path().join(entry.file_name())).unwrap();
        }
    }
    let output = Command::new("/usr/bin/bash")
        .arg(setup_host())
        .arg("--verify")
        .env("PATH", format!("{}:/usr/sbin", bin.path().display()))
        .output()
        .expect("run tests/setup-host");
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains("missing: qemu-nbd (package qemu-utils"),
        "{said}"
    );
    assert!(!said.contains("missing: qemu-img"), "{said}");

    let output = Command::new(setup_host()).arg("--verify").output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
}
