//! Addresses and sockets: parsing HOST:PORT forms, resolving, connecting within a deadline
//! (every resolved address is tried), and binding a listener (dual-stack by default).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::Result;
use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Socket, Type};

use crate::error::{io_phrase, socket_class, Class};

/// Which address families to use (`-4`, `-6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    Any,
    V4,
    V6,
}

impl Family {
    fn admits(self, addr: &SocketAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => addr.is_ipv4(),
            Family::V6 => addr.is_ipv6(),
        }
    }
}

/// A host (name or address literal, without brackets) and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .map_err(|_| format!("'{text}' is not a port number (0-65535)"))
}

/// Split `HOST:PORT` or `[V6]:PORT`; `None` for the port when there is no port part.
fn split_host_port(text: &str) -> Result<(String, Option<u16>), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{text}': missing ']' after the IPv6 address"))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("'{host}' is not an IPv6 address"));
        }
        return match after {
            "" => Ok((host.to_string(), None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host.to_string(), Some(parse_port(port)?))),
                None => Err(format!("'{text}': expected ':PORT' after ']'")),
            },
        };
    }
    if text.parse::<Ipv6Addr>().is_ok() {
        // A bare IPv6 address: its colons are not a port separator.
        return Ok((text.to_string(), None));
    }
    match text.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => Err(format!(
            "'{text}': write an IPv6 address with a port as [ADDRESS]:PORT"
        )),
        Some((host, port)) => Ok((host.to_string(), Some(parse_port(port)?))),
        None => Ok((text.to_string(), None)),
    }
}

/// The host of `HOST:PORT` as written (a backend's name), for messages.
pub(crate) fn host_of(text: &str) -> String {
    split_host_port(text)
        .map(|(host, _)| host)
        .unwrap_or_default()
}

/// The `connect` target: `HOST:PORT`, `[V6]:PORT`, or `HOST` and `PORT` as two arguments.
pub fn parse_target(target: &str, port: Option<&str>) -> Result<HostPort, String> {
    if let Some(hint) = url_hint(target, port) {
        return Err(hint);
    }
    let (host, inline_port) = split_host_port(target)?;
    if host.is_empty() {
        return Err(format!("'{target}': the host is empty"));
    }
    let port = match (inline_port, port) {
        (Some(p), None) => p,
        (None, Some(p)) => parse_port(p)?,
        (Some(_), Some(_)) => {
            return Err(format!(
                "the port is given twice: in '{target}' and as an argument"
            ))
        }
        (None, None) if host.contains(':') => {
            return Err(format!(
                "'{target}': no port given (for an IPv6 address write [ADDRESS]:PORT)"
            ))
        }
        (None, None) => return Err(format!("'{target}': no port given (use HOST:PORT)")),
    };
    if port == 0 {
        return Err(format!(
            "'{target}': port 0 cannot be connected to (give a port from 1 to 65535)"
        ));
    }
    Ok(HostPort { host, port })
}

/// For a target written as a URL (`https://host/path`), the message that says what to write
/// instead; `None` for anything else.
fn url_hint(target: &str, port: Option<&str>) -> Option<String> {
    let (scheme, rest) = target.split_once("://")?;
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !is_scheme {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "imaps" => 993,
        "pop3s" => 995,
        "smtps" => 465,
        "ldaps" => 636,
        "ftps" => 990,
        "ircs" => 6697,
        _ => 443,
    };
    let example = match split_host_port(authority) {
        Ok((host, inline)) if !host.is_empty() => HostPort {
            host,
            port: port
                .and_then(|p| p.parse().ok())
                .or(inline)
                .unwrap_or(default_port),
        }
        .to_string(),
        _ => format!("example.com:{default_port}"),
    };
    Some(format!(
        "'{}' is a URL; stls wants HOST:PORT (for example {})",
        crate::report::escape(target),
        crate::report::escape(&example)
    ))
}

