//! `listen -k` and friends: many clients on one listener, `-e`/`-c` per connection,
//! `--max-conns`, handshake timeouts, hostile clients, signals, IPv6.

use crate::util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use util::pki::{s, KeyType, Pki, VALID};
use util::{assert_same, connect, pipe, random_bytes, read_all, stls, Done, Input, Listener, Proc};

/// `stls connect` to a listener, pinned to its fingerprint, as a running process.
fn client(l: &Listener, extra: &[&str], input: Input) -> Proc {
    let mut cmd = stls();
    cmd.args(["connect", &l.addr(), "--pin", &l.pin()])
        .args(extra);
    Proc::spawn(&mut cmd, input)
}

fn lines(out: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(out)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn a_hundred_sequential_clients_all_reach_stdout() {
    let l = Listener::start(&["-k"], Input::Null);
    let mut want = Vec::new();
    for i in 0..100 {
        let line = format!("client {i:03} {}", hex(&random_bytes(16, i + 1)));
        // They only send, so each closes at its EOF rather than waiting --linger for a reply.
        let input = Input::Bytes(format!("{line}\n").into_bytes());
        let done = client(&l, &["--send-only"], input).finish();
        done.expect_code(0);
        want.push(line);
    }
    let done = l.stop();
    done.expect_code(143);
    want.sort();
    assert_eq!(
        lines(&done.stdout),
        want,
        "every client's line exactly once"
    );
}

#[test]
fn fifty_concurrent_clients_all_reach_stdout_in_whole_messages() {
    let l = Listener::start(&["-k"], Input::Null);
    let mut want = Vec::new();
    let procs: Vec<Proc> = (0..50)
        .map(|i| {
            // Under PIPE_BUF, so each is one read, one TLS record, one write to stdout.
            let line = format!("c{i:02}:{}", hex(&random_bytes(1500, 100 + i)));
            want.push(line.clone());
            client(&l, &[], Input::Bytes(format!("{line}\n").into_bytes()))
        })
        .collect();
    for p in procs {
        p.finish().expect_code(0);
    }
    let done = l.stop();
    done.expect_code(143);
    want.sort();
    assert_eq!(
        lines(&done.stdout),
        want,
        "each message whole, exactly once"
    );
}

#[test]
fn fifty_concurrent_clients_each_get_their_own_echo() {
    let l = Listener::start(&["-k", "-e", "cat"], Input::Null);
    let payloads: Vec<Vec<u8>> = (0..50).map(|i| random_bytes(200_000, 7 + i)).collect();
    let procs: Vec<Proc> = payloads
        .iter()
        .map(|p| client(&l, &[], Input::Bytes(p.clone())))
        .collect();
    for (i, (p, want)) in procs.into_iter().zip(&payloads).enumerate() {
        let done = p.finish();
        done.expect_code(0);
        assert_same(&done.stdout, want, &format!("echo to client {i}"));
    }
    let done = l.stop();
    done.expect_code(143);
    assert!(done.stdout.is_empty(), "with -e, stdout is not used");
}

#[test]
fn stdin_goes_to_every_connected_client() {
    let mut l = Listener::start(&["-k", "-v"], Input::Held);
    let a = client(&l, &[], Input::Terminal);
    let b = client(&l, &[], Input::Terminal);
    l.wait_line("TLSv1.3");
    l.wait_line("TLSv1.3");
    l.proc.stdin().write_all(b"to everyone\n").unwrap();
    l.proc.close_stdin();
    for c in [a, b] {
        let done = c.finish();
        done.expect_code(0);
        assert_eq!(done.stdout, b"to everyone\n");
    }
    // Clients arriving after stdin ended get a clean, empty stream.
    let late = client(&l, &[], Input::Null).finish();
    late.expect_code(0);
    assert!(late.stdout.is_empty());
    l.stop().expect_code(143);
}

#[test]
fn sh_exec_runs_per_connection_with_the_peer_address() {
    let l = Listener::start(
        &["-k", "-c", "echo \"from $STLS_PEER_ADDR\"; tr a-z A-Z"],
        Input::Null,
    );
    for _ in 0..3 {
        let done = client(&l, &[], Input::Bytes(b"shout\n".to_vec())).finish();
        done.expect_code(0);
        assert_eq!(done.stdout, b"from 127.0.0.1\nSHOUT\n");
    }
    l.stop().expect_code(143);
}

#[test]
fn exec_on_connect_serves_the_listener() {
    let data = random_bytes(300_000, 42);
    let l = Listener::start(&[], Input::Bytes(data.clone()));
    let c = client(&l, &["-e", "cat"], Input::Null).finish();
    c.expect_code(0);
    assert!(c.stdout.is_empty());
    let done = l.finish();
    done.expect_code(0);
    assert_same(
        &done.stdout,
        &data,
        "the listener's bytes, echoed by cat on the client",
    );
}

#[test]
fn verbose_shows_every_childs_exit_status_zero_included() {
    let l = Listener::start(&["-k", "-v", "-e", "cat"], Input::Null);
    client(&l, &[], Input::Bytes(b"ok\n".to_vec()))
        .finish()
        .expect_code(0);
    let status = l.wait_line("exited with status");
    assert!(
        status.starts_with("stls: client 127.0.0.1:")
            && status.ends_with(": 'cat' exited with status 0"),
        "{status}"
    );
    l.stop().expect_code(143);
}

#[test]
fn a_child_that_exits_early_ends_the_connection_cleanly() {
    let l = Listener::start(&["-k", "-c", "head -c 10"], Input::Null);
    let data = random_bytes(2_000_000, 9);
    let done = client(&l, &[], Input::Bytes(data.clone())).finish();
    done.expect_code(0);
    assert_eq!(done.stdout, &data[..10]);
    // The listener is still serving.
    let again = client(&l, &[], Input::Bytes(b"0123456789abc".to_vec())).finish();
    again.expect_code(0);
    assert_eq!(again.stdout, b"0123456789");
    l.stop().expect_code(143);
}

#[test]
fn a_child_gets_default_sigpipe() {
    // `yes` is stopped by SIGPIPE when head exits; were SIGPIPE ignored it would print
    // "Broken pipe" on stderr instead.
    let l = Listener::start(&["-c", "yes | head -c 4"], Input::Null);
    let done = client(&l, &[], Input::Null).finish();
    done.expect_code(0);
    assert_eq!(done.stdout, b"y\ny\n");
    let done = l.finish();
    done.expect_code(0);
    assert!(!done.stderr.contains("Broken pipe"), "{}", done.stderr);
}

#[test]
fn exec_of_a_missing_program_is_a_usage_error() {
    let done = util::run(&["listen", "0", "-e", "no-such-program-stls"], Input::Null);
    done.expect_code(2).expect_stderr("no-such-program-stls");
    let done = util::run(&["listen", "0", "-e", "'unbalanced"], Input::Null);
    done.expect_code(2).expect_stderr("unbalanced quotes");
}

#[test]
fn idle_tcp_connections_do_not_block_a_real_client() {
    let l = Listener::start(&["-k", "-e", "cat"], Input::Null);
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(l.addr()).expect("tcp connect"))
        .collect();
    let data = random_bytes(100_000, 3);
    let done = client(&l, &[], Input::Bytes(data.clone())).finish();
    done.expect_code(0);
    assert_same(&done.stdout, &data, "served while 300 connections sit idle");
    drop(idle);
    l.stop().expect_code(143);
}

