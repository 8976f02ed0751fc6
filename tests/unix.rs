//! Unix-domain sockets wherever an address is taken: `connect unix:PATH` and `listen
//! unix:PATH` (and the abstract `unix:@NAME`) against openssl's `-unix` client and server,
//! tunnels to and from Unix sockets with socat, ncat, curl, python's http.server and nginx as
//! the other parts, the socket file's life (its mode, a leftover, a live one, a file that is
//! not a socket, removal at exit and on a signal), the client's credentials in `-e`/`-c`
//! children, and the PROXY header of a Unix client.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::tunnels::{curl, http_server, proxy_backend};
use crate::util::peer::{self, close_notify, read_to_close_notify};
use crate::util::pki::{s, Pki};
use crate::util::*;

/// A socket path in `dir`, and its `unix:PATH` address.
fn unix(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let addr = format!("unix:{}", s(&path));
    (path, addr)
}

/// A name in the abstract namespace that no other test, and no other run, uses.
fn abstract_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "stls-test-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `stls listen ADDR` with the fixture's server certificate, plus `extra`.
fn serve(pki: &Pki, addr: &str, extra: &[&str], input: Input) -> UnixServer {
    let mut args = vec!["--cert", s(&pki.server.cert), "--key", s(&pki.server.key)];
    args.extend(extra);
    UnixServer::start(addr, &args, input)
}

/// What a client of the fixture's server needs on a Unix socket: the name to verify, and
/// the CA.
fn verified(pki: &Pki) -> [&str; 4] {
    ["--servername", "localhost", "--cacert", s(&pki.ca.cert)]
}

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("the socket file")
        .permissions()
        .mode()
        & 0o777
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// `openssl s_server -unix PATH` for one connection, serving the fixture's certificate; what
/// it receives goes to its stdout, and it sends its stdin (`input`).
fn s_server_unix(pki: &Pki, path: &Path, input: Input) -> Proc {
    let mut cmd = Command::new("openssl");
    // -nbio: see interop.rs (a blocking s_server can stall after one chunk of its stdin).
    cmd.args([
        "s_server",
        "-nbio",
        "-quiet",
        "-naccept",
        "1",
        "-unix",
        s(path),
    ])
    .args(["-cert", s(&pki.server.cert), "-key", s(&pki.server.key)]);
    let proc = Proc::spawn(&mut cmd, input);
    wait_unix_listening(s(path));
    proc
}

/// `openssl s_client -unix PATH`, verifying localhost against the fixture's CA.
fn s_client_unix(pki: &Pki, path: &Path, extra: &[&str], input: Input) -> Proc {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-quiet", "-nocommands", "-unix", s(path)])
        .args(["-servername", "localhost", "-verify_hostname", "localhost"])
        .args(["-CAfile", s(&pki.ca.cert), "-verify_return_error"])
        .args(extra);
    Proc::spawn(&mut cmd, input)
}

#[test]
fn connect_unix_to_openssl_s_server_both_ways() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let dir = tempdir();

    // Client → server: s_server's stdin stays open so it keeps reading.
    let (path, addr) = unix(dir.path(), "up.sock");
    let data = random_bytes(1 << 20, 2801);
    let server = s_server_unix(&pki, &path, Input::Held);
    let mut args = verified(&pki).to_vec();
    args.push("-v");
    let client = connect(&addr, &args, Input::Bytes(data.clone()));
    client
        .expect_code(0)
        .expect_stderr(&format!("connected to {addr}"))
        .expect_stderr("TLSv1.3");
    let server = server.finish_or_kill(Duration::from_secs(10));
    assert_eq!(server.code(), 0, "s_server: {}", server.stderr);
    assert_same(&server.stdout, &data, "stls connect unix: → s_server -unix");

    // Server → client: s_server sends its stdin and keeps the connection open; once every
    // byte is through, our stdin ends and both sides exchange close_notify.
    let (path, addr) = unix(dir.path(), "down.sock");
    let data = random_bytes(1 << 20, 2802);
    let server = s_server_unix(&pki, &path, Input::Bytes(data.clone()));
    let mut cmd = stls();
    cmd.arg("connect").arg(&addr).args(verified(&pki));
    let mut client = Proc::spawn(&mut cmd, Input::Held);
    client.wait_stdout(data.len()).unwrap();
    client.close_stdin();
    let client = client.finish();
    client.expect_code(0);
    let server = server.finish_or_kill(Duration::from_secs(10));
    assert_eq!(server.code(), 0, "s_server: {}", server.stderr);
    assert_same(&client.stdout, &data, "s_server -unix → stls connect unix:");
}

