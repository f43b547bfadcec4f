//! `repr(C)` mirrors of Linux 7.3's `include/uapi/linux/vduse.h`.
//!
//! Every struct, ioctl number and request type of the header, for API versions 0 and 1 and
//! the VDUSE features (`VDUSE_GET_FEATURES`/`VDUSE_SET_FEATURES`). Sizes, alignments, field
//! offsets and ioctl numbers are asserted at compile time against the values the C compiler
//! gives for the kernel header (see the `layout` assertions at the end of this file).
//!
//! Two departures from the header, neither of which changes the layout:
//! - C unions become fixed-size payload fields with typed accessors, so every struct can be
//!   converted to and from bytes without `unsafe` (through `zerocopy`).
//! - Implicit tail padding is spelled out as `_pad` fields, for the same reason.

use rustix::ioctl::{Opcode, opcode};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The ioctl "type" byte of every VDUSE ioctl.
pub const VDUSE_BASE: u8 = 0x81;

/// API version 0: the original interface.
pub const VDUSE_API_VERSION: u64 = 0;
/// API version 1: virtqueue groups and address spaces (ASID), `VDUSE_IOTLB_GET_FD2`.
pub const VDUSE_API_VERSION_1: u64 = 1;

/// VDUSE feature bit: the device expects `VDUSE_SET_VQ_READY` requests.
pub const VDUSE_F_QUEUE_READY: u32 = 0;
/// VDUSE feature bit: the device expects `VDUSE_SUSPEND` requests.
pub const VDUSE_F_SUSPEND: u32 = 1;

/// Size of a device name buffer, including the terminating NUL.
pub const VDUSE_NAME_MAX: usize = 256;

/// IOTLB permission: read-only.
pub const VDUSE_ACCESS_RO: u8 = 0x1;
/// IOTLB permission: write-only.
pub const VDUSE_ACCESS_WO: u8 = 0x2;
/// IOTLB permission: read-write.
pub const VDUSE_ACCESS_RW: u8 = 0x3;

/// `vduse_iova_info.capability`: the region can be backed by user memory.
pub const VDUSE_IOVA_CAP_UMEM: u64 = 1 << 0;

/// `vduse_vq_eventfd.fd` value that de-assigns the kick eventfd.
pub const VDUSE_EVENTFD_DEASSIGN: i32 = -1;

/// Request type: get the state of a virtqueue (`vduse_dev_request.vq_state`).
pub const VDUSE_GET_VQ_STATE: u32 = 0;
/// Request type: set the device status (`vduse_dev_request.s`).
pub const VDUSE_SET_STATUS: u32 = 1;
/// Request type: the IOVA range in `vduse_dev_request.iova` changed mapping.
pub const VDUSE_UPDATE_IOTLB: u32 = 2;
/// Request type (API v1): a virtqueue group moves to another address space.
pub const VDUSE_SET_VQ_GROUP_ASID: u32 = 3;
/// Request type (with `VDUSE_F_QUEUE_READY`): a virtqueue becomes ready or not ready.
pub const VDUSE_SET_VQ_READY: u32 = 4;
/// Request type (with `VDUSE_F_SUSPEND`): suspend the device.
pub const VDUSE_SUSPEND: u32 = 5;

/// `vduse_dev_response.result`: the request succeeded.
pub const VDUSE_REQ_RESULT_OK: u32 = 0x00;
/// `vduse_dev_response.result`: the request failed.
pub const VDUSE_REQ_RESULT_FAILED: u32 = 0x01;

// Control device ioctls (`/dev/vduse/control`).

/// `_IOR(VDUSE_BASE, 0x00, __u64)`: the API version of this control fd (pins it to the
/// kernel's maximum when it was never set).
pub const VDUSE_GET_API_VERSION: Opcode = opcode::read::<u64>(VDUSE_BASE, 0x00);
/// `_IOW(VDUSE_BASE, 0x01, __u64)`: choose the API version of this control fd.
pub const VDUSE_SET_API_VERSION: Opcode = opcode::write::<u64>(VDUSE_BASE, 0x01);
/// `_IOW(VDUSE_BASE, 0x02, struct vduse_dev_config)`: create a device.
pub const VDUSE_CREATE_DEV: Opcode = opcode::write::<VduseDevConfig>(VDUSE_BASE, 0x02);
/// `_IOW(VDUSE_BASE, 0x03, char[VDUSE_NAME_MAX])`: destroy a device.
pub const VDUSE_DESTROY_DEV: Opcode = opcode::write::<[u8; VDUSE_NAME_MAX]>(VDUSE_BASE, 0x03);
/// `_IOR(VDUSE_BASE, 0x04, __u64)`: the VDUSE features the kernel supports.
pub const VDUSE_GET_FEATURES: Opcode = opcode::read::<u64>(VDUSE_BASE, 0x04);
/// `_IOW(VDUSE_BASE, 0x05, __u64)`: the VDUSE features for devices this fd creates.
pub const VDUSE_SET_FEATURES: Opcode = opcode::write::<u64>(VDUSE_BASE, 0x05);

