//! Whole sessions as a user runs them: the input given at once on stdin and ended
//! (`printf … | stls connect`), default options. stls must keep reading after stdin's end, so
//! every reply arrives; it closes once the server has (after the protocol's own logout), or
//! after the server has been silent a while (without one). Against the real servers of
//! `servers.rs` (exit 0, or 6 where that server closes without close_notify), an HTTPS server
//! behind real proxies, and `openssl s_server`; and one IMAP session typed on a terminal.

use crate::servers;
use crate::util::pki::{s, Pki};
use crate::util::*;

/// One server's dialogue, piped whole: once ending with the protocol's logout, once without.
#[derive(Default)]
struct Dialogue<'a> {
    name: &'a str,
    /// `--starttls PROTO`, or None for implicit TLS.
    starttls: Option<&'a str>,
    port: u16,
    /// The commands, and a piece of each one's reply (the last command's among them).
    commands: Vec<u8>,
    replies: &'a [&'a [u8]],
    /// The protocol's logout, and what it answers (nothing for some).
    logout: &'a [u8],
    bye: &'a [&'a [u8]],
    /// Replies that the logout may cancel: the server drops what is still pending when it
    /// reads the logout.
    cancelled: &'a [&'a [u8]],
    /// The exit status after the logout: 6 where the server then closes without close_notify.
    with_logout: i32,
    /// The exit status without it: stls ends the silence with close_notify, and the server
    /// answers with its own (0) or closes without one (6).
    without_logout: i32,
}

/// Pipe each dialogue through `stls connect localhost:PORT [--starttls PROTO] --cacert CA`,
/// with and without its logout: every reply on stdout, and the exit status.
fn piped(pki: &Pki, dialogues: &[Dialogue]) {
    for d in dialogues {
        for logout in [true, false] {
            let mut input = d.commands.clone();
            let mut replies = d.replies.to_vec();
            let want = if logout {
                input.extend_from_slice(d.logout);
                replies.retain(|r| !d.cancelled.contains(r));
                replies.extend_from_slice(d.bye);
                d.with_logout
            } else {
                d.without_logout
            };
            let mut cmd = stls();
            cmd.args(["connect", &format!("localhost:{}", d.port)])
                .args(["--cacert", s(&pki.ca.cert)]);
            if let Some(proto) = d.starttls {
                cmd.args(["--starttls", proto]);
            }
            let done = Proc::spawn(&mut cmd, Input::Bytes(input)).finish();
            let what = format!(
                "{} {} its logout",
                d.name,
                if logout { "with" } else { "without" }
            );
            for reply in replies {
                assert!(
                    has(&done.stdout, reply),
                    "{what}: no {:?} on stdout, which has {:?}; stderr:\n{}",
                    String::from_utf8_lossy(reply),
                    String::from_utf8_lossy(&done.stdout),
                    done.stderr
                );
            }
            assert_eq!(
                done.code(),
                want,
                "{what}: unexpected exit status; stderr:\n{}",
                done.stderr
            );
        }
    }
}

