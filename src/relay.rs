//! The event loop: every connection of a run, the listening socket, stdin/stdout, children's
//! pipes and signals, on one mio poll in one thread.
//!
//! Sockets and pipes are edge-triggered and registered once; each connection remembers what
//! its descriptors are ready for and gets turns from a run queue until nothing of it can move
//! (see `events` and `session`). stdin and stdout are served by threads that wake the loop
//! (see `stdio`).
//! Memory is bounded by construction: a fixed set of stdin and stdout buffers shared by all
//! connections, rustls's own per-connection limits, `--max-conns` and `--max-handshakes`.
//!
//! Clients still in their handshake are the cheap ones for an attacker to hold (a TCP
//! connection that never sends a ClientHello), so they have their own limit, and making room
//! always drops the oldest of them, never the client that just arrived.
//!
//! Timers (handshake, `-i`, `--stall-timeout`, linger) are checked whenever the run queue is
//! empty, before the loop sleeps; the sleep lasts until the earliest of them.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use mio::{Events, Interest, Poll, Waker};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::error::{classify, io_phrase, Class};
use crate::events::{part_of, LISTENER, SIGNALS, WAKER};
use crate::exec::Child;
use crate::local::{Direction, LocalEnd};
use crate::metrics::{self, Outcome};
use crate::reload::Reload;
use crate::report::{self, Event};
use crate::session::{HandshakeLimit, Options, Session, Shared, Timer, Turn};
use crate::stdio::{Broadcast, Sink, Source};
use crate::stream::{Listener, Peer, Stream};

/// How long the end of a run waits for the children of failed connections to exit.
const CHILD_GRACE: Duration = Duration::from_secs(2);
/// How long to wait before accepting again after running out of descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// What sets a session up for a socket accepted from a peer.
pub(crate) type Accept = dyn Fn(Stream, &Peer) -> Result<Session>;

/// A listening socket and what to do with what it accepts.
pub(crate) struct Listening {
    pub sock: Listener,
    /// `-k`: go on accepting; otherwise the first connection to complete its handshake is
    /// the only one (the session), and those that fail before are logged and forgotten.
    pub keep_open: bool,
    /// `--max-conns`: at most this many connections at once.
    pub max_conns: usize,
    /// `--max-handshakes`: at most this many of them still in their handshake.
    pub max_handshakes: usize,
    /// Set up TLS for an accepted socket.
    pub accept: Box<Accept>,
    /// SIGHUP and `--reload-every`: read the files again for new handshakes. Connections
    /// already open keep what they have. Given to the one loop that answers for the run.
    pub reload: Option<Reload>,
    /// `--drain`: on SIGTERM or SIGINT, how long open connections have to finish.
    pub drain: Duration,
    /// This loop speaks for the run (`--threads` runs several): it says that it drains, and
    /// tells systemd.
    pub main: bool,
}

/// A signal asked us to stop, and open connections are finishing (`--drain`).
struct Draining {
    sig: i32,
    until: Instant,
}

pub(crate) struct Relay {
    poll: Poll,
    opts: Options,
    peers: Slab<Session>,
    queue: VecDeque<usize>,
    listening: Option<Listening>,
    accept_paused: Option<Instant>,
    /// Accepting fails (out of descriptors, memory) and has been reported.
    accept_failing: bool,
    /// Without `-k`: no connection has completed its handshake yet (the session is still to
    /// come), so a failing one only costs itself.
    waiting: bool,
    /// Connections still in their handshake, oldest first: serial → key.
    handshaking: BTreeMap<u64, usize>,
    /// The serial number of the next connection.
    serial: u64,
    waker: Arc<Waker>,
    stdin: Option<Broadcast>,
    stdout: Option<Sink>,
    signals: Signals,
    scratch: Vec<u8>,
    /// Children of finished connections, not reaped yet.
    children: Vec<(String, Child)>,
    /// Without `-k`: the outcome of the one connection.
    outcome: Option<Result<()>>,
    /// What SIGHUP and `--reload-every` reload.
    reload: Option<Reload>,
    /// `--drain`: how long open connections have after SIGTERM or SIGINT.
    drain: Duration,
    draining: Option<Draining>,
    /// This loop speaks for the run.
    main: bool,
    /// systemd's watchdog: how often to say we are alive, and when next.
    watchdog: Option<(Duration, Instant)>,
}

