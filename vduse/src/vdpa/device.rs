//! What the vdpa bus lists: management devices, vdpa devices, and virtio device names.

use serde::Serialize;

/// A management device on the vdpa bus: a parent that can create vdpa devices
/// (`vduse` for VDUSE, `vdpasim_net` for the simulator, a PCI function for
/// hardware).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagementDevice {
    /// Bus of the parent device (`VDPA_ATTR_MGMTDEV_BUS_NAME`), e.g. `pci`;
    /// `None` for bus-less parents such as `vduse`.
    pub bus_name: Option<String>,
    /// Name of the parent device (`VDPA_ATTR_MGMTDEV_DEV_NAME`), e.g. `vduse`.
    pub name: String,
    /// Bitmap of the virtio device ids it can create, bit N for id N
    /// (`VDPA_ATTR_MGMTDEV_SUPPORTED_CLASSES`).
    pub supported_classes: u64,
    /// Most virtqueues one device may have (`VDPA_ATTR_DEV_MGMTDEV_MAX_VQS`),
    /// when the kernel sends it. 0 means the management device set no limit:
    /// `vduse` reports 0 (Linux 7.3), the VDUSE device's `vq_num` decides.
    pub max_supported_vqs: Option<u32>,
    /// Virtio features it can offer (`VDPA_ATTR_DEV_SUPPORTED_FEATURES`),
    /// when the kernel sends it. `vduse` reports 0: each VDUSE device states
    /// its own features at `VDUSE_CREATE_DEV`.
    pub supported_features: Option<u64>,
}

impl ManagementDevice {
    /// Whether it advertises the virtio device id `device_id` (1 net, 2 block...).
    pub fn supports(&self, device_id: u32) -> bool {
        device_id < 64 && self.supported_classes & (1 << device_id) != 0
    }

    /// The virtio device ids in [`Self::supported_classes`], ascending.
    pub fn supported_device_ids(&self) -> Vec<u32> {
        (0..64).filter(|&id| self.supports(id)).collect()
    }

    /// The handle `vdpa mgmtdev show` prints: `bus/name`, or `name` without a bus.
    pub fn handle(&self) -> String {
        match &self.bus_name {
            Some(bus) => format!("{bus}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A device on the vdpa bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VdpaDevice {
    /// Device name (`VDPA_ATTR_DEV_NAME`); for VDUSE, the VDUSE device's name.
    pub name: String,
    /// Name of the management device that created it (`VDPA_ATTR_MGMTDEV_DEV_NAME`).
    pub management_device: String,
    /// Bus of that management device, if it has one (`VDPA_ATTR_MGMTDEV_BUS_NAME`).
    pub management_bus: Option<String>,
    /// Virtio device id (`VDPA_ATTR_DEV_ID`): 1 net, 2 block, 26 fs...
    pub device_id: u32,
    /// Virtio vendor id (`VDPA_ATTR_DEV_VENDOR_ID`).
    pub vendor_id: u32,
    /// Number of virtqueues (`VDPA_ATTR_DEV_MAX_VQS`).
    pub max_vqs: u32,
    /// Largest virtqueue size (`VDPA_ATTR_DEV_MAX_VQ_SIZE`).
    pub max_vq_size: u16,
    /// Smallest virtqueue size (`VDPA_ATTR_DEV_MIN_VQ_SIZE`), when the kernel says.
    pub min_vq_size: Option<u16>,
}

/// The name of a virtio device id, as `vdpa` prints it, for the common ones.
pub fn virtio_device_name(device_id: u32) -> Option<&'static str> {
    Some(match device_id {
        1 => "net",
        2 => "block",
        3 => "console",
        4 => "rng",
        5 => "balloon",
        8 => "scsi",
        9 => "9p",
        16 => "gpu",
        18 => "input",
        19 => "vsock",
        20 => "crypto",
        23 => "iommu",
        24 => "mem",
        25 => "sound",
        26 => "fs",
        27 => "pmem",
        _ => return None,
    })
}
