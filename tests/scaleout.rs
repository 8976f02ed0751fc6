//! Several stls behind a load balancer: certificates chosen by the client's name (SNI, with
//! `openssl s_client -servername` and `curl --resolve`), `--strict-sni` refusals, session
//! tickets sealed with shared `--ticket-keys` that another replica resumes, and a port two
//! listeners share (SO_REUSEPORT).

use std::process::Command;

use crate::util::pki::{s, KeyType, Pki, VALID};
use crate::util::*;

/// A reply every connection gets: enough HTTP for curl.
const REPLY: &str = "printf 'HTTP/1.0 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok'";

/// The fixture: certificates for a.example (served first, the default), b.example,
/// *.wild.example and x.wild.example, and the listen flags serving them all.
struct Names {
    pki: Pki,
    flags: Vec<String>,
}

impl Names {
    fn new() -> Names {
        let pki = Pki::new();
        let mut flags = Vec::new();
        for (file, name) in [
            ("a", "a.example"),
            ("b", "b.example"),
            ("wild", "*.wild.example"),
            ("x", "x.wild.example"),
        ] {
            let leaf = pki.ca.server(file, &[name], KeyType::P256, VALID);
            flags.extend(["--cert".into(), s(&leaf.cert).into()]);
            flags.extend(["--key".into(), s(&leaf.key).into()]);
        }
        Names { pki, flags }
    }

    /// `stls listen -k 127.0.0.1:0` serving every certificate, answering `REPLY`, with `extra`.
    fn listen(&self, extra: &[&str]) -> Listener {
        let mut args: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        args.extend(["-k", "-c", REPLY]);
        args.extend_from_slice(extra);
        Listener::start(&args, Input::Null)
    }
}

