//! A long-running stls's life: reloading its files (SIGHUP, `--reload-every` and a
//! Kubernetes Secret's `..data` symlink swap), draining on SIGTERM (`--drain`), and systemd
//! (socket activation with `systemd-socket-activate`, notifications to `NOTIFY_SOCKET`).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util::pki::{s, KeyType, Leaf, Pki, VALID};
use crate::util::*;

/// How long a test polls for what it waits on before it fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// The fingerprint a new handshake with `addr` is served, as `stls inspect` sees it.
fn served(addr: &str, ca: &Path) -> String {
    let done = run(&["inspect", "--json", "--cacert", s(ca), addr], Input::Null);
    done.expect_code(0);
    let v: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    v["chain"][0]["sha256"].as_str().unwrap().to_string()
}

/// Poll `served` until it is not `old`; the new fingerprint.
fn served_changes(addr: &str, ca: &Path, old: &str) -> String {
    let until = Instant::now() + PATIENCE;
    loop {
        let now = served(addr, ca);
        if now != old {
            return now;
        }
        assert!(Instant::now() < until, "still served {old}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Secret as Kubernetes mounts it: `..DIR/` holds the files, `..data` points at it, and
/// `cert.pem` and `key.pem` point through `..data`.
fn secret(dir: &Path, version: &str, leaf: &Leaf) {
    let real = dir.join(version);
    std::fs::create_dir(&real).unwrap();
    std::fs::copy(&leaf.cert, real.join("cert.pem")).unwrap();
    std::fs::copy(&leaf.key, real.join("key.pem")).unwrap();
    let data = dir.join("..data");
    if data.exists() {
        // The swap is atomic: a new link renamed over the old one.
        let tmp = dir.join("..data_tmp");
        std::os::unix::fs::symlink(version, &tmp).unwrap();
        std::fs::rename(&tmp, &data).unwrap();
    } else {
        std::os::unix::fs::symlink(version, &data).unwrap();
        for name in ["cert.pem", "key.pem"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
    }
}

#[test]
fn reload_every_sees_a_secret_symlink_swap_and_keeps_serving_through_a_bad_one() {
    let pki = Pki::new();
    let mount = tempdir();
    let dir = mount.path();
    secret(dir, "..2026_a", &pki.server);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let l = Listener::start(
        &[
            "-k",
            "--cert",
            s(&cert),
            "--key",
            s(&key),
            "--reload-every",
            "1",
        ],
        Input::Null,
    );
    let addr = format!("localhost:{}", l.port);
    let before = served(&addr, &pki.ca.cert);
    let next = pki.ca.server("next", &["localhost"], KeyType::P256, VALID);
    secret(dir, "..2026_b", &next);
    let after = served_changes(&addr, &pki.ca.cert, &before);
    l.wait_line("cert.pem changed: reloaded");
    // A Secret whose key is broken: the certificate served before stays.
    let bad = dir.join("..2026_c");
    std::fs::create_dir(&bad).unwrap();
    std::fs::copy(&pki.server.cert, bad.join("cert.pem")).unwrap();
    std::fs::write(bad.join("key.pem"), "not a key").unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink("..2026_c", &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    l.wait_line("the certificates loaded before are kept");
    assert_eq!(served(&addr, &pki.ca.cert), after);
    let done = l.stop();
    done.expect_code(143);
}

#[test]
fn reload_every_needs_files() {
    run(
        &["listen", "-k", "127.0.0.1:0", "--reload-every", "1"],
        Input::Null,
    )
    .expect_code(2)
    .expect_stderr("--reload-every");
    run(
        &["connect", "127.0.0.1:1", "--drain", "5", "--insecure"],
        Input::Null,
    )
    .expect_code(2)
    .expect_stderr("give --from too");
}

#[test]
fn sighup_does_not_end_an_ephemeral_listener() {
    let l = Listener::start(&["-k", "-e", "cat"], Input::Null);
    l.signal(libc::SIGHUP);
    l.wait_line("SIGHUP: nothing to reload");
    // Still serving.
    let done = connect(
        &l.addr(),
        &["--pin", &l.pin()],
        Input::Bytes(b"still here\n".to_vec()),
    );
    done.expect_code(0);
    assert_eq!(done.stdout, b"still here\n");
    l.stop().expect_code(143);
}

#[test]
fn sighup_reaches_every_event_loop() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let (cert, key) = (dir.join("live.pem"), dir.join("live.key"));
    std::fs::copy(&pki.server.cert, &cert).unwrap();
    std::fs::copy(&pki.server.key, &key).unwrap();
    // A backend that takes connections into its backlog and nothing more.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = backend.local_addr().unwrap().to_string();
    let l = Listener::start(
        &[
            "--to",
            &to,
            "--threads",
            "2",
            "--cert",
            s(&cert),
            "--key",
            s(&key),
        ],
        Input::Null,
    );
    let addr = format!("localhost:{}", l.port);
    let before = served(&addr, &pki.ca.cert);
    let next = pki.ca.server("next", &["localhost"], KeyType::P256, VALID);
    std::fs::copy(&next.cert, &cert).unwrap();
    std::fs::copy(&next.key, &key).unwrap();
    l.signal(libc::SIGHUP);
    l.wait_line("SIGHUP: reloaded");
    // The kernel spreads clients over both loops: every one is served the new certificate.
    for _ in 0..8 {
        assert_ne!(served(&addr, &pki.ca.cert), before);
    }
    l.stop().expect_code(143);
}

/// Through a plain port: send `data`, end our side, read what comes back.
fn round_trip(port: u16, data: &[u8]) -> Vec<u8> {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.write_all(data).unwrap();
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    read_all(&mut sock)
}

#[test]
fn sighup_on_connect_from_changes_which_server_it_trusts() {
    let pki = Pki::new();
    let other = Pki::new();
    let server = Listener::start(
        &[
            "-k",
            "--cert",
            s(&pki.server.cert),
            "--key",
            s(&pki.server.key),
            "-e",
            "cat",
        ],
        Input::Null,
    );
    // The tunnel trusts another CA first.
    let trusted = write(
        pki.dir.path(),
        "trusted.pem",
        std::fs::read(&other.ca.cert).unwrap(),
    );
    let mut cmd = stls();
    cmd.args([
        "connect",
        &format!("localhost:{}", server.port),
        "--from",
        "127.0.0.1:0",
        "--cacert",
        s(&trusted),
    ]);
    let tunnel = Listener::start_cmd(&mut cmd, Input::Null);
    assert_eq!(round_trip(tunnel.port, b"hello\n"), b"");
    tunnel.wait_line("is --cacert the right CA?");
    // The file now holds the server's CA: after SIGHUP, new connections trust it.
    std::fs::copy(&pki.ca.cert, &trusted).unwrap();
    tunnel.signal(libc::SIGHUP);
    tunnel.wait_line("SIGHUP: reloaded");
    assert_eq!(round_trip(tunnel.port, b"hello\n"), b"hello\n");
    // A bad file keeps what was trusted.
    std::fs::write(&trusted, "not a certificate").unwrap();
    tunnel.signal(libc::SIGHUP);
    tunnel.wait_line("the certificates loaded before are kept");
    assert_eq!(round_trip(tunnel.port, b"again\n"), b"again\n");
    tunnel.stop().expect_code(143);
    server.stop().expect_code(143);
}

/// A backend that sends `data` to its one client: the first `first` bytes at once, the rest
/// when told to go on; then it closes.
fn held_backend(data: Vec<u8>, first: usize) -> (u16, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (go, wait) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let _ = sock.write_all(&data[..first]);
        // Told to go on, or the test is over (the sender dropped): send the rest.
        let _ = wait.recv();
        let _ = sock.write_all(&data[first..]);
    });
    (port, go)
}

/// `stls listen --to` the backend at `port` with `extra`, and a client receiving from it
/// through stls that has had `first` bytes.
fn tunnel_in_flight(pki: &Pki, port: u16, first: usize, extra: &[&str]) -> (Listener, Proc) {
    let backend = format!("127.0.0.1:{port}");
    let mut args = vec!["--to", &backend, "--cert", s(&pki.server.cert)];
    args.extend(["--key", s(&pki.server.key)]);
    args.extend(extra);
    let l = Listener::start(&args, Input::Null);
    let mut cmd = stls();
    cmd.args([
        "connect",
        &format!("localhost:{}", l.port),
        "--cacert",
        s(&pki.ca.cert),
        "--recv-only",
    ]);
    let client = Proc::spawn(&mut cmd, Input::Null);
    client.wait_stdout(first).unwrap();
    (l, client)
}

#[test]
fn a_drain_lets_a_transfer_in_flight_finish_and_refuses_new_clients() {
    let pki = Pki::new();
    let data = random_bytes(20 << 20, 29);
    let first = 1 << 20;
    let (port, go) = held_backend(data.clone(), first);
    let (l, client) = tunnel_in_flight(&pki, port, first, &["--drain", "600", "--threads", "2"]);
    l.signal(libc::SIGTERM);
    l.wait_line("draining");
    // Every loop stops accepting: new clients are refused (each loop closes its socket).
    let until = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", l.port)).is_ok() {
        assert!(Instant::now() < until, "still accepting while draining");
        std::thread::sleep(Duration::from_millis(50));
    }
    go.send(()).unwrap();
    let done = client.finish();
    done.expect_code(0);
    assert_same(&done.stdout, &data, "the transfer in flight at SIGTERM");
    l.finish()
        .expect_code(143)
        .expect_stderr("drained: every connection finished");
}

#[test]
fn a_connection_still_open_when_the_drain_ends_is_reset() {
    let pki = Pki::new();
    let data = random_bytes(2 << 20, 31);
    let first = 1 << 20;
    let (port, _go) = held_backend(data, first);
    let (l, client) = tunnel_in_flight(&pki, port, first, &["--drain", "0.5", "--threads", "1"]);
    l.signal(libc::SIGINT);
    l.finish()
        .expect_code(130)
        .expect_stderr("SIGINT: draining")
        .expect_stderr("drained: 1 connection reset, unfinished");
    // Cut short: the client must not take it for complete.
    assert_ne!(client.finish().code(), 0);
}

#[test]
fn a_second_signal_ends_a_drain_at_once() {
    let pki = Pki::new();
    let data = random_bytes(2 << 20, 30);
    let first = 1 << 20;
    let (port, _go) = held_backend(data, first);
    let (l, client) = tunnel_in_flight(&pki, port, first, &["--drain", "600", "--threads", "1"]);
    l.signal(libc::SIGTERM);
    l.wait_line("draining");
    l.signal(libc::SIGTERM);
    let done = l.finish();
    done.expect_code(143);
    assert!(!done.stderr.contains("drained"), "{}", done.stderr);
    // The client's transfer was cut short: it does not end well.
    assert_ne!(client.finish().code(), 0);
}

#[test]
fn listen_systemd_without_socket_activation_is_a_usage_error() {
    let mut cmd = stls();
    cmd.args(["listen", "systemd:"]).env_remove("LISTEN_FDS");
    Proc::spawn(&mut cmd, Input::Null)
        .finish()
        .expect_code(2)
        .expect_stderr("systemd passed no socket");
}

/// What stls tells systemd, as datagrams on a socket of the test's.
struct Notifications {
    sock: UnixDatagram,
    /// What `NOTIFY_SOCKET` says: a path, or `@` and an abstract name.
    path: String,
    seen: Vec<String>,
}

impl Notifications {
    fn new(dir: &Path) -> Notifications {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Notifications {
            sock,
            path: s(&path).to_string(),
            seen: Vec::new(),
        }
    }

    /// On an abstract socket (`NOTIFY_SOCKET=@NAME`), as systemd's own is.
    fn abstract_socket() -> Notifications {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("stls-test-notify-{}-{:x}", std::process::id(), rand_u64());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Notifications {
            sock,
            path: format!("@{name}"),
            seen: Vec::new(),
        }
    }

    /// Wait for a datagram holding `line`; the datagram.
    fn wait(&mut self, line: &str) -> String {
        let until = Instant::now() + PATIENCE;
        loop {
            let mut buf = [0u8; 4096];
            if let Ok(n) = self.sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                self.seen.push(text.clone());
                if text.lines().any(|l| l == line) {
                    return text;
                }
            }
            assert!(
                Instant::now() < until,
                "no {line} from stls; seen: {:?}",
                self.seen
            );
        }
    }
}

