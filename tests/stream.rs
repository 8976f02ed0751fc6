//! Bytes through: stls ↔ stls in both directions, half-close, every kind of stdin, a closed
//! stdout, and the ways a peer can end the stream (close_notify, truncation, reset).

use crate::util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use util::peer::{self, close_notify, read_to_close_notify};
use util::pki::{s, Pki};
use util::{assert_same, connect, random_bytes, stls, tempdir, write, Input, Listener, Proc};

#[test]
fn both_ways_byte_for_byte_with_clean_exits() {
    let to_server = random_bytes(5 << 20, 1);
    let to_client = random_bytes(3 << 20, 2);
    let listener = Listener::start(&[], Input::Bytes(to_client.clone()));
    let client = connect(
        &listener.addr(),
        &["--pin", &listener.pin()],
        Input::Bytes(to_server.clone()),
    );
    let server = listener.finish();
    client.expect_code(0);
    server.expect_code(0);
    assert_same(&client.stdout, &to_client, "client received");
    assert_same(&server.stdout, &to_server, "server received");
    assert!(client.stderr.is_empty(), "client stderr: {}", client.stderr);
}

#[test]
fn server_that_sends_less_still_receives_everything() {
    // The server's stdin ends first: its close_notify must not cut the client's sending short.
    let to_server = random_bytes(6 << 20, 5);
    let listener = Listener::start(&[], Input::Null);
    let client = connect(
        &listener.addr(),
        &["--pin", &listener.pin()],
        Input::Bytes(to_server.clone()),
    );
    let server = listener.finish();
    client.expect_code(0);
    server.expect_code(0);
    assert!(client.stdout.is_empty());
    assert_same(&server.stdout, &to_server, "server received");
}

#[test]
fn half_close_gets_the_whole_reply() {
    // The peer answers only after our close_notify: `printf req | stls connect` must wait.
    let pki = Pki::new();
    let (port, peer) = peer::serve(&pki.server.cert, &pki.server.key, |tls| {
        let request = read_to_close_notify(tls);
        let reply: Vec<u8> = request.iter().rev().copied().collect();
        tls.write_all(&reply).unwrap();
        close_notify(tls);
        request
    });
    let request = random_bytes(200_000, 6);
    let client = connect(
        &format!("localhost:{port}"),
        &["--cacert", s(&pki.ca.cert)],
        Input::Bytes(request.clone()),
    );
    client.expect_code(0);
    assert_same(&peer.join().unwrap(), &request, "peer received");
    let want: Vec<u8> = request.iter().rev().copied().collect();
    assert_same(&client.stdout, &want, "client received");
}

#[test]
fn no_shutdown_keeps_the_write_side_open() {
    // With --no-shutdown, stdin EOF sends nothing: the peer sees no close_notify until it
    // closes first, and then gets one in answer.
    let pki = Pki::new();
    let (port, peer) = peer::serve(&pki.server.cert, &pki.server.key, |tls| {
        let mut request = [0u8; 5];
        tls.read_exact(&mut request).unwrap();
        tls.sock
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut more = [0u8; 1];
        let early_close = matches!(tls.read(&mut more), Ok(0));
        tls.sock.set_read_timeout(None).unwrap();
        tls.write_all(b"reply").unwrap();
        close_notify(tls);
        let answered = read_to_close_notify(tls).is_empty();
        (request, early_close, answered)
    });
    let client = connect(
        &format!("localhost:{port}"),
        &["--cacert", s(&pki.ca.cert), "--no-shutdown"],
        Input::Bytes(b"hello".to_vec()),
    );
    client.expect_code(0);
    assert_eq!(client.stdout, b"reply");
    let (request, early_close, answered) = peer.join().unwrap();
    assert_eq!(&request, b"hello");
    assert!(
        !early_close,
        "close_notify was sent at stdin EOF despite --no-shutdown"
    );
    assert!(answered, "no close_notify in answer to the peer's");
}

#[test]
fn stdin_eof_sends_close_notify() {
    let pki = Pki::new();
    let (port, peer) = peer::serve(&pki.server.cert, &pki.server.key, |tls| {
        let got = read_to_close_notify(tls);
        close_notify(tls);
        got
    });
    let client = connect(
        &format!("localhost:{port}"),
        &["--cacert", s(&pki.ca.cert)],
        Input::Bytes(b"abc".to_vec()),
    );
    client.expect_code(0);
    assert_eq!(peer.join().unwrap(), b"abc");
}

