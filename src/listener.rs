//! `stls listen`: bind, announce the address (and the ephemeral certificate's fingerprint),
//! accept one connection, handshake, relay.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{anyhow, Result};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use rustls::ServerConnection;

use crate::conn::Conn;
use crate::error::{io_phrase, Class};
use crate::net;
use crate::relay::{self, Session};
use crate::report;
use crate::settings::Listen;
use crate::trust::{describe_tls_error, Seen};

pub fn run(s: &Listen) -> Result<()> {
    let mut listener = net::bind(s.host.as_deref(), s.port, s.common.family)?;
    let local = listener.local_addr()?;
    if s.ephemeral {
        report::info(format_args!("sha256 fingerprint {}", s.fingerprint));
    } else {
        report::verbose(format_args!(
            "certificate sha256 fingerprint {}",
            s.fingerprint
        ));
    }
    report::info(format_args!("listening on {local}"));

    let (sock, addr) = accept(&mut listener)?;
    drop(listener); // one connection: later clients are refused, not left waiting
    report::verbose(format_args!("connection from {addr}"));
    let _ = sock.set_nodelay(true);
    let deadline = s.common.wait.map(|w| Instant::now() + w);
    let tls = ServerConnection::new(s.config.clone()).map_err(|e| anyhow!("TLS setup: {e}"))?;
    let peer = format!("client {addr}");
    let describe = |e: &rustls::Error| {
        let chain = s
            .client_verifier
            .as_ref()
            .map(|v| v.presented())
            .unwrap_or_default();
        let seen = Seen {
            peer: &peer,
            chain: &chain,
            our_alpn: &s.alpn,
            we_serve: true,
        };
        let (class, msg) = describe_tls_error(e, &seen);
        class.err(msg)
    };
    let on_established = |conn: &Conn| report::session(&conn.tls, "client");
    let session = Session {
        peer: peer.clone(),
        describe: &describe,
        on_established: &on_established,
        no_shutdown: s.common.no_shutdown,
        handshake_deadline: deadline,
        idle: s.common.idle,
    };
    relay::run(Conn::new(sock, tls.into()), &session)
}

/// Wait for the first connection.
fn accept(listener: &mut TcpListener) -> Result<(TcpStream, SocketAddr)> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(listener, Token(0), Interest::READABLE)?;
    let mut events = Events::with_capacity(4);
    loop {
        match listener.accept() {
            Ok(pair) => return Ok(pair),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // A client that gave up before we got to it: wait for the next.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) =>
            {
                continue
            }
            Err(e) => {
                return Err(Class::Network.err(format!("accepting a connection: {}", io_phrase(&e))))
            }
        }
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}
