//! [`bind_driver`]: choosing the vdpa bus driver of an attached device through sysfs,
//! which netlink does not offer.

use super::error::VdpaError;

/// The vdpa bus drivers: `virtio_vdpa` hands a device to this host's own virtio drivers
/// (`/dev/vdX`, an `ethX`, a virtiofs tag); `vhost_vdpa` hands it to VMs and user programs
/// through `/dev/vhost-vdpa-N`.
pub const VDPA_DRIVERS: [&str; 2] = ["virtio_vdpa", "vhost_vdpa"];

/// Where the vdpa bus lives in sysfs.
const SYS_BUS_VDPA: &str = "/sys/bus/vdpa";

/// Makes the vdpa bus driver `driver` serve the attached device `name`, whichever driver the
/// kernel picked when it was added: sets the device's `driver_override`, unbinds another
/// driver, and asks the bus to probe the device again.
///
/// Unbinding a driver runs its remove, which sends the device requests: call this from a
/// thread other than the one answering them.
pub fn bind_driver(name: &str, driver: &str) -> Result<(), VdpaError> {
    let bus = std::path::Path::new(SYS_BUS_VDPA);
    let device = bus.join("devices").join(name);
    let io = |what: String| move |source: std::io::Error| VdpaError::Sysfs { what, source };
    if !bus.join("drivers").join(driver).exists() {
        return Err(VdpaError::DriverNotLoaded(driver.to_owned()));
    }
    let bound = |device: &std::path::Path| {
        std::fs::read_link(device.join("driver"))
            .ok()
            .and_then(|link| link.file_name().map(|n| n.to_string_lossy().into_owned()))
    };
    std::fs::write(device.join("driver_override"), driver)
        .map_err(io(format!("setting driver_override of vdpa device {name}")))?;
    match bound(&device) {
        Some(current) if current == driver => return Ok(()),
        Some(current) => std::fs::write(device.join("driver/unbind"), name)
            .map_err(io(format!("unbinding vdpa device {name} from {current}")))?,
        None => {}
    }
    std::fs::write(bus.join("drivers_probe"), name)
        .map_err(io(format!("probing vdpa device {name} for {driver}")))?;
    match bound(&device) {
        Some(current) if current == driver => Ok(()),
        other => Err(VdpaError::NotBound {
            name: name.to_owned(),
            driver: driver.to_owned(),
            bound: other.unwrap_or_else(|| "no driver".to_owned()),
        }),
    }
}
