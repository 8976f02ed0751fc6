//! Building rustls configurations: the crypto provider (cipher suites), protocol versions,
//! ALPN, key logging, resumption, and the client and server configs from trust and identity.
//!
//! The provider is aws-lc-rs with its defaults: TLS 1.3 and 1.2 AEAD suites only, and the
//! post-quantum hybrid X25519MLKEM768 first in the key-exchange preference.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{
    NoServerSessionStorage, ProducesTickets, ResolvesServerCert, WebPkiClientVerifier,
};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, KeyLog, RootCertStore, ServerConfig, SupportedProtocolVersion};

use crate::error::{io_phrase, Class};
use crate::report;
use crate::trust::{Allow, ClientVerifier, Crls, Presented, ServerVerifier};

/// TLS settings both sides share, resolved from the flags.
#[derive(Clone)]
pub(crate) struct Protocol {
    pub provider: Arc<CryptoProvider>,
    pub versions: Vec<&'static SupportedProtocolVersion>,
    pub alpn: Vec<Vec<u8>>,
    pub key_log: Option<Arc<dyn KeyLog>>,
    pub resume: bool,
    /// `--ciphers` was given: its order is the server's preference, as written.
    pub ciphers_given: bool,
}

/// The versions from `min` to `max` (`--tls-min`, `--tls-max`), newest first.
pub(crate) fn versions(
    min: &'static SupportedProtocolVersion,
    max: &'static SupportedProtocolVersion,
) -> Result<Vec<&'static SupportedProtocolVersion>> {
    let rank = |v: &SupportedProtocolVersion| u16::from(v.version);
    if rank(min) > rank(max) {
        return Err(Class::Usage.err("--tls-min is above --tls-max"));
    }
    Ok([&rustls::version::TLS13, &rustls::version::TLS12]
        .into_iter()
        .filter(|v| rank(min) <= rank(v) && rank(v) <= rank(max))
        .collect())
}

/// The default provider, its cipher suites narrowed to `--ciphers` if given.
pub fn provider(
    ciphers: Option<&str>,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<Arc<CryptoProvider>> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(list) = ciphers {
        let all = provider.cipher_suites.clone();
        let name_of = |s: &rustls::SupportedCipherSuite| s.suite().as_str().unwrap_or("?");
        let mut chosen = Vec::new();
        for wanted in list
            .split([',', ':'])
            .map(str::trim)
            .filter(|w| !w.is_empty())
        {
            let found = all.iter().find(|s| same_suite(name_of(s), wanted));
            match found {
                Some(suite) if !chosen.contains(suite) => chosen.push(*suite),
                Some(_) => {}
                None => {
                    let valid: Vec<&str> = all.iter().map(name_of).collect();
                    return Err(Class::Usage.err(format!(
                        "--ciphers: unknown cipher suite '{}'; valid: {}",
                        report::escape(wanted),
                        valid.join(", ")
                    )));
                }
            }
        }
        if !chosen.iter().any(|s| versions.contains(&s.version())) {
            return Err(Class::Usage.err(
                "--ciphers leaves no cipher suite for the TLS versions allowed (TLS13_* suites \
                 are for TLS 1.3, TLS_ECDHE_* for TLS 1.2)",
            ));
        }
        provider.cipher_suites = chosen;
    }
    Ok(Arc::new(provider))
}

