//! Every exit status has a test that provokes it, and bad input gets one clear line, never a
//! panic: 1 other (files), 2 usage, 3 network, 4 handshake, 5 certificate (tests/verify.rs),
//! 6 truncation (tests/stream.rs), 7 timeout.

use crate::util;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use util::pki::{s, KeyType, Pki, VALID};
use util::{connect, run, tempdir, write, Done, Input, Listener};

#[test]
fn usage_errors_exit_2() {
    run(&[], Input::Null).expect_code(2);
    run(&["frobnicate"], Input::Null).expect_code(2);
    run(&["connect"], Input::Null).expect_code(2);
    run(&["connect", "example.com"], Input::Null)
        .expect_code(2)
        .expect_stderr("no port given");
    run(&["connect", "example.com:99999"], Input::Null)
        .expect_code(2)
        .expect_stderr("not a port number");
    run(&["connect", "::1:443"], Input::Null)
        .expect_code(2)
        .expect_stderr("[ADDRESS]:PORT");
    run(&["listen", "nope"], Input::Null).expect_code(2);
    run(&["listen", "80x"], Input::Null)
        .expect_code(2)
        .expect_stderr("stls: '80x' is not a port number");
    run(&["connect", "a:1", "--pin", "x", "--insecure"], Input::Null).expect_code(2);
    run(&["connect", "a:1", "-w", "0"], Input::Null).expect_code(2);
    run(&["connect", "a:1", "--tls-min", "1.1"], Input::Null).expect_code(2);
}

#[test]
fn help_and_version_exit_0() {
    let help = run(&["--help"], Input::Null);
    help.expect_code(0);
    assert!(String::from_utf8_lossy(&help.stdout).contains("connect"));
    let version = run(&["--version"], Input::Null);
    version.expect_code(0);
    assert!(String::from_utf8_lossy(&version.stdout).contains("rustls"));
}

#[test]
fn missing_file_names_it() {
    let dir = tempdir();
    let missing = dir.path().join("nope.pem");
    run(&["listen", "0", "--cert", s(&missing)], Input::Null)
        .expect_code(1)
        .expect_stderr(&format!("stls: {}: no such file", missing.display()));
    run(&["connect", "a:1", "--cacert", s(&missing)], Input::Null)
        .expect_code(1)
        .expect_stderr("nope.pem: no such file");
}

#[test]
fn empty_pem_has_no_certificate() {
    let dir = tempdir();
    let empty = write(dir.path(), "empty.pem", "");
    run(&["listen", "0", "--cert", s(&empty)], Input::Null)
        .expect_code(1)
        .expect_stderr("empty.pem: no certificate found");
    run(&["connect", "a:1", "--cacert", s(&empty)], Input::Null)
        .expect_code(1)
        .expect_stderr("empty.pem: no certificate found");
}

#[test]
fn garbage_pem_is_reported_not_panicked_on() {
    let dir = tempdir();
    let bad = write(
        dir.path(),
        "bad.pem",
        "-----BEGIN CERTIFICATE-----\n%%%not base64%%%\n-----END CERTIFICATE-----\n",
    );
    run(&["listen", "0", "--cert", s(&bad)], Input::Null)
        .expect_code(1)
        .expect_stderr("bad.pem");
    let binary = write(dir.path(), "bin.pem", [0u8, 159, 146, 150, 255, 0, 1]);
    run(&["connect", "a:1", "--cacert", s(&binary)], Input::Null)
        .expect_code(1)
        .expect_stderr("bin.pem");
}

#[test]
fn key_that_does_not_match_names_the_key_file() {
    let pki = Pki::new();
    let other = pki.ca.server("other", &["localhost"], KeyType::P256, VALID);
    run(
        &[
            "listen",
            "0",
            "--cert",
            s(&pki.server.cert),
            "--key",
            s(&other.key),
        ],
        Input::Null,
    )
    .expect_code(1)
    .expect_stderr(&format!(
        "{}: the key does not match the certificate",
        other.key.display()
    ));
}

#[test]
fn swapped_cert_and_key_are_explained() {
    let pki = Pki::new();
    run(
        &[
            "listen",
            "0",
            "--cert",
            s(&pki.server.key),
            "--key",
            s(&pki.server.cert),
        ],
        Input::Null,
    )
    .expect_code(1)
    .expect_stderr(&format!(
        "{}: no certificate found, but a private key, and {} holds a certificate: --cert and \
         --key are swapped",
        pki.server.key.display(),
        pki.server.cert.display()
    ));
}

