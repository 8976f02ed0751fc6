//! What stls reads and writes on its own side: every file it reads is read with a cap that
//! fits its kind, and only from what can hold such a file; what it writes is written beside
//! its place and renamed there, never through a link.

use std::os::unix::fs::symlink;
use std::process::Command;

use crate::util::pki::{s, Pki};
use crate::util::*;

/// The largest CA certificate file, target list and known-hosts file: 16 MiB.
const SIXTEEN_MIB: u64 = 16 * 1024 * 1024;

/// A sparse file of `len` zero bytes: large, but taking no disk space.
fn sparse(dir: &std::path::Path, name: &str, len: u64) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().set_len(len).unwrap();
    path
}

/// `stls ARGS…` with `vars` set, under an address-space limit of 1 GiB: a reader with no cap
/// that meets an endless file dies at that limit instead of taking the machine's memory.
fn capped(args: &[&str], vars: &[(&str, &str)]) -> Done {
    let mut cmd = Command::new("bash");
    cmd.args([
        "-c",
        "ulimit -v 1048576 && exec \"$0\" \"$@\"",
        env!("CARGO_BIN_EXE_stls"),
    ])
    .args(args);
    with_trust_env(&mut cmd, vars);
    Proc::spawn(&mut cmd, Input::Null).finish()
}

/// A port where nothing listens: a run that gets as far as connecting ends at once.
fn closed_port() -> String {
    format!("127.0.0.1:{}", free_port())
}

#[test]
fn ssl_cert_file_is_read_with_a_cap_and_only_if_regular() {
    if !have("bash") || !have("mkfifo") {
        return;
    }
    let dir = tempdir();
    let target = closed_port();
    // Endless, or waiting for a writer for ever: refused before anything is read.
    capped(&["connect", &target], &[("SSL_CERT_FILE", "/dev/zero")])
        .expect_code(1)
        .expect_stderr("SSL_CERT_FILE=/dev/zero: not a regular file (it is a character device)");
    capped(&["connect", &target], &[("SSL_CERT_FILE", "/dev/urandom")])
        .expect_code(1)
        .expect_stderr("SSL_CERT_FILE=/dev/urandom: not a regular file");
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    capped(&["connect", &target], &[("SSL_CERT_FILE", s(&fifo))])
        .expect_code(1)
        .expect_stderr(&format!(
            "SSL_CERT_FILE={}: not a regular file (it is a pipe)",
            s(&fifo)
        ));
    // Too large: the file and the limit are named.
    let big = sparse(dir.path(), "big.pem", SIXTEEN_MIB + 1);
    capped(&["inspect", &target], &[("SSL_CERT_FILE", s(&big))])
        .expect_code(1)
        .expect_stderr(&format!(
            "SSL_CERT_FILE={}: larger than 16 MiB, the most a CA certificate file may hold",
            s(&big)
        ));
}

#[test]
fn ssl_cert_dir_files_are_read_with_a_cap_and_only_if_regular() {
    if !have("bash") || !have("mkfifo") {
        return;
    }
    let pki = Pki::new();
    let l = serve_k(&pki.server, &[], Input::Null);
    let addr = format!("localhost:{}", l.port);
    let dir = tempdir();
    // Links to devices, pipes and subdirectories are passed over; the CA beside them is read.
    std::fs::copy(&pki.ca.cert, dir.path().join("ca.pem")).unwrap();
    symlink("/dev/zero", dir.path().join("zero.pem")).unwrap();
    symlink("/dev/urandom", dir.path().join("random.pem")).unwrap();
    assert!(Command::new("mkfifo")
        .arg(dir.path().join("fifo.pem"))
        .status()
        .unwrap()
        .success());
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    capped(&["connect", &addr], &[("SSL_CERT_DIR", s(dir.path()))]).expect_code(0);
    // A file too large: the connection ends at the handshake, naming the file and the limit.
    let big = sparse(dir.path(), "big.pem", SIXTEEN_MIB + 1);
    capped(&["connect", &addr], &[("SSL_CERT_DIR", s(dir.path()))])
        .expect_code(1)
        .expect_stderr(&format!(
            "in SSL_CERT_DIR, {}: larger than 16 MiB, the most a CA certificate file may hold",
            s(&big)
        ));
}

#[test]
fn known_hosts_is_read_with_a_cap_and_only_if_regular() {
    if !have("bash") {
        return;
    }
    let dir = tempdir();
    let target = closed_port();
    for command in ["connect", "inspect"] {
        capped(
            &[command, &target, "--tofu", "--known-hosts", "/dev/zero"],
            &[],
        )
        .expect_code(1)
        .expect_stderr("/dev/zero: not a regular file (it is a character device)");
    }
    let big = sparse(dir.path(), "known_hosts", SIXTEEN_MIB + 1);
    capped(
        &["connect", &target, "--tofu", "--known-hosts", s(&big)],
        &[],
    )
    .expect_code(1)
    .expect_stderr(&format!(
        "{}: larger than 16 MiB, the most a known-hosts file may hold",
        s(&big)
    ));
}

