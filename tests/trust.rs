//! Trust beyond the built-in roots: public-key pins, the system store (SSL_CERT_FILE,
//! SSL_CERT_DIR), CRLs.

use std::process::Command;

use crate::util::pki::{s, KeyType, Leaf, Pki, VALID};
use crate::util::*;

/// The SPKI pin of a certificate, as curl wants it, computed by openssl.
fn spki_pin(cert: &std::path::Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in '{}' -noout -pubkey | openssl pkey -pubin -outform der \
             | openssl dgst -sha256 -binary | base64",
            s(cert)
        ))
        .output()
        .unwrap();
    format!("sha256//{}", String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn public_key_pins_right_wrong_and_lists() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let l = serve_k(&pki.server, &[], Input::Null);
    let addr = format!("localhost:{}", l.port);
    let right = spki_pin(&pki.server.cert);
    let wrong = format!("sha256//{}", "A".repeat(43) + "=");
    connect(&addr, &["--pin", &right], Input::Null).expect_code(0);
    connect(&addr, &["--pin", &wrong], Input::Null)
        .expect_code(5)
        .expect_stderr(&format!("its public-key pin {right}"));
    // A list: any one matches, whichever kind.
    connect(&addr, &["--pin", &format!("{wrong};{right}")], Input::Null).expect_code(0);
    let fp = "AB".repeat(32);
    connect(&addr, &["--pin", &format!("{fp}; {wrong}")], Input::Null).expect_code(5);
    connect(&addr, &["--pin", "sha256//notbase64!"], Input::Null)
        .expect_code(2)
        .expect_stderr("nor a public-key pin");
}

/// `stls connect` with the trust environment replaced by `vars`.
fn connect_env(addr: &str, args: &[&str], vars: &[(&str, &str)]) -> Done {
    let mut cmd = stls();
    cmd.args(["connect", addr]).args(args);
    with_trust_env(&mut cmd, vars);
    Proc::spawn(&mut cmd, Input::Null).finish()
}

#[test]
fn the_system_store_from_ssl_cert_file_and_ssl_cert_dir() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let l = serve_k(&pki.server, &[], Input::Null);
    let addr = format!("localhost:{}", l.port);
    let ca = s(&pki.ca.cert);
    // SSL_CERT_FILE names the test CA: trusted, and -v says where trust came from.
    connect_env(&addr, &["-v"], &[("SSL_CERT_FILE", ca)])
        .expect_code(0)
        .expect_stderr(&format!(
            "trusting the system's 1 certificates, from SSL_CERT_FILE={ca}"
        ));
    // A hashed directory, as openssl rehash makes it.
    let dir = tempdir();
    std::fs::copy(&pki.ca.cert, dir.path().join("test-ca.pem")).unwrap();
    let rehash = Command::new("openssl")
        .args(["rehash", s(dir.path())])
        .status()
        .unwrap();
    assert!(rehash.success());
    connect_env(&addr, &[], &[("SSL_CERT_DIR", s(dir.path()))]).expect_code(0);
    // --trust builtin ignores them: the test CA is not a Mozilla root.
    connect_env(&addr, &["--trust", "builtin"], &[("SSL_CERT_FILE", ca)])
        .expect_code(5)
        .expect_stderr("which is not trusted");
    // A store with nothing usable falls back to the built-in roots, and says so.
    let empty = write(dir.path(), "empty.pem", "");
    connect_env(&addr, &["-v"], &[("SSL_CERT_FILE", s(&empty))])
        .expect_code(5)
        .expect_stderr("the built-in Mozilla roots");
    // --trust with --cacert: one of them.
    connect_env(&addr, &["--trust", "system", "--cacert", ca], &[])
        .expect_code(2)
        .expect_stderr("give one of them");
}

