//! One `inspect` target on the event loop: connect (each address in turn, each with its own
//! time), the TLS handshake, then close_notify and a close; no data is relayed. These are a
//! session's first phases (see `session`), without a local end; the route's proxy hops and
//! STARTTLS dialogue (see `route`) are played before the handshake, as in a session.
//!
//! The verifier defers its verdict (see `trust::ServerVerifier::deferring`), so a rejected
//! chain is shown with the parameters of a completed handshake; the verdict is read from
//! what the verifier recorded, right after the call that verified.
//!
//! An `inspect --probe` question is a probe too: a handshake with its own narrowed config,
//! or a ClientHello written as is (see `hello`) whose answer is read, bounded, and no more.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use mio::{Interest, Registry};
use rustls::ClientConnection;

use crate::describe::Params;
use crate::error::{io_phrase, Class};
use crate::events::{attempt, token, Part, Ready};
use crate::hello::{self, Answer};
use crate::net::{Dialer, Dialing};
use crate::route::{self, Route, Stage};
use crate::settings::{ClientTls, Target};
use crate::starttls;
use crate::stream::{Address, Stream};
use crate::tls_socket::{handshake_io_error, ConnError, TlsSocket};
use crate::trust::Shown;
use crate::wire::{FirstBytes, Wire};

/// What became of a target.
#[derive(Default)]
pub(crate) struct Outcome {
    /// The address the connection was made to.
    pub addr: Option<SocketAddr>,
    /// What the handshake negotiated, as far as it got.
    pub params: Option<Params>,
    /// The certificates the server sent, and the verifier's verdict on them.
    pub shown: Shown,
    /// Why the target failed before its verdict could be had, if it did.
    pub error: Option<anyhow::Error>,
    /// The ClientHello went out: connected, and past any proxy or STARTTLS dialogue.
    pub reached: bool,
    /// The server answered in TLS (a ServerHello or an alert), not only by closing.
    pub answered: bool,
    /// The handshake went through a HelloRetryRequest.
    pub hrr: bool,
    /// A `hello` probe's answer.
    pub hello: Option<Answer>,
}

/// A `hello` probe's connection: its ClientHello going out, the answer coming in.
struct Raw {
    sock: Wire,
    ready: Ready,
    hello: Vec<u8>,
    sent: usize,
    /// The answer's first bytes, at most `hello::ENOUGH`.
    got: Vec<u8>,
}

impl Raw {
    /// Send the ClientHello and read the answer; `None` while it is not complete.
    fn ask(&mut self, label: &str) -> anyhow::Result<Option<Answer>> {
        while self.sent < self.hello.len() {
            let sock = &mut self.sock;
            let rest = &self.hello[self.sent..];
            match attempt(&mut self.ready.write, || sock.write(rest)) {
                None => break,
                Some(Ok(n)) => self.sent += n,
                Some(Err(e)) => return Err(raw_error(label, &e)),
            }
        }
        if self.sock.pending() {
            let sock = &mut self.sock;
            if let Some(Err(e)) = attempt(&mut self.ready.write, || sock.flush_pending()) {
                return Err(raw_error(label, &e));
            }
        }
        let mut buf = [0u8; hello::ENOUGH];
        loop {
            let room = hello::ENOUGH - self.got.len();
            let sock = &mut self.sock;
            match attempt(&mut self.ready.read, || sock.read(&mut buf[..room])) {
                None => return Ok(None),
                Some(Ok(0)) => {
                    return Err(Class::Handshake.err(format!(
                        "{label} closed the connection without answering the ClientHello"
                    )))
                }
                Some(Ok(n)) => self.got.extend_from_slice(&buf[..n]),
                Some(Err(e)) => return Err(raw_error(label, &e)),
            }
            if let Some(answer) = hello::server_hello(&self.got) {
                return Ok(Some(answer));
            }
        }
    }
}

fn raw_error(label: &str, e: &std::io::Error) -> anyhow::Error {
    Class::Network.err(format!("{label}: {}", io_phrase(e)))
}

enum Step {
    /// Between sockets.
    Idle,
    Connecting(Stream),
    Handshake(Box<TlsSocket>),
    Raw(Box<Raw>),
}

pub(crate) struct Probe {
    /// The target's place in the input.
    pub index: usize,
    /// Which `--probe` question this is (the plan's index); `None`: the target's inspection.
    pub question: Option<usize>,
    label: String,
    /// The target's addresses (or the first proxy's), each in turn.
    dial: Dialer,
    step: Step,
    /// -w: connect and handshake are done by then.
    pub deadline: Instant,
    key: usize,
    /// Proxy hops and `--starttls`: what comes before the handshake, while it lasts.
    stages: VecDeque<Stage>,
    /// The server's first bytes, when TLS is the first thing spoken.
    first: Option<FirstBytes>,
    /// A `hello` probe's ClientHello, sent as is instead of a handshake.
    hello: Option<Vec<u8>>,
    outcome: Outcome,
}

