//! Booting a cached kernel under QEMU with a generated initramfs, and reading back what
//! the scenario script recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::base64;
use crate::kernel::Kernel;
use crate::tempdir::TempDir;

/// /init of every guest: mounts, module loading, scenario, results, power-off.
const INIT_SH: &str = include_str!("guest/init.sh");
/// `capture`, `result`, `spawn`, `stop`, `reap`, `wait_for` for scenario scripts.
const HELPERS_SH: &str = include_str!("guest/helpers.sh");

/// Marker lines on the results port (ttyS1).
const RESULTS_END: &str = "VDUSE-TESTS-RESULTS-END";
const FILE_BEGIN: &str = "VDUSE-TESTS-FILE ";
const FILE_END: &str = "VDUSE-TESTS-FILE-END";

/// How many console lines failure messages show.
/// Boots tried when the guest kernel dies before /init starts.
const BOOT_ATTEMPTS: u32 = 3;

/// What /init prints first (init.sh), so the host knows the guest kernel came up.
const INIT_STARTED: &str = "vduse-tests: init started";

const CONSOLE_TAIL: usize = 40;

/// A guest to boot: kernel, files, modules and the scenario script (a builder).
///
/// ```no_run
/// use vduse_tests::{Guest, Kernel};
///
/// let kernel = Kernel::load("7.3");
/// let run = Guest::new(&kernel)
///     .binary("vduse-probe")
///     .modules(&["vduse", "virtio_vdpa"])
///     .script("capture probe vduse-probe --json")
///     .run();
/// run.assert_success("probe");
/// let report = run.json("probe");
/// ```
#[derive(Debug, Clone)]
pub struct Guest {
    kernel: Kernel,
    /// (host file, absolute guest path, also copy the shared libraries `ldd` lists)
    files: Vec<(PathBuf, String, bool)>,
    modules: Vec<String>,
    memory_mb: u32,
    cpus: u32,
    timeout: Duration,
    script: String,
    cmdline: Vec<String>,
}

impl Guest {
    /// A guest of `kernel` with 1024 MiB, 2 vCPUs, a 120 s timeout and an empty script.
    pub fn new(kernel: &Kernel) -> Guest {
        Guest {
            kernel: kernel.clone(),
            files: Vec::new(),
            modules: Vec::new(),
            memory_mb: 1024,
            cpus: 2,
            timeout: Duration::from_secs(120),
            script: String::new(),
            cmdline: Vec::new(),
        }
    }

    /// Copies the workspace's binary `name` (see [`workspace_binary`]) to `/usr/bin/NAME`
    /// in the guest, with the shared libraries it needs.
    pub fn binary(mut self, name: &str) -> Guest {
        let path = workspace_binary(name);
        self.files.push((path, format!("/usr/bin/{name}"), true));
        self
    }

    /// Copies the workspace's example `name` (`target/<profile>/examples/NAME`, built in
    /// the same target directory and profile as the running executable) to
    /// `/usr/bin/NAME` in the guest, with the shared libraries it needs.
    ///
    /// # Panics
    /// When it is not there, naming the command that builds it.
    pub fn example(mut self, name: &str) -> Guest {
        let path = workspace_example(name);
        self.files.push((path, format!("/usr/bin/{name}"), true));
        self
    }

    /// Copies a program of the host (a name looked up in `PATH`, or a path) to the same
    /// path in the guest, with the shared libraries it needs: e.g. `"vdpa"`, `"fio"`,
    /// `"setpriv"` (util-linux's; busybox's lacks `--reuid`). Replaces a busybox applet
    /// of the same path.
    pub fn host_program(mut self, program: &str) -> Guest {
        let path = find_program(program);
        let guest = path
            .to_str()
            .expect("program path is not UTF-8")
            .to_string();
        self.files.push((path, guest, true));
        self
    }

    /// Copies the program `host` to the absolute path `guest` in the guest, with the
    /// shared libraries it needs (an installed copy of a binary, say).
    pub fn program(mut self, host: impl AsRef<Path>, guest: &str) -> Guest {
        assert!(
            guest.starts_with('/'),
            "guest path {guest:?} must be absolute"
        );
        self.files
            .push((host.as_ref().to_path_buf(), guest.to_string(), true));
        self
    }

