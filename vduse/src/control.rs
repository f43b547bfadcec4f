//! The control device `/dev/vduse/control`: API version and VDUSE feature negotiation,
//! creating and destroying devices.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{Getter, IntegerSetter, Setter, ioctl};

use crate::device_config::{DeviceConfig, DeviceType, name_buffer};
use crate::error::{Error, Result};
use crate::uapi::{self, VDUSE_API_VERSION_1, VDUSE_NAME_MAX};

/// Where the kernel puts the control device.
pub const CONTROL_PATH: &str = "/dev/vduse/control";

/// The newest VDUSE API version this crate speaks.
pub const MAX_API_VERSION: u64 = VDUSE_API_VERSION_1;

/// VDUSE feature bits this crate knows, with their names.
pub const KNOWN_FEATURES: [(u32, &str); 2] = [
    (uapi::VDUSE_F_QUEUE_READY, "queue-ready"),
    (uapi::VDUSE_F_SUSPEND, "suspend"),
];

/// The name of a VDUSE feature bit: its known name, or `bit N`.
pub fn feature_name(bit: u32) -> String {
    KNOWN_FEATURES
        .iter()
        .find(|(b, _)| *b == bit)
        .map_or_else(|| format!("bit {bit}"), |(_, name)| (*name).to_owned())
}

/// The names of every bit set in `features`, unknown bits as `bit N`, lowest first.
pub fn feature_names(features: u64) -> Vec<String> {
    (0..64)
        .filter(|bit| features & (1 << bit) != 0)
        .map(feature_name)
        .collect()
}

/// The raw ioctls of the control device, one method each, so that tests can replace the
/// kernel with a fake that behaves like a given kernel version.
pub trait ControlIoctls: std::fmt::Debug {
    /// `VDUSE_GET_API_VERSION`.
    fn get_api_version(&mut self) -> Result<u64, Errno>;
    /// `VDUSE_SET_API_VERSION`.
    fn set_api_version(&mut self, version: u64) -> Result<(), Errno>;
    /// `VDUSE_GET_FEATURES`.
    fn get_features(&mut self) -> Result<u64, Errno>;
    /// `VDUSE_SET_FEATURES`.
    fn set_features(&mut self, features: u64) -> Result<(), Errno>;
    /// `VDUSE_CREATE_DEV` with `struct vduse_dev_config` followed by the config space.
    fn create_dev(&mut self, config: &[u8]) -> Result<(), Errno>;
    /// `VDUSE_DESTROY_DEV`.
    fn destroy_dev(&mut self, name: &[u8; VDUSE_NAME_MAX]) -> Result<(), Errno>;
}

impl<T: ControlIoctls + ?Sized> ControlIoctls for Box<T> {
    fn get_api_version(&mut self) -> Result<u64, Errno> {
        (**self).get_api_version()
    }
    fn set_api_version(&mut self, version: u64) -> Result<(), Errno> {
        (**self).set_api_version(version)
    }
    fn get_features(&mut self) -> Result<u64, Errno> {
        (**self).get_features()
    }
    fn set_features(&mut self, features: u64) -> Result<(), Errno> {
        (**self).set_features(features)
    }
    fn create_dev(&mut self, config: &[u8]) -> Result<(), Errno> {
        (**self).create_dev(config)
    }
    fn destroy_dev(&mut self, name: &[u8; VDUSE_NAME_MAX]) -> Result<(), Errno> {
        (**self).destroy_dev(name)
    }
}

/// An open `/dev/vduse/control` file descriptor.
#[derive(Debug)]
pub struct ControlFd {
    fd: OwnedFd,
}

impl ControlFd {
    /// Opens the control device read-write and close-on-exec.
    pub fn open(path: &Path) -> Result<Self> {
        rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .map(|fd| Self { fd })
            .map_err(|errno| open_error(path, errno))
    }
}

impl AsFd for ControlFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Turns an open(2) failure on a VDUSE node into the error that says what to do.
pub(crate) fn open_error(path: &Path, errno: Errno) -> Error {
    let path = path.to_owned();
    match errno {
        Errno::NOENT | Errno::NXIO | Errno::NODEV => match crate::host::vduse_module_state() {
            crate::host::ModuleState::Loaded => Error::NodeMissing { path },
            crate::host::ModuleState::Available => Error::NotLoaded { path },
            crate::host::ModuleState::Absent => Error::NoVduseInKernel { path },
        },
        Errno::ACCESS | Errno::PERM => Error::PermissionDenied { path },
        errno => Error::Kernel {
            op: format!("opening {}", path.display()),
            errno,
        },
    }
}