#[test]
fn stdin_from_a_regular_file_and_dev_null() {
    let dir = tempdir();
    let data = random_bytes(3 << 20, 7);
    let file = write(dir.path(), "data", &data);
    let listener = Listener::start(&[], Input::File(file));
    let client = connect(&listener.addr(), &["--pin", &listener.pin()], Input::Null);
    let server = listener.finish();
    client.expect_code(0);
    server.expect_code(0);
    assert_same(&client.stdout, &data, "client received");
    assert!(server.stdout.is_empty());
}

#[test]
fn stdout_closed_by_its_reader_ends_quietly() {
    let listener = Listener::start(&[], Input::Bytes(random_bytes(32 << 20, 8)));
    let mut cmd = stls();
    cmd.args(["connect", &listener.addr(), "--pin", &listener.pin()]);
    let mut client = Proc::spawn_raw(&mut cmd, Input::Held);
    // Read a little, like `| head -c 10`, then go away.
    let mut out = client.take_stdout();
    let mut first = [0u8; 10];
    out.read_exact(&mut first).unwrap();
    drop(out);
    let done = client.finish();
    done.expect_code(0);
    assert!(done.stderr.is_empty(), "stderr: {}", done.stderr);
    drop(listener);
}

#[test]
fn tcp_close_without_close_notify_is_truncation() {
    let pki = Pki::new();
    let data = random_bytes(100_000, 9);
    let sent = data.clone();
    let (port, peer) = peer::serve(&pki.server.cert, &pki.server.key, move |tls| {
        tls.write_all(&sent).unwrap();
        tls.flush().unwrap();
        // The client's stdin is at EOF, so its close_notify comes: take it first, or closing
        // with it unread would send a reset instead of a plain FIN.
        peer::read_to_close_notify(tls);
        tls.sock.shutdown(Shutdown::Both).unwrap();
    });
    let client = connect(
        &format!("localhost:{port}"),
        &["--cacert", s(&pki.ca.cert)],
        Input::Held,
    );
    peer.join().unwrap();
    client.expect_code(6).expect_stderr("without close_notify");
    assert_same(&client.stdout, &data, "data before the truncation");
}

#[test]
fn connection_reset_is_a_network_error() {
    let pki = Pki::new();
    let (port, peer) = peer::serve(&pki.server.cert, &pki.server.key, |tls| {
        tls.write_all(b"partial").unwrap();
        tls.flush().unwrap();
        // Linger 0: close sends RST instead of FIN.
        socket2::SockRef::from(&tls.sock)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    });
    let client = connect(
        &format!("localhost:{port}"),
        &["--cacert", s(&pki.ca.cert)],
        Input::Held,
    );
    peer.join().unwrap();
    client.expect_code(3).expect_stderr("reset");
}

#[test]
fn terminal_on_stdin_is_not_waited_for_once_the_peer_closes() {
    // Nobody types: the peer's close_notify must end the run anyway.
    let listener = Listener::start(&[], Input::Bytes(b"bye".to_vec()));
    let client = connect(
        &listener.addr(),
        &["--pin", &listener.pin()],
        Input::Terminal,
    );
    client.expect_code(0);
    assert_eq!(client.stdout, b"bye");
    listener.finish().expect_code(0);
}

#[test]
fn crlf_sends_each_typed_line_ending_as_cr_lf() {
    // A line protocol typed at a terminal or piped from printf: LF goes out as CR LF, a CR LF
    // already there is not doubled; what comes back is untouched.
    let l = Listener::start(&[], Input::Bytes(b"220 ready\n".to_vec()));
    let c = connect(
        &l.addr(),
        &["--insecure", "-C"],
        Input::Bytes(b"EHLO x\nDATA\r\n.\nQUIT\n".to_vec()),
    );
    c.expect_code(0);
    assert_eq!(c.stdout, b"220 ready\n");
    let server = l.finish();
    server.expect_code(0);
    assert_eq!(server.stdout, b"EHLO x\r\nDATA\r\n.\r\nQUIT\r\n");
    // Without -C the bytes go as they are.
    let l = Listener::start(&[], Input::Null);
    connect(&l.addr(), &["--insecure"], Input::Bytes(b"a\nb\n".to_vec())).expect_code(0);
    assert_eq!(l.finish().stdout, b"a\nb\n");
}
