//! `vduse-net-null` on the real kernels of the matrix that have VDUSE (6.12, 7.2, 7.3).
//!
//! One boot per kernel runs, in this order, the steps of `tests/scenarios/net/`, each
//! checked by the function of the same name below (after `01-setup.sh`):
//!
//! 1. Without the `vduse` module the server exits 69 saying `modprobe vduse`; without
//!    CAP_NET_ADMIN (root with the capability dropped) it exits 77 naming CAP_NET_ADMIN,
//!    and leaves nothing in `/dev/vduse`.
//! 2. Drop mode, from a YAML file plus a flag (`--mtu 9000` over the file's 1500), under
//!    a systemd-like NOTIFY_SOCKET that must get READY=1 only once the device is on the
//!    vdpa bus: the kernel's virtio_net makes an interface with the configured MAC and
//!    MTU. With IPv6
//!    off the kernel sends nothing by itself, so after `ip link set up` the frames pktgen
//!    sends are all there is: the server's JSON counters (SIGUSR1) count exactly as many
//!    frames and bytes as pktgen sent and as the interface's TX counters say.
//! 3. The link: SIGUSR2 takes the carrier down (the guest's `carrier` reads 0) and up
//!    again.
//! 4. SIGTERM: exit 0, a last JSON line (`"event":"exit"`), and the interface, the
//!    `/dev/vduse` node and the vdpa device are gone.
//! 5. Echo mode: 60-byte, 1514-byte and 9014-byte frames (jumbo frames span several
//!    mergeable receive buffers) come back; the interface's RX counters match the
//!    server's, and every frame sent is either received or counted as dropped by the
//!    server. None may be dropped up to 1514 bytes; at most 5% of the jumbo frames, whose
//!    several receive buffers each a guest slowed by emulation may refill too late. With
//!    `--stats-interval 1` a report comes every second; `--bounce-size 8M` shows in the
//!    device's sysfs `bounce_size`. The echo server runs `--user tester`: once attached,
//!    every thread has tester's ids and only the main thread a capability
//!    (CAP_NET_ADMIN), and SIGTERM still removes the device from /dev/vduse and the bus.
//! 6. Take-over: an echo server killed with SIGKILL leaves its device and interface; a
//!    new one with the same configuration takes the device over ("taken over" in its
//!    log), the interface is the same one, and frames sent then come back. The new
//!    server runs `--user tester`: it takes over as root and then switches, every thread
//!    with tester's ids; at SIGTERM it empties the in-flight log it may not remove.

use std::time::Duration;

use serde_json::Value;
use vduse_tests::{Boot, Guest, GuestRun, Kernel, Scenario, Step, kernel_tests, step};

const NET0_YAML: &str = "\
# Written by tests/scenarios/net/02-errors.sh; --mtu 9000 on the command line overrides mtu.
name: net0
mode: drop
mac: 02:00:00:00:00:10
mtu: 1500
";
const NET0_MAC: &str = "02:00:00:00:00:10";
const ECHO_MAC: &str = "02:00:00:00:00:20";

/// Frames pktgen sends in drop mode, and their size (without the FCS).
const DROP_FRAMES: u64 = 2000;
const DROP_FRAME_SIZE: u64 = 60;

/// Echo mode: frames per size, the sizes, and pktgen's pause after each frame (ns). The
/// pauses give the guest's driver time to refill its receive ring, which is slow under
/// emulation: a 9014-byte frame takes several mergeable buffers, and sent back to back
/// they outrun the refill (the server then counts them as dropped).
const ECHO_FRAMES: u64 = 300;

/// The MAC address of the server that is killed and taken over (phase 6).
const TAKEOVER_MAC: &str = "02:00:00:00:00:30";
const ECHO_SIZES: [u64; 3] = [60, 1514, 9014];
const ECHO_DELAYS_NS: [u64; 3] = [200_000, 500_000, 5_000_000];

const STEPS: &[Step] = &[
    step!("net/01-setup.sh", setup),
    step!("net/02-errors.sh", errors),
    step!("net/03-drop.sh", drop_mode),
    step!("net/04-link.sh", link),
    step!("net/05-sigterm.sh", sigterm),
    step!("net/06-echo.sh", echo_mode),
    step!("net/07-take-over.sh", take_over),
];

fn net(series: &str) {
    let kernel = Kernel::load_with(series, &["vduse", "virtio_vdpa", "virtio_net", "pktgen"]);
    let guest = Guest::new(&kernel)
        .binary("vduse-net-null")
        .binary("notify-listen")
        .host_program("vdpa")
        .host_program("ip")
        .host_program("setpriv")
        .modules(&[])
        .timeout(Duration::from_secs(150));
    let echo_jobs = ECHO_SIZES
        .iter()
        .zip(ECHO_DELAYS_NS)
        .map(|(size, delay)| format!("{size}:{delay}"))
        .collect::<Vec<_>>()
        .join(" ");
    Scenario::new(guest)
        .var("NET0_YAML", NET0_YAML)
        .var("NET0_MAC", NET0_MAC)
        .var("ECHO_MAC", ECHO_MAC)
        .var("TAKEOVER_MAC", TAKEOVER_MAC)
        .var("DROP_FRAMES", DROP_FRAMES)
        .var("DROP_FRAME_SIZE", DROP_FRAME_SIZE)
        .var("ECHO_FRAMES", ECHO_FRAMES)
        .var("ECHO_JOBS", echo_jobs)
        .steps(STEPS)
        .run();
}

