//! A `vduse-blk` killed with SIGKILL and started again takes its device over, on the real
//! kernels of the matrix that have VDUSE (6.12, 7.2, 7.3). One boot per kernel, whose
//! steps are the shell files of `tests/scenarios/takeover/`, each checked by the function
//! of the same name below (after `01-setup.sh`):
//!
//! 1. Flush, then SIGKILL: 4 MiB written with O_DIRECT and `conv=fsync` (a FLUSH) is in
//!    the backing file after the kill; the device stays, with its in-flight log.
//! 2. A server with another configuration is refused, naming what differs: exit 78,
//!    "cannot be taken over", "config space differs" for another `--size`, "backing
//!    differs" for another `--backing`, "keeps no in-flight log" with `--inflight-log none`;
//!    the device is left alone. So is one started while a server runs ("already
//!    exists and another process serves it").
//! 3. The same configuration takes the device over ("taken over" in its log) and the
//!    flushed data reads back through the device.
//! 4. fio writes with crc32c verification from two jobs pinned to the two vCPUs (so
//!    through both queues) while the server is killed with SIGKILL at random moments,
//!    five times, and started again each time. fio ends with exit code 0 and no error;
//!    the servers ran requests again that the killed ones had in flight.
//! 5. SIGTERM ends the last server with exit code 0, removes the device and its log.
//! 6. `--user tester`: a server serving as tester is killed after a flushed write; the
//!    next one, also `--user tester`, takes the device over as root (the in-flight log is
//!    root's) and then switches: every thread runs as tester, the flushed data reads
//!    back, a new write reaches the backing file, and SIGTERM leaves no device and the
//!    log emptied (tester may not remove it from root's /run/vduse/blk).

use std::time::Duration;

use serde_json::Value;
use vduse_tests::{Boot, Guest, Kernel, Scenario, Step, kernel_tests, step};

const CONFIG: &str = "\
# Written by tests/scenarios/takeover/01-setup.sh.
name: tk0
backing: /tmp/tk0.img
size: 256M
create: true
num-queues: 2
queue-size: 128
serial: vduse-blk-tk0
";

/// SIGKILLs during fio.
const KILLS: usize = 5;

/// fio: two jobs of this many MiB each, one per vCPU.
const FIO_JOB_MIB: u64 = 96;

const STEPS: &[Step] = &[
    step!("takeover/01-setup.sh", setup),
    step!("takeover/02-flush-then-kill.sh", flush_then_kill),
    step!("takeover/03-refusals.sh", refusals),
    step!("takeover/04-take-over.sh", take_over),
    step!("takeover/05-fio-through-kills.sh", fio_through_kills),
    step!("takeover/06-sigterm.sh", sigterm),
    step!("takeover/07-as-a-user.sh", as_a_user),
];

fn takeover(series: &str) {
    let kernel = Kernel::load_with(series, &["vduse", "virtio_vdpa", "virtio_blk"]);
    let guest = Guest::new(&kernel)
        .binary("vduse-blk")
        .host_program("fio")
        .modules(&[])
        .timeout(Duration::from_secs(300));
    let run = Scenario::new(guest)
        .var("CONFIG", CONFIG)
        .var("KILLS", KILLS)
        .var("FIO_JOB_MIB", FIO_JOB_MIB)
        .steps(STEPS)
        .run();
    // The kernel never marked the device broken.
    run.assert_nothing_broken();
}

kernel_tests!(takeover: linux_6_12, linux_7_2, linux_7_3);

/// The logs of the servers srv0, srv1... and the console's tail, for failure messages.
fn logs(run: &Boot) -> String {
    format!("{}\n{}", run.logs_of("srv"), run.console_tail(40))
}

/// The logs of the servers serving as tester, usr0 and usr1.
fn user_logs(run: &Boot) -> String {
    format!("{}\n{}", run.logs_of("usr"), run.console_tail(40))
}

fn setup(run: &Boot) {
    run.assert_success("modprobe");
}

