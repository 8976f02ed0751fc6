//! A tunnel's backends (`listen --to`): which one a client's SNI routes it to ([`Routes`]),
//! where it is — a TCP service, or a Unix socket — and how each admitted client's connection
//! to it is made: every address in turn, with the PROXY protocol header that tells it who the
//! client is first.

use std::net::{IpAddr, SocketAddr};

use anyhow::Result;

use crate::describe;
use crate::net::{self, Dialer};
use crate::stream::{Endpoint, Peer, Stream};
use crate::unix::UnixPath;

/// The backends of `listen --to`: by the name the client asked for (SNI), and for the rest.
#[derive(Clone, Debug)]
pub(crate) struct Routes {
    /// `--to NAME=…`, in the order given: an exact name (lower case, A-labels), or
    /// `*.SUFFIX`, which matches one label more than SUFFIX.
    pub named: Vec<(String, Backend)>,
    /// `--to HOST:PORT`: a client whose name has no route of its own, if any.
    pub default: Option<Backend>,
}

/// Which route a client took, for messages.
pub(crate) enum Chosen<'a> {
    /// The route for this name (`--to NAME=…`).
    Named(&'a str),
    /// The default route.
    Default,
}

impl std::fmt::Display for Chosen<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Chosen::Named(name) => write!(f, "the route for {name}"),
            Chosen::Default => write!(f, "the default route"),
        }
    }
}

impl Routes {
    /// The backend for a client that asked for `sni`: the route of that exact name, else
    /// of the first wildcard that matches, else the default; `None` if there is none.
    pub(crate) fn pick(&self, sni: Option<&str>) -> Option<(&Backend, Chosen<'_>)> {
        if let Some(sni) = sni.map(|n| n.trim_end_matches('.').to_ascii_lowercase()) {
            let exact = self.named.iter().find(|(name, _)| *name == sni);
            let wild = || {
                self.named
                    .iter()
                    .find(|(name, _)| wildcard_matches(name, &sni))
            };
            if let Some((name, backend)) = exact.or_else(wild) {
                return Some((backend, Chosen::Named(name)));
            }
        }
        self.default.as_ref().map(|b| (b, Chosen::Default))
    }
}

/// Whether `pattern`, `*.SUFFIX`, matches `name`: one label (not empty, no dot) before
/// `.SUFFIX`, as in a certificate.
fn wildcard_matches(pattern: &str, name: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix("*.") else {
        return false;
    };
    match name.strip_suffix(suffix).and_then(|n| n.strip_suffix('.')) {
        Some(label) => !label.is_empty() && !label.contains('.'),
        None => false,
    }
}

/// A tunnel's backend (`listen --to`).
#[derive(Clone, Debug)]
pub(crate) struct Backend {
    pub place: Place,
    /// `--proxy-protocol`: the version of the header that tells the backend who the client is.
    pub proxy_protocol: Option<u8>,
}

/// Where a backend is.
#[derive(Clone, Debug)]
pub(crate) enum Place {
    /// A TCP service: its addresses, tried in turn, and HOST:PORT as given, for messages.
    Tcp {
        addrs: Vec<SocketAddr>,
        name: String,
    },
    /// A Unix socket.
    Unix(UnixPath),
}

/// A connection to a backend, being made.
pub(crate) struct Dialed {
    pub sock: Stream,
    /// What goes first: the PROXY header, if any.
    pub header: Vec<u8>,
    /// The addresses still to try (TCP).
    pub dialer: Option<Dialer>,
}

impl Backend {
    /// How messages name it.
    pub(crate) fn name(&self) -> String {
        match &self.place {
            Place::Tcp { name, .. } => name.clone(),
            Place::Unix(path) => path.to_string(),
        }
    }

    /// Start connecting, without blocking, for `client`, which reached us at `ours` (asked
    /// only for a PROXY header) over `tls` (what a v2 header's TLVs say of it; none for a
    /// passed-through connection).
    pub(crate) fn dial(
        &self,
        client: Option<&Peer>,
        ours: impl FnOnce() -> Option<Endpoint>,
        tls: Option<&rustls::Connection>,
    ) -> Result<Dialed> {
        let (sock, dialer) = match &self.place {
            Place::Tcp { addrs, name } => {
                let mut dialer =
                    Dialer::new(name.clone(), &net::host_of(name), addrs.clone(), None);
                (Stream::Tcp(dialer.open()?), Some(dialer))
            }
            Place::Unix(path) => (Stream::Unix(path.connect()?), None),
        };
        // Our own address is asked of the socket only for a header that names it.
        let header = match (self.proxy_protocol, client) {
            (Some(v), Some(from)) => match ours() {
                Some(to) => {
                    let tlvs = tls.map(tls_tlvs).unwrap_or_default();
                    proxy_header(v, &from.endpoint(), &to, &tlvs)
                }
                None => Vec::new(),
            },
            _ => Vec::new(),
        };
        Ok(Dialed {
            sock,
            header,
            dialer,
        })
    }
}

