//! The NBD backend: the disk is an export of an NBD server (`qemu-nbd`, `nbdkit`, ...).
//!
//! - [`uri`]: `nbd://` and `nbd+unix://` URIs.
//! - [`protocol`]: the fixed-newstyle handshake and the transmission headers.
//! - [`client`]: one pipelined connection that reconnects by itself and sends again what
//!   was in flight, failing requests only after `nbd-timeout`.
//! - [`tls`]: `nbds://` with rustls, through a tunnel thread so that [`client`] sees a
//!   plain socket.
//!
//! [`NbdDisk`] opens one connection, or one per queue when the export allows
//! `CAN_MULTI_CONN` (without it a flush on one connection says nothing about writes on
//! another, so every queue shares one).

pub mod client;
pub mod protocol;
pub mod tls;
pub mod uri;

use std::sync::Arc;
use std::time::Duration;

pub(crate) use self::client::Command;
pub use self::client::{Client, ConnectError};
pub use self::protocol::ExportInfo;
use self::protocol::flags;
pub use self::uri::{Endpoint, NbdUri};

/// How to reach the export: the configuration's part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdOptions {
    /// The export.
    pub uri: NbdUri,
    /// How long a request may wait for an answer, across reconnections, before it fails.
    pub timeout: Duration,
    /// Most connections (one per queue) when the export allows several.
    pub connections: u16,
    /// Serve the disk read-only even if the export is writable.
    pub read_only: bool,
    /// The disk's logical block size.
    pub logical_block_size: u32,
    /// TLS settings, for `nbds` URIs.
    pub tls: Option<tls::TlsOptions>,
}

/// Why the export cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    /// The server could not be reached.
    #[error(
        "cannot reach the NBD server for {uri}: {cause}; start the server (for example \
         `qemu-nbd --persistent --socket=PATH IMAGE`) or correct `nbd-uri`"
    )]
    Unreachable {
        /// The export.
        uri: String,
        /// Why.
        cause: ConnectError,
    },
    /// The server refused the export, or does not speak the protocol.
    #[error("cannot use the NBD export {uri}: {cause}")]
    Refused {
        /// The export.
        uri: String,
        /// Why.
        cause: ConnectError,
    },
    /// The export is empty.
    #[error("the NBD export {uri} is empty")]
    Empty {
        /// The export.
        uri: String,
    },
    /// The export's size is not a whole number of blocks.
    #[error(
        "the NBD export {uri} is {size} bytes, not a multiple of the logical block size \
         ({logical_block_size}): resize the image (for example `qemu-img resize`) or lower \
         `logical-block-size`"
    )]
    Size {
        /// The export.
        uri: String,
        /// Its size.
        size: u64,
        /// The configured logical block size.
        logical_block_size: u32,
    },
    /// The server's smallest block is larger than the disk's.
    #[error(
        "the NBD export {uri} handles blocks of at least {min_block} bytes: set \
         `logical-block-size: {min_block}`"
    )]
    MinBlock {
        /// The export.
        uri: String,
        /// The server's minimum block size.
        min_block: u32,
    },
    /// The TLS settings cannot be used.
    #[error("{0}")]
    TlsSetup(#[from] tls::TlsSetupError),
    /// A thread could not be started.
    #[error("cannot start the NBD connection threads: {0}")]
    Io(#[from] std::io::Error),
}

impl NbdError {
    /// True for what the configuration (or the server's) must change; false when the
    /// server is just not there.
    pub fn is_config(&self) -> bool {
        !matches!(self, NbdError::Unreachable { .. } | NbdError::Io(_))
    }
}

/// What `--check-config` reports of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportReport {
    /// What the handshake said.
    pub info: ExportInfo,
}

/// A disk served by an NBD export over one or more connections.
#[derive(Debug)]
pub struct NbdDisk {
    options: NbdOptions,
    info: ExportInfo,
    clients: Vec<Arc<Client>>,
}