// Device ioctls (`/dev/vduse/$NAME`).

/// `_IOWR(VDUSE_BASE, 0x10, struct vduse_iotlb_entry)`: fd of the first IOVA region
/// overlapping `[start, last]`.
pub const VDUSE_IOTLB_GET_FD: Opcode = opcode::read_write::<VduseIotlbEntry>(VDUSE_BASE, 0x10);
/// `_IOR(VDUSE_BASE, 0x11, __u64)`: the negotiated virtio features.
pub const VDUSE_DEV_GET_FEATURES: Opcode = opcode::read::<u64>(VDUSE_BASE, 0x11);
/// `_IOW(VDUSE_BASE, 0x12, struct vduse_config_data)`: update the config space.
pub const VDUSE_DEV_SET_CONFIG: Opcode = opcode::write::<VduseConfigData>(VDUSE_BASE, 0x12);
/// `_IO(VDUSE_BASE, 0x13)`: inject a config-change interrupt.
pub const VDUSE_DEV_INJECT_CONFIG_IRQ: Opcode = opcode::none(VDUSE_BASE, 0x13);
/// `_IOW(VDUSE_BASE, 0x14, struct vduse_vq_config)`: set up a virtqueue.
pub const VDUSE_VQ_SETUP: Opcode = opcode::write::<VduseVqConfig>(VDUSE_BASE, 0x14);
/// `_IOWR(VDUSE_BASE, 0x15, struct vduse_vq_info)`: read a virtqueue's addresses and state.
pub const VDUSE_VQ_GET_INFO: Opcode = opcode::read_write::<VduseVqInfo>(VDUSE_BASE, 0x15);
/// `_IOW(VDUSE_BASE, 0x16, struct vduse_vq_eventfd)`: set up a kick eventfd.
pub const VDUSE_VQ_SETUP_KICKFD: Opcode = opcode::write::<VduseVqEventfd>(VDUSE_BASE, 0x16);
/// `_IOW(VDUSE_BASE, 0x17, __u32)`: inject a virtqueue interrupt.
pub const VDUSE_VQ_INJECT_IRQ: Opcode = opcode::write::<u32>(VDUSE_BASE, 0x17);
/// `_IOW(VDUSE_BASE, 0x18, struct vduse_iova_umem)`: register user memory for an IOVA region.
pub const VDUSE_IOTLB_REG_UMEM: Opcode = opcode::write::<VduseIovaUmem>(VDUSE_BASE, 0x18);
/// `_IOW(VDUSE_BASE, 0x19, struct vduse_iova_umem)`: deregister user memory.
pub const VDUSE_IOTLB_DEREG_UMEM: Opcode = opcode::write::<VduseIovaUmem>(VDUSE_BASE, 0x19);
/// `_IOWR(VDUSE_BASE, 0x1a, struct vduse_iova_info)`: information on an IOVA region.
pub const VDUSE_IOTLB_GET_INFO: Opcode = opcode::read_write::<VduseIovaInfo>(VDUSE_BASE, 0x1a);
/// `_IOWR(VDUSE_BASE, 0x1b, struct vduse_iotlb_entry_v2)`: `VDUSE_IOTLB_GET_FD` with an ASID.
pub const VDUSE_IOTLB_GET_FD2: Opcode = opcode::read_write::<VduseIotlbEntryV2>(VDUSE_BASE, 0x1b);

