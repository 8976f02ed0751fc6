//! The server side of each protocol's dialogue, for `stls listen --starttls`: a greeting and
//! capabilities that name STARTTLS, answers to what real clients send first (EHLO,
//! CAPABILITY, CAPA, FEAT, CAP LS, the stream header, the MySQL handshake…), the go-ahead, and
//! a refusal of anything else until TLS.

use anyhow::Result;

use super::client::{
    ber, IAC, MYSQL_CLIENT_SSL, PG_SSL_REQUEST, TELNET_DO, TELNET_FOLLOWS, TELNET_START_TLS,
    TELNET_WILL, XMPP_TLS,
};
use super::{Proto, StartTls};
use crate::preamble::{quote, verb, Preamble, Progress};

/// PostgreSQL's GSSENCRequest code: answered 'N', then the client may ask for SSL.
const PG_GSSENC_REQUEST: u32 = 80_877_104;
/// The MySQL capabilities we announce: long password, found rows, long flag, connect with
/// db, protocol 4.1, SSL, transactions, secure connection (lower 16 bits); plugin auth.
const MYSQL_CAPS: u32 = 0x0008_aa0f;

/// What the server says first.
pub(super) fn start(s: &StartTls, p: &mut Preamble) {
    let proto = s.proto;
    let name = s.name.clone();
    match proto {
        Proto::Smtp => p.send_line(&format!("220 {name} ESMTP stls")),
        Proto::Lmtp => p.send_line(&format!("220 {name} LMTP stls")),
        Proto::Pop3 => p.send_line(&format!("+OK {name} POP3 stls ready")),
        Proto::Imap => p.send_line(&format!(
            "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] {name} IMAP stls ready"
        )),
        Proto::Ftp => p.send_line(&format!("220 {name} FTP stls ready")),
        Proto::Nntp => p.send_line(&format!("200 {name} NNTP stls ready")),
        Proto::Sieve => sieve_capabilities(p),
        Proto::Telnet => p.send_bytes(&[IAC, TELNET_DO, TELNET_START_TLS], "IAC DO START_TLS"),
        Proto::Mysql => mysql_greeting(p),
        Proto::Xmpp | Proto::XmppServer | Proto::Irc | Proto::Ldap | Proto::Postgres => {}
    }
}

pub(super) fn step(s: &mut StartTls, p: &mut Preamble) -> Result<Progress> {
    match s.proto {
        Proto::Smtp | Proto::Lmtp => smtp(s, p),
        Proto::Pop3 => pop3(p),
        Proto::Imap => imap(p),
        Proto::Ftp => ftp(p),
        Proto::Nntp => nntp(p),
        Proto::Sieve => sieve(p),
        Proto::Irc => irc(s, p),
        Proto::Xmpp | Proto::XmppServer => xmpp(s, p),
        Proto::Telnet => telnet(s, p),
        Proto::Ldap => ldap(p),
        Proto::Postgres => postgres(p),
        Proto::Mysql => mysql(p),
    }
}

/// The client left before TLS: say goodbye, then end with an error.
fn quit(p: &mut Preamble, goodbye: &str) -> Result<Progress> {
    p.send_line(goodbye);
    let e = p.fail("the client quit before starting TLS");
    p.end_with(e);
    Ok(Progress::Next)
}

fn smtp(s: &mut StartTls, p: &mut Preamble) -> Result<Progress> {
    let Some(line) = p.line()? else {
        return Ok(Progress::More);
    };
    let name = s.name.clone();
    match verb(&line).as_str() {
        "EHLO" | "LHLO" => {
            p.send_line(&format!("250-{name}"));
            p.send_line("250-PIPELINING");
            p.send_line("250-8BITMIME");
            p.send_line("250 STARTTLS");
        }
        "HELO" => p.send_line(&format!("250 {name}")),
        "STARTTLS" => {
            p.send_line("220 2.0.0 Ready to start TLS");
            return Ok(Progress::Go);
        }
        "NOOP" | "RSET" => p.send_line("250 2.0.0 OK"),
        "QUIT" => return quit(p, "221 2.0.0 Bye"),
        _ => p.send_line("530 5.7.0 Must issue a STARTTLS command first"),
    }
    Ok(Progress::Next)
}