#[test]
fn openssl_s_client_to_listen_unix_both_ways() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let dir = tempdir();
    let (path, addr) = unix(dir.path(), "tls.sock");

    // Client → server: s_client sends its stdin and closes at EOF (-no_ign_eof).
    let data = random_bytes(1 << 20, 2803);
    let l = serve(&pki, &addr, &["-v"], Input::Held);
    assert_eq!(l.addr, addr);
    let client = s_client_unix(&pki, &path, &["-no_ign_eof"], Input::Bytes(data.clone())).finish();
    assert_eq!(client.code(), 0, "s_client: {}", client.stderr);
    let server = l.finish();
    server.expect_code(0).expect_stderr("TLSv1.3");
    assert_same(&server.stdout, &data, "s_client -unix → stls listen unix:");
    assert!(!path.exists(), "the socket file outlived its listener");

    // Server → client: stls listen sends its stdin; s_client reads until the close.
    let data = random_bytes(1 << 20, 2804);
    let l = serve(&pki, &addr, &[], Input::Bytes(data.clone()));
    let client = s_client_unix(&pki, &path, &[], Input::Null).finish();
    assert_eq!(client.code(), 0, "s_client: {}", client.stderr);
    assert_same(&client.stdout, &data, "stls listen unix: → s_client -unix");
    l.finish().expect_code(0);
    assert!(!path.exists(), "the socket file outlived its listener");
}

#[test]
fn curl_over_a_unix_socket_through_listen_to_a_web_server() {
    if !have("curl") || !have("python3") {
        return;
    }
    let pki = Pki::new();
    let site = tempdir();
    let body = random_bytes(5 << 20, 2805);
    std::fs::write(site.path().join("big.bin"), &body).unwrap();
    let (web, _server) = http_server(site.path());
    let dir = tempdir();
    let (path, addr) = unix(dir.path(), "https.sock");
    // Two event loops sharing the one socket.
    let backend = format!("127.0.0.1:{web}");
    let _l = serve(
        &pki,
        &addr,
        &["--to", &backend, "--threads", "2"],
        Input::Null,
    );
    let args = [
        "--unix-socket",
        s(&path),
        "--cacert",
        s(&pki.ca.cert),
        "https://localhost/big.bin",
    ];
    let got = curl(&args);
    got.expect_code(0);
    assert_same(&got.stdout, &body, "5 MiB through listen unix: --to");
    // 20 at once.
    let downloads: Vec<_> = (0..20)
        .map(|_| {
            let mut cmd = Command::new("curl");
            cmd.arg("-s").args(args);
            Proc::spawn(&mut cmd, Input::Null)
        })
        .collect();
    for d in downloads {
        let got = d.finish();
        got.expect_code(0);
        assert_same(&got.stdout, &body, "one of 20 concurrent downloads");
    }
}

/// nginx in the foreground with every file it writes in `dir`, serving `dir/www` on the Unix
/// socket `dir/web.sock`; `None` (with a skip line) where nginx is not installed.
fn nginx(dir: &Path) -> Option<Proc> {
    if !have("nginx") {
        return None;
    }
    // Run as root, nginx's worker is `nobody`, which must reach the files.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(dir.join("www")).unwrap();
    let d = s(dir);
    let conf = format!(
        "worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
         access_log {d}/access.log;\n\
         client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n\
         scgi_temp_path {d}/scgi;\n\
         server {{\n\
         listen unix:{d}/web.sock;\n\
         root {d}/www;\n\
         }}\n\
         }}\n"
    );
    let conf = write(dir, "nginx.conf", conf);
    // Debian installs it in /usr/sbin, which an ordinary user's PATH may lack.
    let mut cmd = Command::new("nginx");
    cmd.env("PATH", path_with_sbin());
    cmd.args(["-p", d, "-c", s(&conf), "-e"])
        .arg(dir.join("error.log"))
        .args(["-g", "daemon off;"]);
    let proc = Proc::spawn(&mut cmd, Input::Null);
    wait_unix_listening(&format!("{d}/web.sock"));
    Some(proc)
}

#[test]
fn nginx_on_a_unix_socket_behind_listen_to() {
    if !have("curl") {
        return;
    }
    let dir = tempdir();
    // Dropped at the end of the test: the group, master and worker, is killed.
    let Some(_nginx) = nginx(dir.path()) else {
        return;
    };
    let body = random_bytes(3 << 20, 2806);
    std::fs::write(dir.path().join("www/big.bin"), &body).unwrap();
    let pki = Pki::new();
    let backend = format!("unix:{}/web.sock", s(dir.path()));
    let l = Listener::start(
        &[
            "--to",
            &backend,
            "--cert",
            s(&pki.server.cert),
            "--key",
            s(&pki.server.key),
        ],
        Input::Null,
    );
    let url = format!("https://localhost:{}/big.bin", l.port);
    let downloads: Vec<_> = (0..5)
        .map(|_| {
            let mut cmd = Command::new("curl");
            cmd.args(["-s", "-S", "--cacert", s(&pki.ca.cert), &url]);
            Proc::spawn(&mut cmd, Input::Null)
        })
        .collect();
    for d in downloads {
        let got = d.finish();
        got.expect_code(0);
        assert_same(&got.stdout, &body, "nginx on a Unix socket, through stls");
    }
    // nginx's own answer comes through too.
    let missing = format!("https://localhost:{}/missing", l.port);
    let got = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        s(&pki.ca.cert),
        &missing,
    ]);
    got.expect_code(0);
    assert_eq!(got.stdout, b"404");
}

