//! The client side of each protocol's dialogue: what `openssl s_client -starttls` sends, and
//! what it takes for a go-ahead, checked more strictly (a refusal is an error, never a
//! fallback to plain text).

use anyhow::Result;

use super::{Proto, StartTls};
use crate::preamble::{quote, verb, Preamble, Progress};

/// LDAP: the StartTLS extended request (RFC 4511 §4.14.1), messageID 1.
const LDAP_STARTTLS_OID: &[u8] = b"1.3.6.1.4.1.1466.20037";
/// PostgreSQL's SSLRequest code.
pub(super) const PG_SSL_REQUEST: u32 = 80_877_103;
/// MySQL's CLIENT_SSL capability flag.
pub(super) const MYSQL_CLIENT_SSL: u32 = 0x0800;
/// The telnet START_TLS option (RFC draft-altman-telnet-starttls) and its commands.
pub(super) const IAC: u8 = 255;
pub(super) const TELNET_DO: u8 = 253;
pub(super) const TELNET_WILL: u8 = 251;
pub(super) const TELNET_START_TLS: u8 = 46;
pub(super) const TELNET_FOLLOWS: [u8; 6] = [IAC, 250, TELNET_START_TLS, 1, IAC, 240];
/// XMPP's TLS namespace.
pub(super) const XMPP_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";

/// What the client sends before the server has said anything.
pub(super) fn start(s: &StartTls, p: &mut Preamble) {
    let proto = s.proto;
    match proto {
        Proto::Xmpp | Proto::XmppServer => {
            let ns = if proto == Proto::Xmpp {
                "jabber:client"
            } else {
                "jabber:server"
            };
            let header = format!(
                "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='{ns}' \
                 to='{}' version='1.0'>",
                s.name
            );
            p.send_text(&header);
        }
        Proto::Irc => p.send_line("STARTTLS"),
        Proto::Ldap => {
            let mut req = vec![0x30, 0x1d, 0x02, 0x01, 0x01, 0x77, 0x18, 0x80, 0x16];
            req.extend_from_slice(LDAP_STARTTLS_OID);
            p.send_bytes(&req, "ExtendedRequest StartTLS (messageID 1)");
        }
        Proto::Postgres => {
            let mut req = 8u32.to_be_bytes().to_vec();
            req.extend_from_slice(&PG_SSL_REQUEST.to_be_bytes());
            p.send_bytes(&req, "SSLRequest");
        }
        _ => {}
    }
}

pub(super) fn step(s: &mut StartTls, p: &mut Preamble) -> Result<Progress> {
    match s.proto {
        Proto::Smtp | Proto::Lmtp => smtp(s, p),
        Proto::Ftp => ftp(s, p),
        Proto::Pop3 => pop3(s, p),
        Proto::Imap => imap(s, p),
        Proto::Nntp => nntp(s, p),
        Proto::Sieve => sieve(s, p),
        Proto::Irc => irc(p),
        Proto::Xmpp | Proto::XmppServer => xmpp(s, p),
        Proto::Telnet => telnet(s, p),
        Proto::Ldap => ldap(p),
        Proto::Postgres => postgres(p),
        Proto::Mysql => mysql(p),
    }
}

/// A whole SMTP-style reply (`NNN-…` lines, then `NNN …`): its code and text, or `None`
/// until it has arrived.
fn smtp_reply(p: &mut Preamble) -> Result<Option<(u16, String)>> {
    while let Some(line) = p.line()? {
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        let last = line.len() == 3 || line.as_bytes().get(3) == Some(&b' ');
        let cont = line.as_bytes().get(3) == Some(&b'-');
        p.reply.push(line.clone());
        match code {
            Some(code) if last => {
                let text = p.reply.join(" / ");
                return Ok(Some((code, text)));
            }
            Some(_) if cont => {}
            _ => {
                return Err(p.fail(format!(
                    "sent '{}', which is not a reply",
                    quote(line.as_bytes())
                )))
            }
        }
    }
    Ok(None)
}

