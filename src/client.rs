//! `stls connect`: resolve, connect within `-w`, handshake, relay.

use std::time::Instant;

use anyhow::{anyhow, Result};
use rustls::ClientConnection;

use crate::conn::Conn;
use crate::net;
use crate::relay::{self, Session};
use crate::report;
use crate::settings::Connect;
use crate::trust::{describe_tls_error, Seen};

pub fn run(s: &Connect) -> Result<()> {
    let deadline = s.common.wait.map(|w| Instant::now() + w);
    let addrs = net::resolve(&s.target, s.common.family)?;
    let sock = net::connect(&s.target, &addrs, deadline)?;
    if let Ok(addr) = sock.peer_addr() {
        report::verbose(format_args!("connected to {} ({addr})", s.target));
    }
    let tls = ClientConnection::new(s.config.clone(), s.server_name.clone())
        .map_err(|e| anyhow!("TLS setup: {e}"))?;
    let peer = s.target.to_string();
    let describe = |e: &rustls::Error| {
        let chain = s.verifier.presented();
        let seen = Seen {
            peer: &peer,
            chain: &chain,
            our_alpn: &s.alpn,
            we_serve: false,
        };
        let (class, msg) = describe_tls_error(e, &seen);
        class.err(msg)
    };
    let on_established = |conn: &Conn| report::session(&conn.tls, "server");
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
