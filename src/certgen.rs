//! `stls cert`: make a CA, and server or client certificates signed by it (or self-signed),
//! as PEM files with private keys readable only by their owner. It writes all of its files or
//! none: each goes to a temporary file beside its place and is renamed there at the end.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::NamedTempFile;

use crate::cli::{CertArgs, CertKind, KeyType};
use crate::error::{io_phrase, Class};
use crate::files::{read_file, Kind};
use crate::fingerprint::{fingerprint_text, sha256};
use crate::names::parse_san;

pub(crate) fn run(kind: &CertKind) -> Result<()> {
    let (args, stem) = match kind {
        CertKind::Ca(a) => (a, "ca"),
        CertKind::Server(a) => (a, "server"),
        CertKind::Client(a) => (a, "client"),
    };
    if stem == "ca" && args.ca.is_some() {
        return Err(Class::Usage.err("--ca is for server and client certificates"));
    }
    // Every value first: a bad --san is a usage error whatever is on disk.
    let sans = match kind {
        CertKind::Server(_) if args.san.is_empty() => {
            vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
        }
        _ => args
            .san
            .iter()
            .map(|s| parse_san(s).map(|san| san.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| Class::Usage.err(m))?,
    };
    let cert_path = args.out.join(format!("{stem}.pem"));
    let key_path = args.out.join(format!("{stem}.key"));
    // Every output path is checked before anything is written.
    for path in [&cert_path, &key_path] {
        check_output(path, args.force)?;
    }
    let issuer = match &args.ca {
        Some(dir) => Some(load_ca(dir)?),
        None => None,
    };
    let key = generate(args.key_type)?;
    let params = params(kind, args, sans)?;
    let cert = match &issuer {
        Some(issuer) => params.signed_by(&key, issuer),
        None => params.self_signed(&key),
    }
    .context("making the certificate")?;

    std::fs::create_dir_all(&args.out)
        .map_err(|e| anyhow!("{}: {}", args.out.display(), io_phrase(&e)))?;
    let staged = [
        stage(&cert_path, cert.pem().as_bytes(), 0o644)?,
        stage(&key_path, key_pem(&key).as_bytes(), 0o600)?,
    ];
    commit(staged, args.force)?;
    let summary = format!(
        "wrote {}\nwrote {}\nsha256 fingerprint {}\n",
        cert_path.display(),
        key_path.display(),
        fingerprint_text(&sha256(cert.der().as_ref()))
    );
    match std::io::stdout().lock().write_all(summary.as_bytes()) {
        // The files are written; a reader that went away did not want the summary.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow!(
            "the files are written, but writing to stdout failed: {}",
            io_phrase(&e)
        )),
        _ => Ok(()),
    }
}

/// The key as PEM PKCS#8. Ed25519 keys are generated as PKCS#8 v2 (RFC 5958, with the public
/// key), which OpenSSL 3.0 and GnuTLS refuse to load; they are written as v1 (RFC 8410), which
/// every implementation reads.
pub fn key_pem(key: &KeyPair) -> String {
    const V2_PREFIX: [u8; 16] = [
        0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let der = key.serialize_der();
    if der.len() == 83 && der.starts_with(&V2_PREFIX) {
        let mut v1 = vec![0x30, 0x2e, 0x02, 0x01, 0x00];
        v1.extend_from_slice(&der[5..48]);
        return pem::encode(&pem::Pem::new("PRIVATE KEY", v1));
    }
    key.serialize_pem()
}

fn generate(key_type: KeyType) -> Result<KeyPair> {
    match key_type {
        KeyType::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::P384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyType::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
        KeyType::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
    }
    .context("generating a key")
}

/// The certificate's fields; `sans` are checked already (`parse_san`).
fn params(kind: &CertKind, args: &CertArgs, sans: Vec<String>) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(sans.clone())
        .map_err(|e| Class::Usage.err(format!("--san: {e}")))?;
    let default_name = match kind {
        CertKind::Ca(_) => "stls CA".to_string(),
        CertKind::Server(_) => sans.first().cloned().unwrap_or_default(),
        CertKind::Client(_) => sans.first().cloned().unwrap_or("stls client".into()),
    };
    let name = args.name.clone().unwrap_or(default_name);
    params.distinguished_name.push(DnType::CommonName, name);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(args.days));
    match kind {
        CertKind::Ca(_) => {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
        }
        CertKind::Server(_) | CertKind::Client(_) => {
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            if args.key_type == KeyType::Rsa2048 {
                params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
            }
            params.extended_key_usages = vec![if matches!(kind, CertKind::Server(_)) {
                ExtendedKeyUsagePurpose::ServerAuth
            } else {
                ExtendedKeyUsagePurpose::ClientAuth
            }];
        }
    }
    Ok(params)
}

