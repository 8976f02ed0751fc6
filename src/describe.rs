//! What `-v` says about a session and the certificates in it: protocol, suite, key exchange,
//! and for each certificate its subject, names, issuer, validity and fingerprint, with every
//! string the peer controls escaped.

use base64::prelude::{Engine, BASE64_STANDARD};
use rustls::pki_types::CertificateDer;
use x509_parser::der_parser::oid::Oid;
use x509_parser::extensions::GeneralName;
use x509_parser::objects::{oid2sn, oid_registry};
use x509_parser::oid_registry::{OID_SIG_ED25519, OID_SIG_ED448};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

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
    /// DNS names and IP addresses, for messages about name mismatches.
    pub names: Vec<String>,
    /// Every subjectAltName, with its kind as openssl writes it: `DNS:x`, `IP:y`, `email:z`,
    /// `URI:u`.
    pub sans: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub fingerprint: String,
    /// The public key: `EC P-256`, `RSA 2048`, `Ed25519`.
    pub key: String,
    /// The algorithm the issuer signed with, by its OpenSSL short name.
    pub signature: String,
    /// The SHA-256 of the SubjectPublicKeyInfo, base64 (curl's pin without `sha256//`).
    pub spki_sha256: String,
}

impl CertInfo {
    /// Parse a DER certificate; `None` if it cannot be parsed.
    pub(crate) fn parse(der: &CertificateDer<'_>) -> Option<CertInfo> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let mut names = Vec::new();
        let mut sans = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => {
                        names.push(escape(n));
                        sans.push(format!("DNS:{}", escape(n)));
                    }
                    GeneralName::IPAddress(ip) => {
                        names.push(ip_text(ip));
                        sans.push(format!("IP:{}", ip_text(ip)));
                    }
                    GeneralName::RFC822Name(n) => sans.push(format!("email:{}", escape(n))),
                    GeneralName::URI(n) => sans.push(format!("URI:{}", escape(n))),
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
            sans,
            key: key_text(cert.public_key()),
            signature: oid_name(&cert.signature_algorithm.algorithm),
            spki_sha256: BASE64_STANDARD.encode(sha256(cert.public_key().raw)),
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

/// A public key's type and size, as people name them.
fn key_text(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_SIG_ED25519 {
        return "Ed25519".to_string();
    }
    if *alg == OID_SIG_ED448 {
        return "Ed448".to_string();
    }
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let modulus = rsa.modulus;
            let start = modulus
                .iter()
                .position(|&b| b != 0)
                .unwrap_or(modulus.len());
            let bits = match modulus.get(start) {
                Some(&first) => (modulus.len() - start) * 8 - first.leading_zeros() as usize,
                None => 0,
            };
            format!("RSA {bits}")
        }
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| match oid_name(&oid).as_str() {
                    "prime256v1" => "P-256".to_string(),
                    "secp384r1" => "P-384".to_string(),
                    "secp521r1" => "P-521".to_string(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| "(unnamed curve)".to_string());
            format!("EC {curve}")
        }
        _ => oid_name(alg),
    }
}

/// An OID by its OpenSSL short name, or dotted when it has none.
fn oid_name(oid: &Oid<'_>) -> String {
    oid2sn(oid, oid_registry())
        .map(str::to_string)
        .unwrap_or_else(|_| oid.to_id_string())
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

/// What was negotiated, as far as the handshake got; the ALPN protocol escaped.
#[derive(Clone, Debug, Default)]
pub(crate) struct Params {
    /// "TLSv1.3".
    pub version: Option<String>,
    /// The IANA name: "TLS13_AES_256_GCM_SHA384".
    pub suite: Option<String>,
    /// The key-exchange group: "X25519MLKEM768".
    pub group: Option<String>,
    pub alpn: Option<String>,
}

impl Params {
    pub(crate) fn of(conn: &rustls::CommonState) -> Params {
        Params {
            version: conn
                .protocol_version()
                .and_then(|v| v.as_str())
                .map(|v| v.replace("TLSv1_", "TLSv1.")),
            suite: conn
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .map(str::to_string),
            group: conn
                .negotiated_key_exchange_group()
                .and_then(|g| g.name().as_str())
                .map(str::to_string),
            alpn: conn
                .alpn_protocol()
                .map(|p| escape(&String::from_utf8_lossy(p))),
        }
    }
}

/// What `-e`/`-c` children learn of their connection, in the environment (as socat and
/// stunnel give it), in the forms `inspect --json` uses; the peer's are absent without a
/// peer certificate.
pub(crate) fn child_env(conn: &rustls::Connection) -> Vec<(&'static str, String)> {
    let p = Params::of(conn);
    let mut env = Vec::new();
    env.extend(p.version.map(|v| ("STLS_TLS_VERSION", v)));
    env.extend(p.suite.map(|v| ("STLS_TLS_CIPHER", v)));
    env.extend(p.alpn.map(|v| ("STLS_ALPN", v)));
    if let rustls::Connection::Server(server) = conn {
        env.extend(server.server_name().map(|n| ("STLS_SNI", escape(n))));
    }
    let leaf = conn.peer_certificates().and_then(|c| c.first());
    if let Some(der) = leaf {
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) {
            let cn = cert.subject().iter_common_name().next();
            env.extend(
                cn.and_then(|cn| cn.as_str().ok())
                    .map(|cn| ("STLS_PEER_CN", escape(cn))),
            );
        }
        if let Some(info) = CertInfo::parse(der) {
            env.push(("STLS_PEER_SANS", info.sans.join(",")));
            env.push(("STLS_PEER_SHA256", info.fingerprint));
        }
    }
    env
}

/// After the handshake, under `-v`: protocol, suite, key exchange, ALPN and the peer's
/// certificate (every certificate of the chain with `-vv`).
pub(crate) fn session(conn: &rustls::CommonState, peer_label: &str, prefix: &str) {
    if level() < 1 {
        return;
    }
    let Params {
        version,
        suite,
        group,
        alpn,
    } = Params::of(conn);
    let or_unknown = |v: Option<String>, what: &str| v.unwrap_or_else(|| format!("unknown {what}"));
    let (version, suite, group) = (
        or_unknown(version, "version"),
        or_unknown(suite, "suite"),
        or_unknown(group, "group"),
    );
    let alpn = alpn.map(|p| format!(", ALPN {p}")).unwrap_or_default();
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
