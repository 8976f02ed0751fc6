//! `listen`'s certificates, chosen by the name the client asks for (SNI): the one whose names
//! match it, an exact name before a wildcard, else the first; with `--strict-sni`, a client
//! whose name matches none, or that gives none, is refused with the alert
//! `unrecognized_name` (RFC 6066).
//!
//! rustls answers a resolver that finds nothing with `access_denied`, so the refusal is
//! recorded here (on the thread whose handshake asked) and `tls_socket` sends our alert in its
//! place.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::report;

/// The alert `unrecognized_name` (112), fatal, as a plaintext record: sent before any key
/// is agreed, so it needs no encryption.
pub(crate) const UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// One certificate served, with the names it is for.
pub(crate) struct Served {
    /// Where it came from (`--cert`'s file), for messages.
    pub file: String,
    pub key: Arc<CertifiedKey>,
    /// DNS names in lower case, without a trailing dot; `*.` ones are wildcards.
    names: Vec<String>,
}

impl Served {
    pub(crate) fn new(file: String, key: Arc<CertifiedKey>) -> Served {
        let names = key
            .cert
            .first()
            .map(|c| names(c.as_ref()))
            .unwrap_or_default();
        Served { file, key, names }
    }
}

/// Every certificate `listen` serves, in the order given.
pub(crate) struct Certificates {
    served: Vec<Served>,
    /// `--strict-sni`.
    strict: bool,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field(
                "files",
                &self.served.iter().map(|s| &s.file).collect::<Vec<_>>(),
            )
            .field("strict", &self.strict)
            .finish()
    }
}

/// Why a client was refused (`--strict-sni`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// It sent no name.
    NoName,
    /// It asked for this name, which no certificate is for.
    Unknown(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoName => f.write_str(
                "sent no server name (SNI): refused, as --strict-sni asks (alert \
                 unrecognized_name)",
            ),
            Refusal::Unknown(name) => write!(
                f,
                "asked for the name '{}', which no certificate served is for: refused, as \
                 --strict-sni asks (alert unrecognized_name)",
                report::escape(name)
            ),
        }
    }
}

thread_local! {
    /// The refusal of the handshake this thread is processing, until `tls_socket` takes it.
    static REFUSED: RefCell<Option<Refusal>> = const { RefCell::new(None) };
}

/// The refusal the resolver made on this thread, if any (once).
pub(crate) fn take_refusal() -> Option<Refusal> {
    REFUSED.with(|r| r.borrow_mut().take())
}

impl Certificates {
    /// `served` holds at least one certificate.
    pub(crate) fn new(served: Vec<Served>, strict: bool) -> Certificates {
        Certificates { served, strict }
    }

    /// The certificate for `name`: an exact match first, then a wildcard one.
    fn find(&self, name: &str) -> Option<&Served> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.served
            .iter()
            .find(|s| s.names.contains(&name))
            .or_else(|| {
                self.served
                    .iter()
                    .find(|s| s.names.iter().any(|n| wildcard_matches(n, &name)))
            })
    }

    /// What to serve to a client that asked for `name` (None: none), or why it is refused.
    fn choose(&self, name: Option<&str>) -> Result<&Served, Refusal> {
        let found = name.and_then(|n| self.find(n));
        match (found, name, self.strict) {
            (Some(s), _, _) => Ok(s),
            (None, None, true) => Err(Refusal::NoName),
            (None, Some(n), true) => Err(Refusal::Unknown(n.to_string())),
            (None, _, false) => self.served.first().ok_or(Refusal::NoName),
        }
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name();
        match self.choose(name) {
            Ok(served) => {
                if self.served.len() > 1 {
                    report::verbose(format_args!(
                        "a client asked for {}: serving the certificate of {}",
                        match name {
                            Some(n) => format!("'{}'", report::escape(n)),
                            None => "no name".to_string(),
                        },
                        served.file
                    ));
                }
                Some(served.key.clone())
            }
            Err(refusal) => {
                REFUSED.with(|r| *r.borrow_mut() = Some(refusal));
                None
            }
        }
    }
}

/// Whether `pattern` (`*.example.com`) covers `name`: the star stands for exactly one label.
fn wildcard_matches(pattern: &str, name: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix("*.") else {
        return false;
    };
    match name.split_once('.') {
        Some((label, rest)) => !label.is_empty() && rest == suffix,
        None => false,
    }
}

/// The DNS names a certificate is for: its DNS subjectAltNames, or its common names when it
/// has none (as clients did before SANs).
fn names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let clean = |n: &str| n.trim_end_matches('.').to_ascii_lowercase();
    let sans: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::DNSName(n) => Some(clean(n)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if !sans.is_empty() {
        return sans;
    }
    cert.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(clean)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_is_one_label() {
        assert!(wildcard_matches("*.example.com", "a.example.com"));
        assert!(!wildcard_matches("*.example.com", "a.b.example.com"));
        assert!(!wildcard_matches("*.example.com", "example.com"));
        assert!(!wildcard_matches("*.example.com", ".example.com"));
        assert!(!wildcard_matches("a.example.com", "a.example.com"));
    }

    fn served(file: &str, names: &[&str]) -> Served {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let key = crate::identity::ephemeral(&provider).expect("a certificate");
        Served {
            file: file.to_string(),
            key,
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn exact_before_wildcard_then_the_first() {
        let certs = Certificates::new(
            vec![
                served("first", &["first.example"]),
                served("wild", &["*.example.com"]),
                served("exact", &["www.example.com"]),
            ],
            false,
        );
        let file = |n: Option<&str>| certs.choose(n).map(|s| s.file.clone());
        assert_eq!(file(Some("WWW.example.com.")), Ok("exact".into()));
        assert_eq!(file(Some("mail.example.com")), Ok("wild".into()));
        assert_eq!(file(Some("other.example")), Ok("first".into()));
        assert_eq!(file(None), Ok("first".into()));
        let strict = Certificates::new(vec![served("first", &["first.example"])], true);
        assert_eq!(strict.choose(None).err(), Some(Refusal::NoName));
        assert_eq!(
            strict.choose(Some("x.example")).err(),
            Some(Refusal::Unknown("x.example".into()))
        );
    }

    #[test]
    fn names_of_the_ephemeral_certificate() {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let key = crate::identity::ephemeral(&provider).expect("a certificate");
        let s = Served::new("e".into(), key);
        assert!(s.names.contains(&"localhost".to_string()), "{:?}", s.names);
    }
}
