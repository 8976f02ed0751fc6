//! A tunnel's backend (`listen --to`): where it is, and how each admitted client's
//! connection to it is made — every address in turn, with the PROXY protocol header that
//! tells it who the client is first.

use std::net::{IpAddr, SocketAddr};

use anyhow::Result;
use mio::net::TcpStream;

use crate::net::{self, Dialer};

/// A tunnel's backend (`listen --to`).
#[derive(Clone, Debug)]
pub(crate) struct Backend {
    /// Its addresses, tried in turn.
    pub addrs: Vec<SocketAddr>,
    /// How messages name it: HOST:PORT as given.
    pub name: String,
    /// `--proxy-protocol`: the version of the header that tells the backend who the client is.
    pub proxy_protocol: Option<u8>,
}

/// A connection to a backend, being made.
pub(crate) struct Dialed {
    pub sock: TcpStream,
    /// What goes first: the PROXY header, if any.
    pub header: Vec<u8>,
    /// The addresses still to try.
    pub dialer: Dialer,
}

impl Backend {
    /// Start connecting, without blocking, for a client at `client` that reached us at
    /// `ours`.
    pub(crate) fn dial(
        &self,
        client: Option<SocketAddr>,
        ours: Option<SocketAddr>,
    ) -> Result<Dialed> {
        let host = net::host_of(&self.name);
        let mut dialer = Dialer::new(self.name.clone(), &host, self.addrs.clone(), None);
        let sock = dialer.open()?;
        // A dual-stack socket's IPv4 address reads as ::ffff:a.b.c.d: unmapped, so that an
        // IPv4 client's header is TCP4.
        let ours = ours.map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()));
        let header = match (self.proxy_protocol, client, ours) {
            (Some(v), Some(from), Some(to)) => proxy_header(v, from, to),
            _ => Vec::new(),
        };
        Ok(Dialed {
            sock,
            header,
            dialer,
        })
    }
}

/// A PROXY protocol header (haproxy's spec) for a TCP connection from `from` to `to`.
pub(crate) fn proxy_header(version: u8, from: SocketAddr, to: SocketAddr) -> Vec<u8> {
    let (from, to) = match (from, to) {
        // Mixed families: both as IPv6.
        (SocketAddr::V4(f), SocketAddr::V6(_)) => (
            SocketAddr::new(f.ip().to_ipv6_mapped().into(), f.port()),
            to,
        ),
        (SocketAddr::V6(_), SocketAddr::V4(t)) => (
            from,
            SocketAddr::new(t.ip().to_ipv6_mapped().into(), t.port()),
        ),
        _ => (from, to),
    };
    if version == 1 {
        let family = if from.is_ipv4() { "TCP4" } else { "TCP6" };
        return format!(
            "PROXY {family} {} {} {} {}\r\n",
            from.ip(),
            to.ip(),
            from.port(),
            to.port()
        )
        .into_bytes();
    }
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    let mut addrs = Vec::new();
    match (from.ip(), to.ip()) {
        (IpAddr::V4(f), IpAddr::V4(t)) => {
            h.push(0x11); // TCP over IPv4
            addrs.extend_from_slice(&f.octets());
            addrs.extend_from_slice(&t.octets());
        }
        (f, t) => {
            let six = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            h.push(0x21); // TCP over IPv6
            addrs.extend_from_slice(&six(f).octets());
            addrs.extend_from_slice(&six(t).octets());
        }
    }
    addrs.extend_from_slice(&from.port().to_be_bytes());
    addrs.extend_from_slice(&to.port().to_be_bytes());
    h.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    h.extend_from_slice(&addrs);
    h
}
