//! The event loop: every connection of a run, the listening socket, stdin/stdout, children's
//! pipes and signals, on one mio poll in one thread.
//!
//! Sockets and pipes are edge-triggered and registered once; each connection remembers what
//! its descriptors are ready for and gets turns from a run queue until nothing of it can move
//! (see `peer`). stdin and stdout are served by threads that wake the loop (see `stdio`).
//! Memory is bounded by construction: a fixed set of stdin and stdout buffers shared by all
//! connections, rustls's own per-connection limits, and `--max-conns`.
//!
//! Timers (handshake, `-i`, linger) are checked whenever the run queue is empty, before the
//! loop sleeps; the sleep lasts until the earliest of them.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::error::{io_phrase, Class};
use crate::exec::Child;
use crate::peer::{Options, Peer, Shared, Turn};
use crate::report;
use crate::stdio::{Broadcast, Sink, Source};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const SIGNALS: Token = Token(2);
/// Connection `k` has tokens `FIRST + k * PER ..`: its socket, its child's stdin and stdout.
const FIRST: usize = 3;
const PER: usize = 3;

/// How long a signal shutdown waits for close_notify to reach the peers.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long to wait before accepting again after running out of descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// A listening socket and what to do with what it accepts.
pub struct Listening<'a> {
    pub sock: TcpListener,
    /// `-k`: go on accepting; otherwise the first connection is the only one.
    pub keep_open: bool,
    /// `--max-conns`: connections beyond this many are closed at once.
    pub max_conns: usize,
    /// Set up TLS for an accepted socket.
    pub accept: &'a dyn Fn(TcpStream, SocketAddr) -> Result<Peer>,
}

pub struct Hub<'a> {
    poll: Poll,
    opts: Options<'a>,
    peers: Slab<Peer>,
    queue: VecDeque<usize>,
    listening: Option<Listening<'a>>,
    accept_paused: Option<Instant>,
    stdin: Option<Broadcast>,
    stdout: Option<Sink>,
    signals: Signals,
    scratch: Vec<u8>,
    /// Children of finished connections, not reaped yet.
    children: Vec<(String, Child)>,
    /// Without `-k`: the outcome of the one connection.
    outcome: Option<Result<()>>,
}

