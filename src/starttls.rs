//! STARTTLS: the plaintext dialogue that some protocols speak before TLS starts on the same
//! connection, on either side, for the fourteen protocols `openssl s_client -starttls` knows
//! (`client`: what we say as their client; `server`: as their server). A [`StartTls`] is one
//! side of one protocol: a [`Dialogue`] that owns how far it has got.

mod client;
mod server;

use anyhow::Result;
use clap::ValueEnum;

use crate::error::Class;
use crate::preamble::{Dialogue, Preamble, Progress};

/// The protocols, named as `openssl s_client -starttls` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Proto {
    Smtp,
    Lmtp,
    Pop3,
    Imap,
    Ftp,
    Xmpp,
    #[value(name = "xmpp-server")]
    XmppServer,
    Telnet,
    Irc,
    Ldap,
    Postgres,
    Mysql,
    Nntp,
    Sieve,
}

impl Proto {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Proto::Smtp => "smtp",
            Proto::Lmtp => "lmtp",
            Proto::Pop3 => "pop3",
            Proto::Imap => "imap",
            Proto::Ftp => "ftp",
            Proto::Xmpp => "xmpp",
            Proto::XmppServer => "xmpp-server",
            Proto::Telnet => "telnet",
            Proto::Irc => "irc",
            Proto::Ldap => "ldap",
            Proto::Postgres => "postgres",
            Proto::Mysql => "mysql",
            Proto::Nntp => "nntp",
            Proto::Sieve => "sieve",
        }
    }
}

impl Proto {
    /// Whether its server speaks first (a greeting), so that its client waits: a silent
    /// server is then one waiting for a TLS ClientHello (an implicit-TLS port).
    pub(crate) fn server_speaks_first(self) -> bool {
        !matches!(
            self,
            Proto::Xmpp | Proto::XmppServer | Proto::Irc | Proto::Ldap | Proto::Postgres
        )
    }
}

/// The error for a TLS handshake with `peer` that failed because the server answered our
/// ClientHello in plain text (`first`: the first bytes it sent): a greeting names the
/// protocol, whose `--starttls` is suggested. `None` if `first` is not plain text.
pub(crate) fn plain_text_answer(peer: &str, first: &[u8]) -> Option<anyhow::Error> {
    let (shown, proto) = recognise(first)?;
    let msg = match proto {
        Some(proto) => format!(
            "{peer} answered in plain text, not TLS ('{shown}'): it looks like a plain {} \
             port; use --starttls {} (or the protocol's implicit-TLS port)",
            proto.name(),
            proto.name()
        ),
        None => format!(
            "{peer} answered in plain text, not TLS ('{shown}'): is it speaking TLS on that \
             port? (for a protocol that starts in plain text, use --starttls PROTO)"
        ),
    };
    Some(crate::error::Class::Handshake.err(msg))
}

/// What a server's first bytes are when they are not TLS: the greeting as shown in a message,
/// and the protocol it is, if known.
pub(crate) fn recognise(first: &[u8]) -> Option<(String, Option<Proto>)> {
    use client::IAC;
    let &byte = first.first()?;
    if byte == IAC {
        return Some((
            "IAC … (telnet option negotiation)".to_string(),
            Some(Proto::Telnet),
        ));
    }
    // MySQL's greeting: a 3-byte length, sequence 0, protocol version 10.
    if first.len() > 5 && first[3] == 0 && first[4] == 10 && first[..3] != [0, 0, 0] {
        return Some(("a MySQL handshake packet".to_string(), Some(Proto::Mysql)));
    }
    let line = first.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    // Text: printable from its first character (a TLS record starts with a byte below 0x20).
    if line.is_empty() || line.chars().any(|c| c.is_control() && c != '\t') {
        return None;
    }
    let upper = line.to_ascii_uppercase();
    let proto = if upper.starts_with("220") {
        Some(if upper.contains("FTP") {
            Proto::Ftp
        } else if upper.contains("LMTP") {
            Proto::Lmtp
        } else {
            Proto::Smtp
        })
    } else if upper.starts_with("* OK") || upper.starts_with("* PREAUTH") {
        Some(Proto::Imap)
    } else if upper.starts_with("+OK") {
        Some(Proto::Pop3)
    } else if upper.starts_with("200 ") || upper.starts_with("201 ") {
        Some(Proto::Nntp)
    } else if upper.starts_with("\"IMPLEMENTATION\"") || upper.starts_with("\"SIEVE\"") {
        Some(Proto::Sieve)
    } else {
        None
    };
    Some((crate::preamble::quote(line.as_bytes()), proto))
}

