//! `-e/--exec` and `-c/--sh-exec`: a child process per connection whose stdin receives the
//! peer's bytes and whose stdout is sent to the peer. Its stderr stays ours.
//!
//! Our ends of its pipes are non-blocking and served by the same event loop as the sockets, so
//! a thousand children cost no threads. The descriptors are ours alone (not inherited), so
//! setting O_NONBLOCK on them affects nobody else.

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use anyhow::Result;
use mio::unix::pipe;
use rustix::process::{setrlimit, Resource, Rlimit};

use crate::error::{io_phrase, Class};
use crate::events::{attempt, Ready};
use crate::report;
use crate::stream::Peer;

/// What to run for each connection.
#[derive(Clone, Debug)]
pub(crate) struct Program {
    /// argv, with `argv[0]` the program.
    argv: Vec<String>,
    /// How messages name it: the command as the user typed it.
    pub text: String,
    /// The descriptor limit to start it with, when ours was raised: programs that use
    /// select() or close every descriptor up to the limit expect the usual one.
    nofile: Option<Rlimit>,
}

impl Program {
    /// `-e CMD`: split into words like a shell would (quotes allowed), but run without one.
    pub(crate) fn exec(text: &str) -> Result<Program> {
        let argv = shlex::split(text)
            .filter(|argv| !argv.is_empty())
            .ok_or_else(|| {
                Class::Usage.err(format!(
                    "--exec '{}': expected a command and its arguments (unbalanced quotes?)",
                    report::escape(text)
                ))
            })?;
        if !on_path(&argv[0]) {
            return Err(Class::Usage.err(format!(
                "--exec: '{}' is not an executable file or a command on PATH",
                report::escape(&argv[0])
            )));
        }
        Ok(Program {
            argv,
            text: text.to_string(),
            nofile: None,
        })
    }

    /// `-c CMD`: run by `/bin/sh -c`.
    pub(crate) fn shell(text: &str) -> Program {
        Program {
            argv: vec!["/bin/sh".into(), "-c".into(), text.into()],
            text: text.to_string(),
            nofile: None,
        }
    }

    /// Start the program with this descriptor limit (the one stls itself started with).
    pub(crate) fn with_nofile(self, nofile: Option<Rlimit>) -> Program {
        Program { nofile, ..self }
    }

    /// Start the program for a connection from `peer`.
    #[allow(unsafe_code)] // pre_exec is unsafe by signature
    pub(crate) fn spawn(
        &self,
        peer: Option<&Peer>,
        env: &[(&'static str, String)],
    ) -> Result<Child> {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // Never inherited from our own environment: absent means absent.
        for name in [
            "STLS_PEER_ADDR",
            "STLS_PEER_PORT",
            "STLS_PEER_UID",
            "STLS_PEER_GID",
            "STLS_PEER_PID",
            "STLS_PEER_CN",
            "STLS_PEER_SANS",
            "STLS_PEER_SHA256",
            "STLS_TLS_VERSION",
            "STLS_TLS_CIPHER",
            "STLS_ALPN",
            "STLS_SNI",
        ] {
            cmd.env_remove(name);
        }
        match peer {
            Some(Peer::Ip(addr)) => {
                cmd.env("STLS_PEER_ADDR", addr.ip().to_string())
                    .env("STLS_PEER_PORT", addr.port().to_string());
            }
            Some(Peer::Unix { cred: Some(c), .. }) => {
                cmd.env("STLS_PEER_UID", c.uid.to_string())
                    .env("STLS_PEER_GID", c.gid.to_string())
                    .env("STLS_PEER_PID", c.pid.to_string());
            }
            _ => {}
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        if let Some(limit) = self.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec only setrlimit, which is async-signal-safe, on a
            // copy the closure owns.
            unsafe {
                cmd.pre_exec(move || {
                    let _ = setrlimit(Resource::Nofile, limit);
                    Ok(())
                });
            }
        }
        // std resets SIGPIPE to its default in the child, so `yes | head`-style programs end
        // the way they would in a shell.
        let mut proc = cmd.spawn().map_err(|e| {
            anyhow::anyhow!(
                "cannot run '{}': {}",
                report::escape(&self.text),
                io_phrase(&e)
            )
        })?;
        let pipes = (|| -> io::Result<(pipe::Sender, pipe::Receiver)> {
            let stdin = pipe::Sender::from(proc.stdin.take().ok_or(io::ErrorKind::Other)?);
            let stdout = pipe::Receiver::from(proc.stdout.take().ok_or(io::ErrorKind::Other)?);
            stdin.set_nonblocking(true)?;
            stdout.set_nonblocking(true)?;
            Ok((stdin, stdout))
        })();
        match pipes {
            Ok((stdin, stdout)) => Ok(Child {
                proc,
                text: self.text.clone(),
                status: None,
                told: false,
                stdin: Some(stdin),
                stdout: Some(stdout),
                ready: Ready::default(),
            }),
            Err(e) => {
                let _ = proc.kill();
                let _ = proc.wait();
                Err(anyhow::anyhow!(
                    "setting up pipes for a child: {}",
                    io_phrase(&e)
                ))
            }
        }
    }
}

/// Whether `name` can be run: a path to an executable file, or a command found on PATH.
fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        return executable(Path::new(name));
    }
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(name))))
        .unwrap_or(false)
}

