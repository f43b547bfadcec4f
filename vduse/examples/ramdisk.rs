//! A RAM disk: the smallest complete device on `vduse::runtime`, and the template a new
//! device starts from.
//!
//! It serves a virtio-blk disk held in memory. The kernel's own virtio-blk driver binds to
//! it through `virtio_vdpa`, and the disk appears as `/dev/vdX`. As root, with the `vduse`
//! and `virtio_vdpa` modules loaded (`modprobe vduse virtio_vdpa`):
//!
//! ```text
//! cargo run --example ramdisk -- --name ram0 --size-mib 64
//! ```
//!
//! (or `cargo build --example ramdisk`, then run `target/debug/examples/ramdisk` as root).
//! It prints `READY ram0 api-version=1 vduse-features=0x3` once the device is attached,
//! serves it until SIGINT or SIGTERM, then detaches and removes it and prints `STOPPED`.
//! `--no-attach` leaves the device off the vdpa bus (`vdpa dev add name ram0 mgmtdev
//! vduse` attaches it by hand). The log level comes from `RUST_LOG` (default `info`;
//! `debug` shows every request of the kernel). It logs with `env_logger` and handles
//! signals with `signal-hook` (dev-dependencies of this crate); any logger and any way of
//! setting two flags will do.
//!
//! # What a device is made of
//!
//! - A [`Backend`]: the device type, the virtio features it offers, its config space, its
//!   queues, and [`Backend::handle`], which serves one request (a descriptor chain: what
//!   the driver wrote, then room for the answer) and returns how many bytes it wrote.
//! - A [`Server`] that serves it: [`Server::start`] creates the device, answers the
//!   kernel's requests, maps the driver's memory, runs one worker thread per queue that
//!   calls the backend, and attaches the device; [`Server::run_until`] serves until a
//!   signal and then removes the device.
//!
//! # Another device type
//!
//! Change [`Backend::device_type`], the feature bits and the config space (the struct of
//! the virtio specification for that type, as `virtio_bindings` has it), the number and
//! size of the queues, and what [`Backend::handle`] does with a request of each queue.
//! Network devices need CAP_NET_ADMIN; virtio-fs devices need Linux 7.2 or later.
//!
//! Left out here, and where to find it: several requests of a queue in flight at once
//! ([`Backend::engine`], as vduse-blk does with io_uring); taking the device over after a
//! crash ([`ServerOptions::inflight_log`]); serving as an unprivileged user
//! ([`ServerOptions::run_as`]); a configuration file, and exit statuses that say what went
//! wrong (the `vduse-kit` crate, which the workspace's tools share).

use std::io::{Read, Write};
use std::ops::Range;
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

const USAGE: &str = "usage: ramdisk --name NAME [--size-mib N] [--no-attach]";
/// virtio-blk addresses the disk in sectors of 512 bytes, whatever its block size.
const SECTOR: u64 = 512;
const QUEUE_SIZE: u16 = 256;
/// Data segments per request the driver may use (`seg_max`): the header and the status
/// byte take the other two descriptors of a chain as long as the queue.
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// What GET_ID answers: the disk's serial number (`/sys/block/vdX/serial`).
const SERIAL: &[u8] = b"vduse-ramdisk";

/// A disk in memory.
struct RamDisk {
    data: RwLock<Vec<u8>>,
}

