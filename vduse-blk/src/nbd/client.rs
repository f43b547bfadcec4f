//! One NBD connection that survives its server: requests are pipelined, and when the
//! connection drops they wait, are sent again once it is back, and fail when `timeout`
//! has passed since they arrived.
//!
//! Three kinds of thread touch a [`Client`]:
//! - **submitters** (queue workers) call `Client::submit`: the request goes into the
//!   table of outstanding requests, then onto the socket if the connection is up;
//! - the **receiver** of the current connection reads replies, copies read data straight
//!   into guest memory, and finishes requests;
//! - the **supervisor** connects and reconnects, sends again what the last connection
//!   left unanswered, drops a connection whose server stopped answering, and fails the
//!   requests whose time is up while there is no connection.
//!
//! Only the receiver and the supervisor remove requests from the table, and the
//! supervisor only while no receiver runs, so a request is finished exactly once. The
//! receiver never waits for the socket's send side (sends go through the `writer` lock,
//! which it does not take): a server that stops reading requests until its replies are
//! read cannot deadlock us.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::protocol::{self, ExportInfo, HandshakeError, chunk, command};
use super::tls::Tls;
use super::uri::{Endpoint, NbdUri};
use crate::guest::{IoVecs, advance};

/// How often the supervisor looks at the clock while connected.
const TICK: Duration = Duration::from_millis(250);
/// Longest pause between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often "still reconnecting" is logged.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// Receive buffer of a connection: reply headers, and read data that arrive with them.
const INBOUND_BUFFER: usize = 64 * 1024;

/// Called once when a request is finished: `true` when it succeeded.
pub type Finish = Box<dyn FnOnce(bool) + Send>;

/// A socket to an NBD server.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// A Unix domain socket.
    Unix(UnixStream),
}

impl Stream {
    /// Connects to `endpoint`, trying each address a host name resolves to.
    pub fn connect(endpoint: &Endpoint, timeout: Duration) -> io::Result<Stream> {
        match endpoint {
            Endpoint::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
            Endpoint::Tcp { host, port } => {
                let mut last = io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host} resolves to no address"),
                );
                for address in (host.as_str(), *port).to_socket_addrs()? {
                    match TcpStream::connect_timeout(&address, timeout) {
                        Ok(stream) => {
                            stream.set_nodelay(true)?;
                            return Ok(Stream::Tcp(stream));
                        }
                        Err(error) => last = error,
                    }
                }
                Err(last)
            }
        }
    }

    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(stream) => Stream::Tcp(stream.try_clone()?),
            Stream::Unix(stream) => Stream::Unix(stream.try_clone()?),
        })
    }

    pub(crate) fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.set_nonblocking(true),
            Stream::Unix(stream) => stream.set_nonblocking(true),
        }
    }

    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(stream) => stream.shutdown(Shutdown::Both),
            Stream::Unix(stream) => stream.shutdown(Shutdown::Both),
        };
    }

    fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => {
                stream.set_read_timeout(read)?;
                stream.set_write_timeout(write)
            }
            Stream::Unix(stream) => {
                stream.set_read_timeout(read)?;
                stream.set_write_timeout(write)
            }
        }
    }
}

impl std::os::fd::AsFd for Stream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Stream::Tcp(stream) => stream.as_fd(),
            Stream::Unix(stream) => stream.as_fd(),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(stream) => stream.as_raw_fd(),
            Stream::Unix(stream) => stream.as_raw_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.read(buf),
            Stream::Unix(stream) => stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.write(buf),
            Stream::Unix(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The socket could not be connected.
    #[error("cannot connect to {endpoint}: {cause}")]
    Connect {
        /// Where.
        endpoint: Endpoint,
        /// Why.
        cause: io::Error,
    },
    /// The handshake failed.
    #[error("NBD handshake with {endpoint} failed: {cause}")]
    Handshake {
        /// Where.
        endpoint: Endpoint,
        /// Why.
        cause: HandshakeError,
    },
}

