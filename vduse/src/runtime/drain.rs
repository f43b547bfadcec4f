//! One drain of a virtqueue: the finished requests go into the used ring, every available
//! request goes to the queue's engine, and the driver gets at most one interrupt for it
//! all. The worker thread (`worker.rs`) calls it each time it wakes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::time::{Duration, Instant};

use virtio_bindings::virtio_ring::VRING_AVAIL_F_NO_INTERRUPT;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::inflight::QueueLog;
use super::iotlb::MemorySource;
use super::worker::Progress;
use crate::backend::{Backend, Memory, QueueEngine, Synchronous, Used};

/// How a worker serves its queue: the queue's engine (the backend's own, or the built-in
/// [`Synchronous`] one), the requests it finished that are not yet in the used ring, and
/// what else a drain needs to know.
pub(crate) struct Serving {
    pub engine: Box<dyn QueueEngine>,
    pub done: Vec<Used>,
    /// How long to watch an emptied available ring before sleeping (zero: not at all).
    pub busy_poll: Duration,
    /// Where the requests taken and not yet answered are recorded, if anywhere.
    pub log: Option<QueueLog>,
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serving")
            .field("in_flight", &self.in_flight())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Serving {
    /// Serves queue `queue` (of `size` entries) with the backend's engine, or one request
    /// at a time through [`Backend::handle`] if it has none.
    pub fn for_queue(backend: Arc<dyn Backend>, queue: u16, size: u16) -> Self {
        let engine = match backend.clone().engine(queue, size) {
            Some(engine) => engine,
            None => Box::new(Synchronous::new(backend, queue)),
        };
        Self {
            engine,
            done: Vec::new(),
            busy_poll: Duration::ZERO,
            log: None,
        }
    }

    /// Requests started and not yet in the used ring.
    pub fn in_flight(&self) -> usize {
        self.engine.in_flight() + self.done.len()
    }
}

/// Most requests started by one drain: a queue the driver keeps busy still gets its
/// started requests submitted and its interrupts at least this often.
pub(crate) const MAX_BATCH: usize = 32;

/// What one drain did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drained {
    /// The rings are outside the mapped memory, even after remapping the IOTLB.
    Unmapped,
    /// `count` used elements were added; `notify` when the driver wants an interrupt;
    /// `more` when the drain stopped at [`MAX_BATCH`] requests with more perhaps waiting
    /// (drain again at once: notifications are still off).
    Handled {
        count: usize,
        notify: bool,
        more: bool,
    },
}

