//! One connection as the event loop sees it: a TLS connection, what its plaintext meets at our
//! end (stdin/stdout, or a child process with `-e`), and its lifecycle.
//!
//! The lifecycle is data: a [`Phase`] for the connection and a state for each direction,
//! [`Outbound`] (our input → the peer) and [`Inbound`] (the peer → our output). Failure is not
//! a state: it ends the connection at once with an error, and an ended connection that failed
//! is closed abortively (a TCP reset), so the peer can never take it for a complete transfer.
//!
//! The rules (the man page's HOW A CONNECTION ENDS says them for users):
//! - close_notify promises that our direction is complete: it is sent only once our input
//!   ended cleanly (stdin EOF; a child's EOF *and* exit status 0) and all of it is on the
//!   socket.
//! - stdin's EOF does not end the conversation while the peer is still answering: our
//!   close_notify goes once the peer has closed, or has been silent for `--linger` (counted
//!   from the later of our EOF and its last byte). `--send-only` lingers 0; `--no-shutdown`
//!   and `--recv-only` never close first. A child's EOF (exit 0) and a tunnel's FIN close at
//!   once: the local program is the author. Under TLS 1.3 (RFC 8446 §6.1) our close_notify
//!   ends only our direction; under TLS 1.2 (RFC 5246 §7.2.1) it ends the connection, and the
//!   peer's answer is waited for, bounded.
//! - When the peer's close_notify comes first and we have nothing left to send, ours waits
//!   (briefly) for the peer's FIN: a server that closes its socket right after its
//!   close_notify turns our close_notify into a reset without FIN if ours arrives first. A
//!   reset is no failure once the peer ended in order (close_notify, then FIN after all our
//!   application bytes were acknowledged) and ours was queued.
//! - We acknowledge only what we stored: our TCP FIN (and our close_notify once the peer's
//!   came) goes only when everything the peer sent is written to our output.
//! - Exit 0 needs evidence: our close_notify sent, the peer's received, everything written to
//!   our output, and the peer's FIN after it stored what we sent; that FIN is waited for,
//!   bounded (longer while the peer's TCP is still taking our bytes). A reset instead, or a
//!   write failure after the peer's close_notify, means the peer stopped reading early.
//! - A TLS 1.2 peer close_notify that arrives while input of ours is still unsent means that
//!   input was not delivered: exit 6, never 0.
//! - The peer's TCP EOF without close_notify: what arrived is delivered, then exit 6.
//! - Our output failing, a child killed or exiting non-zero, a signal, a timer, any error:
//!   no close_notify; the connection is reset.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use mio::{Interest, Registry};

use crate::backend::Backend;
use crate::describe;
use crate::error::{io_phrase, socket_class, Class};
use crate::events::{token, Part, Ready};
use crate::exec::{describe_status, Child};
use crate::local::{self, Client, Direction, Local, LocalEnd, OutputEnd, Plain, TcpEnd};
use crate::net::{Dialer, Dialing};
use crate::proxied::ProxyHeader;
use crate::report;
use crate::route::{self, Heard, Stage};
use crate::stdio::{Broadcast, Next, Sink};
use crate::stream::{Endpoint, Peer, Stream};
use crate::tls_socket::{handshake_io_error, ConnError, PeerClose, PeerEnd, TlsSocket};
use crate::trust::Explainer;

/// The longest wait for the peer's FIN after its close_notify, before ours goes (never
/// longer than `--linger`): a server that closes after close_notify does so at once.
const FIN_WAIT: Duration = Duration::from_millis(500);
/// How long the peer may take to confirm the end (its FIN; under TLS 1.2 its close_notify)
/// once nothing of ours is left unacknowledged by its TCP: it may still be writing what it
/// received. While its TCP still takes our bytes, the wait goes on.
const CONFIRM: Duration = Duration::from_secs(5);
/// The wait for a peer's FIN when we sent it nothing: there is nothing to confirm.
const NOTHING_SENT: Duration = Duration::from_secs(2);
/// How long a TLS 1.2 peer's close_notify waits for stdin to say whether it had more.
const UNSENT: Duration = Duration::from_secs(2);
/// How often acknowledgements are looked at while the peer's FIN is in and ours are not.
const ACK_TICK: Duration = Duration::from_millis(50);

/// What the connections of one run share.
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent switches from the flags and the subcommand, read one by one"
)]
pub(crate) struct Options {
    /// Which end we are, and how its TLS errors are told. Called right after the failing
    /// call, so a verifier's record of the chain it was shown is still this connection's.
    pub explain: Explainer,
    /// `--no-shutdown`: hold close_notify until the peer has closed.
    pub no_shutdown: bool,
    /// `--linger`: after stdin's EOF, how long the peer may be silent before our
    /// close_notify ends the conversation (0 with `--send-only`).
    pub linger: Duration,
    /// What each connection's plaintext meets on our side.
    pub local: LocalEnd,
    /// `-i`: give up after this long without a byte from or to the peer.
    pub idle: Option<Duration>,
    /// `--stall-timeout` (`listen -k`): drop a connection that takes none of the stdin
    /// waiting for it for this long, since stdin goes at the pace of the slowest connection.
    pub stall: Option<Duration>,
    /// Several connections at once: prefix `-v` lines with the peer's name.
    pub many: bool,
    /// stdin is a terminal (never waited for after the peer closed).
    pub stdin_tty: bool,
}

/// What a connection's turn may use besides itself.
pub(crate) struct Shared<'s> {
    pub opts: &'s Options,
    pub stdin: Option<&'s mut Broadcast>,
    pub stdout: Option<&'s mut Sink>,
    pub registry: &'s Registry,
    /// A buffer for moving a child's output into TLS, and for discarding.
    pub scratch: &'s mut [u8],
    /// Set when the connection waits for stdin or has sent a whole chunk of it.
    pub stdin_wanted: bool,
}

/// What a turn achieved.
pub(crate) enum Turn {
    /// Bytes moved or state changed: give it another turn.
    Moved,
    /// Nothing can move until an event arrives.
    Idle,
    /// The connection is over, with this outcome.
    Done(Result<()>),
}

/// Where the connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The TLS handshake is under way, and before it any proxy hops and STARTTLS dialogue
    /// (the route's stages, played as the socket allows).
    Handshake,
    /// Application data flows; each direction has its own state.
    Open,
    /// Both directions ended cleanly and our FIN is sent: waiting, until then, for the peer's
    /// TCP close, which a peer that did not read everything would turn into a reset.
    Closing,
}

/// Our direction: our input (stdin, or the child's stdout) → the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outbound {
    /// Input is still arriving and being sent.
    Sending,
    /// The child closed its output; its exit status decides between close_notify and a reset.
    Exiting,
    /// The input ended cleanly and all of it is with TLS; close_notify waits for the rules.
    Complete,
    /// close_notify is queued (and on the wire once the socket took it).
    Closed,
}

/// The peer's direction: the peer → our output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inbound {
    Receiving,
    /// The peer's close_notify arrived, and everything before it went to our output.
    Ended,
}

/// What bounds a connection's handshake (and what comes before it), as its messages name it.
/// Which one applies is decided with the settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandshakeLimit {
    /// `-w`: the user's own limit.
    Wait,
    /// `listen --handshake-timeout` (shorter than `-w`, or without it).
    HandshakeTimeout,
    /// `connect --starttls` without `-w`.
    StartTlsDefault,
    /// `connect --from` without `-w`: as long as connect gives one address.
    FromDefault,
}

impl std::fmt::Display for HandshakeLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HandshakeLimit::Wait => "-w",
            HandshakeLimit::HandshakeTimeout => "--handshake-timeout",
            HandshakeLimit::StartTlsDefault => "10 s without -w, for --starttls",
            HandshakeLimit::FromDefault => "10 s without -w, for --from",
        })
    }
}

