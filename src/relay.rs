//! The event loop for one connection: stdin → TLS → socket and socket → TLS → stdout, both at
//! once, each direction stopping only when the next stage cannot take more.
//!
//! Finishing rules (the stream semantics scripts rely on):
//! - stdin EOF: send close_notify and shut down the TCP write side (unless `--no-shutdown`),
//!   then keep receiving until the peer closes.
//! - peer close_notify under TLS 1.3: that ends its sending, not its receiving (half-close), so
//!   stdin goes on being sent until it ends; then close_notify, and finish once the socket took
//!   it. Under TLS 1.2 a close_notify closes the whole connection (RFC 5246 §7.2.1): answer it
//!   and finish. A terminal on stdin is never waited for. If the peer no longer takes bytes (it
//!   closed the socket), finish too: it ended the connection cleanly.
//! - peer TCP EOF without close_notify: what arrived is written, then exit 6.
//! - stdout's reader gone: finish quietly.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::conn::{Conn, ConnError, PeerEnd};
use crate::error::{io_phrase, socket_class, Class};
use crate::stdio::{Chunk, Input, Sink, Source};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

/// What the loop needs to know about the connection beyond its bytes.
pub struct Session<'a> {
    /// How messages name the peer: "example.com:443", "client 192.0.2.1:50000".
    pub peer: String,
    /// Turn a rustls error into the error to report (class and message).
    pub describe: &'a dyn Fn(&rustls::Error) -> anyhow::Error,
    /// Called once when the handshake completes (for `-v`).
    pub on_established: &'a dyn Fn(&Conn),
    /// `--no-shutdown`: send nothing at stdin EOF.
    pub no_shutdown: bool,
    /// `-w`: the handshake must be done by then.
    pub handshake_deadline: Option<Instant>,
    /// `-i`: give up after this long without a byte either way.
    pub idle: Option<Duration>,
}

/// Relay stdin/stdout through `conn` until the connection ends; everything received is on
/// stdout when this returns.
pub fn run(mut conn: Conn, session: &Session<'_>) -> Result<()> {
    let mut poll = Poll::new()?;
    poll.registry().register(
        &mut conn.sock,
        SOCKET,
        Interest::READABLE | Interest::WRITABLE,
    )?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let mut input = Source::stdin(waker.clone())
        .map_err(|e| anyhow!("cannot read stdin: {}", io_phrase(&e)))?;
    let mut output =
        Sink::stdout(waker).map_err(|e| anyhow!("cannot write to stdout: {}", io_phrase(&e)))?;

    let result = pump(&mut poll, &mut conn, session, &mut input, &mut output);
    match output.finish() {
        // stdout's reader went away: that is how `| head` says "enough".
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow!("writing to stdout: {}", io_phrase(&e))),
        Ok(()) => result,
    }
}

