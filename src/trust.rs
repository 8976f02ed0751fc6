//! Deciding whether to trust the peer: built-in Mozilla roots, a `--cacert` file, a `--pin`ned
//! fingerprint, or nothing (`--insecure`). The verifier remembers the chain it was shown, so a
//! rejection can name the issuer, the dates and the names that were actually presented.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};
use base64::prelude::{Engine, BASE64_STANDARD};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::DistinguishedName;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};

use crate::describe::{
    alt_names, common_names, date, dn_text, sole_common_name, AltName, CertInfo,
};
use crate::error::{io_phrase, Class};
use crate::files::{read_existing, Kind};
use crate::fingerprint::{fingerprint_text, sha256, spki_sha256, Pin};
use crate::identity::{load_certs, pem_words};
use crate::report::{self, escape, escape_item};

/// How the server's certificate is checked.
pub(crate) enum Trust {
    /// Chain to one of these roots, and match the name.
    Roots(RootCertStore),
    /// The system's store (`SSL_CERT_FILE`, `SSL_CERT_DIR`, else the platform's), or the
    /// built-in roots when it holds nothing; loaded while the connection is being made.
    System,
    /// The leaf must match one of these pins.
    Pin(Vec<Pin>),
    /// Anything goes (the handshake signature is still checked).
    Insecure,
    /// `--tofu`: the key recorded for HOST:PORT in this file, recorded now if there is none.
    Tofu {
        file: std::path::PathBuf,
        host: String,
    },
}

/// The system store, being loaded on a thread of its own (reading a few hundred files can
/// take longer than connecting to a nearby server), and its verifier once needed.
#[derive(Debug)]
pub(crate) struct Loading {
    thread: Mutex<Option<std::thread::JoinHandle<Loaded>>>,
    done: std::sync::OnceLock<Loaded>,
}

/// The system store's verifier, or why there is none.
type Loaded = Result<Arc<WebPkiServerVerifier>, String>;

impl Loading {
    fn start(provider: Arc<CryptoProvider>, crls: Crls) -> Loading {
        let thread = std::thread::spawn(move || {
            let (store, which) = system_roots().map_err(|e| format!("{e:#}"))?;
            report::verbose(format_args!("trusting {which}"));
            webpki_server(Arc::new(store), provider, &crls)
                .map_err(|e| format!("cannot use the trust anchors: {}", builder_words(&e)))
        });
        Loading {
            thread: Mutex::new(Some(thread)),
            done: std::sync::OnceLock::new(),
        }
    }

    fn verifier(&self) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
        let done = self.done.get_or_init(|| {
            let handle = self.thread.lock().ok().and_then(|mut t| t.take());
            match handle.map(|h| h.join()) {
                Some(Ok(result)) => result,
                _ => Err("loading the system's certificates failed".to_string()),
            }
        });
        // Not the server's fault: exit 1, with the message as it is.
        done.clone().map_err(|msg| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                Local {
                    class: Class::Other,
                    msg,
                },
            ))))
        })
    }
}

/// webpki's verifier over `roots`, checking revocation against `crls` where a list was
/// given (a certificate whose issuer has no list is not held to one).
fn webpki_server(
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    crls: &Crls,
) -> Result<Arc<WebPkiServerVerifier>, rustls::client::VerifierBuilderError> {
    let builder = WebPkiServerVerifier::builder_with_provider(roots, provider);
    if crls.ders.is_empty() {
        return builder.build();
    }
    builder
        .with_crls(crls.ders.clone())
        .allow_unknown_revocation_status()
        .build()
}

/// Where the system's certificates are: the file `SSL_CERT_FILE` names and the directories
/// `SSL_CERT_DIR` lists, else the platform's, as OpenSSL finds them.
struct SystemPaths {
    file: Option<PathBuf>,
    dirs: Vec<PathBuf>,
    /// Named by the environment: then a file that cannot be read is an error.
    named: bool,
}

impl SystemPaths {
    fn find() -> SystemPaths {
        let file = std::env::var_os("SSL_CERT_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let dirs: Vec<PathBuf> = std::env::var_os("SSL_CERT_DIR")
            .map(|v| {
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if file.is_some() || !dirs.is_empty() {
            return SystemPaths {
                file,
                dirs,
                named: true,
            };
        }
        let probed = openssl_probe::probe();
        SystemPaths {
            file: probed.cert_file,
            dirs: probed.cert_dir,
            named: false,
        }
    }

    /// Every certificate in the file and in the regular files of the directories (each file
    /// once, however many links lead to it), sorted, without duplicates. Each file is read
    /// with the cap of a CA file, and all of them with a cap together. Where the environment
    /// named the store, a file that cannot be read is an error; in the platform's store it is
    /// passed over, as OpenSSL would.
    fn load(&self) -> Result<Vec<CertificateDer<'static>>> {
        use std::os::unix::fs::MetadataExt;
        // Four CA files' worth: a directory of a few hundred small files is well within it.
        let total_cap = 4 * Kind::CaBundle.limit();
        let mut total = 0;
        let mut certs = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut files: Vec<PathBuf> = self.file.iter().cloned().collect();
        for dir in &self.dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if self.named => {
                    return Err(anyhow!("SSL_CERT_DIR={}: {}", dir.display(), io_phrase(&e)))
                }
                Err(_) => continue,
            };
            // Only regular files (links followed): not pipes, devices or subdirectories.
            files.extend(
                entries
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .filter(|path| std::fs::metadata(path).is_ok_and(|m| m.is_file())),
            );
        }
        for path in files {
            if let Ok(meta) = std::fs::metadata(&path) {
                if !seen.insert((meta.dev(), meta.ino())) {
                    continue;
                }
            }
            let label = match self.file.as_ref() == Some(&path) {
                true => "SSL_CERT_FILE=",
                false => "in SSL_CERT_DIR, ",
            };
            let data = match read_existing(&path, Kind::CaBundle) {
                Ok(Some(data)) => data,
                Ok(None) if self.named && label.starts_with("SSL_CERT_FILE") => {
                    return Err(anyhow!("{label}{}: no such file", path.display()))
                }
                // Gone since the directory was listed.
                Ok(None) => continue,
                Err(e) if self.named => return Err(anyhow!("{label}{e:#}")),
                Err(_) => continue,
            };
            total += data.len() as u64;
            if total > total_cap {
                return Err(anyhow!(
                    "the system's store ({}) holds more than {} MiB of certificates, the most \
                     stls reads from it",
                    self.describe(),
                    total_cap / (1024 * 1024)
                ));
            }
            // What is not a certificate (a key, a CRL, text) is passed over, as OpenSSL does.
            certs.extend(CertificateDer::pem_slice_iter(&data).map_while(Result::ok));
        }
        certs.sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
        certs.dedup();
        Ok(certs)
    }

