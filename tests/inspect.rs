//! `stls inspect` against `openssl s_server` and `stls listen` serving the test PKI's
//! certificates: every JSON field is compared with what `openssl x509` says of the same file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::util::pki::{s, Days, KeyType, Leaf, Pki, EXPIRED, VALID};
use crate::util::*;

/// `openssl x509 -in FILE ARGS…`, its output trimmed.
fn x509(file: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-in", s(file)])
        .args(args)
        .output()
        .expect("run openssl x509");
    assert!(out.status.success(), "openssl x509 {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A shell pipeline's output, trimmed.
fn sh(script: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", script])
        .output()
        .expect("run sh");
    assert!(out.status.success(), "{script} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `openssl s_server` serving `cert`.
fn s_server(cert: &Path, key: &Path) -> (String, Proc) {
    s_server_chain(cert, key, &[])
}

/// `openssl s_server` serving `cert` followed by `chain`.
fn s_server_chain(cert: &Path, key: &Path, chain: &[&str]) -> (String, Proc) {
    let port = free_port();
    let mut cmd = Command::new("openssl");
    cmd.args(["s_server", "-nbio", "-quiet"])
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .args(["-cert", s(cert), "-key", s(key)])
        .args(chain);
    let proc = Proc::spawn(&mut cmd, Input::Held);
    wait_listening(port);
    (format!("127.0.0.1:{port}"), proc)
}

/// `stls listen -k` serving `leaf`.
fn stls_server(leaf: &Leaf) -> Listener {
    serve_k(leaf, &[], Input::Held)
}

/// Each output line parsed, by target.
fn parse(stdout: &[u8]) -> HashMap<String, Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            (v["target"].as_str().expect("target").to_string(), v)
        })
        .collect()
}

/// Compare one chain entry with `openssl x509`'s view of `file`.
fn check_cert(entry: &Value, file: &Path, what: &str) {
    let fp = x509(file, &["-fingerprint", "-sha256"]);
    assert_eq!(
        format!("sha256 Fingerprint={}", entry["sha256"].as_str().unwrap()),
        fp,
        "{what}: sha256"
    );
    let not_after = x509(file, &["-enddate", "-dateopt", "iso_8601"]);
    let iso = entry["not_after"].as_str().unwrap();
    assert_eq!(
        format!("notAfter={}", iso.replace('T', " ")),
        not_after,
        "{what}"
    );
    let not_before = x509(file, &["-startdate", "-dateopt", "iso_8601"]);
    let iso = entry["not_before"].as_str().unwrap();
    assert_eq!(
        format!("notBefore={}", iso.replace('T', " ")),
        not_before,
        "{what}"
    );
    let subject = x509(file, &["-subject", "-nameopt", "RFC2253"]);
    assert_eq!(
        format!("subject={}", entry["subject"].as_str().unwrap()),
        subject,
        "{what}"
    );
    let issuer = x509(file, &["-issuer", "-nameopt", "RFC2253"]);
    assert_eq!(
        format!("issuer={}", entry["issuer"].as_str().unwrap()),
        issuer,
        "{what}"
    );
    // openssl: "DNS:localhost, IP Address:127.0.0.1"; IPv6 written out in full there.
    let sans = x509(file, &["-ext", "subjectAltName"]);
    let theirs: Vec<String> = sans
        .lines()
        .skip(1)
        .flat_map(|l| l.split(", "))
        .map(|n| n.trim().replace("IP Address:", "IP:"))
        .filter(|n| !n.is_empty())
        .collect();
    let ours: Vec<String> = entry["sans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().replace("IP:::1", "IP:0:0:0:0:0:0:0:1"))
        .collect();
    assert_eq!(ours, theirs, "{what}: sans");
    let pin = sh(&format!(
        "openssl x509 -in '{}' -noout -pubkey | openssl pkey -pubin -outform der \
         | openssl dgst -sha256 -binary | base64",
        s(file)
    ));
    assert_eq!(entry["spki_sha256"].as_str().unwrap(), pin, "{what}: pin");
    let text = x509(file, &["-text"]);
    let sig = entry["signature"].as_str().unwrap();
    assert!(
        text.contains(&format!("Signature Algorithm: {sig}")),
        "{what}: signature {sig}"
    );
    let key = entry["key"].as_str().unwrap();
    let key_ok = match key.split_once(' ') {
        Some(("RSA", bits)) => text.contains(&format!("Public-Key: ({bits} bit)")),
        Some(("EC", curve)) => text.contains(&format!("NIST CURVE: {curve}")),
        _ => key == "Ed25519" && text.contains("ED25519"),
    };
    assert!(key_ok, "{what}: key {key}");
    // days_left agrees with notAfter, from now.
    let end = sh(&format!(
        "date -u -d '{}' +%s",
        not_after.trim_start_matches("notAfter=")
    ));
    let now = sh("date -u +%s");
    let want = (end.parse::<i64>().unwrap() - now.parse::<i64>().unwrap()).div_euclid(86_400);
    let got = entry["days_left"].as_i64().unwrap();
    assert!(
        (got - want).abs() <= 1,
        "{what}: days_left {got}, openssl says {want}"
    );
}

/// A self-signed certificate, made by openssl.
fn self_signed(dir: &Path) -> Leaf {
    let (cert, key) = (dir.join("self.pem"), dir.join("self.key"));
    sh(&format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 5 \
         -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
         -keyout '{}' -out '{}' 2>/dev/null",
        s(&key),
        s(&cert)
    ));
    Leaf { cert, key }
}

/// A root, an intermediate and a leaf signed by it, made by openssl: the root's file, the
/// leaf, and the intermediate.
fn with_intermediate(dir: &Path) -> (PathBuf, Leaf, PathBuf) {
    let d = s(dir);
    sh(&format!(
        "cd '{d}' && \
         printf 'basicConstraints=critical,CA:TRUE\\nkeyUsage=critical,keyCertSign\\n' > ca.ext && \
         printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' \
           > leaf.ext && \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
           -subj /CN=root -addext basicConstraints=critical,CA:TRUE \
           -addext keyUsage=critical,keyCertSign -keyout root.key -out root.pem 2>/dev/null && \
         openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes \
           -subj /CN=intermediate -keyout int.key -out int.csr 2>/dev/null && \
         openssl x509 -req -in int.csr -CA root.pem -CAkey root.key -CAcreateserial \
           -days 30 -extfile ca.ext -out int.pem 2>/dev/null && \
         openssl req -new -newkey rsa:2048 -nodes -subj /CN=localhost \
           -keyout leaf.key -out leaf.csr 2>/dev/null && \
         openssl x509 -req -in leaf.csr -CA int.pem -CAkey int.key -CAcreateserial \
           -days 20 -extfile leaf.ext -out leaf.pem 2>/dev/null"
    ));
    (
        dir.join("root.pem"),
        Leaf {
            cert: dir.join("leaf.pem"),
            key: dir.join("leaf.key"),
        },
        dir.join("int.pem"),
    )
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "a table: each kind of certificate and what openssl says of it"
)]
fn json_matches_openssl_for_every_kind_of_certificate() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let dir = pki.dir.path();
    let ca = &pki.ca;
    let rsa = ca.server("rsa", &["localhost", "127.0.0.1"], KeyType::Rsa2048, VALID);
    let soon = ca.server(
        "soon",
        &["localhost"],
        KeyType::P256,
        Days { from: -1, to: 10 },
    );
    let expired = ca.server("expired", &["localhost"], KeyType::P256, EXPIRED);
    let wrong = ca.server("wrong", &["elsewhere.example"], KeyType::Ed25519, VALID);
    let selfs = self_signed(dir);
    let (root, leaf_only, int) = with_intermediate(dir);

    let good = stls_server(&pki.server);
    let (rsa_addr, _rsa) = s_server(&rsa.cert, &rsa.key);
    let soon_l = stls_server(&soon);
    let expired_l = stls_server(&expired);
    let (wrong_addr, _wrong) = s_server(&wrong.cert, &wrong.key);
    let (self_addr, _self) = s_server(&selfs.cert, &selfs.key);
    let (incomplete_addr, _inc) = s_server(&leaf_only.cert, &leaf_only.key);

    // name → (target, certificate file, status with --cacert CA, verified)
    let localhost = |addr: &str| addr.replace("127.0.0.1", "localhost");
    let cases = [
        (
            "good",
            localhost(&good.addr()),
            pki.server.cert.clone(),
            0,
            true,
        ),
        ("rsa", rsa_addr.clone(), rsa.cert.clone(), 0, true),
        (
            "soon",
            localhost(&soon_l.addr()),
            soon.cert.clone(),
            8,
            true,
        ),
        (
            "expired",
            localhost(&expired_l.addr()),
            expired.cert.clone(),
            5,
            false,
        ),
        (
            "wrong name",
            localhost(&wrong_addr),
            wrong.cert.clone(),
            5,
            false,
        ),
        (
            "self-signed",
            self_addr.clone(),
            selfs.cert.clone(),
            5,
            false,
        ),
        (
            "incomplete",
            localhost(&incomplete_addr),
            leaf_only.cert.clone(),
            5,
            false,
        ),
    ];
    let mut args = vec!["inspect", "--json", "--cacert", s(&ca.cert)];
    args.extend(["--expires-within", "20"]);
    let targets: Vec<String> = cases.iter().map(|c| c.1.clone()).collect();
    args.extend(targets.iter().map(String::as_str));
    let done = run(&args, Input::Null);
    // The first failing target in input order: "soon".
    done.expect_code(8);
    let by_target = parse(&done.stdout);
    assert_eq!(by_target.len(), cases.len(), "{}", done.stderr);
    for (what, target, file, status, verified) in &cases {
        let v = &by_target[target];
        assert_eq!(v["status"], *status, "{what}: {v}");
        assert_eq!(v["ok"], *status == 0, "{what}");
        assert_eq!(v["verified"], *verified, "{what}: {v}");
        assert_eq!(v["error"].is_null(), *status == 0, "{what}: {v}");
        assert_eq!(v["tls"]["version"], "TLSv1.3", "{what}");
        assert!(
            v["tls"]["cipher"].as_str().unwrap().starts_with("TLS13_"),
            "{what}"
        );
        assert!(v["tls"]["group"].is_string(), "{what}");
        assert!(v["tls"]["alpn"].is_null(), "{what}");
        assert_eq!(v["ocsp_stapled"], false, "{what}");
        check_cert(&v["chain"][0], file, what);
    }
    let error = |t: &str| by_target[t]["error"].as_str().unwrap().to_string();
    assert!(
        error(&cases[2].1).contains("expires in"),
        "{}",
        error(&cases[2].1)
    );
    assert!(
        error(&cases[3].1).contains("expired"),
        "{}",
        error(&cases[3].1)
    );
    assert!(
        error(&cases[4].1).contains("elsewhere.example"),
        "{}",
        error(&cases[4].1)
    );
    assert!(
        by_target[&cases[3].1]["chain"][0]["days_left"]
            .as_i64()
            .unwrap()
            < 0
    );

    // The intermediate: sent whole it verifies against the root, and both certificates are
    // described; the leaf alone does not.
    let (full_addr, _full) =
        s_server_chain(&leaf_only.cert, &leaf_only.key, &["-cert_chain", s(&int)]);
    let full_target = localhost(&full_addr);
    let done = run(
        &[
            "inspect",
            "--json",
            "--cacert",
            s(&root),
            &full_target,
            &cases[6].1,
        ],
        Input::Null,
    );
    done.expect_code(5);
    let v = parse(&done.stdout);
    assert_eq!(v[&full_target]["status"], 0, "{}", v[&full_target]);
    assert_eq!(v[&full_target]["chain"].as_array().unwrap().len(), 2);
    check_cert(
        &v[&full_target]["chain"][0],
        &leaf_only.cert,
        "full chain leaf",
    );
    check_cert(
        &v[&full_target]["chain"][1],
        &dir.join("int.pem"),
        "intermediate",
    );
    assert_eq!(v[&cases[6].1]["status"], 5);
    assert!(v[&cases[6].1]["error"]
        .as_str()
        .unwrap()
        .contains("unknown"));
}