/// Puts the finished requests in the used ring, then starts every request in the
/// available ring, until it stays empty with notifications re-enabled, the queue's size is
/// in flight, or `stopping` is set. Remaps the IOTLB once per request whose buffers are
/// not all mapped: the kernel adds regions (its bounce region) without telling the device.
/// Asks for one interrupt for everything used in the call.
pub(crate) fn drain(
    queue: &mut Queue,
    source: &dyn MemorySource,
    serving: &mut Serving,
    index: u16,
    progress: &Progress,
) -> Drained {
    let stopping = &progress.stopping;
    serving.engine.reap(&mut serving.done);
    let mut memory = source.snapshot();
    if !rings_mapped(queue, &memory) {
        source.refresh_after_miss();
        memory = source.snapshot();
        if !rings_mapped(queue, &memory) {
            return Drained::Unmapped;
        }
    }
    // Where the used ring stood when the driver last heard from this queue: every drain
    // that adds elements ends by deciding on an interrupt for them.
    let used_before = queue.next_used();
    let mut count = publish_used(
        queue,
        memory.as_ref(),
        &serving.done,
        index,
        serving.log.as_ref(),
    );
    serving.done.clear();
    let limit = usize::from(queue.size());
    let mut remapped_for_this_request = false;
    let mut started = 0;
    let mut more = false;
    'batches: loop {
        if stopping.load(Ordering::Acquire) {
            break;
        }
        if let Err(error) = queue.disable_notification(memory.as_ref()) {
            log::warn!("queue {index}: {error}");
            break;
        }
        while !stopping.load(Ordering::Acquire) {
            // The queue's size in flight: the next completion brings the worker back, with
            // notifications still disabled.
            if serving.in_flight() >= limit {
                break 'batches;
            }
            // A batch ends here even while the driver keeps adding requests: what was
            // started is submitted, and the driver gets its interrupt.
            if started >= MAX_BATCH {
                more = true;
                break 'batches;
            }
            let Some(chain) = queue.pop_descriptor_chain(memory.clone()) else {
                break;
            };
            if !remapped_for_this_request && !chain_mapped(&chain) {
                queue.go_to_previous_position();
                remapped_for_this_request = true;
                // Read the chain again against the current snapshot, whether this remap
                // changed it or another queue's worker had remapped already: the one this
                // drain started with may be older than both.
                source.refresh_after_miss();
                memory = source.snapshot();
                continue;
            }
            progress
                .next_avail
                .store(queue.next_avail(), Ordering::Release);
            let head = chain.head_index();
            if let Some(log) = serving.log.as_mut() {
                log.started(head);
            }
            let len = serving.engine.start(memory.clone(), chain);
            remapped_for_this_request = false;
            started += 1;
            let Some(len) = len else {
                continue;
            };
            let used = queue.next_used();
            if let Some(log) = &serving.log {
                log.publishing(used, used.wrapping_add(1));
            }
            if let Err(error) = queue.add_used(memory.as_ref(), head, len) {
                log::warn!("queue {index}: {error}");
                break 'batches;
            }
            if let Some(log) = &serving.log {
                log.published([head]);
            }
            count += 1;
        }
        if stopping.load(Ordering::Acquire) {
            break;
        }
        // Nothing in flight, so only the driver can bring more work: with busy polling,
        // watch the available ring a while before asking the driver for a kick.
        if !serving.busy_poll.is_zero()
            && serving.in_flight() == 0
            && busy_poll(queue, memory.as_ref(), serving.busy_poll, stopping)
        {
            continue;
        }
        match queue.enable_notification(memory.as_ref()) {
            Ok(true) => continue,
            Ok(false) => break,
            Err(error) => {
                log::warn!("queue {index}: {error}");
                break;
            }
        }
    }
    serving.engine.submit();
    let notify = count > 0 && needs_interrupt(queue, &memory, used_before);
    Drained::Handled {
        count,
        notify,
        more,
    }
}

/// Whether the driver wants an interrupt for what was just used: its `used_event` with
/// EVENT_IDX, else the avail ring's `VRING_AVAIL_F_NO_INTERRUPT` flag (which virtio-queue
/// leaves to the device).
///
/// With EVENT_IDX, the driver wants one when the used index passed its `used_event` since
/// `used_before` (the used index at the previous decision), as the kernel's
/// `vring_need_event` computes it.
fn needs_interrupt(queue: &Queue, memory: &Memory, used_before: u16) -> bool {
    // The used index was published before `used_event` is read, and the driver writes
    // `used_event` before it reads the used index: a full fence on each side.
    fence(Ordering::SeqCst);
    if queue.event_idx_enabled() {
        let used_event_at = queue.avail_ring() + 4 + 2 * u64::from(queue.size());
        let Ok(used_event) = memory
            .load::<u16>(GuestAddress(used_event_at), Ordering::Relaxed)
            .map(u16::from_le)
        else {
            return true;
        };
        let used = queue.next_used();
        return used.wrapping_sub(used_event).wrapping_sub(1) < used.wrapping_sub(used_before);
    }
    let flags: u16 = memory
        .load(GuestAddress(queue.avail_ring()), Ordering::Acquire)
        .map_or(0, u16::from_le);
    flags & VRING_AVAIL_F_NO_INTERRUPT as u16 == 0
}

/// Spins for up to `limit` until the driver adds to the available ring (true), or the
/// worker is asked to stop (false). Spares the driver a kick and this thread a wake-up
/// when requests come close together, at the price of a CPU kept busy meanwhile.
fn busy_poll(queue: &Queue, memory: &Memory, limit: Duration, stopping: &AtomicBool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit && !stopping.load(Ordering::Relaxed) {
        if queue
            .avail_idx(memory, Ordering::Acquire)
            .is_ok_and(|idx| idx.0 != queue.next_avail())
        {
            return true;
        }
        std::hint::spin_loop();
    }
    false
}