    /// Copies the host file `host` to the absolute path `guest` in the guest (as is: no
    /// libraries).
    pub fn file(mut self, host: impl AsRef<Path>, guest: &str) -> Guest {
        assert!(
            guest.starts_with('/'),
            "guest path {guest:?} must be absolute"
        );
        self.files
            .push((host.as_ref().to_path_buf(), guest.to_string(), false));
        self
    }

    /// Modules to load (with their dependencies) before the script runs. Modules built
    /// into the kernel are skipped. Panics at [`Guest::run`] when the kernel lacks one:
    /// check [`Kernel::has_module`] first. A script can load more itself with `modprobe`.
    pub fn modules(mut self, names: &[&str]) -> Guest {
        self.modules.extend(names.iter().map(|s| s.to_string()));
        self
    }

    /// Guest memory in MiB (default 1024).
    pub fn memory_mb(mut self, mb: u32) -> Guest {
        self.memory_mb = mb;
        self
    }

    /// Number of vCPUs (default 2).
    pub fn cpus(mut self, cpus: u32) -> Guest {
        self.cpus = cpus;
        self
    }

    /// Wall-clock limit of the boot, from QEMU's start to its exit (default 120 s;
    /// TCG is slow). QEMU is killed when it passes.
    pub fn timeout(mut self, timeout: Duration) -> Guest {
        self.timeout = timeout;
        self
    }

    /// The scenario: a busybox `sh` script run as root in `/` with stdin from
    /// `/dev/null`, after the helpers `capture NAME CMD...`, `result NAME` (stdin to a
    /// result), `spawn NAME CMD...`, `stop NAME [SIG]`, `reap NAME` and
    /// `wait_for SECS CMD...` are defined (see `src/guest/helpers.sh`). Its output goes
    /// to the console; its exit code is [`GuestRun::script_rc`]. Appends when called again.
    pub fn script(mut self, sh: &str) -> Guest {
        self.script.push_str(sh);
        self.script.push('\n');
        self
    }

    /// Adds a kernel command-line argument (e.g. `"vduse.foo=1"`).
    pub fn cmdline(mut self, arg: &str) -> Guest {
        self.cmdline.push(arg.to_string());
        self
    }

    /// The kernel this guest boots.
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Boots the guest, runs the script and returns its results.
    ///
    /// At most `VDUSE_TEST_JOBS` (default 2) guests run at once per test process; the
    /// timeout counts from the guest's own start.
    ///
    /// # Panics
    /// When the guest cannot be built or started, when it does not send its results
    /// (kernel panic, timeout: the message has the console's tail), or when a module
    /// given to [`Guest::modules`] fails to load.
    pub fn run(&self) -> GuestRun {
        // A guest kernel that dies before /init starts (seen once under TCG on a loaded
        // host: an oops in the scheduler at 2 s of uptime) says nothing about the code under
        // test, which never ran: boot again, at most twice, saying so. A failure after
        // /init started is never retried.
        for attempt in 1..=BOOT_ATTEMPTS {
            match self.run_once() {
                Ok(run) => return run,
                Err(console_tail) => eprintln!(
                    "vduse-tests: guest {} ({}) died before /init started (attempt {attempt} \
                     of {BOOT_ATTEMPTS}); booting again\n{console_tail}",
                    self.kernel.series(),
                    self.kernel.release()
                ),
            }
        }
        panic!(
            "guest {} ({}) died before /init started {BOOT_ATTEMPTS} times",
            self.kernel.series(),
            self.kernel.release()
        );
    }

    /// One boot. `Err` (with the console's tail) when the guest died before /init started.
    fn run_once(&self) -> Result<GuestRun, String> {
        let tmp = TempDir::new(self.kernel.series());
        let initrd = self.build_initramfs(tmp.path(), Mode::Script);
        let console_path = tmp.path().join("console.log");
        let results_path = tmp.path().join("results.log");
        let qemu_log = tmp.path().join("qemu.log");

        let _slot = Slot::acquire();
        let mut cmd = self.qemu_command(&initrd);
        cmd.arg("-serial").arg(serial_file(&console_path));
        cmd.arg("-serial").arg(serial_file(&results_path));
        let log = fs::File::create(&qemu_log).expect("cannot create qemu.log");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("cannot dup qemu.log"))
            .stderr(log);

