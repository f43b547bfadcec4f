//! NBD over TLS (`nbds://`, `nbds+unix://`), with rustls.
//!
//! After `NBD_OPT_STARTTLS` and the TLS handshake, a thread of the connection's own (the
//! *tunnel*) carries the session between the server's socket and one end of a local
//! socket pair; the client uses the other end exactly as it uses a plain connection, so
//! its zero-copy reads into guest memory and its split sender/receiver work unchanged.
//! The tunnel never blocks on one direction while the other has work: a server that stops
//! reading requests until its replies are read is served.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::event::{PollFd, PollFlags, poll};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::client::Stream;

/// Plaintext waiting for either side before the tunnel stops reading more (backpressure).
const TUNNEL_BUFFER: usize = 1 << 20;

/// What the configuration says about TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// CA certificates (PEM) that the server's certificate must chain to.
    pub ca: PathBuf,
    /// A client certificate chain and its key (PEM), for servers that verify clients.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The name the server's certificate must carry.
    pub server_name: String,
}

/// Why the TLS settings cannot be used; the first field names the key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct TlsSetupError {
    /// The configuration key.
    pub key: &'static str,
    /// What is wrong, and how to fix it.
    pub problem: String,
}

fn setup_error(key: &'static str, problem: impl Into<String>) -> TlsSetupError {
    TlsSetupError {
        key,
        problem: problem.into(),
    }
}

fn read_pem(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    fs::read(path)
        .map_err(|error| setup_error(key, format!("cannot read {}: {error}", path.display())))
}

/// A client configuration ready to connect.
#[derive(Debug, Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl Tls {
    /// Loads the certificates `options` names.
    pub fn new(options: &TlsOptions) -> Result<Tls, TlsSetupError> {
        let mut roots = RootCertStore::empty();
        let pem = read_pem("nbd-tls-ca", &options.ca)?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|error| {
                setup_error("nbd-tls-ca", format!("{}: {error}", options.ca.display()))
            })?;
            roots.add(cert).map_err(|error| {
                setup_error("nbd-tls-ca", format!("{}: {error}", options.ca.display()))
            })?;
        }
        if roots.is_empty() {
            return Err(setup_error(
                "nbd-tls-ca",
                format!(
                    "{} holds no PEM certificate: give the CA that signed the server's \
                     certificate (qemu-nbd's ca-cert.pem)",
                    options.ca.display()
                ),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| setup_error("nbd-tls-ca", error.to_string()))?
            .with_root_certificates(roots);
        let config = match &options.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert_path, key_path)) => {
                let pem = read_pem("nbd-tls-cert", cert_path)?;
                let chain = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| {
                        setup_error("nbd-tls-cert", format!("{}: {error}", cert_path.display()))
                    })?;
                if chain.is_empty() {
                    return Err(setup_error(
                        "nbd-tls-cert",
                        format!("{} holds no PEM certificate", cert_path.display()),
                    ));
                }
                let pem = read_pem("nbd-tls-key", key_path)?;
                let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
                    setup_error(
                        "nbd-tls-key",
                        format!("{}: no usable private key ({error})", key_path.display()),
                    )
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|error| setup_error("nbd-tls-key", error.to_string()))?
            }
        };
        let server_name = ServerName::try_from(options.server_name.clone()).map_err(|_| {
            setup_error(
                "nbd-tls-hostname",
                format!(
                    "{:?} is not a DNS name or an IP address",
                    options.server_name
                ),
            )
        })?;
        Ok(Tls {
            config: Arc::new(config),
            server_name,
        })
    }

    /// Runs the TLS handshake on `stream` (just after `NBD_OPT_STARTTLS` was agreed) and
    /// starts the tunnel; returns the plaintext end.
    pub fn start(&self, mut stream: Stream) -> io::Result<Stream> {
        let mut session = ClientConnection::new(self.config.clone(), self.server_name.clone())
            .map_err(io::Error::other)?;
        while session.is_handshaking() {
            session.complete_io(&mut stream)?;
        }
        // Whatever the handshake left to send goes now.
        while session.wants_write() {
            session.write_tls(&mut stream)?;
        }
        let (ours, theirs) = UnixStream::pair()?;
        std::thread::Builder::new()
            .name("vduse-nbd-tls".into())
            .spawn(move || {
                if let Err(error) = tunnel(session, stream, theirs) {
                    log::debug!("NBD TLS tunnel ended: {error}");
                }
            })?;
        Ok(Stream::Unix(ours))
    }
}

/// Carries plaintext between `local` and the TLS session on `net` until either ends.
fn tunnel(mut session: ClientConnection, mut net: Stream, mut local: UnixStream) -> io::Result<()> {
    net.set_nonblocking()?;
    local.set_nonblocking(true)?;
    session.set_buffer_limit(Some(TUNNEL_BUFFER));
    let mut to_local: Vec<u8> = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut local_open = true;
    let result = loop {
        let mut local_flags = PollFlags::empty();
        if local_open && !session.wants_write() {
            local_flags |= PollFlags::IN;
        }
        if !to_local.is_empty() {
            local_flags |= PollFlags::OUT;
        }
        let mut net_flags = PollFlags::empty();
        if to_local.len() < TUNNEL_BUFFER {
            net_flags |= PollFlags::IN;
        }
        if session.wants_write() {
            net_flags |= PollFlags::OUT;
        }
        let (net_ready, local_ready) = {
            let mut fds = [
                PollFd::new(&net, net_flags),
                PollFd::new(&local, local_flags),
            ];
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(error) => break Err(error.into()),
            }
            (fds[0].revents(), fds[1].revents())
        };
        let hung = PollFlags::ERR | PollFlags::HUP;
        // Server -> local.
        if net_ready.intersects(PollFlags::IN | hung) {
            match session.read_tls(&mut net) {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => break Err(error),
            }
            if let Err(error) = session.process_new_packets() {
                // Say why before going.
                let _ = session.write_tls(&mut net);
                break Err(io::Error::other(error));
            }
            loop {
                match session.reader().read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => to_local.extend_from_slice(&buffer[..n]),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) => return Err(error),
                }
            }
        }
        if !to_local.is_empty() && local_ready.intersects(PollFlags::OUT | hung) {
            match local.write(&to_local) {
                Ok(n) => {
                    to_local.drain(..n);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => break Err(error),
            }
        }
        // Local -> server.
        if local_open && local_ready.intersects(PollFlags::IN | hung) {
            match local.read(&mut buffer) {
                Ok(0) => {
                    local_open = false;
                    session.send_close_notify();
                }
                Ok(n) => session.writer().write_all(&buffer[..n])?,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => break Err(error),
            }
        }
        if session.wants_write() {
            match session.write_tls(&mut net) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => break Err(error),
            }
        }
        if !local_open && !session.wants_write() {
            break Ok(());
        }
    };
    let _ = local.shutdown(std::net::Shutdown::Both);
    net.shutdown();
    result
}