/// The PROXY protocol's signature, which starts a v2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A PROXY protocol header (haproxy's spec) for a connection from `from` to `to`: TCP over
/// IPv4 or IPv6, or a Unix socket (v1 has no form for it: UNKNOWN); v2 carries `tlvs` too.
pub(crate) fn proxy_header(version: u8, from: &Endpoint, to: &Endpoint, tlvs: &[u8]) -> Vec<u8> {
    match (from, to) {
        (Endpoint::Ip(from), Endpoint::Ip(to)) => ip_header(version, *from, *to, tlvs),
        (from, to) if version == 2 => unix_header(from, to, tlvs),
        _ => b"PROXY UNKNOWN\r\n".to_vec(),
    }
}

/// The TLVs a v2 header carries about the TLS session, as haproxy's `send-proxy-v2-ssl`
/// sends them: the ALPN protocol, the name the client asked for (SNI), and the SSL TLV — the
/// client flags, whether its certificate was verified, the version, the cipher suite (IANA
/// name) and the certificate's common name.
fn tls_tlvs(tls: &rustls::Connection) -> Vec<u8> {
    const ALPN: u8 = 0x01;
    const AUTHORITY: u8 = 0x02;
    const SSL: u8 = 0x20;
    const SSL_VERSION: u8 = 0x21;
    const SSL_CN: u8 = 0x22;
    const SSL_CIPHER: u8 = 0x23;
    // Client flags: TLS; a certificate on this connection, and in this session.
    const CLIENT_SSL: u8 = 0x01;
    const CLIENT_CERT: u8 = 0x02 | 0x04;
    let mut out = Vec::new();
    if let Some(alpn) = tls.alpn_protocol() {
        tlv(&mut out, ALPN, alpn);
    }
    if let rustls::Connection::Server(server) = tls {
        if let Some(name) = server.server_name() {
            tlv(&mut out, AUTHORITY, name.as_bytes());
        }
    }
    let params = describe::Params::of(tls);
    let cert = tls.peer_certificates().and_then(|c| c.first());
    // A certificate the client presented was verified, or the handshake would have failed.
    let (client, verify) = match cert {
        Some(_) => (CLIENT_SSL | CLIENT_CERT, 0u32),
        None => (CLIENT_SSL, 1),
    };
    let mut ssl = vec![client];
    ssl.extend_from_slice(&verify.to_be_bytes());
    if let Some(version) = &params.version {
        tlv(&mut ssl, SSL_VERSION, version.as_bytes());
    }
    if let Some(suite) = &params.suite {
        tlv(
            &mut ssl,
            SSL_CIPHER,
            suite.replace("TLS13_", "TLS_").as_bytes(),
        );
    }
    let cn = cert.and_then(|der| {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        describe::sole_common_name(cert.subject())
    });
    if let Some(cn) = cn {
        tlv(&mut ssl, SSL_CN, cn.as_bytes());
    }
    tlv(&mut out, SSL, &ssl);
    out
}

/// One TLV: its type, length and value (a value longer than 1 KiB, which only a client
/// certificate's name could be, is left out).
fn tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    if value.len() > 1024 {
        return;
    }
    out.push(kind);
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