#[test]
fn each_kind_of_file_has_its_own_cap_and_name() {
    let dir = tempdir();
    let target = closed_port();
    // A list longer than 1 MiB is a list: the target after the comments is tried.
    let mut list = "# padding\n".repeat(200_000);
    list += &target;
    list += "\n";
    let list = write(dir.path(), "targets.txt", list);
    let done = run(&["inspect", "--targets", s(&list)], Input::Null);
    done.expect_code(3);
    assert!(String::from_utf8_lossy(&done.stdout).contains(&target));
    let big = sparse(dir.path(), "big.txt", SIXTEEN_MIB + 1);
    run(&["inspect", "--targets", s(&big)], Input::Null)
        .expect_code(1)
        .expect_stderr("larger than 16 MiB, the most a target list may hold");
    // A revocation list may be DER: the message says what the file is, not "PEM".
    let big = sparse(dir.path(), "big.crl", 64 * 1024 * 1024 + 1);
    run(
        &["connect", &target, "--cacert", s(&big), "--crl", s(&big)],
        Input::Null,
    )
    .expect_code(1)
    .expect_stderr("larger than 16 MiB, the most a CA certificate file may hold");
    let pki = Pki::new();
    let done = run(
        &[
            "connect",
            &target,
            "--cacert",
            s(&pki.ca.cert),
            "--crl",
            s(&big),
        ],
        Input::Null,
    );
    done.expect_code(1).expect_stderr(&format!(
        "{}: larger than 64 MiB, the most a revocation list may hold",
        s(&big)
    ));
    assert!(!done.stderr.contains("PEM"), "{}", done.stderr);
    let ocsp = sparse(dir.path(), "big.ocsp", 1024 * 1024 + 1);
    run(
        &[
            "listen",
            "127.0.0.1:0",
            "--cert",
            s(&pki.server.cert),
            "--key",
            s(&pki.server.key),
            "--ocsp",
            s(&ocsp),
        ],
        Input::Null,
    )
    .expect_code(1)
    .expect_stderr("larger than 1 MiB, the most an OCSP response may hold");
}

#[test]
fn save_chain_never_writes_through_a_link_and_is_checked_first() {
    let pki = Pki::new();
    let l = serve_k(&pki.server, &[], Input::Null);
    let addr = format!("localhost:{}", l.port);
    let dir = tempdir();
    let victim = write(dir.path(), "victim", "precious\n");
    let link = dir.path().join("link.pem");
    symlink(&victim, &link).unwrap();
    let save = |path: &std::path::Path, target: &str| {
        run(
            &["inspect", "--insecure", "--save-chain", s(path), target],
            Input::Null,
        )
    };
    // A link, to a file or to nothing: refused before connecting (the target here would
    // take a whole -w to fail), and nothing is written anywhere.
    save(&link, "192.0.2.1:443")
        .expect_code(1)
        .expect_stderr(&format!("{}: is a symbolic link", s(&link)));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let nowhere = dir.path().join("created-by-the-link");
    let dangling = dir.path().join("dangling.pem");
    symlink(&nowhere, &dangling).unwrap();
    save(&dangling, &addr)
        .expect_code(1)
        .expect_stderr("is a symbolic link");
    assert!(!nowhere.exists());
    // A file in place is replaced, not rewritten: another name for the old one keeps it.
    let chain = write(dir.path(), "chain.pem", "old\n");
    let other_name = dir.path().join("hard-link");
    std::fs::hard_link(&chain, &other_name).unwrap();
    save(&chain, &addr).expect_code(0);
    assert_eq!(std::fs::read_to_string(&other_name).unwrap(), "old\n");
    let saved = std::fs::read_to_string(&chain).unwrap();
    assert!(saved.starts_with("-----BEGIN CERTIFICATE-----"), "{saved}");
    // Nothing is left beside it.
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "chain.pem",
            "dangling.pem",
            "hard-link",
            "link.pem",
            "victim"
        ]
    );
}

#[test]
fn a_known_hosts_link_is_written_through_and_stays_a_link() {
    let pki = Pki::new();
    let l = serve_k(&pki.server, &[], Input::Null);
    let addr = format!("localhost:{}", l.port);
    let dir = tempdir();
    // As dotfile managers keep it: the file elsewhere, a relative link in its place.
    let real_dir = dir.path().join("dotfiles");
    std::fs::create_dir(&real_dir).unwrap();
    let real = write(&real_dir, "known_hosts", "# mine\n");
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    let link = config.join("known_hosts");
    symlink("../dotfiles/known_hosts", &link).unwrap();
    connect(&addr, &["--tofu", "--known-hosts", s(&link)], Input::Null).expect_code(0);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let text = std::fs::read_to_string(&real).unwrap();
    assert!(text.starts_with("# mine\n"), "{text}");
    assert!(text.contains(&format!("{addr} sha256//")), "{text}");
    // The host is known now, through the link.
    connect(&addr, &["--tofu", "--known-hosts", s(&link)], Input::Null).expect_code(0);
}
