//! `--proxy` and the proxy environment, through real proxies started here on loopback
//! (tinyproxy, `ncat --proxy-type http`, microsocks) and scripted ones for what no installable
//! proxy does (SOCKS4a, an HTTPS proxy, hostile replies). Each proxy's log shows which name it
//! was asked for.
//!
//! These proxies drop both directions at the first EOF, so a TLS 1.3 half-close cannot pass
//! them: the client uses `--no-shutdown` (its close_notify waits for the server's).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::util::pki::{s, Ca, KeyType, Pki, VALID};
use crate::util::*;

/// A server that sends `reply` to each client (a `cat` per connection), then closes its side.
fn server(pki: &Pki, reply: &[u8]) -> Listener {
    let file = pki.dir.path().join(format!("reply-{}", free_port()));
    std::fs::write(&file, reply).unwrap();
    let cat = format!("cat {}", s(&file));
    let (cert, key) = (s(&pki.server.cert), s(&pki.server.key));
    Listener::start(
        &["-k", "--cert", cert, "--key", key, "-c", &cat],
        Input::Null,
    )
}

/// `stls connect localhost:PORT` through `proxy` (empty: none) with `extra` flags.
fn via(pki: &Pki, port: u16, proxy: &[&str], extra: &[&str]) -> Done {
    let mut cmd = stls();
    cmd.args(["connect", &format!("localhost:{port}"), "--no-shutdown"])
        .args(["--cacert", s(&pki.ca.cert)])
        .args(proxy)
        .args(extra);
    without_proxy_env(&mut cmd);
    Proc::spawn(&mut cmd, Input::Null).finish()
}

pub(crate) struct Proxy {
    proc: Proc,
    pub port: u16,
}

impl Proxy {
    fn log(&self) -> String {
        self.proc.stderr_text() + &String::from_utf8_lossy(&self.proc.stdout_so_far())
    }
}

pub(crate) fn tinyproxy(auth: Option<(&str, &str)>) -> Option<(Proxy, tempfile::TempDir)> {
    if !have("tinyproxy") {
        return None;
    }
    let dir = tempdir();
    let port = free_port();
    let mut conf = format!("Port {port}\nListen 127.0.0.1\nTimeout 60\nLogLevel Info\n");
    if let Some((user, pass)) = auth {
        conf += &format!("BasicAuth {user} {pass}\n");
    }
    let path = write(dir.path(), "tinyproxy.conf", conf);
    let mut cmd = Command::new("tinyproxy");
    cmd.args(["-d", "-c", s(&path)]);
    let proc = Proc::spawn(&mut cmd, Input::Null);
    wait_listening(port);
    Some((Proxy { proc, port }, dir))
}

pub(crate) fn microsocks(auth: Option<(&str, &str)>) -> Option<Proxy> {
    if !have("microsocks") {
        return None;
    }
    let port = free_port();
    let mut cmd = Command::new("microsocks");
    cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
    if let Some((user, pass)) = auth {
        cmd.args(["-u", user, "-P", pass]);
    }
    let proc = Proc::spawn(&mut cmd, Input::Null);
    wait_listening(port);
    Some(Proxy { proc, port })
}

