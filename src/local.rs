//! What a connection's plaintext meets on our side: stdin/stdout, shared by every connection
//! of the run (see `stdio`), or a stream of its own — a child process (`-e`/`-c`, see
//! `exec`) or a plain TCP connection (a tunnel: `listen --to`, `connect --from`).
//!
//! Which local end a run's connections have is one value, [`LocalEnd`], decided in
//! `settings`. Here is what each kind holds, how it is started, registered, woken and let go,
//! and how each kind moves its bytes to and from the connection's TLS socket (stdin → TLS →
//! stdout; the own stream's output → TLS → its input); the session decides when, by its
//! rules.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use mio::event::Event;
use mio::{Interest, Registry};

use crate::backend::{Backend, Routes};
use crate::describe;
use crate::error::io_phrase;
use crate::events::{attempt, token, Part, Ready};
use crate::exec::{Child, Fed, Program};
use crate::net::{Dialer, CONNECT_TIMEOUT};
use crate::report;
use crate::stdio::{Broadcast, Chunk, Next, Sink};
use crate::stream::{Endpoint, Peer, Stream};
use crate::tls_socket::TlsSocket;
use crate::wire::Wire;

/// Which local end the connections of a run have: decided once, from the flags, and carried
/// to each session as it is.
#[derive(Clone, Debug)]
pub(crate) enum LocalEnd {
    /// stdin/stdout, shared by every connection; `crlf` (`-C`): stdin's LF goes out as CR LF.
    Stdio { direction: Direction, crlf: bool },
    /// `-e` / `-c`: this program, run for each connection.
    Exec(Program),
    /// `listen --to`: each admitted client's own connection to the backend its SNI routes
    /// it to.
    Backend(Routes),
    /// `connect --from`: the plain connection each TLS connection was made for.
    Accepted,
}

/// Which ways stdin/stdout carry data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Both,
    /// `--send-only`: nothing goes to stdout, and close_notify goes at stdin EOF whatever
    /// the TLS version.
    SendOnly,
    /// `--recv-only`: stdin is never read; our direction is complete from the start.
    RecvOnly,
}

impl LocalEnd {
    /// stdin/stdout's direction, if they are the local end.
    pub(crate) fn stdio(&self) -> Option<Direction> {
        match self {
            LocalEnd::Stdio { direction, .. } => Some(*direction),
            _ => None,
        }
    }

    /// Whether the local end is a TCP connection (a tunnel).
    pub(crate) fn is_tunnel(&self) -> bool {
        matches!(self, LocalEnd::Backend(_) | LocalEnd::Accepted)
    }
}

/// Who a connection's client is, for its local end.
pub(crate) struct Client<'a> {
    /// How messages name it.
    pub label: &'a str,
    /// Its address.
    pub addr: Option<&'a Peer>,
    /// Where it reached us, when that is not our socket's address (a PROXY header said).
    pub ours: Option<Endpoint>,
}

pub(crate) enum Local {
    /// stdin/stdout: the next stdin chunk to send and how far into it; the stdout chunk being
    /// filled during a turn, and the stdout chunk number by which everything received is
    /// written.
    Stdio {
        next: u64,
        offset: usize,
        out: Option<Chunk>,
        upto: u64,
    },
    /// A stream of this connection's own: a child, or a TCP connection, started once the
    /// handshake is done (or there from the start); `leftover` is output TLS did not take.
    Own { end: Option<End>, leftover: Vec<u8> },
}

/// A connection's own local stream.
pub(crate) enum End {
    Child(Child),
    Tcp(TcpEnd),
}

/// A plain TCP connection as a local end (tunnels).
#[allow(
    clippy::struct_excessive_bools,
    reason = "what the socket has done (connected, EOF, shut down), each observed apart"
)]
pub(crate) struct TcpEnd {
    pub sock: Stream,
    pub ready: Ready,
    /// Bytes to send before the peer's (a PROXY protocol header).
    pub first: Vec<u8>,
    /// Our write side is shut down (the TLS peer ended its direction).
    shut: bool,
    /// The TLS peer ended its direction: shut ours down once `first` is written.
    shut_wanted: bool,
    /// The far end closed its side (FIN).
    eof: bool,
    /// The addresses still to try if this connection is refused before it is made (a
    /// backend), and what to send first again on the next.
    dial: Option<Box<Dialer>>,
    header: Vec<u8>,
    /// The connection was made (a byte moved, or the socket has a peer): no more retries.
    connected: bool,
}

