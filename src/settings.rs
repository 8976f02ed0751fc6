//! Raw flags → resolved configuration. Every error in what the user typed or named (addresses,
//! fingerprints, PEM files, keys) surfaces here, before any socket is opened.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, KeyLog, ServerConfig, SupportedProtocolVersion};

use crate::backend::{Backend, Place, Routes};
use crate::cli::{
    CommonArgs, ConnectArgs, InspectArgs, ListenArgs, NetArgs, ProxyArgs, ProxyProtocol, TlsArgs,
    TlsVersion, TrustStore, VerifyArgs,
};
use crate::error::Class;
use crate::exec::Program;
use crate::files;
use crate::fingerprint::{fingerprint_text, parse_pins, sha256};
use crate::identity;
use crate::local::{Direction, LocalEnd};
use crate::names;
use crate::net::{self, Family};
use crate::proxy::{self, Proxies};
use crate::report;
use crate::session::{HandshakeLimit, Options};
use crate::sni;
use crate::starttls::Proto;
use crate::stream::{Address, ListenAt};
use crate::tickets;
use crate::tls::{self, provider, versions, KeyLogTo, Protocol};
use crate::trust::{self, Crls, Explainer, Presented, ServerVerifier, Side, Trust};
use crate::unix::UnixPath;

/// `--linger`'s default: the slowest reply among the real servers tested (inspircd's welcome,
/// about 1 s after USER) with room to spare.
const DEFAULT_LINGER: Duration = Duration::from_secs(2);

/// What both subcommands share.
#[allow(
    clippy::struct_excessive_bools,
    reason = "the relay flags as given, independent of each other; sessions read them"
)]
pub(crate) struct Common {
    pub no_shutdown: bool,
    /// `--linger` (0 with `--send-only`).
    pub linger: Duration,
    /// What each connection's plaintext meets on our side: stdin/stdout, `-e` / `-c`'s
    /// program; `listen --to` and `connect --from` put their tunnel's end here.
    pub local: LocalEnd,
    pub wait: Option<Duration>,
    pub idle: Option<Duration>,
    pub family: Family,
}

impl Common {
    fn from_args(args: &CommonArgs) -> Result<Common> {
        report::set_level(args.net.quiet, args.net.verbose);
        let local = match (&args.exec, &args.sh_exec) {
            (Some(cmd), _) => LocalEnd::Exec(Program::exec(cmd)?),
            (None, Some(cmd)) => LocalEnd::Exec(Program::shell(cmd)),
            (None, None) => LocalEnd::Stdio {
                direction: match (args.send_only, args.recv_only) {
                    (true, _) => Direction::SendOnly,
                    (_, true) => Direction::RecvOnly,
                    _ => Direction::Both,
                },
                crlf: args.crlf,
            },
        };
        Ok(Common {
            no_shutdown: args.no_shutdown,
            linger: match args.send_only {
                true => Duration::ZERO,
                false => args.linger.unwrap_or(DEFAULT_LINGER),
            },
            local,
            wait: args.net.wait,
            idle: args.idle,
            family: family(&args.net),
        })
    }
}

impl Common {
    /// What the relay needs for every connection of this run, as these flags say; the caller
    /// adds what only it knows (`-k`'s `many` and `stall`, an `-e` limit).
    pub(crate) fn options(&self, explain: Explainer) -> Options {
        Options {
            explain,
            no_shutdown: self.no_shutdown,
            linger: self.linger,
            local: self.local.clone(),
            idle: self.idle,
            stall: None,
            many: false,
            stdin_tty: std::io::stdin().is_terminal(),
        }
    }
}

pub(crate) struct Connect {
    /// `--from`: accept plain clients here, a TLS connection for each.
    pub from: Option<ListenAt>,
    /// `--status` (with `--from`): where to serve health and metrics.
    pub status: Option<ListenAt>,
    pub starttls: Option<Proto>,
    /// The server's name, as TLS and a STARTTLS dialogue give it.
    pub name: String,
    pub proxies: Proxies,
    pub target: Address,
    pub server_name: ServerName<'static>,
    pub config: Arc<ClientConfig>,
    pub explain: Explainer,
    /// What bounds the connecting, any dialogue and the handshake: `-w`; without it, for
    /// `--from` as long as connect gives one address, for `--starttls` [`GREETING_WAIT`];
    /// else nothing.
    pub handshake_limit: Option<(Duration, HandshakeLimit)>,
    /// `--from`: what SIGHUP and `--reload-every` read again.
    pub reload: Option<ClientFiles>,
    pub reload_every: Option<Duration>,
    /// `--drain`: how long open tunnels have after SIGTERM or SIGINT.
    pub drain: Duration,
    pub common: Common,
}

/// The files `connect --from` builds its TLS client from (`--cacert`, `--cert`, `--key`,
/// `--crl`), kept to be read again.
#[derive(Clone)]
pub(crate) struct ClientFiles {
    verify: VerifyArgs,
    tls: TlsArgs,
    proto: Protocol,
    target: Address,
    /// Where every configuration's verifier records the chains it is shown, for the
    /// messages of a rejected one.
    seen: Arc<Presented>,
}

impl ClientFiles {
    /// The client configuration from the files as they are now.
    pub(crate) fn load(&self) -> Result<Arc<ClientConfig>> {
        let client = client_tls(
            &self.verify,
            &self.tls,
            &self.proto,
            false,
            Some(&self.target),
            Some(self.seen.clone()),
        )?;
        Ok(client.config)
    }

    /// Every file it reads, for `--reload-every` to look at.
    pub(crate) fn paths(&self) -> Vec<PathBuf> {
        self.verify
            .cacert
            .iter()
            .chain(&self.tls.cert)
            .chain(&self.tls.key)
            .chain(&self.verify.crl)
            .cloned()
            .collect()
    }
}