fn wait_for(proxy: &Proxy, needle: &str) {
    for _ in 0..200 {
        if proxy.log().contains(needle) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the proxy's log lacks {needle:?}:\n{}", proxy.log());
}

#[test]
fn http_connect_through_tinyproxy_with_and_without_credentials() {
    let pki = Pki::new();
    let reply = random_bytes(200_000, 5);
    let l = server(&pki, &reply);
    let Some((open, _d1)) = tinyproxy(None) else {
        return;
    };
    let url = format!("http://127.0.0.1:{}", open.port);
    let done = via(&pki, l.port, &["--proxy", &url, "-v"], &[]);
    done.expect_code(0)
        .expect_stderr(&format!("connected to proxy {url}"))
        .expect_stderr(&format!("proxy {url} is asked for localhost:{}", l.port));
    assert_same(&done.stdout, &reply, "through tinyproxy");
    // The name, not an address, reached the proxy.
    wait_for(&open, &format!("CONNECT localhost:{} HTTP/1.1", l.port));

    let Some((auth, _d2)) = tinyproxy(Some(("alice", "s3cret"))) else {
        return;
    };
    let bare = format!("http://127.0.0.1:{}", auth.port);
    via(&pki, l.port, &["--proxy", &bare], &[])
        .expect_code(3)
        .expect_stderr("407 Proxy Authentication Required")
        .expect_stderr("USER:PASS");
    let good = format!("http://alice:s3cret@127.0.0.1:{}", auth.port);
    let done = via(&pki, l.port, &["--proxy", &good, "-vv"], &[]);
    done.expect_code(0);
    assert_same(&done.stdout, &reply, "through tinyproxy with BasicAuth");
    assert!(!done.stderr.contains("s3cret"), "{}", done.stderr);
    assert!(!done.stderr.contains("YWxpY2U6czNjcmV0"), "{}", done.stderr);
    let wrong = format!("http://alice:nope@127.0.0.1:{}", auth.port);
    let done = via(&pki, l.port, &["--proxy", &wrong], &[]);
    done.expect_code(3);
    assert!(!done.stderr.contains("nope"), "{}", done.stderr);
}

#[test]
fn http_connect_through_ncat() {
    if !have("ncat") {
        return;
    }
    let pki = Pki::new();
    let l = server(&pki, b"through ncat\n");
    let port = free_port();
    let mut cmd = Command::new("ncat");
    cmd.args([
        "-l",
        "-k",
        "127.0.0.1",
        &port.to_string(),
        "--proxy-type",
        "http",
    ]);
    let _ncat = Proc::spawn(&mut cmd, Input::Null);
    wait_listening(port);
    let url = format!("http://127.0.0.1:{port}");
    let done = via(&pki, l.port, &["--proxy", &url], &[]);
    done.expect_code(0);
    assert_eq!(done.stdout, b"through ncat\n");
}

#[test]
fn socks5_through_microsocks_names_and_addresses_and_credentials() {
    let pki = Pki::new();
    let l = server(&pki, b"through socks\n");
    let Some(open) = microsocks(None) else {
        return;
    };
    // socks5h: the proxy gets the name; socks5: we resolve it and send the address.
    let h = format!("socks5h://127.0.0.1:{}", open.port);
    let done = via(&pki, l.port, &["--proxy", &h], &[]);
    done.expect_code(0);
    assert_eq!(done.stdout, b"through socks\n");
    wait_for(&open, &format!("connected to localhost:{}", l.port));
    let local = format!("socks5://127.0.0.1:{}", open.port);
    via(&pki, l.port, &["--proxy", &local], &[]).expect_code(0);
    wait_for(&open, &format!("connected to 127.0.0.1:{}", l.port));

    let Some(auth) = microsocks(Some(("bob", "pa:ss"))) else {
        return;
    };
    let bare = format!("socks5h://127.0.0.1:{}", auth.port);
    via(&pki, l.port, &["--proxy", &bare], &[])
        .expect_code(3)
        .expect_stderr("requires a user name and password");
    // ":" in the password is percent-encoded in the URL.
    let good = format!("socks5h://bob:pa%3Ass@127.0.0.1:{}", auth.port);
    via(&pki, l.port, &["--proxy", &good], &[]).expect_code(0);
    let wrong = format!("socks5h://bob:nope@127.0.0.1:{}", auth.port);
    let done = via(&pki, l.port, &["--proxy", &wrong], &[]);
    done.expect_code(3)
        .expect_stderr("rejected the user name and password");
    assert!(!done.stderr.contains("nope"));
}

#[test]
fn a_chain_of_two_real_proxies() {
    let pki = Pki::new();
    let l = server(&pki, b"through two\n");
    let (Some((http, _d)), Some(socks)) = (tinyproxy(None), microsocks(None)) else {
        return;
    };
    let first = format!("http://127.0.0.1:{}", http.port);
    let second = format!("socks5h://127.0.0.1:{}", socks.port);
    let done = via(
        &pki,
        l.port,
        &["--proxy", &first, "--proxy", &second, "-v"],
        &[],
    );
    done.expect_code(0)
        .expect_stderr(&format!(
            "proxy {first} is asked for 127.0.0.1:{}",
            socks.port
        ))
        .expect_stderr(&format!("proxy {second} is asked for localhost:{}", l.port));
    assert_eq!(done.stdout, b"through two\n");
    wait_for(&http, &format!("CONNECT 127.0.0.1:{} HTTP/1.1", socks.port));
    wait_for(&socks, &format!("connected to localhost:{}", l.port));
    // inspect goes the same way.
    let target = format!("localhost:{}", l.port);
    let done = run(
        &[
            "inspect",
            "--json",
            "--cacert",
            s(&pki.ca.cert),
            "--proxy",
            &first,
            "--proxy",
            &second,
            &target,
        ],
        Input::Null,
    );
    done.expect_code(0);
    assert!(String::from_utf8_lossy(&done.stdout).contains("\"verified\":true"));
}

/// Pump bytes both ways between two sockets until both directions have ended.
fn pump(a: TcpStream, b: TcpStream) {
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        })
    };
    let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let one = copy(a, b);
    let two = copy(b2, a2);
    let _ = one.join();
    let _ = two.join();
}

