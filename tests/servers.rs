//! `--starttls` against real servers from Debian packages, each started here in the
//! foreground on loopback with a config in a temp dir and the test PKI's certificate: postfix
//! (smtp), dovecot (imap, pop3, lmtp, sieve), postgresql, mariadb (mysql), slapd (ldap),
//! prosody (xmpp, xmpp-server), proftpd (ftp) and inspircd (irc). After the handshake each
//! test does one real exchange; `stls inspect --starttls` verifies the same server. A server
//! that is not installed makes its test print SKIP.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::pki::{s, Pki};
use crate::util::*;

/// A running server: its process (killed with its process group when dropped) and its
/// directory.
struct Server {
    _proc: Proc,
    _dir: tempfile::TempDir,
}

fn program(name: &str) -> Option<PathBuf> {
    let found = ["/usr/sbin", "/usr/bin", "/usr/lib/postgresql/15/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .chain(
            std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("bin").join(name)),
        )
        .find(|p| p.exists());
    if found.is_none() {
        eprintln!("SKIP: {name} is not installed; this check did not run");
    }
    found
}

fn start(cmd: &mut Command, dir: tempfile::TempDir, ports: &[u16]) -> Server {
    start_when(cmd, dir, ports, None)
}

/// Start a server, and wait for its ports and, if given, for a line on its stderr that says
/// it is ready (some listen before they serve).
fn start_when(
    cmd: &mut Command,
    dir: tempfile::TempDir,
    ports: &[u16],
    ready: Option<&str>,
) -> Server {
    let proc = Proc::spawn(cmd, Input::Null);
    for &port in ports {
        wait_listening(port);
    }
    if let Some(line) = ready {
        proc.wait_line(line);
    }
    Server {
        _proc: proc,
        _dir: dir,
    }
}

/// `stls connect --starttls PROTO localhost:PORT`: write `request`, wait until the reply
/// holds `expect`, then end stdin; the process as it finished.
fn exchange(pki: &Pki, proto: &str, port: u16, request: &[u8], expect: &[u8]) -> Done {
    let mut cmd = stls();
    cmd.args(["connect", &format!("localhost:{port}"), "--starttls", proto])
        .args(["--cacert", s(&pki.ca.cert)]);
    let mut client = Proc::spawn(&mut cmd, Input::Held);
    client.stdin().write_all(request).unwrap();
    if let Err(e) = client.wait_stdout_has(expect) {
        panic!("{proto} on port {port}: {e}");
    }
    client.close_stdin();
    client.finish()
}

