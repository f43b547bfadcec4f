//! A `vduse-fs` killed with SIGKILL and started again takes its device over while the
//! guest keeps the share mounted, on the kernels that take virtio-fs devices (7.2, 7.3).
//! One boot per kernel; the share is mounted with `cache: always`, so the guest keeps
//! using the node IDs it learned from the killed server instead of looking names up again.
//! The steps are the shell files of `tests/scenarios/fs_takeover/`, each checked by the
//! function of the same name below (after `01-setup.sh`):
//!
//! 1. The server keeps an in-flight log and a node journal under /run/vduse/fs. A file is
//!    read through three levels of directories, and a process opens a file for appending
//!    and writes to it; then the server is killed. The device stays.
//! 2. Refusals: another shared directory ("shared-dir differs") and `--inflight-log none`
//!    exit 78 and leave the device alone.
//! 3. The same configuration takes the device over ("taken over", the guest's nodes and
//!    open files "found again"); the deep file reads again under its old node IDs; the
//!    process appends through the descriptor it opened before the kill; a second server
//!    started meanwhile is refused. A file renamed on the host while no server ran is the
//!    one node lost: its old node answers ESTALE, and the kernel's lookup again finds no
//!    such file.
//! 4. fio writes with crc32c verification through two jobs while a shell loop creates,
//!    writes, reads back and removes files in ten directories; the server is killed at
//!    random moments five times and started again each time. fio ends with no error,
//!    every file the loop wrote read back right, and the servers ran again requests the
//!    killed ones had in flight.
//! 5. Unmount and SIGTERM: exit 0, no device, and no log or journal left.
//! 6. `--user tester`: a server serving as tester is killed while a guest process holds a
//!    file open; the next one, also `--user tester`, takes the device over as root (its
//!    in-flight log and journal are root's) and then switches: every thread runs as
//!    tester, the old descriptor appends, new files belong to tester, and SIGTERM leaves
//!    no device and the log and journal emptied.

use std::time::Duration;

use serde_json::Value;
use vduse_tests::{Boot, Guest, Kernel, Scenario, Step, kernel_tests, step};

/// SIGKILLs during the workload.
const KILLS: usize = 5;

const STEPS: &[Step] = &[
    step!("fs_takeover/01-setup.sh", setup),
    step!("fs_takeover/02-kill.sh", kill),
    step!("fs_takeover/03-refusals.sh", refusals),
    step!("fs_takeover/04-take-over.sh", take_over),
    step!(
        "fs_takeover/05-workload-through-kills.sh",
        workload_through_kills
    ),
    step!("fs_takeover/06-stop.sh", stop),
    step!("fs_takeover/07-as-a-user.sh", as_a_user),
];

fn fs_takeover(series: &str) {
    let kernel = Kernel::load_with(series, &["vduse", "virtio_vdpa"]);
    let guest = Guest::new(&kernel)
        .binary("vduse-fs")
        .host_program("fio")
        .memory_mb(1024)
        .modules(&[])
        .timeout(Duration::from_secs(300));
    Scenario::new(guest).var("KILLS", KILLS).steps(STEPS).run();
}

kernel_tests!(fs_takeover: linux_7_2, linux_7_3);

/// The logs of the servers srv0, srv1... and the console's tail, for failure messages.
fn logs(run: &Boot) -> String {
    format!("{}\n{}", run.logs_of("srv"), run.console_tail(40))
}

fn setup(run: &Boot) {
    run.assert_success("modprobe");
}

fn kill(run: &Boot) {
    // Mounted with a log and a journal; killed; the device stays.
    run.assert_success("tag");
    run.assert_success("mount");
    run.assert_success("serving");
    assert_eq!(
        run.words("log.files"),
        ["tkfs.inflight", "tkfs.nodes"],
        "{}",
        logs(run)
    );
    run.assert_success("deep-before");
    run.assert_success("moved-before");
    run.assert_success("holder-wrote");
    assert_eq!(run.rc("srv0"), 137, "srv0 was killed\n{}", logs(run));
    assert_eq!(run.words("killed.vduse"), ["control", "tkfs"]);
}

fn refusals(run: &Boot) {
    // Refusals, the device left alone.
    run.assert_rc_says("other", 78, "shared-dir differs");
    run.assert_rc_says("nolog", 78, "keeps no in-flight log");
    assert_eq!(run.words("other.vduse"), ["control", "tkfs"]);
}

