//! The device runtime (`vduse::runtime`) on the real kernels of the matrix, through the
//! crate's `ramdisk` example (`vduse/examples/ramdisk.rs`), a minimal in-memory virtio-blk
//! server built on it and the template new devices start from: this test keeps it working.
//! `cargo test --workspace` builds it before running the tests; alone, this test needs
//! `cargo build --workspace --examples` first, and fails saying so when it is missing.
//!
//! One boot per kernel, in the steps of `tests/scenarios/runtime/`: the server creates and attaches its device and the kernel's own
//! virtio-blk driver binds to it (`/dev/vda`); data written with O_DIRECT reads back the
//! same; detaching and re-attaching it with iproute2's `vdpa` resets the device and sets
//! DRIVER_OK again, after which the data is still there; a file system made with
//! e2fsprogs checks clean and gives back a file, and mounted it gives it back too; SIGTERM ends the server with exit code 0 and leaves no device behind.
//!
//! The three kernels take the runtime's three paths: 6.12 API version 0 without VDUSE
//! features, 7.2 API version 1 without features, 7.3 API version 1 with queue-ready and
//! suspend (the kernel sends SET_VQ_READY).

use std::time::Duration;

use serde_json::Value;
use vduse_tests::{Boot, Guest, Kernel, Scenario, Step, kernel_tests, step};

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

const STEPS: &[Step] = &[
    step!("runtime/01-start.sh", start),
    step!("runtime/02-data.sh", data),
    step!("runtime/03-fds.sh", fds),
    step!("runtime/04-reattach.sh", reattach),
    step!("runtime/05-filesystem.sh", filesystem),
    step!("runtime/06-stop.sh", stop),
    step!("runtime/07-half-start.sh", half_start),
];

fn runtime(series: &str) {
    // tests/fetch-kernels caches ext4 for every kernel of the matrix: mounting is not
    // optional.
    let modules = ["vduse", "virtio_vdpa", "virtio_blk", "ext4"];
    let kernel = Kernel::load_with(series, &modules);
    let guest = Guest::new(&kernel)
        .example("ramdisk")
        .binary("vduse-probe")
        .host_program("vdpa")
        .host_program("mkfs.ext4")
        .host_program("e2fsck")
        .host_program("debugfs")
        .host_program("setpriv")
        .modules(&modules)
        .timeout(Duration::from_secs(240));
    let run = Scenario::new(guest)
        .var("NAME", NAME)
        .var("SIZE_MIB", SIZE_MIB)
        .steps(STEPS)
        .run();
    eprintln!(
        "runtime on {series} ({}): boot took {:.1} s",
        kernel.release(),
        run.elapsed().as_secs_f64()
    );
    // The kernel never marked the device broken.
    run.assert_nothing_broken();
}

kernel_tests!(runtime: linux_6_12, linux_7_2, linux_7_3);

fn same(run: &Boot, a: &str, b: &str) {
    assert_eq!(
        run.text(a),
        run.text(b),
        "{a} and {b} differ\n--- server log:\n{}\n{}",
        run.text("server.err"),
        run.console_tail(30)
    );
}

fn start(run: &Boot) {
    for step in ["ready", "vda", "probe"] {
        run.assert_success(step);
    }
    assert_eq!(run.text("size").trim(), (SIZE_MIB << 11).to_string());
    assert_eq!(run.text("serial").trim(), "vduse-ramdisk");

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
}

fn data(run: &Boot) {
    for step in ["write", "read", "write-far", "read-far"] {
        run.assert_success(step);
    }
    same(run, "pattern.md5", "back.md5");
    same(run, "pattern.md5", "back-far.md5");
}

fn fds(run: &Boot) {
    let fds = run.text("server.fds");
    let mut domains = 0;
    for line in fds.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags = u32::from_str_radix(fields[2], 8).expect("octal flags");
        assert!(
            flags & 0o2000000 != 0,
            "fd without O_CLOEXEC: {line}\n{fds}"
        );
        domains += usize::from(fields[1].contains("vduse-domain"));
    }
    assert!(fds.contains(&format!("/dev/vduse/{NAME}")), "{fds}");
    // The rings and the bounce region are both in the one domain file.
    assert_eq!(domains, 1, "IOTLB fds kept:\n{fds}");
}

fn reattach(run: &Boot) {
    for step in ["del", "gone", "add", "vda-again", "read-again"] {
        run.assert_success(step);
    }
    same(run, "pattern.md5", "back-again.md5");
}

fn filesystem(run: &Boot) {
    for step in ["mkfs", "fs-write", "fsck", "fs-read"] {
        run.assert_success(step);
    }
    same(run, "pattern.md5", "fs.md5");
    for step in ["mount", "sync", "umount", "remount"] {
        run.assert_success(step);
    }
    same(run, "pattern.md5", "mount.md5");
}

fn stop(run: &Boot) {
    let (api_version, features) = expected(run.series());
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
}

fn half_start(run: &Boot) {
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
}
