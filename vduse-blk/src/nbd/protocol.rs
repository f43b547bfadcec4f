//! The NBD wire protocol (the NBD project's `proto.md`): the fixed-newstyle handshake,
//! and the request and reply headers of the transmission phase. Everything is big-endian.

use std::io::{self, Read, Write};
use std::time::Duration;

/// "NBDMAGIC": every server's greeting starts with it.
const INIT_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// "IHAVEOPT": a newstyle server; also the prefix of every option the client sends.
const OPTS_MAGIC: u64 = 0x4948_4156_454f_5054;
/// An oldstyle server's second word.
const OLDSTYLE_MAGIC: u64 = 0x0000_4202_8186_1253;
/// Prefix of every option reply.
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;

/// Handshake flags.
const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
const FLAG_NO_ZEROES: u16 = 1 << 1;

/// Options.
const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_STARTTLS: u32 = 5;
const OPT_GO: u32 = 7;
const OPT_STRUCTURED_REPLY: u32 = 8;

/// Option replies.
const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const REP_FLAG_ERROR: u32 = 1 << 31;
const REP_ERR_UNSUP: u32 = REP_FLAG_ERROR | 1;
const REP_ERR_POLICY: u32 = REP_FLAG_ERROR | 2;
const REP_ERR_TLS_REQD: u32 = REP_FLAG_ERROR | 5;
const REP_ERR_UNKNOWN: u32 = REP_FLAG_ERROR | 6;

/// Information types of `NBD_REP_INFO`.
const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;

/// Transmission flags of an export.
pub mod flags {
    /// The other flags are valid.
    pub const HAS_FLAGS: u16 = 1 << 0;
    /// The export cannot be written.
    pub const READ_ONLY: u16 = 1 << 1;
    /// FLUSH is understood.
    pub const SEND_FLUSH: u16 = 1 << 2;
    /// TRIM is understood.
    pub const SEND_TRIM: u16 = 1 << 5;
    /// WRITE_ZEROES is understood.
    pub const SEND_WRITE_ZEROES: u16 = 1 << 6;
    /// Several connections see each other's writes and one FLUSH covers all.
    pub const CAN_MULTI_CONN: u16 = 1 << 8;
}

/// Request magic.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Simple reply magic.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Structured reply magic.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// Commands.
pub mod command {
    /// Read `length` bytes at `offset`.
    pub const READ: u16 = 0;
    /// Write the payload at `offset`.
    pub const WRITE: u16 = 1;
    /// Disconnect (no reply).
    pub const DISC: u16 = 2;
    /// Make completed writes durable.
    pub const FLUSH: u16 = 3;
    /// Discard a range.
    pub const TRIM: u16 = 4;
    /// Write zeros over a range.
    pub const WRITE_ZEROES: u16 = 6;
}

/// Command flag: WRITE_ZEROES must not punch a hole.
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;

/// Structured reply flag: the last chunk of its request.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;

/// Structured reply chunk types.
pub mod chunk {
    /// No payload: only ends a request.
    pub const NONE: u16 = 0;
    /// u64 offset, then data.
    pub const OFFSET_DATA: u16 = 1;
    /// u64 offset, u32 length of a range that reads as zeros.
    pub const OFFSET_HOLE: u16 = 2;
    /// Error chunks have this bit set: u32 errno, u16 message length, message...
    pub const ERROR_BIT: u16 = 1 << 15;
}

/// Size of a request header.
pub const REQUEST_SIZE: usize = 28;
/// Size of a simple reply header.
pub const SIMPLE_REPLY_SIZE: usize = 16;
/// Size of a structured reply header.
pub const STRUCTURED_REPLY_SIZE: usize = 20;

/// Largest payload sent when the server states no maximum (the protocol's own default).
pub const DEFAULT_MAX_PAYLOAD: u32 = 32 << 20;

/// Largest option reply read into memory; longer ones are refused as a protocol error.
const MAX_OPTION_REPLY: u32 = 64 * 1024;

/// What the handshake learned about the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportInfo {
    /// Size in bytes.
    pub size: u64,
    /// Transmission flags ([`flags`]).
    pub flags: u16,
    /// Smallest block the server handles (1 when it says nothing).
    pub min_block: u32,
    /// The block size the server prefers (0 when it says nothing).
    pub preferred_block: u32,
    /// Largest payload of one request.
    pub max_payload: u32,
    /// Structured replies were agreed.
    pub structured: bool,
}

