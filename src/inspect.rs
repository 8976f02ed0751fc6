//! `stls inspect`: probe every target on one event loop, at most `--parallel` connecting or
//! in their handshake at once, and print each one's verdict and chain as it finishes — a
//! readable summary, or one JSON object per line. The exit status is that of the first
//! failing target in input order.
//!
//! With `--probe`, a target's questions (see `census`) are asked once its inspection is
//! over, each a probe of its own holding a place among `--parallel`; the target is printed
//! when the last has answered.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use mio::{Events, Poll, Waker};
use serde_json::{json, Value};
use slab::Slab;

use crate::census::{Census, Ended, Findings, Got};
use crate::describe::{date, CertInfo};
use crate::error::{classify, io_phrase, reported, Class};
use crate::events::{part_of, Part, WAKER};
use crate::probe::{Outcome, Probe};
use crate::report;
use crate::resolve::{Lookup, Resolver};
use crate::route::Route;
use crate::settings::{Inspect, Target};
use crate::stream::Address;

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
    /// What `--probe` found.
    findings: Option<Findings>,
}

/// A target inspected, whose `--probe` questions are being asked.
struct Asking {
    /// Its inspection's outcome, printed with the answers.
    outcome: Outcome,
    /// Where the questions go: the address its inspection connected to.
    addrs: Vec<SocketAddr>,
    census: Census,
}

pub(crate) fn run(s: &Inspect) -> Result<()> {
    let mut inspection = Inspection::new(s)?;
    let mut events = Events::with_capacity(1024);
    report::verbose(format_args!(
        "inspecting {} target(s), at most {} at once",
        s.targets.len(),
        s.parallel
    ));
    loop {
        inspection.ask_more()?;
        inspection.look_up_more();
        inspection.start_answered()?;
        if inspection.is_over() {
            break;
        }
        if inspection.has_room() {
            continue;
        }
        if !inspection.wait(&mut events)? {
            continue;
        }
        inspection.take_events(&events)?;
        inspection.on_timers()?;
    }
    inspection.save_chain()?;
    inspection.status()
}

/// The targets of one run, wherever each is: waiting for its turn, being looked up, being
/// probed, or done with its status.
struct Inspection<'a> {
    s: &'a Inspect,
    poll: Poll,
    /// Names are looked up off the loop, each answer waking it; an address is answered at
    /// once, so it never waits behind a name.
    resolver: Resolver,
    waiting: VecDeque<usize>,
    resolving: Vec<Resolving>,
    /// Whether a lookup may have answered since the last look (each answer wakes the loop).
    answered: bool,
    probes: Slab<Probe>,
    /// `--probe` questions waiting for a place: (target, question).
    asks: VecDeque<(usize, usize)>,
    /// The targets whose questions are being asked, by index.
    asking: HashMap<usize, Asking>,
    statuses: Vec<u8>,
    out: Output,
}

impl<'a> Inspection<'a> {
    /// Every target waiting, the loop and its lookups ready.
    fn new(s: &'a Inspect) -> Result<Inspection<'a>> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(Inspection {
            s,
            poll,
            resolver: Resolver::new(s.family, Some(waker)),
            waiting: (0..s.targets.len()).collect(),
            resolving: Vec::new(),
            answered: true,
            probes: Slab::new(),
            asks: VecDeque::new(),
            asking: HashMap::new(),
            statuses: vec![0; s.targets.len()],
            out: Output::new(s.json),
        })
    }

    /// Whether a target may start now: one holds its place among `--parallel` from its
    /// lookup to its close.
    fn room(&self) -> bool {
        self.resolving.len() + self.probes.len() < self.s.parallel
    }

    /// Ask waiting `--probe` questions while there is room; they go before new targets, so
    /// a target's answers are not held longer than they must be.
    fn ask_more(&mut self) -> Result<()> {
        let Some(plan) = &self.s.probe else {
            return Ok(());
        };
        while self.room() {
            let Some((index, q)) = self.asks.pop_front() else {
                break;
            };
            let target = &self.s.targets[index];
            let addrs = self
                .asking
                .get(&index)
                .map(|a| a.addrs.clone())
                .unwrap_or_default();
            let deadline = Instant::now() + self.s.wait;
            match self.connect(index, addrs, deadline) {
                Ok(probe) => {
                    self.probes
                        .insert(probe.asking(q, plan.questions[q].hello(&target.server_name)));
                }
                Err(e) => {
                    let outcome = Outcome {
                        error: Some(e),
                        ..Outcome::default()
                    };
                    self.done(index, Some(q), outcome)?;
                }
            }
        }
        Ok(())
    }

