//! `stls inspect --probe` and `--require` against `openssl s_server` configured each way
//! (TLS 1.2 only, X25519 only with ALPN, a legacy TLS 1.0 server, RSA key exchange and CBC
//! only, a HelloRetryRequest group), a stls listener for post-quantum, and a relay that
//! resets large ClientHellos; stls's answers are compared with `sslscan --xml=-` and
//! `testssl --jsonfile` on the same servers where they are installed.

use crate::util;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use util::pki::{s, Pki};
use util::{free_port, have, wait_listening, Done, Input, Listener, Proc};

/// `openssl s_server` with `flags`, serving an RSA certificate (RSA key exchange needs one,
/// and most servers still have one).
fn s_server(pki: &Pki, flags: &[&str]) -> (String, Proc) {
    let port = free_port();
    let rsa = pki.ca.server(
        "rsa",
        &["localhost"],
        util::pki::KeyType::Rsa2048,
        util::pki::VALID,
    );
    let mut cmd = Command::new("openssl");
    cmd.args(["s_server", "-nbio", "-quiet"])
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .args(["-cert", s(&rsa.cert), "-key", s(&rsa.key)])
        .args(flags);
    let proc = Proc::spawn(&mut cmd, Input::Held);
    wait_listening(port);
    (format!("127.0.0.1:{port}"), proc)
}

/// `stls inspect --json --insecure --probe all TARGET EXTRA…`: the run and its JSON object.
fn probe(target: &str, extra: &[&str]) -> (Done, Value) {
    let mut args = vec!["inspect", "--json", "--insecure", "-w", "5"];
    args.extend_from_slice(extra);
    if !extra
        .iter()
        .any(|a| a.starts_with("--probe") || *a == "--require")
    {
        args.extend(["--probe", "all"]);
    }
    args.push(target);
    let done = util::run(&args, Input::Null);
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
    let out = String::from_utf8_lossy(&done.stdout).to_string();
    let line: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("not one JSON line ({e}): {out}; stderr: {}", done.stderr));
    (done, line)
}

/// The strings of a JSON list.
fn list(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_str().expect("a string").to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// IANA numbers of what stls names, and the numbers stls can ask about.
fn suite_ids(names: &[String]) -> BTreeSet<u16> {
    rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .filter(|s| names.iter().any(|n| Some(n.as_str()) == s.suite().as_str()))
        .map(|s| u16::from(s.suite()))
        .collect()
}

fn askable_suites() -> BTreeSet<u16> {
    rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .map(|s| u16::from(s.suite()))
        .collect()
}

fn group_ids(names: &[String]) -> BTreeSet<u16> {
    rustls::crypto::aws_lc_rs::ALL_KX_GROUPS
        .iter()
        .filter(|g| names.iter().any(|n| Some(n.as_str()) == g.name().as_str()))
        .map(|g| u16::from(g.name()))
        .collect()
}

fn askable_groups() -> BTreeSet<u16> {
    rustls::crypto::aws_lc_rs::ALL_KX_GROUPS
        .iter()
        .map(|g| u16::from(g.name()))
        .collect()
}

/// The weak classes an OpenSSL suite name belongs to, as stls names them.
fn weak_classes(openssl_name: &str) -> Vec<&'static str> {
    let mut classes = Vec::new();
    let forward_secret = openssl_name.contains("DHE") || openssl_name.starts_with("TLS_");
    let aead = ["GCM", "CHACHA", "CCM"]
        .iter()
        .any(|a| openssl_name.contains(a));
    if !forward_secret && openssl_name.contains("AES") {
        classes.push("no-forward-secrecy");
    }
    if openssl_name.contains("AES") && !aead && !openssl_name.starts_with("TLS_") {
        classes.push("cbc");
    }
    if openssl_name.contains("DES-CBC3") {
        classes.push("3des");
    }
    if openssl_name.contains("RC4") {
        classes.push("rc4");
    }
    classes
}

/// What `sslscan --xml=-` found.
#[derive(Debug, Default)]
struct Scan {
    versions: BTreeSet<String>,
    suites: BTreeSet<u16>,
    /// Groups usable with TLS 1.2 or 1.3 (sslscan also lists those of older versions).
    groups: BTreeSet<u16>,
    weak: BTreeSet<String>,
}

/// The value of `name="…"` in an XML element.
fn attr<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let from = element.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = element[from..].find('"')?;
    Some(&element[from..from + len])
}

