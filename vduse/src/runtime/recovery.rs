//! Taking over the device of a server that ended (crashed, killed, or upgraded): whether
//! this server may, and how each queue goes on from where the rings and the in-flight log
//! stand.
//!
//! A new server meets an existing device when `VDUSE_CREATE_DEV` says its name is in use.
//! With an in-flight log it checks the device and the log against its own configuration
//! ([`open_to_take_over`]); the request thread then activates the device as at
//! `DRIVER_OK`, with the same code (`Dispatcher::take_over`), and each ready queue's worker
//! starts with [`take_over_queue`]: the requests the ended server had taken and not
//! answered run again, oldest first, through [`QueueEngine::start_again`], which tells the
//! engine that they may have been carried out already.
//!
//! [`QueueEngine::start_again`]: crate::backend::QueueEngine::start_again

use std::sync::Arc;
use std::sync::atomic::Ordering;

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::drain::{Serving, rings_mapped};
use super::inflight::{Identity, InflightLog};
use super::iotlb::MemorySource;
use crate::backend::{Memory, Used};
use crate::error::{Error, Result};
use crate::{DeviceConfig, DeviceFd};

/// Why a server without an in-flight log cannot have the existing device `name`: another
/// process serves it, or it was left by one that ended and this server cannot take it
/// over.
pub(super) fn existing_device(name: &str) -> Error {
    match open_unserved(name) {
        Ok(_) => Error::TakeOverRefused {
            name: name.to_owned(),
            reason: "this server keeps no in-flight log to take it over with".into(),
        },
        Err(served @ Error::DeviceServed { .. }) => served,
        Err(_) => Error::NameInUse {
            name: name.to_owned(),
        },
    }
}

/// Opens the node of the existing device `name`; [`Error::DeviceServed`] when another
/// process has it open (the kernel allows one opener).
fn open_unserved(name: &str) -> Result<DeviceFd> {
    DeviceFd::open(name).map_err(|error| match error {
        Error::Kernel {
            errno: rustix::io::Errno::BUSY,
            ..
        } => Error::DeviceServed {
            name: name.to_owned(),
        },
        error => error,
    })
}

/// Checks that the existing device `name` can be taken over by a server configured as
/// `config`: no process has its node open, the in-flight log at `path` was written for the
/// same configuration (`offered`), and the kernel's device has as many queues, none
/// larger, and no feature this server does not offer. Returns the opened node and log.
pub(super) fn open_to_take_over(
    name: &str,
    config: &DeviceConfig,
    path: &std::path::Path,
    offered: &Identity,
    max_queue_size: u16,
) -> Result<(Arc<DeviceFd>, InflightLog)> {
    let device = Arc::new(open_unserved(name)?);
    let refuse = |reason: String| Error::TakeOverRefused {
        name: name.to_owned(),
        reason,
    };
    if !path.exists() {
        return Err(refuse(format!(
            "it has no in-flight log at {} (its server kept none, or removed it)",
            path.display()
        )));
    }
    let num_queues = config.vq_num as u16;
    let log = InflightLog::open(path, offered, num_queues, max_queue_size)
        .map_err(|error| refuse(error.to_string()))?;
    let features = device.negotiated_features()?;
    if features & !config.features != 0 {
        return Err(refuse(format!(
            "its driver uses features {:#x} this server does not offer",
            features & !config.features
        )));
    }
    for index in 0..num_queues {
        let info = device
            .vq_info(index.into())
            .map_err(|error| refuse(format!("queue {index}: {error}")))?;
        if info.num > u32::from(max_queue_size) {
            return Err(refuse(format!(
                "its queue {index} has {} entries, more than this server's {max_queue_size}",
                info.num
            )));
        }
    }
    if device.vq_info(num_queues.into()).is_ok() {
        return Err(refuse(format!(
            "it has more than this server's {num_queues} queue(s)"
        )));
    }
    device.set_nonblocking()?;
    Ok((device, log))
}

/// Takes over a queue a server that ended was serving: brings its in-flight log in line
/// with the used ring, goes on from where the rings stand, and runs again the requests
/// that were in flight, oldest first (their answers go out with the first drain). The
/// server takes a device over only with a log.
pub(super) fn take_over_queue(
    queue: &mut Queue,
    source: &dyn MemorySource,
    serving: &mut Serving,
    index: u16,
) {
    let mut memory = source.snapshot();
    if !rings_mapped(queue, &memory) {
        source.refresh_after_miss();
        memory = source.snapshot();
    }
    let Ok(used_idx) = queue.used_idx(memory.as_ref(), Ordering::Acquire) else {
        log::error!("queue {index}: its used ring is not mapped; not taken over");
        return;
    };
    let used_idx = used_idx.0;
    let size = queue.size();
    let used_ring = queue.used_ring();
    let used_head_at = |position: u16| {
        let at = used_ring + 4 + 8 * u64::from(position % size);
        memory
            .load::<u32>(GuestAddress(at), Ordering::Acquire)
            .ok()
            .map(|id| u32::from_le(id) as u16)
    };
    let Some(log) = serving.log.as_mut() else {
        log::error!("queue {index}: no in-flight log to take it over with");
        return;
    };
    let recovery = log.recover(used_idx, used_head_at);
    queue.set_next_used(used_idx);
    queue.set_next_avail(recovery.next_avail);
    log::info!(
        "queue {index}: taken over at avail index {}, used index {used_idx}; {} request(s) \
         in flight run again",
        recovery.next_avail,
        recovery.replay.len()
    );
    if recovery.replay.is_empty() {
        return;
    }
    let (mut replay, memory) = match replay_queue(queue, &memory, &recovery.replay) {
        Ok(replay) => replay,
        Err(problem) => {
            log::error!("queue {index}: cannot run the requests in flight again: {problem}");
            return;
        }
    };
    let memory = Arc::new(memory);
    for _ in 0..recovery.replay.len() {
        let Some(chain) = replay.pop_descriptor_chain(memory.clone()) else {
            break;
        };
        let head = chain.head_index();
        if let Some(len) = serving.engine.start_again(memory.clone(), chain) {
            serving.done.push(Used { head, len });
        }
    }
    serving.engine.submit();
}

