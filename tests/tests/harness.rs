//! Smoke test of the harness itself, one boot per kernel of the matrix: the guest runs
//! the cached kernel, modules load, `capture` records output and exit codes, binary
//! results arrive intact, workspace and host programs run, also as other users.
//!
//! Needs `tests/fetch-kernels` first. Cargo runs the four tests in parallel; the
//! harness lets at most two guests run at once.

use std::time::Duration;

use vduse_tests::{Guest, Kernel};

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
    let run = guest
        .script(
            r#"
capture uname uname -r
capture control test -c /dev/vduse/control
capture class test -d /sys/class/vduse
capture modprobe-vduse modprobe vduse
lsmod | result lsmod
capture fails sh -c 'echo to-out; echo to-err >&2; exit 3'
capture echo guest-echo hello  world
capture nobody setpriv --reuid=65534 --regid=65534 --clear-groups guest-echo --ids as nobody
capture tester su tester -c 'id -u; touch ~/x && echo home ok'
head -c 65536 /dev/urandom >/tmp/blob
cp /tmp/blob /results/blob
od -An -tx1 -v /tmp/blob | tr -d ' \n' | result blob.hex
echo '{"answer": 42, "kernel": "'"$(uname -r)"'"}' | result doc.json
spawn server sh -c 'echo started; trap "echo bye; exit 0" TERM; while :; do sleep 0.1; done'
(sleep 0.3; touch /tmp/flag) &
capture wait-flag wait_for 10 test -e /tmp/flag
capture wait-never wait_for 1 test -e /nonexistent
stop server
spawn quick sh -c 'echo quick >&2; exit 4'
reap quick
exit 7
"#,
        )
        .run();
    eprintln!(
        "{series}: boot + scenario took {:.1} s",
        run.elapsed().as_secs_f64()
    );

    run.assert_success("uname");
    assert_eq!(
        run.out("uname").trim(),
        kernel.release(),
        "{}",
        run.report("uname")
    );
    assert_eq!(run.script_rc(), 7, "the scenario's exit code");

    if vduse {
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
        assert!(!kernel.is_loadable("vduse") && !kernel.is_builtin("vduse"));
    }

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
    assert_eq!(doc["kernel"], kernel.release());

    assert!(
        run.dmesg().contains("Linux version"),
        "dmesg result missing the banner"
    );
    assert!(
        run.console()
            .contains("vduse-tests: capture uname: exit code 0")
    );
}

#[test]
fn harness_6_1() {
    smoke("6.1");
}

#[test]
fn harness_6_12() {
    smoke("6.12");
}

#[test]
fn harness_7_2() {
    smoke("7.2");
}

#[test]
fn harness_7_3() {
    smoke("7.3");
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