/// How long `connect --starttls` gives the server's greeting, the dialogue and the handshake
/// without `-w`.
pub(crate) const GREETING_WAIT: Duration = Duration::from_secs(10);

pub(crate) struct Listen {
    pub at: ListenAt,
    /// SIGHUP: the files to read again, and where the client verifier records chains.
    pub reload: Option<(Served, Arc<Presented>)>,
    pub config: Arc<ServerConfig>,
    pub explain: Explainer,
    /// The fingerprint to print: always for an ephemeral certificate, with -v otherwise.
    pub fingerprint: String,
    pub ephemeral: bool,
    /// `-k`, or `--to` (a tunnel serves many): serve many connections.
    pub keep_open: bool,
    /// Each connection has one of its own on our side: a child (`-e`/`-c`) or the backend
    /// (`--to`).
    pub max_conns: usize,
    pub max_handshakes: usize,
    /// What bounds a client's handshake: `-w` when it is the shorter, else
    /// `--handshake-timeout`.
    pub handshake_limit: (Duration, HandshakeLimit),
    /// `--stall-timeout`, with `-k`.
    pub stall_timeout: Duration,
    /// `--starttls`, and the name our greetings give.
    pub starttls: Option<(Proto, String)>,
    /// `--accept-proxy`: a PROXY header comes first.
    pub accept_proxy: bool,
    /// `--passthrough`: the names whose clients' TLS goes, untouched, to a backend.
    pub passthrough: Option<Arc<Routes>>,
    /// Event loops: `--threads`, by default one per core for a tunnel, else one.
    pub threads: usize,
    /// `--reload-every`: how often to look at the files for a change.
    pub reload_every: Option<Duration>,
    /// `--drain`: how long open connections have after SIGTERM or SIGINT.
    pub drain: Duration,
    /// `--status`: where to serve health and metrics.
    pub status: Option<ListenAt>,
    pub common: Common,
}

pub(crate) fn connect(args: &ConnectArgs) -> Result<Connect> {
    check_trust_flags(&args.verify)?;
    let mut common = Common::from_args(&args.common)?;
    if args.from.is_some() {
        common.local = LocalEnd::Accepted;
    }
    let target = target(&args.target, args.port.as_deref(), &args.verify)?;
    let proto = protocol(&args.common.tls)?;
    let client = client_tls(
        &args.verify,
        &args.common.tls,
        &proto,
        false,
        Some(&target.addr),
        None,
    )?;
    if args.from.is_none() {
        for (given, flag) in [
            (args.lifecycle.reload_every.is_some(), "--reload-every"),
            (!args.lifecycle.drain.is_zero(), "--drain"),
        ] {
            if given {
                return Err(Class::Usage.err(format!(
                    "{flag} is for a long-running connect --from: give --from too"
                )));
            }
        }
    }
    let reload = ClientFiles {
        verify: args.verify.clone(),
        tls: args.common.tls.clone(),
        proto: proto.clone(),
        target: target.addr.clone(),
        seen: client.presented.clone(),
    };
    let from = match &args.from {
        Some(spec) => Some(loopback_by_default(listen_at(spec, args.unix_mode)?)),
        None => None,
    };
    let status = status_at(args.status.as_deref(), args.unix_mode)?;
    let handshake_limit = match (common.wait, &from, args.common.tls.starttls) {
        (Some(w), _, _) => Some((w, HandshakeLimit::Wait)),
        (None, Some(_), _) => Some((net::CONNECT_TIMEOUT, HandshakeLimit::FromDefault)),
        (None, None, Some(_)) => Some((GREETING_WAIT, HandshakeLimit::StartTlsDefault)),
        (None, None, None) => None,
    };
    Ok(Connect {
        from,
        status,
        starttls: args.common.tls.starttls,
        handshake_limit,
        name: target.name(),
        // A Unix socket is reached directly.
        proxies: match &target.addr {
            Address::Tcp(_) => proxies(&args.proxy, &args.verify, &proto)?,
            Address::Unix(path) => {
                if !args.proxy.proxy.is_empty() {
                    report::warn(format_args!(
                        "--proxy does not apply to {path}: a Unix socket is reached directly"
                    ));
                }
                Proxies::default()
            }
        },
        explain: client.explain,
        target: target.addr,
        server_name: target.server_name,
        config: client.config,
        reload: args.from.is_some().then_some(reload),
        reload_every: args.lifecycle.reload_every,
        drain: args.lifecycle.drain,
        common,
    })
}

/// A server to connect to, as the user named it and as TLS names it.
pub(crate) struct Target {
    /// As given: how output names it.
    pub given: String,
    pub addr: Address,
    pub server_name: ServerName<'static>,
}

impl Target {
    /// The name TLS uses, as text: also the name a STARTTLS dialogue gives (EHLO, XMPP `to`).
    pub(crate) fn name(&self) -> String {
        match &self.server_name {
            ServerName::DnsName(n) => n.as_ref().to_string(),
            ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
            _ => self.addr.to_string(),
        }
    }
}

/// Parse HOST:PORT (or HOST and PORT), and the name TLS uses for it (`--servername`, else
/// HOST). An international name is resolved, sent as SNI and checked in the certificate in
/// its ASCII form, as DNS and certificates have it.
fn target(text: &str, port: Option<&str>, verify: &VerifyArgs) -> Result<Target> {
    if let Some(path) = UnixPath::parse(text) {
        return unix_target(text, path, port, verify);
    }
    let mut addr = net::parse_target(text, port).map_err(|m| Class::Usage.err(m))?;
    addr.host = names::host_to_ascii(&addr.host)
        .map_err(|m| Class::Usage.err(m))?
        .into_owned();
    let name = match &verify.servername {
        Some(name) => names::host_to_ascii(name).map_err(|m| Class::Usage.err(m))?,
        None => addr.host.as_str().into(),
    };
    let server_name = ServerName::try_from(name.to_string()).map_err(|_| {
        Class::Usage.err(format!(
            "'{}' is not a valid server name",
            report::escape(&name)
        ))
    })?;
    Ok(Target {
        given: match port {
            Some(port) => format!("{text} {port}"),
            None => text.to_string(),
        },
        addr: Address::Tcp(addr),
        server_name,
    })
}

