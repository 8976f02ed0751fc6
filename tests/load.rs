//! `listen` under hostile load: clients that never handshake, clients that never read,
//! commands that exit early, running out of descriptors. What is checked is what a user
//! sees: the good client's bytes and exit status, the listener's log lines, /proc.

use crate::util;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use util::{assert_same, pipe, random_bytes, read_all, stls, Input, Listener, Proc};

/// `stls connect` to a listener, pinned to its fingerprint, as a running process.
fn client(l: &Listener, extra: &[&str], input: Input) -> Proc {
    let mut cmd = stls();
    cmd.args(["connect", &l.addr(), "--pin", &l.pin()])
        .args(extra);
    Proc::spawn(&mut cmd, input)
}

/// Poll `cond` until it holds; after 60 s the test fails as a hang, saying `what`.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < until, "still waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The children of `pid` that have exited and not been reaped (state Z in /proc).
fn zombies(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may contain spaces and parentheses.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 1 && fields[0] == "Z" && fields[1] == pid.to_string() {
            if let Some(child) = head.split_whitespace().next().and_then(|p| p.parse().ok()) {
                found.push(child);
            }
        }
    }
    found
}

#[test]
fn a_command_that_exits_is_reaped_while_its_connection_goes_on() {
    // sh exits at once; the cat it leaves in the background holds the connection's pipes and
    // echoes, so the connection outlives its command.
    let l = Listener::start(
        &["-k", "-c", "exec 3<&0; cat <&3 3<&- & exit 0"],
        Input::Null,
    );
    let mut c = client(&l, &[], Input::Held);
    c.stdin().write_all(b"ping\n").unwrap();
    c.wait_stdout(5).unwrap();
    let stls = l.proc.pid();
    wait_until(
        "no zombie child of stls while the connection is open",
        || zombies(stls).is_empty(),
    );
    // The connection still works, and ends cleanly once the client's input ends.
    c.stdin().write_all(b"pong\n").unwrap();
    c.close_stdin();
    let done = c.finish();
    done.expect_code(0);
    assert_eq!(done.stdout, b"ping\npong\n");
    l.stop().expect_code(143);
}

/// Let this test process hold many sockets: its descriptor limit raised to the hard one,
/// which is returned.
fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit read and write a plain struct we own.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        limit.rlim_cur
    }
}

#[test]
fn a_thousand_silent_connections_do_not_keep_a_client_out() {
    // 1,000, or as many as this machine lets the test hold (with room for the other tests);
    // far more than --max-handshakes either way.
    let n = 1000.min(raise_fd_limit().saturating_sub(200));
    assert!(n > 400, "the descriptor limit is too low for this test");
    let l = Listener::start(&["-k", "-e", "cat"], Input::Null);
    // Slowloris: connections that never send a ClientHello, all kept open.
    let silent: Vec<TcpStream> = (0..n)
        .map(|_| TcpStream::connect(l.addr()).expect("tcp connect"))
        .collect();
    let data = random_bytes(100_000, 13);
    let done = client(&l, &[], Input::Bytes(data.clone())).finish();
    done.expect_code(0);
    assert_same(
        &done.stdout,
        &data,
        "echoed while the silent connections sit open",
    );
    drop(silent);
    let done = l.stop();
    done.expect_code(143);
    done.expect_stderr("dropped while still in its TLS handshake, the oldest of 256 unfinished");
}

#[test]
fn max_handshakes_drops_the_oldest_unfinished_handshake() {
    let l = Listener::start(
        &["-k", "--max-handshakes", "2", "--handshake-timeout", "1000"],
        Input::Null,
    );
    let mut first = TcpStream::connect(l.addr()).unwrap();
    let first_port = first.local_addr().unwrap().port();
    let _second = TcpStream::connect(l.addr()).unwrap();
    let _third = TcpStream::connect(l.addr()).unwrap();
    let line = l.wait_line("(--max-handshakes)");
    assert!(
        line.contains(&format!("client 127.0.0.1:{first_port}: dropped")),
        "the first one goes: {line}"
    );
    assert!(read_all(&mut first).is_empty(), "the first is closed");
    // A client arriving now is served (another silent one makes room for it).
    let done = client(&l, &[], Input::Bytes(b"in\n".to_vec())).finish();
    done.expect_code(0);
    let done = l.stop();
    done.expect_code(143);
    assert_eq!(done.stdout, b"in\n");
}

#[test]
fn out_of_descriptors_the_oldest_unfinished_handshake_makes_room() {
    let mut cmd = stls();
    cmd.args(["listen", "127.0.0.1:0", "-k", "--handshake-timeout", "1000"]);
    // SAFETY: between fork and exec only setrlimit, which is async-signal-safe, on a struct
    // owned by the closure.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 32,
                rlim_max: 32,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let l = Listener::start_cmd(&mut cmd, Input::Null);
    // More silent connections than stls has descriptors for.
    let silent: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(l.addr()).expect("tcp connect"))
        .collect();
    let done = client(&l, &[], Input::Bytes(b"room\n".to_vec())).finish();
    done.expect_code(0);
    drop(silent);
    let done = l.stop();
    done.expect_code(143);
    assert_eq!(done.stdout, b"room\n");
    done.expect_stderr("to free a descriptor for a new client");
}

#[test]
fn a_command_starts_with_the_descriptor_limit_stls_was_given() {
    // stls raises its own soft limit for its many connections; what it runs gets the usual one.
    let mut cmd = stls();
    cmd.args(["listen", "127.0.0.1:0", "-k", "-c", "ulimit -n"]);
    // SAFETY: between fork and exec only getrlimit and setrlimit, which are async-signal-safe,
    // on a struct the closure owns.
    unsafe {
        cmd.pre_exec(|| {
            let mut limit: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_max <= 256 {
                return Err(std::io::Error::other("hard descriptor limit too low"));
            }
            limit.rlim_cur = 256;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let l = Listener::start_cmd(&mut cmd, Input::Null);
    let done = client(&l, &[], Input::Null).finish();
    done.expect_code(0);
    assert_eq!(done.stdout, b"256\n");
    l.stop().expect_code(143);
}

#[test]
fn a_client_that_does_not_read_is_dropped_and_the_others_get_all_of_stdin() {
    let (input, mut feed) = pipe();
    let l = Listener::start(&["-k", "-v", "--stall-timeout", "1"], Input::Fd(input));
    // A client whose stdout nobody reads: once its buffers are full it takes no more.
    let mut cmd = stls();
    cmd.args(["connect", &l.addr(), "--pin", &l.pin()]);
    let stuck = Proc::spawn_raw(&mut cmd, Input::Terminal);
    let stuck_addr = l
        .wait_line("connection from ")
        .rsplit(' ')
        .next()
        .expect("an address")
        .to_string();
    l.wait_line("TLSv1.3");
    let good = client(&l, &[], Input::Terminal);
    l.wait_line("TLSv1.3");
    // More than the stuck client's pipe, buffers and socket can hold.
    let data = random_bytes(32 << 20, 17);
    let writer = {
        let data = data.clone();
        std::thread::spawn(move || {
            let _ = feed.write_all(&data);
        })
    };
    let dropped = l.wait_line("(--stall-timeout)");
    assert!(
        dropped.contains(&format!("client {stuck_addr} took no data")),
        "the stuck client is named: {dropped}"
    );
    writer.join().unwrap();
    let done = good.finish();
    done.expect_code(0);
    assert_same(&done.stdout, &data, "the good client gets all of stdin");
    drop(stuck);
    l.stop().expect_code(143);
}
