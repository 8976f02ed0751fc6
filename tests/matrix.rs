//! The interop matrix: stls against every other TLS implementation installed here, over
//! TLS 1.2 and 1.3, with ECDSA P-256, RSA-2048 and Ed25519 certificates, with and without
//! client certificates, and with ALPN. Every cell moves known data both ways (as an echo, or
//! one transfer each way) and compares it byte for byte.
//!
//! Each test runs its whole row and then reports every cell, so one failure does not hide
//! the others. A peer that is not installed prints a SKIP line.

use crate::util;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use util::pki::{s, KeyType, Leaf, Pki, VALID};
use util::{connect, free_port, have, random_bytes, stls, wait_listening, Done, Input, Proc};

const KEYS: [KeyType; 3] = [KeyType::P256, KeyType::Rsa2048, KeyType::Ed25519];
const VERSIONS: [&str; 2] = ["1.2", "1.3"];

/// The certificates every cell uses: one server leaf per key type, a client leaf.
struct Setup {
    pki: Pki,
    leaves: Vec<(KeyType, Leaf)>,
    client: Leaf,
}

impl Setup {
    fn new() -> Setup {
        let pki = Pki::new();
        let leaves = KEYS
            .iter()
            .map(|&k| {
                let file = format!("srv-{k:?}").to_lowercase();
                (k, pki.ca.server(&file, &["localhost"], k, VALID))
            })
            .collect();
        let client = pki.ca.client("alice", "alice", KeyType::P256, VALID);
        Setup {
            pki,
            leaves,
            client,
        }
    }

    fn ca(&self) -> &str {
        s(&self.pki.ca.cert)
    }

    /// One cell for every key type × TLS version × with and without a client certificate.
    fn each(
        &self,
        row: &mut Row,
        what: &str,
        suffix: &str,
        mut cell: impl FnMut(&Leaf, &'static str, bool) -> Result<(), String>,
    ) {
        for (key, leaf) in &self.leaves {
            for version in VERSIONS {
                for mtls in [false, true] {
                    let name = format!("{what} TLS{version} {key:?} mtls={mtls}{suffix}");
                    row.cell(name, || cell(leaf, version, mtls));
                }
            }
        }
    }
}

/// Results of a row of cells.
#[derive(Default)]
struct Row {
    cells: Vec<(String, Result<(), String>)>,
}

impl Row {
    fn cell(&mut self, name: String, f: impl FnOnce() -> Result<(), String>) {
        let result = f();
        self.cells.push((name, result));
    }

    /// Print every cell; fail if any failed.
    fn report(self) {
        let mut failed = 0;
        for (name, result) in &self.cells {
            match result {
                Ok(()) => eprintln!("CELL ok    {name}"),
                Err(e) => {
                    failed += 1;
                    eprintln!("CELL FAIL  {name}: {e}");
                }
            }
        }
        assert_eq!(failed, 0, "{failed} of {} cells failed", self.cells.len());
    }
}

fn same(got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    let at = got.iter().zip(want).take_while(|(a, b)| a == b).count();
    Err(format!(
        "{} bytes arrived, {} expected, first difference at {at}",
        got.len(),
        want.len()
    ))
}

/// ncat ends TLS with a bare TCP close, sometimes a reset, sometimes before it has sent all
/// it read: stls must say so (6, or 3 for a reset), and what it wrote must be exactly a prefix
/// of what was sent. A clean close (0) must bring everything.
fn cut_short(done: &Done, sent: &[u8], who: &str) -> Result<(), String> {
    match done.code() {
        0 => same(&done.stdout, sent).map_err(|e| format!("{who} exited 0: {e}")),
        3 | 6 => same(&done.stdout, &sent[..done.stdout.len().min(sent.len())]),
        _ => status(done, 6, who),
    }
}

fn status(done: &Done, want: i32, who: &str) -> Result<(), String> {
    if done.code() == want {
        Ok(())
    } else {
        Err(format!(
            "{who} exited {} (expected {want}): {}",
            done.code(),
            done.stderr.trim()
        ))
    }
}

/// `stls listen` on a free port with the leaf, as a process; returns it and its port.
fn listen(leaf: &Leaf, extra: &[&str], input: Input) -> (Proc, u16) {
    let mut cmd = stls();
    cmd.args([
        "listen",
        "127.0.0.1:0",
        "--cert",
        s(&leaf.cert),
        "--key",
        s(&leaf.key),
    ])
    .args(extra);
    let l = util::Listener::start_cmd(&mut cmd, input);
    (l.proc, l.port)
}

fn run_peer(cmd: &mut Command, input: Input) -> Done {
    Proc::spawn(cmd, input).finish()
}

/// Run a client of an echo service as a person would under TLS 1.2, where close_notify ends
/// both directions: send the data, wait for all of the echo, then end the input.
fn echo_then_eof(cmd: &mut Command, data: &[u8]) -> Result<Done, String> {
    let mut c = Proc::spawn(cmd, Input::Held);
    c.stdin().write_all(data).map_err(|e| e.to_string())?;
    c.wait_stdout(data.len())?;
    c.close_stdin();
    Ok(c.finish())
}

/// Pin stls to one TLS version.
fn tls_flags(version: &'static str) -> [&'static str; 4] {
    ["--tls-min", version, "--tls-max", version]
}

// ------------------------------------------------------------------ stls connect → server

/// Text lines to echo: what a terminal carries (TLS 1.2 echo cells type it).
fn text_lines(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("line {i} {:x}\n", i * 7919).into_bytes())
        .collect()
}