/// `systemd-socket-activate` listening on `at`, starting `stls listen systemd: ARGS…` with
/// `NOTIFY_SOCKET` and a watchdog.
fn activated(at: &str, notify: &Notifications, args: &[&str]) -> Proc {
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.args(["-l", at])
        .arg("-E")
        .arg(format!("NOTIFY_SOCKET={}", notify.path))
        .args(["-E", "WATCHDOG_USEC=1000000"])
        .arg(env!("CARGO_BIN_EXE_stls"))
        .args(["listen", "systemd:"])
        .args(args);
    let proc = Proc::spawn(&mut cmd, Input::Null);
    // Its own line, once its socket is there.
    proc.wait_line("Listening on");
    proc
}

#[test]
fn socket_activation_serves_curl_and_tells_systemd() {
    if !have("systemd-socket-activate") || !have("curl") {
        return;
    }
    let pki = Pki::new();
    let port = free_port();
    let mut notify = Notifications::new(pki.dir.path());
    let reply = "printf 'HTTP/1.0 200 OK\\r\\nContent-Length: 6\\r\\n\\r\\nhello\\n'";
    let (cert, key) = (s(&pki.server.cert), s(&pki.server.key));
    let stls = activated(
        &format!("127.0.0.1:{port}"),
        &notify,
        &["-k", "--cert", cert, "--key", key, "-c", reply],
    );
    // systemd-socket-activate starts stls at the first client, which waits in the backlog.
    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert", s(&pki.ca.cert)])
        .arg(format!("https://localhost:{port}/"))
        .output()
        .unwrap();
    notify.wait("READY=1");
    assert_eq!(
        curl.stdout,
        b"hello\n",
        "curl: {}",
        String::from_utf8_lossy(&curl.stderr)
    );
    notify.wait("WATCHDOG=1");
    stls.signal(libc::SIGHUP);
    let reloading = notify.wait("RELOADING=1");
    assert!(
        reloading.lines().any(|l| l
            .strip_prefix("MONOTONIC_USEC=")
            .is_some_and(|v| v.parse::<u64>().is_ok())),
        "{reloading}"
    );
    notify.wait("READY=1");
    stls.signal(libc::SIGTERM);
    notify.wait("STOPPING=1");
    let done = stls.finish();
    done.expect_code(143);
}

