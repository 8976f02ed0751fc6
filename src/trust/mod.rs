//! Deciding whether to trust the peer. The server's certificate is checked against the
//! system's store (the default: `SSL_CERT_FILE`, `SSL_CERT_DIR`, else the platform's, and the
//! built-in Mozilla roots when it is empty), the built-in roots alone (`--trust builtin`), a
//! `--cacert` file, a `--pin`ned fingerprint, the key first seen (`--tofu`), or nothing
//! (`--insecure`), with `--crl` revocation lists along a chain to a CA. A client's
//! certificate (`listen`) is checked against `--client-ca` (or `--client-ca-optional`) and
//! its `--crl` lists, then `--allow-cn`/`--allow-san`. A rejection names what the peer
//! actually presented: its issuer, dates and names.
//!
//! - `roots`: where trust anchors come from (system, built-in, files) and the `--crl` lists;
//! - `verify`: the verifiers of server and client certificates, and the record of the chain
//!   each was shown;
//! - `allow`: the allow lists for client certificates;
//! - `explain`: the message catalogue, a rustls error or a refusal in words.
//!
//! Here, [`Explainer`] ties them together: it tells a failure with the chain the verifier
//! recorded and what the revocation lists say.

mod allow;
mod explain;
mod roots;
mod verify;

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::CertificateError;

use crate::error::Class;
use explain::{describe_tls_error, Local, Seen};

pub(crate) use allow::Allow;
pub use allow::AllowSan;
pub(crate) use explain::{in_words, Side};
pub(crate) use roots::{builtin_roots, roots_from_file, Crls};
pub(crate) use verify::{ClientVerifier, Presented, ServerVerifier, Shown, Trust};

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
