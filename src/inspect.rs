//! `stls inspect`: probe every target on one event loop, at most `--parallel` connecting or
//! in their handshake at once, and print each one's verdict and chain as it finishes — a
//! readable summary, or one JSON object per line. The exit status is that of the first
//! failing target in input order.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use mio::{Events, Poll, Registry, Waker};
use serde_json::{json, Value};
use slab::Slab;

use crate::describe::{date, CertInfo};
use crate::error::{classify, io_phrase, reported, Class};
use crate::events::{part_of, Part, WAKER};
use crate::probe::{Outcome, Probe};
use crate::report;
use crate::resolve::{Lookup, Resolver};
use crate::route::Route;
use crate::settings::{Inspect, Target};

/// A target whose name is being looked up; it holds its place among `--parallel`.
struct Resolving {
    index: usize,
    lookup: Lookup,
    /// -w, from when the lookup began: the lookup, connecting and the handshake.
    deadline: Instant,
}

/// One target's result, as printed.
struct Verdict {
    status: u8,
    /// Why it failed; `None` exactly when status is 0.
    error: Option<String>,
    verified: bool,
    certs: Vec<Option<CertInfo>>,
}

#[allow(
    clippy::too_many_lines,
    reason = "the event loop: its steps share the state of the resolving and probing targets"
)]
pub(crate) fn run(s: &Inspect) -> Result<()> {
    let mut poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let mut events = Events::with_capacity(1024);
    let mut waiting: VecDeque<usize> = (0..s.targets.len()).collect();
    // Names are looked up off the loop, each answer waking it; an address is answered at
    // once, so it never waits behind a name.
    let resolver = Resolver::new(s.family, Some(waker));
    let mut resolving: Vec<Resolving> = Vec::new();
    // Whether a lookup may have answered since the last look (each answer wakes the loop).
    let mut answered = true;
    let mut probes: Slab<Probe> = Slab::new();
    let mut statuses: Vec<u8> = vec![0; s.targets.len()];
    let mut out = Output::new(s.json);
    report::verbose(format_args!(
        "inspecting {} target(s), at most {} at once",
        s.targets.len(),
        s.parallel
    ));
    loop {
        // Look targets up while there is room: a target holds its place from its lookup to
        // its close.
        while resolving.len() + probes.len() < s.parallel {
            let Some(index) = waiting.pop_front() else {
                break;
            };
            let deadline = Instant::now() + s.wait;
            let first = s.proxies.first_hop(&s.targets[index].addr);
            resolving.push(Resolving {
                index,
                lookup: resolver.lookup(&first, Some(deadline)),
                deadline,
            });
            answered = true;
        }
        // Start those answered; those whose -w ran out first fail.
        let now = Instant::now();
        let mut i = 0;
        if !answered && resolving.iter().all(|r| r.deadline > now) {
            i = resolving.len();
        }
        answered = false;
        while i < resolving.len() {
            let answer = match resolving[i].lookup.poll() {
                Some(answer) => answer,
                None if resolving[i].deadline <= now => {
                    Err(resolving[i].lookup.timed_out(Some(s.wait)))
                }
                None => {
                    i += 1;
                    continue;
                }
            };
            let Resolving {
                index, deadline, ..
            } = resolving.swap_remove(i);
            let target = &s.targets[index];
            let entry = probes.vacant_entry();
            let key = entry.key();
            let started = answer.and_then(|addrs| {
                let route = Route::client(
                    &s.proxies,
                    &target.addr,
                    &target.name(),
                    s.starttls,
                    &resolver,
                    Some(deadline),
                )?;
                Probe::start(index, target, addrs, deadline, route, poll.registry(), key)
            });
            match started {
                Ok(probe) => {
                    entry.insert(probe);
                }
                Err(e) => {
                    let outcome = Outcome {
                        error: Some(e),
                        ..Outcome::default()
                    };
                    statuses[index] = finish(s, index, outcome, &mut out)?;
                }
            }
        }
        if waiting.is_empty() && resolving.is_empty() && probes.is_empty() {
            break;
        }
        if !waiting.is_empty() && resolving.len() + probes.len() < s.parallel {
            continue;
        }
        let next = probes
            .iter()
            .map(|(_, p)| p.wake_at())
            .chain(resolving.iter().map(|r| r.deadline))
            .min();
        let timeout = next.map(|d| d.saturating_duration_since(Instant::now()));
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        let mut woken = false;
        // The probes with something to do, turned once every event is taken in.
        let mut ready = Vec::new();
        for event in events.iter() {
            if event.token() == WAKER {
                // A lookup answered: a target waiting for its own is taken at the top of the
                // loop; a proxy hop waiting for the next name's address needs a turn.
                woken = true;
                answered = true;
                continue;
            }
            let Some((key, Part::Socket)) = part_of(event.token()) else {
                continue;
            };
            let Some(probe) = probes.get_mut(key) else {
                continue;
            };
            probe.on_event(event);
            ready.push(key);
        }
        if woken {
            ready.extend(
                probes
                    .iter()
                    .filter(|(_, p)| p.awaits_lookup())
                    .map(|(k, _)| k),
            );
        }
        for key in ready.drain(..) {
            turn(
                s,
                &mut probes,
                key,
                &mut statuses,
                &mut out,
                poll.registry(),
            )?;
        }
        // Those past -w fail; one whose address had its own time gets a turn, which tries
        // the next.
        let now = Instant::now();
        let due: Vec<usize> = probes
            .iter()
            .filter(|(_, p)| p.wake_at() <= now)
            .map(|(k, _)| k)
            .collect();
        for key in due {
            if probes[key].deadline > now {
                turn(
                    s,
                    &mut probes,
                    key,
                    &mut statuses,
                    &mut out,
                    poll.registry(),
                )?;
                continue;
            }
            let mut probe = probes.remove(key);
            let outcome = probe.expire(s.wait, poll.registry());
            statuses[probe.index] = finish(s, probe.index, outcome, &mut out)?;
        }
    }
    let failed = statuses.iter().find(|&&st| st != 0);
    if let Some(path) = &s.save_chain {
        match (out.save_chain(path), failed) {
            (Ok(()), _) => {}
            (Err(e), None) => return Err(e),
            // The target's own failure decides the status; the file's is said as well.
            (Err(e), Some(_)) => report::error(format_args!("{e:#}")),
        }
    }
    match failed {
        None => Ok(()),
        Some(&status) => Err(reported(class_of(status))),
    }
}

