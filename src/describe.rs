//! What `-v` says about a session and the certificates in it: protocol, suite, key exchange,
//! and for each certificate its subject, names, issuer, validity and fingerprint, with every
//! string the peer controls escaped.

use base64::prelude::{Engine, BASE64_STANDARD};
use rustls::pki_types::CertificateDer;
use x509_parser::der_parser::asn1_rs::{Any, Tag, ToDer};
use x509_parser::der_parser::oid::Oid;
use x509_parser::extensions::GeneralName;
use x509_parser::objects::{oid2abbrev, oid2sn, oid_registry};
use x509_parser::oid_registry::{OID_SIG_ED25519, OID_SIG_ED448};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::{AttributeTypeAndValue, SubjectPublicKeyInfo, X509Name};

use crate::fingerprint::{fingerprint_text, sha256};
use crate::report::{
    escape, escape_env, escape_item, is_invisible, json, level, verbose, ClientCert, Summary,
};

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
    /// `URI:u`; a comma in a value is escaped (`\,`), so the list can be joined by commas.
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
        let alt = alt_names(&cert);
        let names = alt
            .iter()
            .filter(|n| matches!(n, AltName::Dns(_) | AltName::Ip(_)))
            .map(AltName::value_text)
            .collect();
        let sans = alt.iter().map(AltName::text).collect();
        let validity = cert.validity();
        Some(CertInfo {
            subject: dn_text(cert.subject()),
            issuer: dn_text(cert.issuer()),
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

/// A subjectAltName as the certificate holds it, unescaped: what `--allow-san` compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AltName {
    Dns(String),
    /// 4 or 16 bytes (anything else is shown as a bad address and matches nothing).
    Ip(Vec<u8>),
    Email(String),
    Uri(String),
}

impl AltName {
    /// The kind as openssl writes it.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            AltName::Dns(_) => "DNS",
            AltName::Ip(_) => "IP",
            AltName::Email(_) => "email",
            AltName::Uri(_) => "URI",
        }
    }

    /// The value for people: escaped, commas included, so that one value cannot read as
    /// several in a comma-separated list.
    pub(crate) fn value_text(&self) -> String {
        match self {
            AltName::Dns(v) | AltName::Email(v) | AltName::Uri(v) => escape_item(v),
            AltName::Ip(ip) => ip_text(ip),
        }
    }

    /// `KIND:value`.
    pub(crate) fn text(&self) -> String {
        format!("{}:{}", self.kind(), self.value_text())
    }

    /// `KIND:value` for a child's environment (see [`escape_env`]).
    fn env_text(&self) -> String {
        let value = match self {
            AltName::Dns(v) | AltName::Email(v) | AltName::Uri(v) => escape_env(v, &[',']),
            AltName::Ip(ip) => ip_text(ip),
        };
        format!("{}:{value}", self.kind())
    }
}

/// The subjectAltNames of the kinds people name (DNS, IP, email, URI), in order; none when
/// the extension cannot be parsed.
pub(crate) fn alt_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<AltName> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(n) => Some(AltName::Dns(n.to_string())),
            GeneralName::IPAddress(ip) => Some(AltName::Ip(ip.to_vec())),
            GeneralName::RFC822Name(n) => Some(AltName::Email(n.to_string())),
            GeneralName::URI(n) => Some(AltName::Uri(n.to_string())),
            _ => None,
        })
        .collect()
}

/// The subject's common names as the certificate holds them, unescaped, in order; `None`
/// for one whose value is not a string.
pub(crate) fn common_names(name: &X509Name<'_>) -> Vec<Option<String>> {
    name.iter_common_name()
        .map(|cn| attr_text(cn.attr_value()))
        .collect()
}

/// The subject's common name when it has exactly one that is a string: the one identity
/// `--allow-cn` admits and `STLS_PEER_CN` names. With several, which one counts is a matter
/// of opinion (the first, the last, any), so none does.
pub(crate) fn sole_common_name(name: &X509Name<'_>) -> Option<String> {
    match common_names(name).as_slice() {
        [Some(cn)] => Some(cn.clone()),
        _ => None,
    }
}

/// A distinguished name as RFC 4514 text, as `openssl x509 -nameopt RFC2253` prints it:
/// the last RDN first, RDNs separated by `,`, the attributes of one by `+`. In values the
/// characters RFC 4514 reserves are escaped by a backslash (`\,` `\+` `\"` `\\` `\<` `\>`
/// `\;`, a leading `#` or space, a trailing space), so `CN=evil\, O=Bank` is one attribute;
/// control and invisible characters are escaped as everywhere in stls (`\n`, `\u{202e}`); a
/// value that is not a string is `#` and its DER in hex.
pub(crate) fn dn_text(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| rdn.iter().map(attribute_text).collect::<Vec<_>>().join("+"))
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// `TYPE=value` for [`dn_text`].
fn attribute_text(attr: &AttributeTypeAndValue<'_>) -> String {
    let oid = attr.attr_type();
    let kind = match oid2abbrev(oid, oid_registry()) {
        // openssl's name; x509-parser says "Email".
        Ok("Email") => "emailAddress".to_string(),
        Ok(name) => name.to_string(),
        Err(_) => oid.to_id_string(),
    };
    let value = match attr_text(attr.attr_value()) {
        Some(text) => dn_value(&text),
        None => {
            let der = attr.attr_value().to_der_vec().unwrap_or_default();
            let hex: String = der.iter().map(|b| format!("{b:02X}")).collect();
            format!("#{hex}")
        }
    };
    format!("{kind}={value}")
}