/// `stls connect` to a peer server already listening on `port`, sending `data` and
/// expecting it echoed back. Under TLS 1.3 `data` is piped in and the pipe's EOF ends our
/// direction only. Under TLS 1.2 close_notify would end the echo too, so stls holds it at a
/// pipe's EOF: there, as a person would, the text is typed and Ctrl-D follows the echo.
fn connect_echo(
    port: u16,
    st: &Setup,
    version: &'static str,
    mtls: bool,
    data: &[u8],
) -> Result<(), String> {
    let mut args = vec!["--cacert", st.ca(), "-v"];
    args.extend(tls_flags(version));
    if mtls {
        args.extend(["--cert", s(&st.client.cert), "--key", s(&st.client.key)]);
    }
    let mut cmd = stls();
    cmd.arg("connect")
        .arg(format!("localhost:{port}"))
        .args(&args);
    let done = if version == "1.2" {
        let mut c = Proc::spawn(&mut cmd, Input::Terminal);
        c.type_text(data);
        c.wait_stdout(data.len())?;
        c.type_eof();
        c.finish()
    } else {
        Proc::spawn(&mut cmd, Input::Bytes(data.to_vec())).finish()
    };
    status(&done, 0, "stls connect")?;
    if !done.stderr.contains(&format!("TLSv{version}")) {
        return Err(format!("not TLS {version}: {}", done.stderr));
    }
    same(&done.stdout, data)
}

/// What a side that only sends adds under TLS 1.2: there close_notify ends both directions, so
/// stls holds it at the end of a pipe's input until the peer closes, unless told that nothing
/// is expected back. Under TLS 1.3 the plain command is tested.
fn sends_only(version: &str) -> &'static [&'static str] {
    if version == "1.2" {
        &["--send-only"]
    } else {
        &[]
    }
}

/// How a receiving stls ends its input once everything arrived: under TLS 1.3 a pipe's EOF
/// closes our direction only; under TLS 1.2 that waits for the peer, so a person's Ctrl-D on
/// a terminal is what ends the connection.
fn receiver_input(version: &str) -> Input {
    if version == "1.2" {
        Input::Terminal
    } else {
        Input::Held
    }
}

fn end_input(proc: &mut Proc, version: &str) {
    if version == "1.2" {
        proc.type_eof();
    } else {
        proc.close_stdin();
    }
}

/// openssl's flag for one TLS version ("1.2" or "1.3").
fn openssl_version_flag(version: &str) -> &'static str {
    if version == "1.2" {
        "-tls1_2"
    } else {
        "-tls1_3"
    }
}

/// socat's address options for exactly one TLS version ("1.2" or "1.3").
fn socat_version(version: &str) -> String {
    format!(",openssl-min-proto-version=TLS{version},openssl-max-proto-version=TLS{version}")
}