/// A scripted SOCKS4a proxy: checks the request names `want`, then relays to it.
fn socks4a(want: String) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut head = [0u8; 8];
        sock.read_exact(&mut head).unwrap();
        let mut rest = Vec::new();
        let mut byte = [0u8; 1];
        let mut zeros = 0;
        while zeros < 2 {
            sock.read_exact(&mut byte).unwrap();
            zeros += (byte[0] == 0) as usize;
            rest.push(byte[0]);
        }
        let port = u16::from_be_bytes([head[2], head[3]]);
        let host = String::from_utf8_lossy(&rest).to_string();
        assert!(host.ends_with(&format!("{want}\0")), "{host:?}");
        sock.write_all(&[0, 0x5a, 0, 0, 0, 0, 0, 0]).unwrap();
        let target = TcpStream::connect(("127.0.0.1", port)).unwrap();
        pump(sock, target);
        head.to_vec()
    });
    (port, thread)
}

#[test]
fn socks4a_sends_the_name() {
    let pki = Pki::new();
    let l = server(&pki, b"through socks4a\n");
    let (port, proxy) = socks4a("localhost".into());
    let url = format!("socks4a://carol@127.0.0.1:{port}");
    let done = via(&pki, l.port, &["--proxy", &url], &[]);
    done.expect_code(0);
    assert_eq!(done.stdout, b"through socks4a\n");
    let head = proxy.join().unwrap();
    // Version 4, CONNECT, the port, and 0.0.0.1: "the name follows".
    assert_eq!(head[..2], [4, 1]);
    assert_eq!(head[4..], [0, 0, 0, 1]);
}

/// A scripted HTTPS proxy: TLS with `cert`/`key`, then CONNECT, then a relay.
fn https_proxy(cert: &std::path::Path, key: &std::path::Path) -> u16 {
    let (port, _thread) = peer::serve(cert, key, |tls| {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if tls.read(&mut byte).unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let line = String::from_utf8_lossy(&head).to_string();
        let target = line.split_whitespace().nth(1).unwrap().to_string();
        assert!(target.starts_with("localhost:"), "{line}");
        tls.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .unwrap();
        tls.flush().unwrap();
        let mut up = TcpStream::connect(target.replace("localhost", "127.0.0.1")).unwrap();
        // One thread: poll both sides with short timeouts.
        tls.sock
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        up.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        let mut buf = vec![0u8; 16384];
        let (mut down_open, mut up_open) = (true, true);
        while down_open || up_open {
            if up_open {
                match up.read(&mut buf) {
                    Ok(0) => {
                        up_open = false;
                        tls.conn.send_close_notify();
                        let _ = tls.flush();
                    }
                    Ok(n) => {
                        let _ = tls.write_all(&buf[..n]);
                        let _ = tls.flush();
                    }
                    Err(_) => {}
                }
            }
            if down_open {
                match tls.read(&mut buf) {
                    Ok(0) => {
                        down_open = false;
                        let _ = up.shutdown(Shutdown::Write);
                    }
                    Ok(n) => {
                        let _ = up.write_all(&buf[..n]);
                    }
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => down_open = false,
                }
            }
        }
    });
    port
}

