//! `vduse-fs` on the real kernels of the matrix: 7.2 and 7.3 serve it, 6.12 refuses it.
//!
//! One boot per kernel from 7.2 runs, in this order:
//!
//! 1. Without the `vduse` module the server exits 69 saying `modprobe vduse`.
//! 2. The export: a tmpfs at `/srv/export` holding a file, a 64 MiB file of random bytes,
//!    symbolic links that point out of it, and a tmpfs mounted at `sub/`. The server runs
//!    in a mount namespace of its own (`unshare -m`) in which a secret file exists at
//!    `/srv/outside/secret`; the guest's namespace has no such file, so any way the guest
//!    finds the secret through the mount is an escape by the server. It is started from a
//!    YAML file plus flags, under a systemd-like NOTIFY_SOCKET that must get READY=1 only
//!    once the device is on the vdpa bus; the kernel's virtiofs driver finds its tag and
//!    `mount -t virtiofs` mounts it.
//! 3. The sandbox, read from /proc: the filesystem threads (`vduse-fs-N`) are in another
//!    mount namespace than the server's main thread, run under seccomp (mode 2) and keep
//!    exactly the capabilities `KEPT_CAPABILITIES` names.
//! 4. File operations through the mount, each checked on the host's side of the export:
//!    create, append, read, rename, mkdir, rmdir, symlink, hardlink, chmod, truncate,
//!    xattr set/get/remove, fsync, mkfifo and mknod, fallocate, utimes, statfs, unlink
//!    (all under the seccomp filter that kills the server on a call off its list); 400
//!    files in one directory (more than the soft limit of 256 open descriptors the server
//!    starts with, which it raises); and the
//!    FUSE options agreed at INIT (1 MiB requests, parallel direct I/O and lookups).
//! 5. Data: a 64 MiB file written in the guest has the same SHA-256 on the host, and the
//!    host's 64 MiB file the same in the guest (read through the server: the guest's page
//!    cache is dropped first). Four processes write four files and four more write
//!    disjoint ranges of one file at once; all of it reads back right on the host.
//! 6. Submounts: with `announce-submounts`, `sub/` (a host mount point) has a device
//!    number of its own in the guest and its file reads back.
//! 7. Escapes: reading through the links that point out of the export, through `..`
//!    links, and a recursive search of the mount find no trace of the secret.
//! 8. A read-only export of the same directory, holding inodes by file handle (which
//!    rules the namespace out, so the server alone enforces it): creating, writing,
//!    renaming, removing fail with EROFS ("Read-only file system"), reading works, nothing
//!    changes on the host.
//! 9. `--user tester` on a directory tester owns: every thread of the server runs as
//!    tester, the filesystem threads and the queue workers with no capability and the
//!    main thread with CAP_NET_ADMIN only. Files that guest root and guest nobody create
//!    belong to tester on the host (a server that acted as each guest user would fail
//!    nobody's with EPERM); root's private file cannot be read and chown is refused, as
//!    for tester on the host; 400 files (more than the soft limit of 256 open descriptors
//!    it started with; the passthrough reopening them through /proc/self/fd after the
//!    switch) read back. SIGTERM then removes the device and
//!    empties its in-flight log and node journal (tester may not remove them from root's
//!    /run/vduse/fs).
//! 10. Unmount and SIGTERM: exit 0, and no device in `/dev/vduse` or on the vdpa bus.
//!
//! On 6.12 the server exits 69 and says that virtio-fs devices need Linux 7.2 or later,
//! and leaves nothing behind.

use std::time::Duration;

use vduse_tests::{Guest, GuestRun, Kernel};

const FS0_YAML: &str = "\
# Written by tests/tests/fs.rs; --announce-submounts and --xattr come from the command line.
name: fs0
shared-dir: /srv/export
tag: share0
cache: auto
num-request-queues: 2
queue-size: 256
threads: 4
";