kernel_tests!(net: linux_6_12, linux_7_2, linux_7_3);

/// The servers this test spawns, whose logs go into failure messages.
const SERVERS: &[&str] = &["net0", "echo0"];

/// The servers' logs, for failure messages.
fn servers(run: &GuestRun) -> String {
    run.logs(SERVERS)
}

#[track_caller]
fn ok(run: &GuestRun, name: &str) {
    run.assert_ok_with(name, SERVERS);
}

/// The server's JSON lines with `"event": event`.
fn reports(run: &GuestRun, server: &str, event: &str) -> Vec<Value> {
    run.text(&format!("{server}.out"))
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("{server}: not JSON ({e}): {line:?}"))
        })
        .filter(|report| report["event"] == event)
        .collect()
}

/// pktgen's count of frames sent, from its result lines.
#[track_caller]
fn pktgen_sent(run: &GuestRun, name: &str) -> u64 {
    ok(run, name);
    let out = run.out(name);
    assert!(out.contains("Result: OK"), "{name}: {out}");
    // "Result: OK: 12345(c12000+d345) usec, 2000 (60byte,0frags)": the count after ", ".
    out.lines()
        .find(|line| line.starts_with("Result: OK"))
        .and_then(|line| line.split(", ").nth(1))
        .and_then(|part| part.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("{name}: no frame count in pktgen's result: {out}"))
}

/// The helpers only: nothing to check.
fn setup(_: &Boot) {}

fn errors(run: &Boot) {
    // Errors, and the configuration.
    run.assert_rc_says("no-vduse", 69, "modprobe vduse");
    run.assert_success("print-config");
    run.assert_out_contains("print-config", "mtu: 9000\n");
    run.assert_out_contains("print-config", &format!("mac: {NET0_MAC}\n"));
    run.assert_success("check-config");
    run.assert_out_contains("check-config", "configuration OK: device net0 (drop mode");
    ok(run, "modprobe");
    run.assert_rc_says("nocap", 77, "CAP_NET_ADMIN");
    assert_eq!(run.words("nocap.vduse"), ["control"]);
}

fn drop_mode(run: &Boot) {
    // The interface, and the frames pktgen sent, counted by everyone alike.
    ok(run, "net0-up");
    assert_eq!(
        run.text("net0.mac").trim(),
        NET0_MAC,
        "MAC\n{}",
        servers(run)
    );
    assert_eq!(run.text("net0.mtu").trim(), "9000", "MTU\n{}", servers(run));
    ok(run, "net0-link");
    ok(run, "net0-carrier");
    let sent = pktgen_sent(run, "drop-pktgen");
    assert_eq!(sent, DROP_FRAMES);
    let tx_packets = run.number("drop.tx_packets.after") - run.number("drop.tx_packets.before");
    let tx_bytes = run.number("drop.tx_bytes.after") - run.number("drop.tx_bytes.before");
    assert_eq!(
        tx_packets,
        DROP_FRAMES,
        "interface tx_packets\n{}",
        servers(run)
    );
    assert_eq!(
        tx_bytes,
        DROP_FRAMES * DROP_FRAME_SIZE,
        "interface tx_bytes"
    );
    ok(run, "drop-counters");
    let counted = &reports(run, "net0", "signal")[0];
    assert_eq!(counted["device"], "net0");
    assert_eq!(counted["mode"], "drop");
    assert_eq!(
        counted["tx"]["frames"], DROP_FRAMES,
        "server counters: {counted}"
    );
    assert_eq!(
        counted["tx"]["bytes"],
        DROP_FRAMES * DROP_FRAME_SIZE,
        "{counted}"
    );
    assert_eq!(counted["tx"]["errors"], 0, "{counted}");
    assert_eq!(counted["rx"]["frames"], 0, "{counted}");
}

fn link(run: &Boot) {
    // Carrier off and on again.
    ok(run, "link-down");
    ok(run, "link-up");
}

fn sigterm(run: &Boot) {
    // SIGTERM: a last report, and nothing left.
    assert_eq!(run.rc("net0"), 0, "net0 exit code\n{}", servers(run));
    let last = reports(run, "net0", "exit");
    assert_eq!(last.len(), 1, "one exit report\n{}", servers(run));
    assert_eq!(last[0]["tx"]["frames"], DROP_FRAMES);
    assert_eq!(last[0]["link"], "up");
    let log = run.text("net0.err");
    assert!(
        log.contains("link down") && log.contains("link up"),
        "link changes logged:\n{log}"
    );
    assert!(!log.contains("ERROR") && !log.contains("panicked"), "{log}");
    let left: Vec<String> = run.words("net0.after.net");
    assert_eq!(left, ["lo"], "interfaces after net0 stopped");
    assert_eq!(run.words("net0.after.vduse"), ["control"]);
    ok(run, "net0-after-vdpa");
    assert_eq!(run.out("net0-after-vdpa").trim(), "", "vdpa devices left");
}