    /// The files and directories, for messages.
    fn describe(&self) -> String {
        let mut named: Vec<String> = Vec::new();
        if let Some(file) = &self.file {
            named.push(format!("{}", file.display()));
        }
        named.extend(self.dirs.iter().map(|d| d.display().to_string()));
        named.join(", ")
    }
}

/// The system's certificates, as `SSL_CERT_FILE`/`SSL_CERT_DIR` or the platform name them;
/// the built-in roots when there are none. Also says which it is, for `-v`.
pub(crate) fn system_roots() -> Result<(RootCertStore, String)> {
    let paths = SystemPaths::find();
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(paths.load()?);
    if added > 0 {
        let from = match (
            std::env::var_os("SSL_CERT_FILE"),
            std::env::var_os("SSL_CERT_DIR"),
        ) {
            (None, None) => String::new(),
            (file, dir) => {
                let named: Vec<String> = [("SSL_CERT_FILE", file), ("SSL_CERT_DIR", dir)]
                    .into_iter()
                    .filter_map(|(n, v)| v.map(|v| format!("{n}={}", v.to_string_lossy())))
                    .collect();
                format!(", from {}", named.join(" and "))
            }
        };
        Ok((store, format!("the system's {added} certificates{from}")))
    } else {
        let store = builtin_roots();
        let n = store.len();
        Ok((
            store,
            format!("the built-in Mozilla roots ({n}): the system store is empty"),
        ))
    }
}

/// `--crl` files: the lists for webpki, and what each says, for messages.
#[derive(Clone, Debug, Default)]
pub(crate) struct Crls {
    pub ders: Vec<CertificateRevocationListDer<'static>>,
    entries: Vec<CrlEntries>,
}

/// What one list says: its file, its issuer, and the revoked serials with their dates.
#[derive(Clone, Debug)]
struct CrlEntries {
    file: String,
    issuer: String,
    revoked: Vec<(Vec<u8>, i64)>,
}

impl Crls {
    /// Read CRL files, PEM or DER; a file with no usable list is an error naming it.
    pub(crate) fn load(paths: &[std::path::PathBuf]) -> Result<Crls> {
        let mut crls = Crls::default();
        for path in paths {
            let data = crate::files::read_file(path, crate::files::Kind::Crl)?;
            let ders: Vec<CertificateRevocationListDer<'static>> =
                if data.starts_with(b"-----") || data.windows(5).any(|w| w == b"-----") {
                    CertificateRevocationListDer::pem_slice_iter(&data)
                        .collect::<Result<_, _>>()
                        .map_err(|e| anyhow!("{}: bad PEM: {}", path.display(), pem_words(&e)))?
                } else {
                    vec![CertificateRevocationListDer::from(data)]
                };
            if ders.is_empty() {
                return Err(anyhow!(
                    "{}: no certificate revocation list in it",
                    path.display()
                ));
            }
            // What webpki would refuse at the handshake is refused now, naming the file.
            let check = WebPkiServerVerifier::builder_with_provider(
                Arc::new(builtin_roots()),
                Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            )
            .with_crls(ders.clone())
            .build();
            if let Err(e) = check {
                return Err(anyhow!(
                    "{}: this revocation list cannot be used ({}); it must be a version 2 \
                     list (openssl ca -gencrl makes one when a crlnumber file is configured)",
                    path.display(),
                    builder_words(&e)
                ));
            }
            for der in ders {
                let (_, crl) = x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| {
                    anyhow!("{}: not a certificate revocation list: {e}", path.display())
                })?;
                let revoked = crl
                    .iter_revoked_certificates()
                    .map(|r| (r.raw_serial().to_vec(), r.revocation_date.timestamp()))
                    .collect();
                crls.entries.push(CrlEntries {
                    file: path.display().to_string(),
                    issuer: dn_text(crl.issuer()),
                    revoked,
                });
                crls.ders.push(der);
            }
        }
        Ok(crls)
    }

    /// Why `cert` is revoked, as a list says it: by whom, since when, which file.
    fn why(&self, cert: &CertificateDer<'_>) -> Option<String> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
        let serial = parsed.raw_serial();
        self.entries.iter().find_map(|e| {
            e.revoked
                .iter()
                .find(|(s, _)| s == serial)
                .map(|(_, when)| {
                    format!(
                        "was revoked by {} on {} (the list in {})",
                        e.issuer,
                        date(*when),
                        e.file
                    )
                })
        })
    }
}

