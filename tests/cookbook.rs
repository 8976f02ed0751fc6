//! The README's cookbook, run: each recipe's commands are taken as the README prints them
//! (the test fails if the README changes without it) and run by `sh` with local servers in
//! place of the hosts the README names.

use crate::util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use util::pki::{s, Pki};
use util::{free_port, peer, random_bytes, wait_listening, Done, Input, Listener, Proc};

/// A recipe's lines exactly as the README shows them.
fn recipe(lines: &str) -> String {
    let readme = std::fs::read_to_string("README.md").expect("README");
    for line in lines.lines() {
        assert!(
            readme.contains(&format!("    {line}\n")),
            "README.md no longer has the cookbook line {line:?}"
        );
    }
    lines.to_string()
}

/// `sh -c SCRIPT` in `dir`, with stls first on PATH.
fn sh(script: &str, dir: &Path, input: Input) -> Proc {
    let bin = Path::new(env!("CARGO_BIN_EXE_stls")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), util::path_with_sbin());
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).current_dir(dir).env("PATH", path);
    Proc::spawn(&mut cmd, input)
}

fn run_sh(script: &str, dir: &Path) -> Done {
    sh(script, dir, Input::Null).finish()
}

/// A directory with the fixture's server certificate, key and CA under the names the
/// README uses.
fn site(pki: &Pki) -> tempfile::TempDir {
    let dir = util::tempdir();
    for (from, to) in [
        (&pki.server.cert, "server.pem"),
        (&pki.server.key, "server.key"),
        (&pki.ca.cert, "ca.pem"),
    ] {
        std::fs::copy(from, dir.path().join(to)).expect("copy fixture");
    }
    dir
}

/// `stls listen` with the fixture's server certificate, plus `extra` flags.
fn serve(pki: &Pki, extra: &[&str], input: Input) -> Listener {
    let mut args = vec!["--cert", s(&pki.server.cert), "--key", s(&pki.server.key)];
    args.extend(extra);
    Listener::start(&args, input)
}

const FETCH: &str =
    r"printf 'GET / HTTP/1.0\r\nHost: example.com\r\n\r\n' | stls connect example.com:443";

#[test]
fn fetch_a_web_page() {
    let pki = Pki::new();
    let page = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello\n".to_vec();
    let server = serve(&pki, &[], Input::Bytes(page.clone()));
    let script = recipe(FETCH).replace(
        "example.com:443",
        &format!("localhost:{} --cacert {}", server.port, s(&pki.ca.cert)),
    );
    let got = run_sh(&script, pki.dir.path());
    got.expect_code(0);
    assert_eq!(got.stdout, page);
    let server = server.finish();
    server.expect_code(0);
    assert_eq!(
        server.stdout,
        b"GET / HTTP/1.0\r\nHost: example.com\r\n\r\n"
    );
}

const SMTP: &str = r"printf 'EHLO client.example\r\nQUIT\r\n' | stls connect smtp.example.com:465";

/// A few lines of SMTP, enough for EHLO and QUIT, run per connection by `stls listen -c`.
const FAKE_SMTP: &str = r#"printf '220 smtp.test ESMTP\r\n'
while IFS= read -r line; do
  case "$line" in
    EHLO*) printf '250-smtp.test\r\n250 SIZE 1000000\r\n' ;;
    QUIT*) printf '221 bye\r\n'; exit 0 ;;
    *) printf '500 unknown\r\n' ;;
  esac
done"#;

#[test]
fn talk_to_an_smtp_server_on_465() {
    let pki = Pki::new();
    let server = serve(&pki, &["-c", FAKE_SMTP], Input::Null);
    let script = recipe(SMTP).replace(
        "smtp.example.com:465",
        &format!("localhost:{} --cacert {}", server.port, s(&pki.ca.cert)),
    );
    let got = run_sh(&script, pki.dir.path());
    got.expect_code(0);
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        "220 smtp.test ESMTP\r\n250-smtp.test\r\n250 SIZE 1000000\r\n221 bye\r\n"
    );
    server.finish().expect_code(0);
}

const RECEIVE_FILE: &str = "stls listen 8443 --cert server.pem --key server.key --recv-only > backup.tar && sha256sum backup.tar";
const SEND_FILE: &str =
    "sha256sum backup.tar && stls connect files.example:8443 --cacert ca.pem --send-only < backup.tar";

/// The recipe under each TLS version the receiver may be limited to: TLS 1.2 has no
/// half-close, which is what `--send-only` and `--recv-only` are for.
#[test]
fn file_transfer_with_a_checksum_at_both_ends() {
    for version in ["1.3", "1.2"] {
        let pki = Pki::new();
        let (rx, tx) = (site(&pki), site(&pki));
        std::fs::write(tx.path().join("backup.tar"), random_bytes(3 << 20, 31)).unwrap();
        let port = free_port();
        let receiver = sh(
            &recipe(RECEIVE_FILE).replace(
                "listen 8443",
                &format!("listen 127.0.0.1:{port} --tls-max {version}"),
            ),
            rx.path(),
            Input::Null,
        );
        wait_listening(port);
        let sender = run_sh(
            &recipe(SEND_FILE).replace("files.example:8443", &format!("localhost:{port}")),
            tx.path(),
        );
        sender.expect_code(0);
        let receiver = receiver.finish();
        receiver.expect_code(0);
        let sum = |out: &[u8]| String::from_utf8_lossy(out).trim().to_string();
        assert_eq!(sum(&receiver.stdout), sum(&sender.stdout), "TLS {version}");
        assert!(sum(&sender.stdout).ends_with("  backup.tar"));
    }
}

const MTLS: &str = "stls cert ca --out pki
stls cert server --ca pki --san localhost --out pki
stls cert client --ca pki --name alice --out pki
stls listen 8443 --cert pki/server.pem --key pki/server.key --client-ca pki/ca.pem
stls connect localhost:8443 --cacert pki/ca.pem --cert pki/client.pem --key pki/client.key";

