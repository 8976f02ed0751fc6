//! The plaintext part of a connection, before its TLS handshake: each proxy hop's request
//! (`proxy`), then a STARTTLS dialogue (`starttls`).
//!
//! A [`Preamble`] is one such dialogue without I/O: what arrived is appended to its inbox, its
//! script consumes it and queues what to send, until the next phase may start.
//! [`Preamble::drive`] does the I/O on the connection's [`Wire`] for the event loop.
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
use crate::proxy::{self, Hop};
use crate::report;
use crate::starttls::{self, Proto};
use crate::wire::Wire;

/// The longest line of a dialogue, in bytes.
pub(crate) const LINE_MAX: usize = 4096;
/// The most lines a peer may send before TLS.
pub(crate) const LINES_MAX: usize = 1000;
/// The most bytes a peer may send before TLS.
pub(crate) const TOTAL_MAX: usize = 64 * 1024;

/// Which side of the dialogue we speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Client,
    Server,
}

/// What a step of the dialogue came to.
pub(crate) enum Progress {
    /// More input is needed.
    More,
    /// A step was taken: go on.
    Next,
    /// TLS may start once the output is written.
    Go,
}

/// What a preamble speaks.
pub(crate) enum Script {
    StartTls { proto: Proto, role: Role },
    Proxy(Box<Hop>),
}

/// A phase before the handshake.
pub(crate) enum Stage {
    /// From here on, speak through a TLS session with an `https://` proxy.
    Layer(Box<rustls::ClientConnection>),
    /// A dialogue: a proxy hop's request, or STARTTLS.
    Talk(Box<Preamble>),
}

/// Move the stages on over `wire`: `Ok(true)` once all are done and TLS may start. What a
/// dialogue read past its end is put back for the next.
pub(crate) fn advance(
    stages: &mut std::collections::VecDeque<Stage>,
    wire: &mut Wire,
    ready: &mut Ready,
) -> Result<bool> {
    loop {
        match stages.front_mut() {
            None => return Ok(true),
            Some(Stage::Layer(_)) => {
                if let Some(Stage::Layer(tls)) = stages.pop_front() {
                    // An https:// proxy has said nothing before its TLS handshake: bytes that
                    // came with the previous hop's reply are not its.
                    if !wire.push_layer(*tls) {
                        return Err(Class::Network.err(
                            "a proxy sent bytes after its reply, before the next proxy's TLS \
                             handshake (an injection attempt?)",
                        ));
                    }
                }
            }
            Some(Stage::Talk(p)) => {
                if !p.drive(wire, ready)? {
                    return Ok(false);
                }
                let leftover = std::mem::take(&mut p.leftover);
                if let Some(Stage::Talk(done)) = stages.pop_front() {
                    if !leftover.is_empty() {
                        done.check_after_reply(&leftover, stages.front())?;
                    }
                }
                if !leftover.is_empty() {
                    wire.unread(leftover);
                    // Readable now, whatever the socket says.
                    ready.read = true;
                }
            }
        }
    }
}

/// What the first unfinished stage is, for a timeout's message.
pub(crate) fn current(stages: &std::collections::VecDeque<Stage>) -> Option<String> {
    stages.iter().find_map(|s| match s {
        Stage::Talk(p) => Some(p.what()),
        Stage::Layer(_) => None,
    })
}

/// Whether a `socks5://` hop has a lookup whose answer it has not taken yet: it needs a turn
/// when a lookup answers.
pub(crate) fn awaits_lookup(stages: &std::collections::VecDeque<Stage>) -> bool {
    stages.iter().any(|s| match s {
        Stage::Talk(p) => matches!(&p.script, Script::Proxy(hop) if hop.lookup.is_some()),
        Stage::Layer(_) => false,
    })
}

/// When the first unfinished stage is a `socks5://` hop still waiting for the address of the
/// name it is to send: that name, for a timeout's message.
pub(crate) fn looking_up(stages: &std::collections::VecDeque<Stage>) -> Option<&str> {
    let p = stages.iter().find_map(|s| match s {
        Stage::Talk(p) => Some(p),
        Stage::Layer(_) => None,
    })?;
    match &p.script {
        Script::Proxy(hop) => hop
            .lookup
            .as_ref()
            .filter(|l| l.pending())
            .map(|l| l.host()),
        Script::StartTls { .. } => None,
    }
}

