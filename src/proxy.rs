//! Proxies: `--proxy URL` (repeatable: a chain, first hop first) or curl's environment
//! variables, `--noproxy`/`NO_PROXY`, and the request each hop is sent for the next one —
//! HTTP CONNECT (also through TLS to an `https://` proxy), SOCKS4a, SOCKS5 — each [`Hop`] a
//! [`Dialogue`] that owns how far it has got.
//!
//! The name of the next hop (and at the end, the target) travels unresolved where the scheme
//! allows (`http`, `https`, `socks4a`, `socks5h`); `socks5://` resolves it here, as curl does.
//! Credentials (`user:pass@`) are percent-decoded and sent as Basic or RFC 1929; no message
//! or `-vv` line shows them.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Result;
use base64::prelude::{Engine, BASE64_STANDARD};
use rustls::ClientConfig;

use crate::error::Class;
use crate::names;
use crate::net::HostPort;
use crate::preamble::{quote, Dialogue, Preamble, Progress};
use crate::resolve::Lookup;
use crate::starttls;
use crate::trust::Explainer;

/// How a proxy is spoken to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
    Socks4a,
    Socks5,
    Socks5h,
}

impl Scheme {
    fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Socks4a => "socks4a",
            Scheme::Socks5 => "socks5",
            Scheme::Socks5h => "socks5h",
        }
    }
}

/// A proxy, as a URL named it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ProxyUrl {
    pub scheme: Scheme,
    pub addr: HostPort,
    user: Option<String>,
    pass: Option<String>,
}

/// Never shows the credentials.
impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.name(), self.addr)
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Parse a proxy URL: `[SCHEME://][USER[:PASS]@]HOST[:PORT][/]`. Without a scheme it is
/// `http`, as for curl; the port defaults to 1080 (443 for `https`). The error message never
/// repeats the credentials.
pub(crate) fn parse(text: &str) -> Result<ProxyUrl, String> {
    let shown = redact(text);
    let bad = |why: &str| format!("proxy '{shown}': {why}");
    let (scheme, rest) = match scheme_end(text).map(|s| (&text[..s], &text[s + 3..])) {
        Some((s, rest)) => {
            let scheme = match s.to_ascii_lowercase().as_str() {
                "http" => Scheme::Http,
                "https" => Scheme::Https,
                "socks4a" => Scheme::Socks4a,
                "socks5" => Scheme::Socks5,
                "socks5h" => Scheme::Socks5h,
                _ => {
                    return Err(bad(
                        "unknown scheme (use http, https, socks4a, socks5 or socks5h)",
                    ))
                }
            };
            (scheme, rest)
        }
        None => (Scheme::Http, text),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') || rest.contains('#') {
        return Err(bad("a proxy URL has no path"));
    }
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (user, pass) = match userinfo {
        Some(u) => {
            let (user, pass) = match u.split_once(':') {
                Some((user, pass)) => (user, Some(pass)),
                None => (u, None),
            };
            let user = percent_decode(user).ok_or_else(|| bad("bad %-escape in the user"))?;
            let pass = match pass {
                Some(p) => {
                    Some(percent_decode(p).ok_or_else(|| bad("bad %-escape in the password"))?)
                }
                None => None,
            };
            (Some(user), pass)
        }
        None => (None, None),
    };
    let default_port = if scheme == Scheme::Https { 443 } else { 1080 };
    let (host, port) = split_host_port(hostport).ok_or_else(|| bad("expected HOST[:PORT]"))?;
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| bad("the port must be 1 to 65535"))?,
        None => default_port,
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let host = names::host_to_ascii(host)
        .map_err(|m| bad(&m))?
        .into_owned();
    Ok(ProxyUrl {
        scheme,
        addr: HostPort { host, port },
        user,
        pass,
    })
}