/// What a timer that fires means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The handshake took too long; which limit it was.
    Handshake(HandshakeLimit),
    /// `-i`: the peer was silent.
    Idle,
    /// `--stall-timeout`: the peer took none of the stdin (or, in a tunnel, of the local
    /// side's data) waiting for it.
    Stalled,
    /// `--stall-timeout`, in a tunnel: the local side took none of the peer's data.
    Backlogged,
    /// The address being tried (a backend's, or the target's for `connect --from`) had its
    /// time (the dialer's, per address): the connection gets a turn, which tries the next.
    Backend,
    /// Our close_notify may go now (the peer was silent for `--linger`, or its FIN did not
    /// follow its close_notify): the connection gets a turn.
    Close,
    /// The peer has not confirmed the end (its FIN; under TLS 1.2 its answering
    /// close_notify) in time, or its TCP has not acknowledged our bytes after its FIN.
    Confirm,
    /// A TLS 1.2 peer closed the connection and stdin (a pipe or file) neither ended nor gave
    /// more: whatever it still holds cannot be delivered.
    Unsent,
}

#[allow(
    clippy::struct_excessive_bools,
    reason = "facts about the connection, each observed apart; the states are the enums"
)]
pub(crate) struct Session {
    pub conn: TlsSocket,
    /// While the TCP connection is being made (`connect --from`): the next addresses.
    dial: Option<Dialer>,
    /// Proxy hops and `--starttls`: what comes before the handshake, while it lasts.
    stages: VecDeque<Stage>,
    /// How messages name the peer: "example.com:443", "client 192.0.2.1:50000".
    pub label: String,
    /// Who the peer is (an accepted client, or the server `connect` reached), as a command
    /// is told.
    peer: Option<Peer>,
    /// Where the client reached us, when a PROXY header (`--accept-proxy`) said it: the
    /// balancer's address, not our socket's.
    ours: Option<Endpoint>,
    /// `--passthrough`: the connection is a relay of raw bytes, not TLS of ours.
    plain: Option<Plain>,
    /// A PROXY header said LOCAL: the balancer's own connection, most likely a health check.
    health_check: bool,
    local: Local,
    /// Its number in the loop, which its tokens are made from.
    key: usize,
    phase: Phase,
    outbound: Outbound,
    inbound: Inbound,
    /// The handshake must be done by then, and which limit that is.
    handshake_deadline: Option<(Instant, HandshakeLimit)>,
    started: Instant,
    /// The last time a byte moved, for `-i`.
    last_activity: Instant,
    /// Since when stdin has had data for this connection that it could not take (rustls's
    /// send buffer stayed full: the peer is not reading), for `--stall-timeout`.
    stalled_since: Option<Instant>,
    /// Our output could not take what the peer sent (our back-pressure, not its silence).
    output_stalled: bool,
    /// Since when a tunnel's local side has taken none of what the peer sent.
    output_stalled_since: Option<Instant>,
    /// When a TLS 1.2 peer's close_notify found stdin neither ended nor sent (see
    /// [`Timer::Unsent`]).
    unsent_since: Option<Instant>,
    /// When our input ended (stdin's EOF), for `--linger`.
    input_ended_at: Option<Instant>,
    /// When the peer last sent us data, for `--linger`.
    last_heard: Instant,
    /// When the peer's close_notify arrived.
    peer_closed_at: Option<Instant>,
    /// Whether our close_notify waits for the peer's FIN (see [`Session::close_at`]).
    fin_wait: bool,
    /// Our close_notify was already queued when the peer's arrived.
    crossed: bool,
    /// Until when the peer may take to confirm the end ([`Timer::Confirm`]), and how many
    /// of our bytes its TCP had not acknowledged when that was set.
    confirm: Option<(Instant, u64)>,
    /// Everything received is written to our output (as of the last turn).
    stored: bool,
    /// The proxy the connection goes through, for messages.
    via: Option<String>,
    received: u64,
    sent: u64,
    /// Waiting in the loop's run queue.
    pub queued: bool,
    /// Order of arrival among the run's connections (the loop numbers them).
    pub serial: u64,
    /// An accepted socket is registered for reading only: it takes our writes until one
    /// would block, and only then is it asked to tell when it takes more (no wake-up for a
    /// writable socket nobody writes to).
    write_later: bool,
}

impl Session {
    pub(crate) fn new(
        conn: TlsSocket,
        label: String,
        peer: Option<Peer>,
        handshake_deadline: Option<(Instant, HandshakeLimit)>,
        local: &LocalEnd,
        stages: VecDeque<Stage>,
    ) -> Session {
        let now = Instant::now();
        Session {
            conn,
            dial: None,
            stages,
            label,
            peer,
            ours: None,
            plain: None,
            health_check: false,
            local: Local::new(local),
            key: 0,
            phase: Phase::Handshake,
            outbound: Outbound::Sending,
            inbound: Inbound::Receiving,
            handshake_deadline,
            started: now,
            last_activity: now,
            stalled_since: None,
            output_stalled: false,
            output_stalled_since: None,
            unsent_since: None,
            input_ended_at: None,
            last_heard: now,
            peer_closed_at: None,
            fin_wait: false,
            crossed: false,
            confirm: None,
            stored: true,
            via: None,
            received: 0,
            sent: 0,
            queued: false,
            serial: 0,
            write_later: false,
        }
    }

    /// Register the socket as connection `key`.
    pub(crate) fn register(&mut self, registry: &Registry, key: usize) -> io::Result<()> {
        self.key = key;
        let interest = match self.write_later {
            true => Interest::READABLE,
            false => Interest::READABLE | Interest::WRITABLE,
        };
        registry.register(
            &mut self.conn.sock.stream,
            token(key, Part::Socket),
            interest,
        )?;
        self.local.register(registry, key)
    }

    /// The socket was accepted, connected already: registered for reading only until a
    /// write would block.
    pub(crate) fn accepted(mut self) -> Session {
        self.write_later = true;
        self
    }

    /// A write would block: from now on the socket also says when it takes more (the
    /// change itself reports it at once if it does already).
    fn watch_writes(&mut self, registry: &Registry) -> io::Result<()> {
        if self.write_later && !self.conn.ready.write {
            self.write_later = false;
            registry.reregister(
                &mut self.conn.sock.stream,
                token(self.key, Part::Socket),
                Interest::READABLE | Interest::WRITABLE,
            )?;
        }
        Ok(())
    }

    /// The connection goes through proxy `name` (the first hop), for messages.
    pub(crate) fn via_proxy(mut self, name: Option<String>) -> Session {
        self.via = name;
        self
    }

    /// The socket is still being connected by `dialer`, which tries the next address if it
    /// fails.
    pub(crate) fn dialing(mut self, dialer: Dialer) -> Session {
        self.dial = Some(dialer);
        self
    }

    /// `connect --from`: the accepted plain connection is the local end from the start.
    pub(crate) fn with_local(mut self, local: TcpEnd) -> Session {
        self.local = Local::tcp(local);
        self
    }

    /// An event for one of this connection's descriptors.
    pub(crate) fn on_event(&mut self, part: Part, event: &mio::event::Event) {
        match part {
            Part::Socket => self.conn.ready.update(event),
            _ => self.local.on_event(part, event),
        }
    }

    /// Where this connection is in stdin, while it still sends stdin.
    pub(crate) fn stdin_position(&self) -> Option<u64> {
        match self.local {
            Local::Stdio { next, .. }
                if self.phase == Phase::Open && self.outbound == Outbound::Sending =>
            {
                Some(next)
            }
            _ => None,
        }
    }

    /// Whether the TLS handshake is still under way.
    pub(crate) fn handshaking(&self) -> bool {
        self.phase == Phase::Handshake
    }

