//! Name lookups when DNS does not answer: `-w` bounds them (exit 7), an address never waits
//! behind a name, and a lookup (a `socks5://` proxy's target included) never holds up the
//! event loop.
//!
//! stls runs in its own mount namespace, where /etc/resolv.conf names a local UDP socket that
//! takes every query and answers none, and /etc/hosts is a copy the test may edit. Names that
//! are not in it (`*.invalid.example`) go to that dead server.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::proxies::microsocks;
use crate::util::pki::{s, Pki};
use crate::util::*;

/// A DNS that never answers, for the stls processes started through it.
struct DeadDns {
    /// Bound, never read: queries arrive and no answer (nor refusal) goes back.
    _server: UdpSocket,
    _dir: tempfile::TempDir,
    resolv: PathBuf,
    hosts: PathBuf,
}

impl DeadDns {
    /// A resolv.conf whose one server is dead; getaddrinfo gives up on it after
    /// `give_up_secs`. None, after a SKIP line, where a mount namespace or port 53 is not
    /// ours.
    fn new(give_up_secs: u32) -> Option<DeadDns> {
        let nss = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
        let dns = nss
            .lines()
            .any(|l| l.trim_start().starts_with("hosts:") && l.contains("dns"));
        if !dns {
            eprintln!("SKIP: /etc/nsswitch.conf does not send host lookups to DNS");
            return None;
        }
        let ok = Command::new("unshare")
            .args(["-m", "sh", "-c", "mount --bind /etc/hosts /etc/hosts"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIP: cannot make a mount namespace (unshare -m, as root)");
            return None;
        }
        // A loopback address of its own, so that tests running at once do not meet.
        let server = (1..=250u8).find_map(|n| {
            let third = (std::process::id() % 250) as u8;
            UdpSocket::bind(("127.53.".to_string() + &format!("{third}.{n}"), 53)).ok()
        });
        let Some(server) = server else {
            eprintln!("SKIP: cannot bind a UDP socket to port 53 on 127.53.0.0/16");
            return None;
        };
        let addr = server.local_addr().expect("bound address").ip();
        let dir = tempdir();
        let resolv = write(
            dir.path(),
            "resolv.conf",
            format!("nameserver {addr}\noptions timeout:{give_up_secs} attempts:1\n"),
        );
        let hosts = write(
            dir.path(),
            "hosts",
            std::fs::read("/etc/hosts").unwrap_or_default(),
        );
        Some(DeadDns {
            _server: server,
            _dir: dir,
            resolv,
            hosts,
        })
    }

    /// `stls ARGS…` in a mount namespace that sees this DNS and hosts file.
    fn stls(&self) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "sh", "-c"])
            .arg(format!(
                "mount --bind {} /etc/resolv.conf && mount --bind {} /etc/hosts && exec \"$0\" \"$@\"",
                s(&self.resolv),
                s(&self.hosts)
            ))
            .arg(env!("CARGO_BIN_EXE_stls"));
        without_proxy_env(&mut cmd);
        cmd
    }

    /// Rewrite the hosts file in place (the namespace sees the same file): the system's
    /// entries plus `extra`.
    fn set_hosts(&self, extra: &str) {
        let mut text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        text += &format!("\n{extra}\n");
        std::fs::write(&self.hosts, text).expect("rewrite the hosts file");
    }
}

