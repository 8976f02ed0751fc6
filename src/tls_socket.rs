//! One TLS connection over a non-blocking socket: the rustls state, what the socket is ready
//! for, and the TCP-level ways of ending it (a half-close, watching for the peer's close, an
//! abortive close).
//!
//! The loop registers the socket once for both directions and never re-registers; what it is
//! ready for is remembered in an `events::Ready`.

use std::io::{self, BufRead, Read, Write};

use crate::error::{io_phrase, socket_class, Class};
use crate::events::{attempt, Ready};
use crate::net::Acks;
use crate::stream::Stream;
use crate::trust::Explainer;
use crate::wire::Wire;

/// How the peer ended its side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PeerEnd {
    /// close_notify: everything it sent arrived.
    CloseNotify,
    /// TCP EOF without close_notify: the stream may be truncated.
    Truncated,
}

/// Why the connection failed.
#[derive(Debug)]
pub(crate) enum ConnError {
    Tls(rustls::Error),
    Io(io::Error),
    /// `--strict-sni` refused the client (`unrecognized_name` was sent).
    Refused(crate::sni::Refusal),
}

/// What watching for the peer's TCP close found.
#[derive(Debug)]
pub(crate) enum PeerClose {
    /// Not yet.
    Pending,
    /// The peer closed its side in order (FIN).
    Closed,
    /// The peer reset the connection: it closed with our bytes unread.
    Reset(io::Error),
}

#[allow(
    clippy::struct_excessive_bools,
    reason = "what the socket has done (EOF, shut down, alerted, sent), each observed apart"
)]
pub(crate) struct TlsSocket {
    /// The byte stream: the TCP socket, through any `https://` proxies.
    pub sock: Wire,
    pub tls: rustls::Connection,
    pub ready: Ready,
    tcp_eof: bool,
    /// Our TCP FIN is sent.
    write_shut: bool,
    /// A fatal alert went out whole: the peer knows the connection failed.
    alerted: bool,
    pub peer_end: Option<PeerEnd>,
    /// Where our application data ended in the TCP stream (the kernel's count), once our
    /// close_notify is queued behind it.
    app_end: Option<u64>,
    /// Application data has been given to TLS (the handshake's own records, such as session
    /// tickets, are not ours to have delivered).
    app_sent: bool,
    /// When the peer's TCP EOF was seen: whether its TCP had acknowledged every application
    /// byte we sent. A peer that closes with our bytes unread sends a reset, not a FIN, so
    /// a FIN after all of them were acknowledged means they were read.
    eof_acked: Option<bool>,
}

impl TlsSocket {
    pub(crate) fn new(sock: impl Into<Stream>, tls: rustls::Connection) -> TlsSocket {
        TlsSocket {
            sock: Wire::new(sock.into()),
            tls,
            ready: Ready::default(),
            tcp_eof: false,
            write_shut: false,
            alerted: false,
            peer_end: None,
            app_end: None,
            app_sent: false,
            eof_acked: None,
        }
    }

    pub(crate) fn handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// Whether the peer ended the TCP stream (with or without close_notify).
    pub(crate) fn tcp_eof(&self) -> bool {
        self.tcp_eof
    }

    /// Encrypt as much of `data` as rustls's send buffer takes; returns how much.
    pub(crate) fn send(&mut self, data: &[u8]) -> usize {
        // rustls's writer only fails after the connection is closed; treat that as full.
        let n = self.tls.writer().write(data).unwrap_or(0);
        self.app_sent |= n > 0;
        n
    }

    /// Queue close_notify: our direction is complete. Called once everything before it is
    /// on the socket, so where our application data ends is known.
    pub(crate) fn send_close_notify(&mut self) {
        self.app_end = self.acks().map(Acks::end);
        self.tls.send_close_notify();
    }

    /// The error the socket reported while it may not have been read or written (a reset
    /// under back-pressure), if any.
    pub(crate) fn failure(&mut self) -> Option<io::Error> {
        if !std::mem::take(&mut self.ready.failed) {
            return None;
        }
        self.sock.stream.take_error().ok().flatten()
    }

    /// What the peer's TCP has acknowledged of our stream.
    pub(crate) fn acks(&self) -> Option<Acks> {
        self.sock.acks()
    }

