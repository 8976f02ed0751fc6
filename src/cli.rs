//! The command line as the user typed it: plain clap structs, no validation beyond syntax.
//! `settings` turns these into a resolved configuration.
// The doc comments are --help text, where `[ADDR:]PORT` is the usual notation, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::starttls::Proto;

const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (rustls ",
    env!("STLS_RUSTLS_VERSION"),
    ", aws-lc-rs crypto provider)"
);

/// A TLS netcat: open or accept a TLS connection and relay stdin/stdout through it.
///
/// stdout carries only the peer's bytes; every diagnostic goes to stderr. The exit status says
/// how the connection ended: 0 every byte delivered both ways, 1 other error, 2 usage, 3 network
/// (reset), 4 TLS handshake failed, 5 peer certificate rejected, 6 transfer incomplete, 7 timeout,
/// 8 certificate expires soon (inspect --expires-within), 130/143 SIGINT/SIGTERM.
#[derive(Debug, Parser)]
#[command(name = "stls", version = VERSION, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Connect to HOST:PORT over TLS and relay stdin/stdout through the connection.
    #[command(after_help = CONNECT_EXAMPLES)]
    Connect(ConnectArgs),
    /// Accept a TLS connection on [ADDR:]PORT (with -k, many) and relay stdin/stdout through it.
    #[command(after_help = LISTEN_EXAMPLES)]
    Listen(ListenArgs),
    /// Verify and describe TLS servers: protocol, cipher suite, the verdict and the chain they
    /// send, for people or (--json) for scripts; many at once.
    #[command(after_help = INSPECT_EXAMPLES)]
    Inspect(InspectArgs),
    /// Make certificates: a CA, and server or client certificates signed by it.
    #[command(subcommand, after_help = CERT_EXAMPLES)]
    Cert(CertKind),
    /// Print a shell completion script for bash, zsh or fish.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        /// The shell to complete for.
        shell: Shell,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Shell {
    Bash,
    Zsh,
    Fish,
}

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  mkdir -p ~/.local/share/bash-completion/completions &&
    stls completions bash > ~/.local/share/bash-completion/completions/stls
  mkdir -p \"${fpath[1]}\" && stls completions zsh > \"${fpath[1]}/_stls\"
  mkdir -p ~/.config/fish/completions &&
    stls completions fish > ~/.config/fish/completions/stls.fish";

const CERT_EXAMPLES: &str = "\
Examples:
  stls cert ca --out pki
  stls cert server --ca pki --san localhost --san 127.0.0.1 --out pki
  stls cert client --ca pki --name alice --out pki";