/// Puts `done` in the used ring with one update of the used index, so the driver sees all
/// of them at once (a network frame spread over several receive buffers must not be seen
/// in part). Returns how many were put.
pub(super) fn publish_used(
    queue: &mut Queue,
    memory: &Memory,
    done: &[Used],
    index: u16,
    log: Option<&QueueLog>,
) -> usize {
    let size = queue.size();
    let valid: Vec<Used> = done
        .iter()
        .filter(|used| {
            let ok = used.head < size;
            if !ok {
                log::warn!(
                    "queue {index}: no used element for head {} (out of range)",
                    used.head
                );
            }
            ok
        })
        .copied()
        .collect();
    let Some((last, first)) = valid.split_last() else {
        return 0;
    };
    let start = queue.next_used();
    if let Some(log) = log {
        log.publishing(start, start.wrapping_add(valid.len() as u16));
    }
    for (offset, used) in first.iter().enumerate() {
        let slot = u64::from(start.wrapping_add(offset as u16) % size);
        // struct virtq_used_elem: le32 id, le32 len.
        let mut element = [0u8; 8];
        element[..4].copy_from_slice(&u32::from(used.head).to_le_bytes());
        element[4..].copy_from_slice(&used.len.to_le_bytes());
        let at = GuestAddress(queue.used_ring() + 4 + 8 * slot);
        if let Err(error) = memory.write_slice(&element, at) {
            log::warn!("queue {index}: writing the used ring: {error}");
        }
    }
    // add_used writes the last element and publishes the index with release ordering, so
    // the elements above are visible before it.
    queue.set_next_used(start.wrapping_add(first.len() as u16));
    match queue.add_used(memory, last.head, last.len) {
        Ok(()) => {
            if let Some(log) = log {
                log.published(valid.iter().map(|used| used.head));
            }
            valid.len()
        }
        Err(error) => {
            log::warn!("queue {index}: {error}");
            queue.set_next_used(start);
            0
        }
    }
}

/// Whether the descriptor table and both rings are in `memory`.
pub(super) fn rings_mapped(queue: &Queue, memory: &Memory) -> bool {
    let size = u64::from(queue.size());
    // Descriptor table, avail ring (flags, idx, ring, used_event), used ring (flags, idx,
    // ring, avail_event).
    [
        (queue.desc_table(), 16 * size),
        (queue.avail_ring(), 6 + 2 * size),
        (queue.used_ring(), 6 + 8 * size),
    ]
    .into_iter()
    .all(|(address, len)| memory.check_range(GuestAddress(address), len as usize))
}