/// The `listen` address: `PORT`, `ADDR:PORT` or `[V6]:PORT`; `None` host means all interfaces.
pub fn parse_listen(spec: &str) -> Result<(Option<String>, u16), String> {
    if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
        return Ok((None, parse_port(spec)?));
    }
    match split_host_port(spec)? {
        (host, Some(port)) if !host.is_empty() => Ok((Some(host), port)),
        (_, Some(port)) => Ok((None, port)),
        // `80x`: a port with a typo, not a host without one.
        (_, None) if spec.starts_with(|c: char| c.is_ascii_digit()) && !spec.contains('.') => Err(
            format!("'{spec}' is not a port number (0-65535; use [ADDR:]PORT)"),
        ),
        (_, None) => Err(format!("'{spec}': no port given (use [ADDR:]PORT)")),
    }
}

/// Resolve a host to the addresses of the wanted family. This blocks (getaddrinfo): an event
/// loop asks `resolve::Resolver` instead.
pub(crate) fn resolve(hp: &HostPort, family: Family) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (hp.host.as_str(), hp.port)
        .to_socket_addrs()
        .map_err(|e| Class::Network.err(format!("cannot resolve {}: {}", hp.host, io_phrase(&e))))?
        .collect();
    admit(hp, addrs, family)
}

/// The addresses of the wanted family among those `hp` has; an error if there are none.
pub(crate) fn admit(
    hp: &HostPort,
    addrs: Vec<SocketAddr>,
    family: Family,
) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = addrs.into_iter().filter(|a| family.admits(a)).collect();
    if addrs.is_empty() {
        let which = match family {
            Family::V4 => " IPv4",
            Family::V6 => " IPv6",
            Family::Any => "",
        };
        return Err(Class::Network.err(format!("{} has no{which} address", hp.host)));
    }
    Ok(addrs)
}

/// How long `connect` waits for one address to answer when `-w` sets no limit.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The one rule for making a connection: every resolved address in turn, each with its own
/// time — [`CONNECT_TIMEOUT`], or less when the deadline (-w) comes first; the last address
/// has whatever is left of the deadline — and one wording for the failure once none is left.
/// Used blocking ([`connect`]) and on an event loop (a probe, a tunnel's backend, each
/// `connect --from` connection), where the caller wakes at [`Dialer::attempt_deadline`].
pub(crate) struct Dialer {
    /// How messages name the destination: HOST:PORT, or "proxy URL".
    name: String,
    /// The host as given: an address that only repeats it is not shown again.
    host: String,
    addrs: Vec<SocketAddr>,
    /// The next address to try.
    next: usize,
    /// The address being tried.
    current: Option<SocketAddr>,
    deadline: Option<Instant>,
    /// Until when the address being tried may take to answer: the deadline itself when it
    /// was given all that was left of it.
    attempt_until: Option<Instant>,
    /// The most an address is given: [`CONNECT_TIMEOUT`] (shorter in tests).
    per_address: Duration,
    /// Why the last address failed, for when none is left.
    last_err: Option<(SocketAddr, std::io::Error)>,
}

/// Where a connection being made stands after a look at its socket.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Dialing {
    /// The address has not answered yet.
    Pending,
    /// It failed: the socket is now one to the next address, registered as the old was.
    Retried,
    Connected,
}

impl Dialer {
    /// A connection to `addrs` (resolved already), named `name` (for `host`) in messages.
    pub(crate) fn new(
        name: String,
        host: &str,
        addrs: Vec<SocketAddr>,
        deadline: Option<Instant>,
    ) -> Dialer {
        Dialer {
            name,
            host: host.to_string(),
            addrs,
            next: 0,
            current: None,
            deadline,
            attempt_until: None,
            per_address: CONNECT_TIMEOUT,
            last_err: None,
        }
    }

    /// The same, giving each address at most `time` instead of [`CONNECT_TIMEOUT`].
    #[cfg(test)]
    fn per_address(mut self, time: Duration) -> Dialer {
        self.per_address = time;
        self
    }

    /// A connection to `hp`, named as it is written.
    pub(crate) fn to(hp: &HostPort, addrs: Vec<SocketAddr>, deadline: Option<Instant>) -> Dialer {
        Dialer::new(hp.to_string(), &hp.host, addrs, deadline)
    }