fn hex(text: &str) -> u16 {
    u16::from_str_radix(text.trim_start_matches("0x").trim_start_matches("0X"), 16)
        .unwrap_or_else(|_| panic!("not hex: {text}"))
}

fn sslscan(target: &str) -> Scan {
    let out = Command::new("sslscan")
        .args(["--xml=-", "--no-colour", target])
        .output()
        .expect("sslscan runs");
    let xml = String::from_utf8_lossy(&out.stdout);
    let mut scan = Scan::default();
    for element in xml.split('<') {
        if element.starts_with("protocol ") && attr(element, "enabled") == Some("1") {
            let (kind, v) = (attr(element, "type"), attr(element, "version"));
            scan.versions.insert(match (kind, v) {
                (Some("ssl"), Some(v)) => format!("SSLv{v}"),
                (_, Some(v)) => format!("TLSv{v}"),
                _ => continue,
            });
        } else if element.starts_with("cipher ") {
            let id = hex(attr(element, "id").expect("cipher id"));
            scan.suites.insert(id);
            for class in weak_classes(attr(element, "cipher").unwrap_or_default()) {
                scan.weak.insert(class.to_string());
            }
        } else if element.starts_with("group ") {
            let version = attr(element, "sslversion").unwrap_or_default();
            if version == "TLSv1.2" || version == "TLSv1.3" {
                scan.groups
                    .insert(hex(attr(element, "id").expect("group id")));
            }
        }
    }
    scan
}

/// stls's findings and sslscan's agree on what both can ask about.
fn agrees_with_sslscan(target: &str, probe: &Value) {
    if !have("sslscan") {
        return;
    }
    let scan = sslscan(target);
    let versions: BTreeSet<String> = list(&probe["versions"]).into_iter().collect();
    assert_eq!(versions, scan.versions, "versions: sslscan {scan:?}");
    let mut suites = list(&probe["suites"]["TLSv1.3"]);
    suites.extend(list(&probe["suites"]["TLSv1.2"]));
    let askable = askable_suites();
    let scanned: BTreeSet<u16> = scan.suites.intersection(&askable).copied().collect();
    assert_eq!(suite_ids(&suites), scanned, "suites: sslscan {scan:?}");
    let groups = group_ids(&list(&probe["groups"]));
    let scanned: BTreeSet<u16> = scan
        .groups
        .intersection(&askable_groups())
        .copied()
        .collect();
    assert_eq!(groups, scanned, "groups: sslscan {scan:?}");
    let weak: BTreeSet<String> = list(&probe["weak"]).into_iter().collect();
    assert_eq!(weak, scan.weak, "weak classes: sslscan {scan:?}");
}

#[test]
fn a_tls12_only_server() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let (target, _server) = s_server(&pki, &["-tls1_2"]);
    let (done, line) = probe(&target, &[]);
    done.expect_code(0);
    let p = &line["probe"];
    assert_eq!(list(&p["versions"]), ["TLSv1.2"]);
    assert_eq!(list(&p["legacy_versions"]), Vec::<String>::new());
    assert!(list(&p["suites"]["TLSv1.3"]).is_empty(), "{p}");
    assert!(list(&p["groups"]).contains(&"X25519".to_string()), "{p}");
    assert_eq!(p["pq"], false);
    assert_eq!(p["large_hello_ok"], true);
    assert_eq!(p["errors"], serde_json::json!({}));
    agrees_with_sslscan(&target, p);

    // --require tls1.3: exit 9, naming it.
    let done = util::run(
        &["inspect", "--insecure", "--require", "tls1.3", &target],
        Input::Null,
    );
    done.expect_code(9);
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(
        out.contains("FAILED (exit 9)")
            && out.contains("--require tls1.3: TLSv1.3 is not accepted"),
        "{out}"
    );
}

