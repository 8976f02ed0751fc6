//! TLS controls: client certificates (required, optional, missing, untrusted, expired),
//! versions and cipher suites as the peer sees them, ALPN agreement and mismatch, key logs.

use crate::util;

use std::process::Command;

use util::pki::{s, Ca, KeyType, Pki, EXPIRED, VALID};
use util::{connect, free_port, have, wait_listening, Input, Listener, Proc};

/// A listener with the fixture's server certificate and extra flags.
fn listen(pki: &Pki, extra: &[&str], reply: &[u8]) -> Listener {
    let mut args = vec!["--cert", s(&pki.server.cert), "--key", s(&pki.server.key)];
    args.extend_from_slice(extra);
    Listener::start(&args, Input::Bytes(reply.to_vec()))
}

fn to(l: &Listener) -> String {
    format!("localhost:{}", l.port)
}

#[test]
fn client_certificate_accepted_and_shown_with_v() {
    let pki = Pki::new();
    let client = pki.ca.client("alice", "alice", KeyType::P256, VALID);
    let l = listen(&pki, &["--client-ca", s(&pki.ca.cert), "-v"], b"welcome");
    let c = connect(
        &to(&l),
        &[
            "--cacert",
            s(&pki.ca.cert),
            "--cert",
            s(&client.cert),
            "--key",
            s(&client.key),
        ],
        Input::Bytes(b"hello".to_vec()),
    );
    c.expect_code(0);
    assert_eq!(c.stdout, b"welcome");
    let server = l.finish();
    server
        .expect_code(0)
        .expect_stderr("client certificate: CN=alice");
    assert_eq!(server.stdout, b"hello");
}

#[test]
fn missing_client_certificate_is_rejected() {
    let pki = Pki::new();
    let l = listen(&pki, &["--client-ca", s(&pki.ca.cert)], b"secret");
    let c = connect(&to(&l), &["--cacert", s(&pki.ca.cert)], Input::Null);
    c.expect_code(4)
        .expect_stderr("requires a client certificate");
    assert!(c.stdout.is_empty());
    // The listener says why, and waits for a client it accepts.
    l.wait_line("presented no client certificate");
    l.stop().expect_code(143);
}

#[test]
fn untrusted_and_expired_client_certificates_are_rejected() {
    let pki = Pki::new();
    let stranger_ca = Ca::new(pki.dir.path(), "stranger CA");
    let stranger = stranger_ca.client("mallory", "mallory", KeyType::P256, VALID);
    let expired = pki.ca.client("old", "old", KeyType::P256, EXPIRED);
    for (leaf, why) in [
        (&stranger, "issued by CN=stranger CA"),
        (&expired, "expired on"),
    ] {
        let l = listen(&pki, &["--client-ca", s(&pki.ca.cert)], b"secret");
        let c = connect(
            &to(&l),
            &[
                "--cacert",
                s(&pki.ca.cert),
                "--cert",
                s(&leaf.cert),
                "--key",
                s(&leaf.key),
            ],
            Input::Null,
        );
        c.expect_code(4)
            .expect_stderr("does not accept our certificate");
        assert!(c.stdout.is_empty());
        // A client cannot pin anything for the server: no such advice.
        assert!(!c.stderr.contains("pin"), "{}", c.stderr);
        l.wait_line(why);
        l.stop().expect_code(143);
    }
    // The untrusted one names the flag that would trust it.
    let l = listen(&pki, &["--client-ca", s(&pki.ca.cert)], b"");
    connect(
        &to(&l),
        &[
            "--cacert",
            s(&pki.ca.cert),
            "--cert",
            s(&stranger.cert),
            "--key",
            s(&stranger.key),
        ],
        Input::Null,
    );
    l.wait_line("--client-ca FILE");
    l.stop().expect_code(143);
}

