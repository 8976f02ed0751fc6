//! The engine of the plaintext dialogues before a TLS handshake (a proxy hop's request, a
//! STARTTLS dialogue): I/O, bounds and the `-vv` transcript. Each dialogue is a
//! [`Dialogue`], a script that reads and writes through a [`Preamble`]; [`Talk`] plays it,
//! on the connection's [`Wire`] for the event loop, or in memory ([`Talk::play`]). What
//! comes before the handshake, and in which order, is `route`'s.
//!
//! Nothing of a preamble is ever relayed. Bytes that arrive after a STARTTLS go-ahead and
//! before TLS are an attack (command injection) and end the connection — except for MySQL,
//! whose client sends its ClientHello right after the SSL request without waiting: those
//! bytes are handed to TLS. After a proxy's reply, what follows is handed on to a STARTTLS
//! dialogue (its server speaks first); before a TLS handshake or the next proxy's request it
//! can only be the proxy's own, and ends the connection. Everything is bounded: [`LINE_MAX`]
//! bytes per line, [`LINES_MAX`] lines and [`TOTAL_MAX`] bytes for the whole dialogue.

use std::io::{self, Read, Write};

use anyhow::Result;

use crate::error::{io_phrase, socket_class, Class};
use crate::events::{attempt, Ready};
use crate::report;
use crate::wire::Wire;

/// The longest line of a dialogue, in bytes.
pub(crate) const LINE_MAX: usize = 4096;
/// The most lines a peer may send before TLS.
pub(crate) const LINES_MAX: usize = 1000;
/// The most bytes a peer may send before TLS.
pub(crate) const TOTAL_MAX: usize = 64 * 1024;

/// What a step of the dialogue came to.
pub(crate) enum Progress {
    /// More input is needed.
    More,
    /// A step was taken: go on.
    Next,
    /// TLS may start once the output is written.
    Go,
}

/// A script for a dialogue: what it says, what it takes for a go-ahead, and how far it has
/// got (its own steps). It reads and writes only through the [`Preamble`] it is given.
pub(crate) trait Dialogue {
    /// What it is, for messages: "smtp STARTTLS", "proxy http://proxy:3128".
    fn what(&self) -> String;
    /// How `-vv` marks its lines: "smtp", "proxy http://proxy:3128".
    fn tag(&self) -> String;
    /// The class of its failures.
    fn class(&self) -> Class;
    /// What our side says before the peer has said anything.
    fn start(&mut self, p: &mut Preamble);
    /// One step with what the inbox holds.
    fn step(&mut self, p: &mut Preamble) -> Result<Progress>;
    /// Bytes still in the inbox at the go-ahead: `None` if they are the next phase's (handed
    /// on); else they are an injection, and this says when they came ("after its go-ahead").
    fn early(&self) -> Option<&'static str>;
    /// The peer's first bytes, when they alone show that the port speaks something else: why.
    fn wrong_start(&self, _first: &[u8]) -> Option<String> {
        None
    }
    /// A failure of a TLS session beneath the dialogue (an `https://` proxy's), told.
    fn tls_failed(&self, _e: &rustls::Error) -> Option<anyhow::Error> {
        None
    }
}

/// A dialogue and its engine: what it read and is to write, within the bounds.
pub(crate) struct Talk<D> {
    pub(crate) dialogue: D,
    pub(crate) p: Preamble,
}

/// How a dialogue [`Talk::play`]ed in memory ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fed {
    /// TLS (or the next phase) may start: the bytes that came after the go-ahead.
    Go(Vec<u8>),
    /// It waits for more.
    More,
    /// It failed; the message, as stderr would show it.
    Failed(String),
}

impl<D: Dialogue> Talk<D> {
    /// `dialogue` with `peer` (as messages name it), its opening queued.
    pub(crate) fn new(mut dialogue: D, peer: &str) -> Talk<D> {
        let mut p = Preamble {
            peer: peer.to_string(),
            what: dialogue.what(),
            tag: dialogue.tag(),
            class: dialogue.class(),
            inbox: Vec::new(),
            outbox: Vec::new(),
            written: 0,
            received: 0,
            lines: 0,
            reply: Vec::new(),
            go: false,
            end: None,
            leftover: Vec::new(),
        };
        dialogue.start(&mut p);
        Talk { dialogue, p }
    }

