//! `vm-run`: boot a cached kernel with the workspace's binaries, for developers.
//! Run it through `tests/vm-run`, which builds the workspace first.
//!
//! With a command, runs it in the guest as root, prints its stdout and stderr and exits
//! with its exit code. Without one, gives a busybox shell on the terminal.

use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use vduse_tests::{Guest, Kernel, MATRIX};

const USAGE: &str = "\
usage: tests/vm-run [OPTIONS] [-- COMMAND [ARGS...]]

Boots a kernel cached by tests/fetch-kernels under QEMU with the workspace's binaries
in /usr/bin. Runs COMMAND as root and exits with its exit code, or, without COMMAND,
opens a shell on this terminal (exit it to power off; Ctrl-A X quits QEMU).

options:
  --kernel SERIES     kernel series (default: the newest, 7.3)
  --modules A,B,...   modules to load at boot (e.g. vduse,virtio_vdpa)
  --host PROGRAM      also copy a host program with its libraries (e.g. vdpa, fio)
  --file HOST:GUEST   also copy a host file to an absolute guest path
  --memory MB         guest memory (default 1024)
  --cpus N            vCPUs (default 2)
  --append ARG        add ARG to the kernel command line (repeatable; e.g. idle=halt)
  --timeout SECS      limit for COMMAND mode (default 600)
  --console           COMMAND mode: print the guest console log to stderr as well
  --results DIR       COMMAND mode: save every file the guest left in /results (the
                      command's as well as cmd.out, cmd.err, cmd.rc and the harness's
                      init.*) under DIR, and the guest console as DIR/init.console
  --release           guests get the release binaries (tests/vm-run builds them and runs
                      this program from target/release)
  -h, --help          this text";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut series = MATRIX[MATRIX.len() - 1].to_string();
    let mut modules: Vec<String> = Vec::new();
    let mut hosts: Vec<String> = Vec::new();
    let mut files: Vec<(String, String)> = Vec::new();
    let mut memory = 1024;
    let mut cpus = 2;
    let mut cmdline: Vec<String> = Vec::new();
    let mut timeout = 600;
    let mut show_console = false;
    let mut results_dir: Option<PathBuf> = None;
    let mut command: Vec<String> = Vec::new();

    while let Some(arg) = args.next() {
        let mut value = |what: &str| -> String {
            args.next()
                .unwrap_or_else(|| fail(&format!("{arg} needs {what}")))
        };
        match arg.as_str() {
            "--kernel" => series = value("a series"),
            "--modules" => {
                let list = value("a module list");
                modules.extend(list.split(',').filter(|m| !m.is_empty()).map(String::from));
            }
            "--host" => hosts.push(value("a program")),
            "--file" => {
                let spec = value("HOST:GUEST");
                let (host, guest) = spec
                    .split_once(':')
                    .unwrap_or_else(|| fail("--file wants HOST:GUEST"));
                files.push((host.to_string(), guest.to_string()));
            }
            "--memory" => {
                memory = value("MiB")
                    .parse()
                    .unwrap_or_else(|_| fail("bad --memory"))
            }
            "--cpus" => {
                cpus = value("a count")
                    .parse()
                    .unwrap_or_else(|_| fail("bad --cpus"))
            }
            "--append" => cmdline.push(value("a kernel argument")),
            "--timeout" => {
                timeout = value("seconds")
                    .parse()
                    .unwrap_or_else(|_| fail("bad --timeout"))
            }
            "--console" => show_console = true,
            "--results" => results_dir = Some(PathBuf::from(value("a directory"))),
            "--release" => {
                // tests/vm-run saw it and built this program and the workspace's
                // binaries in release mode; they are taken from this program's directory.
                if !built_as_release() {
                    fail(
                        "--release: this vm-run is not a release build; run it through tests/vm-run",
                    )
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--" => {
                command.extend(args.by_ref());
                break;
            }
            _ => fail(&format!("unknown argument {arg:?}")),
        }
    }
    if !MATRIX.contains(&series.as_str()) {
        fail(&format!(
            "unknown kernel series {series:?} (known: {})",
            MATRIX.join(", ")
        ));
    }

    let kernel = Kernel::load(&series);
    let mut guest = Guest::new(&kernel).memory_mb(memory).cpus(cpus);
    for name in workspace_bins() {
        guest = guest.binary(&name);
    }
    for program in &hosts {
        guest = guest.host_program(program);
    }
    for (host, path) in &files {
        guest = guest.file(host, path);
    }
    let modules: Vec<&str> = modules.iter().map(String::as_str).collect();
    guest = guest.modules(&modules);
    for arg in &cmdline {
        guest = guest.cmdline(arg);
    }

    if command.is_empty() {
        if results_dir.is_some() {
            fail("--results needs a COMMAND");
        }
        let status = guest.run_interactive();
        return ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8);
    }

    let quoted: Vec<String> = command.iter().map(|a| shell_quote(a)).collect();
    let run = guest
        .timeout(Duration::from_secs(timeout))
        .script(&format!("capture cmd {}", quoted.join(" ")))
        .run();
    // As bytes: the command's output need not be text.
    let _ = std::io::stdout().write_all(run.file("cmd.out"));
    let _ = std::io::stderr().write_all(run.file("cmd.err"));
    if show_console {
        eprintln!("--- console:\n{}", run.console());
    }
    if let Some(dir) = &results_dir {
        if let Err(message) = save_results(&run, dir) {
            eprintln!("vm-run: {message}");
            return ExitCode::from(1);
        }
    }
    eprintln!(
        "vm-run: {} ({}): exit code {}, {:.1} s",
        kernel.series(),
        kernel.release(),
        run.rc("cmd"),
        run.elapsed().as_secs_f64()
    );
    ExitCode::from(run.rc("cmd").clamp(0, 255) as u8)
}

fn fail(message: &str) -> ! {
    eprintln!("vm-run: {message}\n\n{USAGE}");
    std::process::exit(2);
}

/// Whether this program was built with the release profile (it runs from
/// `target/release`).
fn built_as_release() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.ends_with("release")))
        .unwrap_or(false)
}

/// Writes every result file of `run` under `dir` (names may hold `/`), and the console as
/// `init.console`.
fn save_results(run: &vduse_tests::GuestRun, dir: &Path) -> Result<(), String> {
    let write = |name: &str, bytes: &[u8]| -> Result<(), String> {
        let relative = Path::new(name);
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(format!("result name {name:?} is not a relative path"));
        }
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    for name in run.names() {
        write(name, run.file(name))?;
    }
    write("init.console", run.console().as_bytes())
}

/// `arg` single-quoted for sh.
fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// The workspace's binaries (from `cargo metadata`) that are built next to this one,
/// except vm-run itself and xtask (a host tool).
fn workspace_bins() -> Vec<String> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run cargo metadata: {e}")));
    if !output.status.success() {
        fail(&format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| fail(&format!("cargo metadata: {e}")));
    let dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from));
    let mut bins = Vec::new();
    for package in meta["packages"].as_array().into_iter().flatten() {
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_bin = target["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"));
            let name = target["name"].as_str().unwrap_or_default();
            if !is_bin || name == "vm-run" || name == "xtask" {
                continue;
            }
            if dir.as_ref().is_some_and(|d| d.join(name).is_file()) {
                bins.push(name.to_string());
            } else {
                eprintln!("vm-run: warning: {name} is not built, leaving it out");
            }
        }
    }
    bins
}
