//! Prints the vdpa bus's management devices and devices, like
//! `vdpa mgmtdev show` and `vdpa dev show` from iproute2.
//!
//! ```text
//! cargo run -p vduse --example vdpa-list
//! ```
//!
//! Exits 1 with the error on stderr when the bus cannot be read (for example
//! when the `vdpa` module is not loaded).

use std::process::ExitCode;

use vduse::vdpa::{VdpaBus, VdpaError, virtio_device_name};

fn class_name(device_id: u32) -> String {
    virtio_device_name(device_id).map_or_else(|| format!("id{device_id}"), str::to_owned)
}

fn run() -> Result<(), VdpaError> {
    let mut bus = VdpaBus::open()?;
    println!("vdpa generic netlink family id {}", bus.family_id());

    let management_devices = bus.management_devices()?;
    println!("management devices: {}", management_devices.len());
    for m in &management_devices {
        let classes: Vec<String> = m
            .supported_device_ids()
            .into_iter()
            .map(class_name)
            .collect();
        print!("  {}: supported_classes {}", m.handle(), classes.join(" "));
        if let Some(vqs) = m.max_supported_vqs {
            print!(" max_supported_vqs {vqs}");
        }
        if let Some(features) = m.supported_features {
            print!(" dev_features {features:#x}");
        }
        println!();
    }

    let devices = bus.devices()?;
    println!("devices: {}", devices.len());
    for d in &devices {
        let mgmt = match &d.management_bus {
            Some(bus) => format!("{bus}/{}", d.management_device),
            None => d.management_device.clone(),
        };
        print!(
            "  {}: type {} mgmtdev {} vendor_id {} max_vqs {} max_vq_size {}",
            d.name,
            class_name(d.device_id),
            mgmt,
            d.vendor_id,
            d.max_vqs,
            d.max_vq_size
        );
        if let Some(min) = d.min_vq_size {
            print!(" min_vq_size {min}");
        }
        println!();
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vdpa-list: error: {e}");
            ExitCode::FAILURE
        }
    }
}
