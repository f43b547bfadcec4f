//! What the FUSE tests share: request messages and the descriptors that carry them.

use fuse_backend_rs::abi::fuse_abi::InHeader;
use virtio_queue::desc::{RawDescriptor, split::Descriptor};
use vm_memory::ByteValued;

pub const IN_HEADER_LEN: usize = 40;
pub const OUT_HEADER_LEN: usize = 16;
/// `VRING_DESC_F_WRITE`; `build_desc_chain` sets `VRING_DESC_F_NEXT` itself.
pub const DESC_F_WRITE: u16 = 2;

pub fn readable(addr: u64, len: u32) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, 0, 0))
}

pub fn writable(addr: u64, len: u32) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, DESC_F_WRITE, 0))
}

/// `len` bytes from `start` cut into descriptors at the offsets `cuts` (those inside, in
/// any order, repeats ignored).
pub fn pieces(
    start: u64,
    len: usize,
    cuts: &[usize],
    make: fn(u64, u32) -> RawDescriptor,
) -> Vec<RawDescriptor> {
    let mut bounds: Vec<usize> = cuts
        .iter()
        .copied()
        .filter(|&cut| cut > 0 && cut < len)
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    bounds.insert(0, 0);
    bounds.push(len);
    bounds
        .windows(2)
        .map(|w| make(start + w[0] as u64, (w[1] - w[0]) as u32))
        .collect()
}

/// A FUSE request: the 40-byte `fuse_in_header` (whose `len` counts `body`) and `body`,
/// sent as this process.
pub fn message(opcode: u32, unique: u64, nodeid: u64, body: &[u8]) -> Vec<u8> {
    let header = InHeader {
        len: (IN_HEADER_LEN + body.len()) as u32,
        opcode,
        unique,
        nodeid,
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        pid: std::process::id(),
        padding: 0, // total_extlen (u16) and padding (u16)
    };
    assert_eq!(header.as_slice().len(), IN_HEADER_LEN);
    let mut bytes = header.as_slice().to_vec();
    bytes.extend_from_slice(body);
    bytes
}
