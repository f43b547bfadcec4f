//! `vduse-blk` on the real kernels of the matrix that have VDUSE (6.12, 7.2, 7.3).
//!
//! One boot per kernel runs, in this order, the steps of `tests/scenarios/blk/`, each
//! checked by the function of the same name below (after `01-setup.sh`):
//!
//! 1. Error paths before and around a running server: without the `vduse` module the
//!    server exits 69 and says `modprobe vduse`; a missing backing file exits 78 naming
//!    the path; a second server with the name of a running one exits 78 with "already
//!    exists" and leaves the first one alone.
//! 2. The device, configured by a YAML file the script writes plus a flag override
//!    (`--num-queues 4` over the file's 1), with a backing file the server creates on the
//!    guest's tmpfs: sysfs shows its size, read-only flag, logical and physical block
//!    sizes, serial and number of queues; its bounce buffer is the kernel's 64 MiB (the
//!    read-only server of 7 sets `bounce-size: 16M` and gets it).
//! 3. fio writes with crc32c verification from four jobs pinned to the guest's four vCPUs,
//!    which blk-mq maps to one queue each (each served by its own worker thread), and
//!    reads it all back: exit 0, no errors in its JSON. Then SIGUSR1 makes the server log
//!    the ring state of every queue.
//! 4. Discarding a range punches a hole in the backing file (its allocated blocks drop by
//!    exactly that much) and the range reads back as zeros.
//! 5. ext4: made and written through the device, then, after SIGTERM ended the server,
//!    checked clean by `e2fsck -fn` on the backing file and read back from it (loop mount
//!    and `debugfs dump`) with the checksums recorded through the device.
//! 6. SIGTERM ends the server with exit code 0 and removes its device from `/dev/vduse`,
//!    the vdpa bus (`vdpa dev show`) and `/sys/block`.
//! 7. A read-only server over the same backing: sysfs `ro` is 1, writes and discards fail,
//!    the file system mounts read-only and reads the same, the backing is unchanged.
//! 8. `attach: vhost`: without vhost_vdpa loaded the server exits 69 naming it; with it,
//!    vhost_vdpa serves the device (even with virtio_vdpa loaded) and no disk appears.
//! 9. With io_uring disabled by sysctl (`kernel.io_uring_disabled=2`), `io-engine:
//!    io-uring` falls back to the thread pool, says so, and the disk round-trips data.
//! 10. `--user tester`: an unknown user exits 78 naming the key; once attached, every
//!     thread has tester's ids, only the main thread a capability (CAP_NET_ADMIN); the disk
//!     round-trips data, and SIGTERM still detaches and destroys the device.
//! 11. Online resize (SIGHUP): the backing file grows by 32 MiB under a mounted ext4
//!     while fio writes and verifies on it; the guest's disk grows, `resize2fs` grows the
//!     file system, fio finds no error. A larger `size` with `create: true` extends the
//!     file and the disk. A smaller size, one not in whole blocks and a changed
//!     `num-queues` are refused with their log lines, the disk's and file's sizes
//!     unchanged. SIGKILLed then, the server's successor takes the device over (the
//!     in-flight log has the grown config space) and grows it again; the file system
//!     still takes 40 MiB and checks clean.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use vduse_tests::{Boot, Guest, GuestRun, Kernel, Scenario, Step, kernel_tests, step};

/// The read-write device: its YAML file and what sysfs must show for it.
const DISK0_YAML: &str = "\
# Written by tests/scenarios/blk/02-errors.sh; --num-queues on the command line overrides num-queues.
name: disk0
backing: /tmp/disk0.img
size: 64M
create: true
logical-block-size: 4096
physical-block-size: 16384
num-queues: 1
queue-size: 128
serial: vduse-blk-disk0
";
const DISK0_SECTORS: u64 = 64 << 11;
/// As many queues as the guest has vCPUs, so that blk-mq gives each vCPU its own.
const DISK0_QUEUES: usize = 4;

/// The read-only device over the same backing.
const RO_YAML: &str = "\
name: ro0
backing: /tmp/disk0.img
read-only: true
serial: vduse-blk-ro0
bounce-size: 16M
";

