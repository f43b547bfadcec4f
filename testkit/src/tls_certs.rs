//! Test certificates for NBD over TLS, made with the `openssl` command: a CA, and a
//! server certificate for `localhost` and 127.0.0.1 in the layout qemu's
//! `tls-creds-x509` object reads (`ca-cert.pem`, `server-cert.pem`, `server-key.pem`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory of credentials.
#[derive(Debug)]
pub struct Credentials {
    /// qemu-nbd's `tls-creds-x509` directory.
    pub server_dir: PathBuf,
    /// The CA the client trusts.
    pub ca: PathBuf,
    /// Another CA, which signed nothing here.
    pub other_ca: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run openssl ({error}): install openssl"));
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn new_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}-key.pem"),
            "-out",
            &format!("{name}-cert.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// Makes the credentials in `dir`.
pub fn make(dir: &Path) -> Credentials {
    let server_dir = dir.join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    new_ca(dir, "ca");
    new_ca(dir, "other-ca");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server/server-key.pem",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca-cert.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            "server/server-cert.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    std::fs::copy(dir.join("ca-cert.pem"), server_dir.join("ca-cert.pem")).unwrap();
    Credentials {
        server_dir,
        ca: dir.join("ca-cert.pem"),
        other_ca: dir.join("other-ca-cert.pem"),
    }
}

/// qemu-nbd's arguments that make it require TLS with `credentials`.
pub fn qemu_nbd_args(credentials: &Credentials) -> Vec<String> {
    vec![
        "--object".into(),
        format!(
            "tls-creds-x509,id=tls0,endpoint=server,verify-peer=off,dir={}",
            credentials.server_dir.display()
        ),
        "--tls-creds=tls0".into(),
    ]
}
