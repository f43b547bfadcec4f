//! `vduse-ramblk`: a minimal in-memory virtio-blk device on `vduse::runtime`, for the
//! real-kernel tests of the runtime (the real block server is `vduse-blk`).
//!
//! ```text
//! vduse-ramblk --name NAME [--size-mib N] [--no-attach]
//! ```
//!
//! Serves one queue of up to 256 entries with IN, OUT, FLUSH and GET_ID; prints `READY`
//! (and tells systemd) once the device is served and attached, and removes it on SIGTERM
//! or SIGINT, exiting 0. Log level from `RUST_LOG` (default `info`).

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use vduse::DeviceType;
use vduse::backend::{Backend, Chain, Memory};
use vduse::device_config::VIRTIO_BLK_CONFIG_SIZE;
use vduse::runtime::{Server, ServerOptions, notify_ready};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR,
    VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT,
};

const SECTOR: u64 = 512;
const QUEUE_SIZE: u16 = 256;
/// Segments per request the driver may use (`seg_max`); it adds two for header and status.
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;

/// A disk in memory.
struct RamDisk {
    data: RwLock<Vec<u8>>,
}

impl RamDisk {
    fn new(bytes: u64) -> Self {
        Self {
            data: RwLock::new(vec![0; bytes as usize]),
        }
    }

    fn sectors(&self) -> u64 {
        self.data.read().unwrap_or_else(|e| e.into_inner()).len() as u64 / SECTOR
    }

    /// Serves one request; returns its status and the bytes written before the status.
    fn serve(&self, memory: &Memory, chain: Chain<'_>) -> Result<(u8, u32), ()> {
        let mut reader = chain.clone().reader(memory).map_err(drop)?;
        let mut writer = chain.writer(memory).map_err(drop)?;
        let mut header = [0u8; 16];
        reader.read_exact(&mut header).map_err(drop)?;
        let kind = u32::from_le_bytes(header[0..4].try_into().unwrap());
        let sector = u64::from_le_bytes(header[8..16].try_into().unwrap());
        // The status byte is the last writable byte.
        let data_len = writer.available_bytes().checked_sub(1).ok_or(())?;
        let mut status = writer.split_at(data_len).map_err(drop)?;
        let offset = sector.checked_mul(SECTOR).ok_or(())? as usize;
        let (code, written) = match kind {
            VIRTIO_BLK_T_IN => {
                let data = self.data.read().unwrap_or_else(|e| e.into_inner());
                match data.get(offset..offset.saturating_add(data_len)) {
                    Some(bytes) => {
                        writer.write_all(bytes).map_err(drop)?;
                        (VIRTIO_BLK_S_OK, data_len as u32)
                    }
                    None => (VIRTIO_BLK_S_IOERR, 0),
                }
            }
            VIRTIO_BLK_T_OUT => {
                let len = reader.available_bytes();
                let mut data = self.data.write().unwrap_or_else(|e| e.into_inner());
                match data.get_mut(offset..offset.saturating_add(len)) {
                    Some(bytes) => {
                        reader.read_exact(bytes).map_err(drop)?;
                        (VIRTIO_BLK_S_OK, 0)
                    }
                    None => (VIRTIO_BLK_S_IOERR, 0),
                }
            }
            // Memory needs no flushing.
            VIRTIO_BLK_T_FLUSH => (VIRTIO_BLK_S_OK, 0),
            VIRTIO_BLK_T_GET_ID => {
                let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
                id[..12].copy_from_slice(b"vduse-ramblk");
                let len = data_len.min(id.len());
                writer.write_all(&id[..len]).map_err(drop)?;
                (VIRTIO_BLK_S_OK, len as u32)
            }
            _ => (VIRTIO_BLK_S_UNSUPP, 0),
        };
        status.write_all(&[code as u8]).map_err(drop)?;
        Ok((code as u8, written))
    }
}

impl Backend for RamDisk {
    fn device_type(&self) -> DeviceType {
        DeviceType::Block
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_BLK_F_FLUSH) | (1 << VIRTIO_BLK_F_SEG_MAX)
    }

    fn config(&self) -> Vec<u8> {
        // struct virtio_blk_config: capacity (le64) at 0, seg_max (le32) at 12.
        let mut config = vec![0; VIRTIO_BLK_CONFIG_SIZE];
        config[0..8].copy_from_slice(&self.sectors().to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        config
    }

    fn num_queues(&self) -> u16 {
        1
    }

    fn max_queue_size(&self) -> u16 {
        QUEUE_SIZE
    }

    fn handle(&self, _queue: u16, memory: &Memory, chain: Chain<'_>) -> u32 {
        match self.serve(memory, chain) {
            // The used length counts the status byte.
            Ok((_, written)) => written + 1,
            // A chain too malformed to hold a status byte: nothing written.
            Err(()) => 0,
        }
    }
}

struct Args {
    name: String,
    size_mib: u64,
    attach: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        name: String::new(),
        size_mib: 64,
        attach: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--name" => args.name = it.next().ok_or("--name needs a value")?,
            "--size-mib" => {
                let value = it.next().ok_or("--size-mib needs a value")?;
                args.size_mib = value
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--size-mib {value}: not a positive number"))?;
            }
            "--no-attach" => args.attach = false,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.name.is_empty() {
        return Err("usage: vduse-ramblk --name NAME [--size-mib N] [--no-attach]".into());
    }
    Ok(args)
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).map_err(|e| e.to_string())?;
    }
    let disk = Arc::new(RamDisk::new(args.size_mib << 20));
    let mut options = ServerOptions::new(&args.name);
    options.attach = args.attach;
    let server = Server::start(disk, options).map_err(|e| e.to_string())?;
    println!(
        "READY {} api-version={} vduse-features={:#x}",
        server.name(),
        server.api_version(),
        server.vduse_features()
    );
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    notify_ready();
    server
        .run_until(&stop, &AtomicBool::new(false))
        .map_err(|e| e.to_string())?;
    println!("STOPPED");
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vduse-ramblk: error: {error}");
            ExitCode::FAILURE
        }
    }
}
