//! Faults beyond the ones in stream.rs and errors.rs: hostile record sizes, a stalled stdout
//! under a fast sender (memory stays bounded), a silent server.

use crate::util;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use util::{connect, stls, Input, Listener, Proc};

/// A TCP server that answers the first connection with `bytes`, then holds it open a while.
fn raw_server(bytes: Vec<u8>) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        if let Ok((mut sock, _)) = listener.accept() {
            let mut hello = [0u8; 512];
            let _ = sock.read(&mut hello);
            let _ = sock.write_all(&bytes);
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    (port, t)
}

#[test]
fn an_oversized_record_fails_the_handshake_cleanly() {
    // A handshake record claiming 65535 bytes: far over TLS's 16 KiB (+ expansion) limit.
    let mut bytes = vec![0x16, 0x03, 0x03, 0xff, 0xff];
    bytes.extend(std::iter::repeat_n(0x41, 65535));
    let (port, t) = raw_server(bytes);
    let done = connect(&format!("127.0.0.1:{port}"), &["-k"], Input::Null);
    done.expect_code(4);
    assert!(done.stdout.is_empty());
    t.join().unwrap();
}

#[test]
fn a_huge_certificate_message_fails_the_handshake_cleanly() {
    // A ServerHello-sized lie: a handshake message announcing 16 MiB, sent in maximal records.
    let mut msg = vec![0x0b, 0xff, 0xff, 0xff];
    msg.extend(std::iter::repeat_n(0, 16000));
    let mut bytes = Vec::new();
    for _ in 0..40 {
        let len = msg.len() as u16;
        bytes.extend([0x16, 0x03, 0x03]);
        bytes.extend(len.to_be_bytes());
        bytes.extend(&msg);
    }
    let (port, t) = raw_server(bytes);
    let done = connect(&format!("127.0.0.1:{port}"), &["-k"], Input::Null);
    done.expect_code(4);
    t.join().unwrap();
}

/// Peak resident memory of a process, in KiB.
fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_stalled_stdout_keeps_memory_bounded_and_loses_nothing() {
    const SIZE: usize = 200 << 20;
    let dir = util::tempdir();
    let file = dir.path().join("big");
    let f = std::fs::File::create(&file).unwrap();
    f.set_len(SIZE as u64).unwrap();
    let l = Listener::start(&[], Input::File(file));
    let mut cmd = stls();
    cmd.args(["connect", &l.addr(), "--pin", &l.pin()]);
    let mut c = Proc::spawn_raw(&mut cmd, Input::Null);
    let mut out = c.take_stdout();
    // Nobody reads stdout for a while: the sender is stopped by backpressure, not buffered.
    std::thread::sleep(Duration::from_secs(2));
    let stalled = vm_hwm(c.pid()) + vm_hwm(l.proc.pid());
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let until = Instant::now() + Duration::from_secs(120);
    while Instant::now() < until {
        match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                assert!(buf[..n].iter().all(|&b| b == 0), "a byte changed");
                total += n;
            }
        }
    }
    let peak = vm_hwm(c.pid());
    c.finish().expect_code(0);
    l.finish().expect_code(0);
    assert_eq!(total, SIZE, "every byte arrived once");
    // Generous bound: both processes together while stalled, and the client at its peak, stay
    // far below the 200 MiB in flight.
    assert!(
        stalled < 64 * 1024,
        "{stalled} KiB while stdout was stalled"
    );
    assert!(peak < 48 * 1024, "{peak} KiB peak");
}

#[test]
fn a_stderr_nobody_reads_does_not_hold_the_listener_up() {
    // stderr is a pipe whose reader never reads: once its 64 KiB are full, lines are dropped
    // rather than waited for, and clients are still served.
    let port = util::free_port();
    let mut cmd = stls();
    cmd.args([
        "listen",
        "-k",
        &format!("127.0.0.1:{port}"),
        "-c",
        "echo served",
    ])
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("stls listen");
    util::wait_listening(port);
    // Each client that leaves during its handshake is a line on stderr: ~200 KiB of them.
    // (A listener that stopped accepting fills its backlog: then connecting gives up.)
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..2500 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(mut s) => {
                let _ = s.write_all(b"\x16\x03\x01\x00\x05hello");
            }
            Err(_) => break,
        }
    }
    let done = connect(
        &format!("127.0.0.1:{port}"),
        &["--insecure", "-w", "10"],
        Input::Null,
    );
    let _ = child.kill();
    let _ = child.wait();
    done.expect_code(0);
    assert_eq!(done.stdout, b"served\n");
}