impl ExportInfo {
    /// Whether flag `flag` is set.
    pub fn has(&self, flag: u16) -> bool {
        self.flags & flags::HAS_FLAGS != 0 && self.flags & flag != 0
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The connection failed or timed out.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The server said something that is not the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server has no export of that name.
    #[error(
        "the server has no export named {0:?}: check the URI's path (`qemu-nbd -x NAME` sets it)"
    )]
    UnknownExport(String),
    /// The server insists on TLS.
    #[error("the server requires TLS: use an nbds:// (or nbds+unix://) URI with nbd-tls-ca")]
    TlsRequired,
    /// TLS was asked for and the server does not offer it.
    #[error(
        "the server does not offer TLS: use an nbd:// URI, or give the server TLS \
         credentials (qemu-nbd --tls-creds)"
    )]
    TlsUnsupported,
    /// The TLS handshake failed (a certificate, a name, no common protocol).
    #[error("TLS: {0}")]
    Tls(String),
    /// The server refused for another reason.
    #[error("the server refused the export: {0}")]
    Refused(String),
}

impl HandshakeError {
    /// True when retrying cannot help (the configuration must change).
    pub fn is_permanent(&self) -> bool {
        !matches!(self, HandshakeError::Io(_))
    }
}

fn protocol(text: impl Into<String>) -> HandshakeError {
    HandshakeError::Protocol(text.into())
}

fn read_u16(stream: &mut impl Read) -> io::Result<u16> {
    let mut bytes = [0u8; 2];
    stream.read_exact(&mut bytes)?;
    Ok(u16::from_be_bytes(bytes))
}

fn read_u32(stream: &mut impl Read) -> io::Result<u32> {
    let mut bytes = [0u8; 4];
    stream.read_exact(&mut bytes)?;
    Ok(u32::from_be_bytes(bytes))
}

fn read_u64(stream: &mut impl Read) -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    stream.read_exact(&mut bytes)?;
    Ok(u64::from_be_bytes(bytes))
}

fn send_option(stream: &mut impl Write, option: u32, data: &[u8]) -> io::Result<()> {
    let mut message = Vec::with_capacity(16 + data.len());
    message.extend_from_slice(&OPTS_MAGIC.to_be_bytes());
    message.extend_from_slice(&option.to_be_bytes());
    message.extend_from_slice(&(data.len() as u32).to_be_bytes());
    message.extend_from_slice(data);
    stream.write_all(&message)?;
    stream.flush()
}

/// One option reply: its type and data.
struct OptionReply {
    kind: u32,
    data: Vec<u8>,
}

fn read_option_reply(stream: &mut impl Read, option: u32) -> Result<OptionReply, HandshakeError> {
    if read_u64(stream)? != REPLY_MAGIC {
        return Err(protocol("bad option reply magic"));
    }
    let replied_to = read_u32(stream)?;
    if replied_to != option {
        return Err(protocol(format!(
            "reply to option {replied_to} while option {option} was asked"
        )));
    }
    let kind = read_u32(stream)?;
    let len = read_u32(stream)?;
    if len > MAX_OPTION_REPLY {
        return Err(protocol(format!("option reply of {len} bytes")));
    }
    let mut data = vec![0u8; len as usize];
    stream.read_exact(&mut data)?;
    Ok(OptionReply { kind, data })
}

/// The error an option's error reply stands for.
fn option_error(reply: &OptionReply, export: &str) -> HandshakeError {
    let message = String::from_utf8_lossy(&reply.data).trim().to_string();
    match reply.kind {
        REP_ERR_UNKNOWN => HandshakeError::UnknownExport(export.to_string()),
        REP_ERR_TLS_REQD => HandshakeError::TlsRequired,
        REP_ERR_POLICY => HandshakeError::Refused(if message.is_empty() {
            "refused by its policy".into()
        } else {
            message
        }),
        kind => HandshakeError::Refused(if message.is_empty() {
            format!("error {:#x}", kind)
        } else {
            message
        }),
    }
}

/// Runs the fixed-newstyle handshake for `export` on a fresh connection: the greeting,
/// then [`negotiate`]. On success the connection is in the transmission phase.
pub fn handshake<S: Read + Write>(
    stream: &mut S,
    export: &str,
) -> Result<ExportInfo, HandshakeError> {
    let greeting = greet(stream)?;
    negotiate(stream, export, greeting)
}

/// What the server's greeting said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Greeting {
    no_zeroes: bool,
}

