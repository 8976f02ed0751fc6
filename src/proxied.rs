//! `listen --accept-proxy`: the PROXY protocol header (haproxy's spec, v1 text or v2 binary)
//! a load balancer sends before its client's bytes. [`parse_proxy_header`] reads one, within
//! bounds, from what has arrived; [`AcceptProxy`] is the dialogue that waits for it before
//! the ClientHello (played by `preamble`, as a stage of `route`). What it says of the client
//! replaces the socket's address everywhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::Result;

use crate::error::Class;
use crate::preamble::{Dialogue, Preamble, Progress};

/// The longest v1 header, with its CR LF (the spec's bound).
pub(crate) const V1_MAX: usize = 107;
/// The most bytes a v2 header may carry after its 16 first: the addresses (at most 216, a
/// Unix socket's) and TLVs. The spec allows 64 KiB; balancers send a few hundred.
pub(crate) const V2_BODY_MAX: usize = 2048;

/// The signature that starts a v2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// What a PROXY header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The balancer relays a client at `from`, which reached it at `to`.
    Relayed { from: SocketAddr, to: SocketAddr },
    /// v2 `LOCAL`: the balancer's own connection (a health check); the socket's addresses
    /// stand.
    Local,
    /// v1 `UNKNOWN`, or v2 with a family that has no IP address (Unix, unspecified): the
    /// socket's addresses stand.
    Unknown,
}

/// Read a PROXY header from the start of `bytes`: `Ok(None)` while it may still come whole,
/// `Ok(Some((length, header)))` once it has, or why `bytes` cannot start with one.
pub fn parse_proxy_header(bytes: &[u8]) -> Result<Option<(usize, ProxyHeader)>, String> {
    let v1 = b"PROXY ";
    let short = bytes.len().min(V2_SIGNATURE.len());
    if bytes.is_empty() {
        return Ok(None);
    }
    if bytes[..short] == V2_SIGNATURE[..short] {
        return if bytes.len() < 16 {
            Ok(None)
        } else {
            v2(bytes)
        };
    }
    let short = bytes.len().min(v1.len());
    if bytes[..short] == v1[..short] {
        return if bytes.len() < v1.len() {
            Ok(None)
        } else {
            line(bytes)
        };
    }
    Err(
        "the connection did not start with one: the load balancer in front must send it \
         (haproxy: send-proxy or send-proxy-v2), or drop --accept-proxy"
            .to_string(),
    )
}