#[test]
fn a_quick_mutual_tls_service() {
    let lines: Vec<String> = recipe(MTLS).lines().map(str::to_string).collect();
    let dir = util::tempdir();
    for make in &lines[..3] {
        run_sh(make, dir.path()).expect_code(0);
    }
    // `exec`: the process is the listener itself, to be stopped by a signal.
    let listen = |port: u16, input: Input| {
        let p = sh(
            &format!(
                "exec {}",
                lines[3].replace("listen 8443", &format!("listen 127.0.0.1:{port}"))
            ),
            dir.path(),
            input,
        );
        wait_listening(port);
        p
    };
    let connect = |port: u16, line: &str, input: Input| {
        sh(
            &line.replace("localhost:8443", &format!("localhost:{port}")),
            dir.path(),
            input,
        )
        .finish()
    };

    let port = free_port();
    let server = listen(port, Input::Bytes(b"hello alice\n".to_vec()));
    let client = connect(port, &lines[4], Input::Bytes(b"hello server\n".to_vec()));
    client.expect_code(0);
    assert_eq!(client.stdout, b"hello alice\n");
    let server = server.finish();
    server.expect_code(0);
    assert_eq!(server.stdout, b"hello server\n");

    // Without a client certificate the listener turns the client away, says why, and waits
    // for the next client.
    let port = free_port();
    let server = listen(port, Input::Null);
    let anonymous = lines[4].replace(" --cert pki/client.pem --key pki/client.key", "");
    let client = connect(port, &anonymous, Input::Null);
    client.expect_code(4);
    assert!(client.stdout.is_empty());
    server.wait_line("presented no client certificate");
    let client = connect(port, &lines[4], Input::Null);
    client.expect_code(0);
    server.finish().expect_code(0);
}

const INETD: &str = "stls listen -k -v 8443 --cert server.pem --key server.key -e 'tr a-z A-Z'";

#[test]
fn an_inetd_style_service() {
    let pki = Pki::new();
    let dir = site(&pki);
    let port = free_port();
    // `exec`: the service is the process the harness stops at the end, not a shell that
    // would leave it running.
    let service = sh(
        &format!(
            "exec {}",
            recipe(INETD).replace("8443", &format!("127.0.0.1:{port}"))
        ),
        dir.path(),
        Input::Null,
    );
    service.wait_line("listening on");
    let clients: Vec<_> = (0..3)
        .map(|n| {
            let mut cmd = util::stls();
            cmd.args(["connect", &format!("localhost:{port}")])
                .args(["--cacert", s(&pki.ca.cert)]);
            (
                n,
                Proc::spawn(&mut cmd, Input::Bytes(format!("hello {n}\n").into_bytes())),
            )
        })
        .collect();
    for (n, client) in clients {
        let client = client.finish();
        client.expect_code(0);
        assert_eq!(client.stdout, format!("HELLO {n}\n").into_bytes());
    }
    service.wait_line("closed after");
}

const PIN: &str = r#"stls listen 8443 --recv-only 2> listen.log &
until fp=$(sed -n 's/^stls: sha256 fingerprint //p' listen.log) && [ -n "$fp" ]; do sleep 0.1; done
echo hello | stls connect server.example:8443 --pin "$fp""#;

#[test]
fn pinning_an_ephemeral_listener() {
    let dir = util::tempdir();
    let port = free_port();
    let script = recipe(PIN)
        .replace("listen 8443", &format!("listen 127.0.0.1:{port}"))
        .replace("server.example:8443", &format!("127.0.0.1:{port}"));
    // `wait`: the listener, in the background, ends once the client has gone.
    let done = run_sh(
        &format!("{script}\nstatus=$?\nwait\nexit $status"),
        dir.path(),
    );
    done.expect_code(0);
    // The listener's stdout is the script's: what the client sent.
    assert_eq!(done.stdout, b"hello\n");

    // Any other fingerprint is refused: here, the right one with every hex digit changed.
    // The listener logs the failed handshake and goes on waiting: the script stops it.
    let script = recipe(PIN)
        .replace("listen 8443", &format!("listen 127.0.0.1:{port}"))
        .replace("server.example:8443", &format!("127.0.0.1:{port}"))
        .replace(
            r#"--pin "$fp""#,
            r#"--pin "$(echo "$fp" | tr 0-9A-F 1-9A-F0)""#,
        );
    let done = run_sh(
        &format!("{script}\nstatus=$?\nkill $!\nwait\nexit $status"),
        dir.path(),
    );
    done.expect_code(5).expect_stderr("fingerprint");
    assert!(done.stdout.is_empty());
}

const KEYLOG: &str = r"printf 'GET / HTTP/1.0\r\nHost: example.com\r\n\r\n' | stls connect example.com:443 --keylog keys.log";

/// The capture around it. tcpdump is not run here; but it needs a moment after the connection
/// before it is stopped, and SIGINT to write out what it holds, or the file has no packet.
const KEYLOG_CAPTURE: &str = "tcpdump -i any -U -w tls.pcap port 443 & sleep 2
sleep 1; kill -INT $! && wait";

/// A TCP relay to `port` that records what the client sends: a capture, in effect.
fn recording_relay(port: u16) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = relay.local_addr().unwrap().port();
    let captured = Arc::new(Mutex::new(Vec::new()));
    let record = captured.clone();
    std::thread::spawn(move || {
        let (mut client, _) = relay.accept().unwrap();
        let mut server = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut client_r, mut server_w) =
            (client.try_clone().unwrap(), server.try_clone().unwrap());
        let up = std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            while let Ok(n @ 1..) = client_r.read(&mut buf) {
                record.lock().unwrap().extend_from_slice(&buf[..n]);
                if server_w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = server_w.shutdown(Shutdown::Write);
        });
        let _ = std::io::copy(&mut server, &mut client);
        let _ = client.shutdown(Shutdown::Write);
        let _ = up.join();
    });
    (relay_port, captured)
}

