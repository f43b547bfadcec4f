//! [`Server`]: a device's life, from `VDUSE_CREATE_DEV` to `VDUSE_DESTROY_DEV`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};

use super::device_io::DeviceIo;
use super::inflight::{Identity, InflightLog};
use super::recovery;
use super::requests::{self, Dispatcher, DispatcherConfig, LoopControl};
use crate::backend::Backend;
use crate::control::Control;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::uapi::{VDUSE_F_QUEUE_READY, VDUSE_F_SUSPEND};
use crate::vdpa::{VDUSE_MANAGEMENT_DEVICE, VdpaBus, VdpaError};
use crate::{DeviceConfig, DeviceFd};

/// The in-flight log's name for the config space among what a server taking over must
/// match.
const CONFIG_SPACE_ITEM: &str = "config space";

/// The ring features the runtime implements, offered on top of the backend's.
const RING_FEATURES: u64 = (1 << VIRTIO_RING_F_INDIRECT_DESC) | (1 << VIRTIO_RING_F_EVENT_IDX);

/// How long shutdown retries `VDUSE_DESTROY_DEV` while the kernel still calls the device
/// busy (the vdpa device is released asynchronously after a detach).
const DESTROY_RETRY: Duration = Duration::from_secs(3);

/// The largest queue virtio-queue handles.
const MAX_QUEUE_SIZE: u16 = 32768;

/// How a [`Server`] creates and serves its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// The device name: its node is `/dev/vduse/NAME`, its vdpa device `NAME`.
    pub name: String,
    /// Add the device to the vdpa bus (management device `vduse`) once it is served, so the
    /// kernel's virtio driver binds to it.
    pub attach: bool,
    /// The vdpa bus driver that must serve the attached device (`virtio_vdpa`,
    /// `vhost_vdpa`); `None` leaves it to whichever driver the kernel binds.
    pub driver: Option<String>,
    /// On shutdown, leave the device in place (attached, if it was) instead of detaching
    /// and destroying it, for a later server to take over (see `inflight_log`);
    /// `vduse-probe remove` removes it otherwise.
    pub keep_device: bool,
    /// Where to keep the in-flight log (see [`super::inflight`]): which requests each
    /// queue has taken and not answered, in a file that outlives the server. With it, a
    /// server started for a device that exists and that no process serves (its server was
    /// killed, or kept it) takes the device over, if the log was written for the same
    /// configuration, and runs again what was in flight. `None`: no log, and such a device
    /// is refused.
    pub inflight_log: Option<std::path::PathBuf>,
    /// What else must be the same for a server to take the device over, besides its name,
    /// type, features, config space and queues: a disk's backing file, say. Named, so that
    /// a refusal says what differs.
    pub identity: Vec<(String, Vec<u8>)>,
    /// The VDUSE features wanted; negotiated down to what the kernel has.
    pub vduse_features: u64,
    /// The VDUSE API version; `None` for the newest both this crate and the kernel know.
    pub api_version: Option<u64>,
    /// Size in bytes of the kernel's bounce buffer for the device (sysfs `bounce_size`,
    /// set before the device is attached); `None` keeps the kernel's default, 64 MiB.
    /// The kernel keeps each page of it once used, so it is the device's memory cost.
    pub bounce_size: Option<u32>,
    /// How long each queue's worker keeps watching its emptied available ring before it
    /// sleeps until the next kick (vhost-net's `busyloop_timeout`): saves the driver's
    /// kick and a wake-up when requests come close together, and keeps a CPU busy
    /// meanwhile. Zero (the default) sleeps at once.
    pub busy_poll: Duration,
    /// The user and group to serve as once the device is attached (see
    /// [`crate::privileges`]); `None` stays as started.
    pub run_as: Option<crate::privileges::RunAs>,
}

impl ServerOptions {
    /// Attach (to whichever driver binds), destroy on shutdown, ask for queue-ready and
    /// suspend, newest API version.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            attach: true,
            driver: None,
            keep_device: false,
            vduse_features: (1 << VDUSE_F_QUEUE_READY) | (1 << VDUSE_F_SUSPEND),
            api_version: None,
            bounce_size: None,
            busy_poll: Duration::ZERO,
            run_as: None,
            inflight_log: None,
            identity: Vec::new(),
        }
    }
}