/// v1: `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n`, or `PROXY UNKNOWN …\r\n`.
fn line(bytes: &[u8]) -> Result<Option<(usize, ProxyHeader)>, String> {
    let within = &bytes[..bytes.len().min(V1_MAX)];
    let Some(end) = within.windows(2).position(|w| w == b"\r\n") else {
        if bytes.len() >= V1_MAX {
            return Err(format!("a v1 header longer than {V1_MAX} bytes"));
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(&bytes[..end]).map_err(|_| "a v1 header that is not text")?;
    let fields: Vec<&str> = text.split(' ').collect();
    let header = match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => ProxyHeader::Unknown,
        ["PROXY", family @ ("TCP4" | "TCP6"), from, to, sport, dport] => {
            let ip = |s: &str| -> Result<IpAddr, String> {
                let parsed = match *family {
                    "TCP4" => s.parse::<Ipv4Addr>().map(IpAddr::V4).ok(),
                    _ => s.parse::<Ipv6Addr>().map(IpAddr::V6).ok(),
                };
                parsed.ok_or_else(|| format!("a v1 header with a bad {family} address"))
            };
            let port = |s: &str| -> Result<u16, String> {
                match s.bytes().all(|b| b.is_ascii_digit()) {
                    true => s
                        .parse()
                        .map_err(|_| "a v1 header with a bad port".to_string()),
                    false => Err("a v1 header with a bad port".to_string()),
                }
            };
            ProxyHeader::Relayed {
                from: SocketAddr::new(ip(from)?, port(sport)?),
                to: SocketAddr::new(ip(to)?, port(dport)?),
            }
        }
        _ => return Err("a malformed v1 header".to_string()),
    };
    Ok(Some((end + 2, header)))
}

/// v2: the signature, version and command, family, length, then addresses and TLVs.
fn v2(bytes: &[u8]) -> Result<Option<(usize, ProxyHeader)>, String> {
    let (ver_cmd, family) = (bytes[12], bytes[13]);
    let len = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    if ver_cmd >> 4 != 2 {
        return Err(format!("a v2 header of version {}", ver_cmd >> 4));
    }
    if len > V2_BODY_MAX {
        return Err(format!(
            "a v2 header of {len} bytes after its first 16, more than the {V2_BODY_MAX} accepted"
        ));
    }
    let Some(body) = bytes.get(16..16 + len) else {
        return Ok(None);
    };
    let header = match ver_cmd & 0x0f {
        0 => ProxyHeader::Local,
        1 => match family >> 4 {
            1 | 2 => {
                let (ip_len, v4) = if family >> 4 == 1 {
                    (4, true)
                } else {
                    (16, false)
                };
                let Some(addrs) = body.get(..2 * ip_len + 4) else {
                    return Err("a v2 header too short for its addresses".to_string());
                };
                let ip = |at: usize| -> IpAddr {
                    let raw = &addrs[at..at + ip_len];
                    match v4 {
                        true => IpAddr::from(<[u8; 4]>::try_from(raw).unwrap_or_default()),
                        false => IpAddr::from(<[u8; 16]>::try_from(raw).unwrap_or_default()),
                    }
                };
                let port = |at: usize| u16::from_be_bytes([addrs[at], addrs[at + 1]]);
                ProxyHeader::Relayed {
                    from: SocketAddr::new(ip(0), port(2 * ip_len)),
                    to: SocketAddr::new(ip(ip_len), port(2 * ip_len + 2)),
                }
            }
            0 | 3 => ProxyHeader::Unknown,
            _ => return Err(format!("a v2 header of unknown family {family:#04x}")),
        },
        cmd => return Err(format!("a v2 header with unknown command {cmd}")),
    };
    Ok(Some((16 + len, header)))
}

/// The dialogue of `--accept-proxy`: nothing said, a header heard; what follows it is the
/// ClientHello, handed on.
pub(crate) struct AcceptProxy {
    pub(crate) heard: Option<ProxyHeader>,
}

impl Dialogue for AcceptProxy {
    fn what(&self) -> String {
        "PROXY protocol header (--accept-proxy)".to_string()
    }

    fn tag(&self) -> String {
        "proxy-in".to_string()
    }

    fn class(&self) -> Class {
        Class::Handshake
    }

    fn start(&mut self, _p: &mut Preamble) {}

    fn step(&mut self, p: &mut Preamble) -> Result<Progress> {
        match parse_proxy_header(&p.inbox) {
            Ok(None) => Ok(Progress::More),
            Ok(Some((n, header))) => {
                p.take(n);
                self.heard = Some(header);
                Ok(Progress::Go)
            }
            Err(why) => Err(p.fail(why)),
        }
    }

    fn early(&self) -> Option<&'static str> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relayed(from: &str, to: &str) -> ProxyHeader {
        ProxyHeader::Relayed {
            from: from.parse().unwrap(),
            to: to.parse().unwrap(),
        }
    }

    #[test]
    fn v1() {
        let h = b"PROXY TCP4 192.0.2.1 192.0.2.9 5000 443\r\n\x16\x03\x01";
        assert_eq!(
            parse_proxy_header(h),
            Ok(Some((
                h.len() - 3,
                relayed("192.0.2.1:5000", "192.0.2.9:443")
            )))
        );
        let h = b"PROXY TCP6 2001:db8::1 ::1 5000 443\r\n";
        assert_eq!(
            parse_proxy_header(h),
            Ok(Some((h.len(), relayed("[2001:db8::1]:5000", "[::1]:443"))))
        );
        assert_eq!(
            parse_proxy_header(b"PROXY UNKNOWN\r\n"),
            Ok(Some((15, ProxyHeader::Unknown)))
        );
        // Every prefix waits for more.
        for n in 0..h.len() - 1 {
            assert_eq!(parse_proxy_header(&h[..n]), Ok(None), "{n}");
        }
        for bad in [
            &b"PROXY TCP4 192.0.2.1 192.0.2.9 5000 +443\r\n"[..],
            b"PROXY TCP4 2001:db8::1 192.0.2.9 5000 443\r\n",
            b"PROXY TCP4 192.0.2.1 192.0.2.9 5000 70000\r\n",
            b"PROXY TCP4 192.0.2.1\r\n",
            b"\x16\x03\x01\x02\x00",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert!(parse_proxy_header(bad).is_err());
        }
        // No CR LF within the bound.
        let long = [&b"PROXY "[..], &[b'1'; 200]].concat();
        assert!(parse_proxy_header(&long).is_err());
        assert_eq!(parse_proxy_header(&long[..100]), Ok(None));
    }

    #[test]
    fn v2() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12 + 7, 192, 0, 2, 1, 192, 0, 2, 9]);
        h.extend_from_slice(&5000u16.to_be_bytes());
        h.extend_from_slice(&443u16.to_be_bytes());
        h.extend_from_slice(&[0x04, 0, 4, 1, 2, 3, 4]); // a TLV (NOOP)
        assert_eq!(
            parse_proxy_header(&h),
            Ok(Some((h.len(), relayed("192.0.2.1:5000", "192.0.2.9:443"))))
        );
        for n in 0..h.len() {
            assert_eq!(parse_proxy_header(&h[..n]), Ok(None), "{n}");
        }
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0, 0, 0]);
        assert_eq!(
            parse_proxy_header(&local),
            Ok(Some((16, ProxyHeader::Local)))
        );
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(parse_proxy_header(&big).is_err());
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x21, 0, 12]);
        short.extend_from_slice(&[0; 12]);
        assert!(parse_proxy_header(&short).is_err());
        let mut unix = V2_SIGNATURE.to_vec();
        unix.extend_from_slice(&[0x21, 0x31, 0, 216]);
        unix.extend_from_slice(&[0; 216]);
        assert_eq!(
            parse_proxy_header(&unix),
            Ok(Some((232, ProxyHeader::Unknown)))
        );
    }
}