#[test]
fn connect_to_openssl_s_server() {
    if !have("openssl") {
        return;
    }
    let st = Setup::new();
    let mut row = Row::default();
    st.each(
        &mut row,
        "stls connect → openssl s_server",
        "",
        |leaf, version, mtls| {
            let vflag = openssl_version_flag(version);
            let server = |port: u16, input: Input| {
                let mut cmd = Command::new("openssl");
                // -nbio: see interop.rs (a blocking s_server can stall after one chunk).
                cmd.args(["s_server", "-nbio", "-quiet", "-naccept", "1", vflag])
                    .args(["-accept", &format!("127.0.0.1:{port}")])
                    .args(["-cert", s(&leaf.cert), "-key", s(&leaf.key)]);
                if mtls {
                    cmd.args(["-Verify", "1", "-verify_return_error", "-CAfile", st.ca()]);
                }
                let p = Proc::spawn(&mut cmd, input);
                wait_listening(port);
                p
            };
            let mut args = vec!["--cacert", st.ca()];
            args.extend(tls_flags(version));
            if mtls {
                args.extend(["--cert", s(&st.client.cert), "--key", s(&st.client.key)]);
            }
            // Up: s_server prints what it gets (its stdin stays open meanwhile).
            let up = random_bytes(256 * 1024, 1);
            let port = free_port();
            let srv = server(port, Input::Held);
            let mut up_args = args.clone();
            up_args.extend(sends_only(version));
            let c = connect(
                &format!("localhost:{port}"),
                &up_args,
                Input::Bytes(up.clone()),
            );
            status(&c, 0, "stls connect (up)")?;
            let srv = srv.finish_or_kill(Duration::from_secs(10));
            status(&srv, 0, "s_server (up)")?;
            same(&srv.stdout, &up)?;
            // Down: s_server sends its stdin and keeps the connection; once every byte is
            // through, stls's stdin ends and both sides exchange close_notify.
            let down = random_bytes(256 * 1024, 2);
            let port = free_port();
            let srv = server(port, Input::Bytes(down.clone()));
            let mut cmd = stls();
            cmd.args(["connect", &format!("localhost:{port}")])
                .args(&args);
            let mut c = Proc::spawn(&mut cmd, receiver_input(version));
            c.wait_stdout(down.len())?;
            end_input(&mut c, version);
            let c = c.finish();
            status(&c, 0, "stls connect (down)")?;
            same(&c.stdout, &down)?;
            status(
                &srv.finish_or_kill(Duration::from_secs(10)),
                0,
                "s_server (down)",
            )?;
            Ok(())
        },
    );
    row.cell("stls connect → openssl s_server ALPN".into(), || {
        let port = free_port();
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_server", "-nbio", "-quiet", "-naccept", "1", "-alpn", "x-stls",
        ])
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .args([
            "-cert",
            s(&st.pki.server.cert),
            "-key",
            s(&st.pki.server.key),
        ]);
        let srv = Proc::spawn(&mut cmd, Input::Held);
        wait_listening(port);
        let c = connect(
            &format!("localhost:{port}"),
            &[
                "--cacert",
                st.ca(),
                "--alpn",
                "h2",
                "--alpn",
                "x-stls",
                "-v",
            ],
            Input::Bytes(b"alpn\n".to_vec()),
        );
        status(&c, 0, "stls connect")?;
        if !c.stderr.contains("ALPN x-stls") {
            return Err(format!("ALPN not agreed: {}", c.stderr));
        }
        same(&srv.finish().stdout, b"alpn\n")
    });
    row.report();
}

#[test]
fn connect_to_gnutls_serv() {
    if !have("gnutls-serv") {
        return;
    }
    let st = Setup::new();
    let mut row = Row::default();
    // gnutls-serv --echo echoes text lines.
    let text = text_lines(400);
    st.each(
        &mut row,
        "stls connect → gnutls-serv",
        "",
        |leaf, version, mtls| {
            let port = free_port();
            let prio = format!("NORMAL:-VERS-ALL:+VERS-TLS{version}");
            let mut cmd = Command::new("gnutls-serv");
            cmd.args(["--echo", "-q", "-p", &port.to_string(), "--priority", &prio])
                .args([
                    "--x509certfile",
                    s(&leaf.cert),
                    "--x509keyfile",
                    s(&leaf.key),
                ]);
            if mtls {
                cmd.args(["--require-client-cert", "--x509cafile", st.ca()]);
            }
            let srv = Proc::spawn(&mut cmd, Input::Null);
            wait_listening(port);
            let r = connect_echo(port, &st, version, mtls, &text);
            drop(srv);
            r
        },
    );
    row.report();
}

