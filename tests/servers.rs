//! `--starttls` against real servers from Debian packages, each started here in the
//! foreground on loopback with a config in a temp dir and the test PKI's certificate: postfix
//! (smtp), dovecot (imap, pop3, lmtp, sieve), postgresql, mariadb (mysql), slapd (ldap),
//! prosody (xmpp, xmpp-server), proftpd (ftp) and inspircd (irc). After the handshake each
//! test does one real exchange; `stls inspect --starttls` verifies the same server. A server
//! that is not installed makes its test print SKIP. The starters are shared with
//! `sessions.rs`, which runs whole sessions against the same servers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::pki::{s, Pki};
use crate::util::*;

/// A running server and its directory; `ports` in the order its starter documents. Dropping
/// it stops every process the server started, including those that left its process group
/// (postfix's master makes itself a session leader).
pub(crate) struct Server {
    proc: Proc,
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        stop_tree(self.proc.pid());
    }
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
    let server = Server {
        proc,
        ports: ports.to_vec(),
        _dir: dir,
    };
    for &port in ports {
        wait_listening(port);
    }
    if let Some(line) = ready {
        server.proc.wait_line(line);
    }
    server
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

/// postfix: ports [smtp with STARTTLS, smtps (implicit TLS, `smtpd_tls_wrappermode`)].
pub(crate) fn postfix(pki: &Pki) -> Option<Server> {
    let postfix = program("postfix")?;
    let dir = tempdir();
    let d = dir.path();
    let (port, smtps) = (free_port(), free_port());
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
    let mut master = format!(
        "127.0.0.1:{port} inet n - n - - smtpd\n\
         127.0.0.1:{smtps} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes\n"
    );
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
    Some(start(&mut cmd, dir, &[port, smtps]))
}

#[test]
fn postfix_smtp() {
    let pki = Pki::new();
    let Some(server) = postfix(&pki) else {
        return;
    };
    let port = server.ports[0];
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

/// dovecot: ports [imap, pop3, lmtp, sieve (all with STARTTLS), imaps, pop3s]. Any user logs
/// in with any password.
pub(crate) fn dovecot(pki: &Pki) -> Option<Server> {
    let dovecot = program("dovecot")?;
    let dir = tempdir();
    let d = dir.path();
    let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
    let conf = format!(
        "protocols = imap pop3 lmtp sieve\nbase_dir = {d}/run\nstate_dir = {d}/state\n\
         log_path = /dev/stderr\nssl = yes\nssl_cert = <{cert}\nssl_key = <{key}\n\
         mail_location = maildir:{d}/mail/%u\n\
         passdb {{\n driver = static\n args = nopassword=y\n}}\n\
         userdb {{\n driver = static\n args = uid=nobody gid=nogroup home={d}/home/%u\n}}\n\
         service imap-login {{\n inet_listener imap {{\n  address = 127.0.0.1\n  port = {}\n }}\n \
         inet_listener imaps {{\n  address = 127.0.0.1\n  port = {}\n }}\n}}\n\
         service pop3-login {{\n inet_listener pop3 {{\n  address = 127.0.0.1\n  port = {}\n }}\n \
         inet_listener pop3s {{\n  address = 127.0.0.1\n  port = {}\n }}\n}}\n\
         service lmtp {{\n inet_listener lmtp {{\n  address = 127.0.0.1\n  port = {}\n }}\n}}\n\
         service managesieve-login {{\n inet_listener sieve {{\n  address = 127.0.0.1\n  \
         port = {}\n }}\n}}\n\
         protocol lmtp {{\n ssl = yes\n}}\n",
        ports[0],
        ports[4],
        ports[1],
        ports[5],
        ports[2],
        ports[3],
        d = s(d),
        cert = s(&pki.server.cert),
        key = s(&pki.server.key),
    );
    write(d, "dovecot.conf", conf);
    for sub in ["run", "state", "mail", "home"] {
        std::fs::create_dir(d.join(sub)).unwrap();
    }
    // Dovecot refuses mail access as root: the users' mail and homes belong to nobody.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    Command::new("chown")
        .args(["nobody:nogroup", s(&d.join("mail")), s(&d.join("home"))])
        .status()
        .unwrap();
    let mut cmd = Command::new(&dovecot);
    cmd.args(["-F", "-c", s(&d.join("dovecot.conf"))]);
    Some(start(&mut cmd, dir, &ports))
}

#[test]
fn dovecot_imap_pop3_lmtp_sieve() {
    let pki = Pki::new();
    let Some(server) = dovecot(&pki) else {
        return;
    };
    let ports = &server.ports[..4];

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
    for ((proto, request, end, says), port) in exchanges.iter().zip(ports) {
        let done = exchange(&pki, proto, *port, request, end);
        done.expect_code(0);
        let reply = String::from_utf8_lossy(&done.stdout);
        assert!(reply.contains(says), "{proto}: {reply}");
    }
    for (proto, port) in ["imap", "pop3", "lmtp", "sieve"].iter().zip(ports) {
        inspect_starttls_verifies(&pki, proto, *port);
    }
}

/// postgresql: ports [the one], user and database `postgres`, trusted.
pub(crate) fn postgres(pki: &Pki) -> Option<Server> {
    let (initdb, postgres) = (program("initdb")?, program("postgres")?);
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
    Some(start_when(
        &mut cmd,
        dir,
        &[port],
        Some("database system is ready to accept connections"),
    ))
}

/// PostgreSQL's StartupMessage: protocol 3.0, user and database postgres.
pub(crate) fn postgres_startup() -> Vec<u8> {
    let params = b"user\0postgres\0database\0postgres\0\0";
    let mut startup = ((params.len() + 8) as u32).to_be_bytes().to_vec();
    startup.extend_from_slice(&196_608u32.to_be_bytes());
    startup.extend_from_slice(params);
    startup
}

#[test]
fn postgresql() {
    let pki = Pki::new();
    let Some(server) = postgres(&pki) else {
        return;
    };
    let port = server.ports[0];
    // AuthenticationOk, and ReadyForQuery ('Z', length 5, idle).
    let done = exchange(&pki, "postgres", port, &postgres_startup(), b"Z\0\0\0\x05I");
    done.expect_code(0);
    assert!(
        done.stdout.starts_with(b"R\0\0\0\x08\0\0\0\0"),
        "{:?}",
        done.stdout
    );
    inspect_starttls_verifies(&pki, "postgres", port);
}

/// mariadb: ports [the one]; root logs in without a password.
pub(crate) fn mariadb(pki: &Pki) -> Option<Server> {
    let (install, mariadbd) = (program("mariadb-install-db")?, program("mariadbd")?);
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
    Some(start_when(
        &mut cmd,
        dir,
        &[port],
        Some("ready for connections"),
    ))
}

/// The MySQL login packet (HandshakeResponse41, sequence 2 after the SSLRequest, with the
/// SSLRequest's capabilities): root, no password. The answer is an OK packet.
pub(crate) fn mysql_login() -> Vec<u8> {
    let mut login = vec![0x85, 0xae, 0x7f, 0x00, 0, 0, 0, 1, 0x21];
    login.extend_from_slice(&[0; 23]);
    login.extend_from_slice(b"root\0\0mysql_native_password\0\0");
    let mut packet = (login.len() as u32).to_le_bytes()[..3].to_vec();
    packet.push(2);
    packet.extend_from_slice(&login);
    packet
}

#[test]
fn mariadb_mysql() {
    let pki = Pki::new();
    let Some(server) = mariadb(&pki) else {
        return;
    };
    let port = server.ports[0];
    let done = exchange(&pki, "mysql", port, &mysql_login(), &[0, 0, 3, 0]);
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

/// slapd: ports [the one]; anonymous binds, the root DSE readable.
pub(crate) fn slapd(pki: &Pki) -> Option<Server> {
    let slapd = program("slapd")?;
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
    Some(start(&mut cmd, dir, &[port]))
}

/// An LDAP anonymous simple bind, messageID 2 (after StartTLS's 1).
pub(crate) const LDAP_BIND: [u8; 14] = [
    0x30, 0x0c, 0x02, 0x01, 0x02, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00,
];

#[test]
fn slapd_ldap() {
    let pki = Pki::new();
    let Some(server) = slapd(&pki) else {
        return;
    };
    let port = server.ports[0];
    // The BindResponse says success.
    let success = [0x61, 0x07, 0x0a, 0x01, 0x00];
    let done = exchange(&pki, "ldap", port, &LDAP_BIND, &success);
    done.expect_code(0);
    assert_eq!(done.stdout[..5], [0x30, 0x0c, 0x02, 0x01, 0x02]);
    inspect_starttls_verifies(&pki, "ldap", port);
}

/// prosody: ports [c2s, s2s], both with STARTTLS; virtual host `localhost`, where SASL
/// ANONYMOUS logs in.
pub(crate) fn prosody(pki: &Pki) -> Option<Server> {
    let prosody = program("prosody")?;
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
             VirtualHost \"localhost\"\nauthentication = \"anonymous\"\n",
            d = s(d),
            cert = s(&pki.server.cert),
            key = s(&pki.server.key),
        ),
    );
    let mut cmd = Command::new(prosody);
    cmd.args(["--config", s(&d.join("prosody.cfg.lua")), "-F"]);
    Some(start(&mut cmd, dir, &[c2s, s2s]))
}

