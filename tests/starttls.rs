//! `--starttls`: every protocol on both sides (stls to stls, openssl s_client to stls listen,
//! stls inspect), refusals and hostile dialogues from scripted servers. The real servers are
//! in `servers.rs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::util::pki::{s, Pki};
use crate::util::*;

pub(crate) const PROTOS: [&str; 14] = [
    "smtp",
    "lmtp",
    "pop3",
    "imap",
    "ftp",
    "xmpp",
    "xmpp-server",
    "telnet",
    "irc",
    "ldap",
    "postgres",
    "mysql",
    "nntp",
    "sieve",
];

fn listen(pki: &Pki, proto: &str, extra: &[&str], input: Input) -> Listener {
    let mut args = vec!["--starttls", proto, "--cert", s(&pki.server.cert)];
    args.extend(["--key", s(&pki.server.key)]);
    args.extend(extra);
    Listener::start(&args, input)
}

#[test]
fn every_protocol_from_stls_to_stls_is_byte_exact() {
    let pki = Pki::new();
    for (i, proto) in PROTOS.iter().enumerate() {
        let up = random_bytes(100_000, i as u64 + 1);
        let down = random_bytes(70_000, i as u64 + 100);
        let l = listen(&pki, proto, &[], Input::Bytes(down.clone()));
        let addr = format!("localhost:{}", l.port);
        let c = connect(
            &addr,
            &["--starttls", proto, "--cacert", s(&pki.ca.cert)],
            Input::Bytes(up.clone()),
        );
        c.expect_code(0);
        assert_same(&c.stdout, &down, &format!("{proto}: server → client"));
        let done = l.finish();
        done.expect_code(0);
        assert_same(&done.stdout, &up, &format!("{proto}: client → server"));
    }
}

#[test]
fn openssl_s_client_gets_through_every_protocol() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    for (i, proto) in PROTOS.iter().enumerate() {
        let up = random_bytes(30_000, i as u64 + 7);
        let down = random_bytes(20_000, i as u64 + 70);
        let mut l = listen(&pki, proto, &[], Input::Held);
        l.proc.stdin().write_all(&down).unwrap();
        let mut cmd = Command::new("openssl");
        // -nocommands: random data must not be read as s_client's commands ("Q" quits).
        cmd.args(["s_client", "-quiet", "-no_ign_eof", "-nocommands"])
            .args(["-starttls", proto])
            .args(["-connect", &format!("127.0.0.1:{}", l.port)])
            .args(["-servername", "localhost", "-CAfile", s(&pki.ca.cert)])
            .args(["-verify_return_error", "-xmpphost", "localhost"]);
        let mut client = Proc::spawn(&mut cmd, Input::Held);
        // What the server sends arrives first: then the session is up, and s_client (which
        // may drop input typed before its handshake is done) sends ours.
        if let Err(e) = client.wait_stdout(down.len()) {
            panic!("{proto}: {e}\nlistener:\n{}", l.stop().stderr);
        }
        client.stdin().write_all(&up).unwrap();
        client.close_stdin();
        // The listener has all of it before its own side ends.
        if let Err(e) = l.proc.wait_stdout(up.len()) {
            panic!("{proto}: {e}");
        }
        l.proc.close_stdin();
        let got = client.finish();
        assert_same(
            &got.stdout,
            &down,
            &format!("{proto}: stls listen → s_client"),
        );
        let done = l.finish();
        done.expect_code(0);
        assert_same(
            &done.stdout,
            &up,
            &format!("{proto}: s_client → stls listen"),
        );
    }
}

#[test]
fn inspect_speaks_the_dialogue_before_looking() {
    let pki = Pki::new();
    let servers: Vec<(String, Listener)> = ["smtp", "imap", "postgres", "ldap", "xmpp"]
        .iter()
        .map(|p| (p.to_string(), listen(&pki, p, &["-k"], Input::Held)))
        .collect();
    for (proto, l) in &servers {
        inspect_starttls_verifies(&pki, proto, l.port);
    }
    // Without --starttls the SMTP server's greeting is not TLS: a handshake failure.
    let target = format!("localhost:{}", servers[0].1.port);
    let done = run(&["inspect", "--json", &target], Input::Null);
    done.expect_code(4);
}

/// A scripted plaintext server: for each line the client sends, `answer` gives the reply
/// (None: close). The greeting goes first. Returns the port and what the client sent.
fn scripted(
    greeting: &'static [u8],
    answer: impl Fn(&str) -> Option<Vec<u8>> + Send + 'static,
) -> (u16, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let _ = sock.write_all(greeting);
        let mut reader = BufReader::new(sock.try_clone().unwrap());
        let mut heard = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            heard += &line;
            match answer(line.trim_end()) {
                Some(reply) => {
                    if sock.write_all(&reply).is_err() {
                        break;
                    }
                }
                None => break,
            }
        }
        heard
    });
    (port, thread)
}