// The layout of disk0 before mkfs: fio writes the first 32 MiB, the discarded range is
// written only by the discard scenario (so the backing's allocated blocks drop by exactly
// its size).

/// fio: one job of this many MiB per vCPU, side by side from the start.
const FIO_JOB_MIB: u64 = 8;

/// The discarded range, in MiB.
const DISCARD_OFFSET_MIB: u64 = 40;
const DISCARD_MIB: u64 = 8;

const STEPS: &[Step] = &[
    step!("blk/01-setup.sh", setup),
    step!("blk/02-errors.sh", errors),
    step!("blk/03-device.sh", device),
    step!("blk/04-fio.sh", fio),
    step!("blk/05-discard.sh", discard),
    step!("blk/06-ext4.sh", ext4),
    step!("blk/07-sigterm.sh", sigterm),
    step!("blk/08-ext4-from-backing.sh", ext4_from_backing),
    step!("blk/09-read-only.sh", read_only),
    step!("blk/10-vhost.sh", vhost),
    step!("blk/11-no-io-uring.sh", no_io_uring),
    step!("blk/12-as-a-user.sh", as_a_user),
    step!("blk/13-resize.sh", resize),
];

fn blk(series: &str) {
    let kernel = Kernel::load_with(
        series,
        &["vduse", "virtio_vdpa", "virtio_blk", "ext4", "loop"],
    );
    // The steps load the modules themselves, after checking the server without them.
    let guest = Guest::new(&kernel)
        .binary("vduse-blk")
        .binary("notify-listen")
        .host_program("vdpa")
        .host_program("fio")
        .host_program("mkfs.ext4")
        .host_program("e2fsck")
        .host_program("debugfs")
        .host_program("blkdiscard")
        .host_program("resize2fs")
        .modules(&[])
        .cpus(DISK0_QUEUES as u32)
        .timeout(Duration::from_secs(240));
    Scenario::new(guest)
        .var("DISK0_YAML", DISK0_YAML)
        .var("RO_YAML", RO_YAML)
        .var("DISK0_QUEUES", DISK0_QUEUES)
        .var("FIO_JOB_MIB", FIO_JOB_MIB)
        .var("DISCARD_OFFSET_MIB", DISCARD_OFFSET_MIB)
        .var("DISCARD_MIB", DISCARD_MIB)
        .var("DISCARD_OFFSET", DISCARD_OFFSET_MIB << 20)
        .var("DISCARD_LEN", DISCARD_MIB << 20)
        .steps(STEPS)
        .run();
}

kernel_tests!(blk: linux_6_12, linux_7_2, linux_7_3);

/// The servers this test spawns, whose logs go into failure messages.
const SERVERS: &[&str] = &["disk0", "ro0", "grow0", "grow1"];

/// The servers' logs, for failure messages.
fn servers(run: &GuestRun) -> String {
    run.logs(SERVERS)
}

#[track_caller]
fn ok(run: &GuestRun, name: &str) {
    run.assert_ok_with(name, SERVERS);
}

/// Asserts that `capture NAME ...` failed (any non-zero exit code).
#[track_caller]
fn fails(run: &GuestRun, name: &str) {
    assert_ne!(
        run.rc(name),
        0,
        "{name}: succeeded, expected a failure\n{}",
        run.report(name)
    );
}

/// Asserts that `capture NAME ...` failed and said `needle` on stderr.
#[track_caller]
fn exits_failing(run: &GuestRun, name: &str, needle: &str) {
    fails(run, name);
    assert!(
        run.err(name).contains(needle),
        "{name}: stderr lacks {needle:?}\n{}",
        run.report(name)
    );
}

