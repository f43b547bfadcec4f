//! The virtio-net wire format this device speaks: its feature bits, config space, the
//! header in front of every frame, and the checksum a receiver without `GUEST_CSUM` needs
//! completed.

use std::fmt;
use std::str::FromStr;

use virtio_bindings::virtio_net::*;

/// Receive queue (queue 0 of the only pair).
pub const RX_QUEUE: u16 = 0;
/// Transmit queue.
pub const TX_QUEUE: u16 = 1;

/// `struct virtio_net_hdr_v1` (VERSION_1 always has `num_buffers`): 12 bytes.
pub const HEADER_LEN: usize = 12;

/// Smallest MTU the kernel's virtio-net driver accepts from the device (`ETH_MIN_MTU`).
pub const MIN_MTU: u16 = 68;

/// Bytes of config space the device has: `mac`, `status`, `max_virtqueue_pairs`, `mtu`.
pub const CONFIG_LEN: usize = 12;
/// Offset of `status` in the config space.
pub const CONFIG_STATUS_OFFSET: u32 = 6;

const fn bit(feature: u32) -> u64 {
    1 << feature
}

/// What every device offers: MAC, MTU, link status, mergeable receive buffers.
pub const BASE_FEATURES: u64 = bit(VIRTIO_NET_F_MAC)
    | bit(VIRTIO_NET_F_MTU)
    | bit(VIRTIO_NET_F_STATUS)
    | bit(VIRTIO_NET_F_MRG_RXBUF);

/// The offloads that let large frames through whole: the driver may send partial
/// checksums and TCP segments up to 64 KiB (nothing checks or segments them here), and
/// take them back in echo mode.
pub const OFFLOAD_FEATURES: u64 = bit(VIRTIO_NET_F_CSUM)
    | bit(VIRTIO_NET_F_GUEST_CSUM)
    | bit(VIRTIO_NET_F_HOST_TSO4)
    | bit(VIRTIO_NET_F_HOST_TSO6)
    | bit(VIRTIO_NET_F_HOST_ECN)
    | bit(VIRTIO_NET_F_GUEST_TSO4)
    | bit(VIRTIO_NET_F_GUEST_TSO6)
    | bit(VIRTIO_NET_F_GUEST_ECN);

/// Whether `features` has `feature`.
pub fn has(features: u64, feature: u32) -> bool {
    features & bit(feature) != 0
}

/// An Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A random locally administered unicast address.
    pub fn random() -> std::io::Result<Mac> {
        let mut bytes = [0u8; 6];
        let mut filled = 0;
        while filled < bytes.len() {
            filled += rustix::rand::getrandom(
                &mut bytes[filled..],
                rustix::rand::GetRandomFlags::empty(),
            )?;
        }
        bytes[0] = (bytes[0] & !0x01) | 0x02;
        Ok(Mac(bytes))
    }

    /// Whether frames can be addressed to it: not multicast, not all zeros.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 0x01 == 0 && self.0 != [0; 6]
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({self})")
    }
}

impl FromStr for Mac {
    type Err = String;

    fn from_str(text: &str) -> Result<Mac, String> {
        let bad = || {
            format!("{text:?} is not a MAC address: write six hex bytes such as 02:00:00:00:00:01")
        };
        let mut bytes = [0u8; 6];
        let mut parts = text.trim().split([':', '-']);
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(bytes))
    }
}

/// The config space: MAC, link status, one queue pair, MTU.
pub fn config_space(mac: Mac, link_up: bool, mtu: u16) -> Vec<u8> {
    let mut config = Vec::with_capacity(CONFIG_LEN);
    config.extend_from_slice(&mac.0);
    config.extend_from_slice(&status(link_up));
    config.extend_from_slice(&1u16.to_le_bytes());
    config.extend_from_slice(&mtu.to_le_bytes());
    config
}

/// The config space's `status` field.
pub fn status(link_up: bool) -> [u8; 2] {
    let value = if link_up {
        VIRTIO_NET_S_LINK_UP as u16
    } else {
        0
    };
    value.to_le_bytes()
}

/// `struct virtio_net_hdr_v1`, little-endian on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`, with the ECN bit.
    pub gso_type: u8,
    /// Length of the headers to copy into each segment.
    pub hdr_len: u16,
    /// Segment size.
    pub gso_size: u16,
    /// Where the checksum starts.
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
    /// Receive buffers the frame spans (mergeable buffers).
    pub num_buffers: u16,
}

