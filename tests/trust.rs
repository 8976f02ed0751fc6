//! Trust beyond the built-in roots: public-key pins, the system store (SSL_CERT_FILE,
//! SSL_CERT_DIR), CRLs.

use std::process::Command;

use crate::util::pki::{s, Pki};
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
    let l = Listener::start(
        &[
            "-k",
            "--cert",
            s(&pki.server.cert),
            "--key",
            s(&pki.server.key),
        ],
        Input::Null,
    );
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
    cmd.args(["connect", addr])
        .args(args)
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    Proc::spawn(&mut cmd, Input::Null).finish()
}

#[test]
fn the_system_store_from_ssl_cert_file_and_ssl_cert_dir() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    let l = Listener::start(
        &[
            "-k",
            "--cert",
            s(&pki.server.cert),
            "--key",
            s(&pki.server.key),
        ],
        Input::Null,
    );
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