#[test]
fn an_x25519_only_server_with_alpn() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let (target, _server) = s_server(&pki, &["-groups", "X25519", "-alpn", "h2,http/1.1"]);
    let (done, line) = probe(&target, &[]);
    done.expect_code(0);
    let p = &line["probe"];
    assert_eq!(list(&p["versions"]), ["TLSv1.3", "TLSv1.2"]);
    assert_eq!(list(&p["groups"]), ["X25519"]);
    assert_eq!(list(&p["hrr_groups"]), Vec::<String>::new());
    assert_eq!(list(&p["alpn"]), ["h2", "http/1.1"]);
    agrees_with_sslscan(&target, p);

    // The readable summary says the same in a few lines.
    let done = util::run(
        &["inspect", "--insecure", "--probe", "groups,alpn", &target],
        Input::Null,
    );
    done.expect_code(0);
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(
        out.contains("  groups:    X25519; post-quantum: no; large ClientHello answered\n"),
        "{out}"
    );
    assert!(out.contains("  alpn:      h2, http/1.1\n"), "{out}");
    assert!(!out.contains("accepts:"), "{out}");
}

#[test]
fn a_legacy_tls10_server() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let (target, _server) = s_server(&pki, &["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    // The inspection itself fails (rustls speaks TLS 1.2 and 1.3 only); the probes answer.
    let (done, line) = probe(&target, &[]);
    done.expect_code(4);
    let p = &line["probe"];
    assert_eq!(list(&p["versions"]), ["TLSv1.0"]);
    assert_eq!(list(&p["legacy_versions"]), ["TLSv1.0"]);
    let weak: BTreeSet<String> = list(&p["weak"]).into_iter().collect();
    assert!(
        weak.contains("cbc") && weak.contains("no-forward-secrecy"),
        "{p}"
    );
    agrees_with_sslscan(&target, p);
}

#[test]
fn rsa_key_exchange_and_cbc_only() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let (target, _server) = s_server(
        &pki,
        &["-tls1_2", "-cipher", "AES128-SHA:AES256-SHA@SECLEVEL=0"],
    );
    let (done, line) = probe(&target, &[]);
    done.expect_code(4);
    let p = &line["probe"];
    assert_eq!(list(&p["weak"]), ["no-forward-secrecy", "cbc"]);
    assert!(list(&p["suites"]["TLSv1.2"]).is_empty(), "{p}");
    // TLS 1.2 is accepted, with suites rustls lacks: the minimal ClientHello sees it.
    assert_eq!(list(&p["versions"]), ["TLSv1.2"], "{p}");
    agrees_with_sslscan(&target, p);
}

#[test]
fn require_names_each_failed_requirement() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    // TLS 1.0 to 1.2, ECDHE suites with CBC among them: stls speaks to it, and it fails the
    // policy.
    let (target, _server) = s_server(&pki, &["-cipher", "DEFAULT@SECLEVEL=0", "-no_tls1_3"]);
    let done = util::run(
        &[
            "inspect",
            "--insecure",
            "--json",
            "--require",
            "no-legacy,tls1.3,no-weak",
            &target,
        ],
        Input::Null,
    );
    done.expect_code(9);
    let out = String::from_utf8_lossy(&done.stdout);
    let line: Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(line["status"], 9);
    let error = line["error"].as_str().unwrap_or_default();
    for part in [
        "--require no-legacy: TLSv1.1, TLSv1.0 accepted",
        "--require tls1.3: TLSv1.3 is not accepted",
        "--require no-weak: weak suites accepted: no-forward-secrecy, cbc",
    ] {
        assert!(error.contains(part), "{error}");
    }
    // Only what the requirements need was probed.
    assert_eq!(line["probe"]["alpn"], Value::Null);
    assert_eq!(line["probe"]["groups"], Value::Null);
}

#[test]
fn post_quantum_on_a_stls_listener() {
    let pki = Pki::new();
    let server = util::serve_k(&pki.server, &[], Input::Held);
    let target = server.addr().replace("127.0.0.1", "localhost");
    let done = util::run(
        &[
            "inspect",
            "--json",
            "--cacert",
            s(&pki.ca.cert),
            "--probe",
            "groups,versions",
            "--require",
            "pq,tls1.3,no-legacy",
            &target,
        ],
        Input::Null,
    );
    done.expect_code(0);
    let line: Value = serde_json::from_slice(&done.stdout).expect("JSON");
    let p = &line["probe"];
    let groups: BTreeSet<String> = list(&p["groups"]).into_iter().collect();
    assert_eq!(
        groups,
        set(&["X25519MLKEM768", "X25519", "secp256r1", "secp384r1"]),
        "{p}"
    );
    assert_eq!(p["pq"], true);
    assert_eq!(p["large_hello_ok"], true);
    assert_eq!(list(&p["hrr_groups"]), Vec::<String>::new());
    assert_eq!(list(&p["versions"]), ["TLSv1.3", "TLSv1.2"]);
}