    /// Whether the peer's TCP has acknowledged every application byte we sent (None: the
    /// kernel cannot say).
    pub(crate) fn app_acked(&self) -> Option<bool> {
        if !self.app_sent {
            return Some(true);
        }
        let acks = self.acks()?;
        Some(match self.app_end {
            Some(end) => acks.acked >= end,
            // Nothing but application data was written so far: all of it.
            None => acks.unacked == 0,
        })
    }

    /// The peer's TCP stream ended (FIN): note whether everything we sent was acknowledged
    /// by then.
    fn saw_eof(&mut self) {
        if !self.tcp_eof {
            self.tcp_eof = true;
            self.eof_acked = self.app_acked();
        }
    }

    /// Whether the peer ended in order: its close_notify, then its FIN after every
    /// application byte we sent was acknowledged, and our close_notify is queued. A reset
    /// after that was provoked only by our close_notify reaching a socket the peer had
    /// already closed: nothing of ours was lost.
    pub(crate) fn ended_in_order(&self) -> bool {
        self.peer_end == Some(PeerEnd::CloseNotify)
            && self.tcp_eof
            && self.eof_acked == Some(true)
            && self.app_end.is_some()
    }

    /// After the peer's FIN: whether every application byte we sent was acknowledged
    /// before it (`Some(false)`: some were not, `None`: the kernel cannot say).
    pub(crate) fn acked_at_eof(&self) -> Option<bool> {
        self.eof_acked
    }

    /// Whether our TCP FIN is sent.
    pub(crate) fn write_shut(&self) -> bool {
        self.write_shut
    }

    /// Whether TLS records are still waiting for the socket.
    pub(crate) fn wants_write(&self) -> bool {
        self.tls.wants_write() || self.sock.pending()
    }

    /// Write queued TLS records while the socket takes them; true if anything moved.
    pub(crate) fn flush(&mut self) -> Result<bool, ConnError> {
        let mut moved = false;
        loop {
            let sock = &mut self.sock;
            let result = if self.tls.wants_write() {
                attempt(&mut self.ready.write, || self.tls.write_tls(sock))
            } else if sock.pending() {
                // A proxy's TLS session holds what the socket did not take yet.
                attempt(&mut self.ready.write, || sock.flush_pending().map(|()| 0))
            } else {
                break;
            };
            match result {
                None => break,
                Some(Ok(_)) => moved = true,
                Some(Err(e)) => return Err(ConnError::Io(e)),
            }
        }
        Ok(moved)
    }

    /// Read and decrypt from the socket until plaintext is ready or the socket is drained;
    /// true if anything moved.
    pub(crate) fn fill(&mut self) -> Result<bool, ConnError> {
        let mut moved = false;
        while !self.tcp_eof && self.peer_end.is_none() && self.tls.wants_read() {
            match attempt(&mut self.ready.read, || self.tls.read_tls(&mut self.sock)) {
                None => break,
                Some(Ok(n)) => {
                    moved = true;
                    if n == 0 {
                        self.saw_eof();
                    }
                    if let Err(e) = self.tls.process_new_packets() {
                        if let Some(refusal) = crate::sni::take_refusal() {
                            self.refuse_name();
                            return Err(ConnError::Refused(refusal));
                        }
                        // An alert may be queued: try to let the peer know why.
                        let mut wrote = false;
                        while self.tls.wants_write() {
                            match self.tls.write_tls(&mut self.sock) {
                                Ok(n) if n > 0 => wrote = true,
                                _ => break,
                            }
                        }
                        let _ = self.sock.flush_pending();
                        self.alerted = wrote && !self.tls.wants_write() && !self.sock.pending();
                        return Err(ConnError::Tls(e));
                    }
                }
                Some(Err(e)) => return Err(ConnError::Io(e)),
            }
        }
        Ok(moved)
    }