#[test]
fn socat_and_ncat_as_unix_socket_backends_of_listen_to() {
    let pki = Pki::new();
    let dir = tempdir();
    let data = random_bytes(2 << 20, 2807);
    // An echo: what the client sends comes back once it has ended its side.
    if have("socat") {
        let (path, addr) = unix(dir.path(), "socat.sock");
        let mut cmd = Command::new("socat");
        cmd.args(["-t", "30", &format!("UNIX-LISTEN:{}", s(&path)), "EXEC:cat"]);
        let _socat = Proc::spawn(&mut cmd, Input::Null);
        wait_unix_listening(s(&path));
        let l = serve_k(&pki.server, &["--to", &addr], Input::Null);
        let done = connect(
            &format!("localhost:{}", l.port),
            &["--cacert", s(&pki.ca.cert)],
            Input::Bytes(data.clone()),
        );
        done.expect_code(0);
        assert_same(&done.stdout, &data, "through listen --to unix: to socat");
    }
    // A recorder: ncat stores what arrives.
    if have("ncat") {
        let (path, addr) = unix(dir.path(), "ncat.sock");
        let mut cmd = Command::new("ncat");
        cmd.args(["-l", "-U", s(&path), "--recv-only"]);
        let ncat = Proc::spawn(&mut cmd, Input::Null);
        wait_unix_listening(s(&path));
        let l = serve_k(&pki.server, &["--to", &addr], Input::Null);
        connect(
            &format!("localhost:{}", l.port),
            &["--cacert", s(&pki.ca.cert), "--send-only"],
            Input::Bytes(data.clone()),
        )
        .expect_code(0);
        let ncat = ncat.finish_or_kill(Duration::from_secs(10));
        assert_same(&ncat.stdout, &data, "through listen --to unix: to ncat -U");
    }
}

#[test]
fn socat_and_ncat_as_clients_of_connect_from_unix() {
    let pki = Pki::new();
    let dir = tempdir();
    // The TLS service: an echo.
    let echo = serve_k(&pki.server, &["-c", "cat"], Input::Null);
    let (path, addr) = unix(dir.path(), "plain.sock");
    let mut cmd = stls();
    cmd.args([
        "connect",
        &format!("localhost:{}", echo.port),
        "--from",
        &addr,
    ])
    .args(["--cacert", s(&pki.ca.cert)]);
    let from = UnixServer::start_cmd(&mut cmd, Input::Null);
    assert_eq!(from.addr, addr);
    assert!(is_socket(&path));
    let data = random_bytes(2 << 20, 2808);
    if have("socat") {
        let mut cmd = Command::new("socat");
        cmd.args(["-t", "30", "-", &format!("UNIX-CONNECT:{}", s(&path))]);
        let done = Proc::spawn(&mut cmd, Input::Bytes(data.clone())).finish();
        assert_eq!(done.code(), 0, "socat: {}", done.stderr);
        assert_same(
            &done.stdout,
            &data,
            "socat UNIX-CONNECT through connect --from",
        );
    }
    if have("ncat") {
        let mut cmd = Command::new("ncat");
        cmd.args(["-U", s(&path)]);
        let done = Proc::spawn(&mut cmd, Input::Bytes(data.clone())).finish();
        assert_eq!(done.code(), 0, "ncat: {}", done.stderr);
        assert_same(&done.stdout, &data, "ncat -U through connect --from");
    }
    // The socket file goes as a listener's does.
    from.stop().expect_code(143);
    assert!(!path.exists(), "connect --from left its socket file");
}