#[derive(Debug, Subcommand)]
pub(crate) enum CertKind {
    /// A CA certificate and key: DIR/ca.pem, DIR/ca.key.
    Ca(CertArgs),
    /// A server certificate and key (DIR/server.pem, DIR/server.key), signed by --ca or
    /// self-signed.
    Server(CertArgs),
    /// A client certificate and key (DIR/client.pem, DIR/client.key), signed by --ca or
    /// self-signed.
    Client(CertArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CertArgs {
    /// The directory to write to (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Sign with the CA in DIR (DIR/ca.pem and DIR/ca.key, as `stls cert ca` makes them).
    #[arg(long, value_name = "DIR")]
    pub ca: Option<PathBuf>,

    /// A subjectAltName: DNS name, wildcard (*.example.com), IP address, or international
    /// name (written as A-labels); repeatable (server default: localhost, 127.0.0.1, ::1).
    #[arg(long, value_name = "NAME")]
    pub san: Vec<String>,

    /// The subject's common name (default: the first --san, or "stls CA" / "stls client").
    #[arg(long, value_name = "CN")]
    pub name: Option<String>,

    /// The key algorithm.
    #[arg(long, value_name = "TYPE", default_value = "p256")]
    pub key_type: KeyType,

    /// How many days the certificate is valid.
    #[arg(long, value_name = "N", default_value_t = 365,
          value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,

    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum KeyType {
    P256,
    P384,
    Ed25519,
    Rsa2048,
}

const INSPECT_EXAMPLES: &str = "\
Examples:
  stls inspect example.com:443
  stls inspect --json mail.example:465 www.example:443 | jq .
  stls inspect --starttls postgres db.example:5432   # plain-text ports need --starttls
  stls inspect --expires-within 30 --targets hosts.txt || echo 'renew soon'
  stls inspect --insecure --save-chain chain.pem 10.0.0.7:8443
  stls inspect --probe all --json --targets hosts.txt  # what each accepts: versions, groups, ...
  stls inspect --require no-legacy,pq --targets hosts.txt

Exit status: 0 every target passed; otherwise that of the first failing target in input
order (3 network, 4 handshake, 5 certificate rejected, 7 timeout, 8 expires within DAYS,
9 a --require not met).";

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Servers to inspect: HOST:PORT, [IPv6]:PORT, or unix:PATH / unix:@NAME (a Unix
    /// socket; with --servername).
    #[arg(value_name = "HOST:PORT")]
    pub targets: Vec<String>,

    /// Also inspect the targets listed in FILE, one per line (`-`: stdin; `#` starts a
    /// comment; blank lines are skipped), after those given as arguments.
    #[arg(long = "targets", value_name = "FILE")]
    pub targets_file: Option<PathBuf>,

    /// Print one JSON object per target and line (NDJSON) instead of the readable summary.
    #[arg(long)]
    pub json: bool,

    /// Fail a target (exit 8) whose verified certificate expires within DAYS days (not applied
    /// with --insecure, which verifies nothing; a warning says so).
    #[arg(long, value_name = "DAYS",
          value_parser = clap::value_parser!(u32).range(0..=36500))]
    pub expires_within: Option<u32>,

    /// At most N targets connecting or in their handshake at once.
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub parallel: u32,

    /// Write the chain the server sent to FILE, PEM, leaf first (one target only; written
    /// even when verification fails).
    #[arg(long, value_name = "FILE")]
    pub save_chain: Option<PathBuf>,

    /// Also ask what each target accepts, not only what it picks: LIST is a comma list of
    /// versions, groups, suites, alpn, or all; each answer is one more short handshake (see
    /// PROBING in the man page).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub probe: Vec<ProbeKind>,

    /// The ALPN names --probe alpn offers, one handshake each.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "h2,http/1.1,http/1.0,acme-tls/1,imap,pop3,smtp,ftp,xmpp-client,postgresql"
    )]
    pub alpn_probe: Vec<String>,

    /// Fail a target (exit 9) that does not meet each of LIST: tls1.3, no-legacy, pq,
    /// forward-secrecy, no-weak; the probes they need are made.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub require: Vec<Requirement>,

    #[command(flatten)]
    pub verify: VerifyArgs,

    #[command(flatten)]
    pub proxy: ProxyArgs,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub net: NetArgs,
}

/// What `inspect --probe` asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProbeKind {
    Versions,
    Groups,
    Suites,
    Alpn,
    All,
}

/// What `inspect --require` demands of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Requirement {
    /// TLS 1.3 is accepted.
    #[value(name = "tls1.3")]
    Tls13,
    /// No version older than TLS 1.2 is accepted.
    NoLegacy,
    /// A post-quantum hybrid group is accepted.
    Pq,
    /// No suite without forward secrecy (RSA key exchange) is accepted.
    ForwardSecrecy,
    /// No weak suite class is accepted.
    NoWeak,
}

const CONNECT_EXAMPLES: &str = "\
Examples:
  printf 'GET / HTTP/1.0\\r\\nHost: example.com\\r\\n\\r\\n' | stls connect example.com:443
  stls connect localhost:8443 --pin AB:CD:...      # the fingerprint `stls listen` printed
  stls connect 192.0.2.7 8443 --cacert ca.pem --servername internal.example";

const LISTEN_EXAMPLES: &str = "\
Examples:
  stls listen 8443                                  # ephemeral certificate, fingerprint on stderr
  stls listen 127.0.0.1:0                           # any free port; the real one is printed
  stls listen 0.0.0.0:8443 --cert server.pem --key server.key < reply.txt > request.txt";