fn echo_mode(run: &Boot) {
    // Echo: every frame back, of every size, counted alike on both sides.
    ok(run, "echo0-up");
    assert_eq!(
        run.text("echo0.bounce_size").trim(),
        "8388608",
        "--bounce-size 8M"
    );
    ok(run, "echo0-link");
    ok(run, "echo0-carrier");
    let mut rx_before = run.number("echo.rx_packets.before");
    let echoed = reports(run, "echo0", "signal");
    assert_eq!(echoed.len(), ECHO_SIZES.len(), "reports\n{}", servers(run));
    // Running totals of what the server reports (its counters never reset).
    let (mut sent, mut received, mut bytes, mut dropped) = (0, 0, 0, 0);
    for (size, report) in ECHO_SIZES.iter().zip(&echoed) {
        assert_eq!(
            pktgen_sent(run, &format!("echo-pktgen-{size}")),
            ECHO_FRAMES
        );
        ok(run, &format!("echo-counters-{size}"));
        let rx_packets = run.number(&format!("echo.rx_packets.{size}"));
        let context = || {
            format!(
                "{size}-byte frames: {report}\n{}{}",
                servers(run),
                run.text(&format!("echo.link.{size}"))
            )
        };
        sent += ECHO_FRAMES;
        let now_dropped = report["rx"]["dropped"].as_u64().unwrap_or(u64::MAX) - dropped;
        // Every frame is accounted for: received by the guest, or dropped by the server
        // for want of receive buffers; never lost in between, never malformed.
        assert_eq!(report["tx"]["frames"], sent, "{}", context());
        assert_eq!(report["rx"]["errors"], 0, "{}", context());
        assert_eq!(
            rx_packets - rx_before + now_dropped,
            ECHO_FRAMES,
            "{}",
            context()
        );
        assert_eq!(
            report["rx"]["frames"],
            received + rx_packets - rx_before,
            "{}",
            context()
        );
        if *size <= 1514 {
            // One receive buffer per frame: the guest keeps up, nothing may be dropped.
            assert_eq!(now_dropped, 0, "{}", context());
        } else {
            // A jumbo frame takes several mergeable buffers, and a guest slowed by another
            // emulated guest can refill too late for a few: at most 5% may be dropped.
            assert!(now_dropped * 20 <= ECHO_FRAMES, "{}", context());
        }
        received += rx_packets - rx_before;
        bytes += (rx_packets - rx_before) * size;
        dropped += now_dropped;
        assert_eq!(report["rx"]["bytes"], bytes, "{}", context());
        rx_before = rx_packets;
    }
    // --stats-interval 1: a line every second besides those asked for.
    let periodic = reports(run, "echo0", "interval");
    assert!(!periodic.is_empty(), "no periodic report\n{}", servers(run));
    let uptimes: Vec<f64> = periodic
        .iter()
        .map(|r| r["uptime_s"].as_f64().unwrap_or(-1.0))
        .collect();
    for (i, uptime) in uptimes.iter().enumerate() {
        let expected = (i + 1) as f64;
        assert!(
            (expected - 0.1..expected + 0.9).contains(uptime),
            "periodic reports at {uptimes:?} s"
        );
    }
    ok(run, "echo0-switched");
    run.assert_serves_as("echo0.threads", 1000, 1000);
    run.assert_stopped_cleanly("echo0", &["echo0"]);
}

fn take_over(run: &Boot) {
    // Killed, then taken over: the same interface, and it echoes again.
    for step in ["tk0-up", "tk0-link", "tk0-carrier"] {
        run.assert_ok_with(step, &["tk0"]);
    }
    assert_eq!(run.rc("tk0"), 137, "{}", run.logs(&["tk0"]));
    let iface = run.text("tk1.iface");
    assert!(
        run.words("tk0.killed.net")
            .contains(&iface.trim().to_owned()),
        "the interface went with the server: {}",
        run.text("tk0.killed.net")
    );
    for step in ["tk1-takeover", "tk1-pktgen", "tk1-echoed"] {
        run.assert_ok_with(step, &["tk1"]);
    }
    assert_eq!(run.rc("tk1"), 0, "{}", run.logs(&["tk1"]));
    run.assert_ok_with("tk1-switched", &["tk1"]);
    run.assert_serves_as("tk1.threads", 1000, 1000);
    assert_eq!(run.words("tk1.after.vduse"), ["control"]);
    assert_eq!(run.text("tk1.after.log"), "/run/vduse/net/tk0.inflight 0\n");
}
