//! Tunnels: `listen --to` (TLS in front of a plain service) and `connect --from` (a local
//! port for a TLS service), with curl, python's http.server and openssl s_server as the
//! parts, PROXY protocol headers, client-certificate allow lists, close propagation, and the
//! environment of `-e` children.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::util::openssl_ca::OpensslCa;
use crate::util::pki::{s, KeyType, Pki, VALID};
use crate::util::*;

/// `stls listen 127.0.0.1:0 --to BACKEND` with the fixture's certificate, plus `extra`.
fn tunnel_to(pki: &Pki, backend: &str, extra: &[&str]) -> Listener {
    let mut args = vec!["--to", backend, "--cert", s(&pki.server.cert)];
    args.extend(["--key", s(&pki.server.key)]);
    args.extend(extra);
    Listener::start(&args, Input::Null)
}

/// `python3 -m http.server` serving `dir` on a free port.
pub(crate) fn http_server(dir: &std::path::Path) -> (u16, Proc) {
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "http.server",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
    ])
    .current_dir(dir);
    let proc = Proc::spawn(&mut cmd, Input::Null);
    wait_listening(port);
    (port, proc)
}

pub(crate) fn curl(args: &[&str]) -> Done {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-S"]).args(args);
    Proc::spawn(&mut cmd, Input::Null).finish()
}

#[test]
fn curl_through_listen_to_a_web_server() {
    if !have("curl") {
        return;
    }
    let pki = Pki::new();
    let site = tempdir();
    let body = random_bytes(5 << 20, 3);
    std::fs::write(site.path().join("big.bin"), &body).unwrap();
    let (web, _server) = http_server(site.path());
    let l = tunnel_to(&pki, &format!("127.0.0.1:{web}"), &["-v", "--threads", "3"]);
    let url = format!("https://localhost:{}/big.bin", l.port);
    // Three event loops, each with its own listening socket on the port.
    let needle = format!(":{:04X} ", l.port);
    let listening = std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.len() > 3 && format!("{} ", cols[1]).ends_with(&needle) && cols[3] == "0A"
        })
        .count();
    assert_eq!(listening, 3);
    let got = curl(&["--cacert", s(&pki.ca.cert), &url]);
    got.expect_code(0);
    assert_same(&got.stdout, &body, "5 MiB through the tunnel");
    // 20 at once.
    let downloads: Vec<_> = (0..20)
        .map(|_| {
            let mut cmd = Command::new("curl");
            cmd.args(["-s", "--cacert", s(&pki.ca.cert), &url]);
            Proc::spawn(&mut cmd, Input::Null)
        })
        .collect();
    for d in downloads {
        let got = d.finish();
        got.expect_code(0);
        assert_same(&got.stdout, &body, "one of 20 concurrent downloads");
    }
    l.wait_line(&format!("connecting to 127.0.0.1:{web}"));
}

#[test]
fn connect_from_gives_a_local_port_for_openssl_s_server() {
    if !have("curl") || !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let port = free_port();
    let mut cmd = Command::new("openssl");
    cmd.args(["s_server", "-www", "-accept", &format!("127.0.0.1:{port}")])
        .args(["-cert", s(&pki.server.cert), "-key", s(&pki.server.key)]);
    let _server = Proc::spawn(&mut cmd, Input::Held);
    wait_listening(port);
    let mut cmd = stls();
    cmd.args(["connect", &format!("localhost:{port}"), "--from", "0"])
        .args(["--cacert", s(&pki.ca.cert), "-v"]);
    let from = Listener::start_cmd(&mut cmd, Input::Null);
    // Plain text stays on loopback unless asked.
    assert!(from.proc.stderr_text().contains("listening on 127.0.0.1:"));
    let got = curl(&[&format!("http://127.0.0.1:{}/", from.port)]);
    got.expect_code(0);
    let page = String::from_utf8_lossy(&got.stdout);
    assert!(
        page.contains("Ciphers supported in s_server binary"),
        "{page}"
    );
    from.wait_line("TLSv1.3");
}