/// Whether every buffer of `chain` is mapped and the chain reads to its end: an indirect
/// table outside the memory ends the iteration early, without an error.
fn chain_mapped<M>(chain: &DescriptorChain<M>) -> bool
where
    M: std::ops::Deref<Target = Memory> + Clone,
{
    let memory = chain.memory();
    let mut last_has_next = true;
    for descriptor in chain.clone() {
        if descriptor.len() > 0 && !memory.check_range(descriptor.addr(), descriptor.len() as usize)
        {
            return false;
        }
        last_has_next = descriptor.has_next();
    }
    !last_has_next
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::runtime::test_doubles::{Deferred, DeferredState, FixedMemory, Recorder};
    use std::sync::Mutex;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::desc::split::Descriptor as SplitDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestMemoryMmap;

    pub(crate) fn stopped() -> Progress {
        Progress {
            stopping: AtomicBool::new(true),
            ..Progress::default()
        }
    }

    pub(crate) fn memory() -> Arc<Memory> {
        Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1_0000)]).unwrap())
    }

    pub(crate) fn fixed(memory: &Arc<Memory>) -> FixedMemory {
        FixedMemory {
            memory: memory.clone(),
            refreshes: Mutex::new(0),
        }
    }

    pub(crate) fn descriptor(addr: u64, len: u32, write: bool) -> RawDescriptor {
        let flags = if write {
            virtio_bindings::virtio_ring::VRING_DESC_F_WRITE as u16
        } else {
            0
        };
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
    }

    #[test]
    fn busy_polling_sees_new_requests_and_gives_up_in_time() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        let queue: Queue = mock.create_queue().unwrap();
        let running = AtomicBool::new(false);
        // Nothing comes: false after the limit.
        let start = Instant::now();
        assert!(!busy_poll(
            &queue,
            &memory,
            Duration::from_millis(20),
            &running
        ));
        assert!(start.elapsed() >= Duration::from_millis(20));
        // Asked to stop: false at once, however long the limit.
        let start = Instant::now();
        assert!(!busy_poll(
            &queue,
            &memory,
            Duration::from_secs(60),
            &AtomicBool::new(true)
        ));
        assert!(start.elapsed() < Duration::from_secs(5));
        // The driver adds a request meanwhile: seen.
        let avail_idx = GuestAddress(mock.avail_addr().0 + 2);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(10));
                memory
                    .store(1u16.to_le(), avail_idx, Ordering::Release)
                    .unwrap();
            });
            assert!(busy_poll(
                &queue,
                &memory,
                Duration::from_secs(60),
                &running
            ));
        });
    }

    #[test]
    fn completions_are_published_together_and_bad_heads_left_out() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        let mut queue: Queue = mock.create_queue().unwrap();
        queue.set_next_used(14);
        let done = [
            Used { head: 5, len: 10 },
            Used { head: 99, len: 1 },
            Used { head: 2, len: 20 },
            Used { head: 7, len: 30 },
        ];
        assert_eq!(publish_used(&mut queue, &memory, &done, 0, None), 3);
        assert_eq!(queue.next_used(), 17);
        assert_eq!(mock.used().idx().load(), 17);
        // Slots 14, 15, then 0 (the ring wraps).
        let slots: Vec<(u32, u32)> = [14, 15, 0]
            .into_iter()
            .map(|slot| {
                let e = mock.used().ring().ref_at(slot).unwrap().load();
                (e.id(), e.len())
            })
            .collect();
        assert_eq!(slots, [(5, 10), (2, 20), (7, 30)]);
        assert_eq!(publish_used(&mut queue, &memory, &[], 0, None), 0);
        assert_eq!(mock.used().idx().load(), 17);
    }

    #[test]
    fn a_busy_queue_is_served_in_batches_each_with_its_interrupt() {
        let memory = memory();
        let size = 128u16;
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), size);
        let requests = MAX_BATCH + 5;
        let single: Vec<RawDescriptor> = (0..requests)
            .map(|i| descriptor(0x8000 + 0x100 * i as u64, 16, false))
            .collect();
        mock.add_desc_chains(&single, 0).unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        let backend = Arc::new(Recorder::default());
        let source = fixed(&memory);
        let drain_once = |queue: &mut Queue| {
            drain(
                queue,
                &source,
                &mut Serving::for_queue(backend.clone(), 0, 16),
                0,
                &Progress::default(),
            )
        };
        assert_eq!(
            drain_once(&mut queue),
            Drained::Handled {
                count: MAX_BATCH,
                notify: true,
                more: true
            }
        );
        assert_eq!(mock.used().idx().load(), MAX_BATCH as u16);
        assert_eq!(
            drain_once(&mut queue),
            Drained::Handled {
                count: 5,
                notify: true,
                more: false
            }
        );
        assert_eq!(queue.next_avail(), requests as u16);
    }

    #[test]
    fn drains_every_request_and_notifies_once() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        // Three chains: (read, write), (read), (read, read, write).
        let chains = [
            vec![descriptor(0x2000, 16, false), descriptor(0x3000, 1, true)],
            vec![descriptor(0x2100, 16, false)],
            vec![
                descriptor(0x2200, 16, false),
                descriptor(0x2300, 512, false),
                descriptor(0x3100, 1, true),
            ],
        ];
        let mut offset = 0;
        for chain in &chains {
            let mut linked = chain.clone();
            let n = linked.len();
            for (i, d) in linked.iter_mut().enumerate() {
                let s = SplitDescriptor::from(*d);
                let (flags, next) = if i + 1 < n {
                    (
                        s.flags() | virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16,
                        offset + i as u16 + 1,
                    )
                } else {
                    (s.flags(), 0)
                };
                *d = RawDescriptor::from(SplitDescriptor::new(s.addr().0, s.len(), flags, next));
            }
            mock.add_desc_chains(&linked, offset).unwrap();
            offset += n as u16;
        }
        let mut queue: Queue = mock.create_queue().unwrap();
        let backend = Arc::new(Recorder::default());
        let source = fixed(&memory);
        let outcome = drain(
            &mut queue,
            &source,
            &mut Serving::for_queue(backend.clone(), 0, 16),
            0,
            &Progress::default(),
        );
        assert_eq!(
            outcome,
            Drained::Handled {
                count: 3,
                notify: true,
                more: false
            }
        );
        assert_eq!(
            *backend.calls.lock().unwrap(),
            vec![(0, 0, 2), (0, 2, 1), (0, 3, 3)]
        );
        assert_eq!(mock.used().idx().load(), 3);
        let used: Vec<(u32, u32)> = (0..3)
            .map(|i| {
                let e = mock.used().ring().ref_at(i).unwrap().load();
                (e.id(), e.len())
            })
            .collect();
        assert_eq!(used, vec![(0, 1), (2, 0), (3, 1)]);
        assert_eq!(memory.read_obj::<u8>(GuestAddress(0x3100)).unwrap(), 0xab);
        assert_eq!(queue.next_avail(), 3);
        assert_eq!(*source.refreshes.lock().unwrap(), 0);

        // Nothing new: no request, no interrupt.
        let outcome = drain(
            &mut queue,
            &source,
            &mut Serving::for_queue(backend.clone(), 0, 16),
            0,
            &Progress::default(),
        );
        assert_eq!(
            outcome,
            Drained::Handled {
                count: 0,
                notify: false,
                more: false
            }
        );
    }

    #[test]
    fn indirect_chains_are_followed() {
        // The mock puts indirect tables at 0x3000_0000: give it memory there too.
        let memory = Arc::new(
            GuestMemoryMmap::from_ranges(&[
                (GuestAddress(0), 0x1_0000),
                (GuestAddress(0x3000_0000), 0x1000),
            ])
            .unwrap(),
        );
        let mut mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        mock.add_indirect_chain(3).unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        let backend = Arc::new(Recorder::default());
        let source = fixed(&memory);
        drain(
            &mut queue,
            &source,
            &mut Serving::for_queue(backend.clone(), 2, 16),
            2,
            &Progress::default(),
        );
        assert_eq!(*backend.calls.lock().unwrap(), vec![(2, 0, 3)]);
    }

    #[test]
    fn an_unmapped_buffer_asks_for_a_remap_once_then_is_served() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        // A buffer past the end of the memory (a bounce region the worker has not mapped).
        mock.add_desc_chains(&[descriptor(0x100_0000, 16, false)], 0)
            .unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        let backend = Arc::new(Recorder::default());
        let source = fixed(&memory);
        drain(
            &mut queue,
            &source,
            &mut Serving::for_queue(backend.clone(), 0, 16),
            0,
            &Progress::default(),
        );
        assert_eq!(*source.refreshes.lock().unwrap(), 1);
        // Still unmapped after the remap: the backend answers it (with an error status).
        assert_eq!(backend.calls.lock().unwrap().len(), 1);
        assert_eq!(mock.used().idx().load(), 1);
    }

    /// Memory another queue's worker remapped while this one held an older snapshot: the
    /// first snapshot lacks the region, every later one has it, and this worker's own
    /// remap finds nothing new.
    struct RemappedElsewhere {
        first: Mutex<Option<Arc<Memory>>>,
        current: Arc<Memory>,
    }

    impl MemorySource for RemappedElsewhere {
        fn snapshot(&self) -> Arc<Memory> {
            let first = self.first.lock().unwrap().take();
            first.unwrap_or_else(|| self.current.clone())
        }
        fn refresh_after_miss(&self) -> bool {
            false
        }
    }

    #[test]
    fn a_buffer_another_worker_mapped_is_read_in_the_current_snapshot() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        mock.add_desc_chains(&[descriptor(0x100_0000, 16, true)], 0)
            .unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        let bounce =
            vm_memory::GuestRegionMmap::from_range(GuestAddress(0x100_0000), 0x1000, None).unwrap();
        let current = Arc::new(memory.insert_region(Arc::new(bounce)).unwrap());
        let source = RemappedElsewhere {
            first: Mutex::new(Some(memory.clone())),
            current: current.clone(),
        };
        let backend = Arc::new(Recorder::default());
        drain(
            &mut queue,
            &source,
            &mut Serving::for_queue(backend.clone(), 0, 16),
            0,
            &Progress::default(),
        );
        assert_eq!(backend.calls.lock().unwrap().len(), 1);
        assert_eq!(
            current.read_obj::<u8>(GuestAddress(0x100_0000)).unwrap(),
            0xab
        );
        assert_eq!(mock.used().idx().load(), 1);
    }

    #[test]
    fn rings_outside_memory_are_not_served() {
        let memory = memory();
        let other: Arc<Memory> =
            Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1_0000)]).unwrap());
        let mock = MockSplitQueue::create(other.as_ref(), GuestAddress(0x8000), 16);
        let mut queue: Queue = mock.create_queue().unwrap();
        queue.set_desc_table_address(Some(0x2_0000), Some(0));
        let source = fixed(&memory);
        let outcome = drain(
            &mut queue,
            &source,
            &mut Serving::for_queue(Arc::new(Recorder::default()), 0, 16),
            0,
            &Progress::default(),
        );
        assert_eq!(outcome, Drained::Unmapped);
        assert_eq!(*source.refreshes.lock().unwrap(), 1);
    }

    #[test]
    fn event_idx_decides_the_interrupt() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        let mut queue: Queue = mock.create_queue().unwrap();
        queue.set_event_idx(true);
        let backend = Arc::new(Recorder::default());
        let source = fixed(&memory);
        // used_event sits after the avail ring: avail + 4 + 2 * size.
        let used_event = GuestAddress(mock.avail_addr().0 + 4 + 2 * 16);

        // The driver wants an interrupt once used idx passes 1: two requests cross it.
        memory.write_obj(1u16.to_le(), used_event).unwrap();
        mock.add_desc_chains(
            &[descriptor(0x2000, 16, false), descriptor(0x2100, 16, false)],
            0,
        )
        .unwrap();
        let outcome = drain(
            &mut queue,
            &source,
            &mut Serving::for_queue(backend.clone(), 0, 16),
            0,
            &Progress::default(),
        );
        assert_eq!(
            outcome,
            Drained::Handled {
                count: 2,
                notify: true,
                more: false
            }
        );
        // The worker asked for a kick at the next avail index (avail_event).
        let avail_event = GuestAddress(mock.used_addr().0 + 4 + 8 * 16);
        assert_eq!(memory.read_obj::<u16>(avail_event).unwrap(), 2);

        // Next it wants one only after used idx passes 10: one request does not get there.
        memory.write_obj(10u16.to_le(), used_event).unwrap();
        mock.add_desc_chains(&[descriptor(0x2200, 16, false)], 2)
            .unwrap();
        let outcome = drain(
            &mut queue,
            &source,
            &mut Serving::for_queue(backend.clone(), 0, 16),
            0,
            &Progress::default(),
        );
        assert_eq!(
            outcome,
            Drained::Handled {
                count: 1,
                notify: false,
                more: false
            }
        );
    }

    #[test]
    fn no_interrupt_flag_is_honoured_without_event_idx() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        let mut queue: Queue = mock.create_queue().unwrap();
        // avail->flags, the ring's first field.
        memory
            .write_obj(
                (virtio_bindings::virtio_ring::VRING_AVAIL_F_NO_INTERRUPT as u16).to_le(),
                mock.avail_addr(),
            )
            .unwrap();
        mock.add_desc_chains(&[descriptor(0x2000, 16, false)], 0)
            .unwrap();
        let outcome = drain(
            &mut queue,
            &fixed(&memory),
            &mut Serving::for_queue(Arc::new(Recorder::default()), 0, 16),
            0,
            &Progress::default(),
        );
        assert_eq!(
            outcome,
            Drained::Handled {
                count: 1,
                notify: false,
                more: false
            }
        );
    }

    #[test]
    fn completions_out_of_order_fill_the_used_ring_in_one_batch() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        mock.add_desc_chains(
            &[
                descriptor(0x2000, 16, false),
                descriptor(0x2100, 16, false),
                descriptor(0x2200, 16, false),
            ],
            0,
        )
        .unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        let state = DeferredState::new();
        let backend = Arc::new(Deferred(state.clone()));
        let mut engine = Serving::for_queue(backend.clone(), 0, 16);
        let source = fixed(&memory);
        // All three start; none is finished: nothing used, no interrupt, one submit.
        let outcome = drain(&mut queue, &source, &mut engine, 0, &Progress::default());
        assert_eq!(
            outcome,
            Drained::Handled {
                count: 0,
                notify: false,
                more: false
            }
        );
        assert_eq!((state.started(), engine.in_flight()), (3, 3));
        assert_eq!(*state.submits.lock().unwrap(), [3]);
        assert_eq!(mock.used().idx().load(), 0);
        // Each request holds the memory it was started with.
        assert_eq!(Arc::strong_count(&memory), 2 + 3);

        // They finish newest first: the used ring says so, and one interrupt covers them.
        state.finish_in_reverse();
        let outcome = drain(&mut queue, &source, &mut engine, 0, &Progress::default());
        assert_eq!(
            outcome,
            Drained::Handled {
                count: 3,
                notify: true,
                more: false
            }
        );
        assert_eq!(engine.in_flight(), 0);
        assert_eq!(mock.used().idx().load(), 3);
        let used: Vec<(u32, u32)> = (0..3)
            .map(|i| {
                let e = mock.used().ring().ref_at(i).unwrap().load();
                (e.id(), e.len())
            })
            .collect();
        assert_eq!(used, [(2, 12), (1, 11), (0, 10)]);
        // Reaped: the memory is let go.
        assert_eq!(Arc::strong_count(&memory), 2);
    }

    #[test]
    fn no_more_than_the_queue_size_is_in_flight() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 4);
        let chains: Vec<_> = (0..4)
            .map(|i| descriptor(0x2000 + 0x100 * i, 16, false))
            .collect();
        mock.add_desc_chains(&chains, 0).unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        let state = DeferredState::new();
        let backend = Arc::new(Deferred(state.clone()));
        let mut engine = Serving::for_queue(backend.clone(), 0, 4);
        let source = fixed(&memory);
        drain(&mut queue, &source, &mut engine, 0, &Progress::default());
        assert_eq!(state.started(), 4);
        // A driver that makes the same heads available again (it must not) gets nothing
        // started past the queue's size.
        let avail_idx = GuestAddress(mock.avail_addr().0 + 2);
        memory.write_obj(8u16.to_le(), avail_idx).unwrap();
        drain(&mut queue, &source, &mut engine, 0, &Progress::default());
        assert_eq!((state.started(), queue.next_avail()), (4, 4));
        state.finish_in_reverse();
        drain(&mut queue, &source, &mut engine, 0, &Progress::default());
        assert_eq!(mock.used().idx().load(), 4);
        assert_eq!(queue.next_avail(), 8);
    }

    #[test]
    fn stopping_still_reaps_what_is_in_flight() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        mock.add_desc_chains(&[descriptor(0x2000, 16, false)], 0)
            .unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        let state = DeferredState::new();
        let backend = Arc::new(Deferred(state.clone()));
        let mut engine = Serving::for_queue(backend.clone(), 0, 16);
        let source = fixed(&memory);
        drain(&mut queue, &source, &mut engine, 0, &Progress::default());
        mock.add_desc_chains(&[descriptor(0x2100, 16, false)], 1)
            .unwrap();
        state.finish_in_reverse();
        let outcome = drain(&mut queue, &source, &mut engine, 0, &stopped());
        assert_eq!(
            outcome,
            Drained::Handled {
                count: 1,
                notify: true,
                more: false
            }
        );
        // The second request stays available.
        assert_eq!((queue.next_avail(), state.started()), (1, 0));
    }

    #[test]
    fn stopping_leaves_the_rest_available() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        mock.add_desc_chains(
            &[descriptor(0x2000, 16, false), descriptor(0x2100, 16, false)],
            0,
        )
        .unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        let outcome = drain(
            &mut queue,
            &fixed(&memory),
            &mut Serving::for_queue(Arc::new(Recorder::default()), 0, 16),
            0,
            &stopped(),
        );
        assert_eq!(
            outcome,
            Drained::Handled {
                count: 0,
                notify: false,
                more: false
            }
        );
        assert_eq!(queue.next_avail(), 0);
    }
}