    /// The address being tried.
    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        self.current
    }

    /// Until when the address being tried may take to answer; then the next is tried. The
    /// deadline itself for the last address, or when less than an address's time is left.
    pub(crate) fn attempt_deadline(&self) -> Option<Instant> {
        self.current.and(self.attempt_until)
    }

    /// Whether the address being tried has all that is left of the deadline: when its time
    /// is up, the deadline is, and no other address is tried.
    fn has_the_rest(&self) -> bool {
        self.deadline.is_some() && self.attempt_until == self.deadline
    }

    /// Take the next address to try, with the time it has; `None` once none is left, an
    /// error once the deadline has passed.
    fn next_addr(&mut self) -> Result<Option<(SocketAddr, Duration)>> {
        let Some(&addr) = self.addrs.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        self.current = Some(addr);
        let now = Instant::now();
        let last = self.next == self.addrs.len();
        let (until, time) = match self.deadline {
            None => (now + self.per_address, self.per_address),
            Some(d) => match d.checked_duration_since(now) {
                Some(left) if !left.is_zero() && (last || left <= self.per_address) => (d, left),
                Some(left) if !left.is_zero() => (now + self.per_address, self.per_address),
                _ => return Err(Class::Timeout.err(self.timed_out(""))),
            },
        };
        self.attempt_until = Some(until);
        Ok(Some((addr, time)))
    }

    /// The address being tried failed with `e`: the next one is tried, unless it was the
    /// deadline that passed (an error).
    fn failed(&mut self, e: std::io::Error) -> Result<()> {
        let Some(addr) = self.current else {
            return Ok(());
        };
        if e.kind() != std::io::ErrorKind::TimedOut {
            self.last_err = Some((addr, e));
            return Ok(());
        }
        if self.has_the_rest() {
            return Err(Class::Timeout.err(self.timed_out("")));
        }
        let limit = match self.deadline {
            None => " (-w sets the limit)",
            Some(_) => "",
        };
        let why = format!("no answer in {}s{limit}", self.per_address.as_secs());
        self.last_err = Some((addr, std::io::Error::new(e.kind(), why)));
        Ok(())
    }

    /// How messages name the address being tried: HOST:PORT (ADDRESS), without an address
    /// that only repeats the host.
    fn shown(&self, addr: SocketAddr) -> String {
        match self.host == addr.ip().to_string() {
            true => self.name.clone(),
            false => format!("{} ({addr})", self.name),
        }
    }

    /// The deadline passed while the current address (if any) was being tried; `after`
    /// says more.
    pub(crate) fn timed_out(&self, after: &str) -> String {
        let shown = self.current.map_or(self.name.clone(), |a| self.shown(a));
        format!("timed out connecting to {shown}{after}")
    }

    /// Every address failed: why the last one did.
    fn exhausted(&mut self) -> anyhow::Error {
        let Some((addr, e)) = self.last_err.take() else {
            return Class::Network.err(format!("{}: no address to connect to", self.name));
        };
        socket_class(&e).err(format!(
            "cannot connect to {}: {}",
            self.shown(addr),
            io_phrase(&e)
        ))
    }

    /// Start connecting, without blocking, to the next address that takes a connect call;
    /// the error that says why the last failed once none is left.
    pub(crate) fn open(&mut self) -> Result<TcpStream> {
        while let Some((addr, _)) = self.next_addr()? {
            match TcpStream::connect(addr) {
                Ok(sock) => return Ok(sock),
                Err(e) => self.failed(e)?,
            }
        }
        Err(self.exhausted())
    }

    /// Look at `sock`, which [`Dialer::open`] gave: once it failed, or its address had its
    /// time (an [`attempt_deadline`](Dialer::attempt_deadline) short of the deadline), a
    /// socket to the next address replaces it, registered for `token`; the error once none
    /// is left. The deadline itself is the caller's to keep, with its own wording.
    pub(crate) fn advance(
        &mut self,
        sock: &mut TcpStream,
        registry: &mio::Registry,
        token: mio::Token,
    ) -> Result<Dialing> {
        let e = match connected(sock) {
            Ok(false) => match self.attempt_until {
                Some(until) if Instant::now() >= until && !self.has_the_rest() => {
                    std::io::Error::from(std::io::ErrorKind::TimedOut)
                }
                _ => return Ok(Dialing::Pending),
            },
            Ok(true) => {
                let _ = sock.set_nodelay(true);
                return Ok(Dialing::Connected);
            }
            Err(e) => e,
        };
        self.failed(e)?;
        self.reopen(sock, registry, token)?;
        Ok(Dialing::Retried)
    }

    /// The address being tried failed (the caller tells why): a socket to the next address
    /// replaces `sock`, registered for `token`; the error once none is left.
    pub(crate) fn reopen(
        &mut self,
        sock: &mut TcpStream,
        registry: &mio::Registry,
        token: mio::Token,
    ) -> Result<()> {
        let _ = registry.deregister(sock);
        *sock = self.open()?;
        registry.register(
            sock,
            token,
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        )?;
        Ok(())
    }
}