#[test]
fn connect_to_ncat_and_socat_servers() {
    let st = Setup::new();
    let mut row = Row::default();
    if have("ncat") {
        // ncat answers close_notify by closing at once, so an echo through `ncat -e cat`
        // loses the reply: one transfer each way instead.
        let data = random_bytes(256 * 1024, 3);
        for (key, leaf) in &st.leaves {
            row.cell(format!("stls connect → ncat --ssl -l {key:?}"), || {
                let server = |port: u16, mode: &str, input: Input| {
                    let mut cmd = Command::new("ncat");
                    cmd.args([
                        "--ssl",
                        "--ssl-cert",
                        s(&leaf.cert),
                        "--ssl-key",
                        s(&leaf.key),
                    ])
                    .args([mode, "-l", "127.0.0.1", &port.to_string()]);
                    let p = Proc::spawn(&mut cmd, input);
                    wait_listening(port);
                    p
                };
                let to = |port: u16| format!("localhost:{port}");
                let port = free_port();
                let srv = server(port, "--recv-only", Input::Null);
                let c = connect(
                    &to(port),
                    &["--cacert", st.ca()],
                    Input::Bytes(data.clone()),
                );
                // ncat ends without close_notify, at once (it reads its own stdin even with
                // --recv-only, and shuts down at its EOF): stls must say so, 6 if our input had
                // all been sent by then, 3 if some of it was still to go (not delivered).
                let why = c.stderr.contains("while our input was still being sent");
                if !(c.code() == 3 && why) {
                    status(&c, 6, "stls connect (up)")?;
                }
                // ncat --recv-only itself drops the tail of a TLS stream whose close follows
                // the data closely (openssl s_client → ncat does the same): check a prefix.
                let got = srv.finish().stdout;
                same(&got, &data[..got.len().min(data.len())])
                    .map_err(|e| format!("up, at ncat: {e}"))?;
                let port = free_port();
                let srv = server(port, "--send-only", Input::Bytes(data.clone()));
                let c = connect(&to(port), &["--cacert", st.ca()], Input::Held);
                srv.finish();
                cut_short(&c, &data, "stls connect (down)")
            });
        }
    }
    if have("socat") {
        let binary = random_bytes(512 * 1024, 4);
        let text = text_lines(20_000);
        st.each(
            &mut row,
            "stls connect → socat OPENSSL-LISTEN",
            "",
            |leaf, version, mtls| {
                let port = free_port();
                let verify = if mtls {
                    format!("verify=1,cafile={}", st.ca())
                } else {
                    "verify=0".into()
                };
                let spec = format!(
                    "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,cert={},key={},{verify}{}",
                    s(&leaf.cert),
                    s(&leaf.key),
                    socat_version(version)
                );
                let mut cmd = Command::new("socat");
                cmd.args([spec.as_str(), "EXEC:cat"]);
                let srv = Proc::spawn(&mut cmd, Input::Null);
                wait_listening(port);
                let data = if version == "1.2" { &text } else { &binary };
                let r = connect_echo(port, &st, version, mtls, data);
                drop(srv);
                r
            },
        );
    }
    row.report();
}

// ------------------------------------------------------------------ client → stls listen

/// `stls listen -e cat` for a client that sends data and reads the echo.
fn echo_listener(st: &Setup, leaf: &Leaf, version: &'static str, mtls: bool) -> (Proc, u16) {
    let mut args = vec!["-e", "cat", "-v"];
    args.extend(tls_flags(version));
    if mtls {
        args.extend(["--client-ca", st.ca()]);
    }
    listen(leaf, &args, Input::Null)
}

/// After an echo: the listener saw the right version and (with mTLS) the client.
fn listener_saw(l: Proc, version: &str, mtls: bool) -> Result<(), String> {
    let done = l.finish();
    status(&done, 0, "stls listen")?;
    if !done.stderr.contains(&format!("TLSv{version}")) {
        return Err(format!("not TLS {version}: {}", done.stderr));
    }
    if mtls && !done.stderr.contains("CN=alice") {
        return Err(format!("client identity not shown: {}", done.stderr));
    }
    Ok(())
}

