//! What `VDUSE_CREATE_DEV` takes, checked against the kernel's rules before it is sent.
//!
//! The kernel answers every broken rule with the same EINVAL. Checking the rules here first
//! lets the error say which rule was broken and how to fix it.

use std::fmt;

use virtio_bindings::{virtio_blk, virtio_config, virtio_ids, virtio_net};
use zerocopy::IntoBytes;

use crate::uapi::{self, VDUSE_API_VERSION_1, VDUSE_NAME_MAX, VduseDevConfig};

/// `VIRTIO_F_VERSION_1` as a feature mask.
pub const VIRTIO_F_VERSION_1: u64 = 1 << virtio_config::VIRTIO_F_VERSION_1;
/// `VIRTIO_F_ACCESS_PLATFORM` as a feature mask; every VDUSE device must offer it.
pub const VIRTIO_F_ACCESS_PLATFORM: u64 = 1 << virtio_config::VIRTIO_F_ACCESS_PLATFORM;
/// `VIRTIO_BLK_F_CONFIG_WCE`, which the kernel refuses for VDUSE block devices.
const VIRTIO_BLK_F_CONFIG_WCE: u64 = 1 << virtio_blk::VIRTIO_BLK_F_CONFIG_WCE;
/// `VIRTIO_NET_F_CTRL_VQ`, which the kernel refuses for VDUSE net devices.
const VIRTIO_NET_F_CTRL_VQ: u64 = 1 << virtio_net::VIRTIO_NET_F_CTRL_VQ;

/// Largest value the kernel accepts for `ngroups` and `nas` (`VDUSE_DEV_MAX_GROUPS`/`_AS`).
pub const MAX_GROUPS: u32 = 0xffff;
/// Smallest `vq_align` the kernel accepts (`VRING_USED_ALIGN_SIZE`).
pub const MIN_VQ_ALIGN: u32 = 4;
/// Largest `vq_num` the kernel accepts.
pub const MAX_VQ_NUM: u32 = 0xffff;

/// The virtio device types some kernel's VDUSE accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceType {
    /// virtio-net (device id 1); needs CAP_NET_ADMIN.
    Net,
    /// virtio-blk (device id 2).
    Block,
    /// virtio-fs (device id 26); Linux 7.2 and later.
    Fs,
}

impl DeviceType {
    /// Every type, in the order tools list them.
    pub const ALL: [DeviceType; 3] = [DeviceType::Block, DeviceType::Net, DeviceType::Fs];

    /// The virtio device id.
    pub fn virtio_id(self) -> u32 {
        match self {
            DeviceType::Net => virtio_ids::VIRTIO_ID_NET,
            DeviceType::Block => virtio_ids::VIRTIO_ID_BLOCK,
            DeviceType::Fs => virtio_ids::VIRTIO_ID_FS,
        }
    }

    /// The type with this virtio device id, if VDUSE knows it.
    pub fn from_virtio_id(id: u32) -> Option<Self> {
        DeviceType::ALL.into_iter().find(|t| t.virtio_id() == id)
    }

