//! `stls connect`: resolve, connect within `-w`, handshake, relay.

use std::time::Instant;

use anyhow::{anyhow, Result};
use rustls::ClientConnection;

use crate::net;
use crate::relay::Relay;
use crate::report;
use crate::session::Session;
use crate::settings::Connect;
use crate::tls_socket::TlsSocket;

pub(crate) fn run(s: &Connect) -> Result<()> {
    let deadline = s.common.wait.map(|w| Instant::now() + w);
    let route = s
        .proxies
        .route(&s.target, &s.name, s.starttls, s.common.family)?;
    let sock = match route.hops.first() {
        None => {
            let addrs = net::resolve(&s.target, s.common.family)?;
            net::connect(&s.target, &addrs, deadline)?
        }
        Some(proxy) => {
            let addrs = net::resolve(&proxy.addr, s.common.family)
                .map_err(|e| e.context(format!("proxy {proxy}")))?;
            net::connect(&proxy.addr, &addrs, deadline)
                .map_err(|e| e.context(format!("proxy {proxy}")))?
        }
    };
    let addr = sock.peer_addr().ok();
    let tls = ClientConnection::new(s.config.clone(), s.server_name.clone())
        .map_err(|e| anyhow!("TLS setup: {e}"))?;
    let mut relay = Relay::new(s.common.options(s.explain.clone()))?;
    // Said once signals are ours (the relay catches them): from here SIGINT/SIGTERM end the
    // connection with 130/143.
    if let Some(addr) = addr {
        match route.hops.first() {
            None => report::verbose(format_args!("connected to {} ({addr})", s.target)),
            Some(first) => report::verbose(format_args!("connected to proxy {first} ({addr})")),
        }
    }
    for (i, hop) in route.hops.iter().enumerate() {
        let next = route
            .hops
            .get(i + 1)
            .map_or(s.target.to_string(), |h| h.addr.to_string());
        report::verbose(format_args!("proxy {hop} is asked for {next}"));
    }
    let peer = Session::new(
        TlsSocket::new(sock, tls.into()),
        s.target.to_string(),
        addr,
        deadline.map(|at| (at, "-w")),
        s.common.exec.is_some(),
        route.stages,
    );
    relay.add(peer)?;
    relay.run()
}
