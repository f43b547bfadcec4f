//! `vduse-fs` on the real kernels of the matrix: 7.2 and 7.3 serve it, 6.12 refuses it.
//!
//! One boot per kernel from 7.2 runs, in this order, the steps of `tests/scenarios/fs/`,
//! each checked by the function of the same name below (after `01-setup.sh`):
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
//! and leaves nothing behind (`tests/scenarios/fs-refused/`).

use std::time::Duration;

use vduse_tests::{Boot, Guest, GuestRun, Kernel, Scenario, Step, kernel_tests, step};

const FS0_YAML: &str = "\
# Written by tests/scenarios/fs/03-start.sh; --announce-submounts and --xattr come from the command line.
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

const STEPS: &[Step] = &[
    step!("fs/01-setup.sh", setup),
    step!("fs/02-errors.sh", errors),
    step!("fs/03-start.sh", start),
    step!("fs/04-sandbox.sh", sandbox),
    step!("fs/05-operations.sh", operations),
    step!("fs/06-data.sh", data),
    step!("fs/07-submounts.sh", submounts),
    step!("fs/08-escapes.sh", escapes),
    step!("fs/09-read-only.sh", read_only),
    step!("fs/10-as-a-user.sh", as_a_user),
    step!("fs/11-stop.sh", stop),
];

fn fs(series: &str) {
    let kernel = Kernel::load_with(series, &["vduse", "virtio_vdpa"]);
    let guest = Guest::new(&kernel)
        .binary("vduse-fs")
        .binary("notify-listen")
        .host_program("vdpa")
        .host_program("setfattr")
        .host_program("setpriv")
        .host_program("getfattr")
        .memory_mb(1536)
        .modules(&[])
        .timeout(Duration::from_secs(300));
    Scenario::new(guest)
        .var("FS0_YAML", FS0_YAML)
        .var("SECRET", SECRET)
        .steps(STEPS)
        .run();
}

kernel_tests!(fs: linux_7_2, linux_7_3);

/// 6.12's VDUSE takes no virtio-fs devices: the server refuses, naming the version needed.
fn refused(series: &str) {
    let kernel = Kernel::load(series);
    let guest = Guest::new(&kernel)
        .binary("vduse-fs")
        .modules(&["vduse", "virtio_vdpa"])
        .timeout(Duration::from_secs(60));
    Scenario::new(guest)
        .steps(&[step!(
            "fs-refused/01-refused.sh",
            refused_with_the_version_needed
        )])
        .run();
}

kernel_tests!(refused: linux_6_12);

fn refused_with_the_version_needed(run: &Boot) {
    run.assert_rc_says("fs", 69, "Linux 7.2 or later");
    assert!(run.err("fs").contains("fs0"), "{}", run.report("fs"));
    assert_eq!(run.words("after.vduse"), ["control"]);
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

/// `op` only: nothing to check.
fn setup(_: &Boot) {}

fn errors(run: &Boot) {
    // Errors.
    run.assert_rc_says("no-vduse", 69, "modprobe vduse");
    run.assert_success("check-config");
    run.assert_out_contains(
        "check-config",
        "configuration OK: device fs0 shares /srv/export as tag \"share0\" (read-write, \
         cache auto, 2 request queues of 256)",
    );
    ok(run, "modprobe");
}

fn start(run: &Boot) {
    // Started under NOTIFY_SOCKET, tag found, mounted.
    ok(run, "fs0-ready");
    ok(run, "fs0-tag");
    ok(run, "mount");
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
}

fn sandbox(run: &Boot) {
    // The sandbox.
    let main_ns = run.text("sandbox.main.ns");
    let threads = run.text("sandbox.threads");
    let threads: Vec<Vec<&str>> = threads.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(
        threads.len(),
        4,
        "four filesystem threads: {threads:?}\n{}",
        servers(run)
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
}

fn operations(run: &Boot) {
    // Operations.
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
        ok(run, name);
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
}

fn data(run: &Boot) {
    // Data.
    ok(run, "guest-64m");
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
    ok(run, "concurrent");
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
}

fn submounts(run: &Boot) {
    // Submounts.
    let devices = run.words("submount.devices");
    assert_eq!(devices.len(), 2, "{devices:?}");
    assert_ne!(
        devices[0], devices[1],
        "sub/ has a device number of its own"
    );
    ok(run, "submount-read");
    assert_eq!(run.out("submount-read").trim(), "in-sub");
}

fn escapes(run: &Boot) {
    // Escapes.
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
}

fn read_only(run: &Boot) {
    // Read-only.
    ok(run, "fs1-tag");
    ok(run, "ro-mount");
    for name in [
        "ro-create",
        "ro-write",
        "ro-mkdir",
        "ro-rename",
        "ro-unlink",
        "ro-chmod",
    ] {
        refused_read_only(run, name);
    }
    ok(run, "ro-read");
    assert_eq!(run.out("ro-read").trim(), "from-host");
    assert_eq!(
        run.text("ro.before"),
        run.text("ro.after"),
        "the read-only export changed"
    );
    ok(run, "ro-umount");
    let log = run.text("fs1.err");
    assert!(
        log.contains("no mount namespace for the filesystem: inode-file-handles: prefer"),
        "{log}"
    );
    assert_eq!(run.rc("fs1"), 0, "fs1 exit code\n{}", servers(run));
}

fn as_a_user(run: &Boot) {
    // Serving as tester (uid and gid 1000).
    for name in ["fs2-tag", "fs2-switched", "user-mount"] {
        ok(run, name);
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
    assert_eq!(fs_threads, 4, "{threads}\n{}", servers(run));
    ok(run, "user-root-creates");
    assert_eq!(run.out("user-root-creates").trim(), "1000 1000");
    ok(run, "user-nobody-creates");
    assert_eq!(
        run.out("user-nobody-creates")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1000", "1000", "1000", "1000"]
    );
    run.assert_rc_says("user-reads-private", 1, "Permission denied");
    run.assert_rc_says("user-chown", 1, "Operation not permitted");
    ok(run, "user-many");
    ok(run, "user-umount");
    assert_eq!(run.rc("fs2"), 0, "fs2 exit code\n{}", servers(run));
    // fs0 still runs.
    assert_eq!(run.words("user.after.vduse"), ["control", "fs0"]);
    assert_eq!(
        run.text("user.after.logs"),
        "/run/vduse/fs/fs2.inflight 0\n/run/vduse/fs/fs2.nodes 0\n"
    );
}

fn stop(run: &Boot) {
    // Nothing left.
    ok(run, "umount");
    assert_eq!(run.rc("fs0"), 0, "fs0 exit code\n{}", servers(run));
    for server in SERVERS {
        let log = run.text(&format!("{server}.err"));
        assert!(
            !log.contains("[ERROR") && !log.contains("panicked"),
            "{log}"
        );
    }
    assert_eq!(run.words("after.vduse"), ["control"]);
    ok(run, "after-vdpa");
    assert_eq!(run.out("after-vdpa").trim(), "", "vdpa devices left");
}