/// Give probe `key` a turn; print it if it is over.
fn turn(
    s: &Inspect,
    probes: &mut Slab<Probe>,
    key: usize,
    statuses: &mut [u8],
    out: &mut Output,
    registry: &Registry,
) -> Result<()> {
    let Some(probe) = probes.get_mut(key) else {
        return Ok(());
    };
    let target = &s.targets[probe.index];
    if let Some(outcome) = probe.turn(&s.client, target, registry) {
        let index = probe.index;
        probes.remove(key);
        statuses[index] = finish(s, index, outcome, out)?;
    }
    Ok(())
}

/// Judge a finished target, print it, and return its exit status.
fn finish(s: &Inspect, index: usize, outcome: Outcome, out: &mut Output) -> Result<u8> {
    let target = &s.targets[index];
    let verdict = judge(s, target, &outcome);
    let status = verdict.status;
    out.print(target, &outcome, &verdict)?;
    if s.save_chain.is_some() {
        out.chain = outcome.shown.chain;
    }
    Ok(status)
}

fn judge(s: &Inspect, target: &Target, outcome: &Outcome) -> Verdict {
    let certs: Vec<Option<CertInfo>> = outcome.shown.chain.iter().map(CertInfo::parse).collect();
    let rejected = match &outcome.shown.verdict {
        Some(Err(e)) => Some(s.client.explain.error_for(
            e,
            &target.addr.to_string(),
            false,
            &outcome.shown.chain,
        )),
        _ => None,
    };
    // --tofu: the key is what the known-hosts file says (or is recorded now).
    let tofu =
        match (&s.tofu, outcome.shown.chain.first()) {
            (Some(file), Some(leaf)) if outcome.error.is_none() => {
                Some(match crate::fingerprint::spki_sha256(leaf.as_ref()) {
                    None => Err(Class::CertRejected.err(format!(
                    "the certificate of {} cannot be read, so its key cannot be pinned (--tofu)",
                    target.addr
                ))),
                    // A changed key is the server's doing (5); a file problem is not (1).
                    Some(spki) => crate::tofu::check(file, &target.addr.to_string(), &spki)
                        .map_err(|e| match classify(&e) {
                            Class::CertRejected => Class::CertRejected
                                .err(format!("the certificate of {} {e:#}", target.addr)),
                            _ => e,
                        }),
                })
            }
            _ => None,
        };
    let (verified, rejected) = match tofu {
        Some(Ok(_)) => (true, None),
        Some(Err(e)) => (false, Some(e)),
        None => (matches!(outcome.shown.verdict, Some(Ok(()))), rejected),
    };
    // A handshake that completed without the verifier being asked (a resumed session) has
    // no verdict: not verified.
    let rejected = match (&rejected, &outcome.shown.verdict, &outcome.error, &s.tofu) {
        (None, None, None, None) => Some(Class::CertRejected.err(format!(
            "{}: no certificate was verified in this handshake",
            target.addr
        ))),
        _ => rejected,
    };
    // --insecure: nothing was checked, so nothing is called verified.
    let verified = verified && !s.insecure;
    // A connection error comes first; then the verifier's verdict; then the expiry check,
    // for a verified certificate.
    let expiring = || {
        let days = s.expires_within.filter(|_| verified)?;
        let leaf = certs.first()?.as_ref()?;
        let left = days_left(leaf.not_after);
        (leaf.not_after - now() < i64::from(days) * 86_400).then(|| {
            Class::Expiring.err(format!(
                "the certificate of {} expires in {left} day(s), on {} (--expires-within {days})",
                target.addr,
                date(leaf.not_after)
            ))
        })
    };
    let (status, error) = match (&outcome.error, rejected) {
        (Some(e), _) => (classify(e).exit_code(), Some(format!("{e:#}"))),
        (None, Some(e)) => (classify(&e).exit_code(), Some(format!("{e:#}"))),
        (None, None) => match expiring() {
            Some(e) => (classify(&e).exit_code(), Some(format!("{e:#}"))),
            None => (0, None),
        },
    };
    Verdict {
        status,
        error,
        verified,
        certs,
    }
}

