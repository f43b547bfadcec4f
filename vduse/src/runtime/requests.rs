//! The request thread: reads the kernel's requests from the device node and answers each
//! one, without ever waiting for backend I/O.
//!
//! [`Dispatcher`] is the device's state machine (status, queues, workers, IOTLB); it turns a
//! request into an answer now, or into a pending answer that [`Dispatcher::complete`]
//! gives once the workers it waits for have stopped. [`run`] is the thread's loop around
//! it: poll(2) on the device node and a wake eventfd that workers write when they end.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::io::Errno;
use virtio_bindings::virtio_config::VIRTIO_CONFIG_S_DRIVER_OK;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;

use super::device_io::DeviceIo;
use super::inflight::InflightLog;
use super::iotlb::IotlbMemory;
use super::worker::{QueueWorker, WorkerContext, configure_queue};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::uapi::{
    VDUSE_GET_VQ_STATE, VDUSE_REQ_RESULT_FAILED, VDUSE_REQ_RESULT_OK, VDUSE_SET_STATUS,
    VDUSE_SET_VQ_GROUP_ASID, VDUSE_SET_VQ_READY, VDUSE_SUSPEND, VDUSE_UPDATE_IOTLB,
    VduseDevRequest, VduseDevResponse, VduseVqState, VduseVqStateSplit, VduseVqStateUnion,
};

const DRIVER_OK: u8 = VIRTIO_CONFIG_S_DRIVER_OK as u8;

/// One virtqueue's state between requests.
#[derive(Debug, Default)]
struct QueueSlot {
    /// Made ready by `SET_VQ_READY` (with `VDUSE_F_QUEUE_READY`).
    ready: bool,
    /// Its worker, running or stopping.
    worker: Option<QueueWorker>,
    /// Where the last worker stopped in the available ring, since the last reset.
    stopped_at: Option<u16>,
}

/// What a pending answer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitFor {
    /// Every worker to stop.
    AllQueues,
    /// The worker of one queue to stop.
    Queue(usize),
}

/// What to do once it has stopped, before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Answer,
    Reset,
}

#[derive(Debug)]
struct Pending {
    request_id: u32,
    wait_for: WaitFor,
    then: Then,
}

/// Why the device starts serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// The driver set `DRIVER_OK`.
    DriverOk,
    /// A server that ended had served it; its queues are recovered (`recovery.rs`).
    TakingOver,
}

/// How the dispatcher is set up.
#[derive(Debug, Clone)]
pub(crate) struct DispatcherConfig {
    /// The device name, for messages.
    pub name: String,
    /// Every queue's largest size (the backend's).
    pub max_queue_size: u16,
    /// Number of virtqueues.
    pub num_queues: u16,
    /// The negotiated API version.
    pub api_version: u64,
    /// How long each queue's worker watches an emptied available ring before sleeping.
    pub busy_poll: std::time::Duration,
    /// The in-flight log, if the server keeps one.
    pub log: Option<InflightLog>,
}

/// The device's state machine, driven by requests.
#[derive(Debug)]
pub(crate) struct Dispatcher {
    config: DispatcherConfig,
    dev: Arc<dyn DeviceIo>,
    backend: Arc<dyn Backend>,
    memory: Arc<IotlbMemory>,
    /// Written by workers when they end.
    wake: Arc<Event>,
    status: u8,
    suspended: bool,
    event_idx: bool,
    queues: Vec<QueueSlot>,
    /// Answers waiting for workers to stop.
    pending: Vec<Pending>,
    /// Answers ready to be written.
    done: Vec<VduseDevResponse>,
}

impl Dispatcher {
    pub fn new(
        config: DispatcherConfig,
        dev: Arc<dyn DeviceIo>,
        backend: Arc<dyn Backend>,
        wake: Arc<Event>,
    ) -> Self {
        let asid = (config.api_version >= crate::uapi::VDUSE_API_VERSION_1).then_some(0);
        let memory = Arc::new(IotlbMemory::new(dev.clone(), asid));
        let queues = (0..config.num_queues)
            .map(|_| QueueSlot::default())
            .collect();
        Self {
            config,
            dev,
            backend,
            memory,
            wake,
            status: 0,
            suspended: false,
            event_idx: false,
            queues,
            pending: Vec::new(),
            done: Vec::new(),
        }
    }

