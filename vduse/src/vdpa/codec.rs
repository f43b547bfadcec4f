//! The generic netlink codec: the bytes of requests to the controller and to the vdpa
//! family, and the decoding of the replies, as pure functions the bus calls and the unit
//! tests drive without a kernel.
//!
//! # Why a hand-written codec
//!
//! The project prefers a well-kept crate to hand-written code. The candidates
//! were weighed (crates.io, current versions checked with `cargo info`):
//! - `netlink-packet-core` 0.9 + `netlink-packet-generic` 0.5 + `netlink-sys`
//!   0.9 (rust-netlink) fit a custom family, but only through five trait
//!   implementations (`GenlFamily`, `Emitable`, `ParseableParametrized`, `Nla`,
//!   `Parseable` for the attributes), about as many lines as the codec below,
//!   and they still leave the blocking request/dump/ack loop and sequence
//!   checks to the caller. They would bring six crates (`bytes`, `log`,
//!   `zerocopy` with its proc-macro) for framing that is ~150 lines here.
//! - `neli` 0.7 resolves families and handles dumps itself, but its blocking
//!   `NlRouter` spawns a background thread per socket and it pulls in a
//!   proc-macro stack (`derive_builder`, `darling`, `getset`); too much for a
//!   probe that sends four kinds of request.
//!
//! So this module encodes and decodes the bytes itself over rustix's socket
//! API (already a dependency), with no `unsafe`. All byte-level work is in
//! private pure functions (`encode_request`, `absorb_datagram`,
//! `parse_attributes`, the `decode_*` functions) that the unit tests drive
//! without a kernel.
//!
//! Not done: extended acks (`NETLINK_EXT_ACK` needs a raw `setsockopt` that
//! rustix does not offer); the typed errors say what the kernel's text would.

use super::device::{ManagementDevice, VdpaDevice};

/// Name of the vdpa generic netlink family (`VDPA_GENL_NAME`).
pub const VDPA_GENL_NAME: &str = "vdpa";
/// Version of the vdpa family this module speaks (`VDPA_GENL_VERSION`).
pub const VDPA_GENL_VERSION: u8 = 1;

// Netlink framing, from include/uapi/linux/netlink.h.
const NLMSG_HDRLEN: usize = 16;
const NLA_HDRLEN: usize = 4;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
pub(super) const NLM_F_REQUEST: u16 = 0x01;
pub(super) const NLM_F_ACK: u16 = 0x04;
pub(super) const NLM_F_DUMP: u16 = 0x300;
const NLA_TYPE_MASK: u16 = !(0x8000 | 0x4000); // ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER)

// Generic netlink, from include/uapi/linux/genetlink.h.
const GENL_HDRLEN: usize = 4;
pub(super) const GENL_ID_CTRL: u16 = 0x10;
pub(super) const CTRL_CMD_GETFAMILY: u8 = 3;
pub(super) const CTRL_ATTR_FAMILY_ID: u16 = 1;
pub(super) const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// Version byte sent to the controller (any value is accepted).
pub(super) const CTRL_VERSION: u8 = 1;

// The vdpa family, from include/uapi/linux/vdpa.h.
pub(super) const VDPA_CMD_MGMTDEV_GET: u8 = 2;
pub(super) const VDPA_CMD_DEV_NEW: u8 = 3;
pub(super) const VDPA_CMD_DEV_DEL: u8 = 4;
pub(super) const VDPA_CMD_DEV_GET: u8 = 5;
const VDPA_ATTR_MGMTDEV_BUS_NAME: u16 = 1;
pub(super) const VDPA_ATTR_MGMTDEV_DEV_NAME: u16 = 2;
const VDPA_ATTR_MGMTDEV_SUPPORTED_CLASSES: u16 = 3;
pub(super) const VDPA_ATTR_DEV_NAME: u16 = 4;
const VDPA_ATTR_DEV_ID: u16 = 5;
const VDPA_ATTR_DEV_VENDOR_ID: u16 = 6;
const VDPA_ATTR_DEV_MAX_VQS: u16 = 7;
const VDPA_ATTR_DEV_MAX_VQ_SIZE: u16 = 8;
const VDPA_ATTR_DEV_MIN_VQ_SIZE: u16 = 9;
const VDPA_ATTR_DEV_MGMTDEV_MAX_VQS: u16 = 15;
const VDPA_ATTR_DEV_SUPPORTED_FEATURES: u16 = 16;