    /// Short lowercase name: `block`, `net`, `fs`.
    pub fn name(self) -> &'static str {
        match self {
            DeviceType::Net => "net",
            DeviceType::Block => "block",
            DeviceType::Fs => "fs",
        }
    }

    /// The type with this short name.
    pub fn from_name(name: &str) -> Option<Self> {
        DeviceType::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rule of `VDUSE_CREATE_DEV` that a configuration breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The name is empty.
    #[error("the device name is empty: give the device a name")]
    EmptyName,
    /// The name does not fit the kernel's buffer.
    #[error(
        "the device name is {len} bytes long; the kernel takes at most {} bytes",
        VDUSE_NAME_MAX - 1
    )]
    NameTooLong {
        /// Length of the name in bytes.
        len: usize,
    },
    /// The name cannot be a file name under `/dev/vduse/`.
    #[error(
        "the device name {name:?} cannot name a node under /dev/vduse/: use letters, digits, \
         '-', '_', '.' or ':' (no '/', spaces or control characters; not '.', '..' or 'control')"
    )]
    BadName {
        /// The rejected name.
        name: String,
    },
    /// `vq_align` is not a power of two in `[4, page size]`.
    #[error(
        "vq_align {vq_align} must be a power of two between {MIN_VQ_ALIGN} and the page size ({page_size})"
    )]
    VqAlign {
        /// The rejected alignment.
        vq_align: u32,
        /// The page size of this machine.
        page_size: usize,
    },
    /// The config space is larger than a page.
    #[error(
        "the config space is {size} bytes; the kernel takes at most one page ({page_size} bytes)"
    )]
    ConfigTooLarge {
        /// Size of the config space.
        size: usize,
        /// The page size of this machine.
        page_size: usize,
    },
    /// Too many virtqueues.
    #[error("{vq_num} virtqueues requested; the kernel takes at most {MAX_VQ_NUM}")]
    TooManyQueues {
        /// The requested number.
        vq_num: u32,
    },
    /// `VIRTIO_F_ACCESS_PLATFORM` is missing.
    #[error(
        "the device must offer VIRTIO_F_ACCESS_PLATFORM (feature bit 33): VDUSE devices work through an IOTLB"
    )]
    MissingAccessPlatform,
    /// A block device offers `VIRTIO_BLK_F_CONFIG_WCE`.
    #[error(
        "a VDUSE block device must not offer VIRTIO_BLK_F_CONFIG_WCE (bit 11): the kernel only allows a read-only config space"
    )]
    BlockConfigWce,
    /// A net device does not offer `VIRTIO_F_VERSION_1`.
    #[error("a VDUSE net device must offer VIRTIO_F_VERSION_1 (feature bit 32)")]
    NetWithoutVersion1,
    /// A net device offers `VIRTIO_NET_F_CTRL_VQ`.
    #[error(
        "a VDUSE net device must not offer VIRTIO_NET_F_CTRL_VQ (bit 17), so it has no control queue and no multiqueue"
    )]
    NetCtrlVq,
    /// Groups or address spaces were given with API version 0.
    #[error(
        "virtqueue groups ({ngroups}) and address spaces ({nas}) need VDUSE API version 1; this control device uses version 0"
    )]
    GroupsNeedV1 {
        /// Requested groups.
        ngroups: u32,
        /// Requested address spaces.
        nas: u32,
    },
    /// Groups or address spaces out of range with API version 1.
    #[error(
        "with VDUSE API version 1 a device needs 1 to {MAX_GROUPS} virtqueue groups and address spaces (got {ngroups} and {nas})"
    )]
    GroupsOutOfRange {
        /// Requested groups.
        ngroups: u32,
        /// Requested address spaces.
        nas: u32,
    },
}

/// Everything `VDUSE_CREATE_DEV` needs, as plain Rust values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Device name: the node becomes `/dev/vduse/NAME`.
    pub name: String,
    /// Virtio vendor id.
    pub vendor_id: u32,
    /// Device type.
    pub device_type: DeviceType,
    /// Virtio features the device offers.
    pub features: u64,
    /// Number of virtqueues.
    pub vq_num: u32,
    /// Alignment of the virtqueues' metadata.
    pub vq_align: u32,
    /// Virtqueue groups and address spaces (API v1). `None` means what the API version
    /// needs: none with version 0, one of each with version 1.
    pub groups: Option<(u32, u32)>,
    /// The device's config space.
    pub config: Vec<u8>,
}

impl DeviceConfig {
    /// A configuration with the features every device of `device_type` must offer, one
    /// page-aligned queue layout and an empty config space.
    pub fn new(name: impl Into<String>, device_type: DeviceType, vq_num: u32) -> Self {
        Self {
            name: name.into(),
            vendor_id: 0,
            device_type,
            features: VIRTIO_F_VERSION_1 | VIRTIO_F_ACCESS_PLATFORM,
            vq_num,
            vq_align: page_size() as u32,
            groups: None,
            config: Vec::new(),
        }
    }

    /// The `(ngroups, nas)` sent for `api_version`.
    pub fn groups_for(&self, api_version: u64) -> (u32, u32) {
        match self.groups {
            Some(groups) => groups,
            None if api_version >= VDUSE_API_VERSION_1 => (1, 1),
            None => (0, 0),
        }
    }