    /// Answers `request`, or returns `None` when the answer waits for workers to stop
    /// ([`Dispatcher::complete`] gives it then).
    pub fn handle(&mut self, request: &VduseDevRequest) -> Option<VduseDevResponse> {
        let id = request.request_id;
        let ok = |ok: bool| {
            VduseDevResponse::new(
                id,
                if ok {
                    VDUSE_REQ_RESULT_OK
                } else {
                    VDUSE_REQ_RESULT_FAILED
                },
            )
        };
        match request.type_ {
            VDUSE_GET_VQ_STATE => {
                let index = request.vq_state().index;
                match self.avail_index(index as usize) {
                    Some(avail_index) => Some(VduseDevResponse::with_vq_state(
                        id,
                        VduseVqState {
                            index,
                            state: VduseVqStateUnion::from_split(VduseVqStateSplit { avail_index }),
                        },
                    )),
                    None => Some(ok(false)),
                }
            }
            VDUSE_SET_STATUS => self.set_status(id, request.status().status),
            VDUSE_UPDATE_IOTLB => {
                let (start, last, asid) = if self.config.api_version >= 1 {
                    let range = request.iova_v2();
                    (range.start, range.last, range.asid)
                } else {
                    let range = request.iova();
                    (range.start, range.last, 0)
                };
                Some(ok(self.update_iotlb(start, last, asid)))
            }
            // One group in one address space: the only mapping there is.
            VDUSE_SET_VQ_GROUP_ASID => {
                let change = request.vq_group_asid();
                Some(ok(change.group == 0 && change.asid == 0))
            }
            VDUSE_SET_VQ_READY => {
                let change = request.vq_ready();
                self.set_vq_ready(id, change.num as usize, change.ready != 0)
            }
            VDUSE_SUSPEND => {
                // No new work from here on; answer once every worker is quiet. The kernel
                // drops kicks and interrupts of a suspended device itself.
                self.suspended = true;
                self.wait(id, WaitFor::AllQueues, Then::Answer)
            }
            other => {
                log::warn!(
                    "device {}: unknown request type {other}: answered FAILED",
                    self.config.name
                );
                Some(ok(false))
            }
        }
    }

    /// The pending answers whose workers have stopped (in the order they were asked).
    pub fn complete(&mut self) -> Vec<VduseDevResponse> {
        self.collect_finished();
        std::mem::take(&mut self.done)
    }

    /// Joins the workers that have ended and moves the answers waiting for them to `done`.
    fn collect_finished(&mut self) {
        for slot in &mut self.queues {
            if slot.worker.as_ref().is_some_and(QueueWorker::has_exited) {
                let worker = slot.worker.take().expect("checked");
                slot.stopped_at = Some(worker.join());
            }
        }
        let mut index = 0;
        while index < self.pending.len() {
            let done = match self.pending[index].wait_for {
                WaitFor::AllQueues => self.queues.iter().all(|q| q.worker.is_none()),
                WaitFor::Queue(q) => self.queues[q].worker.is_none(),
            };
            if !done {
                index += 1;
                continue;
            }
            let pending = self.pending.remove(index);
            if pending.then == Then::Reset {
                self.reset();
            }
            self.done.push(VduseDevResponse::new(
                pending.request_id,
                VDUSE_REQ_RESULT_OK,
            ));
        }
    }

    /// Stops every worker and waits for them (shutdown: the device no longer answers).
    pub fn stop_all(&mut self) {
        for slot in &mut self.queues {
            if let Some(worker) = &slot.worker {
                worker.request_stop();
            }
        }
        for slot in &mut self.queues {
            if let Some(worker) = slot.worker.take() {
                slot.stopped_at = Some(worker.join());
            }
        }
        self.memory.clear();
    }

    /// Logs the device's status and asks every worker to log its rings (SIGUSR1).
    pub fn log_state(&self) {
        log::warn!(
            "device {}: status {:#x}{}, {} answer(s) waiting for workers",
            self.config.name,
            self.status,
            if self.suspended { ", suspended" } else { "" },
            self.pending.len()
        );
        for (index, slot) in self.queues.iter().enumerate() {
            match &slot.worker {
                Some(worker) => worker.request_state_log(),
                None => log::warn!(
                    "device {}: queue {index} has no worker (stopped at {:?})",
                    self.config.name,
                    slot.stopped_at
                ),
            }
        }
    }