/// Why bytes from the kernel could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A header or value is cut short or claims more bytes than there are.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// An attribute of a fixed-size type has the wrong size.
    #[error("attribute {kind} has {len} bytes, expected {expected}")]
    BadAttributeSize {
        /// Attribute type.
        kind: u16,
        /// Its value's length.
        len: usize,
        /// The size its type has.
        expected: usize,
    },
    /// A required attribute is absent.
    #[error("missing attribute {0}")]
    MissingAttribute(&'static str),
    /// A message of a type that has no business in this reply.
    #[error("unexpected netlink message type {0}")]
    UnexpectedType(u16),
    /// The kernel reported lost messages (`NLMSG_OVERRUN`).
    #[error("the kernel dropped messages (NLMSG_OVERRUN)")]
    Overrun,
}

/// What a datagram told about the request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// More datagrams follow.
    Continue,
    /// The request completed: an ack (`NLMSG_ERROR` with 0) or the end of a
    /// dump (`NLMSG_DONE`).
    Finished,
    /// The kernel refused it with this (positive) errno.
    Failed(i32),
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

fn put_attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = NLA_HDRLEN + value.len();
    // Attribute values here are names of a few bytes; the kernel caps the
    // whole message well below 64 KiB anyway.
    let len16 = u16::try_from(len).expect("netlink attribute over 64 KiB");
    out.extend_from_slice(&len16.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + align4(len) - len, 0);
}

/// Encodes one generic netlink request: `nlmsghdr` (16 bytes, host byte
/// order), `genlmsghdr` (cmd, version, 2 reserved bytes), then each
/// `(type, string)` attribute as a NUL-terminated string (4-byte header,
/// value padded to 4 bytes). `nlmsg_pid` is 0: the kernel fills in the port.
pub(super) fn encode_request(
    family: u16,
    flags: u16,
    seq: u32,
    cmd: u8,
    version: u8,
    attributes: &[(u16, &str)],
) -> Vec<u8> {
    let mut out = vec![0; NLMSG_HDRLEN];
    out.extend_from_slice(&[cmd, version, 0, 0]);
    for (kind, value) in attributes {
        let mut bytes = Vec::with_capacity(value.len() + 1);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
        put_attribute(&mut out, *kind, &bytes);
    }
    let len = u32::try_from(out.len()).expect("netlink message over 4 GiB");
    out[0..4].copy_from_slice(&len.to_ne_bytes());
    out[4..6].copy_from_slice(&family.to_ne_bytes());
    out[6..8].copy_from_slice(&flags.to_ne_bytes());
    out[8..12].copy_from_slice(&seq.to_ne_bytes());
    // out[12..16], nlmsg_pid, stays 0.
    out
}

fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([bytes[at], bytes[at + 1]])
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Splits an attribute area into `(type, value)` pairs, type flags masked off.
/// Every attribute must be whole; padding after the last one may be absent.
fn parse_attributes(mut bytes: &[u8]) -> Result<Vec<(u16, &[u8])>, DecodeError> {
    let mut attributes = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < NLA_HDRLEN {
            return Err(DecodeError::Truncated("attribute header"));
        }
        let len = usize::from(read_u16(bytes, 0));
        if len < NLA_HDRLEN || len > bytes.len() {
            return Err(DecodeError::Truncated("attribute"));
        }
        attributes.push((read_u16(bytes, 2) & NLA_TYPE_MASK, &bytes[NLA_HDRLEN..len]));
        bytes = &bytes[align4(len).min(bytes.len())..];
    }
    Ok(attributes)
}