#[test]
fn a_leftover_socket_is_replaced_a_live_one_is_in_use_and_another_file_is_left_alone() {
    let dir = tempdir();
    // A leftover: a socket file whose listener went without removing it.
    let (path, addr) = unix(dir.path(), "left.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(is_socket(&path));
    let l = UnixServer::start(&addr, &["-k", "-c", "echo served"], Input::Null);
    let pin = l.pin();
    let served = || {
        let done = connect(&addr, &["--pin", &pin], Input::Null);
        done.expect_code(0);
        assert_eq!(done.stdout, b"served\n");
    };
    served();
    // Live: a second listener is refused, and the first goes on serving.
    run(&["listen", &addr], Input::Null)
        .expect_code(3)
        .expect_stderr("in use");
    served();
    l.stop().expect_code(143);
    assert!(!path.exists());

    // Live, and not ours: the same, and its file stays.
    let (path, addr) = unix(dir.path(), "theirs.sock");
    let theirs = std::os::unix::net::UnixListener::bind(&path).unwrap();
    run(&["listen", &addr], Input::Null)
        .expect_code(3)
        .expect_stderr("in use");
    assert!(
        is_socket(&path),
        "another program's socket file was removed"
    );
    drop(theirs);

    // Not a socket: exit 1, the file as it was.
    let file = write(dir.path(), "notes.txt", "precious\n");
    let addr = format!("unix:{}", s(&file));
    run(&["listen", &addr], Input::Null)
        .expect_code(1)
        .expect_stderr("not a socket");
    assert_eq!(std::fs::read(&file).unwrap(), b"precious\n");

    // Exactly as long as the kernel takes: it listens.
    let base = dir.path().as_os_str().len() + 1;
    let (path, addr) = unix(dir.path(), &"b".repeat(107 - base));
    assert_eq!(path.as_os_str().len(), 107);
    let l = UnixServer::start(&addr, &["-k"], Input::Null);
    assert!(is_socket(&path));
    l.stop().expect_code(143);
    // Longer than the kernel takes: a usage error naming the limit, for listen and connect,
    // and nothing made.
    let long = dir.path().join("a".repeat(108));
    let addr = format!("unix:{}", s(&long));
    run(&["listen", &addr], Input::Null)
        .expect_code(2)
        .expect_stderr("at most 107 bytes");
    connect(&addr, &["--servername", "localhost"], Input::Null)
        .expect_code(2)
        .expect_stderr("at most 107 bytes");
    assert!(!long.exists());
}

#[test]
fn the_socket_file_has_unix_mode_and_goes_when_stls_exits() {
    let dir = tempdir();
    let (path, addr) = unix(dir.path(), "mode.sock");
    // Default 660; a one-shot listener removes the file when its session ends.
    let l = UnixServer::start(&addr, &[], Input::Null);
    assert!(is_socket(&path));
    assert_eq!(mode(&path), 0o660, "default --unix-mode");
    connect(&addr, &["--pin", &l.pin()], Input::Null).expect_code(0);
    l.finish().expect_code(0);
    assert!(!path.exists(), "the socket file outlived its listener");
    // --unix-mode 600, then SIGTERM.
    let l = UnixServer::start(&addr, &["-k", "--unix-mode", "600"], Input::Null);
    assert_eq!(mode(&path), 0o600, "--unix-mode 600");
    l.stop().expect_code(143);
    assert!(!path.exists());
    // Not octal permission bits: a usage error.
    run(&["listen", &addr, "--unix-mode", "999"], Input::Null).expect_code(2);
    assert!(!path.exists());
    // connect --from unix:PATH makes its socket file the same way.
    for (extra, want) in [(&[][..], 0o660), (&["--unix-mode", "600"], 0o600)] {
        let mut cmd = stls();
        cmd.args(["connect", "127.0.0.1:9", "--insecure", "--from", &addr])
            .args(extra);
        let from = UnixServer::start_cmd(&mut cmd, Input::Null);
        assert_eq!(mode(&path), want, "connect --from {extra:?}");
        from.stop().expect_code(143);
        assert!(!path.exists());
    }
}

#[test]
fn a_listener_removes_only_its_own_socket_file() {
    // The file is removed and another listener takes the path: when the first one exits,
    // the second one's file stays.
    let dir = tempdir();
    let (path, addr) = unix(dir.path(), "taken.sock");
    let first = UnixServer::start(&addr, &["-k"], Input::Null);
    std::fs::remove_file(&path).unwrap();
    let second = UnixServer::start(&addr, &["-k", "-c", "echo second"], Input::Null);
    first.stop().expect_code(143);
    assert!(
        is_socket(&path),
        "the first listener removed the second one's socket file"
    );
    let done = connect(&addr, &["--pin", &second.pin()], Input::Null);
    done.expect_code(0);
    assert_eq!(done.stdout, b"second\n");
    second.stop().expect_code(143);
    assert!(!path.exists());
}

#[test]
fn sigterm_and_sigint_remove_the_socket_file_in_every_kind_of_listener() {
    let pki = Pki::new();
    let dir = tempdir();
    let (path, addr) = unix(dir.path(), "sig.sock");
    // A backend that takes connections into its queue and nothing more.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = format!("127.0.0.1:{}", held.local_addr().unwrap().port());
    let modes: [&[&str]; 3] = [
        &["-k"],
        &["-k", "--threads", "2", "-c", "cat"],
        &["--to", backend.as_str(), "--threads", "2"],
    ];
    for extra in modes {
        for (sig, status) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
            let l = serve(&pki, &addr, extra, Input::Null);
            assert!(is_socket(&path), "{extra:?}");
            // A client in the middle of a session when the signal comes.
            let mut cmd = stls();
            cmd.arg("connect").arg(&addr).args(verified(&pki));
            let client = Proc::spawn(&mut cmd, Input::Held);
            l.signal(sig);
            l.finish().expect_code(status);
            assert!(
                !path.exists(),
                "{extra:?}: signal {sig} left the socket file"
            );
            drop(client);
        }
    }
}

