//! How a connection ends: exit 0 only when every byte arrived, an abortive close (a reset, so
//! never a clean end for the peer) whenever our side fails or is stopped, and each of the ways
//! an adversarial review once got a 0 out of a lost transfer.

use crate::util;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

use util::peer;
use util::pki::{s, Pki};
use util::{assert_same, connect, random_bytes, stls, tempdir, Input, Listener, Proc};

/// `stls ARGS…` with its stdout sent to FILE (`/dev/full`), through `sh`.
fn stls_with_stdout(file: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec \"$0\" \"$@\" >{file}"))
        .arg(env!("CARGO_BIN_EXE_stls"));
    cmd
}

/// `stls connect ADDR --pin … ARGS…` as a running process.
fn client(l: &Listener, args: &[&str], input: Input) -> Proc {
    let mut cmd = stls();
    cmd.args(["connect", &l.addr(), "--pin", &l.pin()])
        .args(args);
    Proc::spawn(&mut cmd, input)
}

#[test]
fn the_sender_fails_when_the_receivers_stdout_fails() {
    let mut cmd = stls_with_stdout("/dev/full");
    cmd.args(["listen", "127.0.0.1:0"]);
    let l = Listener::start_cmd(&mut cmd, Input::Null);
    let sender = client(&l, &[], Input::Bytes(random_bytes(8 << 20, 1))).finish();
    let receiver = l.finish();
    receiver
        .expect_code(1)
        .expect_stderr("writing to stdout: no space left on device");
    // The receiver's reset may overtake its close_notify or meet our next write (EPIPE once
    // its FIN came): either way the sender says the data did not all arrive.
    sender.expect_code(3);
    assert!(
        sender.stderr.contains("before the end"),
        "the sender does not say the transfer failed:\n{}",
        sender.stderr
    );
}

#[test]
fn the_sender_fails_when_the_receiver_is_killed_mid_stream() {
    for sig in [libc::SIGKILL, libc::SIGTERM] {
        let l = Listener::start(&[], Input::Null);
        let mut sender = client(&l, &[], Input::Held);
        sender.stdin().write_all(&random_bytes(1 << 20, 2)).unwrap();
        l.proc.wait_stdout(1 << 20).unwrap();
        l.signal(sig);
        // The rest finds the receiver gone: it must never look delivered.
        let _ = sender.stdin().write_all(&random_bytes(4 << 20, 3));
        sender.close_stdin();
        sender.finish().expect_code(3);
        let receiver = l.proc.finish();
        if sig == libc::SIGTERM {
            receiver
                .expect_code(143)
                .expect_stderr("1 connection reset");
        }
    }
}

#[test]
fn a_side_whose_stdout_fails_resets_rather_than_closing() {
    // The listener's stdout fails at the first byte: it must not send close_notify on the
    // stream it was sending, or the client would take a fraction of it for the whole.
    let mut cmd = stls_with_stdout("/dev/full");
    cmd.args(["listen", "127.0.0.1:0"]);
    let data = random_bytes(16 << 20, 4);
    let l = Listener::start_cmd(&mut cmd, Input::Bytes(data.clone()));
    let c = client(&l, &[], Input::Bytes(b"x".to_vec())).finish();
    c.expect_code(3);
    assert!(c.stdout.len() < data.len(), "everything arrived anyway");
    assert_same(
        &c.stdout,
        &data[..c.stdout.len()],
        "a prefix of what was sent",
    );
    l.finish().expect_code(1);
}

/// A file through `listen LISTEN_ARGS` from `connect CLIENT_ARGS`: both exit 0 and the
/// listener's stdout is the file, byte for byte.
fn file_arrives_whole(listen_args: &[&str], client_args: &[&str], size: usize, what: &str) {
    let data = random_bytes(size, 5);
    let l = Listener::start(listen_args, Input::Null);
    let sender = client(&l, client_args, Input::Bytes(data.clone())).finish();
    let receiver = l.finish();
    sender.expect_code(0);
    receiver.expect_code(0);
    assert_same(&receiver.stdout, &data, what);
    assert!(sender.stdout.is_empty());
}