#[test]
fn readable_summary_shows_the_chain_even_when_rejected() {
    let pki = Pki::new();
    let l = stls_server(&pki.server);
    // Without --cacert: rejected (the test CA is not a built-in root), chain still shown.
    let done = run(&["inspect", &l.addr()], Input::Null);
    done.expect_code(5);
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(out.contains("FAILED (exit 5)"), "{out}");
    assert!(out.contains("which is not trusted"), "{out}");
    assert!(out.contains("CN=localhost"), "{out}");
    assert!(out.contains("DNS:localhost, IP:127.0.0.1, IP:::1"), "{out}");
    assert!(out.contains("key:       EC P-256"), "{out}");
    assert!(out.contains("pin:       sha256//"), "{out}");
    assert!(out.contains("TLSv1.3"), "{out}");
    // Nothing on stderr: the verdict is the output.
    assert_eq!(done.stderr, "");

    let done = run(
        &[
            "inspect",
            "--cacert",
            s(&pki.ca.cert),
            "--alpn",
            "h2",
            &l.addr(),
        ],
        Input::Null,
    );
    done.expect_code(0);
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(out.contains("verdict:   verified"), "{out}");
}

#[test]
fn refused_and_silent_targets_fail_with_their_own_status() {
    let pki = Pki::new();
    let l = stls_server(&pki.server);
    // A listening socket that never answers: connect succeeds, the handshake never does.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let refused = format!("127.0.0.1:{}", free_port());
    let ok = l.addr();
    let done = run(
        &[
            "inspect",
            "--json",
            "-w",
            "1",
            "--cacert",
            s(&pki.ca.cert),
            &ok,
            &silent_addr,
            &refused,
        ],
        Input::Null,
    );
    // The silent one comes first in input order.
    done.expect_code(7);
    let v = parse(&done.stdout);
    assert_eq!(v[&ok]["status"], 0);
    assert_eq!(v[&silent_addr]["status"], 7);
    assert!(v[&silent_addr]["error"].as_str().unwrap().contains("-w"));
    assert_eq!(v[&silent_addr]["chain"], serde_json::json!([]));
    assert_eq!(v[&silent_addr]["verified"], false);
    assert_eq!(v[&refused]["status"], 3);
    assert!(v[&refused]["error"].as_str().unwrap().contains("refused"));
    assert!(v[&refused]["tls"]["version"].is_null());
}