#[test]
fn exec_children_learn_the_unix_clients_credentials() {
    let dir = tempdir();
    let (_path, addr) = unix(dir.path(), "cred.sock");
    let script = "echo uid=$STLS_PEER_UID gid=$STLS_PEER_GID pid=$STLS_PEER_PID \
                  addr=${STLS_PEER_ADDR-unset} port=${STLS_PEER_PORT-unset}";
    let l = UnixServer::start(&addr, &["-k", "-v", "-c", script], Input::Null);
    let mut cmd = stls();
    cmd.args(["connect", &addr, "--pin", &l.pin()]);
    let client = Proc::spawn(&mut cmd, Input::Null);
    let pid = client.pid();
    let done = client.finish();
    done.expect_code(0);
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    assert_eq!(
        String::from_utf8_lossy(&done.stdout),
        format!("uid={uid} gid={gid} pid={pid} addr=unset port=unset\n")
    );
    let line = l.wait_line(&format!("(pid {pid}, uid {uid})"));
    assert!(line.contains(&addr), "{line}");
    // Over TCP they are unset, and the address is set.
    let tcp = Listener::start(
        &[
            "-k",
            "-c",
            "echo uid=${STLS_PEER_UID-unset} gid=${STLS_PEER_GID-unset} \
             pid=${STLS_PEER_PID-unset} addr=$STLS_PEER_ADDR",
        ],
        Input::Null,
    );
    let done = connect(&tcp.addr(), &["--pin", &tcp.pin()], Input::Null);
    done.expect_code(0);
    assert_eq!(
        String::from_utf8_lossy(&done.stdout),
        "uid=unset gid=unset pid=unset addr=127.0.0.1\n"
    );
}

#[test]
fn another_users_client_meets_unix_mode_and_is_named_by_its_own_ids() {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: not root, so no client of another user; this check did not run");
        return;
    }
    if !have("setpriv") {
        return;
    }
    let dir = tempdir();
    // The client, as nobody, must reach the socket in its directory.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_path, addr) = unix(dir.path(), "users.sock");
    let as_nobody = |pin: &str| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_stls"))
            .args(["connect", &addr, "--pin", pin]);
        Proc::spawn(&mut cmd, Input::Null).finish()
    };
    let script = "echo uid=$STLS_PEER_UID gid=$STLS_PEER_GID";
    // The default, 660 with root as the owner: nobody may not connect.
    let l = UnixServer::start(&addr, &["-k", "-c", script], Input::Null);
    as_nobody(&l.pin())
        .expect_code(3)
        .expect_stderr("permission denied");
    l.stop().expect_code(143);
    // 666: anyone may, and the child learns the client's ids, not the listener's.
    let l = UnixServer::start(
        &addr,
        &["-k", "--unix-mode", "666", "-c", script],
        Input::Null,
    );
    let done = as_nobody(&l.pin());
    done.expect_code(0);
    assert_eq!(done.stdout, b"uid=65534 gid=65534\n");
}

#[test]
fn abstract_names_for_listen_connect_and_from() {
    let name = abstract_name();
    let addr = format!("unix:@{name}");
    let l = UnixServer::start(
        &addr,
        &["-c", "echo from the abstract namespace"],
        Input::Null,
    );
    assert_eq!(l.addr, addr);
    wait_unix_listening(&format!("@{name}"));
    // One listener per name.
    run(&["listen", &addr], Input::Null)
        .expect_code(3)
        .expect_stderr("in use");
    let done = connect(&addr, &["--pin", &l.pin()], Input::Null);
    done.expect_code(0);
    assert_eq!(done.stdout, b"from the abstract namespace\n");
    l.finish().expect_code(0);
    // No file was made for it, here or anywhere named like it.
    assert!(!Path::new(&format!("@{name}")).exists());
    assert!(!Path::new(&name).exists());

    // connect --from unix:@NAME, for socat's ABSTRACT-CONNECT.
    if have("socat") {
        let pki = Pki::new();
        let echo = serve_k(&pki.server, &["-c", "cat"], Input::Null);
        let name = abstract_name();
        let addr = format!("unix:@{name}");
        let mut cmd = stls();
        cmd.args([
            "connect",
            &format!("localhost:{}", echo.port),
            "--from",
            &addr,
        ])
        .args(["--cacert", s(&pki.ca.cert)]);
        let _from = UnixServer::start_cmd(&mut cmd, Input::Null);
        let mut cmd = Command::new("socat");
        cmd.args(["-t", "30", "-", &format!("ABSTRACT-CONNECT:{name}")]);
        let done = Proc::spawn(&mut cmd, Input::Bytes(b"abstract\n".to_vec())).finish();
        assert_eq!(done.code(), 0, "socat: {}", done.stderr);
        assert_eq!(done.stdout, b"abstract\n");
    }
}

