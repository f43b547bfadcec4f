//! The checked [`Config`] turned into the typed options of each layer below it: the
//! device's [`BlockOptions`], the file disk's [`FileDiskOptions`] and the NBD export's
//! [`NbdOptions`]. This is the only place where configuration meets storage code: the
//! modules below never import `config`.

use crate::backend::BlockOptions;
use crate::config::{Config, defaults};
use crate::disk::file::FileDiskOptions;
use crate::nbd::{self, NbdOptions};

impl From<&Config> for FileDiskOptions {
    fn from(config: &Config) -> Self {
        Self {
            path: config.backing.clone().unwrap_or_default(),
            size: config.size.map(|size| size.0),
            create: config.create,
            read_only: config.read_only,
            cache: config.cache,
            logical_block_size: config.logical_block_size,
        }
    }
}

impl From<&Config> for BlockOptions {
    fn from(config: &Config) -> Self {
        Self {
            logical_block_size: config.logical_block_size,
            physical_block_size: config.physical_block_size,
            num_queues: config.num_queues,
            queue_size: config.queue_size,
            serial: config.serial.clone(),
            discard: config.discard,
            write_zeroes: config.write_zeroes,
            io_engine: config.io_engine,
        }
    }
}

impl Config {
    /// How to reach the NBD export, for backend `nbd`.
    pub fn nbd_options(&self) -> Option<NbdOptions> {
        let uri = nbd::NbdUri::parse(self.nbd_uri.as_deref()?).ok()?;
        let tls = uri.tls.then(|| nbd::tls::TlsOptions {
            ca: self.nbd_tls_ca.clone().unwrap_or_default(),
            client_cert: self.nbd_tls_cert.clone().zip(self.nbd_tls_key.clone()),
            server_name: self
                .nbd_tls_hostname
                .clone()
                .unwrap_or_else(|| match &uri.endpoint {
                    nbd::Endpoint::Tcp { host, .. } => host.clone(),
                    nbd::Endpoint::Unix(_) => "localhost".into(),
                }),
        });
        Some(NbdOptions {
            tls,
            uri,
            timeout: std::time::Duration::from_secs(u64::from(
                self.nbd_timeout.unwrap_or(defaults::NBD_TIMEOUT),
            )),
            connections: self.nbd_connections.unwrap_or(self.num_queues),
            read_only: self.read_only,
            logical_block_size: self.logical_block_size,
        })
    }
}