impl TcpEnd {
    pub(crate) fn new(sock: Stream, first: Vec<u8>) -> TcpEnd {
        TcpEnd {
            sock,
            ready: Ready::default(),
            header: first.clone(),
            dial: None,
            connected: false,
            first,
            shut: false,
            shut_wanted: false,
            eof: false,
        }
    }

    /// A connection we are making: nothing is read from it before its first event (its
    /// registration reports at once whatever is already there).
    pub(crate) fn dialed(sock: Stream, first: Vec<u8>) -> TcpEnd {
        let mut end = TcpEnd::new(sock, first);
        end.ready.read = false;
        end
    }

    /// Until when the address being tried may take to answer (the dialer gives each its
    /// time); then the next is tried.
    fn until(&self) -> Option<Instant> {
        self.dial.as_ref().and_then(|d| d.attempt_deadline())
    }

    /// The connection is `dialer`'s, which tries the next address if this one refuses.
    pub(crate) fn or_else(mut self, dialer: Dialer) -> TcpEnd {
        self.dial = Some(Box::new(dialer));
        self
    }
}

impl End {
    /// Write what goes first (a PROXY header) as far as the socket takes it, whether or not
    /// the peer has sent anything (a backend that speaks first waits for it); then the FIN
    /// that waited for it. True once nothing is pending.
    pub(crate) fn flush_first(&mut self) -> io::Result<bool> {
        let End::Tcp(t) = self else {
            return Ok(true);
        };
        if !t.connected && t.sock.connected() {
            t.connected = true;
        }
        while !t.first.is_empty() {
            match attempt(&mut t.ready.write, || t.sock.write(&t.first)) {
                None => return Ok(false),
                Some(Ok(n)) => {
                    t.connected = true;
                    t.first.drain(..n);
                }
                Some(Err(e)) => return Err(e),
            }
        }
        // Not while the connection is still being made: on Linux that aborts it. The next
        // turn after it is made tries again.
        if t.shut_wanted && !t.shut && t.sock.connected() {
            t.shut = true;
            let _ = t.sock.shutdown(Shutdown::Write);
        }
        Ok(true)
    }

    /// The connection failed before it was made: connect to the next address, if there is
    /// one (true), registered as connection `key`'s.
    pub(crate) fn retry(&mut self, registry: &Registry, key: usize) -> io::Result<bool> {
        let End::Tcp(t) = self else {
            return Ok(false);
        };
        let Some(dial) = t.dial.as_mut() else {
            return Ok(false);
        };
        if t.connected || t.sock.connected() {
            return Ok(false);
        }
        // None left: the error that came is the one to tell.
        let Stream::Tcp(tcp) = &mut t.sock else {
            return Ok(false);
        };
        if dial
            .reopen(tcp, registry, token(key, Part::Tunnel))
            .is_err()
        {
            return Ok(false);
        }
        t.ready = Ready::default();
        t.first = t.header.clone();
        t.eof = false;
        t.shut = false;
        Ok(true)
    }