    /// What its log lines say of it (`--log-format json`): whom it is with, what was
    /// negotiated, the bytes moved and its age.
    pub(crate) fn summary(&self) -> report::Summary {
        let peer = match &self.peer {
            Some(peer) => peer.to_string(),
            None => self.label.clone(),
        };
        report::Summary {
            bytes_in: self.received,
            bytes_out: self.sent,
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ..describe::summary(&self.conn.tls, peer)
        }
    }

    /// The plaintext bytes received from the peer and sent to it.
    pub(crate) fn bytes(&self) -> (u64, u64) {
        (self.received, self.sent)
    }

    /// How long ago it was accepted (or began to connect).
    pub(crate) fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether the connection ended well and only waits for the peer's TCP close.
    pub(crate) fn closing(&self) -> bool {
        self.phase == Phase::Closing
    }

    /// The pid of this connection's child, while it has one.
    pub(crate) fn child_pid(&self) -> Option<u32> {
        self.local.child_pid()
    }

    /// The child has exited: reap it, keeping its status for when its output ends.
    pub(crate) fn reap_child(&mut self) {
        self.local.reap_child();
    }

    /// Move what can move now.
    pub(crate) fn turn(&mut self, sh: &mut Shared<'_>) -> Turn {
        let stepped = self.step(sh).and_then(|turn| {
            self.watch_writes(sh.registry)?;
            Ok(turn)
        });
        let turn = match stepped {
            Ok(turn) => turn,
            // A balancer's health check (a PROXY header LOCAL) ends before any TLS: that is
            // how it succeeds, and no failure to log.
            Err(_) if self.health_check && self.phase == Phase::Handshake => {
                report::verbose(format_args!("{}: the health check ended", self.label));
                Turn::Done(Ok(()))
            }
            Err(e) => Turn::Done(Err(e)),
        };
        if matches!(turn, Turn::Moved) || self.output_stalled {
            self.last_activity = Instant::now();
        }
        turn
    }

    /// One turn: receive, settle each direction by the rules, send, flush.
    fn step(&mut self, sh: &mut Shared<'_>) -> Result<Turn> {
        if self.phase == Phase::Closing {
            return self.confirmed(sh);
        }
        let mut moved = false;
        if let (Some(dial), Stream::Tcp(tcp)) = (&mut self.dial, &mut self.conn.sock.stream) {
            let socket = token(self.key, Part::Socket);
            match dial.advance(tcp, sh.registry, socket) {
                Ok(Dialing::Connected) => self.dial = None,
                Ok(Dialing::Pending) => return Ok(Turn::Idle),
                Ok(Dialing::Retried) => {
                    self.conn.ready = Ready::default();
                    return Ok(Turn::Idle);
                }
                Err(e) => return Err(e.context(self.label.clone())),
            }
        }
        if let Err(e) = self.local.overdue(sh.registry, self.key) {
            return Err(self.local_failed(&e));
        }
        if self.plain.is_some() {
            return self.pump_plain(sh);
        }
        if !self.stages.is_empty() {
            // Nothing of TLS moves until the proxies and the dialogue say it may start.
            let mut heard = Heard::default();
            let done = route::advance(
                &mut self.stages,
                &mut self.conn.sock,
                &mut self.conn.ready,
                &mut heard,
            );
            if let Some(header) = heard.proxy {
                self.relayed(header, sh.opts.many);
            }
            if !done? {
                return Ok(Turn::Idle);
            }
            if let Some((backend, name)) = heard.passthrough {
                self.pass_through(&backend, &name, sh)?;
                return Ok(Turn::Moved);
            }
            moved = true;
        }
        moved |= self.receive(sh)?;
        // A reset that came while back-pressure kept either end from being read or written
        // is seen now, not never (what could be read was read just above).
        if let Some(e) = self.conn.failure() {
            if self.benign_reset() {
                return Ok(Turn::Done(Ok(())));
            }
            return Err(self.fail(ConnError::Io(e), sh.opts));
        }
        if let Some(e) = self.local.failure() {
            return Err(self.local_failed(&e));
        }
        if self.phase == Phase::Open && self.inbound == Inbound::Ended {
            // The peer's stream is over, but a reset after it still means our bytes were
            // not all taken: notice it now, not at our next write.
            if let PeerClose::Reset(e) = self.conn.watch_close(sh.scratch) {
                if !self.benign_reset() {
                    return Err(self.not_delivered(&e));
                }
            }
        }
        if self.phase == Phase::Handshake {
            if !self.conn.handshaking() {
                self.phase = Phase::Open;
                moved = true;
                self.on_established(sh)?;
            } else if self.conn.tcp_eof() || self.conn.peer_end.is_some() {
                return Err(Class::Handshake.err(format!(
                    "{} closed the connection during the TLS handshake",
                    self.label
                )));
            }
        }
        self.stored = self.local.output_written(sh.stdout.as_deref());
        if self.phase == Phase::Open {
            moved |= self.settle(sh)?;
        }
        match self.conn.flush() {
            Ok(m) => moved |= m,
            // Our close_notify met the socket of a peer that had ended in order.
            Err(_) if self.benign_reset() => return Ok(Turn::Done(Ok(()))),
            Err(e) => return Err(self.fail(e, sh.opts)),
        }
        if self.outbound == Outbound::Closed
            && ((self.inbound == Inbound::Ended && self.stored) || self.keeps_no_more(sh.opts))
            && !self.conn.wants_write()
        {
            // Everything the peer sent is written to our output (or we keep nothing more):
            // our FIN says so (and peers such as ncat wait for it).
            self.conn.shutdown_write();
            if self.phase == Phase::Open
                && self.inbound == Inbound::Ended
                && self.stored
                && self.conn.write_shut()
            {
                // Now the peer's FIN, after it stored what we sent, completes the end.
                self.phase = Phase::Closing;
                self.await_confirmation(confirm_within(true, self.sent));
                moved = true;
            }
        }
        Ok(if moved { Turn::Moved } else { Turn::Idle })
    }

    /// `--passthrough`: the client asked for `name`, whose `backend` does the handshake;
    /// from here on the connection is a relay of raw bytes.
    fn pass_through(&mut self, backend: &Backend, name: &str, sh: &mut Shared<'_>) -> Result<()> {
        let peer = Client {
            label: &self.label,
            addr: self.peer.as_ref(),
            ours: self.ours.clone(),
        };
        self.local
            .start_plain(backend, &self.conn, peer, sh.registry, self.key)?;
        let prefix = if sh.opts.many {
            format!("{}: ", self.label)
        } else {
            String::new()
        };
        report::verbose(format_args!(
            "{prefix}passing through to {} (--passthrough {})",
            backend.name(),
            report::escape(name)
        ));
        self.phase = Phase::Open;
        self.plain = Some(Plain::to(backend.name()));
        Ok(())
    }

    /// A passed-through connection's turn: the bytes each way, and its end once both ways
    /// ended in order.
    fn pump_plain(&mut self, sh: &mut Shared<'_>) -> Result<Turn> {
        let Some(plain) = self.plain.as_mut() else {
            return Ok(Turn::Idle);
        };
        let pumped = self.local.pump_plain(
            &mut self.conn.sock,
            &mut self.conn.ready,
            plain,
            sh.registry,
            self.key,
        );
        self.received = plain.received;
        self.sent = plain.sent;
        match pumped {
            Err(e) => Err(socket_class(&e).err(format!(
                "{}: passing through to {}: {} ({} bytes received, {} bytes sent)",
                self.label,
                plain.to,
                io_phrase(&e),
                self.received,
                self.sent
            ))),
            Ok(_) if plain.done() => Ok(Turn::Done(Ok(()))),
            Ok(true) => Ok(Turn::Moved),
            Ok(false) => Ok(Turn::Idle),
        }
    }

