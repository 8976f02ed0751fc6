//! `listen` under hostile load: clients that never handshake, clients that never read,
//! commands that exit early, running out of descriptors. What is checked is what a user
//! sees: the good client's bytes and exit status, the listener's log lines, /proc.

mod util;

use std::io::Write;
use std::time::{Duration, Instant};

use util::{stls, Input, Listener, Proc};

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
