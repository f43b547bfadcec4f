//! A device node for unit tests: its IOTLB is a memfd (IOVA = file offset), its
//! virtqueues what the test sets, its kicks an eventfd the test can write.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use rustix::fs::{MemfdFlags, memfd_create};
use rustix::io::Errno;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap};

use super::device_io::{DeviceIo, IotlbEntry};
use crate::backend::Memory;
use crate::error::{Error, Result};
use crate::uapi::{
    VduseDevRequest, VduseDevResponse, VduseVqInfo, VduseVqStateSplit, VduseVqStateUnion,
};

#[derive(Debug)]
pub(crate) struct FakeDevice {
    memfd: OwnedFd,
    size: u64,
    regions: Mutex<Vec<IotlbEntry>>,
    vqs: Mutex<Vec<VduseVqInfo>>,
    kickfds: Mutex<Vec<Option<OwnedFd>>>,
    irqs: Vec<AtomicUsize>,
    features: AtomicU64,
    iotlb_calls: AtomicUsize,
}

fn fail(op: &str, errno: Errno) -> Error {
    Error::Kernel {
        op: op.into(),
        errno,
    }
}

impl FakeDevice {
    /// A device with `num_queues` queues and `size` bytes of memory, none of it mapped.
    pub fn new(num_queues: u16, size: u64) -> Self {
        let memfd = memfd_create("vduse-fake", MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&memfd, size).unwrap();
        Self {
            memfd,
            size,
            regions: Mutex::new(Vec::new()),
            vqs: Mutex::new(
                (0..num_queues)
                    .map(|index| VduseVqInfo {
                        index: index.into(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            kickfds: Mutex::new((0..num_queues).map(|_| None).collect()),
            irqs: (0..num_queues).map(|_| AtomicUsize::new(0)).collect(),
            features: AtomicU64::new(0),
            iotlb_calls: AtomicUsize::new(0),
        }
    }

    pub fn num_queues(&self) -> u16 {
        self.irqs.len() as u16
    }

    /// The IOTLB regions from now on.
    pub fn set_regions(&self, regions: &[IotlbEntry]) {
        *self.regions.lock().unwrap() = regions.to_vec();
    }

    /// The features the driver accepted.
    pub fn set_features(&self, features: u64) {
        self.features.store(features, Ordering::SeqCst);
    }

    /// What the driver configured for queue `index`.
    pub fn set_vq_addresses(&self, index: usize, desc: u64, driver: u64, device: u64, ready: bool) {
        let mut vqs = self.vqs.lock().unwrap();
        let vq = &mut vqs[index];
        vq.num = 16;
        vq.desc_addr = desc;
        vq.driver_addr = driver;
        vq.device_addr = device;
        vq.ready = ready.into();
    }

    /// The split ring state the driver set for queue `index`.
    pub fn set_avail_index(&self, index: usize, avail_index: u16) {
        self.vqs.lock().unwrap()[index].state =
            VduseVqStateUnion::from_split(VduseVqStateSplit { avail_index });
    }

    /// The whole memfd as memory at IOVA 0, as the driver sees it.
    pub fn memory(&self) -> Memory {
        let file = File::from(self.memfd.try_clone().unwrap());
        GuestMemoryMmap::from_ranges_with_files([(
            GuestAddress(0),
            self.size as usize,
            Some(FileOffset::new(file, 0)),
        )])
        .unwrap()
    }

    pub fn read_u32(&self, offset: u64) -> u32 {
        let mut bytes = [0; 4];
        rustix::io::pread(&self.memfd, &mut bytes, offset).unwrap();
        u32::from_ne_bytes(bytes)
    }

    pub fn write_u32(&self, offset: u64, value: u32) {
        rustix::io::pwrite(&self.memfd, &value.to_ne_bytes(), offset).unwrap();
    }

    /// The driver kicks queue `index`.
    pub fn kick(&self, index: usize) {
        let kickfds = self.kickfds.lock().unwrap();
        let fd = kickfds[index].as_ref().expect("no kick eventfd");
        rustix::io::write(fd, &1u64.to_ne_bytes()).unwrap();
    }

    pub fn kickfd_set(&self, index: usize) -> bool {
        self.kickfds.lock().unwrap()[index].is_some()
    }

    /// Interrupts injected for queue `index`.
    pub fn irqs(&self, index: usize) -> usize {
        self.irqs[index].load(Ordering::SeqCst)
    }

    /// IOTLB look-ups so far.
    pub fn iotlb_calls(&self) -> usize {
        self.iotlb_calls.load(Ordering::SeqCst)
    }
}

impl DeviceIo for FakeDevice {
    fn read_request(&self) -> Result<VduseDevRequest> {
        Err(fail("read", Errno::AGAIN))
    }

    fn write_response(&self, _: &VduseDevResponse) -> Result<()> {
        Ok(())
    }

    fn negotiated_features(&self) -> Result<u64> {
        Ok(self.features.load(Ordering::SeqCst))
    }

    fn vq_info(&self, index: u32) -> Result<VduseVqInfo> {
        self.vqs
            .lock()
            .unwrap()
            .get(index as usize)
            .copied()
            .ok_or_else(|| fail("VDUSE_VQ_GET_INFO", Errno::INVAL))
    }

    fn set_vq_kickfd(&self, index: u32, eventfd: Option<BorrowedFd<'_>>) -> Result<()> {
        let fd = eventfd
            .map(|fd| fd.try_clone_to_owned())
            .transpose()
            .map_err(|e| fail("dup", Errno::from_io_error(&e).unwrap()))?;
        let mut kickfds = self.kickfds.lock().unwrap();
        let slot = kickfds
            .get_mut(index as usize)
            .ok_or_else(|| fail("VDUSE_VQ_SETUP_KICKFD", Errno::INVAL))?;
        *slot = fd;
        Ok(())
    }

    fn inject_vq_irq(&self, index: u32) -> Result<()> {
        self.irqs
            .get(index as usize)
            .ok_or_else(|| fail("VDUSE_VQ_INJECT_IRQ", Errno::INVAL))?
            .fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn iotlb_fd(
        &self,
        _asid: Option<u32>,
        start: u64,
        last: u64,
    ) -> Result<Option<(IotlbEntry, OwnedFd)>> {
        self.iotlb_calls.fetch_add(1, Ordering::SeqCst);
        let regions = self.regions.lock().unwrap();
        let found = regions
            .iter()
            .filter(|r| r.start <= last && start <= r.last)
            .min_by_key(|r| r.start);
        Ok(found.map(|r| (*r, self.memfd.try_clone().unwrap())))
    }

    fn poll_fd(&self) -> BorrowedFd<'_> {
        self.memfd.as_fd()
    }
}