#[test]
fn socket_activation_of_a_unix_socket() {
    if !have("systemd-socket-activate") {
        return;
    }
    let pki = Pki::new();
    let sock = pki.dir.path().join("stls.sock");
    let mut notify = Notifications::new(pki.dir.path());
    let (cert, key) = (s(&pki.server.cert), s(&pki.server.key));
    let stls = activated(
        s(&sock),
        &notify,
        &["-k", "--cert", cert, "--key", key, "-e", "cat"],
    );
    // Started at the first client.
    let done = connect(
        &format!("unix:{}", s(&sock)),
        &["--cacert", s(&pki.ca.cert), "--servername", "localhost"],
        Input::Bytes(b"over systemd's socket\n".to_vec()),
    );
    done.expect_code(0);
    assert_eq!(done.stdout, b"over systemd's socket\n");
    notify.wait("READY=1");
    stls.signal(libc::SIGTERM);
    stls.finish().expect_code(143);
    // The socket file is systemd's: stls leaves it.
    assert!(sock.exists());
}

#[test]
fn a_drain_tells_systemd_it_is_stopping() {
    if !have("systemd-socket-activate") {
        return;
    }
    let pki = Pki::new();
    let port = free_port();
    let mut notify = Notifications::new(pki.dir.path());
    let (cert, key) = (s(&pki.server.cert), s(&pki.server.key));
    let stls = activated(
        &format!("127.0.0.1:{port}"),
        &notify,
        &[
            "-k", "--cert", cert, "--key", key, "--drain", "5", "-e", "cat",
        ],
    );
    // Started at the first client, which then goes.
    drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
    notify.wait("READY=1");
    stls.signal(libc::SIGTERM);
    notify.wait("STOPPING=1");
    let done = stls.finish();
    done.expect_code(143).expect_stderr("drained:");
}

