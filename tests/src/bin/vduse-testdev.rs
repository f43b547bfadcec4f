//! `vduse-testdev`: makes VDUSE devices in the states the real-kernel tests need to observe,
//! without a real device server.
//!
//! ```text
//! vduse-testdev create NAME [--type block|net|fs] [--attach] [--hold]
//! vduse-testdev attach NAME
//! vduse-testdev remove NAME
//! ```
//!
//! `create` makes the device and sets up its queues; `--attach` adds it to the vdpa bus;
//! `--hold` keeps the node open (the device is "served"), prints `READY` and answers every
//! request with OK until SIGTERM/SIGINT, then detaches it and exits. Without
//! `--hold` the command exits leaving the device as it is: attached and unserved is the
//! orphan the probe must flag. `attach` adds an existing device to the vdpa bus; `remove`
//! detaches (if attached) and destroys.
//!
//! Only for guests where no vdpa driver would start I/O on the device: it serves no queue.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vduse::uapi::{self, VduseDevResponse, VduseVqState};
use vduse::vdpa::{VDUSE_MANAGEMENT_DEVICE, VdpaBus};
use vduse::{Control, DeviceConfig, DeviceFd, DeviceType};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("create") if args.len() >= 2 => create(&args[1], &args[2..]),
        Some("attach") if args.len() == 2 => attach_device(&args[1]),
        Some("remove") if args.len() == 2 => remove(&args[1]),
        _ => Err(
            "usage: vduse-testdev create NAME [--type T] [--attach] [--hold] | attach NAME | remove NAME"
                .to_owned(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("vduse-testdev: error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn create(name: &str, options: &[String]) -> Result<(), String> {
    let mut device_type = DeviceType::Block;
    let (mut attach, mut hold) = (false, false);
    let mut options = options.iter();
    while let Some(option) = options.next() {
        match option.as_str() {
            "--attach" => attach = true,
            "--hold" => hold = true,
            "--type" => {
                let value = options.next().ok_or("--type needs a value")?;
                device_type =
                    DeviceType::from_name(value).ok_or(format!("unknown type {value}"))?;
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).map_err(|e| e.to_string())?;
    }

    let mut control = Control::open().map_err(|e| e.to_string())?;
    let vq_num = if device_type == DeviceType::Block {
        1
    } else {
        2
    };
    let mut config = DeviceConfig::new(name, device_type, vq_num);
    config.config = vec![0; 64];
    control.create_device(&config).map_err(|e| e.to_string())?;
    let device = DeviceFd::open(name).map_err(|e| e.to_string())?;
    for index in 0..vq_num {
        device.setup_vq(index, 256, 0).map_err(|e| e.to_string())?;
    }
    if !hold {
        return if attach { attach_device(name) } else { Ok(()) };
    }

    // Answer requests from a thread of their own, started before attaching: attaching runs
    // the vdpa driver's probe, which may send requests and waits for their answers.
    std::thread::spawn(move || {
        while let Ok(request) = device.read_request() {
            let response = if request.type_ == uapi::VDUSE_GET_VQ_STATE {
                let state = VduseVqState {
                    index: request.vq_state().index,
                    ..Default::default()
                };
                VduseDevResponse::with_vq_state(request.request_id, state)
            } else {
                VduseDevResponse::new(request.request_id, uapi::VDUSE_REQ_RESULT_OK)
            };
            if device.write_response(&response).is_err() {
                return;
            }
        }
    });
    if attach {
        attach_device(name)?;
    }
    println!("READY");
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if attach {
        let mut bus = VdpaBus::open().map_err(|e| e.to_string())?;
        bus.remove_device(name).map_err(|e| e.to_string())?;
    }
    // The answering thread still holds the node; exiting closes it, then `remove` can
    // destroy the device.
    Ok(())
}

fn attach_device(name: &str) -> Result<(), String> {
    let mut bus = VdpaBus::open().map_err(|e| e.to_string())?;
    bus.add_device(name, VDUSE_MANAGEMENT_DEVICE)
        .map_err(|e| e.to_string())
}

fn remove(name: &str) -> Result<(), String> {
    let mut bus = VdpaBus::open().map_err(|e| e.to_string())?;
    if bus.device(name).map_err(|e| e.to_string())?.is_some() {
        bus.remove_device(name).map_err(|e| e.to_string())?;
    }
    let mut control = Control::open().map_err(|e| e.to_string())?;
    control.destroy_device(name).map_err(|e| e.to_string())
}
