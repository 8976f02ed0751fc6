//! Raw flags → resolved configuration. Every error in what the user typed or named (addresses,
//! fingerprints, PEM files, keys) surfaces here, before any socket is opened.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, KeyLog, ServerConfig, SupportedProtocolVersion};

use crate::cli::{CommonArgs, ConnectArgs, ListenArgs, TlsVersion};
use crate::error::Class;
use crate::exec::Program;
use crate::fingerprint::{fingerprint_text, parse_fingerprint, sha256};
use crate::identity;
use crate::names;
use crate::net::{self, Family, HostPort};
use crate::report;
use crate::session::Options;
use crate::tls::{self, provider, versions, KeyLogTo, Protocol};
use crate::trust::{self, Explainer, ServerVerifier, Side, Trust};

/// What both subcommands share.
pub(crate) struct Common {
    pub no_shutdown: bool,
    pub send_only: bool,
    pub recv_only: bool,
    /// `-C`: stdin's LF goes out as CR LF.
    pub crlf: bool,
    /// `-e` / `-c`: run this per connection instead of using stdin/stdout.
    pub exec: Option<Program>,
    pub wait: Option<Duration>,
    pub idle: Option<Duration>,
    pub family: Family,
}

impl Common {
    fn from_args(args: &CommonArgs) -> Result<Common> {
        report::set_level(args.quiet, args.verbose);
        let exec = match (&args.exec, &args.sh_exec) {
            (Some(cmd), _) => Some(Program::exec(cmd)?),
            (None, Some(cmd)) => Some(Program::shell(cmd)),
            (None, None) => None,
        };
        Ok(Common {
            no_shutdown: args.no_shutdown,
            send_only: args.send_only,
            recv_only: args.recv_only,
            crlf: args.crlf,
            exec,
            wait: args.wait,
            idle: args.idle,
            family: match (args.ipv4, args.ipv6) {
                (true, _) => Family::V4,
                (_, true) => Family::V6,
                _ => Family::Any,
            },
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
            send_only: self.send_only,
            recv_only: self.recv_only,
            crlf: self.crlf,
            idle: self.idle,
            stall: None,
            exec: self.exec.clone(),
            many: false,
            stdin_tty: std::io::stdin().is_terminal(),
        }
    }
}

pub(crate) struct Connect {
    pub target: HostPort,
    pub server_name: ServerName<'static>,
    pub config: Arc<ClientConfig>,
    pub explain: Explainer,
    pub common: Common,
}

pub(crate) struct Listen {
    pub host: Option<String>,
    pub port: u16,
    pub config: Arc<ServerConfig>,
    pub explain: Explainer,
    /// The fingerprint to print: always for an ephemeral certificate, with -v otherwise.
    pub fingerprint: String,
    pub ephemeral: bool,
    /// `-k`: serve many connections.
    pub keep_open: bool,
    pub max_conns: usize,
    pub max_handshakes: usize,
    pub handshake_timeout: Duration,
    /// `--stall-timeout`, with `-k`.
    pub stall_timeout: Duration,
    pub common: Common,
}

pub(crate) fn connect(args: &ConnectArgs) -> Result<Connect> {
    check_trust_flags(args)?;
    let common = Common::from_args(&args.common)?;
    let mut target =
        net::parse_target(&args.target, args.port.as_deref()).map_err(|m| Class::Usage.err(m))?;
    // An international name is resolved, sent as SNI and checked in the certificate in its
    // ASCII form, as DNS and certificates have it.
    target.host = names::host_to_ascii(&target.host)
        .map_err(|m| Class::Usage.err(m))?
        .into_owned();
    let name = match &args.servername {
        Some(name) => names::host_to_ascii(name).map_err(|m| Class::Usage.err(m))?,
        None => target.host.as_str().into(),
    };
    let server_name = ServerName::try_from(name.to_string()).map_err(|_| {
        Class::Usage.err(format!(
            "'{}' is not a valid server name",
            report::escape(&name)
        ))
    })?;
    let proto = protocol(&args.common)?;
    let provider = proto.provider.clone();
    let trust = if args.insecure {
        Trust::Insecure
    } else if let Some(pin) = &args.pin {
        Trust::Pin(parse_fingerprint(pin).map_err(|m| Class::Usage.err(m))?)
    } else if let Some(path) = &args.cacert {
        Trust::Roots(trust::roots_from_file(path)?)
    } else {
        Trust::Roots(trust::builtin_roots())
    };
    let identity = match &args.common.cert {
        Some(cert) => Some(identity::load_identity(
            cert,
            args.common.key.as_deref(),
            &provider,
        )?),
        None => None,
    };
    let verifier = Arc::new(ServerVerifier::new(trust, provider.clone())?);
    let config = tls::client_config(&proto, verifier.clone(), identity, !args.no_sni)?;
    if args.insecure {
        report::warn(
            "--insecure: the server's certificate is not verified; anyone on the path can read \
             and change this connection",
        );
    }
    Ok(Connect {
        explain: Explainer::new(Side::Client, proto.alpn.clone(), verifier.presented()),
        target,
        server_name,
        config: Arc::new(config),
        common,
    })
}

/// `--insecure`, `--pin` and `--cacert` each say how to check the server; two of them
/// together would silently drop one, so they are refused with the reason.
fn check_trust_flags(args: &ConnectArgs) -> Result<()> {
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
    let common = Common::from_args(&args.common)?;
    let (host, port) = net::parse_listen(&args.addr).map_err(|m| Class::Usage.err(m))?;
    let host = match host {
        Some(h) => Some(
            names::host_to_ascii(&h)
                .map_err(|m| Class::Usage.err(m))?
                .into_owned(),
        ),
        None => None,
    };
    let proto = protocol(&args.common)?;
    let provider = proto.provider.clone();
    let client_auth = match (&args.client_ca, &args.client_ca_optional) {
        (Some(path), _) => tls::ClientAuth::Required(trust::roots_from_file(path)?),
        (None, Some(path)) => tls::ClientAuth::Optional(trust::roots_from_file(path)?),
        (None, None) => tls::ClientAuth::None,
    };
    let (identity, ephemeral) = match &args.common.cert {
        Some(cert) => (
            identity::load_identity(cert, args.common.key.as_deref(), &provider)?,
            false,
        ),
        None => (identity::ephemeral(&provider)?, true),
    };
    let fingerprint = identity
        .cert
        .first()
        .map(|c| fingerprint_text(&sha256(c.as_ref())))
        .unwrap_or_default();
    let (config, client_verifier) = tls::server_config(&proto, identity, client_auth)?;
    Ok(Listen {
        host,
        port,
        config: Arc::new(config),
        explain: Explainer::new(
            Side::Server,
            proto.alpn.clone(),
            client_verifier.map(|v| v.presented()).unwrap_or_default(),
        ),
        fingerprint,
        ephemeral,
        keep_open: args.keep_open,
        max_conns: args.max_conns as usize,
        max_handshakes: args.max_handshakes as usize,
        handshake_timeout: args.handshake_timeout,
        stall_timeout: args.stall_timeout,
        common,
    })
}

/// The TLS settings both sides share, from the flags.
fn protocol(args: &CommonArgs) -> Result<Protocol> {
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
    })
}

fn tls_version(v: TlsVersion) -> &'static SupportedProtocolVersion {
    match v {
        TlsVersion::Tls12 => &rustls::version::TLS12,
        TlsVersion::Tls13 => &rustls::version::TLS13,
    }
}
