//! NBD over TLS against a real `qemu-nbd` (qemu-utils) with x509 credentials made by
//! `openssl`: what connects, and what is refused with which message. (Every request type
//! over TLS is in `requests.rs`, engine `nbd-tls`.)

use vduse_testkit::tls_certs;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use vduse_blk::nbd::tls::TlsOptions;
use vduse_blk::nbd::{NbdDisk, NbdError, NbdOptions, NbdUri};

/// A qemu-nbd, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// qemu-nbd exporting a 16 MiB file in `dir` at `listen` (`--socket=...` or
/// `--bind/--port`), with TLS when `credentials` are given; waits until it listens.
fn serve(dir: &Path, listen: &[String], credentials: Option<&tls_certs::Credentials>) -> Server {
    let image = dir.join("disk.img");
    std::fs::write(&image, vec![0x5a; 16 << 20]).unwrap();
    let child = Command::new("qemu-nbd")
        .args(["--persistent", "--shared=4", "--format=raw"])
        .args(
            credentials
                .map(tls_certs::qemu_nbd_args)
                .unwrap_or_default(),
        )
        .args(listen)
        .arg(&image)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run qemu-nbd ({error}): install qemu-utils"));
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let up = match listen.iter().find_map(|arg| arg.strip_prefix("--socket=")) {
            // Accepting, not just there: qemu-nbd binds (making the file) before it listens.
            Some(socket) => std::os::unix::net::UnixStream::connect(socket).is_ok(),
            None => {
                let port = listen
                    .iter()
                    .find_map(|arg| arg.strip_prefix("--port="))
                    .unwrap();
                std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_ok()
            }
        };
        if up {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "qemu-nbd did not listen within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn options(uri: &str, tls: Option<TlsOptions>) -> NbdOptions {
    NbdOptions {
        uri: NbdUri::parse(uri).unwrap(),
        timeout: Duration::from_secs(5),
        connections: 1,
        read_only: false,
        logical_block_size: 512,
        tls,
    }
}

fn trusting(ca: &Path, name: &str) -> Option<TlsOptions> {
    Some(TlsOptions {
        ca: ca.to_path_buf(),
        client_cert: None,
        server_name: name.into(),
    })
}

fn socket_args(dir: &Path) -> (PathBuf, Vec<String>) {
    let socket = dir.join("nbd.sock");
    let args = vec![format!("--socket={}", socket.display())];
    (socket, args)
}

#[test]
fn tls_over_a_unix_socket_and_tcp_connects_and_verifies_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = tls_certs::make(dir.path());
    let (socket, args) = socket_args(dir.path());
    let _server = serve(dir.path(), &args, Some(&credentials));
    let uri = format!("nbds+unix:///?socket={}", socket.display());
    let disk = NbdDisk::connect(&options(&uri, trusting(&credentials.ca, "localhost")))
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(disk.size(), 16 << 20);
    let report = NbdDisk::check(&options(&uri, trusting(&credentials.ca, "localhost"))).unwrap();
    assert_eq!(report.info.size, 16 << 20);

    // TCP, the certificate's IP address as the name.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tcp_dir = tempfile::tempdir().unwrap();
    let _tcp = serve(
        tcp_dir.path(),
        &["--bind=127.0.0.1".into(), format!("--port={port}")],
        Some(&credentials),
    );
    let uri = format!("nbds://127.0.0.1:{port}/");
    let disk = NbdDisk::connect(&options(&uri, trusting(&credentials.ca, "127.0.0.1")))
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(disk.size(), 16 << 20);
}

/// The refusal `uri` with `tls` meets: a configuration error, and its message.
fn refusal(uri: &str, tls: Option<TlsOptions>) -> String {
    match NbdDisk::connect(&options(uri, tls)) {
        Ok(_) => panic!("{uri}: connected"),
        Err(error) => {
            assert!(
                error.is_config(),
                "{uri}: {error} is not a configuration error"
            );
            assert!(matches!(error, NbdError::Refused { .. }), "{error:?}");
            error.to_string()
        }
    }
}

#[test]
fn a_server_the_ca_did_not_sign_or_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = tls_certs::make(dir.path());
    let (socket, args) = socket_args(dir.path());
    let _server = serve(dir.path(), &args, Some(&credentials));
    let uri = format!("nbds+unix:///?socket={}", socket.display());
    let error = refusal(&uri, trusting(&credentials.other_ca, "localhost"));
    assert!(error.contains("certificate"), "{error}");
    let error = refusal(&uri, trusting(&credentials.ca, "disks.example"));
    assert!(error.contains("certificate"), "{error}");
}

#[test]
fn tls_on_one_side_only_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = tls_certs::make(dir.path());
    // The server requires TLS; the URI says nbd+unix.
    let (socket, args) = socket_args(dir.path());
    let server = serve(dir.path(), &args, Some(&credentials));
    let error = refusal(&format!("nbd+unix:///?socket={}", socket.display()), None);
    assert!(
        error.contains("requires TLS") && error.contains("nbds://"),
        "{error}"
    );
    drop(server);
    // The server has no TLS; the URI says nbds+unix.
    let plain = tempfile::tempdir().unwrap();
    let (socket, args) = socket_args(plain.path());
    let _server = serve(plain.path(), &args, None);
    let error = refusal(
        &format!("nbds+unix:///?socket={}", socket.display()),
        trusting(&credentials.ca, "localhost"),
    );
    assert!(error.contains("does not offer TLS"), "{error}");
}

#[test]
fn unusable_tls_files_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for (tls, says) in [
        (
            TlsOptions {
                ca: dir.path().join("missing.pem"),
                client_cert: None,
                server_name: "localhost".into(),
            },
            "nbd-tls-ca: cannot read",
        ),
        (
            TlsOptions {
                ca: empty.clone(),
                client_cert: None,
                server_name: "localhost".into(),
            },
            "nbd-tls-ca: ",
        ),
    ] {
        let error = vduse_blk::nbd::tls::Tls::new(&tls).unwrap_err().to_string();
        assert!(error.starts_with(says), "{error}");
    }
}