/// When the first unfinished stage is a STARTTLS client still waiting for a greeting that a
/// server of its protocol sends at once: what that silence suggests, for a timeout's message.
pub(crate) fn silence(stages: &std::collections::VecDeque<Stage>) -> Option<&'static str> {
    let p = stages.iter().find_map(|s| match s {
        Stage::Talk(p) => Some(p),
        Stage::Layer(_) => None,
    })?;
    match p.script {
        Script::StartTls {
            proto,
            role: Role::Client,
        } if proto.server_speaks_first() && p.received == 0 => Some(IMPLICIT_SILENT),
        _ => None,
    }
}

/// Why a server that says nothing to a STARTTLS client is most likely an implicit-TLS one.
pub(crate) const IMPLICIT_SILENT: &str = "no greeting came: the port looks like implicit TLS \
     (a TLS server waits for the client to speak first): drop --starttls";

/// One connection's dialogue.
pub(crate) struct Preamble {
    pub(crate) script: Script,
    /// The client: the name for EHLO/LHLO and XMPP's `to`. The server: its own name.
    pub(crate) name: String,
    /// How messages name the peer.
    pub(crate) peer: String,
    /// How far the protocol's script has got (each side numbers its own steps).
    pub(crate) step: u8,
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
    /// Bytes after the dialogue that belong to TLS (MySQL's eager ClientHello).
    pub(crate) leftover: Vec<u8>,
}

impl Preamble {
    /// The client side of `proto`, naming itself `name` where the protocol asks for it.
    pub(crate) fn client(proto: Proto, name: &str, peer: &str) -> Preamble {
        let role = Role::Client;
        let mut p = Preamble::new(Script::StartTls { proto, role }, name, peer);
        starttls::start(&mut p, proto, role);
        p
    }

    /// The server side of `proto`, naming itself `name` in greetings.
    pub(crate) fn server(proto: Proto, name: &str, peer: &str) -> Preamble {
        let role = Role::Server;
        let mut p = Preamble::new(Script::StartTls { proto, role }, name, peer);
        starttls::start(&mut p, proto, role);
        p
    }

    /// The request to a proxy for its next hop.
    pub(crate) fn proxy(hop: Hop, peer: &str) -> Preamble {
        let mut p = Preamble::new(Script::Proxy(Box::new(hop)), "", peer);
        proxy::start(&mut p);
        p
    }

    /// What the dialogue is, for messages: "smtp STARTTLS", "proxy http://proxy:3128".
    pub(crate) fn what(&self) -> String {
        match &self.script {
            Script::StartTls { proto, .. } => format!("{} STARTTLS", proto.name()),
            Script::Proxy(hop) => format!("proxy {}", hop.proxy),
        }
    }