    /// A PROXY header (`--accept-proxy`) was read: the client it names is the peer from
    /// here on, in messages, for a command (STLS_PEER_ADDR) and in the header a backend is
    /// sent.
    fn relayed(&mut self, header: ProxyHeader, many: bool) {
        let prefix = if many {
            format!("{}: ", self.label)
        } else {
            String::new()
        };
        match header {
            ProxyHeader::Relayed { from, to } => {
                let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
                let (from, to) = (canonical(from), canonical(to));
                report::verbose(format_args!(
                    "{prefix}PROXY header: client {from}, which reached the balancer at {to}"
                ));
                self.label = format!("client {from}");
                self.peer = Some(Peer::Ip(from));
                self.ours = Some(Endpoint::Ip(to));
            }
            ProxyHeader::Local => {
                report::verbose(format_args!(
                    "{prefix}PROXY header LOCAL: the balancer's own connection (a health check)"
                ));
                self.health_check = true;
            }
            ProxyHeader::Unknown => report::verbose(format_args!(
                "{prefix}PROXY header without an IP address: the connection's own stands"
            )),
        }
    }

    /// Whether nothing the peer may still send would be kept: with `--send-only` (it is
    /// discarded), or once an `-e` command has exited (its input is closed). Our FIN can
    /// then go with our close_notify: it cannot promise too much.
    fn keeps_no_more(&self, opts: &Options) -> bool {
        opts.local.stdio() == Some(Direction::SendOnly)
            || (matches!(self.local, Local::Own { .. })
                && !self.local.is_tcp()
                && self.outbound == Outbound::Closed)
    }

    /// Whether a reset now was provoked only by our close_notify, the peer having ended in
    /// order: its close_notify, then its FIN after every application byte of ours was
    /// acknowledged. Or, when the two close_notifies crossed (ours was on its way when the
    /// peer's came, so the peer may have closed its socket before ours arrived, and no FIN
    /// can come first), its close_notify and every application byte of ours acknowledged.
    fn benign_reset(&self) -> bool {
        // Without application data of ours, nothing can have been lost.
        (self.sent == 0
            && self.outbound == Outbound::Closed
            && self.conn.peer_end == Some(PeerEnd::CloseNotify))
            || self.conn.ended_in_order()
            || (self.crossed
                && self.conn.peer_end == Some(PeerEnd::CloseNotify)
                && self.conn.app_acked() == Some(true))
    }

    /// The end is up to the peer now: wait, until `within` from now (or longer while its TCP
    /// goes on taking our bytes), for it to confirm.
    fn await_confirmation(&mut self, within: Duration) {
        let unacked = self.conn.acks().map_or(0, |a| a.unacked);
        self.confirm = Some((Instant::now() + within, unacked));
    }

    /// Closing: the peer's FIN, once every application byte we sent is acknowledged,
    /// completes the connection; a reset means the peer did not read them all (unless it had
    /// ended in order and only our close_notify met its closed socket).
    fn confirmed(&mut self, sh: &mut Shared<'_>) -> Result<Turn> {
        match self.conn.watch_close(sh.scratch) {
            PeerClose::Pending => Ok(Turn::Idle),
            PeerClose::Reset(_) if self.benign_reset() => Ok(Turn::Done(Ok(()))),
            PeerClose::Reset(e) => Err(self.not_delivered(&e)),
            PeerClose::Closed => {
                if self.conn.ended_in_order() {
                    return Ok(Turn::Done(Ok(())));
                }
                // Its FIN came before its TCP had taken all our bytes: it must still take
                // them ([`Timer::Confirm`] looks again), and not reset them.
                if let Ok(Some(e)) = self.conn.sock.stream.take_error() {
                    return Err(self.not_delivered(&e));
                }
                match fin_confirms(self.conn.acked_at_eof(), self.conn.app_acked()) {
                    true => Ok(Turn::Done(Ok(()))),
                    false => Ok(Turn::Idle),
                }
            }
        }
    }

    /// The rules, in the order data meets them: the peer's direction, then ours.
    fn settle(&mut self, sh: &mut Shared<'_>) -> Result<bool> {
        let mut moved = false;
        match self.conn.peer_end {
            Some(PeerEnd::Truncated) if self.sending_stdin(sh) => {
                // The peer went away while a pipe or file still gave us input for it: it
                // stopped reading, as with a reset.
                return Err(Class::Network.err(format!(
                    "{} closed the connection (without close_notify) while our input was still \
                     being sent: not all of it was delivered ({} bytes were sent){}",
                    self.label,
                    self.sent,
                    self.proxy_hint()
                )));
            }
            Some(PeerEnd::Truncated) => {
                return Err(Class::Incomplete.err(format!(
                    "{} closed the connection without close_notify: the data may be \
                     truncated{}",
                    self.label,
                    self.proxy_hint()
                )))
            }
            Some(PeerEnd::CloseNotify) if self.inbound == Inbound::Receiving => {
                self.inbound = Inbound::Ended;
                self.peer_closed_at = Some(Instant::now());
                self.crossed = self.outbound == Outbound::Closed;
                self.fin_wait = waits_for_fin(
                    self.sent,
                    self.outbound == Outbound::Complete,
                    sh.opts.stdin_tty && matches!(self.local, Local::Stdio { .. }),
                );
                moved = true;
                self.peer_finished(sh)?;
            }
            _ => {}
        }
        if self.outbound == Outbound::Sending {
            moved |= self.send(sh)?;
        }
        if self.outbound == Outbound::Exiting {
            moved |= self.child_exited(sh.opts)?;
        }
        let now = Instant::now();
        if self.outbound == Outbound::Complete
            && !self.conn.wants_write()
            && self.close_at(sh.opts).is_some_and(|at| at <= now)
        {
            self.conn.send_close_notify();
            self.outbound = Outbound::Closed;
            if self.inbound == Inbound::Receiving && !self.half_close() {
                // TLS 1.2: the peer must answer with its own, after storing what we sent.
                self.await_confirmation(confirm_within(false, self.sent));
            }
            moved = true;
        }
        Ok(moved)
    }

    /// The peer's close_notify arrived while our direction may still be open.
    fn peer_finished(&mut self, sh: &mut Shared<'_>) -> Result<()> {
        let half_close = self.half_close();
        if let Local::Own { end, leftover } = &mut self.local {
            // The child gets EOF and may still answer (under TLS 1.2 an answer is too late).
            if let Some(end) = end {
                end.close_input();
            }
            if !leftover.is_empty() && !half_close {
                return Err(self.too_late());
            }
            // Under TLS 1.2 the peer's close_notify ends the whole connection: a tunnel's plain
            // side got its FIN, and nothing it says after can be delivered, so our side is
            // complete now (its answer, if any, meets a closed connection).
            if !half_close && self.local.is_tcp() && self.outbound == Outbound::Sending {
                self.outbound = Outbound::Complete;
            }
            return Ok(());
        }
        if self.outbound != Outbound::Sending {
            return Ok(());
        }
        match stdin_at_peer_close(half_close, sh.opts.stdin_tty) {
            StdinAtPeerClose::GoesOn => return Ok(()),
            StdinAtPeerClose::SendThenSettle => {
                self.send(sh)?;
            }
            StdinAtPeerClose::AwaitEnd => {
                self.unsent_since = Some(Instant::now());
                self.send(sh)?;
                return Ok(());
            }
            StdinAtPeerClose::Settle => {}
        }
        if self.outbound == Outbound::Sending {
            if self.input_pending(sh) {
                return Err(self.too_late());
            }
            // Nothing of ours is waiting: what was read was all sent.
            self.outbound = Outbound::Complete;
        }
        Ok(())
    }

    /// Whether a pipe or file on stdin is still being sent on this connection (it has not
    /// reached its end).
    fn sending_stdin(&self, sh: &Shared<'_>) -> bool {
        match (&self.local, sh.stdin.as_deref()) {
            (Local::Stdio { next, offset, .. }, Some(stdin))
                if self.outbound == Outbound::Sending && !sh.opts.stdin_tty =>
            {
                !matches!(stdin.at(*next, *offset), Next::End)
            }
            _ => false,
        }
    }

