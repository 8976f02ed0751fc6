//! What stls says on stderr: levels (`-q`, `-v`), one-line messages with the `stls:` prefix,
//! descriptions of sessions and certificates, and escaping of every string a peer controls.

use std::fmt::Display;
use std::io::Write;
use std::sync::atomic::{AtomicI8, Ordering};

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use crate::fingerprint::{fingerprint_text, sha256};

static LEVEL: AtomicI8 = AtomicI8::new(0);

/// `-q` gives -1 (errors and warnings only), `-v` 1, `-vv` 2.
pub(crate) fn set_level(quiet: bool, verbose: u8) {
    let level = if quiet { -1 } else { verbose.min(10) as i8 };
    LEVEL.store(level, Ordering::Relaxed);
}

pub(crate) fn level() -> i8 {
    LEVEL.load(Ordering::Relaxed)
}

/// Write one line to stderr in one write. A diagnostic that cannot be written (stderr closed,
/// full, or its reader gone) is dropped: it must never stop the transfer, let alone panic.
fn line(prefix: &str, msg: impl Display) {
    let text = format!("stls: {prefix}{msg}\n");
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// A line shown unless `-q`.
pub(crate) fn info(msg: impl Display) {
    if level() >= 0 {
        line("", msg);
    }
}

/// A line shown with `-v`.
pub(crate) fn verbose(msg: impl Display) {
    if level() >= 1 {
        line("", msg);
    }
}

/// Always shown.
pub(crate) fn warn(msg: impl Display) {
    line("warning: ", msg);
}

/// Always shown: the one line for the error that ends the run.
pub(crate) fn error(msg: impl Display) {
    line("", msg);
}

/// A peer-controlled string made safe for a terminal: control characters are escaped
/// (`\n`, `\u{1b}`), and so are the invisible characters that change what text looks like
/// (see [`is_invisible`]): `\u{202e}`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else if is_invisible(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// The characters of Unicode's general category Cf (format: zero-width space and joiners,
/// the bidirectional controls that reorder text, the byte order mark, tags, …), Zl and Zp
/// (line and paragraph separators), as of Unicode 16.0. None of them shows as a glyph; in a
/// name they hide or reorder what a person reads (`\u{202e}` makes "gpj.exe" read "exe.jpg").
pub fn is_invisible(c: char) -> bool {
    let c = c as u32;
    // Most text is ASCII: one comparison for it.
    c >= 0xAD
        && matches!(
            c,
            0x00AD                  // soft hyphen
            | 0x0600..=0x0605       // Arabic number signs
            | 0x061C                // Arabic letter mark (bidi)
            | 0x06DD                // Arabic end of ayah
            | 0x070F                // Syriac abbreviation mark
            | 0x0890..=0x0891       // Arabic pound and piastre marks above
            | 0x08E2                // Arabic disputed end of ayah
            | 0x180E                // Mongolian vowel separator
            | 0x200B..=0x200F       // zero-width space, ZWNJ, ZWJ, LRM, RLM
            | 0x2028..=0x2029       // line and paragraph separators
            | 0x202A..=0x202E       // bidi embeddings and overrides
            | 0x2060..=0x2064       // word joiner, invisible operators
            | 0x2066..=0x206F       // bidi isolates, deprecated format characters
            | 0xFEFF                // zero-width no-break space (byte order mark)
            | 0xFFF9..=0xFFFB       // interlinear annotation
            | 0x110BD               // Kaithi number sign
            | 0x110CD               // Kaithi number sign above
            | 0x13430..=0x1343F     // Egyptian hieroglyph format controls
            | 0x1BCA0..=0x1BCA3     // shorthand format controls
            | 0x1D173..=0x1D17A     // musical symbol format controls
            | 0xE0001               // language tag
            | 0xE0020..=0xE007F     // tag characters
        )
}

/// A UNIX time as `2025-01-31 23:59:59 UTC`.
pub(crate) fn date(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{secs} seconds after 1970"),
    }
}

/// What a person wants to know about a certificate.
#[derive(Debug, Default)]
pub(crate) struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub names: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub fingerprint: String,
}

