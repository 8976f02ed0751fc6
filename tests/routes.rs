//! Behind a load balancer (issue 30): `--accept-proxy` with haproxy's `send-proxy-v2` in front
//! of three replicas, the real client's address reaching the backend; PROXY headers written
//! by hand (v2 `LOCAL`, none, hostile ones); routes by SNI; the TLVs of `--proxy-protocol v2`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::util::pki::{s, KeyType, Pki, VALID};
use crate::util::*;

/// A plain backend that answers each request with what it was sent before it (the PROXY
/// header, and `name`): an HTTP/1.0 reply, read by curl or by [`get_after`].
fn recorder(name: &'static str) -> u16 {
    counted_recorder(name).0
}

/// [`recorder`], and how many connections it had.
fn counted_recorder(name: &'static str) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(mut sock) = sock else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                // What came before the request: the PROXY header.
                let at = got.windows(3).position(|w| w == b"GET").unwrap_or(0);
                let mut body = format!("{name} ").into_bytes();
                body.extend_from_slice(&got[..at]);
                let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = sock.write_all(&[head.as_bytes(), &body].concat());
            });
        }
    });
    (port, count)
}

/// `stls listen 127.0.0.1:0 --accept-proxy -v` with the fixture's certificate, plus `extra`.
fn replica(pki: &Pki, extra: &[&str]) -> Listener {
    let mut args = vec!["--accept-proxy", "-v", "--cert", s(&pki.server.cert)];
    args.extend(["--key", s(&pki.server.key)]);
    args.extend(extra);
    Listener::start(&args, Input::Null)
}

/// haproxy in `mode tcp`, round-robin over `servers` with `send-proxy-v2`, on a free port.
fn haproxy(dir: &Path, servers: &[u16]) -> (u16, Proc) {
    let port = free_port();
    let mut cfg = format!(
        "global\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
         timeout client 30s\n  timeout server 30s\nfrontend fe\n  bind 127.0.0.1:{port}\n  \
         default_backend replicas\nbackend replicas\n  balance roundrobin\n"
    );
    for (i, p) in servers.iter().enumerate() {
        // Health checks send a PROXY header too: v2 LOCAL.
        cfg.push_str(&format!(
            "  server r{i} 127.0.0.1:{p} send-proxy-v2 check check-send-proxy inter 300\n"
        ));
    }
    let path = write(dir, "haproxy.cfg", cfg);
    let mut cmd = Command::new("haproxy");
    cmd.env("PATH", path_with_sbin())
        .args(["-f", s(&path), "-db"]);
    let proc = Proc::spawn(&mut cmd, Input::Null);
    wait_listening(port);
    (port, proc)
}

/// Over TCP to `port`: `header`, then TLS (trusting `ca`, naming `sni`) with an HTTP/1.0
/// request; what came back.
fn get_after(header: &[u8], port: u16, ca: &Path, sni: &str) -> std::io::Result<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca)?;
    for cert in stls::certs_from_pem(&pem, "ca").map_err(std::io::Error::other)? {
        roots.add(cert).map_err(std::io::Error::other)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name =
        rustls::pki_types::ServerName::try_from(sni.to_string()).map_err(std::io::Error::other)?;
    let conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let mut sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_read_timeout(Some(Duration::from_secs(20)))?;
    sock.write_all(header)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut got = Vec::new();
    match tls.read_to_end(&mut got) {
        // A backend's reply ends with its FIN, which becomes our close_notify.
        Ok(_) => Ok(got),
        Err(e) if !got.is_empty() => Err(std::io::Error::other(format!("{e} after {got:?}"))),
        Err(e) => Err(e),
    }
}

/// A v1 header naming `from` (a client at 203.0.113.7) reaching 198.51.100.2:443.
const V1_HEADER: &[u8] = b"PROXY TCP4 203.0.113.7 198.51.100.2 40000 443\r\n";

/// A v2 header: signature, version and command, family, then `body`.
fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x20 | command, family]);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(body);
    h
}

#[test]
fn three_replicas_behind_haproxy_see_the_real_client() {
    if !have("haproxy") || !have("curl") {
        return;
    }
    let pki = Pki::new();
    let backend = format!("127.0.0.1:{}", recorder("backend"));
    let replicas: Vec<Listener> = (0..3)
        .map(|_| replica(&pki, &["--to", &backend, "--proxy-protocol", "v1"]))
        .collect();
    let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
    let (lb, _haproxy) = haproxy(pki.dir.path(), &ports);
    // The client connects from 127.0.0.2; haproxy connects to the replicas from 127.0.0.1.
    for _ in 0..3 {
        let done = crate::tunnels::curl(&[
            "--interface",
            "127.0.0.2",
            "--cacert",
            s(&pki.ca.cert),
            &format!("https://localhost:{lb}/"),
        ]);
        done.expect_code(0);
        let text = String::from_utf8_lossy(&done.stdout).to_string();
        assert!(
            text.starts_with("backend PROXY TCP4 127.0.0.2 127.0.0.1 "),
            "{text}"
        );
        assert!(text.ends_with(&format!(" {lb}\r\n")), "{text}");
    }
    // Round-robin: each replica served one, and logged the client's address.
    // haproxy's health checks: a LOCAL header, then the end, which is no failure.
    for r in replicas {
        r.wait_line("PROXY header: client 127.0.0.2:");
        r.wait_line("PROXY header LOCAL: the balancer's own connection (a health check)");
        r.wait_line("the health check ended");
        let done = r.stop();
        assert!(
            !done.stderr.contains("during the TLS handshake"),
            "{}",
            done.stderr
        );
        assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
    }
}