#[test]
fn hostile_clients_cost_only_their_own_connection() {
    let l = Listener::start(&["-k", "-e", "cat"], Input::Null);
    // Plaintext HTTP gets a TLS alert record (content type 21), not a hang.
    let mut http = TcpStream::connect(l.addr()).unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reply = read_all(&mut http);
    assert_eq!(reply.first(), Some(&21), "an alert, got {reply:?}");
    // Random bytes.
    let mut noise = TcpStream::connect(l.addr()).unwrap();
    noise.write_all(&random_bytes(5000, 77)).unwrap();
    read_all(&mut noise);
    // Half a ClientHello, then silence (left open), and one that stops half way and closes.
    let hello = client_hello_prefix();
    let mut half = TcpStream::connect(l.addr()).unwrap();
    half.write_all(&hello).unwrap();
    let mut cut = TcpStream::connect(l.addr()).unwrap();
    cut.write_all(&hello).unwrap();
    cut.shutdown(Shutdown::Write).unwrap();
    read_all(&mut cut);
    // A real client is still served.
    let done = client(&l, &[], Input::Bytes(b"still here\n".to_vec())).finish();
    done.expect_code(0);
    assert_eq!(done.stdout, b"still here\n");
    drop(half);
    let done = l.stop();
    done.expect_code(143);
    done.expect_stderr("is it speaking TLS on that port?");
}

/// The first bytes a TLS client sends: a record header and the start of a ClientHello.
fn client_hello_prefix() -> Vec<u8> {
    let mut v = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    v.extend(random_bytes(32, 5));
    v
}