        let start = Instant::now();
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start qemu-system-x86_64 (install qemu-system-x86): {e}")
        });
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for qemu") {
                break status;
            }
            if start.elapsed() > self.timeout {
                timed_out = true;
                let _ = child.kill();
                break child.wait().expect("waiting for the killed qemu");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = start.elapsed();

        let console =
            String::from_utf8_lossy(&fs::read(&console_path).unwrap_or_default()).replace('\r', "");
        let raw_results = fs::read(&results_path).unwrap_or_default();
        let parsed = parse_results(&String::from_utf8_lossy(&raw_results));
        let complete = parsed.is_some();
        let run = GuestRun {
            series: self.kernel.series().to_string(),
            release: self.kernel.release().to_string(),
            console,
            results: parsed.unwrap_or_default(),
            elapsed,
        };
        if !complete && !run.console.contains(INIT_STARTED) {
            return Err(run.console_tail(CONSOLE_TAIL));
        }
        if !complete {
            let why = if timed_out {
                format!("timed out after {:?} (Guest::timeout)", self.timeout)
            } else {
                format!("QEMU exited ({status}) before the guest sent its results")
            };
            let qemu_out = fs::read_to_string(&qemu_log).unwrap_or_default();
            panic!(
                "guest {} ({}) {why}\n--- qemu output:\n{qemu_out}\n{}",
                run.series,
                run.release,
                run.console_tail(CONSOLE_TAIL)
            );
        }
        if run.has("init.modules-failed") {
            panic!(
                "guest {}: modules failed to load: {}\n--- modprobe said:\n{}\n{}",
                run.series,
                run.text("init.modules-failed")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
                run.text("init.modprobe"),
                run.console_tail(CONSOLE_TAIL)
            );
        }
        Ok(run)
    }

    /// Boots the guest with a shell on the console wired to this process's terminal
    /// (QEMU's `mon:stdio`: Ctrl-A X quits, Ctrl-A C is QEMU's monitor) instead of the
    /// script; the guest powers off when the shell exits. No timeout. For `tests/vm-run`.
    pub fn run_interactive(&self) -> ExitStatus {
        let tmp = TempDir::new(&format!("{}-shell", self.kernel.series()));
        let initrd = self.build_initramfs(tmp.path(), Mode::Shell);
        let mut cmd = self.qemu_command(&initrd);
        cmd.args(["-serial", "mon:stdio", "-serial", "null"]);
        cmd.status()
            .unwrap_or_else(|e| panic!("cannot start qemu-system-x86_64: {e}"))
    }

    /// QEMU without serial ports: TCG (KVM does not work on the machines this runs on),
    /// no display, no network (`-nic none`), no reboot (a guest panic ends QEMU).
    fn qemu_command(&self, initrd: &Path) -> Command {
        let mut append = String::from("console=ttyS0 quiet panic=-1");
        for arg in &self.cmdline {
            append.push(' ');
            append.push_str(arg);
        }
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-nodefaults",
            "-display",
            "none",
        ])
        .args([
            "-m",
            &self.memory_mb.to_string(),
            "-smp",
            &self.cpus.to_string(),
        ])
        .args(["-nic", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(self.kernel.vmlinuz())
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(append);
        cmd
    }

    /// Builds the initramfs in `dir` and returns the path of the archive.
    fn build_initramfs(&self, dir: &Path, mode: Mode) -> PathBuf {
        let root = dir.join("root");
        mkdir(&root);
        set_mode(&root, 0o755); // or nobody cannot even run /bin/sh
        for d in [
            "dev",
            "proc",
            "sys",
            "tmp",
            "run",
            "root",
            "home/tester",
            "results",
        ] {
            mkdir(&root.join(d));
        }
        for d in ["etc/vduse-test", "lib/vduse-test"] {
            mkdir(&root.join(d));
        }

        // busybox and its applets, as links to /bin/busybox.
        let busybox = find_program("busybox");
        let mut libs = BTreeSet::new();
        install(&root, &busybox, "/bin/busybox");
        libs.extend(shared_libraries(&busybox));
        for applet in busybox_applets(&busybox) {
            let link = root.join(applet);
            if link.as_os_str() != root.join("bin/busybox").as_os_str() {
                mkdir(link.parent().expect("applet path has a parent"));
                std::os::unix::fs::symlink("/bin/busybox", &link)
                    .unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
            }
        }

        // Files the test asked for (replacing applet links), and their libraries.
        // Debian's static busybox sh runs its own applet for any name it knows, whatever
        // PATH says: a shell function makes the name run the installed program instead.
        let applet_names: BTreeSet<&str> = busybox_applets(&busybox)
            .iter()
            .filter_map(|a| a.rsplit('/').next())
            .collect();
        let mut shadows = String::from("# Programs that replace busybox applets.\n");
        for (host, guest, with_libs) in &self.files {
            install(&root, host, guest);
            if *with_libs {
                libs.extend(shared_libraries(host));
            }
            let (dir, name) = guest.rsplit_once('/').expect("guest path is absolute");
            if applet_names.contains(name)
                && ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].contains(&dir)
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                let _ = writeln!(shadows, "{name}() {{ {guest} \"$@\"; }}");
            }
        }
        write(&root.join("lib/vduse-test/programs.sh"), &shadows);
        for lib in &libs {
            install(&root, lib, lib.to_str().expect("library path is not UTF-8"));
        }

        // Kernel modules: the cached tree (with modules.dep) and the deps file.
        let modules_dir = Path::new("lib/modules").join(self.kernel.release());
        copy_tree(&self.kernel.modules_dir(), &root.join(&modules_dir));
        copy(
            &self.kernel.deps_file(),
            &root.join(&modules_dir).join("deps"),
        );
        let mut load = Vec::new();
        for m in &self.modules {
            if !self.kernel.has_module(m) {
                panic!(
                    "kernel {} ({}) has no module {m:?}: check Kernel::has_module before \
                     asking Guest::modules for it",
                    self.kernel.series(),
                    self.kernel.release()
                );
            }
            if self.kernel.is_loadable(m) {
                load.push(m.as_str());
            }
        }

        // Users: root, nobody (65534) and tester (1000).
        write(
            &root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n\
             tester:x:1000:1000:tester:/home/tester:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
        );
        write(
            &root.join("etc/group"),
            "root:x:0:\ntester:x:1000:\nnogroup:x:65534:\n",
        );
        write(
            &root.join("etc/vduse-test/modules"),
            &(load.join("\n") + "\n"),
        );
        let mode_name = match mode {
            Mode::Script => "script",
            Mode::Shell => "shell",
        };
        write(&root.join("etc/vduse-test/mode"), &format!("{mode_name}\n"));
        write(&root.join("lib/vduse-test/helpers.sh"), HELPERS_SH);
        write(&root.join("scenario.sh"), &self.script);
        write(&root.join("init"), INIT_SH);
        set_mode(&root.join("init"), 0o755);

        let initrd = dir.join("initrd.cpio");
        pack_cpio(&root, &initrd);
        initrd
    }
}

