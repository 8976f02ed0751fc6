//! stls: a TLS netcat.
//!
//! The modules, in the order data meets them:
//! - `cli`: the flags as typed; `settings`: resolved into addresses and rustls configs.
//! - `tls`, `trust`, `identity`: TLS configuration, verifying the peer, our certificate.
//!   `trust` is `roots` (system store, built-in roots, files, `--crl` lists), `verify` (the
//!   verifiers and the chain each was shown), `allow` (`--allow-cn`/`--allow-san`) and
//!   `explain` (the messages); `tofu`: `--tofu`'s known keys; `fingerprint`: SHA-256
//!   fingerprints (`--pin`); `files`: the one reader of the files options name.
//! - `net`: addresses, connecting, binding; `resolve`: name lookups off the event loop;
//!   `names`: host names (IDN) and `--san` values.
//! - `client` / `listener`: connect and listen; `certgen`: `stls cert`; `stls completions` is
//!   a function in this file.
//! - `route`: what comes before the TLS handshake — `proxy` hops, `starttls` dialogues —
//!   each dialogue played by `preamble`.
//! - `relay`: the event loop for every connection; `events`: what its tokens mean and the
//!   readiness each descriptor remembers; `session`: one connection (a TLS socket and its
//!   local end) and its finishing rules; `tls_socket`: TLS over a TCP socket; `local`: the
//!   local end, which is `stdio` (stdin/stdout), `exec` (a child per connection) or a TCP
//!   connection (a tunnel: `backend` dials `listen --to`'s).
//! - `error`: failure classes and exit statuses; `report`: what goes to stderr, escaped;
//!   `describe`: what `-v` says about a session and its certificates.

// Unsafe code only where a system call has no safe wrapper; each such function says which.
#![deny(unsafe_code)]

mod argv;
mod backend;
mod certgen;
mod cli;
mod client;
mod describe;
mod error;
mod events;
mod exec;
mod files;
mod fingerprint;
mod identity;
mod inspect;
mod listener;
mod local;
mod names;
mod net;
mod ocsp;
mod preamble;
mod probe;
mod proxy;
mod relay;
mod report;
mod resolve;
mod route;
mod session;
mod settings;
mod starttls;
mod stdio;
mod tls;
mod tls_socket;
mod tofu;
mod trust;
mod wire;

// What the fuzz targets (fuzz/) and the tests call: the parsers of what users type or name,
// the escaping of what peers send, and the dialogues before TLS (proxy replies, XMPP's XML).
// Everything else is private to the crate.
pub use certgen::key_pem;
pub use describe::certificate_text;
pub use fingerprint::{fingerprint_text, parse_fingerprint};
pub use identity::{certs_from_pem, key_from_pem};
pub use names::{host_to_ascii, parse_san, San};
pub use net::{parse_listen, parse_target, HostPort};
pub use preamble::Fed;
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