/// Reads the server's greeting and answers it; the option haggling comes next.
pub fn greet<S: Read + Write>(stream: &mut S) -> Result<Greeting, HandshakeError> {
    if read_u64(stream)? != INIT_MAGIC {
        return Err(protocol("the peer is not an NBD server (no NBDMAGIC)"));
    }
    match read_u64(stream)? {
        OPTS_MAGIC => {}
        OLDSTYLE_MAGIC => {
            return Err(protocol(
                "the server speaks the oldstyle protocol, which has no export names; \
                 use a newstyle server",
            ));
        }
        _ => return Err(protocol("unknown handshake magic")),
    }
    let server_flags = read_u16(stream)?;
    if server_flags & FLAG_FIXED_NEWSTYLE == 0 {
        return Err(protocol("the server does not speak fixed newstyle"));
    }
    let no_zeroes = server_flags & FLAG_NO_ZEROES != 0;
    let client_flags = u32::from(FLAG_FIXED_NEWSTYLE)
        | if no_zeroes {
            u32::from(FLAG_NO_ZEROES)
        } else {
            0
        };
    stream.write_all(&client_flags.to_be_bytes())?;
    Ok(Greeting { no_zeroes })
}

/// Asks for TLS (`NBD_OPT_STARTTLS`); on success the TLS handshake comes next, and the
/// options go on inside the session.
pub fn starttls<S: Read + Write>(stream: &mut S) -> Result<(), HandshakeError> {
    send_option(stream, OPT_STARTTLS, &[])?;
    let reply = read_option_reply(stream, OPT_STARTTLS)?;
    match reply.kind {
        REP_ACK => Ok(()),
        REP_ERR_UNSUP | REP_ERR_POLICY => Err(HandshakeError::TlsUnsupported),
        _ => Err(option_error(&reply, "")),
    }
}

/// The options after the greeting (and TLS): structured replies, then `NBD_OPT_GO`
/// (falling back to `NBD_OPT_EXPORT_NAME` on servers without it).
pub fn negotiate<S: Read + Write>(
    stream: &mut S,
    export: &str,
    greeting: Greeting,
) -> Result<ExportInfo, HandshakeError> {
    let no_zeroes = greeting.no_zeroes;
    send_option(stream, OPT_STRUCTURED_REPLY, &[])?;
    let reply = read_option_reply(stream, OPT_STRUCTURED_REPLY)?;
    let structured = reply.kind == REP_ACK;
    if reply.kind == REP_ERR_TLS_REQD {
        return Err(HandshakeError::TlsRequired);
    }

    let mut go = Vec::with_capacity(8 + export.len());
    go.extend_from_slice(&(export.len() as u32).to_be_bytes());
    go.extend_from_slice(export.as_bytes());
    go.extend_from_slice(&1u16.to_be_bytes());
    go.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    send_option(stream, OPT_GO, &go)?;
    let mut info = ExportInfo {
        size: 0,
        flags: 0,
        min_block: 1,
        preferred_block: 0,
        max_payload: DEFAULT_MAX_PAYLOAD,
        structured,
    };
    let mut have_export = false;
    loop {
        let reply = read_option_reply(stream, OPT_GO)?;
        match reply.kind {
            REP_ACK => break,
            REP_INFO => {
                let data = &reply.data;
                if data.len() < 2 {
                    return Err(protocol("empty NBD_REP_INFO"));
                }
                match u16::from_be_bytes([data[0], data[1]]) {
                    INFO_EXPORT if data.len() >= 12 => {
                        info.size = u64::from_be_bytes(data[2..10].try_into().unwrap_or_default());
                        info.flags = u16::from_be_bytes([data[10], data[11]]);
                        have_export = true;
                    }
                    INFO_BLOCK_SIZE if data.len() >= 14 => {
                        let word = |at: usize| {
                            u32::from_be_bytes(data[at..at + 4].try_into().unwrap_or_default())
                        };
                        info.min_block = word(2).max(1);
                        info.preferred_block = word(6);
                        let max = word(10);
                        if max > 0 {
                            info.max_payload = max.min(DEFAULT_MAX_PAYLOAD);
                        }
                    }
                    INFO_EXPORT | INFO_BLOCK_SIZE => {
                        return Err(protocol("short NBD_REP_INFO"));
                    }
                    _ => {}
                }
            }
            REP_ERR_UNSUP => return export_name(stream, export, no_zeroes, structured),
            kind if kind & REP_FLAG_ERROR != 0 => return Err(option_error(&reply, export)),
            kind => return Err(protocol(format!("unexpected reply {kind} to NBD_OPT_GO"))),
        }
    }
    if !have_export {
        return Err(protocol("NBD_OPT_GO succeeded without NBD_INFO_EXPORT"));
    }
    Ok(info)
}

