//! Which test peers are installed: printed in `cargo test`'s own output (this file has no test
//! harness, so nothing is captured), since a check whose peer is missing only prints a SKIP
//! line that a passing test's captured output would hide.

use std::process::{Command, Stdio};

/// Each program the tests drive, the Debian package that has it, and what goes unchecked
/// without it.
const PEERS: &[(&str, &str, &str)] = &[
    (
        "openssl",
        "openssl",
        "openssl interop, the certificate corpus",
    ),
    ("gnutls-serv", "gnutls-bin", "gnutls interop"),
    ("gnutls-cli", "gnutls-bin", "gnutls interop"),
    ("ncat", "ncat", "ncat interop"),
    ("socat", "socat", "socat interop"),
    ("curl", "curl", "curl interop"),
    ("python3", "python3", "python ssl interop"),
    ("sslscan", "sslscan", "the TLS posture scan"),
    ("groff", "groff", "the man page's rendering"),
    ("jq", "jq", "the README's inspect --json recipe"),
    ("postfix", "postfix", "STARTTLS against postfix (smtp)"),
    (
        "dovecot",
        "dovecot-imapd dovecot-pop3d dovecot-lmtpd dovecot-managesieved",
        "STARTTLS against dovecot (imap, pop3, lmtp, sieve)",
    ),
    (
        "mariadbd",
        "mariadb-server",
        "STARTTLS against mariadb (mysql)",
    ),
    ("slapd", "slapd", "STARTTLS against slapd (ldap)"),
    ("prosody", "prosody", "STARTTLS against prosody (xmpp)"),
    ("proftpd", "proftpd-basic", "STARTTLS against proftpd (ftp)"),
    ("inspircd", "inspircd", "STARTTLS against inspircd (irc)"),
    ("tinyproxy", "tinyproxy", "HTTP CONNECT through tinyproxy"),
    ("microsocks", "microsocks", "SOCKS5 through microsocks"),
    (
        "stunnel4",
        "stunnel4",
        "stunnel on the other side of a tunnel",
    ),
    (
        "nginx",
        "nginx",
        "nginx on a Unix socket behind listen --to",
    ),
    (
        "haproxy",
        "haproxy",
        "replicas behind haproxy (PROXY v2, shared tickets)",
    ),
    ("prometheus", "prometheus", "prometheus scraping --status"),
    ("promtool", "prometheus", "promtool checking /metrics"),
    (
        "systemd-socket-activate",
        "systemd",
        "socket activation (listen systemd:)",
    ),
    ("testssl", "testssl.sh", "testssl.sh against listen"),
];

fn installed(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("PATH=\"$PATH:/usr/sbin\" command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn main() {
    let missing: Vec<_> = PEERS.iter().filter(|(p, _, _)| !installed(p)).collect();
    println!();
    if missing.is_empty() {
        println!(
            "test peers: all {} installed, no check skipped",
            PEERS.len()
        );
        return;
    }
    for (program, package, what) in &missing {
        println!("SKIPPED: {what} ({program} is not installed: apt-get install {package})");
    }
    println!(
        "test peers: {} of {} missing; the checks above did not run",
        missing.len(),
        PEERS.len()
    );
}