    /// The address being tried had its time without answering: the next one, if there is
    /// one; else the error that says so.
    pub(crate) fn overdue(&mut self, registry: &Registry, key: usize) -> io::Result<()> {
        let End::Tcp(t) = self else {
            return Ok(());
        };
        match t.until() {
            Some(until) if !t.connected && Instant::now() >= until => {}
            _ => return Ok(()),
        }
        if t.sock.connected() {
            t.connected = true;
            return Ok(());
        }
        let addr = t.dial.as_ref().and_then(|d| d.addr());
        if self.retry(registry, key)? {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "{} did not answer in {}s",
                addr.map_or("the backend".to_string(), |a| a.to_string()),
                CONNECT_TIMEOUT.as_secs()
            ),
        ))
    }

    /// Offer the peer's bytes to the local end.
    pub(crate) fn feed(&mut self, data: &[u8]) -> io::Result<Fed> {
        if !self.flush_first()? {
            return Ok(Fed::Took(0));
        }
        match self {
            End::Child(child) => Ok(child.feed(data)),
            End::Tcp(t) => {
                match attempt(&mut t.ready.write, || t.sock.write(data)) {
                    None => Ok(Fed::Took(0)),
                    Some(Ok(n)) => {
                        t.connected = true;
                        Ok(Fed::Took(n))
                    }
                    // A reset: the tunnel fails, both sides are reset.
                    Some(Err(e)) => Err(e),
                }
            }
        }
    }

    /// Read what the local end has for the peer: `Some(0)` at its EOF, `None` if nothing is
    /// ready; an error (a reset) fails the connection.
    pub(crate) fn drain(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self {
            End::Child(child) => Ok(child.drain(buf)),
            End::Tcp(t) if t.eof => Ok(Some(0)),
            End::Tcp(t) => match attempt(&mut t.ready.read, || t.sock.read(buf)) {
                None => Ok(None),
                Some(Ok(0)) => {
                    t.eof = true;
                    Ok(Some(0))
                }
                Some(Ok(n)) => {
                    t.connected = true;
                    Ok(Some(n))
                }
                Some(Err(e)) => Err(e),
            },
        }
    }

    /// The peer's direction ended: EOF for the child's stdin, FIN for the TCP connection.
    pub(crate) fn close_input(&mut self) {
        match self {
            End::Child(child) => child.close_stdin(),
            End::Tcp(t) => {
                t.shut_wanted = true;
                let _ = self.flush_first();
            }
        }
    }

    /// How the local end finished once its output ended: a child's exit status (`None`
    /// while it runs); a TCP connection has nothing more to say.
    pub(crate) fn exit_status(&mut self) -> Option<Result<(), ExitStatus>> {
        match self {
            End::Child(child) => child
                .exit_status()
                .map(|s| if s.success() { Ok(()) } else { Err(s) }),
            End::Tcp(_) => Some(Ok(())),
        }
    }
}

/// What a local end gave the peer in a turn.
#[derive(Default)]
pub(crate) struct Output {
    /// Bytes taken from it (an own stream's may wait in `leftover` for TLS).
    pub sent: u64,
    pub moved: bool,
    /// Whether the peer took none of what waited for it, as `--stall-timeout` counts it
    /// (`None`: nothing said so this turn).
    pub stalled: Option<bool>,
    pub end: Option<OutputEnd>,
}

/// How a local end's output stopped.
pub(crate) enum OutputEnd {
    /// Its EOF: a child's exit status, if any, says whether that is complete.
    Eof,
    /// Output after the peer ended the whole connection (TLS 1.2): it cannot be delivered.
    Late,
    /// It could not be read (stdin's error).
    Failed(anyhow::Error),
}

impl Local {
    /// The peer's next decrypted bytes (`conn`'s) → our local end (`stdout`, absent with
    /// `--send-only`, for stdio): how many it took (`full` is set when it took none for want
    /// of room), or `None` when a backend address that refused gave way to the next (try
    /// again). An error fails the connection.
    pub(crate) fn receive_from(
        &mut self,
        conn: &mut TlsSocket,
        stdout: Option<&mut Sink>,
        registry: &Registry,
        key: usize,
        full: &mut bool,
    ) -> io::Result<Option<usize>> {
        let child = match self {
            Local::Stdio { out, upto, .. } => {
                return Ok(Some(match stdout {
                    Some(sink) => to_stdout(conn, sink, out, upto, full),
                    // --send-only: what the peer sends is read and dropped.
                    None => conn.deliver(|data| data.len()),
                }));
            }
            Local::Own { end, .. } => end,
        };
        let mut failed = None;
        let n = conn.deliver(|data| match child {
            Some(child) => match child.feed(data) {
                Ok(Fed::Took(n)) => {
                    *full = n == 0;
                    n
                }
                // The child stopped reading: what it would have got is dropped.
                Ok(Fed::Closed) => data.len(),
                Err(e) => {
                    failed = Some(e);
                    0
                }
            },
            None => 0,
        });
        let Some(e) = failed else {
            return Ok(Some(n));
        };
        match child.as_mut().map(|c| c.retry(registry, key)) {
            Some(Ok(true)) => Ok(None),
            _ => Err(e),
        }
    }

