//! `vduse-net-null` on the real kernels of the matrix that have VDUSE (6.12, 7.2, 7.3).
//!
//! One boot per kernel runs, in this order:
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
use vduse_tests::{Guest, GuestRun, Kernel};

const NET0_YAML: &str = "\
# Written by tests/tests/net.rs; --mtu 9000 on the command line overrides mtu.
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

fn scenario() -> String {
    format!(
        r#"
phase() {{
    echo "vduse-net-test: $* at $(cut -d' ' -f1 /proc/uptime) s"
}}
# The interface virtio_net made for vdpa device $1.
iface_of() {{
    ls /sys/bus/vdpa/devices/"$1"/virtio*/net 2>/dev/null | head -n1 | grep .
}}
stat_of() {{ cat /sys/class/net/"$1"/statistics/"$2"; }}
carrier_is() {{ [ "$(cat /sys/class/net/"$1"/carrier 2>/dev/null)" = "$2" ]; }}
# pktgen IFACE COUNT SIZE DST_MAC DELAY_NS: send COUNT frames of SIZE bytes; prints
# pktgen's result line.
pktgen() {{
    local dev=/proc/net/pktgen/"$1"
    echo rem_device_all >/proc/net/pktgen/kpktgend_0
    echo "add_device $1" >/proc/net/pktgen/kpktgend_0
    echo "count $2" >"$dev"
    echo "pkt_size $3" >"$dev"
    echo "dst_mac $4" >"$dev"
    echo "dst 127.0.0.2" >"$dev"
    echo "delay $5" >"$dev"
    echo "clone_skb 0" >"$dev"
    echo start >/proc/net/pktgen/pgctrl
    grep -A2 '^Result' "$dev"
}}
# counters NAME SIGNAL_COUNT: SIGUSR1 to server NAME, then wait for its SIGNAL_COUNT-th
# "signal" line on stdout.
counters() {{
    kill -USR1 "$(cat /run/vduse-test/"$1".pid)"
    wait_for 60 sh -c "[ \$(grep -c '\"event\":\"signal\"' /results/$1.out) -ge $2 ]"
}}

# --- 1. Errors.
phase 1 errors
capture no-vduse vduse-net-null --name nomod
mkdir -p /etc/vduse/net-null
cat >/etc/vduse/net-null/net0.yaml <<'EOF'
{NET0_YAML}EOF
capture print-config vduse-net-null --config /etc/vduse/net-null/net0.yaml --mtu 9000 --print-config
capture check-config vduse-net-null --config /etc/vduse/net-null/net0.yaml --check-config
capture modprobe sh -c 'for m in vduse virtio_vdpa virtio_net pktgen; do modprobe $m || exit 1; done'
capture nocap setpriv --inh-caps=-net_admin --bounding-set=-net_admin vduse-net-null --name nocap
ls /dev/vduse | result nocap.vduse
# New interfaces get no IPv6, so the kernel sends nothing on them by itself.
echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6

# --- 2. Drop mode.
phase 2 drop
# Under systemd (Type=notify): READY=1 comes once the device is on the vdpa bus.
spawn notify notify-listen /run/notify.sock --check /sys/bus/vdpa/devices/net0
wait_for 60 test -S /run/notify.sock
export NOTIFY_SOCKET=/run/notify.sock
spawn net0 vduse-net-null --config /etc/vduse/net-null/net0.yaml --mtu 9000
unset NOTIFY_SOCKET
capture net0-ready reap notify
capture net0-up wait_for 60 iface_of net0
I=$(iface_of net0)
cat /sys/class/net/$I/address | result net0.mac
cat /sys/class/net/$I/mtu | result net0.mtu
capture net0-link ip link set "$I" up
capture net0-carrier wait_for 60 carrier_is "$I" 1
stat_of "$I" tx_packets | result drop.tx_packets.before
stat_of "$I" tx_bytes | result drop.tx_bytes.before
capture drop-pktgen pktgen "$I" {DROP_FRAMES} {DROP_FRAME_SIZE} {NET0_MAC} 0
stat_of "$I" tx_packets | result drop.tx_packets.after
stat_of "$I" tx_bytes | result drop.tx_bytes.after
capture drop-counters counters net0 1

# --- 3. Link down and up.
phase 3 link
kill -USR2 "$(cat /run/vduse-test/net0.pid)"
capture link-down wait_for 60 carrier_is "$I" 0
kill -USR2 "$(cat /run/vduse-test/net0.pid)"
capture link-up wait_for 60 carrier_is "$I" 1

# --- 4. SIGTERM.
phase 4 SIGTERM
stop net0
ls /sys/class/net | result net0.after.net
ls /dev/vduse | result net0.after.vduse
capture net0-after-vdpa vdpa dev show

# --- 5. Echo mode.
phase 5 echo
spawn echo0 vduse-net-null --name echo0 --mode echo --mac {ECHO_MAC} --mtu 9000 --stats-interval 1 \
    --bounce-size 8M --user tester
capture echo0-up wait_for 60 iface_of echo0
capture echo0-switched wait_for 60 grep -q "serving as user tester" /results/echo0.err
threads_of echo0 | result echo0.threads
cat /sys/class/vduse/echo0/bounce_size | result echo0.bounce_size
E=$(iface_of echo0)
capture echo0-link ip link set "$E" up
capture echo0-carrier wait_for 60 carrier_is "$E" 1
stat_of "$E" rx_packets | result echo.rx_packets.before
n=0
for job in {ECHO_JOBS}; do
    size=${{job%:*}}
    n=$((n + 1))
    capture echo-pktgen-$size pktgen "$E" {ECHO_FRAMES} $size {ECHO_MAC} ${{job#*:}}
    want=$(($(cat /results/echo.rx_packets.before) + n * {ECHO_FRAMES}))
    wait_for 15 sh -c "[ \$(cat /sys/class/net/$E/statistics/rx_packets) -ge $want ]" ||
        echo "vduse-net-test: $size-byte frames: not all came back"
    stat_of "$E" rx_packets | result echo.rx_packets.$size
    stat_of "$E" rx_bytes | result echo.rx_bytes.$size
    ip -s -s link show "$E" | result echo.link.$size
    capture echo-counters-$size counters echo0 $n
done
stop echo0
ls /dev/vduse | result echo0.after.vduse
capture echo0-after-vdpa vdpa dev show

# --- 6. Killed, then taken over.
phase 6 take over
spawn tk0 vduse-net-null --name tk0 --mode echo --mac {TAKEOVER_MAC}
capture tk0-up wait_for 60 iface_of tk0
T=$(iface_of tk0)
capture tk0-link ip link set "$T" up
capture tk0-carrier wait_for 60 carrier_is "$T" 1
kill -KILL "$(cat /run/vduse-test/tk0.pid)"
reap tk0
ls /sys/class/net | result tk0.killed.net
# The new server serves as tester: it takes over as root, then switches.
spawn tk1 vduse-net-null --name tk0 --mode echo --mac {TAKEOVER_MAC} --user tester
capture tk1-takeover wait_for 60 grep -q "device tk0: taken over" /results/tk1.err
capture tk1-switched wait_for 60 grep -q "serving as user tester" /results/tk1.err
threads_of tk1 | result tk1.threads
iface_of tk0 | result tk1.iface
stat_of "$T" rx_packets | result tk1.rx_packets.before
capture tk1-pktgen pktgen "$T" {ECHO_FRAMES} 60 {TAKEOVER_MAC} 0
want=$(($(cat /results/tk1.rx_packets.before) + {ECHO_FRAMES}))
capture tk1-echoed wait_for 30 sh -c "[ \$(cat /sys/class/net/$T/statistics/rx_packets) -ge $want ]"
stop tk1
ls /dev/vduse | result tk1.after.vduse
stat -c '%n %s' /run/vduse/net/tk0.inflight | result tk1.after.log
phase end
"#,
        ECHO_JOBS = ECHO_SIZES
            .iter()
            .zip(ECHO_DELAYS_NS)
            .map(|(size, delay)| format!("{size}:{delay}"))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn boot(series: &str) -> GuestRun {
    let kernel = Kernel::load_with(series, &["vduse", "virtio_vdpa", "virtio_net", "pktgen"]);
    let run = Guest::new(&kernel)
        .binary("vduse-net-null")
        .binary("notify-listen")
        .host_program("vdpa")
        .host_program("ip")
        .host_program("setpriv")
        .modules(&[])
        .timeout(Duration::from_secs(150))
        .script(&scenario())
        .run();
    eprintln!(
        "vduse-net-null on {series} ({}): boot took {:.1} s",
        kernel.release(),
        run.elapsed().as_secs_f64()
    );
    run
}

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

fn check(series: &str) {
    let run = boot(series);

    // 1. Errors, and the configuration.
    run.assert_rc_says("no-vduse", 69, "modprobe vduse");
    run.assert_success("print-config");
    run.assert_out_contains("print-config", "mtu: 9000\n");
    run.assert_out_contains("print-config", &format!("mac: {NET0_MAC}\n"));
    run.assert_success("check-config");
    run.assert_out_contains("check-config", "configuration OK: device net0 (drop mode");
    ok(&run, "modprobe");
    run.assert_rc_says("nocap", 77, "CAP_NET_ADMIN");
    assert_eq!(run.words("nocap.vduse"), ["control"]);

    // 2. The interface, and the frames pktgen sent, counted by everyone alike.
    ok(&run, "net0-up");
    assert_eq!(
        run.text("net0.mac").trim(),
        NET0_MAC,
        "MAC\n{}",
        servers(&run)
    );
    assert_eq!(
        run.text("net0.mtu").trim(),
        "9000",
        "MTU\n{}",
        servers(&run)
    );
    ok(&run, "net0-link");
    ok(&run, "net0-carrier");
    let sent = pktgen_sent(&run, "drop-pktgen");
    assert_eq!(sent, DROP_FRAMES);
    let tx_packets = run.number("drop.tx_packets.after") - run.number("drop.tx_packets.before");
    let tx_bytes = run.number("drop.tx_bytes.after") - run.number("drop.tx_bytes.before");
    assert_eq!(
        tx_packets,
        DROP_FRAMES,
        "interface tx_packets\n{}",
        servers(&run)
    );
    assert_eq!(
        tx_bytes,
        DROP_FRAMES * DROP_FRAME_SIZE,
        "interface tx_bytes"
    );
    ok(&run, "drop-counters");
    let counted = &reports(&run, "net0", "signal")[0];
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

    // 3. Carrier off and on again.
    ok(&run, "link-down");
    ok(&run, "link-up");

    // 4. SIGTERM: a last report, and nothing left.
    assert_eq!(run.rc("net0"), 0, "net0 exit code\n{}", servers(&run));
    let last = reports(&run, "net0", "exit");
    assert_eq!(last.len(), 1, "one exit report\n{}", servers(&run));
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
    ok(&run, "net0-after-vdpa");
    assert_eq!(run.out("net0-after-vdpa").trim(), "", "vdpa devices left");

    // 5. Echo: every frame back, of every size, counted alike on both sides.
    ok(&run, "echo0-up");
    assert_eq!(
        run.text("echo0.bounce_size").trim(),
        "8388608",
        "--bounce-size 8M"
    );
    ok(&run, "echo0-link");
    ok(&run, "echo0-carrier");
    let mut rx_before = run.number("echo.rx_packets.before");
    let echoed = reports(&run, "echo0", "signal");
    assert_eq!(echoed.len(), ECHO_SIZES.len(), "reports\n{}", servers(&run));
    // Running totals of what the server reports (its counters never reset).
    let (mut sent, mut received, mut bytes, mut dropped) = (0, 0, 0, 0);
    for (size, report) in ECHO_SIZES.iter().zip(&echoed) {
        assert_eq!(
            pktgen_sent(&run, &format!("echo-pktgen-{size}")),
            ECHO_FRAMES
        );
        ok(&run, &format!("echo-counters-{size}"));
        let rx_packets = run.number(&format!("echo.rx_packets.{size}"));
        let context = || {
            format!(
                "{size}-byte frames: {report}\n{}{}",
                servers(&run),
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
    let periodic = reports(&run, "echo0", "interval");
    assert!(
        !periodic.is_empty(),
        "no periodic report\n{}",
        servers(&run)
    );
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
    ok(&run, "echo0-switched");
    run.assert_serves_as("echo0.threads", 1000, 1000);
    run.assert_stopped_cleanly("echo0", &["echo0"]);

    // 6. Killed, then taken over: the same interface, and it echoes again.
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

#[test]
fn linux_6_12() {
    check("6.12");
}

#[test]
fn linux_7_2() {
    check("7.2");
}

#[test]
fn linux_7_3() {
    check("7.3");
}
