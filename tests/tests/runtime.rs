//! The device runtime (`vduse::runtime`) on the real kernels of the matrix, through the
//! crate's `ramdisk` example (`vduse/examples/ramdisk.rs`), a minimal in-memory virtio-blk
//! server built on it and the template new devices start from: this test keeps it working.
//! `cargo test --workspace` builds it before running the tests; alone, this test needs
//! `cargo build --workspace --examples` first, and fails saying so when it is missing.
//!
//! One boot per kernel: the server creates and attaches its device and the kernel's own
//! virtio-blk driver binds to it (`/dev/vda`); data written with O_DIRECT reads back the
//! same; detaching and re-attaching it with iproute2's `vdpa` resets the device and sets
//! DRIVER_OK again, after which the data is still there; a file system made with
//! e2fsprogs checks clean and gives back a file (mounted too where the cached kernel has
//! ext4); SIGTERM ends the server with exit code 0 and leaves no device behind.
//!
//! The three kernels take the runtime's three paths: 6.12 API version 0 without VDUSE
//! features, 7.2 API version 1 without features, 7.3 API version 1 with queue-ready and
//! suspend (the kernel sends SET_VQ_READY).

use std::time::Duration;

use serde_json::Value;
use vduse_tests::{Guest, GuestRun, Kernel};

/// The device's name and size.
const NAME: &str = "ram0";
const SIZE_MIB: u64 = 64;

/// What the server must report on each kernel: API version, VDUSE features.
fn expected(series: &str) -> (u64, &'static str) {
    match series {
        "6.12" => (0, "0x0"),
        "7.2" => (1, "0x0"),
        "7.3" => (1, "0x3"),
        other => panic!("no expectations for {other}"),
    }
}

fn scenario(mount: bool) -> String {
    let mount_steps = if mount {
        r#"
mkdir -p /mnt/vda
capture mount mount -t ext4 /dev/vda /mnt/vda
cp /tmp/pattern /mnt/vda/copy
capture sync sync
capture umount umount /mnt/vda
capture remount mount -t ext4 -o ro /dev/vda /mnt/vda
md5sum </mnt/vda/copy | result mount.md5
umount /mnt/vda
"#
    } else {
        ""
    };
    format!(
        r#"
# The server creates the device and attaches it itself; the kernel's virtio-blk binds.
export RUST_LOG=debug
spawn server ramdisk --name {NAME} --size-mib {SIZE_MIB}
capture ready wait_for 60 grep -q READY /results/server.out
capture vda wait_for 60 test -b /dev/vda
cat /sys/block/vda/size | result size
cat /sys/block/vda/serial | result serial
capture probe vduse-probe --json --no-create

# Data written past the page cache reads back the same, near the start and far in.
dd if=/dev/urandom of=/tmp/pattern bs=1M count=4 2>/dev/null
md5sum </tmp/pattern | result pattern.md5
capture write dd if=/tmp/pattern of=/dev/vda bs=1M oflag=direct
capture read dd if=/dev/vda of=/tmp/back bs=1M count=4 iflag=direct
md5sum </tmp/back | result back.md5
capture write-far dd if=/tmp/pattern of=/dev/vda bs=4k seek=12000 oflag=direct
capture read-far dd if=/dev/vda of=/tmp/back-far bs=4k skip=12000 count=1024 iflag=direct
md5sum </tmp/back-far | result back-far.md5

# The server's fds past stdio, each with its open flags: all close-on-exec (a child must
# not keep the node open), one per IOTLB file.
pid=$(cat /run/vduse-test/server.pid)
for fd in /proc/$pid/fd/*; do
    n=${{fd##*/}}
    [ "$n" -gt 2 ] && echo "$n $(readlink "$fd") $(awk '/^flags:/ {{print $2}}' /proc/$pid/fdinfo/$n)"
done | result server.fds

# Re-initialisation: detach (the driver resets the device), attach (DRIVER_OK again).
capture del vdpa dev del {NAME}
capture gone wait_for 60 sh -c '! test -b /dev/vda'
capture add vdpa dev add name {NAME} mgmtdev vduse
capture vda-again wait_for 60 test -b /dev/vda
capture read-again dd if=/dev/vda of=/tmp/back2 bs=1M count=4 iflag=direct
md5sum </tmp/back2 | result back-again.md5

# A file system, written and read through the device by e2fsprogs.
capture mkfs mkfs.ext4 -q -F /dev/vda
capture fs-write debugfs -w -R "write /tmp/pattern pattern" /dev/vda
echo 3 >/proc/sys/vm/drop_caches
capture fsck e2fsck -fn /dev/vda
capture fs-read debugfs -R "dump pattern /tmp/fsback" /dev/vda
md5sum </tmp/fsback | result fs.md5
{mount_steps}
# SIGTERM: the server detaches, stops, destroys its device and exits 0.
stop server
ls /dev/vduse | result after.vduse
capture after-vdpa vdpa dev show

# A start that fails half-way undoes itself: nobody may create a device through a
# world-writable control node, but not open the device's root-only node.
chmod 0666 /dev/vduse/control
capture half setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all ramdisk --name half
chmod 0600 /dev/vduse/control
ls /dev/vduse | result after-half.vduse
"#
    )
}