impl ControlIoctls for ControlFd {
    fn get_api_version(&mut self) -> Result<u64, Errno> {
        // SAFETY: VDUSE_GET_API_VERSION writes one u64, which Getter provides.
        unsafe {
            ioctl(
                &self.fd,
                Getter::<{ uapi::VDUSE_GET_API_VERSION }, u64>::new(),
            )
        }
    }

    fn set_api_version(&mut self, version: u64) -> Result<(), Errno> {
        // SAFETY: VDUSE_SET_API_VERSION reads one u64, which Setter points to.
        unsafe {
            ioctl(
                &self.fd,
                Setter::<{ uapi::VDUSE_SET_API_VERSION }, u64>::new(version),
            )
        }
    }

    fn get_features(&mut self) -> Result<u64, Errno> {
        // SAFETY: VDUSE_GET_FEATURES writes one u64, which Getter provides.
        unsafe { ioctl(&self.fd, Getter::<{ uapi::VDUSE_GET_FEATURES }, u64>::new()) }
    }

    fn set_features(&mut self, features: u64) -> Result<(), Errno> {
        // SAFETY: VDUSE_SET_FEATURES reads one u64, which Setter points to.
        unsafe {
            ioctl(
                &self.fd,
                Setter::<{ uapi::VDUSE_SET_FEATURES }, u64>::new(features),
            )
        }
    }

    fn create_dev(&mut self, config: &[u8]) -> Result<(), Errno> {
        assert!(
            config.len() >= size_of::<uapi::VduseDevConfig>(),
            "config header missing"
        );
        let pointer = config.as_ptr().cast_mut().cast();
        // SAFETY: the kernel reads the header and then `config_size` bytes after it; the
        // buffer holds both (DeviceConfig::to_bytes) and outlives the call. The kernel only
        // reads through the pointer.
        unsafe {
            ioctl(
                &self.fd,
                IntegerSetter::<{ uapi::VDUSE_CREATE_DEV }>::new_pointer(pointer),
            )
        }
        .map(drop)
    }

    fn destroy_dev(&mut self, name: &[u8; VDUSE_NAME_MAX]) -> Result<(), Errno> {
        // SAFETY: VDUSE_DESTROY_DEV reads VDUSE_NAME_MAX bytes, which Setter points to.
        unsafe {
            ioctl(
                &self.fd,
                Setter::<{ uapi::VDUSE_DESTROY_DEV }, [u8; VDUSE_NAME_MAX]>::new(*name),
            )
        }
    }
}

/// The control device, with the API version and VDUSE features this handle uses.
///
/// Opening asks the kernel for its API version (`VDUSE_GET_API_VERSION` on a fresh fd
/// returns the kernel's maximum and pins the fd to it), then settles on the newest version
/// both sides know. Devices created through this handle use that version and the VDUSE
/// features set with [`Control::set_features`].
#[derive(Debug)]
pub struct Control<D: ControlIoctls = ControlFd> {
    dev: D,
    path: PathBuf,
    kernel_api_version: u64,
    api_version: u64,
    kernel_features: u64,
    features: u64,
}

impl Control<ControlFd> {
    /// Opens `/dev/vduse/control` and negotiates the API version.
    pub fn open() -> Result<Self> {
        Self::open_path(Path::new(CONTROL_PATH))
    }

    /// Opens the control device at `path` and negotiates the API version.
    pub fn open_path(path: &Path) -> Result<Self> {
        Self::with_ioctls(ControlFd::open(path)?, path)
    }
}

impl<D: ControlIoctls> Control<D> {
    /// Wraps a freshly opened control device (or a fake) and negotiates the API version.
    pub fn with_ioctls(mut dev: D, path: &Path) -> Result<Self> {
        let op = |what: &str| format!("{what} on {}", path.display());
        let kernel_api_version = dev.get_api_version().map_err(|errno| Error::Kernel {
            op: op("VDUSE_GET_API_VERSION"),
            errno,
        })?;
        let api_version = kernel_api_version.min(MAX_API_VERSION);
        if api_version != kernel_api_version {
            dev.set_api_version(api_version)
                .map_err(|errno| Error::Kernel {
                    op: op("VDUSE_SET_API_VERSION"),
                    errno,
                })?;
        }
        // The kernel's convention: an ioctl it does not know answers EINVAL, so a kernel
        // from before VDUSE features answers GET_FEATURES with EINVAL.
        let kernel_features = match dev.get_features() {
            Ok(features) => features,
            Err(Errno::INVAL) => 0,
            Err(errno) => {
                return Err(Error::Kernel {
                    op: op("VDUSE_GET_FEATURES"),
                    errno,
                });
            }
        };
        Ok(Self {
            dev,
            path: path.to_owned(),
            kernel_api_version,
            api_version,
            kernel_features,
            features: 0,
        })
    }