/// An openssl CA in a directory of its own that issued a server certificate for localhost (srv) and a client
/// certificate (carol), both revoked in crl.pem / crl.der (made with `openssl ca -gencrl`).
fn revoking_ca() -> OpensslCa {
    let ca = OpensslCa { dir: tempdir() };
    let d = s(ca.dir.path());
    let script = format!(
        "cd '{d}' && mkdir newcerts && touch index.txt && echo 01 > serial && echo 01 > crlnumber && \
         printf '[ca]\\ndefault_ca = c\\n[c]\\ndir = {d}\\ndatabase = {d}/index.txt\\n\
new_certs_dir = {d}/newcerts\\ncertificate = {d}/ca.pem\\nprivate_key = {d}/ca.key\\n\
serial = {d}/serial\\ncrlnumber = {d}/crlnumber\\ndefault_md = sha256\\ndefault_days = 30\\n\
default_crl_days = 30\\nunique_subject = no\\npolicy = p\\ncopy_extensions = copy\\n[p]\\ncommonName = supplied\\n' > ca.cnf && \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
           -subj '/CN=CRL test CA' -addext basicConstraints=critical,CA:TRUE \
           -addext keyUsage=critical,keyCertSign,cRLSign -keyout ca.key -out ca.pem 2>/dev/null && \
         openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
           -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext extendedKeyUsage=serverAuth \
           -keyout srv.key -out srv.csr 2>/dev/null && \
         openssl ca -batch -config ca.cnf -in srv.csr -out srv.pem 2>/dev/null && \
         openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=carol \
           -addext subjectAltName=DNS:carol -addext extendedKeyUsage=clientAuth \
           -keyout carol.key -out carol.csr 2>/dev/null && \
         openssl ca -batch -config ca.cnf -in carol.csr -out carol.pem 2>/dev/null && \
         openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
           -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext extendedKeyUsage=serverAuth \
           -keyout good.key -out good.csr 2>/dev/null && \
         openssl ca -batch -config ca.cnf -in good.csr -out good.pem 2>/dev/null && \
         openssl ca -config ca.cnf -revoke srv.pem 2>/dev/null && \
         openssl ca -config ca.cnf -revoke carol.pem 2>/dev/null && \
         openssl ca -config ca.cnf -gencrl -out crl.pem 2>/dev/null && \
         openssl crl -in crl.pem -outform DER -out crl.der"
    );
    sh_ok(&script, "making the CA");
    ca
}

/// The files `revoking_ca` made, in its directory.
struct OpensslCa {
    dir: tempfile::TempDir,
}

impl OpensslCa {
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// NAME.pem and NAME.key.
    fn leaf(&self, name: &str) -> Leaf {
        Leaf {
            cert: self.path(&format!("{name}.pem")),
            key: self.path(&format!("{name}.key")),
        }
    }
}

#[test]
fn revoked_certificates_are_refused_with_who_and_when() {
    if !have("openssl") {
        return;
    }
    let ca = revoking_ca();
    let p = |name: &str| ca.path(name);
    let leaf = |name: &str| ca.leaf(name);
    let l = serve_k(&leaf("srv"), &[], Input::Null);
    let addr = format!("localhost:{}", l.port);
    let ca = p("ca.pem");
    connect(&addr, &["--cacert", s(&ca)], Input::Null).expect_code(0);
    for crl in ["crl.pem", "crl.der"] {
        connect(
            &addr,
            &["--cacert", s(&ca), "--crl", s(&p(crl))],
            Input::Null,
        )
        .expect_code(5)
        .expect_stderr(&format!(
            "the certificate of {addr} was revoked by CN=CRL test CA on "
        ))
        .expect_stderr(crl);
    }
    let done = run(
        &[
            "inspect",
            "--json",
            "--cacert",
            s(&ca),
            "--crl",
            s(&p("crl.pem")),
            &addr,
        ],
        Input::Null,
    );
    done.expect_code(5);
    assert!(String::from_utf8_lossy(&done.stdout).contains("was revoked by"));
    // A client certificate, revoked, refused by listen --client-ca --crl (DER here).
    let l = serve_k(
        &leaf("srv"),
        &[
            "--client-ca",
            s(&ca),
            "--crl",
            s(&p("crl.der")),
            "-c",
            "echo in",
        ],
        Input::Null,
    );
    let client = connect(
        &format!("localhost:{}", l.port),
        &[
            "--cacert",
            s(&ca),
            "--cert",
            s(&p("carol.pem")),
            "--key",
            s(&p("carol.key")),
        ],
        Input::Null,
    );
    assert_ne!(client.code(), 0);
    l.wait_line("was revoked by CN=CRL test CA");
    // A file that is not a CRL: named.
    connect(&addr, &["--cacert", s(&ca), "--crl", s(&ca)], Input::Null)
        .expect_code(1)
        .expect_stderr("ca.pem");
}

