//! The probe against fake hosts that behave like the kernels of the support matrix: output
//! snapshots for each profile, exit statuses, requirements, and interruption.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use rustix::io::Errno;
use vduse::fake::{FakeControl, KernelProfile};
use vduse::host::{Holder, Holders, ModuleState, SysfsDevice};
use vduse::uapi::VDUSE_NAME_MAX;
use vduse::vdpa::{ManagementDevice, VdpaDevice};
use vduse::{Control, ControlIoctls};
use vduse_probe::cli::Cli;
use vduse_probe::host::{DynControl, Host, NodeInfo, VdpaView};
use vduse_probe::report::{self, Interrupt, Interrupted, ProbeOptions, Report};
use vduse_probe::{Exit, render};

/// A fake control fd whose state the test can still see after the probe used it.
#[derive(Debug, Clone)]
struct SharedFake(Arc<Mutex<FakeControl>>);

impl ControlIoctls for SharedFake {
    fn get_api_version(&mut self) -> Result<u64, Errno> {
        self.0.lock().unwrap().get_api_version()
    }
    fn set_api_version(&mut self, version: u64) -> Result<(), Errno> {
        self.0.lock().unwrap().set_api_version(version)
    }
    fn get_features(&mut self) -> Result<u64, Errno> {
        self.0.lock().unwrap().get_features()
    }
    fn set_features(&mut self, features: u64) -> Result<(), Errno> {
        self.0.lock().unwrap().set_features(features)
    }
    fn create_dev(&mut self, config: &[u8]) -> Result<(), Errno> {
        self.0.lock().unwrap().create_dev(config)
    }
    fn destroy_dev(&mut self, name: &[u8; VDUSE_NAME_MAX]) -> Result<(), Errno> {
        self.0.lock().unwrap().destroy_dev(name)
    }
}

/// How the fake host looks.
#[derive(Debug, Clone)]
struct FakeHost {
    release: &'static str,
    /// `None`: a kernel without VDUSE.
    profile: Option<KernelProfile>,
    module_loaded: bool,
    root: bool,
    /// The control device is 0666 (a udev rule), so non-root users open it.
    open_control_to_all: bool,
    virtio_vdpa: bool,
    devices: Vec<(SysfsDevice, Option<u32>)>,
    kernel: Arc<Mutex<FakeControl>>,
}

impl FakeHost {
    fn new(profile: Option<KernelProfile>) -> Self {
        let kernel = FakeControl::new(profile.unwrap_or(KernelProfile::Linux6_12));
        Self {
            release: profile.map_or("6.1.0-50-amd64", KernelProfile::release),
            profile,
            module_loaded: profile.is_some(),
            root: true,
            open_control_to_all: false,
            virtio_vdpa: true,
            devices: Vec::new(),
            kernel: Arc::new(Mutex::new(kernel)),
        }
    }

    fn with_devices(mut self) -> Self {
        let device = |name: &str, attached: bool, driver: Option<&str>| SysfsDevice {
            name: name.into(),
            msg_timeout: Some(30),
            bounce_size: Some(64 << 20),
            attached,
            driver: driver.map(Into::into),
            virtio_id: None,
        };
        self.devices = vec![
            (device("disk0", true, Some("virtio_vdpa")), Some(4242)),
            (device("ghost", true, Some("virtio_vdpa")), None),
            (device("spare", false, None), None),
        ];
        self
    }

    fn existing_names(&self) -> Vec<String> {
        self.kernel
            .lock()
            .unwrap()
            .devices
            .iter()
            .cloned()
            .collect()
    }
}

impl Host for FakeHost {
    fn kernel_release(&self) -> String {
        self.release.into()
    }

    fn module_state(&self) -> ModuleState {
        match (self.profile, self.module_loaded) {
            (None, _) => ModuleState::Absent,
            (Some(_), true) => ModuleState::Loaded,
            (Some(_), false) => ModuleState::Available,
        }
    }

    fn config_vdpa_user(&self) -> Option<Option<String>> {
        Some(self.profile.map(|_| "m".to_owned()))
    }