#[test]
fn send_a_file_works_under_tls12_and_tls13() {
    // The README's recipe: the receiver takes, the sender only sends.
    for version in ["1.2", "1.3"] {
        file_arrives_whole(
            &["--tls-max", version, "--recv-only"],
            &["--send-only"],
            10 << 20,
            &format!("received under TLS {version}"),
        );
    }
}

#[test]
fn under_tls12_a_pipe_eof_waits_for_the_peer_instead_of_cutting_it_short() {
    // The listener's stdin ends at once, but under TLS 1.2 its close_notify would end the
    // client's direction too, so it waits; the client's data all arrives.
    let to_server = random_bytes(4 << 20, 6);
    let l = Listener::start(&["--tls-max", "1.2"], Input::Null);
    let c = client(&l, &["--send-only"], Input::Bytes(to_server.clone())).finish();
    let server = l.finish();
    c.expect_code(0);
    server.expect_code(0);
    assert_same(&server.stdout, &to_server, "server received");
}

#[test]
fn send_a_file_without_saying_which_way_under_tls12_and_tls13() {
    // Neither --send-only nor --recv-only: the receiver's input (none) has ended, the sender's
    // ends after the file; once the peer has been silent for --linger (either side's, the
    // shorter first), close_notify ends the conversation: nothing is lost, nobody waits for
    // ever (under TLS 1.2 both sides used to wait for the other to close first).
    for (version, linger) in [("1.2", "2"), ("1.3", "2"), ("1.2", "0.5")] {
        file_arrives_whole(
            &["--tls-max", version, "--linger", linger],
            &[],
            3 << 20,
            &format!("received under TLS {version}, --linger {linger}"),
        );
    }
}

#[test]
fn a_small_file_to_a_receiver_that_cannot_store_it_is_never_a_success() {
    // The receiver acknowledges only what it stored: its FIN (and, under TLS 1.2, its
    // close_notify) goes after stdout took everything. Small files too, whose bytes all fit
    // in the socket buffers long before the receiver writes them.
    for version in ["1.2", "1.3"] {
        for size in [100, 64 << 10, 1 << 20] {
            let mut cmd = stls_with_stdout("/dev/full");
            cmd.args(["listen", "127.0.0.1:0", "--recv-only", "--tls-max", version]);
            let l = Listener::start_cmd(&mut cmd, Input::Null);
            let sender = client(&l, &["--send-only"], Input::Bytes(random_bytes(size, 16)));
            let sender = sender.finish();
            let receiver = l.finish();
            receiver
                .expect_code(1)
                .expect_stderr("writing to stdout: no space left on device");
            assert_ne!(
                sender.code(),
                0,
                "TLS {version}, {size} bytes: the sender says delivered:\n{}",
                sender.stderr
            );
        }
    }
}

#[test]
fn a_frozen_receiver_killed_later_is_never_a_success() {
    // The receiver's kernel takes every byte while the process is stopped: only the
    // receiver's own FIN, after it stored them, may make the sender's exit 0.
    for version in ["1.2", "1.3"] {
        let l = Listener::start(&["--recv-only", "--tls-max", version, "-v"], Input::Null);
        let mut sender = client(&l, &["--send-only", "-v"], Input::Held);
        l.wait_line("TLSv1.");
        sender.wait_line("TLSv1.");
        // Whatever the receiver does on its own once connected, it has done by now.
        std::thread::sleep(std::time::Duration::from_millis(200));
        l.signal(libc::SIGSTOP);
        sender
            .stdin()
            .write_all(&random_bytes(64 << 10, 17))
            .unwrap();
        sender.close_stdin();
        // The sender cannot know yet: it waits for the receiver's confirmation. Then the
        // receiver dies without storing anything.
        std::thread::sleep(std::time::Duration::from_millis(300));
        l.signal(libc::SIGKILL);
        let sender = sender.finish();
        assert_ne!(
            sender.code(),
            0,
            "TLS {version}: the sender says delivered:\n{}",
            sender.stderr
        );
        drop(l);
    }
}

