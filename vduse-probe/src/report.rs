//! What the probe finds out, and how it finds it out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use vduse::device_config::{VIRTIO_BLK_CONFIG_SIZE, VIRTIO_FS_CONFIG_SIZE, VIRTIO_NET_CONFIG_SIZE};
use vduse::host::ModuleState;
use vduse::vdpa::VDUSE_MANAGEMENT_DEVICE;
use vduse::{DeviceConfig, DeviceType, Error};

use crate::host::{DynControl, Host};

/// Version of the JSON and env output schema. Raised when a key changes meaning or goes
/// away; new keys may appear without a change.
pub const SCHEMA_VERSION: u32 = 1;

/// Prefix of the throwaway devices the probe creates: `vduse-probe-PID-TYPE`.
pub const PROBE_DEVICE_PREFIX: &str = "vduse-probe-";

/// The vdpa drivers the probe reports on.
pub use vduse::vdpa::VDPA_DRIVERS;

/// The last note when VDUSE is not available: where to see it work anyway (README.md,
/// "See it work").
pub const DEMO_NOTE: &str = "to see VDUSE at work without it here: `tests/demo` in the \
    vduse-rs sources boots a Debian kernel that has it under QEMU and runs these tools there \
    (README.md, \"See it work\")";

/// Everything the probe reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// This tool's version.
    pub probe_version: String,
    /// `uname -r`.
    pub kernel_release: String,
    /// VDUSE is present: the module is loaded and the control device exists.
    pub available: bool,
    /// The caller can use the control device.
    pub usable: bool,
    /// The `vduse` module.
    pub module: ModuleReport,
    /// The control device.
    pub control: ControlReport,
    /// The kernel's maximum VDUSE API version; `null` when it could not be asked.
    pub api_version: Option<u64>,
    /// The kernel's VDUSE feature bits; `null` when they could not be asked.
    pub features: Option<Features>,
    /// The device types the kernel accepts; `null` when not probed.
    pub device_types: Option<Vec<String>>,
    /// The result of probing each device type.
    pub device_type_results: BTreeMap<String, TypeResult>,
    /// The vdpa bus.
    pub vdpa_bus: VdpaBusReport,
    /// Existing VDUSE devices.
    pub devices: Vec<DeviceReport>,
    /// Which answers need more privilege than the caller has.
    pub needs_privilege: Vec<String>,
    /// Problems found, each with what to do.
    pub notes: Vec<String>,
}

/// The `vduse` module.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleReport {
    /// `loaded`, `available` (installed, not loaded) or `absent`.
    pub state: String,
    /// `CONFIG_VDPA_USER` (`y`, `m`, `not set`), `null` when no kernel config was found.
    pub config: Option<String>,
}

/// The control device.
#[derive(Debug, Clone, Serialize)]
pub struct ControlReport {
    /// Its path.
    pub path: String,
    /// Whether the node exists.
    pub present: bool,
    /// Permission bits in octal, e.g. `0600`.
    pub mode: Option<String>,
    /// Owner as `user:group` (names, or numbers where no name is known).
    pub owner: Option<String>,
    /// Whether this caller could open it read-write.
    pub usable: bool,
    /// Why it could not be used.
    pub error: Option<String>,
}

/// VDUSE feature bits.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Features {
    /// The bits in hex, e.g. `0x3`.
    pub bits: String,
    /// The bits as a number.
    pub value: u64,
    /// The name of each bit set (`bit N` when unknown), lowest first.
    pub names: Vec<String>,
}

impl Features {
    /// Describes `value`.
    pub fn new(value: u64) -> Self {
        Self {
            bits: format!("{value:#x}"),
            value,
            names: vduse::feature_names(value),
        }
    }
}

/// What creating a throwaway device of one type found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", tag = "result", content = "detail")]
pub enum TypeResult {
    /// The kernel created it.
    Supported,
    /// The kernel refused it (EINVAL).
    Unsupported,
    /// The caller lacks a privilege (net needs CAP_NET_ADMIN).
    NotPermitted(String),
    /// Not probed, and why.
    Unknown(String),
    /// Another failure.
    Error(String),
}