/// `struct vduse_dev_config`: the fixed part of `VDUSE_CREATE_DEV`'s argument. The config
/// space (`config_size` bytes) follows it directly in memory.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VduseDevConfig {
    /// NUL-terminated device name.
    pub name: [u8; VDUSE_NAME_MAX],
    /// Virtio vendor id.
    pub vendor_id: u32,
    /// Virtio device id (`VIRTIO_ID_*`).
    pub device_id: u32,
    /// Virtio feature bits the device offers.
    pub features: u64,
    /// Number of virtqueues.
    pub vq_num: u32,
    /// Alignment of the virtqueues' metadata.
    pub vq_align: u32,
    /// Number of virtqueue groups (API version >= 1, else 0).
    pub ngroups: u32,
    /// Number of address spaces (API version >= 1, else 0).
    pub nas: u32,
    /// Must be zero.
    pub reserved: [u32; 11],
    /// Size of the config space that follows.
    pub config_size: u32,
}

/// `struct vduse_iotlb_entry`: argument of `VDUSE_IOTLB_GET_FD`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VduseIotlbEntry {
    /// Offset to pass to mmap(2) on the returned fd.
    pub offset: u64,
    /// First IOVA of the region.
    pub start: u64,
    /// Last IOVA of the region (inclusive).
    pub last: u64,
    /// `VDUSE_ACCESS_*`.
    pub perm: u8,
    /// Implicit padding in C.
    pub _pad: [u8; 7],
}

/// `struct vduse_config_data`: the fixed part of `VDUSE_DEV_SET_CONFIG`'s argument; `length`
/// bytes of config space follow it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VduseConfigData {
    /// Offset into the config space.
    pub offset: u32,
    /// Number of bytes that follow.
    pub length: u32,
}

/// `struct vduse_vq_config`: argument of `VDUSE_VQ_SETUP`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VduseVqConfig {
    /// Virtqueue index.
    pub index: u32,
    /// Largest queue size the device supports.
    pub max_size: u16,
    /// Must be zero.
    pub reserved1: u16,
    /// Virtqueue group (API version >= 1).
    pub group: u32,
    /// Must be zero.
    pub reserved2: [u16; 10],
}

/// `struct vduse_vq_state_split`: split virtqueue state.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VduseVqStateSplit {
    /// Next available index the device will read.
    pub avail_index: u16,
}

/// `struct vduse_vq_state_packed`: packed virtqueue state.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VduseVqStatePacked {
    /// Driver ring wrap counter last observed by the device.
    pub last_avail_counter: u16,
    /// Device available index.
    pub last_avail_idx: u16,
    /// Device ring wrap counter.
    pub last_used_counter: u16,
    /// Used index.
    pub last_used_idx: u16,
}

/// The C union `{ vduse_vq_state_split split; vduse_vq_state_packed packed; }`, as the bytes
/// of its largest member. Both members start at offset 0.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VduseVqStateUnion(pub VduseVqStatePacked);

impl VduseVqStateUnion {
    /// The union read as split virtqueue state.
    pub fn split(&self) -> VduseVqStateSplit {
        VduseVqStateSplit {
            avail_index: self.0.last_avail_counter,
        }
    }

    /// The union read as packed virtqueue state.
    pub fn packed(&self) -> VduseVqStatePacked {
        self.0
    }

    /// The union holding split virtqueue state.
    pub fn from_split(split: VduseVqStateSplit) -> Self {
        Self(VduseVqStatePacked {
            last_avail_counter: split.avail_index,
            ..Default::default()
        })
    }
}

/// `struct vduse_vq_group_asid`: payload of `VDUSE_SET_VQ_GROUP_ASID`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VduseVqGroupAsid {
    /// Virtqueue group.
    pub group: u32,
    /// Address space the group now uses.
    pub asid: u32,
}

/// `struct vduse_vq_info`: argument of `VDUSE_VQ_GET_INFO`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VduseVqInfo {
    /// Virtqueue index (set by the caller).
    pub index: u32,
    /// Queue size the driver chose.
    pub num: u32,
    /// IOVA of the descriptor area.
    pub desc_addr: u64,
    /// IOVA of the driver (available) area.
    pub driver_addr: u64,
    /// IOVA of the device (used) area.
    pub device_addr: u64,
    /// Split or packed state (a union in C).
    pub state: VduseVqStateUnion,
    /// Whether the driver has made the queue ready.
    pub ready: u8,
    /// Implicit padding in C.
    pub _pad: [u8; 7],
}

/// `struct vduse_vq_eventfd`: argument of `VDUSE_VQ_SETUP_KICKFD`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VduseVqEventfd {
    /// Virtqueue index.
    pub index: u32,
    /// eventfd, or `VDUSE_EVENTFD_DEASSIGN`.
    pub fd: i32,
}

