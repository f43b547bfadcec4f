//! NBD URIs, as the NBD project's URI specification writes them:
//! `nbd://HOST[:PORT][/EXPORT]` and `nbd+unix:///EXPORT?socket=PATH`, and the same with
//! TLS: `nbds://` and `nbds+unix://`.

use std::fmt;
use std::path::PathBuf;

/// The port an NBD server listens on when the URI names none (IANA-assigned).
pub const DEFAULT_PORT: u16 = 10809;

/// Where the NBD server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP host (name or address) and port.
    Tcp {
        /// Host name, IPv4 address, or IPv6 address without brackets.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix domain socket.
    Unix(PathBuf),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A parsed NBD URI: the server and the export's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdUri {
    /// The server.
    pub endpoint: Endpoint,
    /// The export's name (empty: the server's default export).
    pub export: String,
    /// Over TLS (`nbds`).
    pub tls: bool,
}

impl NbdUri {
    /// Parses `text`. The error says what is wrong and shows a form that works.
    pub fn parse(text: &str) -> Result<NbdUri, String> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(format!(
                "{text:?} is not an NBD URI: write nbd://HOST[:PORT]/EXPORT or \
                 nbd+unix:///EXPORT?socket=PATH"
            ));
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, ""),
        };
        let export = percent_decode(path)?;
        let mut socket = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("socket", value)) => socket = Some(PathBuf::from(percent_decode(value)?)),
                _ => {
                    return Err(format!(
                        "{text:?}: unknown query parameter {pair:?}; only socket=PATH (with \
                         nbd+unix) is understood"
                    ));
                }
            }
        }
        let tls = scheme.starts_with("nbds");
        let endpoint = match scheme {
            "nbd" | "nbds" => {
                if socket.is_some() {
                    return Err(format!(
                        "{text:?}: socket= goes with nbd+unix:///EXPORT?socket=PATH, not {scheme}://"
                    ));
                }
                tcp_endpoint(text, authority)?
            }
            "nbd+unix" | "nbds+unix" => {
                if !authority.is_empty() {
                    return Err(format!(
                        "{text:?}: an nbd+unix URI has no host: write \
                         nbd+unix:///EXPORT?socket=PATH"
                    ));
                }
                match socket {
                    Some(path) if !path.as_os_str().is_empty() => Endpoint::Unix(path),
                    _ => {
                        return Err(format!(
                            "{text:?}: nbd+unix needs the socket's path: \
                             nbd+unix:///EXPORT?socket=/run/nbd.sock"
                        ));
                    }
                }
            }
            other => {
                return Err(format!(
                    "{text:?}: unknown scheme {other:?}; use nbd://, nbd+unix://, nbds:// or \
                     nbds+unix://"
                ));
            }
        };
        Ok(NbdUri {
            endpoint,
            export,
            tls,
        })
    }
}

impl fmt::Display for NbdUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.tls { "s" } else { "" };
        match &self.endpoint {
            Endpoint::Tcp { .. } => write!(f, "nbd{s}://{}/{}", self.endpoint, self.export),
            Endpoint::Unix(path) => {
                write!(
                    f,
                    "nbd{s}+unix:///{}?socket={}",
                    self.export,
                    path.display()
                )
            }
        }
    }
}

fn tcp_endpoint(text: &str, authority: &str) -> Result<Endpoint, String> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(format!("{text:?}: an IPv6 address needs its closing ']'"));
        };
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!(
            "{text:?}: nbd:// needs a host: nbd://localhost/EXPORT (or nbd+unix:// for a socket)"
        ));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&port| port != 0)
            .ok_or_else(|| format!("{text:?}: port {port:?} is not a number from 1 to 65535"))?,
    };
    Ok(Endpoint::Tcp {
        host: host.to_string(),
        port,
    })
}

/// Decodes `%XX` escapes.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("{text:?}: '%' must be followed by two hex digits"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16, export: &str) -> NbdUri {
        NbdUri {
            endpoint: Endpoint::Tcp {
                host: host.into(),
                port,
            },
            export: export.into(),
            tls: false,
        }
    }

    #[test]
    fn tcp_forms() {
        assert_eq!(
            NbdUri::parse("nbd://localhost").unwrap(),
            tcp("localhost", 10809, "")
        );
        assert_eq!(
            NbdUri::parse("nbd://127.0.0.1:10810/disk").unwrap(),
            tcp("127.0.0.1", 10810, "disk")
        );
        assert_eq!(
            NbdUri::parse("nbd://[::1]:7000/a%20b").unwrap(),
            tcp("::1", 7000, "a b")
        );
        assert_eq!(
            NbdUri::parse("nbd://[fe80::1]/x").unwrap(),
            tcp("fe80::1", 10809, "x")
        );
        assert_eq!(
            NbdUri::parse("nbd://host/dir/disk").unwrap(),
            tcp("host", 10809, "dir/disk")
        );
    }

    #[test]
    fn tls_forms() {
        let uri = NbdUri::parse("nbds://server.example:10810/disk").unwrap();
        assert_eq!(
            uri,
            NbdUri {
                tls: true,
                ..tcp("server.example", 10810, "disk")
            }
        );
        assert_eq!(uri.to_string(), "nbds://server.example:10810/disk");
        let uri = NbdUri::parse("nbds+unix:///d?socket=/run/s").unwrap();
        assert!(uri.tls);
        assert_eq!(uri.endpoint, Endpoint::Unix("/run/s".into()));
        assert_eq!(uri.to_string(), "nbds+unix:///d?socket=/run/s");
    }

    #[test]
    fn unix_forms() {
        let uri = NbdUri::parse("nbd+unix:///disk?socket=/run/nbd.sock").unwrap();
        assert_eq!(uri.endpoint, Endpoint::Unix("/run/nbd.sock".into()));
        assert_eq!(uri.export, "disk");
        let uri = NbdUri::parse("nbd+unix://?socket=/tmp/s%20p").unwrap();
        assert_eq!(uri.endpoint, Endpoint::Unix("/tmp/s p".into()));
        assert_eq!(uri.export, "");
        assert_eq!(uri.to_string(), "nbd+unix:///?socket=/tmp/s p");
    }

    #[test]
    fn bad_uris_say_what_to_write() {
        for (text, says) in [
            ("/dev/nbd0", "nbd://HOST"),
            ("nbd://", "needs a host"),
            ("nbd://host:0/x", "1 to 65535"),
            ("nbd://host:http/x", "1 to 65535"),
            ("nbd://[::1/x", "closing ']'"),
            ("nbd+unix:///disk", "socket's path"),
            ("nbd+unix://host/disk?socket=/s", "no host"),
            ("nbd://host/x?socket=/s", "nbd+unix"),
            ("nbd+unix:///x?socket=/s&tls=1", "unknown query"),
            ("http://host/x", "unknown scheme"),
            ("nbd://host/%zz", "two hex digits"),
        ] {
            let error = NbdUri::parse(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