impl TypeResult {
    /// `supported`, `unsupported`, `not-permitted`, `unknown` or `error`.
    pub fn name(&self) -> &'static str {
        match self {
            TypeResult::Supported => "supported",
            TypeResult::Unsupported => "unsupported",
            TypeResult::NotPermitted(_) => "not-permitted",
            TypeResult::Unknown(_) => "unknown",
            TypeResult::Error(_) => "error",
        }
    }
}

/// The vdpa bus.
#[derive(Debug, Clone, Serialize)]
pub struct VdpaBusReport {
    /// The vdpa generic netlink family exists (the `vdpa` module is loaded).
    pub available: bool,
    /// The `vduse` management device exists.
    pub management_device: bool,
    /// Device classes the `vduse` management device advertises.
    pub management_classes: Vec<String>,
    /// Whether each vdpa bus driver is loaded.
    pub drivers: BTreeMap<String, bool>,
    /// Why the bus could not be asked.
    pub error: Option<String>,
}

/// An existing VDUSE device.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    /// Its name.
    pub name: String,
    /// `block`, `net`, `fs`, `id N` for other ids; `null` while not attached (the kernel
    /// shows the type only through the vdpa bus).
    #[serde(rename = "type")]
    pub device_type: Option<String>,
    /// On the vdpa bus.
    pub attached: bool,
    /// Driver bound on the vdpa bus.
    pub driver: Option<String>,
    /// Seconds the kernel waits for each answer before breaking the device.
    pub msg_timeout: Option<u64>,
    /// Bounce buffer size in bytes.
    pub bounce_size: Option<u64>,
    /// Whether a process holds its node open; `null` when that cannot be seen.
    pub served: Option<bool>,
    /// The processes holding its node.
    pub served_by: Vec<Holder>,
    /// Attached but served by nobody: I/O to it hangs. `null` when that cannot be seen.
    pub orphaned: Option<bool>,
}

/// A process holding a device node.
#[derive(Debug, Clone, Serialize)]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// Command name.
    pub comm: String,
}

/// How the probe runs.
#[derive(Debug, Clone, Default)]
pub struct ProbeOptions {
    /// Do not create throwaway devices.
    pub no_create: bool,
    /// Keep each throwaway device this long (a testing aid for interruption).
    pub hold: Duration,
}

/// Set by a signal handler to the number of the signal that asked the probe to stop.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(pub Arc<AtomicUsize>);

impl Interrupt {
    /// The signal received, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            sig => Some(sig as i32),
        }
    }
}

/// The probe was interrupted; every throwaway device is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted(pub i32);

/// Runs every check.
pub fn collect(
    host: &dyn Host,
    options: &ProbeOptions,
    interrupt: &Interrupt,
) -> Result<Report, Interrupted> {
    let release = host.kernel_release();
    let module_state = host.module_state();
    let config = host
        .config_vdpa_user()
        .map(|value| value.unwrap_or_else(|| "not set".into()));
    let node = host.control_node();
    let mut report = Report {
        schema: SCHEMA_VERSION,
        probe_version: env!("CARGO_PKG_VERSION").to_owned(),
        kernel_release: release,
        available: module_state == ModuleState::Loaded && node.is_some(),
        usable: false,
        module: ModuleReport {
            state: module_state.name().to_owned(),
            config,
        },
        control: ControlReport {
            path: vduse::control::CONTROL_PATH.to_owned(),
            present: node.is_some(),
            mode: node.as_ref().map(|n| format!("{:04o}", n.mode)),
            owner: node.as_ref().map(|n| {
                let user = n.owner.clone().unwrap_or_else(|| n.uid.to_string());
                let group = n.group.clone().unwrap_or_else(|| n.gid.to_string());
                format!("{user}:{group}")
            }),
            usable: false,
            error: None,
        },
        api_version: None,
        features: None,
        device_types: None,
        device_type_results: BTreeMap::new(),
        vdpa_bus: vdpa_bus(host),
        devices: Vec::new(),
        needs_privilege: Vec::new(),
        notes: Vec::new(),
    };

    match host.open_control() {
        Ok(mut control) => {
            report.usable = true;
            report.control.usable = true;
            report.api_version = Some(control.kernel_api_version());
            report.features = Some(Features::new(control.kernel_features()));
            remove_stale_probe_devices(host, &mut control, &mut report);
            probe_device_types(host, &mut control, options, interrupt, &mut report)?;
        }
        Err(err) => {
            let unknown = TypeResult::Unknown(err.to_string());
            for t in DeviceType::ALL {
                report
                    .device_type_results
                    .insert(t.name().to_owned(), unknown.clone());
            }
            if err.is_permission() {
                report
                    .needs_privilege
                    .extend(["api_version", "features", "device_types"].map(String::from));
            }
            report.control.error = Some(err.to_string());
            report.notes.push(err.to_string());
        }
    }

    report.devices = devices(host, &report.vdpa_bus, &mut report.notes);
    if report.devices.iter().any(|d| d.served.is_none()) {
        report.needs_privilege.push("devices.served".to_owned());
    }
    if report.available && !report.vdpa_bus.available {
        report.notes.push(
            "the vdpa bus is not available: load it with `modprobe vdpa` (devices cannot be \
             attached without it)"
                .to_owned(),
        );
    }
    if report.available && !report.vdpa_bus.drivers.values().any(|&loaded| loaded) {
        report.notes.push(
            "no vdpa bus driver is loaded: `modprobe virtio_vdpa` lets this host's own virtio \
             drivers use VDUSE devices; `modprobe vhost_vdpa` hands them to VMs"
                .to_owned(),
        );
    }
    if !report.available {
        report.notes.push(DEMO_NOTE.to_owned());
    }
    Ok(report)
}