fn starttls_connect(port: u16, proto: &str, extra: &[&str]) -> Done {
    let mut args = vec!["--starttls", proto, "--insecure"];
    args.extend(extra);
    connect(&format!("127.0.0.1:{port}"), &args, Input::Null)
}

#[test]
fn a_server_that_does_not_offer_starttls_is_refused() {
    let (port, server) = scripted(b"220 mx.test ESMTP\r\n", |line| {
        Some(match line {
            l if l.starts_with("EHLO") => b"250-mx.test\r\n250 PIPELINING\r\n".to_vec(),
            _ => b"500 what\r\n".to_vec(),
        })
    });
    let done = starttls_connect(port, "smtp", &[]);
    done.expect_code(4)
        .expect_stderr("does not offer STARTTLS")
        .expect_stderr("250-mx.test / 250 PIPELINING");
    drop(done);
    let heard = server.join().unwrap();
    // The EHLO names the host we connected to; nothing was sent after the refusal.
    assert_eq!(heard, "EHLO 127.0.0.1\r\n");
}

#[test]
fn refusals_quote_the_servers_answer() {
    // SMTP 454
    let (port, _s) = scripted(b"220 mx ESMTP\r\n", |line| {
        Some(match line {
            l if l.starts_with("EHLO") => b"250-mx\r\n250 STARTTLS\r\n".to_vec(),
            _ => b"454 4.7.0 TLS not available due to local problem\r\n".to_vec(),
        })
    });
    starttls_connect(port, "smtp", &[])
        .expect_code(4)
        .expect_stderr("refused: it answered '454 4.7.0 TLS not available due to local problem' to STARTTLS, where 220 was expected");
    // IMAP BAD
    let (port, _s) = scripted(b"* OK ready\r\n", |line| {
        Some(match line {
            l if l.starts_with("S1") => b"* CAPABILITY IMAP4rev1 STARTTLS\r\nS1 OK\r\n".to_vec(),
            _ => b"S2 BAD not now\r\n".to_vec(),
        })
    });
    starttls_connect(port, "imap", &[])
        .expect_code(4)
        .expect_stderr("'S2 BAD not now'");
    // POP3 -ERR
    let (port, _s) = scripted(b"+OK pop\r\n", |_| Some(b"-ERR no tls here\r\n".to_vec()));
    starttls_connect(port, "pop3", &[])
        .expect_code(4)
        .expect_stderr("'-ERR no tls here' to STLS");
    // Postgres 'N'
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let pg = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut req = [0u8; 8];
        sock.read_exact(&mut req).unwrap();
        sock.write_all(b"N").unwrap();
        req
    });
    starttls_connect(port, "postgres", &[])
        .expect_code(4)
        .expect_stderr("N (no SSL)");
    assert_eq!(pg.join().unwrap(), [0, 0, 0, 8, 4, 210, 22, 47]);
    // LDAP: resultCode 2 (protocolError) with a diagnostic message.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _ldap = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut req = [0u8; 31];
        sock.read_exact(&mut req).unwrap();
        let mut resp = vec![0x30, 0x11, 0x02, 0x01, 0x01, 0x78, 0x0c, 0x0a, 0x01, 0x02];
        resp.extend_from_slice(&[0x04, 0x00, 0x04, 0x05]);
        resp.extend_from_slice(b"nope!");
        sock.write_all(&resp).unwrap();
        let _ = sock.read(&mut [0u8; 16]);
    });
    starttls_connect(port, "ldap", &[])
        .expect_code(4)
        .expect_stderr("resultCode 2 nope!");
}

#[test]
fn hostile_dialogues_end_bounded_with_a_clear_error() {
    // Bytes after the go-ahead: a command injection is never relayed.
    let (port, _s) = scripted(b"+OK pop\r\n", |_| {
        Some(b"+OK go\r\nX-INJECTED\r\n".to_vec())
    });
    starttls_connect(port, "pop3", &[])
        .expect_code(4)
        .expect_stderr("injection attempt");
    // An endless line.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let chunk = vec![b'2'; 65_536];
        while sock.write_all(&chunk).is_ok() {}
    });
    starttls_connect(port, "smtp", &[])
        .expect_code(4)
        .expect_stderr("longer than 4096 bytes");
    // 100,000 continuation lines.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let lines = b"220-hello\r\n".repeat(100_000);
        let _ = sock.write_all(&lines);
    });
    starttls_connect(port, "smtp", &[])
        .expect_code(4)
        .expect_stderr("more than 1000 lines");
    // A silent server: -w covers the dialogue.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    starttls_connect(port, "imap", &["-w", "1"])
        .expect_code(7)
        .expect_stderr("imap STARTTLS dialogue");
    // A server that hangs up mid-dialogue.
    let (port, _s) = scripted(b"220 mx\r\n", |_| None);
    starttls_connect(port, "smtp", &[])
        .expect_code(4)
        .expect_stderr("closed during the dialogue");
}

