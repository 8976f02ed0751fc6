//! Unix-domain sockets: the `unix:PATH` and `unix:@NAME` (Linux abstract namespace) address
//! forms, connecting, binding a listener (a leftover socket file nobody listens on is
//! replaced; a live one or a file that is not a socket is left alone), removing the file
//! when the listener goes, and the credentials of a client (SO_PEERCRED).

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::SocketAddr as UnixAddr;
use std::path::{Path, PathBuf};

use anyhow::Result;
use mio::net::{UnixListener, UnixStream};

use crate::error::{io_phrase, Class};
use crate::report;

/// The longest path (or abstract name) the kernel takes: `sun_path` is 108 bytes, one of
/// them the terminating NUL (or the abstract namespace's leading NUL).
pub(crate) const MAX_PATH: usize = 107;

/// Where a Unix-domain socket is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UnixPath {
    /// A socket file.
    File(PathBuf),
    /// A name in Linux's abstract namespace (`unix:@NAME`): no file, gone with its socket.
    Abstract(Vec<u8>),
}

impl std::fmt::Display for UnixPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnixPath::File(path) => write!(f, "unix:{}", shown(path.as_os_str())),
            UnixPath::Abstract(name) => {
                write!(
                    f,
                    "unix:@{}",
                    report::escape(&String::from_utf8_lossy(name))
                )
            }
        }
    }
}

impl UnixPath {
    /// `unix:PATH` or `unix:@NAME`; `None` when `text` is not written as a Unix address.
    pub(crate) fn parse(text: &str) -> Option<Result<UnixPath, String>> {
        let rest = text.strip_prefix("unix:")?;
        Some(Self::parse_rest(rest))
    }

    fn parse_rest(rest: &str) -> Result<UnixPath, String> {
        let (path, len) = match rest.strip_prefix('@') {
            Some(name) => (UnixPath::Abstract(name.as_bytes().to_vec()), name.len() + 1),
            None => (UnixPath::File(PathBuf::from(rest)), rest.len()),
        };
        let shown = path.to_string();
        if rest.is_empty() || rest == "@" {
            return Err("'unix:' needs a path (unix:PATH) or an abstract name (unix:@NAME)".into());
        }
        if rest.contains('\0') {
            return Err(format!("'{shown}': a socket path cannot hold a NUL byte"));
        }
        if len > MAX_PATH {
            return Err(format!(
                "'{shown}' is {len} bytes long; a Unix socket path is at most {MAX_PATH} bytes \
                 (the kernel's limit): use a shorter path, or a relative one"
            ));
        }
        Ok(path)
    }

    fn addr(&self) -> io::Result<UnixAddr> {
        match self {
            UnixPath::File(path) => UnixAddr::from_pathname(path),
            UnixPath::Abstract(name) => UnixAddr::from_abstract_name(name),
        }
    }

    /// What a Unix socket's own address names: its path or abstract name (an unnamed socket,
    /// as a client's usually is: `None`).
    pub(crate) fn of(addr: &UnixAddr) -> Option<UnixPath> {
        if let Some(path) = addr.as_pathname() {
            return Some(UnixPath::File(path.to_path_buf()));
        }
        addr.as_abstract_name()
            .map(|name| UnixPath::Abstract(name.to_vec()))
    }

    /// The bytes of `sun_path` as the PROXY protocol carries them (an abstract name with its
    /// leading NUL).
    pub(crate) fn sun_path(&self) -> Vec<u8> {
        match self {
            UnixPath::File(path) => path.as_os_str().as_bytes().to_vec(),
            UnixPath::Abstract(name) => [&[0u8][..], name].concat(),
        }
    }

    /// Connect, without blocking: a Unix socket answers at once, so a failure is known here
    /// (no such file, nobody listening, no permission), said with the path.
    pub(crate) fn connect(&self) -> Result<UnixStream> {
        let connected = self.addr().and_then(|addr| UnixStream::connect_addr(&addr));
        connected.map_err(|e| {
            let hint = match e.kind() {
                io::ErrorKind::NotFound => ": no such socket (is the service running?)",
                io::ErrorKind::ConnectionRefused => ": nobody is listening on it",
                io::ErrorKind::PermissionDenied => {
                    ": permission denied (the socket file's mode or its directory's)"
                }
                _ => "",
            };
            let why = if hint.is_empty() {
                format!(": {}", io_phrase(&e))
            } else {
                hint.to_string()
            };
            Class::Network.err(format!("cannot connect to {self}{why}"))
        })
    }