impl Relay {
    pub(crate) fn new(opts: Options) -> Result<Relay> {
        let poll = Poll::new()?;
        // The loop keeps the waker: were it dropped with the last thread holding it, the
        // wakeup that thread sent last would go with it.
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stdin = match opts.local {
            LocalEnd::Stdio { direction, crlf } if direction != Direction::RecvOnly => {
                Some(Broadcast::new(Source::stdin(waker.clone(), crlf)))
            }
            _ => None,
        };
        let stdout = match opts.local.stdio() {
            Some(Direction::Both | Direction::RecvOnly) => Some(
                Sink::stdout(waker.clone())
                    .map_err(|e| anyhow!("cannot write to stdout: {}", io_phrase(&e)))?,
            ),
            _ => None,
        };
        let mut signals = catch_signals()?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        Ok(Relay {
            poll,
            opts,
            peers: Slab::new(),
            queue: VecDeque::new(),
            listening: None,
            accept_paused: None,
            accept_failing: false,
            waiting: false,
            handshaking: BTreeMap::new(),
            serial: 0,
            waker,
            stdin,
            stdout,
            signals,
            scratch: vec![0; 16 * 1024],
            children: Vec::new(),
            outcome: None,
            reload: None,
            drain: Duration::ZERO,
            draining: None,
            main: false,
            watchdog: None,
        })
    }

    /// What wakes this loop from another thread (a lookup's answer): every connection then
    /// gets a turn.
    pub(crate) fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Accept connections from `listening` (instead of, or besides, `add`).
    pub(crate) fn listen(&mut self, mut listening: Listening) -> Result<()> {
        self.poll
            .registry()
            .register(&mut listening.sock, LISTENER, Interest::READABLE)?;
        self.reload = listening.reload.take();
        if self.reload.is_some() && !ignored(SIGHUP) {
            self.signals.add_signal(SIGHUP)?;
        }
        self.drain = listening.drain;
        self.main = listening.main;
        if self.main {
            self.watchdog = crate::systemd::watchdog_interval().map(|d| (d, Instant::now()));
        }
        self.waiting = !listening.keep_open;
        self.listening = Some(listening);
        Ok(())
    }

    /// Serve a connection.
    pub(crate) fn add(&mut self, mut peer: Session) -> Result<()> {
        peer.serial = self.serial;
        self.serial += 1;
        let entry = self.peers.vacant_entry();
        let key = entry.key();
        let peer = entry.insert(peer);
        if let Err(e) = peer.register(self.poll.registry(), key) {
            self.peers.remove(key);
            return Err(e.into());
        }
        self.handshaking.insert(peer.serial, key);
        metrics::connection_opened();
        self.enqueue(key);
        Ok(())
    }

    fn enqueue(&mut self, key: usize) {
        if let Some(peer) = self.peers.get_mut(key) {
            if !peer.queued {
                peer.queued = true;
                self.queue.push_back(key);
            }
        }
    }