    /// Whether any worker is running or stopping.
    #[cfg(test)]
    pub fn running_queues(&self) -> Vec<usize> {
        (0..self.queues.len())
            .filter(|&i| self.queues[i].worker.is_some())
            .collect()
    }

    /// The memory map, for tests.
    #[cfg(test)]
    pub fn memory(&self) -> &IotlbMemory {
        &self.memory
    }

    /// Stops the workers `wait_for` names and answers later, or now when none runs.
    fn wait(&mut self, request_id: u32, wait_for: WaitFor, then: Then) -> Option<VduseDevResponse> {
        let slots: Vec<&QueueSlot> = match wait_for {
            WaitFor::AllQueues => self.queues.iter().collect(),
            WaitFor::Queue(q) => vec![&self.queues[q]],
        };
        for slot in slots {
            if let Some(worker) = &slot.worker {
                worker.request_stop();
            }
        }
        self.pending.push(Pending {
            request_id,
            wait_for,
            then,
        });
        // Answers at once when nothing runs; otherwise the last worker's wake-up does.
        self.collect_finished();
        let position = self.done.iter().position(|r| r.request_id == request_id)?;
        Some(self.done.remove(position))
    }

    fn avail_index(&self, index: usize) -> Option<u16> {
        let slot = self.queues.get(index)?;
        if let Some(worker) = &slot.worker {
            return Some(worker.next_avail());
        }
        if let Some(stopped_at) = slot.stopped_at {
            return Some(stopped_at);
        }
        // Never served since the reset: what the driver set (`set_vq_state`), or 0.
        match self.dev.vq_info(index as u32) {
            Ok(info) => Some(info.state.split().avail_index),
            Err(error) => {
                log::warn!("device {}: {error}", self.config.name);
                Some(0)
            }
        }
    }

    fn set_status(&mut self, request_id: u32, status: u8) -> Option<VduseDevResponse> {
        if status == 0 {
            return self.wait(request_id, WaitFor::AllQueues, Then::Reset);
        }
        let was = self.status;
        self.status = status;
        if status & DRIVER_OK != 0 && was & DRIVER_OK == 0 {
            self.start_device(Start::DriverOk);
        }
        Some(VduseDevResponse::new(request_id, VDUSE_REQ_RESULT_OK))
    }

    /// `DRIVER_OK`, or a takeover of a device whose driver had set it: the features are
    /// final and the rings set up. Activates the backend, maps the IOTLB and starts the
    /// worker of every ready queue (unless the device is suspended).
    fn start_device(&mut self, start: Start) {
        let name = &self.config.name;
        let features = match self.dev.negotiated_features() {
            Ok(features) => features,
            Err(error) => {
                log::error!("device {name}: {error}");
                0
            }
        };
        self.event_idx = features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        log::debug!("device {name}: started with features {features:#x} ({start:?})");
        self.backend.activate(features);
        if let Err(error) = self.memory.refresh() {
            log::error!("device {name}: mapping the IOTLB: {error}");
        }
        if self.suspended {
            return;
        }
        for index in 0..self.queues.len() {
            match self.dev.vq_info(index as u32) {
                // Without VDUSE_F_QUEUE_READY the kernel's flag is all there is; with it,
                // the kernel set it when we answered SET_VQ_READY.
                Ok(info) if info.ready != 0 || self.queues[index].ready => {
                    self.queues[index].ready = true;
                    self.start_worker(index, &info, start == Start::TakingOver);
                }
                Ok(_) => {}
                Err(error) => log::error!("device {}: {error}", self.config.name),
            }
        }
    }

    fn set_vq_ready(
        &mut self,
        request_id: u32,
        index: usize,
        ready: bool,
    ) -> Option<VduseDevResponse> {
        let Some(slot) = self.queues.get_mut(index) else {
            return Some(VduseDevResponse::new(request_id, VDUSE_REQ_RESULT_FAILED));
        };
        slot.ready = ready;
        if !ready {
            return self.wait(request_id, WaitFor::Queue(index), Then::Answer);
        }
        // Before DRIVER_OK the queue starts with the others; after it, now. The kernel
        // marks it ready once answered, and drops kicks until then: the worker's first
        // drain catches up.
        if self.status & DRIVER_OK != 0 && !self.suspended && slot.worker.is_none() {
            match self.dev.vq_info(index as u32) {
                Ok(info) => self.start_worker(index, &info, false),
                Err(error) => log::error!("device {}: {error}", self.config.name),
            }
        }
        Some(VduseDevResponse::new(request_id, VDUSE_REQ_RESULT_OK))
    }

