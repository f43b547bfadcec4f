//! `vduse-blk` over NBD exports served by a real `qemu-nbd` (qemu-utils), on the kernels
//! of the matrix that have VDUSE (6.12, 7.2, 7.3). Everything runs in one guest per
//! kernel; the NBD traffic stays inside it (a Unix socket, and TCP on its loopback).
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
use vduse_tests::{Guest, GuestRun, Kernel, TempDir};

// The certificates vduse-blk's own TLS tests use.
#[allow(dead_code)]
#[path = "../../vduse-blk/tests/common/tls_certs.rs"]
mod tls_certs;

/// Size of both images.
const IMAGE_MIB: u64 = 128;
/// nbd-timeout of the qcow2 device, in seconds.
const TIMEOUT_S: u64 = 3;

fn scenario() -> String {
    format!(
        r#"
phase() {{
    echo "vduse-blk-nbd-test: $* at $(cut -d' ' -f1 /proc/uptime) s"
}}
uptime_ms() {{
    awk '{{ printf "%d\n", $1 * 1000 }}' /proc/uptime
}}
FILES="big small dir/numbers"
# fs_write NAME DEV: ext4 on DEV with a few files; their sums go to result NAME.sums.
fs_write() {{
    capture $1-mkfs mkfs.ext4 -q -F /dev/$2
    mkdir -p /mnt/$1
    capture $1-mount mount -t ext4 /dev/$2 /mnt/$1
    dd if=/dev/urandom of=/mnt/$1/big bs=1M count=8 2>/dev/null
    echo "hello from vduse-blk over NBD" >/mnt/$1/small
    mkdir /mnt/$1/dir && seq 1 5000 >/mnt/$1/dir/numbers
    capture $1-sync sync
    (cd /mnt/$1 && sha256sum $FILES) | result $1.sums
    capture $1-umount umount /mnt/$1
    echo 3 >/proc/sys/vm/drop_caches
    capture $1-remount mount -t ext4 -o ro /dev/$2 /mnt/$1
    (cd /mnt/$1 && sha256sum $FILES) | result $1.reread.sums
    umount /mnt/$1
}}
# fs_check NAME IMAGE: the file system in the raw IMAGE, outside the device.
fs_check() {{
    capture $1-fsck e2fsck -fn $2
    mkdir -p /mnt/$1-loop
    capture $1-loop mount -t ext4 -o ro,loop $2 /mnt/$1-loop
    (cd /mnt/$1-loop && sha256sum $FILES) | result $1.loop.sums
    umount /mnt/$1-loop
}}

capture modprobe sh -c 'for m in vduse virtio_vdpa virtio_blk ext4 loop; do modprobe $m || exit 1; done'
mkdir -p /run/nbd

# --- 1. Errors.
phase 1 errors
truncate -s {IMAGE_MIB}M /tmp/raw.img
RAW_URI='nbd+unix:///disk?socket=/run/nbd/raw.sock'
capture no-server vduse-blk --name nbd0 --nbd-uri "$RAW_URI"
RAW_NBD="qemu-nbd --persistent --shared=4 --format=raw --discard=unmap --export-name=disk --socket=/run/nbd/raw.sock /tmp/raw.img"
spawn qnbd-raw $RAW_NBD
capture raw-socket wait_for 60 test -S /run/nbd/raw.sock || why qnbd-raw
capture no-export vduse-blk --name nbd0 --nbd-uri 'nbd+unix:///other?socket=/run/nbd/raw.sock'
capture raw-check vduse-blk --name nbd0 --nbd-uri "$RAW_URI" --check-config
ls /dev/vduse | result errors.vduse

# --- 2. Raw image, Unix socket, two queues.
phase 2 raw
spawn nbd0 vduse-blk --name nbd0 --nbd-uri "$RAW_URI" --num-queues 2 --serial vduse-nbd0
capture nbd0-up wait_for 60 disk_by_serial vduse-nbd0
D=$(disk_by_serial vduse-nbd0)
for f in size ro serial; do echo "$f=$(cat /sys/block/$D/$f)"; done | result nbd0.sysfs
echo "mq=$(ls /sys/block/$D/mq | wc -l)" >>/results/nbd0.sysfs
fs_write raw $D

# --- 3. fio while qemu-nbd is killed and started again.
phase 3 restart
spawn fio fio --filename=/dev/$D --direct=1 --ioengine=libaio --iodepth=16 \
    --rw=randwrite --bsrange=4k-64k --size=32M --offset=64M \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --output-format=json \
    --name=cpu0 --cpus_allowed=0 --name=cpu1 --cpus_allowed=1 --offset=96M
sleep 2
kill -0 "$(cat /run/vduse-test/fio.pid)" && echo running | result fio.at-kill
stop qnbd-raw KILL
phase 3 qemu-nbd killed
sleep 2
spawn qnbd-raw2 $RAW_NBD
phase 3 qemu-nbd started again
capture fio-done reap fio
cp /results/fio.out /results/fio.json

# --- 4. SIGTERM; then the raw image outside the device.
phase 4 stop raw
stop nbd0
ls /dev/vduse | result nbd0.after.vduse
capture nbd0-after-vdpa vdpa dev show
stop qnbd-raw2
fs_check raw /tmp/raw.img

# --- 5. qcow2 image over TCP on the loopback, short timeout.
phase 5 qcow2
capture qcow2-create qemu-img create -q -f qcow2 /tmp/disk.qcow2 {IMAGE_MIB}M
Q_NBD="qemu-nbd --persistent --shared=4 --format=qcow2 --discard=unmap --bind=127.0.0.1 --port=10809 /tmp/disk.qcow2"
spawn qnbd-q $Q_NBD
capture q-listen wait_for 60 sh -c 'grep -q ":2A39 " /proc/net/tcp' || why qnbd-q
spawn nbd1 vduse-blk --name nbd1 --nbd-uri nbd://127.0.0.1 --nbd-timeout {TIMEOUT_S} --serial vduse-nbd1
capture nbd1-up wait_for 60 disk_by_serial vduse-nbd1
Q=$(disk_by_serial vduse-nbd1)
echo "size=$(cat /sys/block/$Q/size)" | result nbd1.sysfs
fs_write qcow2 $Q
stop qnbd-q
phase 5 qemu-nbd stopped
start=$(uptime_ms)
capture q-down-read dd if=/dev/$Q of=/dev/null bs=4k count=1 skip=100 iflag=direct
echo $(( $(uptime_ms) - start )) | result q-down-read.ms
spawn qnbd-q2 $Q_NBD
capture q-back-read wait_for 60 dd if=/dev/$Q of=/dev/null bs=4k count=1 skip=200 iflag=direct
capture q-back-fs sh -c "mount -t ext4 -o ro /dev/$Q /mnt/qcow2 && cd /mnt/qcow2 && sha256sum $FILES"
umount /mnt/qcow2

# --- 6. SIGTERM; then the qcow2 image, converted, outside the device.
phase 6 stop qcow2
stop nbd1
ls /dev/vduse | result nbd1.after.vduse
capture nbd1-after-vdpa vdpa dev show
stop qnbd-q2
capture q-convert qemu-img convert -O raw /tmp/disk.qcow2 /tmp/qcow2.raw
fs_check qcow2 /tmp/qcow2.raw

# --- 7. TLS: qemu-nbd with x509 credentials (made on the host) on TCP, and nbds://.
phase 7 tls
truncate -s 32M /tmp/tls.img
spawn qnbd-tls qemu-nbd --persistent --format=raw \
    --object tls-creds-x509,id=tls0,endpoint=server,verify-peer=off,dir=/etc/nbd-tls/server \
    --tls-creds=tls0 --bind=127.0.0.1 --port=10810 /tmp/tls.img
capture tls-listen wait_for 60 sh -c 'grep -q ":2A3A " /proc/net/tcp' || why qnbd-tls
capture tls-plain vduse-blk --name nbd2 --nbd-uri nbd://127.0.0.1:10810 --check-config
spawn nbd2 vduse-blk --name nbd2 --nbd-uri nbds://127.0.0.1:10810 \
    --nbd-tls-ca /etc/nbd-tls/ca-cert.pem --serial vduse-nbd2
capture nbd2-up wait_for 60 disk_by_serial vduse-nbd2
T=$(disk_by_serial vduse-nbd2)
dd if=/dev/urandom of=/tmp/tls.data bs=1M count=8 2>/dev/null
sha256sum </tmp/tls.data | result tls.data.sha
capture tls-write dd if=/tmp/tls.data of=/dev/$T bs=1M oflag=direct
echo 3 >/proc/sys/vm/drop_caches
capture tls-read dd if=/dev/$T of=/tmp/tls.back bs=1M count=8 iflag=direct
sha256sum </tmp/tls.back | result tls.back.sha
stop nbd2
ls /dev/vduse | result nbd2.after.vduse
capture nbd2-after-vdpa vdpa dev show
stop qnbd-tls
head -c 8388608 /tmp/tls.img | sha256sum | result tls.image.sha
phase end
"#
    )
}