    fn enqueue_all(&mut self) {
        let keys: Vec<usize> = self.peers.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.enqueue(key);
        }
    }

    /// Run until the connection ends (or, with `-k`, until a signal); everything received is
    /// on stdout when this returns, unless a signal cut it short.
    pub(crate) fn run(mut self) -> Result<()> {
        let result = self.serve();
        self.finish(result)
    }

    fn serve(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            self.run_queue();
            if let Some(outcome) = self.outcome.take() {
                // Without -k: clients still in their handshake were not the session.
                self.close_all();
                return outcome;
            }
            if let Some(e) = self.stdout.as_mut().and_then(Sink::take_failure) {
                return self.output_failed(e);
            }
            if let Some(d) = &self.draining {
                if self.peers.is_empty() || Instant::now() >= d.until {
                    let sig = d.sig;
                    return self.interrupted(sig);
                }
            }
            if self.peers.is_empty() && self.listening.is_none() {
                return Ok(());
            }
            let timeout = self.timers();
            let timeout = self.housekeeping(timeout);
            if !self.queue.is_empty() || self.outcome.is_some() {
                continue;
            }
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {
                        self.feed_stdin();
                        self.enqueue_all();
                    }
                    SIGNALS => {
                        if let Some(sig) = self.signals_arrived() {
                            if self.drain.is_zero() || self.draining.is_some() {
                                return self.interrupted(sig);
                            }
                            self.start_draining(sig);
                        }
                    }
                    token => {
                        if let Some((key, part)) = part_of(token) {
                            if let Some(peer) = self.peers.get_mut(key) {
                                peer.on_event(part, event);
                                self.enqueue(key);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Give turns until no connection can move.
    fn run_queue(&mut self) {
        while let Some(key) = self.queue.pop_front() {
            let Some(peer) = self.peers.get_mut(key) else {
                continue;
            };
            peer.queued = false;
            let mut shared = Shared {
                opts: &self.opts,
                stdin: self.stdin.as_mut(),
                stdout: self.stdout.as_mut(),
                registry: self.poll.registry(),
                scratch: &mut self.scratch,
                stdin_wanted: false,
            };
            let turn = peer.turn(&mut shared);
            let stdin_wanted = shared.stdin_wanted;
            if !peer.handshaking() && self.handshaking.remove(&peer.serial).is_some() {
                metrics::handshake_done(peer.age().as_secs_f64());
                self.handshake_done(key);
            }
            match turn {
                Turn::Moved => self.enqueue(key),
                Turn::Idle => {}
                Turn::Done(outcome) => self.remove(key, outcome),
            }
            if stdin_wanted && self.feed_stdin() {
                self.enqueue_all();
            }
        }
    }

    /// Give stdin chunks every connection has sent back to the reader, and take new ones while
    /// a connection is there to send them; true if new input arrived.
    fn feed_stdin(&mut self) -> bool {
        let Some(stdin) = self.stdin.as_mut() else {
            return false;
        };
        let lowest = self
            .peers
            .iter()
            .filter_map(|(_, p)| p.stdin_position())
            .min();
        match lowest {
            Some(seq) => {
                stdin.release(seq);
                stdin.pull()
            }
            // Nobody to send to: hold stdin until somebody is.
            None => {
                stdin.release(stdin.position());
                false
            }
        }
    }

    /// A connection completed its handshake. Without `-k`, the first to do so is the session:
    /// later clients are refused (the listening socket closes) and those still in their
    /// handshake are let go.
    fn handshake_done(&mut self, key: usize) {
        if !self.waiting {
            return;
        }
        if let Some(mut listening) = self.listening.take() {
            let _ = self.poll.registry().deregister(&mut listening.sock);
        }
        let label = self
            .peers
            .get(key)
            .map(|p| p.label.clone())
            .unwrap_or_default();
        let others: Vec<usize> = self.handshaking.values().copied().collect();
        for other in others {
            self.drop_handshake(other, &format!(": the session is with {label}"));
        }
        self.waiting = false;
    }

    /// A connection is over: log or keep its outcome; its child, if any, is reaped later. The
    /// outcome is the run's when this is the one connection (without `-k`, the session); any
    /// other failure is logged.
    fn remove(&mut self, key: usize, outcome: Result<()>) {
        self.remove_as(key, outcome, Event::Closed);
    }

    /// [`Relay::remove`], its line (`--log-format json`) being `event`.
    fn remove_as(&mut self, key: usize, outcome: Result<()>, event: Event) {
        let peer = self.peers.remove(key);
        self.handshaking.remove(&peer.serial);
        if peer.stdin_position().is_some() && self.feed_stdin() {
            // It may have been the slowest: the others can have what it held back.
            self.enqueue_all();
        }
        // Without -k, a client that had not completed its handshake was not the session.
        let logged = self.opts.many || (self.waiting && peer.handshaking());
        ended(event, &peer, &outcome, !report::json() && logged);
        if let Some((label, mut child)) = peer.close(self.poll.registry(), outcome.is_ok()) {
            if !child.reaped(&label) {
                self.children.push((label, child));
            }
        }
        if !logged {
            self.outcome = Some(outcome);
        }
    }

    /// Fire expired timers; the time until the next one.
    fn timers(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let opts = &self.opts;
        let mut turns = Vec::new();
        let expired: Vec<(usize, Timer, Result<()>)> = self
            .peers
            .iter_mut()
            .filter_map(|(k, p)| match p.deadline(opts) {
                Some((at, timer)) if now >= at => match p.expire(timer, opts) {
                    Some(r) => Some((k, timer, r)),
                    // The connection goes on, with something to do now.
                    None => {
                        turns.push(k);
                        None
                    }
                },
                _ => None,
            })
            .collect();
        for key in turns {
            self.enqueue(key);
        }
        for (key, timer, outcome) in expired {
            if self.waiting && timer == Timer::Handshake(HandshakeLimit::Wait) {
                // Without -k, -w is the user's own limit: a client still in its handshake
                // then ends the run (exit 7), where --handshake-timeout only drops it.
                self.waiting = false;
                self.remove(key, outcome);
                return None;
            }
            self.remove(key, outcome);
        }
        if let Some(at) = self.accept_paused {
            if now >= at {
                self.accept_paused = None;
                self.accept_all();
            }
        }
        let next = self
            .peers
            .iter()
            .filter_map(|(_, p)| p.deadline(&self.opts).map(|(at, _)| at))
            .chain(self.accept_paused)
            .min();
        next.map(|at| at.saturating_duration_since(now))
    }

    fn accept_all(&mut self) {
        while self.accept_paused.is_none() {
            let Some(listening) = self.listening.as_mut() else {
                return;
            };
            let (max_conns, max_handshakes) = (listening.max_conns, listening.max_handshakes);
            let (sock, peer) = match listening.sock.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // A client that gave up before we got to it.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    // Out of descriptors: an unfinished handshake gives its own up to the
                    // client waiting in the backlog.
                    // accept() takes a descriptor before it looks for a client: out of
                    // descriptors says nothing of whether one waits. Only for a client that
                    // is there does an unfinished handshake give its descriptor up.
                    let fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                    if fds
                        && pending(&listening.sock)
                        && self.drop_oldest_handshake("to free a descriptor for a new client")
                    {
                        continue;
                    }
                    // Nothing to give up (or out of memory): the client stays in the backlog;
                    // try again shortly rather than spin, and say so once.
                    if !self.accept_failing {
                        self.accept_failing = true;
                        report::warn(format_args!(
                            "accepting a connection: {}; retrying",
                            io_phrase(&e)
                        ));
                    }
                    self.accept_paused = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            };
            self.accept_failing = false;
            if self.handshaking.len() >= max_handshakes {
                let why = format!(
                    "the oldest of {} unfinished (--max-handshakes)",
                    self.handshaking.len()
                );
                self.drop_oldest_handshake(&why);
            } else if self.peers.len() >= max_conns
                && !self.drop_oldest_handshake("to make room for a new client (--max-conns)")
            {
                let why = format!(
                    "refused client {peer}: {} connections open, all established (--max-conns)",
                    self.peers.len()
                );
                refused(&peer, Outcome::Reset, Class::Network, why);
                continue;
            }
            if report::connection_events() {
                let summary = report::Summary {
                    peer: peer.to_string(),
                    ..report::Summary::default()
                };
                report::connection_event(Event::Accepted, &summary, "accepted");
            } else if !report::json() {
                report::verbose(format_args!("connection from {peer}"));
            }
            let Some(listening) = self.listening.as_ref() else {
                return;
            };
            if let Err(e) = (listening.accept)(sock, &peer).and_then(|s| self.add(s)) {
                let (class, why) = (classify(&e), format!("client {peer}: {e:#}"));
                // Nothing of TLS was tried: a failure to set the connection up is its class's.
                refused(&peer, Outcome::of(&Err(e), false), class, why);
            }
        }
    }

    /// Drop the connection that has been in its handshake the longest, with a line saying
    /// `why`; false if no connection is in its handshake.
    fn drop_oldest_handshake(&mut self, why: &str) -> bool {
        let Some((_, &key)) = self.handshaking.iter().next() else {
            return false;
        };
        self.drop_handshake(key, &format!(", {why}"))
    }

    /// End a connection that is still in its handshake, saying so and then `why`; false if
    /// there is no such connection.
    fn drop_handshake(&mut self, key: usize, why: &str) -> bool {
        let Some(label) = self.peers.get(key).map(|p| p.label.clone()) else {
            return false;
        };
        self.remove_as(
            key,
            Err(Class::Handshake.err(format!(
                "{label}: dropped while still in its TLS handshake{why}"
            ))),
            Event::Refused,
        );
        true
    }

    /// The termination signal that arrived, if any. On SIGCHLD, children that exited are
    /// reaped and connections with a child get a turn to look at theirs.
    fn signals_arrived(&mut self) -> Option<i32> {
        let mut stop = None;
        let mut child = false;
        for sig in self.signals.pending() {
            match sig {
                SIGINT | SIGTERM => stop = stop.or(Some(sig)),
                SIGHUP => self.reload(),
                _ => child = true,
            }
        }
        if child {
            self.reap_children();
        }
        stop
    }

    /// SIGHUP: new handshakes use the files as they are now; a bad file keeps the old
    /// configuration, and says why.
    fn reload(&mut self) {
        if let Some(reload) = self.reload.as_mut() {
            reload.signalled();
        }
    }

    /// The run's own timers — `--reload-every`'s look at the files and systemd's watchdog —
    /// and `--drain`'s end; the time until the earliest of them and the connections' `next`.
    fn housekeeping(&mut self, next: Option<Duration>) -> Option<Duration> {
        let now = Instant::now();
        if let Some(reload) = self.reload.as_mut() {
            reload.tick(now);
        }
        if let Some((every, at)) = self.watchdog {
            if now >= at {
                crate::systemd::watchdog();
                self.watchdog = Some((every, now + every));
            }
        }
        [
            self.reload.as_ref().and_then(Reload::next),
            self.watchdog.map(|(_, at)| at),
            self.draining.as_ref().map(|d| d.until),
        ]
        .into_iter()
        .flatten()
        .map(|at| at.saturating_duration_since(now))
        .chain(next)
        .min()
    }

    /// `--drain`: a signal asked us to stop. Stop accepting at once (the listening socket is
    /// closed, so new clients are refused) and give open connections until the drain ends.
    fn start_draining(&mut self, sig: i32) {
        if let Some(mut listening) = self.listening.take() {
            let _ = self.poll.registry().deregister(&mut listening.sock);
        }
        self.draining = Some(Draining {
            sig,
            until: Instant::now() + self.drain,
        });
        if self.main {
            crate::metrics::set_draining();
            crate::systemd::stopping();
            let open = match self.peers.len() {
                0 => "no connection is open, and none".to_string(),
                1 => "1 open connection has".to_string(),
                n => format!("{n} open connections have"),
            };
            report::note(
                Event::Draining,
                format_args!(
                    "{}: draining: no new connections; {open} up to {}s to finish (--drain)",
                    signal_name(sig),
                    self.drain.as_secs_f64()
                ),
            );
        }
    }

    /// Reap every child that has exited, as soon as it has: a command that exits while its
    /// connection goes on (its output held open by a process it started) must not linger as
    /// a zombie. Each is reaped through its own `Child`, which keeps the status for the
    /// connection to judge when the command's output ends.
    fn reap_children(&mut self) {
        // Only this loop's own children, each by its pid: other loops (listen --threads)
        // reap theirs, and must find them unreaped.
        let mut i = 0;
        while i < self.children.len() {
            let (label, child) = &mut self.children[i];
            if child.reaped(label) {
                self.children.swap_remove(i);
            } else {
                i += 1;
            }
        }
        let with_children: Vec<usize> = self
            .peers
            .iter()
            .filter(|(_, p)| p.child_pid().is_some())
            .map(|(k, _)| k)
            .collect();
        for key in with_children {
            if let Some(peer) = self.peers.get_mut(key) {
                peer.reap_child();
            }
            self.enqueue(key);
        }
    }

    /// A signal asked us to stop: stop accepting, and end every connection. Only those that
    /// had already ended well close in order; the rest are reset, since their transfer was cut
    /// short and the peer must not take it for complete.
    fn interrupted(&mut self, sig: i32) -> Result<()> {
        if self.main && self.draining.is_none() {
            crate::systemd::stopping();
        }
        let reset = self.close_all();
        if self.draining.is_some() {
            DRAIN_RESETS.fetch_add(reset, Ordering::Relaxed);
            DRAINED.store(true, Ordering::Relaxed);
        }
        let (class, name) = if sig == SIGINT {
            (Class::Interrupted, "SIGINT")
        } else {
            (Class::Terminated, "SIGTERM")
        };
        let what = match reset {
            0 => String::new(),
            1 => ": 1 connection reset".to_string(),
            n => format!(": {n} connections reset"),
        };
        Err(class.err(format!("stopped by {name}{what}")))
    }

    /// stdout failed: nothing more can be delivered, so every connection is reset. A reader
    /// that went away (`| head`) is how a pipeline says "enough": exit 0, quietly.
    fn output_failed(&mut self, e: io::Error) -> Result<()> {
        self.close_all();
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Ok(());
        }
        Err(anyhow!("writing to stdout: {}", io_phrase(&e)))
    }

    /// Stop accepting and end every connection (abortively unless it had ended well); how
    /// many were reset.
    fn close_all(&mut self) -> usize {
        if let Some(mut listening) = self.listening.take() {
            let _ = self.poll.registry().deregister(&mut listening.sock);
        }
        let mut reset = 0;
        let peers: Vec<Session> = self.peers.drain().collect();
        for peer in peers {
            let ok = peer.closing();
            reset += usize::from(!ok);
            let outcome = match ok {
                true => Ok(()),
                false => Err(Class::Network.err(format!(
                    "{}: reset: the run ended before the connection did",
                    peer.label
                ))),
            };
            ended(Event::Closed, &peer, &outcome, false);
            if let Some((label, mut child)) = peer.close(self.poll.registry(), ok) {
                if !child.reaped(&label) {
                    self.children.push((label, child));
                }
            }
        }
        reset
    }

    /// Before returning `result`: let stdout take what it was given and let the children of
    /// ended connections exit (for at most `CHILD_GRACE`), still answering signals. After a
    /// signal nothing is waited for, unless it was drained.
    fn finish(mut self, result: Result<()>) -> Result<()> {
        if let Err(e) = &result {
            // After a drain, what the finished connections sent still goes to stdout.
            if matches!(classify(e), Class::Interrupted | Class::Terminated)
                && self.draining.is_none()
            {
                return result;
            }
        }
        let grace = Instant::now() + CHILD_GRACE;
        let mut events = Events::with_capacity(16);
        loop {
            self.children
                .retain_mut(|(label, child)| !child.reaped(label));
            let output_done = self.stdout.as_ref().is_none_or(Sink::settled);
            let now = Instant::now();
            let children_done = self.children.is_empty() || now >= grace;
            if output_done && children_done {
                break;
            }
            let timeout = (!children_done).then(|| grace - now);
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
            if events.iter().any(|e| e.token() == SIGNALS) {
                if let Some(sig) = self.signals_arrived() {
                    return self.interrupted(sig);
                }
            }
        }
        match self.stdout.take().map(Sink::finish) {
            // stdout's reader went away: that is how `| head` says "enough".
            Some(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            Some(Err(e)) => result.and(Err(anyhow!("writing to stdout: {}", io_phrase(&e)))),
            _ => result,
        }
    }
}

/// Whether a drain ended, and the connections it reset, over every loop of the run.
static DRAINED: AtomicBool = AtomicBool::new(false);
static DRAIN_RESETS: AtomicUsize = AtomicUsize::new(0);

/// Once every loop has ended: how a drain went, said once for the run.
pub(crate) fn say_drained() {
    if !DRAINED.load(Ordering::Relaxed) {
        return;
    }
    let what = match DRAIN_RESETS.load(Ordering::Relaxed) {
        0 => "every connection finished".to_string(),
        1 => "1 connection reset, unfinished".to_string(),
        n => format!("{n} connections reset, unfinished"),
    };
    report::note(Event::Stopped, format_args!("drained: {what}"));
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        _ => "SIGTERM",
    }
}

/// A connection is over: counted by how it ended, and said as its one `closed` or `refused`
/// line (`--log-format json`); `text`: its failure is said as a text line.
fn ended(event: Event, peer: &Session, result: &Result<()>, text: bool) {
    let outcome = Outcome::of(result, peer.handshaking());
    let (bytes_in, bytes_out) = peer.bytes();
    metrics::connection_closed(outcome, bytes_in, bytes_out);
    if text {
        if let Err(e) = result {
            report::info(format_args!("{e:#}"));
        }
    }
    // Only JSON lines say more: text need not gather it (a certificate to parse).
    if !report::json() {
        return;
    }
    let (status, reason) = match result {
        Ok(()) => (0, None),
        Err(e) => (classify(e).exit_code(), Some(format!("{e:#}"))),
    };
    let end = report::End {
        outcome: outcome.name(),
        status,
        reason,
    };
    report::connection_end(event, &peer.summary(), &end);
}

/// A client refused before it became a connection: counted, and said once (as text, or as
/// its `refused` line).
fn refused(peer: &Peer, outcome: Outcome, class: Class, why: String) {
    metrics::connection_refused(outcome);
    if report::json() {
        let summary = report::Summary {
            peer: peer.to_string(),
            ..report::Summary::default()
        };
        let end = report::End {
            outcome: outcome.name(),
            status: class.exit_code(),
            reason: Some(why),
        };
        report::connection_end(Event::Refused, &summary, &end);
    } else {
        report::info(why);
    }
}

/// Whether a client waits in `sock`'s backlog (without taking it).
fn pending(sock: &Listener) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(sock, PollFlags::IN)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
}

/// Watch SIGINT and SIGTERM (unless they were ignored when we started, as for a background
/// job) and SIGCHLD. A second SIGINT or SIGTERM ends the process at once.
fn catch_signals() -> Result<Signals> {
    let armed = Arc::new(AtomicBool::new(false));
    let mut watched = vec![SIGCHLD];
    for (sig, status) in [(SIGINT, 130), (SIGTERM, 143)] {
        if ignored(sig) {
            continue;
        }
        signal_hook::flag::register_conditional_shutdown(sig, status, armed.clone())?;
        signal_hook::flag::register(sig, armed.clone())?;
        watched.push(sig);
    }
    Ok(Signals::new(watched)?)
}

/// Whether `sig` is ignored (inherited SIG_IGN).
#[allow(unsafe_code)] // sigaction: no safe wrapper reads a disposition
fn ignored(sig: i32) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one into `old`,
    // which is a plain C struct for which all-zero bytes are a valid value.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}