impl ConnectError {
    /// True when retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            ConnectError::Connect { .. } => false,
            ConnectError::Handshake { cause, .. } => cause.is_permanent(),
        }
    }
}

/// Connects to `uri` and runs the handshake (with `tls` for an `nbds` URI);
/// `io_timeout` bounds each send afterwards. With TLS the stream returned is the plaintext
/// end of the session's tunnel.
pub fn open(
    uri: &NbdUri,
    io_timeout: Duration,
    tls: Option<&Tls>,
) -> Result<(Stream, ExportInfo), ConnectError> {
    let endpoint = &uri.endpoint;
    let stream = Stream::connect(endpoint, protocol::HANDSHAKE_TIMEOUT).map_err(|cause| {
        ConnectError::Connect {
            endpoint: endpoint.clone(),
            cause,
        }
    })?;
    let handshake = |mut stream: Stream| -> Result<(Stream, ExportInfo), HandshakeError> {
        let handshake_timeout = Some(protocol::HANDSHAKE_TIMEOUT);
        stream.set_timeouts(handshake_timeout, handshake_timeout)?;
        let greeting = protocol::greet(&mut stream)?;
        let mut stream = match tls {
            None => stream,
            Some(tls) => {
                protocol::starttls(&mut stream)?;
                let tunnel = tls.start(stream).map_err(|error| {
                    // rustls reports what it refused (a certificate, a name) as InvalidData.
                    if error.kind() == io::ErrorKind::InvalidData {
                        HandshakeError::Tls(error.to_string())
                    } else {
                        error.into()
                    }
                })?;
                tunnel.set_timeouts(handshake_timeout, handshake_timeout)?;
                tunnel
            }
        };
        let info = match protocol::negotiate(&mut stream, &uri.export, greeting) {
            Ok(info) => info,
            Err(error) => {
                if matches!(error, HandshakeError::Protocol(_)) {
                    protocol::abort(&mut stream);
                }
                return Err(error);
            }
        };
        // Replies may take as long as the server likes (the supervisor watches the clock);
        // a send that cannot go on for `io_timeout` means the server is gone.
        stream.set_timeouts(None, Some(io_timeout))?;
        Ok((stream, info))
    };
    handshake(stream).map_err(|cause| ConnectError::Handshake {
        endpoint: endpoint.clone(),
        cause: match cause {
            // SO_RCVTIMEO ran out: say so rather than "Resource temporarily unavailable".
            HandshakeError::Io(error) if error.kind() == io::ErrorKind::WouldBlock => {
                HandshakeError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no answer within {} s (a server busy with other clients? qemu-nbd \
                         serves one at a time unless --shared)",
                        protocol::HANDSHAKE_TIMEOUT.as_secs()
                    ),
                ))
            }
            cause => cause,
        },
    })
}

/// What a request asks of the export.
#[derive(Debug)]
pub(crate) struct Command {
    /// `NBD_CMD_*`.
    pub command: u16,
    /// `NBD_CMD_FLAG_*`.
    pub flags: u16,
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub len: u32,
    /// For READ and WRITE: the guest memory the data goes to or comes from (`len` bytes).
    pub data: Option<IoVecs>,
}

/// A request the server has not answered yet.
struct Outstanding {
    cookie: u64,
    command: Command,
    arrival: Instant,
    /// The connection it was last sent on (0: none yet).
    sent_on: AtomicU64,
    /// An error chunk came for it.
    failed: AtomicBool,
    finish: Mutex<Option<Finish>>,
}

impl Outstanding {
    fn finish(&self, ok: bool) {
        let finish = self.finish.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(finish) = finish {
            finish(ok);
        }
    }

    fn is_finished(&self) -> bool {
        self.finish
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }
}

/// The socket's send side and the connection it belongs to.
struct Writer {
    connection: u64,
    stream: Stream,
}