#[test]
fn connect_unix_needs_a_servername_unless_the_key_is_pinned() {
    let pki = Pki::new();
    let dir = tempdir();
    // A usage error, before any socket is touched.
    for extra in [&[][..], &["--cacert", s(&pki.ca.cert)]] {
        connect("unix:/nonexistent/stls.sock", extra, Input::Null)
            .expect_code(2)
            .expect_stderr("--servername");
    }
    let (_path, addr) = unix(dir.path(), "named.sock");
    let _l = serve(&pki, &addr, &["-k", "-c", "echo ok"], Input::Null);
    let done = connect(&addr, &verified(&pki), Input::Null);
    done.expect_code(0);
    assert_eq!(done.stdout, b"ok\n");
    // The name is checked as on TCP.
    connect(
        &addr,
        &["--servername", "other.example", "--cacert", s(&pki.ca.cert)],
        Input::Null,
    )
    .expect_code(5);
    // --insecure needs no name either (and says so).
    let done = connect(&addr, &["--insecure"], Input::Null);
    done.expect_code(0);
    assert_eq!(done.stdout, b"ok\n");
    // A pinned key needs no name.
    let (_path, addr) = unix(dir.path(), "pinned.sock");
    let l = UnixServer::start(&addr, &["-k", "-c", "echo pinned"], Input::Null);
    let done = connect(&addr, &["--pin", &l.pin()], Input::Null);
    done.expect_code(0);
    assert_eq!(done.stdout, b"pinned\n");
    // A proxy, in the environment or given, does not apply to a Unix socket.
    let mut cmd = stls();
    cmd.args(["connect", &addr, "--pin", &l.pin()])
        .env("https_proxy", "http://127.0.0.1:1")
        .env("all_proxy", "http://127.0.0.1:1");
    let done = Proc::spawn(&mut cmd, Input::Null).finish();
    done.expect_code(0);
    assert_eq!(done.stdout, b"pinned\n");
    let done = connect(
        &addr,
        &["--pin", &l.pin(), "--proxy", "socks5h://127.0.0.1:1"],
        Input::Null,
    );
    done.expect_code(0)
        .expect_stderr("--proxy does not apply to unix:");
    assert_eq!(done.stdout, b"pinned\n");
    // inspect has the same rule.
    run(&["inspect", &addr], Input::Null)
        .expect_code(2)
        .expect_stderr("--servername");
}

#[test]
fn tofu_records_a_unix_socket_by_its_address() {
    let dir = tempdir();
    let home = tempdir();
    let (_path, addr) = unix(dir.path(), "to fu.sock");
    let tofu = || {
        let mut cmd = stls();
        cmd.args(["connect", &addr, "--tofu"])
            .env("HOME", home.path());
        cmd.env_remove("XDG_CONFIG_HOME");
        Proc::spawn(&mut cmd, Input::Null).finish()
    };
    let l = UnixServer::start(&addr, &["-k", "-c", "echo hi"], Input::Null);
    let first = tofu();
    first
        .expect_code(0)
        .expect_stderr(&format!("{addr} is new"));
    assert_eq!(first.stdout, b"hi\n");
    let known = std::fs::read_to_string(home.path().join(".config/stls/known_hosts")).unwrap();
    assert!(known.starts_with(&format!("{addr} sha256//")), "{known}");
    let again = tofu();
    again.expect_code(0);
    assert_eq!(again.stderr, "");
    // Another key behind the same socket (a new ephemeral certificate): refused.
    l.stop().expect_code(143);
    let _l = UnixServer::start(&addr, &["-k", "-c", "echo hi"], Input::Null);
    tofu()
        .expect_code(5)
        .expect_stderr("does not have the key recorded for it");
}

#[test]
fn a_unix_client_in_a_proxy_header() {
    let pki = Pki::new();
    let dir = tempdir();
    let (path, addr) = unix(dir.path(), "pp.sock");
    for (version, v2) in [("v1", false), ("v2", true)] {
        let (port, backend) = proxy_backend(v2);
        let backend_addr = format!("127.0.0.1:{port}");
        let l = serve(
            &pki,
            &addr,
            &["--to", &backend_addr, "--proxy-protocol", version],
            Input::Null,
        );
        let done = connect(&addr, &verified(&pki), Input::Bytes(b"echo me\n".to_vec()));
        done.expect_code(0);
        assert_eq!(done.stdout, b"echo me\n");
        let header = backend.join().unwrap();
        if v2 {
            assert_eq!(&header[..12], b"\r\n\r\n\0\r\nQUIT\n");
            assert_eq!(
                header[12..14],
                [0x21, 0x31],
                "v2, PROXY, a stream over AF_UNIX"
            );
            // 216 bytes of addresses, then the TLVs about the TLS session (scaleout.rs).
            let len = u16::from_be_bytes([header[14], header[15]]) as usize;
            assert_eq!(header.len(), 16 + len);
            assert_eq!(header[16 + 216], 0x02, "the AUTHORITY TLV (SNI) first");
            assert!(
                header[16..124].iter().all(|&b| b == 0),
                "the client's address: an unnamed socket is all zeros"
            );
            let mut ours = path.as_os_str().as_encoded_bytes().to_vec();
            ours.resize(108, 0);
            assert_eq!(
                header[124..232],
                ours[..],
                "the listener's path, NUL-padded"
            );
        } else {
            assert_eq!(String::from_utf8_lossy(&header), "PROXY UNKNOWN\r\n");
        }
        l.stop().expect_code(143);
    }
    // A listener in the abstract namespace: its name with the leading NUL.
    let name = abstract_name();
    let (port, backend) = proxy_backend(true);
    let backend_addr = format!("127.0.0.1:{port}");
    let addr = format!("unix:@{name}");
    let _l = serve(
        &pki,
        &addr,
        &["--to", &backend_addr, "--proxy-protocol", "v2"],
        Input::Null,
    );
    connect(&addr, &verified(&pki), Input::Null).expect_code(0);
    let header = backend.join().unwrap();
    let mut ours = [&[0u8][..], name.as_bytes()].concat();
    ours.resize(108, 0);
    assert_eq!(
        header[124..232],
        ours[..],
        "@NAME: a NUL, the name, NUL-padded"
    );
}