/// Reads the messages of one datagram that answer request `seq` and says
/// whether the request is over. Generic netlink messages of `family` are
/// appended to `replies`; messages for other sequence numbers (late answers
/// to an earlier, abandoned request) are skipped.
pub(super) fn absorb_datagram(
    mut datagram: &[u8],
    seq: u32,
    family: u16,
    replies: &mut Vec<Vec<u8>>,
) -> Result<Progress, DecodeError> {
    while !datagram.is_empty() {
        if datagram.len() < NLMSG_HDRLEN {
            return Err(DecodeError::Truncated("netlink message header"));
        }
        let len = read_u32(datagram, 0) as usize;
        if len < NLMSG_HDRLEN || len > datagram.len() {
            return Err(DecodeError::Truncated("netlink message"));
        }
        let kind = read_u16(datagram, 4);
        let msg_seq = read_u32(datagram, 8);
        let payload = &datagram[NLMSG_HDRLEN..len];
        datagram = &datagram[align4(len).min(datagram.len())..];
        if msg_seq != seq {
            continue;
        }
        match kind {
            NLMSG_NOOP => {}
            NLMSG_ERROR => {
                // struct nlmsgerr: int error, then the request's header (and
                // maybe more) that we do not need.
                if payload.len() < 4 {
                    return Err(DecodeError::Truncated("NLMSG_ERROR"));
                }
                let code = read_u32(payload, 0) as i32;
                return Ok(match code {
                    0 => Progress::Finished,
                    _ => Progress::Failed(code.saturating_abs()),
                });
            }
            NLMSG_DONE => {
                // An int: 0, or a negative errno if the dump failed midway.
                let code = if payload.len() >= 4 {
                    read_u32(payload, 0) as i32
                } else {
                    0
                };
                return Ok(match code {
                    0 => Progress::Finished,
                    _ => Progress::Failed(code.saturating_abs()),
                });
            }
            NLMSG_OVERRUN => return Err(DecodeError::Overrun),
            kind if kind == family => {
                if payload.len() < GENL_HDRLEN {
                    return Err(DecodeError::Truncated("generic netlink header"));
                }
                replies.push(payload[GENL_HDRLEN..].to_vec());
            }
            other => return Err(DecodeError::UnexpectedType(other)),
        }
    }
    Ok(Progress::Continue)
}

fn attr_u16(kind: u16, value: &[u8]) -> Result<u16, DecodeError> {
    let bytes: [u8; 2] = value
        .try_into()
        .map_err(|_| DecodeError::BadAttributeSize {
            kind,
            len: value.len(),
            expected: 2,
        })?;
    Ok(u16::from_ne_bytes(bytes))
}

fn attr_u32(kind: u16, value: &[u8]) -> Result<u32, DecodeError> {
    let bytes: [u8; 4] = value
        .try_into()
        .map_err(|_| DecodeError::BadAttributeSize {
            kind,
            len: value.len(),
            expected: 4,
        })?;
    Ok(u32::from_ne_bytes(bytes))
}

fn attr_u64(kind: u16, value: &[u8]) -> Result<u64, DecodeError> {
    let bytes: [u8; 8] = value
        .try_into()
        .map_err(|_| DecodeError::BadAttributeSize {
            kind,
            len: value.len(),
            expected: 8,
        })?;
    Ok(u64::from_ne_bytes(bytes))
}

