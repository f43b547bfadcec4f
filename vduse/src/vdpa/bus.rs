//! [`VdpaBus`]: the netlink socket to the vdpa bus and the commands it sends: list
//! management devices and devices, add and remove a device.

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use super::codec::{
    CTRL_ATTR_FAMILY_NAME, CTRL_CMD_GETFAMILY, CTRL_VERSION, DecodeError, GENL_ID_CTRL, NLM_F_ACK,
    NLM_F_DUMP, NLM_F_REQUEST, Progress, VDPA_ATTR_DEV_NAME, VDPA_ATTR_MGMTDEV_DEV_NAME,
    VDPA_CMD_DEV_DEL, VDPA_CMD_DEV_GET, VDPA_CMD_DEV_NEW, VDPA_CMD_MGMTDEV_GET, VDPA_GENL_NAME,
    VDPA_GENL_VERSION, absorb_datagram, decode_device, decode_family_id, decode_management_device,
    encode_request,
};
use super::device::{ManagementDevice, VdpaDevice};
use super::error::{VdpaError, kernel_error};

/// Name of the management device the `vduse` module registers.
pub const VDUSE_MANAGEMENT_DEVICE: &str = "vduse";

/// Size of the receive buffer. The kernel sizes dump datagrams after the
/// reader's buffer, up to 32 KiB; a larger datagram is still read whole
/// because [`VdpaBus`] peeks at its length first.
const RECV_BUFFER_SIZE: usize = 32 * 1024;

/// A connection to the kernel's vdpa bus: one `NETLINK_GENERIC` socket,
/// opened close-on-exec and connected to the kernel (so no other process can
/// inject answers), and the resolved id of the "vdpa" family.
///
/// Requests are blocking and one at a time (`&mut self`).
pub struct VdpaBus {
    fd: OwnedFd,
    family: u16,
    seq: u32,
    buf: Vec<u8>,
}

impl fmt::Debug for VdpaBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VdpaBus")
            .field("fd", &self.fd)
            .field("family", &self.family)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

fn socket_error(what: &'static str) -> impl FnOnce(Errno) -> VdpaError {
    move |errno| VdpaError::Socket {
        what,
        source: errno.into(),
    }
}