fn flush_then_kill(run: &Boot) {
    // The flushed write is in the backing file after the kill, the device is still
    // there, and so is its log.
    run.assert_success("up");
    assert_eq!(
        run.text("log.files").trim(),
        "tk0.inflight",
        "{}",
        logs(run)
    );
    run.assert_success("flushed-write");
    assert_eq!(
        run.rc("srv0"),
        137,
        "the first server was killed\n{}",
        logs(run)
    );
    assert_eq!(run.text("flushed.sha"), run.text("flushed.backing.sha"));
    assert_eq!(run.words("killed.vduse"), ["control", "tk0"]);
}

fn refusals(run: &Boot) {
    // Another configuration is refused and the device left alone.
    run.assert_rc_says("other", 78, "cannot be taken over");
    assert!(
        run.err("other")
            .contains("another configuration: config space differs"),
        "{}",
        run.report("other")
    );
    run.assert_rc_says("other-backing", 78, "backing differs");
    run.assert_rc_says("nolog", 78, "keeps no in-flight log");
    assert_eq!(run.words("other.vduse"), ["control", "tk0"]);
}

fn take_over(run: &Boot) {
    // Taken over, with the data; a second server while one runs is refused.
    run.assert_ok_with("takeover", &["srv1"]);
    run.assert_success("flushed-read");
    assert_eq!(run.text("flushed.sha"), run.text("flushed.dev.sha"));
    run.assert_rc_says("served", 78, "another process serves it");
}

fn fio_through_kills(run: &Boot) {
    // fio went through every kill without an error.
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
        "fio failed\n{}\n{}",
        run.text("fio.err"),
        logs(run)
    );
    let fio: Value = serde_json::from_str(
        &run.text("fio.out")[run.text("fio.out").find('{').expect("fio JSON")..],
    )
    .expect("fio's output is JSON");
    for job in fio["jobs"].as_array().expect("fio jobs") {
        assert_eq!(job["error"], 0, "fio job {}: {job:#}", job["jobname"]);
        assert!(
            job["write"]["io_bytes"].as_u64().unwrap_or(0) >= FIO_JOB_MIB << 20,
            "fio job {} wrote too little: {job:#}",
            job["jobname"]
        );
    }
    // The servers ran again what the killed ones had in flight.
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
        "no server ran a request again:\n{}\n{}",
        run.text("replays"),
        logs(run)
    );
    let runtimes: Vec<u64> = fio["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|job| job["job_runtime"].as_u64().unwrap_or(0))
        .collect();
    eprintln!(
        "takeover on {}: {replayed} requests run again over {KILLS} kills; fio jobs ran \
         {runtimes:?} ms",
        run.series()
    );
}

fn sigterm(run: &Boot) {
    // SIGTERM: exit 0, no device, no log.
    let last = format!("srv{}", run.text("last").trim());
    assert_eq!(run.rc(&last), 0, "{}", logs(run));
    assert_eq!(run.words("end.vduse"), ["control"], "{}", logs(run));
    assert_eq!(run.text("end.log.files").trim(), "", "{}", logs(run));
}

fn as_a_user(run: &Boot) {
    // Taken over as tester.
    for name in ["user-up", "user-switched", "user-flushed"] {
        run.assert_ok_with(name, &["usr0"]);
    }
    assert_eq!(run.rc("usr0"), 137, "usr0 was killed\n{}", user_logs(run));
    run.assert_ok_with("user-takeover", &["usr1"]);
    run.assert_serves_as("user.threads", 1000, 1000);
    run.assert_ok_with("user-read", &["usr1"]);
    assert_eq!(run.text("user.read.sha"), run.text("flushed.sha"));
    run.assert_ok_with("user-write", &["usr1"]);
    assert_eq!(run.text("user.backing.sha"), run.text("flushed.sha"));
    assert_eq!(run.rc("usr1"), 0, "usr1 exit code\n{}", user_logs(run));
    assert_eq!(
        run.words("user.end.vduse"),
        ["control"],
        "{}",
        user_logs(run)
    );
    assert_eq!(
        run.text("user.end.log"),
        "/run/vduse/blk/tku.inflight 0\n",
        "{}",
        user_logs(run)
    );
}
