//! The operations on a device node that the runtime uses, as a trait: the request loop,
//! the IOTLB map and the queue workers run against a fake device in unit tests.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;

use crate::DeviceFd;
use crate::error::{Error, Result};
use crate::uapi::{
    VduseDevRequest, VduseDevResponse, VduseIotlbEntry, VduseIotlbEntryV2, VduseVqInfo,
};

/// One IOTLB region: IOVAs `start..=last`, backed by the returned fd from `offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IotlbEntry {
    /// First IOVA.
    pub start: u64,
    /// Last IOVA (inclusive).
    pub last: u64,
    /// Offset in the file where `start` is.
    pub offset: u64,
    /// `VDUSE_ACCESS_*`.
    pub perm: u8,
}

/// The device node's ioctls, reads and writes (see [`DeviceFd`] for each).
pub(crate) trait DeviceIo: Send + Sync + fmt::Debug {
    /// The next request; `Error::Kernel` with EAGAIN when there is none (non-blocking fd).
    fn read_request(&self) -> Result<VduseDevRequest>;
    /// Answers a request.
    fn write_response(&self, response: &VduseDevResponse) -> Result<()>;
    /// `VDUSE_DEV_GET_FEATURES`.
    fn negotiated_features(&self) -> Result<u64>;
    /// `VDUSE_VQ_GET_INFO`.
    fn vq_info(&self, index: u32) -> Result<VduseVqInfo>;
    /// `VDUSE_VQ_SETUP_KICKFD`.
    fn set_vq_kickfd(&self, index: u32, eventfd: Option<BorrowedFd<'_>>) -> Result<()>;
    /// `VDUSE_VQ_INJECT_IRQ`.
    fn inject_vq_irq(&self, index: u32) -> Result<()>;
    /// The first IOTLB region overlapping `[start, last]`: `VDUSE_IOTLB_GET_FD2` in address
    /// space `asid`, or `VDUSE_IOTLB_GET_FD` when `asid` is `None` (API version 0). `None`
    /// when no region overlaps.
    fn iotlb_fd(
        &self,
        asid: Option<u32>,
        start: u64,
        last: u64,
    ) -> Result<Option<(IotlbEntry, OwnedFd)>>;
    /// The fd to poll(2) for requests.
    fn poll_fd(&self) -> BorrowedFd<'_>;
}

impl DeviceIo for DeviceFd {
    fn read_request(&self) -> Result<VduseDevRequest> {
        DeviceFd::read_request(self)
    }

    fn write_response(&self, response: &VduseDevResponse) -> Result<()> {
        DeviceFd::write_response(self, response)
    }

    fn negotiated_features(&self) -> Result<u64> {
        DeviceFd::negotiated_features(self)
    }

    fn vq_info(&self, index: u32) -> Result<VduseVqInfo> {
        DeviceFd::vq_info(self, index)
    }

    fn set_vq_kickfd(&self, index: u32, eventfd: Option<BorrowedFd<'_>>) -> Result<()> {
        DeviceFd::set_vq_kickfd(self, index, eventfd)
    }

    fn inject_vq_irq(&self, index: u32) -> Result<()> {
        DeviceFd::inject_vq_irq(self, index)
    }

    fn iotlb_fd(
        &self,
        asid: Option<u32>,
        start: u64,
        last: u64,
    ) -> Result<Option<(IotlbEntry, OwnedFd)>> {
        let found = match asid {
            None => self
                .iotlb_get_fd(VduseIotlbEntry {
                    start,
                    last,
                    ..Default::default()
                })
                .map(|(e, fd)| (e.start, e.last, e.offset, e.perm, fd)),
            Some(asid) => self
                .iotlb_get_fd2(VduseIotlbEntryV2 {
                    start,
                    last,
                    asid,
                    ..Default::default()
                })
                .map(|(e, fd)| (e.start, e.last, e.offset, e.perm, fd)),
        };
        match found {
            Ok((start, last, offset, perm, fd)) => Ok(Some((
                IotlbEntry {
                    start,
                    last,
                    offset,
                    perm,
                },
                fd,
            ))),
            // The kernel's answer when no region overlaps (or the device has no domain yet).
            Err(Error::Kernel {
                errno: Errno::INVAL,
                ..
            }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn poll_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}