#[test]
fn handshake_timeout_drops_a_silent_client() {
    let l = Listener::start(&["-k", "--handshake-timeout", "0.3"], Input::Null);
    let mut silent = TcpStream::connect(l.addr()).unwrap();
    assert!(read_all(&mut silent).is_empty(), "closed without a byte");
    let done = l.stop();
    done.expect_code(143);
    done.expect_stderr("timed out (--handshake-timeout)");
}

#[test]
fn without_k_a_handshake_timeout_is_logged_and_the_listener_waits_on() {
    let l = Listener::start(
        &["--handshake-timeout", "0.3"],
        Input::Bytes(b"for the real client\n".to_vec()),
    );
    let _silent = TcpStream::connect(l.addr()).unwrap();
    l.wait_line("timed out (--handshake-timeout)");
    let done = client(&l, &[], Input::Null).finish();
    done.expect_code(0);
    assert_eq!(done.stdout, b"for the real client\n");
    l.finish().expect_code(0);
}

#[test]
fn without_k_probes_and_garbage_are_logged_and_the_first_handshake_is_the_session() {
    let l = Listener::start(&[], Input::Bytes(b"for the real client\n".to_vec()));
    // A port scan: connect and close.
    drop(TcpStream::connect(l.addr()).unwrap());
    l.wait_line("closed the connection during the TLS handshake");
    // Garbage.
    let mut noise = TcpStream::connect(l.addr()).unwrap();
    noise.write_all(&random_bytes(5000, 21)).unwrap();
    read_all(&mut noise);
    l.wait_line("is it speaking TLS on that port?");
    // One that connects and waits: still in its handshake when the real client's is done.
    let mut idle = TcpStream::connect(l.addr()).unwrap();
    let done = client(&l, &[], Input::Bytes(b"from the client\n".to_vec())).finish();
    done.expect_code(0);
    assert_eq!(done.stdout, b"for the real client\n");
    assert!(read_all(&mut idle).is_empty(), "the idle one is let go");
    let done = l.finish();
    done.expect_code(0)
        .expect_stderr("dropped while still in its TLS handshake: the session is with client");
    assert_eq!(done.stdout, b"from the client\n");
}

#[test]
fn max_conns_makes_room_from_unfinished_handshakes_and_then_refuses() {
    let l = Listener::start(&["-k", "-v", "--max-conns", "2"], Input::Held);
    let mut silent = TcpStream::connect(l.addr()).unwrap();
    let a = client(&l, &[], Input::Terminal);
    l.wait_line("TLSv1.3");
    // Full: the newcomer is served, and the connection that never began its handshake goes.
    let b = client(&l, &[], Input::Terminal);
    l.wait_line("dropped while still in its TLS handshake, to make room for a new client");
    assert!(read_all(&mut silent).is_empty(), "the silent one is closed");
    l.wait_line("TLSv1.3");
    // Both established: one more is closed at once.
    let mut extra = TcpStream::connect(l.addr()).unwrap();
    assert!(
        read_all(&mut extra).is_empty(),
        "the third is closed at once"
    );
    l.wait_line("refused client");
    // Once one has gone, a client is served again.
    drop(a);
    l.wait_line("failed after");
    let c = client(&l, &[], Input::Terminal);
    l.wait_line("TLSv1.3");
    l.stop().expect_code(143);
    drop((b, c));
}

#[test]
fn max_conns_needs_keep_open() {
    util::run(&["listen", "0", "--max-conns", "3"], Input::Null).expect_code(2);
}

#[test]
fn sigterm_resets_every_unfinished_connection() {
    // The listener's stdin is still open: its direction is not complete, so a signal must not
    // send close_notify; the clients see a reset, never a clean end.
    let l = Listener::start(&["-k", "-v"], Input::Held);
    let a = client(&l, &[], Input::Terminal);
    let b = client(&l, &[], Input::Terminal);
    l.wait_line("TLSv1.3");
    l.wait_line("TLSv1.3");
    l.signal(libc::SIGTERM);
    a.finish().expect_code(3).expect_stderr("reset");
    b.finish().expect_code(3).expect_stderr("reset");
    let done = l.finish();
    done.expect_code(143)
        .expect_stderr("stopped by SIGTERM: 2 connections reset");
}

#[test]
fn sigint_mid_transfer_is_130_and_the_peer_sees_a_reset() {
    let l = Listener::start(&["-v"], Input::Held);
    let c = client(&l, &[], Input::Terminal);
    l.wait_line("TLSv1.3");
    l.signal(libc::SIGINT);
    // finish() closes the listener's stdin: only once the signal has been acted on, or the
    // EOF could end its direction cleanly first.
    l.wait_line("stopped by SIGINT");
    l.finish().expect_code(130);
    c.finish().expect_code(3);
}