/// The request thread and how to stop it.
#[derive(Debug)]
struct RequestThread {
    control: Arc<LoopControl>,
    thread: JoinHandle<Result<()>>,
}

impl RequestThread {
    fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Ends the loop (which stops the workers) and returns how it ended.
    fn stop(self) -> Result<()> {
        self.control.shutdown.store(true, Ordering::Release);
        self.control.wake.notify();
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => Err(Error::Io {
                op: "the request thread".into(),
                source: std::io::Error::other("it panicked"),
            }),
        }
    }
}

/// A VDUSE device served by a [`Backend`].
///
/// Dropping a server without [`Server::shutdown`] shuts it down all the same, ignoring
/// errors.
#[derive(Debug)]
pub struct Server {
    name: String,
    api_version: u64,
    vduse_features: u64,
    keep_device: bool,
    /// The device was left by an earlier server and taken over.
    taken_over: bool,
    /// Kept for `VDUSE_DESTROY_DEV`; `None` once the device is gone (or kept).
    control: Option<Control>,
    /// Removed with the device.
    log: Option<InflightLog>,
    device: Option<Arc<DeviceFd>>,
    requests: Option<RequestThread>,
    /// The config space as the configuration makes it: the backend's at start, then as
    /// [`Server::reconfigure`] changed it (what the in-flight log records).
    config_space: Mutex<Vec<u8>>,
}

impl Server {
    /// Creates the device (`DeviceConfig` from the backend; one virtqueue group and address
    /// space with API version 1), opens its node, sets up every queue, starts the request
    /// thread, then attaches the device to the vdpa bus if asked, and goes on as
    /// `run_as` if given. On failure, everything created so far is undone.
    pub fn start(backend: Arc<dyn Backend>, options: ServerOptions) -> Result<Server> {
        let name = options.name.clone();
        let num_queues = backend.num_queues();
        let max_queue_size = backend.max_queue_size();
        check_backend(&name, num_queues, max_queue_size)?;

        let mut control = Control::open()?;
        if let Some(version) = options.api_version {
            control.set_api_version(version)?;
        }
        let vduse_features = control.negotiate_features(options.vduse_features)?;
        let mut config = DeviceConfig::new(&name, backend.device_type(), num_queues.into());
        config.features |= backend.features() | RING_FEATURES;
        config.config = backend.config();
        let mut offered = Identity::default()
            .with("device name", name.as_bytes())
            .with("device type", &(backend.device_type() as u32).to_le_bytes())
            .with("features", &config.features.to_le_bytes())
            .with(CONFIG_SPACE_ITEM, &config.config);
        for (item, value) in &options.identity {
            offered = offered.with(item.clone(), value);
        }
        let taken_over = match control.create_device(&config) {
            Ok(()) => None,
            Err(Error::NameInUse { .. }) => match options.inflight_log.as_deref() {
                Some(path) => Some(recovery::open_to_take_over(
                    &name,
                    &config,
                    path,
                    &offered,
                    max_queue_size,
                )?),
                None => return Err(recovery::existing_device(&name)),
            },
            Err(error) => return Err(error),
        };
        let take_over = taken_over.is_some();

        // From here on, dropping `server` removes the device it created (and its log); a
        // device taken over is left as it was found, for another try.
        let mut server = Server {
            name: name.clone(),
            api_version: control.api_version(),
            vduse_features,
            keep_device: take_over,
            taken_over: take_over,
            control: Some(control),
            log: None,
            device: None,
            requests: None,
            config_space: Mutex::new(config.config.clone()),
        };
        let device = match taken_over {
            Some((device, log)) => {
                server.log = Some(log);
                device
            }
            None => {
                let device = Arc::new(DeviceFd::open(&name)?);
                device.set_nonblocking()?;
                for index in 0..num_queues {
                    device.setup_vq(index.into(), max_queue_size, 0)?;
                }
                if let Some(bytes) = options.bounce_size {
                    set_bounce_size(&name, bytes)?;
                }
                if let Some(path) = &options.inflight_log {
                    server.log = Some(InflightLog::create(
                        path,
                        &offered,
                        num_queues,
                        max_queue_size,
                    )?);
                }
                device
            }
        };
        if take_over {
            // The server before may have ended between recording a changed config space
            // in the log and telling the kernel (see `update_config`): the config space
            // this server checked against the log is the one the driver must see.
            device.set_config(0, &config.config)?;
            device.inject_config_irq()?;
        }
        server.device = Some(device.clone());
        server.requests = Some(spawn_requests(
            &name,
            device,
            backend,
            DispatcherConfig {
                name: name.clone(),
                max_queue_size,
                num_queues,
                api_version: server.api_version,
                busy_poll: options.busy_poll,
                log: server.log.clone(),
            },
            take_over,
        )?);
        // Attach from this thread: the driver's probe runs inside the netlink call and
        // sends requests, which the request thread answers. A device taken over may be
        // attached already.
        if options.attach {
            let mut bus = VdpaBus::open()?;
            if !(take_over && bus.device(&name)?.is_some()) {
                bus.add_device(&name, VDUSE_MANAGEMENT_DEVICE)?;
                if let Some(driver) = &options.driver {
                    crate::vdpa::bind_driver(&name, driver)?;
                }
            }
        }
        server.keep_device = options.keep_device;
        let server = server.serve_as(options.run_as.as_ref())?;
        log::info!(
            "device {name}: {} (API version {}, VDUSE features {vduse_features:#x}{})",
            if take_over { "taken over" } else { "served" },
            server.api_version,
            if options.attach { ", attached" } else { "" }
        );
        Ok(server)
    }