#[test]
fn key_log_matches_the_captured_connection() {
    let pki = Pki::new();
    let server = serve(
        &pki,
        &[],
        Input::Bytes(b"HTTP/1.0 204 No Content\r\n\r\n".to_vec()),
    );
    let (relay, captured) = recording_relay(server.port);
    let dir = util::tempdir();
    let script = recipe(KEYLOG).replace(
        "example.com:443",
        &format!("localhost:{relay} --cacert {}", s(&pki.ca.cert)),
    );
    recipe(KEYLOG_CAPTURE);
    let done = run_sh(&script, dir.path());
    done.expect_code(0).expect_stderr("keylog");
    server.finish().expect_code(0);

    // The capture starts with the ClientHello: record header (5), handshake header (4),
    // legacy version (2), then the 32-byte client random that names the connection's secrets.
    let capture = captured.lock().unwrap().clone();
    assert!(capture.len() > 43 && capture[0] == 0x16 && capture[5] == 0x01);
    let random: String = capture[11..43].iter().map(|b| format!("{b:02x}")).collect();
    let log = std::fs::read_to_string(dir.path().join("keys.log")).expect("keys.log");
    let mut labels = Vec::new();
    for line in log.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 3, "not an NSS key log line: {line}");
        assert_eq!(fields[1], random, "a secret for another connection: {line}");
        labels.push(fields[0]);
    }
    for label in [
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
    ] {
        assert!(labels.contains(&label), "no {label} in {log}");
    }
    eprintln!(
        "SKIP: decrypting a capture with tshark is not run here (no packet capture in tests); \
         the key log was checked against the connection's ClientHello instead"
    );
}

const EXIT_STATUS: &str = r#"printf 'GET /health HTTP/1.0\r\n\r\n' | stls connect api.example:443 > reply
case $? in
  0) echo "complete" ;;
  5) echo "certificate rejected" >&2 ;;
  6) echo "reply may be truncated" >&2 ;;
  *) echo "failed" >&2 ;;
esac"#;

#[test]
fn exit_statuses_in_a_script() {
    let pki = Pki::new();
    let dir = util::tempdir();
    let script = |target: String| recipe(EXIT_STATUS).replace("api.example:443", &target);
    let ca = s(&pki.ca.cert);
    let serve = |reply: &[u8]| serve(&pki, &[], Input::Bytes(reply.to_vec()));

    let server = serve(b"ok\n");
    let done = run_sh(
        &script(format!("localhost:{} --cacert {ca}", server.port)),
        dir.path(),
    );
    assert_eq!(done.stdout, b"complete\n", "stderr: {}", done.stderr);
    assert_eq!(std::fs::read(dir.path().join("reply")).unwrap(), b"ok\n");

    // The built-in roots do not know the test CA.
    let server = serve(b"ok\n");
    let done = run_sh(&script(format!("localhost:{}", server.port)), dir.path());
    done.expect_stderr("certificate rejected");
    drop(server);

    // A server that drops TCP without close_notify after its reply.
    let (port, peer) = peer::serve(&pki.server.cert, &pki.server.key, |tls| {
        tls.write_all(b"partial").unwrap();
        tls.flush().unwrap();
        peer::read_to_close_notify(tls);
        tls.sock.shutdown(Shutdown::Both).unwrap();
    });
    let done = run_sh(
        &script(format!("localhost:{port} --cacert {ca}")),
        dir.path(),
    );
    peer.join().unwrap();
    done.expect_stderr("reply may be truncated");
    assert_eq!(std::fs::read(dir.path().join("reply")).unwrap(), b"partial");
}

const NIGHTLY: &str = "stls inspect --expires-within 30 --targets hosts.txt > report.txt || mail -s 'TLS check' ops < report.txt";
const NIGHTLY_JSON: &str = r#"stls inspect --json --expires-within 30 --targets hosts.txt | jq -r 'select(.ok | not) | "\(.target): \(.error)"'"#;