#[test]
fn expired_client_certificate_is_told_so() {
    let pki = Pki::new();
    let expired = pki.ca.client("old", "old", KeyType::P256, EXPIRED);
    let l = listen(&pki, &["--client-ca", s(&pki.ca.cert)], b"secret");
    connect(
        &to(&l),
        &[
            "--cacert",
            s(&pki.ca.cert),
            "--cert",
            s(&expired.cert),
            "--key",
            s(&expired.key),
        ],
        Input::Null,
    )
    .expect_code(4)
    .expect_stderr("it does not accept our certificate: expired or not yet valid, it says");
    // The listener logs the rejected client and waits for the next.
    l.wait_line("expired");
    l.stop().expect_code(143);
}

#[test]
fn optional_client_certificate() {
    let pki = Pki::new();
    let client = pki.ca.client("bob", "bob", KeyType::Ed25519, VALID);
    // Without a certificate: accepted.
    let l = listen(
        &pki,
        &["--client-ca-optional", s(&pki.ca.cert), "-v"],
        b"anon",
    );
    let c = connect(&to(&l), &["--cacert", s(&pki.ca.cert)], Input::Null);
    c.expect_code(0);
    assert_eq!(c.stdout, b"anon");
    l.finish()
        .expect_code(0)
        .expect_stderr("client presented no certificate");
    // With one: verified and shown.
    let l = listen(
        &pki,
        &["--client-ca-optional", s(&pki.ca.cert), "-v"],
        b"bob",
    );
    let c = connect(
        &to(&l),
        &[
            "--cacert",
            s(&pki.ca.cert),
            "--cert",
            s(&client.cert),
            "--key",
            s(&client.key),
        ],
        Input::Null,
    );
    c.expect_code(0);
    l.finish()
        .expect_code(0)
        .expect_stderr("client certificate: CN=bob");
}

#[test]
fn client_certificate_with_openssl_peers() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let client = pki.ca.client("carol", "carol", KeyType::Rsa2048, VALID);
    // openssl s_client -cert → stls listen --client-ca
    // The listener's stdin stays open: s_client quits at the first close_notify it sees.
    let l = Listener::start(
        &[
            "--cert",
            s(&pki.server.cert),
            "--key",
            s(&pki.server.key),
            "--client-ca",
            s(&pki.ca.cert),
            "-v",
        ],
        Input::Held,
    );
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-quiet", "-nocommands", "-no_ign_eof"])
        .args(["-connect", &format!("127.0.0.1:{}", l.port)])
        .args(["-CAfile", s(&pki.ca.cert), "-verify_return_error"])
        .args(["-cert", s(&client.cert), "-key", s(&client.key)]);
    let sc = Proc::spawn(&mut cmd, Input::Bytes(b"from openssl".to_vec())).finish();
    assert_eq!(sc.code(), 0, "s_client: {}", sc.stderr);
    let server = l.finish();
    server
        .expect_code(0)
        .expect_stderr("client certificate: CN=carol");
    assert_eq!(server.stdout, b"from openssl");

    // stls connect --cert → openssl s_server -Verify 1
    let (port, server) = s_server_requiring_client_cert(&pki);
    let c = connect(
        &format!("localhost:{port}"),
        &[
            "--cacert",
            s(&pki.ca.cert),
            "--cert",
            s(&client.cert),
            "--key",
            s(&client.key),
        ],
        Input::Bytes(b"from stls".to_vec()),
    );
    c.expect_code(0);
    assert_eq!(server.finish().stdout, b"from stls");

    // … and without a certificate, s_server -Verify refuses us: exit 4.
    let (port, server) = s_server_requiring_client_cert(&pki);
    connect(
        &format!("localhost:{port}"),
        &["--cacert", s(&pki.ca.cert)],
        Input::Null,
    )
    .expect_code(4);
    drop(server);
}