/// A plain backend that says `hello from NAME` to each connection and closes it.
fn greeter(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut sock in listener.incoming().flatten() {
            let _ = writeln!(sock, "hello from {name}");
        }
    });
    port
}

/// haproxy round-robin over three `--accept-proxy --ticket-keys K --to …` replicas: the
/// session s_client saved through one replica is resumed through the next one (TLS 1.3 and
/// 1.2); replicas with keys of their own make the next one start a new session.
#[test]
fn a_session_resumes_on_another_replica_behind_haproxy() {
    if !have("haproxy") || !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let keys = write(
        pki.dir.path(),
        "ticket.keys",
        format!("{}\n", "5a".repeat(32)),
    );
    // Each replica reaches its own backend: the reply names the replica that served.
    let backends = ["r0", "r1", "r2"].map(|name| format!("127.0.0.1:{}", greeter(name)));
    for shared in [true, false] {
        let replicas: Vec<Listener> = backends
            .iter()
            .map(|backend| {
                let mut flags = vec!["--to", backend];
                if shared {
                    flags.extend(["--ticket-keys", s(&keys)]);
                }
                replica(&pki, &flags)
            })
            .collect();
        let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
        let (lb, _haproxy) = haproxy(pki.dir.path(), &ports);
        for tls in ["-tls1_3", "-tls1_2"] {
            let dir = tempdir();
            let sess = dir.path().join("session");
            let s_client = |flag: &str| {
                let ca = ["-CAfile", s(&pki.ca.cert), "-verify_return_error"];
                let extra = [&ca[..], &[tls, flag, s(&sess)]].concat();
                let done = crate::scaleout::s_client(lb, Some("localhost"), &extra);
                let out = String::from_utf8_lossy(&done.stdout).to_string();
                let from = out
                    .lines()
                    .find_map(|l| l.strip_prefix("hello from "))
                    .unwrap_or_else(|| panic!("{tls}: no reply: {out}\n{}", done.stderr))
                    .to_string();
                let reused = out.lines().any(|l| l.starts_with("Reused,"));
                let new = out.lines().any(|l| l.starts_with("New,"));
                assert!(
                    reused != new,
                    "{tls}: neither New nor Reused, or both: {out}"
                );
                (from, reused)
            };
            let (first, _) = s_client("-sess_out");
            let (second, reused) = s_client("-sess_in");
            assert_ne!(first, second, "{tls}: haproxy sent both to one replica");
            assert_eq!(
                reused, shared,
                "{tls}: resumed by {second} from {first}: {reused}, shared keys: {shared}"
            );
        }
        for r in replicas {
            let done = r.stop();
            assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
        }
    }
}

#[test]
fn a_command_is_told_the_address_the_header_gave() {
    let pki = Pki::new();
    let l = replica(
        &pki,
        &[
            "-k",
            "-c",
            "printf 'HTTP/1.0 200 OK\\r\\n\\r\\n%s %s' \"$STLS_PEER_ADDR\" \"$STLS_PEER_PORT\"",
        ],
    );
    let got = get_after(V1_HEADER, l.port, &pki.ca.cert, "localhost").unwrap();
    assert!(got.ends_with(b"\r\n\r\n203.0.113.7 40000"), "{got:?}");
    // v2, the same over IPv6.
    let mut body = [0u8; 36];
    body[15] = 7; // ::7
    body[31] = 1; // ::1
    body[32..34].copy_from_slice(&5555u16.to_be_bytes());
    body[34..36].copy_from_slice(&443u16.to_be_bytes());
    let got = get_after(&v2(1, 0x21, &body), l.port, &pki.ca.cert, "localhost").unwrap();
    assert!(got.ends_with(b"\r\n\r\n::7 5555"), "{got:?}");
    l.wait_line("PROXY header: client [::7]:5555");
    l.stop();
}

