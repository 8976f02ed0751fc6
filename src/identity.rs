//! Our own identity: a certificate chain and its private key, loaded from PEM files or made
//! on the spot (the ephemeral listener certificate).

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use crate::files::{read_file, Kind};

/// Every certificate in a PEM file of CA certificates, in order; an error if there is none.
pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    certs_from_pem(
        &read_file(path, Kind::CaBundle)?,
        &path.display().to_string(),
    )
}

/// Every certificate in PEM text; `name` says where it came from in messages.
pub fn certs_from_pem(pem: &[u8], name: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{name}: bad PEM: {}", pem_words(&e)))?;
    if certs.is_empty() {
        let hint = if holds_key(pem) {
            " (it holds a private key, not a certificate)"
        } else {
            " (expected a '-----BEGIN CERTIFICATE-----' block)"
        };
        return Err(anyhow!("{name}: no certificate found{hint}"));
    }
    Ok(certs)
}

/// The first private key in PEM text; `name` says where it came from in messages.
pub fn key_from_pem(pem: &[u8], name: &str) -> Result<PrivateKeyDer<'static>> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => Ok(key),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            let text = String::from_utf8_lossy(pem);
            let hint = if text.contains("ENCRYPTED") {
                " (an encrypted key? decrypt it with openssl pkey)"
            } else if holds_cert(pem) {
                " (it holds a certificate, not its key)"
            } else {
                ""
            };
            Err(anyhow!("{name}: no private key found{hint}"))
        }
        Err(e) => Err(anyhow!("{name}: bad PEM: {}", pem_words(&e))),
    }
}

/// A PEM error in words: rustls's own text shows the block's label as a list of byte values
/// (`missing section end marker: [67, 69, 82, …]`).
pub(crate) fn pem_words(err: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    let text = |bytes: &[u8]| crate::report::escape(&String::from_utf8_lossy(bytes));
    match err {
        E::MissingSectionEnd { end_marker } => format!(
            "a block has no '-----END {}-----' line (is the file cut short?)",
            text(end_marker)
        ),
        E::IllegalSectionStart { line } => {
            format!("a malformed '-----BEGIN' line: '{}'", text(line))
        }
        E::Base64Decode(why) => format!("a block is not valid base64 ({why})"),
        E::Io(e) => crate::error::io_phrase(e),
        E::NoItemsFound => "nothing found".to_string(),
        E::SectionTooLarge => "a block is larger than 256 MB".to_string(),
        // The enum may grow.
        other => other.to_string(),
    }
}

/// Whether PEM text holds a private key (of any of the three kinds).
fn holds_key(pem: &[u8]) -> bool {
    PrivateKeyDer::from_pem_slice(pem).is_ok()
}

/// Whether PEM text holds a certificate.
fn holds_cert(pem: &[u8]) -> bool {
    matches!(CertificateDer::pem_slice_iter(pem).next(), Some(Ok(_)))
}

/// Load `--cert` and `--key` (the key may sit in the certificate file) and check they belong
/// together. Each file is read once, so either may be a pipe.
pub(crate) fn load_identity(
    cert: &Path,
    key: Option<&Path>,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>> {
    let cert_pem = read_file(cert, Kind::Identity)?;
    let key_file = match key {
        Some(path) if path != cert => Some((path, read_file(path, Kind::Identity)?)),
        _ => None,
    };
    let chain = match certs_from_pem(&cert_pem, &cert.display().to_string()) {
        Ok(chain) => chain,
        Err(e) => {
            // Only when each file holds what the other should is it a swap.
            if let Some((key_path, key_pem)) = &key_file {
                if holds_key(&cert_pem) && holds_cert(key_pem) {
                    return Err(anyhow!(
                        "{}: no certificate found, but a private key, and {} holds a \
                         certificate: --cert and --key are swapped",
                        cert.display(),
                        key_path.display()
                    ));
                }
            }
            return Err(e);
        }
    };
    let (key_path, key_der) = match &key_file {
        Some((path, pem)) => (*path, key_from_pem(pem, &path.display().to_string())?),
        None => (
            cert,
            key_from_pem(&cert_pem, &cert.display().to_string())
                .map_err(|e| anyhow!("{e}; pass the key with --key FILE"))?,
        ),
    };
    match CertifiedKey::from_der(chain, key_der, provider) {
        Ok(ck) => Ok(Arc::new(ck)),
        Err(rustls::Error::InconsistentKeys(_)) => Err(anyhow!(
            "{}: the key does not match the certificate in {}",
            key_path.display(),
            cert.display()
        )),
        Err(e) => Err(anyhow!(
            "{}: unusable private key or certificate: {}",
            key_path.display(),
            crate::trust::in_words(&e)
        )),
    }
}

/// A fresh self-signed ECDSA P-256 certificate for localhost, 127.0.0.1, ::1 and this host's
/// name. Its key never touches the disk.
pub(crate) fn ephemeral(provider: &CryptoProvider) -> Result<Arc<CertifiedKey>> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Some(host) = hostname() {
        if !names.contains(&host) {
            names.push(host);
        }
    }
    let key = rcgen::KeyPair::generate().context("generating a key")?;
    let mut params = rcgen::CertificateParams::new(names.clone())
        .or_else(|_| rcgen::CertificateParams::new(names[..3].to_vec()))
        .context("making the ephemeral certificate")?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "stls ephemeral certificate");
    // Valid from a day ago (clock skew) for a year: it lives only as long as the listener.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    let cert = params
        .self_signed(&key)
        .context("signing the ephemeral certificate")?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let ck = CertifiedKey::from_der(vec![cert.der().clone()], key_der, provider)
        .context("loading the ephemeral certificate")?;
    Ok(Arc::new(ck))
}

/// This machine's host name, if it has a usable one.
pub(crate) fn hostname() -> Option<String> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_str().ok()?.to_ascii_lowercase();
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    valid.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_certificate_loads() {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let ck = ephemeral(&provider).expect("ephemeral certificate");
        assert_eq!(ck.cert.len(), 1);
        ck.keys_match().expect("key matches");
    }
}