fn take_over(run: &Boot) {
    // Taken over: old node IDs and an old descriptor work; a file moved on the host
    // meanwhile is stale.
    run.assert_ok_with("takeover", &["srv1"]);
    run.assert_rc_says("served", 78, "another process serves it");
    run.assert_success("deep-after");
    assert_eq!(run.out("deep-after").trim(), "deep-data");
    // The kernel answers ESTALE by looking the name up again, which finds nothing.
    assert_ne!(run.rc("moved-after"), 0, "{}", run.report("moved-after"));
    let moved = run.err("moved-after");
    assert!(
        moved.contains("No such file or directory") || moved.contains("Stale file handle"),
        "{moved}"
    );
    run.assert_success("holder-done");
    assert_eq!(run.text("held"), "before\nafter\n", "{}", logs(run));
    let srv1 = run.text("srv1.err");
    assert!(
        srv1.contains("1 nodes and 0 open files are gone"),
        "the moved file is the one node lost:\n{srv1}"
    );
}

fn workload_through_kills(run: &Boot) {
    // The workload went through every kill.
    let kills = run.text("kills");
    assert_eq!(
        kills.lines().filter(|l| l.ends_with("during fio")).count(),
        KILLS,
        "every kill must come while fio runs:\n{kills}\n{}",
        logs(run)
    );
    assert!(
        !kills.contains("did not take over"),
        "{kills}\n{}",
        logs(run)
    );
    assert_eq!(
        run.text("fio.rc").trim(),
        "0",
        "fio failed:\n{}\n{}",
        run.text("fio.err"),
        logs(run)
    );
    let fio: Value = serde_json::from_str(&run.text("fio.out")).expect("fio's JSON");
    for job in fio["jobs"].as_array().expect("jobs") {
        assert_eq!(job["error"], 0, "{job}");
        assert!(
            job["write"]["io_bytes"].as_u64().unwrap_or(0) >= 24 << 20,
            "{job}"
        );
    }
    assert_eq!(run.text("loop.errors").trim(), "", "{}", logs(run));
    let count: u64 = run.text("loop.count").trim().parse().expect("loop count");
    assert!(count > 50, "the loop ran {count} times");
    assert_eq!(run.text("loop.host").trim(), "", "files differ on the host");
    let kept: u64 = run.text("loop.kept").trim().parse().unwrap();
    assert_eq!(
        kept,
        count - count.div_ceil(3),
        "files kept: {kept} of {count}"
    );
    let replayed: usize = run
        .text("replays")
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "request(s)")?;
            words.get(at.checked_sub(1)?)?.parse::<usize>().ok()
        })
        .sum();
    assert!(
        replayed > 0,
        "no request ran again:\n{}",
        run.text("replays")
    );
    assert_eq!(
        run.text("found").lines().count(),
        KILLS + 1,
        "{}",
        run.text("found")
    );
}

fn stop(run: &Boot) {
    // Nothing left.
    run.assert_success("umount");
    let last = format!("srv{}", run.text("last").trim());
    assert_eq!(run.rc(&last), 0, "{last} exit code\n{}", logs(run));
    assert_eq!(run.words("end.vduse"), ["control"]);
    assert_eq!(run.text("end.log.files").trim(), "");
}

fn as_a_user(run: &Boot) {
    // Taken over as tester.
    for name in ["user-tag", "user-mount", "user-switched", "uholder-wrote"] {
        run.assert_ok_with(name, &["usr0"]);
    }
    assert_eq!(
        run.rc("usr0"),
        137,
        "usr0 was killed\n{}",
        run.logs_of("usr")
    );
    run.assert_ok_with("user-takeover", &["usr1"]);
    assert!(
        run.text("usr1.err")
            .contains("1 nodes and 1 open files of the guest found again"),
        "the held file, found again by a server serving as tester\n{}",
        run.logs_of("usr")
    );
    run.assert_serves_as("user.threads", 1000, 1000);
    run.assert_ok_with("uholder-done", &["usr1"]);
    assert_eq!(
        run.text("user.held"),
        "before\nafter\n",
        "{}",
        run.logs_of("usr")
    );
    run.assert_ok_with("user-create", &["usr1"]);
    assert_eq!(
        run.out("user-create")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1000", "1000", "1000", "1000"]
    );
    run.assert_ok_with("user-umount", &["usr1"]);
    assert_eq!(run.rc("usr1"), 0, "usr1 exit code\n{}", run.logs_of("usr"));
    assert_eq!(run.words("user.end.vduse"), ["control"]);
    assert_eq!(
        run.text("user.end.logs"),
        "/run/vduse/fs/tkus.inflight 0\n/run/vduse/fs/tkus.nodes 0\n"
    );
}
