//! stls: a TLS netcat.
//!
//! The modules, in the order data meets them, one line each (`tests/docs.rs` checks that
//! every module is here):
//! - `cli`: the flags as typed.
//! - `settings`: the flags resolved — addresses parsed, files read, rustls configs built,
//!   every derived fact decided (threads, which limit bounds a handshake).
//! - `argv`: hides `--proxy` passwords from `ps` once the command line is parsed.
//! - `files`: the one reader of the files options name, with a cap on each.
//! - `tls`: protocol versions, cipher suites, ALPN and the crypto provider.
//! - `identity`: our certificate and key (PEM files, or an ephemeral certificate).
//! - `sni`: which of `listen`'s certificates a client gets, by the name it asks for
//!   (`--strict-sni`'s refusals too).
//! - `tickets`: `listen --ticket-keys`, session tickets sealed with keys replicas share.
//! - `trust`: verifying the peer, made of:
//!   - `trust::roots`: the system store, built-in roots, `--ca` files and `--crl` lists;
//!   - `trust::verify`: the verifiers and the chain each was shown;
//!   - `trust::allow`: `--allow-cn` and `--allow-san`;
//!   - `trust::explain`: the messages for a rejected peer.
//! - `tofu`: `--tofu`'s known keys.
//! - `fingerprint`: SHA-256 fingerprints (`--pin`).
//! - `ocsp`: reading a stapled OCSP response.
//! - `names`: host names (IDN) and `--san` values.
//! - `net`: addresses, connecting (each address in turn), binding.
//! - `unix`: Unix-domain socket addresses (`unix:PATH`, `unix:@NAME`), binding, credentials.
//! - `stream`: a socket of either family (TCP, Unix), connected or listening, and its peer.
//! - `systemd`: socket activation (`listen systemd:`) and notifications to systemd.
//! - `resolve`: name lookups off the event loop, on a small shared pool.
//! - `client`: `stls connect`, and its tunnel (`--from`).
//! - `listener`: `stls listen`, one event loop per thread.
//! - `inspect`: `stls inspect`, every target on one loop; `probe`: one target there.
//! - `census`: `inspect --probe`, the questions asked of each target and what they add up to.
//! - `hello`: the ClientHello rustls will not send (legacy versions, weak suites) and a
//!   reader of the ServerHello that answers it.
//! - `certgen`: `stls cert`; `stls completions` is a function in this file.
//! - `route`: what comes before the TLS handshake — proxy hops and a STARTTLS dialogue.
//! - `proxy`: `--proxy` and the environment's proxies, and each hop's request.
//! - `starttls`: the STARTTLS dialogues of fourteen protocols, made of:
//!   - `starttls::client`: what we say as their client;
//!   - `starttls::server`: what we say as their server (`listen --starttls`).
//! - `proxied`: `--accept-proxy`'s PROXY header from a load balancer, parsed.
//! - `preread`: `--passthrough`'s reading of the ClientHello, for the name it asks for.
//! - `preamble`: the engine that plays each dialogue before TLS, with its bounds.
//! - `wire`: the byte stream under TLS (TCP, through any `https://` proxies).
//! - `relay`: the event loop for every connection.
//! - `reload`: reading a long-running stls's files again (SIGHUP, `--reload-every`).
//! - `events`: what the loop's tokens mean and the readiness each descriptor remembers.
//! - `session`: one connection (a TLS socket and its local end) and its finishing rules.
//! - `tls_socket`: TLS over a connection's wire.
//! - `local`: a connection's local end (stdin/stdout, a child, a tunnel's socket), decided
//!   in settings as a `LocalEnd`, and how each kind pumps its bytes.
//! - `backend`: a tunnel's backend (`listen --to`): dialing it, and the PROXY header.
//! - `stdio`: stdin and stdout, served by threads that wake the loop.
//! - `exec`: the child of `-e`/`-c`, one per connection.
//! - `error`: failure classes and exit statuses.
//! - `report`: what goes to stderr, escaped.
//! - `metrics`: what a long-running stls counts, and whether it is ready (`--status`).
//! - `status`: the `--status` HTTP server (`/healthz`, `/readyz`, `/metrics`), on a thread of
//!   its own.
//! - `describe`: what `-v` says about a session and its certificates.