/// rustls names TLS 1.3 suites `TLS13_…`; IANA and OpenSSL write `TLS_…`. Accept both.
fn same_suite(ours: &str, wanted: &str) -> bool {
    let wanted = wanted.to_ascii_uppercase();
    if ours == wanted {
        return true;
    }
    match (ours.strip_prefix("TLS13_"), wanted.strip_prefix("TLS_")) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_names() {
        assert!(same_suite(
            "TLS13_AES_256_GCM_SHA384",
            "TLS13_AES_256_GCM_SHA384"
        ));
        assert!(same_suite(
            "TLS13_AES_256_GCM_SHA384",
            "tls_aes_256_gcm_sha384"
        ));
        assert!(!same_suite(
            "TLS13_AES_256_GCM_SHA384",
            "TLS_AES_128_GCM_SHA256"
        ));
        assert!(!same_suite("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "FOO"));
        assert!(!same_suite("TLS13_AES_128_GCM_SHA256", "FOO"));
    }

    #[test]
    fn version_ranges() {
        assert_eq!(
            versions(&rustls::version::TLS12, &rustls::version::TLS13)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            versions(&rustls::version::TLS13, &rustls::version::TLS13)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            versions(&rustls::version::TLS12, &rustls::version::TLS12)
                .unwrap()
                .len(),
            1
        );
        assert!(versions(&rustls::version::TLS13, &rustls::version::TLS12).is_err());
    }

    #[test]
    fn unknown_cipher_lists_the_valid_ones() {
        let all = versions(&rustls::version::TLS12, &rustls::version::TLS13).unwrap();
        let err = provider(Some("FOO"), &all).unwrap_err().to_string();
        assert!(err.contains("unknown cipher suite 'FOO'"), "{err}");
        assert!(err.contains("TLS13_AES_128_GCM_SHA256"), "{err}");
        let only13 = versions(&rustls::version::TLS13, &rustls::version::TLS13).unwrap();
        assert!(provider(Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"), &only13).is_err());
        let p = provider(
            Some("TLS_AES_128_GCM_SHA256:TLS13_AES_128_GCM_SHA256"),
            &all,
        )
        .unwrap();
        assert_eq!(p.cipher_suites.len(), 1);
    }
}

pub(crate) fn client_config(
    proto: &Protocol,
    verifier: Arc<ServerVerifier>,
    identity: Option<Arc<CertifiedKey>>,
    sni: bool,
) -> Result<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(proto.provider.clone())
        .with_protocol_versions(&proto.versions)
        .map_err(|e| anyhow!("TLS configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(ck) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(ck))),
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = sni;
    config.alpn_protocols = proto.alpn.clone();
    if let Some(log) = &proto.key_log {
        config.key_log = log.clone();
    }
    if !proto.resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(config)
}

/// How the listener treats client certificates.
pub(crate) enum ClientAuth {
    None,
    Required(RootCertStore),
    Optional(RootCertStore),
}

/// The server's own order of cipher suites: those with AES-128 first (AES-128-GCM with
/// SHA-256), as Mozilla's recommended configurations list them, then the rest as the provider
/// has them. The key exchange (X25519, P-256: 128-bit security) is no stronger than AES-128,
/// and the SHA-256 transcript costs a handshake about a quarter less CPU than SHA-384.
fn server_provider(provider: &Arc<CryptoProvider>) -> Arc<CryptoProvider> {
    let mut server = (**provider).clone();
    let is_128 = |s: &rustls::SupportedCipherSuite| {
        matches!(
            s.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    };
    server.cipher_suites.sort_by_key(|s| !is_128(s));
    Arc::new(server)
}

/// The server config, and the client verifier (to name what a rejected client presented).
/// `tickets`: who seals session tickets (`--ticket-keys`); without, sessions are resumed from
/// this process's cache.
pub(crate) fn server_config(
    proto: &Protocol,
    certs: Arc<dyn ResolvesServerCert>,
    tickets: Option<Arc<dyn ProducesTickets>>,
    client_auth: ClientAuth,
    crls: &Crls,
    allow: Allow,
    presented: Arc<Presented>,
) -> Result<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(match proto.ciphers_given {
        true => proto.provider.clone(),
        false => server_provider(&proto.provider),
    })
    .with_protocol_versions(&proto.versions)
    .map_err(|e| anyhow!("TLS configuration: {e}"))?;
    let verifier = match client_auth {
        ClientAuth::None => None,
        ClientAuth::Required(roots) => Some(client_verifier(proto, roots, false, crls)?),
        ClientAuth::Optional(roots) => Some(client_verifier(proto, roots, true, crls)?),
    };
    let verifier = verifier.map(|v| Arc::new(ClientVerifier::new(v, allow, presented)));
    let builder = match &verifier {
        Some(v) => builder.with_client_cert_verifier(v.clone()),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certs);
    // Our order of suites, not the client's: `--ciphers`'s, else AES-128-GCM with SHA-256
    // first (see `server_provider`).
    config.ignore_client_order = true;
    config.alpn_protocols = proto.alpn.clone();
    if let Some(log) = &proto.key_log {
        config.key_log = log.clone();
    }
    if !proto.resume {
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    } else if let Some(tickets) = tickets {
        config.ticketer = tickets;
    }
    Ok(config)
}

fn client_verifier(
    proto: &Protocol,
    roots: RootCertStore,
    optional: bool,
    crls: &Crls,
) -> Result<Arc<dyn ClientCertVerifier>> {
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), proto.provider.clone());
    if !crls.ders.is_empty() {
        builder = builder
            .with_crls(crls.ders.clone())
            .allow_unknown_revocation_status();
    }
    let builder = if optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder
        .build()
        .map_err(|e| anyhow!("cannot use the client CA: {e}"))
}

/// `--keylog FILE` (or SSLKEYLOGFILE): NSS key log lines appended to a file only its owner
/// can read.
#[derive(Debug)]
pub(crate) struct KeyLogTo {
    file: Mutex<File>,
}

impl KeyLogTo {
    pub(crate) fn open(path: &Path) -> Result<KeyLogTo> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let fail = |e: std::io::Error| anyhow!("{}: {}", path.display(), io_phrase(&e));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(fail)?;
        // A file that existed keeps its mode on open: one that others may read is made
        // private before a secret goes in. A pipe or a terminal is left as it is.
        let meta = file.metadata().map_err(fail)?;
        if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| {
                    anyhow!(
                        "{}: others can read it, and it cannot be made private (mode 0600): {}",
                        path.display(),
                        io_phrase(&e)
                    )
                })?;
        }
        Ok(KeyLogTo {
            file: Mutex::new(file),
        })
    }
}

impl KeyLog for KeyLogTo {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let line = format!("{label} {} {}\n", hex(client_random), hex(secret));
        if let Ok(mut file) = self.file.lock() {
            // A failed write loses a key log line, not the connection.
            let _ = file.write_all(line.as_bytes());
        }
    }
}