    /// Whether stdin holds bytes this connection has not sent.
    fn input_pending(&self, sh: &Shared<'_>) -> bool {
        match (&self.local, sh.stdin.as_deref()) {
            (Local::Stdio { next, offset, .. }, Some(stdin)) => {
                matches!(stdin.at(*next, *offset), Next::Data(b) if !b.is_empty())
            }
            _ => false,
        }
    }

    /// The peer ended the whole connection (TLS 1.2) before our input was all sent.
    fn too_late(&self) -> anyhow::Error {
        Class::Incomplete.err(format!(
            "{} closed the connection (TLS 1.2 close_notify) before our input was all sent: \
             the transfer is incomplete ({} bytes were sent)",
            self.label, self.sent
        ))
    }

    /// When our close_notify may go, our direction being complete: `Some(at)` (`at` may have
    /// passed), or None while only an event can allow it. The rule is [`close_at`]'s.
    fn close_at(&self, opts: &Options) -> Option<Instant> {
        let facts = CloseFacts {
            // Set when the peer's close_notify ended its direction (Inbound::Ended).
            peer_closed_at: self.peer_closed_at,
            stored: self.stored,
            peer_fin: self.conn.tcp_eof(),
            fin_wait: self.fin_wait,
            stdio: matches!(self.local, Local::Stdio { .. }),
            output_stalled: self.output_stalled,
            input_ended_at: self.input_ended_at,
            last_heard: self.last_heard,
            started: self.started,
        };
        let never_first = opts.no_shutdown || opts.local.stdio() == Some(Direction::RecvOnly);
        close_at(&facts, opts.linger, never_first)
    }

    /// Whether the protocol lets each direction close on its own (TLS 1.3).
    fn half_close(&self) -> bool {
        self.conn.tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
    }