fn vdpa_bus(host: &dyn Host) -> VdpaBusReport {
    let drivers = VDPA_DRIVERS
        .iter()
        .map(|d| ((*d).to_owned(), host.module_loaded(d)))
        .collect();
    match host.vdpa() {
        Ok(view) => {
            let vduse = view
                .management_devices
                .iter()
                .find(|m| m.name == VDUSE_MANAGEMENT_DEVICE && m.bus_name.is_none());
            VdpaBusReport {
                available: true,
                management_device: vduse.is_some(),
                management_classes: vduse
                    .map(|m| {
                        let mut ids = m.supported_device_ids();
                        // List known types in the order the rest of the report uses.
                        ids.sort_by_key(|&id| {
                            DeviceType::ALL
                                .iter()
                                .position(|t| t.virtio_id() == id)
                                .unwrap_or(99)
                        });
                        ids.into_iter().map(type_name).collect()
                    })
                    .unwrap_or_default(),
                drivers,
                error: None,
            }
        }
        Err(error) => VdpaBusReport {
            available: false,
            management_device: false,
            management_classes: Vec::new(),
            drivers,
            error: Some(error),
        },
    }
}

fn type_name(id: u32) -> String {
    DeviceType::from_virtio_id(id).map_or_else(|| format!("id {id}"), |t| t.name().to_owned())
}

/// A throwaway device of each type, created and destroyed at once.
fn probe_config(name: String, device_type: DeviceType) -> DeviceConfig {
    let (vq_num, config_size) = match device_type {
        DeviceType::Block => (1, VIRTIO_BLK_CONFIG_SIZE),
        DeviceType::Net => (2, VIRTIO_NET_CONFIG_SIZE),
        DeviceType::Fs => (2, VIRTIO_FS_CONFIG_SIZE),
    };
    let mut config = DeviceConfig::new(name, device_type, vq_num);
    config.config = vec![0; config_size];
    config
}

