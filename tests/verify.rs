//! Trust: the server is verified by default; --cacert, --pin and --insecure change how; every
//! rejection exits 5 with a message that names the problem, and nothing reaches stdout.

use crate::util;

use util::pki::{s, Ca, KeyType, Pki, EXPIRED, NOT_YET, VALID};
use util::{connect, Input, Listener};

fn listen_with(pki_cert: &str, pki_key: &str, reply: &[u8]) -> Listener {
    Listener::start(
        &["--cert", pki_cert, "--key", pki_key],
        Input::Bytes(reply.to_vec()),
    )
}

#[test]
fn ephemeral_certificate_is_rejected_without_trust() {
    let listener = Listener::start(&[], Input::Bytes(b"secret".to_vec()));
    let client = connect(&listener.addr(), &[], Input::Null);
    client
        .expect_code(5)
        .expect_stderr("self-signed")
        .expect_stderr(&listener.pin());
    assert!(client.stdout.is_empty());
    // The listener learns that its certificate was refused, and waits for another client:
    // a failed handshake is not the session.
    listener.wait_line("refused the TLS handshake");
    let pinned = connect(&listener.addr(), &["--pin", &listener.pin()], Input::Null);
    pinned.expect_code(0);
    assert_eq!(pinned.stdout, b"secret");
    listener.finish().expect_code(0);
}

#[test]
fn pin_accepts_the_right_fingerprint_in_any_spelling() {
    for spelling in [
        |fp: &str| fp.to_string(),
        |fp: &str| fp.to_lowercase(),
        |fp: &str| fp.replace(':', ""),
    ] {
        let listener = Listener::start(&[], Input::Bytes(b"pinned".to_vec()));
        let pin = spelling(&listener.pin());
        let client = connect(&listener.addr(), &["--pin", &pin], Input::Null);
        client.expect_code(0);
        assert_eq!(client.stdout, b"pinned");
        listener.finish().expect_code(0);
    }
}

#[test]
fn pin_mismatch_is_rejected_and_shows_the_fingerprint_seen() {
    let listener = Listener::start(&[], Input::Bytes(b"secret".to_vec()));
    let wrong = "00".repeat(32);
    let client = connect(&listener.addr(), &["--pin", &wrong], Input::Null);
    client
        .expect_code(5)
        .expect_stderr("does not match --pin")
        .expect_stderr(&listener.pin());
    assert!(client.stdout.is_empty());
}

#[test]
fn malformed_pin_is_a_usage_error() {
    let client = connect("127.0.0.1:1", &["--pin", "AB:CD"], Input::Null);
    client
        .expect_code(2)
        .expect_stderr("not a SHA-256 fingerprint");
}

#[test]
fn insecure_connects_and_warns() {
    let listener = Listener::start(&[], Input::Bytes(b"hi".to_vec()));
    let client = connect(&listener.addr(), &["--insecure"], Input::Null);
    client.expect_code(0).expect_stderr("stls: warning:");
    assert_eq!(client.stdout, b"hi");
}

#[test]
fn cacert_verifies_the_chain_and_the_name() {
    let pki = Pki::new();
    let l = listen_with(s(&pki.server.cert), s(&pki.server.key), b"ok");
    let client = connect(
        &format!("localhost:{}", l.port),
        &["--cacert", s(&pki.ca.cert)],
        Input::Null,
    );
    client.expect_code(0);
    assert_eq!(client.stdout, b"ok");
    // By IP address too: the certificate has 127.0.0.1 as an IP SAN.
    let l = listen_with(s(&pki.server.cert), s(&pki.server.key), b"ip");
    let client = connect(&l.addr(), &["--cacert", s(&pki.ca.cert)], Input::Null);
    client.expect_code(0);
    assert_eq!(client.stdout, b"ip");
}

#[test]
fn wrong_name_is_rejected_listing_the_valid_names() {
    let pki = Pki::new();
    let l = listen_with(s(&pki.server.cert), s(&pki.server.key), b"secret");
    let client = connect(
        &format!("localhost:{}", l.port),
        &["--cacert", s(&pki.ca.cert), "--servername", "other.example"],
        Input::Null,
    );
    client
        .expect_code(5)
        .expect_stderr("not valid for other.example")
        .expect_stderr("localhost, 127.0.0.1, ::1");
    assert!(client.stdout.is_empty());
}

#[test]
fn untrusted_issuer_is_named() {
    let pki = Pki::new();
    let other = Ca::new(pki.dir.path(), "another CA");
    let l = listen_with(s(&pki.server.cert), s(&pki.server.key), b"secret");
    let client = connect(
        &format!("localhost:{}", l.port),
        &["--cacert", s(&other.cert)],
        Input::Null,
    );
    client
        .expect_code(5)
        .expect_stderr("issued by CN=stls test CA")
        .expect_stderr("not trusted");
    assert!(client.stdout.is_empty());
}

#[test]
fn impostor_ca_of_the_same_name_is_caught() {
    let pki = Pki::new();
    let impostor = Pki::new(); // also called "stls test CA", another key
    let l = listen_with(s(&pki.server.cert), s(&pki.server.key), b"secret");
    let client = connect(
        &format!("localhost:{}", l.port),
        &["--cacert", s(&impostor.ca.cert)],
        Input::Null,
    );
    client
        .expect_code(5)
        .expect_stderr("invalid signature")
        .expect_stderr("CN=stls test CA");
    assert!(client.stdout.is_empty());
}

