//! `--status`: plain HTTP/1.x on its own socket, for probes and Prometheus: `/healthz`,
//! `/readyz` and `/metrics` (see `metrics`), anything else 404.
//!
//! It runs in a thread of its own with its own mio loop, so the relay never waits for it.
//! Each client is bounded: a request head of at most [`MAX_HEAD`] bytes, read and answered
//! within [`CLIENT_TIME`]; at most [`MAX_CLIENTS`] at once, a newcomer taking the place of
//! the oldest. A client that sends nothing, or a head without end, only ever holds its own
//! place, and not for long.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::metrics;
use crate::net::Family;
use crate::report::{self, Event};
use crate::stream::{ListenAt, Listener, Stream};

/// The most a request head (request line and headers) may take.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client has to send its request and take the answer.
const CLIENT_TIME: Duration = Duration::from_secs(3);
/// Status clients at once; beyond, the oldest is let go.
const MAX_CLIENTS: usize = 16;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Clients' tokens start here.
const FIRST: usize = 2;

/// The status server, running; it stops (and its socket file goes) when this is dropped.
pub(crate) struct Status {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    /// Where it listens, as said on stderr.
    pub shown: String,
}

impl Drop for Status {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            // The loop only ever does non-blocking work: it sees the flag at once.
            let _ = thread.join();
        }
    }
}

/// `--status`, if given: started, and its address said (`status on ADDR`).
pub(crate) fn announced(at: Option<&ListenAt>, family: Family) -> Result<Option<Status>> {
    let Some(at) = at else {
        return Ok(None);
    };
    let status = start(at, family)?;
    report::note(Event::Listening, format_args!("status on {}", status.shown));
    Ok(Some(status))
}

/// Listen at `at` and serve status requests in a thread of their own.
pub(crate) fn start(at: &ListenAt, family: Family) -> Result<Status> {
    let mut sock = at.bind(family).context("--status")?;
    let shown = sock.shown();
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut sock, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let stop = Arc::new(AtomicBool::new(false));
    let server = Server {
        poll,
        sock,
        clients: Slab::new(),
        stop: stop.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("status".into())
        .spawn(move || server.run())
        .context("--status: starting its thread")?;
    Ok(Status {
        stop,
        waker,
        thread: Some(thread),
        shown,
    })
}

struct Server {
    poll: Poll,
    sock: Listener,
    clients: Slab<Client>,
    stop: Arc<AtomicBool>,
}

/// One status client: its request as it arrives, then the answer as it leaves.
struct Client {
    stream: Stream,
    head: Vec<u8>,
    /// The answer, once the head is complete, and how much of it is written.
    answer: Option<(Vec<u8>, usize)>,
    /// It must be done by then.
    deadline: Instant,
}

impl Server {
    fn run(mut self) {
        let mut events = Events::with_capacity(64);
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            self.clients.retain(|_, c| c.deadline > now);
            let timeout = self
                .clients
                .iter()
                .map(|(_, c)| c.deadline.saturating_duration_since(now))
                .min();
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Nothing to serve with: the relay goes on without its status.
                Err(_) => return,
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    Token(t) => {
                        let key = t - FIRST;
                        let done = match self.clients.get_mut(key) {
                            Some(client) => client.turn(),
                            None => false,
                        };
                        if done {
                            self.drop_client(key);
                        }
                    }
                }
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            let (stream, _) = match self.sock.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                // Out of descriptors and the like: the next readiness tries again.
                Err(_) => return,
            };
            if self.clients.len() >= MAX_CLIENTS {
                let oldest = self
                    .clients
                    .iter()
                    .min_by_key(|(_, c)| c.deadline)
                    .map(|(k, _)| k);
                if let Some(key) = oldest {
                    self.drop_client(key);
                }
            }
            let entry = self.clients.vacant_entry();
            let key = entry.key();
            let mut client = Client {
                stream,
                head: Vec::with_capacity(512),
                answer: None,
                deadline: Instant::now() + CLIENT_TIME,
            };
            if self
                .poll
                .registry()
                .register(
                    &mut client.stream,
                    Token(key + FIRST),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                continue;
            }
            entry.insert(client);
            // Edge-triggered: what arrived with the connection is read now.
            if self.clients.get_mut(key).is_some_and(Client::turn) {
                self.drop_client(key);
            }
        }
    }

    fn drop_client(&mut self, key: usize) {
        if let Some(mut client) = self.clients.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut client.stream);
        }
    }
}

