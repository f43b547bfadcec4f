//! Backends and memory for the runtime's unit tests: they stand in for a device type and
//! for the IOTLB, so the worker and the request thread can be tested without a kernel.

use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};

use vm_memory::Bytes;

use super::iotlb::MemorySource;
use crate::DeviceType;
use crate::backend::{Backend, Chain, Memory, QueueEngine, Used};
use crate::event::Event;

/// Memory that never changes; counts the refreshes asked for.
pub(crate) struct FixedMemory {
    pub memory: Arc<Memory>,
    pub refreshes: Mutex<usize>,
}

impl MemorySource for FixedMemory {
    fn snapshot(&self) -> Arc<Memory> {
        self.memory.clone()
    }
    fn refresh_after_miss(&self) -> bool {
        *self.refreshes.lock().unwrap() += 1;
        false
    }
}

/// Writes the first byte of each request's first writable buffer; records the calls.
#[derive(Default)]
pub(crate) struct Recorder {
    pub calls: Mutex<Vec<(u16, u16, usize)>>,
}

impl Backend for Recorder {
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
    fn handle(&self, queue: u16, memory: &Arc<Memory>, chain: Chain) -> u32 {
        let head = chain.head_index();
        let descriptors: Vec<_> = chain.collect();
        let mut written = 0;
        if let Some(d) = descriptors.iter().find(|d| d.is_write_only()) {
            memory.write_obj(0xabu8, d.addr()).unwrap();
            written = 1;
        }
        self.calls
            .lock()
            .unwrap()
            .push((queue, head, descriptors.len()));
        written
    }
}

/// What a [`Deferred`] backend's engine shares with the test: requests started and not
/// finished (with the memory they hold), and requests finished and not reaped.
#[derive(Default)]
pub(crate) struct DeferredState {
    pub started: Mutex<Vec<(u16, Arc<Memory>)>>,
    pub finished: Mutex<Vec<Used>>,
    /// Every batch `submit` was called with, as counts.
    pub submits: Mutex<Vec<usize>>,
    pub event: Option<Event>,
}

impl DeferredState {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            event: Some(Event::new("completions").unwrap()),
            ..Self::default()
        })
    }

    /// Finishes every started request, the newest first, each with `len` = 10 + head.
    pub fn finish_in_reverse(&self) {
        let mut started = self.started.lock().unwrap();
        let mut finished = self.finished.lock().unwrap();
        while let Some((head, _memory)) = started.pop() {
            finished.push(Used {
                head,
                len: 10 + u32::from(head),
            });
        }
        self.event.as_ref().unwrap().notify();
    }

    pub fn started(&self) -> usize {
        self.started.lock().unwrap().len()
    }
}

/// Keeps every request in flight until the test finishes it.
pub(crate) struct DeferredEngine {
    state: Arc<DeferredState>,
    since_submit: usize,
}

impl QueueEngine for DeferredEngine {
    fn start(&mut self, memory: Arc<Memory>, chain: Chain) -> Option<u32> {
        self.state
            .started
            .lock()
            .unwrap()
            .push((chain.head_index(), memory));
        self.since_submit += 1;
        None
    }
    fn submit(&mut self) {
        self.state.submits.lock().unwrap().push(self.since_submit);
        self.since_submit = 0;
    }
    fn completion_fd(&self) -> Option<BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        Some(self.state.event.as_ref().unwrap().as_fd())
    }
    fn reap(&mut self, done: &mut Vec<Used>) {
        self.state.event.as_ref().unwrap().drain();
        done.append(&mut self.state.finished.lock().unwrap());
    }
    fn in_flight(&self) -> usize {
        self.state.started() + self.state.finished.lock().unwrap().len()
    }
}

/// A backend whose requests all go through a [`DeferredEngine`].
pub(crate) struct Deferred(pub Arc<DeferredState>);

impl Backend for Deferred {
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
        panic!("a deferred backend is served by its engine")
    }
    fn engine(self: Arc<Self>, _: u16, _: u16) -> Option<Box<dyn QueueEngine>> {
        Some(Box::new(DeferredEngine {
            state: self.0.clone(),
            since_submit: 0,
        }))
    }
}