#[test]
fn expired_and_not_yet_valid_certificates_give_the_date() {
    let pki = Pki::new();
    for (days, needle) in [(EXPIRED, "expired on "), (NOT_YET, "is not valid until ")] {
        let leaf = pki.ca.server("dated", &["localhost"], KeyType::P256, days);
        let l = listen_with(s(&leaf.cert), s(&leaf.key), b"secret");
        let client = connect(
            &format!("localhost:{}", l.port),
            &["--cacert", s(&pki.ca.cert)],
            Input::Null,
        );
        client
            .expect_code(5)
            .expect_stderr(needle)
            .expect_stderr(" UTC");
        assert!(client.stdout.is_empty());
    }
}

#[test]
fn no_sni_still_verifies_the_name() {
    let pki = Pki::new();
    let l = listen_with(s(&pki.server.cert), s(&pki.server.key), b"ok");
    let client = connect(
        &format!("localhost:{}", l.port),
        &["--cacert", s(&pki.ca.cert), "--no-sni"],
        Input::Null,
    );
    client.expect_code(0);
    let l = listen_with(s(&pki.server.cert), s(&pki.server.key), b"no");
    let client = connect(
        &format!("localhost:{}", l.port),
        &[
            "--cacert",
            s(&pki.ca.cert),
            "--no-sni",
            "--servername",
            "x.example",
        ],
        Input::Null,
    );
    client.expect_code(5);
}

#[test]
fn verbose_shows_the_session_and_the_certificate() {
    let pki = Pki::new();
    let rsa = pki
        .ca
        .server("rsa", &["localhost"], KeyType::Rsa2048, VALID);
    let l = listen_with(s(&rsa.cert), s(&rsa.key), b"v");
    let client = connect(
        &format!("localhost:{}", l.port),
        &["--cacert", s(&pki.ca.cert), "-v"],
        Input::Null,
    );
    client
        .expect_code(0)
        .expect_stderr("TLSv1.3")
        .expect_stderr("TLS13_")
        .expect_stderr("key exchange X25519MLKEM768")
        .expect_stderr("server certificate: CN=localhost")
        .expect_stderr("names:  localhost")
        .expect_stderr("issuer: CN=stls test CA")
        .expect_stderr("sha256: ");
    assert_eq!(client.stdout, b"v");
}

#[test]
fn invisible_characters_in_the_certificate_are_shown_escaped() {
    let pki = Pki::new();
    // Right-to-left override and zero-width space: "evil\u{202e}gpj.exe" reads "evilexe.jpg".
    let hostile = pki.ca.server_with_cn(
        "hostile",
        "evil\u{202e}gpj.exe\u{200b}\u{2066}",
        &["localhost"],
    );
    let l = listen_with(s(&hostile.cert), s(&hostile.key), b"");
    let client = connect(
        &format!("localhost:{}", l.port),
        &["--cacert", s(&pki.ca.cert), "-v"],
        Input::Null,
    );
    client
        .expect_code(0)
        .expect_stderr(r"server certificate: CN=evil\u{202e}gpj.exe\u{200b}\u{2066}");
    for c in ['\u{202e}', '\u{200b}', '\u{2066}'] {
        assert!(!client.stderr.contains(c), "{c:?} unescaped");
    }
}

#[test]
fn tls_min_13_refuses_a_tls12_only_peer() {
    // stls offers 1.2 and 1.3 by default; a 1.3-only listener and client agree on 1.3.
    let listener = Listener::start(&["--tls-min", "1.3"], Input::Bytes(b"13".to_vec()));
    let client = connect(
        &listener.addr(),
        &["--pin", &listener.pin(), "--tls-min", "1.3", "-v"],
        Input::Null,
    );
    client.expect_code(0).expect_stderr("TLSv1.3");
}

#[test]
fn double_verbose_shows_the_whole_chain() {
    let pki = Pki::new();
    let dir = util::tempdir();
    let chain = [
        std::fs::read(&pki.server.cert).unwrap(),
        std::fs::read(&pki.ca.cert).unwrap(),
    ]
    .concat();
    let chain = util::write(dir.path(), "chain.pem", chain);
    let l = listen_with(s(&chain), s(&pki.server.key), b"");
    let client = connect(
        &format!("localhost:{}", l.port),
        &["--cacert", s(&pki.ca.cert), "-vv"],
        Input::Null,
    );
    client
        .expect_code(0)
        .expect_stderr("server certificate: CN=localhost")
        .expect_stderr("chain certificate 1: CN=stls test CA");
    // A single -v shows the leaf only.
    let l = listen_with(s(&chain), s(&pki.server.key), b"");
    let client = connect(
        &format!("localhost:{}", l.port),
        &["--cacert", s(&pki.ca.cert), "-v"],
        Input::Null,
    );
    assert!(
        !client.stderr.contains("chain certificate"),
        "{}",
        client.stderr
    );
}