/// The capabilities the filesystem threads keep (`sandbox::KEPT_CAPABILITIES`): CHOWN,
/// DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID, SETGID, SETUID, MKNOD, SETFCAP.
const KEPT_CAP_MASK: u64 = 0x1f | 1 << 6 | 1 << 7 | 1 << 27 | 1 << 31;

/// CAP_NET_ADMIN, which the main thread of a server running as `user` keeps.
const CAP_NET_ADMIN: u64 = 1 << 12;

const SECRET: &str = "SECRET-OUTSIDE-THE-EXPORT";

fn scenario() -> String {
    format!(
        r#"
phase() {{
    echo "vduse-fs-test: $* at $(cut -d' ' -f1 /proc/uptime) s"
}}
# op NAME SHELL-TEXT: run SHELL-TEXT in /mnt/v with `set -e`; its result is NAME.
op() {{
    capture "$1" sh -ec "cd /mnt/v; $2"
}}

# --- 1. Without the module.
phase 1 errors
capture no-vduse vduse-fs --name nomod --shared-dir /tmp
capture modprobe sh -c 'modprobe vduse && modprobe virtio_vdpa'

# --- 2. The export, the server in its own namespace, the mount.
phase 2 start
mkdir -p /srv/export /srv/outside /mnt/v /mnt/ro /etc/vduse/fs
mount -t tmpfs export /srv/export
echo from-host >/srv/export/host.txt
dd if=/dev/urandom of=/srv/export/host-64m bs=1M count=64 2>/dev/null
sha256sum </srv/export/host-64m | result host-64m.host.sha
ln -s ../outside/secret /srv/export/rel-link
ln -s /srv/outside/secret /srv/export/abs-link
ln -s .. /srv/export/up
mkdir /srv/export/sub
mount -t tmpfs sub /srv/export/sub
echo in-sub >/srv/export/sub/f
cat >/etc/vduse/fs/fs0.yaml <<'EOF'
{FS0_YAML}EOF
capture check-config vduse-fs --config /etc/vduse/fs/fs0.yaml --check-config
spawn notify notify-listen /run/notify.sock --check /sys/bus/vdpa/devices/fs0
wait_for 60 test -S /run/notify.sock
export NOTIFY_SOCKET=/run/notify.sock
# A soft limit of 256 open files, which the server raises (phase 4).
spawn fs0 unshare -m sh -c 'ulimit -Sn 256 && mount -t tmpfs outside /srv/outside &&
    echo {SECRET} >/srv/outside/secret && cat /srv/outside/secret >/results/secret.server-view &&
    exec vduse-fs --config /etc/vduse/fs/fs0.yaml --announce-submounts --xattr'
unset NOTIFY_SOCKET
capture fs0-ready reap notify
capture fs0-tag wait_for 60 virtiofs_tag share0
capture mount mount -t virtiofs share0 /mnt/v
ls /srv/outside | result secret.guest-view

# --- 3. The sandbox of the filesystem threads.
phase 3 sandbox
pid=$(pidof vduse-fs)
readlink /proc/$pid/ns/mnt | result sandbox.main.ns
for task in /proc/$pid/task/*; do
    case $(cat $task/comm) in
    vduse-fs-[0-9]*)
        echo "$(readlink $task/ns/mnt) $(awk '/^Seccomp:/ {{print $2}}' $task/status) $(awk '/^CapEff:/ {{print $2}}' $task/status) $(awk '/^CapPrm:/ {{print $2}}' $task/status)"
        ;;
    esac
done | result sandbox.threads

# --- 4. File operations, checked on the host side.
phase 4 operations
op create 'echo hello >a.txt; test "$(cat /srv/export/a.txt)" = hello'
op append 'echo more >>a.txt; test "$(cat /srv/export/a.txt | tail -n1)" = more'
op read 'test "$(cat host.txt)" = from-host'
op rename 'mv a.txt b.txt; test -e /srv/export/b.txt; test ! -e /srv/export/a.txt'
op mkdir 'mkdir -p d/e; test -d /srv/export/d/e'
op rmdir 'rmdir d/e d; test ! -e /srv/export/d'
op symlink 'ln -s b.txt sl; test "$(readlink /srv/export/sl)" = b.txt; test "$(head -n1 sl)" = hello'
op hardlink 'ln b.txt hl; test "$(stat -c %h /srv/export/b.txt)" = 2; test "$(stat -c %i /srv/export/hl)" = "$(stat -c %i /srv/export/b.txt)"'
op chmod 'chmod 640 b.txt; test "$(stat -c %a /srv/export/b.txt)" = 640'
op truncate 'truncate -s 3 b.txt; test "$(stat -c %s /srv/export/b.txt)" = 3; test "$(cat b.txt)" = hel'
op xattr 'setfattr -n user.color -v blue b.txt; test "$(getfattr --only-values -n user.color /srv/export/b.txt)" = blue;
    test "$(getfattr --only-values -n user.color b.txt)" = blue; setfattr -x user.color b.txt;
    ! getfattr -n user.color /srv/export/b.txt'
op fsync 'echo durable >f.txt; sync f.txt; sync -d f.txt; test "$(cat /srv/export/f.txt)" = durable'
op mkfifo 'mkfifo fifo; test -p /srv/export/fifo; mknod dev c 1 3; test -c /srv/export/dev; rm fifo dev'
op fallocate 'fallocate -l 1M big; test "$(stat -c %s /srv/export/big)" = 1048576; rm big'
op utimes 'touch -d "2001-02-03 04:05:06" f.txt; test "$(stat -c %Y /srv/export/f.txt)" = "$(stat -c %Y f.txt)";
    test "$(date -d @$(stat -c %Y /srv/export/f.txt) +%Y)" = 2001'
op statfs 'df /mnt/v | grep -q /mnt/v'
op unlink 'rm b.txt hl sl f.txt; test ! -e /srv/export/b.txt; test ! -e /srv/export/hl; test "$(ls /srv/export | tr "\n" " ")" = "abs-link host-64m host.txt rel-link sub up "'

# More files than the soft limit on open descriptors the server started with (256): the
# passthrough holds one per inode the guest remembers, and the server raises its limit.
grep "^Max open files" /proc/$(pidof vduse-fs)/limits | result fs0.limits
op many-files 'mkdir many; i=0; while [ $i -lt 400 ]; do : >many/f$i; i=$((i + 1)); done;
    test "$(ls many | wc -l)" = 400; rm -r many; test ! -e /srv/export/many'

# --- 5. Data both ways, and concurrent writers.
phase 5 data
op guest-64m 'dd if=/dev/urandom of=guest-64m bs=1M count=64 2>/dev/null'
sha256sum </mnt/v/guest-64m | result guest-64m.guest.sha
sha256sum </srv/export/guest-64m | result guest-64m.host.sha
echo 3 >/proc/sys/vm/drop_caches
sha256sum </mnt/v/host-64m | result host-64m.guest.sha
stat -c %s /mnt/v/host-64m /mnt/v/guest-64m | result data.sizes
# 1 MiB each (busybox head knows no size suffix).
for i in 0 1 2 3; do dd if=/dev/urandom of=/tmp/chunk.$i bs=64k count=16 2>/dev/null; done
op concurrent 'for i in 0 1 2 3; do
        dd if=/dev/urandom of=cw.$i bs=64k count=32 2>/dev/null &
        dd if=/tmp/chunk.$i of=shared bs=64k seek=$((i * 16)) conv=notrunc 2>/dev/null &
    done; wait'
for i in 0 1 2 3; do
    echo "$(sha256sum </mnt/v/cw.$i) $(sha256sum </srv/export/cw.$i)"
done | result concurrent.files
cat /tmp/chunk.0 /tmp/chunk.1 /tmp/chunk.2 /tmp/chunk.3 | sha256sum | result concurrent.shared.expected
sha256sum </srv/export/shared | result concurrent.shared.host
stat -c %s /srv/export/shared | result concurrent.shared.size
# Keeps phase 7's recursive search of the mount short.
rm /mnt/v/guest-64m /mnt/v/host-64m /mnt/v/cw.* /mnt/v/shared

# --- 6. Submounts.
phase 6 submounts
# stat does not trigger the automount of its last component: ask for a file inside.
echo "$(stat -c %d /mnt/v/host.txt) $(stat -c %d /mnt/v/sub/f)" | result submount.devices
grep -c " /mnt/v/sub virtiofs " /proc/mounts | result submount.mounts
capture submount-read cat /mnt/v/sub/f

# --- 7. Escapes.
phase 7 escapes
for path in rel-link abs-link up/outside/secret up/srv/outside/secret up/up/secret sub/../../outside/secret; do
    echo "== $path"
    cat "/mnt/v/$path" 2>&1
done | result escape.reads
# Files whose content holds the secret (dangling links are reported on stderr only).
grep -r -l {SECRET} /mnt/v 2>/dev/null | result escape.grep
find /mnt/v -name secret 2>&1 | result escape.find

# --- 8. A read-only export.
phase 8 read-only
# File handles instead of descriptors; they exclude the namespace, so here the read-only
# export is enforced by the server alone (not by a read-only bind mount).
spawn fs1 vduse-fs --name fs1 --tag ro1 --shared-dir /srv/export --read-only --inode-file-handles prefer
capture fs1-tag wait_for 60 virtiofs_tag ro1
capture ro-mount mount -t virtiofs ro1 /mnt/ro
ls -l /srv/export | result ro.before
capture ro-create touch /mnt/ro/new
capture ro-write sh -c 'echo x >>/mnt/ro/host.txt'
capture ro-mkdir mkdir /mnt/ro/dir
capture ro-rename mv /mnt/ro/host.txt /mnt/ro/moved
capture ro-unlink rm /mnt/ro/host.txt
capture ro-chmod chmod 600 /mnt/ro/host.txt
capture ro-read cat /mnt/ro/host.txt
ls -l /srv/export | result ro.after
capture ro-umount umount /mnt/ro
stop fs1

# --- 9. Serving as one user.
phase 9 user
mkdir -p /srv/asuser /mnt/u
chown tester:tester /srv/asuser
# Writable for all, so the guest's own permission check (virtiofs mounts with
# default_permissions) lets nobody create; the host's is then the server's.
chmod 777 /srv/asuser
echo root-only >/srv/asuser/private
chmod 600 /srv/asuser/private
spawn fs2 sh -c 'ulimit -Sn 256 && exec vduse-fs --name fs2 --tag user2 --shared-dir /srv/asuser --user tester'
capture fs2-tag wait_for 60 virtiofs_tag user2
capture fs2-switched wait_for 60 grep -q "serving as user tester" /results/fs2.err
capture user-mount mount -t virtiofs user2 /mnt/u
pid=$(pidof vduse-fs | tr ' ' '\n' | while read p; do grep -q '^Uid:.*1000' /proc/$p/status && echo $p; done)
for task in /proc/$pid/task/*; do
    echo "$(cat $task/comm) $(awk '/^Uid:/ {{print $2 $3 $4 $5}}' $task/status) $(awk '/^Gid:/ {{print $2 $3 $4 $5}}' $task/status) $(awk '/^CapEff:/ {{print $2}}' $task/status) $(awk '/^CapPrm:/ {{print $2}}' $task/status)"
done | result user.threads
capture user-root-creates sh -ec 'echo by-root >/mnt/u/by-root; stat -c "%u %g" /srv/asuser/by-root'
capture user-nobody-creates setpriv --reuid=65534 --regid=65534 --clear-groups \
    sh -ec 'echo by-nobody >/mnt/u/by-nobody; mkdir /mnt/u/dir-by-nobody; stat -c "%u %g" /srv/asuser/by-nobody /srv/asuser/dir-by-nobody'
capture user-reads-private cat /mnt/u/private
capture user-chown chown root /mnt/u/by-root
capture user-many sh -ec 'mkdir /mnt/u/many; i=0; while [ $i -lt 400 ]; do echo $i >/mnt/u/many/f$i; i=$((i + 1)); done;
    echo 3 >/proc/sys/vm/drop_caches; test "$(cat /mnt/u/many/f399)" = 399; rm -r /mnt/u/many'
capture user-umount umount /mnt/u
stop fs2
ls /dev/vduse | result user.after.vduse
# Files in root's /run/vduse/fs that tester may not remove: emptied instead.
stat -c '%n %s' /run/vduse/fs/fs2.* | result user.after.logs

# --- 10. Unmount, SIGTERM, nothing left.
phase 10 stop
capture umount umount /mnt/v
stop fs0
ls /dev/vduse | result after.vduse
capture after-vdpa vdpa dev show
phase end
"#
    )
}

fn boot(series: &str) -> GuestRun {
    let kernel = Kernel::load_with(series, &["vduse", "virtio_vdpa"]);
    let run = Guest::new(&kernel)
        .binary("vduse-fs")
        .binary("notify-listen")
        .host_program("vdpa")
        .host_program("setfattr")
        .host_program("setpriv")
        .host_program("getfattr")
        .memory_mb(1536)
        .modules(&[])
        .timeout(Duration::from_secs(300))
        .script(&scenario())
        .run();
    eprintln!(
        "vduse-fs on {series} ({}): boot took {:.1} s",
        kernel.release(),
        run.elapsed().as_secs_f64()
    );
    run
}

/// The servers this test spawns, whose logs go into failure messages.
const SERVERS: &[&str] = &["fs0", "fs1", "fs2"];

/// The servers' logs, for failure messages.
fn servers(run: &GuestRun) -> String {
    run.logs(SERVERS)
}

#[track_caller]
fn ok(run: &GuestRun, name: &str) {
    run.assert_ok_with(name, SERVERS);
}

#[track_caller]
fn refused_read_only(run: &GuestRun, name: &str) {
    assert_ne!(run.rc(name), 0, "{name} succeeded on a read-only export");
    assert!(
        run.err(name).contains("Read-only file system"),
        "{name}: {}",
        run.report(name)
    );
}

fn check(series: &str) {
    let run = boot(series);

    // 1. Errors.
    run.assert_rc_says("no-vduse", 69, "modprobe vduse");
    run.assert_success("check-config");
    run.assert_out_contains(
        "check-config",
        "configuration OK: device fs0 shares /srv/export as tag \"share0\" (read-write, \
         cache auto, 2 request queues of 256)",
    );
    ok(&run, "modprobe");

    // 2. Started under NOTIFY_SOCKET, tag found, mounted.
    ok(&run, "fs0-ready");
    ok(&run, "fs0-tag");
    ok(&run, "mount");
    assert_eq!(
        run.text("secret.server-view").trim(),
        SECRET,
        "the server sees the secret"
    );
    assert_eq!(
        run.text("secret.guest-view").trim(),
        "",
        "the guest's namespace has no secret"
    );

    // 3. The sandbox.
    let main_ns = run.text("sandbox.main.ns");
    let threads = run.text("sandbox.threads");
    let threads: Vec<Vec<&str>> = threads.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(
        threads.len(),
        4,
        "four filesystem threads: {threads:?}\n{}",
        servers(&run)
    );
    for thread in &threads {
        assert_ne!(
            thread[0],
            main_ns.trim(),
            "own mount namespace: {threads:?}"
        );
        assert_eq!(thread[1], "2", "seccomp filter mode: {threads:?}");
        let effective = u64::from_str_radix(thread[2], 16).unwrap();
        let permitted = u64::from_str_radix(thread[3], 16).unwrap();
        assert_eq!(
            permitted, KEPT_CAP_MASK,
            "permitted capabilities: {threads:?}"
        );
        assert_eq!(
            effective, KEPT_CAP_MASK,
            "effective capabilities: {threads:?}"
        );
    }

    // 4. Operations.
    for name in [
        "create",
        "append",
        "read",
        "rename",
        "mkdir",
        "rmdir",
        "symlink",
        "hardlink",
        "chmod",
        "truncate",
        "xattr",
        "fsync",
        "unlink",
        "many-files",
    ] {
        ok(&run, name);
    }
    // "Max open files  SOFT  HARD  files": raised from 256, past the 400 files.
    let limits = run.text("fs0.limits");
    let soft: u64 = limits
        .split_whitespace()
        .nth(3)
        .and_then(|soft| soft.parse().ok())
        .unwrap_or_else(|| panic!("no soft limit in {limits:?}"));
    assert!(
        soft > 400,
        "the server kept a soft limit of {soft} open files"
    );

    // Requests of up to 1 MiB and parallel direct I/O were agreed at INIT (without them a
    // write reaches the server 4 KiB at a time).
    let log = run.text("fs0.err");
    let agreed = log
        .lines()
        .find(|l| l.contains("out_opts"))
        .unwrap_or_default();
    for option in ["BIG_WRITES", "MAX_PAGES", "ASYNC_DIO", "PARALLEL_DIROPS"] {
        assert!(agreed.contains(option), "{option} not agreed: {agreed}");
    }

    // 5. Data.
    ok(&run, "guest-64m");
    let guest_written = run.text("guest-64m.guest.sha");
    assert_eq!(
        guest_written,
        run.text("guest-64m.host.sha"),
        "guest-written file on the host"
    );
    assert_eq!(
        run.text("host-64m.guest.sha"),
        run.text("host-64m.host.sha"),
        "host file read in the guest"
    );
    assert_eq!(
        run.text("data.sizes")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["67108864", "67108864"],
        "sizes of the 64 MiB files as the guest sees them"
    );
    ok(&run, "concurrent");
    let files = run.text("concurrent.files");
    assert_eq!(files.lines().count(), 4, "{files}");
    for line in files.lines() {
        let sums: Vec<&str> = line.split_whitespace().filter(|w| w.len() == 64).collect();
        assert_eq!(sums.len(), 2, "{line}");
        assert_eq!(
            sums[0], sums[1],
            "a concurrently written file differs: {files}"
        );
    }
    assert_eq!(
        run.text("concurrent.shared.host"),
        run.text("concurrent.shared.expected"),
        "ranges written at once into one file"
    );
    assert_eq!(
        run.text("concurrent.shared.size").trim(),
        "4194304",
        "four 1 MiB ranges written at once into one file"
    );

    // 6. Submounts.
    let devices = run.words("submount.devices");
    assert_eq!(devices.len(), 2, "{devices:?}");
    assert_ne!(
        devices[0], devices[1],
        "sub/ has a device number of its own"
    );
    ok(&run, "submount-read");
    assert_eq!(run.out("submount-read").trim(), "in-sub");

    // 7. Escapes.
    let reads = run.text("escape.reads");
    assert!(!reads.contains(SECRET), "escaped:\n{reads}");
    assert_eq!(reads.matches("==").count(), 6, "{reads}");
    assert!(
        !run.text("escape.grep").contains("/mnt/v"),
        "{}",
        run.text("escape.grep")
    );
    assert_eq!(
        run.text("escape.find").trim(),
        "",
        "a file named secret in the mount"
    );

    // 8. Read-only.
    ok(&run, "fs1-tag");
    ok(&run, "ro-mount");
    for name in [
        "ro-create",
        "ro-write",
        "ro-mkdir",
        "ro-rename",
        "ro-unlink",
        "ro-chmod",
    ] {
        refused_read_only(&run, name);
    }
    ok(&run, "ro-read");
    assert_eq!(run.out("ro-read").trim(), "from-host");
    assert_eq!(
        run.text("ro.before"),
        run.text("ro.after"),
        "the read-only export changed"
    );
    ok(&run, "ro-umount");
    let log = run.text("fs1.err");
    assert!(
        log.contains("no mount namespace for the filesystem: inode-file-handles: prefer"),
        "{log}"
    );
    assert_eq!(run.rc("fs1"), 0, "fs1 exit code\n{}", servers(&run));

    // 9. Serving as tester (uid and gid 1000).
    for name in ["fs2-tag", "fs2-switched", "user-mount"] {
        ok(&run, name);
    }
    let threads = run.text("user.threads");
    let mut fs_threads = 0;
    for line in threads.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 5, "{threads}");
        assert_eq!(
            fields[1..3],
            ["1000100010001000", "1000100010001000"],
            "{threads}"
        );
        let (effective, permitted) = (
            u64::from_str_radix(fields[3], 16).unwrap(),
            u64::from_str_radix(fields[4], 16).unwrap(),
        );
        let expected = if fields[0] == "vduse-fs" {
            CAP_NET_ADMIN
        } else {
            0
        };
        assert_eq!((effective, permitted), (expected, expected), "{threads}");
        fs_threads += usize::from(fields[0].starts_with("vduse-fs-"));
    }
    assert_eq!(fs_threads, 4, "{threads}\n{}", servers(&run));
    ok(&run, "user-root-creates");
    assert_eq!(run.out("user-root-creates").trim(), "1000 1000");
    ok(&run, "user-nobody-creates");
    assert_eq!(
        run.out("user-nobody-creates")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1000", "1000", "1000", "1000"]
    );
    run.assert_rc_says("user-reads-private", 1, "Permission denied");
    run.assert_rc_says("user-chown", 1, "Operation not permitted");
    ok(&run, "user-many");
    ok(&run, "user-umount");
    assert_eq!(run.rc("fs2"), 0, "fs2 exit code\n{}", servers(&run));
    // fs0 still runs.
    assert_eq!(run.words("user.after.vduse"), ["control", "fs0"]);
    assert_eq!(
        run.text("user.after.logs"),
        "/run/vduse/fs/fs2.inflight 0\n/run/vduse/fs/fs2.nodes 0\n"
    );

    // 10. Nothing left.
    ok(&run, "umount");
    assert_eq!(run.rc("fs0"), 0, "fs0 exit code\n{}", servers(&run));
    for server in SERVERS {
        let log = run.text(&format!("{server}.err"));
        assert!(
            !log.contains("[ERROR") && !log.contains("panicked"),
            "{log}"
        );
    }
    assert_eq!(run.words("after.vduse"), ["control"]);
    ok(&run, "after-vdpa");
    assert_eq!(run.out("after-vdpa").trim(), "", "vdpa devices left");
}

#[test]
fn linux_6_12_refuses_with_the_version_needed() {
    let kernel = Kernel::load("6.12");
    let run = Guest::new(&kernel)
        .binary("vduse-fs")
        .modules(&["vduse", "virtio_vdpa"])
        .timeout(Duration::from_secs(60))
        .script(
            "capture fs vduse-fs --name fs0 --shared-dir /tmp\n\
             ls /dev/vduse | result after.vduse\n",
        )
        .run();
    run.assert_rc_says("fs", 69, "Linux 7.2 or later");
    assert!(run.err("fs").contains("fs0"), "{}", run.report("fs"));
    assert_eq!(run.words("after.vduse"), ["control"]);
}

#[test]
fn linux_7_2() {
    check("7.2");
}

#[test]
fn linux_7_3() {
    check("7.3");
}
