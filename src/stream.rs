//! A stream socket of either family — TCP or Unix-domain — connected ([`Stream`]) or
//! listening ([`Listener`]), and who is at the other end ([`Peer`]): what the relay, the TLS
//! socket's wire and a tunnel's local end hold, so that none of them asks which family it is.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use crate::net::HostPort;
use crate::unix::{Bound, Credentials, UnixPath};

/// A connected stream socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Run `$body` with `$s` bound to the socket inside, whichever family it is.
macro_rules! either {
    ($value:expr, $s:ident => $body:expr) => {
        match $value {
            Stream::Tcp($s) => $body,
            Stream::Unix($s) => $body,
        }
    };
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        either!(self, s => s.read(buf))
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        either!(self, s => s.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        either!(self, s => s.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        either!(self, s => s.flush())
    }
}

impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        either!(self, s => s.register(registry, token, interest))
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        either!(self, s => s.reregister(registry, token, interest))
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        either!(self, s => s.deregister(registry))
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        either!(self, s => s.as_raw_fd())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        either!(self, s => s.as_fd())
    }
}

impl From<TcpStream> for Stream {
    fn from(sock: TcpStream) -> Stream {
        Stream::Tcp(sock)
    }
}

impl Stream {
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        either!(self, s => s.shutdown(how))
    }

    /// The error the socket has pending (SO_ERROR), if any.
    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        either!(self, s => s.take_error())
    }

    /// Whether the socket has a peer: a connection being made has been made.
    pub(crate) fn connected(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.peer_addr().is_ok(),
            // A Unix socket is connected from the start, or not at all.
            Stream::Unix(_) => true,
        }
    }

    /// Disable Nagle's algorithm where there is one (TCP).
    pub(crate) fn set_nodelay(&self) {
        if let Stream::Tcp(s) = self {
            let _ = s.set_nodelay(true);
        }
    }

    /// Make the close that follows abortive: a TCP reset. A Unix socket has no such thing:
    /// its peer sees an end, and an error if it had unread data.
    pub(crate) fn reset_on_close(&self) {
        if let Stream::Tcp(s) = self {
            let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
        }
    }

    /// Where this end of the connection is (the address a client reached us at).
    pub(crate) fn local(&self) -> Option<Endpoint> {
        match self {
            Stream::Tcp(s) => s.local_addr().ok().map(Endpoint::Ip),
            Stream::Unix(s) => s
                .local_addr()
                .ok()
                .map(|a| Endpoint::Unix(UnixPath::of(&a))),
        }
    }
}

/// Where one end of a connection is: an IP address and port, or a Unix socket (`None`: an
/// unnamed one, as a client's usually is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Ip(SocketAddr),
    Unix(Option<UnixPath>),
}

/// Who is at the other end of an accepted connection.
#[derive(Clone, Debug)]
pub(crate) enum Peer {
    Ip(SocketAddr),
    /// A client of the Unix socket `at`, with its credentials when the kernel gives them.
    Unix {
        at: UnixPath,
        cred: Option<Credentials>,
    },
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Ip(addr) => write!(f, "{addr}"),
            Peer::Unix { at, cred: None } => write!(f, "{at}"),
            Peer::Unix { at, cred: Some(c) } => write!(f, "{at} (pid {}, uid {})", c.pid, c.uid),
        }
    }
}

impl Peer {
    /// Where the client is, as a PROXY protocol header says it.
    pub(crate) fn endpoint(&self) -> Endpoint {
        match self {
            Peer::Ip(addr) => Endpoint::Ip(*addr),
            // A client's Unix socket is almost always unnamed; its credentials are not an
            // address.
            Peer::Unix { .. } => Endpoint::Unix(None),
        }
    }
}

/// Where to connect, as given: HOST:PORT, or a Unix socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Address {
    Tcp(HostPort),
    Unix(UnixPath),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(hp) => hp.fmt(f),
            Address::Unix(path) => path.fmt(f),
        }
    }
}