    fn module_loaded(&self, name: &str) -> bool {
        self.module_loaded && (name == "virtio_vdpa") == self.virtio_vdpa && name != "vhost_vdpa"
    }

    fn control_node(&self) -> Option<NodeInfo> {
        (self.profile.is_some() && self.module_loaded).then(|| NodeInfo {
            mode: if self.open_control_to_all {
                0o666
            } else {
                0o600
            },
            uid: 0,
            gid: 0,
            owner: Some("root".into()),
            group: Some("root".into()),
        })
    }

    fn open_control(&self) -> vduse::Result<DynControl> {
        let path = Path::new(vduse::control::CONTROL_PATH);
        if self.control_node().is_none() {
            return Err(match self.profile {
                None => vduse::Error::NoVduseInKernel { path: path.into() },
                Some(_) => vduse::Error::NotLoaded { path: path.into() },
            });
        }
        if !self.root && !self.open_control_to_all {
            return Err(vduse::Error::PermissionDenied { path: path.into() });
        }
        self.kernel.lock().unwrap().cap_net_admin = self.root;
        let fd: Box<dyn ControlIoctls> = Box::new(SharedFake(self.kernel.clone()));
        Control::with_ioctls(fd, path)
    }

    fn vdpa(&self) -> Result<VdpaView, String> {
        if !self.module_loaded {
            return Err(
                "the vdpa bus is not available: the vdpa module is not loaded; load it \
                        with `modprobe vdpa`"
                    .into(),
            );
        }
        Ok(VdpaView {
            management_devices: vec![ManagementDevice {
                bus_name: None,
                name: "vduse".into(),
                supported_classes: (1 << 1) | (1 << 2),
                max_supported_vqs: None,
                supported_features: None,
            }],
            devices: self
                .devices
                .iter()
                .filter(|(d, _)| d.attached)
                .map(|(d, _)| VdpaDevice {
                    name: d.name.clone(),
                    management_device: "vduse".into(),
                    management_bus: None,
                    device_id: 2,
                    vendor_id: 0,
                    max_vqs: 1,
                    max_vq_size: 256,
                    min_vq_size: None,
                })
                .collect(),
        })
    }

    fn sysfs_devices(&self) -> Vec<SysfsDevice> {
        self.devices.iter().map(|(d, _)| d.clone()).collect()
    }

    fn holders(&self, device: &str) -> Holders {
        let pid = self
            .devices
            .iter()
            .find(|(d, _)| d.name == device)
            .and_then(|(_, pid)| *pid);
        let holders = pid
            .map(|pid| Holder {
                pid,
                comm: "vduse-blk".into(),
            })
            .into_iter()
            .collect();
        Holders {
            holders,
            complete: self.root,
        }
    }

    fn process_exists(&self, pid: u32) -> bool {
        pid == 4242
    }

    fn pid(&self) -> u32 {
        1234
    }
}

fn collect(host: &FakeHost) -> Report {
    report::collect(host, &ProbeOptions::default(), &Interrupt::default()).unwrap()
}

fn exit_of(host: &FakeHost, args: &[&str]) -> ExitCode {
    let args = std::iter::once("vduse-probe")
        .chain(args.iter().copied())
        .map(OsString::from);
    let cli = Cli::try_parse_from(args).unwrap();
    vduse_probe::run(&cli, host, &ProbeOptions::default(), &Interrupt::default())
}

fn profiles() -> Vec<(&'static str, FakeHost)> {
    vec![
        ("no-vduse", FakeHost::new(None)),
        ("linux-6.12", FakeHost::new(Some(KernelProfile::Linux6_12))),
        ("linux-7.2", FakeHost::new(Some(KernelProfile::Linux7_2))),
        (
            "linux-7.3",
            FakeHost::new(Some(KernelProfile::Linux7_3)).with_devices(),
        ),
    ]
}

#[test]
fn snapshots_of_each_kernel_profile() {
    for (name, host) in profiles() {
        let report = collect(&host);
        insta::assert_snapshot!(format!("{name}.human"), render::human(&report));
        insta::assert_snapshot!(format!("{name}.json"), render::json(&report));
        insta::assert_snapshot!(format!("{name}.env"), render::env(&report));
        assert!(
            host.existing_names().is_empty(),
            "{name}: a throwaway device was left"
        );
    }
}

