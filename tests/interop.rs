//! stls against openssl: `stls connect` ↔ `openssl s_server` and `stls listen` ↔
//! `openssl s_client`, TLS 1.2 and 1.3, ECDSA P-256 and RSA-2048 certificates, data each way
//! checked byte for byte. Skipped, with a message, where openssl is not installed.

mod util;

use std::process::Command;

use util::pki::{s, KeyType, Leaf, Pki, VALID};
use util::{
    assert_same, connect, free_port, have, random_bytes, wait_listening, Input, Listener, Proc,
};

const VERSIONS: [(&str, &str); 2] = [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")];
const KEYS: [KeyType; 2] = [KeyType::P256, KeyType::Rsa2048];

fn s_server(leaf: &Leaf, version: &str, port: u16, input: Input) -> Proc {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_server", "-quiet", "-naccept", "1", version])
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
            let server = s_server(&leaf, flag, port, Input::Held);
            let client = connect(
                &format!("localhost:{port}"),
                &["--cacert", s(&pki.ca.cert), "-v"],
                Input::Bytes(data.clone()),
            );
            client.expect_code(0).expect_stderr(name);
            // stls saw s_server's close_notify, so s_server has written everything; s_server
            // itself sometimes lingers after that connection: do not wait on it.
            let server = server.finish_or_kill(std::time::Duration::from_secs(5));
            assert_same(&server.stdout, &data, &cell);

            // Server → client: s_server sends its stdin, then closes.
            let data = random_bytes(1 << 20, 12);
            let port = free_port();
            let server = s_server(&leaf, flag, port, Input::Bytes(data.clone()));
            let mut cmd = util::stls();
            cmd.args(["connect", &format!("localhost:{port}")])
                .args(["--cacert", s(&pki.ca.cert)]);
            let client = Proc::spawn(&mut cmd, Input::Held);
            // s_server sometimes neither closes nor exits after its stdin ends; killed after
            // 5 s it drops TCP without close_notify, which stls must report (6).
            server.finish_or_kill(std::time::Duration::from_secs(5));
            let client = client.finish();
            assert!(
                client.code() == 0 || client.code() == 6,
                "{cell}: {}",
                client.stderr
            );
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
            let listener = Listener::start(&identity, Input::Bytes(data.clone()));
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
