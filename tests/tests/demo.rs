//! `tests/demo`, run as a person runs it (the script itself: it builds, then boots Linux
//! 7.3 with the harness), with the binaries of this test's profile (`--debug` for a debug
//! build), and what its transcript shows, step by step:
//!
//! 1. `vduse-probe` says `available: yes`, with block, net and fs devices.
//! 2. vduse-blk's disk gets ext4; after an unmount and a mount, `ls -l` lists the file
//!    written before and `cat` shows its text; `df` shows the disk mounted.
//! 3. Through the vduse-fs share, `ls -l` lists the file made on the host side and `cat`
//!    shows its text; the file written through the share is in the host directory.
//! 4. `ip -s link` counts as many frames and bytes sent as the pings sent, and
//!    vduse-net-null's own counters (its JSON line at SIGUSR1) the same.
//! 5. `vduse-probe` again lists the three devices, attached and served.
//! 6. Each server exits with status 0 at SIGTERM, and no device is left.
//!
//! The demo exits 0 and says that all steps worked, and the boot and steps take less than
//! a minute.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The transcript: each `$ COMMAND` line with the lines that follow it up to the next
/// command, step heading (`== `) or line of the demo's own (`demo: `).
struct Transcript {
    text: String,
    entries: Vec<(String, String)>,
}

impl Transcript {
    fn parse(text: &str) -> Transcript {
        let mut entries: Vec<(String, String)> = Vec::new();
        let mut current: Option<(String, String)> = None;
        for line in text.lines() {
            if let Some(command) = line.strip_prefix("$ ") {
                entries.extend(current.take());
                current = Some((command.to_string(), String::new()));
            } else if line.starts_with("== ") || line.starts_with("demo: ") {
                entries.extend(current.take());
            } else if let Some((_, output)) = current.as_mut() {
                output.push_str(line);
                output.push('\n');
            }
        }
        entries.extend(current);
        Transcript {
            text: text.to_string(),
            entries,
        }
    }

    /// Where `command` first appears.
    #[track_caller]
    fn position(&self, command: &str) -> usize {
        self.entries
            .iter()
            .position(|(c, _)| c == command)
            .unwrap_or_else(|| panic!("the transcript has no command {command:?}\n{}", self.text))
    }

    /// The output of the first `command`.
    #[track_caller]
    fn output(&self, command: &str) -> &str {
        &self.entries[self.position(command)].1
    }

    /// The output of the `nth` (from 0) `command`.
    #[track_caller]
    fn nth_output(&self, command: &str, nth: usize) -> &str {
        self.entries
            .iter()
            .filter(|(c, _)| c == command)
            .nth(nth)
            .map(|(_, output)| output.as_str())
            .unwrap_or_else(|| panic!("no {command:?} number {nth}\n{}", self.text))
    }
}

/// The value of a `  key:   value` line of vduse-probe's report.
#[track_caller]
fn probe_field<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .lines()
        .find_map(|line| line.trim().strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key:?} in the probe's report:\n{report}"))
}

/// The `TX:` counters of `ip -s link show` as (packets, bytes).
#[track_caller]
fn ip_tx(output: &str) -> (u64, u64) {
    let lines: Vec<&str> = output.lines().collect();
    let at = lines
        .iter()
        .position(|line| line.trim_start().starts_with("TX:"))
        .unwrap_or_else(|| panic!("no TX: line in\n{output}"));
    let header: Vec<&str> = lines[at].split_whitespace().skip(1).collect();
    let values: Vec<u64> = lines
        .get(at + 1)
        .map(|line| {
            line.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let get = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| values.get(i).copied())
            .unwrap_or_else(|| panic!("no TX {name} in\n{output}"))
    };
    (get("packets"), get("bytes"))
}

