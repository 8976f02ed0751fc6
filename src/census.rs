//! `inspect --probe`: the questions asked of each target — one short handshake each, with a
//! rustls config narrowed to one version, group, suite or ALPN name, or one of `hello`'s
//! ClientHellos for what rustls does not speak — and what the answers add up to: the
//! `probe` object of the JSON, the summary's lines, and `--require`'s verdict.
//!
//! A probe's verifier accepts any certificate: a probe asks what the server accepts, and
//! the target's own inspection has already judged its certificate.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, NamedGroup, SupportedCipherSuite, SupportedProtocolVersion};
use serde_json::{json, Value};

use crate::cli::{ProbeKind, Requirement};
use crate::describe::Params;
use crate::error::{classify, Class};
use crate::hello::{self, Answer};
use crate::report::escape;
use crate::tls::{self, Protocol};
use crate::trust::{Crls, Explainer, Presented, ServerVerifier, Side, Trust};

/// What one probe asks.
pub(crate) enum What {
    /// A version rustls speaks.
    Version(&'static SupportedProtocolVersion),
    /// A version by `hello`, with the suites rustls lacks too: those older than TLS 1.2,
    /// and TLS 1.2 for a server whose suites rustls has none of.
    Legacy(u16),
    /// One key-exchange group, alone.
    Group(NamedGroup),
    /// stls's own offer (every default group, a key share for the first): which group a
    /// HelloRetryRequest asks for, and whether a ClientHello that large is answered.
    Offer,
    /// One cipher suite, alone.
    Suite(SupportedCipherSuite),
    /// A weak class of TLS 1.2 suites (`hello::WEAK`'s index), by `hello`.
    Weak(usize),
    /// One ALPN name, alone.
    Alpn(String),
}

impl What {
    /// The probe's name in `errors`: `versions/TLSv1.0`, `groups/X25519`.
    fn label(&self) -> String {
        match self {
            What::Version(v) => format!("versions/{}", version_name(v)),
            What::Legacy(hello::TLS12) => "versions/TLSv1.2/any-suite".to_string(),
            What::Legacy(v) => format!("versions/{}", hello::version_name(*v)),
            What::Group(g) => format!("groups/{}", group_name(*g)),
            What::Offer => "groups/offer".to_string(),
            What::Suite(s) => format!("suites/{}", suite_name(s)),
            What::Weak(i) => format!("suites/{}", hello::WEAK[*i].0),
            What::Alpn(p) => format!("alpn/{}", escape(p)),
        }
    }
}

/// One probe: what it asks, and the rustls client that asks it (`None`: a `hello`).
pub(crate) struct Question {
    pub what: What,
    pub client: Option<Client>,
}

/// A probe's rustls client, the parts of a `settings::ClientTls` (which settings makes of
/// it).
pub(crate) struct Client {
    pub config: Arc<ClientConfig>,
    pub presented: Arc<Presented>,
    pub explain: Explainer,
}

impl Question {
    /// The ClientHello to send as is to `server_name`, for the questions rustls cannot ask.
    pub(crate) fn hello(&self, server_name: &ServerName<'_>) -> Option<Vec<u8>> {
        let host = match server_name {
            ServerName::DnsName(name) => Some(name.as_ref()),
            _ => None,
        };
        match self.what {
            What::Legacy(v) => Some(hello::client_hello(v, hello::LEGACY_SUITES, host)),
            What::Weak(i) => Some(hello::client_hello(hello::TLS12, hello::WEAK[i].1, host)),
            _ => None,
        }
    }
}

/// The probes of `--probe` and `--require`, built once for every target.
pub(crate) struct Plan {
    pub questions: Vec<Question>,
    kinds: Vec<ProbeKind>,
    require: Vec<Requirement>,
}

/// The plan for `--probe kinds`, `--alpn-probe names` and `--require`; `None` when nothing
/// is to be probed. `sni`: whether the probes name the server (not with `--no-sni`).
pub(crate) fn plan(
    kinds: &[ProbeKind],
    alpn: &[String],
    require: &[Requirement],
    sni: bool,
) -> Result<Option<Plan>> {
    let mut kinds: Vec<ProbeKind> = match kinds.contains(&ProbeKind::All) {
        true => vec![
            ProbeKind::Versions,
            ProbeKind::Groups,
            ProbeKind::Suites,
            ProbeKind::Alpn,
        ],
        false => kinds.to_vec(),
    };
    // What each requirement needs is probed.
    for r in require {
        let needs = match r {
            Requirement::Tls13 | Requirement::NoLegacy => ProbeKind::Versions,
            Requirement::Pq => ProbeKind::Groups,
            Requirement::ForwardSecrecy | Requirement::NoWeak => ProbeKind::Suites,
        };
        kinds.push(needs);
    }
    kinds.dedup();
    if kinds.is_empty() {
        return Ok(None);
    }
    if let Some(bad) = alpn.iter().find(|p| p.is_empty() || p.len() > 255) {
        return Err(Class::Usage.err(format!(
            "--alpn-probe: '{}' is not an ALPN name (1 to 255 bytes)",
            escape(bad)
        )));
    }
    let base = aws_lc_rs::default_provider();
    let all = [&rustls::version::TLS13, &rustls::version::TLS12];
    let mut questions = Vec::new();
    let mut ask = |what: What, provider: CryptoProvider, versions: &[_], alpn: Vec<Vec<u8>>| {
        let client = client(provider, versions, alpn, sni)?;
        questions.push(Question {
            what,
            client: Some(client),
        });
        Ok::<(), anyhow::Error>(())
    };
    let has = |k| kinds.contains(&k);
    if has(ProbeKind::Versions) {
        for v in all {
            ask(What::Version(v), base.clone(), &[v], Vec::new())?;
        }
    }
    if has(ProbeKind::Groups) {
        for group in aws_lc_rs::ALL_KX_GROUPS {
            let provider = CryptoProvider {
                kx_groups: vec![*group],
                ..base.clone()
            };
            ask(What::Group(group.name()), provider, &all, Vec::new())?;
        }
        ask(What::Offer, base.clone(), &all, Vec::new())?;
    }
    if has(ProbeKind::Suites) {
        for suite in &base.cipher_suites {
            let provider = CryptoProvider {
                cipher_suites: vec![*suite],
                ..base.clone()
            };
            ask(
                What::Suite(*suite),
                provider,
                &[suite.version()],
                Vec::new(),
            )?;
        }
    }
    if has(ProbeKind::Alpn) {
        for name in alpn {
            let names = vec![name.as_bytes().to_vec()];
            ask(What::Alpn(name.clone()), base.clone(), &all, names)?;
        }
    }
    // What rustls does not speak, by hand.
    if has(ProbeKind::Versions) {
        for v in [hello::TLS12, hello::TLS11, hello::TLS10, hello::SSL3] {
            questions.push(Question {
                what: What::Legacy(v),
                client: None,
            });
        }
    }
    if has(ProbeKind::Suites) {
        for i in 0..hello::WEAK.len() {
            questions.push(Question {
                what: What::Weak(i),
                client: None,
            });
        }
    }
    Ok(Some(Plan {
        questions,
        kinds,
        require: require.to_vec(),
    }))
}

/// A client that accepts any certificate, offering what `provider`, `versions` and `alpn`
/// allow; no resumption, so every probe is a full handshake.
fn client(
    provider: CryptoProvider,
    versions: &[&'static SupportedProtocolVersion],
    alpn: Vec<Vec<u8>>,
    sni: bool,
) -> Result<Client> {
    let provider = Arc::new(provider);
    let verifier = Arc::new(ServerVerifier::new(
        Trust::Insecure,
        provider.clone(),
        &Crls::default(),
    )?);
    let proto = Protocol {
        provider,
        versions: versions.to_vec(),
        alpn: alpn.clone(),
        key_log: None,
        resume: false,
        ciphers_given: true,
    };
    let config = tls::client_config(&proto, verifier.clone(), None, sni)?;
    Ok(Client {
        config: Arc::new(config),
        presented: verifier.presented(),
        explain: Explainer::new(Side::Client, alpn, verifier.presented()),
    })
}

fn version_name(v: &SupportedProtocolVersion) -> String {
    hello::version_name(u16::from(v.version))
}

fn group_name(g: NamedGroup) -> String {
    g.as_str()
        .map_or_else(|| format!("0x{:04x}", u16::from(g)), str::to_string)
}

fn suite_name(s: &SupportedCipherSuite) -> String {
    s.suite()
        .as_str()
        .map_or_else(|| format!("0x{:04x}", u16::from(s.suite())), str::to_string)
}

/// Whether a group is a post-quantum hybrid (or pure ML-KEM).
fn is_pq(name: &str) -> bool {
    name.contains("MLKEM")
}

/// How one probe ended.
enum Reply {
    /// The handshake completed, or the ServerHello came (for a `hello`).
    Done(Got),
    /// The server refused, after the ClientHello; `answered`: in TLS (an alert), not by
    /// closing or resetting the connection.
    Refused { answered: bool },
    /// The probe could not ask: no connection, no answer within -w, a proxy's refusal.
    Failed(String),
}

/// How a probe went, as `probe::Outcome` tells it.
pub(crate) struct Ended {
    /// Why it failed, if it did.
    pub error: Option<anyhow::Error>,
    /// The ClientHello went out.
    pub reached: bool,
    /// The server answered in TLS, if only with an alert.
    pub answered: bool,
    pub got: Got,
}

/// What a probe that went through found.
pub(crate) struct Got {
    pub params: Option<Params>,
    pub hello: Option<Answer>,
    pub hrr: bool,
}

impl Reply {
    fn of(ended: Ended) -> Reply {
        match &ended.error {
            None => Reply::Done(ended.got),
            Some(e) if ended.reached && classify(e) != Class::Timeout => Reply::Refused {
                answered: ended.answered,
            },
            Some(e) => Reply::Failed(format!("{e:#}")),
        }
    }
}

/// One target's answers so far.
pub(crate) struct Census {
    replies: Vec<Option<Reply>>,
    /// Why nothing was asked, when the target could not be reached.
    skipped: Option<String>,
}

impl Census {
    pub(crate) fn new(plan: &Plan) -> Census {
        Census {
            replies: plan.questions.iter().map(|_| None).collect(),
            skipped: None,
        }
    }

    /// A target that could not be reached is not probed: every probe would fail the same.
    pub(crate) fn skip(&mut self, why: String) {
        self.skipped = Some(why);
    }

    pub(crate) fn record(&mut self, question: usize, ended: Ended) {
        if let Some(slot) = self.replies.get_mut(question) {
            *slot = Some(Reply::of(ended));
        }
    }

    /// Whether every probe has answered (or none will be asked).
    pub(crate) fn is_complete(&self) -> bool {
        self.skipped.is_some() || self.replies.iter().all(Option::is_some)
    }

    /// What the answers add up to.
    pub(crate) fn findings(&self, plan: &Plan) -> Findings {
        let has = |k| plan.kinds.contains(&k);
        let mut f = Findings {
            versions: has(ProbeKind::Versions).then(Vec::new),
            legacy_versions: has(ProbeKind::Versions).then(Vec::new),
            groups: has(ProbeKind::Groups).then(Vec::new),
            hrr_groups: has(ProbeKind::Groups).then(Vec::new),
            large_hello_ok: None,
            suites13: has(ProbeKind::Suites).then(Vec::new),
            suites12: has(ProbeKind::Suites).then(Vec::new),
            weak: has(ProbeKind::Suites).then(Vec::new),
            alpn: has(ProbeKind::Alpn).then(Vec::new),
            errors: BTreeMap::new(),
        };
        if let Some(why) = &self.skipped {
            f.errors
                .insert("all".to_string(), format!("not probed: {why}"));
            return f;
        }
        for (q, reply) in plan.questions.iter().zip(&self.replies) {
            let got = match reply {
                Some(Reply::Done(got)) => got,
                Some(Reply::Refused { answered }) => {
                    if let What::Offer = q.what {
                        f.large_hello_ok = Some(*answered);
                    }
                    continue;
                }
                Some(Reply::Failed(why)) => {
                    f.errors.insert(q.what.label(), why.clone());
                    continue;
                }
                None => continue,
            };
            f.take(&q.what, got);
        }
        f
    }

    /// `--require`: what the target fails, in words; empty when it meets every requirement.
    pub(crate) fn unmet(&self, plan: &Plan) -> Vec<String> {
        let f = self.findings(plan);
        let not_checked = |kind: &str| {
            f.errors
                .keys()
                .any(|k| k == "all" || k.starts_with(kind))
                .then(|| format!("could not be checked ({kind} probes failed)"))
        };
        let mut unmet = Vec::new();
        for r in &plan.require {
            let (name, failure) = match r {
                Requirement::Tls13 => (
                    "tls1.3",
                    match &f.versions {
                        Some(v) if v.iter().any(|v| v == "TLSv1.3") => None,
                        _ => not_checked("versions/TLSv1.3")
                            .or_else(|| Some("TLSv1.3 is not accepted".to_string())),
                    },
                ),
                Requirement::NoLegacy => (
                    "no-legacy",
                    match f.legacy_versions.as_deref().unwrap_or_default() {
                        [] => not_checked("versions/"),
                        old => Some(format!("{} accepted", old.join(", "))),
                    },
                ),
                Requirement::Pq => (
                    "pq",
                    match f.pq() {
                        Some(true) => None,
                        _ => not_checked("groups/")
                            .or_else(|| Some("no post-quantum group is accepted".to_string())),
                    },
                ),
                Requirement::ForwardSecrecy => (
                    "forward-secrecy",
                    match f.weak_has("no-forward-secrecy") {
                        true => Some("suites with RSA key exchange accepted".to_string()),
                        false => not_checked("suites/no-forward-secrecy"),
                    },
                ),
                Requirement::NoWeak => (
                    "no-weak",
                    match f.weak.as_deref().unwrap_or_default() {
                        [] => not_checked("suites/"),
                        weak => Some(format!("weak suites accepted: {}", weak.join(", "))),
                    },
                ),
            };
            if let Some(failure) = failure {
                unmet.push(format!("--require {name}: {failure}"));
            }
        }
        unmet
    }
}

/// What a target accepts; `None` for what was not probed.
pub(crate) struct Findings {
    versions: Option<Vec<String>>,
    legacy_versions: Option<Vec<String>>,
    groups: Option<Vec<String>>,
    hrr_groups: Option<Vec<String>>,
    large_hello_ok: Option<bool>,
    suites13: Option<Vec<String>>,
    suites12: Option<Vec<String>>,
    weak: Option<Vec<String>>,
    alpn: Option<Vec<String>>,
    /// The probes that could not ask, with why.
    errors: BTreeMap<String, String>,
}

fn push(list: &mut Option<Vec<String>>, item: String) {
    if let Some(list) = list.as_mut().filter(|l| !l.contains(&item)) {
        list.push(item);
    }
}

impl Findings {
    /// Take in what a probe that went through found.
    fn take(&mut self, what: &What, got: &Got) {
        let params = got.params.as_ref();
        let negotiated =
            |pick: fn(&Params) -> &Option<String>| params.and_then(|p| pick(p).clone());
        match what {
            What::Version(v) => {
                if negotiated(|p| &p.version).as_deref() == Some(&*version_name(v)) {
                    push(&mut self.versions, version_name(v));
                }
            }
            What::Legacy(v) => {
                if let Some(Answer::Hello { version, .. }) = got.hello {
                    if version == *v {
                        push(&mut self.versions, hello::version_name(*v));
                        if *v < hello::TLS12 {
                            push(&mut self.legacy_versions, hello::version_name(*v));
                        }
                    }
                }
            }
            What::Group(g) => {
                if negotiated(|p| &p.group).as_deref() == Some(&*group_name(*g)) {
                    push(&mut self.groups, group_name(*g));
                }
            }
            What::Offer => {
                self.large_hello_ok = Some(true);
                if let (true, Some(group)) = (got.hrr, negotiated(|p| &p.group)) {
                    push(&mut self.hrr_groups, group);
                }
            }
            What::Suite(s) => {
                if negotiated(|p| &p.suite).as_deref() == Some(&*suite_name(s)) {
                    match s.version() == &rustls::version::TLS13 {
                        true => push(&mut self.suites13, suite_name(s)),
                        false => push(&mut self.suites12, suite_name(s)),
                    }
                }
            }
            What::Weak(i) => {
                let (class, suites) = hello::WEAK[*i];
                if let Some(Answer::Hello { suite, .. }) = got.hello {
                    if suites.contains(&suite) {
                        push(&mut self.weak, class.to_string());
                    }
                }
            }
            What::Alpn(name) => {
                if negotiated(|p| &p.alpn).as_deref() == Some(&*escape(name)) {
                    push(&mut self.alpn, escape(name));
                }
            }
        }
    }

    fn pq(&self) -> Option<bool> {
        let groups = self.groups.as_ref()?;
        Some(groups.iter().any(|g| is_pq(g)))
    }

    fn weak_has(&self, class: &str) -> bool {
        self.weak.iter().flatten().any(|w| w == class)
    }

    /// The `probe` object of the JSON.
    pub(crate) fn json(&self) -> Value {
        json!({
            "versions": self.versions,
            "legacy_versions": self.legacy_versions,
            "groups": self.groups,
            "hrr_groups": self.hrr_groups,
            "pq": self.pq(),
            "large_hello_ok": self.large_hello_ok,
            "suites": match (&self.suites13, &self.suites12) {
                (None, None) => Value::Null,
                (a, b) => json!({ "TLSv1.3": a, "TLSv1.2": b }),
            },
            "weak": self.weak,
            "alpn": self.alpn,
            "errors": self.errors,
        })
    }

    /// The summary's lines, each indented as the others.
    pub(crate) fn summary(&self) -> String {
        let mut s = String::new();
        let list = |l: &[String]| match l {
            [] => "none".to_string(),
            l => l.join(", "),
        };
        if let Some(v) = &self.versions {
            s += &format!("  accepts:   {}\n", list(v));
        }
        if let Some(g) = &self.groups {
            let mut line = format!("  groups:    {}", list(g));
            if let Some(hrr) = self.hrr_groups.as_deref().filter(|h| !h.is_empty()) {
                line += &format!("; by HelloRetryRequest: {}", hrr.join(", "));
            }
            line += match self.pq() {
                Some(true) => "; post-quantum: yes",
                _ => "; post-quantum: no",
            };
            line += match self.large_hello_ok {
                Some(true) => "; large ClientHello answered",
                Some(false) => "; large ClientHello NOT answered (reset or closed)",
                None => "",
            };
            s += &format!("{line}\n");
        }
        if let (Some(a), Some(b)) = (&self.suites13, &self.suites12) {
            let all: Vec<String> = a.iter().chain(b).cloned().collect();
            s += &format!("  suites:    {}\n", list(&all));
        }
        if let Some(w) = &self.weak {
            s += &format!("  weak:      {}\n", list(w));
        }
        if let Some(a) = &self.alpn {
            s += &format!("  alpn:      {}\n", list(a));
        }
        for (probe, why) in &self.errors {
            s += &format!("  not asked: {probe}: {why}\n");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_probes_every_group_suite_and_class() {
        let plan = plan(&[ProbeKind::All], &["h2".to_string()], &[], true)
            .unwrap()
            .unwrap();
        let groups = plan
            .questions
            .iter()
            .filter(|q| matches!(q.what, What::Group(_)))
            .count();
        assert_eq!(groups, aws_lc_rs::ALL_KX_GROUPS.len());
        assert!(plan
            .questions
            .iter()
            .any(|q| matches!(q.what, What::Legacy(hello::TLS10))));
        assert_eq!(
            plan.questions
                .iter()
                .filter(|q| matches!(q.what, What::Weak(_)))
                .count(),
            4
        );
    }

    #[test]
    fn require_alone_plans_what_it_needs() {
        let pq = plan(&[], &[], &[Requirement::Pq], true).unwrap().unwrap();
        assert!(pq
            .questions
            .iter()
            .all(|q| matches!(q.what, What::Group(_) | What::Offer)));
        assert!(plan(&[], &[], &[], true).unwrap().is_none());
    }
}
