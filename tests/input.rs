//! Bad input, each kind with one clear line naming the value or file, and the usual status
//! (2 for what was typed, 1 for a file): files that are not files or are too large, targets
//! written as URLs or with port 0, international names, --san values, --pin values and
//! contradictory trust flags.

use crate::util;

use std::path::Path;

use util::pki::{s, Pki};
use util::{connect, have, run, tempdir, write, Input, Listener, Proc};

/// Quote a word for `bash -c`.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `stls ARGS` run by bash, so that ARGS may use process substitution (`<(…)`).
fn bash(args: &str) -> std::process::Command {
    let line = format!("exec {} {args}", quote(env!("CARGO_BIN_EXE_stls")));
    let mut cmd = std::process::Command::new("bash");
    cmd.arg("-c").arg(line);
    cmd
}

#[test]
fn file_options_refuse_devices_and_directories() {
    let pki = Pki::new();
    let dir = tempdir();
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    let cert = s(&pki.server.cert);
    for bad in ["/dev/zero", s(&folder)] {
        for args in [
            &["connect", "a:1", "--cacert", bad][..],
            &["connect", "a:1", "--cert", bad],
            &["connect", "a:1", "--cert", cert, "--key", bad],
            &["listen", "0", "--cert", bad],
            &["listen", "0", "--client-ca", bad],
            &["listen", "0", "--client-ca-optional", bad],
        ] {
            let done = run(args, Input::Null);
            done.expect_code(1);
            if bad == "/dev/zero" {
                done.expect_stderr("stls: /dev/zero: not a regular file or pipe");
            } else {
                done.expect_stderr(&format!("stls: {bad}: is a directory, not a file"));
            }
        }
    }
    // The CA that `stls cert --ca DIR` reads goes through the same check.
    let ca_dir = dir.path().join("ca");
    std::fs::create_dir(&ca_dir).unwrap();
    std::os::unix::fs::symlink("/dev/zero", ca_dir.join("ca.pem")).unwrap();
    let out = dir.path().join("out");
    run(
        &["cert", "server", "--ca", s(&ca_dir), "--out", s(&out)],
        Input::Null,
    )
    .expect_code(1)
    .expect_stderr("ca.pem: not a regular file or pipe");
}

#[test]
fn file_larger_than_the_cap_is_refused() {
    let dir = tempdir();
    let big = write(dir.path(), "big.pem", vec![b'A'; 1024 * 1024 + 1]);
    run(&["connect", "a:1", "--cert", s(&big)], Input::Null)
        .expect_code(1)
        .expect_stderr(&format!(
            "{}: larger than 1 MiB, the most a certificate or key file may hold",
            big.display()
        ));
    // CA certificates come in bundles of many: 16 MiB.
    let bundle = write(dir.path(), "bundle.pem", "");
    std::fs::File::options()
        .write(true)
        .open(&bundle)
        .unwrap()
        .set_len(16 * 1024 * 1024 + 1)
        .unwrap();
    run(&["connect", "a:1", "--cacert", s(&bundle)], Input::Null)
        .expect_code(1)
        .expect_stderr(&format!(
            "{}: larger than 16 MiB, the most a CA certificate file may hold",
            bundle.display()
        ));
}

#[test]
fn pipes_are_read_up_to_the_cap() {
    if !have("bash") {
        return;
    }
    let pki = Pki::new();
    // A certificate and its key in one pipe: it is read once, for both.
    let mut listen = bash(&format!(
        "listen 127.0.0.1:0 --cert <(cat {} {})",
        quote(s(&pki.server.cert)),
        quote(s(&pki.server.key))
    ));
    let l = Listener::start_cmd(&mut listen, Input::Bytes(b"through a pipe".to_vec()));
    let done = Proc::spawn(
        &mut bash(&format!(
            "connect localhost:{} --cacert <(cat {})",
            l.port,
            quote(s(&pki.ca.cert))
        )),
        Input::Null,
    )
    .finish();
    done.expect_code(0);
    assert_eq!(done.stdout, b"through a pipe");
    // A pipe that goes on and on is read up to the cap, then refused.
    Proc::spawn(
        &mut bash("connect a:1 --cert <(head -c 2000000 /dev/zero)"),
        Input::Null,
    )
    .finish()
    .expect_code(1)
    .expect_stderr("larger than 1 MiB");
}

#[test]
fn url_and_port_zero_targets_are_usage_errors() {
    run(&["connect", "https://example.com"], Input::Null)
        .expect_code(2)
        .expect_stderr(
            "stls: 'https://example.com' is a URL; stls wants HOST:PORT (for example \
             example.com:443)",
        );
    run(
        &["connect", "https://example.com:8443/index.html"],
        Input::Null,
    )
    .expect_code(2)
    .expect_stderr("(for example example.com:8443)");
    run(&["connect", "example.com:0"], Input::Null)
        .expect_code(2)
        .expect_stderr("'example.com:0': port 0 cannot be connected to");
    run(&["connect", "example.com", "0"], Input::Null)
        .expect_code(2)
        .expect_stderr("port 0 cannot be connected to");
}

