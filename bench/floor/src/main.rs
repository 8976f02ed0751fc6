//! The floor of `bench/scaleout.py`: a TLS server that is nothing but rustls and mio. It
//! accepts, makes the handshake with stls's defaults (the aws-lc-rs provider, TLS 1.2 and 1.3,
//! AES-128-GCM first in the server's order, sessions resumed from memory), reads and drops
//! whatever comes, and closes at the client's end or on any error: no backend, no timers, no
//! logs. What stls spends per handshake beyond this is its own.
//!
//!     stls-floor ADDR:PORT CERT.pem KEY.pem

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Arc;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{CipherSuite, ServerConfig, ServerConnection};

const LISTENER: Token = Token(0);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, cert, key] = &args[..] else {
        eprintln!("usage: stls-floor ADDR:PORT CERT.pem KEY.pem");
        std::process::exit(2);
    };
    if let Err(e) = serve(addr, cert, key) {
        eprintln!("stls-floor: {e}");
        std::process::exit(1);
    }
}

fn serve(addr: &str, cert: &str, key: &str) -> Result<(), Box<dyn std::error::Error>> {
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != CipherSuite::TLS13_AES_128_GCM_SHA256);
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.ignore_client_order = true;
    let config = Arc::new(config);

    let mut listener = TcpListener::bind(addr.parse()?)?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: HashMap<Token, (TcpStream, ServerConnection)> = HashMap::new();
    let mut next = 1;
    let mut events = Events::with_capacity(256);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        for event in &events {
            let mut ready = Vec::new();
            if event.token() == LISTENER {
                while let Ok((mut sock, _)) = listener.accept() {
                    let token = Token(next);
                    next += 1;
                    poll.registry()
                        .register(&mut sock, token, Interest::READABLE)?;
                    conns.insert(token, (sock, ServerConnection::new(config.clone())?));
                    ready.push(token);
                }
            } else {
                ready.push(event.token());
            }
            for token in ready {
                let Some((sock, tls)) = conns.get_mut(&token) else {
                    continue;
                };
                if !advance(sock, tls) {
                    if let Some((mut sock, _)) = conns.remove(&token) {
                        poll.registry().deregister(&mut sock)?;
                    }
                }
            }
        }
    }
}

/// Read until the socket has no more, answering as the handshake asks; whether the
/// connection goes on.
fn advance(sock: &mut TcpStream, tls: &mut ServerConnection) -> bool {
    let mut sink = [0u8; 4096];
    loop {
        match tls.read_tls(sock) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
        if tls.process_new_packets().is_err() {
            return false;
        }
        while matches!(tls.reader().read(&mut sink), Ok(n) if n > 0) {}
        // The flight and tickets are small: a socket buffer takes them whole.
        while tls.wants_write() {
            if tls.write_tls(sock).is_err() {
                return false;
            }
        }
    }
}