    fn new(script: Script, name: &str, peer: &str) -> Preamble {
        Preamble {
            script,
            name: name.to_string(),
            peer: peer.to_string(),
            step: 0,
            inbox: Vec::new(),
            outbox: Vec::new(),
            written: 0,
            received: 0,
            lines: 0,
            reply: Vec::new(),
            go: false,
            end: None,
            leftover: Vec::new(),
        }
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
            while self.written < self.outbox.len() {
                match attempt(&mut ready.write, || {
                    sock.write(&self.outbox[self.written..])
                }) {
                    None => break,
                    Some(Ok(n)) => {
                        self.written += n;
                        moved = true;
                    }
                    Some(Err(e)) => return Err(self.io_error(&e)),
                }
            }
            let flushed = self.written == self.outbox.len() && !sock.pending();
            if flushed {
                self.outbox.clear();
                self.written = 0;
                if let Some(e) = self.end.take() {
                    return Err(e);
                }
                if self.go {
                    return Ok(true);
                }
            }
            if !self.go && self.end.is_none() {
                let mut buf = [0u8; 4096];
                match attempt(&mut ready.read, || sock.read(&mut buf)) {
                    None => {}
                    Some(Ok(0)) => return Err(self.closed()),
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

    /// Bytes that came after a proxy's reply in the same read: the next phase's only if it is
    /// a STARTTLS dialogue, whose server speaks first. A TLS server (the target's, or an
    /// `https://` proxy's) and a proxy wait for us, so before our ClientHello or request
    /// they can only be the proxy's own data: an error that says so.
    fn check_after_reply(&self, after: &[u8], next: Option<&Stage>) -> Result<()> {
        let Script::Proxy(hop) = &self.script else {
            return Ok(());
        };
        let before = match next {
            Some(Stage::Talk(p)) => match &p.script {
                Script::StartTls { .. } => return Ok(()),
                Script::Proxy(next) => format!("before our request to proxy {}", next.proxy),
            },
            Some(Stage::Layer(_)) => format!(
                "before the TLS handshake with the next proxy, {}, began",
                hop.next
            ),
            None => format!("before the TLS handshake with {} began", hop.next),
        };
        let reply = match self.reply.first() {
            Some(status) => format!(" ('{}')", quote(status.as_bytes())),
            None => String::new(),
        };
        // A plain-text server behind a transparent proxy looks the same: say so if the
        // bytes look like a known protocol's greeting.
        let greeting = match next {
            None => starttls::recognise(after).and_then(|(_, proto)| proto),
            _ => None,
        };
        let hint = match greeting {
            Some(proto) => format!(
                "; if that is the server's greeting, it speaks plain {0}: use --starttls {0}",
                proto.name()
            ),
            None => String::new(),
        };
        Err(self.fail(format!(
            "sent {} bytes of data after its reply{reply}, {before}: '{}'{hint}",
            after.len(),
            quote(after)
        )))
    }

    /// What a read brought, into the inbox (within [`TOTAL_MAX`]).
    fn receive(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(e) = self.tls_instead(bytes) {
            return Err(e);
        }
        self.received += bytes.len();
        if self.received > TOTAL_MAX {
            return Err(self.fail(format!(
                "sent more than {} KiB before TLS",
                TOTAL_MAX / 1024
            )));
        }
        self.inbox.extend_from_slice(bytes);
        Ok(())
    }

    /// A STARTTLS client whose server's first bytes are a TLS record (an alert, most likely,
    /// for the plain text it got): the port speaks TLS from the start. No STARTTLS protocol
    /// begins with a record's type and version.
    fn tls_instead(&self, first: &[u8]) -> Option<anyhow::Error> {
        let Script::StartTls {
            proto,
            role: Role::Client,
        } = self.script
        else {
            return None;
        };
        let record = self.received == 0 && matches!(first, [0x15 | 0x16, 0x03, ..]);
        record.then(|| {
            self.fail(format!(
                "it answered with a TLS record, not {}: the port looks like implicit TLS; \
                 drop --starttls",
                proto.name()
            ))
        })
    }

    /// Take the steps the inbox allows; true if any was taken.
    fn advance(&mut self) -> Result<bool> {
        let mut moved = false;
        while !self.go && self.end.is_none() {
            let progress = match &self.script {
                Script::StartTls { proto, role } => starttls::step(self, *proto, *role)?,
                Script::Proxy(_) => proxy::step(self)?,
            };
            match progress {
                Progress::More => break,
                Progress::Next => moved = true,
                Progress::Go => {
                    moved = true;
                    self.go = true;
                    let (proto, role) = match &self.script {
                        Script::StartTls { proto, role } => (*proto, *role),
                        // What follows a proxy's reply is the next hop's or the server's.
                        Script::Proxy(_) => {
                            self.leftover = std::mem::take(&mut self.inbox);
                            continue;
                        }
                    };
                    if proto == Proto::Mysql && role == Role::Server {
                        self.leftover = std::mem::take(&mut self.inbox);
                    } else if !self.inbox.is_empty() {
                        let what = match role {
                            Role::Client => "after its go-ahead",
                            Role::Server => "after its STARTTLS command",
                        };
                        return Err(self.fail(format!(
                            "sent {} bytes in plain text {what}, before TLS started (an \
                             injection attempt?): '{}'",
                            self.inbox.len(),
                            quote(&self.inbox)
                        )));
                    }
                }
            }
        }
        Ok(moved)
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
            let tag = match &self.script {
                Script::StartTls { proto, .. } => proto.name().to_string(),
                Script::Proxy(hop) => format!("proxy {}", hop.proxy),
            };
            report::verbose(format_args!(
                "{tag} {} {dir} {}",
                self.peer,
                report::escape(text)
            ));
        }
    }

    /// An error in the dialogue: the TLS handshake never started (STARTTLS: exit 4), or the
    /// proxy did not connect us (exit 3).
    pub(crate) fn fail(&self, what: impl std::fmt::Display) -> anyhow::Error {
        let class = match self.script {
            Script::StartTls { .. } => Class::Handshake,
            Script::Proxy(_) => Class::Network,
        };
        class.err(format!("{}: {}: {what}", self.peer, self.what()))
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

    fn io_error(&self, e: &io::Error) -> anyhow::Error {
        if let Script::Proxy(hop) = &self.script {
            // The TLS session with an https:// proxy failed.
            if let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                if let Some(explain) = &hop.explain {
                    return explain.error(tls, &format!("proxy {}", hop.proxy), false);
                }
            }
        }
        socket_class(e).err(format!(
            "{}: {} during the {} dialogue",
            self.peer,
            io_phrase(e),
            self.what()
        ))
    }
}

/// A dialogue that [`feed`] plays without a socket, for the fuzz targets (fuzz/) and the
/// tests: the peer's side is the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialogue {
    /// An `http://` proxy's reply to CONNECT; `credentials`: its URL has a user and password.
    HttpProxy { credentials: bool },
    /// A SOCKS4a proxy's reply.
    Socks4a,
    /// A SOCKS5 proxy's replies: the method, the authentication if asked, the connect.
    Socks5 { credentials: bool },
    /// What an XMPP server says to our STARTTLS client.
    XmppClient,
    /// What an XMPP client says to our STARTTLS server.
    XmppServer,
}

/// How a [`Dialogue`] fed some bytes ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fed {
    /// TLS (or the next phase) may start: the bytes that came after the go-ahead.
    Go(Vec<u8>),
    /// It waits for more.
    More,
    /// It failed; the message, as stderr would show it.
    Failed(String),
}

