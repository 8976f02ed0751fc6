//! Where trust anchors come from: the system's store (`SSL_CERT_FILE`, `SSL_CERT_DIR`, else
//! the platform's), the built-in Mozilla roots, a `--cacert` or `--client-ca` file; and the
//! `--crl` revocation lists, with what each says for messages.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Result};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::RootCertStore;

use super::explain::builder_words;
use crate::describe::{date, dn_text};
use crate::error::io_phrase;
use crate::files::{read_existing, Kind};
use crate::identity::{load_certs, pem_words};

/// Where the system's certificates are: the file `SSL_CERT_FILE` names and the directories
/// `SSL_CERT_DIR` lists, else the platform's, as OpenSSL finds them.
struct SystemPaths {
    file: Option<PathBuf>,
    dirs: Vec<PathBuf>,
    /// Named by the environment: then a file that cannot be read is an error.
    named: bool,
}

impl SystemPaths {
    fn find() -> SystemPaths {
        let file = std::env::var_os("SSL_CERT_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let dirs: Vec<PathBuf> = std::env::var_os("SSL_CERT_DIR")
            .map(|v| {
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if file.is_some() || !dirs.is_empty() {
            return SystemPaths {
                file,
                dirs,
                named: true,
            };
        }
        let probed = openssl_probe::probe();
        SystemPaths {
            file: probed.cert_file,
            dirs: probed.cert_dir,
            named: false,
        }
    }

    /// Every certificate in the file and in the regular files of the directories (each file
    /// once, however many links lead to it), sorted, without duplicates. Each file is read
    /// with the cap of a CA file, and all of them with a cap together. Where the environment
    /// named the store, a file that cannot be read is an error; in the platform's store it is
    /// passed over, as OpenSSL would.
    fn load(&self) -> Result<Vec<CertificateDer<'static>>> {
        use std::os::unix::fs::MetadataExt;
        // Four CA files' worth: a directory of a few hundred small files is well within it.
        let total_cap = 4 * Kind::CaBundle.limit();
        let mut total = 0;
        let mut certs = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut files: Vec<PathBuf> = self.file.iter().cloned().collect();
        for dir in &self.dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if self.named => {
                    return Err(anyhow!("SSL_CERT_DIR={}: {}", dir.display(), io_phrase(&e)))
                }
                Err(_) => continue,
            };
            // Only regular files (links followed): not pipes, devices or subdirectories.
            files.extend(
                entries
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .filter(|path| std::fs::metadata(path).is_ok_and(|m| m.is_file())),
            );
        }
        for path in files {
            if let Ok(meta) = std::fs::metadata(&path) {
                if !seen.insert((meta.dev(), meta.ino())) {
                    continue;
                }
            }
            let label = match self.file.as_ref() == Some(&path) {
                true => "SSL_CERT_FILE=",
                false => "in SSL_CERT_DIR, ",
            };
            let data = match read_existing(&path, Kind::CaBundle) {
                Ok(Some(data)) => data,
                Ok(None) if self.named && label.starts_with("SSL_CERT_FILE") => {
                    return Err(anyhow!("{label}{}: no such file", path.display()))
                }
                // Gone since the directory was listed.
                Ok(None) => continue,
                Err(e) if self.named => return Err(anyhow!("{label}{e:#}")),
                Err(_) => continue,
            };
            total += data.len() as u64;
            if total > total_cap {
                return Err(anyhow!(
                    "the system's store ({}) holds more than {} MiB of certificates, the most \
                     stls reads from it",
                    self.describe(),
                    total_cap / (1024 * 1024)
                ));
            }
            // What is not a certificate (a key, a CRL, text) is passed over, as OpenSSL does.
            certs.extend(CertificateDer::pem_slice_iter(&data).map_while(Result::ok));
        }
        certs.sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
        certs.dedup();
        Ok(certs)
    }

    /// The files and directories, for messages.
    fn describe(&self) -> String {
        let mut named: Vec<String> = Vec::new();
        if let Some(file) = &self.file {
            named.push(format!("{}", file.display()));
        }
        named.extend(self.dirs.iter().map(|d| d.display().to_string()));
        named.join(", ")
    }
}