    /// Goes on as `run_as` (see [`crate::privileges`]), if given: every thread switches
    /// user and group, and only this thread keeps CAP_NET_ADMIN, to detach the device at
    /// shutdown. If the switch fails, the device is removed and the error returned.
    ///
    /// [`Server::start`] calls it with [`ServerOptions::run_as`]; a server that has more
    /// to set up as root once the device exists (vduse-fs's sandbox) leaves that `None`
    /// and calls it itself afterwards.
    pub fn serve_as(self, run_as: Option<&crate::privileges::RunAs>) -> Result<Server> {
        let Some(run_as) = run_as else {
            return Ok(self);
        };
        if let Err(error) = crate::privileges::drop_to(run_as) {
            if let Err(shutdown) = self.shutdown() {
                log::error!("{shutdown}");
            }
            return Err(error);
        }
        log::info!("device {}: serving as user {run_as}", self.name);
        Ok(self)
    }

    /// Whether the device was left by an earlier server and taken over rather than made.
    pub fn taken_over(&self) -> bool {
        self.taken_over
    }

    /// Whether the device stays when this server stops (`keep-device`).
    pub fn keeps_device(&self) -> bool {
        self.keep_device
    }

    /// Leaves the device (and its in-flight log) in place when this server stops, or not.
    pub fn set_keep_device(&mut self, keep: bool) {
        self.keep_device = keep;
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The VDUSE API version the device was created with.
    pub fn api_version(&self) -> u64 {
        self.api_version
    }

    /// The VDUSE features the device was created with.
    pub fn vduse_features(&self) -> u64 {
        self.vduse_features
    }

    /// Whether the device is still served: false once the request thread has ended (the
    /// device broke) or the server was shut down.
    pub fn is_serving(&self) -> bool {
        self.requests.as_ref().is_some_and(|r| !r.is_finished())
    }

    /// Replaces `bytes` of the config space from `offset` and tells the driver with a
    /// config interrupt, for a state of the running device (a net device's link status):
    /// a server taking the device over still compares its configuration with the config
    /// space the device was made with. For a change of the configuration itself, use
    /// [`Server::reconfigure`].
    pub fn update_config(&self, offset: u32, bytes: &[u8]) -> Result<()> {
        self.set_config(offset, bytes, false)
    }

    /// As [`Server::update_config`], for a change a server started with the new
    /// configuration would make too (a disk's new capacity). The in-flight log, if any,
    /// records the new config space first, so that a server taking the device over
    /// compares its own with the device as it now is; should this server end before the
    /// kernel has it, the next one sets it (see [`Server::start`]).
    pub fn reconfigure(&self, offset: u32, bytes: &[u8]) -> Result<()> {
        self.set_config(offset, bytes, true)
    }

    fn set_config(&self, offset: u32, bytes: &[u8], configured: bool) -> Result<()> {
        let failed = |why: &str| Error::Io {
            op: format!("updating the config space of {}", self.name),
            source: std::io::Error::other(why.to_owned()),
        };
        let device = self
            .device
            .as_ref()
            .ok_or_else(|| failed("the device is no longer served"))?;
        if configured {
            let mut config_space = self
                .config_space
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let range = usize::try_from(offset)
                .ok()
                .and_then(|start| Some(start..start.checked_add(bytes.len())?))
                .filter(|range| range.end <= config_space.len())
                .ok_or_else(|| failed("the bytes are beyond the config space"))?;
            config_space[range].copy_from_slice(bytes);
            if let Some(log) = &self.log {
                log.change_identity(CONFIG_SPACE_ITEM, &config_space);
            }
        }
        device.set_config(offset, bytes)?;
        device.inject_config_irq()
    }

    /// Logs, at `warn`, the device's status and each queue's ring state as the driver and
    /// the worker see it (indices, flags, event indices, requests in flight): what to look
    /// at when I/O on the device stops.
    pub fn log_state(&self) {
        if let Some(requests) = &self.requests {
            requests.control.log_state.store(true, Ordering::Release);
            requests.control.wake.notify();
        }
    }

    /// Serves until `stop` becomes true (a signal handler sets it) or the request thread
    /// ends (the device broke), then shuts down. The request thread's error, if any, comes
    /// first. Each time `log_state` becomes true (SIGUSR1's handler), it is reset and
    /// [`Server::log_state`] called.
    pub fn run_until(self, stop: &AtomicBool, log_state: &AtomicBool) -> Result<()> {
        while !stop.load(Ordering::Acquire) && self.is_serving() {
            if log_state.swap(false, Ordering::AcqRel) {
                self.log_state();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.shutdown()
    }

    /// Detaches the device from the vdpa bus, stops the request thread and the workers,
    /// closes the node and destroys the device; with `keep_device`, only stops serving.
    pub fn shutdown(mut self) -> Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        let name = self.name.clone();
        let mut first_error: Option<Error> = None;
        let mut note = |result: Result<()>| {
            if let Err(error) = result {
                log::warn!("device {name}: shutting down: {error}");
                first_error.get_or_insert(error);
            }
        };
        // Detach while requests are still answered: the driver's remove sends some.
        if !self.keep_device && self.device.is_some() {
            note(detach(&self.name.clone()));
        }
        let served = self.requests.take().map(RequestThread::stop);
        if let Some(device) = self.device.take() {
            if Arc::strong_count(&device) > 1 {
                log::warn!("device {}: its node is still referenced", self.name);
            }
            drop(device);
        }
        if let Some(mut control) = self.control.take() {
            if !self.keep_device {
                let destroyed = destroy(&mut control, &self.name);
                // The log goes with the device; a device still there may be taken over.
                if destroyed.is_ok() {
                    if let Some(log) = self.log.take() {
                        note(log.remove());
                    }
                }
                note(destroyed);
            }
        }
        match (served, first_error) {
            (Some(Err(error)), _) => Err(error),
            (_, Some(error)) => Err(error),
            _ => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

fn check_backend(name: &str, num_queues: u16, max_queue_size: u16) -> Result<()> {
    let problem = if num_queues == 0 {
        "it has no virtqueue".to_string()
    } else if !max_queue_size.is_power_of_two() || max_queue_size > MAX_QUEUE_SIZE {
        format!(
            "its queue size {max_queue_size} is not a power of two between 1 and {MAX_QUEUE_SIZE}"
        )
    } else {
        return Ok(());
    };
    Err(Error::Backend {
        name: name.to_owned(),
        problem,
    })
}

fn spawn_requests(
    name: &str,
    device: Arc<DeviceFd>,
    backend: Arc<dyn Backend>,
    config: DispatcherConfig,
    take_over: bool,
) -> Result<RequestThread> {
    let control = Arc::new(LoopControl {
        wake: Arc::new(Event::new("wake")?),
        shutdown: AtomicBool::new(false),
        log_state: AtomicBool::new(false),
    });
    let dev: Arc<dyn DeviceIo> = device;
    let dispatcher = Dispatcher::new(config, dev.clone(), backend, control.wake.clone());
    let thread_control = control.clone();
    let thread_name = name.to_owned();
    let thread = std::thread::Builder::new()
        .name("vduse-requests".into())
        .spawn(move || {
            let mut dispatcher = dispatcher;
            if take_over {
                dispatcher.take_over();
            }
            requests::run(dispatcher, dev, thread_control, &thread_name)
        })
        .map_err(|source| Error::Io {
            op: "starting the request thread".into(),
            source,
        })?;
    Ok(RequestThread { control, thread })
}

/// Writes the device's sysfs `bounce_size`, which the kernel accepts only before the
/// device is first attached.
fn set_bounce_size(name: &str, bytes: u32) -> Result<()> {
    let path = std::path::Path::new(crate::host::SYS_CLASS_VDUSE)
        .join(name)
        .join("bounce_size");
    let op = || {
        format!(
            "setting the bounce buffer size to {bytes} bytes ({})",
            path.display()
        )
    };
    if !path.exists() {
        return Err(Error::Io {
            op: op(),
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "this kernel's VDUSE has no bounce_size attribute (added in Linux 6.6): \
                 leave bounce-size unset",
            ),
        });
    }
    std::fs::write(&path, bytes.to_string()).map_err(|source| {
        let why = match source
            .raw_os_error()
            .map(rustix::io::Errno::from_raw_os_error)
        {
            Some(rustix::io::Errno::INVAL) => Some("the kernel takes 1 MiB to 1 GiB"),
            Some(rustix::io::Errno::PERM) => {
                Some("the device has been attached before: set it on a new device")
            }
            _ => None,
        };
        let source = match why {
            Some(why) => std::io::Error::new(std::io::ErrorKind::InvalidInput, why),
            None => source,
        };
        Error::Io { op: op(), source }
    })
}

/// Removes the device from the vdpa bus if it is there (whoever attached it).
fn detach(name: &str) -> Result<()> {
    let mut bus = match VdpaBus::open() {
        Ok(bus) => bus,
        // No bus, so nothing attached.
        Err(VdpaError::NotLoaded) => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    if bus.device(name)?.is_none() {
        return Ok(());
    }
    match bus.remove_device(name) {
        Ok(()) | Err(VdpaError::NoSuchDevice(_)) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// `VDUSE_DESTROY_DEV`, retried while the kernel still holds the device after a detach.
fn destroy(control: &mut Control, name: &str) -> Result<()> {
    let start = Instant::now();
    loop {
        match control.destroy_device(name) {
            Err(Error::DeviceBusy { .. }) if start.elapsed() < DESTROY_RETRY => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(Error::NoSuchDevice { .. }) => return Ok(()),
            other => return other,
        }
    }
}

/// Tells systemd the service is ready (`READY=1`) when it runs under a `Type=notify`
/// unit (`NOTIFY_SOCKET` set); does nothing otherwise.
pub fn notify_ready() {
    if let Err(error) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        log::warn!("telling systemd the device is ready: {error}");
    }
}

/// Tells systemd what the service is doing (`STATUS=`, which `systemctl status` shows)
/// under a `Type=notify` unit; does nothing otherwise.
pub fn notify_status(text: &str) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(error) = sd_notify::notify(&[sd_notify::NotifyState::Status(text)]) {
        log::debug!("telling systemd the status: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_default_to_attach_destroy_and_both_features() {
        let options = ServerOptions::new("disk0");
        assert_eq!(options.name, "disk0");
        assert!(options.attach && !options.keep_device);
        assert_eq!(options.vduse_features, 0x3);
        assert_eq!(options.api_version, None);
    }

    #[test]
    fn backends_the_runtime_cannot_serve_are_refused_with_the_reason() {
        check_backend("d", 1, 256).unwrap();
        check_backend("d", 2, 32768).unwrap();
        let message = |q, s| check_backend("d", q, s).unwrap_err().to_string();
        assert!(message(0, 256).contains("no virtqueue"));
        assert!(message(1, 100).contains("power of two"));
        assert!(message(1, 0).contains("power of two"));
    }
}