/// `struct vduse_iova_umem`: argument of `VDUSE_IOTLB_REG_UMEM`/`DEREG_UMEM`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VduseIovaUmem {
    /// Page-aligned start of the user memory.
    pub uaddr: u64,
    /// Start of the IOVA region.
    pub iova: u64,
    /// Size of the IOVA region.
    pub size: u64,
    /// Address space of the region.
    pub asid: u32,
    /// Must be zero.
    pub reserved: [u32; 5],
}

/// `struct vduse_iova_info`: argument of `VDUSE_IOTLB_GET_INFO`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VduseIovaInfo {
    /// First IOVA of the region.
    pub start: u64,
    /// Last IOVA of the region (inclusive).
    pub last: u64,
    /// `VDUSE_IOVA_CAP_*`.
    pub capability: u64,
    /// Address space (API version >= 1).
    pub asid: u32,
    /// Must be zero.
    pub reserved: [u32; 5],
}

/// `struct vduse_iotlb_entry_v2`: argument of `VDUSE_IOTLB_GET_FD2`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VduseIotlbEntryV2 {
    /// Offset to pass to mmap(2) on the returned fd.
    pub offset: u64,
    /// First IOVA of the region.
    pub start: u64,
    /// Last IOVA of the region (inclusive).
    pub last: u64,
    /// `VDUSE_ACCESS_*`.
    pub perm: u8,
    /// Explicit padding in C.
    pub padding: [u8; 7],
    /// Address space of the region.
    pub asid: u32,
    /// Must be zero.
    pub reserved: [u32; 11],
}

/// `struct vduse_vq_state`: payload of `VDUSE_GET_VQ_STATE` requests and responses.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VduseVqState {
    /// Virtqueue index.
    pub index: u32,
    /// Split or packed state (a union in C).
    pub state: VduseVqStateUnion,
}

/// `struct vduse_dev_status`: payload of `VDUSE_SET_STATUS`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VduseDevStatus {
    /// Virtio device status bits.
    pub status: u8,
}

/// `struct vduse_iova_range`: payload of `VDUSE_UPDATE_IOTLB` (API version 0).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VduseIovaRange {
    /// First IOVA.
    pub start: u64,
    /// Last IOVA (inclusive).
    pub last: u64,
}

/// `struct vduse_iova_range_v2`: payload of `VDUSE_UPDATE_IOTLB` (API version >= 1).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VduseIovaRangeV2 {
    /// First IOVA.
    pub start: u64,
    /// Last IOVA (inclusive).
    pub last: u64,
    /// Address space of the range.
    pub asid: u32,
    /// Padding.
    pub padding: u32,
}

/// `struct vduse_vq_ready`: payload of `VDUSE_SET_VQ_READY`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VduseVqReady {
    /// Virtqueue index.
    pub num: u32,
    /// 1 when the queue becomes ready, 0 when it stops being ready.
    pub ready: u32,
}

/// `struct vduse_dev_request`: what read(2) on a device fd returns.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VduseDevRequest {
    /// `VDUSE_*` request type.
    pub type_: u32,
    /// Id to echo in the response.
    pub request_id: u32,
    /// Reserved.
    pub reserved: [u32; 4],
    /// The C union of payloads; read it with the typed accessors.
    pub payload: [u64; 16],
}

/// `struct vduse_dev_response`: what write(2) on a device fd takes.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VduseDevResponse {
    /// The request's id.
    pub request_id: u32,
    /// `VDUSE_REQ_RESULT_OK` or `VDUSE_REQ_RESULT_FAILED`.
    pub result: u32,
    /// Must be zero.
    pub reserved: [u32; 4],
    /// The C union `{ vduse_vq_state vq_state; __u32 padding[32]; }`.
    pub payload: [u32; 32],
}

/// Reads a payload struct from the start of a union's bytes.
fn read_payload<T: FromBytes>(bytes: &[u8]) -> T {
    // Every payload type is smaller than the union, so the prefix always exists.
    T::read_from_prefix(bytes)
        .map(|(value, _)| value)
        .expect("payload fits in the union")
}

impl VduseDevRequest {
    /// A zeroed request of the given type (for tests and fakes).
    pub fn new(type_: u32, request_id: u32) -> Self {
        Self {
            type_,
            request_id,
            reserved: [0; 4],
            payload: [0; 16],
        }
    }