#[test]
fn snapshots_without_privilege() {
    let mut host = FakeHost::new(Some(KernelProfile::Linux7_3)).with_devices();
    host.root = false;
    let report = collect(&host);
    insta::assert_snapshot!("linux-7.3-unprivileged.human", render::human(&report));
    insta::assert_snapshot!("linux-7.3-unprivileged.env", render::env(&report));

    // A group given the control device by udev can create block and fs, but not net.
    host.open_control_to_all = true;
    let report = collect(&host);
    insta::assert_snapshot!("linux-7.3-control-group.env", render::env(&report));
}

#[test]
fn module_not_loaded_says_modprobe() {
    let mut host = FakeHost::new(Some(KernelProfile::Linux6_12));
    host.module_loaded = false;
    let report = collect(&host);
    assert_eq!(report.module.state, "available");
    assert!(!report.available);
    assert!(
        report.notes.iter().any(|n| n.contains("modprobe vduse")),
        "{:?}",
        report.notes
    );
    insta::assert_snapshot!("linux-6.12-not-loaded.human", render::human(&report));
}

#[test]
fn not_available_points_to_the_demo() {
    let mut not_loaded = FakeHost::new(Some(KernelProfile::Linux6_12));
    not_loaded.module_loaded = false;
    for host in [FakeHost::new(None), not_loaded] {
        let report = collect(&host);
        assert!(!report.available);
        // Last, after what to do on this host.
        assert_eq!(
            report.notes.last().map(String::as_str),
            Some(report::DEMO_NOTE)
        );
        assert!(report::DEMO_NOTE.contains("`tests/demo`"));
    }
    for (name, host) in profiles().into_iter().skip(1) {
        let report = collect(&host);
        assert!(report.available, "{name}");
        assert!(
            !report.notes.iter().any(|n| n.contains("tests/demo")),
            "{name}: {:?}",
            report.notes
        );
    }
    // Available but not usable (no privilege): no pointer to the demo either.
    let mut user = FakeHost::new(Some(KernelProfile::Linux7_3));
    user.root = false;
    let report = collect(&user);
    assert!(report.available && !report.usable);
    assert!(!report.notes.iter().any(|n| n.contains("tests/demo")));
}

#[test]
fn exit_statuses() {
    let none = FakeHost::new(None);
    let old = FakeHost::new(Some(KernelProfile::Linux6_12));
    let new = FakeHost::new(Some(KernelProfile::Linux7_3));
    let mut user = new.clone();
    user.root = false;
    let code = |exit: Exit| ExitCode::from(exit);

    assert_eq!(exit_of(&none, &[]), code(Exit::Unavailable));
    assert_eq!(exit_of(&new, &[]), code(Exit::Ok));
    assert_eq!(exit_of(&user, &[]), code(Exit::NoPermission));
    assert_eq!(exit_of(&new, &["get", "api-version"]), code(Exit::Ok));
    assert_eq!(
        exit_of(&none, &["get", "api-version"]),
        code(Exit::Unavailable)
    );
    assert_eq!(
        exit_of(&user, &["get", "api-version"]),
        code(Exit::NoPermission)
    );
    assert_eq!(exit_of(&none, &["get", "available"]), code(Exit::Ok));

    let fs_v1 = ["--require", "api-version>=1", "--require", "device=fs"];
    assert_eq!(exit_of(&new, &fs_v1), code(Exit::Ok));
    assert_eq!(exit_of(&old, &fs_v1), code(Exit::Unmet));
    assert_eq!(exit_of(&none, &fs_v1), code(Exit::Unmet));
    assert_eq!(
        exit_of(&new, &["--require", "feature=suspend"]),
        code(Exit::Ok)
    );
    assert_eq!(
        exit_of(&old, &["--require", "feature=suspend"]),
        code(Exit::Unmet)
    );
    assert_eq!(
        exit_of(
            &new,
            &["--require", "vdpa-bus", "--require", "driver=virtio_vdpa"]
        ),
        code(Exit::Ok)
    );
    assert_eq!(
        exit_of(&new, &["--require", "driver=vhost_vdpa"]),
        code(Exit::Unmet)
    );
    assert_eq!(
        exit_of(&new, &["--require", "api-version>>1"]),
        code(Exit::Usage)
    );
}

