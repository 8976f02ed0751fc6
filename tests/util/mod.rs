//! Test harness: run the real `stls` binary, feed its stdin, collect stdout and stderr, wait
//! with a generous safety limit (a hang fails the test; no test asserts a duration), and make
//! a throwaway PKI.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any one process may run before the test calls it hung.
const HANG: Duration = Duration::from_secs(60);

pub(crate) fn stls() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stls"))
}

/// `cmd` without the proxy variables of the environment the tests run in, so that only the
/// proxies a test names are used.
pub(crate) fn without_proxy_env(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
}

/// `cmd` with the trust store's environment (SSL_CERT_FILE, SSL_CERT_DIR) replaced by `vars`.
pub(crate) fn with_trust_env<'c>(cmd: &'c mut Command, vars: &[(&str, &str)]) -> &'c mut Command {
    cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

/// Run `script` with `sh -c`; its failure fails the test, saying `what` failed.
pub(crate) fn sh_ok(script: &str, what: &str) {
    let status = Command::new("sh").arg("-c").arg(script).status();
    assert!(matches!(status, Ok(s) if s.success()), "{what} failed");
}

/// What a process gets on stdin.
pub(crate) enum Input {
    Bytes(Vec<u8>),
    File(PathBuf),
    Null,
    /// A pipe the test keeps open and closes when it likes (see `Proc::close_stdin`).
    Held,
    /// A pseudo-terminal that nobody types into.
    Terminal,
    /// A descriptor the test made, such as one end of a pipe whose other end it keeps.
    Fd(std::os::fd::OwnedFd),
}

/// A pty pair: the controlling side stays with the test, the other becomes stdin.
fn openpty() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the given ints; the null pointers ask for
    // no name, termios or window size.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty failed");
    // No echo: what the test types is not sent back to it, where nobody reads it.
    // SAFETY: tcgetattr/tcsetattr on the descriptor openpty just returned, with a termios
    // that tcgetattr filled.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(slave, &mut t) == 0 {
            t.c_lflag &= !libc::ECHO;
            libc::tcsetattr(slave, libc::TCSANOW, &t);
        }
    }
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    }
}

/// A pipe: (read end, write end).
pub(crate) fn pipe() -> (std::os::fd::OwnedFd, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2() writes two new descriptors into the array we own; close-on-exec, so
    // only the process given one end as stdin has it.
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        0,
        "pipe failed"
    );
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    unsafe {
        use std::os::fd::FromRawFd;
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::fs::File::from(std::os::fd::OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

/// A finished process.
#[derive(Debug)]
pub(crate) struct Done {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Done {
    pub(crate) fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Assert the exit status, showing stderr when it is wrong.
    pub(crate) fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            code,
            "unexpected exit status; stderr:\n{}",
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "stls panicked:\n{}",
            self.stderr
        );
        self
    }

    pub(crate) fn expect_stderr(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }
}

/// A running process with its output being collected.
pub(crate) struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    feeder: Option<JoinHandle<()>>,
    stdout: Option<JoinHandle<()>>,
    received: Arc<Mutex<Vec<u8>>>,
    raw_stdout: Option<std::process::ChildStdout>,
    _pty: Option<std::os::fd::OwnedFd>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    stderr_thread: Option<JoinHandle<()>>,
}

impl Proc {
    pub(crate) fn spawn(cmd: &mut Command, input: Input) -> Proc {
        Self::spawn_with(cmd, input, true)
    }

    /// Like `spawn`, but stdout is left for the test to read (`take_stdout`).
    pub(crate) fn spawn_raw(cmd: &mut Command, input: Input) -> Proc {
        Self::spawn_with(cmd, input, false)
    }