#[test]
fn postfix_smtp() {
    let Some(postfix) = program("postfix") else {
        return;
    };
    let pki = Pki::new();
    let dir = tempdir();
    let d = dir.path();
    let port = free_port();
    for sub in ["conf", "q", "data"] {
        std::fs::create_dir(d.join(sub)).unwrap();
    }
    write(
        &d.join("conf"),
        "main.cf",
        format!(
            "compatibility_level = 3.6\nqueue_directory = {q}\ndata_directory = {data}\n\
             mail_owner = postfix\nmyhostname = mx.stls.test\ninet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\nmydestination =\nalias_maps =\nalias_database =\n\
             smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n\
             smtpd_tls_security_level = may\nmaillog_file = /dev/stdout\n",
            q = s(&d.join("q")),
            data = s(&d.join("data")),
            cert = s(&pki.server.cert),
            key = s(&pki.server.key),
        ),
    );
    let services = [
        ("pickup", "unix  n - n 60 1", "pickup"),
        ("cleanup", "unix n - n - 0", "cleanup"),
        ("qmgr", "unix n - n 300 1", "qmgr"),
        ("tlsmgr", "unix - - n 1000? 1", "tlsmgr"),
        ("rewrite", "unix - - n - -", "trivial-rewrite"),
        ("bounce", "unix - - n - 0", "bounce"),
        ("defer", "unix - - n - 0", "bounce"),
        ("trace", "unix - - n - 0", "bounce"),
        ("verify", "unix - - n - 1", "verify"),
        ("flush", "unix n - n 1000? 0", "flush"),
        ("proxymap", "unix - - n - -", "proxymap"),
        ("smtp", "unix - - n - -", "smtp"),
        ("relay", "unix - - n - -", "smtp"),
        ("showq", "unix n - n - -", "showq"),
        ("error", "unix - - n - -", "error"),
        ("retry", "unix - - n - -", "error"),
        ("discard", "unix - - n - -", "discard"),
        ("local", "unix - n n - -", "local"),
        ("anvil", "unix - - n - 1", "anvil"),
        ("scache", "unix - - n - 1", "scache"),
        ("postlog", "unix-dgram n - n - 1", "postlogd"),
    ];
    let mut master = format!("127.0.0.1:{port} inet n - n - - smtpd\n");
    for (name, kind, daemon) in services {
        master += &format!("{name} {kind} {daemon}\n");
    }
    write(&d.join("conf"), "master.cf", master);
    Command::new("chown")
        .args(["postfix", s(&d.join("data"))])
        .status()
        .unwrap();
    let conf = d.join("conf");
    let _ = Command::new(&postfix)
        .args(["-c", s(&conf), "set-permissions"])
        .output();
    let mut cmd = Command::new(&postfix);
    cmd.args(["-c", s(&conf), "start-fg"]);
    let _server = start(&mut cmd, dir, &[port]);

    let done = exchange(
        &pki,
        "smtp",
        port,
        b"EHLO client.stls.test\r\nQUIT\r\n",
        b"221 2.0.0 Bye",
    );
    done.expect_code(0);
    let reply = String::from_utf8_lossy(&done.stdout);
    // Under TLS the EHLO reply no longer offers STARTTLS.
    assert!(reply.starts_with("250-mx.stls.test\r\n"), "{reply}");
    assert!(!reply.contains("STARTTLS"), "{reply}");
    inspect_starttls_verifies(&pki, "smtp", port);
    // Without --starttls, the greeting is not TLS.
    connect(
        &format!("localhost:{port}"),
        &["--cacert", s(&pki.ca.cert), "-w", "5"],
        Input::Null,
    )
    .expect_code(4);
}

#[test]
fn dovecot_imap_pop3_lmtp_sieve() {
    let Some(dovecot) = program("dovecot") else {
        return;
    };
    let pki = Pki::new();
    let dir = tempdir();
    let d = dir.path();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let conf = format!(
        "protocols = imap pop3 lmtp sieve\nbase_dir = {d}/run\nstate_dir = {d}/state\n\
         log_path = /dev/stderr\nssl = yes\nssl_cert = <{cert}\nssl_key = <{key}\n\
         mail_location = maildir:{d}/mail/%u\n\
         passdb {{\n driver = static\n args = nopassword=y\n}}\n\
         userdb {{\n driver = static\n args = uid=root gid=root home={d}/home/%u\n}}\n\
         service imap-login {{\n inet_listener imap {{\n  address = 127.0.0.1\n  port = {}\n }}\n \
         inet_listener imaps {{\n  port = 0\n }}\n}}\n\
         service pop3-login {{\n inet_listener pop3 {{\n  address = 127.0.0.1\n  port = {}\n }}\n \
         inet_listener pop3s {{\n  port = 0\n }}\n}}\n\
         service lmtp {{\n inet_listener lmtp {{\n  address = 127.0.0.1\n  port = {}\n }}\n}}\n\
         service managesieve-login {{\n inet_listener sieve {{\n  address = 127.0.0.1\n  \
         port = {}\n }}\n}}\n\
         protocol lmtp {{\n ssl = yes\n}}\n",
        ports[0],
        ports[1],
        ports[2],
        ports[3],
        d = s(d),
        cert = s(&pki.server.cert),
        key = s(&pki.server.key),
    );
    write(d, "dovecot.conf", conf);
    for sub in ["run", "state"] {
        std::fs::create_dir(d.join(sub)).unwrap();
    }
    let mut cmd = Command::new(&dovecot);
    cmd.args(["-F", "-c", s(&d.join("dovecot.conf"))]);
    let _server = start(&mut cmd, dir, &ports);

    // One real exchange each: (protocol, request, the reply's end, something the reply says).
    // ManageSieve repeats its capabilities once TLS is up (RFC 5804 §2.2).
    let exchanges: [(&str, &[u8], &[u8], &str); 4] = [
        (
            "imap",
            b"a CAPABILITY\r\nb LOGOUT\r\n",
            b"b OK Logout completed.",
            "* CAPABILITY IMAP4rev1",
        ),
        (
            "pop3",
            b"CAPA\r\nQUIT\r\n",
            b"+OK Logging out",
            "\r\nUIDL\r\n",
        ),
        (
            "lmtp",
            b"LHLO client\r\nQUIT\r\n",
            b"221 2.0.0 Bye",
            "250 PIPELINING",
        ),
        (
            "sieve",
            b"CAPABILITY\r\nLOGOUT\r\n",
            b"OK \"Logout completed.\"",
            "\"IMPLEMENTATION\" \"Dovecot",
        ),
    ];
    for ((proto, request, end, says), port) in exchanges.iter().zip(&ports) {
        let done = exchange(&pki, proto, *port, request, end);
        done.expect_code(0);
        let reply = String::from_utf8_lossy(&done.stdout);
        assert!(reply.contains(says), "{proto}: {reply}");
    }
    for (proto, port) in ["imap", "pop3", "lmtp", "sieve"].iter().zip(&ports) {
        inspect_starttls_verifies(&pki, proto, *port);
    }
}