fn boot(series: &str) -> GuestRun {
    let kernel = Kernel::load_with(
        series,
        &["vduse", "virtio_vdpa", "virtio_blk", "ext4", "loop"],
    );
    // TLS credentials for qemu-nbd, made on the host with openssl.
    let certs = TempDir::new("nbd-tls");
    let credentials = tls_certs::make(certs.path());
    let server = &credentials.server_dir;
    let run = Guest::new(&kernel)
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
        .timeout(Duration::from_secs(240))
        .script(&scenario())
        .run();
    eprintln!(
        "vduse-blk over NBD on {series} ({}): boot took {:.1} s",
        kernel.release(),
        run.elapsed().as_secs_f64()
    );
    run
}

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

fn check(series: &str) {
    let run = boot(series);
    ok(&run, "modprobe");

    // 1. Errors, and nothing left behind by them.
    run.assert_rc_says("no-server", 69, "cannot reach the NBD server");
    run.assert_rc_says("no-export", 78, "no export named \"other\"");
    ok(&run, "raw-check");
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

    // 2. The raw export as a disk.
    ok(&run, "nbd0-up");
    let sysfs = run.key_values("nbd0.sysfs");
    assert_eq!(sysfs["size"], (IMAGE_MIB << 11).to_string(), "sectors");
    assert_eq!(sysfs["ro"], "0");
    assert_eq!(sysfs["serial"], "vduse-nbd0");
    assert_eq!(sysfs["mq"], "2", "queues");

    // 3. fio through a restart of the NBD server.
    assert_eq!(
        run.text("fio.at-kill").trim(),
        "running",
        "fio ended before qemu-nbd was killed"
    );
    ok(&run, "fio-done");
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

    // 4. SIGTERM, and the raw image outside the device.
    run.assert_stopped_cleanly("nbd0", SERVERS);
    file_system_round_trip(&run, "raw");

    // 5. qcow2 over TCP.
    ok(&run, "qcow2-create");
    ok(&run, "nbd1-up");
    assert_eq!(
        run.key_values("nbd1.sysfs")["size"],
        (IMAGE_MIB << 11).to_string()
    );
    let took = run.number("q-down-read.ms");
    eprintln!("{series}: a read with qemu-nbd gone failed after {took} ms");
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
    ok(&run, "q-back-read");
    ok(&run, "q-back-fs");
    assert_eq!(
        run.out("q-back-fs"),
        run.text("qcow2.sums"),
        "files after qemu-nbd came back"
    );

    // 6. SIGTERM, and the qcow2 image outside the device.
    run.assert_stopped_cleanly("nbd1", SERVERS);
    ok(&run, "q-convert");
    file_system_round_trip(&run, "qcow2");

    // 7. TLS.
    ok(&run, "tls-listen");
    run.assert_rc_says("tls-plain", 78, "requires TLS");
    ok(&run, "nbd2-up");
    ok(&run, "tls-write");
    ok(&run, "tls-read");
    same(&run, "tls.data.sha", "tls.back.sha");
    same(&run, "tls.data.sha", "tls.image.sha");
    run.assert_stopped_cleanly("nbd2", SERVERS);
}

#[test]
fn nbd_on_6_12() {
    check("6.12");
}

#[test]
fn nbd_on_7_2() {
    check("7.2");
}

#[test]
fn nbd_on_7_3() {
    check("7.3");
}