#[test]
fn a_group_reached_by_hello_retry_request() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let (target, _server) = s_server(&pki, &["-groups", "secp384r1"]);
    let (done, line) = probe(&target, &["--probe", "groups"]);
    done.expect_code(0);
    assert_eq!(list(&line["probe"]["groups"]), ["secp384r1"]);
    assert_eq!(list(&line["probe"]["hrr_groups"]), ["secp384r1"]);
}

#[test]
fn probes_go_through_starttls() {
    let pki = Pki::new();
    let server = util::serve_k(&pki.server, &["--starttls", "smtp"], Input::Held);
    let (done, line) = probe(
        &server.addr(),
        &["--starttls", "smtp", "--probe", "versions,suites"],
    );
    done.expect_code(0);
    let p = &line["probe"];
    assert_eq!(list(&p["versions"]), ["TLSv1.3", "TLSv1.2"], "{p}");
    assert_eq!(list(&p["weak"]), Vec::<String>::new(), "{p}");
    assert_eq!(p["errors"], serde_json::json!({}));
}

#[test]
fn probes_go_through_a_socks_proxy_one_at_a_time() {
    if !have("openssl") {
        return;
    }
    let Some(proxy) = crate::proxies::microsocks(None) else {
        return;
    };
    let pki = Pki::new();
    let (target, _server) = s_server(&pki, &["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    let (done, line) = probe(
        &target,
        &[
            "--proxy",
            &format!("socks5://127.0.0.1:{}", proxy.port),
            "--parallel",
            "1",
            "--probe",
            "versions,suites",
        ],
    );
    done.expect_code(4);
    let p = &line["probe"];
    assert_eq!(list(&p["versions"]), ["TLSv1.0"], "{p}");
    assert!(list(&p["weak"]).contains(&"cbc".to_string()), "{p}");
    assert_eq!(p["errors"], serde_json::json!({}));
}

#[test]
fn an_unreachable_target_is_not_probed() {
    let port = free_port();
    let (done, line) = probe(&format!("127.0.0.1:{port}"), &[]);
    done.expect_code(3);
    let errors = line["probe"]["errors"].as_object().expect("errors");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors["all"]
            .as_str()
            .unwrap_or_default()
            .starts_with("not probed: "),
        "{errors:?}"
    );
}

