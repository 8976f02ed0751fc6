//! One connection as the event loop sees it: a TLS connection, what its plaintext meets at our
//! end (stdin/stdout, or a child process with `-e`), and the rules for finishing it.
//!
//! Finishing rules (the stream semantics scripts rely on):
//! - our input ends (stdin EOF, or the child closed its stdout): send close_notify and shut
//!   down the TCP write side (unless `--no-shutdown`), then keep receiving until the peer
//!   closes.
//! - peer close_notify under TLS 1.3: that ends its sending, not its receiving (half-close), so
//!   our input goes on being sent until it ends; then close_notify, and finish once the socket
//!   took it. Under TLS 1.2 a close_notify closes the whole connection (RFC 5246 §7.2.1): answer
//!   it and finish. A terminal on stdin is never waited for. A child is always given the chance
//!   to answer (its stdin is closed and its output is sent until it ends). If the peer no
//!   longer takes bytes (it closed the socket), finish too: it ended the connection cleanly.
//! - peer TCP EOF without close_notify: what arrived is delivered, then exit 6.
//! - a child that stops reading and closes its output: close_notify, then a short wait for
//!   the peer to close (unread bytes would make TCP send a reset instead of our close_notify).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use mio::{Interest, Registry, Token};

use crate::conn::{Conn, ConnError, PeerEnd};
use crate::error::{io_phrase, socket_class, Class};
use crate::exec::{Child, Fed, Program};
use crate::report;
use crate::stdio::{Broadcast, Chunk, Next, Sink};

/// How long to wait for the peer to close after we closed because our end went away.
const LINGER: Duration = Duration::from_secs(2);

/// What the connections of one run share.
pub struct Options<'a> {
    /// Turn a rustls error on the connection named by the second argument into the error to
    /// report. Called right after the failing call, so a verifier's record of the chain it
    /// was shown is still this connection's.
    pub describe: &'a dyn Fn(&rustls::Error, &str) -> anyhow::Error,
    /// How `-v` names the peer's certificate: "server" or "client".
    pub role: &'static str,
    /// `--no-shutdown`: send nothing when our input ends.
    pub no_shutdown: bool,
    /// `-i`: give up after this long without a byte either way.
    pub idle: Option<Duration>,
    /// `-e` / `-c`: run this for each connection instead of using stdin/stdout.
    pub exec: Option<Program>,
    /// Several connections at once: prefix `-v` lines with the peer's name.
    pub many: bool,
    /// stdin is a terminal (never waited for after the peer closed).
    pub stdin_tty: bool,
}

/// What a connection's turn may use besides itself.
pub struct Shared<'s, 'a> {
    pub opts: &'s Options<'a>,
    pub stdin: Option<&'s mut Broadcast>,
    pub stdout: Option<&'s mut Sink>,
    pub registry: &'s Registry,
    /// A buffer for moving a child's output into TLS.
    pub scratch: &'s mut [u8],
    /// Set when the connection waits for stdin or has sent a whole chunk of it.
    pub stdin_wanted: bool,
}

/// What a turn achieved.
pub enum Turn {
    /// Bytes moved or state changed: give it another turn.
    Moved,
    /// Nothing can move until an event arrives.
    Idle,
    /// The connection is over, with this outcome.
    Done(Result<()>),
}

/// What the connection's plaintext meets on our side.
enum End {
    /// stdin/stdout: the next stdin chunk to send and how far into it.
    Stdio { next: u64, offset: usize },
    /// A child, started once the handshake is done; `leftover` is output TLS did not take.
    Exec {
        child: Option<Child>,
        leftover: Vec<u8>,
    },
}