/// The system's certificates, as `SSL_CERT_FILE`/`SSL_CERT_DIR` or the platform name them;
/// the built-in roots when there are none. Also says which it is, for `-v`.
pub(crate) fn system_roots() -> Result<(RootCertStore, String)> {
    let paths = SystemPaths::find();
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(paths.load()?);
    if added > 0 {
        let from = match (
            std::env::var_os("SSL_CERT_FILE"),
            std::env::var_os("SSL_CERT_DIR"),
        ) {
            (None, None) => String::new(),
            (file, dir) => {
                let named: Vec<String> = [("SSL_CERT_FILE", file), ("SSL_CERT_DIR", dir)]
                    .into_iter()
                    .filter_map(|(n, v)| v.map(|v| format!("{n}={}", v.to_string_lossy())))
                    .collect();
                format!(", from {}", named.join(" and "))
            }
        };
        Ok((store, format!("the system's {added} certificates{from}")))
    } else {
        let store = builtin_roots();
        let n = store.len();
        Ok((
            store,
            format!("the built-in Mozilla roots ({n}): the system store is empty"),
        ))
    }
}

/// `--crl` files: the lists for webpki, and what each says, for messages.
#[derive(Clone, Debug, Default)]
pub(crate) struct Crls {
    pub ders: Vec<CertificateRevocationListDer<'static>>,
    entries: Vec<CrlEntries>,
}

/// What one list says: its file, its issuer, and the revoked serials with their dates.
#[derive(Clone, Debug)]
struct CrlEntries {
    file: String,
    issuer: String,
    revoked: Vec<(Vec<u8>, i64)>,
}

impl Crls {
    /// Read CRL files, PEM or DER; a file with no usable list is an error naming it.
    pub(crate) fn load(paths: &[std::path::PathBuf]) -> Result<Crls> {
        let mut crls = Crls::default();
        for path in paths {
            let data = crate::files::read_file(path, crate::files::Kind::Crl)?;
            let ders: Vec<CertificateRevocationListDer<'static>> =
                if data.starts_with(b"-----") || data.windows(5).any(|w| w == b"-----") {
                    CertificateRevocationListDer::pem_slice_iter(&data)
                        .collect::<Result<_, _>>()
                        .map_err(|e| anyhow!("{}: bad PEM: {}", path.display(), pem_words(&e)))?
                } else {
                    vec![CertificateRevocationListDer::from(data)]
                };
            if ders.is_empty() {
                return Err(anyhow!(
                    "{}: no certificate revocation list in it",
                    path.display()
                ));
            }
            // What webpki would refuse at the handshake is refused now, naming the file.
            let check = WebPkiServerVerifier::builder_with_provider(
                Arc::new(builtin_roots()),
                Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            )
            .with_crls(ders.clone())
            .build();
            if let Err(e) = check {
                return Err(anyhow!(
                    "{}: this revocation list cannot be used ({}); it must be a version 2 \
                     list (openssl ca -gencrl makes one when a crlnumber file is configured)",
                    path.display(),
                    builder_words(&e)
                ));
            }
            for der in ders {
                let (_, crl) = x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| {
                    anyhow!("{}: not a certificate revocation list: {e}", path.display())
                })?;
                let revoked = crl
                    .iter_revoked_certificates()
                    .map(|r| (r.raw_serial().to_vec(), r.revocation_date.timestamp()))
                    .collect();
                crls.entries.push(CrlEntries {
                    file: path.display().to_string(),
                    issuer: dn_text(crl.issuer()),
                    revoked,
                });
                crls.ders.push(der);
            }
        }
        Ok(crls)
    }

    /// Why `cert` is revoked, as a list says it: by whom, since when, which file.
    pub(super) fn why(&self, cert: &CertificateDer<'_>) -> Option<String> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
        let serial = parsed.raw_serial();
        self.entries.iter().find_map(|e| {
            e.revoked
                .iter()
                .find(|(s, _)| s == serial)
                .map(|(_, when)| {
                    format!(
                        "was revoked by {} on {} (the list in {})",
                        e.issuer,
                        date(*when),
                        e.file
                    )
                })
        })
    }
}

/// The Mozilla roots compiled in.
pub(crate) fn builtin_roots() -> RootCertStore {
    RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned())
}

/// The CA certificates of a `--cacert` (or `--client-ca`) file; none usable is an error.
pub(crate) fn roots_from_file(path: &Path) -> Result<RootCertStore> {
    let certs = load_certs(path)?;
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(anyhow!(
            "{}: none of its certificates can be used as a trust anchor",
            path.display()
        ));
    }
    Ok(store)
}