/// HOST, HOST:PORT, `[V6]` or `[V6]:PORT`.
fn split_host_port(text: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match text.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => None,
        Some((host, port)) => Some((host, Some(port))),
        None => Some((text, None)),
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Where a URL's scheme ends: at the first "://", if what is before it is a word.
fn scheme_end(text: &str) -> Option<usize> {
    text.find("://").filter(|&s| {
        s > 0
            && text[..s]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

/// Where the userinfo (`user:pass`) of a proxy URL is in `text`, if it has one; as `parse`
/// and `redact` find it.
pub(crate) fn userinfo_span(text: &str) -> Option<std::ops::Range<usize>> {
    let at = text.rfind('@')?;
    let start = scheme_end(text).map_or(0, |s| s + 3);
    (start <= at).then_some(start..at)
}

/// A URL as messages may show it: with the userinfo replaced.
pub(crate) fn redact(text: &str) -> String {
    let Some(at) = text.rfind('@') else {
        return text.to_string();
    };
    // A scheme is a plain word before "://" (a password may hold "://").
    match scheme_end(text) {
        Some(s) => format!("{}://***@{}", &text[..s], &text[at + 1..]),
        None => format!("***@{}", &text[at + 1..]),
    }
}

/// The proxies from the environment, as curl reads them for HTTPS: `https_proxy`, then
/// `all_proxy`; each lowercase name before its uppercase one. `http_proxy` is not read: stls
/// speaks TLS.
pub(crate) fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<ProxyUrl>, String> {
    for name in ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"] {
        if let Some(value) = get(name).filter(|v| !v.is_empty()) {
            return parse(&value).map(Some).map_err(|e| format!("{name}: {e}"));
        }
    }
    Ok(None)
}

/// The no-proxy list: `--noproxy`, else `no_proxy`, else `NO_PROXY`.
pub(crate) fn no_proxy(flag: Option<&str>, get: impl Fn(&str) -> Option<String>) -> String {
    match flag {
        Some(list) => list.to_string(),
        None => get("no_proxy")
            .or_else(|| get("NO_PROXY"))
            .unwrap_or_default(),
    }
}

/// Whether `host` is reached without a proxy: a list entry is `*` (every host), a host name
/// (which also covers its subdomains; a leading dot is allowed), an IP address, or a CIDR
/// block (`10.0.0.0/8`).
pub(crate) fn bypass(list: &str, host: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let ip: Option<IpAddr> = host.parse().ok();
    list.split(',').map(str::trim).any(|entry| {
        let entry = entry
            .trim_start_matches('.')
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if entry == "*" {
            return true;
        }
        if entry.is_empty() {
            return false;
        }
        if let (Some(ip), Some((net, bits))) = (ip, entry.split_once('/')) {
            return in_block(ip, net, bits);
        }
        host == entry || host.ends_with(&format!(".{entry}"))
    })
}

fn in_block(ip: IpAddr, net: &str, bits: &str) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    let (a, b, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    if bits > width {
        return false;
    }
    let shift = width - bits;
    shift >= 128 || (a >> shift) == (b >> shift)
}

/// The proxies of a run, as the flags and the environment say (none by default).
#[derive(Clone, Default)]
pub(crate) struct Proxies {
    /// First hop first; empty: connect directly.
    pub chain: Vec<ProxyUrl>,
    /// `--noproxy` or `NO_PROXY`.
    pub no_proxy: String,
    /// TLS with `https://` proxies: verified as the target is (`--cacert`, `--insecure`), but
    /// against the proxy's own name and never with `--pin`.
    pub tls: Option<(Arc<ClientConfig>, Explainer)>,
}

impl Proxies {
    /// Where the TCP connection to reach `target` goes: the first proxy, or `target`.
    pub(crate) fn first_hop(&self, target: &HostPort) -> HostPort {
        match (self.chain.first(), bypass(&self.no_proxy, &target.host)) {
            (Some(p), false) => p.addr.clone(),
            _ => target.clone(),
        }
    }
}

/// One hop of a chain: the proxy, and where it is asked to connect.
pub(crate) struct Hop {
    pub proxy: ProxyUrl,
    pub next: HostPort,
    /// `socks5://` with a name: its lookup, under way until its answer is taken.
    pub lookup: Option<Lookup>,
    /// `socks5://`: the next hop's address, resolved here.
    resolved: Option<SocketAddr>,
    /// How a failure of the TLS session with an `https://` proxy is told.
    explain: Option<Explainer>,
    /// How far the dialogue has got: SOCKS5's method (0), authentication (1), request (2),
    /// or wait for the address to request (3).
    step: u8,
}

/// What follows a hop's reply on the connection.
pub(crate) enum Then<'a> {
    /// A STARTTLS dialogue, whose server speaks first.
    StartTls,
    /// Our request to the next proxy.
    Proxy(&'a ProxyUrl),
    /// The TLS handshake with the next proxy, an `https://` one.
    ProxyTls,
    /// The TLS handshake with the target.
    Target,
}

impl Hop {
    /// The request to `proxy` for `next`, with the lookup of `next` a `socks5://` proxy is
    /// to be given an address of, and how a failure of an `https://` proxy's TLS is told.
    pub(crate) fn new(
        proxy: ProxyUrl,
        next: HostPort,
        lookup: Option<Lookup>,
        explain: Option<Explainer>,
    ) -> Hop {
        Hop {
            proxy,
            next,
            lookup,
            resolved: None,
            explain,
            step: 0,
        }
    }

    /// Bytes that came after the proxy's reply in the same read: the next phase's only if it
    /// is a STARTTLS dialogue, whose server speaks first. A TLS server (the target's, or an
    /// `https://` proxy's) and a proxy wait for us, so before our ClientHello or request
    /// they can only be the proxy's own data: an error that says so.
    pub(crate) fn check_after_reply(&self, p: &Preamble, after: &[u8], then: Then) -> Result<()> {
        let before = match then {
            Then::StartTls => return Ok(()),
            Then::Proxy(next) => format!("before our request to proxy {next}"),
            Then::ProxyTls => format!(
                "before the TLS handshake with the next proxy, {}, began",
                self.next
            ),
            Then::Target => format!("before the TLS handshake with {} began", self.next),
        };
        let reply = match p.reply.first() {
            Some(status) => format!(" ('{}')", quote(status.as_bytes())),
            None => String::new(),
        };
        // A plain-text server behind a transparent proxy looks the same: say so if the
        // bytes look like a known protocol's greeting.
        let greeting = match then {
            Then::Target => starttls::recognise(after).and_then(|(_, proto)| proto),
            _ => None,
        };
        let hint = match greeting {
            Some(proto) => format!(
                "; if that is the server's greeting, it speaks plain {0}: use --starttls {0}",
                proto.name()
            ),
            None => String::new(),
        };
        Err(p.fail(format!(
            "sent {} bytes of data after its reply{reply}, {before}: '{}'{hint}",
            after.len(),
            quote(after)
        )))
    }

    fn http(&self, p: &mut Preamble) -> Result<Progress> {
        let Some(line) = p.line()? else {
            return Ok(Progress::More);
        };
        if p.reply.is_empty() {
            if status_code(&line).is_none() {
                return Err(p.fail(format!(
                    "answered '{}', which is not an HTTP response",
                    quote(line.as_bytes())
                )));
            }
            p.reply.push(line);
            return Ok(Progress::Next);
        }
        if !line.is_empty() {
            return Ok(Progress::Next); // a header
        }
        let status_line = p.reply[0].clone();
        let code = status_code(&status_line).unwrap_or_default();
        // Any 2xx to CONNECT means the tunnel is open (RFC 9110 §9.3.6).
        if (200..300).contains(&code) {
            return Ok(Progress::Go);
        }
        let hint = match (code, self.proxy.user.is_some()) {
            (407, false) => {
                " (it wants credentials: give them in the URL, http://USER:PASS@HOST:PORT)"
            }
            (407, true) => " (it refused the user name and password given in the URL)",
            _ => "",
        };
        let next = self.next.to_string();
        Err(p.fail(format!(
            "refused to connect to {next}: '{}'{hint}",
            quote(status_line.as_bytes())
        )))
    }

    fn socks4a(&self, p: &mut Preamble) -> Result<Progress> {
        let Some(reply) = p.take(8) else {
            return Ok(Progress::More);
        };
        match (reply[0], reply[1]) {
            (0, 0x5a) => Ok(Progress::Go),
            (0, code) => {
                let why = match code {
                    0x5b => "request rejected or failed",
                    0x5c => "the proxy could not reach our identd",
                    0x5d => "identd did not confirm the user",
                    _ => "unknown reply code",
                };
                Err(p.fail(format!("refused: {why} (code 0x{code:02x})")))
            }
            _ => Err(p.fail("answered something that is not a SOCKS4 reply")),
        }
    }

    fn socks5(&mut self, p: &mut Preamble) -> Result<Progress> {
        let creds = self
            .proxy
            .user
            .clone()
            .map(|u| (u, self.proxy.pass.clone()));
        let next = self.next.clone();
        match self.step {
            0 => {
                let Some(reply) = p.take(2) else {
                    return Ok(Progress::More);
                };
                match (reply[0], reply[1], creds) {
                    (5, 0, _) => self.socks5_address(p),
                    (5, 2, Some((user, pass))) => {
                        let pass = pass.unwrap_or_default();
                        if user.len() > 255 || pass.len() > 255 {
                            return Err(
                                p.fail("the user name and password must be 255 bytes or less")
                            );
                        }
                        let mut auth = vec![1, user.len() as u8];
                        auth.extend_from_slice(user.as_bytes());
                        auth.push(pass.len() as u8);
                        auth.extend_from_slice(pass.as_bytes());
                        p.send_bytes(&auth, "SOCKS5 username/password (hidden)");
                        self.step = 1;
                        Ok(Progress::Next)
                    }
                    (5, 2, None) | (5, 0xff, None) => Err(p.fail(
                        "it requires a user name and password: give them in the URL, \
                         socks5://USER:PASS@HOST:PORT",
                    )),
                    (5, _, _) => Err(p.fail(
                        "refused every authentication method we offered (none, username/password)",
                    )),
                    _ => Err(p.fail("answered something that is not a SOCKS5 reply")),
                }
            }
            1 => {
                let Some(reply) = p.take(2) else {
                    return Ok(Progress::More);
                };
                if reply[1] != 0 {
                    return Err(p.fail("rejected the user name and password"));
                }
                self.socks5_address(p)
            }
            3 => self.socks5_address(p),
            _ => {
                // VER REP RSV ATYP, then the bound address and port. A failure is told by its
                // code alone: the address that follows may be missing or of an unknown type, and
                // waiting for it would wait for bytes that never come.
                let head = match p.inbox.get(..2) {
                    Some(h) => [h[0], h[1]],
                    None => return Ok(Progress::More),
                };
                if head[0] != 5 {
                    return Err(p.fail("answered something that is not a SOCKS5 reply"));
                }
                if head[1] != 0 {
                    let _ = p.take(2);
                    return Err(p.fail(format!(
                        "could not connect to {next}: {} (reply {})",
                        socks5_failure(head[1]),
                        head[1]
                    )));
                }
                let Some(&atyp) = p.inbox.get(3) else {
                    return Ok(Progress::More);
                };
                let addr_len = match atyp {
                    1 => 4,
                    3 => match p.inbox.get(4) {
                        Some(&len) => 1 + len as usize,
                        None => return Ok(Progress::More),
                    },
                    4 => 16,
                    _ => {
                        let head = p.take(4).unwrap_or_default();
                        return Err(p.fail(format!(
                            "answered with an unknown address type ({}) in its reply '{}'",
                            atyp,
                            hex(&head)
                        )));
                    }
                };
                if p.take(4 + addr_len + 2).is_none() {
                    return Ok(Progress::More);
                }
                Ok(Progress::Go)
            }
        }
    }

    /// Step 3: the request goes once the next hop's address is known — at once for a name the
    /// proxy resolves or an address, else when the lookup the route started has its answer (the
    /// loop is woken then, and this step taken again).
    fn socks5_address(&mut self, p: &mut Preamble) -> Result<Progress> {
        self.step = 3;
        if let Some(lookup) = &mut self.lookup {
            let Some(answer) = lookup.poll() else {
                return Ok(Progress::More);
            };
            self.lookup = None;
            let addrs =
                answer.map_err(|e| e.context(format!("{}: proxy {}", p.peer, self.proxy)))?;
            self.resolved = addrs.first().copied();
        }
        self.socks5_request(p)
    }

    fn socks5_request(&mut self, p: &mut Preamble) -> Result<Progress> {
        let (scheme, next, resolved) = (self.proxy.scheme, &self.next, self.resolved);
        let mut req = vec![5, 1, 0];
        let literal: Option<IpAddr> = next.host.parse().ok();
        let ip = match scheme {
            Scheme::Socks5 => literal.or(resolved.map(|a| a.ip())),
            _ => literal,
        };
        match ip {
            Some(IpAddr::V4(ip)) => {
                req.push(1);
                req.extend_from_slice(&ip.octets());
            }
            Some(IpAddr::V6(ip)) => {
                req.push(4);
                req.extend_from_slice(&ip.octets());
            }
            None if next.host.len() <= 255 => {
                req.push(3);
                req.push(next.host.len() as u8);
                req.extend_from_slice(next.host.as_bytes());
            }
            None => return Err(p.fail("the host name is longer than SOCKS5 allows (255)")),
        }
        req.extend_from_slice(&next.port.to_be_bytes());
        let shown = match ip {
            Some(ip) => format!("SOCKS5 CONNECT {ip} port {}", next.port),
            None => format!("SOCKS5 CONNECT {next}"),
        };
        p.send_bytes(&req, &shown);
        self.step = 2;
        Ok(Progress::Next)
    }
}

impl Dialogue for Hop {
    fn what(&self) -> String {
        format!("proxy {}", self.proxy)
    }

    fn tag(&self) -> String {
        self.what()
    }

    /// The proxy did not connect us: exit 3.
    fn class(&self) -> Class {
        Class::Network
    }

    /// The greeting or request that opens the hop.
    fn start(&mut self, p: &mut Preamble) {
        let (scheme, next) = (self.proxy.scheme, self.next.clone());
        let creds = self
            .proxy
            .user
            .clone()
            .map(|u| (u, self.proxy.pass.clone()));
        match scheme {
            Scheme::Http | Scheme::Https => {
                let target = next.to_string();
                let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
                let mut shown = request.clone();
                if let Some((user, pass)) = creds {
                    let token =
                        BASE64_STANDARD.encode(format!("{user}:{}", pass.unwrap_or_default()));
                    request += &format!("Proxy-Authorization: Basic {token}\r\n");
                    shown += "Proxy-Authorization: Basic (hidden)\r\n";
                }
                request += "\r\n";
                p.send_bytes(request.as_bytes(), shown.trim_end());
            }
            Scheme::Socks4a => {
                let mut req = vec![4, 1];
                req.extend_from_slice(&next.port.to_be_bytes());
                let user = creds.map(|(u, _)| u).unwrap_or_default();
                match next.host.parse::<std::net::Ipv4Addr>() {
                    Ok(ip) => {
                        req.extend_from_slice(&ip.octets());
                        req.extend_from_slice(user.as_bytes());
                        req.push(0);
                    }
                    Err(_) => {
                        // 0.0.0.1: "the name follows" (SOCKS4a).
                        req.extend_from_slice(&[0, 0, 0, 1]);
                        req.extend_from_slice(user.as_bytes());
                        req.push(0);
                        req.extend_from_slice(next.host.as_bytes());
                        req.push(0);
                    }
                }
                p.send_bytes(&req, &format!("SOCKS4a CONNECT {next}"));
            }
            Scheme::Socks5 | Scheme::Socks5h => {
                let methods: &[u8] = if creds.is_some() { &[0, 2] } else { &[0] };
                let mut greeting = vec![5, methods.len() as u8];
                greeting.extend_from_slice(methods);
                p.send_bytes(&greeting, "SOCKS5 greeting");
            }
        }
    }

    fn step(&mut self, p: &mut Preamble) -> Result<Progress> {
        match self.proxy.scheme {
            Scheme::Http | Scheme::Https => self.http(p),
            Scheme::Socks4a => self.socks4a(p),
            Scheme::Socks5 | Scheme::Socks5h => self.socks5(p),
        }
    }

    /// What follows a proxy's reply is the next hop's or the server's.
    fn early(&self) -> Option<&'static str> {
        None
    }

    fn tls_failed(&self, e: &rustls::Error) -> Option<anyhow::Error> {
        let explain = self.explain.as_ref()?;
        Some(explain.error(e, &format!("proxy {}", self.proxy), false))
    }
}

/// The status code of an HTTP status line, `HTTP/1.1 200 Connection established`: three
/// digits (a `2xx` is no status).
fn status_code(line: &str) -> Option<u16> {
    let mut words = line.split(' ');
    let version = words.next()?;
    let code = words.next()?;
    let digits = code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit());
    (version.starts_with("HTTP/") && digits)
        .then(|| code.parse().ok())
        .flatten()
        .filter(|c| (100..600).contains(c))
}

/// What a SOCKS5 reply code other than 0 means (RFC 1928 §6).
fn socks5_failure(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "connection not allowed by its rules",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply code",
    }
}