/// A running child and our ends of its pipes; a pipe is `None` once closed.
pub(crate) struct Child {
    pub proc: std::process::Child,
    /// The command as the user typed it, for messages.
    text: String,
    /// How it exited, once it has (it is reaped from the event loop, on SIGCHLD).
    status: Option<ExitStatus>,
    /// Its exit status has been shown (`-v`).
    told: bool,
    pub stdin: Option<pipe::Sender>,
    pub stdout: Option<pipe::Receiver>,
    /// Our ends of its pipes: `write` for its stdin, `read` for its stdout.
    pub ready: Ready,
}

/// The result of offering bytes to the child's stdin.
pub(crate) enum Fed {
    /// This many were taken (0: the pipe is full for now).
    Took(usize),
    /// The child no longer reads its stdin: the bytes are to be discarded.
    Closed,
}

impl Child {
    /// Write as much of `data` as the pipe takes.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Fed {
        let Some(pipe) = self.stdin.as_mut() else {
            return Fed::Closed;
        };
        match attempt(&mut self.ready.write, || pipe.write(data)) {
            None => Fed::Took(0),
            Some(Ok(n)) => Fed::Took(n),
            // EPIPE: the child closed its stdin or exited.
            Some(Err(_)) => {
                self.stdin = None;
                Fed::Closed
            }
        }
    }

    /// Read what the child wrote: `Some(0)` at its EOF, `None` if nothing is ready.
    pub(crate) fn drain(&mut self, buf: &mut [u8]) -> Option<usize> {
        let pipe = self.stdout.as_mut()?;
        match attempt(&mut self.ready.read, || pipe.read(buf))? {
            Ok(n) => Some(n),
            Err(_) => Some(0),
        }
    }

    /// Give the child EOF on its stdin.
    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Close both pipes: the child sees EOF on stdin and SIGPIPE on its next write.
    pub(crate) fn close(&mut self) {
        self.stdin = None;
        self.stdout = None;
    }

    /// How the child exited, reaping it if it just has; `None` while it runs.
    pub(crate) fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.proc.try_wait().ok().flatten();
        }
        self.status
    }

    /// Reap the child if it has exited; true once it has (or cannot be waited for). Its exit
    /// status, 0 included, is shown once under `-v`, whoever reaped it.
    pub(crate) fn reaped(&mut self, label: &str) -> bool {
        if self.status.is_none() {
            match self.proc.try_wait() {
                Ok(Some(status)) => self.status = Some(status),
                Ok(None) => return false,
                Err(_) => return true,
            }
        }
        if let (Some(status), false) = (self.status, self.told) {
            self.told = true;
            report::verbose(format_args!(
                "{label}: '{}' {}",
                report::escape(&self.text),
                describe_status(status)
            ));
        }
        true
    }
}

/// "exited with status 3", "was killed by signal 9".
pub(crate) fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => "ended".to_string(),
    }
}