/// The opening of a client's XMPP stream to localhost.
pub(crate) const XMPP_STREAM: &[u8] =
    b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
                   xmlns='jabber:client' to='localhost' version='1.0'>";

#[test]
fn prosody_xmpp_both_kinds() {
    let pki = Pki::new();
    let Some(server) = prosody(&pki) else {
        return;
    };
    let (c2s, s2s) = (server.ports[0], server.ports[1]);
    // Under TLS the stream starts again; the features now offer SASL, not STARTTLS.
    let done = exchange(&pki, "xmpp", c2s, XMPP_STREAM, b"</stream:features>");
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

/// proftpd: ports [the one], with AUTH TLS.
pub(crate) fn proftpd(pki: &Pki) -> Option<Server> {
    let proftpd = program("proftpd")?;
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
    Some(start(&mut cmd, dir, &[port]))
}

#[test]
fn proftpd_ftp() {
    let pki = Pki::new();
    let Some(server) = proftpd(&pki) else {
        return;
    };
    let port = server.ports[0];
    let done = exchange(&pki, "ftp", port, b"FEAT\r\nQUIT\r\n", b"221 Goodbye.");
    done.expect_code(0);
    assert!(String::from_utf8_lossy(&done.stdout).starts_with("211-Features:"));
    inspect_starttls_verifies(&pki, "ftp", port);
}

/// inspircd: ports [the one], with STARTTLS; server name irc.stls.test.
pub(crate) fn inspircd(pki: &Pki) -> Option<Server> {
    let inspircd = program("inspircd")?;
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
    Some(start(&mut cmd, dir, &[port]))
}

#[test]
fn inspircd_irc() {
    let pki = Pki::new();
    let Some(server) = inspircd(&pki) else {
        return;
    };
    let port = server.ports[0];
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