// Unsafe code only where a system call has no safe wrapper; each such function says which.
#![deny(unsafe_code)]

mod argv;
mod backend;
mod census;
mod certgen;
mod cli;
mod client;
mod describe;
mod error;
mod events;
mod exec;
mod files;
mod fingerprint;
mod hello;
mod identity;
mod inspect;
mod listener;
mod local;
mod metrics;
mod names;
mod net;
mod ocsp;
mod preamble;
mod preread;
mod probe;
mod proxied;
mod proxy;
mod relay;
mod reload;
mod report;
mod resolve;
mod route;
mod session;
mod settings;
mod sni;
mod starttls;
mod status;
mod stdio;
mod stream;
mod systemd;
mod tickets;
mod tls;
mod tls_socket;
mod tofu;
mod trust;
mod unix;
mod wire;

// What the fuzz targets (fuzz/) and the tests call: the parsers of what users type or name,
// the escaping of what peers send, and the dialogues before TLS (proxy replies, XMPP's XML).
// Everything else is private to the crate.
pub use certgen::key_pem;
pub use describe::certificate_text;
pub use fingerprint::{fingerprint_text, parse_fingerprint};
pub use hello::{server_hello, Answer};
pub use identity::{certs_from_pem, key_from_pem};
pub use names::{host_to_ascii, parse_san, San};
pub use net::{parse_listen, parse_target, HostPort};
pub use preamble::Fed;
pub use preread::client_hello_sni;
pub use proxied::{parse_proxy_header, ProxyHeader};
pub use report::{escape, is_invisible};
pub use route::{feed, Dialogue};
pub use tls::provider;
pub use trust::AllowSan;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Parse the command line, run, and turn the outcome into an exit status. The only place
/// where an error is printed.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // Before anything else is done: from here `ps` shows no proxy password.
    argv::hide_proxy_credentials(proxy_urls(&cli));
    // Before any thread starts: systemd's variables are taken out of the environment.
    systemd::take_environment();
    // Before anything is said: a run's every line has the form asked for.
    report::set_json(log_format(&cli) == cli::LogFormat::Json);
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.to_string().is_empty() {
                report::error(format_args!("{e:#}"));
            }
            ExitCode::from(error::classify(&e).exit_code())
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Connect(args) => client::run(&settings::connect(args)?),
        Command::Listen(args) => listener::run(&settings::listen(args)?),
        Command::Inspect(args) => inspect::run(&settings::inspect(args)?),
        Command::Cert(kind) => certgen::run(kind),
        Command::Completions { shell } => {
            completions(shell);
            Ok(())
        }
    }
}

/// The `--proxy` URLs of the command line.
fn proxy_urls(cli: &Cli) -> &[String] {
    match &cli.command {
        Command::Connect(args) => &args.proxy.proxy,
        Command::Inspect(args) => &args.proxy.proxy,
        _ => &[],
    }
}

/// `--log-format`, where the subcommand has it.
fn log_format(cli: &Cli) -> cli::LogFormat {
    match &cli.command {
        Command::Connect(args) => args.common.net.log_format,
        Command::Listen(args) => args.common.net.log_format,
        Command::Inspect(args) => args.net.log_format,
        _ => cli::LogFormat::Text,
    }
}

/// `stls completions SHELL`: the script on stdout (a closed stdout is not an error).
fn completions(shell: &cli::Shell) {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let shell = match shell {
        cli::Shell::Bash => Shell::Bash,
        cli::Shell::Zsh => Shell::Zsh,
        cli::Shell::Fish => Shell::Fish,
    };
    // Generated into memory first: clap_complete panics if its writer fails.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "stls", &mut script);
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &script);
}