#[test]
fn trust_on_first_use() {
    let pki = Pki::new();
    let dir = tempdir();
    let known = dir.path().join("sub").join("known_hosts");
    let l = serve_k(&pki.server, &[], Input::Null);
    let addr = format!("localhost:{}", l.port);
    let tofu = |extra: &[&str]| {
        let mut args = vec!["--tofu", "--known-hosts", s(&known)];
        args.extend_from_slice(extra);
        connect(&addr, &args, Input::Null)
    };
    // First use: recorded, with a warning naming the host, the pin and the file.
    let pin = spki_pin(&pki.server.cert);
    tofu(&[])
        .expect_code(0)
        .expect_stderr(&format!("stls: warning: {addr} is new: its key {pin}"))
        .expect_stderr(s(&known));
    let text = std::fs::read_to_string(&known).unwrap();
    assert_eq!(text, format!("{addr} {pin}\n"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&known).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Same key: silent.
    let again = tofu(&[]);
    again.expect_code(0);
    assert_eq!(again.stderr, "");
    // Another key on the same host:port: exit 5, both pins and the line to edit.
    let port = l.port;
    drop(l);
    let other = pki.ca.server("other", &["localhost"], KeyType::P256, VALID);
    let mut cmd = stls();
    cmd.args(["listen", &format!("127.0.0.1:{port}"), "-k"])
        .args(["--cert", s(&other.cert), "--key", s(&other.key)]);
    let _l2 = Listener::start_cmd(&mut cmd, Input::Null);
    let other_pin = spki_pin(&other.cert);
    tofu(&[])
        .expect_code(5)
        .expect_stderr(&format!("it presents {other_pin}"))
        .expect_stderr(&format!("{}, line 1 records {pin}", s(&known)));
    assert_eq!(
        std::fs::read_to_string(&known).unwrap(),
        text,
        "the file is untouched"
    );
    // Known hosts of other servers stay as they are; concurrent first uses all land.
    let servers: Vec<Listener> = (0..4)
        .map(|_| serve_k(&pki.server, &[], Input::Null))
        .collect();
    let runs: Vec<Proc> = servers
        .iter()
        .map(|l| {
            let mut cmd = stls();
            cmd.args(["connect", &format!("localhost:{}", l.port), "--tofu"])
                .args(["--known-hosts", s(&known)]);
            Proc::spawn(&mut cmd, Input::Null)
        })
        .collect();
    for r in runs {
        r.finish().expect_code(0);
    }
    let text = std::fs::read_to_string(&known).unwrap();
    assert_eq!(text.lines().count(), 5, "{text}");
    for l in &servers {
        assert!(
            text.contains(&format!("localhost:{} {pin}", l.port)),
            "{text}"
        );
    }
    // Nothing is left beside it: no lock file, no temporary file.
    let left: Vec<_> = std::fs::read_dir(known.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["known_hosts"]);
}

#[test]
fn a_read_only_or_corrupt_known_hosts_file_is_a_clear_error() {
    let pki = Pki::new();
    let dir = tempdir();
    let l = serve_k(&pki.server, &[], Input::Null);
    let addr = format!("localhost:{}", l.port);
    let corrupt = write(
        dir.path(),
        "corrupt",
        "# mine\nexample.com:443 sha256//nonsense\n",
    );
    connect(
        &addr,
        &["--tofu", "--known-hosts", s(&corrupt)],
        Input::Null,
    )
    .expect_code(1)
    .expect_stderr(&format!("{}, line 2: not a known host", s(&corrupt)));
    assert_eq!(
        std::fs::read_to_string(&corrupt).unwrap(),
        "# mine\nexample.com:443 sha256//nonsense\n"
    );
    // Read-only (as root, permissions do not stop writes: a directory that is not one does).
    let blocked = dir.path().join("not-a-dir");
    std::fs::write(&blocked, "").unwrap();
    let inside = blocked.join("known_hosts");
    let done = connect(&addr, &["--tofu", "--known-hosts", s(&inside)], Input::Null);
    assert_ne!(done.code(), 0);
    assert!(done.stderr.contains(s(&inside)), "{}", done.stderr);
    // --tofu with a CA option: one of them.
    connect(&addr, &["--tofu", "--cacert", s(&pki.ca.cert)], Input::Null)
        .expect_code(2)
        .expect_stderr("give one of them");
}

#[test]
fn an_ocsp_staple_is_served_and_read() {
    if !have("openssl") {
        return;
    }
    let ca = revoking_ca();
    let p = |name: &str| ca.path(name);
    let leaf = |name: &str| ca.leaf(name);
    // OCSP responses from the CA itself, for the good certificate and the revoked one.
    let d = s(ca.dir.path());
    let script = format!(
        "cd '{d}' && for c in good srv; do \
           openssl ocsp -issuer ca.pem -cert $c.pem -no_nonce -reqout $c.req 2>/dev/null && \
           openssl ocsp -index index.txt -rsigner ca.pem -rkey ca.key -CA ca.pem \
             -reqin $c.req -respout $c.ocsp -ndays 7 2>/dev/null || exit 1; done"
    );
    sh_ok(&script, "making the OCSP responses");
    let l = serve_k(&leaf("good"), &["--ocsp", s(&p("good.ocsp"))], Input::Null);
    // openssl s_client -status sees it.
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-status",
            "-connect",
            &format!("127.0.0.1:{}", l.port),
        ])
        .args(["-servername", "localhost"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("OCSP Response Status: successful"), "{text}");
    assert!(text.contains("Cert Status: good"), "{text}");
    // And inspect, in JSON and in words.
    let target = format!("localhost:{}", l.port);
    let done = run(
        &["inspect", "--json", "--cacert", s(&p("ca.pem")), &target],
        Input::Null,
    );
    done.expect_code(0);
    let v: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(v["ocsp_stapled"], true);
    assert_eq!(v["ocsp_status"], "good");
    let done = run(
        &["inspect", "--cacert", s(&p("ca.pem")), &target],
        Input::Null,
    );
    assert!(String::from_utf8_lossy(&done.stdout).contains("ocsp:      stapled: good, "));
    // A revoked status is reported as such.
    let l = serve_k(&leaf("srv"), &["--ocsp", s(&p("srv.ocsp"))], Input::Null);
    let target = format!("localhost:{}", l.port);
    let done = run(&["inspect", "--json", "--insecure", &target], Input::Null);
    let v: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(v["ocsp_status"], "revoked");
    // A file that is not an OCSP response is refused at start.
    run(
        &[
            "listen",
            "0",
            "--cert",
            s(&p("good.pem")),
            "--key",
            s(&p("good.key")),
            "--ocsp",
            s(&p("ca.pem")),
        ],
        Input::Null,
    )
    .expect_code(1)
    .expect_stderr("not an OCSP response");
}