/// What the guest is for: a scenario script, or a developer's interactive shell.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Script,
    Shell,
}

/// The results of one boot: the console log and the files the scenario left in
/// `/results` (its `capture`s and `result`s).
///
/// Accessors panic when a result is missing, with the names there are and the tail of
/// the console, so a failing test says why.
#[derive(Debug, Clone)]
pub struct GuestRun {
    series: String,
    release: String,
    console: String,
    results: BTreeMap<String, Vec<u8>>,
    elapsed: Duration,
}

impl GuestRun {
    /// The whole log of the serial console (ttyS0), `\r` removed.
    pub fn console(&self) -> &str {
        &self.console
    }

    /// The last `lines` lines of the console, headed for a failure message.
    pub fn console_tail(&self, lines: usize) -> String {
        let all: Vec<&str> = self.console.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        format!(
            "--- console of {} ({}), last {} lines:\n{}",
            self.series,
            self.release,
            tail.len(),
            tail.join("\n")
        )
    }

    /// Whether the result file `name` exists (`"x.out"` after `capture x ...`).
    pub fn has(&self, name: &str) -> bool {
        self.results.contains_key(name)
    }

    /// Names of all result files, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.results.keys().map(String::as_str).collect()
    }

    /// The bytes of result file `name` (e.g. one written with `result NAME`).
    pub fn file(&self, name: &str) -> &[u8] {
        match self.results.get(name) {
            Some(bytes) => bytes,
            None => panic!(
                "guest {} left no result {name:?}; it has {:?}\n{}",
                self.series,
                self.names(),
                self.console_tail(CONSOLE_TAIL)
            ),
        }
    }

    /// Result file `name` as text (invalid UTF-8 replaced).
    pub fn text(&self, name: &str) -> String {
        String::from_utf8_lossy(self.file(name)).into_owned()
    }

    /// Result file `name` as words (an `ls`, say).
    pub fn words(&self, name: &str) -> Vec<String> {
        self.text(name)
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    /// The number in result file `name`; panics naming the file when it holds none.
    #[track_caller]
    pub fn number(&self, name: &str) -> u64 {
        let text = self.text(name);
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} is not a number: {text:?}"))
    }

    /// Asserts that `capture NAME ...` exited with `rc` and said `needle` on stderr.
    #[track_caller]
    pub fn assert_rc_says(&self, name: &str, rc: i32, needle: &str) {
        self.assert_rc(name, rc);
        assert!(
            self.err(name).contains(needle),
            "{name}: stderr lacks {needle:?}\n{}",
            self.report(name)
        );
    }

    /// Standard output of `capture NAME ...`.
    pub fn out(&self, name: &str) -> String {
        self.text(&format!("{name}.out"))
    }

    /// Standard error of `capture NAME ...`.
    pub fn err(&self, name: &str) -> String {
        self.text(&format!("{name}.err"))
    }

    /// Exit code of `capture NAME ...` (or of a `spawn`ed command after `stop`/`reap`).
    pub fn rc(&self, name: &str) -> i32 {
        let text = self.text(&format!("{name}.rc"));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}.rc is not a number: {text:?}"))
    }

    /// `capture NAME ...`'s standard output parsed as JSON (or, without such a capture,
    /// the result file `NAME`).
    pub fn json(&self, name: &str) -> serde_json::Value {
        let captured = format!("{name}.out");
        let file = if self.has(&captured) {
            captured
        } else {
            name.to_string()
        };
        serde_json::from_slice(self.file(&file))
            .unwrap_or_else(|e| panic!("{file} is not JSON: {e}\n{}", self.report(name)))
    }

    /// Exit code of the scenario script itself.
    pub fn script_rc(&self) -> i32 {
        self.rc("init.script")
    }

    /// The guest kernel's log at the end of the scenario.
    pub fn dmesg(&self) -> String {
        self.text("init.dmesg")
    }

    /// Panics when the kernel log says something broke (a device or queue marked broken).
    /// On a loaded host the clocksource watchdog may say "TSC found unstable after boot,
    /// most likely due to broken BIOS", which is not about our devices.
    #[track_caller]
    pub fn assert_nothing_broken(&self) {
        let dmesg = self.dmesg();
        let broken: Vec<&str> = dmesg
            .lines()
            .filter(|line| line.contains("broken") && !line.contains("broken BIOS"))
            .collect();
        assert!(broken.is_empty(), "{broken:?}\n{dmesg}");
    }

    /// Wall-clock time from QEMU's start to its exit.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// A description of `capture NAME ...` for failure messages: exit code, stdout,
    /// stderr and the console's tail. Parts that do not exist are left out.
    pub fn report(&self, name: &str) -> String {
        let mut s = format!("=== {name} on {} ({})\n", self.series, self.release);
        let get = |suffix: &str| {
            self.results
                .get(&format!("{name}{suffix}"))
                .map(|b| String::from_utf8_lossy(b))
        };
        if let Some(rc) = get(".rc") {
            let _ = writeln!(s, "--- exit code: {}", rc.trim());
        }
        if let Some(out) = get(".out") {
            let _ = writeln!(s, "--- stdout:\n{}", out.trim_end());
        }
        if let Some(err) = get(".err") {
            let _ = writeln!(s, "--- stderr:\n{}", err.trim_end());
        }
        if let Some(text) = get("") {
            let _ = writeln!(s, "--- {name}:\n{}", text.trim_end());
        }
        s + &self.console_tail(CONSOLE_TAIL)
    }

    /// [`GuestRun::logs`] of every spawned process whose name starts with `prefix`
    /// (`srv0`, `srv1`, ... for the servers a takeover test starts one after another).
    pub fn logs_of(&self, prefix: &str) -> String {
        let names: Vec<String> = self
            .names()
            .iter()
            .filter(|name| name.starts_with(prefix) && name.ends_with(".err"))
            .map(|name| name.trim_end_matches(".err").to_owned())
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.logs(&names)
    }

    /// What the spawned commands `servers` left (stdout, stderr, exit code), for failure
    /// messages.
    pub fn logs(&self, servers: &[&str]) -> String {
        let mut s = String::new();
        for server in servers {
            for suffix in ["out", "err", "rc"] {
                let name = format!("{server}.{suffix}");
                if self.has(&name) {
                    let _ = writeln!(s, "--- {name}:\n{}", self.text(&name).trim_end());
                }
            }
        }
        s
    }

    /// Asserts that `capture NAME ...` exited with 0; the message has the logs of the
    /// spawned `servers`, the end of the kernel's log and the command's report.
    #[track_caller]
    pub fn assert_ok_with(&self, name: &str, servers: &[&str]) {
        let rc = self.rc(name);
        if rc != 0 {
            let dmesg = self.dmesg();
            let lines: Vec<&str> = dmesg.lines().collect();
            panic!(
                "{name}: exit code {rc}, expected 0\n{}--- dmesg, last lines:\n{}\n{}",
                self.logs(servers),
                lines[lines.len().saturating_sub(15)..].join("\n"),
                self.report(name)
            );
        }
    }

    /// Result `name` as `key=value` lines.
    pub fn key_values(&self, name: &str) -> std::collections::BTreeMap<String, String> {
        self.text(name)
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Asserts that the device server `server`, stopped by SIGTERM, exited 0 without
    /// logging errors and left no device behind: the script recorded `ls /dev/vduse` as
    /// result `SERVER.after.vduse` and captured `vdpa dev show` as `SERVER-after-vdpa`.
    /// Failure messages have the logs of `servers`.
    #[track_caller]
    pub fn assert_stopped_cleanly(&self, server: &str, servers: &[&str]) {
        assert_eq!(
            self.rc(server),
            0,
            "{server}: exit code after SIGTERM\n{}",
            self.logs(servers)
        );
        let log = self.text(&format!("{server}.err"));
        assert!(
            !log.contains("ERROR") && !log.contains("panicked"),
            "{server} logged errors:\n{log}"
        );
        assert_eq!(
            self.words(&format!("{server}.after.vduse")),
            ["control"],
            "/dev/vduse after {server} stopped\n{}",
            self.logs(servers)
        );
        let vdpa = format!("{server}-after-vdpa");
        self.assert_ok_with(&vdpa, servers);
        assert_eq!(
            self.out(&vdpa).trim(),
            "",
            "vdpa dev show after {server} stopped\n{}",
            self.report(&vdpa)
        );
    }

    /// Asserts what result `threads` (from `threads_of`) shows of a server switched to
    /// `uid`/`gid`: every thread has those ids (all four of each), the main thread keeps
    /// CAP_NET_ADMIN alone, the others no capability. io_uring's workers (`iou-*`) are left
    /// out: the kernel starts them with the credentials of their time and reaps them idle.
    #[track_caller]
    pub fn assert_serves_as(&self, threads: &str, uid: u32, gid: u32) {
        const CAP_NET_ADMIN: &str = "0000000000001000";
        let text = self.text(threads);
        let mut seen_main = false;
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_tid, comm, uids, gids, cap_eff, main] = fields[..] else {
                panic!("{threads}: unexpected line {line:?}\n{text}");
            };
            if comm.starts_with("iou-") {
                continue;
            }
            assert_eq!(uids, format!("{uid},{uid},{uid},{uid}"), "{line}\n{text}");
            assert_eq!(gids, format!("{gid},{gid},{gid},{gid}"), "{line}\n{text}");
            let want = if main == "main" {
                seen_main = true;
                CAP_NET_ADMIN
            } else {
                "0000000000000000"
            };
            assert_eq!(cap_eff, want, "effective capabilities: {line}\n{text}");
        }
        assert!(seen_main, "{threads}: no main thread\n{text}");
    }

    /// Asserts that `capture NAME ...` exited with 0.
    #[track_caller]
    pub fn assert_success(&self, name: &str) {
        self.assert_rc(name, 0);
    }

    /// Asserts that `capture NAME ...` exited with `expected`.
    #[track_caller]
    pub fn assert_rc(&self, name: &str, expected: i32) {
        let rc = self.rc(name);
        assert_eq!(
            rc,
            expected,
            "{name}: exit code {rc}, expected {expected}\n{}",
            self.report(name)
        );
    }

    /// Asserts that the standard output of `capture NAME ...` contains `needle`.
    #[track_caller]
    pub fn assert_out_contains(&self, name: &str, needle: &str) {
        assert!(
            self.out(name).contains(needle),
            "{name}: stdout lacks {needle:?}\n{}",
            self.report(name)
        );
    }
}