    /// Listen here. A socket file is made with `mode`; a leftover one nobody listens on is
    /// replaced; one with a live listener is refused (exit 3, in use), and a path that is not
    /// a socket is left as it is (exit 1). The socket file goes when the [`Bound`] is dropped.
    pub(crate) fn bind(&self, mode: u32) -> Result<(UnixListener, Bound)> {
        if let UnixPath::File(path) = self {
            self.clear_leftover(path)?;
        }
        let addr = self.addr().map_err(|e| self.cannot(&e))?;
        // The file gets `mode` from the start (umask), not after a window where anyone might
        // connect; at this point no other thread makes files.
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(!mode & 0o777));
        let bound = UnixListener::bind_addr(&addr);
        rustix::process::umask(old);
        let listener = bound.map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse => self.in_use(),
            _ => self.cannot(&e),
        })?;
        let owned = match self {
            UnixPath::File(path) => {
                // The umask cannot add bits: the mode is set once more, exactly.
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| self.cannot(&e))?;
                std::fs::symlink_metadata(path)
                    .ok()
                    .map(|m| (path.clone(), m.dev(), m.ino()))
            }
            UnixPath::Abstract(_) => None,
        };
        Ok((listener, Bound { owned }))
    }

    /// A socket file at `path` that nobody listens on is a leftover of a listener that did
    /// not remove it: remove it. Anything else there is an error.
    fn clear_leftover(&self, path: &Path) -> Result<()> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.cannot(&e)),
        };
        if !meta.file_type().is_socket() {
            return Err(Class::Other.err(format!(
                "cannot listen on {self}: the path exists and is not a socket; it was left as \
                 it is (remove it, or choose another path)"
            )));
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => Err(self.in_use()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                report::verbose(format_args!(
                    "replacing {self}: a socket file nobody listens on"
                ));
                std::fs::remove_file(path).map_err(|e| self.cannot(&e))
            }
            Err(e) => Err(self.cannot(&e)),
        }
    }

    fn in_use(&self) -> anyhow::Error {
        Class::Network.err(format!(
            "cannot listen on {self}: address in use (another process listens on it)"
        ))
    }

    fn cannot(&self, e: &io::Error) -> anyhow::Error {
        Class::Network.err(format!("cannot listen on {self}: {}", io_phrase(e)))
    }
}

/// A listener's socket file, removed when this is dropped — unless something else has taken
/// the path since.
#[derive(Debug)]
pub(crate) struct Bound {
    owned: Option<(PathBuf, u64, u64)>,
}

impl Bound {
    /// A socket file that is not ours to remove (systemd's, for socket activation).
    pub(crate) fn borrowed() -> Bound {
        Bound { owned: None }
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        let Some((path, dev, ino)) = self.owned.take() else {
            return;
        };
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if meta.dev() == dev && meta.ino() == ino {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// Who is at the other end of a Unix socket, as the kernel says (SO_PEERCRED).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

impl Credentials {
    pub(crate) fn of(sock: &impl AsFd) -> Option<Credentials> {
        let cred = rustix::net::sockopt::socket_peercred(sock).ok()?;
        Some(Credentials {
            pid: cred.pid.as_raw_nonzero().get(),
            uid: cred.uid.as_raw(),
            gid: cred.gid.as_raw(),
        })
    }
}

/// A path for messages, from the OS's bytes.
pub(crate) fn shown(path: &OsStr) -> String {
    report::escape(&String::from_utf8_lossy(path.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(UnixPath::parse("localhost:80"), None);
        assert_eq!(
            UnixPath::parse("unix:/run/x.sock"),
            Some(Ok(UnixPath::File("/run/x.sock".into())))
        );
        assert_eq!(
            UnixPath::parse("unix:@stls"),
            Some(Ok(UnixPath::Abstract(b"stls".to_vec())))
        );
        assert_eq!(
            UnixPath::parse("unix:rel.sock")
                .unwrap()
                .unwrap()
                .to_string(),
            "unix:rel.sock"
        );
        assert!(UnixPath::parse("unix:")
            .unwrap()
            .unwrap_err()
            .contains("needs a path"));
        assert!(UnixPath::parse("unix:@")
            .unwrap()
            .unwrap_err()
            .contains("needs a path"));
    }

    #[test]
    fn the_kernels_limit_is_named() {
        let ok = format!("unix:/{}", "a".repeat(MAX_PATH - 1));
        assert!(UnixPath::parse(&ok).unwrap().is_ok());
        let long = format!("unix:/{}", "a".repeat(MAX_PATH));
        let err = UnixPath::parse(&long).unwrap().unwrap_err();
        assert!(err.contains("at most 107 bytes"), "{err}");
        let long = format!("unix:@{}", "a".repeat(MAX_PATH));
        assert!(UnixPath::parse(&long).unwrap().is_err());
    }

    #[test]
    fn leftover_live_and_foreign_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let at = UnixPath::File(path.clone());
        // A leftover: bound, then its listener gone without removing the file.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (live, bound) = at.bind(0o600).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Live: refused as in use, and the file stays.
        let err = at.bind(0o600).unwrap_err();
        assert_eq!(crate::error::classify(&err), Class::Network);
        assert!(format!("{err}").contains("in use"), "{err}");
        drop(live);
        drop(bound);
        assert!(!path.exists(), "the socket file goes with its listener");
        // Not a socket: left alone.
        std::fs::write(&path, b"data").unwrap();
        let err = at.bind(0o600).unwrap_err();
        assert_eq!(crate::error::classify(&err), Class::Other);
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }

    #[test]
    fn credentials_of_a_client() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let cred = Credentials::of(&a).unwrap();
        assert_eq!(cred.pid, std::process::id() as i32);
        assert_eq!(cred.uid, rustix::process::getuid().as_raw());
    }
}