fn boot(series: &str) -> (GuestRun, bool) {
    let kernel = Kernel::load(series);
    // tests/fetch-kernels caches ext4 for every kernel of the matrix: mounting is not
    // optional.
    let mount = kernel.has_module("ext4");
    assert!(
        mount,
        "the cached {series} kernel has no ext4 module: run tests/fetch-kernels"
    );
    let modules = ["vduse", "virtio_vdpa", "virtio_blk", "ext4"];
    let run = Guest::new(&kernel)
        .example("ramdisk")
        .binary("vduse-probe")
        .host_program("vdpa")
        .host_program("mkfs.ext4")
        .host_program("e2fsck")
        .host_program("debugfs")
        .host_program("setpriv")
        .modules(&modules)
        .timeout(Duration::from_secs(240))
        .script(&scenario(mount))
        .run();
    eprintln!(
        "runtime on {series} ({}): boot took {:.1} s{}",
        kernel.release(),
        run.elapsed().as_secs_f64(),
        if mount {
            ""
        } else {
            " (no ext4 module: mount not tried)"
        }
    );
    (run, mount)
}

fn same(run: &GuestRun, a: &str, b: &str) {
    assert_eq!(
        run.text(a),
        run.text(b),
        "{a} and {b} differ\n--- server log:\n{}\n{}",
        run.text("server.err"),
        run.console_tail(30)
    );
}

fn check(series: &str) {
    let (run, mount) = boot(series);
    let (api_version, features) = expected(series);

    for step in [
        "ready",
        "vda",
        "probe",
        "write",
        "read",
        "write-far",
        "read-far",
    ] {
        run.assert_success(step);
    }
    assert_eq!(run.text("size").trim(), (SIZE_MIB << 11).to_string());
    assert_eq!(run.text("serial").trim(), "vduse-ramdisk");
    same(&run, "pattern.md5", "back.md5");
    same(&run, "pattern.md5", "back-far.md5");

    let fds = run.text("server.fds");
    let mut domains = 0;
    for line in fds.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags = u32::from_str_radix(fields[2], 8).expect("octal flags");
        assert!(
            flags & 0o2000000 != 0,
            "fd without O_CLOEXEC: {line}
{fds}"
        );
        domains += usize::from(fields[1].contains("vduse-domain"));
    }
    assert!(fds.contains(&format!("/dev/vduse/{NAME}")), "{fds}");
    // The rings and the bounce region are both in the one domain file.
    assert_eq!(domains, 1, "IOTLB fds kept:\n{fds}");

    // The probe sees the device served, attached, bound to virtio_vdpa.
    let report = run.json("probe");
    let device = report["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == NAME))
        .unwrap_or_else(|| panic!("the probe does not list {NAME}: {report:#}"));
    assert_eq!(device["type"], "block", "{device:#}");
    assert_eq!(device["attached"], true, "{device:#}");
    assert_eq!(device["driver"], "virtio_vdpa", "{device:#}");
    assert_eq!(device["served"], true, "{device:#}");
    assert_eq!(device["served_by"][0]["comm"], "ramdisk", "{device:#}");
    assert_eq!(device["orphaned"], Value::Bool(false), "{device:#}");

    for step in ["del", "gone", "add", "vda-again", "read-again"] {
        run.assert_success(step);
    }
    same(&run, "pattern.md5", "back-again.md5");

    for step in ["mkfs", "fs-write", "fsck", "fs-read"] {
        run.assert_success(step);
    }
    same(&run, "pattern.md5", "fs.md5");
    if mount {
        for step in ["mount", "sync", "umount", "remount"] {
            run.assert_success(step);
        }
        same(&run, "pattern.md5", "mount.md5");
    }

    // Stopped by SIGTERM: exit code 0, nothing left on the bus or under /dev/vduse.
    let log = run.text("server.err");
    assert_eq!(run.rc("server"), 0, "server exit code\n--- its log:\n{log}");
    let out = run.text("server.out");
    assert!(
        out.contains(&format!(
            "READY {NAME} api-version={api_version} vduse-features={features}"
        )),
        "server said: {out}"
    );
    assert!(out.contains("STOPPED"), "server said: {out}");
    assert_eq!(
        run.text("after.vduse")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["control"]
    );
    run.assert_success("after-vdpa");
    assert_eq!(run.out("after-vdpa").trim(), "", "vdpa dev show");

    // The failed start said why and removed the device it had created.
    run.assert_rc("half", 1);
    assert!(
        run.err("half")
            .contains("permission denied opening /dev/vduse/half"),
        "{}",
        run.report("half")
    );
    assert_eq!(
        run.text("after-half.vduse")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["control"]
    );

    // The request path the kernel took, from the server's debug log.
    assert!(!log.contains("ERROR") && !log.contains("panicked"), "{log}");
    assert!(log.contains("SET_STATUS 0xf"), "{log}");
    let ready_requests = log.matches("SET_VQ_READY 0 1").count();
    if features == "0x3" {
        // VDUSE_F_QUEUE_READY: the queue is made ready by request, once per attach.
        assert_eq!(ready_requests, 2, "{log}");
    } else {
        assert!(!log.contains("SET_VQ_READY"), "{log}");
    }
    // The reset on detach was answered, so the second attach found a live device.
    assert!(log.matches("SET_STATUS 0x0").count() >= 2, "{log}");
    // The kernel never marked the device broken.
    run.assert_nothing_broken();
}

#[test]
fn runtime_on_6_12() {
    check("6.12");
}

#[test]
fn runtime_on_7_2() {
    check("7.2");
}

#[test]
fn runtime_on_7_3() {
    check("7.3");
}