/// The Mozilla roots compiled in.
pub(crate) fn builtin_roots() -> RootCertStore {
    RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned())
}

/// The CA certificates of a `--cacert` (or `--client-ca`) file; none usable is an error.
pub(crate) fn roots_from_file(path: &Path) -> Result<RootCertStore> {
    let certs = load_certs(path)?;
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(anyhow!(
            "{}: none of its certificates can be used as a trust anchor",
            path.display()
        ));
    }
    Ok(store)
}

/// The client's verifier of the server certificate.
#[derive(Debug)]
pub(crate) struct ServerVerifier {
    mode: Mode,
    /// Record the verdict and let the handshake go on (`inspect`, which sends no data).
    defer: bool,
    provider: Arc<CryptoProvider>,
    seen: Arc<Presented>,
}

#[derive(Debug)]
enum Mode {
    WebPki(Arc<WebPkiServerVerifier>),
    /// The system store, loading on a thread of its own until first needed.
    System(Loading),
    Pin(Vec<Pin>),
    Insecure,
    Tofu {
        file: std::path::PathBuf,
        host: String,
    },
}

impl ServerVerifier {
    pub(crate) fn new(trust: Trust, provider: Arc<CryptoProvider>, crls: &Crls) -> Result<Self> {
        let mode = match trust {
            Trust::Roots(store) => Mode::WebPki(
                webpki_server(Arc::new(store), provider.clone(), crls)
                    .map_err(|e| anyhow!("cannot use the trust anchors: {}", builder_words(&e)))?,
            ),
            Trust::System => Mode::System(Loading::start(provider.clone(), crls.clone())),
            Trust::Pin(fp) => Mode::Pin(fp),
            Trust::Insecure => Mode::Insecure,
            Trust::Tofu { file, host } => Mode::Tofu { file, host },
        };
        Ok(ServerVerifier {
            mode,
            defer: false,
            provider,
            seen: Arc::default(),
        })
    }

    /// Record the verdict instead of failing the handshake: for `inspect`, which shows a
    /// rejected chain with its TLS parameters and sends nothing.
    pub(crate) fn deferring(mut self) -> Self {
        self.defer = true;
        self
    }

    /// Where the chain the server presents is recorded.
    pub(crate) fn presented(&self) -> Arc<Presented> {
        self.seen.clone()
    }
}

/// What a peer presented, as its verifier recorded it for messages and for `inspect` (empty
/// before the handshake got that far). The loop is one thread and what is here is read right
/// after the call that verified, so it is that connection's.
///
/// Loops on several threads (`listen --threads`) share one verifier, so each thread has its
/// own record.
#[derive(Debug, Default)]
pub(crate) struct Presented(Mutex<std::collections::HashMap<std::thread::ThreadId, Shown>>);

/// One peer's certificates, as presented.
#[derive(Clone, Debug, Default)]
pub(crate) struct Shown {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The stapled OCSP response (empty: none).
    pub ocsp: Vec<u8>,
    /// The verdict, when the verifier was told to defer it (`inspect`).
    pub verdict: Option<Result<(), rustls::Error>>,
}

impl Presented {
    fn record(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) {
        self.update(|seen| {
            *seen = Shown {
                chain: std::iter::once(end_entity)
                    .chain(intermediates)
                    .map(|c| c.clone().into_owned())
                    .collect(),
                ..Shown::default()
            }
        });
    }

    fn chain(&self) -> Vec<CertificateDer<'static>> {
        let me = std::thread::current().id();
        self.0
            .lock()
            .map(|m| m.get(&me).map(|s| s.chain.clone()).unwrap_or_default())
            .unwrap_or_default()
    }

    /// What was recorded, leaving nothing behind for the next connection.
    pub(crate) fn take(&self) -> Shown {
        let me = std::thread::current().id();
        self.0
            .lock()
            .map(|mut m| m.remove(&me).unwrap_or_default())
            .unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut Shown)) {
        if let Ok(mut seen) = self.0.lock() {
            f(seen.entry(std::thread::current().id()).or_default());
        }
    }
}

/// `--allow-cn` and `--allow-san`: which verified client certificates are admitted (any
/// match admits; both empty: all). Both compare the certificate's own values, unescaped.
#[derive(Clone, Debug, Default)]
pub(crate) struct Allow {
    /// Common names, compared exactly with the subject's one CN.
    pub cn: Vec<String>,
    pub san: Vec<AllowSan>,
}

/// One `--allow-san` value: `TYPE:value` with TYPE one of `dns`, `ip`, `email`, `uri` (in
/// any case, as openssl writes them too: `DNS:`, `IP:`), which matches a subjectAltName of
/// that type only; or a bare value, which matches one of any type. DNS names, email
/// addresses and URIs compare ignoring ASCII case; IP addresses compare as addresses
/// (`ip:::1` is `ip:0:0:0:0:0:0:0:1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowSan {
    Dns(String),
    Ip(std::net::IpAddr),
    Email(String),
    Uri(String),
    /// Any type: the text, and the address it is if it is one.
    Any(String, Option<std::net::IpAddr>),
}