fn smtp(s: &mut StartTls, p: &mut Preamble) -> Result<Progress> {
    let proto = s.proto;
    let Some((code, text)) = smtp_reply(p)? else {
        return Ok(Progress::More);
    };
    let hello = if proto == Proto::Lmtp { "LHLO" } else { "EHLO" };
    let lines = std::mem::take(&mut p.reply);
    match (s.step, code) {
        (0, 220) => {
            p.send_line(&format!("{hello} {}", s.name));
            s.step = 1;
            Ok(Progress::Next)
        }
        (0, _) => Err(p.refused(&text, "the connection", "a 220 greeting")),
        (1, 250) => {
            // Each line after the first names an extension: "250-STARTTLS".
            let offered = lines
                .iter()
                .skip(1)
                .any(|l| verb(l.get(4..).unwrap_or_default()) == "STARTTLS");
            if !offered {
                return Err(p.fail(format!(
                    "the server does not offer STARTTLS (its {hello} reply: '{}')",
                    quote(text.as_bytes())
                )));
            }
            p.send_line("STARTTLS");
            s.step = 2;
            Ok(Progress::Next)
        }
        (1, _) => Err(p.refused(&text, hello, "250")),
        (_, 220) => Ok(Progress::Go),
        (_, _) => Err(p.refused(&text, "STARTTLS", "220")),
    }
}

fn ftp(s: &mut StartTls, p: &mut Preamble) -> Result<Progress> {
    let Some((code, text)) = smtp_reply(p)? else {
        return Ok(Progress::More);
    };
    p.reply.clear();
    match (s.step, code) {
        (0, 220) => {
            p.send_line("AUTH TLS");
            s.step = 1;
            Ok(Progress::Next)
        }
        (0, _) => Err(p.refused(&text, "the connection", "a 220 greeting")),
        (_, 234) => Ok(Progress::Go),
        (_, _) => Err(p.refused(&text, "AUTH TLS", "234")),
    }
}

fn pop3(s: &mut StartTls, p: &mut Preamble) -> Result<Progress> {
    let Some(line) = p.line()? else {
        return Ok(Progress::More);
    };
    match (s.step, line.starts_with("+OK")) {
        (0, true) => {
            p.send_line("STLS");
            s.step = 1;
            Ok(Progress::Next)
        }
        (0, false) => Err(p.refused(&line, "the connection", "a +OK greeting")),
        (_, true) => Ok(Progress::Go),
        (_, false) => Err(p.refused(&line, "STLS", "+OK")),
    }
}

fn imap(s: &mut StartTls, p: &mut Preamble) -> Result<Progress> {
    let Some(line) = p.line()? else {
        return Ok(Progress::More);
    };
    match s.step {
        0 if line.starts_with("* OK") || line.starts_with("* PREAUTH") => {
            p.send_line("S1 CAPABILITY");
            s.step = 1;
            Ok(Progress::Next)
        }
        0 => Err(p.refused(&line, "the connection", "a '* OK' greeting")),
        1 if line.starts_with('*') => {
            p.reply.push(line);
            Ok(Progress::Next)
        }
        1 => {
            let caps = std::mem::take(&mut p.reply).join(" / ");
            if !line.starts_with("S1 OK") {
                return Err(p.refused(&line, "CAPABILITY", "S1 OK"));
            }
            let offered = caps
                .split_whitespace()
                .any(|w| w.eq_ignore_ascii_case("STARTTLS"));
            if !offered {
                return Err(p.fail(format!(
                    "the server does not offer STARTTLS (its capabilities: '{}')",
                    quote(caps.as_bytes())
                )));
            }
            p.send_line("S2 STARTTLS");
            s.step = 2;
            Ok(Progress::Next)
        }
        _ if line.starts_with('*') => Ok(Progress::Next),
        _ if line.starts_with("S2 OK") => Ok(Progress::Go),
        _ => Err(p.refused(&line, "STARTTLS", "S2 OK")),
    }
}