#[test]
fn openssl_s_client_to_listen() {
    if !have("openssl") {
        return;
    }
    let st = Setup::new();
    let mut row = Row::default();
    st.each(
        &mut row,
        "openssl s_client → stls listen",
        "",
        |leaf, version, mtls| {
            let vflag = openssl_version_flag(version);
            let mut args = vec!["-v"];
            args.extend(tls_flags(version));
            if mtls {
                args.extend(["--client-ca", st.ca()]);
            }
            let client = |port: u16, extra: &[&str], input: Input| {
                let mut cmd = Command::new("openssl");
                cmd.args(["s_client", "-quiet", "-nocommands", vflag])
                    .args(["-connect", &format!("127.0.0.1:{port}")])
                    .args(["-servername", "localhost", "-verify_hostname", "localhost"])
                    .args(["-CAfile", st.ca(), "-verify_return_error"])
                    .args(extra);
                if mtls {
                    cmd.args(["-cert", s(&st.client.cert), "-key", s(&st.client.key)]);
                }
                run_peer(&mut cmd, input)
            };
            let up = random_bytes(256 * 1024, 5);
            let (l, port) = listen(leaf, &args, Input::Held);
            status(
                &client(port, &["-no_ign_eof"], Input::Bytes(up.clone())),
                0,
                "s_client",
            )?;
            let done = l.finish();
            status(&done, 0, "stls listen (up)")?;
            same(&done.stdout, &up)?;
            let down = random_bytes(256 * 1024, 6);
            let mut down_args = args.clone();
            down_args.extend(sends_only(version));
            let (l, port) = listen(leaf, &down_args, Input::Bytes(down.clone()));
            let c = client(port, &[], Input::Null);
            status(&c, 0, "s_client")?;
            same(&c.stdout, &down)?;
            listener_saw(l, version, mtls)
        },
    );
    row.report();
}

#[test]
fn gnutls_cli_to_listen() {
    if !have("gnutls-cli") {
        return;
    }
    let st = Setup::new();
    let mut row = Row::default();
    let data = random_bytes(256 * 1024, 7);
    st.each(
        &mut row,
        "gnutls-cli → stls listen -e cat",
        "",
        |leaf, version, mtls| {
            let (l, port) = echo_listener(&st, leaf, version, mtls);
            let mut cmd = Command::new("gnutls-cli");
            cmd.args(["--logfile=/dev/null", "--x509cafile", st.ca()])
                .args([
                    "--priority",
                    &format!("NORMAL:-VERS-ALL:+VERS-TLS{version}"),
                ])
                .args(["-p", &port.to_string(), "localhost"]);
            if mtls {
                cmd.args(["--x509certfile", s(&st.client.cert)])
                    .args(["--x509keyfile", s(&st.client.key)]);
            }
            // gnutls-cli sends close_notify at its stdin's EOF; under TLS 1.2 that ends the
            // whole connection.
            let c = echo_then_eof(&mut cmd, &data)?;
            status(&c, 0, "gnutls-cli")?;
            same(&c.stdout, &data)?;
            listener_saw(l, version, mtls)
        },
    );
    row.report();
}

#[test]
fn ncat_and_socat_clients_to_listen() {
    let st = Setup::new();
    let mut row = Row::default();
    let data = random_bytes(256 * 1024, 8);
    if have("ncat") {
        for (key, leaf) in &st.leaves {
            // ncat ends its connection at stdin EOF without close_notify and without waiting
            // for the reply, so it gets one transfer each way rather than an echo.
            row.cell(format!("ncat --ssl → stls listen {key:?}"), || {
                let ncat = |port: u16, extra: &[&str], input: Input| {
                    let mut cmd = Command::new("ncat");
                    cmd.args(["--ssl", "--ssl-verify", "--ssl-trustfile", st.ca()])
                        .args(extra)
                        .args(["localhost", &port.to_string()]);
                    run_peer(&mut cmd, input)
                };
                // The receiving side says it only receives: it ends when ncat's stream does,
                // although its own stdin (a pipe) stays open.
                let (l, port) = listen(leaf, &["--recv-only"], Input::Held);
                status(
                    &ncat(port, &["--send-only"], Input::Bytes(data.clone())),
                    0,
                    "ncat",
                )?;
                cut_short(&l.finish(), &data, "stls listen (up)")?;
                let (l, port) = listen(leaf, &[], Input::Bytes(data.clone()));
                let c = ncat(port, &["--recv-only"], Input::Null);
                status(&c, 0, "ncat")?;
                same(&c.stdout, &data)?;
                status(&l.finish(), 0, "stls listen (down)")
            });
        }
    }
    if have("socat") {
        st.each(
            &mut row,
            "socat OPENSSL → stls listen -e cat",
            "",
            |leaf, version, mtls| {
                let (l, port) = echo_listener(&st, leaf, version, mtls);
                let mut spec = format!(
                    "OPENSSL:localhost:{port},cafile={}{}",
                    st.ca(),
                    socat_version(version)
                );
                if mtls {
                    spec += &format!(",cert={},key={}", s(&st.client.cert), s(&st.client.key));
                }
                // -t: how long socat waits for the echo after its stdin ends. Its close_notify
                // at stdin EOF ends the whole connection under TLS 1.2.
                let mut cmd = Command::new("socat");
                cmd.args(["-t", "10", "-", &spec]);
                let c = if version == "1.2" {
                    echo_then_eof(&mut cmd, &data)?
                } else {
                    run_peer(&mut cmd, Input::Bytes(data.clone()))
                };
                status(&c, 0, "socat")?;
                same(&c.stdout, &data)?;
                listener_saw(l, version, mtls)
            },
        );
    }
    row.report();
}