#[test]
fn inspect_with_tofu_checks_each_target_on_its_own() {
    let pki = Pki::new();
    let dir = tempdir();
    let known = dir.path().join("known_hosts");
    let servers: Vec<Listener> = (0..2)
        .map(|_| serve_k(&pki.server, &[], Input::Null))
        .collect();
    let targets: Vec<String> = servers
        .iter()
        .map(|l| format!("localhost:{}", l.port))
        .collect();
    let mut args = vec!["inspect", "--json", "--tofu", "--known-hosts", s(&known)];
    args.extend(targets.iter().map(String::as_str));
    let first = run(&args, Input::Null);
    first.expect_code(0).expect_stderr("is new: its key");
    assert!(String::from_utf8_lossy(&first.stdout).contains("\"verified\":true"));
    let again = run(&args, Input::Null);
    again.expect_code(0);
    assert_eq!(again.stderr, "");
    assert_eq!(std::fs::read_to_string(&known).unwrap().lines().count(), 2);
}

#[test]
fn inspect_verifies_every_handshake_and_bad_trust_settings_are_refused() {
    // A rejected server stays rejected on a second look: no resumed session skips the
    // verifier (TLS 1.2 resumption would).
    let pki = Pki::new();
    let l = serve_k(&pki.server, &[], Input::Null);
    let target = format!("127.0.0.1:{}", l.port);
    let done = run(
        &[
            "inspect",
            "--json",
            "--tls-max",
            "1.2",
            "--parallel",
            "1",
            &target,
            &target,
        ],
        Input::Null,
    );
    done.expect_code(5);
    let text = String::from_utf8_lossy(&done.stdout);
    assert_eq!(text.matches("\"status\":5").count(), 2, "{text}");
    // --crl needs a CA chain to check along.
    connect(
        &target,
        &["--pin", &"AB".repeat(32), "--crl", s(&pki.ca.cert)],
        Input::Null,
    )
    .expect_code(2)
    .expect_stderr("--crl is checked along a chain");
    // A store the environment names must be there.
    connect_env(
        &target,
        &[],
        &[("SSL_CERT_FILE", "/nonexistent/bundle.pem")],
    )
    .expect_code(1)
    .expect_stderr("SSL_CERT_FILE=/nonexistent/bundle.pem");
}