#[test]
fn many_targets_from_a_list_on_stdin() {
    let pki = Pki::new();
    let servers: Vec<Listener> = (0..3).map(|_| stls_server(&pki.server)).collect();
    let mut list = String::from("# hosts to check\n\n");
    for _ in 0..20 {
        for l in &servers {
            list += &format!("{}   # a comment\n", l.addr());
        }
    }
    let done = run(
        &[
            "inspect",
            "--json",
            "--parallel",
            "4",
            "--cacert",
            s(&pki.ca.cert),
            "--targets",
            "-",
        ],
        Input::Bytes(list.into_bytes()),
    );
    done.expect_code(0);
    let lines: Vec<Value> = String::from_utf8_lossy(&done.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 60);
    assert!(lines
        .iter()
        .all(|v| v["ok"] == true && v["verified"] == true));

    // A bad line is named, before any connection.
    let done = run(
        &["inspect", "--targets", "-"],
        Input::Bytes(b"127.0.0.1:1\n\nno-port-here\n".to_vec()),
    );
    done.expect_code(2)
        .expect_stderr("stdin, line 3: 'no-port-here'");
    assert!(done.stdout.is_empty());
    let missing = pki.dir.path().join("missing.txt");
    run(&["inspect", "--targets", s(&missing)], Input::Null)
        .expect_code(1)
        .expect_stderr("missing.txt");
}

