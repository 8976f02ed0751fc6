//! What the event loop's mio tokens mean, and the readiness each descriptor remembers between
//! events.
//!
//! Tokens: the listening socket, the waker (stdin/stdout threads) and the signal pipe have
//! fixed tokens; connection `key` owns [`PARTS`] tokens after them, one per descriptor it may
//! register (its TLS socket; a child's stdin and stdout pipes, or a tunnel's plain TCP
//! connection).
//!
//! Readiness: every descriptor is edge-triggered and registered once, so an event only says
//! "ready"; the descriptor stays ready until an operation on it would block. [`Ready`]
//! remembers that, and [`attempt`] is the one place an operation clears it.

use std::io;

use mio::event::Event;
use mio::Token;

pub(crate) const LISTENER: Token = Token(0);
pub(crate) const WAKER: Token = Token(1);
pub(crate) const SIGNALS: Token = Token(2);
/// The first token of connection 0.
const FIRST: usize = 3;
/// Tokens per connection.
const PARTS: usize = 4;

/// Which of a connection's descriptors an event is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// The TLS connection's socket.
    Socket,
    ChildStdin,
    ChildStdout,
    /// A tunnel's plain TCP connection: the local end of `listen --to` and `connect --from`.
    Tunnel,
}

/// The token of connection `key`'s `part`.
pub(crate) fn token(key: usize, part: Part) -> Token {
    Token(FIRST + key * PARTS + part as usize)
}

/// The connection and part a connection token is for; `None` for the fixed tokens.
pub(crate) fn part_of(token: Token) -> Option<(usize, Part)> {
    let t = token.0.checked_sub(FIRST)?;
    let part = match t % PARTS {
        0 => Part::Socket,
        1 => Part::ChildStdin,
        2 => Part::ChildStdout,
        _ => Part::Tunnel,
    };
    Some((t / PARTS, part))
}

/// What a descriptor was last known to be ready for. A new descriptor counts as ready both
/// ways: the first attempt finds out.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ready {
    pub read: bool,
    pub write: bool,
    /// The descriptor reported an error (a reset): seen even while nothing is read or
    /// written on it, as when back-pressure holds a connection still.
    pub failed: bool,
}

impl Default for Ready {
    fn default() -> Self {
        Ready {
            read: true,
            write: true,
            failed: false,
        }
    }
}

impl Ready {
    /// Remember what `event` says; a closed or failed descriptor is "ready" too, so the next
    /// attempt sees the EOF or the error.
    pub(crate) fn update(&mut self, event: &Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            self.write = true;
        }
        if event.is_error() {
            self.failed = true;
        }
    }
}

/// Run `op` if `ready` says it may not block, retrying on EINTR. `None` when it would block
/// (and `ready` is cleared until the next event).
pub(crate) fn attempt<T>(
    ready: &mut bool,
    mut op: impl FnMut() -> io::Result<T>,
) -> Option<io::Result<T>> {
    while *ready {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => *ready = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return Some(result),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for key in [0, 1, 7, 65_535] {
            for part in [
                Part::Socket,
                Part::ChildStdin,
                Part::ChildStdout,
                Part::Tunnel,
            ] {
                let t = token(key, part);
                assert!(![LISTENER, WAKER, SIGNALS].contains(&t));
                assert_eq!(part_of(t), Some((key, part)));
            }
        }
        assert_eq!(part_of(SIGNALS), None);
    }

    #[test]
    fn would_block_clears_readiness_and_stops() {
        let mut ready = true;
        let mut calls = 0;
        let r: Option<io::Result<()>> = attempt(&mut ready, || {
            calls += 1;
            match calls {
                1 => Err(io::ErrorKind::Interrupted.into()),
                _ => Err(io::ErrorKind::WouldBlock.into()),
            }
        });
        assert!(r.is_none());
        assert!(!ready);
        assert_eq!(calls, 2);
        assert!(attempt(&mut ready, || Ok(())).is_none());
    }
}