#[test]
fn curl_to_listen() {
    if !have("curl") {
        return;
    }
    let st = Setup::new();
    let mut row = Row::default();
    let body = random_bytes(100 * 1024, 9);
    let upload = random_bytes(64 * 1024, 10);
    let dir = util::tempdir();
    let upfile = util::write(dir.path(), "up.bin", &upload);
    let mut reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    reply.extend_from_slice(&body);
    let replyfile = util::write(dir.path(), "reply.bin", &reply);
    // The handler reads the whole request before answering (answering early would let curl
    // stop sending its body), keeps the body, and replies.
    let handler = util::write(
        dir.path(),
        "handler.py",
        r#"
import sys
inp, out = sys.stdin.buffer, sys.stdout.buffer
head = b""
while not head.endswith(b"\r\n\r\n"):
    c = inp.read(1)
    if not c:
        break
    head += c
length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
body = inp.read(length)
open(sys.argv[1], "wb").write(head + body)
out.write(open(sys.argv[2], "rb").read())
out.flush()
"#,
    );
    st.each(
        &mut row,
        "curl → stls listen",
        " ALPN",
        |leaf, version, mtls| {
            let reqfile = dir.path().join("request.bin");
            let exec = format!("python3 {} {} {}", s(&handler), s(&reqfile), s(&replyfile));
            let mut args = vec!["-v", "--alpn", "http/1.1", "-e", exec.as_str()];
            args.extend(tls_flags(version));
            if mtls {
                args.extend(["--client-ca", st.ca()]);
            }
            let (l, port) = listen(leaf, &args, Input::Null);
            let mut cmd = Command::new("curl");
            cmd.args(["-sS", "--cacert", st.ca(), &format!("--tlsv{version}")])
                .args(["--tls-max", version, "--data-binary"])
                .arg(format!("@{}", s(&upfile)))
                .arg(format!("https://localhost:{port}/"));
            if mtls {
                cmd.args(["--cert", s(&st.client.cert), "--key", s(&st.client.key)]);
            }
            let c = run_peer(&mut cmd, Input::Null);
            status(&c, 0, "curl")?;
            same(&c.stdout, &body)?;
            let done = l.finish();
            status(&done, 0, "stls listen")?;
            if !done.stderr.contains("ALPN http/1.1") {
                return Err(format!("ALPN not agreed: {}", done.stderr));
            }
            let req = std::fs::read(&reqfile).map_err(|e| e.to_string())?;
            if !req.starts_with(b"POST / HTTP/1.1\r\n") {
                return Err(format!(
                    "request: {:?}",
                    String::from_utf8_lossy(&req[..40.min(req.len())])
                ));
            }
            same(&req[req.len().saturating_sub(upload.len())..], &upload)
        },
    );
    row.report();
}

#[test]
fn python_ssl_to_listen() {
    if !have("python3") {
        return;
    }
    let st = Setup::new();
    let mut row = Row::default();
    let script = r#"
import socket, ssl, sys
port, ca, version, cert, key = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
v = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
ctx.minimum_version = ctx.maximum_version = v
if cert:
    ctx.load_cert_chain(cert, key)
data = sys.stdin.buffer.read()
with socket.create_connection(("127.0.0.1", int(port))) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(data)
        got = bytearray()
        while len(got) < len(data):
            chunk = tls.recv(65536)
            if not chunk:
                break
            got += chunk
        tls.unwrap()  # close_notify both ways
sys.stdout.buffer.write(got)
"#;
    let data = random_bytes(256 * 1024, 11);
    st.each(
        &mut row,
        "python ssl → stls listen -e cat",
        "",
        |leaf, version, mtls| {
            let (l, port) = echo_listener(&st, leaf, version, mtls);
            let (cert, key) = if mtls {
                (s(&st.client.cert), s(&st.client.key))
            } else {
                ("", "")
            };
            let mut cmd = Command::new("python3");
            cmd.args(["-c", script, &port.to_string(), st.ca(), version, cert, key]);
            let c = run_peer(&mut cmd, Input::Bytes(data.clone()));
            status(&c, 0, "python")?;
            same(&c.stdout, &data)?;
            listener_saw(l, version, mtls)
        },
    );
    row.report();
}