/// What `sysfs_of` in the script records for a disk.
fn sysfs_map(
    sectors: u64,
    read_only: bool,
    logical: u32,
    physical: u32,
    serial: &str,
    queues: usize,
    segments: u32,
) -> BTreeMap<String, String> {
    [
        ("size", sectors.to_string()),
        ("ro", u8::from(read_only).to_string()),
        ("queue/logical_block_size", logical.to_string()),
        ("queue/physical_block_size", physical.to_string()),
        // SIZE_MAX, and SEG_MAX (the queue size - 2).
        ("queue/max_segment_size", (1u32 << 20).to_string()),
        ("queue/max_segments", segments.to_string()),
        ("serial", serial.to_string()),
        ("mq", queues.to_string()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect()
}

/// Asserts that results `a` and `b` are the same text.
#[track_caller]
fn same(run: &GuestRun, a: &str, b: &str) {
    assert_eq!(
        run.text(a),
        run.text(b),
        "{a} and {b} differ\n{}{}",
        servers(run),
        run.console_tail(30)
    );
}

/// fio's JSON from `capture fio`, whatever it printed before it.
fn fio_json(run: &GuestRun) -> Value {
    let out = run.out("fio");
    let start = out
        .find('{')
        .unwrap_or_else(|| panic!("fio printed no JSON\n{}", run.report("fio")));
    serde_json::from_str(&out[start..])
        .unwrap_or_else(|e| panic!("fio's output is not JSON: {e}\n{}", run.report("fio")))
}

/// The helpers only: nothing to check.
fn setup(_: &Boot) {}

fn errors(run: &Boot) {
    // Without the module: 69, saying how to load it; nothing created.
    run.assert_rc_says("no-vduse", 69, "modprobe vduse");
    assert_eq!(run.text("no-vduse.dev").trim(), "", "/dev/vduse exists");
    run.assert_success("print-config");
    run.assert_out_contains("print-config", &format!("num-queues: {DISK0_QUEUES}\n"));
    run.assert_out_contains("print-config", "serial: vduse-blk-disk0\n");
    run.assert_success("check-config");
    run.assert_out_contains("check-config", "configuration OK: device disk0");
    ok(run, "modprobe");
}

fn device(run: &Boot) {
    // What the guest's kernel sees of the device.
    ok(run, "disk0-up");
    assert_eq!(
        run.key_values("disk0.sysfs"),
        sysfs_map(
            DISK0_SECTORS,
            false,
            4096,
            16384,
            "vduse-blk-disk0",
            DISK0_QUEUES,
            126
        ),
        "disk0 in sysfs (left: seen, right: configured)\n{}",
        servers(run)
    );
    // No bounce-size: the kernel's 64 MiB.
    assert_eq!(run.number("disk0.bounce_size"), 64 << 20);

    // The same name again, and a missing backing, while disk0 runs.
    run.assert_rc_says("dup", 78, "already exists");
    run.assert_rc_says("missing", 78, "/tmp/missing.img");
    assert_eq!(
        run.words("errors.vduse"),
        ["control", "disk0"],
        "/dev/vduse after the failed starts\n{}\n{}",
        run.report("dup"),
        run.report("missing")
    );
}

fn fio(run: &Boot) {
    // Fio: every byte written read back with its crc32c, through every queue.
    ok(run, "fio");
    let fio = fio_json(run);
    let jobs = fio["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("fio JSON without jobs: {fio:#}"));
    assert_eq!(jobs.len(), DISK0_QUEUES, "fio jobs: {fio:#}");
    for job in jobs {
        assert!(job["jobname"].is_string(), "fio job: {job:#}");
        assert_eq!(job["error"], 0, "fio job error: {job:#}");
        assert_eq!(
            job["write"]["io_bytes"].as_u64(),
            Some(FIO_JOB_MIB << 20),
            "fio wrote: {job:#}"
        );
        // The verification phase reads everything back.
        assert_eq!(
            job["read"]["io_bytes"].as_u64(),
            Some(FIO_JOB_MIB << 20),
            "fio verified: {job:#}"
        );
    }
    // Each vCPU has its own queue, so each job's I/O went through its own queue.
    let cpu_lists = run.text("fio.cpu_lists");
    let mut cpus: Vec<&str> = cpu_lists
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .collect();
    cpus.sort_unstable();
    let expected: Vec<String> = (0..DISK0_QUEUES).map(|cpu| cpu.to_string()).collect();
    assert_eq!(
        cpus, expected,
        "CPUs of the hardware queues (queue, cpu_list):\n{cpu_lists}"
    );
    // The counters (SIGUSR1 before and after fio) add up to what fio did: every byte it
    // wrote and read back, each job's through its own queue, nothing in flight, no error.
    eprintln!(
        "DISK0ERR {}: {}",
        run.kernel().series(),
        run.text("disk0.err")
            .lines()
            .filter(|l| l.contains("malformed") || l.contains("status byte"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    ok(run, "counters-before");
    ok(run, "counters-after");
    let reports: Vec<Value> = run
        .out("disk0")
        .lines()
        .filter(|line| line.contains(r#""event":"signal""#))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let [before, after] = &reports[..] else {
        panic!(
            "disk0 printed {} counter lines on SIGUSR1:\n{}",
            reports.len(),
            run.out("disk0")
        );
    };
    let counter = |report: &Value, path: &[&str]| -> u64 {
        let mut value = report;
        for key in path {
            value = match key.parse::<usize>() {
                Ok(index) => &value[index],
                Err(_) => &value[*key],
            };
        }
        value
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {path:?} in {report}"))
    };
    let grew = |path: &[&str]| counter(after, path) - counter(before, path);
    let job_bytes = FIO_JOB_MIB << 20;
    let all_bytes = job_bytes * DISK0_QUEUES as u64;
    assert_eq!(
        grew(&["total", "write", "bytes"]),
        all_bytes,
        "{before}\n{after}"
    );
    assert_eq!(
        grew(&["total", "read", "bytes"]),
        all_bytes,
        "{before}\n{after}"
    );
    assert_eq!(counter(after, &["total", "in_flight"]), 0, "{after}");
    assert_eq!(counter(after, &["total", "errors", "ioerr"]), 0, "{after}");
    assert_eq!(counter(after, &["total", "errors", "unsupp"]), 0, "{after}");
    for queue in 0..DISK0_QUEUES {
        let queue = queue.to_string();
        for kind in ["write", "read"] {
            assert_eq!(
                grew(&["queues", &queue, kind, "bytes"]),
                job_bytes,
                "queue {queue}'s {kind} bytes:\n{before}\n{after}"
            );
        }
    }
    // The device saw at most as many writes as fio issued (the block layer may merge
    // neighbours, never split these), and the latency histogram counts every request.
    let fio_writes: u64 = jobs
        .iter()
        .map(|job| job["write"]["total_ios"].as_u64().unwrap_or(0))
        .sum();
    let writes = grew(&["total", "write", "requests"]);
    assert!(
        writes > 0 && writes <= fio_writes,
        "{writes} write requests counted, fio issued {fio_writes}"
    );
    let histogram: u64 = after["total"]["latency_us"]
        .as_array()
        .map(|buckets| {
            buckets
                .iter()
                .map(|b| b["count"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    let answered: u64 = [
        "read",
        "write",
        "flush",
        "discard",
        "write_zeroes",
        "get_id",
        "other",
    ]
    .iter()
    .map(|kind| counter(after, &["total", kind, "requests"]))
    .sum();
    assert_eq!(
        histogram, answered,
        "latency histogram against requests: {after}"
    );
    // One worker thread per queue.
    let threads = run.text("disk0.threads");
    let mut workers: Vec<&str> = threads
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter(|comm| comm.starts_with("vduse-vq"))
        .collect();
    workers.sort_unstable();
    let expected: Vec<String> = (0..DISK0_QUEUES).map(|q| format!("vduse-vq{q}")).collect();
    assert_eq!(workers, expected, "the server's threads:\n{threads}");
    // SIGUSR1 logged every queue's ring (and the server served on: the later phases).
    ok(run, "ring-state");
}

fn discard(run: &Boot) {
    // Discard: the data was there, the range reads zeros, the file has a hole.
    for step in ["discard-fill", "discard-reread", "discard", "discard-read"] {
        ok(run, step);
    }
    same(run, "discard.data.sha", "discard.reread.sha");
    same(run, "zeros.sha", "discard.read.sha");
    let before = run.number("discard.blocks-before");
    let after = run.number("discard.blocks-after");
    assert_eq!(
        before.checked_sub(after),
        Some(DISCARD_MIB << 11),
        "allocated 512-byte blocks of the backing: {before} before the discard, {after} after"
    );
}

fn ext4(run: &Boot) {
    // Ext4 through the device, read back from the backing file.
    for step in ["mkfs", "mount", "fs-sync", "umount"] {
        ok(run, step);
    }
    let sums = run.text("fs.device.sums");
    assert_eq!(
        sums.lines().count(),
        3,
        "checksums of the files through the device:\n{sums}\n{}",
        run.console_tail(30)
    );
}

fn sigterm(run: &Boot) {
    // SIGTERM: exit 0, nothing left.
    run.assert_stopped_cleanly("disk0", SERVERS);
    assert_eq!(
        run.text("disk0.after.bus").trim(),
        "",
        "/sys/bus/vdpa/devices after disk0 stopped\n{}",
        servers(run)
    );
    assert_eq!(
        run.text("disk0.after.block").trim(),
        "",
        "vd* disks in /sys/block after disk0 stopped\n{}",
        servers(run)
    );
}

fn ext4_from_backing(run: &Boot) {
    let sums = run.text("fs.device.sums");
    // The file system, read from the backing file outside the device.
    ok(run, "fsck");
    ok(run, "loop-mount");
    same(run, "fs.device.sums", "fs.loop.sums");
    ok(run, "debugfs");
    let big = sums
        .lines()
        .find(|line| line.ends_with(" big"))
        .unwrap_or_else(|| panic!("no checksum of big: {sums}"));
    assert_eq!(
        run.text("fs.debugfs.sums").trim(),
        big,
        "big dumped by debugfs from the backing, and as read through the device\n{}",
        run.report("debugfs")
    );
}

fn read_only(run: &Boot) {
    // Read-only.
    assert_eq!(
        run.rc("notify"),
        0,
        "no READY=1 from vduse-blk\n{}",
        run.report("notify")
    );
    assert_eq!(
        run.out("notify"),
        "message: READY=1\ncheck: /sys/bus/vdpa/devices/ro0 exists=true\n",
        "readiness before the device was attached\n{}",
        servers(run)
    );
    ok(run, "ro0-up");
    // The size is the backing's, the block sizes and queue count the defaults.
    assert_eq!(
        run.key_values("ro0.sysfs"),
        sysfs_map(DISK0_SECTORS, true, 512, 512, "vduse-blk-ro0", 1, 254),
        "ro0 in sysfs\n{}",
        servers(run)
    );
    assert_eq!(run.number("ro0.bounce_size"), 16 << 20, "bounce-size: 16M");
    // The kernel refuses the write itself (EPERM): the disk is read-only.
    exits_failing(run, "ro-write", "Operation not permitted");
    fails(run, "ro-discard");
    ok(run, "ro-mount");
    same(run, "fs.device.sums", "fs.ro.sums");
    run.assert_stopped_cleanly("ro0", SERVERS);
    same(run, "ro.before.sha", "ro.after.sha");
}

fn vhost(run: &Boot) {
    // Vhost_vdpa: without the module the fix is named; with it, vhost_vdpa serves the
    // device (a vhost-vdpa-N child) although virtio_vdpa was loaded first.
    run.assert_rc_says("vhost-missing", 69, "modprobe vhost_vdpa");
    ok(run, "vh0-up");
    assert_eq!(
        run.text("vh0.driver").trim(),
        "vhost_vdpa",
        "{}",
        servers(run)
    );
    assert!(
        run.text("vh0.children")
            .lines()
            .any(|l| l.starts_with("vhost-vdpa-")),
        "no vhost-vdpa char device under vh0: {}",
        run.text("vh0.children")
    );
    ok(run, "vh0-no-disk");
    assert_eq!(
        run.rc("vh0"),
        0,
        "vh0 did not stop cleanly\n{}",
        servers(run)
    );
    assert_eq!(run.words("vh0.after.vduse"), ["control"]);
}

fn no_io_uring(run: &Boot) {
    // Without io_uring: threads instead, said in the log, and the data round-trips.
    for step in ["nouring-up", "nouring-write", "nouring-read"] {
        ok(run, step);
    }
    let log = run.text("nouring.err");
    assert!(
        log.contains("io_uring is not available") && log.contains("using threads"),
        "no fallback in the log:\n{log}"
    );
    assert!(log.contains("(io-engine threads)"), "{log}");
    same(run, "discard.data.sha", "nouring.sha");
    assert_eq!(run.rc("nouring"), 0, "nouring exit code\n{log}");
    assert_eq!(run.words("nouring.after.vduse"), ["control"]);
}

fn as_a_user(run: &Boot) {
    // As tester (uid and gid 1000): an unknown user is a configuration error naming
    // the key; every thread switched, the disk works, and SIGTERM still detaches and
    // destroys the device (CAP_NET_ADMIN kept for that, the control node opened before).
    assert_eq!(run.rc("user-unknown"), 78, "{}", run.report("user-unknown"));
    assert!(
        run.err("user-unknown")
            .contains("user: no user \"nosuchuser\""),
        "{}",
        run.report("user-unknown")
    );
    for step in [
        "asuser-up",
        "asuser-switched",
        "asuser-write",
        "asuser-read",
    ] {
        run.assert_ok_with(step, &["asuser"]);
    }
    run.assert_serves_as("asuser.threads", 1000, 1000);
    same(run, "discard.data.sha", "asuser.sha");
    run.assert_stopped_cleanly("asuser", &["asuser"]);
}

fn resize(run: &Boot) {
    // SIGHUP: a grown backing file, then a larger `size`, reach the guest while ext4 is
    // mounted and fio verifies; refusals change nothing and say why.
    let sectors = |mib: u64| mib << 11;
    assert_eq!(run.number("grow.size.start"), sectors(64));
    for step in [
        "grow0-up",
        "grow-mkfs",
        "grow-mount",
        "grow-seen",
        "grow-resize2fs",
        "grow-size-seen",
        "grow-refused-shrink",
        "grow-refused-partial",
        "grow-refused-queues",
        "grow1-took-over",
        "grow1-grown",
        "grow-write",
        "grow-sync",
        "grow-umount",
        "grow-fsck",
    ] {
        ok(run, step);
    }
    let (start, grown) = (run.number("grow.fs.start"), run.number("grow.fs.grown"));
    assert!(
        grown >= start + 30 * 1024,
        "ext4 after resize2fs: {grown} KiB, from {start} KiB on a disk grown by 32 MiB\n{}",
        servers(run)
    );
    // fio verified every block it wrote while the disk grew under it.
    assert_eq!(run.number("grow-fio.rc"), 0, "{}", run.report("grow-fio"));
    let fio = run.json("grow-fio");
    let job = &fio["jobs"][0];
    assert_eq!(job["error"], 0, "fio job: {job:#}");
    assert!(
        job["read"]["io_bytes"].as_u64() > Some(0),
        "fio verified nothing: {job:#}"
    );
    assert_eq!(run.number("grow.file.size"), 128 << 20);
    assert_eq!(run.number("grow.size.refused"), sectors(128));
    assert_eq!(run.number("grow.file.refused"), 128 << 20);
    let log = run.text("grow0.err");
    for said in [
        "reloaded: the disk grew from 67108864 to 100663296 bytes",
        "reloaded: the disk grew from 100663296 to 134217728 bytes",
        "reload refused: the disk would shrink from 134217728 to 67108864 bytes",
        "not a multiple of the logical block size",
        "reload refused: num-queues cannot change while the device is served",
    ] {
        assert!(log.contains(said), "grow0's log lacks {said:?}:\n{log}");
    }
    // SIGKILLed, then taken over at the grown size and grown again.
    assert_eq!(run.rc("grow0"), 137, "{}", servers(run));
    let log = run.text("grow1.err");
    let said = "reloaded: the disk grew from 134217728 to 167772160 bytes";
    assert!(log.contains(said), "grow1's log lacks {said:?}:\n{log}");
    run.assert_stopped_cleanly("grow1", SERVERS);
    // Its counters: every second, and a last line at exit with nothing in flight.
    let lines = run.out("grow1");
    let events: Vec<Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let count = |event: &str| events.iter().filter(|e| e["event"] == event).count();
    assert!(count("interval") >= 2, "grow1's counters:\n{lines}");
    assert_eq!(count("exit"), 1, "grow1's counters:\n{lines}");
    let last = events.last().expect("a line at exit");
    assert_eq!(last["event"], "exit", "grow1's counters:\n{lines}");
    assert_eq!(last["total"]["in_flight"], 0, "{last}");
    assert!(
        last["total"]["write"]["bytes"].as_u64() >= Some(40 << 20),
        "the 40 MiB written through grow1: {last}"
    );

    run.assert_nothing_broken();
}