/// A queue whose available ring, in private memory past the end of `memory`, lists
/// `heads`; its descriptor table is `queue`'s. virtio-queue makes descriptor chains only
/// from an available ring, and the driver's may hold other heads by now.
fn replay_queue(
    queue: &Queue,
    memory: &Memory,
    heads: &[u16],
) -> std::result::Result<(Queue, Memory), String> {
    let size = queue.size();
    let avail_len = (6 + 2 * u64::from(size)).next_multiple_of(4096);
    let used_len = (6 + 8 * u64::from(size)).next_multiple_of(4096);
    let base = memory
        .last_addr()
        .0
        .checked_add(1)
        .and_then(|end| end.checked_next_multiple_of(4096))
        .ok_or("no address is free past the IOTLB")?;
    let region = vm_memory::GuestRegionMmap::<()>::from_range(
        GuestAddress(base),
        (avail_len + used_len) as usize,
        None,
    )
    .map_err(|e| e.to_string())?;
    let memory = memory
        .insert_region(Arc::new(region))
        .map_err(|e| e.to_string())?;
    let mut ring = Vec::with_capacity(4 + 2 * heads.len());
    ring.extend_from_slice(&0u16.to_le_bytes());
    ring.extend_from_slice(&(heads.len() as u16).to_le_bytes());
    for head in heads {
        ring.extend_from_slice(&head.to_le_bytes());
    }
    memory
        .write_slice(&ring, GuestAddress(base))
        .map_err(|e| e.to_string())?;
    let mut replay = Queue::new(size).map_err(|e| e.to_string())?;
    replay.try_set_size(size).map_err(|e| e.to_string())?;
    replay
        .try_set_desc_table_address(GuestAddress(queue.desc_table()))
        .map_err(|e| e.to_string())?;
    replay
        .try_set_avail_ring_address(GuestAddress(base))
        .map_err(|e| e.to_string())?;
    replay
        .try_set_used_ring_address(GuestAddress(base + avail_len))
        .map_err(|e| e.to_string())?;
    replay.set_ready(true);
    Ok((replay, memory))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::drain::tests::{descriptor, fixed, memory};
    use crate::runtime::drain::{Drained, drain, publish_used};
    use crate::runtime::test_doubles::Recorder;
    use crate::runtime::worker::Progress;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;

    #[test]
    fn a_killed_servers_requests_run_again_in_order_and_serving_goes_on() {
        let memory = memory();
        let mock = MockSplitQueue::create(memory.as_ref(), GuestAddress(0), 16);
        // Six one-descriptor chains, heads 0 to 5, each with a byte to write.
        let chains: Vec<RawDescriptor> = (0..6)
            .map(|i| descriptor(0x8000 + 0x100 * i as u64, 1, true))
            .collect();
        mock.add_desc_chains(&chains, 0).unwrap();
        let path = std::env::temp_dir().join(format!("vduse-takeover-{}", std::process::id()));
        let log = crate::runtime::inflight::InflightLog::create(
            &path,
            &crate::runtime::inflight::Identity::default(),
            1,
            16,
        )
        .unwrap();
        // The first server took five, answered 1 and 3, and was killed.
        {
            let mut first: Queue = mock.create_queue().unwrap();
            let mut queue_log = log.queue(0);
            for head in 0..5 {
                first.pop_descriptor_chain(memory.as_ref()).unwrap();
                queue_log.started(head);
            }
            let done = [Used { head: 1, len: 1 }, Used { head: 3, len: 1 }];
            assert_eq!(
                publish_used(&mut first, &memory, &done, 0, Some(&queue_log)),
                2
            );
        }
        // The next one runs 0, 2 and 4 again, oldest first, and goes on at 5.
        let mut queue: Queue = mock.create_queue().unwrap();
        let backend = Arc::new(Recorder::default());
        let source = fixed(&memory);
        let mut serving = Serving::for_queue(backend.clone(), 0, 16);
        serving.log = Some(log.queue(0));
        take_over_queue(&mut queue, &source, &mut serving, 0);
        assert_eq!((queue.next_avail(), queue.next_used()), (5, 2));
        let heads = |backend: &Recorder| -> Vec<u16> {
            backend.calls.lock().unwrap().iter().map(|c| c.1).collect()
        };
        assert_eq!(heads(&backend), [0, 2, 4]);
        let outcome = drain(&mut queue, &source, &mut serving, 0, &Progress::default());
        assert!(
            matches!(outcome, Drained::Handled { count: 4, .. }),
            "{outcome:?}"
        );
        assert_eq!(heads(&backend), [0, 2, 4, 5]);
        assert_eq!(mock.used().idx().load(), 6);
        let used: Vec<u32> = (0..6)
            .map(|slot| mock.used().ring().ref_at(slot).unwrap().load().id())
            .collect();
        assert_eq!(used, [1, 3, 0, 2, 4, 5]);
        // Nothing is left in flight for a third server.
        let recovery = log.queue(0).recover(6, |_| None);
        assert_eq!((recovery.next_avail, recovery.replay.len()), (6, 0));
        log.remove().unwrap();
    }
}