#[test]
fn postgresql() {
    let (Some(initdb), Some(postgres)) = (program("initdb"), program("postgres")) else {
        return;
    };
    let pki = Pki::new();
    let dir = tempdir();
    let d = dir.path();
    let port = free_port();
    // PostgreSQL will not run as root: its files belong to the postgres user.
    let key = d.join("server.key");
    std::fs::copy(&pki.server.key, &key).unwrap();
    let chown = |p: &Path| {
        Command::new("chown")
            .args(["-R", "postgres", s(p)])
            .status()
            .unwrap()
    };
    Command::new("chmod")
        .args(["600", s(&key)])
        .status()
        .unwrap();
    chown(d);
    let as_postgres = |bin: &Path| {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(bin);
        cmd
    };
    let data = d.join("data");
    let init = as_postgres(&initdb)
        .args(["-D", s(&data), "-A", "trust", "-U", "postgres"])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let mut cmd = as_postgres(&postgres);
    cmd.args(["-D", s(&data)])
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            &format!("port={port}"),
        ])
        .args(["-c", &format!("unix_socket_directories={}", s(d))])
        .args([
            "-c",
            "ssl=on",
            "-c",
            &format!("ssl_cert_file={}", s(&pki.server.cert)),
        ])
        .args(["-c", &format!("ssl_key_file={}", s(&key))]);
    let _server = start_when(
        &mut cmd,
        dir,
        &[port],
        Some("database system is ready to accept connections"),
    );

    // The startup message (protocol 3.0, user and database postgres), then Terminate.
    let params = b"user\0postgres\0database\0postgres\0\0";
    let mut startup = ((params.len() + 8) as u32).to_be_bytes().to_vec();
    startup.extend_from_slice(&196_608u32.to_be_bytes());
    startup.extend_from_slice(params);
    // AuthenticationOk, and ReadyForQuery ('Z', length 5, idle).
    let done = exchange(&pki, "postgres", port, &startup, b"Z\0\0\0\x05I");
    done.expect_code(0);
    assert!(
        done.stdout.starts_with(b"R\0\0\0\x08\0\0\0\0"),
        "{:?}",
        done.stdout
    );
    inspect_starttls_verifies(&pki, "postgres", port);
}