/// A plain backend that reads a PROXY header (and then echoes), returning the header.
pub(crate) fn proxy_backend(v2: bool) -> (u16, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut header = Vec::new();
        let mut byte = [0u8; 1];
        if v2 {
            let mut fixed = [0u8; 16];
            sock.read_exact(&mut fixed).unwrap();
            let len = u16::from_be_bytes([fixed[14], fixed[15]]) as usize;
            let mut rest = vec![0u8; len];
            sock.read_exact(&mut rest).unwrap();
            header.extend_from_slice(&fixed);
            header.extend_from_slice(&rest);
        } else {
            while !header.ends_with(b"\r\n") {
                sock.read_exact(&mut byte).unwrap();
                header.push(byte[0]);
            }
        }
        // Then echo until the client's end.
        let mut buf = [0u8; 4096];
        loop {
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => sock.write_all(&buf[..n]).unwrap(),
            }
        }
        header
    });
    (port, thread)
}

#[test]
fn the_backend_learns_the_client_address_from_a_proxy_header() {
    let pki = Pki::new();
    // Also on a dual-stack listener, where an IPv4 client and our own address read as
    // ::ffff:127.0.0.1: the header still says TCP4 (v2: 0x11) with plain IPv4 addresses.
    for (version, v2, dual) in [
        ("v1", false, false),
        ("v2", true, false),
        ("v1", false, true),
        ("v2", true, true),
    ] {
        let (port, backend) = proxy_backend(v2);
        let backend_addr = format!("127.0.0.1:{port}");
        let l = if dual {
            let mut cmd = stls();
            cmd.args([
                "listen",
                "0",
                "--to",
                &backend_addr,
                "--proxy-protocol",
                version,
            ])
            .args(["--cert", s(&pki.server.cert), "--key", s(&pki.server.key)]);
            Listener::start_cmd(&mut cmd, Input::Null)
        } else {
            tunnel_to(&pki, &backend_addr, &["--proxy-protocol", version])
        };
        let done = connect(
            &format!("127.0.0.1:{}", l.port),
            &["--cacert", s(&pki.ca.cert), "--servername", "localhost"],
            Input::Bytes(b"echo me\n".to_vec()),
        );
        done.expect_code(0);
        assert_eq!(done.stdout, b"echo me\n");
        let header = backend.join().unwrap();
        if v2 {
            assert_eq!(&header[..12], b"\r\n\r\n\0\r\nQUIT\n");
            assert_eq!(header[12..14], [0x21, 0x11], "v2, PROXY, TCP over IPv4");
            assert_eq!(header[16..20], [127, 0, 0, 1], "the client's address");
            assert_eq!(header[20..24], [127, 0, 0, 1]);
            assert_eq!(u16::from_be_bytes([header[26], header[27]]), l.port);
        } else {
            let text = String::from_utf8(header).unwrap();
            assert!(
                text.starts_with("PROXY TCP4 127.0.0.1 127.0.0.1 "),
                "{text}"
            );
            assert!(text.ends_with(&format!(" {}\r\n", l.port)), "{text}");
        }
    }
}