#[test]
fn missing_key_is_not_called_a_swap() {
    let pki = Pki::new();
    // The certificate given as the key too: the key is missing, nothing is swapped.
    let done = run(
        &[
            "listen",
            "0",
            "--cert",
            s(&pki.server.cert),
            "--key",
            s(&pki.server.cert),
        ],
        Input::Null,
    );
    done.expect_code(1)
        .expect_stderr("no private key found (it holds a certificate, not its key)");
    assert!(!done.stderr.contains("swap"), "{}", done.stderr);
    // The key given as the certificate.
    let done = run(
        &[
            "listen",
            "0",
            "--cert",
            s(&pki.server.key),
            "--key",
            s(&pki.server.key),
        ],
        Input::Null,
    );
    done.expect_code(1)
        .expect_stderr("no certificate found (it holds a private key, not a certificate)");
    assert!(!done.stderr.contains("swap"), "{}", done.stderr);
    // A key given as the CA file is not about --cert and --key at all.
    let done = run(
        &["connect", "a:1", "--cacert", s(&pki.server.key)],
        Input::Null,
    );
    done.expect_code(1);
    assert!(!done.stderr.contains("swap"), "{}", done.stderr);
}

#[test]
fn encrypted_key_is_explained() {
    let pki = Pki::new();
    let dir = tempdir();
    let encrypted = write(
        dir.path(),
        "enc.key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    run(
        &[
            "listen",
            "0",
            "--cert",
            s(&pki.server.cert),
            "--key",
            s(&encrypted),
        ],
        Input::Null,
    )
    .expect_code(1)
    .expect_stderr("an encrypted key? decrypt it with openssl pkey");
}

#[test]
fn key_in_the_certificate_file_is_found() {
    let pki = Pki::new();
    let dir = tempdir();
    let both = [
        std::fs::read(&pki.server.cert).unwrap(),
        std::fs::read(&pki.server.key).unwrap(),
    ]
    .concat();
    let combined = write(dir.path(), "both.pem", both);
    let l = Listener::start(
        &["--cert", s(&combined)],
        Input::Bytes(b"one file".to_vec()),
    );
    let client = connect(
        &format!("localhost:{}", l.port),
        &["--cacert", s(&pki.ca.cert)],
        Input::Null,
    );
    client.expect_code(0);
    assert_eq!(client.stdout, b"one file");
    // Without a key anywhere, the message says where it looked.
    run(&["listen", "0", "--cert", s(&pki.server.cert)], Input::Null)
        .expect_code(1)
        .expect_stderr("pass the key with --key FILE");
}

#[test]
fn refused_connection_exits_3() {
    let port = util::free_port();
    connect(&format!("127.0.0.1:{port}"), &["--insecure"], Input::Null)
        .expect_code(3)
        .expect_stderr(&format!(
            "cannot connect to 127.0.0.1:{port}: connection refused"
        ));
}

#[test]
fn unresolvable_host_exits_3() {
    connect("no-such-host.invalid:443", &[], Input::Null)
        .expect_code(3)
        .expect_stderr("cannot resolve no-such-host.invalid");
}

#[test]
fn port_in_use_exits_3() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    run(&["listen", &format!("127.0.0.1:{port}")], Input::Null)
        .expect_code(3)
        .expect_stderr("cannot listen on 127.0.0.1");
}

#[test]
fn port_in_use_on_every_interface_names_the_address_tried() {
    // `listen PORT` binds [::] for IPv6 and IPv4 together; 0.0.0.0 only without IPv6.
    let taken = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let has_ipv6 = TcpListener::bind("[::1]:0").is_ok();
    let wanted = if has_ipv6 {
        format!("cannot listen on [::]:{port} (all interfaces, IPv6 and IPv4): ")
    } else {
        format!("cannot listen on 0.0.0.0:{port}: ")
    };
    run(&["listen", &port.to_string()], Input::Null)
        .expect_code(3)
        .expect_stderr(&wanted)
        .expect_stderr("in use");
}

/// `stls connect --insecure` to a plain TCP server that handles the connection with `serve`.
fn connect_to_plain_server(serve: impl FnOnce(TcpStream) + Send + 'static) -> Done {
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = plain.local_addr().unwrap().port();
    let server = std::thread::spawn(move || serve(plain.accept().unwrap().0));
    let done = connect(&format!("127.0.0.1:{port}"), &["--insecure"], Input::Null);
    server.join().unwrap();
    done
}