#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// Where to connect: HOST:PORT, [IPv6]:PORT, HOST followed by PORT, or unix:PATH /
    /// unix:@NAME (a Unix socket, or a Linux abstract name; the server's name then comes from
    /// --servername).
    #[arg(value_name = "HOST:PORT")]
    pub target: String,

    /// The port, when HOST and PORT are given as two arguments.
    #[arg(value_name = "PORT")]
    pub port: Option<String>,

    /// Accept plain TCP on [ADDR:]PORT (ADDR default 127.0.0.1), or plain clients on a Unix
    /// socket (unix:PATH), and open a TLS connection to HOST:PORT for each: a local port for
    /// a TLS service.
    #[arg(long, value_name = "[ADDR:]PORT",
          conflicts_with_all = ["exec", "sh_exec", "recv_only", "send_only", "crlf"])]
    pub from: Option<String>,

    /// With --from unix:PATH: the permissions of the socket file (octal).
    #[arg(long, value_name = "MODE", default_value = "660", value_parser = parse_mode)]
    pub unix_mode: u32,

    /// With --from: serve plain HTTP on [ADDR:]PORT (ADDR default 127.0.0.1) or unix:PATH:
    /// GET /healthz, /readyz and /metrics (Prometheus text format).
    #[arg(long, value_name = "[ADDR:]PORT", requires = "from")]
    pub status: Option<String>,

    #[command(flatten)]
    pub verify: VerifyArgs,

    #[command(flatten)]
    pub proxy: ProxyArgs,

    #[command(flatten)]
    pub lifecycle: LifecycleArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// Where to listen: PORT (all interfaces), ADDR:PORT or [IPv6]:PORT (port 0 picks a free
    /// port), unix:PATH / unix:@NAME (a Unix socket, or a Linux abstract name), or systemd:
    /// / systemd:NAME (the socket systemd passed, by socket activation).
    #[arg(value_name = "[ADDR:]PORT")]
    pub addr: String,

    /// Require a client certificate that chains to a CA in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,

    /// Ask for a client certificate chaining to a CA in FILE, but accept clients without one
    /// (a certificate that is presented must still verify).
    #[arg(long, value_name = "FILE", conflicts_with = "client_ca")]
    pub client_ca_optional: Option<PathBuf>,

    /// Keep accepting after the first connection and serve many at once: bytes from every
    /// client go to stdout, stdin goes to every connected client.
    #[arg(short = 'k', long)]
    pub keep_open: bool,

    /// With -k (or --to): at most N connections at once (default 1000); one more drops the
    /// oldest still in its handshake, or is closed if every one is established (each with a
    /// line on stderr).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_conns: Option<u32>,

    /// At most N clients in their TLS handshake at once: one more drops the oldest of them
    /// (with a line on stderr), never the newcomer.
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_handshakes: u32,

    /// With -k: drop a client that takes no bytes for SECS while stdin has data for it, so
    /// that one which does not read cannot hold stdin back from the others (default 10).
    /// With --to: end a tunnel whose client or backend takes nothing for SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub stall_timeout: Option<Duration>,

    /// Drop a client that has not completed the TLS handshake within SECS.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub handshake_timeout: Duration,

    /// Terminate TLS in front of a plain service at HOST:PORT or unix:PATH: each client gets
    /// its own connection to it, made once the client is admitted (implies -k). As
    /// NAME=HOST:PORT (repeatable; NAME may be *.DOMAIN): the backend of clients that ask for
    /// NAME (SNI), the one without NAME= serving the others.
    #[arg(long, value_name = "[NAME=]HOST:PORT",
          conflicts_with_all = ["exec", "sh_exec", "recv_only", "send_only", "crlf"])]
    pub to: Vec<String>,

    /// For clients that ask for NAME (SNI; *.DOMAIN too), do not terminate TLS: read their
    /// ClientHello, then relay the connection as it is to HOST:PORT (or unix:PATH), which does
    /// the handshake (repeatable; implies -k). Other names are served here.
    #[arg(long, value_name = "NAME=HOST:PORT", conflicts_with = "starttls")]
    pub passthrough: Vec<String>,

    /// With --to, or -k with -e/-c: run N event loops, each on its own thread (default: one
    /// per core with --to, one with -e/-c).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,

    /// With --to (or --passthrough): first send the backend a PROXY protocol header (v1 text,
    /// v2 binary) naming the client's address (a Unix socket's client: v1 UNKNOWN, v2 the
    /// AF_UNIX form).
    #[arg(long, value_name = "VERSION")]
    pub proxy_protocol: Option<ProxyProtocol>,

    /// Every connection starts with a PROXY protocol header (v1 or v2, as haproxy's
    /// send-proxy sends it) from a load balancer: the client it names is the client, in logs,
    /// STLS_PEER_ADDR and the header of --proxy-protocol. A connection without one is dropped.
    #[arg(long)]
    pub accept_proxy: bool,

    /// The permissions of the socket file made for `listen unix:PATH` (octal).
    #[arg(long, value_name = "MODE", default_value = "660", value_parser = parse_mode)]
    pub unix_mode: u32,

    /// Staple this OCSP response (DER, as `openssl ocsp -respout` writes it) to the handshake
    /// for clients that ask for one.
    #[arg(long, value_name = "FILE")]
    pub ocsp: Option<PathBuf>,

    /// With --client-ca: refuse client certificates that a certificate revocation list in
    /// FILE revokes (PEM or DER; repeatable).
    #[arg(long = "crl", value_name = "FILE")]
    pub client_crl: Vec<PathBuf>,

    /// With --client-ca: admit only client certificates whose subject has exactly one CN, and
    /// it is NAME, byte for byte (repeat for several; any match admits).
    #[arg(long, value_name = "NAME")]
    pub allow_cn: Vec<String>,

    /// With --client-ca: admit only client certificates with this subjectAltName:
    /// dns:NAME, ip:ADDR, email:ADDR or uri:URI, or a bare value, which matches one of any
    /// type (repeatable; any match admits).
    #[arg(long, value_name = "[TYPE:]NAME")]
    pub allow_san: Vec<String>,

    /// With -k or --to: serve plain HTTP on [ADDR:]PORT (ADDR default 127.0.0.1) or
    /// unix:PATH: GET /healthz, /readyz and /metrics (Prometheus text format).
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub status: Option<String>,

    #[command(flatten)]
    pub lifecycle: LifecycleArgs,

    #[command(flatten)]
    pub common: CommonArgs,

    /// Refuse a client whose server name (SNI) matches none of the certificates, or that sends
    /// none (alert unrecognized_name), instead of serving it the first.
    #[arg(long)]
    pub strict_sni: bool,

    /// Seal session tickets with the keys in FILE (one a line, 64 hex digits, as `openssl
    /// rand -hex 32` prints; newest last, which seals; all open), so that servers given the
    /// same file resume each other's sessions. Read again on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub ticket_keys: Option<PathBuf>,
}