#[test]
fn nightly_certificate_check() {
    let pki = Pki::new();
    let dir = site(&pki);
    let good = serve(&pki, &["-k"], Input::Held);
    let soon = pki.ca.server(
        "soon",
        &["localhost"],
        util::pki::KeyType::P256,
        util::pki::Days { from: -1, to: 10 },
    );
    let expiring = Listener::start(
        &["-k", "--cert", s(&soon.cert), "--key", s(&soon.key)],
        Input::Held,
    );
    // `mail` records what it was sent; the servers are verified with the test CA.
    let mail = "#!/bin/sh\necho \"$@\" > mailed.txt\ncat >> mailed.txt\n";
    util::write(dir.path(), "mail", mail);
    Command::new("chmod")
        .args(["+x", "mail"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    let with_ca = |r: &str| {
        format!(
            "PATH=.:$PATH; {}",
            // The fixture's "good" certificate is valid for 30 days from now: the check
            // here is 20 days, the README's 30.
            r.replace("stls inspect", "stls inspect --cacert ca.pem")
                .replace("--expires-within 30", "--expires-within 20")
        )
    };
    let hosts = |addrs: &[String]| {
        let list: String = addrs.iter().map(|a| format!("{a}  # web\n")).collect();
        util::write(dir.path(), "hosts.txt", format!("# our servers\n{list}"));
    };

    // All well: nothing is mailed.
    hosts(&[good.addr().replace("127.0.0.1", "localhost")]);
    run_sh(&with_ca(&recipe(NIGHTLY)), dir.path()).expect_code(0);
    assert!(!dir.path().join("mailed.txt").exists());

    // One expires in 10 days: the report is mailed, and names it.
    let soon_target = expiring.addr().replace("127.0.0.1", "localhost");
    hosts(&[good.addr(), soon_target.clone()]);
    run_sh(&with_ca(&recipe(NIGHTLY)), dir.path()).expect_code(0);
    let mailed = std::fs::read_to_string(dir.path().join("mailed.txt")).unwrap();
    assert!(mailed.starts_with("-s TLS check ops"), "{mailed}");
    assert!(mailed.contains(&soon_target), "{mailed}");
    assert!(mailed.contains("FAILED (exit 8)"), "{mailed}");

    if !util::have("jq") {
        return;
    }
    let done = run_sh(&with_ca(&recipe(NIGHTLY_JSON)), dir.path());
    done.expect_code(0);
    let out = String::from_utf8_lossy(&done.stdout);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with(&format!("{soon_target}: the certificate of")),
        "{out}"
    );
    assert!(out.contains("expires in"), "{out}");
}

const TLS10_HOSTS: &str = r#"stls inspect --json --probe versions,groups --targets hosts.txt | jq -r 'select(.probe.legacy_versions | index("TLSv1.0")) | .target'"#;
const PQ_HOSTS: &str = "stls inspect --json --probe versions,groups --targets hosts.txt | jq -r 'select(.probe.pq) | .target'";
const POLICY: &str =
    "stls inspect --require no-legacy,pq --targets hosts.txt > policy.txt || cat policy.txt";

#[test]
fn which_hosts_accept_tls10_and_which_speak_post_quantum() {
    if !util::have("openssl") {
        return;
    }
    let pki = Pki::new();
    let dir = site(&pki);
    // A legacy server (TLS 1.0 only), a current one without post-quantum (OpenSSL 3.0 has
    // none), and a stls listener (X25519MLKEM768).
    let s_server = |flags: &[&str]| {
        let port = free_port();
        let mut cmd = Command::new("openssl");
        cmd.args(["s_server", "-nbio", "-quiet"])
            .args(["-accept", &format!("127.0.0.1:{port}")])
            .args(["-cert", s(&pki.server.cert), "-key", s(&pki.server.key)])
            .args(flags);
        let proc = Proc::spawn(&mut cmd, Input::Held);
        wait_listening(port);
        (format!("localhost:{port}"), proc)
    };
    let (legacy, _legacy) = s_server(&["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    let (current, _current) = s_server(&["-no_tls1", "-no_tls1_1"]);
    let pq_server = serve(&pki, &["-k"], Input::Held);
    let pq = pq_server.addr().replace("127.0.0.1", "localhost");
    util::write(
        dir.path(),
        "hosts.txt",
        format!("# our servers\n{legacy}\n{current}\n{pq}\n"),
    );
    let with_ca = |r: &str| r.replace("stls inspect", "stls inspect --cacert ca.pem");

    // The policy check: the legacy server fails its handshake (4, stls speaks TLS 1.2 and
    // up), the current one fails the policy (9, no post-quantum group), the last passes.
    let done = run_sh(&with_ca(&recipe(POLICY)), dir.path());
    done.expect_code(0);
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(out.contains("FAILED (exit 4)"), "{out}");
    assert!(
        out.contains(&format!(
            "FAILED (exit 9): {current}: --require pq: no post-quantum group is accepted"
        )),
        "{out}"
    );
    assert_eq!(out.matches("FAILED").count(), 2, "{out}");

    if !util::have("jq") {
        return;
    }
    let done = run_sh(&with_ca(&recipe(TLS10_HOSTS)), dir.path());
    done.expect_code(0);
    assert_eq!(String::from_utf8_lossy(&done.stdout), format!("{legacy}\n"));
    let done = run_sh(&with_ca(&recipe(PQ_HOSTS)), dir.path());
    done.expect_code(0);
    assert_eq!(String::from_utf8_lossy(&done.stdout), format!("{pq}\n"));
}

const MAIL_CERT: &str = "stls inspect --starttls smtp mail.example.com:25";
const IMAP_BY_HAND: &str = "stls connect -C --starttls imap mail.example.com:143";
const MAIL_CLIENT: &str =
    "stls listen 2525 --starttls smtp --cert server.pem --key server.key > mail.txt";

#[test]
fn check_a_mail_servers_certificate_with_starttls() {
    let pki = Pki::new();
    let dir = site(&pki);
    let smtp = serve(&pki, &["-k", "--starttls", "smtp"], Input::Held);
    let script = recipe(MAIL_CERT).replace(
        "stls inspect --starttls smtp mail.example.com:25",
        &format!(
            "stls inspect --cacert ca.pem --starttls smtp localhost:{}",
            smtp.port
        ),
    );
    let done = run_sh(&script, dir.path());
    done.expect_code(0);
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(out.contains("verdict:   verified"), "{out}");

    // IMAP by hand: a line typed with Enter goes out as CR LF after the dialogue.
    let imap = serve(&pki, &["--starttls", "imap"], Input::Null);
    let script = recipe(IMAP_BY_HAND).replace(
        "mail.example.com:143",
        &format!("localhost:{} --cacert ca.pem", imap.port),
    );
    let typed = sh(&script, dir.path(), Input::Bytes(b"a LOGOUT\n".to_vec()));
    typed.finish().expect_code(0);
    assert_eq!(imap.finish().stdout, b"a LOGOUT\r\n");
}

#[test]
fn test_a_mail_clients_starttls() {
    if !util::have("openssl") {
        return;
    }
    let pki = Pki::new();
    let dir = site(&pki);
    let port = free_port();
    let script = recipe(MAIL_CLIENT).replace("2525", &format!("127.0.0.1:{port}"));
    // The listener's stdin stays open until the client is done: with nothing to send, it
    // would close its side at once, and s_client ends at the server's close_notify.
    let mut listener = sh(&script, dir.path(), Input::Held);
    wait_listening(port);
    // The mail client: openssl s_client speaking SMTP.
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-brief",
        "-no_ign_eof",
        "-nocommands",
        "-starttls",
        "smtp",
    ])
    .args([
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-CAfile",
        "ca.pem",
    ])
    .current_dir(dir.path());
    let mail = b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n";
    // Typed once the session is up: s_client may drop input that comes before.
    let mut client = Proc::spawn(&mut cmd, Input::Held);
    client.wait_line("CONNECTION ESTABLISHED");
    client.stdin().write_all(mail).unwrap();
    client.close_stdin();
    client.finish();
    listener.close_stdin();
    listener.finish().expect_code(0);
    let got = std::fs::read(dir.path().join("mail.txt")).unwrap();
    assert_eq!(got, mail);
}

const PROXY: &str = "https_proxy=http://alice:s3cret@proxy.corp:3128 stls connect example.com:443";

#[test]
fn through_a_proxy() {
    if !util::have("tinyproxy") {
        return;
    }
    let pki = Pki::new();
    let dir = site(&pki);
    let port = free_port();
    let conf = format!("Port {port}\nListen 127.0.0.1\nBasicAuth alice s3cret\n");
    let conf = util::write(dir.path(), "tinyproxy.conf", conf);
    let mut cmd = Command::new("tinyproxy");
    cmd.args(["-d", "-c", s(&conf)]);
    let _proxy = Proc::spawn(&mut cmd, Input::Null);
    wait_listening(port);
    let server = serve(
        &pki,
        &[],
        Input::Bytes(b"HTTP/1.0 200 OK\r\n\r\nhello".to_vec()),
    );
    let script = recipe(PROXY)
        .replace("proxy.corp:3128", &format!("127.0.0.1:{port}"))
        .replace(
            "example.com:443",
            &format!("localhost:{} --cacert ca.pem", server.port),
        )
        + " -v";
    let done = run_sh(&script, dir.path());
    done.expect_code(0)
        .expect_stderr(&format!("connected to proxy http://127.0.0.1:{port}"));
    assert_eq!(done.stdout, b"HTTP/1.0 200 OK\r\n\r\nhello");
    assert!(!done.stderr.contains("s3cret"));
}

const STUNNEL_SERVER: &str =
    "stls listen 8443 --to 127.0.0.1:8080 --cert server.pem --key server.key";
const STUNNEL_CLIENT: &str = "stls connect db.example:5433 --from 5432 --cacert ca.pem";

#[test]
fn stls_as_stunnel_both_ways() {
    // A plain echo-once backend, the TLS front of it, and a plain local port in front of that:
    // plain → TLS → plain, end to end.
    let pki = Pki::new();
    let dir = site(&pki);
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut sock, _) = backend.accept().unwrap();
        let mut got = Vec::new();
        sock.read_to_end(&mut got).unwrap();
        sock.write_all(&got).unwrap();
    });
    let (front, local) = (free_port(), free_port());
    let server = recipe(STUNNEL_SERVER)
        .replace("8443", &format!("127.0.0.1:{front}"))
        .replace("8080", &backend_port.to_string());
    let _server = sh(&server, dir.path(), Input::Null);
    wait_listening(front);
    let client = recipe(STUNNEL_CLIENT)
        .replace("db.example:5433", &format!("localhost:{front}"))
        .replace("5432", &local.to_string());
    let _client = sh(&client, dir.path(), Input::Null);
    wait_listening(local);
    let mut plain = TcpStream::connect(("127.0.0.1", local)).unwrap();
    plain.write_all(b"through two tunnels\n").unwrap();
    plain.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    plain.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"through two tunnels\n");
}

