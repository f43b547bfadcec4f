//! A fake control device that answers like the kernels of the support matrix, as recorded in
//! docs/kernel-facts.md, sections 1 to 3 (Debian 6.12, 7.2 and 7.3), for tests of code
//! built on [`crate::Control`].
//!
//! It checks `VDUSE_CREATE_DEV`'s bytes with its own reading of the kernel's rules, so a
//! test through it also checks the encoding.

use std::collections::BTreeSet;

use rustix::io::Errno;
use zerocopy::FromBytes;

use crate::control::ControlIoctls;
use crate::device_config::{VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_VERSION_1};
use crate::uapi::{VDUSE_NAME_MAX, VduseDevConfig};

/// A kernel of the support matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelProfile {
    /// Debian 6.12: API version 0, no VDUSE features, block and net.
    Linux6_12,
    /// Debian 7.2: API version 1, no VDUSE features, block, net and fs.
    Linux7_2,
    /// Debian 7.3: API version 1, features QUEUE_READY and SUSPEND, block, net and fs.
    Linux7_3,
}

impl KernelProfile {
    /// Every profile, oldest first.
    pub const ALL: [KernelProfile; 3] = [
        KernelProfile::Linux6_12,
        KernelProfile::Linux7_2,
        KernelProfile::Linux7_3,
    ];

    /// The kernel's maximum API version.
    pub fn max_api_version(self) -> u64 {
        match self {
            KernelProfile::Linux6_12 => 0,
            KernelProfile::Linux7_2 | KernelProfile::Linux7_3 => 1,
        }
    }

    /// What `VDUSE_GET_FEATURES` answers.
    pub fn features(self) -> Result<u64, Errno> {
        match self {
            KernelProfile::Linux7_3 => Ok(0x3),
            _ => Err(Errno::INVAL),
        }
    }

    /// The virtio device ids `VDUSE_CREATE_DEV` accepts.
    pub fn device_ids(self) -> &'static [u32] {
        match self {
            KernelProfile::Linux6_12 => &[1, 2],
            KernelProfile::Linux7_2 | KernelProfile::Linux7_3 => &[1, 2, 26],
        }
    }

    /// A release string like the Debian kernel's.
    pub fn release(self) -> &'static str {
        match self {
            KernelProfile::Linux6_12 => "6.12.107+deb13-amd64",
            KernelProfile::Linux7_2 => "7.2.13+deb14-amd64",
            KernelProfile::Linux7_3 => "7.3.4+deb13-amd64",
        }
    }
}

/// One open control fd of a fake kernel.
#[derive(Debug, Clone)]
pub struct FakeControl {
    /// The kernel it behaves like.
    pub profile: KernelProfile,
    /// Whether the caller has CAP_NET_ADMIN.
    pub cap_net_admin: bool,
    /// The fd's API version; `None` until asked or set.
    pub api_version: Option<u64>,
    /// The fd's VDUSE features.
    pub features: u64,
    /// Existing devices.
    pub devices: BTreeSet<String>,
    /// Devices whose node is open or which are on the vdpa bus.
    pub busy: BTreeSet<String>,
    /// Every ioctl called, by name, in order.
    pub calls: Vec<String>,
}

impl FakeControl {
    /// A fresh fd of a kernel with `profile`, opened by root.
    pub fn new(profile: KernelProfile) -> Self {
        Self {
            profile,
            cap_net_admin: true,
            api_version: None,
            features: 0,
            devices: BTreeSet::new(),
            busy: BTreeSet::new(),
            calls: Vec::new(),
        }
    }

    fn validate(&self, config: &VduseDevConfig, api_version: u64) -> bool {
        let groups_ok = if api_version >= 1 {
            (1..=0xffff).contains(&config.ngroups) && (1..=0xffff).contains(&config.nas)
        } else {
            config.ngroups == 0 && config.nas == 0
        };
        let features_ok = config.features & VIRTIO_F_ACCESS_PLATFORM != 0
            && match config.device_id {
                2 => config.features & (1 << 11) == 0,
                1 => config.features & (1 << 17) == 0 && config.features & VIRTIO_F_VERSION_1 != 0,
                _ => true,
            };
        config.reserved.iter().all(|&r| r == 0)
            && groups_ok
            && config.vq_align >= 4
            && config.vq_align.is_power_of_two()
            && config.vq_align <= 4096
            && config.config_size <= 4096
            && config.vq_num <= 0xffff
            && config.name[0] != 0
            && self.profile.device_ids().contains(&config.device_id)
            && features_ok
    }
}