#[test]
fn a_revocation_list_of_100000_entries_is_read() {
    if !have("openssl") || !have("awk") {
        return;
    }
    let ca = revoking_ca();
    // 100,000 more revoked serials in the CA's database: a list of about 3 MB.
    let d = s(ca.dir.path());
    let script = format!(
        "cd '{d}' && awk 'BEGIN {{ for (i = 0; i < 100000; i++) \
           printf \"R\\t301231235959Z\\t250101000000Z\\t%08X\\tunknown\\t/CN=old%d\\n\", \
           i + 65536, i }}' >> index.txt && \
         openssl ca -config ca.cnf -gencrl -out big.pem 2>/dev/null"
    );
    sh_ok(&script, "making the 100,000-entry CRL");
    let big = ca.path("big.pem");
    assert!(std::fs::metadata(&big).unwrap().len() > 2 * 1024 * 1024);
    let l = serve_k(&ca.leaf("srv"), &[], Input::Null);
    let addr = format!("localhost:{}", l.port);
    connect(
        &addr,
        &["--cacert", s(&ca.path("ca.pem")), "--crl", s(&big)],
        Input::Null,
    )
    .expect_code(5)
    .expect_stderr(&format!(
        "the certificate of {addr} was revoked by CN=CRL test CA on "
    ));
}

#[test]
fn pem_and_chain_errors_are_said_in_words() {
    if !have("openssl") {
        return;
    }
    let dir = tempdir();
    let d = s(dir.path());
    // A root, seven intermediates (webpki allows six), a leaf for localhost.
    let script = format!(
        "cd '{d}' && set -e && \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
           -subj /CN=root -addext basicConstraints=critical,CA:TRUE \
           -addext keyUsage=critical,keyCertSign -keyout 0.key -out 0.pem 2>/dev/null && \
         printf 'basicConstraints=critical,CA:TRUE\\nkeyUsage=critical,keyCertSign\\n' > ca.ext && \
         printf 'subjectAltName=DNS:localhost\\nextendedKeyUsage=serverAuth\\n' > leaf.ext && \
         for i in 1 2 3 4 5 6 7; do \
           openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=int$i \
             -keyout $i.key -out $i.csr 2>/dev/null; \
           openssl x509 -req -in $i.csr -CA $((i-1)).pem -CAkey $((i-1)).key -days 30 \
             -extfile ca.ext -out $i.pem 2>/dev/null; \
         done && \
         openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
           -keyout leaf.key -out leaf.csr 2>/dev/null && \
         openssl x509 -req -in leaf.csr -CA 7.pem -CAkey 7.key -days 30 -extfile leaf.ext \
           -out leaf.pem 2>/dev/null && \
         cat leaf.pem 7.pem 6.pem 5.pem 4.pem 3.pem 2.pem 1.pem > chain.pem && \
         head -3 0.pem > cut.pem"
    );
    sh_ok(&script, "making the chain");
    let p = |name: &str| dir.path().join(name);
    // Rust's Debug text says nothing to a user: no byte lists, no variant names.
    let in_words = |done: &Done| {
        for debug in ["[67, 69, 82", "Exceeded", "OtherError", "Other("] {
            assert!(!done.stderr.contains(debug), "{debug}: {}", done.stderr);
        }
    };
    // A PEM file cut short.
    let cut = s(&p("cut.pem")).to_string();
    for args in [
        &["connect", "localhost:9", "--cacert", &cut][..],
        &[
            "connect",
            "localhost:9",
            "--cacert",
            s(&p("0.pem")),
            "--crl",
            &cut,
        ],
        &["listen", "0", "--cert", &cut, "--key", s(&p("0.key"))],
    ] {
        let done = run(args, Input::Null);
        done.expect_code(1)
            .expect_stderr("cut.pem: bad PEM: a block has no '-----END CERTIFICATE-----' line");
        in_words(&done);
    }
    // A chain longer than webpki follows.
    let l = serve_k(
        &Leaf {
            cert: p("chain.pem"),
            key: p("leaf.key"),
        },
        &[],
        Input::Null,
    );
    let addr = format!("localhost:{}", l.port);
    let done = connect(&addr, &["--cacert", s(&p("0.pem"))], Input::Null);
    done.expect_code(5).expect_stderr(&format!(
        "the certificate of {addr} was rejected: its chain is longer than allowed"
    ));
    in_words(&done);
}