    /// `--strict-sni` refused the client: rustls queued `access_denied` (its answer to no
    /// certificate), but the client is told that the name it asked for is unknown.
    fn refuse_name(&mut self) {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut io::sink()) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        let alert = &crate::sni::UNRECOGNIZED_NAME;
        // Nothing was sent yet: the socket's buffer takes these few bytes at once.
        self.alerted = matches!(self.sock.write(alert), Ok(n) if n == alert.len())
            && self.sock.flush_pending().is_ok()
            && !self.sock.pending();
    }

    /// Turn a failure into the error the user is told, where the TLS layer can say it: a TLS
    /// error (or a socket error that followed an alert: the alert says why) is explained;
    /// a plain socket error is handed back, with whether the peer had closed before it.
    pub(crate) fn explain(
        &mut self,
        e: ConnError,
        label: &str,
        established: bool,
        explain: &Explainer,
    ) -> Result<anyhow::Error, (io::Error, bool)> {
        // Whether the peer had closed before the error (salvage reads on and may see EOF).
        let closed = self.tcp_eof;
        let e = match e {
            ConnError::Io(e) => match self.salvage() {
                Some(alert) => ConnError::Tls(alert),
                None => ConnError::Io(e),
            },
            tls => tls,
        };
        match e {
            ConnError::Tls(e) => Ok(explain.error(&e, label, established)),
            ConnError::Refused(why) => Ok(Class::Handshake.err(format!("{label} {why}"))),
            ConnError::Io(e) => Err((e, closed)),
        }
    }

    /// After a socket error: read what the kernel still holds (data queued before a reset is
    /// still readable), in case it is a TLS alert that explains the failure.
    pub(crate) fn salvage(&mut self) -> Option<rustls::Error> {
        self.ready.read = true;
        match self.fill() {
            Err(ConnError::Tls(e)) => Some(e),
            _ => None,
        }
    }

    /// Offer the decrypted bytes that are ready to `sink`, which returns how many it took.
    /// Returns that count; 0 also when nothing is ready, and when the peer's end of stream is
    /// reached (recorded in `peer_end`; all plaintext has been taken by then).
    pub(crate) fn deliver(&mut self, sink: impl FnOnce(&[u8]) -> usize) -> usize {
        if self.peer_end.is_some() {
            return 0;
        }
        let mut reader = self.tls.reader();
        match reader.fill_buf() {
            Ok([]) => {
                self.peer_end = Some(PeerEnd::CloseNotify);
                0
            }
            Ok(data) => {
                let n = sink(data).min(data.len());
                reader.consume(n);
                n
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.peer_end = Some(PeerEnd::Truncated);
                0
            }
            // WouldBlock: nothing decrypted yet.
            Err(_) => 0,
        }
    }

    /// Send TCP FIN once: everything we will ever send is on the wire.
    pub(crate) fn shutdown_write(&mut self) {
        if !self.write_shut {
            self.write_shut = self.sock.shutdown_write();
        }
    }

    /// After both close_notifies: read what is left of the TCP stream (nothing meaningful can
    /// come after close_notify, so it is discarded) until the peer closes or resets.
    pub(crate) fn watch_close(&mut self, scratch: &mut [u8]) -> PeerClose {
        if self.tcp_eof {
            return PeerClose::Closed;
        }
        loop {
            match attempt(&mut self.ready.read, || self.sock.read(scratch)) {
                None => return PeerClose::Pending,
                Some(Ok(0)) => {
                    self.saw_eof();
                    return PeerClose::Closed;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return PeerClose::Reset(e),
            }
        }
    }

    /// Make the coming close abortive: the peer gets a TCP reset instead of FIN, so it
    /// cannot mistake the end for a complete stream. After a fatal alert there is no such
    /// risk, and a reset could overtake the alert and hide its reason: FIN then.
    pub(crate) fn abort(&mut self) {
        if !self.alerted {
            self.sock.stream.reset_on_close();
        }
    }
}

/// A socket error during the handshake, as the user is told it. A FIN, or a reset that
/// answered our bytes after a FIN (EPIPE), is the peer closing; a plain reset is a reset.
pub(crate) fn handshake_io_error(label: &str, e: &io::Error, closed: bool) -> anyhow::Error {
    let class = socket_class(e);
    if class == Class::Timeout {
        return class.err(format!("{label}: {}", io_phrase(e)));
    }
    if closed || e.kind() == io::ErrorKind::BrokenPipe {
        return Class::Handshake.err(format!(
            "{label} closed the connection during the TLS handshake"
        ));
    }
    class.err(format!(
        "{label}: {} during the TLS handshake",
        io_phrase(e)
    ))
}