fn pop3(p: &mut Preamble) -> Result<Progress> {
    let Some(line) = p.line()? else {
        return Ok(Progress::More);
    };
    match verb(&line).as_str() {
        "CAPA" => {
            p.send_line("+OK Capability list follows");
            p.send_line("STLS");
            p.send_line(".");
        }
        "STLS" => {
            p.send_line("+OK Begin TLS negotiation");
            return Ok(Progress::Go);
        }
        "NOOP" => p.send_line("+OK"),
        "QUIT" => return quit(p, "+OK Bye"),
        _ => p.send_line("-ERR Command not permitted before STLS"),
    }
    Ok(Progress::Next)
}

fn imap(p: &mut Preamble) -> Result<Progress> {
    let Some(line) = p.line()? else {
        return Ok(Progress::More);
    };
    let mut words = line.split_whitespace();
    let (Some(tag), Some(command)) = (words.next(), words.next()) else {
        p.send_line("* BAD Missing tag or command");
        return Ok(Progress::Next);
    };
    let tag = tag.to_string();
    match command.to_ascii_uppercase().as_str() {
        "CAPABILITY" => {
            p.send_line("* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED");
            p.send_line(&format!("{tag} OK CAPABILITY completed"));
        }
        "STARTTLS" => {
            p.send_line(&format!("{tag} OK Begin TLS negotiation now"));
            return Ok(Progress::Go);
        }
        "NOOP" => p.send_line(&format!("{tag} OK NOOP completed")),
        "LOGOUT" => {
            p.send_line("* BYE stls");
            return quit(p, &format!("{tag} OK LOGOUT completed"));
        }
        _ => p.send_line(&format!("{tag} BAD Command not permitted before STARTTLS")),
    }
    Ok(Progress::Next)
}

fn ftp(p: &mut Preamble) -> Result<Progress> {
    let Some(line) = p.line()? else {
        return Ok(Progress::More);
    };
    let upper = line.to_ascii_uppercase();
    match verb(&line).as_str() {
        "AUTH" if upper.trim_end() == "AUTH TLS" || upper.trim_end() == "AUTH SSL" => {
            p.send_line("234 AUTH TLS successful");
            return Ok(Progress::Go);
        }
        "AUTH" => p.send_line("504 Only AUTH TLS is supported"),
        "FEAT" => {
            p.send_line("211-Features:");
            p.send_line(" AUTH TLS");
            p.send_line(" PBSZ");
            p.send_line(" PROT");
            p.send_line("211 End");
        }
        "NOOP" => p.send_line("200 OK"),
        "QUIT" => return quit(p, "221 Bye"),
        _ => p.send_line("530 Please use AUTH TLS first"),
    }
    Ok(Progress::Next)
}

fn nntp(p: &mut Preamble) -> Result<Progress> {
    let Some(line) = p.line()? else {
        return Ok(Progress::More);
    };
    match verb(&line).as_str() {
        "CAPABILITIES" => {
            p.send_line("101 Capability list:");
            p.send_line("VERSION 2");
            p.send_line("STARTTLS");
            p.send_line(".");
        }
        "STARTTLS" => {
            p.send_line("382 Continue with TLS negotiation");
            return Ok(Progress::Go);
        }
        "QUIT" => return quit(p, "205 Bye"),
        _ => p.send_line("483 Encryption required: use STARTTLS"),
    }
    Ok(Progress::Next)
}

fn sieve_capabilities(p: &mut Preamble) {
    p.send_line("\"IMPLEMENTATION\" \"stls\"");
    p.send_line("\"SIEVE\" \"fileinto\"");
    p.send_line("\"STARTTLS\"");
    p.send_line("\"VERSION\" \"1.0\"");
    p.send_line("OK");
}

fn sieve(p: &mut Preamble) -> Result<Progress> {
    let Some(line) = p.line()? else {
        return Ok(Progress::More);
    };
    match verb(&line).as_str() {
        "CAPABILITY" => sieve_capabilities(p),
        "STARTTLS" => {
            p.send_line("OK \"Begin TLS negotiation now\"");
            return Ok(Progress::Go);
        }
        "NOOP" => p.send_line("OK \"NOOP completed\""),
        "LOGOUT" => return quit(p, "OK \"Bye\""),
        _ => p.send_line("NO \"Use STARTTLS first\""),
    }
    Ok(Progress::Next)
}