fn name_of(bytes: &[u8; VDUSE_NAME_MAX]) -> String {
    let len = bytes
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(VDUSE_NAME_MAX - 1);
    String::from_utf8_lossy(&bytes[..len]).into_owned()
}

impl ControlIoctls for FakeControl {
    fn get_api_version(&mut self) -> Result<u64, Errno> {
        self.calls.push("GET_API_VERSION".into());
        Ok(*self
            .api_version
            .get_or_insert(self.profile.max_api_version()))
    }

    fn set_api_version(&mut self, version: u64) -> Result<(), Errno> {
        self.calls.push(format!("SET_API_VERSION {version}"));
        if version > self.profile.max_api_version() {
            return Err(Errno::INVAL);
        }
        self.api_version = Some(version);
        Ok(())
    }

    fn get_features(&mut self) -> Result<u64, Errno> {
        self.calls.push("GET_FEATURES".into());
        self.profile.features()
    }

    fn set_features(&mut self, features: u64) -> Result<(), Errno> {
        self.calls.push(format!("SET_FEATURES {features:#x}"));
        let supported = self.profile.features()?;
        if features & !supported != 0 {
            return Err(Errno::INVAL);
        }
        self.features = features;
        Ok(())
    }

    fn create_dev(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        let Ok((config, rest)) = VduseDevConfig::read_from_prefix(bytes) else {
            return Err(Errno::FAULT);
        };
        let name = name_of(&config.name);
        self.calls.push(format!("CREATE_DEV {name}"));
        // A fd that never asked for a version creates version 0 devices, and stays there.
        let api_version = *self.api_version.get_or_insert(0);
        if !self.validate(&config, api_version) {
            return Err(Errno::INVAL);
        }
        if rest.len() < config.config_size as usize {
            return Err(Errno::FAULT);
        }
        if config.device_id == 1 && !self.cap_net_admin {
            return Err(Errno::PERM);
        }
        if !self.devices.insert(name) {
            return Err(Errno::EXIST);
        }
        Ok(())
    }