#[test]
fn a_signal_with_no_connection_open_is_still_130_or_143() {
    let l = Listener::start(&["-k"], Input::Held);
    l.signal(libc::SIGINT);
    l.finish()
        .expect_code(130)
        .expect_stderr("stopped by SIGINT");
    let l = Listener::start(&["-k"], Input::Held);
    l.signal(libc::SIGTERM);
    l.finish()
        .expect_code(143)
        .expect_stderr("stopped by SIGTERM");
}

#[test]
fn sigint_on_connect_mid_transfer_is_a_reset_for_the_listener() {
    let l = Listener::start(&["-v"], Input::Held);
    let c = client(&l, &[], Input::Held);
    l.wait_line("TLSv1.3");
    c.signal(libc::SIGINT);
    c.finish().expect_code(130);
    // Not a clean end (0), nor a plain truncation: the client's input had not ended.
    l.finish().expect_code(3);
}

#[test]
fn dual_stack_by_default_and_restricted_by_4() {
    if TcpStream::connect_timeout(&"[::1]:9".parse().unwrap(), Duration::from_secs(1))
        .map_err(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        .err()
        != Some(true)
    {
        eprintln!("SKIP: no IPv6 loopback on this machine");
        return;
    }
    let mut cmd = stls();
    cmd.args(["listen", "0", "-k", "-v"]);
    let l = Listener::start_cmd(&mut cmd, Input::Null);
    for host in ["127.0.0.1", "[::1]"] {
        let addr = format!("{host}:{}", l.port);
        let done = connect(
            &addr,
            &["--pin", &l.pin()],
            Input::Bytes(format!("via {host}\n").into()),
        );
        done.expect_code(0);
    }
    let done = l.stop();
    assert_eq!(lines(&done.stdout), ["via 127.0.0.1", "via [::1]"]);
    // The IPv4 client is named by its IPv4 address, not as ::ffff:127.0.0.1.
    done.expect_stderr("client 127.0.0.1:")
        .expect_stderr("client [::1]:");
    assert!(!done.stderr.contains("[::ffff:"), "{}", done.stderr);
    done.expect_stderr("connection from 127.0.0.1:");

    let mut cmd = stls();
    cmd.args(["listen", "0", "-k", "-4"]);
    let l = Listener::start_cmd(&mut cmd, Input::Null);
    let done = connect(
        &format!("[::1]:{}", l.port),
        &["--pin", &l.pin()],
        Input::Null,
    );
    done.expect_code(3).expect_stderr("refused");
    l.stop().expect_code(143);
}

/// A word such as `Tls12NotOfferedOrEnabled`: an identifier, not English.
fn camel_case_word(text: &str) -> Option<&str> {
    text.split(|c: char| !c.is_alphanumeric()).find(|w| {
        w.chars().skip(1).any(|c| c.is_ascii_uppercase())
            && w.chars().any(|c| c.is_ascii_lowercase())
    })
}

#[test]
fn a_client_with_no_version_in_common_is_logged_in_words() {
    if !util::have("openssl") {
        return;
    }
    let l = Listener::start(&["--tls-min", "1.3"], Input::Null);
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-tls1_2", "-connect", &l.addr()]);
    let peer = Proc::spawn(&mut cmd, Input::Null).finish_or_kill(Duration::from_secs(30));
    assert!(!peer.status.success(), "openssl -tls1_2 got through");
    // The listener logs the failed client and waits on.
    let line = l.wait_line("failed");
    assert!(line.contains("TLS 1.2"), "{line}");
    assert!(line.contains("--tls-min"), "{line}");
    assert_eq!(camel_case_word(&line), None, "{line}");
}

#[test]
fn verbose_logs_each_connection_with_identity_and_byte_counts() {
    let pki = Pki::new();
    let alice = pki.ca.client("alice", "alice", KeyType::P256, VALID);
    let mut cmd = stls();
    cmd.args([
        "listen",
        "127.0.0.1:0",
        "-k",
        "-v",
        "--client-ca",
        s(&pki.ca.cert),
    ])
    .args(["--cert", s(&pki.server.cert), "--key", s(&pki.server.key)]);
    let l = Listener::start_cmd(&mut cmd, Input::Null);
    let done = connect(
        &format!("localhost:{}", l.port),
        &[
            "--cacert",
            s(&pki.ca.cert),
            "--cert",
            s(&alice.cert),
            "--key",
            s(&alice.key),
        ],
        Input::Bytes(b"12345".to_vec()),
    );
    done.expect_code(0);
    let done: Done = l.stop();
    let port_line = done
        .stderr
        .lines()
        .find(|l| l.contains("connection from 127.0.0.1:"))
        .expect("connection line")
        .to_string();
    let peer = port_line.rsplit(' ').next().unwrap();
    for want in [
        format!("client {peer}: TLSv1.3"),
        format!("client {peer}: client certificate: CN=alice"),
        format!("client {peer}: closed after"),
        "5 bytes received, 0 bytes sent".to_string(),
    ] {
        done.expect_stderr(&want);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn stdin_is_read_only_once_a_client_is_there() {
    // Input written before the listener starts stays in the pipe while no client has come:
    // a listener stopped then has read none of it.
    let (read, mut write) = pipe();
    write.write_all(b"typed before any client\n").unwrap();
    let l = Listener::start(&["-k"], Input::Fd(read.try_clone().unwrap()));
    let probe = TcpStream::connect(l.addr()).unwrap();
    drop(probe);
    l.wait_line("closed the connection during the TLS handshake");
    l.stop().expect_code(143);
    drop(write);
    let mut left = Vec::new();
    std::fs::File::from(read).read_to_end(&mut left).unwrap();
    assert_eq!(
        left, b"typed before any client\n",
        "left unread in the pipe"
    );

    // The same input goes, whole, to the client that comes.
    let (read, mut write) = pipe();
    write.write_all(b"typed before any client\n").unwrap();
    let l = Listener::start(&[], Input::Fd(read));
    let c = client(&l, &[], Input::Null);
    drop(write);
    let done = c.finish();
    done.expect_code(0);
    assert_eq!(done.stdout, b"typed before any client\n");
    l.finish().expect_code(0);
}

#[test]
fn a_background_listener_leaves_the_terminal_alone_until_a_client_comes() {
    if !util::have("bash") {
        return;
    }
    // bash with job control, as in an interactive shell: stls is a background job of the
    // terminal that is its stdin, so reading that terminal would stop it (SIGTTIN) at once.
    let mut cmd = Command::new("bash");
    cmd.args([
        "-c",
        r#"set -m; "$0" listen 127.0.0.1:0 & wait $!"#,
        env!("CARGO_BIN_EXE_stls"),
    ]);
    // SAFETY: between fork and exec only async-signal-safe calls: setsid, and the ioctl that
    // makes stdin (the pty) the new session's controlling terminal.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let l = Listener::start_cmd(&mut cmd, Input::Terminal);
    // Still running: it logs a client that connects and leaves.
    drop(TcpStream::connect(l.addr()).unwrap());
    l.wait_line("closed the connection during the TLS handshake");
    let shell = l.proc.pid();
    let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
        .expect("bash's children");
    let stls: i32 = children.trim().parse().expect("one child: stls");
    let stat = std::fs::read_to_string(format!("/proc/{stls}/stat")).expect("stls's stat");
    let state = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.trim_start().chars().next());
    assert_ne!(state, Some(Some('T')), "stls is stopped: {stat}");
    // SAFETY: kill() on the pid of the stls that bash started and waits for.
    assert_eq!(unsafe { libc::kill(stls, libc::SIGTERM) }, 0);
    l.finish().expect_code(143);
}

#[test]
fn at_the_descriptor_limit_no_client_is_dropped_for_one_that_is_not_there() {
    // accept() fails for want of a descriptor whether or not a client waits: the client
    // just accepted, still in its handshake, must not give its descriptor up to nobody.
    let l = Listener::start(&["-k", "-v"], Input::Null);
    let pid = l.proc.pid();
    let open: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // Room for exactly one more descriptor, the next client's: the limit is on descriptor
    // numbers, and the lowest free one is what accept() takes.
    let free = (0..).find(|n| !open.contains(n)).unwrap();
    let limit = format!("--nofile={}:{}", free + 1, free + 1);
    let set = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &limit])
        .status();
    if !matches!(set, Ok(s) if s.success()) {
        eprintln!("SKIP: prlimit could not lower the listener's descriptor limit");
        return;
    }
    let done = client(&l, &["--send-only"], Input::Bytes(b"just fits\n".to_vec())).finish();
    done.expect_code(0);
    let server = l.stop();
    assert_eq!(server.stdout, b"just fits\n");
    assert!(
        !server.stderr.contains("to free a descriptor"),
        "{}",
        server.stderr
    );
}