/// A Unix socket target: there is no host name to check the certificate against, so it
/// comes from `--servername`, unless the certificate is not checked by name (`--pin`,
/// `--tofu`, `--insecure`: then no SNI is sent).
fn unix_target(
    text: &str,
    path: Result<UnixPath, String>,
    port: Option<&str>,
    verify: &VerifyArgs,
) -> Result<Target> {
    let path = path.map_err(|m| Class::Usage.err(m))?;
    if port.is_some() {
        return Err(Class::Usage.err(format!("{path} takes no port")));
    }
    let server_name = match &verify.servername {
        Some(name) => {
            let name = names::host_to_ascii(name).map_err(|m| Class::Usage.err(m))?;
            ServerName::try_from(name.to_string()).map_err(|_| {
                Class::Usage.err(format!(
                    "'{}' is not a valid server name",
                    report::escape(&name)
                ))
            })?
        }
        None if verify.pin.is_some() || verify.tofu || verify.insecure => {
            ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())
        }
        None => {
            return Err(Class::Usage.err(format!(
                "{path} has no host name to check the certificate against: give the name it \
                 is for with --servername NAME (or --pin, --tofu, --insecure)"
            )))
        }
    };
    Ok(Target {
        given: text.to_string(),
        addr: Address::Unix(path),
        server_name,
    })
}

/// The client side of TLS, as the flags say: config, verifier, and how errors are told.
pub(crate) struct ClientTls {
    pub config: Arc<ClientConfig>,
    pub presented: Arc<Presented>,
    pub explain: Explainer,
}

/// `defer`: record the verifier's verdict instead of failing the handshake (`inspect`);
/// `seen`: where the verifier records the chains it is shown (a reload's, the first
/// configuration's place).
fn client_tls(
    verify: &VerifyArgs,
    args: &TlsArgs,
    proto: &Protocol,
    defer: bool,
    target: Option<&Address>,
    seen: Option<Arc<Presented>>,
) -> Result<ClientTls> {
    let provider = proto.provider.clone();
    // A reload says no warning a second time.
    let seen_first = seen.is_none();
    let trust = choose_trust(verify, Checked::Target(target))?;
    let identity = match client_cert(args)? {
        Some((cert, key)) => Some(identity::load_identity(cert, key, &provider)?),
        None => None,
    };
    let crls = Crls::load(&verify.crl)?;
    let mut verifier = ServerVerifier::new(trust, provider.clone(), &crls)?;
    if defer {
        verifier = verifier.deferring();
    }
    if let Some(seen) = seen {
        verifier = verifier.recording_into(seen);
    }
    let verifier = Arc::new(verifier);
    // inspect verifies every handshake: a resumed session would skip the verifier.
    let proto = Protocol {
        resume: proto.resume && !defer,
        ..proto.clone()
    };
    let config = tls::client_config(&proto, verifier.clone(), identity, !verify.no_sni)?;
    if verify.insecure && seen_first {
        report::warn(
            "--insecure: the server's certificate is not verified; anyone on the path can read \
             and change this connection",
        );
    }
    Ok(ClientTls {
        config: Arc::new(config),
        presented: verifier.presented(),
        explain: Explainer::new(Side::Client, proto.alpn.clone(), verifier.presented())
            .with_crls(&crls),
    })
}

/// The proxies to go through, from `--proxy` or the environment, and TLS for `https://` ones.
fn proxies(args: &ProxyArgs, verify: &VerifyArgs, proto: &Protocol) -> Result<Proxies> {
    let env = |name: &str| std::env::var(name).ok();
    let mut chain = args
        .proxy
        .iter()
        .map(|url| proxy::parse(url).map_err(|m| Class::Usage.err(m)))
        .collect::<Result<Vec<_>>>()?;
    if chain.is_empty() {
        chain.extend(proxy::from_env(env).map_err(|m| Class::Usage.err(m))?);
    }
    let tls = match chain.iter().any(|p| p.scheme == proxy::Scheme::Https) {
        true => {
            let verifier = Arc::new(ServerVerifier::new(
                choose_trust(verify, Checked::Proxy)?,
                proto.provider.clone(),
                &Crls::default(),
            )?);
            // No ALPN of the target's, and no key log: a capture would show the proxy's
            // credentials.
            let plain = Protocol {
                alpn: Vec::new(),
                key_log: None,
                ..proto.clone()
            };
            let config = tls::client_config(&plain, verifier.clone(), None, true)?;
            let explain = Explainer::new(Side::Client, Vec::new(), verifier.presented());
            Some((Arc::new(config), explain))
        }
        false => None,
    };
    Ok(Proxies {
        chain,
        no_proxy: proxy::no_proxy(args.noproxy.as_deref(), env),
        tls,
    })
}