/// The old way into transmission: `NBD_OPT_EXPORT_NAME`, whose only error reply is the
/// server closing the connection.
fn export_name<S: Read + Write>(
    stream: &mut S,
    export: &str,
    no_zeroes: bool,
    structured: bool,
) -> Result<ExportInfo, HandshakeError> {
    send_option(stream, OPT_EXPORT_NAME, export.as_bytes())?;
    let size = read_u64(stream).map_err(|err| {
        if err.kind() == io::ErrorKind::UnexpectedEof {
            HandshakeError::UnknownExport(export.to_string())
        } else {
            err.into()
        }
    })?;
    let flags = read_u16(stream)?;
    if !no_zeroes {
        let mut zeroes = [0u8; 124];
        stream.read_exact(&mut zeroes)?;
    }
    Ok(ExportInfo {
        size,
        flags,
        min_block: 1,
        preferred_block: 0,
        max_payload: DEFAULT_MAX_PAYLOAD,
        structured,
    })
}

/// Ends a handshake that will not go on (best effort).
pub fn abort(stream: &mut impl Write) {
    let _ = send_option(stream, OPT_ABORT, &[]);
}

/// A request header.
pub fn request(command: u16, flags: u16, cookie: u64, offset: u64, length: u32) -> [u8; 28] {
    let mut header = [0u8; REQUEST_SIZE];
    header[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    header[4..6].copy_from_slice(&flags.to_be_bytes());
    header[6..8].copy_from_slice(&command.to_be_bytes());
    header[8..16].copy_from_slice(&cookie.to_be_bytes());
    header[16..24].copy_from_slice(&offset.to_be_bytes());
    header[24..28].copy_from_slice(&length.to_be_bytes());
    header
}

/// How long a handshake may take before the server counts as not answering.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::thread;

    /// A scripted server side of the handshake, for tests.
    pub(crate) struct FakeServer {
        pub stream: UnixStream,
    }

    impl FakeServer {
        pub fn greet(&mut self, flags: u16) -> u32 {
            let mut greeting = Vec::new();
            greeting.extend_from_slice(&INIT_MAGIC.to_be_bytes());
            greeting.extend_from_slice(&OPTS_MAGIC.to_be_bytes());
            greeting.extend_from_slice(&flags.to_be_bytes());
            self.stream.write_all(&greeting).unwrap();
            read_u32(&mut self.stream).unwrap()
        }

        pub fn option(&mut self) -> (u32, Vec<u8>) {
            assert_eq!(read_u64(&mut self.stream).unwrap(), OPTS_MAGIC);
            let option = read_u32(&mut self.stream).unwrap();
            let len = read_u32(&mut self.stream).unwrap();
            let mut data = vec![0u8; len as usize];
            self.stream.read_exact(&mut data).unwrap();
            (option, data)
        }

        pub fn reply(&mut self, option: u32, kind: u32, data: &[u8]) {
            let mut reply = Vec::new();
            reply.extend_from_slice(&REPLY_MAGIC.to_be_bytes());
            reply.extend_from_slice(&option.to_be_bytes());
            reply.extend_from_slice(&kind.to_be_bytes());
            reply.extend_from_slice(&(data.len() as u32).to_be_bytes());
            reply.extend_from_slice(data);
            self.stream.write_all(&reply).unwrap();
        }

        /// Answers STRUCTURED_REPLY (with `structured`) and GO with an export of `size`
        /// bytes, `flags` and a `max` payload.
        pub fn accept(&mut self, structured: bool, size: u64, flags: u16, max: u32) -> String {
            self.greet(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
            let (option, _) = self.option();
            assert_eq!(option, OPT_STRUCTURED_REPLY);
            self.reply(
                option,
                if structured { REP_ACK } else { REP_ERR_UNSUP },
                &[],
            );
            let (option, data) = self.option();
            assert_eq!(option, OPT_GO);
            let name_len = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
            let name = String::from_utf8(data[4..4 + name_len].to_vec()).unwrap();
            let mut export = INFO_EXPORT.to_be_bytes().to_vec();
            export.extend_from_slice(&size.to_be_bytes());
            export.extend_from_slice(&flags.to_be_bytes());
            self.reply(OPT_GO, REP_INFO, &export);
            let mut block = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
            for word in [1u32, 4096, max] {
                block.extend_from_slice(&word.to_be_bytes());
            }
            self.reply(OPT_GO, REP_INFO, &block);
            self.reply(OPT_GO, REP_ACK, &[]);
            name
        }
    }

    fn pair() -> (UnixStream, FakeServer) {
        let (client, server) = UnixStream::pair().unwrap();
        (client, FakeServer { stream: server })
    }

    #[test]
    fn go_reports_size_flags_and_block_sizes() {
        let (mut client, mut server) = pair();
        let flags = flags::HAS_FLAGS | flags::SEND_FLUSH | flags::CAN_MULTI_CONN;
        let fake = thread::spawn(move || server.accept(true, 1 << 30, flags, 1 << 20));
        let info = handshake(&mut client, "disk").unwrap();
        assert_eq!(fake.join().unwrap(), "disk");
        assert_eq!(info.size, 1 << 30);
        assert!(info.structured);
        assert!(info.has(flags::CAN_MULTI_CONN));
        assert!(!info.has(flags::READ_ONLY));
        assert_eq!(info.max_payload, 1 << 20);
        assert_eq!(info.preferred_block, 4096);
    }

    #[test]
    fn without_structured_replies_the_handshake_goes_on() {
        let (mut client, mut server) = pair();
        let fake = thread::spawn(move || server.accept(false, 4096, flags::HAS_FLAGS, 0));
        let info = handshake(&mut client, "").unwrap();
        fake.join().unwrap();
        assert!(!info.structured);
        assert_eq!(info.max_payload, DEFAULT_MAX_PAYLOAD);
    }

    #[test]
    fn servers_without_go_get_export_name() {
        let (mut client, mut server) = pair();
        let fake = thread::spawn(move || {
            // No NO_ZEROES: the 124 zero bytes follow.
            assert_eq!(server.greet(FLAG_FIXED_NEWSTYLE), 1);
            let (option, _) = server.option();
            server.reply(option, REP_ERR_UNSUP, &[]);
            let (option, _) = server.option();
            assert_eq!(option, OPT_GO);
            server.reply(option, REP_ERR_UNSUP, &[]);
            let (option, name) = server.option();
            assert_eq!((option, name.as_slice()), (OPT_EXPORT_NAME, &b"x"[..]));
            let mut answer = (8192u64).to_be_bytes().to_vec();
            answer.extend_from_slice(&(flags::HAS_FLAGS | flags::READ_ONLY).to_be_bytes());
            answer.extend_from_slice(&[0u8; 124]);
            server.stream.write_all(&answer).unwrap();
        });
        let info = handshake(&mut client, "x").unwrap();
        fake.join().unwrap();
        assert_eq!(info.size, 8192);
        assert!(info.has(flags::READ_ONLY));
    }

    #[test]
    fn refusals_name_the_reason() {
        for (kind, message, says) in [
            (REP_ERR_UNKNOWN, "", "no export named \"nope\""),
            (REP_ERR_TLS_REQD, "", "requires TLS"),
            (REP_ERR_POLICY, "not you", "not you"),
        ] {
            let (mut client, mut server) = pair();
            let fake = thread::spawn(move || {
                server.greet(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
                let (option, _) = server.option();
                server.reply(option, REP_ACK, &[]);
                let (option, _) = server.option();
                server.reply(option, kind, message.as_bytes());
            });
            let error = handshake(&mut client, "nope").unwrap_err();
            fake.join().unwrap();
            assert!(error.is_permanent());
            assert!(error.to_string().contains(says), "{error}");
        }
    }

    #[test]
    fn a_peer_that_is_not_nbd_is_refused() {
        let (mut client, mut server) = pair();
        server.stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
        let error = handshake(&mut client, "").unwrap_err();
        assert!(error.to_string().contains("not an NBD server"), "{error}");
        let (mut client, server) = pair();
        drop(server);
        assert!(!handshake(&mut client, "").unwrap_err().is_permanent());
    }

    #[test]
    fn request_header_layout() {
        let header = request(command::WRITE, CMD_FLAG_NO_HOLE, 0x0102, 0x0304, 0x0506);
        assert_eq!(&header[0..4], &[0x25, 0x60, 0x95, 0x13]);
        assert_eq!(&header[4..8], &[0, 2, 0, 1]);
        assert_eq!(
            u64::from_be_bytes(header[8..16].try_into().unwrap()),
            0x0102
        );
        assert_eq!(
            u64::from_be_bytes(header[16..24].try_into().unwrap()),
            0x0304
        );
        assert_eq!(
            u32::from_be_bytes(header[24..28].try_into().unwrap()),
            0x0506
        );
    }
}