#[test]
fn get_values() {
    let check = |host: &FakeHost, key: &str, expected: Result<&str, ()>| {
        let report = collect(host);
        let key = <vduse_probe::cli::Key as clap::ValueEnum>::from_str(key, false).unwrap();
        let value = vduse_probe::value(&report, key).map_err(drop);
        assert_eq!(value.as_deref(), expected.as_ref().map(|s| *s), "{key:?}");
    };
    let new = FakeHost::new(Some(KernelProfile::Linux7_3)).with_devices();
    check(&new, "api-version", Ok("1"));
    check(&new, "features", Ok("0x3"));
    check(&new, "feature-names", Ok("queue-ready suspend"));
    check(&new, "device-types", Ok("block net fs"));
    check(&new, "devices", Ok("disk0 ghost spare"));
    check(&new, "orphaned-devices", Ok("ghost"));
    check(&new, "drivers", Ok("virtio_vdpa"));
    let old = FakeHost::new(Some(KernelProfile::Linux6_12));
    check(&old, "api-version", Ok("0"));
    check(&old, "features", Ok("0x0"));
    check(&old, "device-types", Ok("block net"));
    check(&FakeHost::new(None), "api-version", Err(()));
    check(&FakeHost::new(None), "available", Ok("0"));
}

#[test]
fn an_interrupt_mid_probe_leaves_no_device() {
    let host = FakeHost::new(Some(KernelProfile::Linux7_3));
    let interrupt = Interrupt::default();
    let flag = interrupt.0.clone();
    let kernel = host.kernel.clone();
    // Raise the "signal" while the first throwaway device exists.
    let watcher = std::thread::spawn(move || {
        loop {
            if !kernel.lock().unwrap().devices.is_empty() {
                flag.store(15, Ordering::SeqCst);
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let options = ProbeOptions {
        no_create: false,
        hold: Duration::from_secs(30),
    };
    let result = report::collect(&host, &options, &interrupt);
    watcher.join().unwrap();
    assert_eq!(result.unwrap_err(), Interrupted(15));
    assert!(host.existing_names().is_empty());
    let calls = host.kernel.lock().unwrap().calls.clone();
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("CREATE_DEV")).count(),
        1,
        "the probe went on after the signal: {calls:?}"
    );
}

#[test]
fn stale_probe_devices_of_dead_processes_are_removed() {
    let mut host = FakeHost::new(Some(KernelProfile::Linux7_3));
    let stale = |name: &str| SysfsDevice {
        name: name.into(),
        msg_timeout: Some(30),
        bounce_size: None,
        attached: false,
        driver: None,
        virtio_id: None,
    };
    for name in [
        "vduse-probe-999-block",
        "vduse-probe-4242-net",
        "vduse-probe-x",
    ] {
        host.kernel.lock().unwrap().devices.insert(name.into());
        host.devices.push((stale(name), None));
    }
    let report = collect(&host);
    // 999 is dead: removed. 4242 runs: kept. "x" has no pid: not ours to judge.
    assert_eq!(
        host.existing_names(),
        ["vduse-probe-4242-net", "vduse-probe-x"]
    );
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("removed vduse-probe-999-block"))
    );
}

#[test]
fn no_create_leaves_types_unknown_and_creates_nothing() {
    let host = FakeHost::new(Some(KernelProfile::Linux7_3));
    let options = ProbeOptions {
        no_create: true,
        hold: Duration::ZERO,
    };
    let report = report::collect(&host, &options, &Interrupt::default()).unwrap();
    assert_eq!(report.device_types, None);
    assert!(
        !host
            .kernel
            .lock()
            .unwrap()
            .calls
            .iter()
            .any(|c| c.starts_with("CREATE"))
    );
    assert_eq!(report.api_version, Some(1));
}