pub struct Peer {
    pub conn: Conn,
    /// How messages name the peer: "example.com:443", "client 192.0.2.1:50000".
    pub label: String,
    addr: Option<SocketAddr>,
    end: End,
    /// Base of this connection's tokens: socket, child stdin, child stdout.
    token: usize,
    /// The handshake must be done by then, and which option said so.
    handshake_deadline: Option<(Instant, &'static str)>,
    established: bool,
    /// The peer sent close_notify.
    peer_done: bool,
    /// Our input has ended (close_notify sent unless `--no-shutdown`).
    input_done: bool,
    /// close_notify is sent; the connection ends once it is on the wire.
    finishing: bool,
    linger: Option<Instant>,
    started: Instant,
    last_activity: Instant,
    received: u64,
    sent: u64,
    /// Waiting in the loop's run queue.
    pub queued: bool,
}

impl Peer {
    pub fn new(
        conn: Conn,
        label: String,
        addr: Option<SocketAddr>,
        handshake_deadline: Option<(Instant, &'static str)>,
        exec: bool,
    ) -> Peer {
        let now = Instant::now();
        Peer {
            conn,
            label,
            addr,
            end: if exec {
                End::Exec {
                    child: None,
                    leftover: Vec::new(),
                }
            } else {
                End::Stdio { next: 0, offset: 0 }
            },
            token: 0,
            handshake_deadline,
            established: false,
            peer_done: false,
            input_done: false,
            finishing: false,
            linger: None,
            started: now,
            last_activity: now,
            received: 0,
            sent: 0,
            queued: false,
        }
    }

    /// Register the socket under tokens starting at `base`.
    pub fn register(&mut self, registry: &Registry, base: usize) -> std::io::Result<()> {
        self.token = base;
        registry.register(
            &mut self.conn.sock,
            Token(base),
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    /// An event for token `base + which`.
    pub fn on_event(&mut self, which: usize, event: &mio::event::Event) {
        match which {
            0 => self.conn.on_event(event),
            1 => {
                if let End::Exec {
                    child: Some(child), ..
                } = &mut self.end
                {
                    child.stdin_ready = true;
                }
            }
            _ => {
                if let End::Exec {
                    child: Some(child), ..
                } = &mut self.end
                {
                    child.stdout_ready = true;
                }
            }
        }
    }

    /// Where this connection is in stdin, while it still sends stdin.
    pub fn stdin_position(&self) -> Option<u64> {
        match self.end {
            End::Stdio { next, .. } if self.established && !self.input_done && !self.finishing => {
                Some(next)
            }
            _ => None,
        }
    }

    /// Whether the handshake is done (a signal then counts as interrupting a transfer).
    pub fn established(&self) -> bool {
        self.established
    }

    /// Move what can move now.
    pub fn turn(&mut self, sh: &mut Shared<'_, '_>) -> Turn {
        match self.step(sh) {
            Ok(Some(moved)) => {
                if moved {
                    self.last_activity = Instant::now();
                    Turn::Moved
                } else {
                    Turn::Idle
                }
            }
            Ok(None) => Turn::Done(Ok(())),
            Err(e) => Turn::Done(Err(e)),
        }
    }

    /// One turn: `Some(moved)` while the connection goes on, `None` when it ended cleanly.
    fn step(&mut self, sh: &mut Shared<'_, '_>) -> Result<Option<bool>> {
        let mut moved = self.receive(sh)?;
        if !self.established && !self.conn.handshaking() {
            self.established = true;
            moved = true;
            self.on_established(sh)?;
        }
        match self.conn.peer_end {
            Some(_) if self.linger.is_some() => return Ok(None),
            Some(_) if !self.established => {
                return Err(Class::Handshake.err(format!(
                    "{} closed the connection during the TLS handshake",
                    self.label
                )))
            }
            Some(PeerEnd::Truncated) => {
                return Err(Class::Truncated.err(format!(
                    "{} closed the connection without close_notify: the data may be truncated",
                    self.label
                )))
            }
            Some(PeerEnd::CloseNotify) if !self.peer_done => {
                self.peer_done = true;
                moved = true;
                if let End::Exec {
                    child: Some(child), ..
                } = &mut self.end
                {
                    child.close_stdin();
                }
            }
            _ => {}
        }
        if !self.finishing && self.should_finish(sh.opts) {
            self.finishing = true;
            self.conn.close();
            moved = true;
            if !self.peer_done {
                self.linger = Some(Instant::now() + LINGER);
            }
        }
        if self.established && !self.finishing && !self.input_done {
            moved |= self.send(sh)?;
        }
        match self.conn.flush() {
            Ok(m) => moved |= m,
            // The peer has closed; if it no longer takes our bytes, we are done anyway.
            Err(_) if self.peer_done || self.linger.is_some() => return Ok(None),
            Err(e) => return Err(self.fail(e, sh.opts)),
        }
        if self.finishing && !self.conn.wants_write() && self.linger.is_none() {
            return Ok(None);
        }
        Ok(Some(moved))
    }

    fn should_finish(&self, opts: &Options<'_>) -> bool {
        match &self.end {
            End::Stdio { .. } => {
                self.peer_done && (self.input_done || opts.stdin_tty || !self.half_close())
            }
            End::Exec { child, .. } => {
                let child_reads = child.as_ref().is_some_and(|c| c.stdin.is_some());
                self.input_done && (self.peer_done || !child_reads)
            }
        }
    }

    /// Whether the protocol lets the peer go on receiving after its close_notify (TLS 1.3).
    fn half_close(&self) -> bool {
        self.conn.tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
    }

    fn fail(&self, e: ConnError, opts: &Options<'_>) -> anyhow::Error {
        match e {
            ConnError::Tls(e) => (opts.describe)(&e, &self.label),
            // A peer that resets before the handshake is done refused the handshake, whatever
            // the moment the reset raced with our ClientHello. (A TCP timeout stays a timeout.)
            ConnError::Io(e) if !self.established && socket_class(&e) == Class::Network => {
                Class::Handshake.err(format!(
                    "{}: {} during the TLS handshake",
                    self.label,
                    io_phrase(&e)
                ))
            }
            ConnError::Io(e) => socket_class(&e).err(format!("{}: {}", self.label, io_phrase(&e))),
        }
    }

    /// Socket → TLS → our end, while our end takes bytes.
    fn receive(&mut self, sh: &mut Shared<'_, '_>) -> Result<bool> {
        let mut moved = false;
        let mut out: Option<Chunk> = None;
        let result = loop {
            match self.conn.fill() {
                Ok(m) => moved |= m,
                Err(e) => break Err(self.fail(e, sh.opts)),
            }
            let n = match &mut self.end {
                End::Stdio { .. } => match sh.stdout.as_deref_mut() {
                    Some(sink) => {
                        let n = self.conn.deliver(|data| {
                            if out.is_none() {
                                out = sink.buffer();
                            }
                            let Some(chunk) = out.as_mut() else {
                                return 0;
                            };
                            let n = data.len().min(chunk.buf.len() - chunk.len);
                            chunk.buf[chunk.len..chunk.len + n].copy_from_slice(&data[..n]);
                            chunk.len += n;
                            n
                        });
                        if let Some(full) = out.take_if(|c| c.len == c.buf.len()) {
                            sink.send(full);
                        }
                        n
                    }
                    None => 0,
                },
                End::Exec { child, .. } => self.conn.deliver(|data| match child {
                    Some(child) => match child.feed(data) {
                        Fed::Took(n) => n,
                        // The child stopped reading: what it would have got is dropped.
                        Fed::Closed => data.len(),
                    },
                    None => 0,
                }),
            };
            if n == 0 {
                break Ok(());
            }
            self.received += n as u64;
            moved = true;
        };
        if let (Some(chunk), Some(sink)) = (out, sh.stdout.as_deref_mut()) {
            sink.send(chunk);
        }
        result.map(|()| moved)
    }

    /// Our end → TLS, while rustls's send buffer takes more.
    fn send(&mut self, sh: &mut Shared<'_, '_>) -> Result<bool> {
        let mut moved = false;
        match &mut self.end {
            End::Stdio { next, offset } => {
                while let Some(stdin) = sh.stdin.as_deref() {
                    match stdin.at(*next, *offset) {
                        Next::Data(bytes) => {
                            let n = self.conn.send(bytes);
                            if n == 0 {
                                break;
                            }
                            self.sent += n as u64;
                            moved = true;
                            *offset += n;
                            if n == bytes.len() {
                                *next += 1;
                                *offset = 0;
                                sh.stdin_wanted = true;
                            }
                        }
                        Next::Wait => {
                            sh.stdin_wanted = true;
                            break;
                        }
                        Next::End => {
                            if let Some(e) = stdin.error() {
                                return Err(anyhow!("reading stdin: {}", io_phrase(e)));
                            }
                            self.input_ended(sh.opts);
                            moved = true;
                            break;
                        }
                    }
                }
            }
            End::Exec { child, leftover } => {
                let Some(child) = child else {
                    return Ok(false);
                };
                // Read the child only when the socket has taken everything: that is the
                // backpressure, and it means rustls takes a whole read.
                while !self.conn.wants_write() {
                    if !leftover.is_empty() {
                        let n = self.conn.send(leftover);
                        leftover.drain(..n);
                        moved |= n > 0;
                        continue;
                    }
                    match child.drain(sh.scratch) {
                        None => break,
                        Some(0) => {
                            self.input_done = true;
                            if !sh.opts.no_shutdown {
                                self.conn.close();
                            }
                            moved = true;
                            break;
                        }
                        Some(n) => {
                            let took = self.conn.send(&sh.scratch[..n]);
                            leftover.extend_from_slice(&sh.scratch[took..n]);
                            self.sent += n as u64;
                            moved = true;
                        }
                    }
                }
            }
        }
        Ok(moved)
    }

    fn input_ended(&mut self, opts: &Options<'_>) {
        self.input_done = true;
        if !opts.no_shutdown {
            self.conn.close();
        }
    }

    fn on_established(&mut self, sh: &mut Shared<'_, '_>) -> Result<()> {
        let prefix = if sh.opts.many {
            format!("{}: ", self.label)
        } else {
            String::new()
        };
        report::session(&self.conn.tls, sh.opts.role, &prefix);
        match &mut self.end {
            End::Stdio { next, .. } => {
                *next = sh.stdin.as_deref().map_or(0, Broadcast::position);
                sh.stdin_wanted = true;
            }
            End::Exec { child, .. } => {
                let Some(program) = &sh.opts.exec else {
                    return Ok(());
                };
                let mut spawned = program.spawn(self.addr)?;
                if let Some(pipe) = spawned.stdin.as_mut() {
                    sh.registry
                        .register(pipe, Token(self.token + 1), Interest::WRITABLE)?;
                }
                if let Some(pipe) = spawned.stdout.as_mut() {
                    sh.registry
                        .register(pipe, Token(self.token + 2), Interest::READABLE)?;
                }
                report::verbose(format_args!(
                    "{prefix}started '{}' (pid {})",
                    report::escape(&program.text),
                    spawned.proc.id()
                ));
                *child = Some(spawned);
            }
        }
        Ok(())
    }

    /// The earliest moment a timer of this connection fires.
    pub fn next_timer(&self, idle: Option<Duration>) -> Option<Instant> {
        let handshake = (!self.established)
            .then_some(self.handshake_deadline)
            .flatten()
            .map(|(at, _)| at);
        let idle = idle.map(|d| self.last_activity + d);
        [handshake, idle, self.linger].into_iter().flatten().min()
    }

    /// Check the timers: `Some` with the outcome if one has fired.
    pub fn expired(&self, now: Instant, idle: Option<Duration>) -> Option<Result<()>> {
        if let Some(at) = self.linger {
            if now >= at {
                return Some(Ok(()));
            }
        }
        if let (false, Some((at, option))) = (self.established, self.handshake_deadline) {
            if now >= at {
                return Some(Err(Class::Timeout.err(format!(
                    "TLS handshake with {} timed out ({option})",
                    self.label
                ))));
            }
        }
        if let Some(idle) = idle {
            if now >= self.last_activity + idle {
                return Some(Err(Class::Timeout.err(format!(
                    "no data from or to {} for {}s (-i)",
                    self.label,
                    idle.as_secs_f64()
                ))));
            }
        }
        None
    }

    /// Start closing now (shutdown on a signal): close_notify, and the child's pipes.
    pub fn shut(&mut self) {
        self.finishing = true;
        self.conn.close();
        if let End::Exec {
            child: Some(child), ..
        } = &mut self.end
        {
            child.close();
        }
    }

    /// Push queued TLS records out; true while some remain.
    pub fn flush_pending(&mut self) -> bool {
        self.conn.flush().is_ok() && self.conn.wants_write()
    }

    /// The connection is over: deregister, log under `-v`, and hand back its child, if any,
    /// to be reaped.
    pub fn close(mut self, registry: &Registry, ok: bool) -> Option<(String, Child)> {
        let _ = registry.deregister(&mut self.conn.sock);
        let label = self.label;
        report::verbose(format_args!(
            "{label}: {} after {:.3}s: {} bytes received, {} bytes sent",
            if ok { "closed" } else { "failed" },
            self.started.elapsed().as_secs_f64(),
            self.received,
            self.sent
        ));
        match self.end {
            End::Exec {
                child: Some(mut child),
                ..
            } => {
                if let Some(pipe) = child.stdin.as_mut() {
                    let _ = registry.deregister(pipe);
                }
                if let Some(pipe) = child.stdout.as_mut() {
                    let _ = registry.deregister(pipe);
                }
                child.close();
                Some((label, child))
            }
            _ => None,
        }
    }
}