fn nntp(s: &mut StartTls, p: &mut Preamble) -> Result<Progress> {
    let Some(line) = p.line()? else {
        return Ok(Progress::More);
    };
    match s.step {
        0 if line.starts_with("200") || line.starts_with("201") => {
            p.send_line("CAPABILITIES");
            s.step = 1;
            Ok(Progress::Next)
        }
        0 => Err(p.refused(&line, "the connection", "a 200 or 201 greeting")),
        // No capability list: try STARTTLS all the same.
        1 if !line.starts_with("101") => {
            p.send_line("STARTTLS");
            s.step = 3;
            Ok(Progress::Next)
        }
        1 => {
            s.step = 2;
            Ok(Progress::Next)
        }
        2 if line != "." => {
            p.reply.push(line);
            Ok(Progress::Next)
        }
        2 => {
            let caps = std::mem::take(&mut p.reply);
            if !caps.iter().any(|c| verb(c) == "STARTTLS") {
                return Err(p.fail(format!(
                    "the server does not offer STARTTLS (its capabilities: '{}')",
                    quote(caps.join(" / ").as_bytes())
                )));
            }
            p.send_line("STARTTLS");
            s.step = 3;
            Ok(Progress::Next)
        }
        _ if line.starts_with("382") => Ok(Progress::Go),
        _ => Err(p.refused(&line, "STARTTLS", "382")),
    }
}

fn sieve(s: &mut StartTls, p: &mut Preamble) -> Result<Progress> {
    let Some(line) = p.line()? else {
        return Ok(Progress::More);
    };
    let status = verb(&line);
    let done = ["OK", "NO", "BYE"].contains(&status.as_str());
    if !done {
        p.reply.push(line);
        return Ok(Progress::Next);
    }
    let caps = std::mem::take(&mut p.reply);
    match (s.step, status.as_str()) {
        (0, "OK") => {
            let offered = caps.iter().any(|c| c.eq_ignore_ascii_case("\"STARTTLS\""));
            if !offered {
                return Err(p.fail(format!(
                    "the server does not offer STARTTLS (its capabilities: '{}')",
                    quote(caps.join(" / ").as_bytes())
                )));
            }
            p.send_line("STARTTLS");
            s.step = 1;
            Ok(Progress::Next)
        }
        (0, _) => Err(p.refused(&line, "the connection", "capabilities and OK")),
        (_, "OK") => Ok(Progress::Go),
        (_, _) => Err(p.refused(&line, "STARTTLS", "OK")),
    }
}

fn irc(p: &mut Preamble) -> Result<Progress> {
    let Some(line) = p.line()? else {
        return Ok(Progress::More);
    };
    // ":server 670 nick :STARTTLS successful"; notices and the like come first.
    let mut words = line.split_whitespace();
    let first = words.next().unwrap_or_default();
    let numeric = if first.starts_with(':') {
        words.next().unwrap_or_default()
    } else {
        first
    };
    match numeric {
        "670" => Ok(Progress::Go),
        "691" | "421" | "ERROR" => Err(p.refused(&line, "STARTTLS", "670")),
        _ => Ok(Progress::Next),
    }
}