/// `openssl s_server -Verify 1` with the fixture's server certificate: its port and process.
fn s_server_requiring_client_cert(pki: &Pki) -> (u16, Proc) {
    let port = free_port();
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_server", "-nbio", "-quiet", "-naccept", "1", "-Verify", "1",
    ])
    .args(["-accept", &format!("127.0.0.1:{port}")])
    .args(["-cert", s(&pki.server.cert), "-key", s(&pki.server.key)])
    .args(["-CAfile", s(&pki.ca.cert), "-verify_return_error"]);
    let server = Proc::spawn(&mut cmd, Input::Held);
    wait_listening(port);
    (port, server)
}

/// `openssl s_client -brief` against a stls listener with `flags`: what openssl reports.
fn seen_by_openssl(pki: &Pki, flags: &[&str], client_flags: &[&str]) -> String {
    let l = listen(pki, flags, b"");
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-brief", "-nocommands"])
        .args(["-connect", &format!("127.0.0.1:{}", l.port)])
        .args(["-CAfile", s(&pki.ca.cert)])
        .args(client_flags);
    let sc = Proc::spawn(&mut cmd, Input::Null).finish();
    drop(l);
    sc.stderr
}

#[test]
fn versions_and_ciphers_as_openssl_sees_them() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let seen = seen_by_openssl(&pki, &["--tls-max", "1.2"], &[]);
    assert!(seen.contains("Protocol version: TLSv1.2"), "{seen}");
    let seen = seen_by_openssl(&pki, &["--tls-min", "1.3"], &[]);
    assert!(seen.contains("Protocol version: TLSv1.3"), "{seen}");
    let seen = seen_by_openssl(&pki, &["--ciphers", "TLS_CHACHA20_POLY1305_SHA256"], &[]);
    assert!(
        seen.contains("Ciphersuite: TLS_CHACHA20_POLY1305_SHA256"),
        "{seen}"
    );
    let seen = seen_by_openssl(
        &pki,
        &[
            "--tls-max",
            "1.2",
            "--ciphers",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ],
        &[],
    );
    assert!(seen.contains("ECDHE-ECDSA-AES128-GCM-SHA256"), "{seen}");
    // A TLS 1.3-only listener refuses a TLS 1.2-only client.
    let seen = seen_by_openssl(&pki, &["--tls-min", "1.3"], &["-tls1_2"]);
    assert!(!seen.contains("Protocol version"), "{seen}");
}

#[test]
fn the_listener_chooses_the_suite_by_its_own_order() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    // openssl lists AES-256-GCM first; the listener prefers AES-128-GCM (SHA-256), in TLS 1.3
    // and in TLS 1.2.
    let seen = seen_by_openssl(&pki, &[], &[]);
    assert!(
        seen.contains("Ciphersuite: TLS_AES_128_GCM_SHA256"),
        "{seen}"
    );
    let seen = seen_by_openssl(&pki, &["--tls-max", "1.2"], &[]);
    assert!(seen.contains("ECDHE-ECDSA-AES128-GCM-SHA256"), "{seen}");
    // --ciphers's order is the listener's, whatever the client's.
    let seen = seen_by_openssl(
        &pki,
        &["--ciphers", "TLS_AES_256_GCM_SHA384,TLS_AES_128_GCM_SHA256"],
        &[
            "-ciphersuites",
            "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384",
        ],
    );
    assert!(
        seen.contains("Ciphersuite: TLS_AES_256_GCM_SHA384"),
        "{seen}"
    );
}

#[test]
fn alpn_agreement_and_mismatch() {
    let pki = Pki::new();
    let l = listen(&pki, &["--alpn", "h2", "--alpn", "http/1.1"], b"");
    connect(
        &to(&l),
        &["--cacert", s(&pki.ca.cert), "--alpn", "http/1.1", "-v"],
        Input::Null,
    )
    .expect_code(0)
    .expect_stderr("ALPN http/1.1");

    let l = listen(&pki, &["--alpn", "h2"], b"");
    connect(
        &to(&l),
        &[
            "--cacert",
            s(&pki.ca.cert),
            "--alpn",
            "imap",
            "--alpn",
            "pop3",
        ],
        Input::Null,
    )
    .expect_code(4)
    .expect_stderr("none of the ALPN protocols we offered (imap, pop3)");
    l.wait_line("no ALPN protocol we accept (we accept: h2)");
    l.stop().expect_code(143);
}