impl AllowSan {
    /// Parse what was typed after `--allow-san`; the error is the message for the user.
    pub fn parse(text: &str) -> Result<AllowSan, String> {
        let typed = text.split_once(':').and_then(|(kind, value)| {
            let kind = kind.to_ascii_lowercase();
            ["dns", "ip", "email", "uri"]
                .contains(&kind.as_str())
                .then_some((kind, value))
        });
        let Some((kind, value)) = typed else {
            if text.is_empty() {
                return Err("--allow-san '': no name given".to_string());
            }
            return Ok(AllowSan::Any(text.to_string(), text.parse().ok()));
        };
        if value.is_empty() {
            return Err(format!(
                "--allow-san '{}': no name after '{kind}:'",
                escape(text)
            ));
        }
        Ok(match kind.as_str() {
            "dns" => AllowSan::Dns(value.to_string()),
            "email" => AllowSan::Email(value.to_string()),
            "uri" => AllowSan::Uri(value.to_string()),
            _ => AllowSan::Ip(value.parse().map_err(|_| {
                format!(
                    "--allow-san '{}': '{}' is not an IP address",
                    escape(text),
                    escape(value)
                )
            })?),
        })
    }

    /// Whether the subjectAltName `name` is this one.
    pub(crate) fn matches(&self, name: &AltName) -> bool {
        let same_ip = |want: &std::net::IpAddr, have: &[u8]| match want {
            std::net::IpAddr::V4(v4) => v4.octets() == have,
            std::net::IpAddr::V6(v6) => v6.octets() == have,
        };
        match (self, name) {
            (AllowSan::Dns(a), AltName::Dns(b))
            | (AllowSan::Email(a), AltName::Email(b))
            | (AllowSan::Uri(a), AltName::Uri(b)) => a.eq_ignore_ascii_case(b),
            (AllowSan::Ip(a), AltName::Ip(b)) => same_ip(a, b),
            (AllowSan::Any(_, Some(a)), AltName::Ip(b)) => same_ip(a, b),
            (AllowSan::Any(a, _), AltName::Dns(b) | AltName::Email(b) | AltName::Uri(b)) => {
                a.eq_ignore_ascii_case(b)
            }
            _ => false,
        }
    }
}

/// As it would be typed: parsing it gives the same value back.
impl std::fmt::Display for AllowSan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AllowSan::Dns(v) => write!(f, "dns:{v}"),
            AllowSan::Ip(ip) => write!(f, "ip:{ip}"),
            AllowSan::Email(v) => write!(f, "email:{v}"),
            AllowSan::Uri(v) => write!(f, "uri:{v}"),
            AllowSan::Any(v, _) => f.write_str(v),
        }
    }
}

impl Allow {
    fn admits(&self, cert: &CertificateDer<'_>) -> Result<(), NotAllowed> {
        if self.cn.is_empty() && self.san.is_empty() {
            return Ok(());
        }
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
            return Err(NotAllowed {
                cn: String::new(),
                sans: String::new(),
                several: false,
            });
        };
        let cns = common_names(parsed.subject());
        let alt = alt_names(&parsed);
        let refused = |several| NotAllowed {
            cn: cns
                .iter()
                .map(|cn| match cn {
                    Some(cn) => escape_item(cn),
                    None => "(not a string)".to_string(),
                })
                .collect::<Vec<_>>()
                .join(", "),
            sans: alt.iter().map(AltName::text).collect::<Vec<_>>().join(", "),
            several,
        };
        // Which of several CNs is the client is anyone's guess: the one a script is told
        // (STLS_PEER_CN) must be the one admitted, so there must be exactly one.
        if !self.cn.is_empty() && cns.len() > 1 {
            return Err(refused(true));
        }
        let cn_ok = sole_common_name(parsed.subject()).is_some_and(|cn| self.cn.contains(&cn));
        let san_ok = alt.iter().any(|n| self.san.iter().any(|a| a.matches(n)));
        if cn_ok || san_ok {
            return Ok(());
        }
        Err(refused(false))
    }
}

/// A verified client certificate that the allow lists do not admit.
#[derive(Debug)]
struct NotAllowed {
    /// Its CNs, escaped, separated by ", ".
    cn: String,
    /// Its subjectAltNames, escaped, separated by ", ".
    sans: String,
    /// It has several CNs, which --allow-cn refuses.
    several: bool,
}

impl std::fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.several {
            return write!(
                f,
                "has several common names ({}), so --allow-cn cannot tell which one it is: \
                 refused (a client certificate for --allow-cn needs exactly one CN)",
                self.cn
            );
        }
        write!(
            f,
            "is not admitted by --allow-cn/--allow-san (its CN: {}; its names: {})",
            if self.cn.is_empty() { "none" } else { &self.cn },
            if self.sans.is_empty() {
                "none"
            } else {
                &self.sans
            }
        )
    }
}

impl std::error::Error for NotAllowed {}

/// The listener's verifier of client certificates: webpki's, then the allow lists,
/// remembering what was presented.
#[derive(Debug)]
pub(crate) struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allow: Allow,
    seen: Arc<Presented>,
}

impl ClientVerifier {
    pub(crate) fn new(
        inner: Arc<dyn ClientCertVerifier>,
        allow: Allow,
        seen: Arc<Presented>,
    ) -> Self {
        ClientVerifier { inner, allow, seen }
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.seen.record(end_entity, intermediates);
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.allow.admits(end_entity).map_err(|e| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
        })?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The pinned fingerprint did not match.
#[derive(Debug)]
struct PinMismatch {
    seen: String,
    spki: String,
}

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "does not match --pin: its sha256 fingerprint is {}, its public-key pin \
             sha256//{}",
            self.seen, self.spki
        )
    }
}

impl std::error::Error for PinMismatch {}