    /// The turn's receiving is over: the stdout chunk being filled goes to stdout as it is.
    pub(crate) fn received(&mut self, stdout: Option<&mut Sink>) {
        if let (Local::Stdio { out, upto, .. }, Some(sink)) = (self, stdout) {
            if let Some(chunk) = out.take() {
                let partial = chunk.len > 0;
                let sent = sink.send(chunk);
                if partial {
                    *upto = sent;
                }
            }
        }
    }

    /// Whether everything received has reached our output: stdout has written it (a child's
    /// pipe or a socket took it as it came).
    pub(crate) fn output_written(&self, stdout: Option<&Sink>) -> bool {
        match (self, stdout) {
            (Local::Stdio { upto, .. }, Some(sink)) => sink.written(*upto),
            _ => true,
        }
    }

    /// stdin → `conn`, from where this connection is in it, while rustls's send buffer takes
    /// more (`late`: the peer ended the whole connection, so what stdin still holds cannot
    /// go). `wanted` is set when the connection waits for stdin or has sent a whole chunk.
    pub(crate) fn send_stdin(
        &mut self,
        stdin: &Broadcast,
        conn: &mut TlsSocket,
        late: bool,
        wanted: &mut bool,
    ) -> Output {
        let mut out = Output::default();
        let Local::Stdio { next, offset, .. } = self else {
            return out;
        };
        loop {
            match stdin.at(*next, *offset) {
                Next::Data(bytes) if late && !bytes.is_empty() => {
                    out.end = Some(OutputEnd::Late);
                    break;
                }
                Next::Data(bytes) => {
                    let n = conn.send(bytes);
                    // The peer takes none of the stdin waiting for it.
                    out.stalled = Some(n == 0);
                    if n == 0 {
                        break;
                    }
                    out.sent += n as u64;
                    out.moved = true;
                    *offset += n;
                    if n == bytes.len() {
                        *next += 1;
                        *offset = 0;
                        *wanted = true;
                    }
                }
                Next::Wait => {
                    out.stalled = Some(false);
                    *wanted = true;
                    break;
                }
                Next::End => {
                    out.stalled = Some(false);
                    out.end = Some(match stdin.error() {
                        Some(e) => OutputEnd::Failed(anyhow!("reading stdin: {}", io_phrase(e))),
                        None => {
                            out.moved = true;
                            OutputEnd::Eof
                        }
                    });
                    break;
                }
            }
        }
        out
    }

    /// The connection's own local end → `conn`, while rustls's send buffer takes more
    /// (`late`: the peer ended the whole connection). An error fails the connection.
    pub(crate) fn send_to(
        &mut self,
        conn: &mut TlsSocket,
        scratch: &mut [u8],
        late: bool,
        registry: &Registry,
        key: usize,
    ) -> io::Result<Output> {
        let mut out = Output::default();
        let Local::Own {
            end: Some(child),
            leftover,
        } = self
        else {
            return Ok(out);
        };
        // A PROXY header goes to the backend at once: it may speak first.
        child.flush_first()?;
        // Read the child only when the socket has taken everything: that is the
        // backpressure, and it means rustls takes a whole read.
        while !conn.wants_write() {
            if !leftover.is_empty() {
                let n = conn.send(leftover);
                leftover.drain(..n);
                out.moved |= n > 0;
                continue;
            }
            let drained = match child.drain(scratch) {
                Ok(drained) => drained,
                // A backend address that refused: the next one, if any.
                Err(_) if matches!(child.retry(registry, key), Ok(true)) => break,
                Err(e) => return Err(e),
            };
            match drained {
                None => break,
                Some(0) => {
                    out.end = Some(OutputEnd::Eof);
                    out.moved = true;
                    break;
                }
                Some(_) if late => {
                    out.end = Some(OutputEnd::Late);
                    break;
                }
                Some(n) => {
                    let took = conn.send(&scratch[..n]);
                    leftover.extend_from_slice(&scratch[took..n]);
                    out.sent += n as u64;
                    out.moved = true;
                }
            }
        }
        // A tunnel whose TLS peer takes none of what the local side sends: bounded by
        // --stall-timeout, as for stdin (a child's output is not).
        out.stalled = Some(matches!(child, End::Tcp(_)) && conn.wants_write() && !out.moved);
        Ok(out)
    }