    /// A request carrying `payload` (for tests and fakes).
    pub fn with_payload<T: IntoBytes + Immutable>(
        type_: u32,
        request_id: u32,
        payload: &T,
    ) -> Self {
        let mut request = Self::new(type_, request_id);
        let bytes = payload.as_bytes();
        request.payload.as_mut_bytes()[..bytes.len()].copy_from_slice(bytes);
        request
    }

    /// Payload of `VDUSE_GET_VQ_STATE` (only `index` is meaningful).
    pub fn vq_state(&self) -> VduseVqState {
        read_payload(self.payload.as_bytes())
    }

    /// Payload of `VDUSE_SET_STATUS`.
    pub fn status(&self) -> VduseDevStatus {
        read_payload(self.payload.as_bytes())
    }

    /// Payload of `VDUSE_UPDATE_IOTLB` with API version 0.
    pub fn iova(&self) -> VduseIovaRange {
        read_payload(self.payload.as_bytes())
    }

    /// Payload of `VDUSE_UPDATE_IOTLB` with API version >= 1.
    pub fn iova_v2(&self) -> VduseIovaRangeV2 {
        read_payload(self.payload.as_bytes())
    }

    /// Payload of `VDUSE_SET_VQ_GROUP_ASID`.
    pub fn vq_group_asid(&self) -> VduseVqGroupAsid {
        read_payload(self.payload.as_bytes())
    }

    /// Payload of `VDUSE_SET_VQ_READY`.
    pub fn vq_ready(&self) -> VduseVqReady {
        read_payload(self.payload.as_bytes())
    }
}

impl VduseDevResponse {
    /// A response with no payload.
    pub fn new(request_id: u32, result: u32) -> Self {
        Self {
            request_id,
            result,
            reserved: [0; 4],
            payload: [0; 32],
        }
    }

    /// A successful response to `VDUSE_GET_VQ_STATE`.
    pub fn with_vq_state(request_id: u32, state: VduseVqState) -> Self {
        let mut response = Self::new(request_id, VDUSE_REQ_RESULT_OK);
        let bytes = state.as_bytes();
        response.payload.as_mut_bytes()[..bytes.len()].copy_from_slice(bytes);
        response
    }

    /// The `vq_state` member of the payload union.
    pub fn vq_state(&self) -> VduseVqState {
        read_payload(self.payload.as_bytes())
    }
}

/// Layouts and ioctl numbers, checked against what gcc reports for Linux 7.3's header.
mod layout {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    macro_rules! assert_layout {
        ($t:ty, size $size:expr, align $align:expr $(, $field:ident @ $off:expr)* $(,)?) => {
            const _: () = assert!(size_of::<$t>() == $size);
            const _: () = assert!(align_of::<$t>() == $align);
            $(const _: () = assert!(offset_of!($t, $field) == $off);)*
        };
    }

    assert_layout!(VduseDevConfig, size 336, align 8, vendor_id @ 256, device_id @ 260,
        features @ 264, vq_num @ 272, vq_align @ 276, ngroups @ 280, nas @ 284,
        reserved @ 288, config_size @ 332);
    assert_layout!(VduseIotlbEntry, size 32, align 8, start @ 8, last @ 16, perm @ 24);
    assert_layout!(VduseConfigData, size 8, align 4, length @ 4);
    assert_layout!(VduseVqConfig, size 32, align 4, max_size @ 4, reserved1 @ 6, group @ 8,
        reserved2 @ 12);
    assert_layout!(VduseVqStateSplit, size 2, align 2);
    assert_layout!(VduseVqStatePacked, size 8, align 2, last_avail_idx @ 2,
        last_used_counter @ 4, last_used_idx @ 6);
    assert_layout!(VduseVqGroupAsid, size 8, align 4, asid @ 4);
    assert_layout!(VduseVqInfo, size 48, align 8, num @ 4, desc_addr @ 8, driver_addr @ 16,
        device_addr @ 24, state @ 32, ready @ 40);
    assert_layout!(VduseVqEventfd, size 8, align 4, fd @ 4);
    assert_layout!(VduseIovaUmem, size 48, align 8, iova @ 8, size @ 16, asid @ 24,
        reserved @ 28);
    assert_layout!(VduseIovaInfo, size 48, align 8, capability @ 16, asid @ 24);
    assert_layout!(VduseIotlbEntryV2, size 80, align 8, perm @ 24, padding @ 25, asid @ 32,
        reserved @ 36);
    assert_layout!(VduseVqState, size 12, align 4, state @ 4);
    assert_layout!(VduseDevStatus, size 1, align 1);
    assert_layout!(VduseIovaRange, size 16, align 8, last @ 8);
    assert_layout!(VduseIovaRangeV2, size 24, align 8, asid @ 16);
    assert_layout!(VduseVqReady, size 8, align 4, ready @ 4);
    assert_layout!(VduseDevRequest, size 152, align 8, request_id @ 4, payload @ 24);
    assert_layout!(VduseDevResponse, size 152, align 4, result @ 4, payload @ 24);