fn class_of(status: u8) -> Class {
    [
        Class::Network,
        Class::Handshake,
        Class::CertRejected,
        Class::Incomplete,
        Class::Timeout,
        Class::Expiring,
        Class::Usage,
    ]
    .into_iter()
    .find(|c| c.exit_code() == status)
    .unwrap_or(Class::Other)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Whole days until `not_after`; negative once it has passed.
fn days_left(not_after: i64) -> i64 {
    (not_after - now()).div_euclid(86_400)
}

/// A UNIX time as RFC 3339, UTC: `2025-01-31T23:59:59Z`.
fn rfc3339(secs: i64) -> String {
    date(secs)
        .strip_suffix(" UTC")
        .map(|d| format!("{}Z", d.replacen(' ', "T", 1)))
        .unwrap_or_else(|| secs.to_string())
}

/// stdout, line by line as targets finish. A reader that went away ends the printing, not
/// the run's status.
struct Output {
    json: bool,
    closed: bool,
    /// The chain to save (one target).
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl Output {
    fn new(json: bool) -> Output {
        Output {
            json,
            closed: false,
            chain: Vec::new(),
        }
    }

    fn print(&mut self, target: &Target, outcome: &Outcome, verdict: &Verdict) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        let text = match self.json {
            true => format!("{}\n", json_line(target, outcome, verdict)),
            false => summary(target, outcome, verdict),
        };
        let mut stdout = io::stdout().lock();
        match stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(anyhow!("cannot write to stdout: {}", io_phrase(&e))),
        }
    }

    fn save_chain(&self, path: &std::path::Path) -> Result<()> {
        if self.chain.is_empty() {
            report::warn(format_args!(
                "no certificate was received: {} is not written",
                path.display()
            ));
            return Ok(());
        }
        let pems: Vec<pem::Pem> = self
            .chain
            .iter()
            .map(|c| pem::Pem::new("CERTIFICATE", c.as_ref().to_vec()))
            .collect();
        let text = pem::encode_many_config(
            &pems,
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
        // Beside it, then renamed: a link put in its place meanwhile is replaced, not
        // followed, and a reader never sees part of a chain.
        crate::files::write_replacing(path, text.as_bytes(), 0o666)?;
        report::verbose(format_args!(
            "{} certificate(s) written to {}",
            self.chain.len(),
            path.display()
        ));
        Ok(())
    }
}

fn json_line(target: &Target, outcome: &Outcome, verdict: &Verdict) -> Value {
    let p = outcome.params.clone().unwrap_or_default();
    let chain: Vec<Value> = verdict
        .certs
        .iter()
        .map(|c| match c {
            Some(c) => json!({
                "subject": c.subject,
                "issuer": c.issuer,
                "sans": c.sans,
                "not_before": rfc3339(c.not_before),
                "not_after": rfc3339(c.not_after),
                "days_left": days_left(c.not_after),
                "key": c.key,
                "signature": c.signature,
                "sha256": c.fingerprint,
                "spki_sha256": c.spki_sha256,
            }),
            None => json!({ "error": "the certificate could not be parsed" }),
        })
        .collect();
    json!({
        "target": target.given,
        "address": outcome.addr.map(|a| a.to_string()),
        "ok": verdict.status == 0,
        "status": verdict.status,
        "error": verdict.error,
        "tls": {
            "version": p.version,
            "cipher": p.suite,
            "group": p.group,
            "alpn": p.alpn,
        },
        "verified": verdict.verified,
        "ocsp_stapled": !outcome.shown.ocsp.is_empty(),
        "ocsp_status": crate::ocsp::status(&outcome.shown.ocsp).map(|o| o.status),
        "chain": chain,
    })
}

/// The readable summary of one target: a heading line, then indented details.
fn summary(target: &Target, outcome: &Outcome, verdict: &Verdict) -> String {
    let mut s = String::new();
    let addr = outcome.addr.map(|a| format!(" ({a})")).unwrap_or_default();
    s += &format!("{}{addr}\n", report::escape(&target.given));
    let judged = match (&verdict.error, verdict.verified) {
        (None, false) => "not verified (--insecure)".to_string(),
        (None, true) => "verified".to_string(),
        (Some(e), _) => format!("FAILED (exit {}): {e}", verdict.status),
    };
    s += &format!("  verdict:   {judged}\n");
    if let Some(p) = &outcome.params {
        let unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".to_string());
        let alpn = p
            .alpn
            .as_ref()
            .map(|a| format!(", ALPN {a}"))
            .unwrap_or_default();
        s += &format!(
            "  tls:       {}, {}, key exchange {}{alpn}\n",
            unknown(&p.version),
            unknown(&p.suite),
            unknown(&p.group)
        );
    }
    if !verdict.certs.is_empty() {
        let stapled = match crate::ocsp::status(&outcome.shown.ocsp) {
            _ if outcome.shown.ocsp.is_empty() => "none".to_string(),
            None => "stapled (unreadable)".to_string(),
            Some(o) => {
                let span = match (&o.this_update, &o.next_update) {
                    (Some(a), Some(b)) => format!(", {a} to {b}"),
                    (Some(a), None) => format!(", from {a}"),
                    _ => String::new(),
                };
                format!("stapled: {}{span}", o.status)
            }
        };
        s += &format!("  ocsp:      {stapled}\n");
    }
    for (i, cert) in verdict.certs.iter().enumerate() {
        let which = if i == 0 { "leaf" } else { "chain" };
        let Some(c) = cert else {
            s += &format!("  certificate {i} ({which}): could not be parsed\n");
            continue;
        };
        let sans = match c.sans.is_empty() {
            true => "(none)".to_string(),
            false => c.sans.join(", "),
        };
        let left = days_left(c.not_after);
        let left = match left {
            l if l < 0 => format!("expired {} day(s) ago", -l),
            l => format!("{l} day(s) left"),
        };
        s += &format!(
            "  certificate {i} ({which}): {}\n    sans:      {sans}\n    issuer:    {}\n    \
             valid:     {} to {} ({left})\n    key:       {}\n    signature: {}\n    \
             sha256:    {}\n    pin:       sha256//{}\n",
            c.subject_or_placeholder(),
            c.issuer,
            date(c.not_before),
            date(c.not_after),
            c.key,
            c.signature,
            c.fingerprint,
            c.spki_sha256
        );
    }
    s += "\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn every_status_maps_back_to_its_class() {
        for status in [3, 4, 5, 6, 7, 8] {
            assert_eq!(class_of(status).exit_code(), status);
        }
    }
}