const UNIX_FRONT: &str =
    "stls listen 8443 --to unix:/run/app.sock --cert server.pem --key server.key";
const UNIX_TLS: &str =
    "stls listen unix:/run/app-tls.sock --to 127.0.0.1:8080 --cert server.pem --key server.key
curl --unix-socket /run/app-tls.sock --cacert ca.pem https://app.example/";
const UNIX_CONNECT: &str =
    "stls connect unix:/run/app-tls.sock --servername app.example --cacert ca.pem";

/// Answer one HTTP request on `sock` with `body`, then close.
fn answer_http(mut sock: impl Read + Write, body: &str) {
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        match sock.read(&mut byte) {
            Ok(1) => request.push(byte[0]),
            _ => return,
        }
    }
    let _ = write!(
        sock,
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

#[test]
fn tls_in_front_of_a_unix_socket_service() {
    let pki = Pki::new();
    let dir = site(&pki);
    // The service on a Unix socket, and one on a local port; the recipes' absolute paths
    // become files in the test's directory.
    let app = std::os::unix::net::UnixListener::bind(dir.path().join("app.sock")).unwrap();
    std::thread::spawn(move || {
        for sock in app.incoming().flatten() {
            answer_http(sock, "from the unix socket\n");
        }
    });
    let web = TcpListener::bind("127.0.0.1:0").unwrap();
    let web_port = web.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for sock in web.incoming().flatten() {
            answer_http(sock, "from port 8080\n");
        }
    });
    let get = |target: &str| {
        format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | stls connect {target} --cacert ca.pem")
    };

    // TLS on a TCP port in front of the Unix-socket service.
    let front = free_port();
    let script = recipe(UNIX_FRONT)
        .replace("8443", &format!("127.0.0.1:{front}"))
        .replace("/run/", "");
    let _front = sh(&script, dir.path(), Input::Null);
    wait_listening(front);
    let got = run_sh(&get(&format!("localhost:{front}")), dir.path());
    got.expect_code(0);
    assert!(got.stdout.ends_with(b"\r\n\r\nfrom the unix socket\n"));

    // TLS on a Unix socket in front of a TCP port, for curl and for stls.
    let lines: Vec<String> = recipe(UNIX_TLS)
        .replace("/run/", "")
        .replace("8080", &web_port.to_string())
        .replace("app.example", "localhost")
        .lines()
        .map(str::to_string)
        .collect();
    // `exec`: the process is the listener itself, to be stopped by a signal.
    let listener = sh(&format!("exec {}", lines[0]), dir.path(), Input::Null);
    listener.wait_line("listening on unix:");
    if util::have("curl") {
        let got = run_sh(&lines[1], dir.path());
        got.expect_code(0);
        assert_eq!(got.stdout, b"from port 8080\n");
    }
    let connect = recipe(UNIX_CONNECT)
        .replace("/run/", "")
        .replace("app.example", "localhost");
    let request = b"GET / HTTP/1.0\r\n\r\n".to_vec();
    let got = sh(&connect, dir.path(), Input::Bytes(request)).finish();
    got.expect_code(0);
    assert!(got.stdout.ends_with(b"\r\n\r\nfrom port 8080\n"));
    // The socket file goes with the listener.
    listener.signal(libc::SIGTERM);
    listener.finish().expect_code(143);
    assert!(!dir.path().join("app-tls.sock").exists());
}