/// `stls inspect`, resolved.
pub(crate) struct Inspect {
    /// In input order: arguments, then `--targets`.
    pub targets: Vec<Target>,
    pub client: ClientTls,
    pub json: bool,
    pub expires_within: Option<u32>,
    pub parallel: usize,
    pub save_chain: Option<PathBuf>,
    pub starttls: Option<Proto>,
    pub proxies: Proxies,
    /// `--tofu`: the known-hosts file each target's key is checked against.
    pub tofu: Option<PathBuf>,
    /// `--insecure`: nothing is verified, nor called so.
    pub insecure: bool,
    /// Per target: connecting and the handshake.
    pub wait: Duration,
    pub family: Family,
    /// `--probe` and `--require`: the questions asked of each target.
    pub probe: Option<crate::census::Plan>,
    /// The rustls client of each question (`None`: one rustls cannot ask).
    pub probe_clients: Vec<Option<ClientTls>>,
}

/// How long `inspect` gives each target without `-w`.
const INSPECT_WAIT: Duration = Duration::from_secs(10);

pub(crate) fn inspect(args: &InspectArgs) -> Result<Inspect> {
    report::set_level(args.net.quiet, args.net.verbose);
    check_trust_flags(&args.verify)?;
    let mut targets = args
        .targets
        .iter()
        .map(|t| target(t, None, &args.verify))
        .collect::<Result<Vec<_>>>()?;
    if let Some(path) = &args.targets_file {
        targets.extend(targets_file(path, &args.verify)?);
    }
    if targets.is_empty() {
        return Err(Class::Usage.err("no target: give HOST:PORT arguments, or --targets FILE"));
    }
    if args.save_chain.is_some() && targets.len() > 1 {
        return Err(Class::Usage.err(format!(
            "--save-chain writes one chain, but {} targets were given",
            targets.len()
        )));
    }
    // Before any connection: a file that cannot be written there is known now.
    if let Some(path) = &args.save_chain {
        files::check_output(path, "--save-chain")?;
    }
    let proto = protocol(&args.tls)?;
    let client = client_tls(&args.verify, &args.tls, &proto, true, None, None)?;
    if let (Some(days), true) = (args.expires_within, args.verify.insecure) {
        report::warn(format!(
            "--expires-within {days} is not applied: with --insecure the chain is not \
             verified, so no expiry is checked; drop --insecure to check it"
        ));
    }
    let mut probe = crate::census::plan(
        &args.probe,
        &args.alpn_probe,
        &args.require,
        !args.verify.no_sni,
    )?;
    let probe_clients = probe
        .iter_mut()
        .flat_map(|plan| plan.questions.iter_mut())
        .map(|q| {
            q.client.take().map(|c| ClientTls {
                config: c.config,
                presented: c.presented,
                explain: c.explain,
            })
        })
        .collect();
    Ok(Inspect {
        targets,
        client,
        proxies: proxies(&args.proxy, &args.verify, &proto)?,
        insecure: args.verify.insecure,
        tofu: match args.verify.tofu {
            true => {
                let file = known_hosts(&args.verify)?;
                crate::tofu::readable(&file)?;
                Some(file)
            }
            false => None,
        },
        json: args.json,
        expires_within: args.expires_within,
        parallel: args.parallel as usize,
        save_chain: args.save_chain.clone(),
        starttls: args.tls.starttls,
        wait: args.net.wait.unwrap_or(INSPECT_WAIT),
        family: family(&args.net),
        probe,
        probe_clients,
    })
}

/// The targets a `--targets` file lists: one per line, `#` comments, blank lines skipped.
/// A line that is not a target names the file and line.
fn targets_file(path: &Path, verify: &VerifyArgs) -> Result<Vec<Target>> {
    let (name, data) = if path == Path::new("-") {
        (
            "stdin".to_string(),
            files::read_stdin(files::Kind::Targets)?,
        )
    } else {
        (
            path.display().to_string(),
            files::read_file(path, files::Kind::Targets)?,
        )
    };
    let text = String::from_utf8(data)
        .map_err(|_| Class::Usage.err(format!("{name}: not text (UTF-8)")))?;
    let mut targets = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let t = target(line, None, verify)
            .map_err(|e| Class::Usage.err(format!("{name}, line {}: {e:#}", n + 1)))?;
        targets.push(t);
    }
    Ok(targets)
}

/// `--known-hosts`, or the default file.
fn known_hosts(verify: &VerifyArgs) -> Result<PathBuf> {
    match &verify.known_hosts {
        Some(f) => Ok(f.clone()),
        None => crate::tofu::default_file().ok_or_else(|| {
            Class::Usage.err("--tofu: no HOME or XDG_CONFIG_HOME: give --known-hosts FILE")
        }),
    }
}

/// Whose certificate a verifier checks.
#[derive(Clone, Copy)]
enum Checked<'a> {
    /// The target's, at this address; `None` for `inspect`, whose targets are each checked
    /// against `--tofu` once their handshake is done.
    Target(Option<&'a Address>),
    /// An `https://` proxy's: `--pin` and `--tofu` are the target's, so only `--insecure`,
    /// `--cacert` and `--trust` apply.
    Proxy,
}

/// How the certificate is checked, as the flags say (`check_trust_flags` has refused those
/// that contradict each other): `--tofu`, `--insecure`, `--pin`, `--cacert`, else `--trust`.
fn choose_trust(verify: &VerifyArgs, checked: Checked<'_>) -> Result<Trust> {
    if let (Checked::Target(target), true) = (checked, verify.tofu) {
        let file = known_hosts(verify)?;
        return Ok(match target {
            Some(target) => {
                let host = target.to_string();
                crate::tofu::precheck(&file, &host)?;
                Trust::Tofu { file, host }
            }
            // inspect: each target's key is checked once its handshake is done.
            None => Trust::Insecure,
        });
    }
    if verify.insecure {
        return Ok(Trust::Insecure);
    }
    if let (Checked::Target(_), Some(pin)) = (checked, &verify.pin) {
        return Ok(Trust::Pin(
            parse_pins(pin).map_err(|m| Class::Usage.err(m))?,
        ));
    }
    match &verify.cacert {
        Some(path) => Ok(Trust::Roots(trust::roots_from_file(path)?)),
        None => store(verify.trust),
    }
}

