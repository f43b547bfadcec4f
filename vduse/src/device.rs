//! A VDUSE device node `/dev/vduse/NAME`: the fd a device server owns.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{Getter, Setter, Updater, ioctl};
use zerocopy::{FromBytes, IntoBytes};

use crate::control::open_error;
use crate::error::{Error, Result};
use crate::uapi::{
    self, VDUSE_EVENTFD_DEASSIGN, VduseConfigData, VduseDevRequest, VduseDevResponse,
    VduseIotlbEntry, VduseIotlbEntryV2, VduseVqConfig, VduseVqEventfd, VduseVqInfo,
};

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

    /// `VDUSE_VQ_GET_INFO`: the queue's size, ring addresses, saved state and readiness as the
    /// driver configured them.
    pub fn vq_info(&self, index: u32) -> Result<VduseVqInfo> {
        let mut info = VduseVqInfo {
            index,
            ..Default::default()
        };
        // SAFETY: VDUSE_VQ_GET_INFO reads and writes one struct vduse_vq_info, which `info`
        // is and which outlives the call.
        unsafe {
            ioctl(
                &self.fd,
                Updater::<{ uapi::VDUSE_VQ_GET_INFO }, VduseVqInfo>::new(&mut info),
            )
        }
        .map_err(|errno| self.error(format!("VDUSE_VQ_GET_INFO of queue {index}"), errno))?;
        Ok(info)
    }

    /// `VDUSE_VQ_SETUP_KICKFD`: the eventfd the kernel signals when the driver kicks queue
    /// `index`; `None` de-assigns it. The kernel takes its own reference to the eventfd.
    pub fn set_vq_kickfd(&self, index: u32, eventfd: Option<BorrowedFd<'_>>) -> Result<()> {
        let config = VduseVqEventfd {
            index,
            fd: eventfd.map_or(VDUSE_EVENTFD_DEASSIGN, |fd| fd.as_raw_fd()),
        };
        // SAFETY: VDUSE_VQ_SETUP_KICKFD reads one struct vduse_vq_eventfd, which Setter
        // points to; the fd in it is borrowed for the duration of the call.
        unsafe {
            ioctl(
                &self.fd,
                Setter::<{ uapi::VDUSE_VQ_SETUP_KICKFD }, VduseVqEventfd>::new(config),
            )
        }
        .map_err(|errno| self.error(format!("VDUSE_VQ_SETUP_KICKFD of queue {index}"), errno))
    }

    /// `VDUSE_VQ_INJECT_IRQ`: interrupts the driver for queue `index` (used buffers).
    pub fn inject_vq_irq(&self, index: u32) -> Result<()> {
        // SAFETY: VDUSE_VQ_INJECT_IRQ reads one u32, which Setter points to.
        unsafe {
            ioctl(
                &self.fd,
                Setter::<{ uapi::VDUSE_VQ_INJECT_IRQ }, u32>::new(index),
            )
        }
        .map_err(|errno| self.error(format!("VDUSE_VQ_INJECT_IRQ of queue {index}"), errno))
    }

    /// `VDUSE_DEV_SET_CONFIG`: replaces `bytes.len()` bytes of the config space the driver
    /// reads, from `offset`. The driver is not told: follow with
    /// [`DeviceFd::inject_config_irq`].
    pub fn set_config(&self, offset: u32, bytes: &[u8]) -> Result<()> {
        let what = || format!("VDUSE_DEV_SET_CONFIG of {} bytes at {offset}", bytes.len());
        let length = u32::try_from(bytes.len()).map_err(|_| self.error(what(), Errno::INVAL))?;
        // struct vduse_config_data followed by its `length` bytes, as one buffer.
        let mut argument = VduseConfigData { offset, length }.as_bytes().to_vec();
        argument.extend_from_slice(bytes);
        // SAFETY: VDUSE_DEV_SET_CONFIG reads a struct vduse_config_data and then the
        // `length` bytes after it; `argument` holds exactly that and outlives the call.
        unsafe {
            ioctl(
                &self.fd,
                rustix::ioctl::IntegerSetter::<{ uapi::VDUSE_DEV_SET_CONFIG }>::new_pointer(
                    argument.as_mut_ptr().cast(),
                ),
            )
        }
        .map_err(|errno| self.error(what(), errno))
    }

    /// `VDUSE_DEV_INJECT_CONFIG_IRQ`: tells the driver the config space changed.
    pub fn inject_config_irq(&self) -> Result<()> {
        // SAFETY: VDUSE_DEV_INJECT_CONFIG_IRQ takes no argument.
        unsafe {
            ioctl(
                &self.fd,
                rustix::ioctl::NoArg::<{ uapi::VDUSE_DEV_INJECT_CONFIG_IRQ }>::new(),
            )
        }
        .map_err(|errno| self.error("VDUSE_DEV_INJECT_CONFIG_IRQ".into(), errno))
    }

    /// `VDUSE_IOTLB_GET_FD` (API version 0): the first IOTLB region overlapping
    /// `[entry.start, entry.last]`, with an fd to mmap at `entry.offset`. The kernel answers
    /// EINVAL when no region overlaps. The fd is made close-on-exec here: the kernel
    /// installs it without `O_CLOEXEC`.
    pub fn iotlb_get_fd(&self, mut entry: VduseIotlbEntry) -> Result<(VduseIotlbEntry, OwnedFd)> {
        let what = format!("VDUSE_IOTLB_GET_FD at {:#x}", entry.start);
        // SAFETY: VDUSE_IOTLB_GET_FD reads and writes one struct vduse_iotlb_entry, which
        // `entry` is and which outlives the call; it returns a new fd or -1.
        let fd = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                uapi::VDUSE_IOTLB_GET_FD as _,
                &mut entry,
            )
        };
        let fd = received_fd(fd).map_err(|errno| self.error(what, errno))?;
        Ok((entry, fd))
    }

    /// `VDUSE_IOTLB_GET_FD2` (API version 1): [`DeviceFd::iotlb_get_fd`] in address space
    /// `entry.asid`.
    pub fn iotlb_get_fd2(
        &self,
        mut entry: VduseIotlbEntryV2,
    ) -> Result<(VduseIotlbEntryV2, OwnedFd)> {
        let what = format!("VDUSE_IOTLB_GET_FD2 at {:#x}", entry.start);
        // SAFETY: VDUSE_IOTLB_GET_FD2 reads and writes one struct vduse_iotlb_entry_v2, which
        // `entry` is and which outlives the call; it returns a new fd or -1.
        let fd = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                uapi::VDUSE_IOTLB_GET_FD2 as _,
                &mut entry,
            )
        };
        let fd = received_fd(fd).map_err(|errno| self.error(what, errno))?;
        Ok((entry, fd))
    }

    /// Makes `read_request` answer EAGAIN instead of waiting when no request is queued (a
    /// request can time out between poll(2) and read(2)).
    pub fn set_nonblocking(&self) -> Result<()> {
        let flags = rustix::fs::fcntl_getfl(&self.fd)
            .map_err(|errno| self.error("F_GETFL".into(), errno))?;
        rustix::fs::fcntl_setfl(&self.fd, flags | OFlags::NONBLOCK)
            .map_err(|errno| self.error("F_SETFL O_NONBLOCK".into(), errno))
    }

    /// The device node's path.
    pub fn path(&self) -> &Path {
        &self.path
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

/// Owns the fd an IOTLB ioctl returned (or turns -1 into its errno) and sets
/// close-on-exec on it, so a child process cannot inherit the mapping's file.
fn received_fd(fd: libc::c_int) -> Result<OwnedFd, Errno> {
    if fd < 0 {
        let errno = std::io::Error::last_os_error().raw_os_error();
        return Err(Errno::from_raw_os_error(errno.unwrap_or(libc::EIO)));
    }
    // SAFETY: the kernel just installed `fd` in our table for us; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
    Ok(fd)
}

impl AsFd for DeviceFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