/// Decodes the results port: `None` unless the end marker arrived.
fn parse_results(text: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let mut results = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some((name, mut body)) = current.take() {
            if line == FILE_END {
                let bytes = base64::decode(&body)
                    .unwrap_or_else(|| panic!("result {name:?} arrived corrupted (bad base64)"));
                results.insert(name, bytes);
            } else {
                body.push_str(line);
                current = Some((name, body));
            }
        } else if let Some(name) = line.strip_prefix(FILE_BEGIN) {
            current = Some((name.to_string(), String::new()));
        } else if line.ends_with(RESULTS_END) {
            return Some(results);
        }
    }
    None
}

/// The path of a binary of this workspace, built in the same target directory and
/// profile as the running executable (`target/<profile>/deps/test-hash` or
/// `target/<profile>/NAME` -> `target/<profile>/<name>`).
///
/// # Panics
/// When it is not there, saying to run `cargo build --workspace`.
pub fn workspace_binary(name: &str) -> PathBuf {
    let path = workspace_binary_dir().join(name);
    if !path.is_file() {
        panic!(
            "workspace binary {name:?} not found at {}: run `cargo build --workspace` \
             (with the same profile as the tests) first",
            path.display()
        );
    }
    path
}

/// The path of an example of this workspace, `target/<profile>/examples/<name>`, in the
/// profile of the running executable (see [`workspace_binary`]).
///
/// `cargo build --workspace` builds no examples; `cargo test --workspace` builds them all
/// before it runs any test. Examples with required features are skipped silently when
/// those features are off, so a missing one fails here rather than leaving a test with
/// nothing to run.
fn workspace_example(name: &str) -> PathBuf {
    let binary_dir = workspace_binary_dir();
    let path = binary_dir.join("examples").join(name);
    if !path.is_file() {
        panic!(
            "workspace example {name:?} not found at {}: run `cargo build --workspace \
             --examples` (with the same profile as the tests) first",
            path.display()
        );
    }
    path
}