    pub(crate) fn new(end: &LocalEnd) -> Local {
        match end {
            LocalEnd::Stdio { .. } => Local::Stdio {
                next: 0,
                offset: 0,
                out: None,
                upto: 0,
            },
            _ => Local::Own {
                end: None,
                leftover: Vec::new(),
            },
        }
    }

    /// A readiness event for one of a child's pipes, or for the TCP connection.
    pub(crate) fn on_event(&mut self, part: Part, event: &Event) {
        match self {
            Local::Own {
                end: Some(End::Child(child)),
                ..
            } => match part {
                Part::ChildStdin => child.ready.write = true,
                Part::ChildStdout => child.ready.read = true,
                Part::Socket | Part::Tunnel => {}
            },
            Local::Own {
                end: Some(End::Tcp(t)),
                ..
            } => t.ready.update(event),
            _ => {}
        }
    }

    /// The error a TCP local end reported while it may not have been read or written (a
    /// reset under back-pressure), if any.
    pub(crate) fn failure(&mut self) -> Option<io::Error> {
        let Local::Own {
            end: Some(End::Tcp(t)),
            ..
        } = self
        else {
            return None;
        };
        if !std::mem::take(&mut t.ready.failed) {
            return None;
        }
        t.sock.take_error().ok().flatten()
    }

    /// Until when the backend address being tried may take to answer, while it has not.
    pub(crate) fn dial_deadline(&self) -> Option<Instant> {
        match self {
            Local::Own {
                end: Some(End::Tcp(t)),
                ..
            } if !t.connected => t.until(),
            _ => None,
        }
    }

    /// The backend address being tried had its time: see [`End::overdue`].
    pub(crate) fn overdue(&mut self, registry: &Registry, key: usize) -> io::Result<()> {
        match self {
            Local::Own { end: Some(end), .. } => end.overdue(registry, key),
            Local::Own { .. } | Local::Stdio { .. } => Ok(()),
        }
    }

    /// Whether the local end is a TCP connection (a tunnel).
    pub(crate) fn is_tcp(&self) -> bool {
        matches!(
            self,
            Local::Own {
                end: Some(End::Tcp(_)),
                ..
            }
        )
    }

    /// A TCP local end there from the start (`connect --from`).
    pub(crate) fn tcp(end: TcpEnd) -> Local {
        Local::Own {
            end: Some(End::Tcp(end)),
            leftover: Vec::new(),
        }
    }

    /// Register a TCP local end, if there is one, as connection `key`'s.
    pub(crate) fn register(&mut self, registry: &Registry, key: usize) -> io::Result<()> {
        if let Local::Own {
            end: Some(End::Tcp(t)),
            ..
        } = self
        {
            registry.register(
                &mut t.sock,
                token(key, Part::Tunnel),
                Interest::READABLE | Interest::WRITABLE,
            )?;
        }
        Ok(())
    }