    /// A probe is over: a target's inspection (whose questions are queued now, if there
    /// are any), or one of its questions; the target is printed once nothing is left.
    fn done(&mut self, index: usize, question: Option<usize>, outcome: Outcome) -> Result<()> {
        let s = self.s;
        let Some(plan) = &s.probe else {
            self.statuses[index] = finish(s, index, outcome, None, &mut self.out)?;
            return Ok(());
        };
        let asking = match question {
            None => {
                let mut census = Census::new(plan);
                match &outcome.error {
                    // Not even the inspection's ClientHello went out: every question would
                    // fail the same way.
                    Some(e) if !outcome.reached => census.skip(format!("{e:#}")),
                    _ => self
                        .asks
                        .extend((0..plan.questions.len()).map(|q| (index, q))),
                }
                let addrs = outcome.addr.into_iter().collect();
                self.asking.insert(
                    index,
                    Asking {
                        outcome,
                        addrs,
                        census,
                    },
                );
                &self.asking[&index]
            }
            Some(q) => {
                let Some(asking) = self.asking.get_mut(&index) else {
                    return Ok(());
                };
                asking.census.record(
                    q,
                    Ended {
                        error: outcome.error,
                        reached: outcome.reached,
                        answered: outcome.answered,
                        got: Got {
                            params: outcome.params,
                            hello: outcome.hello,
                            hrr: outcome.hrr,
                        },
                    },
                );
                asking
            }
        };
        if asking.census.is_complete() {
            if let Some(asking) = self.asking.remove(&index) {
                self.statuses[index] = finish(
                    s,
                    index,
                    asking.outcome,
                    Some(&asking.census),
                    &mut self.out,
                )?;
            }
        }
        Ok(())
    }

    /// Look targets up while there is room.
    fn look_up_more(&mut self) {
        while self.room() {
            let Some(index) = self.waiting.pop_front() else {
                break;
            };
            let deadline = Instant::now() + self.s.wait;
            let lookup = match &self.s.targets[index].addr {
                Address::Tcp(hp) => self
                    .resolver
                    .lookup(&self.s.proxies.first_hop(hp), Some(deadline)),
                Address::Unix(path) => Lookup::nothing(path.to_string()),
            };
            self.resolving.push(Resolving {
                index,
                lookup,
                deadline,
            });
            self.answered = true;
        }
    }

    /// Start probing the targets whose lookup answered; those whose -w ran out first fail.
    fn start_answered(&mut self) -> Result<()> {
        let now = Instant::now();
        let mut i = 0;
        if !self.answered && self.resolving.iter().all(|r| r.deadline > now) {
            i = self.resolving.len();
        }
        self.answered = false;
        while i < self.resolving.len() {
            let answer = match self.resolving[i].lookup.poll() {
                Some(answer) => answer,
                None if self.resolving[i].deadline <= now => {
                    Err(self.resolving[i].lookup.timed_out(Some(self.s.wait)))
                }
                None => {
                    i += 1;
                    continue;
                }
            };
            let resolving = self.resolving.swap_remove(i);
            self.start(resolving, answer)?;
        }
        Ok(())
    }

    /// Start connecting to target `index` at `addrs` (its route's first hop), to be done by
    /// `deadline`, as the next slot of the loop.
    fn connect(
        &mut self,
        index: usize,
        addrs: Vec<SocketAddr>,
        deadline: Instant,
    ) -> Result<Probe> {
        let target = &self.s.targets[index];
        let route = Route::client(
            &self.s.proxies,
            &target.addr,
            &target.name(),
            self.s.starttls,
            &self.resolver,
            Some(deadline),
        )?;
        let key = self.probes.vacant_entry().key();
        Probe::start(
            index,
            target,
            addrs,
            deadline,
            route,
            self.poll.registry(),
            key,
        )
    }

    /// Start probing a target with the answer to its lookup; it fails now if it cannot.
    fn start(&mut self, resolving: Resolving, answer: Result<Vec<SocketAddr>>) -> Result<()> {
        let Resolving {
            index, deadline, ..
        } = resolving;
        match answer.and_then(|addrs| self.connect(index, addrs, deadline)) {
            Ok(probe) => {
                self.probes.insert(probe);
            }
            Err(e) => {
                let outcome = Outcome {
                    error: Some(e),
                    ..Outcome::default()
                };
                self.done(index, None, outcome)?;
            }
        }
        Ok(())
    }

    /// Whether every target is done.
    fn is_over(&self) -> bool {
        self.waiting.is_empty()
            && self.resolving.is_empty()
            && self.probes.is_empty()
            && self.asks.is_empty()
            && self.asking.is_empty()
    }

    /// Whether a waiting target may start without waiting for an event.
    fn has_room(&self) -> bool {
        (!self.waiting.is_empty() || !self.asks.is_empty()) && self.room()
    }

