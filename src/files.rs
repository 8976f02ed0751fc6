//! Reading the files stls is told about: the file options (`--cacert`, `--cert`, `--key`,
//! `--client-ca`, `--client-ca-optional`, `--crl`, `--ocsp`, `--targets`, `--ticket-keys`, the CA directory of
//! `stls cert --ca`), the system's store (`SSL_CERT_FILE`, `SSL_CERT_DIR`) and the known-hosts
//! file of `--tofu`: one reader for all of them, and one writer for what stls saves.
//!
//! Each file is read with a cap that fits its kind, and only from what can hold such a file:
//! a regular file, or for the options a pipe (`--cacert <(…)`), read up to the cap. A device
//! such as `/dev/zero` would otherwise be read until memory runs out, and `/dev/urandom` or a
//! pipe nobody closes would be read for ever.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};

use crate::error::io_phrase;

/// What a file holds, which decides how large it may be and how messages name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `--cert`, `--key`, and the CA that `stls cert --ca` reads: a chain and a key.
    Identity,
    /// `--cacert`, `--client-ca`, `SSL_CERT_FILE` and each file in `SSL_CERT_DIR`.
    CaBundle,
    /// `--crl`, PEM or DER: a list of 100,000 revoked serials is about 3 MB.
    Crl,
    /// `--ocsp`, DER.
    Ocsp,
    /// `inspect --targets`, one target a line.
    Targets,
    /// The `--tofu` file, one host a line.
    KnownHosts,
    /// `listen --ticket-keys`, one key of 64 hex digits a line.
    TicketKeys,
}

impl Kind {
    /// The most a file of this kind may hold.
    pub(crate) fn limit(self) -> u64 {
        const MIB: u64 = 1024 * 1024;
        match self {
            // Several times the largest chain and key anyone serves.
            Kind::Identity | Kind::Ocsp => MIB,
            // The whole Mozilla bundle is 0.2 MiB; corporate bundles are a few MiB.
            Kind::CaBundle | Kind::Targets | Kind::KnownHosts => 16 * MIB,
            // The largest published lists are tens of MB.
            Kind::Crl => 64 * MIB,
            // About 900 keys: far more than a rotation keeps.
            Kind::TicketKeys => 64 * 1024,
        }
    }

    /// The cap as people write it, for messages.
    pub(crate) fn limit_text(self) -> String {
        match self.limit() {
            l if l >= 1024 * 1024 => format!("{} MiB", l / (1024 * 1024)),
            l => format!("{} KiB", l / 1024),
        }
    }

    /// What such a file is called in messages.
    fn noun(self) -> &'static str {
        match self {
            Kind::Identity => "a certificate or key file",
            Kind::CaBundle => "a CA certificate file",
            Kind::Crl => "a revocation list",
            Kind::Ocsp => "an OCSP response",
            Kind::Targets => "a target list",
            Kind::KnownHosts => "a known-hosts file",
            Kind::TicketKeys => "a ticket key file",
        }
    }

    fn too_big(self, name: &str) -> anyhow::Error {
        anyhow!(
            "{name}: larger than {}, the most {} may hold",
            self.limit_text(),
            self.noun()
        )
    }
}

/// Read a whole regular file or pipe of at most `kind`'s limit, naming it in every error.
pub(crate) fn read_file(path: &Path, kind: Kind) -> Result<Vec<u8>> {
    let name = path.display().to_string();
    let fail = |e: std::io::Error| anyhow!("{name}: {}", io_phrase(&e));
    // Opening a named pipe waits for its writer, as `cat` would; opening a device does not
    // read from it, so nothing is consumed before the type is known.
    let file = File::open(path).map_err(fail)?;
    let meta = file.metadata().map_err(fail)?;
    check_type(&name, &meta, true)?;
    read_capped(file, &meta, &name, kind)
}

/// Read a whole regular file of at most `kind`'s limit; `None` if there is no such file.
/// Nothing else is read: not a pipe, which would wait for a writer.
pub(crate) fn read_existing(path: &Path, kind: Kind) -> Result<Option<Vec<u8>>> {
    let name = path.display().to_string();
    let fail = |e: std::io::Error| anyhow!("{name}: {}", io_phrase(&e));
    // The type first: opening a pipe would wait for its writer.
    match std::fs::metadata(path) {
        Ok(meta) => check_type(&name, &meta, false)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(e)),
    }
    // O_NONBLOCK: should a pipe take the file's place meanwhile, the open does not wait.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(e)),
    };
    let meta = file.metadata().map_err(fail)?;
    check_type(&name, &meta, false)?;
    read_capped(file, &meta, &name, kind).map(Some)
}

/// Before anything is read: `path` is a regular file within `kind`'s limit.
pub(crate) fn check_regular(path: &Path, kind: Kind) -> Result<()> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| anyhow!("{name}: {}", io_phrase(&e)))?;
    check_type(&name, &meta, false)?;
    if meta.len() > kind.limit() {
        return Err(kind.too_big(&name));
    }
    Ok(())
}