/// A `--tofu` refusal: the key changed (rejected, exit 5), or the file could not be read or
/// written (exit 1); or the system's store could not be read (exit 1).
#[derive(Debug)]
struct Local {
    class: Class,
    msg: String,
}

impl std::fmt::Display for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Local {}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.seen.record(end_entity, intermediates);
        self.seen.update(|s| s.ocsp = ocsp_response.to_vec());
        let verdict = match &self.mode {
            Mode::WebPki(inner) => {
                inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            Mode::System(loading) => loading.verifier().and_then(|inner| {
                inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }),
            Mode::Pin(pins) => {
                if pins.iter().any(|p| p.matches(end_entity.as_ref())) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    let spki = spki_sha256(end_entity.as_ref())
                        .map(|d| BASE64_STANDARD.encode(d))
                        .unwrap_or_default();
                    Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                        OtherError(Arc::new(PinMismatch {
                            seen: fingerprint_text(&sha256(end_entity.as_ref())),
                            spki,
                        })),
                    )))
                }
            }
            Mode::Insecure => Ok(ServerCertVerified::assertion()),
            Mode::Tofu { file, host } => match spki_sha256(end_entity.as_ref()) {
                None => Err(rustls::Error::InvalidCertificate(
                    CertificateError::BadEncoding,
                )),
                Some(spki) => match crate::tofu::check(file, host, &spki) {
                    Ok(_) => Ok(ServerCertVerified::assertion()),
                    Err(e) => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                        OtherError(Arc::new(Local {
                            class: crate::error::classify(&e),
                            msg: format!("{e:#}"),
                        })),
                    ))),
                },
            },
        };
        if !self.defer {
            return verdict;
        }
        let kept = verdict.as_ref().map(|_| ()).map_err(|e| e.clone());
        self.seen.update(|s| s.verdict = Some(kept));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Which end of the TLS connection we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// `connect`: we verify a server.
    Client,
    /// `listen`: we serve, and verify client certificates if asked to.
    Server,
}

impl Side {
    /// What the peer is, as messages name its certificate: "server" or "client".
    pub(crate) fn peer_role(self) -> &'static str {
        match self {
            Side::Client => "server",
            Side::Server => "client",
        }
    }
}

/// Turns a rustls error into the exit class and message a user sees, naming what the peer
/// presented and what we offered.
#[derive(Clone, Debug)]
pub(crate) struct Explainer {
    side: Side,
    /// The ALPN protocols we offer or accept.
    alpn: Vec<Vec<u8>>,
    presented: Arc<Presented>,
    /// `--crl`: what the lists say, for a revoked certificate.
    crls: Arc<Crls>,
}

impl Explainer {
    pub(crate) fn new(side: Side, alpn: Vec<Vec<u8>>, presented: Arc<Presented>) -> Self {
        Explainer {
            side,
            alpn,
            presented,
            crls: Arc::default(),
        }
    }

    /// Name the revoking list when a certificate is revoked.
    pub(crate) fn with_crls(mut self, crls: &Crls) -> Self {
        self.crls = Arc::new(crls.clone());
        self
    }

    /// Which end we are.
    pub(crate) fn side(&self) -> Side {
        self.side
    }

    /// The error for `err` on the connection named `peer`; `established` says whether its
    /// handshake was done.
    pub(crate) fn error(
        &self,
        err: &rustls::Error,
        peer: &str,
        established: bool,
    ) -> anyhow::Error {
        self.error_for(err, peer, established, &self.presented.chain())
    }

    /// The same, for a chain recorded elsewhere (`inspect` takes what the verifier saw).
    pub(crate) fn error_for(
        &self,
        err: &rustls::Error,
        peer: &str,
        established: bool,
        chain: &[CertificateDer<'static>],
    ) -> anyhow::Error {
        // A --tofu file or system store problem is not the server's fault.
        if let rustls::Error::InvalidCertificate(CertificateError::Other(other)) = err {
            if let Some(local) = other.0.downcast_ref::<Local>() {
                if local.class != Class::CertRejected {
                    return local.class.err(local.msg.clone());
                }
            }
        }
        if let rustls::Error::InvalidCertificate(CertificateError::Revoked) = err {
            let why = chain.iter().enumerate().find_map(|(i, c)| {
                self.crls.why(c).map(|w| match i {
                    0 => format!("the certificate of {peer} {w}"),
                    _ => format!("certificate {i} of the chain {peer} sent {w}"),
                })
            });
            if let Some(why) = why {
                return Class::CertRejected.err(why);
            }
        }
        let seen = Seen {
            peer,
            chain,
            our_alpn: &self.alpn,
            side: self.side,
            established,
        };
        let (class, msg) = describe_tls_error(err, &seen);
        class.err(msg)
    }
}

/// What is known about a failed connection, for its message.
struct Seen<'a> {
    /// How to name the peer: "example.com:443", "client 192.0.2.1:5555".
    peer: &'a str,
    /// The chain the peer presented, if known.
    chain: &'a [CertificateDer<'static>],
    /// The ALPN protocols we offered or accept.
    our_alpn: &'a [Vec<u8>],
    /// Which end we are.
    side: Side,
    /// Whether the handshake was done when the error came.
    established: bool,
}