const TOFU: &str = "stls connect --tofu nas.home:8443";

#[test]
fn trust_a_self_signed_service_on_first_use() {
    let pki = Pki::new();
    let dir = site(&pki);
    let server = serve(&pki, &["-k"], Input::Null);
    let script = format!(
        "HOME=. {}",
        recipe(TOFU).replace("nas.home:8443", &format!("localhost:{}", server.port))
    );
    run_sh(&script, dir.path())
        .expect_code(0)
        .expect_stderr("is new: its key sha256//");
    let known = dir.path().join(".config/stls/known_hosts");
    assert!(std::fs::read_to_string(known)
        .unwrap()
        .starts_with("localhost:"));
    let again = run_sh(&script, dir.path());
    again.expect_code(0);
    assert_eq!(again.stderr, "");
}

const COMPLETIONS: &str = "mkdir -p ~/.local/share/bash-completion/completions && stls completions bash > ~/.local/share/bash-completion/completions/stls
mkdir -p ~/.config/fish/completions && stls completions fish > ~/.config/fish/completions/stls.fish";

#[test]
fn install_completions_where_the_directories_are_missing() {
    // A fresh home: neither directory exists yet. (The zsh line needs zsh's $fpath.)
    let home = util::tempdir();
    let bin = Path::new(env!("CARGO_BIN_EXE_stls")).parent().unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(recipe(COMPLETIONS))
        .current_dir(home.path())
        .env("HOME", home.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    Proc::spawn(&mut cmd, Input::Null).finish().expect_code(0);
    for (file, word) in [
        (".local/share/bash-completion/completions/stls", "complete"),
        (".config/fish/completions/stls.fish", "complete -c stls"),
    ] {
        let script = std::fs::read_to_string(home.path().join(file)).expect(file);
        assert!(script.contains(word), "{file}");
    }
}

/// The pod spec of the Kubernetes sidecar recipe, as the README prints it.
const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: app
  labels: {app: app}
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: app
    image: registry.example/app:1.0
    lifecycle: {preStop: {sleep: {seconds: 5}}}
  - name: tls
    image: registry.example/stls:latest
    command: [stls, listen, "8443", --to, "127.0.0.1:8080",
              --cert, /etc/tls/tls.crt, --key, /etc/tls/tls.key,
              --reload-every, "10", --drain, "20",
              --status, "0.0.0.0:9090", --log-format, json]
    ports:
    - {name: https, containerPort: 8443}
    - {name: status, containerPort: 9090}
    readinessProbe:
      httpGet: {path: /readyz, port: status}
      periodSeconds: 2
    livenessProbe:
      httpGet: {path: /healthz, port: status}
    lifecycle:
      preStop:
        sleep: {seconds: 5}
    volumeMounts:
    - {name: certs, mountPath: /etc/tls, readOnly: true}
  volumes:
  - name: certs
    secret: {secretName: app-tls}"#;

/// The sidecar's `command:` in the pod spec: the argv the kubelet executes (no shell).
fn pod_command(pod: &str) -> Vec<String> {
    let start = pod.find("command: [").expect("a command: in the pod spec") + "command: [".len();
    let end = start + pod[start..].find(']').expect("the command's closing ]");
    pod[start..end]
        .split(',')
        .map(|word| word.trim().trim_matches('"').to_string())
        .filter(|word| !word.is_empty())
        .collect()
}

/// The number after `key` in the pod spec (`terminationGracePeriodSeconds: 30`).
fn pod_number(pod: &str, key: &str) -> f64 {
    let at = pod
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in the pod spec"))
        + key.len();
    let digits: String = pod[at..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse().expect("a number")
}

/// A Secret volume as the kubelet writes it: the files in `..VERSION/`, `..data` pointing
/// there, `tls.crt` and `tls.key` pointing through `..data`. A later version is put beside
/// the first and `..data` is swapped to it at once (a new link renamed over the old).
fn secret_volume(dir: &Path, version: &str, leaf: &util::pki::Leaf) {
    std::fs::create_dir(dir.join(version)).unwrap();
    std::fs::copy(&leaf.cert, dir.join(version).join("tls.crt")).unwrap();
    std::fs::copy(&leaf.key, dir.join(version).join("tls.key")).unwrap();
    let data = dir.join("..data");
    if data.exists() {
        let tmp = dir.join("..data_tmp");
        std::os::unix::fs::symlink(version, &tmp).unwrap();
        std::fs::rename(&tmp, &data).unwrap();
    } else {
        std::os::unix::fs::symlink(version, &data).unwrap();
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
    }
}

/// An HTTP probe as the kubelet sends it; the status code.
fn kubelet_probe(port: u16, path: &str) -> u16 {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("the status port");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: kube-probe/1.31\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    )
    .expect("probe request");
    let mut answer = Vec::new();
    let _ = sock.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status code in {text:?}"))
}

/// The app of the pod, on a local port: one HTTP request per connection. `GET /download`
/// is answered with `data`, its first `first` bytes at once and the rest once the returned
/// sender says so (or is dropped); anything else with a short page. A connection closed
/// before a whole request (a handshake-only client such as `stls inspect`) is let go.
fn pod_app(data: Vec<u8>, first: usize) -> (u16, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (go, wait) = mpsc::channel::<()>();
    let wait = Arc::new(Mutex::new(Some(wait)));
    let data = Arc::new(data);
    std::thread::spawn(move || {
        for mut sock in listener.incoming().flatten() {
            let (wait, data) = (wait.clone(), data.clone());
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match sock.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                if !head.starts_with(b"GET /download ") {
                    let _ = sock.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n");
                    return;
                }
                let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", data.len());
                let _ = sock.write_all(head.as_bytes());
                let _ = sock.write_all(&data[..first]);
                if let Some(wait) = wait.lock().unwrap().take() {
                    let _ = wait.recv();
                }
                let _ = sock.write_all(&data[first..]);
            });
        }
    });
    (port, go)
}