/// Where the workspace's binaries are: `target/<profile>` of the running executable
/// (`target/<profile>/deps/test-hash`, `target/<profile>/examples/NAME` or
/// `target/<profile>/NAME`).
fn workspace_binary_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("cannot find the running executable");
    let mut dir = exe
        .parent()
        .expect("executable has a directory")
        .to_path_buf();
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.pop();
    }
    dir
}

/// A program of the host: `name` as a path if it has a `/`, else looked up in `PATH`
/// (plus the sbin directories, which a non-root `PATH` may lack).
fn find_program(name: &str) -> PathBuf {
    if name.contains('/') {
        let path = PathBuf::from(name);
        assert!(path.is_file(), "no program {name}");
        return path;
    }
    let path_var = std::env::var("PATH").unwrap_or_default();
    let dirs = path_var.split(':').chain(["/usr/sbin", "/sbin"]);
    dirs.map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("program {name:?} not found in PATH (is its package installed?)"))
}

/// The shared libraries (and the ELF interpreter) `ldd` lists for `path`; none for a
/// static executable.
fn shared_libraries(path: &Path) -> Vec<PathBuf> {
    let output = Command::new("ldd")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ldd: {e}"));
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // "not a dynamic executable" (static) is fine; anything else is not.
        let err = String::from_utf8_lossy(&output.stderr);
        if text.contains("not a dynamic executable") || err.contains("not a dynamic executable") {
            return Vec::new();
        }
        panic!("ldd {} failed: {err}", path.display());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)",
        // "/lib64/ld-linux-x86-64.so.2 (0x...)", "linux-vdso.so.1 (0x...)".
        let target = match line.split_once("=>") {
            Some((lib, rest)) => {
                let target = rest.split_whitespace().next().unwrap_or("");
                if target == "not" || target.is_empty() {
                    panic!(
                        "{}: shared library {} not found",
                        path.display(),
                        lib.trim()
                    );
                }
                target
            }
            None => line.split_whitespace().next().unwrap_or(""),
        };
        if target.starts_with('/') {
            libs.push(PathBuf::from(target));
        }
    }
    libs
}

