//! A VDUSE device node `/dev/vduse/NAME`: the fd a device server owns.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{Getter, Setter, ioctl};
use zerocopy::{FromBytes, IntoBytes};

use crate::control::open_error;
use crate::error::{Error, Result};
use crate::uapi::{self, VduseDevRequest, VduseDevResponse, VduseVqConfig};

/// An open device node. The kernel admits one opener at a time.
#[derive(Debug)]
pub struct DeviceFd {
    fd: OwnedFd,
    path: PathBuf,
}

impl DeviceFd {
    /// Opens `/dev/vduse/NAME` read-write and close-on-exec.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_path(&crate::host::device_node(name))
    }

    /// Opens the device node at `path`.
    pub fn open_path(path: &Path) -> Result<Self> {
        match rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => Ok(Self {
                fd,
                path: path.to_owned(),
            }),
            Err(Errno::BUSY) => Err(Error::Kernel {
                op: format!(
                    "opening {}: another process serves this device (one opener at a time)",
                    path.display()
                ),
                errno: Errno::BUSY,
            }),
            Err(errno) => Err(open_error(path, errno)),
        }
    }

    /// `VDUSE_VQ_SETUP`: declares virtqueue `index` with at most `max_size` entries, in
    /// virtqueue group `group` (API version 1; 0 otherwise). Every queue must be set up
    /// before the device can join the vdpa bus.
    pub fn setup_vq(&self, index: u32, max_size: u16, group: u32) -> Result<()> {
        let config = VduseVqConfig {
            index,
            max_size,
            group,
            ..Default::default()
        };
        // SAFETY: VDUSE_VQ_SETUP reads one struct vduse_vq_config, which Setter points to.
        unsafe {
            ioctl(
                &self.fd,
                Setter::<{ uapi::VDUSE_VQ_SETUP }, VduseVqConfig>::new(config),
            )
        }
        .map_err(|errno| self.error(format!("VDUSE_VQ_SETUP of queue {index}"), errno))
    }

    /// `VDUSE_DEV_GET_FEATURES`: the virtio features the driver accepted.
    pub fn negotiated_features(&self) -> Result<u64> {
        // SAFETY: VDUSE_DEV_GET_FEATURES writes one u64, which Getter provides.
        unsafe {
            ioctl(
                &self.fd,
                Getter::<{ uapi::VDUSE_DEV_GET_FEATURES }, u64>::new(),
            )
        }
        .map_err(|errno| self.error("VDUSE_DEV_GET_FEATURES".into(), errno))
    }

    /// Reads the next request the kernel sends; blocks until there is one.
    pub fn read_request(&self) -> Result<VduseDevRequest> {
        let mut buffer = [0u8; size_of::<VduseDevRequest>()];
        let read = rustix::io::read(&self.fd, &mut buffer)
            .map_err(|errno| self.error("reading a request".into(), errno))?;
        VduseDevRequest::read_from_bytes(&buffer[..read])
            .map_err(|_| self.error(format!("a request of {read} bytes"), Errno::INVAL))
    }

    /// Answers a request.
    pub fn write_response(&self, response: &VduseDevResponse) -> Result<()> {
        rustix::io::write(&self.fd, response.as_bytes())
            .map(drop)
            .map_err(|errno| self.error("writing a response".into(), errno))
    }

    fn error(&self, what: String, errno: Errno) -> Error {
        Error::Kernel {
            op: format!("{what} on {}", self.path.display()),
            errno,
        }
    }
}

impl AsFd for DeviceFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