/// The certificate a new handshake with `port` is served, as `stls inspect` sees it.
fn served_fingerprint(port: u16, ca: &Path) -> String {
    let mut cmd = util::stls();
    cmd.args(["inspect", "--json", "--cacert", s(ca)])
        .arg(format!("localhost:{port}"));
    let done = Proc::spawn(&mut cmd, Input::Null).finish();
    done.expect_code(0);
    let v: serde_json::Value = serde_json::from_slice(&done.stdout).expect("inspect --json");
    v["chain"][0]["sha256"]
        .as_str()
        .expect("the leaf's sha256")
        .to_string()
}

/// The sidecar's command and its probes' paths, once the pod spec is checked to hold
/// together: the grace period covers the preStop sleep and the drain (SIGKILL comes after
/// it), and the probes ask the port `--status` serves on.
fn sidecar_of(pod: &str) -> (Vec<String>, Vec<String>) {
    let argv = pod_command(pod);
    let flag = |name: &str| {
        let at = argv.iter().position(|a| a == name);
        argv[at.unwrap_or_else(|| panic!("no {name} in {argv:?}")) + 1].clone()
    };
    let drain: f64 = flag("--drain").parse().unwrap();
    let grace = pod_number(pod, "terminationGracePeriodSeconds:");
    let sleep = pod_number(pod, "sleep: {seconds:");
    assert!(
        grace > sleep + drain,
        "{grace} s of grace for {sleep} + {drain}"
    );
    let status_at = flag("--status");
    let status_port = status_at.rsplit(':').next().unwrap();
    assert!(pod.contains(&format!("{{name: status, containerPort: {status_port}}}")));
    let probes: Vec<String> = pod
        .lines()
        .filter_map(|l| l.trim().strip_prefix("httpGet: {path: "))
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    assert_eq!(probes, ["/readyz", "/healthz"]);
    (argv, probes)
}

