//! What a long-running stls counts for `--status` (`/metrics`, Prometheus text format) and
//! whether it is ready (`/readyz`): kept by every event loop, read by the status server.
//!
//! The loops only add to atomics (no lock on their path); the status server reads them when
//! scraped. The handshake histogram's buckets are fixed. Only the served certificate, set at
//! a (re)load, is behind a lock.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::{classify, Class};

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

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::Reset,
        Outcome::Handshake,
        Outcome::Verify,
        Outcome::Timeout,
        Outcome::Incomplete,
    ];

    /// How a connection that ended with `result` counts: by its error's class; a failure
    /// other than a timeout or a rejected certificate before the handshake was done is a
    /// failed handshake, and a reset, or any other failure, after it is `reset`.
    pub(crate) fn of(result: &anyhow::Result<()>, handshaking: bool) -> Outcome {
        let Err(e) = result else {
            return Outcome::Ok;
        };
        match classify(e) {
            Class::Handshake => Outcome::Handshake,
            Class::CertRejected => Outcome::Verify,
            Class::Timeout => Outcome::Timeout,
            Class::Incomplete => Outcome::Incomplete,
            _ if handshaking => Outcome::Handshake,
            _ => Outcome::Reset,
        }
    }

    /// Its name in `/metrics` and in the logs' `outcome`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Reset => "reset",
            Outcome::Handshake => "handshake",
            Outcome::Verify => "verify",
            Outcome::Timeout => "timeout",
            Outcome::Incomplete => "incomplete",
        }
    }
}

static READY: AtomicBool = AtomicBool::new(false);
static DRAINING: AtomicBool = AtomicBool::new(false);

static OPEN: AtomicI64 = AtomicI64::new(0);
static TOTAL: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];
static BYTES_IN: AtomicU64 = AtomicU64::new(0);
static BYTES_OUT: AtomicU64 = AtomicU64::new(0);
static RELOADS_OK: AtomicU64 = AtomicU64::new(0);
static RELOADS_FAILED: AtomicU64 = AtomicU64::new(0);

/// The handshake histogram's upper bounds, in seconds (`+Inf` follows).
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
/// Per bucket: handshakes that took at most its bound and more than the one before (the
/// last: more than every bound); summed when scraped.
static HANDSHAKES: [AtomicU64; 11] = [const { AtomicU64::new(0) }; 11];
/// The sum of the handshakes' durations, in microseconds.
static HANDSHAKE_MICROS: AtomicU64 = AtomicU64::new(0);

/// The certificate served: its name and when it expires.
static SERVED: Mutex<Vec<(String, i64)>> = Mutex::new(Vec::new());

/// Listening, with the certificates loaded.
pub(crate) fn set_ready() {
    READY.store(true, Ordering::Relaxed);
}

/// A signal asked us to stop: open connections are finishing, no new ones are taken.
#[allow(dead_code, reason = "called by the drain")]
pub(crate) fn set_draining() {
    DRAINING.store(true, Ordering::Relaxed);
}

/// What `/readyz` says: listening, and not draining.
pub(crate) fn ready() -> bool {
    READY.load(Ordering::Relaxed) && !DRAINING.load(Ordering::Relaxed)
}