    /// Checks every rule of the kernel's `vduse_validate_config()` that does not depend on
    /// which device types the running kernel accepts.
    pub fn validate(&self, api_version: u64) -> Result<(), ConfigError> {
        validate_name(&self.name)?;
        let page_size = page_size();
        let (ngroups, nas) = self.groups_for(api_version);
        if api_version < VDUSE_API_VERSION_1 && (ngroups != 0 || nas != 0) {
            return Err(ConfigError::GroupsNeedV1 { ngroups, nas });
        }
        if api_version >= VDUSE_API_VERSION_1
            && !((1..=MAX_GROUPS).contains(&ngroups) && (1..=MAX_GROUPS).contains(&nas))
        {
            return Err(ConfigError::GroupsOutOfRange { ngroups, nas });
        }
        if self.vq_align < MIN_VQ_ALIGN
            || !self.vq_align.is_power_of_two()
            || self.vq_align as usize > page_size
        {
            return Err(ConfigError::VqAlign {
                vq_align: self.vq_align,
                page_size,
            });
        }
        if self.config.len() > page_size {
            return Err(ConfigError::ConfigTooLarge {
                size: self.config.len(),
                page_size,
            });
        }
        if self.vq_num > MAX_VQ_NUM {
            return Err(ConfigError::TooManyQueues {
                vq_num: self.vq_num,
            });
        }
        if self.features & VIRTIO_F_ACCESS_PLATFORM == 0 {
            return Err(ConfigError::MissingAccessPlatform);
        }
        match self.device_type {
            DeviceType::Block if self.features & VIRTIO_BLK_F_CONFIG_WCE != 0 => {
                Err(ConfigError::BlockConfigWce)
            }
            DeviceType::Net if self.features & VIRTIO_NET_F_CTRL_VQ != 0 => {
                Err(ConfigError::NetCtrlVq)
            }
            DeviceType::Net if self.features & VIRTIO_F_VERSION_1 == 0 => {
                Err(ConfigError::NetWithoutVersion1)
            }
            _ => Ok(()),
        }
    }

    /// The bytes `VDUSE_CREATE_DEV` reads: `struct vduse_dev_config` followed by the config
    /// space. Call [`DeviceConfig::validate`] first.
    pub fn to_bytes(&self, api_version: u64) -> Vec<u8> {
        let (ngroups, nas) = self.groups_for(api_version);
        let mut header = VduseDevConfig {
            name: [0; VDUSE_NAME_MAX],
            vendor_id: self.vendor_id,
            device_id: self.device_type.virtio_id(),
            features: self.features,
            vq_num: self.vq_num,
            vq_align: self.vq_align,
            ngroups,
            nas,
            reserved: [0; 11],
            config_size: self.config.len() as u32,
        };
        let name = self.name.as_bytes();
        let len = name.len().min(VDUSE_NAME_MAX - 1);
        header.name[..len].copy_from_slice(&name[..len]);
        let mut bytes = Vec::with_capacity(size_of::<VduseDevConfig>() + self.config.len());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&self.config);
        bytes
    }
}