#[test]
fn close_propagates_both_ways_and_a_half_close_loses_nothing() {
    let pki = Pki::new();
    // The backend reads to the end, then answers with what it counted: the client's
    // close_notify became the backend's EOF, and the answer still came back.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let backend = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        sock.read_to_end(&mut got).unwrap();
        sock.write_all(format!("{} bytes\n", got.len()).as_bytes())
            .unwrap();
        got
    });
    let l = tunnel_to(&pki, &format!("127.0.0.1:{port}"), &[]);
    let data = random_bytes(300_000, 4);
    let done = connect(
        &format!("localhost:{}", l.port),
        &["--cacert", s(&pki.ca.cert)],
        Input::Bytes(data.clone()),
    );
    done.expect_code(0);
    assert_eq!(done.stdout, b"300000 bytes\n");
    assert_same(&backend.join().unwrap(), &data, "client → backend");

    // A backend that resets mid-stream: the TLS client is reset too.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        let mut sock = sock;
        sock.write_all(b"partial").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        socket2::SockRef::from(&sock)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    });
    let l = tunnel_to(&pki, &format!("127.0.0.1:{port}"), &[]);
    let mut cmd = stls();
    cmd.args([
        "connect",
        &format!("localhost:{}", l.port),
        "--cacert",
        s(&pki.ca.cert),
    ]);
    let done = Proc::spawn(&mut cmd, Input::Held).finish();
    done.expect_code(3);
    assert_eq!(done.stdout, b"partial");
    l.wait_line("the local connection failed (connection reset by peer)");

    // A backend that is down: the client gets a close without data, the listener a line.
    let down = format!("127.0.0.1:{}", free_port());
    let l = tunnel_to(&pki, &down, &[]);
    let done = connect(
        &format!("localhost:{}", l.port),
        &["--cacert", s(&pki.ca.cert)],
        Input::Null,
    );
    assert_ne!(done.code(), 0);
    assert!(done.stdout.is_empty());
    l.wait_line("connection refused");
}

#[test]
fn allow_lists_admit_only_the_named_client_certificates() {
    let pki = Pki::new();
    let alice = pki.ca.client("alice", "alice", KeyType::P256, VALID);
    let mallory = pki.ca.client("mallory", "mallory", KeyType::P256, VALID);
    let args = |extra: &[&str]| {
        let mut a = vec!["-k", "--client-ca", s(&pki.ca.cert)];
        a.extend(["--cert", s(&pki.server.cert), "--key", s(&pki.server.key)]);
        a.extend(["-c", "echo admitted $STLS_PEER_CN"]);
        a.extend_from_slice(extra);
        a.iter().map(|x| x.to_string()).collect::<Vec<_>>()
    };
    for extra in [&["--allow-cn", "alice"][..], &["--allow-san", "ALICE"]] {
        let a = args(extra);
        let l = Listener::start(
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            Input::Null,
        );
        let client = |leaf: &crate::util::pki::Leaf| {
            connect(
                &format!("localhost:{}", l.port),
                &[
                    "--cacert",
                    s(&pki.ca.cert),
                    "--cert",
                    s(&leaf.cert),
                    "--key",
                    s(&leaf.key),
                ],
                Input::Null,
            )
        };
        let ok = client(&alice);
        ok.expect_code(0);
        assert_eq!(ok.stdout, b"admitted alice\n");
        client(&mallory).expect_code(4);
        l.wait_line("is not admitted by --allow-cn/--allow-san (its CN: mallory");
    }
    // curl with a client certificate, through a tunnel with an allow list.
    if have("curl") {
        let site = tempdir();
        std::fs::write(site.path().join("hi.txt"), b"hi\n").unwrap();
        let (web, _server) = http_server(site.path());
        let l = tunnel_to(
            &pki,
            &format!("127.0.0.1:{web}"),
            &["--client-ca", s(&pki.ca.cert), "--allow-cn", "alice"],
        );
        let url = format!("https://localhost:{}/hi.txt", l.port);
        let cert = |leaf: &crate::util::pki::Leaf| {
            curl(&[
                "--cacert",
                s(&pki.ca.cert),
                "--cert",
                s(&leaf.cert),
                "--key",
                s(&leaf.key),
                &url,
            ])
        };
        let ok = cert(&alice);
        ok.expect_code(0);
        assert_eq!(ok.stdout, b"hi\n");
        assert_ne!(cert(&mallory).code(), 0);
    }
    // Without --client-ca there is nothing to choose from.
    run(&["listen", "0", "--allow-cn", "alice"], Input::Null)
        .expect_code(2)
        .expect_stderr("need --client-ca");
}