#[test]
fn save_chain_round_trips_through_openssl_verify() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let dir = pki.dir.path();
    let (root, leaf, int) = with_intermediate(dir);
    let (addr, _server) = s_server_chain(&leaf.cert, &leaf.key, &["-cert_chain", s(&int)]);
    let saved = dir.join("saved.pem");
    // Written even though verification fails (no --cacert: the root is unknown).
    run(&["inspect", "--save-chain", s(&saved), &addr], Input::Null).expect_code(5);
    let verify = Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            s(&root),
            "-untrusted",
            s(&saved),
            s(&saved),
        ])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let certs = std::fs::read_to_string(&saved).unwrap();
    assert_eq!(certs.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(certs.starts_with(&std::fs::read_to_string(&leaf.cert).unwrap()));

    run(
        &["inspect", "--save-chain", s(&saved), &addr, &addr],
        Input::Null,
    )
    .expect_code(2)
    .expect_stderr("--save-chain writes one chain");
}

#[test]
fn ipv6_targets_and_the_negotiated_alpn() {
    let pki = Pki::new();
    let mut cmd = stls();
    cmd.args(["listen", "-k", "[::1]:0", "--alpn", "h2"]).args([
        "--cert",
        s(&pki.server.cert),
        "--key",
        s(&pki.server.key),
    ]);
    let l = Listener::start_cmd(&mut cmd, Input::Held);
    let target = format!("[::1]:{}", l.port);
    let done = run(
        &[
            "inspect",
            "--json",
            "--alpn",
            "h2",
            "--cacert",
            s(&pki.ca.cert),
            &target,
        ],
        Input::Null,
    );
    done.expect_code(0);
    let v = parse(&done.stdout);
    assert_eq!(v[&target]["address"], target.as_str());
    assert_eq!(v[&target]["tls"]["alpn"], "h2");
    assert_eq!(v[&target]["verified"], true);
}

