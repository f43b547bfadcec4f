//! Smoke test of the harness itself, one boot per kernel of the matrix: the guest runs
//! the cached kernel, modules load, `capture` records output and exit codes, binary
//! results arrive intact, workspace and host programs run, also as other users.
//!
//! Needs `tests/fetch-kernels` first. Cargo runs the four tests in parallel; the
//! harness lets at most two guests run at once.

use std::time::Duration;

use vduse_tests::{Boot, Guest, Kernel, Scenario, Step, kernel_tests, step};

const STEPS: &[Step] = &[
    step!("harness/01-kernel.sh", kernel),
    step!("harness/02-capture.sh", capture),
    step!("harness/03-results.sh", results),
    step!("harness/04-background.sh", background),
];

/// Checks of the harness, the same on every kernel.
fn smoke(series: &str) {
    let kernel = Kernel::load(series);
    let vduse = kernel.has_module("vduse");
    assert_eq!(vduse, series != "6.1", "only 6.1 lacks the vduse module");

    let mut guest = Guest::new(&kernel)
        .binary("guest-echo")
        .host_program("setpriv")
        .timeout(Duration::from_secs(180));
    if vduse {
        guest = guest.modules(&["vduse", "virtio_vdpa"]);
    }
    Scenario::new(guest).steps(STEPS).run();
}

kernel_tests!(smoke: linux_6_1, linux_6_12, linux_7_2, linux_7_3);

/// The running kernel, and VDUSE's modules loaded where it has them.
fn kernel(run: &Boot) {
    run.assert_success("uname");
    assert_eq!(
        run.out("uname").trim(),
        run.kernel().release(),
        "{}",
        run.report("uname")
    );
    assert!(
        run.console()
            .contains("vduse-tests: capture uname: exit code 0")
    );
    if run.kernel().has_module("vduse") {
        run.assert_success("control");
        run.assert_success("class");
        run.assert_success("modprobe-vduse");
        let lsmod = run.text("lsmod");
        for m in ["vduse", "virtio_vdpa", "vdpa", "vhost_iotlb"] {
            assert!(
                lsmod.lines().any(|l| l.starts_with(&format!("{m} "))),
                "{m} not loaded:\n{lsmod}"
            );
        }
    } else {
        run.assert_rc("control", 1);
        run.assert_rc("class", 1);
        assert_ne!(
            run.rc("modprobe-vduse"),
            0,
            "{}",
            run.report("modprobe-vduse")
        );
        assert!(!run.kernel().is_loadable("vduse") && !run.kernel().is_builtin("vduse"));
    }
}

/// Output and exit codes, programs as other users.
fn capture(run: &Boot) {
    run.assert_rc("fails", 3);
    assert_eq!(run.out("fails"), "to-out\n");
    assert_eq!(run.err("fails"), "to-err\n");

    run.assert_success("echo");
    assert_eq!(run.out("echo"), "hello world\n");
    run.assert_success("nobody");
    assert_eq!(
        run.out("nobody"),
        "as nobody\nuid=65534 gid=65534\n",
        "{}",
        run.report("nobody")
    );
    run.assert_success("tester");
    assert_eq!(
        run.out("tester"),
        "1000\nhome ok\n",
        "{}",
        run.report("tester")
    );
}

/// Binary and JSON results.
fn results(run: &Boot) {
    let blob = run.file("blob");
    assert_eq!(blob.len(), 65536);
    let hex: String = blob.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        run.text("blob.hex"),
        "binary result corrupted on the way"
    );

    let doc = run.json("doc.json");
    assert_eq!(doc["answer"], 42);
    assert_eq!(doc["kernel"], run.kernel().release());
}

/// The scenario's exit code, and the kernel's log after it.
fn background(run: &Boot) {
    assert_eq!(run.script_rc(), 7, "the scenario's exit code");
    assert!(
        run.dmesg().contains("Linux version"),
        "dmesg result missing the banner"
    );
}

/// A guest that dies (here a kernel panic) fails the test with the console's tail.
#[test]
#[should_panic(expected = "before the guest sent its results")]
fn kernel_panic_fails_the_run() {
    let kernel = Kernel::load("7.3");
    Guest::new(&kernel)
        .script("echo c >/proc/sysrq-trigger")
        .run();
}

/// A guest that hangs is killed after its timeout, failing the test.
#[test]
#[should_panic(expected = "timed out after 15s")]
fn hanging_guest_times_out() {
    let kernel = Kernel::load("7.3");
    Guest::new(&kernel)
        .timeout(Duration::from_secs(15))
        .script("sleep 600")
        .run();
}