#[test]
fn https_proxy_is_verified_and_the_inner_tls_runs_inside() {
    let pki = Pki::new();
    let reply = random_bytes(100_000, 9);
    let l = server(&pki, &reply);
    let port = https_proxy(&pki.server.cert, &pki.server.key);
    let url = format!("https://localhost:{port}");
    let done = via(&pki, l.port, &["--proxy", &url], &[]);
    done.expect_code(0);
    assert_same(&done.stdout, &reply, "TLS inside TLS");

    // A proxy whose certificate we do not trust: exit 5, naming the proxy.
    let other = Ca::new(pki.dir.path(), "other CA");
    let leaf = other.server("proxyleaf", &["localhost"], KeyType::P256, VALID);
    let port = https_proxy(&leaf.cert, &leaf.key);
    let url = format!("https://localhost:{port}");
    via(&pki, l.port, &["--proxy", &url], &[])
        .expect_code(5)
        .expect_stderr(&format!("proxy {url}"));
}

#[test]
fn the_environment_and_no_proxy() {
    let pki = Pki::new();
    let l = server(&pki, b"env\n");
    let Some((p, _d)) = tinyproxy(None) else {
        return;
    };
    let url = format!("http://127.0.0.1:{}", p.port);
    let target = format!("localhost:{}", l.port);
    let with_env = |vars: &[(&str, &str)], extra: &[&str]| {
        let mut cmd = stls();
        cmd.args([
            "connect",
            &target,
            "--no-shutdown",
            "--cacert",
            s(&pki.ca.cert),
            "-v",
        ])
        .args(extra);
        for name in [
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
            "no_proxy",
            "NO_PROXY",
        ] {
            cmd.env_remove(name);
        }
        for (k, v) in vars {
            cmd.env(k, v);
        }
        Proc::spawn(&mut cmd, Input::Null).finish()
    };
    let dead = format!("http://127.0.0.1:{}", free_port());
    // https_proxy is used; lowercase wins over uppercase.
    with_env(&[("https_proxy", &url), ("HTTPS_PROXY", &dead)], &[])
        .expect_code(0)
        .expect_stderr(&format!("connected to proxy {url}"));
    // all_proxy when there is no https_proxy; http_proxy is never read.
    with_env(&[("ALL_PROXY", &url), ("http_proxy", &dead)], &[])
        .expect_code(0)
        .expect_stderr(&format!("connected to proxy {url}"));
    // NO_PROXY bypasses, for --proxy too; --noproxy replaces it.
    let direct = with_env(
        &[
            ("https_proxy", &dead),
            ("NO_PROXY", "example.com,localhost"),
        ],
        &[],
    );
    direct
        .expect_code(0)
        .expect_stderr(&format!("connected to {target}"));
    with_env(&[("NO_PROXY", "localhost")], &["--proxy", &dead])
        .expect_code(0)
        .expect_stderr(&format!("connected to {target}"));
    with_env(
        &[("NO_PROXY", "localhost")],
        &["--proxy", &url, "--noproxy", "other.example"],
    )
    .expect_code(0)
    .expect_stderr(&format!("connected to proxy {url}"));
    with_env(&[], &["--proxy", &dead, "--noproxy", "*"]).expect_code(0);
    // A malformed variable is a usage error naming it.
    with_env(&[("https_proxy", "ftp://user:pw@x")], &[])
        .expect_code(2)
        .expect_stderr("https_proxy: proxy 'ftp://***@x'");
}