struct Shared {
    uri: NbdUri,
    /// For `nbds` URIs.
    tls: Option<Tls>,
    info: ExportInfo,
    /// "connection 2 to unix:/run/nbd.sock", for logs.
    label: String,
    timeout: Duration,
    outstanding: Mutex<HashMap<u64, Arc<Outstanding>>>,
    writer: Mutex<Option<Writer>>,
    next_cookie: AtomicU64,
    stopping: AtomicBool,
    /// Wakes the supervisor from its pauses.
    wake: (Mutex<()>, Condvar),
    /// Requests failed so far, to log them sparingly.
    failures: AtomicU64,
}

impl Shared {
    fn outstanding(&self) -> MutexGuard<'_, HashMap<u64, Arc<Outstanding>>> {
        self.outstanding.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn writer(&self) -> MutexGuard<'_, Option<Writer>> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `requests` on the current connection, in one `sendmsg` where they fit, but
    /// those that went there already. Returns false when there is no connection.
    fn send(&self, requests: &[Arc<Outstanding>]) -> bool {
        let mut writer = self.writer();
        let Some(writer) = writer.as_mut() else {
            return false;
        };
        let to_send: Vec<&Outstanding> = requests
            .iter()
            .map(|request| &**request)
            .filter(|request| {
                request.sent_on.load(Ordering::Relaxed) != writer.connection
                    && !request.is_finished()
            })
            .collect();
        if to_send.is_empty() {
            return true;
        }
        // Every header first, so that the iovecs can point into a vector that no longer
        // moves.
        let headers: Vec<[u8; protocol::REQUEST_SIZE]> = to_send
            .iter()
            .map(|request| {
                let command = &request.command;
                request.sent_on.store(writer.connection, Ordering::Relaxed);
                protocol::request(
                    command.command,
                    command.flags,
                    request.cookie,
                    command.offset,
                    command.len,
                )
            })
            .collect();
        let mut iovecs = Vec::with_capacity(to_send.len() * 2);
        for (request, header) in to_send.iter().zip(&headers) {
            iovecs.push(libc::iovec {
                iov_base: header.as_ptr().cast_mut().cast(),
                iov_len: header.len(),
            });
            let command = &request.command;
            if command.command == command::WRITE {
                if let Some(data) = &command.data {
                    iovecs.extend_from_slice(&data.0);
                }
            }
        }
        if let Err(error) = send_all(&writer.stream, iovecs) {
            // The receiver sees the connection end and the supervisor takes over; the
            // request goes again on the next connection.
            log::debug!("{}: send failed: {error}", self.label);
            writer.stream.shutdown();
        }
        true
    }

    /// Finishes and forgets request `cookie`.
    fn complete(&self, cookie: u64, ok: bool) {
        let request = self.outstanding().remove(&cookie);
        if let Some(request) = request {
            if !ok {
                self.failed(&request, "the server answered with an error");
            }
            request.finish(ok);
        }
    }

    /// Logs a failed request (the 1st, 2nd, 4th, 8th...).
    fn failed(&self, request: &Outstanding, why: &str) {
        let count = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if count.is_power_of_two() {
            log::warn!(
                "{}: {} of {} bytes at {} failed: {why} ({count} failed request{} so far)",
                self.label,
                command_name(request.command.command),
                request.command.len,
                request.command.offset,
                if count == 1 { "" } else { "s" }
            );
        }
    }

    /// Fails the requests that arrived `timeout` or more ago; returns how many.
    fn expire(&self, now: Instant) -> usize {
        let expired: Vec<Arc<Outstanding>> = {
            let mut outstanding = self.outstanding();
            let cookies: Vec<u64> = outstanding
                .values()
                .filter(|request| now.duration_since(request.arrival) >= self.timeout)
                .map(|request| request.cookie)
                .collect();
            cookies
                .iter()
                .filter_map(|cookie| outstanding.remove(cookie))
                .collect()
        };
        for request in &expired {
            self.failed(request, "no answer from the server within nbd-timeout");
            request.finish(false);
        }
        expired.len()
    }

    /// Whether some request has waited `timeout` or more.
    fn overdue(&self, now: Instant) -> bool {
        self.outstanding()
            .values()
            .any(|request| now.duration_since(request.arrival) >= self.timeout)
    }