    fn fail(&mut self, e: ConnError, opts: &Options) -> anyhow::Error {
        let established = self.phase != Phase::Handshake;
        let (e, closed) = match self
            .conn
            .explain(e, &self.label, established, &opts.explain)
        {
            Ok(explained) => return explained,
            Err(io) => io,
        };
        if !established {
            return handshake_io_error(&self.label, &e, closed);
        }
        let class = socket_class(&e);
        if class == Class::Timeout {
            return class.err(format!("{}: {}", self.label, io_phrase(&e)));
        }
        if self.inbound == Inbound::Ended {
            return self.not_delivered(&e);
        }
        if matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        ) {
            return class.err(format!(
                "{} reset the connection before the end ({}; {} bytes received, {} bytes \
                 sent){}",
                self.label,
                io_phrase(&e),
                self.received,
                self.sent,
                self.proxy_hint()
            ));
        }
        class.err(format!("{}: {}", self.label, io_phrase(&e)))
    }

    /// Nothing came back and the connection ended right after our close_notify: through a
    /// proxy, that is most likely the proxy ending both directions at our end of input.
    fn proxy_hint(&self) -> String {
        match &self.via {
            Some(proxy) if self.outbound == Outbound::Closed && self.received == 0 => format!(
                "; it goes through proxy {proxy}, which may end both directions when ours \
                 ends: wait longer for the reply with --linger SECS, or let the server end it \
                 with --no-shutdown"
            ),
            _ => String::new(),
        }
    }

    /// The peer reset the connection after its close_notify: it stopped reading early.
    fn not_delivered(&self, e: &io::Error) -> anyhow::Error {
        Class::Network.err(format!(
            "{} stopped reading before the end ({}): not all of the {} bytes sent were \
             delivered",
            self.label,
            io_phrase(e),
            self.sent
        ))
    }

    /// Socket → TLS → our end, while our end takes bytes.
    fn receive(&mut self, sh: &mut Shared<'_>) -> Result<bool> {
        let mut moved = false;
        let mut stalled = false;
        let (registry, key) = (sh.registry, self.key);
        let result = loop {
            match self.conn.fill() {
                Ok(m) => moved |= m,
                Err(e) => break Err(self.fail(e, sh.opts)),
            }
            let stdout = sh.stdout.as_deref_mut();
            let n =
                match self
                    .local
                    .receive_from(&mut self.conn, stdout, registry, key, &mut stalled)
                {
                    Ok(Some(n)) => n,
                    // A backend address that refused gave way to the next.
                    Ok(None) => continue,
                    Err(e) => break Err(self.local_failed(&e)),
                };
            if n == 0 {
                break Ok(());
            }
            self.received += n as u64;
            self.last_heard = Instant::now();
            moved = true;
        };
        self.local.received(sh.stdout.as_deref_mut());
        self.output_stalled = stalled;
        // A tunnel whose local side takes none of what the peer sends: bounded too.
        match stalled && !moved && self.local.is_tcp() {
            true => {
                self.output_stalled_since.get_or_insert_with(Instant::now);
            }
            false => self.output_stalled_since = None,
        }
        result.map(|()| moved)
    }

    /// Our end → TLS, while rustls's send buffer takes more; what our end's output ending
    /// means for our direction.
    fn send(&mut self, sh: &mut Shared<'_>) -> Result<bool> {
        let late = self.inbound == Inbound::Ended && !self.half_close();
        let out = match &self.local {
            Local::Stdio { .. } => match sh.stdin.as_deref() {
                Some(stdin) => {
                    self.local
                        .send_stdin(stdin, &mut self.conn, late, &mut sh.stdin_wanted)
                }
                None => return Ok(false),
            },
            Local::Own { end: None, .. } => return Ok(false),
            Local::Own { .. } => self
                .local
                .send_to(&mut self.conn, sh.scratch, late, sh.registry, self.key)
                .map_err(|e| self.local_failed(&e))?,
        };
        self.sent += out.sent;
        // --stall-timeout counts from the first turn the peer took none of it.
        match out.stalled {
            Some(true) => {
                self.stalled_since.get_or_insert_with(Instant::now);
            }
            Some(false) => self.stalled_since = None,
            None => {}
        }
        match out.end {
            Some(OutputEnd::Failed(e)) => return Err(e),
            Some(OutputEnd::Late) => return Err(self.too_late()),
            // stdin's EOF: our input is complete, and --linger counts from now.
            Some(OutputEnd::Eof) if matches!(self.local, Local::Stdio { .. }) => {
                self.outbound = Outbound::Complete;
                self.input_ended_at = Some(Instant::now());
            }
            // A child's exit status decides; a tunnel's FIN completes it at once.
            Some(OutputEnd::Eof) => self.outbound = Outbound::Exiting,
            None => {}
        }
        Ok(out.moved)
    }

    /// The local stream failed (the tunnel's TCP connection was reset or refused): the TLS
    /// side is reset too.
    fn local_failed(&self, e: &io::Error) -> anyhow::Error {
        socket_class(e).err(format!(
            "{}: the local connection failed ({}); the TLS connection is reset",
            self.label,
            io_phrase(e)
        ))
    }

    /// The child closed its output: once it has exited, its status says whether our direction
    /// is complete.
    fn child_exited(&mut self, opts: &Options) -> Result<bool> {
        let Local::Own {
            end: Some(child), ..
        } = &mut self.local
        else {
            self.outbound = Outbound::Complete;
            return Ok(true);
        };
        match child.exit_status() {
            None => Ok(false),
            Some(Ok(())) => {
                self.outbound = Outbound::Complete;
                Ok(true)
            }
            Some(Err(status)) => Err(anyhow!(
                "{}: '{}' {}; the connection is reset, without close_notify",
                self.label,
                report::escape(match &opts.local {
                    LocalEnd::Exec(program) => program.text.as_str(),
                    _ => "",
                }),
                describe_status(status)
            )),
        }
    }

    fn on_established(&mut self, sh: &mut Shared<'_>) -> Result<()> {
        let prefix = if sh.opts.many {
            format!("{}: ", self.label)
        } else {
            String::new()
        };
        describe::session(&self.conn.tls, sh.opts.explain.side().peer_role(), &prefix);
        if report::connection_events() {
            report::connection_event(
                report::Event::Established,
                &self.summary(),
                format_args!("{}: TLS established", self.label),
            );
        }
        match &mut self.local {
            Local::Stdio { next, .. } => match sh.stdin.as_deref() {
                Some(stdin) => {
                    *next = stdin.position();
                    sh.stdin_wanted = true;
                }
                // --recv-only: there is nothing to send.
                None => self.outbound = Outbound::Complete,
            },
            Local::Own { end: Some(_), .. } => {} // a tunnel's accepted connection
            Local::Own { .. } => {
                if let Some(e) = local::unrouted(&sh.opts.local, &self.conn, &self.label) {
                    // No backend is dialed; the client is told the end, in order.
                    self.conn.send_close_notify();
                    let _ = self.conn.flush();
                    return Err(e);
                }
                let peer = Client {
                    label: &self.label,
                    addr: self.peer.as_ref(),
                    ours: self.ours.clone(),
                };
                let started =
                    self.local
                        .start(&sh.opts.local, &self.conn, peer, sh.registry, self.key)?;
                if let Some(what) = started {
                    report::verbose(format_args!("{prefix}{what}"));
                }
            }
        }
        Ok(())
    }

    /// The connection's next deadline and what it means; the one place timers are decided.
    pub(crate) fn deadline(&self, opts: &Options) -> Option<(Instant, Timer)> {
        if self.phase == Phase::Closing {
            let (until, _) = self.confirm?;
            let at = confirm_look(until, true, self.conn.tcp_eof(), Instant::now());
            return Some((at, Timer::Confirm));
        }
        if let Some(at) = unsent_at(self.unsent_since, self.outbound == Outbound::Sending) {
            return Some((at, Timer::Unsent));
        }
        let handshake = match (self.phase, self.handshake_deadline) {
            (Phase::Handshake, Some((at, option))) => Some((at, Timer::Handshake(option))),
            _ => None,
        };
        // -i measures the peer's silence: not while our own output holds things up.
        let idle = opts
            .idle
            .filter(|_| !self.output_stalled)
            .map(|d| (self.last_activity + d, Timer::Idle));
        let stalled = match (opts.stall, self.stalled_since, self.outbound) {
            (Some(d), Some(at), Outbound::Sending) => Some((at + d, Timer::Stalled)),
            _ => None,
        };
        let backlogged = match (opts.stall, self.output_stalled_since) {
            (Some(d), Some(at)) => Some((at + d, Timer::Backlogged)),
            _ => None,
        };
        // Our close_notify waits for a time (--linger, the peer's FIN); not while records
        // wait for the socket (its readiness gives the turn then).
        let close = match (self.phase, self.outbound) {
            (Phase::Open, Outbound::Complete) if !self.conn.wants_write() => {
                self.close_at(opts).map(|at| (at, Timer::Close))
            }
            _ => None,
        };
        let confirm = match (self.phase, self.outbound, self.confirm) {
            (Phase::Open, Outbound::Closed, Some((until, _))) if !self.half_close() => {
                let at = confirm_look(until, false, self.conn.tcp_eof(), Instant::now());
                Some((at, Timer::Confirm))
            }
            _ => None,
        };
        let backend = self.local.dial_deadline().map(|at| (at, Timer::Backend));
        // `connect --from`: the address being tried has its own time, then the next is.
        let dialing = self.dial.as_ref().and_then(Dialer::attempt_deadline);
        let dialing = dialing.map(|at| (at, Timer::Backend));
        [
            handshake, idle, stalled, backlogged, close, confirm, backend, dialing,
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(at, _)| *at)
    }

    /// A timer fired: the outcome it gives the connection, or None if it goes on.
    pub(crate) fn expire(&mut self, timer: Timer, opts: &Options) -> Option<Result<()>> {
        Some(match timer {
            Timer::Close | Timer::Backend => return None,
            Timer::Confirm => return self.unconfirmed(),
            Timer::Unsent => Err(self.too_late()),
            Timer::Handshake(option) => {
                Err(Class::Timeout.err(match route::current(&self.stages) {
                    Some(what) => format!(
                        "the {what} dialogue with {} timed out ({option}){}",
                        self.label,
                        route::looking_up(&self.stages)
                            .map(|name| format!(": no answer came for the lookup of {name}"))
                            .unwrap_or_default()
                    ),
                    None => format!("TLS handshake with {} timed out ({option})", self.label),
                }))
            }
            Timer::Idle => Err(Class::Timeout.err(format!(
                "no data from or to {} for {}s (-i)",
                self.label,
                opts.idle.unwrap_or_default().as_secs_f64()
            ))),
            Timer::Stalled if self.local.is_tcp() => Err(Class::Timeout.err(format!(
                "{} took no data for {}s while the tunnel had data for it (--stall-timeout): \
                 dropped ({} bytes were sent)",
                self.label,
                opts.stall.unwrap_or_default().as_secs_f64(),
                self.sent
            ))),
            Timer::Stalled => Err(Class::Timeout.err(format!(
                "{} took no data for {}s while stdin waited for it (--stall-timeout): dropped, \
                 so that the other clients get stdin ({} bytes were sent)",
                self.label,
                opts.stall.unwrap_or_default().as_secs_f64(),
                self.sent
            ))),
            Timer::Backlogged => Err(Class::Timeout.err(format!(
                "{}: the tunnel's other side took none of its data for {}s \
                 (--stall-timeout): dropped ({} bytes were received)",
                self.label,
                opts.stall.unwrap_or_default().as_secs_f64(),
                self.received
            ))),
        })
    }

    /// The time the peer had to confirm the end is up: more time if its TCP is still taking
    /// our bytes, else the end is not confirmed. None while the connection goes on.
    fn unconfirmed(&mut self) -> Option<Result<()>> {
        let (until, unacked_then) = self.confirm?;
        let facts = ConfirmFacts {
            until,
            unacked_then,
            unacked: self.conn.acks().map_or(0, |a| a.unacked),
            closing: self.phase == Phase::Closing,
            peer_fin: self.conn.tcp_eof(),
            sent: self.sent,
        };
        Some(Err(match confirmation(&facts, Instant::now()) {
            // A look at the acknowledgements: the turn does it.
            Confirmation::Pending => return None,
            Confirmation::Extended(until, unacked) => {
                self.confirm = Some((until, unacked));
                return None;
            }
            Confirmation::Unanswered => Class::Incomplete.err(format!(
                "{} did not answer our close_notify (TLS 1.2) within {}s: what it sent may be \
                 incomplete",
                self.label,
                CONFIRM.as_secs()
            )),
            Confirmation::Unacknowledged => Class::Network.err(format!(
                "{} closed the connection before its TCP acknowledged all of the {} bytes \
                 sent: they were not all delivered",
                self.label, self.sent
            )),
            Confirmation::NothingToConfirm => return Some(Ok(())),
            Confirmation::NotClosed => Class::Incomplete.err(format!(
                "{} did not close the connection within {}s of the close_notify exchange: \
                 whether it stored all of the {} bytes sent is not known",
                self.label,
                CONFIRM.as_secs(),
                self.sent
            )),
        }))
    }

    /// The connection is over: deregister, close (abortively unless it ended well), log under
    /// `-v`, and hand back its child, if any, to be reaped.
    pub(crate) fn close(mut self, registry: &Registry, ok: bool) -> Option<(String, Child)> {
        let _ = registry.deregister(&mut self.conn.sock.stream);
        if !ok {
            self.conn.abort();
        }
        let label = self.label;
        // As JSON, the loop's `closed` line says all of this.
        if !report::json() {
            report::verbose(format_args!(
                "{label}: {} after {:.3}s: {} bytes received, {} bytes sent",
                if ok { "closed" } else { "failed" },
                self.started.elapsed().as_secs_f64(),
                self.received,
                self.sent
            ));
        }
        self.local.close(registry, ok).map(|child| (label, child))
    }
}