/// `openssl s_client` to `port`, asking for `name` (None: no SNI), with `extra`: its exit
/// status, stdout and stderr.
pub(crate) fn s_client(port: u16, name: Option<&str>, extra: &[&str]) -> Done {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-ign_eof"])
        .args(["-connect", &format!("127.0.0.1:{port}")]);
    match name {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    cmd.args(extra);
    Proc::spawn(&mut cmd, Input::Null).finish()
}

/// The subject line s_client printed for the certificate it was served.
fn subject(done: &Done) -> String {
    String::from_utf8_lossy(&done.stdout)
        .lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_else(|| panic!("no subject from s_client; stderr:\n{}", done.stderr))
        .to_string()
}

/// Two ticket keys, as `openssl rand -hex 32` prints them.
const OLD_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const NEW_KEY: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

/// A TLS 1.3 s_client to `port` (asking for `name`) that saves its session to `sess`
/// (`-sess_out`) or offers it (`-sess_in`): whether it was resumed.
fn reused(port: u16, name: Option<&str>, flag: &str, sess: &std::path::Path) -> bool {
    let out = s_client(port, name, &["-tls1_3", flag, s(sess)]).stdout;
    String::from_utf8_lossy(&out)
        .lines()
        .any(|l| l.starts_with("Reused,"))
}

#[test]
fn curl_gets_the_certificate_of_each_name_it_asks_for() {
    if !have("curl") {
        return;
    }
    let names = Names::new();
    let l = names.listen(&[]);
    for name in ["a.example", "b.example", "x.wild.example"] {
        // curl checks the certificate against the name: only that name's passes.
        let out = Command::new("curl")
            .args(["-sS", "--cacert", s(&names.pki.ca.cert)])
            .args(["--resolve", &format!("{name}:{}:127.0.0.1", l.port)])
            .arg(format!("https://{name}:{}/", l.port))
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "curl https://{name}/: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"ok", "curl https://{name}/");
    }
    l.stop();
}

#[test]
fn exact_name_before_wildcard_and_the_first_for_any_other() {
    if !have("openssl") {
        return;
    }
    let names = Names::new();
    let l = names.listen(&[]);
    for (asked, served) in [
        (Some("b.example"), "CN = b.example"),
        (Some("x.wild.example"), "CN = x.wild.example"),
        (Some("y.wild.example"), "CN = *.wild.example"),
        // The star is one label.
        (Some("a.y.wild.example"), "CN = a.example"),
        (Some("other.example"), "CN = a.example"),
        (None, "CN = a.example"),
    ] {
        let done = s_client(l.port, asked, &[]);
        let got = subject(&done);
        assert!(got.ends_with(served), "{asked:?}: served {got}");
    }
    l.stop();
}

#[test]
fn verbose_says_which_certificate_was_served() {
    if !have("openssl") {
        return;
    }
    let names = Names::new();
    let l = names.listen(&["-v"]);
    // Said before the "listening on" line.
    let said = l.proc.stderr_text();
    assert!(
        said.contains("certificate sha256 fingerprint ")
            && said.contains(" (the first of 4 certificates)"),
        "{said}"
    );
    s_client(l.port, Some("b.example"), &[]);
    let line = l.wait_line("serving the certificate of");
    assert!(
        line.contains("'b.example'") && line.contains("b.pem"),
        "{line}"
    );
    l.stop();
}

#[test]
fn strict_sni_refuses_an_unknown_name_and_no_name() {
    if !have("openssl") {
        return;
    }
    let names = Names::new();
    let l = names.listen(&["--strict-sni"]);
    let known = s_client(l.port, Some("y.wild.example"), &[]);
    assert!(subject(&known).ends_with("CN = *.wild.example"));
    for (asked, logged) in [
        (Some("other.example"), "asked for the name 'other.example'"),
        (None, "sent no server name (SNI): refused"),
    ] {
        let done = s_client(l.port, asked, &[]);
        assert_ne!(done.code(), 0, "{asked:?} was served");
        // OpenSSL names the alert by its number: 112 is unrecognized_name.
        done.expect_stderr("alert number 112");
        let line = l.wait_line(logged);
        assert!(line.contains("--strict-sni"), "{line}");
    }
    // stls as the client: the handshake failed (4).
    run(
        &[
            "connect",
            &l.addr(),
            "--servername",
            "other.example",
            "--cacert",
            s(&names.pki.ca.cert),
        ],
        Input::Null,
    )
    .expect_code(4);
    l.stop();
}

#[test]
fn sighup_reloads_every_certificate() {
    if !have("openssl") {
        return;
    }
    let names = Names::new();
    let l = names.listen(&[]);
    assert!(subject(&s_client(l.port, Some("b.example"), &[])).ends_with("CN = b.example"));
    // The second certificate renewed in place.
    names
        .pki
        .ca
        .server_with_cn("b", "b renewed", &["b.example"]);
    l.signal(libc::SIGHUP);
    l.wait_line("SIGHUP: reloaded");
    assert!(subject(&s_client(l.port, Some("b.example"), &[])).ends_with("CN = b renewed"));
    assert!(subject(&s_client(l.port, Some("a.example"), &[])).ends_with("CN = a.example"));
    l.stop();
}

/// `--reload-every` watches every `--cert`/`--key` pair and the `--ticket-keys` file: a
/// renewed second certificate is served, and a key taken out of the file opens no more tickets.
#[test]
fn reload_every_sees_every_certificate_and_the_ticket_keys() {
    if !have("openssl") {
        return;
    }
    let names = Names::new();
    let dir = tempdir();
    let sess = dir.path().join("session");
    let keys = write(dir.path(), "ticket.keys", format!("{OLD_KEY}\n"));
    let l = names.listen(&["--reload-every", "1", "--ticket-keys", s(&keys)]);
    let resumed = |flag: &str| reused(l.port, Some("a.example"), flag, &sess);
    resumed("-sess_out");
    assert!(resumed("-sess_in"), "not resumed before the change");
    // The keys first: once the certificate written after them is served, both were reloaded.
    write(dir.path(), "ticket.keys", format!("{NEW_KEY}\n"));
    names
        .pki
        .ca
        .server_with_cn("b", "b renewed", &["b.example"]);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !subject(&s_client(l.port, Some("b.example"), &[])).ends_with("CN = b renewed") {
        assert!(
            std::time::Instant::now() < until,
            "the renewed certificate is not served: {}",
            l.proc.stderr_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    l.wait_line("changed: reloaded");
    assert!(!resumed("-sess_in"), "a ticket of a removed key resumed");
    assert!(subject(&s_client(l.port, Some("a.example"), &[])).ends_with("CN = a.example"));
    l.stop();
}

#[test]
fn a_cert_count_unlike_the_key_count_is_a_usage_error() {
    let pki = Pki::new();
    let (cert, key) = (s(&pki.server.cert), s(&pki.server.key));
    run(
        &["listen", "0", "--cert", cert, "--cert", cert, "--key", key],
        Input::Null,
    )
    .expect_code(2)
    .expect_stderr("--cert is given twice and --key once");
    // A client presents one certificate.
    run(
        &[
            "connect",
            "a:1",
            "--cert",
            cert,
            "--cert",
            cert,
            "--insecure",
        ],
        Input::Null,
    )
    .expect_code(2)
    .expect_stderr("a client presents one certificate");
}

/// Two listeners, each its own process, serving the fixture's certificate with `flags`;
/// s_client saves its session from the first and offers it to the second: whether the second
/// resumed it.
fn resumed_by_another(pki: &Pki, flags: &[&str], tls: &str) -> bool {
    let dir = tempdir();
    let sess = dir.path().join("session");
    let mut args = vec!["-c", "echo hello"];
    args.extend_from_slice(flags);
    let first = serve_k(&pki.server, &args, Input::Null);
    let second = serve_k(&pki.server, &args, Input::Null);
    // The server's reply comes after its tickets: the session saved holds one.
    let saved = s_client(first.port, None, &[tls, "-sess_out", s(&sess)]);
    assert!(
        String::from_utf8_lossy(&saved.stdout).contains("hello"),
        "no reply from the first: {}",
        saved.stderr
    );
    let again = s_client(second.port, None, &[tls, "-sess_in", s(&sess)]);
    let out = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(out.contains("hello"), "no reply from the second: {out}");
    first.stop();
    second.stop();
    let reused = out.lines().any(|l| l.starts_with("Reused,"));
    let new = out.lines().any(|l| l.starts_with("New,"));
    assert!(reused != new, "neither New nor Reused, or both: {out}");
    reused
}

#[test]
fn replicas_with_the_same_ticket_keys_resume_each_others_sessions() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let keys = write(
        pki.dir.path(),
        "ticket.keys",
        "# rotated in, newest last\n\
         00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n\
         \n\
         ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n",
    );
    for tls in ["-tls1_3", "-tls1_2"] {
        assert!(
            resumed_by_another(&pki, &["--ticket-keys", s(&keys)], tls),
            "{tls}: not resumed with shared keys"
        );
        assert!(
            !resumed_by_another(&pki, &[], tls),
            "{tls}: resumed by another process without shared keys"
        );
    }
}

#[test]
fn sighup_reads_the_ticket_keys_again() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let dir = tempdir();
    let sess = dir.path().join("session");
    let keys = write(dir.path(), "ticket.keys", format!("{OLD_KEY}\n"));
    let l = serve_k(
        &pki.server,
        &["-c", "echo hello", "--ticket-keys", s(&keys)],
        Input::Null,
    );
    let resumed = |flag: &str| reused(l.port, None, flag, &sess);
    resumed("-sess_out");
    // The old key still opens what it sealed while the new one seals.
    write(dir.path(), "ticket.keys", format!("{OLD_KEY}\n{NEW_KEY}\n"));
    l.signal(libc::SIGHUP);
    l.wait_line("SIGHUP: reloaded");
    assert!(
        resumed("-sess_in"),
        "the old key no longer opens its tickets"
    );
    // Removed, it opens nothing: a full handshake.
    write(dir.path(), "ticket.keys", format!("{NEW_KEY}\n"));
    l.signal(libc::SIGHUP);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while l.proc.stderr_text().matches("SIGHUP: reloaded").count() < 2 {
        assert!(
            std::time::Instant::now() < until,
            "no second reload: {}",
            l.proc.stderr_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!resumed("-sess_in"), "a ticket of a removed key resumed");
    l.stop();
}

#[test]
fn a_bad_ticket_key_file_stops_listen_naming_the_line() {
    let pki = Pki::new();
    let dir = tempdir();
    let key = OLD_KEY;
    let listen = |file: &str| {
        run(
            &[
                "listen",
                "127.0.0.1:0",
                "--cert",
                s(&pki.server.cert),
                "--key",
                s(&pki.server.key),
                "--ticket-keys",
                file,
            ],
            Input::Null,
        )
    };
    let short = write(dir.path(), "short.keys", format!("{key}\n{}\n", &key[..62]));
    listen(s(&short))
        .expect_code(1)
        .expect_stderr("short.keys, line 2: 62 hex digits");
    let junk = write(
        dir.path(),
        "junk.keys",
        format!("# ok\n\n{key}\nnot a key\n"),
    );
    listen(s(&junk))
        .expect_code(1)
        .expect_stderr("junk.keys, line 4: not hex digits");
    let empty = write(dir.path(), "empty.keys", "# none yet\n");
    listen(s(&empty))
        .expect_code(1)
        .expect_stderr("empty.keys: no key in it");
    // A good file that others may read is used, with a warning.
    use std::os::unix::fs::PermissionsExt;
    let good = write(dir.path(), "good.keys", format!("{key}\n"));
    for (mode, warned) in [(0o644, true), (0o600, false)] {
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(mode)).unwrap();
        let l = serve_k(&pki.server, &["--ticket-keys", s(&good)], Input::Null);
        let said = l.proc.stderr_text();
        l.stop();
        assert_eq!(
            said.contains("good.keys: others may read these ticket keys"),
            warned,
            "mode {mode:o}: {said}"
        );
    }
    run(
        &["listen", "0", "--ticket-keys", s(&good), "--no-resume"],
        Input::Null,
    )
    .expect_code(2)
    .expect_stderr("--ticket-keys seals the tickets that --no-resume turns off");
    let missing = dir.path().join("missing.keys");
    listen(s(&missing))
        .expect_code(1)
        .expect_stderr("missing.keys: ");
}

#[test]
fn two_listeners_share_a_port() {
    // As when a new stls starts while the old one still serves: both bind.
    let port = free_port().to_string();
    let start = || {
        let mut cmd = stls();
        cmd.args(["listen", "-k", &format!("127.0.0.1:{port}")]);
        Listener::start_cmd(&mut cmd, Input::Null)
    };
    let old = start();
    let new = start();
    assert_eq!(old.port, new.port);
    new.stop();
    old.stop();
}