    /// Whether nothing came from the peer yet.
    pub(crate) fn unheard(&self) -> bool {
        self.p.received == 0
    }

    /// Move the dialogue on over `sock`, whose readiness is `ready`: `Ok(true)` once TLS may
    /// start (the go-ahead is written), `Ok(false)` while it waits for the socket.
    pub(crate) fn drive(&mut self, sock: &mut Wire, ready: &mut Ready) -> Result<bool> {
        loop {
            let mut moved = false;
            // What a proxy's TLS session holds goes out before anything else.
            if sock.pending() {
                match attempt(&mut ready.write, || sock.flush_pending()) {
                    None | Some(Ok(())) => {}
                    Some(Err(e)) => return Err(self.io_error(&e)),
                }
            }
            let p = &mut self.p;
            while p.written < p.outbox.len() {
                match attempt(&mut ready.write, || sock.write(&p.outbox[p.written..])) {
                    None => break,
                    Some(Ok(n)) => {
                        p.written += n;
                        moved = true;
                    }
                    Some(Err(e)) => return Err(self.io_error(&e)),
                }
            }
            let p = &mut self.p;
            let flushed = p.written == p.outbox.len() && !sock.pending();
            if flushed {
                p.outbox.clear();
                p.written = 0;
                if let Some(e) = p.end.take() {
                    return Err(e);
                }
                if p.go {
                    return Ok(true);
                }
            }
            if !p.go && p.end.is_none() {
                let mut buf = [0u8; 4096];
                match attempt(&mut ready.read, || sock.read(&mut buf)) {
                    None => {}
                    Some(Ok(0)) => return Err(self.p.closed()),
                    Some(Ok(n)) => {
                        self.receive(&buf[..n])?;
                        moved = true;
                    }
                    Some(Err(e)) => return Err(self.io_error(&e)),
                }
                moved |= self.advance()?;
            }
            if !moved {
                return Ok(false);
            }
        }
    }

