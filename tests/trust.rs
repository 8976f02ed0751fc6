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