#[test]
fn the_demo_shows_each_tool_at_work() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace");
    let mut demo = Command::new(root.join("tests/demo"));
    if cfg!(debug_assertions) {
        demo.arg("--debug");
    }
    let output = demo.output().expect("cannot run tests/demo");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let all = format!("--- stdout:\n{stdout}\n--- stderr:\n{stderr}");
    assert!(
        output.status.success(),
        "tests/demo: {}\n{all}",
        output.status
    );
    assert!(
        stdout.trim_end().ends_with(
            "demo: all 6 steps worked; every server stopped cleanly and removed its device"
        ),
        "{all}"
    );
    let t = Transcript::parse(&stdout);

    // 1. The probe.
    let report = t.nth_output("vduse-probe", 0);
    assert_eq!(probe_field(report, "available"), "yes", "{report}");
    assert_eq!(
        probe_field(report, "device types"),
        "block: yes, net: yes, fs: yes",
        "{report}"
    );

    // 2. ext4 on the vduse-blk disk, read back after a remount.
    let started = t.output("vduse-blk --name demo0 --backing /tmp/demo0.img --size 64M --create &");
    assert!(
        started.contains("serving /tmp/demo0.img as VDUSE block device demo0"),
        "{started}"
    );
    let disk = t
        .output("ls /sys/bus/vdpa/devices/demo0/virtio*/block")
        .trim();
    assert!(disk.starts_with("vd"), "the disk: {disk:?}");
    t.position(&format!("mkfs.ext4 -q /dev/{disk}"));
    let remount = t.position(&format!("umount /mnt/disk && mount /dev/{disk} /mnt/disk"));
    let written = t.position("echo 'written through vduse-blk' >/mnt/disk/hello.txt");
    let listed = t.position("ls -l /mnt/disk");
    assert!(written < remount && remount < listed, "{stdout}");
    let listing = t.output("ls -l /mnt/disk");
    assert!(
        listing.lines().any(|l| l.ends_with(" hello.txt")),
        "{listing}"
    );
    assert_eq!(
        t.output("cat /mnt/disk/hello.txt").trim(),
        "written through vduse-blk"
    );
    let df = t.output("df -h /mnt/disk");
    assert!(
        df.lines()
            .any(|l| l.starts_with(&format!("/dev/{disk} ")) && l.ends_with(" /mnt/disk")),
        "{df}"
    );

    // 3. The vduse-fs share, both ways.
    let share = t.output("ls -l /mnt/share");
    assert!(
        share.lines().any(|l| l.ends_with(" from-host.txt")),
        "the share lacks the host's file:\n{share}"
    );
    assert_eq!(
        t.output("cat /mnt/share/from-host.txt").trim(),
        "made on the host side"
    );
    let host_side = t.output("ls -l /srv/share");
    assert!(
        host_side.lines().any(|l| l.ends_with(" from-mount.txt")),
        "the host directory lacks the file written through the share:\n{host_side}"
    );

    // 4. The interface's counters and the server's.
    let ifname = t
        .output("ls /sys/bus/vdpa/devices/null0/virtio*/net")
        .trim();
    assert!(!ifname.is_empty(), "no interface\n{stdout}");
    let ping = t.output("ping -c 3 -i 0.2 -W 1 192.0.2.2");
    assert!(ping.contains("3 packets transmitted"), "{ping}");
    let (packets, bytes) = ip_tx(t.output(&format!("ip -s link show {ifname}")));
    assert_eq!(
        packets, 3,
        "frames the interface sent: only the pings\n{stdout}"
    );
    let signal = t.output("kill -USR1 $(pidof vduse-net-null)");
    let counters: Value = signal
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON counters after SIGUSR1:\n{signal}"));
    assert_eq!(counters["device"], "null0", "{counters}");
    assert_eq!(counters["tx"]["frames"], packets, "{counters}");
    assert_eq!(counters["tx"]["bytes"], bytes, "{counters}");
    assert!(bytes > 0, "{counters}");

    // 5. The probe again, with the three devices.
    let report = t.nth_output("vduse-probe", 1);
    assert_eq!(probe_field(report, "devices"), "3", "{report}");
    for (name, kind, server) in [
        ("demo0", "block", "vduse-blk["),
        ("share0", "fs", "vduse-fs["),
        ("null0", "net", "vduse-net-null["),
    ] {
        let row: Vec<&str> = report
            .lines()
            .map(str::split_whitespace)
            .map(Iterator::collect)
            .find(|words: &Vec<&str>| words.first() == Some(&name))
            .unwrap_or_else(|| panic!("no device {name} in\n{report}"));
        assert_eq!(row[1..4], [kind, "yes", "virtio_vdpa"], "{report}");
        assert!(row[4].starts_with(server), "{report}");
    }

    // 6. Stopped cleanly, nothing left.
    for server in ["vduse-blk", "vduse-fs", "vduse-net-null"] {
        let stopped = t.output(&format!("kill $(pidof {server})"));
        assert!(
            stopped.contains(&format!("# {server} exited with status 0")),
            "{stopped}"
        );
    }
    assert_eq!(t.output("ls /dev/vduse").trim(), "control");
    assert_eq!(t.output("ls /sys/bus/vdpa/devices | wc -l").trim(), "0");

    // Well under a minute once the kernel is cached and the binaries built.
    let guest_s: u64 = stderr
        .lines()
        .find_map(|l| l.split("boot and steps ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no timing in\n{stderr}"));
    eprintln!("tests/demo: boot and steps took {guest_s} s");
    assert!(guest_s < 60, "the demo's guest took {guest_s} s\n{all}");
}