/// `inspect --json` lines, by target, in input order.
fn lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// Every target named `dead…` timed out (7) with `why`; every other one verified (0). All
/// the targets that are not so are listed.
fn expect(got: &[Value], why: &str) {
    let wrong: Vec<String> = got
        .iter()
        .filter(|v| {
            let target = v["target"].as_str().unwrap_or_default();
            let error = v["error"].as_str().unwrap_or_default();
            match target.starts_with("dead") {
                true => v["status"] != 7 || !error.contains(why),
                false => v["status"] != 0 || v["verified"] != true,
            }
        })
        .map(|v| format!("{}: status {}: {}", v["target"], v["status"], v["error"]))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn connect_gives_up_a_lookup_at_w_with_exit_7() {
    let Some(dns) = DeadDns::new(5) else {
        return;
    };
    let mut cmd = dns.stls();
    cmd.args(["connect", "-w", "2", "dead.invalid.example:443"]);
    Proc::spawn(&mut cmd, Input::Null)
        .finish()
        .expect_code(7)
        .expect_stderr("timed out looking up dead.invalid.example: no answer within 2s (-w)");
}

#[test]
fn inspect_addresses_never_wait_behind_dead_names() {
    // More dead names than lookups may run at once: an address queued behind them would
    // time out too.
    let Some(dns) = DeadDns::new(5) else {
        return;
    };
    let pki = Pki::new();
    let server = serve_k(&pki.server, &[], Input::Null);
    let mut targets = Vec::new();
    for i in 0..40 {
        targets.push(server.addr());
        targets.push(format!("dead{i}.invalid.example:443"));
    }
    let mut cmd = dns.stls();
    cmd.args(["inspect", "--json", "-w", "2", "--parallel", "100"])
        .args(["--cacert", s(&pki.ca.cert)])
        .args(&targets);
    let done = Proc::spawn(&mut cmd, Input::Null).finish();
    done.expect_code(7);
    let got = lines(&done.stdout);
    assert_eq!(got.len(), targets.len(), "{}", done.stderr);
    expect(&got, "timed out looking up dead");
}

#[test]
fn inspect_through_socks5_looks_names_up_off_the_loop() {
    let Some(dns) = DeadDns::new(5) else {
        return;
    };
    let Some(socks) = microsocks(None) else {
        return;
    };
    let pki = Pki::new();
    let server = serve_k(&pki.server, &[], Input::Null);
    // socks5:// (not socks5h): stls looks the target up and gives the proxy its address;
    // good.invalid.example is in the hosts file, the others go to the dead DNS.
    dns.set_hosts("127.0.0.1 good.invalid.example");
    let mut targets = Vec::new();
    for i in 0..4 {
        for _ in 0..5 {
            targets.push(format!("good.invalid.example:{}", server.port));
        }
        targets.push(format!("dead{i}.invalid.example:{}", server.port));
    }
    let mut cmd = dns.stls();
    cmd.args(["inspect", "--json", "-w", "3", "--parallel", "100"])
        .args(["--cacert", s(&pki.ca.cert), "--servername", "localhost"])
        .args(["--proxy", &format!("socks5://127.0.0.1:{}", socks.port)])
        .args(&targets);
    let done = Proc::spawn(&mut cmd, Input::Null).finish();
    done.expect_code(7);
    let got = lines(&done.stdout);
    assert_eq!(got.len(), targets.len(), "{}", done.stderr);
    expect(&got, "no answer came for the lookup of dead");
}

#[test]
fn a_slow_socks5_lookup_does_not_stop_an_open_tunnel() {
    let Some(dns) = DeadDns::new(15) else {
        return;
    };
    let Some(socks) = microsocks(None) else {
        return;
    };
    let pki = Pki::new();
    let echo = serve_k(&pki.server, &["-e", "cat"], Input::Null);
    // The target's name is in the hosts file for the first connection only.
    dns.set_hosts("127.0.0.1 tunnel.invalid.example");
    let mut cmd = dns.stls();
    cmd.args(["connect", &format!("tunnel.invalid.example:{}", echo.port)])
        .args(["--from", "127.0.0.1:0", "-v", "-w", "30"])
        .args(["--cacert", s(&pki.ca.cert), "--servername", "localhost"])
        .args(["--proxy", &format!("socks5://127.0.0.1:{}", socks.port)]);
    let from = Listener::start_cmd(&mut cmd, Input::Null);
    let mut open = TcpStream::connect(("127.0.0.1", from.port)).expect("first client");
    open.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut echoed = [0u8; 6];
    open.write_all(b"first\n").unwrap();
    open.read_exact(&mut echoed).expect("the first echo");
    assert_eq!(&echoed, b"first\n");

    // Now the name goes to the dead DNS: the second connection's lookup hangs.
    dns.set_hosts("");
    let mut slow = TcpStream::connect(("127.0.0.1", from.port)).expect("second client");
    let slow_addr = slow.local_addr().unwrap();
    from.wait_line(&format!("connection from {slow_addr}"));
    open.write_all(b"again\n").unwrap();
    open.read_exact(&mut echoed)
        .expect("the echo while the other lookup hangs");
    assert_eq!(&echoed, b"again\n");
    // The lookup still hangs: the second client has had neither bytes nor an end.
    slow.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let still = slow.read(&mut byte);
    assert!(
        matches!(&still, Err(e) if e.kind() == ErrorKind::WouldBlock),
        "the second connection ended before the first one's bytes came back ({still:?}); \
         stderr:\n{}",
        from.proc.stderr_text()
    );
    drop(slow);
    drop(open);
    from.stop();
}

#[test]
fn connect_from_tries_the_next_address_when_the_first_refuses() {
    let Some(dns) = DeadDns::new(5) else {
        return;
    };
    let pki = Pki::new();
    // The server listens on 127.0.0.1 only; the name is ::1 first (loopback IPv6 is preferred).
    let echo = serve_k(&pki.server, &["-e", "cat"], Input::Null);
    echo_from_both(&dns, &pki, echo.port, 30);
}

/// `connect --from` to both.invalid.example:`port` (::1 first, then 127.0.0.1) with -w
/// `wait`: a client's line comes back from the echo server there.
fn echo_from_both(dns: &DeadDns, pki: &Pki, port: u16, wait: u64) {
    dns.set_hosts("::1 both.invalid.example\n127.0.0.1 both.invalid.example");
    let mut cmd = dns.stls();
    cmd.args(["connect", &format!("both.invalid.example:{port}")])
        .args(["--from", "127.0.0.1:0", "-w", &wait.to_string()])
        .args(["--cacert", s(&pki.ca.cert), "--servername", "localhost"]);
    let from = Listener::start_cmd(&mut cmd, Input::Null);
    let mut client = TcpStream::connect(("127.0.0.1", from.port)).expect("client");
    client
        .set_read_timeout(Some(Duration::from_secs(wait)))
        .unwrap();
    client.write_all(b"hello\n").unwrap();
    let mut echoed = [0u8; 6];
    client
        .read_exact(&mut echoed)
        .unwrap_or_else(|e| panic!("no echo ({e}); stderr:\n{}", from.proc.stderr_text()));
    assert_eq!(&echoed, b"hello\n");
    drop(client);
    from.stop();
}

/// A socket on [::1]:`port` that never answers: a listener (backlog 0) whose one queued
/// connection is never accepted, so the kernel drops every further SYN. Kept with that
/// connection. None, after a SKIP line, where [::1] cannot be listened on.
fn silent_v6(port: u16) -> Option<(socket2::Socket, TcpStream)> {
    use socket2::{Domain, Socket, Type};
    let addr = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let sock = Socket::new(Domain::IPV6, Type::STREAM, None).ok()?;
    let listening = sock
        .set_only_v6(true)
        .and_then(|()| sock.bind(&addr.into()))
        .and_then(|()| sock.listen(0));
    if let Err(e) = listening {
        eprintln!("SKIP: cannot listen on {addr}: {e}");
        return None;
    }
    let queued = TcpStream::connect(addr).expect("the one queued connection");
    let more = TcpStream::connect_timeout(&addr, Duration::from_millis(300));
    assert!(more.is_err(), "the full listener on {addr} still answers");
    Some((sock, queued))
}

#[test]
fn connect_from_tries_the_next_address_when_the_first_does_not_answer() {
    let Some(dns) = DeadDns::new(5) else {
        return;
    };
    let pki = Pki::new();
    // The name is ::1 first, where nothing answers; the server is on 127.0.0.1. The first
    // address has its own time (10 s), well short of -w.
    let echo = serve_k(&pki.server, &["-e", "cat"], Input::Null);
    let Some(_silent) = silent_v6(echo.port) else {
        return;
    };
    echo_from_both(&dns, &pki, echo.port, 60);
}

#[test]
fn inspect_tries_the_next_address_when_the_first_does_not_answer() {
    let Some(dns) = DeadDns::new(5) else {
        return;
    };
    let pki = Pki::new();
    let server = serve_k(&pki.server, &[], Input::Null);
    let Some(_silent) = silent_v6(server.port) else {
        return;
    };
    dns.set_hosts("::1 both.invalid.example\n127.0.0.1 both.invalid.example");
    let mut cmd = dns.stls();
    cmd.args(["inspect", "--json", "-w", "60"])
        .args(["--cacert", s(&pki.ca.cert), "--servername", "localhost"])
        .arg(format!("both.invalid.example:{}", server.port));
    let done = Proc::spawn(&mut cmd, Input::Null).finish();
    let got = lines(&done.stdout);
    assert_eq!(got.len(), 1, "{}", done.stderr);
    expect(&got, "");
    assert_eq!(
        got[0]["address"].as_str(),
        Some(format!("127.0.0.1:{}", server.port).as_str()),
        "{}",
        got[0]
    );
}