/// Whether a non-blocking connect has completed; an error if it failed.
pub(crate) fn connected(sock: &TcpStream) -> std::io::Result<bool> {
    if let Some(e) = sock.take_error()? {
        return Err(e);
    }
    match sock.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// Connect to the first address that answers, blocking, by the rule of [`Dialer`].
pub(crate) fn connect(mut dialer: Dialer) -> Result<TcpStream> {
    while let Some((addr, time)) = dialer.next_addr()? {
        match std::net::TcpStream::connect_timeout(&addr, time) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                stream.set_nonblocking(true)?;
                return Ok(TcpStream::from_std(stream));
            }
            Err(e) => dialer.failed(e)?,
        }
    }
    Err(dialer.exhausted())
}

/// Bind a listening socket (SO_REUSEPORT: see `bind_one`). No host: all interfaces, IPv6 and
/// IPv4 together unless `-4`/`-6`.
pub(crate) fn bind(host: Option<&str>, port: u16, family: Family) -> Result<TcpListener> {
    let candidates: Vec<(SocketAddr, bool)> = match host {
        None => match family {
            Family::Any => vec![
                ((Ipv6Addr::UNSPECIFIED, port).into(), false),
                ((Ipv4Addr::UNSPECIFIED, port).into(), false),
            ],
            Family::V4 => vec![((Ipv4Addr::UNSPECIFIED, port).into(), false)],
            Family::V6 => vec![((Ipv6Addr::UNSPECIFIED, port).into(), true)],
        },
        Some(h) => resolve(
            &HostPort {
                host: h.to_string(),
                port,
            },
            family,
        )?
        .into_iter()
        .map(|a| (a, matches!(a.ip(), IpAddr::V6(_)) && family == Family::V6))
        .collect(),
    };
    // With no host and no -4/-6, [::] (IPv6 and IPv4 together) is what is meant; 0.0.0.0 is
    // only the fallback for a machine without IPv6, so a failure names [::] unless IPv6 is
    // what failed.
    let dual_stack = host.is_none() && family == Family::Any;
    let mut errors = Vec::new();
    for (addr, v6_only) in candidates {
        match bind_one(addr, v6_only) {
            Ok(l) => return Ok(l),
            Err(e) => errors.push((addr, e)),
        }
    }
    let shown = match errors.first() {
        Some((addr, e)) if dual_stack && !ipv6_unavailable(e) => Some((addr, e)),
        _ => errors.last().map(|(addr, e)| (addr, e)),
    };
    let Some((addr, e)) = shown else {
        return Err(Class::Network.err(format!("no address to listen on for port {port}")));
    };
    let what = if dual_stack && addr.is_ipv6() {
        " (all interfaces, IPv6 and IPv4)"
    } else {
        ""
    };
    if e.kind() == std::io::ErrorKind::PermissionDenied && port < 1024 {
        return Err(Class::Network.err(format!(
            "cannot listen on {addr}{what}: permission denied: a port below 1024 needs root or \
             the CAP_NET_BIND_SERVICE capability; use a port of 1024 or above, such as {}",
            8000 + port
        )));
    }
    Err(Class::Network.err(format!("cannot listen on {addr}{what}: {}", io_phrase(e))))
}