/// One attribute value escaped for RFC 4514 text and for a terminal.
fn dn_value(value: &str) -> String {
    let last = value.chars().count().saturating_sub(1);
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        if c.is_control() || is_invisible(c) {
            out.push_str(&escape(&c.to_string()));
            continue;
        }
        let reserved = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if reserved {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A directory string as text: the string types X.520 allows (T.61 read as Latin-1, as
/// openssl does); `None` for anything else or a malformed one.
fn attr_text(value: &Any<'_>) -> Option<String> {
    let data = value.data;
    match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_string),
        Tag::T61String => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString if data.len() % 2 == 0 => {
            let units = data.chunks(2).map(|p| u16::from_be_bytes([p[0], p[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::UniversalString if data.len() % 4 == 0 => data
            .chunks(4)
            .map(|q| char::from_u32(u32::from_be_bytes([q[0], q[1], q[2], q[3]])))
            .collect(),
        _ => None,
    }
}

/// What `-v` and `inspect` say of the certificate `der` (its lines and its SANs), for the
/// fuzz target; `None` when it cannot be parsed.
pub fn certificate_text(der: &[u8]) -> Option<String> {
    let info = CertInfo::parse(&CertificateDer::from(der))?;
    Some(format!(
        "{}\n  sans:  {}",
        info.describe("certificate"),
        info.sans.join(",")
    ))
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
    let alpn = conn.alpn_protocol().map(String::from_utf8_lossy);
    env.extend(alpn.map(|v| ("STLS_ALPN", escape_env(&v, &[]))));
    if let rustls::Connection::Server(server) = conn {
        env.extend(
            server
                .server_name()
                .map(|n| ("STLS_SNI", escape_env(n, &[]))),
        );
    }
    let leaf = conn.peer_certificates().and_then(|c| c.first());
    if let Some(der) = leaf {
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) {
            // The same one value --allow-cn admits by; unset when there are several.
            env.extend(
                sole_common_name(cert.subject()).map(|cn| ("STLS_PEER_CN", escape_env(&cn, &[]))),
            );
            let sans: Vec<String> = alt_names(&cert).iter().map(AltName::env_text).collect();
            env.push(("STLS_PEER_SANS", sans.join(",")));
            env.push(("STLS_PEER_SHA256", fingerprint_text(&sha256(der.as_ref()))));
        }
    }
    env
}

/// A certificate as `/metrics` names it (its subject's one CN, else its first
/// subjectAltName, escaped), and when it expires; `None` if it cannot be parsed.
pub(crate) fn served(der: &CertificateDer<'_>) -> Option<(String, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let name = sole_common_name(cert.subject())
        .map(|cn| escape(&cn))
        .or_else(|| alt_names(&cert).first().map(AltName::value_text))
        .unwrap_or_default();
    Some((name, cert.validity().not_after.timestamp()))
}

/// What a connection's log lines say of its TLS (`--log-format json`): the parameters, the
/// name the client asked for, and the client's certificate (on our server side).
pub(crate) fn summary(conn: &rustls::Connection, peer: String) -> Summary {
    let p = Params::of(conn);
    let mut summary = Summary {
        peer,
        version: p.version,
        cipher: p.suite,
        alpn: p.alpn,
        ..Summary::default()
    };
    if let rustls::Connection::Server(server) = conn {
        summary.sni = server.server_name().map(escape);
        let leaf = conn.peer_certificates().and_then(|c| c.first());
        if let Some(der) = leaf {
            if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) {
                summary.client = Some(ClientCert {
                    cn: sole_common_name(cert.subject()).map(|cn| escape(&cn)),
                    sans: alt_names(&cert).iter().map(AltName::text).collect(),
                    sha256: fingerprint_text(&sha256(der.as_ref())),
                });
            }
        }
    }
    summary
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
                    // As JSON, one object; as text, each line with its `stls: ` and whose
                    // it is.
                    Some(info) if json() => {
                        verbose(format_args!("{prefix}{}", info.describe(&label)));
                    }
                    Some(info) => {
                        for line in info.describe(&label).lines() {
                            verbose(format_args!("{prefix}{line}"));
                        }
                    }
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
