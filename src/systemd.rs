//! systemd: the listening socket socket activation passes (`listen systemd:`), and the state
//! a `Type=notify` service tells it (READY, RELOADING, STOPPING, WATCHDOG) as a datagram to
//! `NOTIFY_SOCKET`.
//!
//! The environment is read once, at start, before any thread is made, and its variables are
//! taken out of it so that the commands of `-e`/`-c` inherit neither the sockets' variables
//! nor the notification socket.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The first descriptor socket activation passes.
const FIRST_FD: RawFd = 3;
/// More than this many passed sockets is not believed (a garbled `LISTEN_FDS`).
const MAX_FDS: usize = 1024;

/// What systemd told this process.
#[derive(Default)]
struct Environment {
    /// The passed sockets, by name (`LISTEN_FDNAMES`, else "unknown"): each taken once.
    fds: Vec<(String, Option<OwnedFd>)>,
    notify: Option<NotifyTo>,
    /// Half of `WATCHDOG_USEC`, when the watchdog is for us.
    watchdog: Option<Duration>,
}

/// Where `NOTIFY_SOCKET` points.
#[derive(Clone, Debug, PartialEq, Eq)]
enum NotifyTo {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

static ENV: OnceLock<Mutex<Environment>> = OnceLock::new();

/// Read (and remove) systemd's variables. Call before any thread starts: the environment
/// is changed.
pub(crate) fn take_environment() {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let ours =
        |name: &str| var(name).and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let mut env = Environment::default();
    if let Some(count) = var("LISTEN_FDS") {
        if ours("LISTEN_PID") {
            let count = count.parse::<usize>().unwrap_or(0).min(MAX_FDS);
            let names: Vec<String> = var("LISTEN_FDNAMES")
                .map(|n| n.split(':').map(str::to_string).collect())
                .unwrap_or_default();
            for i in 0..count {
                let name = names.get(i).cloned().unwrap_or_else(|| "unknown".into());
                let fd = FIRST_FD + RawFd::try_from(i).unwrap_or(RawFd::MAX - FIRST_FD);
                env.fds.push((name, claim(fd)));
            }
        }
    }
    if let Some(to) = std::env::var_os("NOTIFY_SOCKET") {
        use std::os::unix::ffi::OsStrExt;
        let bytes = to.as_bytes();
        env.notify = match bytes.first() {
            Some(b'@') => Some(NotifyTo::Abstract(bytes[1..].to_vec())),
            Some(b'/') => Some(NotifyTo::Path(PathBuf::from(to.clone()))),
            _ => None,
        };
    }
    let watchdog_ours = var("WATCHDOG_PID").is_none() || ours("WATCHDOG_PID");
    env.watchdog = var("WATCHDOG_USEC")
        .and_then(|u| u.parse::<u64>().ok())
        .filter(|&u| u > 0 && watchdog_ours)
        .map(|u| Duration::from_micros(u / 2));
    for name in [
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
    ] {
        std::env::remove_var(name);
    }
    let _ = ENV.set(Mutex::new(env));
}

/// Take descriptor `fd`, passed by systemd, if it is open: closed on exec from now on, so
/// that a command of `-e` does not inherit it.
#[allow(unsafe_code)] // fcntl on a bare descriptor number, and owning it: no safe wrapper
fn claim(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only reads the descriptor's flags, and fails on one that is not open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return None;
    }
    // SAFETY: the descriptor is open and was passed to this process for it to own (LISTEN_FDS
    // and LISTEN_PID name this process); nothing else in it takes descriptors from 3 on by
    // number, and each is claimed once, here.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        Some(OwnedFd::from_raw_fd(fd))
    }
}

/// The socket systemd passed for `listen systemd:` (`name`: `systemd:NAME`, matched
/// against `LISTEN_FDNAMES`); the error says what is missing.
pub(crate) fn listener(name: Option<&str>) -> Result<OwnedFd, String> {
    let spec = match name {
        Some(n) => format!("'systemd:{n}'"),
        None => "'systemd:'".to_string(),
    };
    let Some(env) = ENV.get() else {
        return Err(format!("{spec}: systemd's environment was not read"));
    };
    let mut env = env.lock().unwrap_or_else(|e| e.into_inner());
    if env.fds.is_empty() {
        return Err(format!(
            "{spec}: systemd passed no socket (LISTEN_FDS and LISTEN_PID do not name this \
             process): start stls from a .socket unit, or with systemd-socket-activate"
        ));
    }
    let names: Vec<String> = env.fds.iter().map(|(n, _)| n.clone()).collect();
    let index = match name {
        Some(n) => names.iter().position(|m| m == n).ok_or_else(|| {
            format!(
                "{spec}: systemd passed no socket of that name (LISTEN_FDNAMES: {})",
                names.join(", ")
            )
        })?,
        None if names.len() == 1 => 0,
        None => {
            return Err(format!(
                "{spec}: systemd passed {} sockets ({}): name one with systemd:NAME",
                names.len(),
                names.join(", ")
            ))
        }
    };
    env.fds[index]
        .1
        .take()
        .ok_or_else(|| format!("{spec}: the socket is not open, or was taken already"))
}

/// Tell systemd `state` (lines of `KEY=VALUE`), when it asked to be told; a notification that
/// cannot be sent is dropped.
fn notify(state: &str) {
    let Some(to) = ENV
        .get()
        .and_then(|e| e.lock().ok().and_then(|e| e.notify.clone()))
    else {
        return;
    };
    let _ = send(&to, state.as_bytes());
}

fn send(to: &NotifyTo, msg: &[u8]) -> std::io::Result<()> {
    use std::os::unix::net::UnixDatagram;
    let sock = UnixDatagram::unbound()?;
    // systemd reads its socket at once; never wait on it.
    sock.set_nonblocking(true)?;
    match to {
        NotifyTo::Path(path) => sock.send_to(msg, path).map(drop),
        NotifyTo::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(msg, &addr).map(drop)
        }
    }
}

/// Listening, with what it serves loaded.
pub(crate) fn ready() {
    notify("READY=1");
}

/// A reload begins (`ready` follows when it is done, good or bad).
pub(crate) fn reloading() {
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
}

/// Draining, or stopping.
pub(crate) fn stopping() {
    notify("STOPPING=1");
}

/// Still alive: to be said every [`watchdog_interval`].
pub(crate) fn watchdog() {
    notify("WATCHDOG=1");
}

/// How often to say [`watchdog`]: half of `WATCHDOG_USEC`, when systemd watches us.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    ENV.get()
        .and_then(|e| e.lock().ok().and_then(|e| e.watchdog))
}

/// CLOCK_MONOTONIC in microseconds, as systemd's `MONOTONIC_USEC` wants it.
#[allow(unsafe_code)] // clock_gettime: std's Instant does not give its value
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the struct it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000).saturating_add(nanos / 1000)
}
