//! A `vduse-fs` killed with SIGKILL and started again takes its device over while the
//! guest keeps the share mounted, on the kernels that take virtio-fs devices (7.2, 7.3).
//! One boot per kernel; the share is mounted with `cache: always`, so the guest keeps
//! using the node IDs it learned from the killed server instead of looking names up again.
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
use vduse_tests::{Guest, GuestRun, Kernel};

/// SIGKILLs during the workload.
const KILLS: usize = 5;

fn scenario() -> String {
    format!(
        r#"
phase() {{
    echo "vduse-fs-takeover-test: $* at $(cut -d' ' -f1 /proc/uptime) s"
}}
capture modprobe sh -c 'modprobe vduse && modprobe virtio_vdpa'
mkdir -p /srv/share /mnt/v
mount -t tmpfs share /srv/share
mkdir -p /srv/share/pre/deep
echo deep-data >/srv/share/pre/deep/file
echo soon-moved >/srv/share/pre/moved
SERVER=0
serve() {{
    spawn srv$SERVER vduse-fs --name tkfs --tag tkfs --shared-dir /srv/share --cache always \
        --num-request-queues 2 --threads 4 "$@"
}}
taken_over() {{
    wait_for 60 grep -q "device tkfs: taken over" /results/srv$SERVER.err &&
        wait_for 60 grep -q "serving /srv/share" /results/srv$SERVER.err
}}

# --- 1. Mounted, files held, then SIGKILL.
phase 1 kill
serve
capture tag wait_for 60 virtiofs_tag tkfs
capture mount mount -t virtiofs tkfs /mnt/v
# The journal comes with the filesystem threads, after the device.
capture serving wait_for 60 grep -q "serving /srv/share" /results/srv0.err
ls /run/vduse/fs | result log.files
capture deep-before cat /mnt/v/pre/deep/file
capture moved-before cat /mnt/v/pre/moved
spawn holder sh -c 'exec 3>>/mnt/v/held; echo before >&3;
    while [ ! -e /tmp/go ]; do sleep 0.1; done; echo after >&3'
capture holder-wrote wait_for 30 grep -q before /srv/share/held
kill_server
ls /dev/vduse | result killed.vduse
mv /srv/share/pre/moved /srv/share/pre/elsewhere

# --- 2. Refusals.
phase 2 refusals
mkdir -p /srv/other
capture other vduse-fs --name tkfs --tag tkfs --shared-dir /srv/other --cache always \
    --num-request-queues 2
capture nolog vduse-fs --name tkfs --tag tkfs --shared-dir /srv/share --cache always \
    --num-request-queues 2 --inflight-log none
ls /dev/vduse | result other.vduse

# --- 3. Taken over.
phase 3 take over
serve
capture takeover taken_over
capture served vduse-fs --name tkfs --tag tkfs --shared-dir /srv/share --cache always \
    --num-request-queues 2
capture deep-after cat /mnt/v/pre/deep/file
capture moved-after cat /mnt/v/pre/moved
touch /tmp/go
capture holder-done reap holder
cat /srv/share/held | result held

# --- 4. A workload through {KILLS} kills.
phase 4 workload through {KILLS} kills
fio --directory=/mnt/v --ioengine=psync --rw=randwrite --bsrange=4k-64k --size=24M \
    --fsync=16 --verify=crc32c --do_verify=1 --verify_fatal=1 --output-format=json \
    --name=job0 --name=job1 >/results/fio.out 2>/results/fio.err &
FIO=$!
(
    i=0
    while [ ! -e /tmp/stop ]; do
        d=/mnt/v/loop/d$((i % 10))
        mkdir -p $d || echo "mkdir $i failed"
        echo "file $i" >$d/f$i || echo "write $i failed"
        test "$(cat $d/f$i)" = "file $i" || echo "read $i differs"
        [ $((i % 3)) = 0 ] && {{ rm -f $d/f$i || echo "rm $i failed"; }}
        i=$((i + 1))
    done
    echo $i >/results/loop.count
) >/results/loop.errors 2>&1 &
LOOP=$!
for kill in $(seq {KILLS}); do
    sleep "$(awk -v seed="$kill$(cut -d. -f2 /proc/uptime)" 'BEGIN {{ srand(seed); printf "%.1f", 0.3 + 1.2 * rand() }}')"
    kill -0 $FIO 2>/dev/null && echo "kill $kill during fio" >>/results/kills
    kill_server
    serve
    taken_over || echo "server $SERVER did not take over" >>/results/kills
done
wait $FIO
echo $? >/results/fio.rc
touch /tmp/stop
wait $LOOP
# Every file the loop kept, as the host sees it.
for f in /srv/share/loop/d*/f*; do
    n=${{f##*/f}}
    test "$(cat $f)" = "file $n" || echo "$f: $(cat $f)"
done | result loop.host
ls /srv/share/loop/d*/ | grep -c '^f' | result loop.kept
cat /results/srv*.err | grep "in flight run again" | result replays
cat /results/srv*.err | grep "found again" | result found

# --- 5. Unmount, SIGTERM: nothing left.
phase 5 stop
capture umount umount /mnt/v
stop srv$SERVER
echo "$SERVER" | result last
ls /dev/vduse | result end.vduse
ls /run/vduse/fs | result end.log.files

# --- 6. A server serving as tester, killed and taken over by another serving as tester.
phase 6 as a user
mkdir -p /srv/asuser /mnt/u
chown tester:tester /srv/asuser
serve_as_tester() {{
    spawn usr$1 vduse-fs --name tkus --tag tkus --shared-dir /srv/asuser --cache always \
        --user tester
}}
serve_as_tester 0
capture user-tag wait_for 60 virtiofs_tag tkus
capture user-mount mount -t virtiofs tkus /mnt/u
capture user-switched wait_for 60 grep -q "serving as user tester" /results/usr0.err
spawn uholder sh -c 'exec 3>>/mnt/u/held; echo before >&3;
    while [ ! -e /tmp/ugo ]; do sleep 0.1; done; echo after >&3'
capture uholder-wrote wait_for 30 grep -q before /srv/asuser/held
stop usr0 KILL
serve_as_tester 1
capture user-takeover taken_over_as usr1 tkus tester
threads_of usr1 | result user.threads
touch /tmp/ugo
capture uholder-done reap uholder
cat /srv/asuser/held | result user.held
capture user-create sh -ec 'echo new >/mnt/u/new; stat -c "%u %g" /srv/asuser/held /srv/asuser/new'
capture user-umount umount /mnt/u
stop usr1
ls /dev/vduse | result user.end.vduse
stat -c '%n %s' /run/vduse/fs/tkus.* | result user.end.logs
phase end
"#
    )
}

fn boot(series: &str) -> GuestRun {
    let kernel = Kernel::load_with(series, &["vduse", "virtio_vdpa"]);
    let run = Guest::new(&kernel)
        .binary("vduse-fs")
        .host_program("fio")
        .memory_mb(1024)
        .modules(&[])
        .timeout(Duration::from_secs(300))
        .script(&scenario())
        .run();
    eprintln!(
        "vduse-fs takeover on {series} ({}): boot took {:.1} s",
        kernel.release(),
        run.elapsed().as_secs_f64()
    );
    run
}

fn check(series: &str) {
    let run = boot(series);
    let logs = || format!("{}\n{}", run.logs_of("srv"), run.console_tail(40));
    run.assert_success("modprobe");

    // 1. Mounted with a log and a journal; killed; the device stays.
    run.assert_success("tag");
    run.assert_success("mount");
    run.assert_success("serving");
    assert_eq!(
        run.words("log.files"),
        ["tkfs.inflight", "tkfs.nodes"],
        "{}",
        logs()
    );
    run.assert_success("deep-before");
    run.assert_success("moved-before");
    run.assert_success("holder-wrote");
    assert_eq!(run.rc("srv0"), 137, "srv0 was killed\n{}", logs());
    assert_eq!(run.words("killed.vduse"), ["control", "tkfs"]);

    // 2. Refusals, the device left alone.
    run.assert_rc_says("other", 78, "shared-dir differs");
    run.assert_rc_says("nolog", 78, "keeps no in-flight log");
    assert_eq!(run.words("other.vduse"), ["control", "tkfs"]);

    // 3. Taken over: old node IDs and an old descriptor work; a file moved on the host
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
    assert_eq!(run.text("held"), "before\nafter\n", "{}", logs());
    let srv1 = run.text("srv1.err");
    assert!(
        srv1.contains("1 nodes and 0 open files are gone"),
        "the moved file is the one node lost:\n{srv1}"
    );

    // 4. The workload went through every kill.
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
        "fio failed:\n{}\n{}",
        run.text("fio.err"),
        logs()
    );
    let fio: Value = serde_json::from_str(&run.text("fio.out")).expect("fio's JSON");
    for job in fio["jobs"].as_array().expect("jobs") {
        assert_eq!(job["error"], 0, "{job}");
        assert!(
            job["write"]["io_bytes"].as_u64().unwrap_or(0) >= 24 << 20,
            "{job}"
        );
    }
    assert_eq!(run.text("loop.errors").trim(), "", "{}", logs());
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

    // 5. Nothing left.
    run.assert_success("umount");
    let last = format!("srv{}", run.text("last").trim());
    assert_eq!(run.rc(&last), 0, "{last} exit code\n{}", logs());
    assert_eq!(run.words("end.vduse"), ["control"]);
    assert_eq!(run.text("end.log.files").trim(), "");

    // 6. Taken over as tester.
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

#[test]
fn fs_takeover_on_7_2() {
    check("7.2");
}

#[test]
fn fs_takeover_on_7_3() {
    check("7.3");
}
