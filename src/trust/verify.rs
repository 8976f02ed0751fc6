//! The verifiers: of the server's certificate (by roots, the system's store, a pin, a known
//! key, or none) and of client certificates (webpki's, then the allow lists); each records
//! the chain it was shown, so messages and `inspect` can name what was presented.

use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};
use base64::prelude::{Engine, BASE64_STANDARD};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::DistinguishedName;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};

use super::allow::Allow;
use super::explain::{builder_words, Local, PinMismatch};
use super::roots::{system_roots, Crls};
use crate::error::Class;
use crate::fingerprint::{fingerprint_text, sha256, spki_sha256, Pin};
use crate::report;

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

    /// Record the chains shown in `seen` (a reload's verifier, where the first one did).
    pub(crate) fn recording_into(mut self, seen: Arc<Presented>) -> Self {
        self.seen = seen;
        self
    }

    /// Where the chain the server presents is recorded.
    pub(crate) fn presented(&self) -> Arc<Presented> {
        self.seen.clone()
    }
}

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

    pub(super) fn chain(&self) -> Vec<CertificateDer<'static>> {
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