fn pump(
    poll: &mut Poll,
    conn: &mut Conn,
    session: &Session<'_>,
    input: &mut Source,
    output: &mut Sink,
) -> Result<()> {
    let peer = &session.peer;
    let fail = |e: ConnError| match e {
        ConnError::Tls(e) => (session.describe)(&e),
        ConnError::Io(e) => socket_class(&e).err(format!("{peer}: {}", io_phrase(&e))),
    };
    let mut events = Events::with_capacity(8);
    let mut out: Option<Chunk> = None;
    let mut pending: Option<(Chunk, usize)> = None;
    let mut input_done = false;
    let mut established = false;
    let mut peer_done = false;
    let mut finishing = false;
    let stdin_is_terminal = std::io::stdin().is_terminal();
    let mut last_activity = Instant::now();

    let result = 'relay: loop {
        let mut moved = false;

        // Socket → TLS → stdout, while stdout has a free buffer.
        loop {
            match conn.fill() {
                Ok(m) => moved |= m,
                Err(e) => return finish_out(output, &mut out, Err(fail(e))),
            }
            if out.is_none() {
                out = output.buffer();
            }
            let Some(chunk) = out.as_mut() else { break };
            let n = conn.take(&mut chunk.buf[chunk.len..]);
            if n == 0 {
                break;
            }
            chunk.len += n;
            moved = true;
            if let Some(full) = out.take_if(|c| c.len == c.buf.len()) {
                output.send(full);
            }
        }
        if output.failed() {
            break Ok(());
        }
        if !established && !conn.handshaking() {
            established = true;
            (session.on_established)(conn);
        }
        match conn.peer_end {
            Some(_) if !established => {
                break Err(Class::Handshake.err(format!(
                    "{peer} closed the connection during the TLS handshake"
                )))
            }
            Some(PeerEnd::Truncated) => {
                break Err(Class::Truncated.err(format!(
                    "{peer} closed the connection without close_notify: the data may be truncated"
                )))
            }
            Some(PeerEnd::CloseNotify) => peer_done = true,
            None => {}
        }
        if peer_done && !finishing && (input_done || stdin_is_terminal || !half_close(conn)) {
            finishing = true;
            conn.close();
        }

        // stdin → TLS, while rustls's send buffer takes more.
        while established && !finishing && !input_done {
            if pending.is_none() {
                match input.try_next() {
                    None => break,
                    Some(Input::Data(chunk)) => pending = Some((chunk, 0)),
                    Some(Input::Eof) => {
                        input_done = true;
                        if !session.no_shutdown {
                            conn.close();
                        }
                        moved = true;
                        break;
                    }
                    Some(Input::Failed(e)) => {
                        break 'relay Err(anyhow!("reading stdin: {}", io_phrase(&e)));
                    }
                }
            }
            let Some((chunk, sent)) = pending.as_mut() else {
                break;
            };
            let n = conn.send(&chunk.bytes()[*sent..]);
            if n == 0 {
                break;
            }
            *sent += n;
            moved = true;
            if let Some((done, _)) = pending.take_if(|(c, sent)| *sent == c.len) {
                input.recycle(done);
            }
        }

        // TLS → socket.
        match conn.flush() {
            Ok(m) => moved |= m,
            // The peer has closed; if it no longer takes our bytes, we are done anyway.
            Err(_) if peer_done => break Ok(()),
            Err(e) => break Err(fail(e)),
        }
        if finishing && !conn.wants_write() {
            break Ok(());
        }

        let now = Instant::now();
        if moved {
            last_activity = now;
            continue;
        }

        // Nothing can move until something happens: hand a partial chunk to stdout first,
        // so interactive traffic is not held back.
        if let Some(chunk) = out.take() {
            output.send(chunk);
        }
        let mut timeout: Option<Duration> = None;
        if !established {
            if let Some(deadline) = session.handshake_deadline {
                if now >= deadline {
                    break Err(
                        Class::Timeout.err(format!("TLS handshake with {peer} timed out (-w)"))
                    );
                }
                timeout = Some(deadline - now);
            }
        }
        if let Some(idle) = session.idle {
            let deadline = last_activity + idle;
            if now >= deadline {
                break Err(Class::Timeout
                    .err(format!("no data from or to {peer} for {} (-i)", secs(idle))));
            }
            timeout = Some(timeout.map_or(deadline - now, |t| t.min(deadline - now)));
        }
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e.into()),
        }
        for event in events.iter() {
            if event.token() == SOCKET {
                conn.on_event(event);
            }
        }
    };
    finish_out(output, &mut out, result)
}

/// Whether the protocol lets the peer go on receiving after its close_notify (TLS 1.3).
fn half_close(conn: &Conn) -> bool {
    conn.tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
}

/// Hand any partly filled chunk to stdout, then pass `result` on.
fn finish_out(output: &mut Sink, out: &mut Option<Chunk>, result: Result<()>) -> Result<()> {
    if let Some(chunk) = out.take() {
        output.send(chunk);
    }
    result
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}