#[test]
fn the_listener_refuses_clients_that_skip_starttls() {
    let pki = Pki::new();
    let l = listen(&pki, "smtp", &[], Input::Null);
    // A client that sends mail in plain text is told to use STARTTLS first; one that quits
    // is logged; one that pipelines bytes after STARTTLS is an injection. The listener waits
    // on for a real client (without -k a failed client does not end it).
    let mut plain = TcpStream::connect(("127.0.0.1", l.port)).unwrap();
    let mut reader = BufReader::new(plain.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("220 "), "{line}");
    plain.write_all(b"MAIL FROM:<a@b>\r\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("530 5.7.0 Must issue a STARTTLS"),
        "{line}"
    );
    plain.write_all(b"QUIT\r\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("221"), "{line}");
    l.wait_line("quit before starting TLS");

    let mut eager = TcpStream::connect(("127.0.0.1", l.port)).unwrap();
    let mut greeting = [0u8; 64];
    let _ = eager.read(&mut greeting).unwrap();
    eager.write_all(b"STARTTLS\r\nRSET\r\n").unwrap();
    l.wait_line("injection attempt");

    // Then a real client gets through.
    let c = connect(
        &format!("localhost:{}", l.port),
        &["--starttls", "smtp", "--cacert", s(&pki.ca.cert)],
        Input::Bytes(b"hello\n".to_vec()),
    );
    c.expect_code(0);
    let done = l.finish();
    done.expect_code(0);
    assert_eq!(done.stdout, b"hello\n");
}

#[test]
fn vv_shows_the_dialogue_marked_as_such() {
    let pki = Pki::new();
    let l = listen(&pki, "smtp", &[], Input::Null);
    let c = connect(
        &format!("localhost:{}", l.port),
        &["-vv", "--starttls", "smtp", "--cacert", s(&pki.ca.cert)],
        Input::Null,
    );
    c.expect_code(0)
        .expect_stderr(&format!("stls: smtp localhost:{} < 220 ", l.port))
        .expect_stderr(&format!("stls: smtp localhost:{} > EHLO localhost", l.port))
        .expect_stderr("> STARTTLS");
    assert!(c.stdout.is_empty());
}

#[test]
fn tls_to_a_plain_text_port_suggests_starttls() {
    let pki = Pki::new();
    for (proto, greeting) in [("smtp", "220 "), ("imap", "* OK"), ("pop3", "+OK")] {
        // stls listen --starttls greets in plain text, as the protocol's server does.
        let l = listen(&pki, proto, &[], Input::Null);
        let hint = format!("use --starttls {proto}");
        let done = connect(
            &format!("localhost:{}", l.port),
            &["--cacert", s(&pki.ca.cert)],
            Input::Null,
        );
        done.expect_code(4)
            .expect_stderr("answered in plain text, not TLS")
            .expect_stderr(&format!("('{greeting}"))
            .expect_stderr(&hint);
        let done = run(
            &["inspect", "--cacert", s(&pki.ca.cert), &l.addr()],
            Input::Null,
        );
        assert_eq!(done.code(), 4, "{}", done.stderr);
        let report = format!("{}{}", String::from_utf8_lossy(&done.stdout), done.stderr);
        assert!(report.contains(&hint), "inspect: {report}");
    }
}

#[test]
fn starttls_to_an_implicit_tls_port_says_so() {
    let pki = Pki::new();
    let hint = "looks like implicit TLS";
    // SMTP waits for the server's greeting, which a TLS server never sends: -w ends the wait
    // (without it, a default one does).
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
    connect(
        &addr,
        &["--starttls", "smtp", "--cacert", ca, "-w", "1"],
        Input::Null,
    )
    .expect_code(7)
    .expect_stderr(hint)
    .expect_stderr("drop --starttls");
    let done = run(
        &[
            "inspect",
            "--starttls",
            "imap",
            "--cacert",
            ca,
            "-w",
            "1",
            &addr,
        ],
        Input::Null,
    );
    assert_eq!(done.code(), 7, "{}", done.stderr);
    let report = format!("{}{}", String::from_utf8_lossy(&done.stdout), done.stderr);
    assert!(
        report.contains(hint) && report.contains("drop --starttls"),
        "{report}"
    );
    // PostgreSQL's client speaks first: the TLS server answers its request with an alert.
    connect(
        &addr,
        &["--starttls", "postgres", "--cacert", ca],
        Input::Null,
    )
    .expect_code(4)
    .expect_stderr("answered with a TLS record")
    .expect_stderr(hint);
    l.stop().expect_code(143);
}

/// Read from `sock` until what was read ends with `end`; returns it.
fn read_until(sock: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(end) {
        if sock.read(&mut byte).unwrap_or(0) == 0 {
            panic!("closed after {:?}", String::from_utf8_lossy(&got));
        }
        got.push(byte[0]);
    }
    got
}

const XMPP_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";

#[test]
fn xmpp_characters_cut_between_reads() {
    // An 'é' (C3 A9) whose two bytes come in two writes with a pause between, so that they
    // arrive in two reads: the XML is whole once the second does, on either side.
    let pki = Pki::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (cert, key) = (pki.server.cert.clone(), pki.server.key.clone());
    let server = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        read_until(&mut sock, b">");
        sock.write_all(
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
              xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='caf\xc3",
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let features = format!(
            "' version='1.0'><stream:features><starttls xmlns='{XMPP_TLS}'/></stream:features>"
        );
        sock.write_all(&[&[0xa9], features.as_bytes()].concat())
            .unwrap();
        read_until(&mut sock, b"/>");
        sock.write_all(format!("<proceed xmlns='{XMPP_TLS}'/>").as_bytes())
            .unwrap();
        let mut tls = peer::accept_on(sock, &cert, &key);
        let request = peer::read_to_close_notify(&mut tls);
        tls.write_all("café\n".as_bytes()).unwrap();
        peer::close_notify(&mut tls);
        request
    });
    let done = connect(
        &format!("localhost:{port}"),
        &["--starttls", "xmpp", "--cacert", s(&pki.ca.cert)],
        Input::Bytes(b"hello\n".to_vec()),
    );
    done.expect_code(0);
    assert_eq!(String::from_utf8_lossy(&done.stdout), "café\n");
    assert_eq!(server.join().unwrap(), b"hello\n");

    // Our server: the client's stream header is cut inside its xml:lang.
    let l = listen(&pki, "xmpp", &[], Input::Bytes("café\n".into()));
    let mut sock = TcpStream::connect(("127.0.0.1", l.port)).unwrap();
    sock.write_all(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
          to='localhost' xml:lang='caf\xc3",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    sock.write_all(b"\xa9' version='1.0'>").unwrap();
    read_until(&mut sock, b"</stream:features>");
    sock.write_all(format!("<starttls xmlns='{XMPP_TLS}'/>").as_bytes())
        .unwrap();
    let proceed = read_until(&mut sock, b"/>");
    assert!(proceed.starts_with(b"<proceed"), "{proceed:?}");
    let mut tls = peer::connect_on(sock, &pki.ca.cert, "localhost");
    tls.write_all(b"hello\n").unwrap();
    tls.conn.send_close_notify();
    tls.flush().unwrap();
    let mut reply = Vec::new();
    tls.read_to_end(&mut reply).unwrap();
    assert_eq!(String::from_utf8_lossy(&reply), "café\n");
    drop(tls);
    let done = l.finish();
    done.expect_code(0);
    assert_eq!(done.stdout, b"hello\n");
}

#[test]
fn connect_starttls_without_w_is_bounded() {
    // A server that greets, then never answers: without -w the dialogue gets 10 s, as
    // inspect and --from give it, and ends with exit 7 naming the bound.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.write_all(b"220 mx.test ESMTP\r\n").unwrap();
        // Until stls gives up and closes (or is killed: no wait of our own here).
        let mut heard = Vec::new();
        let _ = sock.read_to_end(&mut heard);
        heard
    });
    let mut cmd = stls();
    cmd.args(["connect", &format!("127.0.0.1:{port}")])
        .args(["--starttls", "smtp", "--insecure"]);
    let done = Proc::spawn(&mut cmd, Input::Null).finish_or_kill(Duration::from_secs(40));
    done.expect_code(7)
        .expect_stderr("smtp STARTTLS dialogue")
        .expect_stderr("10 s without -w");
    assert_eq!(server.join().unwrap(), b"EHLO 127.0.0.1\r\n");
}
