//! SHA-256 certificate fingerprints: computing one, printing it as openssl does, and parsing
//! what users paste into `--pin`.

use crate::report::escape;

/// The SHA-256 digest of a DER certificate.
pub(crate) fn sha256(der: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// `AB:CD:…`, as `openssl x509 -noout -fingerprint -sha256` prints it.
pub fn fingerprint_text(digest: &[u8; 32]) -> String {
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// Parse a `--pin` value: the SHA-256 fingerprint as 64 hex digits, or as 32 hex pairs
/// separated by colons, in any case. A pasted line is accepted too: what `stls listen` prints
/// (`stls: sha256 fingerprint AB:CD:…`), what openssl prints (`sha256 Fingerprint=AB:CD:…`),
/// or the value with a `sha256:` prefix. Nothing else: no other separators, signs or spaces.
/// What `--pin` accepts the server by: its certificate's SHA-256 fingerprint, or the
/// SHA-256 of its public key (curl's `sha256//BASE64`, which survives a renewal with the
/// same key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pin {
    Cert([u8; 32]),
    Spki([u8; 32]),
}

impl Pin {
    /// Whether the certificate `der` matches.
    pub(crate) fn matches(&self, der: &[u8]) -> bool {
        match self {
            Pin::Cert(fp) => &sha256(der) == fp,
            Pin::Spki(want) => spki_sha256(der).as_ref() == Some(want),
        }
    }
}

/// The SHA-256 of a certificate's SubjectPublicKeyInfo.
pub(crate) fn spki_sha256(der: &[u8]) -> Option<[u8; 32]> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(sha256(cert.public_key().raw))
}

/// `--pin`: one or more pins separated by `;` (any one matches), each a certificate
/// fingerprint (see [`parse_fingerprint`]) or `sha256//BASE64`.
pub(crate) fn parse_pins(text: &str) -> Result<Vec<Pin>, String> {
    let pins = text
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.strip_prefix("sha256//") {
            Some(b64) => {
                use base64::prelude::{Engine, BASE64_STANDARD};
                let bytes = BASE64_STANDARD.decode(b64.trim()).map_err(|_| ())?;
                bytes.try_into().map(Pin::Spki).map_err(|_| ())
            }
            None => parse_fingerprint(p).map(Pin::Cert).map_err(|_| ()),
        })
        .collect::<Result<Vec<_>, ()>>()
        .map_err(|()| {
            format!(
                "--pin '{}' is not a SHA-256 fingerprint (64 hex digits, or 32 hex pairs \
                 separated by colons, as `stls listen` and `openssl x509 -noout -fingerprint \
                 -sha256` print) nor a public-key pin (sha256//BASE64, as curl takes it); \
                 several are separated by ';'",
                escape(text)
            )
        })?;
    if pins.is_empty() {
        return Err(format!("--pin '{}': no pin given", escape(text)));
    }
    Ok(pins)
}

pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let bad = || {
        format!(
            "--pin '{}' is not a SHA-256 fingerprint (64 hex digits, or 32 hex pairs separated \
             by colons, as `stls listen` and `openssl x509 -noout -fingerprint -sha256` print)",
            escape(text)
        )
    };
    let value = strip_fingerprint_label(text.trim());
    let digits: Vec<u8> = if value.len() == 32 * 3 - 1 {
        // AB:CD:…: a colon after every pair but the last.
        let bytes = value.as_bytes();
        if (2..bytes.len()).step_by(3).any(|i| bytes[i] != b':') {
            return Err(bad());
        }
        bytes
            .chunks(3)
            .flat_map(|c| c[..2].iter().copied())
            .collect()
    } else if value.len() == 64 {
        value.as_bytes().to_vec()
    } else {
        return Err(bad());
    };
    let nibble = |d: u8| (d as char).to_digit(16).map(|v| v as u8);
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks(2)) {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(hi), Some(lo)) => *byte = hi << 4 | lo,
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

/// `stls: sha256 fingerprint X`, `sha256 Fingerprint=X`, `SHA256:X` → `X` (case-insensitive);
/// anything else is returned as it is.
fn strip_fingerprint_label(text: &str) -> &str {
    let text = strip_prefix_ci(text, "stls:").map_or(text, str::trim_start);
    let Some(rest) = strip_prefix_ci(text, "sha256") else {
        return text;
    };
    if let Some(value) = strip_prefix_ci(rest, ":").or_else(|| strip_prefix_ci(rest, "=")) {
        return value.trim_start();
    }
    let spaced = rest.trim_start();
    match strip_prefix_ci(spaced, "fingerprint") {
        Some(after) if spaced.len() < rest.len() => {
            after.strip_prefix('=').unwrap_or(after).trim_start()
        }
        _ => text,
    }
}

/// `text` without `prefix`, compared ignoring ASCII case.
fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_lists() {
        let fp = "AB".repeat(32);
        let spki = format!("sha256//{}", "A".repeat(43) + "=");
        let pins = parse_pins(&format!("{spki}; {fp}")).unwrap();
        assert_eq!(pins.len(), 2);
        assert!(matches!(pins[0], Pin::Spki(_)));
        assert_eq!(pins[1], Pin::Cert([0xab; 32]));
        assert!(parse_pins("sha256//tooshort").is_err());
        assert!(parse_pins(";").is_err());
    }

    #[test]
    fn fingerprints_round_trip() {
        let digest = sha256(b"abc");
        let text = fingerprint_text(&digest);
        assert_eq!(text.len(), 32 * 3 - 1);
        assert!(text.starts_with("BA:78:16:BF"));
        assert_eq!(parse_fingerprint(&text), Ok(digest));
        assert_eq!(parse_fingerprint(&text.to_lowercase()), Ok(digest));
        assert_eq!(parse_fingerprint(&text.replace(':', "")), Ok(digest));
        assert_eq!(
            parse_fingerprint(&format!("sha256 Fingerprint={text}")),
            Ok(digest)
        );
    }

    #[test]
    fn bad_fingerprints() {
        assert!(parse_fingerprint("").is_err());
        assert!(parse_fingerprint("AB:CD").is_err());
        assert!(parse_fingerprint(&"G".repeat(64)).is_err());
        assert!(parse_fingerprint(&"é".repeat(32)).is_err());
        // from_str_radix would take a sign: "+a" is not a hex pair.
        assert!(parse_fingerprint(&"+a".repeat(32)).is_err());
        let fp = fingerprint_text(&sha256(b"abc"));
        // Colons between every pair, or none.
        assert!(parse_fingerprint(&fp.replacen(':', "", 1)).is_err());
        assert!(parse_fingerprint(&fp.replace(':', "-")).is_err());
        assert!(parse_fingerprint(&format!(":{}", fp.replace(':', ""))).is_err());
        assert!(parse_fingerprint(&fp.replace(':', " ")).is_err());
        assert!(parse_fingerprint(&format!("{fp}:00")).is_err());
        assert!(parse_fingerprint(&format!("sha1 Fingerprint={fp}")).is_err());
    }

    #[test]
    fn pasted_lines_are_accepted() {
        let digest = sha256(b"abc");
        let fp = fingerprint_text(&digest);
        for line in [
            format!("stls: sha256 fingerprint {fp}"),
            format!("sha256 fingerprint {fp}"),
            format!("SHA256 Fingerprint={fp}"),
            format!("sha256:{}", fp.replace(':', "").to_lowercase()),
            format!("  {fp}\n"),
        ] {
            assert_eq!(parse_fingerprint(&line), Ok(digest), "{line}");
        }
    }
}