#[test]
fn exec_children_learn_the_peer_and_the_session() {
    let pki = Pki::new();
    let alice = pki.ca.client("alice", "alice", KeyType::P256, VALID);
    let script = "env | grep ^STLS_ | sort";
    let l = Listener::start(
        &[
            "-k",
            "--client-ca-optional",
            s(&pki.ca.cert),
            "--cert",
            s(&pki.server.cert),
            "--key",
            s(&pki.server.key),
            "--alpn",
            "demo",
            "-c",
            script,
        ],
        Input::Null,
    );
    let with = connect(
        &format!("localhost:{}", l.port),
        &[
            "--cacert",
            s(&pki.ca.cert),
            "--cert",
            s(&alice.cert),
            "--key",
            s(&alice.key),
            "--alpn",
            "demo",
        ],
        Input::Null,
    );
    with.expect_code(0);
    let env = String::from_utf8_lossy(&with.stdout).to_string();
    let alice_fp = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            s(&alice.cert),
        ])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .replace("sha256 Fingerprint=", "")
        })
        .unwrap_or_default();
    for line in [
        "STLS_ALPN=demo".to_string(),
        "STLS_PEER_CN=alice".to_string(),
        "STLS_PEER_SANS=DNS:alice".to_string(),
        format!("STLS_PEER_SHA256={alice_fp}"),
        "STLS_SNI=localhost".to_string(),
        "STLS_TLS_CIPHER=TLS13_".to_string(),
        "STLS_TLS_VERSION=TLSv1.3".to_string(),
    ] {
        assert!(env.contains(&line), "{line} missing from:\n{env}");
    }
    // Without a client certificate, the peer's variables are unset.
    let without = connect(
        &format!("localhost:{}", l.port),
        &["--cacert", s(&pki.ca.cert), "--alpn", "demo"],
        Input::Null,
    );
    without.expect_code(0);
    let env = String::from_utf8_lossy(&without.stdout);
    assert!(!env.contains("STLS_PEER_CN"), "{env}");
    assert!(env.contains("STLS_TLS_VERSION=TLSv1.3"), "{env}");
}

#[test]
fn sighup_reloads_the_certificate_for_new_handshakes_only() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let (cert, key) = (dir.join("live.pem"), dir.join("live.key"));
    std::fs::copy(&pki.server.cert, &cert).unwrap();
    std::fs::copy(&pki.server.key, &key).unwrap();
    let mut l = Listener::start(
        &["-k", "-v", "--cert", s(&cert), "--key", s(&key)],
        Input::Held,
    );
    let addr = format!("localhost:{}", l.port);
    // What a new handshake is served, as inspect sees it.
    let served = || {
        let done = run(
            &["inspect", "--json", "--cacert", s(&pki.ca.cert), &addr],
            Input::Null,
        );
        done.expect_code(0);
        let v: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
        v["chain"][0]["sha256"].as_str().unwrap().to_string()
    };
    let before = served();
    l.wait_line("connection from");
    // A connection that stays open across the reload.
    let mut cmd = stls();
    cmd.args(["connect", &addr, "--cacert", s(&pki.ca.cert)]);
    let mut open = Proc::spawn(&mut cmd, Input::Held);
    l.wait_line("connection from");
    // New certificate files, then SIGHUP.
    let next = pki
        .ca
        .server("next", &["localhost"], KeyType::Rsa2048, VALID);
    std::fs::copy(&next.cert, &cert).unwrap();
    std::fs::copy(&next.key, &key).unwrap();
    l.signal(libc::SIGHUP);
    l.wait_line("SIGHUP: reloaded");
    let after = served();
    assert_ne!(before, after);
    // The earlier connection still works: it gets what the listener's stdin sends.
    l.proc.stdin().write_all(b"still here\n").unwrap();
    open.wait_stdout(11).unwrap();
    open.close_stdin();
    // A bad file keeps what was loaded, and says why.
    std::fs::write(&key, b"not a key").unwrap();
    l.signal(libc::SIGHUP);
    l.wait_line("the certificates loaded before are kept");
    assert_eq!(served(), after);
}