impl CertInfo {
    /// Parse a DER certificate; `None` if it cannot be parsed.
    pub(crate) fn parse(der: &CertificateDer<'_>) -> Option<CertInfo> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => names.push(escape(n)),
                    GeneralName::IPAddress(ip) => names.push(ip_text(ip)),
                    _ => {}
                }
            }
        }
        let validity = cert.validity();
        Some(CertInfo {
            subject: escape(&cert.subject().to_string()),
            issuer: escape(&cert.issuer().to_string()),
            names,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            fingerprint: fingerprint_text(&sha256(der.as_ref())),
        })
    }

    /// The subject for messages: "(empty subject)" rather than nothing.
    pub(crate) fn subject_or_placeholder(&self) -> &str {
        if self.subject.is_empty() {
            "(empty subject)"
        } else {
            &self.subject
        }
    }

    /// Several indented lines for `-v`.
    pub(crate) fn describe(&self, label: &str) -> String {
        let names = if self.names.is_empty() {
            "(none)".to_string()
        } else {
            self.names.join(", ")
        };
        format!(
            "{label}: {}\n  names:  {names}\n  issuer: {}\n  valid:  {} to {}\n  sha256: {}",
            self.subject_or_placeholder(),
            self.issuer,
            date(self.not_before),
            date(self.not_after),
            self.fingerprint
        )
    }
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => {
            let octets: [u8; 4] = bytes.try_into().unwrap_or_default();
            std::net::Ipv4Addr::from(octets).to_string()
        }
        16 => {
            let octets: [u8; 16] = bytes.try_into().unwrap_or_default();
            std::net::Ipv6Addr::from(octets).to_string()
        }
        _ => format!("(bad IP address of {} bytes)", bytes.len()),
    }
}

/// After the handshake, under `-v`: protocol, suite, key exchange, ALPN and the peer's
/// certificate (every certificate of the chain with `-vv`).
pub(crate) fn session(conn: &rustls::CommonState, peer_label: &str, prefix: &str) {
    if level() < 1 {
        return;
    }
    let version = conn
        .protocol_version()
        .and_then(|v| v.as_str())
        .unwrap_or("unknown version")
        .replace("TLSv1_", "TLSv1.");
    let suite = conn
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .unwrap_or("unknown suite");
    let group = conn
        .negotiated_key_exchange_group()
        .and_then(|g| g.name().as_str())
        .unwrap_or("unknown group");
    let alpn = conn
        .alpn_protocol()
        .map(|p| format!(", ALPN {}", escape(&String::from_utf8_lossy(p))))
        .unwrap_or_default();
    verbose(format_args!(
        "{prefix}{version}, {suite}, key exchange {group}{alpn}"
    ));
    match conn.peer_certificates() {
        Some(chain) if !chain.is_empty() => {
            let shown = if level() >= 2 { chain.len() } else { 1 };
            for (i, der) in chain.iter().take(shown).enumerate() {
                let label = if i == 0 {
                    format!("{peer_label} certificate")
                } else {
                    format!("chain certificate {i}")
                };
                match CertInfo::parse(der) {
                    Some(info) => verbose(format_args!("{prefix}{}", info.describe(&label))),
                    None => verbose(format_args!("{prefix}{label}: (could not be parsed)")),
                }
            }
        }
        _ => verbose(format_args!(
            "{prefix}{peer_label} presented no certificate"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters() {
        assert_eq!(escape("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\n");
        assert_eq!(escape("plain é"), "plain é");
    }

    #[test]
    fn escapes_format_and_bidi_characters() {
        assert_eq!(escape("a\u{202e}gpj.exe"), "a\\u{202e}gpj.exe");
        assert_eq!(
            escape("\u{200b}\u{200d}\u{2066}\u{061c}\u{feff}\u{e0041}\u{2028}"),
            "\\u{200b}\\u{200d}\\u{2066}\\u{61c}\\u{feff}\\u{e0041}\\u{2028}"
        );
        // Neighbours of the ranges are ordinary text.
        for c in ['\u{2010}', '\u{2065}', '\u{2070}', '\u{fefe}', 'ü', '中'] {
            assert!(!is_invisible(c), "{c:?}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(date(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }
}