    /// The peer is admitted (the handshake is done): start connection `key`'s own local end
    /// as `end` says — run its program, or connect to its backend — and register it, for
    /// `peer`; what `-v` says of the start comes back.
    pub(crate) fn start(
        &mut self,
        end: &LocalEnd,
        conn: &TlsSocket,
        peer: Client<'_>,
        registry: &Registry,
        key: usize,
    ) -> Result<Option<String>> {
        let Client { label, addr, ours } = peer;
        match end {
            LocalEnd::Backend(routes) => {
                let Some((backend, chosen)) = routes.pick(sni_of(conn)) else {
                    return Err(no_route(sni_of(conn), label));
                };
                // Only now, the client admitted, is the backend connected.
                let client = Client { label, addr, ours };
                self.dial(backend, conn, client, Some(&conn.tls), registry, key)?;
                let route = match routes.named.is_empty() {
                    true => String::new(),
                    false => format!(" ({chosen})"),
                };
                Ok(Some(format!("connecting to {}{route}", backend.name())))
            }
            LocalEnd::Exec(program) => {
                let env = describe::child_env(&conn.tls);
                let pid = self.spawn(program, addr, &env, registry, key)?;
                Ok(Some(format!(
                    "started '{}' (pid {pid})",
                    report::escape(&program.text)
                )))
            }
            LocalEnd::Stdio { .. } | LocalEnd::Accepted => Ok(None),
        }
    }

    /// `--passthrough`: connect connection `key`'s client to `backend`, which does the TLS
    /// handshake itself, and register it.
    pub(crate) fn start_plain(
        &mut self,
        backend: &Backend,
        conn: &TlsSocket,
        peer: Client<'_>,
        registry: &Registry,
        key: usize,
    ) -> Result<()> {
        self.dial(backend, conn, peer, None, registry, key)
    }

    /// Connect connection `key`'s local end to `backend` for `peer` (a PROXY v2 header tells
    /// it of `tls`, the session terminated here), and register it.
    fn dial(
        &mut self,
        backend: &Backend,
        conn: &TlsSocket,
        peer: Client<'_>,
        tls: Option<&rustls::Connection>,
        registry: &Registry,
        key: usize,
    ) -> Result<()> {
        let Client { label, addr, ours } = peer;
        let dialed = backend
            .dial(addr, || ours.or_else(|| conn.sock.stream.local()), tls)
            .map_err(|e| e.context(label.to_string()))?;
        let end = TcpEnd::dialed(dialed.sock, dialed.header);
        *self = Local::tcp(match dialed.dialer {
            Some(dialer) => end.or_else(dialer),
            None => end,
        });
        Ok(self.register(registry, key)?)
    }

    /// Start `program` for connection `key` (from `addr`) and register its pipes.
    fn spawn(
        &mut self,
        program: &Program,
        addr: Option<&Peer>,
        env: &[(&'static str, String)],
        registry: &Registry,
        key: usize,
    ) -> Result<u32> {
        let Local::Own { end, .. } = self else {
            return Ok(0);
        };
        let mut spawned = program.spawn(addr, env)?;
        if let Some(pipe) = spawned.stdin.as_mut() {
            registry.register(pipe, token(key, Part::ChildStdin), Interest::WRITABLE)?;
        }
        if let Some(pipe) = spawned.stdout.as_mut() {
            registry.register(pipe, token(key, Part::ChildStdout), Interest::READABLE)?;
        }
        let pid = spawned.proc.id();
        *end = Some(End::Child(spawned));
        Ok(pid)
    }

    /// The pid of the child, while there is one.
    pub(crate) fn child_pid(&self) -> Option<u32> {
        match self {
            Local::Own {
                end: Some(End::Child(child)),
                ..
            } => Some(child.proc.id()),
            _ => None,
        }
    }

    /// The child has exited: reap it, keeping its status for when its output ends.
    pub(crate) fn reap_child(&mut self) {
        if let Local::Own {
            end: Some(End::Child(child)),
            ..
        } = self
        {
            child.exit_status();
        }
    }

    /// The connection is over: deregister and close the child's pipes, and hand the child
    /// back to be reaped; a TCP local end is closed, with a reset unless the connection
    /// ended well (`ok`).
    pub(crate) fn close(self, registry: &Registry, ok: bool) -> Option<Child> {
        let Local::Own { end: Some(end), .. } = self else {
            return None;
        };
        let mut child = match end {
            End::Child(child) => child,
            End::Tcp(mut t) => {
                let _ = registry.deregister(&mut t.sock);
                if !ok {
                    let _ = socket2::SockRef::from(&t.sock).set_linger(Some(Duration::ZERO));
                }
                return None;
            }
        };
        if let Some(pipe) = child.stdin.as_mut() {
            let _ = registry.deregister(pipe);
        }
        if let Some(pipe) = child.stdout.as_mut() {
            let _ = registry.deregister(pipe);
        }
        child.close();
        Some(child)
    }
}

/// A passed-through connection (`--passthrough`): the client's raw bytes and the backend's,
/// each way through a bounded buffer, and how each way ended.
#[derive(Default)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "each way's EOF and shutdown, each observed apart"
)]
pub(crate) struct Plain {
    up: Held,
    down: Held,
    up_eof: bool,
    up_shut: bool,
    down_eof: bool,
    down_shut: bool,
    /// Bytes from the client, and to it.
    pub received: u64,
    pub sent: u64,
    /// The backend, as messages name it.
    pub to: String,
}