fn irc(s: &mut StartTls, p: &mut Preamble) -> Result<Progress> {
    let Some(line) = p.line()? else {
        return Ok(Progress::More);
    };
    let name = s.name.clone();
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or_default().to_ascii_uppercase();
    match command.as_str() {
        "STARTTLS" => {
            p.send_line(&format!(
                ":{name} 670 * :STARTTLS successful, proceed with TLS handshake"
            ));
            return Ok(Progress::Go);
        }
        "CAP" => match words.next().map(str::to_ascii_uppercase).as_deref() {
            Some("LS") => p.send_line(&format!(":{name} CAP * LS :tls")),
            Some("REQ") => {
                let wanted = line.split_once(':').map(|(_, w)| w).unwrap_or_default();
                p.send_line(&format!(":{name} CAP * NAK :{wanted}"));
            }
            _ => {}
        },
        "PING" => {
            let token = line.split_once(' ').map(|(_, t)| t).unwrap_or_default();
            p.send_line(&format!(":{name} PONG {name} {token}"));
        }
        "QUIT" => return quit(p, "ERROR :Closing link"),
        "" => {}
        _ => p.send_line(&format!(":{name} 451 * :Use STARTTLS first")),
    }
    Ok(Progress::Next)
}

fn xmpp(s: &mut StartTls, p: &mut Preamble) -> Result<Progress> {
    let proto = s.proto;
    let text = p.xml_text()?;
    match s.step {
        0 => {
            // The client's stream header, possibly after an XML declaration. More than 1 KiB
            // before any element is not XMPP: counted up to the first '<', so that the
            // answer does not depend on how the bytes were cut into reads.
            if text.find('<').unwrap_or(text.len()) > 1024 {
                return Err(p.fail("sent no XMPP stream header"));
            }
            let Some(start) = text.find("<stream:stream") else {
                return Ok(Progress::More);
            };
            let Some(gt) = text[start..].find('>') else {
                return Ok(Progress::More);
            };
            let header = text[..start + gt + 1].to_string();
            p.log("<", &header);
            p.inbox.drain(..header.len().min(p.inbox.len()));
            let domain = attribute(&header, "to").unwrap_or_else(|| s.name.clone());
            let ns = if proto == Proto::Xmpp {
                "jabber:client"
            } else {
                "jabber:server"
            };
            p.send_text(&format!(
                "<?xml version='1.0'?><stream:stream xmlns='{ns}' \
                 xmlns:stream='http://etherx.jabber.org/streams' id='stls' from='{}' \
                 version='1.0'><stream:features><starttls xmlns='{XMPP_TLS}'><required/>\
                 </starttls></stream:features>",
                xml_escape(&domain)
            ));
            s.step = 1;
            Ok(Progress::Next)
        }
        _ => {
            let Some(element) = p.xml_element("starttls")? else {
                return Ok(Progress::More);
            };
            if element.starts_with("<starttls") {
                p.send_text(&format!("<proceed xmlns='{XMPP_TLS}'/>"));
                return Ok(Progress::Go);
            }
            p.send_text(&format!("<failure xmlns='{XMPP_TLS}'/></stream:stream>"));
            let e = p.fail(format!(
                "the client sent '{}' instead of <starttls/>",
                quote(element.as_bytes())
            ));
            p.end_with(e);
            Ok(Progress::Next)
        }
    }
}

/// The value of `name='…'` or `name="…"` in an XML start tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let at = tag.find(&format!(" {name}="))? + name.len() + 2;
    let rest = tag.get(at..)?;
    let quote = rest.chars().next().filter(|q| *q == '\'' || *q == '"')?;
    let rest = &rest[quote.len_utf8()..];
    Some(rest[..rest.find(quote)?].to_string())
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

fn telnet(s: &mut StartTls, p: &mut Preamble) -> Result<Progress> {
    if s.step == 0 {
        let Some(got) = p.take(3) else {
            return Ok(Progress::More);
        };
        if got != [IAC, TELNET_WILL, TELNET_START_TLS] {
            return Err(p.fail(format!(
                "the client answered '{}' to IAC DO START_TLS, where IAC WILL START_TLS was \
                 expected",
                quote(&got)
            )));
        }
        s.step = 1;
        return Ok(Progress::Next);
    }
    let Some(got) = p.take(6) else {
        return Ok(Progress::More);
    };
    if got != TELNET_FOLLOWS {
        return Err(p.fail(format!(
            "the client sent '{}' where IAC SB START_TLS FOLLOWS IAC SE was expected",
            quote(&got)
        )));
    }
    p.send_bytes(&TELNET_FOLLOWS, "IAC SB START_TLS FOLLOWS IAC SE");
    Ok(Progress::Go)
}