    fn spawn_with(cmd: &mut Command, input: Input, collect: bool) -> Proc {
        let mut pty = None;
        let stdin = match &input {
            Input::Fd(fd) => Stdio::from(fd.try_clone().expect("dup stdin descriptor")),
            Input::Terminal => {
                let (master, slave) = openpty();
                pty = Some(master);
                Stdio::from(slave)
            }
            Input::Bytes(_) | Input::Held => Stdio::piped(),
            Input::File(path) => Stdio::from(std::fs::File::open(path).expect("open stdin file")),
            Input::Null => Stdio::null(),
        };
        // Its own process group, so that what it starts (a shell's commands, `-e` children)
        // goes with it when the test ends. A test that made it a session leader already has
        // that (setpgid then fails, harmlessly).
        // SAFETY: setpgid is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setpgid(0, 0);
                Ok(())
            });
        }
        let mut child = cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut pipe = child.stdin.take();
        let feeder = match input {
            Input::Bytes(bytes) => {
                let mut pipe = pipe.take().expect("stdin pipe");
                Some(std::thread::spawn(move || {
                    // The process may exit before taking everything; that is for the test to judge.
                    let _ = pipe.write_all(&bytes);
                }))
            }
            _ => None,
        };
        let mut raw_stdout = child.stdout.take();
        let received = Arc::new(Mutex::new(Vec::new()));
        let into = received.clone();
        let stdout = (collect)
            .then(|| raw_stdout.take())
            .flatten()
            .map(|mut out| {
                std::thread::spawn(move || {
                    let mut buf = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = out.read(&mut buf) {
                        into.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                })
            });
        let (tx, lines) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let collected = stderr.clone();
        let err = child.stderr.take().expect("stderr pipe");
        let stderr_thread = std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                collected.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        Proc {
            child,
            stdin: pipe,
            feeder,
            stdout,
            received,
            raw_stdout,
            _pty: pty,
            lines,
            stderr,
            stderr_thread: Some(stderr_thread),
        }
    }

    /// Wait for a stderr line containing `needle`; returns the line.
    pub(crate) fn wait_line(&self, needle: &str) -> String {
        let until = Instant::now() + HANG;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no stderr line with {needle:?}; stderr so far:\n{}",
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    /// Wait until stdout has carried `len` bytes; after 60 s, say how far it got.
    pub(crate) fn wait_stdout(&self, len: usize) -> Result<(), String> {
        let until = Instant::now() + HANG;
        loop {
            let have = self.received.lock().unwrap().len();
            if have >= len {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(format!(
                    "stdout stopped at {have} of {len} bytes; stderr so far:\n{}",
                    self.stderr.lock().unwrap()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// What the process wrote on stderr so far.
    pub(crate) fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// What the process wrote on stdout so far.
    pub(crate) fn stdout_so_far(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }

    /// Wait until stdout holds `needle`.
    pub(crate) fn wait_stdout_has(&self, needle: &[u8]) -> Result<(), String> {
        let until = Instant::now() + HANG;
        loop {
            let got = self.received.lock().unwrap().clone();
            if got.windows(needle.len()).any(|w| w == needle) {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(format!(
                    "stdout never had {:?}; it has {:?}; stderr:\n{}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(&got),
                    self.stderr.lock().unwrap()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub(crate) fn stdin(&mut self) -> &mut ChildStdin {
        self.stdin.as_mut().expect("stdin is held")
    }

    /// Take stdout away from the collector, to read it in the test.
    pub(crate) fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.raw_stdout.take().expect("spawned with spawn_raw")
    }

    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// On a terminal stdin (`Input::Terminal`): type Ctrl-D, which ends the input.
    pub(crate) fn type_eof(&mut self) {
        self.type_text(&[4]);
    }

    /// On a terminal stdin (`Input::Terminal`): type `text` (lines shorter than 4 KiB; the
    /// terminal does not echo).
    pub(crate) fn type_text(&mut self, text: &[u8]) {
        let pty = self._pty.as_ref().expect("stdin is a terminal");
        let mut master = std::fs::File::from(pty.try_clone().expect("dup pty"));
        master.write_all(text).expect("type on the terminal");
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal (`libc::SIGTERM`, …).
    pub(crate) fn signal(&self, sig: i32) {
        // SAFETY: kill() on the pid of our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Wait for exit (a hang is killed and fails the test) and collect everything.
    pub(crate) fn finish(self) -> Done {
        self.finish_within(HANG, true)
    }

    /// For a peer that is not ours: wait up to `limit`, then kill it and collect what it
    /// wrote (the test judges the bytes; its exit status is then a kill).
    pub(crate) fn finish_or_kill(self, limit: Duration) -> Done {
        self.finish_within(limit, false)
    }

    fn finish_within(mut self, limit: Duration, hang_fails: bool) -> Done {
        self.stdin = None;
        let until = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                let status = self.child.wait().expect("wait");
                if !hang_fails {
                    break status;
                }
                panic!("stls hung; stderr:\n{}", self.stderr.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if let Some(f) = self.feeder.take() {
            let _ = f.join();
        }
        if let Some(h) = self.stdout.take() {
            h.join().expect("stdout reader");
        }
        let stdout = std::mem::take(&mut *self.received.lock().unwrap());
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        let stderr = self.stderr.lock().unwrap().clone();
        Done {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory is
        // touched. The group is the one this Proc's child leads (spawned with process_group).
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `stls listen`, with the port and fingerprint it announced.
pub(crate) struct Listener {
    pub proc: Proc,
    pub port: u16,
    pub fingerprint: Option<String>,
}

impl Listener {
    /// `stls listen 127.0.0.1:0 ARGS…`
    pub(crate) fn start(args: &[&str], input: Input) -> Listener {
        let mut cmd = stls();
        cmd.arg("listen").arg("127.0.0.1:0").args(args);
        Self::start_cmd(&mut cmd, input)
    }

    pub(crate) fn start_cmd(cmd: &mut Command, input: Input) -> Listener {
        let proc = Proc::spawn(cmd, input);
        let line = proc.wait_line("listening on ");
        let port = line
            .rsplit(':')
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        let fingerprint = announced_fingerprint(&proc);
        Listener {
            proc,
            port,
            fingerprint,
        }
    }

    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn pin(&self) -> String {
        self.fingerprint
            .clone()
            .expect("listener printed a fingerprint")
    }

    pub(crate) fn finish(self) -> Done {
        self.proc.finish()
    }

    /// Wait for a stderr line containing `needle` (after the "listening on" line).
    pub(crate) fn wait_line(&self, needle: &str) -> String {
        self.proc.wait_line(needle)
    }

    pub(crate) fn signal(&self, sig: i32) {
        self.proc.signal(sig)
    }

    /// Stop a `-k` listener with SIGTERM and collect what it did.
    pub(crate) fn stop(self) -> Done {
        self.signal(libc::SIGTERM);
        self.finish()
    }
}

/// The fingerprint of the ephemeral certificate a listener printed, if it printed one.
fn announced_fingerprint(proc: &Proc) -> Option<String> {
    proc.stderr.lock().unwrap().lines().find_map(|l| {
        l.strip_prefix("stls: sha256 fingerprint ")
            .map(str::to_string)
    })
}

/// A running stls that listens on a Unix socket (`listen unix:…`, `connect --from unix:…`),
/// with the address and fingerprint it announced.
pub(crate) struct UnixServer {
    pub proc: Proc,
    /// As announced: `unix:PATH` or `unix:@NAME`.
    pub addr: String,
    pub fingerprint: Option<String>,
}

impl UnixServer {
    /// `stls listen ADDR ARGS…`, ADDR being `unix:PATH` or `unix:@NAME`.
    pub(crate) fn start(addr: &str, args: &[&str], input: Input) -> UnixServer {
        let mut cmd = stls();
        cmd.arg("listen").arg(addr).args(args);
        Self::start_cmd(&mut cmd, input)
    }

    /// Start `cmd` and wait for its `listening on unix:…` line.
    pub(crate) fn start_cmd(cmd: &mut Command, input: Input) -> UnixServer {
        let proc = Proc::spawn(cmd, input);
        let line = proc.wait_line("listening on ");
        let addr = line
            .split_once("listening on ")
            .map(|(_, addr)| addr.trim().to_string())
            .filter(|addr| addr.starts_with("unix:"))
            .unwrap_or_else(|| panic!("no unix: address in {line:?}"));
        let fingerprint = announced_fingerprint(&proc);
        UnixServer {
            proc,
            addr,
            fingerprint,
        }
    }

    pub(crate) fn pin(&self) -> String {
        self.fingerprint
            .clone()
            .expect("listener printed a fingerprint")
    }

    pub(crate) fn wait_line(&self, needle: &str) -> String {
        self.proc.wait_line(needle)
    }

    pub(crate) fn signal(&self, sig: i32) {
        self.proc.signal(sig)
    }

    pub(crate) fn finish(self) -> Done {
        self.proc.finish()
    }

    /// Stop a `-k` listener with SIGTERM and collect what it did.
    pub(crate) fn stop(self) -> Done {
        self.signal(libc::SIGTERM);
        self.finish()
    }
}

/// `stls listen -k 127.0.0.1:0` serving `leaf`, plus `extra`.
pub(crate) fn serve_k(leaf: &pki::Leaf, extra: &[&str], input: Input) -> Listener {
    let mut args = vec![
        "-k",
        "--cert",
        pki::s(&leaf.cert),
        "--key",
        pki::s(&leaf.key),
    ];
    args.extend_from_slice(extra);
    Listener::start(&args, input)
}

/// `stls inspect --json --starttls PROTO --cacert CA` of `port` on localhost: the fixture's
/// server certificate is seen, and verifies.
pub(crate) fn inspect_starttls_verifies(pki: &pki::Pki, proto: &str, port: u16) {
    let target = format!("localhost:{port}");
    let args = [
        "inspect",
        "--json",
        "--starttls",
        proto,
        "--cacert",
        pki::s(&pki.ca.cert),
    ];
    let done = run(&[&args[..], &[target.as_str()]].concat(), Input::Null);
    done.expect_code(0);
    let v: serde_json::Value = serde_json::from_slice(&done.stdout).expect("one JSON object");
    assert_eq!(v["verified"], true, "{proto}: {v}");
    assert_eq!(v["chain"][0]["subject"], "CN=localhost", "{proto}: {v}");
}

/// Run `stls ARGS…` to completion.
pub(crate) fn run(args: &[&str], input: Input) -> Done {
    let mut cmd = stls();
    cmd.args(args);
    Proc::spawn(&mut cmd, input).finish()
}

/// `stls connect ADDR ARGS…` to completion.
pub(crate) fn connect(addr: &str, args: &[&str], input: Input) -> Done {
    let mut cmd = stls();
    cmd.arg("connect").arg(addr).args(args);
    Proc::spawn(&mut cmd, input).finish()
}

/// Deterministic pseudo-random bytes (xorshift), so a failure can be reproduced.
pub(crate) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Assert two byte strings are equal without dumping megabytes on failure.
pub(crate) fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: got {} bytes, want {}; first difference at {:?}",
            got.len(),
            want.len(),
            first
        );
    }
}

/// A free TCP port on 127.0.0.1 (for peers that cannot report the one they bound).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Read from a raw socket until EOF or error (30 s at most); what arrived.
pub(crate) fn read_all(sock: &mut std::net::TcpStream) -> Vec<u8> {
    let _ = sock.set_read_timeout(Some(Duration::from_secs(30)));
    let mut got = Vec::new();
    let _ = sock.read_to_end(&mut got);
    got
}

/// PATH with /usr/sbin and /sbin after it, where Debian installs daemons (haproxy, nginx):
/// an ordinary user's PATH may lack them. Tests that start such a program give it this PATH.
pub(crate) fn path_with_sbin() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{path}:/usr/sbin:/sbin")
}

/// Whether a program is on PATH (or in /usr/sbin, see [`path_with_sbin`]); tests that need
/// an absent one print a skip line.
pub(crate) fn have(program: &str) -> bool {
    let found = Command::new("sh")
        .env("PATH", path_with_sbin())
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        eprintln!("SKIP: {program} is not installed; this check did not run");
    }
    found
}

/// A temporary directory that lives as long as the value.
pub(crate) fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

pub(crate) fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write file");
    path
}

pub(crate) mod openssl_ca;
pub(crate) mod pki;

pub(crate) mod peer;

/// Wait until something listens on 127.0.0.1:`port` (for peers that do not say when they
/// are ready), by reading the kernel's socket table rather than connecting.
pub(crate) fn wait_listening(port: u16) {
    let needle = format!(":{port:04X} ");
    let until = Instant::now() + HANG;
    while Instant::now() < until {
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text = std::fs::read_to_string(table).unwrap_or_default();
            // Columns: sl local_address rem_address st …; state 0A is LISTEN.
            if text.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3 && format!("{} ", cols[1]).ends_with(&needle) && cols[3] == "0A"
            }) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("nothing listens on port {port}");
}

/// Wait until something listens on the Unix socket `name`, as /proc/net/unix shows it (a
/// path, or `@NAME` for an abstract one), for peers that do not say when they are ready.
pub(crate) fn wait_unix_listening(name: &str) {
    let until = Instant::now() + HANG;
    while Instant::now() < until {
        let text = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
        // Columns: Num RefCount Protocol Flags Type St Inode Path; flag 00010000 is a
        // listening socket.
        if text.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 7 && cols[3] == "00010000" && cols[7] == name
        }) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("nothing listens on the Unix socket {name}");
}

/// The parent of each process, from /proc (a process that is gone is left out).
fn parents() -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid …: the name may hold spaces and parentheses.
            let rest = &stat[stat.rfind(')')? + 1..];
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// Whether `pid` still runs (a zombie has ended).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 1..];
            rest.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// Stop `pid` and everything it started, including processes that left its process group
/// (postfix's master makes itself a session leader, so killing the group misses it and its
/// children): stop the tree until it holds still, kill it, and wait until each one has ended.
/// For use in `Drop`: a process that outlives the wait is reported, not panicked on.
pub(crate) fn stop_tree(pid: u32) {
    let mut frozen: Vec<u32> = Vec::new();
    loop {
        let table = parents();
        let mut tree = vec![pid];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            tree.extend(table.iter().filter(|p| p.1 == parent).map(|p| p.0));
            i += 1;
        }
        let new: Vec<u32> = tree.into_iter().filter(|p| !frozen.contains(p)).collect();
        if new.is_empty() {
            break;
        }
        for &p in &new {
            // SAFETY: kill(2) sends a signal to a pid; no memory is touched.
            unsafe { libc::kill(p as libc::pid_t, libc::SIGSTOP) };
        }
        frozen.extend(new);
    }
    for &p in &frozen {
        // SAFETY: as above.
        unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
    }
    let until = Instant::now() + HANG;
    while frozen.iter().any(|&p| running(p)) {
        if Instant::now() > until {
            let left: Vec<&u32> = frozen.iter().filter(|&&p| running(p)).collect();
            eprintln!("processes {left:?} outlived SIGKILL");
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