#[test]
fn mariadb_mysql() {
    let (Some(install), Some(mariadbd)) = (program("mariadb-install-db"), program("mariadbd"))
    else {
        return;
    };
    let pki = Pki::new();
    let dir = tempdir();
    let d = dir.path();
    let port = free_port();
    let data = d.join("data");
    let init = Command::new(install)
        .args([
            "--no-defaults",
            &format!("--datadir={}", s(&data)),
            "--user=root",
        ])
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let mut cmd = Command::new(mariadbd);
    cmd.args(["--no-defaults", &format!("--datadir={}", s(&data))])
        .arg(format!("--socket={}", s(&d.join("sock"))))
        .arg(format!("--pid-file={}", s(&d.join("pid"))))
        .args([
            &format!("--port={port}"),
            "--bind-address=127.0.0.1",
            "--user=root",
        ])
        .arg(format!("--ssl-cert={}", s(&pki.server.cert)))
        .arg(format!("--ssl-key={}", s(&pki.server.key)));
    let _server = start_when(&mut cmd, dir, &[port], Some("ready for connections"));

    // The login (HandshakeResponse41, sequence 2 after the SSLRequest, with the SSLRequest's
    // capabilities): root, no password. The answer is an OK packet.
    let mut login = vec![0x85, 0xae, 0x7f, 0x00, 0, 0, 0, 1, 0x21];
    login.extend_from_slice(&[0; 23]);
    login.extend_from_slice(b"root\0\0mysql_native_password\0\0");
    let mut packet = (login.len() as u32).to_le_bytes()[..3].to_vec();
    packet.push(2);
    packet.extend_from_slice(&login);
    let done = exchange(&pki, "mysql", port, &packet, &[0, 0, 3, 0]);
    // MariaDB closes without close_notify (it never sends one): stls says the stream may be
    // truncated, as it must for a peer that does not say it has finished.
    done.expect_code(6)
        .expect_stderr("closed the connection without close_notify");
    assert_eq!(
        done.stdout[..5],
        [7, 0, 0, 3, 0],
        "OK packet: {:?}",
        done.stdout
    );
    inspect_starttls_verifies(&pki, "mysql", port);
}

#[test]
fn slapd_ldap() {
    let Some(slapd) = program("slapd") else {
        return;
    };
    let pki = Pki::new();
    let dir = tempdir();
    let d = dir.path();
    let port = free_port();
    write(
        d,
        "slapd.conf",
        format!(
            "include /etc/ldap/schema/core.schema\npidfile {}\nTLSCertificateFile {}\n\
             TLSCertificateKeyFile {}\n",
            s(&d.join("slapd.pid")),
            s(&pki.server.cert),
            s(&pki.server.key)
        ),
    );
    let mut cmd = Command::new(slapd);
    cmd.args(["-d", "0", "-f", s(&d.join("slapd.conf"))])
        .args(["-h", &format!("ldap://127.0.0.1:{port}/")]);
    let _server = start(&mut cmd, dir, &[port]);

    // An anonymous simple bind (messageID 2); the BindResponse says success.
    let bind = [
        0x30, 0x0c, 0x02, 0x01, 0x02, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00,
    ];
    let success = [0x61, 0x07, 0x0a, 0x01, 0x00];
    let done = exchange(&pki, "ldap", port, &bind, &success);
    done.expect_code(0);
    assert_eq!(done.stdout[..5], [0x30, 0x0c, 0x02, 0x01, 0x02]);
    inspect_starttls_verifies(&pki, "ldap", port);
}

#[test]
fn prosody_xmpp_both_kinds() {
    let Some(prosody) = program("prosody") else {
        return;
    };
    let pki = Pki::new();
    let dir = tempdir();
    let d = dir.path();
    let (c2s, s2s) = (free_port(), free_port());
    std::fs::create_dir(d.join("data")).unwrap();
    write(
        d,
        "prosody.cfg.lua",
        format!(
            "pidfile = \"{d}/prosody.pid\"\ndata_path = \"{d}/data\"\ndaemonize = false\n\
             run_as_root = true\nlog = {{ {{ levels = {{ min = \"warn\" }}, to = \"console\" }} }}\n\
             c2s_ports = {{ {c2s} }}\ns2s_ports = {{ {s2s} }}\ninterfaces = {{ \"127.0.0.1\" }}\n\
             c2s_direct_tls_ports = {{}}\nmodules_enabled = {{ \"tls\", \"saslauth\", \"disco\" }}\n\
             certificates = \"{d}\"\nssl = {{ certificate = \"{cert}\", key = \"{key}\" }}\n\
             c2s_require_encryption = true\ns2s_require_encryption = true\n\
             VirtualHost \"localhost\"\n",
            d = s(d),
            cert = s(&pki.server.cert),
            key = s(&pki.server.key),
        ),
    );
    let mut cmd = Command::new(prosody);
    cmd.args(["--config", s(&d.join("prosody.cfg.lua")), "-F"]);
    let _server = start(&mut cmd, dir, &[c2s, s2s]);

    // Under TLS the stream starts again; the features now offer SASL, not STARTTLS.
    let stream = b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
                   xmlns='jabber:client' to='localhost' version='1.0'>";
    let done = exchange(&pki, "xmpp", c2s, stream, b"</stream:features>");
    let reply = String::from_utf8_lossy(&done.stdout);
    assert!(
        reply.contains("urn:ietf:params:xml:ns:xmpp-sasl"),
        "{reply}"
    );
    assert!(!reply.contains("xmpp-tls"), "{reply}");
    // Our close_notify ends the stream; prosody closes the XML stream and TLS in order.
    done.expect_code(0);
    inspect_starttls_verifies(&pki, "xmpp", c2s);
    inspect_starttls_verifies(&pki, "xmpp-server", s2s);
}