/// A relay to `backend` that resets every connection whose first record is longer than
/// 1,200 bytes, as some middleboxes do to post-quantum ClientHellos. Stopped on drop.
struct ResetsLargeHellos {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ResetsLargeHellos {
    fn start(backend: String) -> ResetsLargeHellos {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            for sock in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut sock) = sock else { continue };
                let mut header = [0u8; 5];
                let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
                if sock.read_exact(&mut header).is_err() {
                    continue;
                }
                if u16::from_be_bytes([header[3], header[4]]) > 1_200 {
                    // SO_LINGER 0: the close is a reset.
                    let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
                    continue;
                }
                let Ok(mut up) = TcpStream::connect(&backend) else {
                    continue;
                };
                let _ = sock.set_read_timeout(None);
                let _ = up.write_all(&header);
                let (Ok(mut down_r), Ok(mut up_w)) = (sock.try_clone(), up.try_clone()) else {
                    continue;
                };
                // Each direction until its end; the threads end with the connection.
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut down_r, &mut up_w);
                    let _ = up_w.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up, &mut sock);
                    let _ = sock.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        ResetsLargeHellos {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ResetsLargeHellos {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_server_that_resets_large_client_hellos() {
    let pki = Pki::new();
    let backend: Listener = util::serve_k(&pki.server, &[], Input::Held);
    let relay = ResetsLargeHellos::start(backend.addr());
    let (_done, line) = probe(&format!("127.0.0.1:{}", relay.port), &["--probe", "groups"]);
    let p = &line["probe"];
    assert_eq!(p["large_hello_ok"], false, "{p}");
    // Small ClientHellos go through: the classic groups are accepted.
    let groups = list(&p["groups"]);
    assert!(groups.contains(&"X25519".to_string()), "{p}");
    assert!(!groups.contains(&"X25519MLKEM768".to_string()), "{p}");
    // The summary says it plainly.
    let done = util::run(
        &[
            "inspect",
            "--insecure",
            "--probe",
            "groups",
            &format!("127.0.0.1:{}", relay.port),
        ],
        Input::Null,
    );
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(
        out.contains("large ClientHello NOT answered (reset or closed)"),
        "{out}"
    );
}

/// What `testssl --jsonfile` found: (id, finding) pairs.
fn testssl(target: &str, checks: &[&str]) -> Vec<(String, String)> {
    let dir = util::tempdir();
    let file = dir.path().join("out.json");
    let mut cmd = Command::new("testssl");
    cmd.args([
        "--quiet",
        "--color",
        "0",
        "--warnings",
        "off",
        "--ip",
        "one",
    ])
    .args(["--jsonfile", s(&file)])
    .args(checks)
    .arg(target);
    let _ = Proc::spawn(&mut cmd, Input::Null).finish();
    let text = std::fs::read_to_string(&file).expect("testssl wrote its JSON");
    let findings: Vec<Value> = serde_json::from_str(&text).expect("testssl's JSON");
    findings
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap_or_default().to_string(),
                f["finding"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn agrees_with_testssl() {
    if !have("openssl") || !have("testssl") {
        return;
    }
    let pki = Pki::new();
    let (target, _server) = s_server(&pki, &["-groups", "X25519", "-alpn", "h2,http/1.1"]);
    let (done, line) = probe(&target, &[]);
    done.expect_code(0);
    let p = &line["probe"];
    let found = testssl(&target, &["-p", "-e", "-f", "-S"]);
    let finding = |id: &str| {
        found
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, f)| f.clone())
            .unwrap_or_default()
    };
    // Versions: testssl's ids TLS1, TLS1_1, TLS1_2, TLS1_3, SSLv3.
    let offered = testssl_versions(&found);
    let versions: BTreeSet<String> = list(&p["versions"]).into_iter().collect();
    assert_eq!(versions, offered, "versions");
    // Groups: the curves testssl lists, of those stls can ask about.
    let curves = finding("PFS_ECDHE_curves");
    let curves: Vec<String> = curves
        .split_whitespace()
        .map(|c| match c {
            "prime256v1" => "secp256r1".to_string(),
            c => c.to_string(),
        })
        .collect();
    assert_eq!(
        group_ids(&list(&p["groups"])),
        group_ids(&curves),
        "{curves:?}"
    );
    // Suites: testssl's cipher_x<hex> ids, of those rustls has.
    let scanned: BTreeSet<u16> = found
        .iter()
        .filter_map(|(id, _)| id.strip_prefix("cipher_x"))
        .map(hex)
        .filter(|id| askable_suites().contains(id))
        .collect();
    let mut suites = list(&p["suites"]["TLSv1.3"]);
    suites.extend(list(&p["suites"]["TLSv1.2"]));
    assert_eq!(suite_ids(&suites), scanned, "suites");
    // ALPN: testssl tries its own list; h2 and http/1.1 are in both.
    let mut alpn = BTreeSet::new();
    for id in ["ALPN_HTTP2", "ALPN"] {
        alpn.extend(finding(id).split_whitespace().map(str::to_string));
    }
    let ours: BTreeSet<String> = list(&p["alpn"]).into_iter().collect();
    assert_eq!(ours, alpn, "alpn");

    // A legacy server: the same versions (TLS 1.0 only).
    let (legacy, _legacy) = s_server(&pki, &["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    let (_, line) = probe(&legacy, &["--probe", "versions"]);
    let found = testssl(&legacy, &["-p"]);
    let offered: BTreeSet<String> = testssl_versions(&found);
    let versions: BTreeSet<String> = list(&line["probe"]["versions"]).into_iter().collect();
    assert_eq!(versions, offered, "versions of the legacy server");
}

/// The versions testssl found offered, as stls names them.
fn testssl_versions(found: &[(String, String)]) -> BTreeSet<String> {
    let mut offered = BTreeSet::new();
    for (id, name) in [
        ("SSLv3", "SSLv3"),
        ("TLS1", "TLSv1.0"),
        ("TLS1_1", "TLSv1.1"),
        ("TLS1_2", "TLSv1.2"),
        ("TLS1_3", "TLSv1.3"),
    ] {
        if found
            .iter()
            .any(|(i, f)| i == id && f.starts_with("offered"))
        {
            offered.insert(name.to_string());
        }
    }
    offered
}