impl RamDisk {
    /// Serves one request and returns the bytes it wrote into the chain, status included;
    /// `None` when the chain is too malformed to hold a status.
    fn serve(&self, memory: &Memory, chain: Chain) -> Option<u32> {
        // A request is a 16-byte header the driver wrote (type, reserved, sector), the data
        // (read for OUT, written for IN and GET_ID) and a status byte the device writes.
        let mut reader = chain.clone().reader(memory).ok()?;
        let mut writer = chain.writer(memory).ok()?;
        let mut header = [0u8; 16];
        reader.read_exact(&mut header).ok()?;
        let kind = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let sector = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        // The status byte is the last writable byte; the writable bytes before it are data.
        let data_len = writer.available_bytes().checked_sub(1)?;
        let mut status_writer = writer.split_at(data_len).ok()?;

        let (status, data_written) = match kind {
            VIRTIO_BLK_T_IN => {
                let data = self.data.read().unwrap_or_else(|e| e.into_inner());
                match byte_range(sector, data_len).and_then(|range| data.get(range)) {
                    Some(bytes) => {
                        writer.write_all(bytes).ok()?;
                        (VIRTIO_BLK_S_OK, data_len)
                    }
                    None => (VIRTIO_BLK_S_IOERR, 0),
                }
            }
            VIRTIO_BLK_T_OUT => {
                let len = reader.available_bytes();
                let mut data = self.data.write().unwrap_or_else(|e| e.into_inner());
                match byte_range(sector, len).and_then(|range| data.get_mut(range)) {
                    Some(bytes) => {
                        reader.read_exact(bytes).ok()?;
                        (VIRTIO_BLK_S_OK, 0)
                    }
                    None => (VIRTIO_BLK_S_IOERR, 0),
                }
            }
            // Memory has no cache to write back.
            VIRTIO_BLK_T_FLUSH => (VIRTIO_BLK_S_OK, 0),
            VIRTIO_BLK_T_GET_ID => {
                // Up to 20 bytes, NUL-padded when shorter.
                let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
                id[..SERIAL.len()].copy_from_slice(SERIAL);
                let len = data_len.min(id.len());
                writer.write_all(&id[..len]).ok()?;
                (VIRTIO_BLK_S_OK, len)
            }
            _ => (VIRTIO_BLK_S_UNSUPP, 0),
        };
        status_writer.write_all(&[status as u8]).ok()?;
        u32::try_from(data_written + 1).ok()
    }
}

/// The bytes `len` long from sector `sector` on, unless the offsets overflow; whether they
/// lie on the disk is for `get` to say.
fn byte_range(sector: u64, len: usize) -> Option<Range<usize>> {
    let start = usize::try_from(sector.checked_mul(SECTOR)?).ok()?;
    Some(start..start.checked_add(len)?)
}

/// What the runtime needs to know of the device, and the request handler it calls from the
/// queue's worker thread.
impl Backend for RamDisk {
    fn device_type(&self) -> DeviceType {
        DeviceType::Block
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_BLK_F_FLUSH) | (1 << VIRTIO_BLK_F_SEG_MAX)
    }

    fn config(&self) -> Vec<u8> {
        // struct virtio_blk_config: capacity in sectors (le64) at 0, seg_max (le32) at 12.
        let sectors = self.data.read().unwrap_or_else(|e| e.into_inner()).len() as u64 / SECTOR;
        let mut config = vec![0; VIRTIO_BLK_CONFIG_SIZE];
        config[0..8].copy_from_slice(&sectors.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        config
    }

    fn num_queues(&self) -> u16 {
        1
    }

    fn max_queue_size(&self) -> u16 {
        QUEUE_SIZE
    }

    fn handle(&self, _queue: u16, memory: &Arc<Memory>, chain: Chain) -> u32 {
        // Nothing written at all tells the driver the chain was unusable.
        self.serve(memory, chain).unwrap_or(0)
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
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if args.name.is_empty() {
        return Err(USAGE.into());
    }
    Ok(args)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    // Before the device exists: a signal from now on stops the server cleanly (SIGINT,
    // SIGTERM), or logs the queues' state (SIGUSR1).
    let stop = Arc::new(AtomicBool::new(false));
    let log_state = Arc::new(AtomicBool::new(false));
    for (signal, flag) in [
        (signal_hook::consts::SIGINT, &stop),
        (signal_hook::consts::SIGTERM, &stop),
        (signal_hook::consts::SIGUSR1, &log_state),
    ] {
        signal_hook::flag::register(signal, Arc::clone(flag))?;
    }
    let bytes = usize::try_from(args.size_mib)
        .ok()
        .and_then(|mib| mib.checked_mul(1 << 20))
        .ok_or(format!("--size-mib {}: too large", args.size_mib))?;
    let disk = RamDisk {
        data: RwLock::new(vec![0; bytes]),
    };

    let mut options = ServerOptions::new(&args.name);
    options.attach = args.attach;
    let server = Server::start(Arc::new(disk), options)?;
    println!(
        "READY {} api-version={} vduse-features={:#x}",
        server.name(),
        server.api_version(),
        server.vduse_features()
    );
    std::io::stdout().flush()?;
    notify_ready();
    server.run_until(&stop, &log_state)?;
    println!("STOPPED");
    Ok(())
}

fn main() -> ExitCode {
    // The level comes from RUST_LOG, `info` without it.
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Info)
        .parse_default_env()
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ramdisk: error: {error}");
            ExitCode::FAILURE
        }
    }
}
