//! `stls connect`: resolve, connect within `-w`, handshake, relay.

use std::time::Instant;

use anyhow::{anyhow, Result};
use rustls::ClientConnection;

use crate::net;
use crate::relay::Relay;
use crate::report;
use crate::session::Session;
use crate::settings::Connect;
use crate::starttls::Preamble;
use crate::tls_socket::TlsSocket;

pub(crate) fn run(s: &Connect) -> Result<()> {
    let deadline = s.common.wait.map(|w| Instant::now() + w);
    let addrs = net::resolve(&s.target, s.common.family)?;
    let sock = net::connect(&s.target, &addrs, deadline)?;
    let addr = sock.peer_addr().ok();
    let tls = ClientConnection::new(s.config.clone(), s.server_name.clone())
        .map_err(|e| anyhow!("TLS setup: {e}"))?;
    let mut relay = Relay::new(s.common.options(s.explain.clone()))?;
    // Said once signals are ours (the relay catches them): from here SIGINT/SIGTERM end the
    // connection with 130/143.
    if let Some(addr) = addr {
        report::verbose(format_args!("connected to {} ({addr})", s.target));
    }
    let peer = Session::new(
        TlsSocket::new(sock, tls.into()),
        s.target.to_string(),
        addr,
        deadline.map(|at| (at, "-w")),
        s.common.exec.is_some(),
        s.starttls
            .as_ref()
            .map(|(proto, name)| Preamble::client(*proto, name, &s.target.to_string())),
    );
    relay.add(peer)?;
    relay.run()
}
