//! `stls cert`: the files it writes load in stls and verify with openssl, keys are private,
//! nothing is overwritten without --force.

use crate::util;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use util::pki::s;
use util::{connect, have, run, tempdir, Input, Listener};

fn cert(args: &[&str]) -> util::Done {
    let mut all = vec!["cert"];
    all.extend_from_slice(args);
    run(&all, Input::Null)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn mutual_tls_in_three_commands() {
    let dir = tempdir();
    let out = s(dir.path());
    cert(&["ca", "--out", out]).expect_code(0);
    let server = cert(&["server", "--ca", out, "--out", out]);
    server.expect_code(0);
    cert(&["client", "--ca", out, "--name", "alice", "--out", out]).expect_code(0);
    for key in ["ca.key", "server.key", "client.key"] {
        assert_eq!(mode(&dir.path().join(key)), 0o600, "{key}");
    }
    let printed = String::from_utf8_lossy(&server.stdout);
    assert!(
        printed.contains("server.pem") && printed.contains("server.key"),
        "{printed}"
    );

    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let l = Listener::start(
        &["--cert", &p("server.pem"), "--key", &p("server.key")],
        Input::Bytes(b"hi alice".to_vec()),
    );
    // The printed fingerprint is the certificate's.
    let fp = printed
        .lines()
        .find_map(|l| l.strip_prefix("sha256 fingerprint "))
        .unwrap()
        .to_string();
    let c = connect(
        &format!("localhost:{}", l.port),
        &["--pin", &fp],
        Input::Null,
    );
    c.expect_code(0);
    assert_eq!(c.stdout, b"hi alice");

    let l = Listener::start(
        &[
            "--cert",
            &p("server.pem"),
            "--key",
            &p("server.key"),
            "--client-ca",
            &p("ca.pem"),
            "-v",
        ],
        Input::Null,
    );
    connect(
        &format!("localhost:{}", l.port),
        &[
            "--cacert",
            &p("ca.pem"),
            "--cert",
            &p("client.pem"),
            "--key",
            &p("client.key"),
        ],
        Input::Null,
    )
    .expect_code(0);
    l.finish().expect_code(0).expect_stderr("CN=alice");

    if have("openssl") {
        let verify = Command::new("openssl")
            .args([
                "verify",
                "-CAfile",
                &p("ca.pem"),
                &p("server.pem"),
                &p("client.pem"),
            ])
            .output()
            .unwrap();
        assert!(verify.status.success(), "{verify:?}");
    }
}

#[test]
fn every_key_type_works() {
    for key_type in ["p256", "p384", "ed25519", "rsa2048"] {
        let dir = tempdir();
        let out = s(dir.path());
        cert(&["ca", "--out", out, "--key-type", key_type]).expect_code(0);
        cert(&[
            "server",
            "--ca",
            out,
            "--out",
            out,
            "--key-type",
            key_type,
            "--days",
            "2",
        ])
        .expect_code(0);
        let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
        let l = Listener::start(
            &["--cert", &p("server.pem"), "--key", &p("server.key")],
            Input::Bytes(key_type.as_bytes().to_vec()),
        );
        let c = connect(
            &format!("localhost:{}", l.port),
            &["--cacert", &p("ca.pem")],
            Input::Null,
        );
        c.expect_code(0);
        assert_eq!(c.stdout, key_type.as_bytes());
        // Other implementations read the keys too (OpenSSL 3.0 refuses PKCS#8 v2 Ed25519).
        if have("openssl") {
            for key in ["ca.key", "server.key"] {
                let out = Command::new("openssl")
                    .args(["pkey", "-noout", "-in", &p(key)])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{key_type} {key}: {out:?}");
            }
        }
    }
}

#[test]
fn self_signed_server_certificate_can_be_pinned() {
    let dir = tempdir();
    let out = s(dir.path());
    let made = cert(&["server", "--san", "localhost", "--out", out]);
    made.expect_code(0);
    let text = String::from_utf8_lossy(&made.stdout).to_string();
    let fp = text
        .lines()
        .find_map(|l| l.strip_prefix("sha256 fingerprint "))
        .unwrap();
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let l = Listener::start(
        &["--cert", &p("server.pem"), "--key", &p("server.key")],
        Input::Bytes(b"pinned".to_vec()),
    );
    let c = connect(
        &format!("localhost:{}", l.port),
        &["--pin", fp],
        Input::Null,
    );
    c.expect_code(0);
    assert_eq!(c.stdout, b"pinned");
}

#[test]
fn refuses_to_overwrite_without_force() {
    let dir = tempdir();
    let out = s(dir.path());
    cert(&["ca", "--out", out]).expect_code(0);
    let before = std::fs::read(dir.path().join("ca.key")).unwrap();
    cert(&["ca", "--out", out])
        .expect_code(1)
        .expect_stderr("ca.pem: already exists (use --force to overwrite)");
    assert_eq!(std::fs::read(dir.path().join("ca.key")).unwrap(), before);
    // --force replaces both, and a loosened key file is made private again.
    std::fs::set_permissions(
        dir.path().join("ca.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    cert(&["ca", "--out", out, "--force"]).expect_code(0);
    assert_ne!(std::fs::read(dir.path().join("ca.key")).unwrap(), before);
    assert_eq!(mode(&dir.path().join("ca.key")), 0o600);
}

#[test]
fn a_symbolic_link_at_an_output_path_writes_nothing() {
    let dir = tempdir();
    let link = dir.path().join("server.key");
    let target = dir.path().join("elsewhere.key");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for force in [false, true] {
        let mut args = vec!["server", "--out", s(dir.path())];
        if force {
            args.push("--force");
        }
        cert(&args)
            .expect_code(1)
            .expect_stderr(&format!("{}: is a symbolic link", link.display()))
            .expect_stderr("nothing was written");
        // Neither the certificate, nor the link's target, nor a temporary file.
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["server.key"]);
    }
}

#[test]
fn bad_requests_are_explained() {
    let dir = tempdir();
    let out = s(dir.path());
    cert(&["server", "--ca", out, "--out", out])
        .expect_code(1)
        .expect_stderr("make a CA with `stls cert ca --out");
    cert(&["ca", "--ca", out, "--out", out]).expect_code(2);
    cert(&["server", "--out", out, "--days", "0"]).expect_code(2);
    cert(&["server", "--out", out, "--key-type", "dsa"]).expect_code(2);
}