    /// Wait for events until the next time a target needs a turn; false if interrupted.
    fn wait(&mut self, events: &mut Events) -> Result<bool> {
        let next = self
            .probes
            .iter()
            .map(|(_, p)| p.wake_at())
            .chain(self.resolving.iter().map(|r| r.deadline))
            .min();
        let timeout = next.map(|d| d.saturating_duration_since(Instant::now()));
        match self.poll.poll(events, timeout) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Give a turn to the probes the events concern, once every event is taken in.
    fn take_events(&mut self, events: &Events) -> Result<()> {
        let mut woken = false;
        let mut ready = Vec::new();
        for event in events.iter() {
            if event.token() == WAKER {
                // A lookup answered: a target waiting for its own is taken at the top of the
                // loop; a proxy hop waiting for the next name's address needs a turn.
                woken = true;
                self.answered = true;
                continue;
            }
            let Some((key, Part::Socket)) = part_of(event.token()) else {
                continue;
            };
            let Some(probe) = self.probes.get_mut(key) else {
                continue;
            };
            probe.on_event(event);
            ready.push(key);
        }
        if woken {
            ready.extend(
                self.probes
                    .iter()
                    .filter(|(_, p)| p.awaits_lookup())
                    .map(|(k, _)| k),
            );
        }
        for key in ready {
            self.turn(key)?;
        }
        Ok(())
    }

    /// Give probe `key` a turn; print it if it is over.
    fn turn(&mut self, key: usize) -> Result<()> {
        let Some(probe) = self.probes.get_mut(key) else {
            return Ok(());
        };
        let target = &self.s.targets[probe.index];
        let client = probe
            .question
            .and_then(|q| self.s.probe_clients.get(q)?.as_ref())
            .unwrap_or(&self.s.client);
        if let Some(outcome) = probe.turn(client, target, self.poll.registry()) {
            let (index, question) = (probe.index, probe.question);
            self.probes.remove(key);
            self.done(index, question, outcome)?;
        }
        Ok(())
    }

    /// The probes whose time came: those past -w fail; one whose address had its own time
    /// gets a turn, which tries the next.
    fn on_timers(&mut self) -> Result<()> {
        let now = Instant::now();
        let due: Vec<usize> = self
            .probes
            .iter()
            .filter(|(_, p)| p.wake_at() <= now)
            .map(|(k, _)| k)
            .collect();
        for key in due {
            if self.probes[key].deadline > now {
                self.turn(key)?;
                continue;
            }
            let mut probe = self.probes.remove(key);
            let outcome = probe.expire(self.s.wait, self.poll.registry());
            self.done(probe.index, probe.question, outcome)?;
        }
        Ok(())
    }

    /// The first failing target in input order, if any.
    fn first_failure(&self) -> Option<u8> {
        self.statuses.iter().copied().find(|&st| st != 0)
    }

    /// `--save-chain`: write the file; a failure to is the run's only when every target
    /// passed, else it is said and the target's failure decides the status.
    fn save_chain(&self) -> Result<()> {
        let Some(path) = &self.s.save_chain else {
            return Ok(());
        };
        match (self.out.save_chain(path), self.first_failure()) {
            (Ok(()), _) => {}
            (Err(e), None) => return Err(e),
            (Err(e), Some(_)) => report::error(format_args!("{e:#}")),
        }
        Ok(())
    }

    /// The run's outcome: that of the first failing target in input order.
    fn status(&self) -> Result<()> {
        match self.first_failure() {
            None => Ok(()),
            Some(status) => Err(reported(class_of(status))),
        }
    }
}

/// Judge a finished target, print it, and return its exit status.
fn finish(
    s: &Inspect,
    index: usize,
    outcome: Outcome,
    census: Option<&Census>,
    out: &mut Output,
) -> Result<u8> {
    let target = &s.targets[index];
    let verdict = judge(s, target, &outcome, census);
    let status = verdict.status;
    out.print(target, &outcome, &verdict)?;
    if s.save_chain.is_some() {
        out.chain = outcome.shown.chain;
    }
    Ok(status)
}

fn judge(s: &Inspect, target: &Target, outcome: &Outcome, census: Option<&Census>) -> Verdict {
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
    let planned = s.probe.as_ref().zip(census);
    // --require: judged once nothing else failed.
    let unmet = planned
        .map(|(plan, census)| census.unmet(plan))
        .unwrap_or_default();
    let (status, error) = match (status, unmet.is_empty()) {
        (0, false) => (
            Class::Policy.exit_code(),
            Some(format!("{}: {}", target.addr, unmet.join("; "))),
        ),
        _ => (status, error),
    };
    Verdict {
        status,
        error,
        verified,
        certs,
        findings: planned.map(|(plan, census)| census.findings(plan)),
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
        Class::Policy,
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
    let mut line = json!({
        "target": target.given,
        // The address connected to: an IP address, or the Unix socket itself.
        "address": match &target.addr {
            Address::Unix(path) => Some(path.to_string()),
            Address::Tcp(_) => outcome.addr.map(|a| a.to_string()),
        },
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
    });
    if let (Some(f), Some(obj)) = (&verdict.findings, line.as_object_mut()) {
        obj.insert("probe".to_string(), f.json());
    }
    line
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
    if let Some(f) = &verdict.findings {
        s += &f.summary();
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
        for status in [3, 4, 5, 6, 7, 8, 9] {
            assert_eq!(class_of(status).exit_code(), status);
        }
    }
}