/// A regular file, or a pipe where `pipes` are taken; an error naming what it is otherwise.
fn check_type(name: &str, meta: &std::fs::Metadata, pipes: bool) -> Result<()> {
    let kind = meta.file_type();
    if kind.is_dir() {
        return Err(anyhow!("{name}: is a directory, not a file"));
    }
    if kind.is_file() || (pipes && kind.is_fifo()) {
        return Ok(());
    }
    let what = if kind.is_fifo() {
        "a pipe"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    };
    match pipes {
        true => Err(anyhow!("{name}: not a regular file or pipe (it is {what})")),
        false => Err(anyhow!("{name}: not a regular file (it is {what})")),
    }
}

/// Read `file` to its end, refusing it as soon as it holds more than `kind` may.
fn read_capped(file: File, meta: &std::fs::Metadata, name: &str, kind: Kind) -> Result<Vec<u8>> {
    if meta.is_file() && meta.len() > kind.limit() {
        return Err(kind.too_big(name));
    }
    // A pipe has no size, and a regular file may grow while it is read: the cap holds anyway.
    let mut data = Vec::new();
    file.take(kind.limit() + 1)
        .read_to_end(&mut data)
        .map_err(|e| anyhow!("{name}: {}", io_phrase(&e)))?;
    if data.len() as u64 > kind.limit() {
        return Err(kind.too_big(name));
    }
    Ok(data)
}

/// Read stdin (`--targets -`) up to `kind`'s limit.
pub(crate) fn read_stdin(kind: Kind) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    std::io::stdin()
        .lock()
        .take(kind.limit() + 1)
        .read_to_end(&mut data)
        .map_err(|e| anyhow!("reading stdin: {}", io_phrase(&e)))?;
    if data.len() as u64 > kind.limit() {
        return Err(kind.too_big("stdin"));
    }
    Ok(data)
}

/// Before anything is done: a file stls will write (`inspect --save-chain`) may be written at
/// `path`. stls does not write through a symbolic link, dangling or not (a link planted there
/// would send the file elsewhere), nor over a directory; the file's directory must take a new
/// file, since the file is written beside its place and renamed there.
pub(crate) fn check_output(path: &Path, option: &str) -> Result<()> {
    let name = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(anyhow!(
                "{name}: is a symbolic link; {option} does not write through links (remove \
                 it, or choose another file)"
            ))
        }
        Ok(meta) if meta.is_dir() => return Err(anyhow!("{name}: is a directory, not a file")),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow!("{name}: {}", io_phrase(&e))),
    }
    tempfile::NamedTempFile::new_in(parent(path))
        .map(drop)
        .map_err(|e| anyhow!("{name}: {}: {option} cannot write there", io_phrase(&e)))
}

/// Write `contents` to `path` whole or not at all: into a new file beside it, created with
/// `mode` (less the umask), then renamed into its place. The rename replaces a file there and
/// never writes through a link; a reader sees the old file or the new one, never part of one.
pub(crate) fn write_replacing(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |e: std::io::Error| anyhow!("{}: {}", path.display(), io_phrase(&e));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(parent(path))
        .map_err(fail)?;
    temp.write_all(contents).map_err(fail)?;
    temp.as_file().sync_all().map_err(fail)?;
    temp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// The directory a file is in (`.` for a bare name).
pub(crate) fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Where a symbolic link finally points (through links to links, relative ones taken from
/// their directory), or `path` itself when it is not a link; the target need not exist.
pub(crate) fn resolve_links(path: &Path) -> Result<PathBuf> {
    let mut at = path.to_path_buf();
    // As the kernel does (ELOOP after 40), so that a loop is an error, not a hang.
    for _ in 0..40 {
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let to = std::fs::read_link(&at)
                    .map_err(|e| anyhow!("{}: {}", at.display(), io_phrase(&e)))?;
                at = parent(&at).join(to);
            }
            _ => return Ok(at),
        }
    }
    Err(anyhow!(
        "{}: too many levels of symbolic links",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_directories_are_refused() {
        let err = read_file(Path::new("/dev/zero"), Kind::CaBundle)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "/dev/zero: not a regular file or pipe (it is a character device)"
        );
        let err = read_file(Path::new("/"), Kind::Identity)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "/: is a directory, not a file");
        let err = read_existing(Path::new("/dev/zero"), Kind::KnownHosts)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "/dev/zero: not a regular file (it is a character device)"
        );
        assert!(read_existing(Path::new("/nonexistent/x"), Kind::KnownHosts)
            .unwrap()
            .is_none());
    }

    #[test]
    fn each_kind_names_itself_and_its_limit() {
        assert_eq!(
            Kind::Crl.too_big("crl.der").to_string(),
            "crl.der: larger than 64 MiB, the most a revocation list may hold"
        );
        assert_eq!(
            Kind::Ocsp.too_big("r.der").to_string(),
            "r.der: larger than 1 MiB, the most an OCSP response may hold"
        );
    }
}