#[test]
fn under_tls12_a_close_before_our_input_is_sent_is_incomplete() {
    // A TLS 1.2 peer that closes (close_notify) while our input is still coming in: what was
    // not sent cannot be delivered any more, so that is exit 6, never 0.
    let l = Listener::start(&["--tls-max", "1.2", "--send-only"], Input::Null);
    let c = client(&l, &[], Input::Bytes(random_bytes(64 << 20, 8))).finish();
    c.expect_code(6)
        .expect_stderr("before our input was all sent: the transfer is incomplete");
    l.finish().expect_code(3);
}

#[test]
fn under_tls12_a_close_while_stdin_is_silent_is_incomplete_and_bounded() {
    // stdin (a pipe) neither ends nor gives more after the peer closed: whatever it still
    // holds can never be sent, so the wait is bounded and the end is not a success.
    let l = Listener::start(&["--tls-max", "1.2", "--send-only"], Input::Null);
    let mut c = client(&l, &[], Input::Held);
    c.wait_line("before our input was all sent");
    c.close_stdin();
    c.finish().expect_code(6);
    l.finish().expect_code(3);
}

#[test]
fn sigint_on_the_sender_mid_transfer_is_never_a_clean_end() {
    let l = Listener::start(&[], Input::Null);
    let mut sender = client(&l, &[], Input::Held);
    sender.stdin().write_all(&random_bytes(1 << 20, 9)).unwrap();
    l.proc.wait_stdout(1 << 20).unwrap();
    sender.signal(libc::SIGINT);
    // finish() closes stdin: the signal must have been taken first, or that EOF would be a
    // clean end racing it.
    sender.wait_line("stopped by SIGINT");
    sender
        .finish()
        .expect_code(130)
        .expect_stderr("stopped by SIGINT: 1 connection reset");
    l.finish().expect_code(3);
}

#[test]
fn an_exec_child_killed_mid_stream_resets_the_connection() {
    let l = Listener::start(&["-v", "-e", "cat"], Input::Null);
    let mut c = client(&l, &[], Input::Held);
    c.stdin().write_all(&random_bytes(1 << 20, 10)).unwrap();
    c.wait_stdout(1 << 20).unwrap();
    let line = l.wait_line("started 'cat' (pid ");
    let pid: i32 = line
        .rsplit("(pid ")
        .next()
        .and_then(|p| p.trim_end_matches(')').parse().ok())
        .expect("pid");
    // SAFETY: kill() on the pid the listener reported for its child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let _ = c.stdin().write_all(&random_bytes(1 << 20, 11));
    c.close_stdin();
    c.finish().expect_code(3);
    l.finish()
        .expect_code(1)
        .expect_stderr("'cat' was killed by signal 9");
}

#[test]
fn an_exec_child_that_fails_resets_the_connection() {
    let l = Listener::start(&["-c", "cat; exit 3"], Input::Null);
    let c = client(&l, &[], Input::Bytes(b"echoed\n".to_vec())).finish();
    // Its output arrived, but the command failed: no clean end.
    c.expect_code(3);
    assert_eq!(c.stdout, b"echoed\n");
    l.finish()
        .expect_code(1)
        .expect_stderr("exited with status 3");
}

#[test]
fn a_child_that_closes_its_output_but_lingers_is_bounded() {
    // Without -k the end used to be a blocking wait for the child: now -i and signals bound it.
    let l = Listener::start(
        &["-i", "0.5", "-c", "exec sleep 600 >/dev/null 2>&1"],
        Input::Null,
    );
    let c = client(&l, &[], Input::Null);
    l.finish().expect_code(7).expect_stderr("-i");
    drop(c);
    let l = Listener::start(&["-v", "-c", "exec sleep 600 >/dev/null 2>&1"], Input::Null);
    let c = client(&l, &[], Input::Null);
    l.wait_line("started");
    l.signal(libc::SIGTERM);
    l.finish().expect_code(143);
    c.finish().expect_code(3);
}

#[test]
fn a_signal_during_connects_handshake_is_143() {
    // A server that accepts TCP and never answers the ClientHello.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let mut cmd = stls();
    cmd.args(["connect", &addr.to_string(), "--insecure", "-v"]);
    let c = Proc::spawn(&mut cmd, Input::Null);
    c.wait_line("connected to");
    c.signal(libc::SIGTERM);
    c.finish()
        .expect_code(143)
        .expect_stderr("stopped by SIGTERM");
}