/// The exit class and one-line message for a TLS error, from the point of view of the side
/// that saw it.
fn describe_tls_error(err: &rustls::Error, seen: &Seen<'_>) -> (Class, String) {
    use rustls::AlertDescription as A;
    let peer = seen.peer;
    let ours = || {
        let names: Vec<String> = seen
            .our_alpn
            .iter()
            .map(|p| escape(&String::from_utf8_lossy(p)))
            .collect();
        names.join(", ")
    };
    // Under TLS 1.3 a server judges the client's certificate after the client finished its
    // handshake, so those alerts come late but are still the handshake's verdict.
    let handshake_verdict = matches!(
        err,
        rustls::Error::AlertReceived(
            A::BadCertificate
                | A::UnknownCA
                | A::CertificateUnknown
                | A::UnsupportedCertificate
                | A::CertificateExpired
                | A::CertificateRevoked
                | A::AccessDenied
                | A::CertificateRequired
                | A::DecryptError
        )
    );
    if seen.established && !handshake_verdict {
        return describe_late_error(err, peer);
    }
    match err {
        rustls::Error::InvalidCertificate(ce) => {
            (Class::CertRejected, describe_cert_error(ce, seen))
        }
        rustls::Error::NoCertificatesPresented => (
            Class::CertRejected,
            format!("{peer} presented no client certificate, and --client-ca requires one"),
        ),
        rustls::Error::NoApplicationProtocol => (
            Class::Handshake,
            format!(
                "{peer} offered no ALPN protocol we accept (we accept: {})",
                ours()
            ),
        ),
        rustls::Error::AlertReceived(A::NoApplicationProtocol) => (
            Class::Handshake,
            format!(
                "{peer} refused the TLS handshake: it accepts none of the ALPN protocols we \
                 offered ({})",
                ours()
            ),
        ),
        rustls::Error::AlertReceived(A::CertificateRequired) => (
            Class::Handshake,
            format!(
                "{peer} refused the TLS handshake: it requires a client certificate (use --cert \
                 and --key)"
            ),
        ),
        rustls::Error::AlertReceived(alert) => {
            let name = escape(&format!("{alert:?}"));
            // Who can fix a rejected certificate depends on the side: a client can pin a
            // server's certificate, a server's client CA list is the server's to change.
            let untrusted = if seen.side == Side::Server {
                "it does not accept our certificate (give it our CA, or the fingerprint to pin)"
            } else {
                "it does not accept our certificate (it has to trust the CA that issued it)"
            };
            let why = match alert {
                A::CertificateExpired => {
                    "it does not accept our certificate: expired or not yet valid, it says \
                     (check the certificate's dates, and both machines' clocks)"
                }
                A::CertificateRevoked => {
                    "it does not accept our certificate: revoked, it says (it needs a new one)"
                }
                A::UnsupportedCertificate => {
                    "it does not accept our certificate: of a type or key usage it does not \
                     support"
                }
                A::AccessDenied => {
                    "it denied access: our certificate is valid, but not allowed there"
                }
                A::BadCertificate | A::UnknownCA | A::CertificateUnknown => untrusted,
                A::ProtocolVersion => "it does not accept our TLS versions",
                A::HandshakeFailure | A::InsufficientSecurity => {
                    "no TLS parameters in common (versions, cipher suites, key exchange)"
                }
                A::NoApplicationProtocol => "no ALPN protocol in common",
                A::UnrecognisedName => "it does not know the name we asked for (SNI)",
                _ => "the handshake failed on its side",
            };
            (
                Class::Handshake,
                format!("{peer} refused the TLS handshake (alert {name}): {why}"),
            )
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => (
            Class::Handshake,
            format!(
                "TLS handshake with {peer} failed: {} (is it speaking TLS on that port?)",
                in_words(err)
            ),
        ),
        _ => (
            Class::Handshake,
            format!("TLS handshake with {peer} failed: {}", in_words(err)),
        ),
    }
}

/// A rustls error as a sentence: rustls's own text names enum variants
/// (`peer is incompatible: Tls12NotOfferedOrEnabled`), which say little to a user.
pub(crate) fn in_words(err: &rustls::Error) -> String {
    use rustls::PeerIncompatible as P;
    match err {
        rustls::Error::PeerIncompatible(why) => match why {
            P::SupportedVersionsExtensionRequired => {
                "it offers TLS 1.2 at most, and only TLS 1.3 is allowed here (--tls-min 1.3)"
                    .to_string()
            }
            P::Tls12NotOffered | P::ServerDoesNotSupportTls12Or13 => {
                "it speaks only TLS versions older than 1.2, which are not supported".to_string()
            }
            P::Tls12NotOfferedOrEnabled | P::ServerTlsVersionIsDisabledByOurConfig => {
                "no TLS version in common: it offers none of those allowed here (--tls-min, \
                 --tls-max)"
                    .to_string()
            }
            P::NoCipherSuitesInCommon => {
                "no cipher suite in common (only TLS 1.2/1.3 AEAD suites are offered here; see \
                 --ciphers)"
                    .to_string()
            }
            P::NoKxGroupsInCommon => "no key exchange group in common".to_string(),
            P::NoSignatureSchemesInCommon | P::NoCertificateRequestSignatureSchemesInCommon => {
                "no signature algorithm in common for the certificate's key".to_string()
            }
            P::ExtendedMasterSecretExtensionRequired => {
                "its TLS 1.2 lacks the extended master secret extension (RFC 7627), which is \
                 required here"
                    .to_string()
            }
            P::NullCompressionRequired => {
                "it offers only TLS compression, which is insecure and refused".to_string()
            }
            other => format!("its TLS is incompatible ({})", words(&format!("{other:?}"))),
        },
        rustls::Error::PeerMisbehaved(why) => {
            format!("it broke the TLS protocol ({})", words(&format!("{why:?}")))
        }
        rustls::Error::InvalidMessage(what) => {
            format!(
                "it sent a malformed TLS message ({})",
                words(&format!("{what:?}"))
            )
        }
        rustls::Error::InappropriateMessage { got_type, .. } => format!(
            "it sent an unexpected TLS message ({})",
            words(&format!("{got_type:?}"))
        ),
        rustls::Error::InappropriateHandshakeMessage { got_type, .. } => format!(
            "it sent an unexpected TLS handshake message ({})",
            words(&format!("{got_type:?}"))
        ),
        rustls::Error::InvalidCertRevocationList(why) => format!(
            "a certificate revocation list (--crl) cannot be used: {}",
            words(&format!("{why:?}"))
        ),
        rustls::Error::InvalidCertificate(why) => {
            format!("its certificate {}", cert_error_words(why))
        }
        rustls::Error::InvalidEncryptedClientHello(why) => format!(
            "encrypted client hello failed: {}",
            words(&format!("{why:?}"))
        ),
        rustls::Error::InconsistentKeys(why) => format!(
            "the private key does not match the certificate ({})",
            words(&format!("{why:?}"))
        ),
        other => other.to_string(),
    }
}

/// A Rust identifier as lower-case words, with TLS's abbreviations spelt as people write
/// them: `AttemptedDowngradeToTls12WhenTls13IsSupported` → "attempted downgrade to TLS 1.2
/// when TLS 1.3 is supported". Anything after the name (`(…)`) is dropped.
fn words(name: &str) -> String {
    let name = name.split(['(', ' ', '{']).next().unwrap_or_default();
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() && !current.is_empty() {
            parts.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
        .iter()
        .map(|p| match p.as_str() {
            "Tls12" => "TLS 1.2".to_string(),
            "Tls13" => "TLS 1.3".to_string(),
            "Tls" => "TLS".to_string(),
            "Ech" => "ECH".to_string(),
            "Psk" => "PSK".to_string(),
            "Kx" => "key exchange".to_string(),
            "Ems" => "extended master secret".to_string(),
            "Sct" => "SCT".to_string(),
            "Quic" => "QUIC".to_string(),
            "Sig" => "signature".to_string(),
            "Cert" => "certificate".to_string(),
            other => other.to_ascii_lowercase(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A TLS error once data flows: a bad record, an alert. Still a TLS failure (exit 4), but
/// not the handshake's.
fn describe_late_error(err: &rustls::Error, peer: &str) -> (Class, String) {
    let msg = match err {
        rustls::Error::AlertReceived(alert) => format!(
            "{peer} ended the connection with TLS alert {}",
            escape(&format!("{alert:?}"))
        ),
        rustls::Error::DecryptError => {
            format!("TLS error from {peer}: a record failed to decrypt (corrupted or forged data)")
        }
        _ => format!(
            "TLS error from {peer} after the handshake: {}",
            in_words(err)
        ),
    };
    (Class::Handshake, msg)
}

fn describe_cert_error(err: &CertificateError, seen: &Seen<'_>) -> String {
    let leaf = seen.chain.first().and_then(CertInfo::parse);
    let whose = format!("the certificate of {}", seen.peer);
    let trust_flag = if seen.side == Side::Server {
        "--client-ca"
    } else {
        "--cacert"
    };
    match err {
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let expected = escape(&expected.to_str());
            if presented.is_empty() {
                format!(
                    "{whose} has no subjectAltName, so it is valid for no name (the common name \
                     is not used for name checks); it cannot be used for {expected}"
                )
            } else {
                // webpki's list is debug-formatted; the parsed certificate reads better.
                let names: Vec<String> = match &leaf {
                    Some(info) if !info.names.is_empty() => info.names.clone(),
                    _ => presented.iter().map(|n| escape(n)).collect(),
                };
                format!(
                    "{whose} is for {} and not valid for {expected} (use --servername NAME if \
                     you connected by another name)",
                    names.join(", ")
                )
            }
        }
        CertificateError::NotValidForName => match leaf {
            Some(info) if info.names.is_empty() => format!(
                "{whose} has no subjectAltName, so it is valid for no name (the common name is \
                 not used for name checks)"
            ),
            Some(info) => format!("{whose} is for {} and not this name", info.names.join(", ")),
            None => format!("{whose} is not valid for this name"),
        },
        CertificateError::ExpiredContext { time, not_after } => format!(
            "{whose} expired on {} (now {})",
            date(not_after.as_secs() as i64),
            date(time.as_secs() as i64)
        ),
        CertificateError::Expired => match leaf {
            Some(info) => format!("{whose} expired on {}", date(info.not_after)),
            None => format!("{whose} has expired"),
        },
        CertificateError::NotValidYetContext { time, not_before } => format!(
            "{whose} is not valid until {} (now {})",
            date(not_before.as_secs() as i64),
            date(time.as_secs() as i64)
        ),
        CertificateError::NotValidYet => match leaf {
            Some(info) => format!("{whose} is not valid until {}", date(info.not_before)),
            None => format!("{whose} is not valid yet"),
        },
        CertificateError::UnknownIssuer => match leaf {
            Some(info) if info.subject == info.issuer && seen.side == Side::Client => format!(
                "{whose} is self-signed ({}) and not trusted; trust it with --pin {} or \
                 --cacert FILE",
                info.subject_or_placeholder(),
                info.fingerprint
            ),
            Some(info) => format!(
                "{whose} was issued by {}, which is not trusted (unknown issuer); pass that CA \
                 with {trust_flag} FILE",
                if info.issuer.is_empty() {
                    "(empty issuer)"
                } else {
                    &info.issuer
                }
            ),
            None => format!("{whose} was issued by an unknown CA; pass it with {trust_flag} FILE"),
        },
        CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => format!(
            "{whose} is signed with an algorithm that is not accepted (SHA-1 and other legacy \
             signatures are refused)"
        ),
        CertificateError::BadSignature => match leaf {
            Some(info) => format!(
                "{whose} has an invalid signature: it claims to be issued by {}, but not by \
                 the CA of that name that we trust (is {trust_flag} the right CA?)",
                info.issuer
            ),
            None => format!("{whose} has an invalid signature"),
        },
        CertificateError::BadEncoding => format!("{whose} is malformed"),
        CertificateError::Revoked => format!("{whose} has been revoked"),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            format!("{whose} is not meant for this use (extended key usage)")
        }
        CertificateError::Other(other) if other.0.to_string() == "CaUsedAsEndEntity" => format!(
            "{whose} is a CA certificate (basicConstraints CA:TRUE) used as a server \
             certificate; trust it with --pin {}, or serve a leaf certificate signed by the CA",
            leaf.map(|i| i.fingerprint).unwrap_or_default()
        ),
        CertificateError::Other(other) => {
            // Ours (a pin, an allow list, --tofu) say it in words already; webpki's
            // Display is its variant's name.
            let ours =
                other.0.is::<PinMismatch>() || other.0.is::<NotAllowed>() || other.0.is::<Local>();
            match ours {
                true => format!("{whose} {}", other.0),
                false => format!("{whose} {}", webpki_words(&other.0.to_string())),
            }
        }
        _ => format!("{whose} {}", cert_error_words(err)),
    }
}

/// What webpki found wrong with a chain, given its error's name (its Display is the variant's
/// name, `MaximumPathDepthExceeded`), as the end of "the certificate of X …".
fn webpki_words(name: &str) -> String {
    match name.split(['(', ' ', '{']).next().unwrap_or_default() {
        "MaximumPathDepthExceeded" => "was rejected: its chain is longer than allowed (at most 6 \
            intermediate CAs between it and a trusted CA)"
            .to_string(),
        "MaximumSignatureChecksExceeded" | "MaximumPathBuildCallsExceeded" => {
            "was rejected: too many possible chains to try (the peer sent too many \
             intermediate certificates)"
                .to_string()
        }
        "EndEntityUsedAsCa" => {
            "was rejected: its chain uses a leaf certificate (basicConstraints CA:FALSE) as a CA"
                .to_string()
        }
        "PathLenConstraintViolated" => {
            "was rejected: its chain is longer than a CA's pathlen constraint allows".to_string()
        }
        "NameConstraintViolation" => {
            "was rejected: it names a host its CA is not allowed to certify (name constraints)"
                .to_string()
        }
        "UnsupportedCriticalExtension" => {
            "was rejected: it has a critical extension that is not understood".to_string()
        }
        "UnsupportedCertVersion" => {
            "was rejected: it is not an X.509 version 3 certificate".to_string()
        }
        other => format!("was rejected: {}", words(other)),
    }
}

/// A rustls certificate error that [`describe_cert_error`] has no sentence of its own for,
/// as the end of "the certificate of X …": rustls's Display is the variant's name here.
fn cert_error_words(err: &CertificateError) -> String {
    match err {
        CertificateError::UnhandledCriticalExtension => {
            "was rejected: it has a critical extension that is not understood".to_string()
        }
        CertificateError::UnknownRevocationStatus => {
            "was rejected: no revocation list (--crl) says whether it is revoked".to_string()
        }
        CertificateError::ExpiredRevocationList
        | CertificateError::ExpiredRevocationListContext { .. } => {
            "could not be checked: the revocation list (--crl) has expired (get a current \
             one)"
                .to_string()
        }
        other => format!("was rejected: {}", words(&format!("{other:?}"))),
    }
}

/// Why a verifier could not be built, in words: rustls shows a revocation list's problem as
/// its variant's name (`provided CRL could not be parsed: ParseError`).
pub(crate) fn builder_words(err: &rustls::client::VerifierBuilderError) -> String {
    use rustls::client::VerifierBuilderError as E;
    match err {
        E::InvalidCrl(why) => format!(
            "the revocation list cannot be used: {}",
            words(&format!("{why:?}"))
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_errors_are_said_in_words() {
        use rustls::{PeerIncompatible as P, PeerMisbehaved as M};
        for err in [
            rustls::Error::PeerIncompatible(P::SupportedVersionsExtensionRequired),
            rustls::Error::PeerIncompatible(P::Tls12NotOfferedOrEnabled),
            rustls::Error::PeerIncompatible(P::UncompressedEcPointsRequired),
            rustls::Error::PeerMisbehaved(M::AttemptedDowngradeToTls12WhenTls13IsSupported),
            rustls::Error::PeerMisbehaved(M::SelectedUnofferedKxGroup),
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        ] {
            let said = in_words(&err);
            // No identifier of rustls's: no word with a capital after its first letter.
            let camel = said.split(|c: char| !c.is_alphanumeric()).find(|w| {
                w.chars().skip(1).any(|c| c.is_ascii_uppercase())
                    && w.chars().any(|c| c.is_ascii_lowercase())
            });
            assert_eq!(camel, None, "{said}");
        }
        assert_eq!(
            words("AttemptedDowngradeToTls12WhenTls13IsSupported"),
            "attempted downgrade to TLS 1.2 when TLS 1.3 is supported"
        );
        assert_eq!(
            words("SelectedUnofferedKxGroup"),
            "selected unoffered key exchange group"
        );
    }
}