#[test]
fn a_v2_local_header_is_a_health_check_and_the_socket_address_stands() {
    let pki = Pki::new();
    let backend = format!("127.0.0.1:{}", recorder("backend"));
    let l = replica(&pki, &["--to", &backend, "--proxy-protocol", "v1"]);
    let got = get_after(&v2(0, 0, &[]), l.port, &pki.ca.cert, "localhost").unwrap();
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(
        text.contains("backend PROXY TCP4 127.0.0.1 127.0.0.1 "),
        "{text}"
    );
    l.wait_line("PROXY header LOCAL: the balancer's own connection (a health check)");
    // A v2 header of the AF_UNIX family: no IP address, the socket's stands.
    let unix = v2(1, 0x31, &[0; 216]);
    let got = get_after(&unix, l.port, &pki.ca.cert, "localhost").unwrap();
    assert!(String::from_utf8_lossy(&got).contains("backend PROXY TCP4 127.0.0.1 "));
    l.wait_line("PROXY header without an IP address");
    l.stop();
}

#[test]
fn a_connection_without_a_header_is_dropped_with_a_line() {
    let pki = Pki::new();
    let backend = format!("127.0.0.1:{}", recorder("backend"));
    let l = replica(&pki, &["--to", &backend]);
    let done = connect(
        &l.addr(),
        &["--cacert", s(&pki.ca.cert), "--servername", "localhost"],
        Input::Bytes(b"hello\n".to_vec()),
    );
    assert_ne!(done.code(), 0);
    l.wait_line("PROXY protocol header (--accept-proxy): the connection did not start with one");
    l.stop();
}