    /// Play the dialogue with the peer's bytes arriving in `pieces`, one read each, as the
    /// event loop does; after the go-ahead, the pieces are the next phase's.
    pub(crate) fn play<'a>(mut self, pieces: impl IntoIterator<Item = &'a [u8]>) -> Fed {
        let mut after = Vec::new();
        for piece in pieces {
            if self.p.go {
                after.extend_from_slice(piece);
                continue;
            }
            if let Err(e) = self.receive(piece).and_then(|()| self.advance().map(drop)) {
                return Fed::Failed(format!("{e:#}"));
            }
            if let Some(e) = self.p.end.take() {
                return Fed::Failed(format!("{e:#}"));
            }
            if self.p.go {
                after = std::mem::take(&mut self.p.leftover);
            }
        }
        match self.p.go {
            true => Fed::Go(after),
            false => Fed::More,
        }
    }

    /// What a read brought, into the inbox (within [`TOTAL_MAX`]).
    fn receive(&mut self, bytes: &[u8]) -> Result<()> {
        if self.p.received == 0 {
            if let Some(why) = self.dialogue.wrong_start(bytes) {
                return Err(self.p.fail(why));
            }
        }
        let p = &mut self.p;
        p.received += bytes.len();
        if p.received > TOTAL_MAX {
            return Err(p.fail(format!(
                "sent more than {} KiB before TLS",
                TOTAL_MAX / 1024
            )));
        }
        p.inbox.extend_from_slice(bytes);
        Ok(())
    }

    /// Take the steps the inbox allows; true if any was taken.
    fn advance(&mut self) -> Result<bool> {
        let mut moved = false;
        let p = &mut self.p;
        while !p.go && p.end.is_none() {
            match self.dialogue.step(p)? {
                Progress::More => break,
                Progress::Next => moved = true,
                Progress::Go => {
                    moved = true;
                    p.go = true;
                    match self.dialogue.early() {
                        None => p.leftover = std::mem::take(&mut p.inbox),
                        Some(what) if !p.inbox.is_empty() => {
                            return Err(p.fail(format!(
                                "sent {} bytes in plain text {what}, before TLS started (an \
                                 injection attempt?): '{}'",
                                p.inbox.len(),
                                quote(&p.inbox)
                            )));
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        Ok(moved)
    }

    fn io_error(&self, e: &io::Error) -> anyhow::Error {
        if let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            if let Some(told) = self.dialogue.tls_failed(tls) {
                return told;
            }
        }
        socket_class(e).err(format!(
            "{}: {} during the {} dialogue",
            self.p.peer,
            io_phrase(e),
            self.p.what
        ))
    }

    /// Tests: what the peer sent, into the inbox (without the bounds of a read), and the
    /// steps it allows.
    #[cfg(test)]
    pub(crate) fn hear(&mut self, bytes: &[u8]) -> Result<bool> {
        self.p.inbox.extend_from_slice(bytes);
        self.advance()
    }

    /// Tests: what is queued for the peer, taken.
    #[cfg(test)]
    pub(crate) fn said(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.p.outbox)
    }

    /// Tests: whether TLS may start.
    #[cfg(test)]
    pub(crate) fn done(&self) -> bool {
        self.p.go
    }
}

/// What a script reads and writes with: one dialogue's buffers, counts and state of play.
pub(crate) struct Preamble {
    /// How messages name the peer.
    pub(crate) peer: String,
    /// The dialogue, for messages: "smtp STARTTLS", "proxy http://proxy:3128".
    what: String,
    /// How `-vv` marks its lines.
    tag: String,
    /// The class of its failures.
    class: Class,
    pub(crate) inbox: Vec<u8>,
    outbox: Vec<u8>,
    written: usize,
    received: usize,
    lines: usize,
    /// The lines of the reply being read (client side).
    pub(crate) reply: Vec<String>,
    /// TLS may start once the outbox is written.
    go: bool,
    /// The dialogue ends without TLS once the outbox is written (the peer quit): why.
    end: Option<anyhow::Error>,
    /// Bytes after the dialogue that belong to TLS (MySQL's eager ClientHello), or to the
    /// next phase (after a proxy's reply).
    pub(crate) leftover: Vec<u8>,
}

impl Preamble {
    /// What the dialogue is, for messages.
    pub(crate) fn what(&self) -> &str {
        &self.what
    }

    /// Queue a line, with CR LF.
    pub(crate) fn send_line(&mut self, line: &str) {
        self.log(">", line);
        self.outbox.extend_from_slice(line.as_bytes());
        self.outbox.extend_from_slice(b"\r\n");
    }

    /// Queue bytes that are not a line; `shown` is what `-vv` prints.
    pub(crate) fn send_bytes(&mut self, bytes: &[u8], shown: &str) {
        self.log(">", shown);
        self.outbox.extend_from_slice(bytes);
    }

    /// Queue raw text (XML), shown as it is.
    pub(crate) fn send_text(&mut self, text: &str) {
        self.send_bytes(text.as_bytes(), text);
    }

    /// The next line of the inbox, without its CR LF; `None` until a whole one arrived.
    pub(crate) fn line(&mut self) -> Result<Option<String>> {
        let Some(end) = self.inbox.iter().position(|&b| b == b'\n') else {
            if self.inbox.len() > LINE_MAX {
                return Err(self.fail(format!(
                    "sent a line longer than {LINE_MAX} bytes: '{}…'",
                    quote(&self.inbox[..80])
                )));
            }
            return Ok(None);
        };
        if end > LINE_MAX {
            return Err(self.fail(format!(
                "sent a line longer than {LINE_MAX} bytes: '{}…'",
                quote(&self.inbox[..80])
            )));
        }
        let raw: Vec<u8> = self.inbox.drain(..=end).collect();
        self.lines += 1;
        if self.lines > LINES_MAX {
            return Err(self.fail(format!("sent more than {LINES_MAX} lines before TLS")));
        }
        let text = String::from_utf8_lossy(&raw)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        self.log("<", &text);
        Ok(Some(text))
    }

    /// The inbox as text, after the whitespace XML allows between elements (RFC 6120
    /// §11.7); an error if it is not UTF-8. A character cut in two by the network (its
    /// first bytes at the end of the inbox) is left there, out of the text, until the rest
    /// arrives.
    pub(crate) fn xml_text(&mut self) -> Result<String> {
        let blank = self
            .inbox
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
        self.inbox.drain(..blank);
        match std::str::from_utf8(&self.inbox) {
            Ok(text) => Ok(text.to_string()),
            // `error_len` is None when the input ends inside a character.
            Err(e) if e.error_len().is_none() => {
                let whole = &self.inbox[..e.valid_up_to()];
                Ok(String::from_utf8_lossy(whole).into_owned())
            }
            Err(_) => Err(self.fail("sent XML that is not UTF-8")),
        }
    }

    /// The next XML element, taken from the inbox: up to the first `>`, or, for a `<name …>`
    /// that does not close itself, up to its `</name>`. `None` until it has arrived whole.
    pub(crate) fn xml_element(&mut self, name: &str) -> Result<Option<String>> {
        let text = self.xml_text()?;
        let Some(gt) = text.find('>') else {
            return Ok(None);
        };
        let mut element = text[..=gt].to_string();
        if element.starts_with(&format!("<{name}")) && !element.ends_with("/>") {
            let close = format!("</{name}>");
            let Some(at) = text.find(&close) else {
                return Ok(None);
            };
            element = text[..at + close.len()].to_string();
        }
        self.log("<", &element);
        self.inbox.drain(..element.len());
        Ok(Some(element))
    }

    /// Take `n` bytes of the inbox, when that many have arrived.
    pub(crate) fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        (self.inbox.len() >= n).then(|| {
            let bytes: Vec<u8> = self.inbox.drain(..n).collect();
            self.log("<", &quote(&bytes));
            bytes
        })
    }

    /// End the dialogue without TLS once what is queued is written.
    pub(crate) fn end_with(&mut self, e: anyhow::Error) {
        self.end = Some(e);
    }

    /// `-vv`: the dialogue on stderr, escaped, marked as ours (`>`) or the peer's (`<`).
    pub(crate) fn log(&self, dir: &str, text: &str) {
        if report::level() >= 2 {
            report::verbose(format_args!(
                "{} {} {dir} {}",
                self.tag,
                self.peer,
                report::escape(text)
            ));
        }
    }

    /// An error in the dialogue: the TLS handshake never started (STARTTLS: exit 4), or the
    /// proxy did not connect us (exit 3).
    pub(crate) fn fail(&self, what: impl std::fmt::Display) -> anyhow::Error {
        self.class
            .err(format!("{}: {}: {what}", self.peer, self.what))
    }

    /// The peer answered, but not with the go-ahead.
    pub(crate) fn refused(&self, answer: &str, to: &str, expected: &str) -> anyhow::Error {
        self.fail(format!(
            "refused: it answered '{}' to {to}, where {expected} was expected",
            report::escape(&truncate(answer))
        ))
    }

    fn closed(&self) -> anyhow::Error {
        let last = self
            .reply
            .last()
            .map(|l| format!(" (last: '{}')", report::escape(l)));
        self.fail(format!(
            "the connection was closed during the dialogue{}",
            last.unwrap_or_default()
        ))
    }
}

/// Bytes as text for a message: escaped, and cut to a readable length.
pub(crate) fn quote(bytes: &[u8]) -> String {
    report::escape(&truncate(&String::from_utf8_lossy(bytes)))
}

fn truncate(text: &str) -> String {
    const SHOWN: usize = 200;
    match text.char_indices().nth(SHOWN) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// The first word of a line, upper-cased (commands and capability names are
/// case-insensitive).
pub(crate) fn verb(line: &str) -> String {
    line.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
}