/// What decides when our close_notify may go, our direction being complete.
#[allow(clippy::struct_excessive_bools)] // independent facts about a moment, not modes
#[derive(Clone, Copy, Debug)]
struct CloseFacts {
    /// When the peer's close_notify arrived (its direction is over).
    peer_closed_at: Option<Instant>,
    /// Everything received is written to our output.
    stored: bool,
    /// The peer's FIN is in.
    peer_fin: bool,
    /// After the peer's close_notify, ours waits for its FIN (we had nothing left to send).
    fin_wait: bool,
    /// The local end is stdin/stdout (else a child or a tunnel's socket: the author).
    stdio: bool,
    /// Our output holds up what the peer sends.
    output_stalled: bool,
    /// When our input ended, and when the peer last sent us data.
    input_ended_at: Option<Instant>,
    last_heard: Instant,
    /// When the connection began: "at once".
    started: Instant,
}

/// The rule for our close_notify (the module's doc says it for users): `Some(at)` once it may
/// go (`at` may have passed), None while only an event can allow it. `never_first`:
/// `--no-shutdown` or `--recv-only`.
fn close_at(f: &CloseFacts, linger: Duration, never_first: bool) -> Option<Instant> {
    if let Some(closed) = f.peer_closed_at {
        // Nothing can be cut short any more, but our close_notify acknowledges what the peer
        // sent: only once it is stored. And a peer that closes its socket right after its
        // close_notify would turn ours into a reset without FIN: its FIN first.
        if !f.stored {
            return None;
        }
        if f.peer_fin || !f.fin_wait {
            return Some(f.started);
        }
        return Some(closed + linger.min(FIN_WAIT));
    }
    if never_first {
        return None; // the peer ends it
    }
    if !f.stdio {
        // A child's end of output (with exit 0) or a tunnel's FIN: the local program is the
        // author and says it is done. (Under TLS 1.2 this ends the whole connection: holding
        // it would leave both ends waiting, see TUNNELS.)
        return Some(f.started);
    }
    // The conversation is over when the peer has had its say: silent for --linger since our
    // EOF or its last byte, whichever came later. While our output holds its bytes up, it is
    // not silent.
    match f.output_stalled {
        true => None,
        false => f
            .input_ended_at
            .map(|ended| ended.max(f.last_heard) + linger),
    }
}

/// How long the peer has to confirm the end once it is up to the peer (`closing`: both
/// close_notifies are exchanged and our FIN sent; else, TLS 1.2, ours awaits its answer).
fn confirm_within(closing: bool, sent: u64) -> Duration {
    match closing && sent == 0 {
        true => NOTHING_SENT,
        false => CONFIRM,
    }
}

/// When to look at the confirmation next (`until`: when its time is up): when closing with
/// the peer's FIN in but our bytes not all acknowledged, again shortly.
fn confirm_look(until: Instant, closing: bool, peer_fin: bool, now: Instant) -> Instant {
    match closing && peer_fin {
        true => (now + ACK_TICK).min(until),
        false => until,
    }
}

/// What the wait for the peer's confirmation of the end depends on.
#[derive(Clone, Copy, Debug)]
struct ConfirmFacts {
    /// When its time is up, and how many bytes of ours the peer's TCP had not acknowledged
    /// when it was set.
    until: Instant,
    unacked_then: u64,
    /// How many it has not acknowledged now.
    unacked: u64,
    /// Closing (the close_notifies exchanged, our FIN sent), else TLS 1.2's wait for the
    /// answer to our close_notify.
    closing: bool,
    /// The peer's FIN is in.
    peer_fin: bool,
    /// Application bytes we sent.
    sent: u64,
}

/// What the confirmation wait comes to when it is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Confirmation {
    /// Its time is not up.
    Pending,
    /// The peer's TCP took more of our bytes meanwhile: more time, until then, counting from
    /// what is still unacknowledged.
    Extended(Instant, u64),
    /// TLS 1.2: our close_notify was not answered.
    Unanswered,
    /// The peer's FIN came before its TCP acknowledged all our bytes.
    Unacknowledged,
    /// The peer did not close, but nothing of ours needed confirming.
    NothingToConfirm,
    /// The peer did not close: whether it stored what we sent is not known.
    NotClosed,
}

/// The rule of the confirmation wait: more time while the peer's TCP goes on taking our
/// bytes, else what its silence means.
fn confirmation(f: &ConfirmFacts, now: Instant) -> Confirmation {
    if now < f.until {
        return Confirmation::Pending;
    }
    if f.unacked < f.unacked_then {
        return Confirmation::Extended(now + CONFIRM, f.unacked);
    }
    if !f.closing {
        Confirmation::Unanswered
    } else if f.peer_fin {
        Confirmation::Unacknowledged
    } else if f.sent == 0 {
        Confirmation::NothingToConfirm
    } else {
        Confirmation::NotClosed
    }
}

/// Whether the peer's FIN (it did not end in order) completes the connection: its TCP had
/// acknowledged all our application bytes before it, or has since (`None`: the kernel cannot
/// say, and nothing says otherwise).
fn fin_confirms(acked_at_eof: Option<bool>, app_acked: Option<bool>) -> bool {
    acked_at_eof != Some(false) || app_acked == Some(true)
}

/// Whether our close_notify, the peer's having come, waits for the peer's FIN (see
/// [`close_at`]; `complete`: our input was all sent; `tty_stdio`: it comes from a terminal).
/// A peer that closes while we still send must go on reading (or our bytes meet a reset
/// anyway): only one that closes after we were done (or a person at a terminal who will type
/// no more) may be closing its socket already. Without data of ours, a reset loses nothing.
fn waits_for_fin(sent: u64, complete: bool, tty_stdio: bool) -> bool {
    sent > 0 && (complete || tty_stdio)
}

/// What stdin, still being sent, does when the peer's close_notify comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StdinAtPeerClose {
    /// TLS 1.3: stdin goes on being sent until it ends.
    GoesOn,
    /// TLS 1.3 from a terminal: what it gave us still goes, then our direction is complete
    /// (or what is left was not delivered).
    SendThenSettle,
    /// TLS 1.2 from a pipe or file: nothing more can be sent. If stdin ends now with nothing
    /// unsent, our direction was complete; if it has more, that was not delivered. Sending
    /// says which, and [`Timer::Unsent`] bounds the wait for a pipe that says neither.
    AwaitEnd,
    /// TLS 1.2 from a terminal: our direction is complete unless it holds unsent bytes.
    Settle,
}

fn stdin_at_peer_close(half_close: bool, tty: bool) -> StdinAtPeerClose {
    match (half_close, tty) {
        (true, false) => StdinAtPeerClose::GoesOn,
        (true, true) => StdinAtPeerClose::SendThenSettle,
        (false, false) => StdinAtPeerClose::AwaitEnd,
        (false, true) => StdinAtPeerClose::Settle,
    }
}

