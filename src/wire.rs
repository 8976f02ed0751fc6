//! The byte stream a connection's TLS runs over: a TCP or Unix socket, seen through the TLS sessions
//! of any `https://` proxies on the way (each inside the one before), with bytes put back
//! for the next phase to read first (what came after a proxy's reply, or after a STARTTLS
//! go-ahead for MySQL).
//!
//! Non-blocking like the socket under it: `WouldBlock` means the socket would block. A proxy
//! session's own buffers are bounded by rustls (its send buffer limit), and what they hold
//! is pushed down by [`Wire::flush_pending`] whenever the socket may take it.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Mutex};

use rustls::ClientConnection;

use crate::net::{self, Acks};
use crate::stream::Stream;

pub(crate) struct Wire {
    pub stream: Stream,
    /// TLS sessions with `https://` proxies, outermost first.
    layers: Vec<ClientConnection>,
    /// Bytes to be read before anything else.
    unread: Vec<u8>,
    /// close_notify has been queued on the proxy layers.
    closing: bool,
    /// Where the peer's first bytes are kept, until there are enough of them.
    first: Option<FirstBytes>,
    /// Bytes written to the socket so far (for a Unix socket's acknowledgements).
    written: u64,
}

/// How many of the peer's first bytes [`Wire::keep_first`] keeps.
const FIRST_KEPT: usize = 256;

/// The peer's first bytes, kept for a message: a server that answers a ClientHello in plain
/// text (`220 mail.example ESMTP`) is named for what it is.
#[derive(Clone, Default)]
pub(crate) struct FirstBytes(Arc<Mutex<Vec<u8>>>);

impl FirstBytes {
    pub(crate) fn get(&self) -> Vec<u8> {
        self.0.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// Keep what fits; false once full.
    fn keep(&self, bytes: &[u8]) -> bool {
        let Ok(mut kept) = self.0.lock() else {
            return false;
        };
        let room = FIRST_KEPT.saturating_sub(kept.len());
        kept.extend_from_slice(&bytes[..room.min(bytes.len())]);
        kept.len() < FIRST_KEPT
    }
}

impl Wire {
    pub(crate) fn new(stream: Stream) -> Wire {
        Wire {
            stream,
            layers: Vec::new(),
            unread: Vec::new(),
            closing: false,
            first: None,
            written: 0,
        }
    }

    /// From now on, keep the first bytes read (up to a few hundred) where the result can
    /// see them.
    pub(crate) fn keep_first(&mut self) -> FirstBytes {
        let first = FirstBytes::default();
        self.first = Some(first.clone());
        first
    }

    /// From now on, speak through a TLS session with a proxy (inside those already here).
    /// Nothing may be waiting to be read: it would be taken for the new session's.
    pub(crate) fn push_layer(&mut self, tls: ClientConnection) -> bool {
        if !self.unread.is_empty() {
            return false;
        }
        self.layers.push(tls);
        true
    }

    /// Bytes the next reader gets first.
    pub(crate) fn unread(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            let mut rest = std::mem::replace(&mut self.unread, bytes);
            self.unread.append(&mut rest);
        }
    }

    /// What the peer has taken of our stream: acknowledged by its TCP, or read from a Unix
    /// socket (counted from what we wrote: no proxy is ever in between there).
    pub(crate) fn acks(&self) -> Option<Acks> {
        match &self.stream {
            Stream::Tcp(tcp) => net::acks(tcp),
            Stream::Unix(unix) => net::unix_acks(unix, self.written),
        }
    }

    /// Push what the proxy sessions hold towards the socket, as far as it takes it.
    pub(crate) fn flush_pending(&mut self) -> io::Result<()> {
        flush_layers(&mut self.stream, &mut self.layers)
    }

    /// Whether a proxy session holds bytes the socket has not taken.
    pub(crate) fn pending(&self) -> bool {
        self.layers.iter().any(|l| l.wants_write())
    }

    /// Our side is done: close_notify to each proxy, innermost first, then TCP FIN once they
    /// are on their way. False while a proxy's close_notify waits for the socket: call again.
    pub(crate) fn shutdown_write(&mut self) -> bool {
        if !self.closing {
            self.closing = true;
            for layer in self.layers.iter_mut().rev() {
                layer.send_close_notify();
            }
        }
        let _ = self.flush_pending();
        if self.pending() {
            return false;
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        true
    }
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = if !self.unread.is_empty() {
            let n = buf.len().min(self.unread.len());
            buf[..n].copy_from_slice(&self.unread[..n]);
            self.unread.drain(..n);
            n
        } else {
            read_plain(&mut self.stream, &mut self.layers, buf)?
        };
        if let Some(first) = &self.first {
            if !first.keep(&buf[..n]) {
                self.first = None;
            }
        }
        Ok(n)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = write_plain(&mut self.stream, &mut self.layers, buf)?;
        self.written += n as u64;
        Ok(n)
    }

    /// rustls writes its queued records as one vector: straight to the socket (one writev,
    /// all of them, as the TCP socket itself would) when no proxy session is in between.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self.layers.is_empty() {
            true => {
                let n = self.stream.write_vectored(bufs)?;
                self.written += n as u64;
                Ok(n)
            }
            false => {
                let buf = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
                self.write(buf)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_pending()
    }
}

/// The plaintext of the last of `layers` (or the socket's bytes, when there is none).
fn read_plain(
    stream: &mut Stream,
    layers: &mut [ClientConnection],
    buf: &mut [u8],
) -> io::Result<usize> {
    let Some(last) = layers.len().checked_sub(1) else {
        return stream.read(buf);
    };
    loop {
        match layers[last].reader().read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // Data, close_notify (0), or the end without it (UnexpectedEof).
            result => return result,
        }
        let (below, top) = layers.split_at_mut(last);
        let top = &mut top[0];
        let n = top.read_tls(&mut Below {
            stream,
            layers: below,
        })?;
        let processed = top.process_new_packets().map_err(io::Error::other);
        // Handshake messages and alerts go out at once.
        match flush_layers(stream, layers) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
        processed?;
        if n == 0 {
            // TCP EOF reached the proxy session: its reader now says how it ended.
            return match layers[last].reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                result => result,
            };
        }
    }
}

/// Give `buf` to the last of `layers` to encrypt (or to the socket).
fn write_plain(
    stream: &mut Stream,
    layers: &mut [ClientConnection],
    buf: &[u8],
) -> io::Result<usize> {
    let Some(top) = layers.last_mut() else {
        return stream.write(buf);
    };
    let n = top.writer().write(buf)?;
    match flush_layers(stream, layers) {
        Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
        _ => {}
    }
    if n == 0 {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    Ok(n)
}

/// Push each layer's ciphertext into the one below, innermost first, down to the socket.
fn flush_layers(stream: &mut Stream, layers: &mut [ClientConnection]) -> io::Result<()> {
    let Some((top, below)) = layers.split_last_mut() else {
        return Ok(());
    };
    while top.wants_write() {
        match top.write_tls(&mut Below {
            stream,
            layers: below,
        }) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    flush_layers(stream, below)?;
    if top.wants_write() {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    Ok(())
}

/// The stream under a layer: the plaintext of the layers below it, or the socket.
struct Below<'a> {
    stream: &'a mut Stream,
    layers: &'a mut [ClientConnection],
}

impl Read for Below<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_plain(self.stream, self.layers, buf)
    }
}

impl Write for Below<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_plain(self.stream, self.layers, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        flush_layers(self.stream, self.layers)
    }
}