/// The CA that `stls cert ca --out DIR` made.
fn load_ca(dir: &Path) -> Result<Issuer<'static, KeyPair>> {
    let hint = |path: PathBuf| {
        move |e: anyhow::Error| {
            anyhow!(
                "{e} (make a CA with `stls cert ca --out {}`)",
                path.parent().unwrap_or(Path::new(".")).display()
            )
        }
    };
    let cert_path = dir.join("ca.pem");
    let key_path = dir.join("ca.key");
    let cert_pem = read_file(&cert_path, Kind::Identity).map_err(hint(cert_path.clone()))?;
    let key_pem = read_file(&key_path, Kind::Identity).map_err(hint(key_path.clone()))?;
    let key = KeyPair::from_pem(&String::from_utf8_lossy(&key_pem))
        .map_err(|e| anyhow!("{}: not a usable private key: {e}", key_path.display()))?;
    Issuer::from_ca_cert_pem(&String::from_utf8_lossy(&cert_pem), key)
        .map_err(|e| anyhow!("{}: not a usable CA certificate: {e}", cert_path.display()))
}

/// An output path may be written: it is not a symbolic link (stls does not write through one,
/// dangling or not), not a directory, and does not exist unless `--force`.
fn check_output(path: &Path, force: bool) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(anyhow!("{}: {}", path.display(), io_phrase(&e))),
    };
    if meta.file_type().is_symlink() {
        return Err(anyhow!(
            "{}: is a symbolic link; stls cert does not write through links (remove it, or \
             choose another --out); nothing was written",
            path.display()
        ));
    }
    if meta.is_dir() {
        return Err(anyhow!(
            "{}: is a directory; nothing was written",
            path.display()
        ));
    }
    if !force {
        return Err(anyhow!(
            "{}: already exists (use --force to overwrite); nothing was written",
            path.display()
        ));
    }
    Ok(())
}

/// A file written in full beside `path`, not yet in its place.
struct Staged {
    temp: NamedTempFile,
    path: PathBuf,
}

/// Write `contents` to a new temporary file with `mode` in the directory of `path`.
fn stage(path: &Path, contents: &[u8], mode: u32) -> Result<Staged> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let fail = |e: std::io::Error| anyhow!("{}: {}", path.display(), io_phrase(&e));
    // Created with the final mode: a key is never readable by others, not even for a moment.
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(fail)?;
    temp.write_all(contents).map_err(fail)?;
    temp.as_file().sync_all().map_err(fail)?;
    Ok(Staged {
        temp,
        path: path.to_path_buf(),
    })
}

/// Rename every staged file into its place. If one cannot be, those already placed are
/// removed again, so that the files appear together or not at all.
fn commit<const N: usize>(staged: [Staged; N], force: bool) -> Result<()> {
    let mut placed: Vec<PathBuf> = Vec::new();
    for Staged { temp, path } in staged {
        // Without --force the rename refuses to replace a file that appeared meanwhile.
        let done = if force {
            temp.persist(&path)
        } else {
            temp.persist_noclobber(&path)
        };
        if let Err(e) = done {
            for earlier in &placed {
                let _ = std::fs::remove_file(earlier);
            }
            return Err(anyhow!(
                "{}: {}; nothing was written",
                path.display(),
                io_phrase(&e.error)
            ));
        }
        placed.push(path);
    }
    Ok(())
}