/// `--trust`: the system's store (the default) or only the built-in roots.
fn store(choice: Option<TrustStore>) -> Result<Trust> {
    match choice {
        Some(TrustStore::Builtin) => {
            report::verbose("trusting the built-in Mozilla roots (--trust builtin)");
            Ok(Trust::Roots(trust::builtin_roots()))
        }
        Some(TrustStore::System) | None => {
            // A store named by the environment must be there: falling back to the built-in
            // roots would trust more than was asked for.
            for (name, kind) in [("SSL_CERT_FILE", false), ("SSL_CERT_DIR", true)] {
                let Some(value) = std::env::var_os(name).filter(|v| !v.is_empty()) else {
                    continue;
                };
                let paths: Vec<PathBuf> = match kind {
                    true => std::env::split_paths(&value).collect(),
                    false => vec![PathBuf::from(&value)],
                };
                for path in paths {
                    // The file is read later, on a thread of its own, while the connection is
                    // made: what it is and its size are checked now, before that.
                    let checked = match kind {
                        true => std::fs::metadata(&path).map(drop).map_err(|e| {
                            anyhow::anyhow!("{}: {}", path.display(), crate::error::io_phrase(&e))
                        }),
                        false => files::check_regular(&path, files::Kind::CaBundle),
                    };
                    if let Err(e) = checked {
                        return Err(anyhow::anyhow!(
                            "{name}={e:#}: the trusted certificates it names cannot be read"
                        ));
                    }
                }
            }
            Ok(Trust::System)
        }
    }
}

/// `--insecure`, `--pin`, `--cacert` and `--trust` each say how to check the server; two of
/// them together would silently drop one, so they are refused with the reason.
fn check_trust_flags(args: &VerifyArgs) -> Result<()> {
    if !args.crl.is_empty() {
        let other = [
            (args.insecure, "--insecure"),
            (args.pin.is_some(), "--pin"),
            (args.tofu, "--tofu"),
        ]
        .into_iter()
        .find(|(given, _)| *given);
        if let Some((_, flag)) = other {
            return Err(Class::Usage.err(format!(
                "--crl is checked along a chain to a trusted CA, which {flag} does without: \
                 give one of them"
            )));
        }
    }
    if args.tofu {
        let other = [
            (args.insecure, "--insecure"),
            (args.pin.is_some(), "--pin"),
            (args.cacert.is_some(), "--cacert"),
            (args.trust.is_some(), "--trust"),
        ]
        .into_iter()
        .find(|(given, _)| *given);
        if let Some((_, flag)) = other {
            return Err(Class::Usage.err(format!(
                "--tofu trusts the key seen first instead of a CA, which {flag} is about: give \
                 one of them"
            )));
        }
    }
    if let Some(store) = args.trust {
        let other = [
            (args.insecure, "--insecure"),
            (args.pin.is_some(), "--pin"),
            (args.cacert.is_some(), "--cacert"),
        ]
        .into_iter()
        .find(|(given, _)| *given);
        if let Some((_, flag)) = other {
            let name = match store {
                TrustStore::System => "system",
                TrustStore::Builtin => "builtin",
            };
            return Err(Class::Usage.err(format!(
                "--trust {name} chooses the CA certificates to trust, which {flag} replaces: \
                 give one of them"
            )));
        }
    }
    let why = match (args.insecure, &args.pin, &args.cacert) {
        (true, Some(_), _) => "--insecure and --pin contradict each other: --pin accepts only \
                               the certificate with that fingerprint, --insecure accepts any; \
                               give one of them"
            .to_string(),
        (true, None, Some(path)) => format!(
            "--insecure turns certificate verification off, so --cacert {} would be ignored; \
             give one of them",
            path.display()
        ),
        (false, Some(_), Some(path)) => format!(
            "--pin replaces verification by a CA, so --cacert {} would be ignored; give one of \
             them",
            path.display()
        ),
        _ => return Ok(()),
    };
    Err(Class::Usage.err(why))
}

pub(crate) fn listen(args: &ListenArgs) -> Result<Listen> {
    let mut common = Common::from_args(&args.common)?;
    let passthrough = backends(args, &mut common)?;
    let at = listen_at(&args.addr, args.unix_mode)?;
    let many = args.keep_open || !args.to.is_empty() || passthrough.is_some();
    if args.status.is_some() && !many {
        return Err(Class::Usage
            .err("--status is for a listener that keeps running: give -k (or --to) too"));
    }
    let status = status_at(args.status.as_deref(), args.unix_mode)?;
    check_listen_flags(args, many)?;
    let proto = protocol(&args.common.tls)?;
    let files = Served {
        certs: server_certs(&args.common.tls)?,
        strict_sni: args.strict_sni,
        ticket_keys: args.ticket_keys.clone(),
        client_ca: args.client_ca.clone(),
        client_ca_optional: args.client_ca_optional.clone(),
        crl: args.client_crl.clone(),
        ocsp: args.ocsp.clone(),
        allow: trust::Allow {
            cn: args.allow_cn.clone(),
            san: args
                .allow_san
                .iter()
                .map(|v| trust::AllowSan::parse(v).map_err(|m| Class::Usage.err(m)))
                .collect::<Result<_>>()?,
        },
        proto: proto.clone(),
    };
    let presented = Arc::<Presented>::default();
    let (config, fingerprint) = files.load(&presented)?;
    let ephemeral = files.certs.is_empty();
    if ephemeral && args.lifecycle.reload_every.is_some() {
        return Err(Class::Usage.err(
            "--reload-every looks for changes in the files of --cert (--key, --client-ca, \
             --crl, --ocsp): with an ephemeral certificate there is none",
        ));
    }
    Ok(Listen {
        at,
        config: Arc::new(config),
        explain: Explainer::new(Side::Server, proto.alpn.clone(), presented.clone())
            .with_crls(&Crls::load(&args.client_crl)?),
        // An ephemeral certificate has no file to read again.
        reload: (!ephemeral).then_some((files, presented)),
        fingerprint,
        ephemeral,
        keep_open: many,
        threads: threads(&common.local, args.threads),
        reload_every: args.lifecycle.reload_every,
        drain: args.lifecycle.drain,
        status,
        max_conns: args.max_conns.unwrap_or(1000) as usize,
        max_handshakes: args.max_handshakes as usize,
        handshake_limit: match common.wait {
            Some(w) if w < args.handshake_timeout => (w, HandshakeLimit::Wait),
            _ => (args.handshake_timeout, HandshakeLimit::HandshakeTimeout),
        },
        stall_timeout: args.stall_timeout.unwrap_or(Duration::from_secs(10)),
        starttls: args.common.tls.starttls.map(|p| {
            (
                p,
                identity::hostname().unwrap_or_else(|| "localhost".into()),
            )
        }),
        accept_proxy: args.accept_proxy,
        passthrough,
        common,
    })
}