    /// How long until the oldest request's time is up (`None`: none waits).
    fn until_expiry(&self, now: Instant) -> Option<Duration> {
        self.outstanding()
            .values()
            .map(|request| (request.arrival + self.timeout).saturating_duration_since(now))
            .min()
    }

    /// Pauses the supervisor for `pause`, or until woken to stop.
    fn pause(&self, pause: Duration) {
        let (lock, wake) = &self.wake;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        if !self.stopping.load(Ordering::Relaxed) {
            let _ = wake.wait_timeout(guard, pause);
        }
    }
}

fn command_name(command: u16) -> &'static str {
    match command {
        command::READ => "read",
        command::WRITE => "write",
        command::FLUSH => "flush",
        command::TRIM => "trim",
        command::WRITE_ZEROES => "write zeroes",
        _ => "request",
    }
}

/// Writes all of `iovecs` (MSG_NOSIGNAL: a closed peer is an error, not a signal).
fn send_all(stream: &Stream, mut iovecs: Vec<libc::iovec>) -> io::Result<()> {
    while !iovecs.is_empty() {
        let count = iovecs.len().min(crate::guest::IOV_MAX);
        // SAFETY: an all-zero msghdr is valid; the iovec fields are set below.
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        message.msg_iov = iovecs.as_mut_ptr();
        message.msg_iovlen = count;
        // SAFETY: the iovecs point at the request header on the caller's stack and at guest
        // memory the request keeps mapped (its memory snapshot lives until it finishes),
        // both valid for reading for the lengths given.
        let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &message, libc::MSG_NOSIGNAL) };
        if sent < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        advance(&mut iovecs, sent as usize);
    }
    Ok(())
}

/// The receive side of one connection, buffered.
struct Inbound {
    stream: Stream,
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Inbound {
    fn new(stream: Stream) -> Self {
        Self {
            stream,
            buffer: vec![0u8; INBOUND_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let read = loop {
            match self.stream.read(&mut self.buffer[self.end..]) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                other => break other?,
            }
        };
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.end += read;
        Ok(())
    }

    fn exact<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut out = [0u8; N];
        let mut got = 0;
        while got < N {
            if self.start == self.end {
                self.fill()?;
            }
            let take = (self.end - self.start).min(N - got);
            out[got..got + take].copy_from_slice(&self.buffer[self.start..self.start + take]);
            self.start += take;
            got += take;
        }
        Ok(out)
    }

    fn u16(&mut self) -> io::Result<u16> {
        Ok(u16::from_be_bytes(self.exact()?))
    }

    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_be_bytes(self.exact()?))
    }

    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_be_bytes(self.exact()?))
    }

    fn skip(&mut self, mut len: usize) -> io::Result<()> {
        while len > 0 {
            if self.start == self.end {
                self.fill()?;
            }
            let take = (self.end - self.start).min(len);
            self.start += take;
            len -= take;
        }
        Ok(())
    }

    /// Reads `len` bytes into `data` from `position` bytes in: what is buffered is copied,
    /// the rest goes from the socket straight into guest memory.
    fn read_into(&mut self, data: &IoVecs, position: usize, len: usize) -> io::Result<()> {
        let mut target = data.range(position, len);
        let buffered = (self.end - self.start).min(len);
        let mut copied = 0;
        for iovec in &target {
            if copied == buffered {
                break;
            }
            let take = iovec.iov_len.min(buffered - copied);
            // SAFETY: the iovec lies in guest memory that the request keeps mapped until it
            // is finished, which happens only after this copy; `take` is within both it and
            // the buffered bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.buffer[self.start + copied..].as_ptr(),
                    iovec.iov_base.cast::<u8>(),
                    take,
                );
            }
            copied += take;
        }
        self.start += copied;
        advance(&mut target, copied);
        while !target.is_empty() {
            let count = target.len().min(crate::guest::IOV_MAX) as libc::c_int;
            // SAFETY: as above: every iovec is guest memory kept mapped by the request, and
            // no longer than what is left of it.
            let read = unsafe { libc::readv(self.stream.as_raw_fd(), target.as_ptr(), count) };
            if read < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            if read == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            advance(&mut target, read as usize);
        }
        Ok(())
    }
}