/// stunnel with `conf` (its [service] sections), in the foreground.
fn stunnel(dir: &std::path::Path, conf: &str) -> Proc {
    let path = write(
        dir,
        "stunnel.conf",
        format!("foreground = yes\npid =\n{conf}"),
    );
    let mut cmd = Command::new("stunnel4");
    cmd.arg(s(&path));
    Proc::spawn(&mut cmd, Input::Null)
}

/// A plain backend that reads to the end and sends it back, once.
fn echo_backend() -> (u16, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        sock.read_to_end(&mut got).unwrap();
        sock.write_all(&got).unwrap();
        got
    });
    (port, thread)
}

/// Through a plain port: send `data`, end our side, read everything back.
fn round_trip(port: u16, data: &[u8]) -> Vec<u8> {
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    sock.write_all(data).unwrap();
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    sock.read_to_end(&mut back).unwrap();
    back
}

#[test]
fn stunnel_on_the_other_side_of_each_kind_of_tunnel() {
    if !have("stunnel4") {
        return;
    }
    let pki = Pki::new();
    let dir = tempdir();
    let data = random_bytes(200_000, 8);

    // plain → stunnel (client) → TLS → stls listen --to → plain backend
    let (backend, got) = echo_backend();
    let l = tunnel_to(&pki, &format!("127.0.0.1:{backend}"), &[]);
    let front = free_port();
    let _client = stunnel(
        dir.path(),
        &format!(
            "[c]\nclient = yes\naccept = 127.0.0.1:{front}\nconnect = 127.0.0.1:{}\n\
             CAfile = {}\nverifyChain = yes\ncheckHost = localhost\nsni = localhost\n",
            l.port,
            s(&pki.ca.cert)
        ),
    );
    wait_listening(front);
    assert_same(
        &round_trip(front, &data),
        &data,
        "stunnel → stls listen --to",
    );
    assert_same(&got.join().unwrap(), &data, "at the backend");

    // plain → stls connect --from → TLS → stunnel (server) → plain backend
    let (backend, got) = echo_backend();
    let tls_port = free_port();
    let dir2 = tempdir();
    let _server = stunnel(
        dir2.path(),
        &format!(
            "[s]\naccept = 127.0.0.1:{tls_port}\nconnect = 127.0.0.1:{backend}\ncert = {}\n\
             key = {}\n",
            s(&pki.server.cert),
            s(&pki.server.key)
        ),
    );
    wait_listening(tls_port);
    let mut cmd = stls();
    cmd.args(["connect", &format!("localhost:{tls_port}"), "--from", "0"])
        .args(["--cacert", s(&pki.ca.cert)]);
    let from = Listener::start_cmd(&mut cmd, Input::Null);
    assert_same(
        &round_trip(from.port, &data),
        &data,
        "stls connect --from → stunnel",
    );
    assert_same(&got.join().unwrap(), &data, "at the backend");
}

#[test]
fn exec_services_on_several_loops_reap_only_their_own_children() {
    let pki = Pki::new();
    let l = serve_k(
        &pki.server,
        &["--threads", "2", "-c", "echo served by $$; exit 0"],
        Input::Null,
    );
    // Twenty clients at once: every child's exit status (0) reaches its own connection,
    // whichever loop started it, so every client ends cleanly.
    let clients: Vec<Proc> = (0..20)
        .map(|_| {
            let mut cmd = stls();
            cmd.args([
                "connect",
                &format!("localhost:{}", l.port),
                "--cacert",
                s(&pki.ca.cert),
            ]);
            Proc::spawn(&mut cmd, Input::Null)
        })
        .collect();
    for c in clients {
        let done = c.finish();
        done.expect_code(0);
        assert!(String::from_utf8_lossy(&done.stdout).starts_with("served by "));
    }
    // Both loops stop on one SIGTERM.
    l.stop().expect_code(143);
}