fn first_connection(
    options: &NbdOptions,
    tls: Option<&tls::Tls>,
) -> Result<(client::Stream, ExportInfo), NbdError> {
    let uri = options.uri.to_string();
    let (stream, info) = client::open(&options.uri, options.timeout, tls).map_err(|cause| {
        if cause.is_permanent() {
            NbdError::Refused {
                uri: uri.clone(),
                cause,
            }
        } else {
            NbdError::Unreachable {
                uri: uri.clone(),
                cause,
            }
        }
    })?;
    let lbs = options.logical_block_size;
    if info.size == 0 {
        return Err(NbdError::Empty { uri });
    }
    if info.size % u64::from(lbs) != 0 {
        return Err(NbdError::Size {
            uri,
            size: info.size,
            logical_block_size: lbs,
        });
    }
    if info.min_block > lbs {
        return Err(NbdError::MinBlock {
            uri,
            min_block: info.min_block,
        });
    }
    Ok((stream, info))
}

impl NbdDisk {
    /// Connects to the export and checks it can be the disk.
    pub fn connect(options: &NbdOptions) -> Result<NbdDisk, NbdError> {
        let tls = options.tls.as_ref().map(tls::Tls::new).transpose()?;
        let (stream, info) = first_connection(options, tls.as_ref())?;
        let count = if info.has(flags::CAN_MULTI_CONN) {
            options.connections.max(1)
        } else {
            if options.connections > 1 {
                log::info!(
                    "{}: the server does not offer multi-conn: every queue shares one connection",
                    options.uri
                );
            }
            1
        };
        let label = |index: u16| {
            if count == 1 {
                format!("NBD {}", options.uri)
            } else {
                format!("NBD {} (connection {index})", options.uri)
            }
        };
        let mut clients = vec![Arc::new(Client::start(
            options.uri.clone(),
            tls.clone(),
            stream,
            info,
            options.timeout,
            label(0),
        )?)];
        for index in 1..count {
            let (stream, _) = first_connection(options, tls.as_ref())?;
            clients.push(Arc::new(Client::start(
                options.uri.clone(),
                tls.clone(),
                stream,
                info,
                options.timeout,
                label(index),
            )?));
        }
        Ok(NbdDisk {
            options: options.clone(),
            info,
            clients,
        })
    }

    /// Connects, runs the handshake and says goodbye: what `--check-config` does.
    pub fn check(options: &NbdOptions) -> Result<ExportReport, NbdError> {
        let tls = options.tls.as_ref().map(tls::Tls::new).transpose()?;
        let (mut stream, info) = first_connection(options, tls.as_ref())?;
        let goodbye = protocol::request(protocol::command::DISC, 0, 0, 0, 0);
        let _ = std::io::Write::write_all(&mut stream, &goodbye);
        Ok(ExportReport { info })
    }

    /// The export's URI.
    pub fn uri(&self) -> &NbdUri {
        &self.options.uri
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.info.size
    }

    /// Whether the disk is read-only (asked for, or the export is).
    pub fn is_read_only(&self) -> bool {
        self.options.read_only || self.info.has(flags::READ_ONLY)
    }

    /// Whether FLUSH means anything to the server (without it, writes are durable when
    /// answered).
    pub fn sends_flush(&self) -> bool {
        self.info.has(flags::SEND_FLUSH)
    }

    /// Whether the server understands TRIM.
    pub fn can_trim(&self) -> bool {
        self.info.has(flags::SEND_TRIM)
    }

    /// Whether the server understands WRITE_ZEROES.
    pub fn can_write_zeroes(&self) -> bool {
        self.info.has(flags::SEND_WRITE_ZEROES)
    }

    /// The block size the server prefers, when it names one.
    pub fn preferred_block(&self) -> Option<u32> {
        Some(self.info.preferred_block).filter(|&size| size > 0)
    }

    /// Largest payload of one request.
    pub fn max_payload(&self) -> u32 {
        self.info.max_payload
    }

    /// Number of connections.
    pub fn connections(&self) -> usize {
        self.clients.len()
    }

    /// The connection queue `queue` uses.
    pub fn client_for(&self, queue: u16) -> Arc<Client> {
        self.clients[usize::from(queue) % self.clients.len()].clone()
    }
}