/// Where to listen, as given: a TCP port (on one address, or on all), or a Unix socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListenAt {
    Tcp {
        host: Option<String>,
        port: u16,
    },
    /// A Unix socket, its file made with these permission bits.
    Unix {
        path: UnixPath,
        mode: u32,
    },
    /// The socket systemd passed (socket activation): `systemd:`, or `systemd:NAME` by
    /// `LISTEN_FDNAMES`.
    Systemd {
        name: Option<String>,
    },
}

impl ListenAt {
    /// `[ADDR:]PORT`, `unix:PATH` or `unix:@NAME`; `mode` for a socket file.
    pub(crate) fn parse(spec: &str, mode: u32) -> Result<ListenAt, String> {
        if let Some(name) = spec.strip_prefix("systemd:") {
            return Ok(ListenAt::Systemd {
                name: (!name.is_empty()).then(|| name.to_string()),
            });
        }
        if let Some(path) = UnixPath::parse(spec) {
            return Ok(ListenAt::Unix { path: path?, mode });
        }
        let (host, port) = crate::net::parse_listen(spec)?;
        Ok(ListenAt::Tcp { host, port })
    }

    /// Listen (a TCP port may be shared: SO_REUSEPORT).
    pub(crate) fn bind(&self, family: crate::net::Family) -> anyhow::Result<Listener> {
        match self {
            ListenAt::Tcp { host, port } => {
                crate::net::bind(host.as_deref(), *port, family).map(Listener::Tcp)
            }
            ListenAt::Unix { path, mode } => {
                let (sock, bound) = path.bind(*mode)?;
                Ok(Listener::Unix {
                    sock,
                    at: path.clone(),
                    bound: Arc::new(bound),
                })
            }
            ListenAt::Systemd { name } => {
                let fd = crate::systemd::listener(name.as_deref())
                    .map_err(|m| crate::error::Class::Usage.err(m))?;
                Listener::inherited(fd, self)
            }
        }
    }

    /// Another listener for another event loop (`--threads`), on the same port or socket.
    pub(crate) fn again(&self, first: &Listener) -> anyhow::Result<Listener> {
        match self {
            // Not ours to bind again: each loop accepts from systemd's socket.
            ListenAt::Systemd { .. } => first.shared(),
            _ => first.again(),
        }
    }
}

impl std::fmt::Display for ListenAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAt::Tcp { host: None, port } => write!(f, "{port}"),
            ListenAt::Tcp {
                host: Some(host),
                port,
            } => write!(f, "{host}:{port}"),
            ListenAt::Unix { path, .. } => path.fmt(f),
            ListenAt::Systemd { name: None } => write!(f, "systemd:"),
            ListenAt::Systemd { name: Some(name) } => write!(f, "systemd:{name}"),
        }
    }
}

/// A listening socket: TCP, or a Unix socket whose file goes when the last listener on it
/// does.
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix {
        sock: UnixListener,
        at: UnixPath,
        bound: Arc<Bound>,
    },
}

impl Listener {
    /// Take one client, if one is waiting.
    pub(crate) fn accept(&self) -> io::Result<(Stream, Peer)> {
        match self {
            Listener::Tcp(l) => {
                let (sock, addr) = l.accept()?;
                // An IPv4 client of a dual-stack socket reads as ::ffff:a.b.c.d: named by its
                // IPv4 address, here and everywhere after.
                let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
                Ok((Stream::Tcp(sock), Peer::Ip(addr)))
            }
            Listener::Unix { sock, at, .. } => {
                let (sock, _) = sock.accept()?;
                let cred = Credentials::of(&sock);
                let peer = Peer::Unix {
                    at: at.clone(),
                    cred,
                };
                Ok((Stream::Unix(sock), peer))
            }
        }
    }