impl<'a> Hub<'a> {
    pub fn new(opts: Options<'a>) -> Result<Hub<'a>> {
        let poll = Poll::new()?;
        let (stdin, stdout) = if opts.exec.is_some() {
            (None, None)
        } else {
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let source = Source::stdin(waker.clone())
                .map_err(|e| anyhow!("cannot read stdin: {}", io_phrase(&e)))?;
            let sink = Sink::stdout(waker)
                .map_err(|e| anyhow!("cannot write to stdout: {}", io_phrase(&e)))?;
            (Some(Broadcast::new(source)), Some(sink))
        };
        let mut signals = catch_signals()?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        Ok(Hub {
            poll,
            opts,
            peers: Slab::new(),
            queue: VecDeque::new(),
            listening: None,
            accept_paused: None,
            stdin,
            stdout,
            signals,
            scratch: vec![0; 16 * 1024],
            children: Vec::new(),
            outcome: None,
        })
    }

    /// Accept connections from `listening` (instead of, or besides, `add`).
    pub fn listen(&mut self, mut listening: Listening<'a>) -> Result<()> {
        self.poll
            .registry()
            .register(&mut listening.sock, LISTENER, Interest::READABLE)?;
        self.listening = Some(listening);
        Ok(())
    }

    /// Serve a connection.
    pub fn add(&mut self, peer: Peer) -> Result<()> {
        let entry = self.peers.vacant_entry();
        let key = entry.key();
        let peer = entry.insert(peer);
        if let Err(e) = peer.register(self.poll.registry(), FIRST + key * PER) {
            self.peers.remove(key);
            return Err(e.into());
        }
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
    /// on stdout when this returns.
    pub fn run(mut self) -> Result<()> {
        let mut events = Events::with_capacity(256);
        let result = loop {
            self.run_queue();
            if let Some(outcome) = self.outcome.take() {
                break outcome;
            }
            if self.stdout.as_ref().is_some_and(Sink::failed) {
                // stdout's reader went away: nothing more can be delivered.
                self.shutdown();
                break Ok(());
            }
            if self.peers.is_empty() && self.listening.is_none() {
                break Ok(());
            }
            let timeout = self.timers();
            if !self.queue.is_empty() || self.outcome.is_some() {
                continue;
            }
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e.into()),
            }
            let mut signalled = None;
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {
                        self.feed_stdin();
                        self.enqueue_all();
                    }
                    SIGNALS => signalled = signalled.or(self.signals_arrived()),
                    Token(t) => {
                        let (key, which) = ((t - FIRST) / PER, (t - FIRST) % PER);
                        if let Some(peer) = self.peers.get_mut(key) {
                            peer.on_event(which, event);
                            self.enqueue(key);
                        }
                    }
                }
            }
            if let Some(sig) = signalled {
                break self.interrupted(sig);
            }
        };
        self.finish(result)
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

    /// A connection is over: log or keep its outcome, reap its child.
    fn remove(&mut self, key: usize, outcome: Result<()>) {
        let peer = self.peers.remove(key);
        let many = self.opts.many;
        if let Err(e) = &outcome {
            if many {
                report::info(format_args!("{e:#}"));
            }
        }
        if let Some((label, mut child)) = peer.close(self.poll.registry(), outcome.is_ok()) {
            if many {
                if !child.reaped(&label) {
                    self.children.push((label, child));
                }
            } else {
                child.wait(&label);
            }
        }
        if !many {
            self.outcome = Some(outcome);
        }
    }

    /// Fire expired timers; the time until the next one.
    fn timers(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let idle = self.opts.idle;
        let expired: Vec<(usize, Result<()>)> = self
            .peers
            .iter()
            .filter_map(|(k, p)| p.expired(now, idle).map(|r| (k, r)))
            .collect();
        for (key, outcome) in expired {
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
            .filter_map(|(_, p)| p.next_timer(idle))
            .chain(self.accept_paused)
            .min();
        next.map(|at| at.saturating_duration_since(now))
    }

    fn accept_all(&mut self) {
        while self.accept_paused.is_none() {
            let Some(listening) = self.listening.as_mut() else {
                return;
            };
            let (sock, addr) = match listening.sock.accept() {
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
                    // Out of descriptors or memory: the connection stays in the backlog; try
                    // again shortly rather than spin.
                    report::warn(format_args!(
                        "accepting a connection: {}; retrying",
                        io_phrase(&e)
                    ));
                    self.accept_paused = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            };
            if self.peers.len() >= listening.max_conns {
                report::info(format_args!(
                    "refused client {addr}: {} connections open (--max-conns)",
                    self.peers.len()
                ));
                continue;
            }
            report::verbose(format_args!("connection from {addr}"));
            let keep_open = listening.keep_open;
            let added = (listening.accept)(sock, addr).and_then(|peer| self.add(peer));
            if !keep_open {
                // One connection: later clients are refused, not left waiting.
                if let Some(mut listening) = self.listening.take() {
                    let _ = self.poll.registry().deregister(&mut listening.sock);
                }
            }
            if let Err(e) = added {
                if keep_open {
                    report::info(format_args!("client {addr}: {e:#}"));
                } else {
                    self.outcome = Some(Err(e));
                }
            }
        }
    }

    /// The termination signal that arrived, if any; children that exited are reaped.
    fn signals_arrived(&mut self) -> Option<i32> {
        let mut stop = None;
        for sig in self.signals.pending() {
            if sig == SIGINT || sig == SIGTERM {
                stop = stop.or(Some(sig));
            }
        }
        self.children
            .retain_mut(|(label, child)| !child.reaped(label));
        stop
    }

    /// A signal asked us to stop: close every connection cleanly, then say how we ended.
    fn interrupted(&mut self, sig: i32) -> Result<()> {
        let open = self.peers.iter().filter(|(_, p)| p.established()).count();
        self.shutdown();
        if open == 0 {
            return Ok(());
        }
        let (class, name) = if sig == SIGINT {
            (Class::Interrupted, "SIGINT")
        } else {
            (Class::Terminated, "SIGTERM")
        };
        Err(class.err(format!(
            "stopped by {name}: sent close_notify to {open} open connection{}",
            if open == 1 { "" } else { "s" }
        )))
    }

    /// Stop accepting, send close_notify on every connection and wait a little for it to
    /// leave.
    fn shutdown(&mut self) {
        if let Some(mut listening) = self.listening.take() {
            let _ = self.poll.registry().deregister(&mut listening.sock);
        }
        for (_, peer) in self.peers.iter_mut() {
            peer.shut();
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let mut events = Events::with_capacity(256);
        loop {
            let mut pending = false;
            for (_, peer) in self.peers.iter_mut() {
                pending |= peer.flush_pending();
            }
            let now = Instant::now();
            if !pending || now >= deadline {
                break;
            }
            if self.poll.poll(&mut events, Some(deadline - now)).is_err() {
                break;
            }
            for event in events.iter() {
                let Token(t) = event.token();
                if t >= FIRST {
                    if let Some(peer) = self.peers.get_mut((t - FIRST) / PER) {
                        peer.on_event((t - FIRST) % PER, event);
                    }
                }
            }
        }
        let keys: Vec<usize> = self.peers.iter().map(|(k, _)| k).collect();
        for key in keys {
            let peer = self.peers.remove(key);
            if let Some((label, mut child)) = peer.close(self.poll.registry(), true) {
                if !child.reaped(&label) {
                    self.children.push((label, child));
                }
            }
        }
    }

    /// Wait for stdout to take what it was given, then pass `result` on.
    fn finish(mut self, result: Result<()>) -> Result<()> {
        self.children
            .retain_mut(|(label, child)| !child.reaped(label));
        match self.stdout.take().map(Sink::finish) {
            // stdout's reader went away: that is how `| head` says "enough".
            Some(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            Some(Err(e)) => result.and(Err(anyhow!("writing to stdout: {}", io_phrase(&e)))),
            _ => result,
        }
    }
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
fn ignored(sig: i32) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one into `old`,
    // which is a plain C struct for which all-zero bytes are a valid value.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}