fn ldap(p: &mut Preamble) -> Result<Progress> {
    let inbox = p.inbox.clone();
    let Some((tag, msg, whole)) = ber(p, &inbox)? else {
        return Ok(Progress::More);
    };
    p.inbox.drain(..whole);
    let garbled = || p.fail("the client sent a malformed LDAP message");
    if tag != 0x30 {
        return Err(garbled());
    }
    // A messageID is at most four bytes (0 to 2^31 - 1).
    let Some((0x02, id, id_len)) = ber(p, &msg)?.filter(|(_, id, _)| id.len() <= 4) else {
        return Err(garbled());
    };
    // [APPLICATION 23] ExtendedRequest { [0] requestName }
    let request = ber(p, &msg[id_len..])?;
    let name = match &request {
        Some((0x77, req, _)) => ber(p, req)?.filter(|(t, _, _)| *t == 0x80),
        _ => None,
    };
    let Some((_, oid, _)) = name.filter(|(_, oid, _)| oid == b"1.3.6.1.4.1.1466.20037") else {
        let what = match request {
            Some((tag, _, _)) => format!("an LDAP operation with tag 0x{tag:02x}"),
            None => "an empty LDAP message".to_string(),
        };
        return Err(p.fail(format!(
            "the client sent {what} instead of the StartTLS extended request"
        )));
    };
    p.log("<", &format!("ExtendedRequest {}", quote(&oid)));
    // ExtendedResponse: success, empty matchedDN and diagnosticMessage.
    let mut body = vec![0x02, id.len() as u8];
    body.extend_from_slice(&id);
    body.extend_from_slice(&[0x78, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00]);
    let mut resp = vec![0x30, body.len() as u8];
    resp.extend_from_slice(&body);
    p.send_bytes(&resp, "ExtendedResponse success");
    Ok(Progress::Go)
}

fn postgres(p: &mut Preamble) -> Result<Progress> {
    // PostgreSQL 17's direct TLS: the ClientHello comes at once.
    if p.inbox.first() == Some(&0x16) {
        p.log("<", "a TLS ClientHello (direct TLS)");
        p.leftover_all();
        return Ok(Progress::Go);
    }
    let Some(head) = p.inbox.get(..8) else {
        return Ok(Progress::More);
    };
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let code = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    p.take(8);
    match (len, code) {
        (8, PG_SSL_REQUEST) => {
            p.send_bytes(b"S", "S");
            Ok(Progress::Go)
        }
        (8, PG_GSSENC_REQUEST) => {
            p.send_bytes(b"N", "N (no GSSAPI encryption)");
            Ok(Progress::Next)
        }
        _ => Err(p.fail(
            "the client did not ask for TLS (no SSLRequest); it would have sent its startup \
             message in plain text",
        )),
    }
}

fn mysql_greeting(p: &mut Preamble) {
    let mut payload = vec![10];
    payload.extend_from_slice(b"8.0.0-stls\0");
    payload.extend_from_slice(&1u32.to_le_bytes());
    payload.extend_from_slice(b"stlsstls\0");
    payload.extend_from_slice(&(MYSQL_CAPS as u16).to_le_bytes());
    payload.push(0x21);
    payload.extend_from_slice(&2u16.to_le_bytes());
    payload.extend_from_slice(&((MYSQL_CAPS >> 16) as u16).to_le_bytes());
    payload.push(21);
    payload.extend_from_slice(&[0; 10]);
    payload.extend_from_slice(b"stlsstlsstls\0");
    payload.extend_from_slice(b"mysql_native_password\0");
    let len = payload.len() as u32;
    let mut packet = len.to_le_bytes()[..3].to_vec();
    packet.push(0);
    packet.extend_from_slice(&payload);
    p.send_bytes(&packet, "handshake v10 with CLIENT_SSL");
}

fn mysql(p: &mut Preamble) -> Result<Progress> {
    let Some(header) = p.inbox.get(..4) else {
        return Ok(Progress::More);
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    if p.inbox.len() < 4 + len {
        return Ok(Progress::More);
    }
    let packet: Vec<u8> = p.inbox.drain(..4 + len).collect();
    let caps = packet
        .get(4..8)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .unwrap_or_default();
    p.log("<", &format!("SSLRequest? capabilities 0x{caps:08x}"));
    // The SSLRequest is exactly 32 bytes; a longer packet is a whole login in plain text.
    if len != 32 || caps & MYSQL_CLIENT_SSL == 0 {
        return Err(p.fail("the client did not ask for SSL: it would have logged in in plain text"));
    }
    // What follows is the ClientHello: the Preamble hands it to TLS.
    Ok(Progress::Go)
}

impl Preamble {
    /// Everything received belongs to TLS.
    fn leftover_all(&mut self) {
        self.leftover = std::mem::take(&mut self.inbox);
    }
}