/// Which side of the dialogue we speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Client,
    Server,
}

/// Why a server that says nothing to a STARTTLS client is most likely an implicit-TLS one.
pub(crate) const IMPLICIT_SILENT: &str = "no greeting came: the port looks like implicit TLS \
     (a TLS server waits for the client to speak first): drop --starttls";

/// One side of a protocol's dialogue.
pub(crate) struct StartTls {
    pub(crate) proto: Proto,
    pub(crate) role: Role,
    /// The client: the name for EHLO/LHLO and XMPP's `to`. The server: its own name.
    name: String,
    /// How far the script has got (each side numbers its own steps).
    step: u8,
}

impl StartTls {
    /// The client side of `proto`, naming itself `name` where the protocol asks for it.
    pub(crate) fn client(proto: Proto, name: &str) -> StartTls {
        StartTls::new(proto, Role::Client, name)
    }

    /// The server side of `proto`, naming itself `name` in greetings.
    pub(crate) fn server(proto: Proto, name: &str) -> StartTls {
        StartTls::new(proto, Role::Server, name)
    }

    fn new(proto: Proto, role: Role, name: &str) -> StartTls {
        StartTls {
            proto,
            role,
            name: name.to_string(),
            step: 0,
        }
    }

    /// A client waiting for a greeting that a server of its protocol sends at once: what
    /// silence suggests.
    pub(crate) fn silence(&self) -> Option<&'static str> {
        (self.role == Role::Client && self.proto.server_speaks_first()).then_some(IMPLICIT_SILENT)
    }
}

impl Dialogue for StartTls {
    fn what(&self) -> String {
        format!("{} STARTTLS", self.proto.name())
    }

    fn tag(&self) -> String {
        self.proto.name().to_string()
    }

    /// The TLS handshake never started: exit 4.
    fn class(&self) -> Class {
        Class::Handshake
    }

    fn start(&mut self, p: &mut Preamble) {
        match self.role {
            Role::Client => client::start(self, p),
            Role::Server => server::start(self, p),
        }
    }

    fn step(&mut self, p: &mut Preamble) -> Result<Progress> {
        match self.role {
            Role::Client => client::step(self, p),
            Role::Server => server::step(self, p),
        }
    }