/// Checks that `name` can name a VDUSE device and its node `/dev/vduse/NAME`.
pub fn validate_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::EmptyName);
    }
    if name.len() > VDUSE_NAME_MAX - 1 {
        return Err(ConfigError::NameTooLong { len: name.len() });
    }
    let bad_char = |c: char| c == '/' || c.is_whitespace() || c.is_control();
    if name.chars().any(bad_char) || matches!(name, "." | ".." | "control") {
        return Err(ConfigError::BadName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// The NUL-padded name buffer `VDUSE_DESTROY_DEV` takes.
pub(crate) fn name_buffer(name: &str) -> Result<[u8; VDUSE_NAME_MAX], ConfigError> {
    validate_name(name)?;
    let mut buffer = [0u8; VDUSE_NAME_MAX];
    buffer[..name.len()].copy_from_slice(name.as_bytes());
    Ok(buffer)
}

/// The page size, which bounds `vq_align` and the config space.
pub fn page_size() -> usize {
    rustix::param::page_size()
}

// The config space sizes the device servers use, for reference in tests and the probe.
/// Size of `struct virtio_blk_config`.
pub const VIRTIO_BLK_CONFIG_SIZE: usize = size_of::<virtio_blk::virtio_blk_config>();
/// Size of `struct virtio_net_config`.
pub const VIRTIO_NET_CONFIG_SIZE: usize = size_of::<virtio_net::virtio_net_config>();
/// Size of `struct virtio_fs_config` (`tag[36]` and `num_request_queues`, packed).
pub const VIRTIO_FS_CONFIG_SIZE: usize = 40;

const _: () = assert!(size_of::<uapi::VduseDevConfig>() == 336);

#[cfg(test)]
mod tests {
    use super::*;

    fn block(name: &str) -> DeviceConfig {
        DeviceConfig::new(name, DeviceType::Block, 1)
    }

    #[test]
    fn a_plain_device_passes_on_both_api_versions() {
        for version in [0, 1] {
            block("disk0").validate(version).unwrap();
            DeviceConfig::new("net0", DeviceType::Net, 2)
                .validate(version)
                .unwrap();
            DeviceConfig::new("fs0", DeviceType::Fs, 2)
                .validate(version)
                .unwrap();
        }
    }

    #[test]
    fn groups_follow_the_api_version() {
        let mut config = block("disk0");
        assert_eq!(config.groups_for(0), (0, 0));
        assert_eq!(config.groups_for(1), (1, 1));
        config.groups = Some((1, 1));
        assert_eq!(
            config.validate(0),
            Err(ConfigError::GroupsNeedV1 { ngroups: 1, nas: 1 })
        );
        config.groups = Some((0, 1));
        assert_eq!(
            config.validate(1),
            Err(ConfigError::GroupsOutOfRange { ngroups: 0, nas: 1 })
        );
        config.groups = Some((2, 0x10000));
        assert!(matches!(
            config.validate(1),
            Err(ConfigError::GroupsOutOfRange { .. })
        ));
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(validate_name(""), Err(ConfigError::EmptyName));
        assert_eq!(validate_name(&"a".repeat(255)), Ok(()));
        assert_eq!(
            validate_name(&"a".repeat(256)),
            Err(ConfigError::NameTooLong { len: 256 })
        );
        for bad in ["a/b", "a b", "a\nb", ".", "..", "control", "tab\there"] {
            assert!(
                matches!(validate_name(bad), Err(ConfigError::BadName { .. })),
                "{bad}"
            );
        }
        assert_eq!(validate_name("vduse-blk.0:x_1"), Ok(()));
    }

    #[test]
    fn every_kernel_rule_is_reported_by_name() {
        let page = page_size();
        let mut config = block("d");
        config.vq_align = 3;
        assert!(matches!(
            config.validate(0),
            Err(ConfigError::VqAlign { vq_align: 3, .. })
        ));
        config.vq_align = 2;
        assert!(matches!(
            config.validate(0),
            Err(ConfigError::VqAlign { .. })
        ));
        config.vq_align = (page * 2) as u32;
        assert!(matches!(
            config.validate(0),
            Err(ConfigError::VqAlign { .. })
        ));
        config.vq_align = 4;
        config.validate(0).unwrap();

        config.config = vec![0; page + 1];
        assert!(matches!(
            config.validate(0),
            Err(ConfigError::ConfigTooLarge { .. })
        ));
        config.config = vec![0; page];
        config.validate(0).unwrap();

        config.vq_num = 0x10000;
        assert_eq!(
            config.validate(0),
            Err(ConfigError::TooManyQueues { vq_num: 0x10000 })
        );
        config.vq_num = 1;

        config.features = VIRTIO_F_VERSION_1;
        assert_eq!(config.validate(0), Err(ConfigError::MissingAccessPlatform));
        config.features = VIRTIO_F_ACCESS_PLATFORM | VIRTIO_BLK_F_CONFIG_WCE;
        assert_eq!(config.validate(0), Err(ConfigError::BlockConfigWce));

        let mut net = DeviceConfig::new("n", DeviceType::Net, 2);
        net.features |= VIRTIO_NET_F_CTRL_VQ;
        assert_eq!(net.validate(1), Err(ConfigError::NetCtrlVq));
        net.features = VIRTIO_F_ACCESS_PLATFORM;
        assert_eq!(net.validate(1), Err(ConfigError::NetWithoutVersion1));
        // The same bits mean other things for other device types.
        let mut fs = DeviceConfig::new("f", DeviceType::Fs, 2);
        fs.features |= VIRTIO_NET_F_CTRL_VQ | VIRTIO_BLK_F_CONFIG_WCE;
        fs.validate(1).unwrap();
    }

    #[test]
    fn bytes_hold_the_header_then_the_config_space() {
        let mut config = DeviceConfig::new("net0", DeviceType::Net, 2);
        config.vendor_id = 0x1af4;
        config.config = vec![0xaa; 12];
        let bytes = config.to_bytes(1);
        assert_eq!(bytes.len(), 336 + 12);
        assert_eq!(&bytes[..5], b"net0\0");
        assert_eq!(&bytes[256..260], &0x1af4u32.to_ne_bytes());
        assert_eq!(&bytes[260..264], &1u32.to_ne_bytes());
        assert_eq!(&bytes[264..272], &config.features.to_ne_bytes());
        assert_eq!(&bytes[272..276], &2u32.to_ne_bytes());
        assert_eq!(&bytes[280..288], &[1, 0, 0, 0, 1, 0, 0, 0]);
        assert!(bytes[288..332].iter().all(|&b| b == 0));
        assert_eq!(&bytes[332..336], &12u32.to_ne_bytes());
        assert!(bytes[336..].iter().all(|&b| b == 0xaa));
        assert_eq!(&config.to_bytes(0)[280..288], &[0; 8]);
    }

    #[test]
    fn device_types_round_trip() {
        for t in DeviceType::ALL {
            assert_eq!(DeviceType::from_virtio_id(t.virtio_id()), Some(t));
            assert_eq!(DeviceType::from_name(t.name()), Some(t));
        }
        assert_eq!(DeviceType::Fs.virtio_id(), 26);
        assert_eq!(DeviceType::from_virtio_id(4), None);
    }
}