#[test]
fn proftpd_ftp() {
    let Some(proftpd) = program("proftpd") else {
        return;
    };
    let pki = Pki::new();
    let dir = tempdir();
    let d = dir.path();
    let port = free_port();
    write(
        d,
        "proftpd.conf",
        format!(
            "ServerType standalone\nDefaultServer on\nPort {port}\nDefaultAddress 127.0.0.1\n\
             SocketBindTight on\nUseIPv6 off\nUser nobody\nGroup nogroup\nPidFile {d}/pid\n\
             ScoreboardFile {d}/scoreboard\nDelayTable none\nWtmpLog off\nUseReverseDNS off\n\
             LoadModule mod_tls.c\nTLSEngine on\nTLSProtocol TLSv1.2 TLSv1.3\n\
             TLSECCertificateFile {cert}\nTLSECCertificateKeyFile {key}\n\
             TLSOptions NoSessionReuseRequired\n",
            d = s(d),
            cert = s(&pki.server.cert),
            key = s(&pki.server.key),
        ),
    );
    let mut cmd = Command::new(proftpd);
    cmd.args(["-n", "-c", s(&d.join("proftpd.conf"))]);
    let _server = start(&mut cmd, dir, &[port]);

    let done = exchange(&pki, "ftp", port, b"FEAT\r\nQUIT\r\n", b"221 Goodbye.");
    done.expect_code(0);
    assert!(String::from_utf8_lossy(&done.stdout).starts_with("211-Features:"));
    inspect_starttls_verifies(&pki, "ftp", port);
}

#[test]
fn inspircd_irc() {
    let Some(inspircd) = program("inspircd") else {
        return;
    };
    let pki = Pki::new();
    let dir = tempdir();
    let d = dir.path();
    let port = free_port();
    write(
        d,
        "inspircd.conf",
        format!(
            "<server name=\"irc.stls.test\" description=\"test\" network=\"Test\">\n\
             <admin name=\"a\" nick=\"a\" email=\"a@b\">\n\
             <bind address=\"127.0.0.1\" port=\"{port}\" type=\"clients\">\n\
             <connect allow=\"*\" timeout=\"60\" localmax=\"100\" globalmax=\"100\" \
             useident=\"no\" resolvehostnames=\"no\">\n\
             <pid file=\"{d}/inspircd.pid\">\n<options>\n<performance nouserdns=\"yes\">\n\
             <module name=\"ssl_gnutls\">\n<module name=\"starttls\">\n\
             <sslprofile name=\"Clients\" provider=\"gnutls\" certfile=\"{cert}\" \
             keyfile=\"{key}\" dhfile=\"\" hash=\"sha256\" requestclientcert=\"no\">\n\
             <starttls enabled=\"yes\" provider=\"Clients\">\n",
            d = s(d),
            cert = s(&pki.server.cert),
            key = s(&pki.server.key),
        ),
    );
    let mut cmd = Command::new(inspircd);
    cmd.args([
        "--nofork",
        "--runasroot",
        "--config",
        s(&d.join("inspircd.conf")),
    ]);
    let _server = start(&mut cmd, dir, &[port]);

    let done = exchange(
        &pki,
        "irc",
        port,
        b"NICK tester\r\nUSER tester 0 * :stls\r\n",
        b" 001 tester :Welcome",
    );
    done.expect_code(0);
    inspect_starttls_verifies(&pki, "irc", port);
}
