//! stls against openssl: `stls connect` ↔ `openssl s_server` and `stls listen` ↔
//! `openssl s_client`, TLS 1.2 and 1.3, ECDSA P-256 and RSA-2048 certificates, data each way
//! checked byte for byte. Skipped, with a message, where openssl is not installed.

use crate::util;

use std::process::Command;

use util::pki::{s, KeyType, Leaf, Pki, VALID};
use util::{
    assert_same, connect, free_port, have, random_bytes, wait_listening, Input, Listener, Proc,
};

const VERSIONS: [(&str, &str); 2] = [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")];
const KEYS: [KeyType; 2] = [KeyType::P256, KeyType::Rsa2048];

/// `openssl s_server VERSION` for one connection on 127.0.0.1:`port`, serving `leaf`; what it
/// receives goes to its stdout, and it sends its stdin (`input`).
pub(crate) fn s_server(leaf: &Leaf, version: &str, port: u16, input: Input) -> Proc {
    let mut cmd = Command::new("openssl");
    // -nbio: in its default blocking mode s_server can block in a read after sending one
    // chunk of its stdin, when the handshake and its stdin became ready at the same moment.
    cmd.args(["s_server", "-nbio", "-quiet", "-naccept", "1", version])
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .args(["-cert", s(&leaf.cert), "-key", s(&leaf.key)]);
    let proc = Proc::spawn(&mut cmd, input);
    wait_listening(port);
    proc
}

#[test]
fn connect_to_openssl_s_server() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    for key in KEYS {
        let leaf = pki.ca.server("srv", &["localhost"], key, VALID);
        for (flag, name) in VERSIONS {
            let cell = format!("stls connect → s_server {flag} {key:?}");
            // Client → server: s_server's stdin stays open so it keeps reading.
            let data = random_bytes(1 << 20, 11);
            let port = free_port();
            // Under TLS 1.2 close_notify ends both directions: a pipe's EOF waits for the
            // peer unless stls is told it expects nothing back.
            let server = s_server(&leaf, flag, port, Input::Held);
            let one_way: &[&str] = if name == "TLSv1.2" {
                &["--send-only"]
            } else {
                &[]
            };
            let mut args = vec!["--cacert", s(&pki.ca.cert), "-v"];
            args.extend(one_way);
            let client = connect(
                &format!("localhost:{port}"),
                &args,
                Input::Bytes(data.clone()),
            );
            client.expect_code(0).expect_stderr(name);
            let server = server.finish_or_kill(std::time::Duration::from_secs(10));
            assert_eq!(server.code(), 0, "{cell}: s_server: {}", server.stderr);
            assert_same(&server.stdout, &data, &cell);

            // Server → client: s_server sends its stdin and keeps the connection open; once
            // every byte is through, our stdin ends (under TLS 1.2: Ctrl-D on a terminal, the
            // one EOF that does not wait for the peer), and both sides exchange close_notify.
            let data = random_bytes(1 << 20, 12);
            let port = free_port();
            let server = s_server(&leaf, flag, port, Input::Bytes(data.clone()));
            let mut cmd = util::stls();
            cmd.args(["connect", &format!("localhost:{port}")])
                .args(["--cacert", s(&pki.ca.cert)]);
            let tty = name == "TLSv1.2";
            let mut client = Proc::spawn(&mut cmd, if tty { Input::Terminal } else { Input::Held });
            client.wait_stdout(data.len()).unwrap();
            if tty {
                client.type_eof();
            } else {
                client.close_stdin();
            }
            let client = client.finish();
            client.expect_code(0);
            let server = server.finish_or_kill(std::time::Duration::from_secs(10));
            assert_eq!(server.code(), 0, "{cell}: s_server: {}", server.stderr);
            assert_same(&client.stdout, &data, &cell);
        }
    }
}

fn s_client(port: u16, version: &str, ca: &str, extra: &[&str], input: Input) -> Proc {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-quiet", "-nocommands", version])
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "localhost", "-verify_hostname", "localhost"])
        .args(["-CAfile", ca, "-verify_return_error"])
        .args(extra);
    Proc::spawn(&mut cmd, input)
}

#[test]
fn openssl_s_client_to_listen() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    for key in KEYS {
        let leaf = pki.ca.server("srv", &["localhost"], key, VALID);
        let identity = ["--cert", s(&leaf.cert), "--key", s(&leaf.key), "-v"];
        for (flag, name) in VERSIONS {
            let cell = format!("s_client {flag} → stls listen {key:?}");
            // Client → server: s_client sends its stdin and closes at EOF (-no_ign_eof).
            let data = random_bytes(1 << 20, 13);
            let listener = Listener::start(&identity, Input::Held);
            let client = s_client(
                listener.port,
                flag,
                s(&pki.ca.cert),
                &["-no_ign_eof"],
                Input::Bytes(data.clone()),
            )
            .finish();
            assert_eq!(client.code(), 0, "{cell}: s_client: {}", client.stderr);
            let server = listener.finish();
            server.expect_code(0).expect_stderr(name);
            assert_same(&server.stdout, &data, &cell);

            // Server → client: stls listen sends its stdin; s_client reads until the close.
            let data = random_bytes(1 << 20, 14);
            let mut args = identity.to_vec();
            if name == "TLSv1.2" {
                args.push("--send-only");
            }
            let listener = Listener::start(&args, Input::Bytes(data.clone()));
            let client = s_client(listener.port, flag, s(&pki.ca.cert), &[], Input::Null).finish();
            assert_eq!(client.code(), 0, "{cell}: s_client: {}", client.stderr);
            assert_same(&client.stdout, &data, &cell);
            listener.finish().expect_code(0);
        }
    }
}

#[test]
fn tls_min_13_against_a_tls12_only_server_fails_the_handshake() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let port = free_port();
    let server = s_server(&pki.server, "-tls1_2", port, Input::Held);
    connect(
        &format!("localhost:{port}"),
        &["--cacert", s(&pki.ca.cert), "--tls-min", "1.3"],
        Input::Null,
    )
    .expect_code(4)
    .expect_stderr("refused the TLS handshake");
    drop(server);
}