/// A string attribute: up to the first NUL; bytes that are not UTF-8 are
/// replaced rather than failing the whole listing.
fn attr_string(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

/// Decodes the family id from the controller's answer to `CTRL_CMD_GETFAMILY`.
pub(super) fn decode_family_id(attributes: &[u8]) -> Result<u16, DecodeError> {
    let mut id = None;
    for (kind, value) in parse_attributes(attributes)? {
        if kind == CTRL_ATTR_FAMILY_ID {
            id = Some(attr_u16(kind, value)?);
        }
    }
    id.ok_or(DecodeError::MissingAttribute("CTRL_ATTR_FAMILY_ID"))
}

/// Decodes one management device from a `VDPA_CMD_MGMTDEV_GET` answer.
/// Attributes this module does not know are ignored.
pub(super) fn decode_management_device(attributes: &[u8]) -> Result<ManagementDevice, DecodeError> {
    let (mut bus_name, mut name, mut classes) = (None, None, None);
    let (mut max_vqs, mut features) = (None, None);
    for (kind, value) in parse_attributes(attributes)? {
        match kind {
            VDPA_ATTR_MGMTDEV_BUS_NAME => bus_name = Some(attr_string(value)),
            VDPA_ATTR_MGMTDEV_DEV_NAME => name = Some(attr_string(value)),
            VDPA_ATTR_MGMTDEV_SUPPORTED_CLASSES => classes = Some(attr_u64(kind, value)?),
            VDPA_ATTR_DEV_MGMTDEV_MAX_VQS => max_vqs = Some(attr_u32(kind, value)?),
            VDPA_ATTR_DEV_SUPPORTED_FEATURES => features = Some(attr_u64(kind, value)?),
            _ => {}
        }
    }
    Ok(ManagementDevice {
        bus_name,
        name: name.ok_or(DecodeError::MissingAttribute("VDPA_ATTR_MGMTDEV_DEV_NAME"))?,
        supported_classes: classes.unwrap_or(0),
        max_supported_vqs: max_vqs,
        supported_features: features,
    })
}

/// Decodes one vdpa device from a `VDPA_CMD_DEV_GET` answer. Attributes this
/// module does not know are ignored.
pub(super) fn decode_device(attributes: &[u8]) -> Result<VdpaDevice, DecodeError> {
    let (mut name, mut mgmt, mut bus) = (None, None, None);
    let (mut device_id, mut vendor_id, mut max_vqs) = (None, None, None);
    let (mut max_vq_size, mut min_vq_size) = (None, None);
    for (kind, value) in parse_attributes(attributes)? {
        match kind {
            VDPA_ATTR_DEV_NAME => name = Some(attr_string(value)),
            VDPA_ATTR_MGMTDEV_DEV_NAME => mgmt = Some(attr_string(value)),
            VDPA_ATTR_MGMTDEV_BUS_NAME => bus = Some(attr_string(value)),
            VDPA_ATTR_DEV_ID => device_id = Some(attr_u32(kind, value)?),
            VDPA_ATTR_DEV_VENDOR_ID => vendor_id = Some(attr_u32(kind, value)?),
            VDPA_ATTR_DEV_MAX_VQS => max_vqs = Some(attr_u32(kind, value)?),
            VDPA_ATTR_DEV_MAX_VQ_SIZE => max_vq_size = Some(attr_u16(kind, value)?),
            VDPA_ATTR_DEV_MIN_VQ_SIZE => min_vq_size = Some(attr_u16(kind, value)?),
            _ => {}
        }
    }
    use DecodeError::MissingAttribute as Missing;
    Ok(VdpaDevice {
        name: name.ok_or(Missing("VDPA_ATTR_DEV_NAME"))?,
        management_device: mgmt.ok_or(Missing("VDPA_ATTR_MGMTDEV_DEV_NAME"))?,
        management_bus: bus,
        device_id: device_id.ok_or(Missing("VDPA_ATTR_DEV_ID"))?,
        vendor_id: vendor_id.ok_or(Missing("VDPA_ATTR_DEV_VENDOR_ID"))?,
        max_vqs: max_vqs.ok_or(Missing("VDPA_ATTR_DEV_MAX_VQS"))?,
        max_vq_size: max_vq_size.ok_or(Missing("VDPA_ATTR_DEV_MAX_VQ_SIZE"))?,
        min_vq_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds one netlink message the way the kernel does, for the decoder tests.
    fn message(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&4242u32.to_ne_bytes()); // our port id
        out.extend_from_slice(payload);
        out.resize(align4(out.len()), 0);
        out
    }

    fn genl(cmd: u8, attributes: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![cmd, 1, 0, 0];
        for a in attributes {
            out.extend_from_slice(a);
        }
        out
    }

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_attribute(&mut out, kind, value);
        out
    }

    fn attr_str(kind: u16, value: &str) -> Vec<u8> {
        attr(kind, format!("{value}\0").as_bytes())
    }

    fn device_attrs(name: &str, id: u32, vqs: u32) -> Vec<Vec<u8>> {
        vec![
            attr_str(VDPA_ATTR_MGMTDEV_DEV_NAME, "vduse"),
            attr_str(VDPA_ATTR_DEV_NAME, name),
            attr(VDPA_ATTR_DEV_ID, &id.to_ne_bytes()),
            attr(VDPA_ATTR_DEV_VENDOR_ID, &0u32.to_ne_bytes()),
            attr(VDPA_ATTR_DEV_MAX_VQS, &vqs.to_ne_bytes()),
            attr(VDPA_ATTR_DEV_MAX_VQ_SIZE, &256u16.to_ne_bytes()),
            attr(VDPA_ATTR_DEV_MIN_VQ_SIZE, &1u16.to_ne_bytes()),
        ]
    }

    const FAMILY: u16 = 0x1b;
    const NLM_F_MULTI: u16 = 0x02;

    #[test]
    fn constants_match_libc() {
        assert_eq!(NLMSG_NOOP, libc::NLMSG_NOOP as u16);
        assert_eq!(NLMSG_ERROR, libc::NLMSG_ERROR as u16);
        assert_eq!(NLMSG_DONE, libc::NLMSG_DONE as u16);
        assert_eq!(NLMSG_OVERRUN, libc::NLMSG_OVERRUN as u16);
        assert_eq!(NLM_F_REQUEST, libc::NLM_F_REQUEST as u16);
        assert_eq!(NLM_F_ACK, libc::NLM_F_ACK as u16);
        assert_eq!(NLM_F_DUMP, libc::NLM_F_DUMP as u16);
        assert_eq!(NLM_F_MULTI, libc::NLM_F_MULTI as u16);
        assert_eq!(GENL_ID_CTRL, libc::GENL_ID_CTRL as u16);
        assert_eq!(CTRL_CMD_GETFAMILY, libc::CTRL_CMD_GETFAMILY as u8);
        assert_eq!(CTRL_ATTR_FAMILY_ID, libc::CTRL_ATTR_FAMILY_ID as u16);
        assert_eq!(CTRL_ATTR_FAMILY_NAME, libc::CTRL_ATTR_FAMILY_NAME as u16);
        assert_eq!(NLA_TYPE_MASK, libc::NLA_TYPE_MASK as u16);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn encodes_dev_new_byte_for_byte() {
        let bytes = encode_request(
            FAMILY,
            NLM_F_REQUEST | NLM_F_ACK,
            7,
            VDPA_CMD_DEV_NEW,
            VDPA_GENL_VERSION,
            &[
                (VDPA_ATTR_MGMTDEV_DEV_NAME, "vduse"),
                (VDPA_ATTR_DEV_NAME, "blk0"),
            ],
        );
        #[rustfmt::skip]
        let expected: &[u8] = &[
            // nlmsghdr: len 44 = 16 + 4 + 12 + 12, type 0x1b, flags REQUEST|ACK, seq 7, pid 0
            44, 0, 0, 0,  0x1b, 0,  0x05, 0,  7, 0, 0, 0,  0, 0, 0, 0,
            // genlmsghdr: cmd VDPA_CMD_DEV_NEW (3), version 1, reserved
            3, 1, 0, 0,
            // nla: len 4 + 6 = 10, type VDPA_ATTR_MGMTDEV_DEV_NAME (2), "vduse\0", 2 pad bytes
            10, 0,  2, 0,  b'v', b'd', b'u', b's', b'e', 0,  0, 0,
            // nla: len 4 + 5 = 9, type VDPA_ATTR_DEV_NAME (4), "blk0\0", 3 pad bytes
            9, 0,  4, 0,  b'b', b'l', b'k', b'0', 0,  0, 0, 0,
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn encodes_getfamily_and_dump_requests() {
        let bytes = encode_request(
            GENL_ID_CTRL,
            NLM_F_REQUEST | NLM_F_ACK,
            0x01020304,
            CTRL_CMD_GETFAMILY,
            CTRL_VERSION,
            &[(CTRL_ATTR_FAMILY_NAME, "vdpa")],
        );
        #[rustfmt::skip]
        let expected: &[u8] = &[
            32, 0, 0, 0,  0x10, 0,  0x05, 0,  4, 3, 2, 1,  0, 0, 0, 0,
            3, 1, 0, 0,
            9, 0,  2, 0,  b'v', b'd', b'p', b'a', 0,  0, 0, 0,
        ];
        assert_eq!(bytes, expected);

        let dump = encode_request(
            FAMILY,
            NLM_F_REQUEST | NLM_F_DUMP,
            9,
            VDPA_CMD_DEV_GET,
            1,
            &[],
        );
        #[rustfmt::skip]
        let expected: &[u8] = &[
            20, 0, 0, 0,  0x1b, 0,  0x01, 0x03,  9, 0, 0, 0,  0, 0, 0, 0,
            5, 1, 0, 0,
        ];
        assert_eq!(dump, expected);
    }

    #[test]
    fn decodes_a_dump_of_several_devices_then_done() {
        let seq = 77;
        // First datagram: two devices; second: a third device and NLMSG_DONE.
        let mut first = message(
            FAMILY,
            NLM_F_MULTI,
            seq,
            &genl(VDPA_CMD_DEV_NEW, &device_attrs("blk0", 2, 1)),
        );
        first.extend(message(
            FAMILY,
            NLM_F_MULTI,
            seq,
            &genl(VDPA_CMD_DEV_NEW, &device_attrs("net0", 1, 2)),
        ));
        let mut second = message(
            FAMILY,
            NLM_F_MULTI,
            seq,
            &genl(VDPA_CMD_DEV_NEW, &device_attrs("fs0", 26, 2)),
        );
        second.extend(message(NLMSG_DONE, NLM_F_MULTI, seq, &0i32.to_ne_bytes()));

        let mut replies = Vec::new();
        assert_eq!(
            absorb_datagram(&first, seq, FAMILY, &mut replies),
            Ok(Progress::Continue)
        );
        assert_eq!(
            absorb_datagram(&second, seq, FAMILY, &mut replies),
            Ok(Progress::Finished)
        );
        let devices: Vec<VdpaDevice> = replies.iter().map(|r| decode_device(r).unwrap()).collect();
        assert_eq!(devices.len(), 3);
        assert_eq!(
            devices[0],
            VdpaDevice {
                name: "blk0".into(),
                management_device: "vduse".into(),
                management_bus: None,
                device_id: 2,
                vendor_id: 0,
                max_vqs: 1,
                max_vq_size: 256,
                min_vq_size: Some(1),
            }
        );
        assert_eq!(devices[1].name, "net0");
        assert_eq!(devices[1].device_id, 1);
        assert_eq!(devices[2].name, "fs0");
        assert_eq!(devices[2].max_vqs, 2);
    }

    #[test]
    fn decodes_management_device_and_ignores_unknown_attributes() {
        let attrs = [
            attr(0, &[0; 4]), // VDPA_ATTR_PAD
            attr_str(VDPA_ATTR_MGMTDEV_DEV_NAME, "vduse"),
            attr(
                VDPA_ATTR_MGMTDEV_SUPPORTED_CLASSES,
                &((1u64 << 1) | (1 << 2)).to_ne_bytes(),
            ),
            attr(999, b"whatever the future brings"),
            attr(VDPA_ATTR_DEV_MGMTDEV_MAX_VQS, &0u32.to_ne_bytes()),
            attr(VDPA_ATTR_DEV_SUPPORTED_FEATURES, &0u64.to_ne_bytes()),
        ]
        .concat();
        let mgmt = decode_management_device(&attrs).unwrap();
        assert_eq!(mgmt.name, "vduse");
        assert_eq!(mgmt.bus_name, None);
        assert_eq!(mgmt.handle(), "vduse");
        assert_eq!(mgmt.supported_device_ids(), vec![1, 2]);
        assert!(mgmt.supports(2) && mgmt.supports(1) && !mgmt.supports(26));
        assert!(!mgmt.supports(64) && !mgmt.supports(u32::MAX));
        assert_eq!(mgmt.max_supported_vqs, Some(0));
        assert_eq!(mgmt.supported_features, Some(0));

        let pci = [
            attr_str(VDPA_ATTR_MGMTDEV_BUS_NAME, "pci"),
            attr_str(VDPA_ATTR_MGMTDEV_DEV_NAME, "0000:03:00.2"),
        ]
        .concat();
        let pci = decode_management_device(&pci).unwrap();
        assert_eq!(pci.handle(), "pci/0000:03:00.2");
        assert_eq!(pci.supported_classes, 0);
        assert_eq!(pci.max_supported_vqs, None);
    }

    #[test]
    fn decodes_family_id() {
        let attrs = [
            attr_str(CTRL_ATTR_FAMILY_NAME, "vdpa"),
            attr(CTRL_ATTR_FAMILY_ID, &0x1bu16.to_ne_bytes()),
            attr(3, &1u32.to_ne_bytes()), // CTRL_ATTR_VERSION
        ]
        .concat();
        assert_eq!(decode_family_id(&attrs), Ok(0x1b));
        assert_eq!(
            decode_family_id(&attr_str(CTRL_ATTR_FAMILY_NAME, "vdpa")),
            Err(DecodeError::MissingAttribute("CTRL_ATTR_FAMILY_ID"))
        );
    }

    #[test]
    fn decodes_ack_and_error() {
        let seq = 5;
        // struct nlmsgerr: error, then the request's nlmsghdr echoed back.
        let mut ack = 0i32.to_ne_bytes().to_vec();
        ack.extend(&encode_request(FAMILY, NLM_F_REQUEST | NLM_F_ACK, seq, 3, 1, &[])[..16]);
        let mut replies = Vec::new();
        let datagram = message(NLMSG_ERROR, 0, seq, &ack);
        assert_eq!(
            absorb_datagram(&datagram, seq, FAMILY, &mut replies),
            Ok(Progress::Finished)
        );

        let mut nack = (-libc::EINVAL).to_ne_bytes().to_vec();
        nack.extend(&ack[4..]);
        let datagram = message(NLMSG_ERROR, 0, seq, &nack);
        assert_eq!(
            absorb_datagram(&datagram, seq, FAMILY, &mut replies),
            Ok(Progress::Failed(libc::EINVAL))
        );

        // A reply, then its ack, in one datagram (a doit with NLM_F_ACK).
        let mut datagram = message(
            FAMILY,
            0,
            seq,
            &genl(VDPA_CMD_DEV_NEW, &device_attrs("a", 2, 1)),
        );
        datagram.extend(message(NLMSG_ERROR, 0, seq, &ack));
        assert_eq!(
            absorb_datagram(&datagram, seq, FAMILY, &mut replies),
            Ok(Progress::Finished)
        );
        assert_eq!(replies.len(), 1);

        // A dump that failed midway: NLMSG_DONE carrying a negative errno.
        let done = message(
            NLMSG_DONE,
            NLM_F_MULTI,
            seq,
            &(-libc::EMSGSIZE).to_ne_bytes(),
        );
        assert_eq!(
            absorb_datagram(&done, seq, FAMILY, &mut Vec::new()),
            Ok(Progress::Failed(libc::EMSGSIZE))
        );
        // The kernel may also send an NLMSG_DONE with no payload at all.
        let done = message(NLMSG_DONE, NLM_F_MULTI, seq, &[]);
        assert_eq!(
            absorb_datagram(&done, seq, FAMILY, &mut Vec::new()),
            Ok(Progress::Finished)
        );
    }

    #[test]
    fn skips_other_sequence_numbers_and_noop() {
        let stale = message(
            FAMILY,
            0,
            1,
            &genl(VDPA_CMD_DEV_NEW, &device_attrs("x", 2, 1)),
        );
        let mut datagram = stale.clone();
        datagram.extend(message(NLMSG_NOOP, 0, 2, &[]));
        let mut replies = Vec::new();
        assert_eq!(
            absorb_datagram(&datagram, 2, FAMILY, &mut replies),
            Ok(Progress::Continue)
        );
        assert!(replies.is_empty());
    }

    #[test]
    fn rejects_unexpected_and_overrun_messages() {
        let other = message(0x42, 0, 1, &[0; 4]);
        assert_eq!(
            absorb_datagram(&other, 1, FAMILY, &mut Vec::new()),
            Err(DecodeError::UnexpectedType(0x42))
        );
        let overrun = message(NLMSG_OVERRUN, 0, 1, &[]);
        assert_eq!(
            absorb_datagram(&overrun, 1, FAMILY, &mut Vec::new()),
            Err(DecodeError::Overrun)
        );
    }

    #[test]
    fn truncated_and_malformed_input_is_an_error_not_a_panic() {
        let seq = 3;
        let mut good = message(
            FAMILY,
            NLM_F_MULTI,
            seq,
            &genl(5, &device_attrs("blk0", 2, 1)),
        );
        good.extend(message(NLMSG_DONE, NLM_F_MULTI, seq, &0i32.to_ne_bytes()));
        // Every prefix of a good datagram either decodes or fails cleanly.
        for cut in 0..good.len() {
            let mut replies = Vec::new();
            if let Ok(Progress::Continue | Progress::Finished) =
                absorb_datagram(&good[..cut], seq, FAMILY, &mut replies)
            {
                for r in &replies {
                    let _ = decode_device(r);
                }
            }
        }
        // A length field that lies, short and long.
        let mut lying = good.clone();
        lying[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert_eq!(
            absorb_datagram(&lying, seq, FAMILY, &mut Vec::new()),
            Err(DecodeError::Truncated("netlink message"))
        );
        lying[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(absorb_datagram(&lying, seq, FAMILY, &mut Vec::new()).is_err());
        // A message too short for a genlmsghdr, an NLMSG_ERROR too short for its code.
        let short = message(FAMILY, 0, seq, &[1, 2]);
        assert_eq!(
            absorb_datagram(&short, seq, FAMILY, &mut Vec::new()),
            Err(DecodeError::Truncated("generic netlink header"))
        );
        let short = message(NLMSG_ERROR, 0, seq, &[0, 0]);
        assert_eq!(
            absorb_datagram(&short, seq, FAMILY, &mut Vec::new()),
            Err(DecodeError::Truncated("NLMSG_ERROR"))
        );
        // Attributes: a partial header, a length below the header size, a
        // length past the end, a u32 of the wrong size, a missing name.
        assert_eq!(
            parse_attributes(&[8, 0]),
            Err(DecodeError::Truncated("attribute header"))
        );
        assert_eq!(
            parse_attributes(&[2, 0, 4, 0]),
            Err(DecodeError::Truncated("attribute"))
        );
        assert_eq!(
            parse_attributes(&[12, 0, 4, 0, b'a', 0]),
            Err(DecodeError::Truncated("attribute"))
        );
        let mut attrs = device_attrs("blk0", 2, 1);
        attrs[2] = attr(VDPA_ATTR_DEV_ID, &[2, 0]);
        assert_eq!(
            decode_device(&attrs.concat()),
            Err(DecodeError::BadAttributeSize {
                kind: VDPA_ATTR_DEV_ID,
                len: 2,
                expected: 4
            })
        );
        let attrs = device_attrs("blk0", 2, 1);
        assert_eq!(
            decode_device(&attrs[2..].concat()),
            Err(DecodeError::MissingAttribute("VDPA_ATTR_DEV_NAME"))
        );
    }

    #[test]
    fn strings_stop_at_nul_and_survive_bad_utf8() {
        let bytes = attr(4, b"ab\0cd\0");
        let attrs = parse_attributes(&bytes).unwrap();
        assert_eq!(attr_string(attrs[0].1), "ab");
        assert_eq!(attr_string(b"no-nul"), "no-nul");
        assert_eq!(attr_string(b"\xffx\0"), "\u{fffd}x");
    }
}