    /// MySQL's client sends its ClientHello right after the SSL request: TLS's.
    fn early(&self) -> Option<&'static str> {
        match (self.role, self.proto) {
            (Role::Server, Proto::Mysql) => None,
            (Role::Client, _) => Some("after its go-ahead"),
            (Role::Server, _) => Some("after its STARTTLS command"),
        }
    }

    /// A client whose server's first bytes are a TLS record (an alert, most likely, for the
    /// plain text it got): the port speaks TLS from the start. No STARTTLS protocol begins
    /// with a record's type and version.
    fn wrong_start(&self, first: &[u8]) -> Option<String> {
        let record = self.role == Role::Client && matches!(first, [0x15 | 0x16, 0x03, ..]);
        record.then(|| {
            format!(
                "it answered with a TLS record, not {}: the port looks like implicit TLS; \
                 drop --starttls",
                self.proto.name()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preamble::{Talk, LINES_MAX, LINE_MAX};

    /// Run a client and a server dialogue against each other in memory.
    fn converse(proto: Proto) -> (Talk<StartTls>, Talk<StartTls>) {
        let mut c = Talk::new(StartTls::client(proto, "client.example"), "server");
        let mut s = Talk::new(StartTls::server(proto, "server.example"), "client");
        for _ in 0..50 {
            let (to_s, to_c) = (c.said(), s.said());
            if c.done() && s.done() && to_s.is_empty() && to_c.is_empty() {
                return (c, s);
            }
            c.hear(&to_c).expect("client");
            s.hear(&to_s).expect("server");
        }
        panic!("{} did not finish", proto.name());
    }

    #[test]
    fn every_protocol_reaches_tls_against_our_own_server() {
        for proto in Proto::value_variants() {
            let (c, s) = converse(*proto);
            assert!(c.p.inbox.is_empty() && c.p.leftover.is_empty(), "{proto:?}");
            assert!(s.p.inbox.is_empty() && s.p.leftover.is_empty(), "{proto:?}");
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
                    let mut p = Talk::new(StartTls::new(*proto, role, "n"), "peer");
                    let mut input = noise(&mut seed, 1 + round % 200);
                    if round % 3 == 0 {
                        // Plausible text, to get past the first steps.
                        input.splice(
                            0..0,
                            b"220-x\r\n250 STARTTLS\r\n* OK\r\n+OK\r\n".iter().copied(),
                        );
                    }
                    for piece in input.chunks(1 + round % 7) {
                        if p.hear(piece).is_err() {
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
            let mut s = Talk::new(StartTls::server(Proto::Xmpp, "n"), "c");
            let _ = s.hear(header);
        }
        // Whitespace between elements, and <proceed></proceed>, are XMPP too.
        let (c, s) = converse(Proto::Xmpp);
        assert!(c.done() && s.done());
        let mut c = Talk::new(StartTls::client(Proto::Xmpp, "n"), "s");
        c.hear(b"<stream:stream><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>").unwrap();
        c.hear(b" \n<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'></proceed>")
            .unwrap();
        assert!(c.done());
    }

    #[test]
    fn an_endless_line_is_an_error_not_a_buffer() {
        let mut c = Talk::new(StartTls::client(Proto::Smtp, "c"), "server");
        let e = c.hear(&vec![b'2'; LINE_MAX + 10]).unwrap_err().to_string();
        assert!(e.contains("longer than 4096 bytes"), "{e}");
    }

    #[test]
    fn many_continuation_lines_end_the_dialogue() {
        let mut c = Talk::new(StartTls::client(Proto::Smtp, "c"), "server");
        let e = c
            .hear(&b"220-x\r\n".repeat(LINES_MAX + 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 1000 lines"), "{e}");
    }

    #[test]
    fn bytes_after_the_go_ahead_are_refused() {
        let mut c = Talk::new(StartTls::client(Proto::Pop3, "c"), "server");
        c.hear(b"+OK hi\r\n").unwrap();
        let e = c.hear(b"+OK go\r\nINJECTED\r\n").unwrap_err().to_string();
        assert!(e.contains("injection"), "{e}");
    }

    #[test]
    fn plain_text_greetings_are_recognised() {
        for (greeting, proto) in [
            (
                &b"220 mail.example ESMTP Postfix\r\n"[..],
                Some(Proto::Smtp),
            ),
            (b"220 (vsFTPd 3.0.5)\r\n", Some(Proto::Ftp)),
            (b"220 ProFTPD Server ready.\r\n", Some(Proto::Ftp)),
            (
                b"* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot ready.\r\n",
                Some(Proto::Imap),
            ),
            (b"+OK Dovecot ready.\r\n", Some(Proto::Pop3)),
            (
                b"200 news.example InterNetNews ready\r\n",
                Some(Proto::Nntp),
            ),
            (
                b"\"IMPLEMENTATION\" \"Dovecot Pigeonhole\"\r\n",
                Some(Proto::Sieve),
            ),
            (b"HTTP/1.0 400 Bad Request\r\n\r\n", None),
        ] {
            let (shown, got) = recognise(greeting).expect("plain text");
            assert_eq!(got, proto, "{shown}");
            assert!(!shown.contains("\\r"), "{shown}");
        }
        // TLS records (an alert, a handshake) are not plain text.
        assert!(recognise(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]).is_none());
        assert!(recognise(&[0x16, 0x03, 0x03, 0x00, 0x7a]).is_none());
        assert!(recognise(b"").is_none());
        let e = plain_text_answer("mail.example:25", b"220 mail.example ESMTP\r\n").unwrap();
        assert!(e.to_string().contains("use --starttls smtp"), "{e}");
    }
}