/// A long-running stls (`listen -k`, `--to`, `connect --from`): reloading its files, and
/// how it stops.
#[derive(Debug, Args)]
pub(crate) struct LifecycleArgs {
    /// Every SECS, look at the files given (--cert, --key, --client-ca, --crl, --ocsp,
    /// --ticket-keys; connect --from: --cacert, --cert, --key, --crl) and reload them when one
    /// changed: its path after symlinks, inode, size or modification time (as SIGHUP does).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub reload_every: Option<Duration>,

    /// On SIGTERM or SIGINT, stop accepting at once and let open connections finish for up
    /// to SECS, then reset the rest (default 0: reset them at once). A second signal ends at
    /// once.
    #[arg(long, value_name = "SECS", value_parser = parse_linger, default_value = "0")]
    pub drain: Duration,
}

/// `--log-format`: how stderr's lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// `stls: ` lines for people.
    Text,
    /// One JSON object per line, for a log pipeline.
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum TrustStore {
    System,
    Builtin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProxyProtocol {
    V1,
    V2,
}

/// TLS options of every subcommand that makes TLS connections.
#[derive(Clone, Debug, Args)]
pub(crate) struct TlsArgs {
    /// PEM certificate chain to present, leaf first: connect and inspect, a client
    /// certificate for servers that ask for one (mutual TLS); listen, the server's, replacing
    /// the ephemeral certificate (repeatable: the one whose names match the client's SNI is
    /// served, else the first).
    #[arg(long, value_name = "FILE")]
    pub cert: Vec<PathBuf>,

    /// PEM private key for --cert (PKCS#8, PKCS#1 or SEC1); default: look in the --cert file.
    /// With several --cert, one --key each, in the same order.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Vec<PathBuf>,

    /// Lowest TLS version to accept.
    #[arg(long, value_name = "VERSION", default_value = "1.2")]
    pub tls_min: TlsVersion,

    /// Highest TLS version to offer.
    #[arg(long, value_name = "VERSION", default_value = "1.3")]
    pub tls_max: TlsVersion,

    /// Allow only these cipher suites: IANA names separated by commas or colons
    /// (e.g. TLS13_AES_256_GCM_SHA384 or TLS_AES_256_GCM_SHA384).
    #[arg(long, value_name = "LIST")]
    pub ciphers: Option<String>,

    /// An ALPN protocol to offer (connect) or accept (listen); repeat for several, in order of
    /// preference.
    #[arg(long, value_name = "PROTO")]
    pub alpn: Vec<String>,

    /// Append the TLS secrets to FILE (made mode 0600) in NSS key log format, so a capture can
    /// be decrypted (Wireshark); SSLKEYLOGFILE is honoured too.
    #[arg(long, value_name = "FILE")]
    pub keylog: Option<PathBuf>,

    /// Disable session resumption (no tickets, no session cache).
    #[arg(long)]
    pub no_resume: bool,

    /// Speak PROTO's plaintext dialogue before TLS on the same connection (connect and
    /// inspect: as its client, naming ourselves by --servername or HOST where it asks; listen:
    /// as its server). A refusal is exit 4, never a plain-text fallback.
    #[arg(long, value_name = "PROTO")]
    pub starttls: Option<Proto>,
}

/// Connecting, and how much stderr says.
#[derive(Debug, Args)]
pub(crate) struct NetArgs {
    /// Give up if the name lookup, connecting and the TLS handshake take longer than SECS
    /// (inspect: for each target; default 10).
    #[arg(short = 'w', long = "wait", value_name = "SECS", value_parser = parse_secs)]
    pub wait: Option<Duration>,

    /// Use IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,

    /// Use IPv6 only.
    #[arg(short = '6')]
    pub ipv6: bool,

    /// Print connection details on stderr (protocol, suite, key exchange, peer certificate).
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Print nothing on stderr but errors and warnings.
    #[arg(short, long)]
    pub quiet: bool,

    /// How stderr's lines are written: text, or json (one object per line: ts, level, event,
    /// msg, and what is known of the connection).
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// Options connect and listen share: TLS, the network, and what is relayed.
#[allow(
    clippy::struct_excessive_bools,
    reason = "each bool is a flag as typed (--no-shutdown, --send-only, --recv-only, --crlf)"
)]
#[derive(Debug, Args)]
pub(crate) struct CommonArgs {
    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub net: NetArgs,

