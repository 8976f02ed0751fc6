//! `--allow-cn` and `--allow-san`: which verified client certificates the listener admits.

use rustls::pki_types::CertificateDer;

use super::explain::NotAllowed;
use crate::describe::{alt_names, common_names, sole_common_name, AltName};
use crate::report::{escape, escape_item};

/// `--allow-cn` and `--allow-san`: which verified client certificates are admitted (any
/// match admits; both empty: all). Both compare the certificate's own values, unescaped.
#[derive(Clone, Debug, Default)]
pub(crate) struct Allow {
    /// Common names, compared exactly with the subject's one CN.
    pub cn: Vec<String>,
    pub san: Vec<AllowSan>,
}

/// One `--allow-san` value: `TYPE:value` with TYPE one of `dns`, `ip`, `email`, `uri` (in
/// any case, as openssl writes them too: `DNS:`, `IP:`), which matches a subjectAltName of
/// that type only; or a bare value, which matches one of any type. DNS names, email
/// addresses and URIs compare ignoring ASCII case; IP addresses compare as addresses
/// (`ip:::1` is `ip:0:0:0:0:0:0:0:1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowSan {
    Dns(String),
    Ip(std::net::IpAddr),
    Email(String),
    Uri(String),
    /// Any type: the text, and the address it is if it is one.
    Any(String, Option<std::net::IpAddr>),
}

impl AllowSan {
    /// Parse what was typed after `--allow-san`; the error is the message for the user.
    pub fn parse(text: &str) -> Result<AllowSan, String> {
        let typed = text.split_once(':').and_then(|(kind, value)| {
            let kind = kind.to_ascii_lowercase();
            ["dns", "ip", "email", "uri"]
                .contains(&kind.as_str())
                .then_some((kind, value))
        });
        let Some((kind, value)) = typed else {
            if text.is_empty() {
                return Err("--allow-san '': no name given".to_string());
            }
            return Ok(AllowSan::Any(text.to_string(), text.parse().ok()));
        };
        if value.is_empty() {
            return Err(format!(
                "--allow-san '{}': no name after '{kind}:'",
                escape(text)
            ));
        }
        Ok(match kind.as_str() {
            "dns" => AllowSan::Dns(value.to_string()),
            "email" => AllowSan::Email(value.to_string()),
            "uri" => AllowSan::Uri(value.to_string()),
            _ => AllowSan::Ip(value.parse().map_err(|_| {
                format!(
                    "--allow-san '{}': '{}' is not an IP address",
                    escape(text),
                    escape(value)
                )
            })?),
        })
    }

    /// Whether the subjectAltName `name` is this one.
    pub(crate) fn matches(&self, name: &AltName) -> bool {
        let same_ip = |want: &std::net::IpAddr, have: &[u8]| match want {
            std::net::IpAddr::V4(v4) => v4.octets() == have,
            std::net::IpAddr::V6(v6) => v6.octets() == have,
        };
        match (self, name) {
            (AllowSan::Dns(a), AltName::Dns(b))
            | (AllowSan::Email(a), AltName::Email(b))
            | (AllowSan::Uri(a), AltName::Uri(b)) => a.eq_ignore_ascii_case(b),
            (AllowSan::Ip(a), AltName::Ip(b)) => same_ip(a, b),
            (AllowSan::Any(_, Some(a)), AltName::Ip(b)) => same_ip(a, b),
            (AllowSan::Any(a, _), AltName::Dns(b) | AltName::Email(b) | AltName::Uri(b)) => {
                a.eq_ignore_ascii_case(b)
            }
            _ => false,
        }
    }
}

/// As it would be typed: parsing it gives the same value back.
impl std::fmt::Display for AllowSan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AllowSan::Dns(v) => write!(f, "dns:{v}"),
            AllowSan::Ip(ip) => write!(f, "ip:{ip}"),
            AllowSan::Email(v) => write!(f, "email:{v}"),
            AllowSan::Uri(v) => write!(f, "uri:{v}"),
            AllowSan::Any(v, _) => f.write_str(v),
        }
    }
}

impl Allow {
    pub(super) fn admits(&self, cert: &CertificateDer<'_>) -> Result<(), NotAllowed> {
        if self.cn.is_empty() && self.san.is_empty() {
            return Ok(());
        }
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
            return Err(NotAllowed {
                cn: String::new(),
                sans: String::new(),
                several: false,
            });
        };
        let cns = common_names(parsed.subject());
        let alt = alt_names(&parsed);
        let refused = |several| NotAllowed {
            cn: cns
                .iter()
                .map(|cn| match cn {
                    Some(cn) => escape_item(cn),
                    None => "(not a string)".to_string(),
                })
                .collect::<Vec<_>>()
                .join(", "),
            sans: alt.iter().map(AltName::text).collect::<Vec<_>>().join(", "),
            several,
        };
        // Which of several CNs is the client is anyone's guess: the one a script is told
        // (STLS_PEER_CN) must be the one admitted, so there must be exactly one.
        if !self.cn.is_empty() && cns.len() > 1 {
            return Err(refused(true));
        }
        let cn_ok = sole_common_name(parsed.subject()).is_some_and(|cn| self.cn.contains(&cn));
        let san_ok = alt.iter().any(|n| self.san.iter().any(|a| a.matches(n)));
        if cn_ok || san_ok {
            return Ok(());
        }
        Err(refused(false))
    }
}