/// Fills `len` bytes of `data` from `position` with zeros (a hole in a read).
fn zero(data: &IoVecs, position: usize, len: usize) {
    for iovec in data.range(position, len) {
        // SAFETY: guest memory kept mapped by the request, within its iovecs.
        unsafe { std::ptr::write_bytes(iovec.iov_base.cast::<u8>(), 0, iovec.iov_len) };
    }
}

fn protocol_error(text: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text)
}

/// Reads replies from one connection until it ends; returns why it ended.
fn receive(shared: &Shared, stream: Stream) -> io::Error {
    let mut inbound = Inbound::new(stream);
    loop {
        if let Err(error) = receive_one(shared, &mut inbound) {
            inbound.stream.shutdown();
            return error;
        }
    }
}

fn lookup(shared: &Shared, cookie: u64) -> io::Result<Arc<Outstanding>> {
    shared
        .outstanding()
        .get(&cookie)
        .cloned()
        .ok_or_else(|| protocol_error(format!("reply for unknown cookie {cookie}")))
}

fn receive_one(shared: &Shared, inbound: &mut Inbound) -> io::Result<()> {
    match inbound.u32()? {
        protocol::SIMPLE_REPLY_MAGIC => {
            let error = inbound.u32()?;
            let cookie = inbound.u64()?;
            let request = lookup(shared, cookie)?;
            let command = &request.command;
            if command.command == command::READ && error == 0 {
                if let Some(data) = &command.data {
                    inbound.read_into(data, 0, command.len as usize)?;
                }
            }
            shared.complete(cookie, error == 0);
        }
        protocol::STRUCTURED_REPLY_MAGIC => {
            let flags = inbound.u16()?;
            let kind = inbound.u16()?;
            let cookie = inbound.u64()?;
            let length = inbound.u32()? as usize;
            let request = lookup(shared, cookie)?;
            let command = &request.command;
            let start = command.offset;
            let end = start + u64::from(command.len);
            // Where a chunk of `len` bytes at `offset` goes in the request's data.
            let place = |offset: u64, len: usize| -> io::Result<usize> {
                if command.command != command::READ
                    || offset < start
                    || offset + len as u64 > end
                    || command.data.is_none()
                {
                    return Err(protocol_error(format!(
                        "chunk of {len} bytes at {offset} outside request {start}..{end}"
                    )));
                }
                Ok((offset - start) as usize)
            };
            match kind {
                chunk::NONE if length == 0 => {}
                chunk::OFFSET_DATA if length >= 8 => {
                    let offset = inbound.u64()?;
                    let len = length - 8;
                    let position = place(offset, len)?;
                    if let Some(data) = &command.data {
                        inbound.read_into(data, position, len)?;
                    }
                }
                chunk::OFFSET_HOLE if length == 12 => {
                    let offset = inbound.u64()?;
                    let len = inbound.u32()? as usize;
                    let position = place(offset, len)?;
                    if let Some(data) = &command.data {
                        zero(data, position, len);
                    }
                }
                kind if kind & chunk::ERROR_BIT != 0 && length >= 6 => {
                    let errno = inbound.u32()?;
                    let message_len = usize::from(inbound.u16()?);
                    let message_len = message_len.min(length - 6);
                    let mut message = vec![0u8; message_len];
                    for byte in &mut message {
                        *byte = inbound.exact::<1>()?[0];
                    }
                    inbound.skip(length - 6 - message_len)?;
                    request.failed.store(true, Ordering::Relaxed);
                    log::debug!(
                        "{}: error {errno} for cookie {cookie}: {}",
                        shared.label,
                        String::from_utf8_lossy(&message)
                    );
                }
                kind => {
                    return Err(protocol_error(format!(
                        "chunk type {kind} of {length} bytes"
                    )));
                }
            }
            if flags & protocol::REPLY_FLAG_DONE != 0 {
                shared.complete(cookie, !request.failed.load(Ordering::Relaxed));
            }
        }
        magic => return Err(protocol_error(format!("reply magic {magic:#x}"))),
    }
    Ok(())
}