/// The applet paths busybox installs (`usr/bin/awk`, `sbin/modprobe`...), asked once.
fn busybox_applets(busybox: &Path) -> &'static [String] {
    static APPLETS: OnceLock<Vec<String>> = OnceLock::new();
    APPLETS.get_or_init(|| {
        let output = Command::new(busybox)
            .arg("--list-full")
            .output()
            .expect("busybox --list-full");
        assert!(output.status.success(), "busybox --list-full failed");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| l.trim().trim_start_matches('/').to_string())
            .filter(|l| !l.is_empty())
            .collect()
    })
}

/// Copies host file `host` to absolute guest path `guest` under `root`, replacing
/// whatever (an applet link) is there.
fn install(root: &Path, host: &Path, guest: &str) {
    let dest = root.join(guest.trim_start_matches('/'));
    mkdir(dest.parent().expect("guest path has a parent"));
    if dest.symlink_metadata().is_ok() {
        fs::remove_file(&dest).unwrap_or_else(|e| panic!("remove {}: {e}", dest.display()));
    }
    copy(host, &dest);
}

/// Copies a directory tree of plain files.
fn copy_tree(from: &Path, to: &Path) {
    mkdir(to);
    let entries = fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.expect("read_dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            copy(&entry.path(), &target);
        }
    }
}