#[test]
fn non_tls_server_is_a_handshake_failure() {
    connect_to_plain_server(|mut sock| {
        let mut buf = [0u8; 512];
        let _ = sock.read(&mut buf);
        let _ = sock.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
    })
    .expect_code(4)
    .expect_stderr("is it speaking TLS");
}

#[test]
fn closed_during_handshake_is_a_handshake_failure() {
    // The server reads the whole ClientHello, then closes in order (FIN): it refused TLS.
    connect_to_plain_server(|mut sock| {
        let mut head = [0u8; 5];
        sock.read_exact(&mut head).unwrap();
        let len = u16::from_be_bytes([head[3], head[4]]) as usize;
        let mut body = vec![0u8; len];
        sock.read_exact(&mut body).unwrap();
    })
    .expect_code(4)
    .expect_stderr("closed the connection during the TLS handshake");
}

#[test]
fn reset_during_handshake_is_a_network_failure() {
    // The server reads part of the ClientHello and closes with the rest unread: TCP resets,
    // and a reset is exit 3 whenever it comes.
    connect_to_plain_server(|mut sock| {
        let mut head = [0u8; 5];
        sock.read_exact(&mut head).unwrap();
    })
    .expect_code(3)
    .expect_stderr("connection reset by peer during the TLS handshake");
}

#[test]
fn silent_server_times_out_with_w() {
    // Accepts TCP (the kernel does, from the backlog) and never speaks.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    connect(
        &format!("127.0.0.1:{port}"),
        &["--insecure", "-w", "0.5"],
        Input::Null,
    )
    .expect_code(7)
    .expect_stderr("timed out");
    drop(silent);
}

#[test]
fn silent_client_times_out_the_listener_with_w() {
    let listener = Listener::start(&["-w", "0.5"], Input::Null);
    let sock = std::net::TcpStream::connect(listener.addr()).unwrap();
    listener.finish().expect_code(7).expect_stderr("timed out");
    drop(sock);
}

#[test]
fn idle_connection_times_out_with_i() {
    let listener = Listener::start(&[], Input::Held);
    connect(
        &listener.addr(),
        &["--pin", &listener.pin(), "-i", "0.5"],
        Input::Held,
    )
    .expect_code(7)
    .expect_stderr("-i");
}

#[test]
fn a_server_that_never_answers_is_a_timeout_even_without_w() {
    // A listener whose accept queue is full drops new SYNs, as a firewall that drops
    // packets does: connect gives up on its own (exit 7) and says which option sets the limit.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    sock.listen(0).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    // Fill the queue (a backlog of 0 holds one) with a connection nobody accepts.
    let _filler = TcpStream::connect(addr).unwrap();
    run(&["connect", &addr.to_string(), "--insecure"], Input::Null)
        .expect_code(7)
        .expect_stderr("-w sets the limit");
    // With -w, its limit is the one.
    run(
        &["connect", &addr.to_string(), "--insecure", "-w", "0.5"],
        Input::Null,
    )
    .expect_code(7)
    .expect_stderr(&format!("timed out connecting to {addr}"));
}

#[test]
fn a_low_port_without_the_right_says_what_it_needs() {
    // We run as root, who may bind any port: the test runs stls as nobody.
    if !util::have("runuser") {
        return;
    }
    let probe = std::process::Command::new("runuser")
        .args(["-u", "nobody", "--", "true"])
        .output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        eprintln!("SKIP: cannot run a command as nobody (not root?); this check did not run");
        return;
    }
    // A copy nobody can execute: the build directory may not be readable by it.
    let dir = tempdir();
    let copy = dir.path().join("stls");
    std::fs::copy(env!("CARGO_BIN_EXE_stls"), &copy).expect("copy stls");
    use std::os::unix::fs::PermissionsExt;
    for path in [dir.path(), copy.as_path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let mut cmd = std::process::Command::new("runuser");
    cmd.args(["-u", "nobody", "--"])
        .arg(&copy)
        .args(["listen", "127.0.0.1:1"]);
    let done = util::Proc::spawn(&mut cmd, Input::Null).finish();
    if done.stderr.contains("listening on") {
        eprintln!("SKIP: nobody may bind port 1 here (ip_unprivileged_port_start); did not run");
        return;
    }
    done.expect_code(3)
        .expect_stderr("cannot listen on 127.0.0.1:1: permission denied")
        .expect_stderr("CAP_NET_BIND_SERVICE")
        .expect_stderr("1024");
}
