//! `vduse-blk` over NBD exports served by a real `qemu-nbd` (qemu-utils), on the kernels
//! of the matrix that have VDUSE (6.12, 7.2, 7.3). Everything runs in one guest per
//! kernel; the NBD traffic stays inside it (a Unix socket, and TCP on its loopback). The
//! steps are the shell files of `tests/scenarios/nbd/`, each checked by the function of
//! the same name below (after `01-setup.sh`):
//!
//! 1. Errors: no server at the socket exits 69 saying how to start one; an export name
//!    the server does not have exits 78 naming it. `--check-config` reports the export.
//! 2. A raw image over a Unix socket, two queues: sysfs shows the export's size, the
//!    serial and two queues. ext4 is made, written and read back through the device.
//! 3. fio writes with crc32c verification while qemu-nbd is killed with SIGKILL and
//!    started again 2 s later: fio ends with exit 0 and no errors, and the server logged
//!    the reconnection.
//! 4. SIGTERM removes the device (from `/dev/vduse` and the vdpa bus); then the image,
//!    loop-mounted outside the device, holds the same files, and `e2fsck -fn` is clean.
//! 5. A qcow2 image over TCP on the loopback, `--nbd-timeout 3`: ext4 as above; with
//!    qemu-nbd gone, a direct read fails with an I/O error after 3 s or more (and within
//!    15 s); once qemu-nbd is back, reads work again without restarting the device.
//! 6. After SIGTERM and qemu-nbd's own clean exit, `qemu-img convert` turns the qcow2
//!    image into a raw one whose file system holds the same files.

use std::time::Duration;

use serde_json::Value;
use vduse_tests::{Boot, Guest, GuestRun, Kernel, Scenario, Step, TempDir, kernel_tests, step};

// The certificates vduse-blk's own TLS tests use.
use vduse_testkit::tls_certs;

/// Size of both images.
const IMAGE_MIB: u64 = 128;
/// nbd-timeout of the qcow2 device, in seconds.
const TIMEOUT_S: u64 = 3;

const STEPS: &[Step] = &[
    step!("nbd/01-setup.sh", setup),
    step!("nbd/02-errors.sh", errors),
    step!("nbd/03-raw.sh", raw),
    step!("nbd/04-restart.sh", restart),
    step!("nbd/05-stop-raw.sh", stop_raw),
    step!("nbd/06-qcow2.sh", qcow2),
    step!("nbd/07-stop-qcow2.sh", stop_qcow2),
    step!("nbd/08-tls.sh", tls),
];

fn nbd(series: &str) {
    let kernel = Kernel::load_with(
        series,
        &["vduse", "virtio_vdpa", "virtio_blk", "ext4", "loop"],
    );
    // TLS credentials for qemu-nbd, made on the host with openssl.
    let certs = TempDir::new("nbd-tls");
    let credentials = tls_certs::make(certs.path());
    let server = &credentials.server_dir;
    let guest = Guest::new(&kernel)
        .file(&credentials.ca, "/etc/nbd-tls/ca-cert.pem")
        .file(
            server.join("ca-cert.pem"),
            "/etc/nbd-tls/server/ca-cert.pem",
        )
        .file(
            server.join("server-cert.pem"),
            "/etc/nbd-tls/server/server-cert.pem",
        )
        .file(
            server.join("server-key.pem"),
            "/etc/nbd-tls/server/server-key.pem",
        )
        .binary("vduse-blk")
        .host_program("vdpa")
        .host_program("fio")
        .host_program("mkfs.ext4")
        .host_program("e2fsck")
        .host_program("qemu-nbd")
        .host_program("qemu-img")
        .modules(&[])
        .memory_mb(1536)
        .timeout(Duration::from_secs(240));
    Scenario::new(guest)
        .var("IMAGE_MIB", IMAGE_MIB)
        .var("TIMEOUT_S", TIMEOUT_S)
        .steps(STEPS)
        .run();
}

kernel_tests!(nbd: linux_6_12, linux_7_2, linux_7_3);

const SERVERS: &[&str] = &[
    "nbd0",
    "nbd1",
    "nbd2",
    "qnbd-raw",
    "qnbd-raw2",
    "qnbd-q",
    "qnbd-q2",
    "qnbd-tls",
];

#[track_caller]
fn ok(run: &GuestRun, name: &str) {
    run.assert_ok_with(name, SERVERS);
}

#[track_caller]
fn same(run: &GuestRun, a: &str, b: &str) {
    assert!(
        !run.text(a).trim().is_empty(),
        "{a} is empty\n{}",
        run.logs(SERVERS)
    );
    assert_eq!(
        run.text(a),
        run.text(b),
        "{a} and {b} differ\n{}{}",
        run.logs(SERVERS),
        run.console_tail(30)
    );
}