fn xmpp(s: &mut StartTls, p: &mut Preamble) -> Result<Progress> {
    let text = p.xml_text()?;
    if let Some(at) = text.find("<stream:error") {
        return Err(p.refused(&text[at..], "the stream header", "stream features"));
    }
    match s.step {
        0 => {
            // The features, whole: "</stream:features>" or an empty "<stream:features/>".
            let end = ["</stream:features>", "<stream:features/>"]
                .iter()
                .filter_map(|t| text.find(t).map(|at| at + t.len()))
                .min();
            let Some(end) = end else {
                return Ok(Progress::More);
            };
            let features = &text[..end];
            p.log("<", features);
            if !(features.contains("<starttls") && features.contains(XMPP_TLS)) {
                // The features element, not the stream header before it: the header alone
                // would fill the quote.
                let element = features
                    .find("<stream:features")
                    .map_or(features, |at| &features[at..]);
                return Err(p.fail(format!(
                    "the server does not offer STARTTLS (its features: '{}')",
                    quote(element.as_bytes())
                )));
            }
            let taken = features.len();
            p.inbox.drain(..taken.min(p.inbox.len()));
            p.send_text(&format!("<starttls xmlns='{XMPP_TLS}'/>"));
            s.step = 1;
            Ok(Progress::Next)
        }
        _ => {
            let Some(element) = p.xml_element("proceed")? else {
                return Ok(Progress::More);
            };
            if element.starts_with("<proceed") {
                Ok(Progress::Go)
            } else {
                Err(p.refused(&element, "<starttls/>", "<proceed/>"))
            }
        }
    }
}

fn telnet(s: &mut StartTls, p: &mut Preamble) -> Result<Progress> {
    match s.step {
        0 => {
            let Some(got) = p.take(3) else {
                return Ok(Progress::More);
            };
            if got != [IAC, TELNET_DO, TELNET_START_TLS] {
                let mut all = got;
                all.append(&mut p.inbox);
                return Err(p.refused(&telnet_answer(&all), "the connection", "IAC DO START_TLS"));
            }
            p.send_bytes(&[IAC, TELNET_WILL, TELNET_START_TLS], "IAC WILL START_TLS");
            p.send_bytes(&TELNET_FOLLOWS, "IAC SB START_TLS FOLLOWS IAC SE");
            s.step = 1;
            Ok(Progress::Next)
        }
        _ => {
            let Some(got) = p.take(6) else {
                return Ok(Progress::More);
            };
            if got != TELNET_FOLLOWS {
                let mut all = got;
                all.append(&mut p.inbox);
                return Err(p.refused(
                    &telnet_answer(&all),
                    "START_TLS",
                    "IAC SB START_TLS FOLLOWS",
                ));
            }
            Ok(Progress::Go)
        }
    }
}

/// What a telnet server said, for a refusal: the text after its option negotiation (a
/// banner, a login prompt), or, when only negotiation came, the negotiation in words.
fn telnet_answer(bytes: &[u8]) -> String {
    const SE: u8 = 240;
    const SB: u8 = 250;
    let verb = |b: u8| match b {
        251 => "WILL".to_string(),
        252 => "WONT".to_string(),
        253 => "DO".to_string(),
        254 => "DONT".to_string(),
        SB => "SB".to_string(),
        other => other.to_string(),
    };
    let mut text = Vec::new();
    let mut said = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1).copied()) {
            (IAC, Some(IAC)) => {
                text.push(IAC);
                i += 2;
            }
            (IAC, Some(SB)) => {
                let option = bytes.get(i + 2).map_or(String::new(), |o| format!(" {o}"));
                said.push(format!("IAC SB{option} … IAC SE"));
                // To the IAC SE that ends the subnegotiation, or to the end of what came.
                let end = bytes[i..]
                    .windows(2)
                    .position(|w| w == [IAC, SE])
                    .map_or(bytes.len(), |at| i + at + 2);
                i = end;
            }
            (IAC, Some(cmd @ 251..=254)) => {
                let option = bytes.get(i + 2).map_or(String::new(), |o| format!(" {o}"));
                said.push(format!("IAC {}{option}", verb(cmd)));
                i += 3;
            }
            (IAC, Some(cmd)) => {
                said.push(format!("IAC {}", verb(cmd)));
                i += 2;
            }
            (IAC, None) => {
                said.push("IAC".to_string());
                i += 1;
            }
            (b, _) => {
                text.push(b);
                i += 1;
            }
        }
    }
    let text = String::from_utf8_lossy(&text).trim().to_string();
    match text.is_empty() {
        false => text,
        true => said.join(" "),
    }
}

