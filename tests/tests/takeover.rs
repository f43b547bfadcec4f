//! A `vduse-blk` killed with SIGKILL and started again takes its device over, on the real
//! kernels of the matrix that have VDUSE (6.12, 7.2, 7.3). One boot per kernel:
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
use vduse_tests::{Guest, GuestRun, Kernel};

const CONFIG: &str = "\
# Written by tests/tests/takeover.rs.
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

fn scenario() -> String {
    format!(
        r#"
phase() {{
    echo "vduse-takeover-test: $* at $(cut -d' ' -f1 /proc/uptime) s"
}}
mkdir -p /etc/vduse/blk
cat >/etc/vduse/blk/tk0.yaml <<'EOF'
{CONFIG}EOF
capture modprobe sh -c 'for m in vduse virtio_vdpa virtio_blk; do modprobe $m || exit 1; done'
SERVER=0
# serve: starts server number $SERVER (srvN) for the device.
serve() {{
    spawn srv$SERVER vduse-blk --config /etc/vduse/blk/tk0.yaml
}}

# --- 1. Flush, then SIGKILL.
phase 1 flush then kill
serve
capture up wait_for 60 disk_by_serial vduse-blk-tk0
D=$(disk_by_serial vduse-blk-tk0)
ls /run/vduse/blk | result log.files
dd if=/dev/urandom of=/tmp/flushed bs=1M count=4 2>/dev/null
sha256sum </tmp/flushed | result flushed.sha
capture flushed-write dd if=/tmp/flushed of=/dev/$D bs=1M oflag=direct conv=fsync
kill_server
head -c 4194304 /tmp/tk0.img | sha256sum | result flushed.backing.sha
ls /dev/vduse | result killed.vduse

# --- 2. Refusals.
phase 2 refusals
capture other vduse-blk --config /etc/vduse/blk/tk0.yaml --size 128M
capture other-backing vduse-blk --config /etc/vduse/blk/tk0.yaml --backing /tmp/other.img
capture nolog vduse-blk --config /etc/vduse/blk/tk0.yaml --inflight-log none
ls /dev/vduse | result other.vduse

# --- 3. Taken over.
phase 3 take over
serve
capture takeover wait_for 60 grep -q "device tk0: taken over" /results/srv$SERVER.err
capture served vduse-blk --config /etc/vduse/blk/tk0.yaml
capture flushed-read dd if=/dev/$D of=/tmp/flushed.dev bs=1M count=4 iflag=direct
sha256sum </tmp/flushed.dev | result flushed.dev.sha

# --- 4. fio, verified, through SIGKILLs.
phase 4 fio through {KILLS} kills
fio --filename=/dev/$D --direct=1 --ioengine=libaio --iodepth=16 \
    --rw=randwrite --bsrange=4k-32k --size={FIO_JOB_MIB}M \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --output-format=json \
    --name=cpu0 --cpus_allowed=0 --offset=0 --name=cpu1 --cpus_allowed=1 \
    --offset={FIO_JOB_MIB}M >/results/fio.out 2>/results/fio.err &
FIO=$!
for kill in $(seq {KILLS}); do
    # 0.3 to 1.5 s into each server's life.
    sleep "$(awk -v seed="$kill$(cut -d. -f2 /proc/uptime)" 'BEGIN {{ srand(seed); printf "%.1f", 0.3 + 1.2 * rand() }}')"
    kill -0 $FIO 2>/dev/null && echo "kill $kill during fio" >>/results/kills
    kill_server
    serve
    wait_for 60 grep -q "device tk0: taken over" /results/srv$SERVER.err \
        || echo "server $SERVER did not take over" >>/results/kills
done
wait $FIO
echo $? >/results/fio.rc
cat /results/srv*.err | grep "in flight run again" | result replays

# --- 5. SIGTERM: the device and its log go.
phase 5 SIGTERM
stop srv$SERVER
echo "$SERVER" | result last
ls /dev/vduse | result end.vduse
ls /run/vduse/blk | result end.log.files

# --- 6. A server serving as tester, killed and taken over by another serving as tester.
phase 6 as a user
serve_as_tester() {{
    spawn usr$1 vduse-blk --name tku --backing /tmp/tku.img --size 64M --create \
        --serial vduse-blk-tku --user tester
}}
serve_as_tester 0
capture user-up wait_for 60 disk_by_serial vduse-blk-tku
capture user-switched wait_for 60 grep -q "serving as user tester" /results/usr0.err
U=$(disk_by_serial vduse-blk-tku)
capture user-flushed dd if=/tmp/flushed of=/dev/$U bs=1M oflag=direct conv=fsync
stop usr0 KILL
serve_as_tester 1
capture user-takeover taken_over_as usr1 tku tester
threads_of usr1 | result user.threads
capture user-read dd if=/dev/$U of=/tmp/flushed.user bs=1M count=4 iflag=direct
sha256sum </tmp/flushed.user | result user.read.sha
capture user-write dd if=/tmp/flushed of=/dev/$U bs=1M seek=8 oflag=direct conv=fsync
dd if=/tmp/tku.img bs=1M skip=8 count=4 2>/dev/null | sha256sum | result user.backing.sha
stop usr1
ls /dev/vduse | result user.end.vduse
stat -c '%n %s' /run/vduse/blk/tku.inflight | result user.end.log
phase end
"#
    )
}