    /// Takes over the device from a server that ended (before any request is read; see
    /// `recovery.rs`): with a queue ready, the driver has set `DRIVER_OK`, so the device
    /// starts as it does then, and every ready queue is served again from where its rings
    /// and the in-flight log stand. Without one, the driver has not got that far, and its
    /// requests bring the device up as usual.
    pub fn take_over(&mut self) {
        let name = &self.config.name;
        let any_ready = (0..self.queues.len()).any(|index| {
            self.dev
                .vq_info(index as u32)
                .is_ok_and(|info| info.ready != 0)
        });
        if !any_ready {
            log::info!("device {name}: taken over before the driver set it up");
            return;
        }
        self.status = (virtio_bindings::virtio_config::VIRTIO_CONFIG_S_ACKNOWLEDGE
            | virtio_bindings::virtio_config::VIRTIO_CONFIG_S_DRIVER
            | virtio_bindings::virtio_config::VIRTIO_CONFIG_S_FEATURES_OK)
            as u8
            | DRIVER_OK;
        self.start_device(Start::TakingOver);
        log::info!("device {}: taken over", self.config.name);
    }

    fn start_worker(&mut self, index: usize, info: &crate::uapi::VduseVqInfo, take_over: bool) {
        if self.queues[index].worker.is_some() {
            return;
        }
        let name = &self.config.name;
        let queue = match configure_queue(self.config.max_queue_size, info, self.event_idx) {
            Ok(queue) => queue,
            Err(problem) => {
                log::error!("device {name}: queue {index} not served: {problem}");
                return;
            }
        };
        let started = Event::new("kick").and_then(|kick| {
            self.dev.set_vq_kickfd(index as u32, Some(kick.as_fd()))?;
            let context = WorkerContext {
                index: index as u16,
                backend: self.backend.clone(),
                memory: self.memory.clone(),
                dev: self.dev.clone(),
                wake: self.wake.clone(),
                busy_poll: self.config.busy_poll,
                log: self.config.log.as_ref().map(|log| log.queue(index as u16)),
                take_over,
            };
            QueueWorker::start(context, queue, kick)
        });
        match started {
            Ok(worker) => self.queues[index].worker = Some(worker),
            Err(error) => log::error!("device {name}: queue {index} not served: {error}"),
        }
    }

    fn update_iotlb(&mut self, start: u64, last: u64, asid: u32) -> bool {
        if asid != 0 {
            return true;
        }
        // Before DRIVER_OK nothing is mapped: DRIVER_OK maps what is there then.
        if self.status & DRIVER_OK == 0 && !self.memory.touches(start, last) {
            return true;
        }
        match self.memory.refresh() {
            Ok(_) => true,
            Err(error) => {
                log::error!("device {}: remapping the IOTLB: {error}", self.config.name);
                false
            }
        }
    }

    /// `SET_STATUS 0`, once the workers have stopped: back to a just-created device.
    fn reset(&mut self) {
        // The driver forgets what it had in flight.
        if let Some(log) = &self.config.log {
            for index in 0..self.config.num_queues {
                log.queue(index).clear();
            }
        }
        self.memory.clear();
        self.backend.reset();
        self.status = 0;
        self.suspended = false;
        self.event_idx = false;
        for slot in &mut self.queues {
            *slot = QueueSlot::default();
        }
    }
}

/// What the request thread shares with the server.
#[derive(Debug)]
pub(crate) struct LoopControl {
    /// Wakes the loop (workers ending, shutdown).
    pub wake: Arc<Event>,
    /// Set with a wake-up to end the loop.
    pub shutdown: AtomicBool,
    /// Set with a wake-up to log the device's and the queues' state.
    pub log_state: AtomicBool,
}

/// The request thread's loop. Ends with `Ok` on shutdown, with an error when the device is
/// broken or its node fails; stops every worker before returning.
pub(crate) fn run(
    mut dispatcher: Dispatcher,
    dev: Arc<dyn DeviceIo>,
    control: Arc<LoopControl>,
    name: &str,
) -> Result<()> {
    let result = serve(&mut dispatcher, dev.as_ref(), &control, name);
    dispatcher.stop_all();
    result
}