/// A BER element at the start of `data`: its tag, its contents and its whole length, or
/// `None` until it has arrived. Lengths beyond the dialogue's limit are refused.
pub(super) fn ber(p: &Preamble, data: &[u8]) -> Result<Option<(u8, Vec<u8>, usize)>> {
    let (Some(&tag), Some(&first)) = (data.first(), data.get(1)) else {
        return Ok(None);
    };
    let (len, head) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 3 {
            return Err(p.fail("sent a malformed LDAP message (bad BER length)"));
        }
        let Some(bytes) = data.get(2..2 + n) else {
            return Ok(None);
        };
        (
            bytes.iter().fold(0usize, |a, &b| a << 8 | b as usize),
            2 + n,
        )
    };
    if len > crate::preamble::TOTAL_MAX {
        return Err(p.fail("sent an LDAP message larger than the dialogue's limit"));
    }
    Ok(data
        .get(head..head + len)
        .map(|c| (tag, c.to_vec(), head + len)))
}

fn ldap(p: &mut Preamble) -> Result<Progress> {
    let inbox = p.inbox.clone();
    let Some((tag, msg, whole)) = ber(p, &inbox)? else {
        return Ok(Progress::More);
    };
    p.inbox.drain(..whole);
    let garbled = || p.fail("sent a malformed LDAP response");
    if tag != 0x30 {
        return Err(garbled());
    }
    // messageID, then the ExtendedResponse: [APPLICATION 24] { resultCode, matchedDN,
    // diagnosticMessage, … }.
    let Some((0x02, _, id_len)) = ber(p, &msg)? else {
        return Err(garbled());
    };
    let Some((0x78, resp, _)) = ber(p, &msg[id_len..])? else {
        return Err(garbled());
    };
    let Some((0x0a, code, code_len)) = ber(p, &resp)? else {
        return Err(garbled());
    };
    let code = code.iter().fold(0u32, |a, &b| a << 8 | b as u32);
    p.log("<", &format!("ExtendedResponse resultCode {code}"));
    if code == 0 {
        return Ok(Progress::Go);
    }
    let rest = &resp[code_len..];
    let diagnostic = ber(p, rest)?
        .and_then(|(_, _, dn_len)| ber(p, &rest[dn_len..]).ok().flatten())
        .map(|(_, text, _)| String::from_utf8_lossy(&text).to_string())
        .unwrap_or_default();
    Err(p.refused(
        &format!("resultCode {code} {diagnostic}"),
        "the StartTLS request",
        "resultCode 0 (success)",
    ))
}

fn postgres(p: &mut Preamble) -> Result<Progress> {
    let Some(got) = p.take(1) else {
        return Ok(Progress::More);
    };
    match got[0] {
        b'S' => Ok(Progress::Go),
        b'N' => Err(p.refused("N (no SSL)", "SSLRequest", "S")),
        _ => {
            // An ErrorResponse ('E') from a server too old to know SSLRequest, or garbage.
            let rest = quote(&p.inbox);
            Err(p.refused(&format!("{}{rest}", got[0] as char), "SSLRequest", "S"))
        }
    }
}