/// The recipe's steps, as far as a machine without Kubernetes goes: the sidecar started
/// with the pod spec's command on a Secret-style volume, the kubelet's probes, a renewal of
/// the Secret seen without a signal, and a pod deletion: SIGTERM with a download in flight.
#[test]
fn stls_as_a_kubernetes_sidecar() {
    let (argv, probes) = sidecar_of(&recipe(POD));

    let pki = Pki::new();
    let mount = util::tempdir();
    secret_volume(mount.path(), "..2026_01", &pki.server);
    let data = random_bytes(8 << 20, 29);
    let first = 1 << 20;
    let (app_port, go) = pod_app(data.clone(), first);
    let (front, status) = (free_port(), free_port());
    // The pod's addresses, this machine's: the app's port, free ports for stls, the volume
    // in a directory of the test's.
    let etc_tls = format!("{}/", s(mount.path()));
    let args: Vec<String> = argv[2..]
        .iter()
        .map(|a| match a.as_str() {
            "8443" => format!("127.0.0.1:{front}"),
            "127.0.0.1:8080" => format!("127.0.0.1:{app_port}"),
            "0.0.0.0:9090" => format!("127.0.0.1:{status}"),
            _ => a.replace("/etc/tls/", &etc_tls),
        })
        .collect();
    assert_eq!(argv[..2], ["stls", "listen"]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stls"));
    cmd.arg("listen").args(&args);
    let sidecar = Proc::spawn(&mut cmd, Input::Null);
    sidecar.wait_line("listening on");

    // The kubelet's probes: live, and ready once the certificate is loaded.
    for path in &probes {
        assert_eq!(kubelet_probe(status, path), 200, "GET {path}");
    }
    let page = Input::Bytes(b"GET / HTTP/1.0\r\n\r\n".to_vec());
    let mut cmd = util::stls();
    cmd.args([
        "connect",
        &format!("localhost:{front}"),
        "--cacert",
        s(&pki.ca.cert),
    ]);
    let got = Proc::spawn(&mut cmd, page).finish();
    got.expect_code(0);
    assert!(got.stdout.ends_with(b"\r\n\r\nhello\n"));

    // The Secret is renewed: the kubelet swaps `..data`, and within --reload-every new
    // handshakes get the new certificate.
    let before = served_fingerprint(front, &pki.ca.cert);
    let renewed = pki.ca.server(
        "renewed",
        &["localhost"],
        util::pki::KeyType::P256,
        util::pki::VALID,
    );
    secret_volume(mount.path(), "..2026_02", &renewed);
    let until = Instant::now() + Duration::from_secs(60);
    while served_fingerprint(front, &pki.ca.cert) == before {
        assert!(
            Instant::now() < until,
            "the renewed Secret was never served"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    sidecar.wait_line(r#""event":"reloaded""#);

    // The pod is deleted with a download in flight: SIGTERM. Not ready any more, still live,
    // no new client taken, and the download finishes byte for byte.
    let mut cmd = util::stls();
    cmd.args([
        "connect",
        &format!("localhost:{front}"),
        "--cacert",
        s(&pki.ca.cert),
    ])
    .arg("--no-shutdown");
    let download = Proc::spawn(
        &mut cmd,
        Input::Bytes(b"GET /download HTTP/1.0\r\n\r\n".to_vec()),
    );
    let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", data.len());
    download.wait_stdout(head.len() + first).unwrap();
    sidecar.signal(libc::SIGTERM);
    sidecar.wait_line(r#""event":"draining""#);
    assert_eq!(kubelet_probe(status, "/readyz"), 503);
    assert_eq!(kubelet_probe(status, "/healthz"), 200);
    let until = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", front)).is_ok() {
        assert!(Instant::now() < until, "still accepting while draining");
        std::thread::sleep(Duration::from_millis(50));
    }
    go.send(()).unwrap();
    let download = download.finish();
    download.expect_code(0);
    util::assert_same(
        &download.stdout,
        &[head.as_bytes(), &data].concat(),
        "the download in flight at SIGTERM",
    );
    let done = sidecar.finish();
    done.expect_code(143)
        .expect_stderr("drained: every connection finished");
    // `kubectl logs`: every line one JSON object.
    for line in done.stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["event"].is_string(), "{line}");
    }
}

const HAPROXY_CFG: &str = "defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend tls
  bind :443
  default_backend replicas
backend replicas
  balance roundrobin
  server r1 127.0.0.1:8441 send-proxy-v2
  server r2 127.0.0.1:8442 send-proxy-v2
  server r3 127.0.0.1:8443 send-proxy-v2";
const REPLICAS: &str = "(umask 077; openssl rand -hex 32 > ticket.keys)
for port in 8441 8442 8443; do
  stls listen 127.0.0.1:$port --accept-proxy --to 127.0.0.1:8080 --proxy-protocol v1 \\
    --cert server.pem --key server.key --ticket-keys ticket.keys --drain 20 &
done
haproxy -f haproxy.cfg -db";

#[test]
fn three_replicas_behind_haproxy() {
    if !util::have("haproxy") || !util::have("curl") {
        return;
    }
    let pki = Pki::new();
    let dir = site(&pki);
    // The backend answers with the PROXY header it was sent.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for sock in backend.incoming().flatten() {
            std::thread::spawn(move || {
                let mut sock = sock;
                let mut got = Vec::new();
                let mut byte = [0u8; 1];
                while !got.ends_with(b"\r\n\r\n") {
                    match sock.read(&mut byte) {
                        Ok(1) => got.push(byte[0]),
                        _ => return,
                    }
                }
                let line = got
                    .split(|&b| b == b'\n')
                    .next()
                    .unwrap_or_default()
                    .to_vec();
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                let _ = write!(
                    sock,
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                );
            });
        }
    });
    let (lb, ports) = (free_port(), [free_port(), free_port(), free_port()]);
    let renumber = |text: &str| {
        // Whole addresses, so that no port number is rewritten twice.
        let [a, b, c] = ports;
        let mut text = text
            .replace("bind :443", &format!("bind 127.0.0.1:{lb}"))
            .replace("8441 8442 8443", &format!("{a} {b} {c}"))
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{backend_port}"));
        for (old, new) in ["8441", "8442", "8443"].iter().zip(ports) {
            text = text.replace(&format!("127.0.0.1:{old}"), &format!("127.0.0.1:{new}"));
        }
        text
    };
    let cfg = renumber(&recipe(HAPROXY_CFG)) + "\n";
    std::fs::write(dir.path().join("haproxy.cfg"), cfg).unwrap();
    let _all = sh(&renumber(&recipe(REPLICAS)), dir.path(), Input::Null);
    for port in ports.into_iter().chain([lb]) {
        wait_listening(port);
    }
    // The client comes from 127.0.0.2: that is what each backend connection is told.
    for _ in 0..3 {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--interface", "127.0.0.2", "--cacert"])
            .arg(dir.path().join("ca.pem"))
            .arg(format!("https://localhost:{lb}/"));
        let done = Proc::spawn(&mut cmd, Input::Null).finish();
        done.expect_code(0);
        let text = String::from_utf8_lossy(&done.stdout).to_string();
        assert!(
            text.starts_with("PROXY TCP4 127.0.0.2 127.0.0.1 "),
            "{text}"
        );
    }
    // A session saved through one replica resumes on the next haproxy picks: the shared key.
    if !util::have("openssl") {
        return;
    }
    let sess = dir.path().join("session");
    let s_client = |flag: &str| {
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_client",
            "-ign_eof",
            "-servername",
            "localhost",
            "-CAfile",
        ])
        .arg(dir.path().join("ca.pem"))
        .args(["-connect", &format!("127.0.0.1:{lb}"), flag])
        .arg(&sess);
        let request = Input::Bytes(b"GET / HTTP/1.0\r\n\r\n".to_vec());
        let done = Proc::spawn(&mut cmd, request).finish();
        let out = String::from_utf8_lossy(&done.stdout).to_string();
        assert!(out.contains("PROXY TCP4 127.0.0.1 "), "{out}");
        out.lines().any(|l| l.starts_with("Reused,"))
    };
    assert!(
        !s_client("-sess_out"),
        "the first connection resumed a session it never had"
    );
    assert!(s_client("-sess_in"), "not resumed on the next replica");
}