/// Bytes as hex pairs, for a message about a binary reply.
fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse("socks5h://al%40ice:p%3Ass@proxy.example:1081").unwrap();
        assert_eq!(u.scheme, Scheme::Socks5h);
        assert_eq!(u.addr.to_string(), "proxy.example:1081");
        assert_eq!(u.user.as_deref(), Some("al@ice"));
        assert_eq!(u.pass.as_deref(), Some("p:ss"));
        assert_eq!(u.to_string(), "socks5h://proxy.example:1081");
        assert_eq!(
            parse("proxy:3128").unwrap().to_string(),
            "http://proxy:3128"
        );
        assert_eq!(
            parse("https://[::1]/").unwrap().to_string(),
            "https://[::1]:443"
        );
        assert_eq!(parse("http://p").unwrap().addr.port, 1080);
        for bad in [
            "ftp://p:1",
            "http://u:secret@p:0",
            "http://p:x",
            "http://p/path",
            "http://",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn credentials_never_show() {
        for url in [
            "alice:s3cr://et@proxy:3128",
            "http://alice:s3cr://et@p:1",
            "u:p@h",
        ] {
            let shown = redact(url);
            assert!(!shown.contains("s3cr") && !shown.contains("u:p"), "{shown}");
            let e = parse(&format!("ftp{url}")).err().unwrap_or_default();
            assert!(!e.contains("s3cr"), "{e}");
        }
    }

    #[test]
    fn no_proxy_lists() {
        assert!(bypass("*", "anything"));
        assert!(bypass("example.com", "www.example.com"));
        assert!(bypass(".example.com", "example.com"));
        assert!(!bypass("example.com", "badexample.com"));
        assert!(bypass("localhost, 10.0.0.0/8", "10.1.2.3"));
        assert!(!bypass("10.0.0.0/8", "11.1.2.3"));
        assert!(bypass("::1", "[::1]"));
        assert!(bypass("fd00::/8", "fd12::1"));
        assert!(!bypass("", "example.com"));
    }

    #[test]
    fn environment_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let got = from_env(env(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:1"),
        ]));
        assert_eq!(got.unwrap().unwrap().to_string(), "http://lower:1");
        let got = from_env(env(&[
            ("http_proxy", "http://ignored:1"),
            ("ALL_PROXY", "socks5h://all:1"),
        ]));
        assert_eq!(got.unwrap().unwrap().to_string(), "socks5h://all:1");
        assert_eq!(no_proxy(Some("a"), env(&[("no_proxy", "b")])), "a");
        assert_eq!(
            no_proxy(None, env(&[("NO_PROXY", "c"), ("no_proxy", "b")])),
            "b"
        );
    }
}