impl Client {
    /// Read the head, then write the answer, as far as the socket allows; true when the
    /// client is done with (answered, or gone).
    fn turn(&mut self) -> bool {
        if self.answer.is_none() {
            let answer = match self.read_head() {
                Head::Complete(len) => answer(&self.head[..len]),
                Head::TooLong => response(
                    431,
                    "Request Header Fields Too Large",
                    "text/plain",
                    b"request head too long\n",
                    false,
                ),
                Head::Pending => return false,
                Head::Gone => return true,
            };
            self.answer = Some((answer, 0));
        }
        let Some((answer, written)) = &mut self.answer else {
            return true;
        };
        while *written < answer.len() {
            match self.stream.write(&answer[*written..]) {
                Ok(0) => return true,
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        true
    }

    /// Read what has come, up to [`MAX_HEAD`] bytes.
    fn read_head(&mut self) -> Head {
        let mut buf = [0u8; 1024];
        loop {
            if let Some(end) = head_end(&self.head) {
                return Head::Complete(end);
            }
            if self.head.len() >= MAX_HEAD {
                return Head::TooLong;
            }
            let room = (MAX_HEAD - self.head.len()).min(buf.len());
            match self.stream.read(&mut buf[..room]) {
                Ok(0) => return Head::Gone,
                Ok(n) => self.head.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Head::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Head::Gone,
            }
        }
    }
}

/// Where reading a request head got.
enum Head {
    /// It is complete, this long.
    Complete(usize),
    /// [`MAX_HEAD`] bytes came without its end.
    TooLong,
    /// More is to come.
    Pending,
    /// The client went away, or its socket failed.
    Gone,
}

/// Where the head ends (after its blank line), if it has.
fn head_end(data: &[u8]) -> Option<usize> {
    let crlf = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = data.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The answer to a request head.
fn answer(head: &[u8]) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return response(400, "Bad Request", "text/plain", b"bad request\n", false);
    };
    if !version.starts_with("HTTP/1.") {
        return response(400, "Bad Request", "text/plain", b"HTTP/1.x only\n", false);
    }
    let head_only = method == "HEAD";
    let path = target.split('?').next().unwrap_or_default();
    if method != "GET" && !head_only {
        return response(404, "Not Found", "text/plain", b"not found\n", head_only);
    }
    match path {
        "/healthz" => response(200, "OK", "text/plain", b"ok\n", head_only),
        "/readyz" if metrics::ready() => response(200, "OK", "text/plain", b"ready\n", head_only),
        "/readyz" => response(
            503,
            "Service Unavailable",
            "text/plain",
            b"not ready\n",
            head_only,
        ),
        "/metrics" => response(
            200,
            "OK",
            "text/plain; version=0.0.4",
            metrics::render().as_bytes(),
            head_only,
        ),
        _ => response(404, "Not Found", "text/plain", b"not found\n", head_only),
    }
}

fn response(code: u16, reason: &str, kind: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(request: &str) -> String {
        let answer = answer(request.as_bytes());
        let text = String::from_utf8_lossy(&answer);
        text.lines().next().unwrap_or_default().to_string()
    }

    #[test]
    fn paths_and_methods() {
        assert_eq!(
            status_of("GET /healthz HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 200 OK"
        );
        assert_eq!(
            status_of("GET /healthz?x=1 HTTP/1.0\r\n\r\n"),
            "HTTP/1.1 200 OK"
        );
        assert_eq!(
            status_of("GET /metrics HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 200 OK"
        );
        assert_eq!(
            status_of("GET / HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            status_of("POST /healthz HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(status_of("hello\r\n\r\n"), "HTTP/1.1 400 Bad Request");
        assert_eq!(
            status_of("GET /x SSH-2.0\r\n\r\n"),
            "HTTP/1.1 400 Bad Request"
        );
    }

    #[test]
    fn readiness_ends_with_the_drain() {
        // The one test of this process that touches readiness.
        metrics::set_ready();
        assert_eq!(status_of("GET /readyz HTTP/1.1\r\n\r\n"), "HTTP/1.1 200 OK");
        metrics::set_draining();
        assert_eq!(
            status_of("GET /readyz HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 503 Service Unavailable"
        );
        assert_eq!(
            status_of("GET /healthz HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 200 OK"
        );
    }

    #[test]
    fn a_head_ends_at_its_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }
}