/// Whether a bind failed because this machine has no IPv6.
fn ipv6_unavailable(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

/// Another listening socket on the address `bind(…, true)` returned, for another event loop
/// (SO_REUSEPORT: the kernel spreads new connections among them).
pub(crate) fn bind_again(first: &TcpListener) -> Result<TcpListener> {
    let addr = first.local_addr()?;
    // As the first one: -6 made it IPv6 only.
    let v6_only = addr.is_ipv6() && socket2::SockRef::from(first).only_v6().unwrap_or(true);
    bind_one(addr, v6_only).map_err(|e| {
        Class::Network.err(format!("cannot listen on {addr} again: {}", io_phrase(&e)))
    })
}

fn bind_one(addr: SocketAddr, v6_only: bool) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(v6_only)?;
    }
    socket.set_reuse_address(true)?;
    // Always, not only for our own event loops (`bind_again`): a new stls binds the port
    // while the old one still serves or drains, and the kernel shares new connections
    // between them (only processes of the same user may share a port).
    socket.set_reuse_port(true)?;
    // Linux hands it on to every connection accepted: no setsockopt per client.
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host.into(),
            port,
        }
    }

    /// The listener's TCP_NODELAY reaches the connections it accepts, which are not set one
    /// by one.
    #[test]
    fn accepted_connections_have_no_delay() {
        let listener = bind_one((Ipv4Addr::LOCALHOST, 0).into(), false).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let accepted = loop {
            match listener.accept() {
                Ok((sock, _)) => break sock,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        assert!(accepted.nodelay().unwrap());
    }

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("example.com:443", None),
            Ok(hp("example.com", 443))
        );
        assert_eq!(
            parse_target("example.com", Some("443")),
            Ok(hp("example.com", 443))
        );
        assert_eq!(parse_target("[::1]:8443", None), Ok(hp("::1", 8443)));
        assert_eq!(parse_target("::1", Some("8443")), Ok(hp("::1", 8443)));
        assert_eq!(parse_target("10.0.0.1:1", None), Ok(hp("10.0.0.1", 1)));
        assert!(parse_target("example.com", None).is_err());
        assert!(parse_target("example.com:443", Some("443")).is_err());
        assert!(parse_target("example.com:99999", None).is_err());
        assert!(parse_target("::1:443", None).is_err());
        assert!(parse_target(":443", None).is_err());
        assert!(parse_target("[::1", None).is_err());
        assert!(parse_target("[nope]:1", None).is_err());
        assert!(parse_target("[::1]x", None).is_err());
    }

    #[test]
    fn port_zero_and_urls_are_refused_with_the_reason() {
        let err = parse_target("example.com:0", None).unwrap_err();
        assert!(err.contains("port 0 cannot be connected to"), "{err}");
        assert!(parse_target("example.com", Some("0")).is_err());
        for (url, example) in [
            ("https://example.com", "example.com:443"),
            ("https://user@example.com:8443/x?y", "example.com:8443"),
            ("HTTPS://[::1]/", "[::1]:443"),
            ("imaps://mail.example", "mail.example:993"),
            ("https://", "example.com:443"),
        ] {
            let err = parse_target(url, None).unwrap_err();
            assert_eq!(
                err,
                format!("'{url}' is a URL; stls wants HOST:PORT (for example {example})")
            );
        }
    }

    #[test]
    fn listen_specs() {
        assert_eq!(parse_listen("8443"), Ok((None, 8443)));
        assert_eq!(parse_listen("0"), Ok((None, 0)));
        assert_eq!(
            parse_listen("127.0.0.1:0"),
            Ok((Some("127.0.0.1".into()), 0))
        );
        assert_eq!(parse_listen("[::1]:5"), Ok((Some("::1".into()), 5)));
        assert_eq!(parse_listen(":5"), Ok((None, 5)));
        assert!(parse_listen("localhost").is_err());
        for typo in ["80x", "8o80", "443-"] {
            let e = parse_listen(typo).unwrap_err();
            assert!(e.contains("is not a port number"), "{e}");
        }
        assert!(parse_listen("10.0.0.1")
            .unwrap_err()
            .contains("no port given"));
        assert!(parse_listen("70000").is_err());
        assert!(parse_listen("").is_err());
    }

    /// A port on 127.0.0.1 that refuses: bound, never listened on.
    fn refusing() -> (socket2::Socket, SocketAddr) {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
        sock.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .expect("bind");
        let addr = sock.local_addr().expect("bound").as_socket().expect("inet");
        (sock, addr)
    }

    /// Drive `dialer` on an event loop until it connects or fails.
    fn dial(mut dialer: Dialer) -> Result<(Dialer, TcpStream)> {
        let mut poll = mio::Poll::new()?;
        let mut events = mio::Events::with_capacity(4);
        let token = mio::Token(0);
        let mut sock = dialer.open()?;
        let both = mio::Interest::READABLE | mio::Interest::WRITABLE;
        poll.registry().register(&mut sock, token, both)?;
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if dialer.advance(&mut sock, poll.registry(), token)? == Dialing::Connected {
                return Ok((dialer, sock));
            }
            poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        }
        panic!("no outcome in 10 s");
    }

    #[test]
    fn a_refusing_address_gives_way_to_the_next() {
        let (_closed, refused) = refusing();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let open = listener.local_addr().expect("bound");
        let dialer = Dialer::new(
            "both.example:1".into(),
            "both.example",
            vec![refused, open],
            None,
        );
        let (dialer, sock) = dial(dialer).expect("the second address answers");
        assert_eq!(dialer.addr(), Some(open));
        assert_eq!(sock.peer_addr().ok(), Some(open));
        // The blocking connect keeps the same rule.
        let dialer = Dialer::new(
            "both.example:1".into(),
            "both.example",
            vec![refused, open],
            None,
        );
        let sock = connect(dialer).expect("the second address answers");
        assert_eq!(sock.peer_addr().ok(), Some(open));
    }

    /// A port on 127.0.0.1 that never answers: its listener (backlog 0) has a connection
    /// queued that is never accepted, so the kernel drops every further SYN. The listener
    /// and the queued connection are kept with it.
    fn silent() -> (socket2::Socket, std::net::TcpStream, SocketAddr) {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
        sock.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .expect("bind");
        sock.listen(0).expect("listen");
        let addr = sock.local_addr().expect("bound").as_socket().expect("inet");
        let queued = std::net::TcpStream::connect(addr).expect("the one queued connection");
        let probe = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        assert!(probe.is_err(), "the full listener still answers");
        (sock, queued, addr)
    }

    #[test]
    fn an_address_that_does_not_answer_gives_way_to_the_next_in_its_own_time() {
        let (_listener, _queued, silent) = silent();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let open = listener.local_addr().expect("bound");
        let each = Duration::from_millis(300);
        let dialer = || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let addrs = vec![silent, open];
            Dialer::new(
                "both.example:1".into(),
                "both.example",
                addrs,
                Some(deadline),
            )
            .per_address(each)
        };
        let mut first = dialer();
        let _sock = first.open().expect("a socket to the first address");
        let until = first.attempt_deadline().expect("an address is being tried");
        assert!(
            until <= Instant::now() + each,
            "the first address has its own time"
        );
        let (dialer_after, sock) = dial(dialer()).expect("the second address answers");
        assert_eq!(dialer_after.addr(), Some(open));
        assert_eq!(sock.peer_addr().ok(), Some(open));
        // The blocking connect keeps the same rule.
        let sock = connect(dialer()).expect("the second address answers");
        assert_eq!(sock.peer_addr().ok(), Some(open));
        // The last address has what is left of the deadline, which says it passed.
        let deadline = Instant::now() + Duration::from_millis(500);
        let alone = Dialer::new(
            "both.example:1".into(),
            "both.example",
            vec![silent],
            Some(deadline),
        )
        .per_address(each);
        let err = connect(alone).expect_err("nothing answers");
        assert_eq!(
            format!("{err:#}"),
            format!("timed out connecting to both.example:1 ({silent})")
        );
    }

    #[test]
    fn when_every_address_refuses_the_last_one_is_named() {
        let (_one, first) = refusing();
        let (_two, last) = refusing();
        let name = || "both.example:1".to_string();
        let err = dial(Dialer::new(name(), "both.example", vec![first, last], None))
            .err()
            .expect("nothing answers");
        let want = format!("cannot connect to both.example:1 ({last}): connection refused");
        assert_eq!(format!("{err:#}"), want);
        let err = connect(Dialer::new(name(), "both.example", vec![first, last], None))
            .expect_err("nothing answers");
        assert_eq!(format!("{err:#}"), want);
        // An address given as such is not repeated.
        let hp = HostPort {
            host: "127.0.0.1".into(),
            port: last.port(),
        };
        let err = connect(Dialer::to(&hp, vec![last], None)).expect_err("refused");
        assert_eq!(
            format!("{err:#}"),
            format!("cannot connect to {last}: connection refused")
        );
    }

    #[test]
    fn display_brackets_v6() {
        assert_eq!(hp("::1", 1).to_string(), "[::1]:1");
        assert_eq!(hp("a.b", 1).to_string(), "a.b:1");
    }
}