#[test]
fn proxy_failures_have_their_own_status_and_never_show_a_password() {
    let pki = Pki::new();
    let l = server(&pki, b"x");
    // A malformed URL: usage.
    let done = via(
        &pki,
        l.port,
        &["--proxy", "http://u:hunter2@proxy:99999"],
        &[],
    );
    done.expect_code(2)
        .expect_stderr("the port must be 1 to 65535");
    assert!(!done.stderr.contains("hunter2"));
    // Unreachable: network, naming the proxy.
    let dead = format!("http://u:hunter2@127.0.0.1:{}", free_port());
    let done = via(&pki, l.port, &["--proxy", &dead], &[]);
    done.expect_code(3).expect_stderr("proxy http://127.0.0.1:");
    assert!(!done.stderr.contains("hunter2"));
    // Silent: -w covers the proxy too.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "socks5h://127.0.0.1:{}",
        silent.local_addr().unwrap().port()
    );
    via(&pki, l.port, &["--proxy", &url, "-w", "1"], &[])
        .expect_code(7)
        .expect_stderr("proxy socks5h://127.0.0.1:");
    // Hostile: an endless header line, a reply that is not HTTP, a SOCKS error code.
    let hostile = |reply: &'static [u8], repeat: usize| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = sock.read(&mut buf);
            for _ in 0..repeat {
                if sock.write_all(reply).is_err() {
                    break;
                }
            }
        });
        port
    };
    let port = hostile(
        b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        100_000,
    );
    via(
        &pki,
        l.port,
        &["--proxy", &format!("http://127.0.0.1:{port}")],
        &[],
    )
    .expect_code(3)
    .expect_stderr("longer than 4096 bytes");
    let port = hostile(b"SSH-2.0-OpenSSH\r\n", 1);
    via(
        &pki,
        l.port,
        &["--proxy", &format!("http://127.0.0.1:{port}")],
        &[],
    )
    .expect_code(3)
    .expect_stderr("not an HTTP response");
    let port = hostile(&[5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0], 1);
    via(
        &pki,
        l.port,
        &["--proxy", &format!("socks5h://127.0.0.1:{port}")],
        &[],
    )
    .expect_code(3)
    .expect_stderr("connection refused (reply 5)");
}

#[test]
fn an_end_right_after_our_close_notify_through_a_proxy_names_it() {
    // A server that thinks longer than --linger and drops the connection, without
    // close_notify, when ours arrives: nothing came back, and the likely cause is a proxy on
    // the way that ends both directions. The message names it and what to do.
    let Some((http, _dir)) = tinyproxy(None) else {
        return;
    };
    let pki = Pki::new();
    let request = b"GET / HTTP/1.0\r\n\r\n".to_vec();
    let (port, server) = peer::serve(&pki.server.cert, &pki.server.key, |tls| {
        let got = peer::read_to_close_notify(tls);
        let _ = tls.sock.shutdown(Shutdown::Both);
        got
    });
    let proxy = format!("http://127.0.0.1:{}", http.port);
    let mut cmd = stls();
    cmd.args(["connect", &format!("localhost:{port}"), "--linger", "0.2"])
        .args(["--cacert", s(&pki.ca.cert), "--proxy", &proxy]);
    without_proxy_env(&mut cmd);
    let done = Proc::spawn(&mut cmd, Input::Bytes(request.clone())).finish();
    done.expect_code(6)
        .expect_stderr("goes through proxy ")
        .expect_stderr(&format!("127.0.0.1:{}", http.port))
        .expect_stderr("--linger SECS")
        .expect_stderr("--no-shutdown");
    assert_eq!(server.join().unwrap(), request);
}

#[test]
fn proxy_passwords_are_not_left_in_the_command_line() {
    // A proxy that takes the connection and says nothing: stls is still running, past its
    // parsing, when the connection arrives.
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = proxy.local_addr().unwrap().port();
    let spelled = [
        vec![
            "--proxy".to_string(),
            format!("http://alice:s3cret@127.0.0.1:{port}"),
        ],
        vec![format!("--proxy=socks5h://alice:s3cret@127.0.0.1:{port}")],
    ];
    for args in spelled {
        let mut cmd = stls();
        cmd.args(["connect", "example.com:443", "-w", "30"])
            .args(&args);
        let run = Proc::spawn(&mut cmd, Input::Null);
        let (_held, _) = proxy.accept().unwrap();
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", run.pid())).unwrap();
        let shown = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("alice"), "{shown}");
        assert!(
            shown.contains(&format!("://************@127.0.0.1:{port}")),
            "the rest is as typed: {shown}"
        );
        drop(run);
    }
}

