//! Several stls behind a load balancer: certificates chosen by the client's name (SNI, with
//! `openssl s_client -servername` and `curl --resolve`), `--strict-sni` refusals, and a port
//! two listeners share (SO_REUSEPORT).

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
fn s_client(port: u16, name: Option<&str>, extra: &[&str]) -> Done {
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