/// The flags of `listen` that need others, or exclude them.
fn check_listen_flags(args: &ListenArgs, many: bool) -> Result<()> {
    for (given, flag) in [
        (args.max_conns.is_some(), "--max-conns"),
        (args.stall_timeout.is_some(), "--stall-timeout"),
    ] {
        if given && !many {
            return Err(Class::Usage.err(format!(
                "{flag} is for many clients at once: give -k (or --to) too"
            )));
        }
    }
    let per_connection = !args.to.is_empty()
        || (args.keep_open && (args.common.exec.is_some() || args.common.sh_exec.is_some()));
    if args.threads.is_some() && !per_connection {
        return Err(Class::Usage.err(
            "--threads is for --to, or -k with -e/-c: stdin and stdout are one stream for \
             every client",
        ));
    }
    if !args.client_crl.is_empty() && args.client_ca.is_none() && args.client_ca_optional.is_none()
    {
        return Err(Class::Usage.err(
            "--crl on listen is for client certificates: it needs --client-ca (or \
             --client-ca-optional)",
        ));
    }
    if (!args.allow_cn.is_empty() || !args.allow_san.is_empty())
        && args.client_ca.is_none()
        && args.client_ca_optional.is_none()
    {
        return Err(Class::Usage.err(
            "--allow-cn and --allow-san choose among verified client certificates: they need \
             --client-ca (or --client-ca-optional)",
        ));
    }
    if args.ticket_keys.is_some() && args.common.tls.no_resume {
        return Err(Class::Usage
            .err("--ticket-keys seals the tickets that --no-resume turns off: give one of them"));
    }
    Ok(())
}

/// How many event loops `listen` runs: tunnels (by default one per core) and -k -e services
/// (with --threads) one per thread; stdin/stdout, shared by every client, stays on one.
fn threads(local: &LocalEnd, threads: Option<u32>) -> usize {
    match (local.is_tunnel(), threads) {
        (_, Some(n)) => n as usize,
        (true, None) => std::thread::available_parallelism().map_or(1, |n| n.get()),
        (false, None) => 1,
    }
}

fn family(args: &NetArgs) -> Family {
    match (args.ipv4, args.ipv6) {
        (true, _) => Family::V4,
        (_, true) => Family::V6,
        _ => Family::Any,
    }
}

/// The files `listen` serves from (`--cert`, `--key`, `--client-ca`), kept to be read again
/// on SIGHUP.
#[derive(Clone)]
pub(crate) struct Served {
    /// `--cert` and its `--key` (None: in the --cert file), in order; none: an ephemeral
    /// certificate.
    certs: Vec<(PathBuf, Option<PathBuf>)>,
    /// `--strict-sni`.
    strict_sni: bool,
    /// `--ticket-keys`.
    ticket_keys: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    client_ca_optional: Option<PathBuf>,
    crl: Vec<PathBuf>,
    ocsp: Option<PathBuf>,
    allow: trust::Allow,
    proto: Protocol,
}

impl Served {
    /// Every file it reads, for `--reload-every` to look at.
    pub(crate) fn paths(&self) -> Vec<PathBuf> {
        let certs = self
            .certs
            .iter()
            .flat_map(|(cert, key)| std::iter::once(cert).chain(key));
        [
            &self.client_ca,
            &self.client_ca_optional,
            &self.ocsp,
            &self.ticket_keys,
        ]
        .into_iter()
        .flatten()
        .chain(certs)
        .chain(&self.crl)
        .cloned()
        .collect()
    }

    /// Every `--cert` with its key, in order; without one, an ephemeral certificate.
    fn certificates(&self, provider: &rustls::crypto::CryptoProvider) -> Result<Vec<sni::Served>> {
        let mut served = Vec::new();
        for (cert, key) in &self.certs {
            served.push(sni::Served::new(
                cert.display().to_string(),
                identity::load_identity(cert, key.as_deref(), provider)?,
            ));
        }
        if served.is_empty() {
            served.push(sni::Served::new(
                "the ephemeral certificate".into(),
                identity::ephemeral(provider)?,
            ));
        }
        Ok(served)
    }

