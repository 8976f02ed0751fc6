//! Names people type: host names, converted from Unicode (IDN) to their ASCII form (A-labels)
//! so that resolution, SNI and the certificate's name check all see the one name DNS and
//! certificates use, and the subjectAltName values of `stls cert --san`.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use rustls::pki_types::{DnsName, ServerName};

use crate::report::{escape, is_invisible};

/// A host name in ASCII: an international name (`bücher.example`) becomes its A-label form
/// (`xn--bcher-kva.example`); an ASCII name or address literal is returned unchanged (it is
/// checked where it is used). An international name that IDNA rejects, or whose ASCII form
/// is no server name (all digits, say), is an error.
pub fn host_to_ascii(text: &str) -> Result<Cow<'_, str>, String> {
    if text.is_ascii() {
        return Ok(Cow::Borrowed(text));
    }
    match to_a_labels(text) {
        Some(ascii) if ServerName::try_from(ascii.as_str()).is_ok() => Ok(Cow::Owned(ascii)),
        _ => Err(format!(
            "'{}' is not a valid international domain name (IDNA)",
            escape(text)
        )),
    }
}

/// UTS #46 processing with the rules of DNS host names: letters, digits and hyphens only
/// (STD3), no hyphen first or last in a label, labels of 1–63 bytes, at most 253 in all.
/// The result is lower case.
fn to_a_labels(text: &str) -> Option<String> {
    Uts46::new()
        .to_ascii(
            text.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
            DnsLength::Verify,
        )
        .ok()
        .map(Cow::into_owned)
}

/// A subjectAltName for `stls cert --san`, in the form written to the certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum San {
    Ip(IpAddr),
    /// An ASCII DNS name, lower case, possibly `*.` and a name of two labels or more.
    Dns(String),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Ip(ip) => ip.fmt(f),
            San::Dns(name) => f.write_str(name),
        }
    }
}

/// Check a `--san` value: an IPv4 or IPv6 address, a DNS name (international names become
/// A-labels), or a wildcard `*.` in front of a name of two labels or more.
pub fn parse_san(text: &str) -> Result<San, String> {
    let bad = |why: &str| format!("--san '{}': {why}", escape(text));
    if text.is_empty() {
        return Err(bad("empty; give a DNS name or an IP address"));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(San::Ip(ip));
    }
    if text.chars().any(|c| c.is_control() || is_invisible(c)) {
        return Err(bad("contains a control or invisible character"));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(bad("contains a space; a DNS name has none"));
    }
    let (wildcard, name) = match text.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if name.contains('*') {
        return Err(bad(
            "a wildcard is allowed only as the whole first label, followed by a domain of two \
             labels or more, as in *.example.com",
        ));
    }
    let Some(ascii) = to_a_labels(name) else {
        return Err(bad(if name.is_ascii() {
            "not a valid DNS name (labels of letters, digits and hyphens, 1 to 63 characters \
             each, not starting or ending with a hyphen, separated by single dots)"
        } else {
            "not a valid international domain name (IDNA)"
        }));
    };
    // What is left to refuse is a name rustls would never match: one whose last label is a
    // number (decimal or 0x hex), which only an IP address may look like.
    if DnsName::try_from(ascii.as_str()).is_err() {
        return Err(bad(
            "neither an IP address nor a DNS name (a name's last label is not a number)",
        ));
    }
    if wildcard {
        if !ascii.contains('.') {
            return Err(bad(
                "a wildcard must be followed by a domain of two labels or more, as in \
                 *.example.com",
            ));
        }
        return Ok(San::Dns(format!("*.{ascii}")));
    }
    Ok(San::Dns(ascii))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(name: &str) -> Result<San, String> {
        Ok(San::Dns(name.to_string()))
    }

    #[test]
    fn hosts() {
        assert_eq!(
            host_to_ascii("bücher.example").as_deref(),
            Ok("xn--bcher-kva.example")
        );
        assert_eq!(host_to_ascii("Example.COM").as_deref(), Ok("Example.COM"));
        assert_eq!(host_to_ascii("::1").as_deref(), Ok("::1"));
        assert!(host_to_ascii("bü cher.example").is_err());
        assert!(host_to_ascii("bücher..example").is_err());
        assert!(host_to_ascii("-bücher.example").is_err());
    }

    #[test]
    fn sans_accepted() {
        assert_eq!(parse_san("localhost"), dns("localhost"));
        assert_eq!(parse_san("Example.com"), dns("example.com"));
        assert_eq!(parse_san("*.example.com"), dns("*.example.com"));
        assert_eq!(parse_san("bücher.test"), dns("xn--bcher-kva.test"));
        assert_eq!(parse_san("*.bücher.test"), dns("*.xn--bcher-kva.test"));
        assert_eq!(parse_san("127.0.0.1"), Ok(San::Ip([127, 0, 0, 1].into())));
        assert_eq!(
            parse_san("::1"),
            Ok(San::Ip(std::net::Ipv6Addr::LOCALHOST.into()))
        );
        assert_eq!(parse_san("a-b.1x"), dns("a-b.1x"));
    }

    #[test]
    fn sans_rejected_with_the_reason() {
        for (text, why) in [
            ("", "empty"),
            ("a b", "contains a space"),
            ("*", "wildcard"),
            ("*.com", "two labels"),
            ("a.*.com", "wildcard"),
            ("f*.example.com", "wildcard"),
            ("a\u{1b}[2J", "control"),
            ("a\u{202e}b", "invisible"),
            ("a..b", "not a valid DNS name"),
            ("-a.example", "not a valid DNS name"),
            ("a_b.example", "not a valid DNS name"),
            ("example.com.", "not a valid DNS name"),
            (&"a".repeat(64), "not a valid DNS name"),
            ("256.1.1.1", "neither an IP address"),
            ("12.0.0x1", "neither an IP address"),
            ("xn--zz-.example", "not a valid DNS name"),
            ("bü_cher.test", "international"),
        ] {
            let err = parse_san(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
            assert!(err.starts_with("--san '"), "{err}");
        }
    }
}