#[test]
fn insecure_shows_everything_but_calls_nothing_verified() {
    let pki = Pki::new();
    let l = stls_server(&pki.server);
    let done = run(
        &[
            "inspect",
            "--json",
            "--insecure",
            "--expires-within",
            "36500",
            &l.addr(),
        ],
        Input::Null,
    );
    // Nothing was checked: not verified, and so not "expiring soon" either.
    done.expect_code(0).expect_stderr("--insecure");
    // …and says so, once, rather than pass silently.
    let warning: Vec<&str> = done
        .stderr
        .lines()
        .filter(|l| l.starts_with("stls: warning: --expires-within 36500 is not applied"))
        .collect();
    assert_eq!(warning.len(), 1, "{}", done.stderr);
    let v = parse(&done.stdout);
    let v = &v[&l.addr()];
    assert_eq!(v["verified"], false);
    assert_eq!(v["status"], 0);
    assert_eq!(v["chain"][0]["subject"], "CN=localhost");
}

#[test]
fn separators_in_subjects_and_names_cannot_forge_an_attribute_or_a_name() {
    let Some(ca) = crate::util::openssl_ca::OpensslCa::new() else {
        return;
    };
    // One CN that reads as a CN and an O, and one DNS name that reads as two.
    let hostile = ca.leaf(
        "hostile",
        r"/O=Evil/CN=evil, O=Trusted Bank Inc/OU=a\+b\\c",
        &[
            "DNS.1 = localhost",
            "DNS.2 = mallory.example,DNS:admin.example",
        ],
        "serverAuth",
    );
    let l = serve_k(&hostile, &[], Input::Null);
    let addr = format!("localhost:{}", l.port);
    let c = s(&ca.cert);
    // RFC 4514, byte for byte as openssl prints it.
    let subject = x509(&hostile.cert, &["-subject", "-nameopt", "RFC2253"]);
    let subject = subject.trim_start_matches("subject=");
    assert_eq!(subject, r"OU=a\+b\\c,CN=evil\, O=Trusted Bank Inc,O=Evil");
    let text = run(&["inspect", "--cacert", c, &addr], Input::Null);
    text.expect_code(0);
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(out.contains(&format!("(leaf): {subject}\n")), "{out}");
    let sans = r"sans:      DNS:localhost, DNS:mallory.example\,DNS:admin.example";
    assert!(out.contains(sans), "{out}");
    // JSON: valid, the same strings.
    let json = run(&["inspect", "--json", "--cacert", c, &addr], Input::Null);
    json.expect_code(0);
    let v: Value = serde_json::from_slice(&json.stdout).expect("valid JSON");
    assert_eq!(v["chain"][0]["subject"], subject);
    assert_eq!(
        v["chain"][0]["sans"],
        serde_json::json!(["DNS:localhost", r"DNS:mallory.example\,DNS:admin.example"])
    );
    // connect -v: the same, and every line of it is stls's.
    let done = connect(&addr, &["--cacert", c, "-v"], Input::Null);
    done.expect_code(0)
        .expect_stderr(&format!("server certificate: {subject}\n"))
        .expect_stderr(r"names:  localhost, mallory.example\,DNS:admin.example");
    for line in done.stderr.lines() {
        assert!(line.starts_with("stls: "), "{line:?} in:\n{}", done.stderr);
    }
}