#[test]
fn socket_activation_picks_a_socket_by_name() {
    if !have("systemd-socket-activate") {
        return;
    }
    let pki = Pki::new();
    let (admin, web) = (free_port(), free_port());
    let (cert, key) = (s(&pki.server.cert), s(&pki.server.key));
    let start = |spec: &str, args: &[&str]| {
        let mut cmd = Command::new("systemd-socket-activate");
        cmd.arg("-l")
            .arg(format!("127.0.0.1:{admin}"))
            .arg("-l")
            .arg(format!("127.0.0.1:{web}"))
            .arg("--fdname=admin:web")
            .arg(env!("CARGO_BIN_EXE_stls"))
            .args(["listen", spec])
            .args(args);
        let proc = Proc::spawn(&mut cmd, Input::Null);
        proc.wait_line(&format!("Listening on 127.0.0.1:{web}"));
        proc
    };
    let stls = start(
        "systemd:web",
        &["-k", "--cert", cert, "--key", key, "-e", "cat"],
    );
    let done = connect(
        &format!("localhost:{web}"),
        &["--cacert", s(&pki.ca.cert)],
        Input::Bytes(b"by name\n".to_vec()),
    );
    done.expect_code(0);
    assert_eq!(done.stdout, b"by name\n");
    stls.signal(libc::SIGTERM);
    stls.finish().expect_code(143);
    // A name systemd did not pass, and two sockets without a name, are usage errors that
    // name what was passed. stls starts at the first client.
    for (spec, says) in [
        (
            "systemd:nope",
            "no socket of that name (LISTEN_FDNAMES: admin, web)",
        ),
        (
            "systemd:",
            "passed 2 sockets (admin, web): name one with systemd:NAME",
        ),
    ] {
        let stls = start(spec, &[]);
        let _client = TcpStream::connect(("127.0.0.1", web)).unwrap();
        stls.finish().expect_code(2).expect_stderr(says);
    }
}