    /// A socket passed to us (`at`: how it was named): TCP or Unix, as the socket says. It must
    /// be a stream socket that listens.
    fn inherited(fd: std::os::fd::OwnedFd, at: &ListenAt) -> anyhow::Result<Listener> {
        let sock = socket2::Socket::from(fd);
        let not = |what: &str| {
            crate::error::Class::Usage.err(format!(
                "{at}: the socket systemd passed is {what}: stls listens on a stream socket \
                 (ListenStream= in the .socket unit)"
            ))
        };
        if !matches!(sock.r#type(), Ok(t) if t == socket2::Type::STREAM) {
            return Err(not("not a stream socket"));
        }
        if !matches!(sock.is_listener(), Ok(true)) {
            return Err(not("not listening"));
        }
        sock.set_nonblocking(true)?;
        let local = sock.local_addr()?;
        if local.is_unix() {
            let std = std::os::unix::net::UnixListener::from(std::os::fd::OwnedFd::from(sock));
            let path = std
                .local_addr()
                .ok()
                .and_then(|a| UnixPath::of(&a))
                .unwrap_or_else(|| UnixPath::Abstract(b"systemd".to_vec()));
            return Ok(Listener::Unix {
                sock: UnixListener::from_std(std),
                at: path,
                // systemd made the file, and removes it.
                bound: Arc::new(Bound::borrowed()),
            });
        }
        if local.as_socket().is_none() {
            return Err(not("neither TCP nor a Unix socket"));
        }
        // As our own listeners: the connections accepted inherit it.
        let _ = sock.set_tcp_nodelay(true);
        Ok(Listener::Tcp(TcpListener::from_std(sock.into())))
    }

    /// The same socket again (a duplicate descriptor), for another event loop.
    fn shared(&self) -> anyhow::Result<Listener> {
        match self {
            Listener::Tcp(l) => {
                let fd = l.as_fd().try_clone_to_owned()?;
                Ok(Listener::Tcp(TcpListener::from_std(
                    std::net::TcpListener::from(fd),
                )))
            }
            Listener::Unix { .. } => self.again(),
        }
    }

    /// Another listener on the same socket, for another event loop: TCP binds the port again
    /// (SO_REUSEPORT: the kernel spreads the clients); a Unix socket is shared.
    pub(crate) fn again(&self) -> anyhow::Result<Listener> {
        match self {
            Listener::Tcp(l) => crate::net::bind_again(l).map(Listener::Tcp),
            Listener::Unix { sock, at, bound } => {
                let fd = sock.as_fd().try_clone_to_owned()?;
                let std = std::os::unix::net::UnixListener::from(fd);
                Ok(Listener::Unix {
                    sock: UnixListener::from_std(std),
                    at: at.clone(),
                    bound: bound.clone(),
                })
            }
        }
    }

    /// Where it listens, as said on stderr.
    pub(crate) fn shown(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "?".to_string(), |a| a.to_string()),
            Listener::Unix { at, .. } => at.to_string(),
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix { sock, .. } => sock.as_fd(),
        }
    }
}

impl Source for Listener {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.register(registry, token, interest),
            Listener::Unix { sock, .. } => sock.register(registry, token, interest),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.reregister(registry, token, interest),
            Listener::Unix { sock, .. } => sock.reregister(registry, token, interest),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.deregister(registry),
            Listener::Unix { sock, .. } => sock.deregister(registry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unix_client_is_named_with_its_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let at = UnixPath::File(dir.path().join("l.sock"));
        let (sock, bound) = at.bind(0o600).unwrap();
        let listener = Listener::Unix {
            sock,
            at: at.clone(),
            bound: Arc::new(bound),
        };
        let mut client = at.connect().map(Stream::Unix).unwrap();
        let (mut served, peer) = listener.accept().unwrap();
        let shown = peer.to_string();
        assert!(
            shown.starts_with(&format!("{at} (pid {}, uid ", std::process::id())),
            "{shown}"
        );
        assert_eq!(peer.endpoint(), Endpoint::Unix(None));
        assert!(matches!(served.local(), Some(Endpoint::Unix(Some(p))) if p == at));
        client.write_all(b"hi").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        // Non-blocking: the bytes are there already (same host), then EOF.
        let mut buf = [0u8; 8];
        loop {
            match served.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, b"hi");
        // A second loop's listener shares the socket, and the file stays until both go.
        let again = listener.again().unwrap();
        drop(listener);
        assert!(dir.path().join("l.sock").exists());
        drop(again);
        assert!(!dir.path().join("l.sock").exists());
    }
}