/// How much of either way waits in a [`Plain`] at most.
const PLAIN_BUF: usize = 64 * 1024;

/// One way's bytes between the socket they were read from and the one they go to: read
/// straight into the free end, written from the front (allocated at the first read).
#[derive(Default)]
struct Held {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Where the next read goes: all of the buffer once it is empty, else what is left
    /// after the bytes held (moved to the front when the end is reached).
    fn free(&mut self) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = vec![0; PLAIN_BUF];
        }
        if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    fn has_room(&self) -> bool {
        self.end - self.start < PLAIN_BUF
    }

    fn filled(&mut self, n: usize) {
        self.end += n;
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
}

impl Plain {
    /// A relay to the backend named `to`.
    pub(crate) fn to(to: String) -> Plain {
        Plain {
            to,
            ..Plain::default()
        }
    }

    /// Both ways ended in order (each FIN passed on).
    pub(crate) fn done(&self) -> bool {
        self.up_shut && self.down_shut
    }
}

impl Local {
    /// `--passthrough`: move the client's bytes (`wire`, readiness `ready`) to the backend
    /// and back, as far as both sockets take them, passing each FIN on. True if anything
    /// moved; an error (a reset, a backend that is not there) fails the connection.
    pub(crate) fn pump_plain(
        &mut self,
        wire: &mut Wire,
        ready: &mut Ready,
        plain: &mut Plain,
        registry: &Registry,
        key: usize,
    ) -> io::Result<bool> {
        let Local::Own { end: Some(end), .. } = self else {
            return Ok(false);
        };
        let mut moved = false;
        loop {
            let mut any = false;
            if plain.up.has_room() && !plain.up_eof {
                let free = plain.up.free();
                match attempt(&mut ready.read, || wire.read(free)) {
                    None => {}
                    Some(Ok(0)) => {
                        plain.up_eof = true;
                        any = true;
                    }
                    Some(Ok(n)) => {
                        plain.up.filled(n);
                        plain.received += n as u64;
                        any = true;
                    }
                    Some(Err(e)) => return Err(e),
                }
            }
            if !plain.up.is_empty() {
                match end.feed(plain.up.bytes()) {
                    Ok(Fed::Took(n)) => {
                        plain.up.consume(n);
                        any |= n > 0;
                    }
                    Ok(Fed::Closed) => plain.up.clear(),
                    Err(_) if matches!(end.retry(registry, key), Ok(true)) => break,
                    Err(e) => return Err(e),
                }
            } else if let Err(e) = end.flush_first() {
                if !matches!(end.retry(registry, key), Ok(true)) {
                    return Err(e);
                }
                break;
            }
            if plain.up_eof && plain.up.is_empty() && !plain.up_shut {
                end.close_input();
                plain.up_shut = true;
                any = true;
            }
            if plain.down.has_room() && !plain.down_eof {
                match end.drain(plain.down.free()) {
                    Ok(None) => {}
                    Ok(Some(0)) => {
                        plain.down_eof = true;
                        any = true;
                    }
                    Ok(Some(n)) => {
                        plain.down.filled(n);
                        any = true;
                    }
                    Err(_) if matches!(end.retry(registry, key), Ok(true)) => break,
                    Err(e) => return Err(e),
                }
            }
            if !plain.down.is_empty() {
                match attempt(&mut ready.write, || wire.write(plain.down.bytes())) {
                    None => {}
                    Some(Ok(n)) => {
                        plain.down.consume(n);
                        plain.sent += n as u64;
                        any |= n > 0;
                    }
                    Some(Err(e)) => return Err(e),
                }
            }
            if plain.down_eof && plain.down.is_empty() && !plain.down_shut {
                wire.shutdown_write();
                plain.down_shut = true;
                any = true;
            }
            if !any {
                break;
            }
            moved = true;
        }
        Ok(moved)
    }
}