/// A connection to one NBD export that reconnects by itself.
pub struct Client {
    shared: Arc<Shared>,
    supervisor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("label", &self.shared.label)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts serving requests over `stream`, already through the handshake that gave
    /// `info`; `label` names the connection in logs.
    pub fn start(
        uri: NbdUri,
        tls: Option<Tls>,
        stream: Stream,
        info: ExportInfo,
        timeout: Duration,
        label: String,
    ) -> io::Result<Client> {
        let shared = Arc::new(Shared {
            uri,
            tls,
            info,
            label,
            timeout,
            outstanding: Mutex::new(HashMap::new()),
            writer: Mutex::new(None),
            next_cookie: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
            failures: AtomicU64::new(0),
        });
        let supervisor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("vduse-nbd".into())
                .spawn(move || supervise(&shared, stream))?
        };
        Ok(Client {
            shared,
            supervisor: Some(supervisor),
        })
    }

    /// What the handshake learned.
    pub fn info(&self) -> &ExportInfo {
        &self.shared.info
    }

    /// Sends `command`; `finish` is called once it is answered or has failed.
    pub(crate) fn submit(&self, command: Command, finish: Finish) {
        self.submit_all(vec![(command, finish)]);
    }

    /// Sends `requests` together (one `sendmsg` for a batch); each `finish` is called once
    /// its command is answered or has failed.
    pub(crate) fn submit_all(&self, requests: Vec<(Command, Finish)>) {
        if requests.is_empty() {
            return;
        }
        let arrival = Instant::now();
        let requests: Vec<Arc<Outstanding>> = requests
            .into_iter()
            .map(|(command, finish)| {
                Arc::new(Outstanding {
                    cookie: self.shared.next_cookie.fetch_add(1, Ordering::Relaxed),
                    command,
                    arrival,
                    sent_on: AtomicU64::new(0),
                    failed: AtomicBool::new(false),
                    finish: Mutex::new(Some(finish)),
                })
            })
            .collect();
        // In the table before they are on the wire: a reply can never come first.
        {
            let mut outstanding = self.shared.outstanding();
            for request in &requests {
                outstanding.insert(request.cookie, request.clone());
            }
        }
        // Without a connection the supervisor may be pausing for longer than these have
        // (nbd-timeout under its backoff): wake it to count their deadline in.
        if !self.shared.send(&requests) {
            self.shared.wake.1.notify_all();
        }
    }

    /// Requests not answered yet.
    pub fn outstanding(&self) -> usize {
        self.shared.outstanding().len()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        {
            let mut writer = self.shared.writer();
            if let Some(writer) = writer.as_mut() {
                // A polite goodbye; the server may close without answering.
                let goodbye = protocol::request(command::DISC, 0, 0, 0, 0);
                let _ = writer.stream.write_all(&goodbye);
                writer.stream.shutdown();
            }
        }
        self.shared.wake.1.notify_all();
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.join();
        }
    }
}

