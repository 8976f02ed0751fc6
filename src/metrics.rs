//! What a long-running stls counts for `--status` (`/metrics`, Prometheus text format) and
//! whether it is ready (`/readyz`): kept by every event loop, read by the status server.

// The counting functions are called from the loops as the status server comes in.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};

/// How a connection ended, as metrics and logs count it: the exit classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Reset,
    Handshake,
    Verify,
    Timeout,
    Incomplete,
}

static READY: AtomicBool = AtomicBool::new(false);
static DRAINING: AtomicBool = AtomicBool::new(false);

/// Listening, with the certificates loaded.
pub(crate) fn set_ready() {
    READY.store(true, Ordering::Relaxed);
}

/// A signal asked us to stop: open connections are finishing, no new ones are taken.
pub(crate) fn set_draining() {
    DRAINING.store(true, Ordering::Relaxed);
}

/// What `/readyz` says: listening, and not draining.
pub(crate) fn ready() -> bool {
    READY.load(Ordering::Relaxed) && !DRAINING.load(Ordering::Relaxed)
}

/// A reload (SIGHUP or `--reload-every`) was done, or failed.
pub(crate) fn reloaded(_ok: bool) {}

/// A client was accepted (or a tunnel's connection made).
pub(crate) fn connection_opened() {}

/// A connection ended: how, and the bytes it moved (`bytes_in`: from the peer).
pub(crate) fn connection_closed(_outcome: Outcome, _bytes_in: u64, _bytes_out: u64) {}

/// A handshake was completed in `seconds`.
pub(crate) fn handshake_done(_seconds: f64) {}

/// The certificate served as `name` expires at `not_after` (seconds since the epoch).
pub(crate) fn certificate_expiry(_name: &str, _not_after: i64) {}