    fn destroy_dev(&mut self, name: &[u8; VDUSE_NAME_MAX]) -> Result<(), Errno> {
        let name = name_of(name);
        self.calls.push(format!("DESTROY_DEV {name}"));
        if !self.devices.contains(&name) {
            return Err(Errno::INVAL);
        }
        if self.busy.contains(&name) {
            return Err(Errno::BUSY);
        }
        self.devices.remove(&name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::device_config::{DeviceConfig, DeviceType};
    use crate::{Control, Error};

    fn control(profile: KernelProfile) -> Control<FakeControl> {
        Control::with_ioctls(FakeControl::new(profile), Path::new("/dev/vduse/control")).unwrap()
    }

    #[test]
    fn version_and_features_follow_each_kernel() {
        let expected = [
            (KernelProfile::Linux6_12, 0, 0),
            (KernelProfile::Linux7_2, 1, 0),
            (KernelProfile::Linux7_3, 1, 3),
        ];
        for (profile, version, features) in expected {
            let control = control(profile);
            assert_eq!(control.kernel_api_version(), version, "{profile:?}");
            assert_eq!(control.api_version(), version, "{profile:?}");
            assert_eq!(control.kernel_features(), features, "{profile:?}");
            // The kernel's maximum is what we speak, so no SET_API_VERSION is needed.
            assert_eq!(control.ioctls().calls, ["GET_API_VERSION", "GET_FEATURES"]);
        }
    }

    #[test]
    fn features_are_only_asked_for_where_the_kernel_has_them() {
        let mut old = control(KernelProfile::Linux7_2);
        assert_eq!(old.negotiate_features(0x3).unwrap(), 0);
        assert!(
            !old.ioctls()
                .calls
                .iter()
                .any(|c| c.starts_with("SET_FEATURES"))
        );
        assert!(matches!(
            old.set_features(0x2),
            Err(Error::UnsupportedFeatures { .. })
        ));

        let mut new = control(KernelProfile::Linux7_3);
        assert_eq!(new.negotiate_features(0x3).unwrap(), 0x3);
        assert_eq!(new.ioctls().features, 0x3);
        assert!(matches!(
            new.set_features(0x4),
            Err(Error::UnsupportedFeatures { .. })
        ));
    }

    #[test]
    fn an_older_api_version_can_be_chosen_but_not_a_newer_one() {
        let mut control = control(KernelProfile::Linux7_3);
        control.set_api_version(0).unwrap();
        assert_eq!(control.ioctls().api_version, Some(0));
        // Version 0 devices carry no groups; the fake kernel would refuse them otherwise.
        control
            .create_device(&DeviceConfig::new("d0", DeviceType::Block, 1))
            .unwrap();
        assert!(matches!(
            control.set_api_version(2),
            Err(Error::UnsupportedApiVersion {
                requested: 2,
                max: 1
            })
        ));
        let mut old = self::control(KernelProfile::Linux6_12);
        assert!(matches!(
            old.set_api_version(1),
            Err(Error::UnsupportedApiVersion { .. })
        ));
    }

    #[test]
    fn device_types_per_kernel() {
        for profile in KernelProfile::ALL {
            let mut control = control(profile);
            for t in DeviceType::ALL {
                let result = control.create_device(&DeviceConfig::new(format!("t-{t}"), t, 2));
                let accepted = profile.device_ids().contains(&t.virtio_id());
                match result {
                    Ok(()) => assert!(accepted, "{profile:?} {t}"),
                    Err(Error::DeviceTypeRejected { device_type, .. }) => {
                        assert!(!accepted, "{profile:?} {t}");
                        assert_eq!(device_type, t);
                    }
                    Err(e) => panic!("{profile:?} {t}: {e}"),
                }
            }
        }
        let err = control(KernelProfile::Linux6_12)
            .create_device(&DeviceConfig::new("fs", DeviceType::Fs, 2))
            .unwrap_err();
        assert!(err.to_string().contains("Linux 7.2"), "{err}");
    }

    #[test]
    fn create_and_destroy_errors_are_typed() {
        let mut control = control(KernelProfile::Linux7_3);
        let block = DeviceConfig::new("disk", DeviceType::Block, 1);
        control.create_device(&block).unwrap();
        assert!(matches!(
            control.create_device(&block),
            Err(Error::NameInUse { .. })
        ));
        control.ioctls_mut().busy.insert("disk".into());
        assert!(matches!(
            control.destroy_device("disk"),
            Err(Error::DeviceBusy { .. })
        ));
        control.ioctls_mut().busy.clear();
        control.destroy_device("disk").unwrap();
        assert!(matches!(
            control.destroy_device("disk"),
            Err(Error::NoSuchDevice { .. })
        ));
        assert!(matches!(
            control.destroy_device("a/b"),
            Err(Error::InvalidConfig { .. })
        ));

        let mut bad = block.clone();
        bad.vq_align = 3;
        let err = control.create_device(&bad).unwrap_err();
        assert!(err.to_string().contains("vq_align 3"), "{err}");

        let mut unprivileged = FakeControl::new(KernelProfile::Linux7_3);
        unprivileged.cap_net_admin = false;
        let mut control = Control::with_ioctls(unprivileged, Path::new("c")).unwrap();
        let err = control
            .create_device(&DeviceConfig::new("n", DeviceType::Net, 2))
            .unwrap_err();
        assert!(matches!(err, Error::NetNeedsCapNetAdmin { .. }));
        assert!(err.to_string().contains("CAP_NET_ADMIN"));
        assert!(err.is_permission());
    }

    #[test]
    fn a_fd_that_never_asked_creates_version_0_devices() {
        // What QEMU's libvduse and DPDK do: never ask, and get version 0.
        let mut fd = FakeControl::new(KernelProfile::Linux7_3);
        let config = DeviceConfig::new("d", DeviceType::Block, 1);
        fd.create_dev(&config.to_bytes(0)).unwrap();
        assert_eq!(fd.api_version, Some(0));
        assert_eq!(fd.create_dev(&config.to_bytes(1)), Err(Errno::INVAL));
    }
}