#[test]
fn hostile_headers_are_refused_and_the_listener_goes_on() {
    let pki = Pki::new();
    let backend = format!("127.0.0.1:{}", recorder("backend"));
    let l = replica(&pki, &["--to", &backend, "--handshake-timeout", "2"]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // A v2 header longer than accepted.
        (v2(1, 0x11, &[0; 4000]), "more than the 2048 accepted"),
        // A v1 line with no end within 107 bytes.
        (
            [&b"PROXY TCP4 "[..], &[b'1'; 200]].concat(),
            "longer than 107",
        ),
        (
            b"PROXY TCP4 192.0.2.1 192.0.2.2 1 99999\r\n".to_vec(),
            "a v1 header with a bad port",
        ),
        (v2(1, 0x21, &[0; 12]), "too short for its addresses"),
        (v2(7, 0x11, &[0; 12]), "unknown command 7"),
        // Cut short: the connection closes within the header.
        (V1_HEADER[..20].to_vec(), "closed during the dialogue"),
        // Never finished: the handshake's time runs out.
        (v2(1, 0x11, &[0; 12])[..14].to_vec(), "timed out"),
    ];
    for (bytes, line) in &cases {
        let mut sock = TcpStream::connect(("127.0.0.1", l.port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let _ = sock.write_all(bytes);
        if !line.contains("timed out") {
            let _ = sock.shutdown(std::net::Shutdown::Write);
        }
        // Whatever comes back, the connection ends.
        let _ = sock.read_to_end(&mut Vec::new());
        l.wait_line(line);
    }
    // Still serving.
    let got = get_after(V1_HEADER, l.port, &pki.ca.cert, "localhost").unwrap();
    assert!(String::from_utf8_lossy(&got).contains("backend"));
    let done = l.stop();
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
}

/// `curl --resolve NAME:PORT:127.0.0.1 https://NAME:PORT/`, trusting `ca`.
fn curl_name(name: &str, port: u16, ca: &Path) -> Done {
    crate::tunnels::curl(&[
        "--resolve",
        &format!("{name}:{port}:127.0.0.1"),
        "--cacert",
        s(ca),
        &format!("https://{name}:{port}/"),
    ])
}

#[test]
fn routes_by_sni_reach_three_backends_and_an_unknown_name_is_refused() {
    if !have("curl") {
        return;
    }
    let pki = Pki::new();
    let leaf = pki.ca.server(
        "routes",
        &["a.example", "b.example", "*.c.example", "d.example"],
        KeyType::P256,
        VALID,
    );
    let (a, b, c) = (recorder("alpha"), recorder("beta"), recorder("gamma"));
    let routes = [
        format!("a.example=127.0.0.1:{a}"),
        format!("B.Example=127.0.0.1:{b}"),
        format!("*.c.example=127.0.0.1:{c}"),
    ];
    let mut args = vec!["-v", "--cert", s(&leaf.cert), "--key", s(&leaf.key)];
    for r in &routes {
        args.extend(["--to", r.as_str()]);
    }
    let l = Listener::start(&args, Input::Null);
    for (name, backend) in [
        ("a.example", "alpha"),
        ("b.example", "beta"),
        ("x.c.example", "gamma"),
    ] {
        let done = curl_name(name, l.port, &pki.ca.cert);
        done.expect_code(0);
        assert!(done.stdout.starts_with(format!("{backend} ").as_bytes()));
    }
    l.wait_line(&format!(
        "connecting to 127.0.0.1:{c} (the route for *.c.example)"
    ));
    // No route for d.example and no default: refused after the handshake, nothing dialed.
    let done = curl_name("d.example", l.port, &pki.ca.cert);
    assert_ne!(done.code(), 0);
    l.wait_line("no --to route for the name it asked for, d.example, and there is no default");
    // One level of wildcard only.
    let done = curl_name("y.x.c.example", l.port, &pki.ca.cert);
    assert_ne!(done.code(), 0);
    l.stop();

    // With a default, the other names go there.
    let (d, dialed) = counted_recorder("default");
    let default = format!("127.0.0.1:{d}");
    args.extend(["--to", default.as_str()]);
    let l = Listener::start(&args, Input::Null);
    let done = curl_name("d.example", l.port, &pki.ca.cert);
    done.expect_code(0);
    assert!(done.stdout.starts_with(b"default "));
    let done = curl_name("a.example", l.port, &pki.ca.cert);
    assert!(done.stdout.starts_with(b"alpha "));
    assert_eq!(dialed.load(Ordering::SeqCst), 1);
    l.wait_line(&format!("connecting to {default} (the default route)"));
    l.stop();
}

/// One listener, the whole of it: three names, each with its own certificate and its own
/// backend, and a fourth passed through to an `openssl s_server` whose certificate the client
/// sees; curl --resolve asks for each.
#[test]
fn three_names_get_three_certificates_and_backends_and_a_fourth_passes_through() {
    if !have("curl") || !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let (ss, _s_server) = their_server(&pki);
    let pass = format!("pass.example=127.0.0.1:{ss}");
    let mut args = vec!["-v".to_string(), "--passthrough".to_string(), pass];
    for (name, backend) in [
        ("a.example", "alpha"),
        ("b.example", "beta"),
        ("c.example", "gamma"),
    ] {
        let leaf = pki.ca.server(backend, &[name], KeyType::P256, VALID);
        args.extend(["--cert".into(), s(&leaf.cert).into()]);
        args.extend(["--key".into(), s(&leaf.key).into()]);
        let port = recorder(backend);
        args.extend(["--to".into(), format!("{name}=127.0.0.1:{port}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let l = Listener::start(&args, Input::Null);
    let verbose_curl = |name: &str| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-v", "--cacert", s(&pki.ca.cert)])
            .args(["--resolve", &format!("{name}:{}:127.0.0.1", l.port)])
            .arg(format!("https://{name}:{}/", l.port));
        let done = Proc::spawn(&mut cmd, Input::Null).finish();
        done.expect_code(0);
        done
    };
    for (name, backend) in [
        ("a.example", "alpha"),
        ("b.example", "beta"),
        ("c.example", "gamma"),
    ] {
        let done = verbose_curl(name);
        let seen = format!("subject: CN={name}");
        assert!(done.stderr.contains(&seen), "{name}: {}", done.stderr);
        let body = String::from_utf8_lossy(&done.stdout).to_string();
        assert!(body.starts_with(&format!("{backend} ")), "{name}: {body}");
    }
    let done = verbose_curl("pass.example");
    assert!(
        done.stderr.contains("subject: CN=pass.example"),
        "{}",
        done.stderr
    );
    assert!(String::from_utf8_lossy(&done.stdout).contains("s_server"));
    let done = l.stop();
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
}

#[test]
fn bad_routes_are_refused_before_listening() {
    for (to, said) in [
        (
            &["127.0.0.1:1", "127.0.0.1:2"][..],
            "a second backend for every name",
        ),
        (
            &["a.example=127.0.0.1:1", "A.example=127.0.0.1:2"],
            "a.example has a route already",
        ),
        (&["*.*.example=127.0.0.1:1"], "is not a host name"),
        (&["10.0.0.1=127.0.0.1:1"], "is not a host name"),
        (&["a.example=nowhere"], "--to a.example="),
    ] {
        let mut args = vec!["listen", "127.0.0.1:0"];
        for t in to {
            args.extend(["--to", t]);
        }
        let done = run(&args, Input::Null);
        done.expect_code(2);
        done.expect_stderr(said);
    }
}

/// A v2 header's TLVs after its IPv4 addresses: (type, value) in order.
fn tlvs(header: &[u8]) -> Vec<(u8, Vec<u8>)> {
    assert_eq!(header[12..14], [0x21, 0x11], "v2, PROXY, TCP over IPv4");
    let mut rest = &header[16 + 12..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = u16::from_be_bytes([rest[1], rest[2]]) as usize;
        out.push((rest[0], rest[3..3 + len].to_vec()));
        rest = &rest[3 + len..];
    }
    out
}

#[test]
fn proxy_protocol_v2_says_the_alpn_sni_and_tls_session() {
    let pki = Pki::new();
    let alice = pki.ca.client("alice", "alice", KeyType::P256, VALID);
    for (with_cert, tls) in [(true, "1.3"), (false, "1.3"), (true, "1.2"), (false, "1.2")] {
        let (port, backend) = crate::tunnels::proxy_backend(true);
        let to = format!("127.0.0.1:{port}");
        let l = Listener::start(
            &[
                "--to",
                &to,
                "--proxy-protocol",
                "v2",
                "--cert",
                s(&pki.server.cert),
                "--key",
                s(&pki.server.key),
                "--client-ca-optional",
                s(&pki.ca.cert),
                "--alpn",
                "h2",
            ],
            Input::Null,
        );
        let mut args = vec![
            "--cacert",
            s(&pki.ca.cert),
            "--alpn",
            "h2",
            "--tls-max",
            tls,
        ];
        if with_cert {
            args.extend(["--cert", s(&alice.cert), "--key", s(&alice.key)]);
        }
        let done = connect(
            &format!("localhost:{}", l.port),
            &args,
            Input::Bytes(b"hi\n".to_vec()),
        );
        done.expect_code(0);
        let got = tlvs(&backend.join().unwrap());
        let kinds: Vec<u8> = got.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [0x01, 0x02, 0x20], "ALPN, AUTHORITY, SSL");
        assert_eq!(got[0].1, b"h2");
        assert_eq!(got[1].1, b"localhost");
        // The SSL TLV: client flags, verify, then sub-TLVs.
        let ssl = &got[2].1;
        let verify = u32::from_be_bytes([ssl[1], ssl[2], ssl[3], ssl[4]]);
        let mut subs = Vec::new();
        let mut rest = &ssl[5..];
        while !rest.is_empty() {
            let len = u16::from_be_bytes([rest[1], rest[2]]) as usize;
            subs.push((
                rest[0],
                String::from_utf8(rest[3..3 + len].to_vec()).unwrap(),
            ));
            rest = &rest[3 + len..];
        }
        assert_eq!(subs[0], (0x21, format!("TLSv{tls}")));
        assert_eq!(subs[1].0, 0x23);
        // The cipher by its IANA name: TLS 1.2's names the key exchange and signature.
        let cipher = if tls == "1.3" {
            "TLS_AES_"
        } else {
            "TLS_ECDHE_ECDSA_WITH_AES_"
        };
        assert!(subs[1].1.starts_with(cipher), "{}", subs[1].1);
        if with_cert {
            assert_eq!(
                ssl[0], 0x07,
                "SSL, a certificate on the connection and session"
            );
            assert_eq!(verify, 0, "verified");
            assert_eq!(subs[2], (0x22, "alice".to_string()));
        } else {
            assert_eq!(ssl[0], 0x01);
            assert_ne!(verify, 0, "no certificate: not verified");
            assert_eq!(subs.len(), 2);
        }
        l.stop();
    }
}

#[test]
fn two_thousand_clients_across_a_restart_with_no_failure() {
    let pki = Pki::new();
    let backend = format!("127.0.0.1:{}", recorder("backend"));
    let port = free_port();
    let at = format!("127.0.0.1:{port}");
    let args = [
        "listen",
        &at,
        "--to",
        &backend,
        "--drain",
        "5",
        "--cert",
        s(&pki.server.cert),
        "--key",
        s(&pki.server.key),
    ];
    let mut cmd = stls();
    cmd.args(args);
    let old = Listener::start_cmd(&mut cmd, Input::Null);
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (ca, done) = (pki.ca.cert.clone(), done.clone());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for _ in 0..1000 {
                    match get_after(b"", port, &ca, "localhost") {
                        Ok(got) if got.ends_with(b"backend ") => {}
                        other => failures.push(format!("{other:?}")),
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
                failures
            })
        })
        .collect();
    while done.load(Ordering::SeqCst) < 300 {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The new one binds the port beside the old (SO_REUSEPORT), then the old drains.
    let mut cmd = stls();
    cmd.args(args);
    let new = Listener::start_cmd(&mut cmd, Input::Null);
    old.signal(libc::SIGTERM);
    let ended = old.finish();
    assert_eq!(ended.code(), 143, "{}", ended.stderr);
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(done.load(Ordering::SeqCst), 2000);
    new.stop();
}

/// The server a passed-through name reaches: `openssl s_server -www` on a free port, with a
/// certificate of its own for pass.example (from the fixture's CA).
fn their_server(pki: &Pki) -> (u16, Proc) {
    let theirs = pki
        .ca
        .server("theirs", &["pass.example"], KeyType::P256, VALID);
    let port = free_port();
    let mut cmd = Command::new("openssl");
    cmd.args(["s_server", "-accept", &format!("127.0.0.1:{port}")])
        .args(["-cert", s(&theirs.cert), "-key", s(&theirs.key), "-www"]);
    let proc = Proc::spawn(&mut cmd, Input::Null);
    wait_listening(port);
    (port, proc)
}

/// A TLS client for `sni` on `port` whose ClientHello goes in records of `size` bytes, each
/// in its own write: what an HTTP/1.0 request gets back.
fn get_fragmented(port: u16, ca: &Path, sni: &str, size: usize) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in stls::certs_from_pem(&std::fs::read(ca).unwrap(), "ca").unwrap() {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    let len = u16::from_be_bytes([hello[3], hello[4]]) as usize;
    assert_eq!(hello.len(), 5 + len, "one record");
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    sock.set_nodelay(true).unwrap();
    for piece in hello[5..].chunks(size) {
        let mut record = hello[..3].to_vec();
        record.extend_from_slice(&(piece.len() as u16).to_be_bytes());
        record.extend_from_slice(piece);
        if sock.write_all(&record).is_err() {
            break;
        }
        // Each its own read, most likely (the whole within the handshake's 5 s).
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let _ = tls.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let mut got = Vec::new();
    // s_server -www closes without close_notify: what came is the answer.
    let _ = tls.read_to_end(&mut got);
    got
}

#[test]
fn a_passthrough_name_reaches_its_own_tls_server_beside_terminated_ones() {
    if !have("openssl") || !have("curl") {
        return;
    }
    let pki = Pki::new();
    let (ss, _s_server) = their_server(&pki);
    let ours = format!("127.0.0.1:{}", recorder("terminated"));
    let pass = format!("pass.example=127.0.0.1:{ss}");
    let l = replica(&pki, &["--passthrough", &pass, "--to", &ours]);
    // Behind --accept-proxy: a header first, as a balancer sends it.
    let mut curl = Command::new("curl");
    curl.args([
        "-sS",
        "-v",
        "--haproxy-protocol",
        "--cacert",
        s(&pki.ca.cert),
    ])
    .args(["--resolve", &format!("pass.example:{}:127.0.0.1", l.port)])
    .arg(format!("https://pass.example:{}/", l.port));
    let done = Proc::spawn(&mut curl, Input::Null).finish();
    done.expect_code(0);
    // The certificate for pass.example is s_server's: stls has none for it.
    assert!(
        done.stderr.contains("subject: CN=pass.example"),
        "{}",
        done.stderr
    );
    assert!(String::from_utf8_lossy(&done.stdout).contains("s_server"));
    l.wait_line(&format!(
        "passing through to 127.0.0.1:{ss} (--passthrough pass.example)"
    ));
    // Other names: our TLS, our backend.
    let got = get_after(V1_HEADER, l.port, &pki.ca.cert, "localhost").unwrap();
    assert!(
        String::from_utf8_lossy(&got).contains("terminated"),
        "{got:?}"
    );
    l.stop();

    // A ClientHello cut into many records, each its own write.
    let l = Listener::start(
        &[
            "-v",
            "--passthrough",
            &pass,
            "--to",
            &ours,
            "--cert",
            s(&pki.server.cert),
            "--key",
            s(&pki.server.key),
        ],
        Input::Null,
    );
    for size in [1000, 40, 7] {
        let got = get_fragmented(l.port, &pki.ca.cert, "pass.example", size);
        assert!(
            String::from_utf8_lossy(&got).contains("s_server"),
            "{size}: {got:?}"
        );
    }
    let got = get_fragmented(l.port, &pki.ca.cert, "localhost", 40);
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.0 200 OK"),
        "{got:?}"
    );
    let done = l.stop();
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
}

/// A client's ClientHello naming `name`, as the first bytes it sends.
fn hello_for(name: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// A passthrough backend for pass.example that serves one connection with `serve`: its
/// `--passthrough` argument, and the thread serving it.
fn pass_backend<T: Send + 'static>(
    serve: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (String, std::thread::JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || serve(listener.accept().unwrap().0));
    (format!("pass.example=127.0.0.1:{port}"), thread)
}

#[test]
fn a_passed_through_connection_half_closes_each_way() {
    // The backend reads to the client's end, then answers how much came, and closes.
    let (pass, backend) = pass_backend(|mut sock| {
        let mut got = Vec::new();
        sock.read_to_end(&mut got).unwrap();
        sock.write_all(format!("{} bytes", got.len()).as_bytes())
            .unwrap();
        got
    });
    let l = Listener::start(&["--passthrough", &pass], Input::Null);
    // A ClientHello for pass.example, and more after it: all of it is the backend's.
    let mut sent = hello_for("pass.example");
    sent.extend_from_slice(&random_bytes(300_000, 30));
    let mut sock = TcpStream::connect(("127.0.0.1", l.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    sock.write_all(&sent).unwrap();
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    sock.read_to_end(&mut back).unwrap();
    assert_eq!(back, format!("{} bytes", sent.len()).as_bytes());
    assert_same(&backend.join().unwrap(), &sent, "what the backend got");
    l.stop();
}

/// Megabytes both ways at once, and a client that stops reading for a while: every byte
/// arrives once and in order.
#[test]
fn a_passed_through_connection_carries_megabytes_both_ways() {
    // The backend echoes all it gets, then closes.
    let (pass, backend) = pass_backend(|mut sock| {
        let mut reader = sock.try_clone().unwrap();
        std::io::copy(&mut reader, &mut sock).unwrap();
        sock.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let l = Listener::start(&["--passthrough", &pass], Input::Null);
    let mut sent = hello_for("pass.example");
    sent.extend_from_slice(&random_bytes(8 << 20, 31));
    let sock = TcpStream::connect(("127.0.0.1", l.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = sock.try_clone().unwrap();
    let data = sent.clone();
    let sender = std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    let mut reader = sock;
    let mut buf = vec![0u8; 64 * 1024];
    let mut paused = false;
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        back.extend_from_slice(&buf[..n]);
        if !paused && back.len() > 1 << 20 {
            // Back-pressure: both ways fill up behind a client that does not read.
            paused = true;
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    sender.join().unwrap();
    backend.join().unwrap();
    assert_same(&back, &sent, "what came back through the relay");
    l.stop();
}

#[test]
fn a_passthrough_needs_a_name() {
    let done = run(
        &["listen", "127.0.0.1:0", "--passthrough", "127.0.0.1:1"],
        Input::Null,
    );
    done.expect_code(2);
    done.expect_stderr("--passthrough 127.0.0.1:1: give it as NAME=HOST:PORT");
    let done = run(
        &["listen", "127.0.0.1:0", "-k", "--proxy-protocol", "v1"],
        Input::Null,
    );
    done.expect_code(2);
    done.expect_stderr("give --to (or --passthrough) too");
}

#[test]
fn a_passthrough_backend_is_told_the_client_by_a_proxy_header() {
    let (port, backend) = crate::tunnels::proxy_backend(false);
    let pass = format!("pass.example=127.0.0.1:{port}");
    let l = Listener::start(
        &[
            "--accept-proxy",
            "--passthrough",
            &pass,
            "--proxy-protocol",
            "v1",
        ],
        Input::Null,
    );
    let hello = hello_for("pass.example");
    let mut sock = TcpStream::connect(("127.0.0.1", l.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    sock.write_all(&[V1_HEADER, &hello].concat()).unwrap();
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    // The backend echoes what came after its header: the ClientHello, untouched.
    let mut back = Vec::new();
    sock.read_to_end(&mut back).unwrap();
    assert_same(&back, &hello, "the ClientHello, echoed");
    let header = String::from_utf8(backend.join().unwrap()).unwrap();
    assert_eq!(header, "PROXY TCP4 203.0.113.7 198.51.100.2 40000 443\r\n");
    l.stop();
}

#[test]
fn a_passthrough_backend_that_refuses_is_named() {
    let nobody = free_port();
    let pass = format!("pass.example=127.0.0.1:{nobody}");
    let l = Listener::start(&["--passthrough", &pass], Input::Null);
    let pki = Pki::new();
    let got = get_fragmented(l.port, &pki.ca.cert, "pass.example", 1000);
    assert!(got.is_empty());
    l.wait_line(&format!(
        "passing through to 127.0.0.1:{nobody}: connection refused"
    ));
    l.stop();
}

/// A ClientHello naming `name`, grown by a padding extension (RFC 7685) to a handshake
/// message of `body` bytes after its 4-byte header, and sent in TLS records of at most
/// `record` bytes: well-formed, only larger than clients make one.
fn padded_hello_for(name: &str, body: usize, record: usize) -> Vec<u8> {
    let hello = hello_for(name);
    // One record: its 5-byte header, then the handshake message.
    let mut msg = hello[5..].to_vec();
    let u16_at = |msg: &[u8], at: usize| usize::from(u16::from_be_bytes([msg[at], msg[at + 1]]));
    // After the handshake header: version, random, session id, cipher suites, compression
    // methods, then the extensions, last.
    let mut at = 4 + 2 + 32;
    at += 1 + usize::from(msg[at]);
    at += 2 + u16_at(&msg, at);
    at += 1 + usize::from(msg[at]);
    let extensions = u16_at(&msg, at);
    assert_eq!(
        at + 2 + extensions,
        msg.len(),
        "the extensions end the ClientHello"
    );
    let pad = body - (msg.len() - 4) - 4;
    msg.extend_from_slice(&[0, 21]);
    msg.extend_from_slice(&(pad as u16).to_be_bytes());
    msg.resize(msg.len() + pad, 0);
    msg[at..at + 2].copy_from_slice(&((extensions + 4 + pad) as u16).to_be_bytes());
    msg[1..4].copy_from_slice(&(body as u32).to_be_bytes()[1..]);
    msg.chunks(record)
        .flat_map(|piece| {
            let mut r = hello[..3].to_vec();
            r.extend_from_slice(&(piece.len() as u16).to_be_bytes());
            r.extend_from_slice(piece);
            r
        })
        .collect()
}

/// A passthrough backend's service: it reads to the client's end, answers how many bytes
/// came, and closes; what came.
fn count_back(mut sock: TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    sock.read_to_end(&mut got).unwrap();
    sock.write_all(format!("{} bytes", got.len()).as_bytes())
        .unwrap();
    got
}

/// Over TCP to `port`: `bytes`, our side left open, then a read until stls ends the
/// connection (a FIN or a reset): what came back. Still open after 20 s fails the test.
fn ended_by_stls(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // stls may stop reading, and reset the connection, before all of it is written.
    let _ = sock.write_all(bytes);
    let mut got = Vec::new();
    match sock.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "stls did not end the connection: {e} ({} bytes came)",
            got.len()
        ),
    }
    got
}

/// `hello` (for pass.example) and 100 kB after it, through `--passthrough` on `port` to the
/// `pass_backend` that serves [`count_back`]: every byte arrives as sent. That backend
/// serves the first connection it gets only, so this one was its first.
fn passes_through(port: u16, hello: &[u8], backend: std::thread::JoinHandle<Vec<u8>>) {
    let mut sent = hello.to_vec();
    sent.extend_from_slice(&random_bytes(100_000, 32));
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    sock.write_all(&sent).unwrap();
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    sock.read_to_end(&mut back).unwrap();
    assert_eq!(back, format!("{} bytes", sent.len()).as_bytes());
    assert_same(&backend.join().unwrap(), &sent, "what the backend got");
}

/// A ClientHello that does not come whole within 16 KiB, whether its header says at once that
/// it is longer or it runs on in small records: stls drops the client without a byte to it,
/// says why on stderr, and dials no backend; the next client, whose ClientHello is just
/// under 16 KiB, passes through byte-exact.
#[test]
fn a_client_hello_beyond_16_kib_is_dropped_and_the_listener_goes_on() {
    let (pass, backend) = pass_backend(count_back);
    let l = Listener::start(&["--passthrough", &pass], Input::Null);
    for (sent, why) in [
        // 20000 bytes, in records of 4 KiB.
        (
            padded_hello_for("pass.example", 20_000, 4096),
            "ClientHello (--passthrough): sent a ClientHello of 20000 bytes, more than 16 KiB",
        ),
        // 16000 bytes, but in records of 10: with their headers, past 16 KiB before it is
        // whole.
        (
            padded_hello_for("pass.example", 16_000, 10),
            "ClientHello (--passthrough): sent more than 16 KiB without a whole ClientHello",
        ),
    ] {
        let got = ended_by_stls(l.port, &sent);
        let start = &got[..got.len().min(8)];
        assert!(
            got.is_empty(),
            "{why}: stls answered {} bytes: {start:?}…",
            got.len()
        );
        let said = l.wait_line(why);
        assert!(said.contains("client 127.0.0.1:"), "{said}");
    }
    let hello = padded_hello_for("pass.example", 16_000, 4096);
    passes_through(l.port, &hello, backend);
    let done = l.stop();
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
}

/// A client that sends half a ClientHello, then nothing: stls drops it when
/// `--handshake-timeout` runs out, says so, and dials no backend; the next client passes
/// through byte-exact.
#[test]
fn a_client_hello_that_stalls_is_dropped_at_the_handshake_timeout() {
    let (pass, backend) = pass_backend(count_back);
    let l = Listener::start(
        &["--handshake-timeout", "1", "--passthrough", &pass],
        Input::Null,
    );
    let hello = hello_for("pass.example");
    let got = ended_by_stls(l.port, &hello[..hello.len() / 2]);
    let start = &got[..got.len().min(8)];
    assert!(
        got.is_empty(),
        "stls answered {} bytes: {start:?}…",
        got.len()
    );
    let said = l.wait_line("the ClientHello (--passthrough) dialogue with client 127.0.0.1:");
    assert!(said.ends_with("timed out (--handshake-timeout)"), "{said}");
    passes_through(l.port, &hello, backend);
    let done = l.stop();
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
}

/// A client that speaks HTTP to a `--passthrough` port: no backend is dialed; stls's own
/// handshake refuses it (a TLS alert at most), and stderr says it may not be speaking TLS.
#[test]
fn a_client_that_does_not_speak_tls_is_refused_without_a_backend() {
    let (pass, backend) = pass_backend(count_back);
    let l = Listener::start(&["--passthrough", &pass], Input::Null);
    let got = ended_by_stls(l.port, b"GET / HTTP/1.0\r\n\r\n");
    let start = &got[..got.len().min(8)];
    assert!(got.is_empty() || got[0] == 0x15, "not an alert: {start:?}…");
    let said = l.wait_line("TLS handshake with client 127.0.0.1:");
    assert!(
        said.contains("(is it speaking TLS on that port?)"),
        "{said}"
    );
    passes_through(l.port, &hello_for("pass.example"), backend);
    let done = l.stop();
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
}