/// A reload (SIGHUP or `--reload-every`) was done, or failed.
pub(crate) fn reloaded(ok: bool) {
    let counter = if ok { &RELOADS_OK } else { &RELOADS_FAILED };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A client was accepted (or a tunnel's connection made).
pub(crate) fn connection_opened() {
    OPEN.fetch_add(1, Ordering::Relaxed);
}

/// A connection ended: how, and the bytes it moved (`bytes_in`: from the peer).
pub(crate) fn connection_closed(outcome: Outcome, bytes_in: u64, bytes_out: u64) {
    OPEN.fetch_sub(1, Ordering::Relaxed);
    counted(outcome, bytes_in, bytes_out);
}

/// A client was refused before it became a connection (`--max-conns`): counted among the
/// connections' outcomes, never open.
pub(crate) fn connection_refused(outcome: Outcome) {
    counted(outcome, 0, 0);
}

fn counted(outcome: Outcome, bytes_in: u64, bytes_out: u64) {
    TOTAL[outcome as usize].fetch_add(1, Ordering::Relaxed);
    if bytes_in > 0 {
        BYTES_IN.fetch_add(bytes_in, Ordering::Relaxed);
    }
    if bytes_out > 0 {
        BYTES_OUT.fetch_add(bytes_out, Ordering::Relaxed);
    }
}

/// A handshake was completed in `seconds`.
pub(crate) fn handshake_done(seconds: f64) {
    let bucket = BUCKETS
        .iter()
        .position(|&bound| seconds <= bound)
        .unwrap_or(BUCKETS.len());
    HANDSHAKES[bucket].fetch_add(1, Ordering::Relaxed);
    // Saturating float-to-int: a negative or absurd duration cannot wrap the sum.
    let micros = (seconds * 1e6) as u64;
    HANDSHAKE_MICROS.fetch_add(micros, Ordering::Relaxed);
}

/// The certificate served now is `name`, expiring at `not_after` (seconds since the
/// epoch): it replaces the one served before.
pub(crate) fn certificate_expiry(name: &str, not_after: i64) {
    let mut served = SERVED.lock().unwrap_or_else(|e| e.into_inner());
    served.clear();
    served.push((name.to_string(), not_after));
}

/// `/metrics`: everything counted, in the Prometheus text exposition format (0.0.4).
pub(crate) fn render() -> String {
    let mut out = String::with_capacity(2048);
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    // Writing to a String cannot fail.
    let w = &mut out;
    let open = OPEN.load(Ordering::Relaxed).max(0);
    family(w, "connections_open", "gauge", "Connections open now.");
    let _ = writeln!(w, "stls_connections_open {open}");
    family(
        w,
        "connections_total",
        "counter",
        "Connections ended, by how (the exit classes).",
    );
    for outcome in Outcome::ALL {
        let (name, n) = (outcome.name(), load(&TOTAL[outcome as usize]));
        let _ = writeln!(w, "stls_connections_total{{outcome=\"{name}\"}} {n}");
    }
    family(
        w,
        "handshake_seconds",
        "histogram",
        "How long TLS handshakes took, from accepting the connection.",
    );
    let mut cumulative = 0;
    let bounds = BUCKETS.iter().map(f64::to_string).chain(["+Inf".into()]);
    for (i, bound) in bounds.enumerate() {
        cumulative += load(&HANDSHAKES[i]);
        let _ = writeln!(
            w,
            "stls_handshake_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    let sum = load(&HANDSHAKE_MICROS) as f64 / 1e6;
    let _ = writeln!(w, "stls_handshake_seconds_sum {sum}");
    let _ = writeln!(w, "stls_handshake_seconds_count {cumulative}");
    family(
        w,
        "bytes_total",
        "counter",
        "Plaintext bytes relayed: in from the TLS peer, out to it.",
    );
    for (direction, c) in [("in", &BYTES_IN), ("out", &BYTES_OUT)] {
        let n = load(c);
        let _ = writeln!(w, "stls_bytes_total{{direction=\"{direction}\"}} {n}");
    }
    family(
        w,
        "reloads_total",
        "counter",
        "Reloads of the certificate files, by result.",
    );
    for (result, c) in [("ok", &RELOADS_OK), ("failed", &RELOADS_FAILED)] {
        let n = load(c);
        let _ = writeln!(w, "stls_reloads_total{{result=\"{result}\"}} {n}");
    }
    family(
        w,
        "certificate_expiry_timestamp_seconds",
        "gauge",
        "When the certificate served expires (named by its subject CN, else its first \
         subjectAltName).",
    );
    let served = SERVED
        .lock()
        .map_or_else(|e| e.into_inner().clone(), |s| s.clone());
    for (name, not_after) in served {
        let name = label_value(&name);
        let _ = writeln!(
            w,
            "stls_certificate_expiry_timestamp_seconds{{name=\"{name}\"}} {not_after}"
        );
    }
    family(
        w,
        "build_info",
        "gauge",
        "The version of stls and of rustls.",
    );
    let _ = writeln!(
        w,
        "stls_build_info{{version=\"{}\",rustls=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        env!("STLS_RUSTLS_VERSION")
    );
    out
}

/// A metric family's HELP and TYPE lines.
fn family(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP stls_{name} {help}");
    let _ = writeln!(w, "# TYPE stls_{name} {kind}");
}

/// A label's value as the text format wants it: backslash, double quote and line feed
/// escaped.
fn label_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn every_outcome_is_there_from_the_start_and_buckets_add_up() {
        handshake_done(0.003);
        handshake_done(100.0);
        let text = render();
        for outcome in Outcome::ALL {
            let line = format!("stls_connections_total{{outcome=\"{}\"}} ", outcome.name());
            assert!(text.contains(&line), "{text}");
        }
        // Cumulative: the 5 ms bucket holds the 3 ms handshake, +Inf both.
        let count = |le: &str| {
            let prefix = format!("stls_handshake_seconds_bucket{{le=\"{le}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|v| v.parse::<u64>().ok())
                .expect("the bucket is there")
        };
        assert!(count("0.005") >= 1);
        assert!(count("+Inf") > count("5"));
    }
}