#[test]
fn international_names_are_looked_up_as_a_labels() {
    connect("bücher.invalid:443", &[], Input::Null)
        .expect_code(3)
        .expect_stderr("cannot resolve xn--bcher-kva.invalid");
    connect("bü cher.example:443", &[], Input::Null)
        .expect_code(2)
        .expect_stderr("'bü cher.example' is not a valid international domain name");
    connect(
        "127.0.0.1:1",
        &["--servername", "bücher-.example"],
        Input::Null,
    )
    .expect_code(2)
    .expect_stderr("'bücher-.example' is not a valid international domain name");
}

#[test]
fn international_san_is_written_and_verified_as_its_a_label() {
    let dir = tempdir();
    let out = s(dir.path());
    run(&["cert", "ca", "--out", out], Input::Null).expect_code(0);
    run(
        &[
            "cert",
            "server",
            "--ca",
            out,
            "--san",
            "bücher.test",
            "--out",
            out,
        ],
        Input::Null,
    )
    .expect_code(0);
    let cert = dir.path().join("server.pem");
    if have("openssl") {
        let ext = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in", s(&cert)])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&ext.stdout);
        assert!(text.contains("DNS:xn--bcher-kva.test"), "{text}");
    }
    let key = dir.path().join("server.key");
    let ca = dir.path().join("ca.pem");
    // Reached by address, verified under the international name.
    let l = Listener::start(
        &["--cert", s(&cert), "--key", s(&key)],
        Input::Bytes(b"willkommen".to_vec()),
    );
    let done = connect(
        &l.addr(),
        &["--cacert", s(&ca), "--servername", "bücher.test", "-v"],
        Input::Null,
    );
    done.expect_code(0)
        .expect_stderr("names:  xn--bcher-kva.test");
    assert_eq!(done.stdout, b"willkommen");
    // And another name is still refused.
    let l = Listener::start(&["--cert", s(&cert), "--key", s(&key)], Input::Null);
    connect(
        &l.addr(),
        &["--cacert", s(&ca), "--servername", "bücherei.test"],
        Input::Null,
    )
    .expect_code(5)
    .expect_stderr("is for xn--bcher-kva.test and not valid for xn--bcherei-n2a.test");
}

#[test]
fn san_values_are_checked() {
    let dir = tempdir();
    let out = dir.path().join("out");
    for (bad, why) in [
        ("", "--san '': empty"),
        ("a b", "--san 'a b': contains a space"),
        ("*", "--san '*': a wildcard"),
        ("a\u{1b}[2J", r"--san 'a\u{1b}[2J': contains a control"),
        ("a..example", "--san 'a..example': not a valid DNS name"),
        ("a-.example", "--san 'a-.example': not a valid DNS name"),
    ] {
        run(
            &["cert", "server", "--san", bad, "--out", s(&out)],
            Input::Null,
        )
        .expect_code(2)
        .expect_stderr(why);
        assert!(!out.exists(), "{bad:?}: nothing is written");
    }
    let made = run(
        &[
            "cert",
            "server",
            "--san",
            "*.example.com",
            "--san",
            "192.0.2.7",
            "--san",
            "2001:db8::1",
            "--san",
            "Host.Example",
            "--out",
            s(&out),
        ],
        Input::Null,
    );
    made.expect_code(0);
    if have("openssl") {
        let ext = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(out.join("server.pem"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&ext.stdout);
        for want in [
            "DNS:*.example.com",
            "IP Address:192.0.2.7",
            "IP Address:2001:DB8:0:0:0:0:0:1",
            "DNS:host.example",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
    }
}

#[test]
fn pin_is_parsed_strictly_and_takes_a_pasted_line() {
    for bad in [
        "+a".repeat(32),
        "0".repeat(63),
        format!("{}:", "AB:".repeat(31)),
        "AB-".repeat(31) + "AB",
    ] {
        connect("127.0.0.1:1", &["--pin", &bad], Input::Null)
            .expect_code(2)
            .expect_stderr(&format!("--pin '{bad}' is not a SHA-256 fingerprint"));
    }
    let l = Listener::start(&[], Input::Bytes(b"pasted".to_vec()));
    // The line the listener printed, as it printed it (`pin()` is what follows its label).
    let line = format!("stls: sha256 fingerprint {}", l.pin());
    let done = connect(&l.addr(), &["--pin", &line], Input::Null);
    done.expect_code(0);
    assert_eq!(done.stdout, b"pasted");
    // openssl's spelling.
    let l = Listener::start(&[], Input::Bytes(b"openssl".to_vec()));
    let openssl = format!("sha256 Fingerprint={}", l.pin());
    connect(&l.addr(), &["--pin", &openssl], Input::Null).expect_code(0);
}

#[test]
fn contradictory_trust_flags_are_usage_errors() {
    let pki = Pki::new();
    let ca = s(&pki.ca.cert);
    let pin = "AB".repeat(32);
    for (args, why) in [
        (
            &["--insecure", "--cacert", ca][..],
            "--insecure turns certificate verification off, so --cacert",
        ),
        (
            &["--insecure", "--pin", &pin],
            "--insecure and --pin contradict each other",
        ),
        (
            &["--pin", &pin, "--cacert", ca],
            "--pin replaces verification by a CA, so --cacert",
        ),
    ] {
        connect("127.0.0.1:1", args, Input::Null)
            .expect_code(2)
            .expect_stderr(why)
            .expect_stderr("give one of them");
    }
    assert!(Path::new(ca).exists());
}