/// The README's systemd recipe, tried by hand as it says.
const BY_HAND: &str =
    "systemd-socket-activate -l 8443 stls listen systemd: --to 127.0.0.1:8080 --cert cert.pem";

#[test]
fn the_readmes_socket_activation_recipe() {
    let readme = std::fs::read_to_string("README.md").expect("README");
    assert!(
        readme.contains(&format!("    {BY_HAND}\n")),
        "README.md no longer has the line {BY_HAND:?}"
    );
    if !have("systemd-socket-activate") || !have("curl") {
        return;
    }
    let pki = Pki::new();
    let dir = pki.dir.path();
    // The key in the certificate's file, as --cert allows.
    let mut pem = std::fs::read(&pki.server.cert).unwrap();
    pem.extend(std::fs::read(&pki.server.key).unwrap());
    write(dir, "cert.pem", pem);
    // The backend: a plain HTTP reply to one client.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = backend.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        if let Ok((mut sock, _)) = backend.accept() {
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut sock, &mut buf);
            let _ = sock.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
        }
    });
    let port = free_port();
    let line = BY_HAND
        .replace("-l 8443", &format!("-l 127.0.0.1:{port}"))
        .replace("127.0.0.1:8080", &to);
    let bin = Path::new(env!("CARGO_BIN_EXE_stls")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec {line}"))
        .current_dir(dir)
        .env("PATH", path);
    let stls = Proc::spawn(&mut cmd, Input::Null);
    stls.wait_line("Listening on");
    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert", s(&pki.ca.cert)])
        .arg(format!("https://localhost:{port}/"))
        .output()
        .unwrap();
    assert_eq!(
        curl.stdout,
        b"ok\n",
        "curl: {}",
        String::from_utf8_lossy(&curl.stderr)
    );
    stls.signal(libc::SIGTERM);
    stls.finish().expect_code(143);
}

#[test]
fn a_drain_delivers_what_k_receives_to_stdout() {
    let data = random_bytes(4 << 20, 32);
    let half = data.len() / 2;
    let l = Listener::start(&["-k", "--recv-only", "--drain", "600"], Input::Null);
    let mut cmd = stls();
    cmd.args(["connect", &l.addr(), "--pin", &l.pin(), "--send-only"]);
    let mut client = Proc::spawn(&mut cmd, Input::Held);
    client.stdin().write_all(&data[..half]).unwrap();
    l.proc.wait_stdout(1).unwrap();
    l.signal(libc::SIGTERM);
    l.wait_line("draining");
    client.stdin().write_all(&data[half..]).unwrap();
    client.close_stdin();
    client.finish().expect_code(0);
    let done = l.finish();
    done.expect_code(143);
    assert_same(&done.stdout, &data, "what the client sent during the drain");
}

/// A number that differs between runs, for names that must not clash.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

#[test]
fn notifications_reach_an_abstract_socket() {
    if !have("systemd-socket-activate") {
        return;
    }
    let port = free_port();
    let mut notify = Notifications::abstract_socket();
    let stls = activated(&format!("127.0.0.1:{port}"), &notify, &["-k"]);
    // Started at the first client, which then goes.
    drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
    notify.wait("READY=1");
    // An ephemeral certificate: SIGHUP reloads nothing, and the service goes on.
    stls.signal(libc::SIGHUP);
    stls.wait_line("nothing to reload");
    notify.wait("WATCHDOG=1");
    stls.signal(libc::SIGTERM);
    notify.wait("STOPPING=1");
    stls.finish().expect_code(143);
}