/// The supervisor: runs connections one after another until the client stops.
fn supervise(shared: &Arc<Shared>, first: Stream) {
    let mut next = Some(first);
    let mut connection = 0u64;
    let mut lost_at: Option<Instant> = None;
    let mut last_report = Instant::now();
    let mut backoff = Duration::from_millis(50);
    while !shared.stopping.load(Ordering::Relaxed) {
        let stream = match next.take() {
            Some(stream) => stream,
            None => match reconnect(shared) {
                Ok(stream) => stream,
                Err(error) => {
                    let now = Instant::now();
                    let failed = shared.expire(now);
                    let since = now.duration_since(lost_at.unwrap_or(now));
                    if failed > 0 || now.duration_since(last_report) >= REPORT_EVERY {
                        log::warn!(
                            "{}: still reconnecting after {} s ({error}); {} request(s) \
                             waiting, {failed} failed now after nbd-timeout",
                            shared.label,
                            since.as_secs(),
                            shared.outstanding().len()
                        );
                        last_report = now;
                    }
                    // Why: requests only expire here, after an attempt; a full backoff
                    // (up to 2 s) past a deadline made them fail up to 2 s after
                    // nbd-timeout (4 s instead of 2). Wake at the oldest one's deadline.
                    let left = shared.until_expiry(Instant::now());
                    shared.pause(left.map_or(backoff, |left| left.min(backoff)));
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(50);
        connection += 1;
        // Why `control`: a sender stuck in sendmsg on a hung server holds the writer lock
        // (and SO_SNDTIMEO restarts with each partial send), so dropping the connection
        // through the writer waited for it: requests failed at twice nbd-timeout or later.
        // Shutting down this duplicate needs no lock and wakes the sender at once.
        let (reader, control) = match stream.try_clone().and_then(|reader| {
            let control = stream.try_clone()?;
            Ok((reader, control))
        }) {
            Ok(pair) => pair,
            Err(error) => {
                log::warn!("{}: {error}", shared.label);
                lost_at.get_or_insert_with(Instant::now);
                continue;
            }
        };
        *shared.writer() = Some(Writer { connection, stream });
        let (ended_tx, ended) = mpsc::channel::<io::Error>();
        let receiver = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("vduse-nbd-rx".into())
                .spawn(move || {
                    let _ = ended_tx.send(receive(&shared, reader));
                })
        };
        let Ok(receiver) = receiver else {
            *shared.writer() = None;
            shared.pause(MAX_BACKOFF);
            continue;
        };
        // What the last connection left unanswered goes again, oldest first.
        let mut waiting: Vec<Arc<Outstanding>> = shared.outstanding().values().cloned().collect();
        waiting.sort_by_key(|request| request.cookie);
        shared.send(&waiting);
        if let Some(lost) = lost_at.take() {
            log::warn!(
                "{}: reconnected after {:.1} s; {} request(s) sent again",
                shared.label,
                lost.elapsed().as_secs_f64(),
                waiting.len()
            );
        }
        drop(waiting);
        let why = loop {
            match ended.recv_timeout(TICK) {
                Ok(why) => break why,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break io::Error::other("the receiver stopped");
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if shared.stopping.load(Ordering::Relaxed) || shared.overdue(Instant::now()) {
                if !shared.stopping.load(Ordering::Relaxed) {
                    log::warn!(
                        "{}: a request got no answer within nbd-timeout ({} s): dropping \
                         the connection",
                        shared.label,
                        shared.timeout.as_secs()
                    );
                }
                control.shutdown();
            }
        };
        let _ = receiver.join();
        *shared.writer() = None;
        if shared.stopping.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        lost_at = Some(now);
        last_report = now;
        log::warn!(
            "{}: connection lost ({why}); reconnecting, {} request(s) waiting",
            shared.label,
            shared.outstanding().len()
        );
        // Requests already past their time fail now rather than after the first attempt.
        shared.expire(now);
    }
    // Stopping: nothing more will be answered.
    let left: Vec<Arc<Outstanding>> = shared.outstanding().drain().map(|(_, r)| r).collect();
    for request in left {
        request.finish(false);
    }
}

/// One attempt to connect again; the export must still be the one we started with.
fn reconnect(shared: &Shared) -> Result<Stream, String> {
    let (stream, info) = open(&shared.uri, shared.timeout, shared.tls.as_ref())
        .map_err(|error| error.to_string())?;
    let first = &shared.info;
    if info.size != first.size
        || info.has(protocol::flags::READ_ONLY) && !first.has(protocol::flags::READ_ONLY)
    {
        stream.shutdown();
        return Err(format!(
            "the export changed (now {} bytes{}; it was {} bytes{}): not using it",
            info.size,
            if info.has(protocol::flags::READ_ONLY) {
                ", read-only"
            } else {
                ""
            },
            first.size,
            if first.has(protocol::flags::READ_ONLY) {
                ", read-only"
            } else {
                ""
            },
        ));
    }
    Ok(stream)
}