#[test]
fn a_proxy_header_reaches_a_backend_that_speaks_first() {
    // An SMTP-like backend: it reads the PROXY header, then greets; the client says nothing
    // until greeted.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut header = Vec::new();
        let mut byte = [0u8; 1];
        while !header.ends_with(b"\r\n") {
            sock.read_exact(&mut byte).unwrap();
            header.push(byte[0]);
        }
        assert!(header.starts_with(b"PROXY TCP4 "));
        sock.write_all(b"220 hello\r\n").unwrap();
    });
    let pki = Pki::new();
    let l = tunnel_to(
        &pki,
        &format!("127.0.0.1:{port}"),
        &["--proxy-protocol", "v1"],
    );
    let mut cmd = stls();
    cmd.args([
        "connect",
        &format!("localhost:{}", l.port),
        "--cacert",
        s(&pki.ca.cert),
    ]);
    let client = Proc::spawn(&mut cmd, Input::Held);
    client.wait_stdout_has(b"220 hello").unwrap();
}

#[test]
fn under_tls12_the_peers_close_notify_ends_the_tunnel_even_if_the_backend_stays_open() {
    // The backend reads to the end and then says nothing and stays open: TLS 1.2 has no
    // half-close, so the client's close_notify ends the connection, and the client learns
    // its bytes were all taken.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let backend = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        sock.read_to_end(&mut got).unwrap();
        std::thread::sleep(Duration::from_secs(3));
        got
    });
    let pki = Pki::new();
    let l = tunnel_to(&pki, &format!("127.0.0.1:{port}"), &[]);
    let data = random_bytes(100_000, 12);
    connect(
        &format!("localhost:{}", l.port),
        &[
            "--cacert",
            s(&pki.ca.cert),
            "--tls-max",
            "1.2",
            "--send-only",
        ],
        Input::Bytes(data.clone()),
    )
    .expect_code(0);
    assert_same(&backend.join().unwrap(), &data, "through a TLS 1.2 tunnel");
}

type TlsClient = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

/// A tunnel (`listen --to`, with `extra`) whose backend accepts and never reads, and a client
/// that has sent it all it would take: the backend's, the tunnel's and the client's buffers
/// are full, and the tunnel no longer reads from the client.
fn flooded_tunnel(pki: &Pki, extra: &[&str]) -> (Listener, TlsClient, JoinHandle<()>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let (sock, _) = backend.accept().unwrap();
        std::thread::sleep(Duration::from_secs(30));
        drop(sock);
    });
    let mut args = vec!["-v"];
    args.extend(extra);
    let l = tunnel_to(pki, &format!("127.0.0.1:{backend_port}"), &args);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&pki.ca.cert).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = "localhost".try_into().unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let sock = std::net::TcpStream::connect(("127.0.0.1", l.port)).unwrap();
    sock.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    let chunk = vec![0x5a; 64 << 10];
    loop {
        let _ = tls.conn.writer().write(&chunk);
        if tls.conn.write_tls(&mut tls.sock).is_err() {
            break;
        }
    }
    l.wait_line("connecting to");
    (l, tls, held)
}

#[test]
fn a_client_that_resets_while_the_backend_reads_nothing_is_seen_and_let_go() {
    // Back-pressure keeps the tunnel from reading the client. A client that then resets must
    // still be noticed (logged, both descriptors closed), not kept for ever; --stall-timeout
    // is long, so that is not what ends it.
    let pki = Pki::new();
    let (l, tls, held) = flooded_tunnel(&pki, &["--stall-timeout", "600"]);
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", l.proc.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let open = fds();
    // A reset (SO_LINGER 0), while the tunnel is not reading from us.
    socket2::SockRef::from(&tls.sock)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(tls);
    l.wait_line("reset the connection");
    // Both of its descriptors are closed.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while fds() > open - 2 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fds(), open - 2, "descriptors left open for a dead client");
    drop(l);
    drop(held);
}