fn probe_device_types(
    host: &dyn Host,
    control: &mut DynControl,
    options: &ProbeOptions,
    interrupt: &Interrupt,
    report: &mut Report,
) -> Result<(), Interrupted> {
    if options.no_create {
        for t in DeviceType::ALL {
            let skipped = TypeResult::Unknown("not probed (--no-create)".into());
            report
                .device_type_results
                .insert(t.name().to_owned(), skipped);
        }
        return Ok(());
    }
    let mut supported = Vec::new();
    for t in DeviceType::ALL {
        if let Some(sig) = interrupt.signal() {
            return Err(Interrupted(sig));
        }
        let name = format!("{PROBE_DEVICE_PREFIX}{}-{t}", host.pid());
        let result = match control.create_device(&probe_config(name.clone(), t)) {
            Ok(()) => {
                hold(options.hold, interrupt);
                if let Err(err) = destroy_with_retry(control, &name) {
                    report.notes.push(format!(
                        "could not remove the throwaway device {name}: {err}; remove it with \
                         a later run of vduse-probe once nothing holds it"
                    ));
                }
                supported.push(t.name().to_owned());
                TypeResult::Supported
            }
            Err(Error::DeviceTypeRejected { .. }) => TypeResult::Unsupported,
            Err(err) if err.is_permission() => {
                report.needs_privilege.push(format!("device_types.{t}"));
                TypeResult::NotPermitted(err.to_string())
            }
            Err(err) => TypeResult::Error(err.to_string()),
        };
        report
            .device_type_results
            .insert(t.name().to_owned(), result);
    }
    report.device_types = Some(supported);
    match interrupt.signal() {
        Some(sig) => Err(Interrupted(sig)),
        None => Ok(()),
    }
}

/// Waits `hold`, returning early when a signal arrives.
fn hold(hold: Duration, interrupt: &Interrupt) {
    let end = Instant::now() + hold;
    while Instant::now() < end && interrupt.signal().is_none() {
        std::thread::sleep(Duration::from_millis(5).min(end - Instant::now()));
    }
}

/// Destroys a throwaway device. Something outside (udev, a scanner) may hold its node for a
/// moment, so a busy device is retried for a while.
fn destroy_with_retry(control: &mut DynControl, name: &str) -> vduse::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match control.destroy_device(name) {
            Err(Error::DeviceBusy { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

/// Removes throwaway devices left by a probe that was killed (SIGKILL cannot be caught):
/// their names carry the pid of a process that no longer exists.
fn remove_stale_probe_devices(host: &dyn Host, control: &mut DynControl, report: &mut Report) {
    for device in host.sysfs_devices() {
        let Some(rest) = device.name.strip_prefix(PROBE_DEVICE_PREFIX) else {
            continue;
        };
        let Some(pid) = rest
            .split('-')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == host.pid() || host.process_exists(pid) || device.attached {
            continue;
        }
        match control.destroy_device(&device.name) {
            Ok(()) => report.notes.push(format!(
                "removed {}, a throwaway device left by a vduse-probe that was killed",
                device.name
            )),
            Err(err) => report
                .notes
                .push(format!("could not remove {}: {err}", device.name)),
        }
    }
}

fn devices(host: &dyn Host, bus: &VdpaBusReport, notes: &mut Vec<String>) -> Vec<DeviceReport> {
    let vdpa_devices = if bus.available {
        host.vdpa().ok()
    } else {
        None
    };
    host.sysfs_devices()
        .into_iter()
        .map(|device| {
            let on_bus = vdpa_devices
                .as_ref()
                .and_then(|view| view.devices.iter().find(|d| d.name == device.name));
            let virtio_id = on_bus.map(|d| d.device_id).or(device.virtio_id);
            let holders = host.holders(&device.name);
            let served = (holders.complete || !holders.holders.is_empty())
                .then_some(!holders.holders.is_empty());
            let orphaned = match (device.attached, served) {
                (false, _) => Some(false),
                (true, Some(served)) => Some(!served),
                (true, None) => None,
            };
            if orphaned == Some(true) {
                notes.push(format!(
                    "device {name} is attached to the vdpa bus but no process serves it: I/O to \
                     it hangs until its server is started again (vduse-blk, vduse-fs and \
                     vduse-net-null take over a device they left), or remove it with \
                     `vduse-probe remove {name}` (its pending I/O then fails)",
                    name = device.name
                ));
            }
            DeviceReport {
                device_type: virtio_id.map(type_name),
                attached: device.attached,
                driver: device.driver,
                msg_timeout: device.msg_timeout,
                bounce_size: device.bounce_size,
                served,
                served_by: holders
                    .holders
                    .into_iter()
                    .map(|h| Holder {
                        pid: h.pid,
                        comm: h.comm,
                    })
                    .collect(),
                orphaned,
                name: device.name,
            }
        })
        .collect()
}