impl Header {
    /// Parses the first [`HEADER_LEN`] bytes of `bytes`.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Header {
        let word = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        Header {
            flags: bytes[0],
            gso_type: bytes[1],
            hdr_len: word(2),
            gso_size: word(4),
            csum_start: word(6),
            csum_offset: word(8),
            num_buffers: word(10),
        }
    }

    /// The wire form.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[0] = self.flags;
        bytes[1] = self.gso_type;
        for (at, word) in [
            (2, self.hdr_len),
            (4, self.gso_size),
            (6, self.csum_start),
            (8, self.csum_offset),
            (10, self.num_buffers),
        ] {
            bytes[at..at + 2].copy_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    /// Whether the checksum is left for the receiver to complete.
    pub fn needs_csum(&self) -> bool {
        u32::from(self.flags) & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
    }

    /// The receive feature a frame with this segmentation needs, or `None` when it is not
    /// segmented.
    pub fn gso_feature(&self) -> Option<Result<u32, u8>> {
        let kind = u32::from(self.gso_type) & !VIRTIO_NET_HDR_GSO_ECN;
        match kind {
            VIRTIO_NET_HDR_GSO_NONE => None,
            VIRTIO_NET_HDR_GSO_TCPV4 => Some(Ok(VIRTIO_NET_F_GUEST_TSO4)),
            VIRTIO_NET_HDR_GSO_TCPV6 => Some(Ok(VIRTIO_NET_F_GUEST_TSO6)),
            _ => Some(Err(self.gso_type)),
        }
    }

    /// Whether the segments carry ECN (needs `GUEST_ECN` to be received).
    pub fn gso_ecn(&self) -> bool {
        u32::from(self.gso_type) & VIRTIO_NET_HDR_GSO_ECN != 0
    }
}

/// Completes a partial checksum the sender left (`NEEDS_CSUM`): the one's complement sum of
/// `frame[start..]`, whose checksum field already holds the pseudo-header sum, stored at
/// `start + offset`. Returns false when the positions lie outside the frame.
pub fn complete_checksum(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let Some(field) = start.checked_add(offset) else {
        return false;
    };
    if field + 2 > frame.len() || start > frame.len() {
        return false;
    }
    let mut sum: u64 = 0;
    let mut chunks = frame[start..].chunks_exact(2);
    for pair in &mut chunks {
        sum += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The folded sum fits in 16 bits after the loop.
    let checksum = !(sum as u16);
    frame[field..field + 2].copy_from_slice(&checksum.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_print_and_random_ones_are_local_unicast() {
        let mac: Mac = "02:00:5E:10:00:01".parse().unwrap();
        assert_eq!(mac.0, [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);
        assert_eq!(mac.to_string(), "02:00:5e:10:00:01");
        assert_eq!("02-00-5e-10-00-01".parse::<Mac>(), Ok(mac));
        for bad in [
            "",
            "02:00:5e:10:00",
            "02:00:5e:10:00:01:02",
            "2:0:5e:10:0:1",
            "zz:00:00:00:00:00",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
        assert!(mac.is_unicast());
        assert!(!Mac([0x01, 0, 0, 0, 0, 1]).is_unicast());
        assert!(!Mac([0; 6]).is_unicast());
        for _ in 0..32 {
            let random = Mac::random().unwrap();
            assert!(random.is_unicast() && random.0[0] & 0x02 != 0, "{random}");
        }
    }

    #[test]
    fn the_config_space_is_mac_status_pairs_mtu() {
        let config = config_space(Mac([2, 0, 0, 0, 0, 9]), true, 9000);
        assert_eq!(config.len(), CONFIG_LEN);
        assert_eq!(&config[..6], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(&config[6..8], &[1, 0]);
        assert_eq!(&config[8..10], &[1, 0]);
        assert_eq!(&config[10..12], &9000u16.to_le_bytes());
        assert_eq!(
            config_space(Mac([2, 0, 0, 0, 0, 9]), false, 1500)[6..8],
            [0, 0]
        );
    }

    #[test]
    fn headers_round_trip() {
        let header = Header {
            flags: 1,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV6 as u8 | VIRTIO_NET_HDR_GSO_ECN as u8,
            hdr_len: 74,
            gso_size: 1448,
            csum_start: 54,
            csum_offset: 16,
            num_buffers: 3,
        };
        assert_eq!(Header::parse(&header.to_bytes()), header);
        assert!(header.needs_csum() && header.gso_ecn());
        assert_eq!(header.gso_feature(), Some(Ok(VIRTIO_NET_F_GUEST_TSO6)));
        assert_eq!(Header::default().gso_feature(), None);
        let udp = Header {
            gso_type: VIRTIO_NET_HDR_GSO_UDP as u8,
            ..Header::default()
        };
        assert_eq!(udp.gso_feature(), Some(Err(VIRTIO_NET_HDR_GSO_UDP as u8)));
    }

    #[test]
    fn checksums_are_completed_like_the_internet_checksum() {
        // RFC 1071's example: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2, so the
        // checksum is 220d.
        let mut frame = vec![0u8; 4];
        frame.extend_from_slice(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7, 0, 0]);
        assert!(complete_checksum(&mut frame, 4, 8));
        assert_eq!(&frame[12..14], &[0x22, 0x0d]);
        // Summing again over the completed field gives all ones: valid.
        let mut sum: u32 = frame[4..]
            .chunks(2)
            .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
            .sum();
        sum = (sum & 0xffff) + (sum >> 16);
        assert_eq!(sum, 0xffff);
        // Out of the frame: refused, frame untouched.
        let before = frame.clone();
        assert!(!complete_checksum(&mut frame, 4, 100));
        assert!(!complete_checksum(&mut frame, 100, 0));
        assert!(!complete_checksum(&mut frame, usize::MAX, 2));
        assert_eq!(frame, before);
    }
}