    /// The server configuration from the files as they are now, and the fingerprint of the
    /// (first) certificate served; client chains are recorded in `presented`.
    pub(crate) fn load(&self, presented: &Arc<Presented>) -> Result<(ServerConfig, String)> {
        let provider = &self.proto.provider;
        let client_auth = match (&self.client_ca, &self.client_ca_optional) {
            (Some(path), _) => tls::ClientAuth::Required(trust::roots_from_file(path)?),
            (None, Some(path)) => tls::ClientAuth::Optional(trust::roots_from_file(path)?),
            (None, None) => tls::ClientAuth::None,
        };
        let mut served = self.certificates(provider)?;
        let count = served.len();
        // --ocsp is the first certificate's.
        // certificates() gives one at least: the ephemeral one without --cert.
        let Some(first) = served.first_mut() else {
            return Err(anyhow::anyhow!("no certificate to serve"));
        };
        let mut identity = first.key.clone();
        if let Some(path) = &self.ocsp {
            let response = files::read_file(path, files::Kind::Ocsp)?;
            if crate::ocsp::status(&response).is_none() {
                return Err(anyhow::anyhow!(
                    "{}: not an OCSP response (DER, as openssl ocsp -respout writes it)",
                    path.display()
                ));
            }
            let mut stapled = (*identity).clone();
            stapled.ocsp = Some(response);
            identity = Arc::new(stapled);
        }
        let mut fingerprint = identity
            .cert
            .first()
            .map(|c| fingerprint_text(&sha256(c.as_ref())))
            .unwrap_or_default();
        if count > 1 {
            fingerprint = format!("{fingerprint} (the first of {count} certificates)");
        }
        first.key = identity;
        let tickets = match &self.ticket_keys {
            Some(path) => Some(Arc::new(tickets::TicketKeys::load(path)?) as _),
            None => None,
        };
        // What /metrics says is served, once all of it loaded.
        let expiry: Vec<(String, i64)> = served
            .iter()
            .filter_map(|s| s.key.cert.first().and_then(crate::describe::served))
            .collect();
        let crls = Crls::load(&self.crl)?;
        let config = tls::server_config(
            &self.proto,
            Arc::new(sni::Certificates::new(served, self.strict_sni)),
            tickets,
            client_auth,
            &crls,
            self.allow.clone(),
            presented.clone(),
        )?;
        for (name, not_after) in &expiry {
            crate::metrics::certificate_expiry(name, *not_after);
        }
        Ok((config, fingerprint))
    }
}

/// A plain-text socket (`--from`, `--status`) is never exposed beyond loopback unless asked:
/// a bare PORT is 127.0.0.1's.
fn loopback_by_default(at: ListenAt) -> ListenAt {
    match at {
        ListenAt::Tcp { host: None, port } => ListenAt::Tcp {
            host: Some("127.0.0.1".to_string()),
            port,
        },
        at => at,
    }
}

/// `--status`: where, if given.
fn status_at(spec: Option<&str>, mode: u32) -> Result<Option<ListenAt>> {
    spec.map(|spec| {
        listen_at(spec, mode)
            .map(loopback_by_default)
            .map_err(|e| e.context("--status"))
    })
    .transpose()
}

/// Where to listen: `[ADDR:]PORT` (an international name in its ASCII form), or a Unix
/// socket made with `mode`.
fn listen_at(spec: &str, mode: u32) -> Result<ListenAt> {
    match ListenAt::parse(spec, mode).map_err(|m| Class::Usage.err(m))? {
        ListenAt::Tcp {
            host: Some(host),
            port,
        } => Ok(ListenAt::Tcp {
            host: Some(
                names::host_to_ascii(&host)
                    .map_err(|m| Class::Usage.err(m))?
                    .into_owned(),
            ),
            port,
        }),
        other => Ok(other),
    }
}

/// Every `--to`: NAME=TARGET routes, at most one TARGET without a name.
fn routes(given: &[String], version: Option<ProxyProtocol>, family: Family) -> Result<Routes> {
    let mut routes = Routes {
        named: Vec::new(),
        default: None,
    };
    for text in given {
        let Some((name, target)) = route_name(text)? else {
            if routes.default.is_some() {
                return Err(Class::Usage.err(format!(
                    "--to {text}: a second backend for every name; give the others as \
                     --to NAME=HOST:PORT, routed by the name clients ask for (SNI)"
                )));
            }
            routes.default = Some(backend(text, version, family)?);
            continue;
        };
        if routes.named.iter().any(|(n, _)| *n == name) {
            return Err(Class::Usage.err(format!("--to {text}: {name} has a route already")));
        }
        let to =
            backend(target, version, family).map_err(|e| e.context(format!("--to {name}=")))?;
        routes.named.push((name, to));
    }
    Ok(routes)
}

/// The backends of `listen`: `--to`'s routes, as the local end, and `--passthrough`'s.
fn backends(args: &ListenArgs, common: &mut Common) -> Result<Option<Arc<Routes>>> {
    if !args.to.is_empty() {
        common.local = LocalEnd::Backend(routes(&args.to, args.proxy_protocol, common.family)?);
    }
    let passthrough = passthrough(&args.passthrough, args.proxy_protocol, common.family)?;
    if args.proxy_protocol.is_some() && args.to.is_empty() && passthrough.is_none() {
        return Err(Class::Usage.err(
            "--proxy-protocol tells a backend who the client is: give --to (or --passthrough) \
             too",
        ));
    }
    Ok(passthrough)
}

/// `--passthrough NAME=TARGET`, each: the names whose TLS goes to their backend as it is.
fn passthrough(
    given: &[String],
    version: Option<ProxyProtocol>,
    family: Family,
) -> Result<Option<Arc<Routes>>> {
    let mut named = Vec::new();
    for text in given {
        let Some((name, target)) = route_name(text)? else {
            return Err(Class::Usage.err(format!(
                "--passthrough {text}: give it as NAME=HOST:PORT (or NAME=unix:PATH), NAME as \
                 clients send it in SNI"
            )));
        };
        if named.iter().any(|(n, _)| *n == name) {
            return Err(Class::Usage.err(format!("--passthrough {text}: {name} is given already")));
        }
        let to = backend(target, version, family)
            .map_err(|e| e.context(format!("--passthrough {name}=")))?;
        named.push((name, to));
    }
    Ok((!named.is_empty()).then(|| {
        Arc::new(Routes {
            named,
            default: None,
        })
    }))
}