fn boot(series: &str) -> GuestRun {
    let kernel = Kernel::load_with(series, &["vduse", "virtio_vdpa", "virtio_blk"]);
    let run = Guest::new(&kernel)
        .binary("vduse-blk")
        .host_program("fio")
        .modules(&[])
        .timeout(Duration::from_secs(300))
        .script(&scenario())
        .run();
    eprintln!(
        "takeover on {series} ({}): boot took {:.1} s",
        kernel.release(),
        run.elapsed().as_secs_f64()
    );
    run
}

fn check(series: &str) {
    let run = boot(series);
    let logs = || format!("{}\n{}", run.logs_of("srv"), run.console_tail(40));
    run.assert_success("modprobe");

    // 1. The flushed write is in the backing file after the kill, the device is still
    // there, and so is its log.
    run.assert_success("up");
    assert_eq!(run.text("log.files").trim(), "tk0.inflight", "{}", logs());
    run.assert_success("flushed-write");
    assert_eq!(
        run.rc("srv0"),
        137,
        "the first server was killed\n{}",
        logs()
    );
    assert_eq!(run.text("flushed.sha"), run.text("flushed.backing.sha"));
    assert_eq!(run.words("killed.vduse"), ["control", "tk0"]);

    // 2. Another configuration is refused and the device left alone; so is a second
    // server while one runs.
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
    run.assert_rc_says("served", 78, "another process serves it");

    // 3. Taken over, with the data.
    run.assert_ok_with("takeover", &["srv1"]);
    run.assert_success("flushed-read");
    assert_eq!(run.text("flushed.sha"), run.text("flushed.dev.sha"));

    // 4. fio went through every kill without an error.
    let kills = run.text("kills");
    assert_eq!(
        kills.lines().filter(|l| l.ends_with("during fio")).count(),
        KILLS,
        "every kill must come while fio runs:\n{kills}\n{}",
        logs()
    );
    assert!(!kills.contains("did not take over"), "{kills}\n{}", logs());
    assert_eq!(
        run.text("fio.rc").trim(),
        "0",
        "fio failed\n{}\n{}",
        run.text("fio.err"),
        logs()
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
        logs()
    );
    let runtimes: Vec<u64> = fio["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|job| job["job_runtime"].as_u64().unwrap_or(0))
        .collect();
    eprintln!(
        "takeover on {series}: {replayed} requests run again over {KILLS} kills; fio jobs ran \
         {runtimes:?} ms"
    );

    // 5. SIGTERM: exit 0, no device, no log.
    let last = format!("srv{}", run.text("last").trim());
    assert_eq!(run.rc(&last), 0, "{}", logs());
    assert_eq!(run.words("end.vduse"), ["control"], "{}", logs());
    assert_eq!(run.text("end.log.files").trim(), "", "{}", logs());

    // 6. Taken over as tester.
    let user_logs = || format!("{}\n{}", run.logs_of("usr"), run.console_tail(40));
    for name in ["user-up", "user-switched", "user-flushed"] {
        run.assert_ok_with(name, &["usr0"]);
    }
    assert_eq!(run.rc("usr0"), 137, "usr0 was killed\n{}", user_logs());
    run.assert_ok_with("user-takeover", &["usr1"]);
    run.assert_serves_as("user.threads", 1000, 1000);
    run.assert_ok_with("user-read", &["usr1"]);
    assert_eq!(run.text("user.read.sha"), run.text("flushed.sha"));
    run.assert_ok_with("user-write", &["usr1"]);
    assert_eq!(run.text("user.backing.sha"), run.text("flushed.sha"));
    assert_eq!(run.rc("usr1"), 0, "usr1 exit code\n{}", user_logs());
    assert_eq!(run.words("user.end.vduse"), ["control"], "{}", user_logs());
    assert_eq!(
        run.text("user.end.log"),
        "/run/vduse/blk/tku.inflight 0\n",
        "{}",
        user_logs()
    );
    assert!(!run.dmesg().contains("broken"), "{}", run.dmesg());
}

#[test]
fn takeover_on_6_12() {
    check("6.12");
}

#[test]
fn takeover_on_7_2() {
    check("7.2");
}

#[test]
fn takeover_on_7_3() {
    check("7.3");
}