#[test]
fn a_backend_that_takes_nothing_is_bounded_by_stall_timeout() {
    let pki = Pki::new();
    let (l, tls, held) = flooded_tunnel(&pki, &["--stall-timeout", "1"]);
    let line = l.wait_line("--stall-timeout");
    assert!(line.contains("took none of its data for 1s"), "{line}");
    drop(tls);
    drop(l);
    drop(held);
}

/// `stls connect` to the listener on `port` with the client certificate `leaf`, trusting
/// `ca`.
fn connect_as(ca: &std::path::Path, port: u16, leaf: &crate::util::pki::Leaf) -> Done {
    connect(
        &format!("localhost:{port}"),
        &[
            "--cacert",
            s(ca),
            "--cert",
            s(&leaf.cert),
            "--key",
            s(&leaf.key),
        ],
        Input::Null,
    )
}

#[test]
fn allow_cn_admits_one_common_name_and_hands_on_that_one() {
    let Some(ca) = OpensslCa::new() else {
        return;
    };
    let alice = ca.leaf("alice", "/CN=alice", &["DNS.1 = alice"], "clientAuth");
    let two = ca.leaf("two", "/CN=mallory/CN=alice", &["DNS.1 = m"], "clientAuth");
    // A real newline, and a backslash followed by n.
    let newline = ca.leaf("newline", "/CN=ali\nce", &["DNS.1 = x"], "clientAuth");
    let backslash = ca.leaf("backslash", r"/CN=ali\\nce", &["DNS.1 = y"], "clientAuth");
    let c = s(&ca.cert);
    let l = serve_k(
        &ca.server,
        &[
            "--client-ca",
            c,
            "--allow-cn",
            "alice",
            "-c",
            "echo \"in $STLS_PEER_CN\"",
        ],
        Input::Null,
    );
    let ok = connect_as(&ca.cert, l.port, &alice);
    ok.expect_code(0);
    assert_eq!(ok.stdout, b"in alice\n");
    // CN=mallory, CN=alice: which one is the client is a guess, so it is not admitted.
    let refused = connect_as(&ca.cert, l.port, &two);
    refused.expect_code(4);
    assert!(refused.stdout.is_empty(), "{:?}", refused.stdout);
    l.wait_line("has several common names (mallory, alice)");
    // --allow-cn compares the certificate's value, not its escaped form.
    let l = serve_k(
        &ca.server,
        &[
            "--client-ca",
            c,
            "--allow-cn",
            r"ali\nce",
            "-c",
            "env | grep ^STLS_PEER_CN=",
        ],
        Input::Null,
    );
    let ok = connect_as(&ca.cert, l.port, &backslash);
    ok.expect_code(0);
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "STLS_PEER_CN=ali\\\\nce\n"
    );
    connect_as(&ca.cert, l.port, &newline).expect_code(4);
    l.wait_line(r"is not admitted by --allow-cn/--allow-san (its CN: ali\nce;");
    // Without --allow-cn: several CNs name no one, and a newline reaches a child escaped in
    // a form sh's echo does not turn back into one.
    let l = serve_k(
        &ca.server,
        &["--client-ca", c, "-c", "echo \"[$STLS_PEER_CN]\""],
        Input::Null,
    );
    let two = connect_as(&ca.cert, l.port, &two);
    two.expect_code(0);
    assert_eq!(two.stdout, b"[]\n");
    let newline = connect_as(&ca.cert, l.port, &newline);
    newline.expect_code(0);
    assert_eq!(String::from_utf8_lossy(&newline.stdout), "[ali\\u{a}ce]\n");
}

