//! `--tofu`: trust on first use, as ssh does. The first connection to HOST:PORT records the
//! public key's pin (`sha256//BASE64`) in the known-hosts file and says so; later ones must
//! present the same key.
//!
//! The file is one `HOST:PORT sha256//BASE64` line per host (or `unix:PATH`, which may hold
//! spaces: the pin is the line's last word; `#` comments allowed), mode
//! 0600. A new line is added under an exclusive lock (on the file's directory), by writing the whole
//! file beside it and renaming it into place, so concurrent runs neither lose nor corrupt
//! lines. Where the file is a symbolic link, all this is done to the file it points to: the
//! link stays. The file is read with a cap (`files::Kind::KnownHosts`), and only if it is a
//! regular file.
//! A line that cannot be read is an error naming the file and line, and the file is left as
//! it is.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use base64::prelude::{Engine, BASE64_STANDARD};
use rustix::fs::{flock, FlockOperation};

use crate::error::{io_phrase, Class};
use crate::files::{self, Kind};
use crate::report;

/// What the known-hosts file says about a host's key.
pub(crate) enum Known {
    /// The same key as recorded.
    Same,
    /// Not recorded before: now it is.
    New,
}

/// The default file: `$XDG_CONFIG_HOME/stls/known_hosts`, else `~/.config/stls/known_hosts`.
pub(crate) fn default_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("stls").join("known_hosts"))
}

/// Check `host`'s key pin (`spki`, raw SHA-256) against `file`, recording it if the host is
/// new. A different key is exit 5 with both pins and the line to edit.
pub(crate) fn check(file: &Path, host: &str, spki: &[u8; 32]) -> Result<Known> {
    let pin = format!("sha256//{}", BASE64_STANDARD.encode(spki));
    if let Some(known) = compare(file, host, &pin)? {
        return Ok(known);
    }
    // Not there yet: record it, unless another run did meanwhile (then compare with that).
    if let Some(known) = record(file, host, &pin)? {
        return Ok(known);
    }
    report::warn(format_args!(
        "{host} is new: its key {pin} is now recorded in {} (--tofu); later connections must \
         present the same key",
        file.display()
    ));
    Ok(Known::New)
}

/// `Some(Same)` if `host` is recorded with `pin`, an error if with another pin, `None` if it
/// is not recorded.
fn compare(file: &Path, host: &str, pin: &str) -> Result<Option<Known>> {
    match lookup(file, host)? {
        None => Ok(None),
        Some((_, known)) if known == pin => Ok(Some(Known::Same)),
        Some((line, known)) => Err(Class::CertRejected.err(format!(
            "does not have the key recorded for it: it presents {pin}, but {}, line {line} \
             records {known} (--tofu); if the change is expected, delete that line and connect \
             again",
            file.display()
        ))),
    }
}

/// Before connecting: the file can be read, and written if `host` is not in it yet; an
/// error names the file (and the line), and nothing is changed.
pub(crate) fn precheck(file: &Path, host: &str) -> Result<()> {
    if lookup(file, host)?.is_some() {
        return Ok(());
    }
    let file = &files::resolve_links(file)?;
    // The new file is written beside the old one and renamed: the directory must take it.
    let dir = files::parent(file);
    let writable =
        std::fs::create_dir_all(dir).and_then(|()| tempfile::NamedTempFile::new_in(dir).map(drop));
    if let Err(e) = writable {
        return Err(anyhow!(
            "{}: {}: the key of {host} could not be recorded there (--tofu)",
            dir.display(),
            io_phrase(&e)
        ));
    }
    if !file.exists() {
        return Ok(());
    }
    OpenOptions::new()
        .append(true)
        .open(file)
        .map(drop)
        .map_err(|e| {
            anyhow!(
                "{}: {}: the key of {host} could not be recorded there (--tofu)",
                file.display(),
                io_phrase(&e)
            )
        })
}

/// Before inspecting: the file, if there is one, can be read, and each of its lines is a
/// known host.
pub(crate) fn readable(file: &Path) -> Result<()> {
    lookup(file, "").map(drop)
}

/// The line number and pin recorded for `host`, if any.
fn lookup(file: &Path, host: &str) -> Result<Option<(usize, String)>> {
    let Some(text) = read(file)? else {
        return Ok(None);
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The pin is the last word: a host written as a Unix socket's path may hold spaces.
        let Some((name, pin)) = line.rsplit_once(char::is_whitespace) else {
            return Err(corrupt(file, n + 1));
        };
        let name = name.trim_end();
        let valid = pin
            .strip_prefix("sha256//")
            .and_then(|b| BASE64_STANDARD.decode(b).ok())
            .is_some_and(|d| d.len() == 32);
        if !valid || !name.contains(':') {
            return Err(corrupt(file, n + 1));
        }
        if name.eq_ignore_ascii_case(host) {
            return Ok(Some((n + 1, pin.to_string())));
        }
    }
    Ok(None)
}

/// The file's text, if there is a file.
fn read(file: &Path) -> Result<Option<String>> {
    match files::read_existing(file, Kind::KnownHosts)? {
        None => Ok(None),
        Some(data) => String::from_utf8(data)
            .map(Some)
            .map_err(|_| anyhow!("{}: not text (UTF-8)", file.display())),
    }
}

fn corrupt(file: &Path, line: usize) -> anyhow::Error {
    anyhow!(
        "{}, line {line}: not a known host (expected HOST:PORT sha256//BASE64); the file is \
         left as it is: correct or delete that line",
        file.display()
    )
}

/// Add `host pin` to the file, atomically, under a lock; if another run recorded the host
/// first, what its pin says instead.
fn record(file: &Path, host: &str, pin: &str) -> Result<Option<Known>> {
    let fail = |e: std::io::Error| {
        anyhow!(
            "cannot record the key of {host} in {}: {}",
            file.display(),
            io_phrase(&e)
        )
    };
    // Through a link to its file: renaming over the link would replace it.
    let file = &files::resolve_links(file)?;
    let dir = files::parent(file);
    std::fs::create_dir_all(dir).map_err(fail)?;
    // The lock is on the directory, which the rename never replaces (the known-hosts file
    // is replaced, so a lock on it would not hold for runs that opened the new one), and
    // which leaves no lock file behind.
    let lock = File::open(dir).map_err(fail)?;
    flock(&lock, FlockOperation::LockExclusive).map_err(|e| fail(e.into()))?;
    // Another run may have added the host meanwhile: its key is the one to match.
    if let Some(known) = compare(file, host, pin)? {
        return Ok(Some(known));
    }
    let mut text = read(file)?.unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text += &format!("{host} {pin}\n");
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(fail)?;
    tmp.write_all(text.as_bytes()).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(file).map_err(|e| fail(e.error))?;
    drop::<File>(lock);
    Ok(None)
}
