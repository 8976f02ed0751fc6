//! A scripted TLS server in the test process (rustls over std sockets), for behaviours a real
//! stls peer never shows: replying only after the client's close_notify, dropping TCP without
//! close_notify, resetting the connection. Over TCP or a Unix socket.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::StreamOwned;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

pub(crate) type Tls = StreamOwned<ServerConnection, TcpStream>;

/// The same over a Unix socket.
pub(crate) type UnixTls = StreamOwned<ServerConnection, UnixStream>;

/// Serve one connection on 127.0.0.1 with `script`; returns the port and the thread, whose
/// join yields what the script returned.
pub(crate) fn serve<T: Send + 'static>(
    cert: &Path,
    key: &Path,
    script: impl FnOnce(&mut Tls) -> T + Send + 'static,
) -> (u16, JoinHandle<T>) {
    let config = server_config(cert, key);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let thread = std::thread::spawn(move || {
        let (sock, _) = listener.accept().expect("accept");
        let mut tls = handshake(config, sock);
        script(&mut tls)
    });
    (port, thread)
}

/// Serve one connection on the Unix socket at `path` (bound before this returns) with
/// `script`; the thread's join yields what the script returned.
pub(crate) fn serve_unix<T: Send + 'static>(
    path: &Path,
    cert: &Path,
    key: &Path,
    script: impl FnOnce(&mut UnixTls) -> T + Send + 'static,
) -> JoinHandle<T> {
    let config = server_config(cert, key);
    let listener = UnixListener::bind(path).expect("bind the Unix socket");
    std::thread::spawn(move || {
        let (sock, _) = listener.accept().expect("accept");
        let mut tls = handshake(config, sock);
        script(&mut tls)
    })
}

fn server_config(cert: &Path, key: &Path) -> Arc<ServerConfig> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("cert file")
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    Arc::new(config)
}

fn handshake<S: Read + Write>(
    config: Arc<ServerConfig>,
    sock: S,
) -> StreamOwned<ServerConnection, S> {
    let conn = ServerConnection::new(config).expect("server connection");
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("handshake");
    }
    tls
}

/// TLS as the server, with `cert` and `key`, on a socket whose plaintext dialogue is done.
pub(crate) fn accept_on(sock: TcpStream, cert: &Path, key: &Path) -> Tls {
    handshake(server_config(cert, key), sock)
}

/// TLS as a client of `name`, trusting `ca`, on a socket whose plaintext dialogue is done.
pub(crate) fn connect_on(
    sock: TcpStream,
    ca: &Path,
    name: &str,
) -> StreamOwned<ClientConnection, TcpStream> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(cert.expect("CA cert")).expect("CA cert added");
    }
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(name.to_string()).expect("server name");
    let conn = ClientConnection::new(Arc::new(config), name).expect("client connection");
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("handshake");
    }
    tls
}

/// Read until the client's close_notify; returns what came before it.
pub(crate) fn read_to_close_notify<S: Read + Write>(
    tls: &mut StreamOwned<ServerConnection, S>,
) -> Vec<u8> {
    let mut got = Vec::new();
    tls.read_to_end(&mut got).expect("read until close_notify");
    got
}

/// Send close_notify and flush it.
pub(crate) fn close_notify<S: Read + Write>(tls: &mut StreamOwned<ServerConnection, S>) {
    tls.conn.send_close_notify();
    tls.flush().expect("flush close_notify");
}
