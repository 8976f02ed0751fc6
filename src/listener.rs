//! `stls listen`: bind, announce the address (and the ephemeral certificate's fingerprint),
//! then accept: one session (the first client to complete its handshake; those that fail
//! before are logged and forgotten), or with `-k` many at once on the one event loop.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{anyhow, Result};
use mio::net::TcpStream;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use rustls::ServerConnection;

use crate::net;
use crate::relay::{Listening, Relay};
use crate::report;
use crate::session::{Options, Session};
use crate::settings::Listen;
use crate::tls_socket::TlsSocket;
use crate::trust::{describe_tls_error, Seen, Side};

pub(crate) fn run(s: &Listen) -> Result<()> {
    let sock = net::bind(s.host.as_deref(), s.port, s.common.family)?;
    let local = sock.local_addr()?;
    let nofile = raise_fd_limit();
    let describe = |e: &rustls::Error, peer: &str, established: bool| {
        // The loop is one thread and asks right after the failing call, so the chain the
        // verifier recorded is this connection's.
        let chain = s
            .client_verifier
            .as_ref()
            .map(|v| v.presented())
            .unwrap_or_default();
        let seen = Seen {
            peer,
            chain: &chain,
            our_alpn: &s.alpn,
            side: Side::Server,
            established,
        };
        let (class, msg) = describe_tls_error(e, &seen);
        class.err(msg)
    };
    let mut relay = Relay::new(Options {
        stall: s.keep_open.then_some(s.stall_timeout),
        exec: s.common.exec.clone().map(|p| p.with_nofile(nofile)),
        many: s.keep_open,
        ..s.common.options(Side::Server, &describe)
    })?;
    // -w bounds the handshake too, when it is the shorter.
    let (limit, option) = match s.common.wait {
        Some(w) if w < s.handshake_timeout => (w, "-w"),
        _ => (s.handshake_timeout, "--handshake-timeout"),
    };
    let accept = |sock: TcpStream, addr: SocketAddr| -> Result<Session> {
        let _ = sock.set_nodelay(true);
        let tls = ServerConnection::new(s.config.clone()).map_err(|e| anyhow!("TLS setup: {e}"))?;
        Ok(Session::new(
            TlsSocket::new(sock, tls.into()),
            format!("client {addr}"),
            Some(addr),
            Some((Instant::now() + limit, option)),
            s.common.exec.is_some(),
        ))
    };
    relay.listen(Listening {
        sock,
        keep_open: s.keep_open,
        max_conns: s.max_conns,
        max_handshakes: s.max_handshakes,
        accept: &accept,
    })?;
    if s.ephemeral {
        report::info(format_args!("sha256 fingerprint {}", s.fingerprint));
    } else {
        report::verbose(format_args!(
            "certificate sha256 fingerprint {}",
            s.fingerprint
        ));
    }
    report::info(format_args!("listening on {local}"));
    relay.run()
}

/// Many connections need many descriptors: raise the soft limit to the hard one (running out
/// anyway is handled where connections are accepted). Returns the limit as it was, when it was
/// raised, for `-e` commands to start with.
fn raise_fd_limit() -> Option<Rlimit> {
    let limit = getrlimit(Resource::Nofile);
    // None is unlimited: nothing to raise to, or nothing to raise.
    let (Some(current), Some(maximum)) = (limit.current, limit.maximum) else {
        return None;
    };
    if current >= maximum {
        return None;
    }
    let raised = Rlimit {
        current: Some(maximum),
        maximum: Some(maximum),
    };
    setrlimit(Resource::Nofile, raised).ok().map(|()| limit)
}