impl Probe {
    /// Start connecting to `addrs` (resolved already) as connection `key`, to be done by
    /// `deadline` (-w from when the target's lookup began).
    pub(crate) fn start(
        index: usize,
        target: &Target,
        addrs: Vec<SocketAddr>,
        deadline: Instant,
        route: Route,
        registry: &Registry,
        key: usize,
    ) -> anyhow::Result<Probe> {
        // The TCP connection goes to the first proxy, when there is one.
        let route_is_direct = route.hops.is_empty();
        let dial = match route.hops.first() {
            Some(proxy) => Dialer::new(
                format!("proxy {proxy}"),
                &proxy.addr.host,
                addrs,
                Some(deadline),
            ),
            None => match &target.addr {
                Address::Tcp(hp) => Dialer::to(hp, addrs, Some(deadline)),
                Address::Unix(path) => Dialer::new(path.to_string(), "", addrs, Some(deadline)),
            },
        };
        let mut probe = Probe {
            index,
            question: None,
            label: target.addr.to_string(),
            dial,
            step: Step::Idle,
            deadline,
            key,
            stages: route.stages,
            first: None,
            hello: None,
            outcome: Outcome::default(),
        };
        let mut sock = match (&target.addr, route_is_direct) {
            (Address::Unix(path), true) => Stream::Unix(path.connect()?),
            _ => Stream::Tcp(probe.dial.open()?),
        };
        probe.outcome.addr = probe.dial.addr();
        registry.register(
            &mut sock,
            token(key, Part::Socket),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        probe.step = Step::Connecting(sock);
        Ok(probe)
    }

    /// Make this probe `--probe` question `question`, sent as `hello` when rustls cannot
    /// ask it.
    pub(crate) fn asking(mut self, question: usize, hello: Option<Vec<u8>>) -> Probe {
        self.question = Some(question);
        self.hello = hello;
        self
    }

    /// When the probe needs a turn without an event: at -w, or before it when the address
    /// being connected to has had its own time and the next is to be tried.
    pub(crate) fn wake_at(&self) -> Instant {
        match (&self.step, self.dial.attempt_deadline()) {
            (Step::Connecting(_), Some(at)) => at.min(self.deadline),
            _ => self.deadline,
        }
    }

    /// Whether a proxy hop waits for a lookup: a lookup's answer is its event.
    pub(crate) fn awaits_lookup(&self) -> bool {
        route::awaits_lookup(&self.stages)
    }

    /// Remember what an event says the socket is ready for.
    pub(crate) fn on_event(&mut self, event: &mio::event::Event) {
        match &mut self.step {
            Step::Handshake(conn) => conn.ready.update(event),
            Step::Raw(raw) => raw.ready.update(event),
            _ => {}
        }
    }

    /// Move what can move after an event; the outcome once the probe is over.
    pub(crate) fn turn(
        &mut self,
        client: &ClientTls,
        target: &Target,
        registry: &Registry,
    ) -> Option<Outcome> {
        match self.advance(client, target, registry) {
            Ok(false) => None,
            Ok(true) => Some(std::mem::take(&mut self.outcome)),
            Err(e) => {
                self.outcome.error = Some(e);
                Some(std::mem::take(&mut self.outcome))
            }
        }
    }

    fn advance(
        &mut self,
        client: &ClientTls,
        target: &Target,
        registry: &Registry,
    ) -> anyhow::Result<bool> {
        if let Step::Connecting(sock) = &mut self.step {
            let socket = token(self.key, Part::Socket);
            let dialing = match sock {
                Stream::Tcp(tcp) => self.dial.advance(tcp, registry, socket),
                Stream::Unix(_) => Ok(Dialing::Connected),
            };
            self.outcome.addr = self.dial.addr();
            match dialing? {
                Dialing::Pending | Dialing::Retried => return Ok(false),
                Dialing::Connected if self.hello.is_some() => {
                    let Step::Connecting(sock) = std::mem::replace(&mut self.step, Step::Idle)
                    else {
                        return Ok(false);
                    };
                    self.step = Step::Raw(Box::new(Raw {
                        sock: Wire::new(sock),
                        ready: Ready::default(),
                        hello: self.hello.take().unwrap_or_default(),
                        sent: 0,
                        got: Vec::new(),
                    }));
                }
                Dialing::Connected => {
                    let tls =
                        ClientConnection::new(client.config.clone(), target.server_name.clone())
                            .map_err(|e| anyhow!("TLS setup: {e}"))?;
                    let Step::Connecting(sock) = std::mem::replace(&mut self.step, Step::Idle)
                    else {
                        return Ok(false);
                    };
                    let mut conn = TlsSocket::new(sock, tls.into());
                    // Straight to TLS: a plain-text answer is kept, to be named.
                    if self.stages.is_empty() {
                        self.first = Some(conn.sock.keep_first());
                    }
                    self.step = Step::Handshake(Box::new(conn));
                }
            }
        }
        if let Step::Raw(_) = &self.step {
            return self.advance_raw(registry);
        }
        let Step::Handshake(conn) = &mut self.step else {
            return Ok(false);
        };
        if !route::advance(
            &mut self.stages,
            &mut conn.sock,
            &mut conn.ready,
            &mut route::Heard::default(),
        )? {
            return Ok(false);
        }
        self.outcome.reached = true;
        let Step::Handshake(conn) = &mut self.step else {
            return Ok(false);
        };
        loop {
            let filled = conn.fill();
            let shown = client.presented.take();
            if !shown.chain.is_empty() {
                self.outcome.shown = shown;
            }
            if conn.tls.protocol_version().is_some() {
                self.outcome.params = Some(Params::of(&conn.tls));
            }
            let moved = match filled.and_then(|m| conn.flush().map(|f| m | f)) {
                Ok(moved) => moved,
                Err(e) => return Err(self.failure(e, client)),
            };
            if !conn.handshaking() {
                self.outcome.answered = true;
                self.outcome.hrr = conn.tls.handshake_kind()
                    == Some(rustls::HandshakeKind::FullWithHelloRetryRequest);
                // Done: say goodbye properly, and close.
                conn.send_close_notify();
                let _ = conn.flush();
                conn.shutdown_write();
                let _ = registry.deregister(&mut conn.sock.stream);
                return Ok(true);
            }
            if conn.tcp_eof() || conn.peer_end.is_some() {
                return Err(Class::Handshake.err(format!(
                    "{} closed the connection during the TLS handshake",
                    self.label
                )));
            }
            if !moved {
                return Ok(false);
            }
        }
    }

    /// A `hello` probe: past the route, the ClientHello out and its answer read.
    fn advance_raw(&mut self, registry: &Registry) -> anyhow::Result<bool> {
        let Step::Raw(raw) = &mut self.step else {
            return Ok(false);
        };
        if !route::advance(
            &mut self.stages,
            &mut raw.sock,
            &mut raw.ready,
            &mut route::Heard::default(),
        )? {
            return Ok(false);
        }
        self.outcome.reached = true;
        let Some(answer) = raw.ask(&self.label)? else {
            return Ok(false);
        };
        self.outcome.hello = Some(answer);
        self.outcome.answered = !matches!(answer, Answer::Other);
        // Nothing more is said: the connection is dropped (a reset, with the rest of the
        // server's flight unread).
        let _ = registry.deregister(&mut raw.sock.stream);
        self.step = Step::Idle;
        match answer {
            Answer::Hello { .. } => Ok(true),
            Answer::Alert(_) => Err(Class::Handshake.err(format!(
                "{} refused the ClientHello with an alert",
                self.label
            ))),
            Answer::Other => Err(Class::Handshake.err(format!(
                "{} did not answer the ClientHello in TLS",
                self.label
            ))),
        }
    }

    fn failure(&mut self, e: ConnError, client: &ClientTls) -> anyhow::Error {
        let Step::Handshake(conn) = &mut self.step else {
            return anyhow!("{}: not connected", self.label);
        };
        let plain = self
            .first
            .as_ref()
            .and_then(|f| starttls::plain_text_answer(&self.label, &f.get()));
        match conn.explain(e, &self.label, false, &client.explain) {
            Ok(explained) => {
                // A TLS error: the server answered, if only with an alert.
                self.outcome.answered = true;
                plain.unwrap_or(explained)
            }
            Err((e, closed)) => {
                plain.unwrap_or_else(|| handshake_io_error(&self.label, &e, closed))
            }
        }
    }

    /// -w expired: the outcome says how far it got.
    pub(crate) fn expire(&mut self, wait: Duration, registry: &Registry) -> Outcome {
        let secs = wait.as_secs_f64();
        let msg = match &mut self.step {
            Step::Connecting(sock) => {
                let _ = registry.deregister(sock);
                self.dial.timed_out(&format!(" after {secs}s (-w)"))
            }
            Step::Idle => self.dial.timed_out(&format!(" after {secs}s (-w)")),
            Step::Raw(raw) => {
                raw.sock.stream.reset_on_close();
                let _ = registry.deregister(&mut raw.sock.stream);
                format!(
                    "{}: no answer to the ClientHello within {secs}s (-w)",
                    self.label
                )
            }
            Step::Handshake(conn) => {
                conn.abort();
                let _ = registry.deregister(&mut conn.sock.stream);
                match route::current(&self.stages) {
                    Some(what) => format!(
                        "{}: the {what} dialogue was not done within {secs}s (-w){}",
                        self.label,
                        route::looking_up(&self.stages)
                            .map(|name| format!("; no answer came for the lookup of {name}"))
                            .or_else(|| route::silence(&self.stages).map(|h| format!("; {h}")))
                            .unwrap_or_default()
                    ),
                    None => format!(
                        "{}: the TLS handshake was not done within {secs}s (-w)",
                        self.label
                    ),
                }
            }
        };
        self.outcome.error = Some(Class::Timeout.err(msg));
        std::mem::take(&mut self.outcome)
    }
}
