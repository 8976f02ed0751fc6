//! What `-v` says about a session and the certificates in it: protocol, suite, key exchange,
//! and for each certificate its subject, names, issuer, validity and fingerprint, with every
//! string the peer controls escaped.

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use crate::fingerprint::{fingerprint_text, sha256};
use crate::report::{escape, level, verbose};

/// A UNIX time as `2025-01-31 23:59:59 UTC`.
pub(crate) fn date(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{secs} seconds after 1970"),
    }
}

/// What a person wants to know about a certificate.
#[derive(Debug, Default)]
pub(crate) struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub names: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub fingerprint: String,
}

impl CertInfo {
    /// Parse a DER certificate; `None` if it cannot be parsed.
    pub(crate) fn parse(der: &CertificateDer<'_>) -> Option<CertInfo> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => names.push(escape(n)),
                    GeneralName::IPAddress(ip) => names.push(ip_text(ip)),
                    _ => {}
                }
            }
        }
        let validity = cert.validity();
        Some(CertInfo {
            subject: escape(&cert.subject().to_string()),
            issuer: escape(&cert.issuer().to_string()),
            names,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            fingerprint: fingerprint_text(&sha256(der.as_ref())),
        })
    }

    /// The subject for messages: "(empty subject)" rather than nothing.
    pub(crate) fn subject_or_placeholder(&self) -> &str {
        if self.subject.is_empty() {
            "(empty subject)"
        } else {
            &self.subject
        }
    }

    /// Several indented lines for `-v`.
    pub(crate) fn describe(&self, label: &str) -> String {
        let names = if self.names.is_empty() {
            "(none)".to_string()
        } else {
            self.names.join(", ")
        };
        format!(
            "{label}: {}\n  names:  {names}\n  issuer: {}\n  valid:  {} to {}\n  sha256: {}",
            self.subject_or_placeholder(),
            self.issuer,
            date(self.not_before),
            date(self.not_after),
            self.fingerprint
        )
    }
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => {
            let octets: [u8; 4] = bytes.try_into().unwrap_or_default();
            std::net::Ipv4Addr::from(octets).to_string()
        }
        16 => {
            let octets: [u8; 16] = bytes.try_into().unwrap_or_default();
            std::net::Ipv6Addr::from(octets).to_string()
        }
        _ => format!("(bad IP address of {} bytes)", bytes.len()),
    }
}

/// After the handshake, under `-v`: protocol, suite, key exchange, ALPN and the peer's
/// certificate (every certificate of the chain with `-vv`).
pub(crate) fn session(conn: &rustls::CommonState, peer_label: &str, prefix: &str) {
    if level() < 1 {
        return;
    }
    let version = conn
        .protocol_version()
        .and_then(|v| v.as_str())
        .unwrap_or("unknown version")
        .replace("TLSv1_", "TLSv1.");
    let suite = conn
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .unwrap_or("unknown suite");
    let group = conn
        .negotiated_key_exchange_group()
        .and_then(|g| g.name().as_str())
        .unwrap_or("unknown group");
    let alpn = conn
        .alpn_protocol()
        .map(|p| format!(", ALPN {}", escape(&String::from_utf8_lossy(p))))
        .unwrap_or_default();
    verbose(format_args!(
        "{prefix}{version}, {suite}, key exchange {group}{alpn}"
    ));
    match conn.peer_certificates() {
        Some(chain) if !chain.is_empty() => {
            let shown = if level() >= 2 { chain.len() } else { 1 };
            for (i, der) in chain.iter().take(shown).enumerate() {
                let label = if i == 0 {
                    format!("{peer_label} certificate")
                } else {
                    format!("chain certificate {i}")
                };
                match CertInfo::parse(der) {
                    Some(info) => verbose(format_args!("{prefix}{}", info.describe(&label))),
                    None => verbose(format_args!("{prefix}{label}: (could not be parsed)")),
                }
            }
        }
        _ => verbose(format_args!(
            "{prefix}{peer_label} presented no certificate"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(date(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }
}