    /// At stdin EOF send nothing and keep the connection open until the peer closes it
    /// (default: close once the peer is done, see --linger).
    #[arg(long)]
    pub no_shutdown: bool,

    /// After stdin's EOF, keep reading until the peer closes or has been silent for SECS,
    /// then send close_notify (0: at once). Default 2.
    #[arg(
        long,
        value_name = "SECS",
        value_parser = parse_linger,
        conflicts_with_all = ["no_shutdown", "recv_only", "send_only", "exec", "sh_exec"]
    )]
    pub linger: Option<Duration>,

    /// Only receive: never read stdin nor send data (our side is complete from the start);
    /// never close first: finish when the peer closes.
    #[arg(long, conflicts_with_all = ["send_only", "exec", "sh_exec"])]
    pub recv_only: bool,

    /// Send each line feed read from stdin as CR LF, as line protocols (SMTP, IMAP, HTTP)
    /// want; a CR LF already there is left alone.
    #[arg(short = 'C', long, conflicts_with_all = ["recv_only", "exec", "sh_exec"])]
    pub crlf: bool,

    /// Only send: never write stdout (what the peer sends is discarded); close at stdin EOF
    /// (--linger 0), and finish when the peer confirms it stored the input.
    #[arg(long, conflicts_with_all = ["exec", "sh_exec", "no_shutdown"])]
    pub send_only: bool,

    /// Run CMD (split into words, no shell) for each connection, with the decrypted stream as
    /// its stdin and stdout instead of ours.
    #[arg(
        short = 'e',
        long = "exec",
        value_name = "CMD",
        conflicts_with = "sh_exec"
    )]
    pub exec: Option<String>,

    /// Like --exec, but CMD is run by /bin/sh -c.
    #[arg(short = 'c', long = "sh-exec", value_name = "CMD")]
    pub sh_exec: Option<String>,

    /// Give up if the connection is silent both ways for SECS.
    #[arg(short = 'i', long = "idle-timeout", value_name = "SECS", value_parser = parse_secs)]
    pub idle: Option<Duration>,
}

