//! Building rustls configurations: the crypto provider, protocol versions, and the client and
//! server configs from trust and identity.
//!
//! The provider is aws-lc-rs with its defaults: TLS 1.3 and 1.2 AEAD suites only, and the
//! post-quantum hybrid X25519MLKEM768 first in the key-exchange preference.

use std::sync::Arc;

use anyhow::{anyhow, Result};
use rustls::crypto::CryptoProvider;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, ServerConfig, SupportedProtocolVersion};

use crate::cli::TlsVersion;
use crate::trust::ServerVerifier;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The versions from `--tls-min` up.
pub fn versions(min: TlsVersion) -> &'static [&'static SupportedProtocolVersion] {
    static BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
    static ONLY_13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
    match min {
        TlsVersion::Tls12 => BOTH,
        TlsVersion::Tls13 => ONLY_13,
    }
}

pub fn client_config(
    provider: Arc<CryptoProvider>,
    min: TlsVersion,
    verifier: Arc<ServerVerifier>,
    identity: Option<Arc<CertifiedKey>>,
    sni: bool,
) -> Result<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions(min))
        .map_err(|e| anyhow!("TLS configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(ck) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(ck))),
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = sni;
    Ok(config)
}

pub fn server_config(
    provider: Arc<CryptoProvider>,
    min: TlsVersion,
    identity: Arc<CertifiedKey>,
) -> Result<ServerConfig> {
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions(min))
        .map_err(|e| anyhow!("TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(identity)));
    Ok(config)
}