    /// The newest API version the kernel supports.
    pub fn kernel_api_version(&self) -> u64 {
        self.kernel_api_version
    }

    /// The API version devices created through this handle use.
    pub fn api_version(&self) -> u64 {
        self.api_version
    }

    /// Chooses an older API version than the negotiated one.
    pub fn set_api_version(&mut self, version: u64) -> Result<()> {
        if version > self.kernel_api_version || version > MAX_API_VERSION {
            return Err(Error::UnsupportedApiVersion {
                requested: version,
                max: self.kernel_api_version.min(MAX_API_VERSION),
            });
        }
        self.dev
            .set_api_version(version)
            .map_err(|errno| Error::Kernel {
                op: format!("VDUSE_SET_API_VERSION {version}"),
                errno,
            })?;
        self.api_version = version;
        Ok(())
    }

    /// The VDUSE feature bits the kernel supports (0 on kernels without VDUSE features).
    pub fn kernel_features(&self) -> u64 {
        self.kernel_features
    }

    /// The VDUSE feature bits devices created through this handle get.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// Asks for VDUSE features for the devices this handle creates afterwards.
    pub fn set_features(&mut self, features: u64) -> Result<()> {
        if features & !self.kernel_features != 0 {
            return Err(Error::UnsupportedFeatures {
                requested: features,
                supported: self.kernel_features,
            });
        }
        if features == self.features {
            return Ok(());
        }
        self.dev
            .set_features(features)
            .map_err(|errno| Error::Kernel {
                op: format!("VDUSE_SET_FEATURES {features:#x}"),
                errno,
            })?;
        self.features = features;
        Ok(())
    }

    /// Asks for every VDUSE feature in `wanted` that the kernel has; returns what was set.
    pub fn negotiate_features(&mut self, wanted: u64) -> Result<u64> {
        let features = wanted & self.kernel_features;
        self.set_features(features)?;
        Ok(features)
    }

    /// Creates a device. Its node appears as `/dev/vduse/NAME`.
    pub fn create_device(&mut self, config: &DeviceConfig) -> Result<()> {
        config
            .validate(self.api_version)
            .map_err(|source| Error::InvalidConfig {
                name: config.name.clone(),
                source,
            })?;
        let name = config.name.clone();
        match self.dev.create_dev(&config.to_bytes(self.api_version)) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => Err(Error::NameInUse { name }),
            Err(Errno::PERM) if config.device_type == DeviceType::Net => {
                Err(Error::NetNeedsCapNetAdmin { name })
            }
            Err(Errno::PERM | Errno::ACCESS) => Err(Error::NotPermitted {
                op: format!("creating VDUSE device {name:?}"),
            }),
            // Every rule but the kernel's list of device types was checked above.
            Err(Errno::INVAL) => Err(Error::DeviceTypeRejected {
                name,
                device_type: config.device_type,
                hint: match config.device_type {
                    DeviceType::Fs => "; fs devices need Linux 7.2 or later",
                    _ => "",
                },
            }),
            Err(errno) => Err(Error::Kernel {
                op: format!("creating VDUSE device {name:?}"),
                errno,
            }),
        }
    }

    /// Destroys a device. The kernel refuses while its node is open or it is on the vdpa bus.
    pub fn destroy_device(&mut self, name: &str) -> Result<()> {
        let buffer = name_buffer(name).map_err(|source| Error::InvalidConfig {
            name: name.to_owned(),
            source,
        })?;
        match self.dev.destroy_dev(&buffer) {
            Ok(()) => Ok(()),
            Err(Errno::INVAL) => Err(Error::NoSuchDevice {
                name: name.to_owned(),
            }),
            Err(Errno::BUSY) => Err(Error::DeviceBusy {
                name: name.to_owned(),
            }),
            Err(Errno::PERM | Errno::ACCESS) => Err(Error::NotPermitted {
                op: format!("destroying VDUSE device {name:?}"),
            }),
            Err(errno) => Err(Error::Kernel {
                op: format!("destroying VDUSE device {name:?}"),
                errno,
            }),
        }
    }

    /// The path this handle was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying ioctls (the fd, or a fake).
    pub fn ioctls(&self) -> &D {
        &self.dev
    }

    /// The underlying ioctls, mutably (a fake's state, in tests).
    pub fn ioctls_mut(&mut self) -> &mut D {
        &mut self.dev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_names_keep_unknown_bits() {
        assert_eq!(feature_names(0), Vec::<String>::new());
        assert_eq!(feature_names(0x3), ["queue-ready", "suspend"]);
        assert_eq!(feature_names(0x1_0000_0006), ["suspend", "bit 2", "bit 32"]);
        assert_eq!(feature_names(1 << 63), ["bit 63"]);
    }
}