/// Play `dialogue` with the peer's bytes arriving in `pieces`, one read each, as the event
/// loop does; after the go-ahead, the pieces are the next phase's.
pub fn feed<'a>(dialogue: Dialogue, pieces: impl IntoIterator<Item = &'a [u8]>) -> Fed {
    const PEER: &str = "target.example:443";
    let proxy = |url: &str| -> Result<Preamble, String> {
        let hop = Hop {
            proxy: proxy::parse(url)?,
            next: crate::net::HostPort {
                host: "target.example".to_string(),
                port: 443,
            },
            lookup: None,
            resolved: None,
            explain: None,
        };
        Ok(Preamble::proxy(hop, PEER))
    };
    let made = match dialogue {
        Dialogue::HttpProxy { credentials: false } => proxy("http://proxy.example:3128"),
        Dialogue::HttpProxy { credentials: true } => proxy("http://u:p@proxy.example:3128"),
        Dialogue::Socks4a => proxy("socks4a://proxy.example:1080"),
        Dialogue::Socks5 { credentials: false } => proxy("socks5h://proxy.example:1080"),
        Dialogue::Socks5 { credentials: true } => proxy("socks5h://u:p@proxy.example:1080"),
        Dialogue::XmppClient => Ok(Preamble::client(Proto::Xmpp, "target.example", PEER)),
        Dialogue::XmppServer => Ok(Preamble::server(Proto::Xmpp, "target.example", "client")),
    };
    let mut p = match made {
        Ok(p) => p,
        Err(e) => return Fed::Failed(e),
    };
    let mut after = Vec::new();
    for piece in pieces {
        if p.go {
            after.extend_from_slice(piece);
            continue;
        }
        if let Err(e) = p.receive(piece).and_then(|()| p.advance().map(drop)) {
            return Fed::Failed(format!("{e:#}"));
        }
        if let Some(e) = p.end.take() {
            return Fed::Failed(format!("{e:#}"));
        }
        if p.go {
            after = std::mem::take(&mut p.leftover);
        }
    }
    match p.go {
        true => Fed::Go(after),
        false => Fed::More,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    /// Run a client and a server dialogue against each other in memory.
    fn converse(proto: Proto) -> (Preamble, Preamble) {
        let mut c = Preamble::client(proto, "client.example", "server");
        let mut s = Preamble::server(proto, "server.example", "client");
        for _ in 0..50 {
            let to_s: Vec<u8> = std::mem::take(&mut c.outbox);
            s.inbox.extend_from_slice(&to_s);
            let to_c: Vec<u8> = std::mem::take(&mut s.outbox);
            c.inbox.extend_from_slice(&to_c);
            c.advance().expect("client");
            s.advance().expect("server");
            if c.go && s.go && c.outbox.is_empty() && s.outbox.is_empty() {
                return (c, s);
            }
        }
        panic!("{} did not finish", proto.name());
    }

    #[test]
    fn every_protocol_reaches_tls_against_our_own_server() {
        for proto in Proto::value_variants() {
            let (c, s) = converse(*proto);
            assert!(c.inbox.is_empty() && c.leftover.is_empty(), "{proto:?}");
            assert!(s.inbox.is_empty() && s.leftover.is_empty(), "{proto:?}");
        }
    }

    /// Deterministic pseudo-random bytes.
    fn noise(seed: &mut u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                *seed as u8
            })
            .collect()
    }

    #[test]
    fn no_input_panics_either_side() {
        // Random bytes, and a real dialogue with random bytes spliced in, to every
        // protocol's client and server, fed in random-sized pieces.
        let mut seed = 0x5eed_u64;
        for proto in Proto::value_variants() {
            for round in 0..300 {
                for role in [Role::Client, Role::Server] {
                    let mut p = Preamble::new(
                        Script::StartTls {
                            proto: *proto,
                            role,
                        },
                        "n",
                        "peer",
                    );
                    let mut input = noise(&mut seed, 1 + round % 200);
                    if round % 3 == 0 {
                        // Plausible text, to get past the first steps.
                        input.splice(
                            0..0,
                            b"220-x\r\n250 STARTTLS\r\n* OK\r\n+OK\r\n".iter().copied(),
                        );
                    }
                    for piece in input.chunks(1 + round % 7) {
                        p.inbox.extend_from_slice(piece);
                        if p.advance().is_err() {
                            break;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn odd_xmpp_headers_are_refused_not_panicked_on() {
        for header in [
            &b"<stream:stream to=\xc3\xa9>"[..],
            b"<stream:stream to=\xff>",
        ] {
            let role = Role::Server;
            let mut s = Preamble::new(
                Script::StartTls {
                    proto: Proto::Xmpp,
                    role,
                },
                "n",
                "c",
            );
            s.inbox.extend_from_slice(header);
            let _ = s.advance();
        }
        // Whitespace between elements, and <proceed></proceed>, are XMPP too.
        let (c, s) = converse(Proto::Xmpp);
        assert!(c.go && s.go);
        let mut c = Preamble::client(Proto::Xmpp, "n", "s");
        c.inbox = b"<stream:stream><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>".to_vec();
        c.advance().unwrap();
        c.inbox = b" \n<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'></proceed>".to_vec();
        c.advance().unwrap();
        assert!(c.go);
    }

    #[test]
    fn an_endless_line_is_an_error_not_a_buffer() {
        let mut c = Preamble::client(Proto::Smtp, "c", "server");
        c.inbox = vec![b'2'; LINE_MAX + 10];
        let e = c.advance().unwrap_err().to_string();
        assert!(e.contains("longer than 4096 bytes"), "{e}");
    }

    #[test]
    fn many_continuation_lines_end_the_dialogue() {
        let mut c = Preamble::client(Proto::Smtp, "c", "server");
        c.inbox = b"220-x\r\n".repeat(LINES_MAX + 1);
        let e = c.advance().unwrap_err().to_string();
        assert!(e.contains("more than 1000 lines"), "{e}");
    }

    #[test]
    fn bytes_after_the_go_ahead_are_refused() {
        let mut c = Preamble::client(Proto::Pop3, "c", "server");
        c.inbox = b"+OK hi\r\n".to_vec();
        c.advance().unwrap();
        c.inbox = b"+OK go\r\nINJECTED\r\n".to_vec();
        let e = c.advance().unwrap_err().to_string();
        assert!(e.contains("injection"), "{e}");
    }
}