impl VdpaBus {
    /// Opens a generic netlink socket and resolves the "vdpa" family.
    ///
    /// [`VdpaError::NotLoaded`] if the family does not exist (module `vdpa`
    /// not loaded, or not in the initial network namespace).
    pub fn open() -> Result<Self, VdpaError> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(netlink::GENERIC),
        )
        .map_err(socket_error("socket(AF_NETLINK, NETLINK_GENERIC)"))?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0)).map_err(socket_error("bind"))?;
        rustix::net::connect(&fd, &SocketAddrNetlink::new(0, 0))
            .map_err(socket_error("connect"))?;
        // Start from the clock, as libnl does, so replies meant for an
        // earlier socket that reused our port are not mistaken for ours.
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32);
        let mut bus = VdpaBus {
            fd,
            family: GENL_ID_CTRL,
            seq,
            buf: vec![0; RECV_BUFFER_SIZE],
        };
        let replies = bus
            .transact(
                GENL_ID_CTRL,
                CTRL_CMD_GETFAMILY,
                CTRL_VERSION,
                NLM_F_ACK,
                &[(CTRL_ATTR_FAMILY_NAME, VDPA_GENL_NAME)],
            )?
            .map_err(|errno| match Errno::from_raw_os_error(errno) {
                Errno::NOENT => VdpaError::NotLoaded,
                _ => kernel_error("resolve generic netlink family \"vdpa\"", errno),
            })?;
        let first = replies
            .first()
            .ok_or(DecodeError::MissingAttribute("CTRL_ATTR_FAMILY_ID"))?;
        bus.family = decode_family_id(first)?;
        Ok(bus)
    }

    /// The numeric id the kernel gave the "vdpa" family.
    pub fn family_id(&self) -> u16 {
        self.family
    }

    /// Lists the management devices (`VDPA_CMD_MGMTDEV_GET` dump).
    pub fn management_devices(&mut self) -> Result<Vec<ManagementDevice>, VdpaError> {
        let op = "list vdpa management devices";
        let replies = self
            .vdpa_request(VDPA_CMD_MGMTDEV_GET, NLM_F_DUMP, &[])?
            .map_err(|errno| kernel_error(op, errno))?;
        let devices = replies
            .iter()
            .map(|r| decode_management_device(r))
            .collect::<Result<_, _>>()?;
        Ok(devices)
    }

    /// Lists the vdpa devices that management devices created
    /// (`VDPA_CMD_DEV_GET` dump).
    pub fn devices(&mut self) -> Result<Vec<VdpaDevice>, VdpaError> {
        let op = "list vdpa devices";
        let replies = self
            .vdpa_request(VDPA_CMD_DEV_GET, NLM_F_DUMP, &[])?
            .map_err(|errno| kernel_error(op, errno))?;
        let devices = replies
            .iter()
            .map(|r| decode_device(r))
            .collect::<Result<_, _>>()?;
        Ok(devices)
    }

    /// Looks up one vdpa device by name (`VDPA_CMD_DEV_GET`); `None` if the
    /// bus has no device of that name.
    pub fn device(&mut self, name: &str) -> Result<Option<VdpaDevice>, VdpaError> {
        let answer =
            self.vdpa_request(VDPA_CMD_DEV_GET, NLM_F_ACK, &[(VDPA_ATTR_DEV_NAME, name)])?;
        match answer {
            Ok(replies) => match replies.first() {
                Some(reply) => Ok(Some(decode_device(reply)?)),
                None => Err(DecodeError::MissingAttribute("VDPA_ATTR_DEV_NAME").into()),
            },
            Err(errno) if errno == Errno::NODEV.raw_os_error() => Ok(None),
            Err(errno) => Err(kernel_error(&format!("get vdpa device {name:?}"), errno)),
        }
    }

    /// Creates vdpa device `name` through `management_device`
    /// (`VDPA_CMD_DEV_NEW`); for a VDUSE device, `management_device` is
    /// [`VDUSE_MANAGEMENT_DEVICE`] and `name` the VDUSE device's name, whose
    /// virtqueues must all have been set up with `VDUSE_VQ_SETUP` first.
    /// Needs CAP_NET_ADMIN. See the module docs for the thread to call it from.
    pub fn add_device(&mut self, name: &str, management_device: &str) -> Result<(), VdpaError> {
        let answer = self.vdpa_request(
            VDPA_CMD_DEV_NEW,
            NLM_F_ACK,
            &[
                (VDPA_ATTR_MGMTDEV_DEV_NAME, management_device),
                (VDPA_ATTR_DEV_NAME, name),
            ],
        )?;
        let Err(errno) = answer else { return Ok(()) };
        let op = format!("add vdpa device {name:?} (management device {management_device:?})");
        Err(match Errno::from_raw_os_error(errno) {
            Errno::EXIST => VdpaError::AlreadyExists {
                name: name.to_owned(),
            },
            Errno::INVAL => VdpaError::DeviceNotReady {
                name: name.to_owned(),
                management_device: management_device.to_owned(),
            },
            Errno::NODEV => VdpaError::NoSuchManagementDevice(management_device.to_owned()),
            _ => kernel_error(&op, errno),
        })
    }

    /// Removes vdpa device `name` from the bus (`VDPA_CMD_DEV_DEL`). For a
    /// VDUSE device this detaches it; the VDUSE device itself stays until
    /// `VDUSE_DESTROY_DEV`. Needs CAP_NET_ADMIN.
    pub fn remove_device(&mut self, name: &str) -> Result<(), VdpaError> {
        let answer =
            self.vdpa_request(VDPA_CMD_DEV_DEL, NLM_F_ACK, &[(VDPA_ATTR_DEV_NAME, name)])?;
        let Err(errno) = answer else { return Ok(()) };
        Err(match Errno::from_raw_os_error(errno) {
            Errno::NODEV => VdpaError::NoSuchDevice(name.to_owned()),
            _ => kernel_error(&format!("remove vdpa device {name:?}"), errno),
        })
    }

    fn vdpa_request(
        &mut self,
        cmd: u8,
        flags: u16,
        attributes: &[(u16, &str)],
    ) -> Result<Result<Vec<Vec<u8>>, i32>, VdpaError> {
        self.transact(self.family, cmd, VDPA_GENL_VERSION, flags, attributes)
    }

    /// Sends one request and reads every datagram of its answer. The outer
    /// error is the socket's or the decoder's; the inner one the errno the
    /// kernel answered.
    fn transact(
        &mut self,
        family: u16,
        cmd: u8,
        version: u8,
        flags: u16,
        attributes: &[(u16, &str)],
    ) -> Result<Result<Vec<Vec<u8>>, i32>, VdpaError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let request = encode_request(family, NLM_F_REQUEST | flags, seq, cmd, version, attributes);
        let sent = retry_on_intr(|| rustix::net::send(&self.fd, &request, SendFlags::empty()))
            .map_err(socket_error("send"))?;
        if sent != request.len() {
            return Err(VdpaError::Socket {
                what: "send",
                source: std::io::Error::other("short write to a netlink socket"),
            });
        }
        let mut replies = Vec::new();
        loop {
            let len = self.recv_datagram()?;
            match absorb_datagram(&self.buf[..len], seq, family, &mut replies)? {
                Progress::Continue => {}
                Progress::Finished => return Ok(Ok(replies)),
                Progress::Failed(errno) => return Ok(Err(errno)),
            }
        }
    }

    /// Receives one datagram whole into `self.buf`, growing it if the
    /// datagram is larger (its length is peeked first with MSG_TRUNC).
    fn recv_datagram(&mut self) -> Result<usize, VdpaError> {
        let fd = self.fd.as_fd();
        let (_, size) = retry_on_intr(|| {
            rustix::net::recv(fd, &mut self.buf[..], RecvFlags::PEEK | RecvFlags::TRUNC)
        })
        .map_err(socket_error("recv"))?;
        if size > self.buf.len() {
            self.buf.resize(size, 0);
        }
        let (_, len) =
            retry_on_intr(|| rustix::net::recv(fd, &mut self.buf[..], RecvFlags::empty()))
                .map_err(socket_error("recv"))?;
        Ok(len.min(self.buf.len()))
    }
}

fn retry_on_intr<T>(mut call: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    loop {
        match call() {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}