fn mysql(p: &mut Preamble) -> Result<Progress> {
    let Some(header) = p.inbox.get(..4) else {
        return Ok(Progress::More);
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    let seq = header[3];
    if p.inbox.len() < 4 + len {
        return Ok(Progress::More);
    }
    let packet: Vec<u8> = p.inbox.drain(..4 + len).collect();
    let payload = &packet[4..];
    match payload.first() {
        Some(10) => {}
        Some(0xff) => {
            let msg = payload.get(3..).map(quote).unwrap_or_default();
            return Err(p.refused(&msg, "the connection", "a handshake packet"));
        }
        _ => return Err(p.fail("sent something other than a MySQL handshake packet")),
    }
    // protocol 10, server version (NUL-terminated), connection id (4), auth data (8),
    // filler (1), capability flags (lower 2 bytes).
    let version_end = payload[1..].iter().position(|&b| b == 0).map(|i| i + 1);
    let caps_at = version_end.map(|v| v + 1 + 4 + 8 + 1);
    let caps = caps_at
        .and_then(|at| payload.get(at..at + 2))
        .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32);
    let version = version_end
        .map(|v| String::from_utf8_lossy(&payload[1..v]).to_string())
        .unwrap_or_default();
    p.log("<", &format!("handshake v10, server {version}"));
    match caps {
        Some(caps) if caps & MYSQL_CLIENT_SSL != 0 => {}
        Some(_) => {
            return Err(p.fail(format!(
                "the server ({}) does not offer SSL",
                quote(version.as_bytes())
            )))
        }
        None => return Err(p.fail("sent a truncated MySQL handshake packet")),
    }
    // The SSLRequest, with openssl s_client's capability flags.
    let mut req = vec![0x20, 0x00, 0x00, seq.wrapping_add(1)];
    req.extend_from_slice(&[0x85, 0xae, 0x7f, 0x00]);
    req.extend_from_slice(&[0x00, 0x00, 0x00, 0x01]);
    req.push(0x21);
    req.extend_from_slice(&[0; 23]);
    p.send_bytes(&req, "SSLRequest");
    Ok(Progress::Go)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preamble::Talk;

    /// The refusal a client dialogue of `proto` ends with, given what the server sends.
    fn refusal(proto: Proto, from_server: &[u8]) -> String {
        let mut t = Talk::new(StartTls::client(proto, "client.example"), "server");
        t.p.inbox.extend_from_slice(from_server);
        loop {
            match step(&mut t.dialogue, &mut t.p) {
                Ok(Progress::More) => panic!("{proto:?}: no refusal"),
                Ok(_) => {}
                Err(e) => return format!("{e:#}"),
            }
        }
    }

    #[test]
    fn xmpp_refusal_quotes_the_features_not_the_stream_header() {
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
             xmlns='jabber:client' from='chat.example' id='{}' version='1.0' xml:lang='en'>",
            "0123456789abcdef".repeat(8)
        );
        let features = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
                        <mechanism>PLAIN</mechanism></mechanisms></stream:features>";
        let e = refusal(Proto::Xmpp, format!("{header}{features}").as_bytes());
        assert!(e.contains("does not offer STARTTLS"), "{e}");
        assert!(e.contains("'<stream:features><mechanisms"), "{e}");
        assert!(e.contains("<mechanism>PLAIN</mechanism>"), "{e}");
        assert!(!e.contains("<stream:stream"), "{e}");
    }

    #[test]
    fn telnet_refusal_quotes_the_text_after_the_negotiation() {
        // IAC DO TERMINAL-TYPE, IAC WILL ECHO, a subnegotiation, then the banner.
        let mut sent = vec![IAC, TELNET_DO, 24, IAC, TELNET_WILL, 1];
        sent.extend_from_slice(&[IAC, 250, 24, 1, IAC, 240]);
        sent.extend_from_slice(b"\r\nDebian GNU/Linux 12\r\nhost login: ");
        let e = refusal(Proto::Telnet, &sent);
        assert!(
            e.contains("answered 'Debian GNU/Linux 12\\r\\nhost login:' to the connection"),
            "{e}"
        );
        assert!(!e.contains('\u{fffd}'), "{e}");
        // Only negotiation: named in words.
        let e = refusal(Proto::Telnet, &[IAC, TELNET_DO, 24, IAC, TELNET_WILL, 1]);
        assert!(e.contains("answered 'IAC DO 24 IAC WILL 1'"), "{e}");
        // A refusal of START_TLS after our WILL.
        let mut sent = vec![IAC, TELNET_DO, TELNET_START_TLS];
        sent.extend_from_slice(&[IAC, 252, TELNET_START_TLS, b'n', b'o', b'p', b'e', b'!']);
        let e = refusal(Proto::Telnet, &sent);
        assert!(e.contains("answered 'nope!' to START_TLS"), "{e}");
    }
}