fn has(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn postfix_smtp_and_smtps() {
    let pki = Pki::new();
    let Some(server) = servers::postfix(&pki) else {
        return;
    };
    let commands = b"EHLO client.stls.test\r\nMAIL FROM:<alice@client.stls.test>\r\nRSET\r\n";
    let replies: &[&[u8]] = &[b"250-mx.stls.test", b"250 2.1.0 Ok", b"250 2.0.0 Ok"];
    let smtp = |name, starttls, port| Dialogue {
        name,
        starttls,
        port,
        commands: commands.to_vec(),
        replies,
        logout: b"QUIT\r\n",
        bye: &[b"221 2.0.0 Bye"],
        with_logout: 0,
        // smtpd answers our close_notify by closing without its own.
        without_logout: 6,
        ..Default::default()
    };
    piped(
        &pki,
        &[
            smtp("postfix smtp", Some("smtp"), server.ports[0]),
            smtp("postfix smtps", None, server.ports[1]),
        ],
    );
}

#[test]
fn dovecot_imap_pop3_lmtp_sieve_imaps_pop3s() {
    let pki = Pki::new();
    let Some(server) = servers::dovecot(&pki) else {
        return;
    };
    let p = &server.ports;
    let imap = |name, starttls, port| Dialogue {
        name,
        starttls,
        port,
        commands: b"a LOGIN bob x\r\nb SELECT INBOX\r\n".to_vec(),
        replies: &[b"a OK", b"b OK"],
        logout: b"c LOGOUT\r\n",
        bye: &[b"* BYE", b"c OK Logout completed"],
        with_logout: 0,
        without_logout: 0,
        ..Default::default()
    };
    let pop3 = |name, starttls, port| Dialogue {
        name,
        starttls,
        port,
        commands: b"USER bob\r\nPASS x\r\nSTAT\r\n".to_vec(),
        replies: &[b"+OK Logged in.", b"+OK 0 0"],
        logout: b"QUIT\r\n",
        bye: &[b"+OK Logging out."],
        with_logout: 0,
        without_logout: 0,
        ..Default::default()
    };
    piped(
        &pki,
        &[
            imap("dovecot imap", Some("imap"), p[0]),
            imap("dovecot imaps", None, p[4]),
            pop3("dovecot pop3", Some("pop3"), p[1]),
            pop3("dovecot pop3s", None, p[5]),
            Dialogue {
                name: "dovecot lmtp",
                starttls: Some("lmtp"),
                port: p[2],
                commands: b"LHLO client.stls.test\r\nMAIL FROM:<alice@stls.test>\r\n\
                            RCPT TO:<bob>\r\nRSET\r\n"
                    .to_vec(),
                replies: &[
                    b"250 PIPELINING",
                    b"250 2.1.0 OK",
                    b"250 2.1.5 OK",
                    b"250 2.0.0 OK",
                ],
                logout: b"QUIT\r\n",
                bye: &[b"221 2.0.0 Bye"],
                with_logout: 0,
                without_logout: 0,
                ..Default::default()
            },
            Dialogue {
                name: "dovecot sieve",
                starttls: Some("sieve"),
                port: p[3],
                // AUTHENTICATE PLAIN with "\0bob\0x".
                commands: b"AUTHENTICATE \"PLAIN\" \"AGJvYgB4\"\r\nLISTSCRIPTS\r\n".to_vec(),
                replies: &[b"OK \"Logged in.\"", b"OK \"Listscripts completed.\""],
                logout: b"LOGOUT\r\n",
                bye: &[b"OK \"Logout completed.\""],
                with_logout: 0,
                without_logout: 0,
                ..Default::default()
            },
        ],
    );
}

#[test]
fn postgresql() {
    let pki = Pki::new();
    let Some(server) = servers::postgres(&pki) else {
        return;
    };
    // The startup, then a simple Query: its DataRow ("1") and CommandComplete.
    let mut commands = servers::postgres_startup();
    commands.extend_from_slice(b"Q\0\0\0\x0dSELECT 1\0");
    piped(
        &pki,
        &[Dialogue {
            name: "postgresql",
            starttls: Some("postgres"),
            port: server.ports[0],
            commands,
            replies: &[
                b"R\0\0\0\x08\0\0\0\0",
                b"D\0\0\0\x0b\0\x01\0\0\0\x011",
                b"C\0\0\0\x0dSELECT 1\0",
            ],
            // Terminate: no answer.
            logout: b"X\0\0\0\x04",
            bye: &[],
            with_logout: 0,
            without_logout: 0,
            ..Default::default()
        }],
    );
}

#[test]
fn mariadb_mysql() {
    let pki = Pki::new();
    let Some(server) = servers::mariadb(&pki) else {
        return;
    };
    // The login, then COM_QUERY "SELECT 1": its row is one column holding "1".
    let mut commands = servers::mysql_login();
    commands.extend_from_slice(b"\x09\0\0\0\x03SELECT 1");
    piped(
        &pki,
        &[Dialogue {
            name: "mariadb",
            starttls: Some("mysql"),
            port: server.ports[0],
            commands,
            replies: &[&[7, 0, 0, 3, 0], &[2, 0, 0, 4, 1, b'1']],
            // COM_QUIT: no answer. MariaDB never sends close_notify.
            logout: &[1, 0, 0, 0, 1],
            bye: &[],
            with_logout: 6,
            without_logout: 6,
            ..Default::default()
        }],
    );
}

/// LDAP's BindResponse: success.
const BIND_OK: &[u8] = &[0x61, 0x07, 0x0a, 0x01, 0x00];
/// LDAP's SearchResultDone for messageID 3: success.
const SEARCH_DONE: &[u8] = &[0x02, 0x01, 0x03, 0x65, 0x07, 0x0a, 0x01, 0x00];

#[test]
fn slapd_ldap() {
    let pki = Pki::new();
    let Some(server) = servers::slapd(&pki) else {
        return;
    };
    // The bind, then a search of the root DSE (messageID 3, base "", scope base, filter
    // (objectClass=*)): its SearchResultDone says success.
    let mut commands = servers::LDAP_BIND.to_vec();
    commands.extend_from_slice(&[
        0x30, 0x25, 0x02, 0x01, 0x03, 0x63, 0x20, 0x04, 0x00, 0x0a, 0x01, 0x00, 0x0a, 0x01, 0x00,
        0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x01, 0x01, 0x00, 0x87, 0x0b,
    ]);
    commands.extend_from_slice(b"objectClass");
    commands.extend_from_slice(&[0x30, 0x00]);
    piped(
        &pki,
        &[Dialogue {
            name: "slapd",
            starttls: Some("ldap"),
            port: server.ports[0],
            commands,
            replies: &[BIND_OK, SEARCH_DONE],
            // UnbindRequest (messageID 4): no answer. slapd then abandons the operations still
            // pending, so the bind and the search may go unanswered.
            logout: &[0x30, 0x05, 0x02, 0x01, 0x04, 0x42, 0x00],
            bye: &[],
            cancelled: &[BIND_OK, SEARCH_DONE],
            with_logout: 0,
            without_logout: 0,
        }],
    );
}

#[test]
fn prosody_xmpp() {
    let pki = Pki::new();
    let Some(server) = servers::prosody(&pki) else {
        return;
    };
    // The stream, SASL ANONYMOUS, the restarted stream, a resource bound, a disco#info query.
    let mut commands = servers::XMPP_STREAM.to_vec();
    commands.extend_from_slice(
        b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>",
    );
    commands.extend_from_slice(servers::XMPP_STREAM);
    commands.extend_from_slice(
        b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>\
          <iq type='get' id='d1' to='localhost'>\
          <query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    piped(
        &pki,
        &[Dialogue {
            name: "prosody",
            starttls: Some("xmpp"),
            port: server.ports[0],
            commands,
            replies: &[b"<success", b"<jid>", b"id='d1'"],
            logout: b"</stream:stream>",
            bye: &[b"</stream:stream>"],
            with_logout: 0,
            without_logout: 0,
            ..Default::default()
        }],
    );
}

#[test]
fn proftpd_ftp() {
    let pki = Pki::new();
    let Some(server) = servers::proftpd(&pki) else {
        return;
    };
    piped(
        &pki,
        &[Dialogue {
            name: "proftpd",
            starttls: Some("ftp"),
            port: server.ports[0],
            commands: b"FEAT\r\nSYST\r\nNOOP\r\n".to_vec(),
            replies: &[
                b"211 End",
                b"215 UNIX Type: L8",
                b"200 NOOP command successful",
            ],
            logout: b"QUIT\r\n",
            bye: &[b"221 Goodbye."],
            with_logout: 0,
            without_logout: 0,
            ..Default::default()
        }],
    );
}

#[test]
fn inspircd_irc() {
    let pki = Pki::new();
    let Some(server) = servers::inspircd(&pki) else {
        return;
    };
    piped(
        &pki,
        &[Dialogue {
            name: "inspircd",
            starttls: Some("irc"),
            port: server.ports[0],
            commands: b"NICK tester\r\nUSER tester 0 * :stls\r\n".to_vec(),
            // The welcome, up to the end of the MOTD.
            replies: &[b" 001 tester :Welcome", b" 422 tester :"],
            logout: b"QUIT :bye\r\n",
            bye: &[b"ERROR :Closing link"],
            // inspircd completes a registration on its next once-a-second tick; a QUIT read
            // before that ends the connection without a welcome.
            cancelled: &[b" 001 tester :Welcome", b" 422 tester :"],
            with_logout: 0,
            without_logout: 0,
        }],
    );
}

#[test]
fn dovecot_imap_typed_on_a_terminal() {
    // A person at a terminal: each command typed once the previous reply is read; the
    // server's answer to LOGOUT ends the session, with no Ctrl-D.
    let pki = Pki::new();
    let Some(server) = servers::dovecot(&pki) else {
        return;
    };
    let mut cmd = stls();
    cmd.args(["connect", "-C", "--starttls", "imap"])
        .arg(format!("localhost:{}", server.ports[0]))
        .args(["--cacert", s(&pki.ca.cert)]);
    let mut client = Proc::spawn(&mut cmd, Input::Terminal);
    client.type_text(b"a LOGIN bob x\n");
    client.wait_stdout_has(b"a OK").unwrap();
    client.type_text(b"b LOGOUT\n");
    // finish() keeps the terminal open until stls has exited (closing it would be a hangup),
    // and calls a hang a failure.
    let done = client.finish();
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(out.contains("* BYE"), "{out}");
    assert!(out.contains("b OK Logout completed"), "{out}");
    done.expect_code(0);
}

/// An HTTPS server (`stls listen -k -c`): for each client, read the request up to its empty
/// line, then send `response` and finish.
fn https_server(pki: &Pki, response: &[u8]) -> Listener {
    let file = write(pki.dir.path(), "response", response);
    let sh = format!("sed '/^\\r*$/q' >/dev/null; cat {}", s(&file));
    serve_k(&pki.server, &["-c", &sh], Input::Null)
}

#[test]
fn an_https_request_through_tinyproxy_and_microsocks() {
    // These proxies drop both directions at the first EOF: the request's end must not reach
    // them before the response has come back.
    let pki = Pki::new();
    let mut response =
        b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
            .to_vec();
    response.extend_from_slice(&random_bytes(100_000, 21));
    let server = https_server(&pki, &response);
    let Some((http, _dir)) = crate::proxies::tinyproxy(None) else {
        return;
    };
    let Some(socks) = crate::proxies::microsocks(None) else {
        return;
    };
    for proxy in [
        format!("http://127.0.0.1:{}", http.port),
        format!("socks5h://127.0.0.1:{}", socks.port),
    ] {
        let mut cmd = stls();
        cmd.args(["connect", &format!("localhost:{}", server.port)])
            .args(["--proxy", &proxy, "--cacert", s(&pki.ca.cert)]);
        without_proxy_env(&mut cmd);
        let done = Proc::spawn(&mut cmd, Input::Bytes(b"GET / HTTP/1.0\r\n\r\n".to_vec())).finish();
        assert_same(&done.stdout, &response, &proxy);
        assert_eq!(done.code(), 0, "through {proxy}; stderr:\n{}", done.stderr);
    }
}

#[test]
fn openssl_s_server_answers_a_piped_request() {
    if !have("openssl") {
        return;
    }
    let pki = Pki::new();
    for version in ["-tls1_2", "-tls1_3"] {
        // s_server sends its stdin: the answer, given once the request has arrived. Then
        // stls, its input ended and the server silent, sends close_notify; s_server answers
        // with its own.
        let port = free_port();
        let mut server = crate::interop::s_server(&pki.server, version, port, Input::Held);
        let mut cmd = stls();
        cmd.args(["connect", &format!("localhost:{port}")])
            .args(["--cacert", s(&pki.ca.cert)]);
        let client = Proc::spawn(&mut cmd, Input::Bytes(b"hello\n".to_vec()));
        server.wait_stdout_has(b"hello\n").unwrap();
        std::io::Write::write_all(server.stdin(), b"answer\n").unwrap();
        let done = client.finish();
        assert_eq!(
            done.stdout, b"answer\n",
            "s_server {version}: {}",
            done.stderr
        );
        assert_eq!(
            done.code(),
            0,
            "s_server {version}; stderr:\n{}",
            done.stderr
        );
        drop(server);

        // s_server -rev answers each line reversed.
        let port = free_port();
        let mut cmd = std::process::Command::new("openssl");
        cmd.args(["s_server", "-rev", "-nbio", "-naccept", "1", version])
            .args(["-accept", &format!("127.0.0.1:{port}")])
            .args(["-cert", s(&pki.server.cert), "-key", s(&pki.server.key)]);
        let _rev = Proc::spawn(&mut cmd, Input::Null);
        wait_listening(port);
        let done = connect(
            &format!("localhost:{port}"),
            &["--cacert", s(&pki.ca.cert)],
            Input::Bytes(b"hello\n".to_vec()),
        );
        assert_eq!(
            done.stdout, b"olleh\n",
            "s_server -rev {version}: {}",
            done.stderr
        );
        assert_eq!(
            done.code(),
            0,
            "s_server -rev {version}; stderr:\n{}",
            done.stderr
        );
    }
}