/// Proxies between us and the server (connect, inspect).
#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// Connect through the proxy at URL: http://, https://, socks4a://, socks5:// or
    /// socks5h://, with USER:PASS@ if it wants them; repeat for a chain, first hop first.
    /// Default: https_proxy, then all_proxy, from the environment.
    #[arg(long, value_name = "URL")]
    pub proxy: Vec<String>,

    /// Reach these hosts directly: comma-separated names (subdomains included), addresses or
    /// CIDR blocks, `*` for all; replaces NO_PROXY.
    #[arg(long, value_name = "LIST")]
    pub noproxy: Option<String>,
}

/// How the server's certificate is verified (connect, inspect).
#[derive(Clone, Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Which CA certificates to trust: the system's (SSL_CERT_FILE, SSL_CERT_DIR, else the
    /// platform's store; the built-in roots when it is empty), or only the built-in Mozilla
    /// roots. Default: system.
    #[arg(long, value_name = "STORE")]
    pub trust: Option<TrustStore>,

    /// Trust on first use, as ssh: the first connection to HOST:PORT records its key in the
    /// known-hosts file (with a warning); later ones must present the same key (exit 5 if
    /// not). Replaces CA verification.
    #[arg(long)]
    pub tofu: bool,

    /// The --tofu file (default: $XDG_CONFIG_HOME/stls/known_hosts, or
    /// ~/.config/stls/known_hosts).
    #[arg(long, value_name = "FILE", requires = "tofu")]
    pub known_hosts: Option<PathBuf>,

    /// Refuse a server certificate that a certificate revocation list in FILE revokes (PEM or
    /// DER; repeatable).
    #[arg(long, value_name = "FILE")]
    pub crl: Vec<PathBuf>,

    /// Trust only the CA certificates in this PEM file instead of the system's store.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Accept the server only if its certificate's SHA-256 fingerprint is FP: 64 hex digits,
    /// or 32 pairs separated by colons, any case (a pasted `stls: sha256 fingerprint …` or
    /// openssl line is accepted); or if its public key's pin is FP written sha256//BASE64,
    /// as curl takes it and inspect prints it (it survives a renewal with the same key).
    /// Several separated by `;`: any one matches. Replaces CA verification.
    #[arg(long, value_name = "FP")]
    pub pin: Option<String>,

    /// Do not verify the server's certificate at all (prints a warning; not with --cacert or
    /// --pin).
    #[arg(long, short = 'k')]
    pub insecure: bool,

    /// The name to send as SNI and to verify the certificate against (default: HOST).
    #[arg(long, value_name = "NAME")]
    pub servername: Option<String>,

    /// Send no SNI extension (the certificate is still verified against the name).
    #[arg(long)]
    pub no_sni: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub(crate) enum TlsVersion {
    #[value(name = "1.2")]
    Tls12,
    #[value(name = "1.3")]
    Tls13,
}

/// Seconds, fractions allowed: "5", "0.5".
fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 1e9) {
        return Err(format!("'{text}' is not a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `--unix-mode`: permission bits in octal (`660`, `0600`).
fn parse_mode(text: &str) -> Result<u32, String> {
    match u32::from_str_radix(text.trim_start_matches("0o"), 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!(
            "'{text}' is not a file mode (octal permission bits, such as 660 or 600)"
        )),
    }
}

/// `--linger`: like [`parse_secs`], and 0 is allowed.
fn parse_linger(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(0.0) => Ok(Duration::ZERO),
        _ => parse_secs(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("NaN").is_err());
        assert_eq!(parse_linger("0"), Ok(Duration::ZERO));
        assert_eq!(parse_linger("2"), Ok(Duration::from_secs(2)));
        assert!(parse_linger("-1").is_err());
        assert!(parse_secs("inf").is_err());
    }
}