/// When [`Timer::Unsent`] fires: [`UNSENT`] after a TLS 1.2 peer's close_notify found stdin
/// neither ended nor sent (`since`), while it still has not ended (`sending`).
fn unsent_at(since: Option<Instant>, sending: bool) -> Option<Instant> {
    since.filter(|_| sending).map(|at| at + UNSENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Duration = Duration::from_secs(2);

    /// A stdio connection that began at `t0`, our input not ended, the peer open.
    fn open(t0: Instant) -> CloseFacts {
        CloseFacts {
            peer_closed_at: None,
            stored: true,
            peer_fin: false,
            fin_wait: false,
            stdio: true,
            output_stalled: false,
            input_ended_at: None,
            last_heard: t0,
            started: t0,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn stdin_eof_waits_for_the_peers_silence() {
        let t0 = Instant::now();
        // Our EOF at 1 s, the peer's last byte at 3 s: silent for --linger from 3 s.
        let f = CloseFacts {
            input_ended_at: Some(t0 + secs(1)),
            last_heard: t0 + secs(3),
            ..open(t0)
        };
        assert_eq!(close_at(&f, LINGER, false), Some(t0 + secs(5)));
        // The peer quiet since before our EOF: from our EOF.
        let f = CloseFacts {
            input_ended_at: Some(t0 + secs(4)),
            ..f
        };
        assert_eq!(close_at(&f, LINGER, false), Some(t0 + secs(6)));
        // --linger 0 (--send-only): at our EOF.
        assert_eq!(close_at(&f, Duration::ZERO, false), Some(t0 + secs(4)));
    }

    #[test]
    fn no_close_while_input_runs_our_output_stalls_or_the_peer_must_end_it() {
        let t0 = Instant::now();
        assert_eq!(
            close_at(&open(t0), LINGER, false),
            None,
            "input still running"
        );
        let ended = CloseFacts {
            input_ended_at: Some(t0),
            ..open(t0)
        };
        let stalled = CloseFacts {
            output_stalled: true,
            ..ended
        };
        assert_eq!(
            close_at(&stalled, LINGER, false),
            None,
            "the peer is not silent"
        );
        assert_eq!(
            close_at(&ended, LINGER, true),
            None,
            "--no-shutdown, --recv-only"
        );
    }

    #[test]
    fn a_child_or_a_tunnel_closes_at_once() {
        let t0 = Instant::now();
        let f = CloseFacts {
            stdio: false,
            ..open(t0)
        };
        assert_eq!(close_at(&f, LINGER, false), Some(t0));
    }

    #[test]
    fn after_the_peers_close_notify_store_first_then_let_its_fin_come() {
        let t0 = Instant::now();
        let closed = CloseFacts {
            peer_closed_at: Some(t0 + secs(1)),
            input_ended_at: Some(t0),
            fin_wait: true,
            ..open(t0)
        };
        // Our output has not taken everything: not even --no-shutdown's rule matters yet.
        let unstored = CloseFacts {
            stored: false,
            ..closed
        };
        assert_eq!(close_at(&unstored, LINGER, false), None);
        // Stored: its FIN is waited for, at most FIN_WAIT (never longer than --linger).
        assert_eq!(
            close_at(&closed, LINGER, true),
            Some(t0 + secs(1) + FIN_WAIT)
        );
        assert_eq!(
            close_at(&closed, Duration::from_millis(100), false),
            Some(t0 + secs(1) + Duration::from_millis(100))
        );
        // Its FIN is in, or we were still sending when it closed: at once.
        let fin = CloseFacts {
            peer_fin: true,
            ..closed
        };
        assert_eq!(close_at(&fin, LINGER, false), Some(t0));
        let sending = CloseFacts {
            fin_wait: false,
            ..closed
        };
        assert_eq!(close_at(&sending, LINGER, false), Some(t0));
    }

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    /// A confirmation wait set at `t0` for our 3 unacknowledged bytes, closing, the peer
    /// silent.
    fn waiting(t0: Instant) -> ConfirmFacts {
        ConfirmFacts {
            until: t0 + CONFIRM,
            unacked_then: 3,
            unacked: 3,
            closing: true,
            peer_fin: false,
            sent: 10,
        }
    }

    #[test]
    fn the_peer_has_5_s_to_confirm_2_s_when_we_sent_nothing() {
        assert_eq!(confirm_within(true, 10), secs(5));
        assert_eq!(confirm_within(true, 0), secs(2));
        // TLS 1.2's answer to our close_notify: 5 s, sent or not.
        assert_eq!(confirm_within(false, 0), secs(5));
    }

    #[test]
    fn the_wait_goes_on_while_the_peers_tcp_takes_our_bytes() {
        let t0 = Instant::now();
        let f = waiting(t0);
        assert_eq!(confirmation(&f, t0 + secs(4)), Confirmation::Pending);
        let took = ConfirmFacts { unacked: 1, ..f };
        let up = t0 + CONFIRM;
        assert_eq!(
            confirmation(&took, up),
            Confirmation::Extended(up + CONFIRM, 1)
        );
        // Not while it takes none.
        assert_eq!(confirmation(&f, up), Confirmation::NotClosed);
    }

    #[test]
    fn what_an_unconfirmed_end_means() {
        let t0 = Instant::now();
        let up = t0 + CONFIRM;
        let f = waiting(t0);
        let tls12 = ConfirmFacts {
            closing: false,
            ..f
        };
        assert_eq!(confirmation(&tls12, up), Confirmation::Unanswered);
        let fin = ConfirmFacts {
            peer_fin: true,
            ..f
        };
        assert_eq!(confirmation(&fin, up), Confirmation::Unacknowledged);
        let nothing = ConfirmFacts { sent: 0, ..f };
        assert_eq!(confirmation(&nothing, up), Confirmation::NothingToConfirm);
        assert_eq!(confirmation(&f, up), Confirmation::NotClosed);
    }

    #[test]
    fn the_peers_fin_confirms_once_our_bytes_are_acknowledged() {
        assert!(fin_confirms(Some(true), Some(false)));
        assert!(fin_confirms(None, None), "the kernel cannot say");
        assert!(fin_confirms(Some(false), Some(true)), "acknowledged since");
        assert!(!fin_confirms(Some(false), Some(false)));
        assert!(!fin_confirms(Some(false), None));
    }

    #[test]
    fn the_peers_fin_in_our_bytes_not_acknowledged_is_looked_at_shortly() {
        let t0 = Instant::now();
        let until = t0 + CONFIRM;
        assert_eq!(confirm_look(until, true, true, t0), t0 + ACK_TICK);
        // Never later than the wait's end.
        assert_eq!(confirm_look(until, true, true, until - ms(10)), until);
        assert_eq!(confirm_look(until, true, false, t0), until);
        assert_eq!(confirm_look(until, false, true, t0), until);
    }

    #[test]
    fn our_close_notify_waits_for_the_peers_fin_once_we_had_nothing_left_to_send() {
        assert!(waits_for_fin(10, true, false));
        assert!(
            waits_for_fin(10, false, true),
            "a terminal will type no more"
        );
        assert!(!waits_for_fin(10, false, false), "a pipe still sending");
        assert!(!waits_for_fin(0, true, true), "nothing of ours to lose");
        // Waited for: min(--linger, FIN_WAIT) after the peer's close_notify.
        let t0 = Instant::now();
        let f = CloseFacts {
            peer_closed_at: Some(t0 + secs(1)),
            fin_wait: waits_for_fin(10, true, false),
            ..open(t0)
        };
        assert_eq!(close_at(&f, LINGER, false), Some(t0 + secs(1) + FIN_WAIT));
    }

    #[test]
    fn stdin_at_the_peers_close_notify() {
        assert_eq!(stdin_at_peer_close(true, false), StdinAtPeerClose::GoesOn);
        assert_eq!(
            stdin_at_peer_close(true, true),
            StdinAtPeerClose::SendThenSettle
        );
        assert_eq!(
            stdin_at_peer_close(false, false),
            StdinAtPeerClose::AwaitEnd
        );
        assert_eq!(stdin_at_peer_close(false, true), StdinAtPeerClose::Settle);
    }

    #[test]
    fn unsent_stdin_is_waited_for_2_s_while_it_neither_ends_nor_gives_more() {
        let t0 = Instant::now();
        assert_eq!(unsent_at(Some(t0), true), Some(t0 + secs(2)));
        assert_eq!(unsent_at(Some(t0), false), None, "stdin ended");
        assert_eq!(unsent_at(None, true), None, "no TLS 1.2 close_notify");
    }
}