#[test]
fn allow_san_takes_a_type_and_a_comma_cannot_forge_a_name() {
    let Some(ca) = OpensslCa::new() else {
        return;
    };
    let email = ca.leaf("email", "/CN=bob", &["email.1 = alice@corp"], "clientAuth");
    let dns = ca.leaf("dns", "/CN=carol", &["DNS.1 = alice@corp"], "clientAuth");
    let ip = ca.leaf("ip", "/CN=dave", &["IP.1 = 192.0.2.7"], "clientAuth");
    let comma = ca.leaf(
        "comma",
        "/CN=mallory",
        &["DNS.1 = mallory.example,DNS:admin.example"],
        "clientAuth",
    );
    let c = s(&ca.cert);
    let listen = |allow: &str| {
        serve_k(
            &ca.server,
            &["--client-ca", c, "--allow-san", allow, "-c", "echo in"],
            Input::Null,
        )
    };
    // TYPE:value matches that type only (the type in any case).
    for allow in ["email:alice@corp", "EMAIL:Alice@Corp"] {
        let l = listen(allow);
        let ok = connect_as(&ca.cert, l.port, &email);
        ok.expect_code(0);
        assert_eq!(ok.stdout, b"in\n");
        connect_as(&ca.cert, l.port, &dns).expect_code(4);
    }
    let l = listen("dns:alice@corp");
    connect_as(&ca.cert, l.port, &dns).expect_code(0);
    connect_as(&ca.cert, l.port, &email).expect_code(4);
    // An address compares as an address.
    let l = listen("ip:192.0.2.7");
    connect_as(&ca.cert, l.port, &ip).expect_code(0);
    connect_as(&ca.cert, l.port, &email).expect_code(4);
    // A bare value matches a name of any type.
    let l = listen("alice@corp");
    connect_as(&ca.cert, l.port, &email).expect_code(0);
    connect_as(&ca.cert, l.port, &dns).expect_code(0);
    // One name with a comma in it is one name: in the refusal and in STLS_PEER_SANS.
    let l = listen("admin.example");
    connect_as(&ca.cert, l.port, &comma).expect_code(4);
    l.wait_line(r"its names: DNS:mallory.example\,DNS:admin.example)");
    let l = serve_k(
        &ca.server,
        &["--client-ca", c, "-c", "echo \"$STLS_PEER_SANS\""],
        Input::Null,
    );
    let done = connect_as(&ca.cert, l.port, &comma);
    done.expect_code(0);
    assert_eq!(
        String::from_utf8_lossy(&done.stdout),
        "DNS:mallory.example\\,DNS:admin.example\n"
    );
    // A typed value that is not of its type is a usage error, before anything listens.
    run(
        &["listen", "0", "--client-ca", c, "--allow-san", "ip:alice"],
        Input::Null,
    )
    .expect_code(2)
    .expect_stderr("--allow-san 'ip:alice': 'alice' is not an IP address");
}

#[test]
fn a_backend_address_that_never_answers_is_given_up_after_ten_seconds() {
    let pki = Pki::new();
    // A listener whose accept queue is full: the kernel drops further SYNs, so a connection
    // to it neither succeeds nor fails until someone gives up.
    let full = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    full.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    full.listen(0).unwrap();
    let addr = full.local_addr().unwrap().as_socket().unwrap();
    let _held: Vec<_> = (0..3)
        .filter_map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok())
        .collect();
    let l = tunnel_to(&pki, &addr.to_string(), &[]);
    let started = std::time::Instant::now();
    let done = connect(
        &format!("localhost:{}", l.port),
        &["--cacert", s(&pki.ca.cert)],
        Input::Held,
    );
    assert_ne!(done.code(), 0);
    assert!(done.stdout.is_empty());
    l.wait_line(&format!(
        "the local connection failed ({addr} did not answer in 10s)"
    ));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "took {took:?}");
}