/// The NAME of `--to NAME=TARGET` (lower case, A-labels; `*.` kept) and TARGET; `None` for a
/// bare TARGET (HOST:PORT, `[IPv6]:PORT` or unix:PATH, none of which has `=` before a `:`).
fn route_name(text: &str) -> Result<Option<(String, &str)>> {
    let Some((name, target)) = text.split_once('=') else {
        return Ok(None);
    };
    if name.contains([':', '/', '[']) {
        return Ok(None);
    }
    let (wild, host) = match name.strip_prefix("*.") {
        Some(rest) => ("*.", rest),
        None => ("", name),
    };
    let bad = || {
        Class::Usage.err(format!(
            "--to {text}: '{}' is not a host name (NAME=HOST:PORT, NAME as clients send it in \
             SNI, or *.DOMAIN)",
            crate::report::escape(name)
        ))
    };
    if host.is_empty() || host.contains('*') || host.parse::<std::net::IpAddr>().is_ok() {
        return Err(bad());
    }
    let ascii = names::host_to_ascii(host).map_err(|_| bad())?;
    Ok(Some((
        format!("{wild}{}", ascii.to_ascii_lowercase()),
        target,
    )))
}

/// `--to HOST:PORT` (resolved once, at start) or `--to unix:PATH`.
fn backend(text: &str, version: Option<ProxyProtocol>, family: Family) -> Result<Backend> {
    let place = match UnixPath::parse(text) {
        Some(path) => Place::Unix(path.map_err(|m| Class::Usage.err(format!("--to: {m}")))?),
        None => {
            let hp = net::parse_target(text, None)
                .map_err(|m| Class::Usage.err(format!("--to: {m}")))?;
            Place::Tcp {
                addrs: net::resolve(&hp, family)?,
                name: hp.to_string(),
            }
        }
    };
    Ok(Backend {
        place,
        proxy_protocol: version.map(|v| match v {
            ProxyProtocol::V1 => 1,
            ProxyProtocol::V2 => 2,
        }),
    })
}

/// The TLS settings both sides share, from the flags.
fn protocol(args: &TlsArgs) -> Result<Protocol> {
    let versions = versions(tls_version(args.tls_min), tls_version(args.tls_max))?;
    let provider = provider(args.ciphers.as_deref(), &versions)?;
    let alpn = args
        .alpn
        .iter()
        .map(|p| {
            if p.is_empty() || p.len() > 255 {
                Err(Class::Usage.err(format!(
                    "--alpn '{}': a protocol name is 1 to 255 bytes",
                    report::escape(p)
                )))
            } else {
                Ok(p.as_bytes().to_vec())
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let key_log: Option<Arc<dyn KeyLog>> = match &args.keylog {
        Some(path) => {
            let log = KeyLogTo::open(path)?;
            report::warn(format_args!(
                "TLS secrets are written to {} (--keylog): anyone who reads it can decrypt \
                 this connection",
                path.display()
            ));
            Some(Arc::new(log))
        }
        None => match std::env::var_os("SSLKEYLOGFILE").filter(|p| !p.is_empty()) {
            // As other programs do, a key log file that cannot be opened is not fatal.
            Some(path) => match KeyLogTo::open(Path::new(&path)) {
                Ok(log) => {
                    report::warn("SSLKEYLOGFILE is set: TLS secrets are written to it");
                    Some(Arc::new(log))
                }
                Err(e) => {
                    report::warn(format_args!("SSLKEYLOGFILE: {e:#}; no key log is written"));
                    None
                }
            },
            None => None,
        },
    };
    Ok(Protocol {
        provider,
        versions,
        alpn,
        key_log,
        resume: !args.no_resume,
        ciphers_given: args.ciphers.is_some(),
    })
}

fn tls_version(v: TlsVersion) -> &'static SupportedProtocolVersion {
    match v {
        TlsVersion::Tls12 => &rustls::version::TLS12,
        TlsVersion::Tls13 => &rustls::version::TLS13,
    }
}

/// connect's and inspect's `--cert` and `--key`: one client certificate at most.
fn client_cert(args: &TlsArgs) -> Result<Option<(&Path, Option<&Path>)>> {
    if args.cert.len() > 1 || args.key.len() > 1 {
        return Err(Class::Usage.err(
            "--cert and --key are given more than once: a client presents one certificate \
             (several are for listen)",
        ));
    }
    Ok(args
        .cert
        .first()
        .map(|c| (c.as_path(), args.key.first().map(PathBuf::as_path))))
}

/// listen's `--cert` and `--key`, paired in order; each key may be in its --cert file when
/// no --key is given.
fn server_certs(args: &TlsArgs) -> Result<Vec<(PathBuf, Option<PathBuf>)>> {
    if !args.key.is_empty() && args.key.len() != args.cert.len() {
        let times = |n: usize| match n {
            1 => "once".to_string(),
            2 => "twice".to_string(),
            n => format!("{n} times"),
        };
        return Err(Class::Usage.err(format!(
            "--cert is given {} and --key {}: give one --key for each --cert, in the same \
             order (or none, each key in its --cert file)",
            times(args.cert.len()),
            times(args.key.len())
        )));
    }
    Ok(args
        .cert
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), args.key.get(i).cloned()))
        .collect())
}