#[test]
fn keylog_file_gets_the_secrets() {
    let pki = Pki::new();
    let dir = util::tempdir();
    let log = dir.path().join("keys.log");
    let l = listen(&pki, &[], b"x");
    connect(
        &to(&l),
        &["--cacert", s(&pki.ca.cert), "--keylog", s(&log)],
        Input::Null,
    )
    .expect_code(0)
    .expect_stderr("warning");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("CLIENT_HANDSHAKE_TRAFFIC_SECRET "), "{text}");
    assert!(text.contains("CLIENT_TRAFFIC_SECRET_0 "), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // A key log that others could read is made private before secrets go in.
    let open = dir.path().join("open.log");
    std::fs::write(&open, "").unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let l = listen(&pki, &[], b"x");
    connect(
        &to(&l),
        &["--cacert", s(&pki.ca.cert), "--keylog", s(&open)],
        Input::Null,
    )
    .expect_code(0);
    let mode = std::fs::metadata(&open).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&open).unwrap();
    assert!(text.contains("CLIENT_TRAFFIC_SECRET_0 "), "{text}");

    // SSLKEYLOGFILE does the same for the listener.
    let env_log = dir.path().join("env.log");
    let mut cmd = util::stls();
    cmd.args(["listen", "127.0.0.1:0", "--cert", s(&pki.server.cert)])
        .args(["--key", s(&pki.server.key)])
        .env("SSLKEYLOGFILE", &env_log);
    let l = Listener::start_cmd(&mut cmd, Input::Null);
    connect(&to(&l), &["--cacert", s(&pki.ca.cert)], Input::Null).expect_code(0);
    l.finish().expect_code(0);
    let text = std::fs::read_to_string(&env_log).unwrap();
    assert!(text.contains("SERVER_HANDSHAKE_TRAFFIC_SECRET "), "{text}");
}

#[test]
fn bad_control_values_are_usage_errors() {
    util::run(&["connect", "a:1", "--ciphers", "RC4_MD5"], Input::Null)
        .expect_code(2)
        .expect_stderr("unknown cipher suite 'RC4_MD5'; valid: ");
    util::run(
        &["connect", "a:1", "--tls-min", "1.3", "--tls-max", "1.2"],
        Input::Null,
    )
    .expect_code(2)
    .expect_stderr("--tls-min is above --tls-max");
    util::run(&["connect", "a:1", "--alpn", ""], Input::Null)
        .expect_code(2)
        .expect_stderr("--alpn");
}

#[test]
fn no_resume_stops_session_tickets() {
    if !have("openssl") {
        return;
    }
    // A ticket is what a later connection would resume with: issued by default, not with
    // --no-resume (resuming across connections needs a listener that keeps accepting).
    let pki = Pki::new();
    let dir = util::tempdir();
    let tickets = |flags: &[&str]| {
        let l = listen(&pki, flags, b"");
        let sess = dir.path().join("sess");
        let _ = std::fs::remove_file(&sess);
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", "-quiet", "-nocommands"])
            .args(["-connect", &format!("127.0.0.1:{}", l.port)])
            .args(["-sess_out", s(&sess)]);
        Proc::spawn(&mut cmd, Input::Null).finish();
        l.finish().expect_code(0);
        let text = Command::new("openssl")
            .args(["sess_id", "-noout", "-text", "-in", s(&sess)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&text.stdout).contains("session ticket")
    };
    assert!(tickets(&[]), "no session ticket by default");
    assert!(
        !tickets(&["--no-resume"]),
        "a session ticket despite --no-resume"
    );
}
