//! STARTTLS: the plaintext dialogue that some protocols speak before TLS starts on the same
//! connection, on either side, for the fourteen protocols `openssl s_client -starttls` knows
//! (`client`: what we say as their client; `server`: as their server). Each is a script for a
//! [`Preamble`].

mod client;
mod server;

use anyhow::Result;
use clap::ValueEnum;

use crate::preamble::{Preamble, Progress, Role};

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

/// What our side says before the peer has said anything.
pub(crate) fn start(p: &mut Preamble, proto: Proto, role: Role) {
    match role {
        Role::Client => client::start(p, proto),
        Role::Server => server::start(p, proto),
    }
}

/// One step of the dialogue with what the inbox holds.
pub(crate) fn step(p: &mut Preamble, proto: Proto, role: Role) -> Result<Progress> {
    match role {
        Role::Client => client::step(p, proto),
        Role::Server => server::step(p, proto),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