/// A scripted proxy for one client: answers each message the client sends with the next of
/// `replies` (SOCKS5: the greeting, then the request), then holds the connection open, as a
/// proxy that says no more would, until the client closes. With `relay_to`, it relays to
/// that port instead once its replies are sent.
fn scripted_proxy(replies: Vec<Vec<u8>>, relay_to: Option<u16>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        for reply in replies {
            if sock.read(&mut buf).unwrap_or(0) == 0 || sock.write_all(&reply).is_err() {
                return;
            }
        }
        match relay_to {
            Some(port) => pump(sock, TcpStream::connect(("127.0.0.1", port)).unwrap()),
            None => drop(read_all(&mut sock)),
        }
    });
    port
}

/// `-w` only bounds a run that would wait for bytes that never come.
const W: [&str; 2] = ["-w", "20"];

fn http_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

#[test]
fn any_2xx_opens_the_tunnel_but_a_status_is_three_digits() {
    // RFC 9110 §9.3.6: any 2xx to CONNECT is success.
    let pki = Pki::new();
    let l = server(&pki, b"through a 204\n");
    let port = scripted_proxy(
        vec![b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()],
        Some(l.port),
    );
    let done = via(&pki, l.port, &["--proxy", &http_url(port)], &W);
    done.expect_code(0);
    assert_eq!(done.stdout, b"through a 204\n");
    // "2xx" is not a status.
    let port = scripted_proxy(vec![b"HTTP/1.1 2xx OK\r\n\r\n".to_vec()], None);
    via(&pki, l.port, &["--proxy", &http_url(port)], &W)
        .expect_code(3)
        .expect_stderr("answered 'HTTP/1.1 2xx OK', which is not an HTTP response");
}

#[test]
fn bytes_after_a_200_are_named_as_the_proxys() {
    // Before our ClientHello a TLS server says nothing: what follows the reply is the proxy's.
    let pki = Pki::new();
    let l = server(&pki, b"x");
    let port = scripted_proxy(vec![b"HTTP/1.1 200 OK\r\n\r\nHELLO".to_vec()], None);
    via(&pki, l.port, &["--proxy", &http_url(port)], &W)
        .expect_code(3)
        .expect_stderr(&format!(
            "proxy http://127.0.0.1:{port}: sent 5 bytes of data after its reply \
             ('HTTP/1.1 200 OK'), before the TLS handshake with localhost:{} began: 'HELLO'",
            l.port
        ));
}

#[test]
fn a_407_to_given_credentials_says_they_were_refused() {
    let pki = Pki::new();
    let l = server(&pki, b"x");
    let port = scripted_proxy(
        vec![b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n".to_vec()],
        None,
    );
    let url = format!("http://alice:s3cret@127.0.0.1:{port}");
    let done = via(&pki, l.port, &["--proxy", &url], &W);
    done.expect_code(3)
        .expect_stderr("refused the user name and password given in the URL");
    assert!(!done.stderr.contains("USER:PASS"), "{}", done.stderr);
    assert!(!done.stderr.contains("s3cret"), "{}", done.stderr);
}

#[test]
fn a_socks5_failure_with_an_unknown_address_type_is_told_at_once() {
    // Reply 4 (host unreachable) with address type 0 and no address: nothing more comes.
    let pki = Pki::new();
    let l = server(&pki, b"x");
    let port = scripted_proxy(vec![vec![5, 0], vec![5, 4, 0, 0]], None);
    let url = format!("socks5h://127.0.0.1:{port}");
    via(&pki, l.port, &["--proxy", &url], &W)
        .expect_code(3)
        .expect_stderr("could not connect to localhost:")
        .expect_stderr("host unreachable (reply 4)");
}