fn copy(from: &Path, to: &Path) {
    fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}

fn mkdir(path: &Path) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
}

fn write(path: &Path, contents: &str) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Packs `root` as a newc cpio archive, every file owned by root.
///
/// Not compressed: with debug binaries inside (tens of MB), `gzip -1` took 0.7 s on the
/// host and the guest 0.4 s more to unpack it under TCG, for a boot of about 6 s.
fn pack_cpio(root: &Path, archive: &Path) {
    let mut names = String::new();
    list_tree(root, Path::new("."), &mut names);
    let out = fs::File::create(archive).expect("cannot create the initramfs");
    let mut cpio = Command::new("cpio")
        .args(["--create", "--format=newc", "--owner=0:0", "--quiet"])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(out)
        .spawn()
        .expect("cannot run cpio (install cpio)");
    cpio.stdin
        .take()
        .expect("cpio stdin")
        .write_all(names.as_bytes())
        .expect("writing the file list to cpio");
    assert!(cpio.wait().expect("cpio").success(), "cpio failed");
}

/// Appends every path under `dir` (named relative to the archive root) to `names`.
fn list_tree(dir: &Path, rel: &Path, names: &mut String) {
    names.push_str(rel.to_str().expect("initramfs path is not UTF-8"));
    names.push('\n');
    if !dir.symlink_metadata().expect("stat").is_dir() {
        return;
    }
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry"))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        list_tree(&entry.path(), &rel.join(entry.file_name()), names);
    }
}

/// `-serial file:PATH`.
fn serial_file(path: &Path) -> String {
    format!("file:{}", path.display())
}

/// One of the `VDUSE_TEST_JOBS` (default 2) places for a running guest in this process.
struct Slot;

static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

impl Slot {
    fn acquire() -> Slot {
        let max = std::env::var("VDUSE_TEST_JOBS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(2);
        let (lock, cvar) = &SLOTS;
        let mut running = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= max {
            running = cvar.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (lock, cvar) = &SLOTS;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        cvar.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_results;

    #[test]
    fn parses_results_with_noise_and_carriage_returns() {
        let text = "\x1b[2J\x1b[01;01H\r\n\r\nVDUSE-TESTS-RESULTS-BEGIN\r\n\
                    VDUSE-TESTS-FILE a.out\r\nZm9v\r\nYmFy\r\nVDUSE-TESTS-FILE-END\r\n\
                    VDUSE-TESTS-FILE empty\r\nVDUSE-TESTS-FILE-END\r\n\
                    VDUSE-TESTS-RESULTS-END\r\n";
        let results = parse_results(text).expect("complete");
        assert_eq!(results["a.out"], b"foobar");
        assert_eq!(results["empty"], b"");
        assert_eq!(results.len(), 2);
    }

    #[test]
    fn incomplete_results_are_none() {
        assert!(parse_results("VDUSE-TESTS-RESULTS-BEGIN\nVDUSE-TESTS-FILE x\nZm9v\n").is_none());
    }
}