#[test]
fn unix_connection_failures_are_network_errors_that_name_the_socket() {
    let pki = Pki::new();
    let dir = tempdir();
    // No such file.
    let (_path, missing) = unix(dir.path(), "missing.sock");
    connect(&missing, &verified(&pki), Input::Null)
        .expect_code(3)
        .expect_stderr(&format!("cannot connect to {missing}: no such socket"));
    // A socket file nobody listens on.
    let (path, dead) = unix(dir.path(), "dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    connect(&dead, &verified(&pki), Input::Null)
        .expect_code(3)
        .expect_stderr(&format!("cannot connect to {dead}: nobody is listening"));
    // A tunnel whose Unix backend is down: the client gets nothing, the listener a line.
    let l = serve_k(&pki.server, &["--to", &missing, "-v"], Input::Null);
    let done = connect(
        &format!("localhost:{}", l.port),
        &["--cacert", s(&pki.ca.cert)],
        Input::Null,
    );
    assert_ne!(done.code(), 0);
    assert!(done.stdout.is_empty());
    l.wait_line(&format!("cannot connect to {missing}: no such socket"));
}

#[test]
fn inspect_a_unix_socket() {
    let pki = Pki::new();
    let dir = tempdir();
    let (_path, addr) = unix(dir.path(), "inspect.sock");
    let _l = serve(&pki, &addr, &["-k"], Input::Null);
    let mut args = vec!["inspect", &addr, "--json"];
    args.extend(verified(&pki));
    let done = run(&args, Input::Null);
    done.expect_code(0);
    let v: serde_json::Value = serde_json::from_slice(&done.stdout).expect("one JSON object");
    assert_eq!(v["target"], addr.as_str(), "{v}");
    assert_eq!(v["address"], addr.as_str(), "{v}");
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["chain"][0]["subject"], "CN=localhost", "{v}");
    // In a --targets file, beside a TCP target.
    let tcp = serve_k(&pki.server, &[], Input::Null);
    let tcp_target = format!("localhost:{}", tcp.port);
    let list = write(dir.path(), "targets.txt", format!("{addr}\n{tcp_target}\n"));
    let mut args = vec!["inspect", "--json", "--targets", s(&list)];
    args.extend(verified(&pki));
    let done = run(&args, Input::Null);
    done.expect_code(0);
    let mut targets: Vec<String> = String::from_utf8_lossy(&done.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON object a line");
            assert_eq!(v["verified"], true, "{v}");
            v["target"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    targets.sort();
    let mut want = vec![addr.clone(), tcp_target];
    want.sort();
    assert_eq!(targets, want);
}

#[test]
fn the_file_transfer_recipe_over_a_unix_socket_under_each_tls_version() {
    // --recv-only and --send-only: the sender's exit 0 means the receiver stored every byte,
    // under TLS 1.2 (no half-close) too.
    let dir = tempdir();
    let (_path, addr) = unix(dir.path(), "files.sock");
    let data = random_bytes(3 << 20, 2812);
    for version in ["1.3", "1.2"] {
        let l = UnixServer::start(&addr, &["--recv-only", "--tls-max", version], Input::Null);
        let sender = connect(
            &addr,
            &["--pin", &l.pin(), "--send-only"],
            Input::Bytes(data.clone()),
        );
        sender.expect_code(0);
        let receiver = l.finish();
        receiver.expect_code(0);
        assert_same(&receiver.stdout, &data, &format!("TLS {version}, up"));
        // And the other way: the listener sends.
        let l = UnixServer::start(
            &addr,
            &["--send-only", "--tls-max", version],
            Input::Bytes(data.clone()),
        );
        let receiver = connect(&addr, &["--pin", &l.pin(), "--recv-only"], Input::Null);
        receiver.expect_code(0);
        l.finish().expect_code(0);
        assert_same(&receiver.stdout, &data, &format!("TLS {version}, down"));
    }
}

#[test]
fn half_close_and_truncation_over_a_unix_socket_as_over_tcp() {
    let pki = Pki::new();
    let dir = tempdir();
    // The peer answers only after our close_notify: `printf req | stls connect` must wait.
    let (path, addr) = unix(dir.path(), "half.sock");
    let peer = peer::serve_unix(&path, &pki.server.cert, &pki.server.key, |tls| {
        let request = read_to_close_notify(tls);
        let reply: Vec<u8> = request.iter().rev().copied().collect();
        tls.write_all(&reply).unwrap();
        close_notify(tls);
        request
    });
    let request = random_bytes(200_000, 2809);
    let client = connect(&addr, &verified(&pki), Input::Bytes(request.clone()));
    client.expect_code(0);
    assert_same(&peer.join().unwrap(), &request, "peer received");
    let want: Vec<u8> = request.iter().rev().copied().collect();
    assert_same(&client.stdout, &want, "client received");

    // A peer that closes its socket without close_notify: what came is written, exit 6.
    let (path, addr) = unix(dir.path(), "cut.sock");
    let peer = peer::serve_unix(&path, &pki.server.cert, &pki.server.key, |tls| {
        // Our close_notify is read first, so that no unread byte turns the close into a
        // reset.
        read_to_close_notify(tls);
        tls.write_all(b"partial").unwrap();
        tls.flush().unwrap();
        tls.sock.shutdown(std::net::Shutdown::Both).unwrap();
    });
    let client = connect(&addr, &verified(&pki), Input::Null);
    client.expect_code(6);
    assert_eq!(client.stdout, b"partial");
    peer.join().unwrap();
}

#[test]
fn openssl_s_client_starttls_smtp_to_listen_unix() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let dir = tempdir();
    let (path, addr) = unix(dir.path(), "smtp.sock");
    let l = serve(&pki, &addr, &["--starttls", "smtp"], Input::Null);
    let client = s_client_unix(
        &pki,
        &path,
        &["-starttls", "smtp", "-no_ign_eof"],
        Input::Bytes(b"after STARTTLS\n".to_vec()),
    )
    .finish();
    assert_eq!(client.code(), 0, "s_client: {}", client.stderr);
    let done = l.finish();
    done.expect_code(0);
    assert_eq!(done.stdout, b"after STARTTLS\n");
}

#[test]
fn a_client_killed_mid_session_ends_the_listener_as_over_tcp() {
    // Killed, the client's end closes without close_notify while the listener's input is
    // still open: the same exit status and account over a Unix socket as over TCP.
    let dir = tempdir();
    let (_path, addr) = unix(dir.path(), "killed.sock");
    let mut tcp = Listener::start(&[], Input::Held);
    let mut unix = UnixServer::start(&addr, &[], Input::Held);
    let sessions = [
        (tcp.addr(), tcp.pin(), &mut tcp.proc),
        (addr.clone(), unix.pin(), &mut unix.proc),
    ];
    for (target, pin, listener) in sessions {
        let mut cmd = stls();
        cmd.args(["connect", &target, "--pin", &pin]);
        let client = Proc::spawn(&mut cmd, Input::Held);
        listener.stdin().write_all(b"hello\n").unwrap();
        client.wait_stdout(6).unwrap();
        // Dropped, it is killed (SIGKILL); the listener's stdin stays open until it has
        // seen that.
        drop(client);
        listener.wait_line("closed the connection");
    }
    for done in [tcp.finish(), unix.finish()] {
        done.expect_code(3)
            .expect_stderr("closed the connection (without close_notify)");
        assert!(done.stdout.is_empty());
    }
}

#[test]
fn every_listen_mode_and_connect_exec_on_a_unix_socket() {
    let pki = Pki::new();
    let dir = tempdir();
    // -k with -c on two event loops sharing the one socket: twenty clients at once.
    let (path, addr) = unix(dir.path(), "k.sock");
    let l = UnixServer::start(
        &addr,
        &["-k", "--threads", "2", "-c", "echo served"],
        Input::Null,
    );
    let clients: Vec<Proc> = (0..20)
        .map(|_| {
            let mut cmd = stls();
            cmd.args(["connect", &addr, "--pin", &l.pin()]);
            Proc::spawn(&mut cmd, Input::Null)
        })
        .collect();
    for c in clients {
        let done = c.finish();
        done.expect_code(0);
        assert_eq!(done.stdout, b"served\n");
    }
    l.stop().expect_code(143);
    assert!(!path.exists());

    // --starttls on both sides, byte-exact both ways.
    let (_path, addr) = unix(dir.path(), "smtp.sock");
    let up = random_bytes(100_000, 2810);
    let down = random_bytes(70_000, 2811);
    let l = serve(
        &pki,
        &addr,
        &["--starttls", "smtp"],
        Input::Bytes(down.clone()),
    );
    let mut args = vec!["--starttls", "smtp"];
    args.extend(verified(&pki));
    let c = connect(&addr, &args, Input::Bytes(up.clone()));
    c.expect_code(0);
    assert_same(&c.stdout, &down, "smtp: server → client");
    let done = l.finish();
    done.expect_code(0);
    assert_same(&done.stdout, &up, "smtp: client → server");

    // connect unix: -c: the command's output is what the listener receives.
    let (_path, addr) = unix(dir.path(), "exec.sock");
    let l = serve(&pki, &addr, &[], Input::Bytes(b"to the child\n".to_vec()));
    let mut args = vec!["-c", "cat; echo from the child"];
    args.extend(verified(&pki));
    let c = connect(&addr, &args, Input::Null);
    c.expect_code(0);
    let done = l.finish();
    done.expect_code(0);
    assert_eq!(done.stdout, b"to the child\nfrom the child\n");
}