fn serve(
    dispatcher: &mut Dispatcher,
    dev: &dyn DeviceIo,
    control: &LoopControl,
    name: &str,
) -> Result<()> {
    loop {
        let node = dev.poll_fd();
        let mut fds = [
            PollFd::new(&node, PollFlags::IN),
            PollFd::new(control.wake.as_ref(), PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(errno) => {
                return Err(Error::Kernel {
                    op: format!("poll on the node of device {name:?}"),
                    errno,
                });
            }
        }
        let (device, wake) = (fds[0].revents(), fds[1].revents());
        if wake.contains(PollFlags::IN) {
            control.wake.drain();
            if control.shutdown.load(Ordering::Acquire) {
                return Ok(());
            }
            if control.log_state.swap(false, Ordering::AcqRel) {
                dispatcher.log_state();
            }
            for answer in dispatcher.complete() {
                answer_request(dev, &answer);
            }
        }
        if device.contains(PollFlags::ERR) {
            return Err(Error::DeviceBroken {
                name: name.to_owned(),
            });
        }
        if device.contains(PollFlags::IN) {
            let request = match dev.read_request() {
                Ok(request) => request,
                // Timed out in the kernel between poll and read, or a signal.
                Err(Error::Kernel {
                    errno: Errno::AGAIN | Errno::INTR,
                    ..
                }) => continue,
                Err(error) => return Err(error),
            };
            log::debug!(
                "device {name}: request {} {}",
                request.request_id,
                describe(&request)
            );
            if let Some(answer) = dispatcher.handle(&request) {
                answer_request(dev, &answer);
            }
            // Waiting answers whose workers stopped meanwhile.
            for answer in dispatcher.complete() {
                answer_request(dev, &answer);
            }
        }
    }
}

/// A request for the debug log.
fn describe(request: &VduseDevRequest) -> String {
    match request.type_ {
        VDUSE_GET_VQ_STATE => format!("GET_VQ_STATE {}", request.vq_state().index),
        VDUSE_SET_STATUS => format!("SET_STATUS {:#x}", request.status().status),
        VDUSE_UPDATE_IOTLB => {
            let range = request.iova();
            format!("UPDATE_IOTLB {:#x}-{:#x}", range.start, range.last)
        }
        VDUSE_SET_VQ_GROUP_ASID => {
            let change = request.vq_group_asid();
            format!("SET_VQ_GROUP_ASID {} {}", change.group, change.asid)
        }
        VDUSE_SET_VQ_READY => {
            let change = request.vq_ready();
            format!("SET_VQ_READY {} {}", change.num, change.ready)
        }
        VDUSE_SUSPEND => "SUSPEND".into(),
        other => format!("type {other}"),
    }
}

fn answer_request(dev: &dyn DeviceIo, answer: &VduseDevResponse) {
    // ENOENT: the kernel gave up waiting (msg_timeout) and the device is broken; the next
    // poll says so.
    if let Err(error) = dev.write_response(answer) {
        log::error!("answering request {}: {error}", answer.request_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake_device::FakeDevice;
    use crate::runtime::test_doubles::Recorder;
    use crate::uapi::{
        VDUSE_ACCESS_RW, VduseDevStatus, VduseIovaRangeV2, VduseVqGroupAsid, VduseVqReady,
    };
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;
    use std::time::{Duration, Instant};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;

    use super::super::device_io::IotlbEntry;
    use crate::DeviceType;
    use crate::backend::{Chain, Memory};

    const FEATURES: u64 = (1 << 32) | (1 << 33);

    fn dispatcher(fake: &Arc<FakeDevice>, backend: Arc<dyn Backend>) -> (Dispatcher, Arc<Event>) {
        let wake = Arc::new(Event::new("wake").unwrap());
        let config = DispatcherConfig {
            name: "test".into(),
            max_queue_size: 16,
            num_queues: fake.num_queues(),
            api_version: 1,
            busy_poll: std::time::Duration::ZERO,
            log: None,
        };
        (
            Dispatcher::new(config, fake.clone(), backend, wake.clone()),
            wake,
        )
    }

    fn status(id: u32, status: u8) -> VduseDevRequest {
        VduseDevRequest::with_payload(VDUSE_SET_STATUS, id, &VduseDevStatus { status })
    }

    fn vq_ready(id: u32, num: u32, ready: bool) -> VduseDevRequest {
        VduseDevRequest::with_payload(
            VDUSE_SET_VQ_READY,
            id,
            &VduseVqReady {
                num,
                ready: ready.into(),
            },
        )
    }

    fn vq_state(id: u32, index: u32) -> VduseDevRequest {
        VduseDevRequest::with_payload(
            VDUSE_GET_VQ_STATE,
            id,
            &VduseVqState {
                index,
                ..Default::default()
            },
        )
    }

    fn result(answer: Option<VduseDevResponse>) -> Option<u32> {
        answer.map(|a| a.result)
    }

    /// Waits (up to 10 s) until `done` holds.
    fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out: {what}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Completes pending answers as the request thread does: once per wake-up.
    fn completed(dispatcher: &mut Dispatcher, wake: &Event) -> Vec<VduseDevResponse> {
        let timeout = rustix::event::Timespec {
            tv_sec: 10,
            tv_nsec: 0,
        };
        let mut fds = [PollFd::new(wake, PollFlags::IN)];
        let ready = poll(&mut fds, Some(&timeout)).unwrap();
        assert_eq!(ready, 1, "no wake-up within 10 s");
        wake.drain();
        let answers = dispatcher.complete();
        assert!(!answers.is_empty(), "woken, but no answer completed");
        answers
    }

    #[test]
    fn unknown_and_out_of_range_requests_fail_the_others_answer() {
        let fake = Arc::new(FakeDevice::new(2, 0x10_0000));
        let (mut d, _) = dispatcher(&fake, Arc::new(Recorder::default()));
        let failed = Some(VDUSE_REQ_RESULT_FAILED);
        let ok = Some(VDUSE_REQ_RESULT_OK);
        assert_eq!(result(d.handle(&VduseDevRequest::new(42, 1))), failed);
        assert_eq!(result(d.handle(&vq_state(2, 7))), failed);
        assert_eq!(result(d.handle(&vq_ready(3, 9, true))), failed);
        let asid = |group, asid| {
            VduseDevRequest::with_payload(
                VDUSE_SET_VQ_GROUP_ASID,
                4,
                &VduseVqGroupAsid { group, asid },
            )
        };
        assert_eq!(result(d.handle(&asid(0, 0))), ok);
        assert_eq!(result(d.handle(&asid(0, 1))), failed);
        // Status changes before DRIVER_OK are just recorded; nothing is mapped yet.
        for (id, s) in [(5, 1), (6, 3), (7, 11)] {
            assert_eq!(result(d.handle(&status(id, s))), ok);
        }
        let iotlb = VduseDevRequest::with_payload(
            VDUSE_UPDATE_IOTLB,
            8,
            &VduseIovaRangeV2 {
                start: 0,
                last: u64::MAX,
                asid: 0,
                padding: 0,
            },
        );
        assert_eq!(result(d.handle(&iotlb)), ok);
        assert_eq!(d.memory().len(), 0);
        // GET_VQ_STATE of a queue never served: the kernel's saved index.
        fake.set_avail_index(1, 0x1234);
        let answer = d.handle(&vq_state(9, 1)).unwrap();
        assert_eq!(answer.request_id, 9);
        assert_eq!(answer.vq_state().index, 1);
        assert_eq!(answer.vq_state().state.split().avail_index, 0x1234);
    }

    /// A device with one 16-entry queue at IOVA 0x1_0000 in a 1 MiB memfd, mapped as two
    /// regions: buffers (where the mock puts them, 0x1000), rings.
    fn ring_device() -> Arc<FakeDevice> {
        let fake = Arc::new(FakeDevice::new(1, 0x10_0000));
        fake.set_regions(&[
            IotlbEntry {
                start: 0,
                last: 0xffff,
                offset: 0,
                perm: VDUSE_ACCESS_RW,
            },
            IotlbEntry {
                start: 0x1_0000,
                last: 0x1_0fff,
                offset: 0x1_0000,
                perm: VDUSE_ACCESS_RW,
            },
        ]);
        fake.set_features(FEATURES | (1 << VIRTIO_RING_F_EVENT_IDX));
        fake
    }

    #[test]
    fn driver_ok_serves_ready_queues_and_reset_waits_for_them() {
        let fake = ring_device();
        let memory = fake.memory();
        let mut mock = MockSplitQueue::create(&memory, GuestAddress(0x1_0000), 16);
        fake.set_vq_addresses(
            0,
            mock.desc_table_addr().0,
            mock.avail_addr().0,
            mock.used_addr().0,
            true,
        );
        let backend = Arc::new(Recorder::default());
        let (mut d, wake) = dispatcher(&fake, backend.clone());
        // A request is waiting before DRIVER_OK: the first drain serves it.
        mock.add_chain(2).unwrap();
        assert_eq!(result(d.handle(&status(1, 15))), Some(VDUSE_REQ_RESULT_OK));
        assert_eq!(d.running_queues(), [0]);
        assert_eq!(d.memory().len(), 2);
        eventually("the first request", || mock.used().idx().load() == 1);
        assert!(fake.kickfd_set(0));
        // With EVENT_IDX negotiated the queue honours used_event (0: interrupt).
        eventually("an interrupt", || fake.irqs(0) == 1);

        // A kick brings the next one.
        mock.add_chain(3).unwrap();
        fake.kick(0);
        eventually("the kicked request", || mock.used().idx().load() == 2);
        let answer = d.handle(&vq_state(2, 0)).unwrap();
        assert_eq!(answer.vq_state().state.split().avail_index, 2);

        // Reset: answered once the worker is gone (at once when it was quicker than the
        // dispatcher's look), then everything is dropped.
        let answers = match d.handle(&status(3, 0)) {
            Some(answer) => vec![answer],
            None => completed(&mut d, &wake),
        };
        assert_eq!(answers.len(), 1);
        assert_eq!((answers[0].request_id, answers[0].result), (3, 0));
        assert!(d.running_queues().is_empty());
        assert_eq!(d.memory().len(), 0);
        assert_eq!(backend.calls.lock().unwrap().len(), 2);

        // And the driver starts again.
        fake.set_vq_addresses(
            0,
            mock.desc_table_addr().0,
            mock.avail_addr().0,
            mock.used_addr().0,
            true,
        );
        fake.set_avail_index(0, 2);
        assert_eq!(result(d.handle(&status(4, 15))), Some(VDUSE_REQ_RESULT_OK));
        mock.add_chain(1).unwrap();
        fake.kick(0);
        eventually("a request after the reset", || {
            mock.used().idx().load() == 3
        });
        d.stop_all();
    }

    /// Blocks in `handle` until released: a backend in the middle of slow I/O.
    struct Blocking {
        entered: AtomicUsize,
        release: Mutex<bool>,
        released: std::sync::Condvar,
    }

    impl Backend for Blocking {
        fn device_type(&self) -> DeviceType {
            DeviceType::Block
        }
        fn features(&self) -> u64 {
            0
        }
        fn config(&self) -> Vec<u8> {
            Vec::new()
        }
        fn num_queues(&self) -> u16 {
            1
        }
        fn max_queue_size(&self) -> u16 {
            16
        }
        fn handle(&self, _: u16, _: &Arc<Memory>, _: Chain) -> u32 {
            self.entered.fetch_add(1, Ordering::SeqCst);
            let mut released = self.release.lock().unwrap();
            while !*released {
                released = self.released.wait(released).unwrap();
            }
            0
        }
    }

    #[test]
    fn suspend_and_queue_stop_answer_only_once_the_worker_is_quiet() {
        let fake = ring_device();
        let memory = fake.memory();
        let mut mock = MockSplitQueue::create(&memory, GuestAddress(0x1_0000), 16);
        fake.set_vq_addresses(
            0,
            mock.desc_table_addr().0,
            mock.avail_addr().0,
            mock.used_addr().0,
            false,
        );
        let backend = Arc::new(Blocking {
            entered: AtomicUsize::new(0),
            release: Mutex::new(false),
            released: std::sync::Condvar::new(),
        });
        let (mut d, wake) = dispatcher(&fake, backend.clone());
        // VDUSE_F_QUEUE_READY: the queue becomes ready by request, before DRIVER_OK.
        assert_eq!(result(d.handle(&vq_ready(1, 0, true))), Some(0));
        assert!(d.running_queues().is_empty());
        assert_eq!(result(d.handle(&status(2, 15))), Some(0));
        assert_eq!(d.running_queues(), [0]);
        mock.add_chain(1).unwrap();
        mock.add_chain(1).unwrap();
        fake.kick(0);
        eventually("the backend busy", || {
            backend.entered.load(Ordering::SeqCst) == 1
        });

        // SUSPEND while the backend is busy: not answered, and the dispatcher is free.
        assert!(d.handle(&status(3, 15)).is_some());
        assert!(d.handle(&VduseDevRequest::new(VDUSE_SUSPEND, 4)).is_none());
        assert!(d.complete().is_empty());
        let state = d.handle(&vq_state(5, 0)).unwrap();
        assert_eq!(state.vq_state().state.split().avail_index, 1);
        *backend.release.lock().unwrap() = true;
        backend.released.notify_all();
        let answers = completed(&mut d, &wake);
        assert_eq!(
            answers.iter().map(|a| a.request_id).collect::<Vec<_>>(),
            [4]
        );
        // Stopped between requests: the second one stays in the ring.
        assert_eq!(backend.entered.load(Ordering::SeqCst), 1);
        assert_eq!(mock.used().idx().load(), 1);
        let state = d.handle(&vq_state(6, 0)).unwrap();
        assert_eq!(state.vq_state().state.split().avail_index, 1);
        // Suspended: a queue made ready again does not start.
        assert_eq!(result(d.handle(&vq_ready(7, 0, true))), Some(0));
        assert!(d.running_queues().is_empty());

        // After a reset, SET_VQ_READY after DRIVER_OK starts the queue, 0 stops it.
        assert_eq!(result(d.handle(&status(8, 0))), Some(0));
        fake.set_vq_addresses(
            0,
            mock.desc_table_addr().0,
            mock.avail_addr().0,
            mock.used_addr().0,
            false,
        );
        fake.set_avail_index(0, 1);
        assert_eq!(result(d.handle(&status(9, 15))), Some(0));
        assert!(d.running_queues().is_empty());
        assert_eq!(result(d.handle(&vq_ready(10, 0, true))), Some(0));
        assert_eq!(d.running_queues(), [0]);
        eventually("the waiting request", || mock.used().idx().load() == 2);
        let answer = match d.handle(&vq_ready(11, 0, false)) {
            Some(answer) => answer,
            None => completed(&mut d, &wake).remove(0),
        };
        assert_eq!((answer.request_id, answer.result), (11, 0));
        assert!(d.running_queues().is_empty());
        // used_event stayed 0: EVENT_IDX asked for one interrupt, past used index 0.
        assert_eq!(fake.irqs(0), 1);
    }

    #[test]
    fn suspend_waits_for_the_requests_in_flight_then_the_worker_ends() {
        use crate::runtime::test_doubles::{Deferred, DeferredState};
        let fake = ring_device();
        let memory = fake.memory();
        let mut mock = MockSplitQueue::create(&memory, GuestAddress(0x1_0000), 16);
        // The mock's used ring overlaps its avail ring's used_event: put the used ring
        // where the test's lengths cannot change used_event.
        let used_ring = mock.used_addr().0 + 0x200;
        let used_idx = || fake.read_u32(used_ring) >> 16;
        fake.set_vq_addresses(
            0,
            mock.desc_table_addr().0,
            mock.avail_addr().0,
            used_ring,
            true,
        );
        let state = DeferredState::new();
        let (mut d, wake) = dispatcher(&fake, Arc::new(Deferred(state.clone())));
        mock.add_chain(1).unwrap();
        mock.add_chain(1).unwrap();
        assert_eq!(result(d.handle(&status(1, 15))), Some(VDUSE_REQ_RESULT_OK));
        eventually("both requests in flight", || state.started() == 2);

        // SUSPEND: not answered while they are in flight, and the request thread is free.
        assert!(d.handle(&VduseDevRequest::new(VDUSE_SUSPEND, 2)).is_none());
        std::thread::sleep(Duration::from_millis(50));
        assert!(d.complete().is_empty());
        assert_eq!(d.running_queues(), [0]);
        let state_answer = d.handle(&vq_state(3, 0)).unwrap();
        assert_eq!(state_answer.vq_state().state.split().avail_index, 2);

        // They finish (out of order): both are used, one interrupt, then the answer.
        state.finish_in_reverse();
        let answers = completed(&mut d, &wake);
        assert_eq!(
            answers.iter().map(|a| a.request_id).collect::<Vec<_>>(),
            [2]
        );
        assert!(d.running_queues().is_empty());
        assert_eq!(used_idx(), 2);
        assert_eq!(fake.irqs(0), 1);
        d.stop_all();
    }
}