fn ip_header(version: u8, from: SocketAddr, to: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    // A dual-stack socket's IPv4 address reads as ::ffff:a.b.c.d: unmapped, so that an IPv4
    // client's header is TCP4.
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (from, to) = match (canonical(from), canonical(to)) {
        // Mixed families: both as IPv6.
        (SocketAddr::V4(f), to @ SocketAddr::V6(_)) => (
            SocketAddr::new(f.ip().to_ipv6_mapped().into(), f.port()),
            to,
        ),
        (from @ SocketAddr::V6(_), SocketAddr::V4(t)) => (
            from,
            SocketAddr::new(t.ip().to_ipv6_mapped().into(), t.port()),
        ),
        pair => pair,
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
    let mut addrs = Vec::new();
    let family = match (from.ip(), to.ip()) {
        (IpAddr::V4(f), IpAddr::V4(t)) => {
            addrs.extend_from_slice(&f.octets());
            addrs.extend_from_slice(&t.octets());
            0x11 // TCP over IPv4
        }
        (f, t) => {
            let six = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            addrs.extend_from_slice(&six(f).octets());
            addrs.extend_from_slice(&six(t).octets());
            0x21 // TCP over IPv6
        }
    };
    addrs.extend_from_slice(&from.port().to_be_bytes());
    addrs.extend_from_slice(&to.port().to_be_bytes());
    addrs.extend_from_slice(tlvs);
    v2_header(family, &addrs)
}

/// v2's AF_UNIX form: each side's `sun_path`, 108 bytes, NUL-padded (an unnamed socket's
/// all NUL).
fn unix_header(from: &Endpoint, to: &Endpoint, tlvs: &[u8]) -> Vec<u8> {
    const SUN_PATH: usize = 108;
    let path = |e: &Endpoint| {
        let mut bytes = match e {
            Endpoint::Unix(Some(path)) => path.sun_path(),
            _ => Vec::new(),
        };
        bytes.resize(SUN_PATH, 0);
        bytes
    };
    v2_header(0x31, &[path(from), path(to), tlvs.to_vec()].concat()) // stream over AF_UNIX
}

fn v2_header(family: u8, addrs: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(0x21); // version 2, PROXY
    h.push(family);
    // At most 216 bytes of addresses and four TLVs of at most 1 KiB each: the length fits.
    h.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    h.extend_from_slice(addrs);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_pick_exact_before_wildcard_then_default() {
        let to = |name: &str| Backend {
            place: Place::Tcp {
                addrs: Vec::new(),
                name: name.to_string(),
            },
            proxy_protocol: None,
        };
        let mut routes = Routes {
            named: vec![
                ("*.example.com".to_string(), to("wild")),
                ("a.example.com".to_string(), to("a")),
            ],
            default: None,
        };
        let picked = |r: &Routes, sni: Option<&str>| r.pick(sni).map(|(b, _)| b.name());
        assert_eq!(picked(&routes, Some("A.Example.com")).as_deref(), Some("a"));
        assert_eq!(
            picked(&routes, Some("b.example.com")).as_deref(),
            Some("wild")
        );
        assert_eq!(picked(&routes, Some("x.b.example.com")), None);
        assert_eq!(picked(&routes, Some("example.com")), None);
        assert_eq!(picked(&routes, None), None);
        routes.default = Some(to("default"));
        assert_eq!(picked(&routes, None).as_deref(), Some("default"));
        assert_eq!(
            picked(&routes, Some("other.org")).as_deref(),
            Some("default")
        );
    }

    #[test]
    fn ip_headers() {
        let from = Endpoint::Ip("192.0.2.1:5000".parse().unwrap());
        let to = Endpoint::Ip("[::ffff:192.0.2.9]:443".parse().unwrap());
        assert_eq!(
            proxy_header(1, &from, &to, &[]),
            b"PROXY TCP4 192.0.2.1 192.0.2.9 5000 443\r\n"
        );
        let v2 = proxy_header(2, &from, &to, &[]);
        assert_eq!(&v2[..12], V2_SIGNATURE);
        assert_eq!(v2[12..16], [0x21, 0x11, 0, 12]);
        assert_eq!(v2[16..20], [192, 0, 2, 1]);
        let six = Endpoint::Ip("[2001:db8::1]:5000".parse().unwrap());
        assert_eq!(
            proxy_header(1, &six, &to, &[]),
            b"PROXY TCP6 2001:db8::1 ::ffff:192.0.2.9 5000 443\r\n"
        );
    }

    #[test]
    fn unix_headers() {
        let from = Endpoint::Unix(None);
        let to = Endpoint::Unix(Some(UnixPath::File("/run/s.sock".into())));
        assert_eq!(proxy_header(1, &from, &to, &[]), b"PROXY UNKNOWN\r\n");
        let v2 = proxy_header(2, &from, &to, &[]);
        assert_eq!(v2[12..16], [0x21, 0x31, 0, 216]);
        assert_eq!(v2.len(), 16 + 216);
        assert!(v2[16..16 + 108].iter().all(|&b| b == 0));
        assert_eq!(&v2[124..135], b"/run/s.sock");
        assert!(v2[135..].iter().all(|&b| b == 0));
    }
}