    const _: () = assert!(VDUSE_GET_API_VERSION == 0x8008_8100);
    const _: () = assert!(VDUSE_SET_API_VERSION == 0x4008_8101);
    const _: () = assert!(VDUSE_CREATE_DEV == 0x4150_8102);
    const _: () = assert!(VDUSE_DESTROY_DEV == 0x4100_8103);
    const _: () = assert!(VDUSE_GET_FEATURES == 0x8008_8104);
    const _: () = assert!(VDUSE_SET_FEATURES == 0x4008_8105);
    const _: () = assert!(VDUSE_IOTLB_GET_FD == 0xc020_8110);
    const _: () = assert!(VDUSE_DEV_GET_FEATURES == 0x8008_8111);
    const _: () = assert!(VDUSE_DEV_SET_CONFIG == 0x4008_8112);
    const _: () = assert!(VDUSE_DEV_INJECT_CONFIG_IRQ == 0x0000_8113);
    const _: () = assert!(VDUSE_VQ_SETUP == 0x4020_8114);
    const _: () = assert!(VDUSE_VQ_GET_INFO == 0xc030_8115);
    const _: () = assert!(VDUSE_VQ_SETUP_KICKFD == 0x4008_8116);
    const _: () = assert!(VDUSE_VQ_INJECT_IRQ == 0x4004_8117);
    const _: () = assert!(VDUSE_IOTLB_REG_UMEM == 0x4030_8118);
    const _: () = assert!(VDUSE_IOTLB_DEREG_UMEM == 0x4030_8119);
    const _: () = assert!(VDUSE_IOTLB_GET_INFO == 0xc030_811a);
    const _: () = assert!(VDUSE_IOTLB_GET_FD2 == 0xc050_811b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_payload_accessors_read_the_union_at_offset_24() {
        let mut bytes = [0u8; 152];
        bytes[0..4].copy_from_slice(&VDUSE_SET_VQ_READY.to_ne_bytes());
        bytes[4..8].copy_from_slice(&7u32.to_ne_bytes());
        bytes[24..28].copy_from_slice(&3u32.to_ne_bytes());
        bytes[28..32].copy_from_slice(&1u32.to_ne_bytes());
        let request = VduseDevRequest::read_from_bytes(&bytes).unwrap();
        assert_eq!(request.type_, VDUSE_SET_VQ_READY);
        assert_eq!(request.request_id, 7);
        assert_eq!(request.vq_ready(), VduseVqReady { num: 3, ready: 1 });
        assert_eq!(
            request.vq_group_asid(),
            VduseVqGroupAsid { group: 3, asid: 1 }
        );
        assert_eq!(request.vq_state().index, 3);
    }

    #[test]
    fn iova_v2_payload_round_trips() {
        let range = VduseIovaRangeV2 {
            start: 0x1000,
            last: 0x1fff,
            asid: 1,
            padding: 0,
        };
        let request = VduseDevRequest::with_payload(VDUSE_UPDATE_IOTLB, 9, &range);
        assert_eq!(request.iova_v2(), range);
        assert_eq!(
            request.iova(),
            VduseIovaRange {
                start: 0x1000,
                last: 0x1fff
            }
        );
    }

    #[test]
    fn vq_state_response_puts_split_state_after_the_index() {
        let state = VduseVqState {
            index: 2,
            state: VduseVqStateUnion::from_split(VduseVqStateSplit {
                avail_index: 0x1234,
            }),
        };
        let response = VduseDevResponse::with_vq_state(5, state);
        let bytes = response.as_bytes();
        assert_eq!(&bytes[24..28], &2u32.to_ne_bytes());
        assert_eq!(&bytes[28..30], &0x1234u16.to_ne_bytes());
        assert_eq!(response.vq_state().state.split().avail_index, 0x1234);
    }
}
