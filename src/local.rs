//! What a connection's plaintext meets on our side: stdin/stdout, shared by every connection
//! of the run (see `stdio`), or a child process of its own (`-e`/`-c`, see `exec`).
//!
//! The session moves bytes between its TLS socket and this; here is what each kind of local
//! end holds, and how its descriptors are registered, woken and let go.

use std::net::SocketAddr;

use anyhow::Result;
use mio::{Interest, Registry};

use crate::events::{token, Part};
use crate::exec::{Child, Program};

pub(crate) enum Local {
    /// stdin/stdout: the next stdin chunk to send and how far into it.
    Stdio { next: u64, offset: usize },
    /// A child, started once the handshake is done; `leftover` is output TLS did not take.
    Exec {
        child: Option<Child>,
        leftover: Vec<u8>,
    },
}

impl Local {
    pub(crate) fn new(exec: bool) -> Local {
        match exec {
            true => Local::Exec {
                child: None,
                leftover: Vec::new(),
            },
            false => Local::Stdio { next: 0, offset: 0 },
        }
    }

    /// A readiness event for one of a child's pipes.
    pub(crate) fn on_event(&mut self, part: Part) {
        if let Local::Exec {
            child: Some(child), ..
        } = self
        {
            match part {
                Part::ChildStdin => child.ready.write = true,
                Part::ChildStdout => child.ready.read = true,
                Part::Socket => {}
            }
        }
    }

    /// Start `program` for connection `key` (from `addr`) and register its pipes.
    pub(crate) fn spawn(
        &mut self,
        program: &Program,
        addr: Option<SocketAddr>,
        registry: &Registry,
        key: usize,
    ) -> Result<u32> {
        let Local::Exec { child, .. } = self else {
            return Ok(0);
        };
        let mut spawned = program.spawn(addr)?;
        if let Some(pipe) = spawned.stdin.as_mut() {
            registry.register(pipe, token(key, Part::ChildStdin), Interest::WRITABLE)?;
        }
        if let Some(pipe) = spawned.stdout.as_mut() {
            registry.register(pipe, token(key, Part::ChildStdout), Interest::READABLE)?;
        }
        let pid = spawned.proc.id();
        *child = Some(spawned);
        Ok(pid)
    }

    /// The pid of the child, while there is one.
    pub(crate) fn child_pid(&self) -> Option<u32> {
        match self {
            Local::Exec {
                child: Some(child), ..
            } => Some(child.proc.id()),
            _ => None,
        }
    }

    /// The child has exited: reap it, keeping its status for when its output ends.
    pub(crate) fn reap_child(&mut self) {
        if let Local::Exec {
            child: Some(child), ..
        } = self
        {
            child.exit_status();
        }
    }

    /// The connection is over: deregister and close the child's pipes, and hand the child
    /// back to be reaped.
    pub(crate) fn close(self, registry: &Registry) -> Option<Child> {
        let Local::Exec {
            child: Some(mut child),
            ..
        } = self
        else {
            return None;
        };
        if let Some(pipe) = child.stdin.as_mut() {
            let _ = registry.deregister(pipe);
        }
        if let Some(pipe) = child.stdout.as_mut() {
            let _ = registry.deregister(pipe);
        }
        child.close();
        Some(child)
    }
}
