//! The message catalogue: a rustls error, or a verifier's refusal, as the exit class and the
//! one line a user reads, naming what the peer presented and what we offered.

use rustls::pki_types::CertificateDer;
use rustls::CertificateError;

use crate::describe::{date, CertInfo};
use crate::error::Class;
use crate::report::escape;

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

/// The pinned fingerprint did not match.
#[derive(Debug)]
pub(super) struct PinMismatch {
    pub seen: String,
    pub spki: String,
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

/// A verified client certificate that the allow lists do not admit.
#[derive(Debug)]
pub(super) struct NotAllowed {
    /// Its CNs, escaped, separated by ", ".
    pub cn: String,
    /// Its subjectAltNames, escaped, separated by ", ".
    pub sans: String,
    /// It has several CNs, which --allow-cn refuses.
    pub several: bool,
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

/// A `--tofu` refusal: the key changed (rejected, exit 5), or the file could not be read or
/// written (exit 1); or the system's store could not be read (exit 1).
#[derive(Debug)]
pub(super) struct Local {
    pub class: Class,
    pub msg: String,
}

impl std::fmt::Display for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Local {}

/// What is known about a failed connection, for its message.
pub(super) struct Seen<'a> {
    /// How to name the peer: "example.com:443", "client 192.0.2.1:5555".
    pub peer: &'a str,
    /// The chain the peer presented, if known.
    pub chain: &'a [CertificateDer<'static>],
    /// The ALPN protocols we offered or accept.
    pub our_alpn: &'a [Vec<u8>],
    /// Which end we are.
    pub side: Side,
    /// Whether the handshake was done when the error came.
    pub established: bool,
}

/// The exit class and one-line message for a TLS error, from the point of view of the side
/// that saw it.
#[allow(
    clippy::too_many_lines,
    reason = "a message catalogue: one arm for each rustls error"
)]
pub(super) fn describe_tls_error(err: &rustls::Error, seen: &Seen<'_>) -> (Class, String) {
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

#[allow(
    clippy::too_many_lines,
    reason = "a message catalogue: one arm for each certificate error"
)]
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
