//! The certificate corpus public TLS test sites use, built at test time with the openssl
//! command (chains with an intermediate, no SAN, SHA-1, wildcards, IP SANs, self-signed,
//! untrusted roots), and a posture scan of `stls listen` with sslscan.
//!
//! Expired, not-yet-valid, wrong-name and impostor-CA cases are in verify.rs; expired client
//! certificates in controls.rs.

use crate::util;

use std::path::Path;
use std::process::Command;

use util::{connect, have, tempdir, Input, Listener};

/// Build the corpus in `dir` with openssl; every case is `NAME.pem` (the chain to present)
/// and `NAME.key`.
fn build(dir: &Path) {
    let script = r#"
set -e
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
ca_ext='basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign'
for r in root other; do
  key $r
  openssl req -x509 -new -key $r.key -out $r.pem -days 30 -subj "/CN=corpus $r" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
done
key int
openssl req -new -key int.key -out int.csr -subj "/CN=corpus intermediate"
printf '%s\n' "$ca_ext" > ca.ext
openssl x509 -req -in int.csr -CA root.pem -CAkey root.key -CAcreateserial -days 30 \
  -extfile ca.ext -out int.pem 2>/dev/null
# leaf NAME CN EXT ISSUER [DIGEST]: a leaf signed by ISSUER, presented with ISSUER's chain.
leaf() {
  key $1
  openssl req -new -key $1.key -out $1.csr -subj "/CN=$2"
  printf '%b' "$3" > $1.ext
  openssl x509 -req -in $1.csr -CA $4.pem -CAkey $4.key -CAcreateserial -days 30 \
    -extfile $1.ext -${5:-sha256} -out $1.leaf 2>/dev/null
  cat $1.leaf > $1.pem
  [ "$4" = int ] && cat int.pem >> $1.pem || true
}
san='subjectAltName=DNS:localhost'
leaf chained localhost "$san" int
leaf nointer localhost "$san" int; cp nointer.leaf nointer.pem
leaf cnonly localhost 'basicConstraints=CA:FALSE' int
leaf sha1 localhost "$san" int sha1
leaf wildcard x 'subjectAltName=DNS:*.corpus.test' int
leaf ipsan x 'subjectAltName=IP:127.0.0.1' int
leaf untrusted localhost "$san" other
key selfsigned
openssl req -x509 -new -key selfsigned.key -out selfsigned.pem -days 30 -subj /CN=localhost \
  -addext "$san"
"#;
    let out = Command::new("bash")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "building the corpus failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn certificate_corpus() {
    if !have("openssl") {
        return;
    }
    let dir = tempdir();
    build(dir.path());
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let root = p("root.pem");
    // (case, host to connect to, --servername, exit status, what stderr must say)
    let cases: [(&str, &str, Option<&str>, i32, &str); 10] = [
        ("chained", "localhost", None, 0, ""),
        ("nointer", "localhost", None, 5, "unknown issuer"),
        ("cnonly", "localhost", None, 5, "no subjectAltName"),
        ("sha1", "localhost", None, 5, "SHA-1"),
        ("wildcard", "127.0.0.1", Some("a.corpus.test"), 0, ""),
        (
            "wildcard",
            "127.0.0.1",
            Some("a.b.corpus.test"),
            5,
            "not valid for",
        ),
        (
            "wildcard",
            "127.0.0.1",
            Some("corpus.test"),
            5,
            "not valid for",
        ),
        ("ipsan", "127.0.0.1", None, 0, ""),
        ("untrusted", "localhost", None, 5, "unknown issuer"),
        ("selfsigned", "localhost", None, 5, ""),
    ];
    let mut failures = Vec::new();
    for (case, host, name, want, says) in cases {
        let l = Listener::start(
            &[
                "--cert",
                &p(&format!("{case}.pem")),
                "--key",
                &p(&format!("{case}.key")),
            ],
            Input::Bytes(b"payload".to_vec()),
        );
        let mut args = vec!["--cacert", root.as_str()];
        if let Some(n) = name {
            args.extend(["--servername", n]);
        }
        let done = connect(&format!("{host}:{}", l.port), &args, Input::Null);
        drop(l);
        let label = format!("{case} via {host} {name:?}");
        let stdout_ok = if want == 0 {
            done.stdout == b"payload"
        } else {
            done.stdout.is_empty()
        };
        if done.code() != want || !stdout_ok || !done.stderr.contains(says) {
            failures.push(format!(
                "{label}: exit {} (want {want}), stdout {} bytes, stderr: {}",
                done.code(),
                done.stdout.len(),
                done.stderr.trim()
            ));
        } else {
            eprintln!("CELL ok    corpus {label}: exit {want}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn sslscan_sees_only_modern_tls() {
    if !have("sslscan") {
        return;
    }
    let l = Listener::start(&["-k"], Input::Null);
    let out = Command::new("sslscan")
        .args(["--no-colour", &l.addr()])
        .output()
        .expect("run sslscan");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    drop(l);
    for (proto, state) in [
        ("SSLv2", "disabled"),
        ("SSLv3", "disabled"),
        ("TLSv1.0", "disabled"),
        ("TLSv1.1", "disabled"),
        ("TLSv1.2", "enabled"),
        ("TLSv1.3", "enabled"),
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(proto) && (l.contains("enabled") || l.contains("disabled")))
            .unwrap_or_else(|| panic!("no {proto} line in:\n{text}"));
        assert!(line.contains(state), "{proto}: {line}\n{text}");
    }
    let accepted: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("Accepted") || l.starts_with("Preferred"))
        .collect();
    assert!(!accepted.is_empty(), "no cipher suites listed:\n{text}");
    for line in &accepted {
        let upper = line.to_uppercase();
        assert!(
            upper.contains("GCM") || upper.contains("CHACHA20"),
            "a suite that is not AEAD: {line}"
        );
        for bad in ["CBC", "NULL", "EXP", "RC4", "DES", "MD5", "ANON"] {
            assert!(!upper.contains(bad), "{bad} suite offered: {line}");
        }
    }
    assert!(
        text.contains("Session renegotiation not supported")
            || text.contains("Secure session renegotiation supported"),
        "insecure renegotiation?\n{text}"
    );
}
