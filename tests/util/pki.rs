//! A throwaway PKI made at test time with rcgen: a CA and leaves of each key type, valid,
//! expired or not yet valid, for any names.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

#[derive(Clone, Copy, Debug)]
pub(crate) enum KeyType {
    P256,
    Rsa2048,
    Ed25519,
}

impl KeyType {
    fn generate(self) -> KeyPair {
        match self {
            KeyType::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyType::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
            KeyType::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
        }
        .expect("generate key")
    }
}

/// Validity of a leaf, in days relative to now.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Days {
    pub from: i64,
    pub to: i64,
}

pub(crate) const VALID: Days = Days { from: -1, to: 30 };
pub(crate) const EXPIRED: Days = Days { from: -30, to: -1 };
pub(crate) const NOT_YET: Days = Days { from: 10, to: 30 };

/// A CA with its files written to a directory.
pub(crate) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub dir: PathBuf,
    /// The CA certificate (PEM), for `--cacert`.
    pub cert: PathBuf,
}

/// A leaf certificate and its key, as files.
pub(crate) struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    pub(crate) fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyType::P256.generate();
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA certificate");
        let path = dir.join(format!("{name}.pem").replace(' ', "-"));
        std::fs::write(&path, cert.pem()).expect("write CA");
        Ca {
            issuer: Issuer::new(params, key),
            dir: dir.to_path_buf(),
            cert: path,
        }
    }

    /// A server leaf for `names` (DNS names or IP addresses).
    pub(crate) fn server(&self, file: &str, names: &[&str], key: KeyType, days: Days) -> Leaf {
        self.leaf(file, names, key, days, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A server leaf whose subject common name is `cn` (any text) rather than the first name.
    pub(crate) fn server_with_cn(&self, file: &str, cn: &str, names: &[&str]) -> Leaf {
        self.leaf_with_cn(
            file,
            cn,
            names,
            KeyType::P256,
            VALID,
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client leaf.
    pub(crate) fn client(&self, file: &str, name: &str, key: KeyType, days: Days) -> Leaf {
        self.leaf(
            file,
            &[name],
            key,
            days,
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    fn leaf(
        &self,
        file: &str,
        names: &[&str],
        key_type: KeyType,
        days: Days,
        usage: ExtendedKeyUsagePurpose,
    ) -> Leaf {
        let cn = names.first().copied().unwrap_or_default();
        self.leaf_with_cn(file, cn, names, key_type, days, usage)
    }

    fn leaf_with_cn(
        &self,
        file: &str,
        cn: &str,
        names: &[&str],
        key_type: KeyType,
        days: Days,
        usage: ExtendedKeyUsagePurpose,
    ) -> Leaf {
        let key = key_type.generate();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let now = OffsetDateTime::now_utc();
        params.not_before = now + Duration::days(days.from);
        params.not_after = now + Duration::days(days.to);
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let cert_path = self.dir.join(format!("{file}.pem"));
        let key_path = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, stls::key_pem(&key)).expect("write key");
        Leaf {
            cert: cert_path,
            key: key_path,
        }
    }
}

/// The usual fixture: a CA and a P-256 server certificate for localhost, 127.0.0.1 and ::1.
pub(crate) struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub server: Leaf,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let dir = super::tempdir();
        let ca = Ca::new(dir.path(), "stls test CA");
        let server = ca.server(
            "server",
            &["localhost", "127.0.0.1", "::1"],
            KeyType::P256,
            VALID,
        );
        Pki { dir, ca, server }
    }
}

pub(crate) fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}