#[test]
fn a_signal_is_answered_while_stdouts_reader_is_stalled() {
    let l = Listener::start(&[], Input::Bytes(random_bytes(16 << 20, 12)));
    let mut cmd = stls();
    cmd.args(["connect", &l.addr(), "--pin", &l.pin(), "-v"]);
    // Nobody reads this stdout: the writer blocks once the pipe is full.
    let mut c = Proc::spawn_raw(&mut cmd, Input::Held);
    let _stdout = c.take_stdout();
    c.wait_line("TLSv1.3");
    c.signal(libc::SIGTERM);
    c.finish().expect_code(143);
}

#[test]
fn idle_timeout_does_not_fire_on_our_own_backpressure() {
    // The peer keeps sending; it is our stdout that is slow. -i is about the peer's silence.
    // (It only sends, so it closes at its EOF rather than waiting --linger for our say.)
    let data = random_bytes(8 << 20, 13);
    let l = Listener::start(&["--send-only"], Input::Bytes(data.clone()));
    let mut cmd = stls();
    cmd.args(["connect", &l.addr(), "--pin", &l.pin(), "-i", "0.5"]);
    let mut c = Proc::spawn_raw(&mut cmd, Input::Null);
    let mut stdout = c.take_stdout();
    // Longer than -i without reading a byte: the peer is blocked by us, not silent.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let mut got = Vec::new();
    stdout.read_to_end(&mut got).unwrap();
    c.finish().expect_code(0);
    assert_same(&got, &data, "received through a slow stdout");
    l.finish().expect_code(0);
}

#[test]
fn recv_only_finishes_when_the_peer_closes_although_stdin_stays_open() {
    let data = random_bytes(1 << 20, 14);
    let l = Listener::start(&[], Input::Bytes(data.clone()));
    // stdin is an open pipe that never ends, and is never read.
    let c = client(&l, &["--recv-only"], Input::Held).finish();
    c.expect_code(0);
    assert_same(&c.stdout, &data, "received");
    let server = l.finish();
    server.expect_code(0);
    assert!(server.stdout.is_empty());
}

#[test]
fn send_only_never_writes_stdout() {
    let l = Listener::start(&[], Input::Bytes(b"ignored reply".to_vec()));
    let c = client(&l, &["--send-only"], Input::Bytes(b"payload".to_vec())).finish();
    c.expect_code(0);
    assert!(c.stdout.is_empty(), "send-only wrote {:?}", c.stdout);
    let server = l.finish();
    server.expect_code(0);
    assert_eq!(server.stdout, b"payload");
}

#[test]
fn a_bad_record_after_the_handshake_is_not_called_a_handshake_failure() {
    let pki = Pki::new();
    let (port, peer) = peer::serve(&pki.server.cert, &pki.server.key, |tls| {
        // An application-data record that cannot decrypt.
        let _ = tls.sock.write_all(&[23, 3, 3, 0, 32]);
        let _ = tls.sock.write_all(&[0x55; 32]);
        let mut rest = Vec::new();
        let _ = tls.sock.read_to_end(&mut rest);
    });
    let done = connect(
        &format!("localhost:{port}"),
        &["--cacert", s(&pki.ca.cert)],
        Input::Held,
    );
    done.expect_code(4).expect_stderr("failed to decrypt");
    assert!(!done.stderr.contains("handshake"), "{}", done.stderr);
    peer.join().unwrap();
}

#[test]
fn a_failing_stderr_or_stdout_never_panics() {
    // Diagnostics that cannot be written are dropped; the exit status still tells.
    // A port nobody listens on (not port 1: a test run as root may listen there).
    let closed = format!("127.0.0.1:{}", crate::util::free_port());
    let out = Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" connect \"$1\" 2>/dev/full")
        .arg(env!("CARGO_BIN_EXE_stls"))
        .arg(&closed)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // `stls cert` writes its files, then fails to print the summary: exit 1, not a panic.
    let dir = tempdir();
    let out = Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" cert ca --out \"$1\" >/dev/full")
        .arg(env!("CARGO_BIN_EXE_stls"))
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("writing to stdout failed"), "{stderr}");
    assert!(dir.path().join("ca.pem").exists() && dir.path().join("ca.key").exists());
}