/// The name a client asked for (SNI).
fn sni_of(conn: &TlsSocket) -> Option<&str> {
    match &conn.tls {
        rustls::Connection::Server(server) => server.server_name(),
        rustls::Connection::Client(_) => None,
    }
}

/// Why a client that asked for `sni` has no backend (`label` names it).
fn no_route(sni: Option<&str>, label: &str) -> anyhow::Error {
    anyhow!(
        "{label}: {}, and there is no default --to HOST:PORT: dropped (give one, or a --to \
         NAME=HOST:PORT for it)",
        match sni {
            Some(name) => format!(
                "no --to route for the name it asked for, {}",
                report::escape(name)
            ),
            None => "it sent no name (SNI)".to_string(),
        }
    )
}

/// A client admitted by its handshake whom `end` has no backend for: why, if so.
pub(crate) fn unrouted(end: &LocalEnd, conn: &TlsSocket, label: &str) -> Option<anyhow::Error> {
    match end {
        LocalEnd::Backend(routes) if routes.pick(sni_of(conn)).is_none() => {
            Some(no_route(sni_of(conn), label))
        }
        _ => None,
    }
}

/// The peer's next decrypted bytes → the stdout chunk being filled (`out`, a new one when
/// there is none; `full` is set when stdout has none free); a full chunk goes to stdout, and
/// `upto` becomes its number.
fn to_stdout(
    conn: &mut TlsSocket,
    sink: &mut Sink,
    out: &mut Option<Chunk>,
    upto: &mut u64,
    full: &mut bool,
) -> usize {
    let n = conn.deliver(|data| {
        if out.is_none() {
            *out = sink.buffer();
        }
        let Some(chunk) = out.as_mut() else {
            *full = true;
            return 0;
        };
        let n = data.len().min(chunk.buf.len() - chunk.len);
        chunk.buf[chunk.len..chunk.len + n].copy_from_slice(&data[..n]);
        chunk.len += n;
        n
    });
    if let Some(chunk) = out.take_if(|c| c.len == c.buf.len()) {
        *upto = sink.send(chunk);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes leave in the order they came, however the reads and writes are cut; the room
    /// left after the held bytes is reclaimed once the end is reached.
    #[test]
    fn held_bytes_keep_their_order() {
        let mut held = Held::default();
        let mut next = 0u8;
        let mut expected = 0u8;
        for round in 0..50usize {
            let take = 1 + (round * 7919) % 40_000;
            let free = held.free();
            let n = take.min(free.len());
            for b in &mut free[..n] {
                *b = next;
                next = next.wrapping_add(1);
            }
            held.filled(n);
            assert!(held.end - held.start <= PLAIN_BUF);
            let give = (round * 104_729) % 50_000;
            let out = give.min(held.bytes().len());
            for &b in &held.bytes()[..out] {
                assert_eq!(b, expected);
                expected = expected.wrapping_add(1);
            }
            held.consume(out);
        }
        for &b in held.bytes() {
            assert_eq!(b, expected);
            expected = expected.wrapping_add(1);
        }
        assert_eq!(expected, next);
        held.clear();
        assert!(held.is_empty());
    }
}