/// How far the peer's TCP has acknowledged what we wrote on a socket, from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Acks {
    /// Bytes of our stream the peer has acknowledged, since the connection began.
    pub acked: u64,
    /// Bytes written and not acknowledged yet (a FIN sent counts as one).
    pub unacked: u64,
}

impl Acks {
    /// Everything written so far: where our stream ends now.
    pub(crate) fn end(self) -> u64 {
        self.acked + self.unacked
    }
}

/// The kernel's count of what the peer acknowledged on `sock`; None where it cannot say.
///
/// The two counts come from two calls: the acknowledged count is read before and after the
/// unacknowledged one, and the pair is taken only when no ACK came in between, so that
/// [`Acks::end`] is exact.
pub(crate) fn acks(sock: &impl std::os::fd::AsRawFd) -> Option<Acks> {
    let fd = sock.as_raw_fd();
    for _ in 0..16 {
        let before = bytes_acked(fd)?;
        let unacked = unacked(fd)?;
        if bytes_acked(fd)? == before {
            return Some(Acks {
                acked: before,
                unacked,
            });
        }
    }
    None
}

/// What the peer of a Unix socket has read of the `written` bytes we wrote: the kernel counts
/// what it has not read yet (SIOCOUTQ), in the memory it takes, which is more than its bytes:
/// the count of what was read errs low, and is exact once the peer has read everything.
pub(crate) fn unix_acks(sock: &impl std::os::fd::AsRawFd, written: u64) -> Option<Acks> {
    let unacked = unacked(sock.as_raw_fd())?.min(written);
    Some(Acks {
        acked: written - unacked,
        unacked,
    })
}

/// Bytes written to a socket and not acknowledged (TCP) or not read (Unix) yet (SIOCOUTQ).
#[allow(unsafe_code)] // SIOCOUTQ: no safe wrapper in the tree reads it
fn unacked(fd: std::os::fd::RawFd) -> Option<u64> {
    let mut unacked: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ on Linux) writes one int through the pointer, which points
    // to a live c_int; the descriptor is borrowed from a live socket.
    if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut unacked) } != 0 {
        return None;
    }
    u64::try_from(unacked).ok()
}

/// Bytes of our stream the peer acknowledged since the connection began (TCP_INFO).
#[allow(unsafe_code)] // TCP_INFO: no safe wrapper in the tree reads it
fn bytes_acked(fd: std::os::fd::RawFd) -> Option<u64> {
    // SAFETY: tcp_info is a plain C struct for which all-zero bytes are a valid value;
    // getsockopt writes at most `len` bytes into it and updates `len`.
    let (info, len, got) = unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let got = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        (info, len, got)
    };
    // Kernels older than 4.1 fill less of it and have no byte count.
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked) + 8;
    if got != 0 || (len as usize) < needed {
        return None;
    }
    Some(info.tcpi_bytes_acked)
}