/// The file-system round trip of `fs_write NAME`, and of `fs_check NAME` on the image.
#[track_caller]
fn file_system_round_trip(run: &GuestRun, name: &str) {
    for step in ["mkfs", "mount", "sync", "umount", "remount", "fsck", "loop"] {
        ok(run, &format!("{name}-{step}"));
    }
    assert_eq!(run.text(&format!("{name}.sums")).lines().count(), 3);
    same(run, &format!("{name}.sums"), &format!("{name}.reread.sums"));
    same(run, &format!("{name}.sums"), &format!("{name}.loop.sums"));
}

fn setup(run: &Boot) {
    ok(run, "modprobe");
}

fn errors(run: &Boot) {
    // Errors, and nothing left behind by them.
    run.assert_rc_says("no-server", 69, "cannot reach the NBD server");
    run.assert_rc_says("no-export", 78, "no export named \"other\"");
    ok(run, "raw-check");
    run.assert_out_contains(
        "raw-check",
        &format!(
            "over NBD export nbd+unix:///disk?socket=/run/nbd/raw.sock ({} bytes, read-write",
            IMAGE_MIB << 20
        ),
    );
    assert_eq!(
        run.words("errors.vduse"),
        ["control"],
        "/dev/vduse after the errors"
    );
}

fn raw(run: &Boot) {
    // The raw export as a disk.
    ok(run, "nbd0-up");
    let sysfs = run.key_values("nbd0.sysfs");
    assert_eq!(sysfs["size"], (IMAGE_MIB << 11).to_string(), "sectors");
    assert_eq!(sysfs["ro"], "0");
    assert_eq!(sysfs["serial"], "vduse-nbd0");
    assert_eq!(sysfs["mq"], "2", "queues");
}

fn restart(run: &Boot) {
    // fio through a restart of the NBD server.
    assert_eq!(
        run.text("fio.at-kill").trim(),
        "running",
        "fio ended before qemu-nbd was killed"
    );
    ok(run, "fio-done");
    let out = run.text("fio.json");
    let start = out
        .find('{')
        .unwrap_or_else(|| panic!("fio printed no JSON\n{out}"));
    let fio: Value = serde_json::from_str(&out[start..]).expect("fio's JSON");
    let jobs = fio["jobs"].as_array().expect("fio jobs");
    assert_eq!(jobs.len(), 2);
    for job in jobs {
        assert_eq!(job["error"], 0, "fio job {}: {job}", job["jobname"]);
        let written = job["write"]["io_bytes"].as_u64().unwrap_or(0);
        assert_eq!(
            written,
            32 << 20,
            "fio job {} wrote everything",
            job["jobname"]
        );
    }
    let log = run.text("nbd0.err");
    assert!(
        log.contains("connection lost"),
        "nbd0 did not notice the restart:\n{log}"
    );
    assert!(
        log.contains("reconnected after"),
        "nbd0 did not reconnect:\n{log}"
    );
}

fn stop_raw(run: &Boot) {
    // SIGTERM, and the raw image outside the device.
    run.assert_stopped_cleanly("nbd0", SERVERS);
    file_system_round_trip(run, "raw");
}

fn qcow2(run: &Boot) {
    // Qcow2 over TCP.
    ok(run, "qcow2-create");
    ok(run, "nbd1-up");
    assert_eq!(
        run.key_values("nbd1.sysfs")["size"],
        (IMAGE_MIB << 11).to_string()
    );
    let took = run.number("q-down-read.ms");
    eprintln!(
        "{}: a read with qemu-nbd gone failed after {took} ms",
        run.series()
    );
    assert_ne!(
        run.rc("q-down-read"),
        0,
        "a read with qemu-nbd gone succeeded"
    );
    assert!(
        run.err("q-down-read").contains("Input/output error"),
        "{}",
        run.report("q-down-read")
    );
    assert!(
        (TIMEOUT_S * 1000..15_000).contains(&took),
        "the read failed after {took} ms; nbd-timeout is {TIMEOUT_S} s\n{}",
        run.logs(SERVERS)
    );
    let log = run.text("nbd1.err");
    assert!(
        log.contains("within nbd-timeout"),
        "nbd1 did not say why the read failed:\n{log}"
    );
    ok(run, "q-back-read");
    ok(run, "q-back-fs");
    assert_eq!(
        run.out("q-back-fs"),
        run.text("qcow2.sums"),
        "files after qemu-nbd came back"
    );
}

fn stop_qcow2(run: &Boot) {
    // SIGTERM, and the qcow2 image outside the device.
    run.assert_stopped_cleanly("nbd1", SERVERS);
    ok(run, "q-convert");
    file_system_round_trip(run, "qcow2");
}

fn tls(run: &Boot) {
    // TLS.
    ok(run, "tls-listen");
    run.assert_rc_says("tls-plain", 78, "requires TLS");
    ok(run, "nbd2-up");
    ok(run, "tls-write");
    ok(run, "tls-read");
    same(run, "tls.data.sha", "tls.back.sha");
    same(run, "tls.data.sha", "tls.image.sha");
    run.assert_stopped_cleanly("nbd2", SERVERS);
}
