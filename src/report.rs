//! What stls says on stderr: levels (`-q`, `-v`), one-line messages with the `stls:` prefix,
//! and escaping of every string a peer controls (`describe` says what `-v` shows).

use std::fmt::Display;
use std::io::Write;
use std::sync::atomic::{AtomicI8, Ordering};

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
/// A message of several lines (a certificate under `-v`) has `stls: ` before each, so every
/// line can be told from the peer's bytes and filtered by its prefix.
fn line(prefix: &str, msg: impl Display) {
    let msg = msg.to_string();
    let mut text = String::with_capacity(msg.len() + 16);
    for (i, part) in msg.split('\n').enumerate() {
        text.push_str("stls: ");
        if i == 0 {
            text.push_str(prefix);
        }
        text.push_str(part);
        text.push('\n');
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// What a line is about: `event` in `--log-format json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code, reason = "each is said as its place in the loops comes in")]
pub(crate) enum Event {
    Listening,
    Accepted,
    Established,
    Closed,
    Refused,
    Reloaded,
    Draining,
    Stopped,
}

/// A line about `event`, shown unless `-q`.
pub(crate) fn note(_event: Event, msg: impl Display) {
    info(msg);
}

/// A warning about `event`: always shown.
pub(crate) fn note_warn(_event: Event, msg: impl Display) {
    warn(msg);
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
/// (see [`is_invisible`]): `\u{202e}`. A backslash is doubled, so the text reads back
/// exactly: a real newline (`\n`) and a backslash followed by `n` (`\\n`) look different.
pub fn escape(text: &str) -> String {
    escape_with(text, &[], false)
}

/// One item of a list whose items are separated by commas (the names of a certificate):
/// escaped as [`escape`] does, and its commas too (`\,`), so that an item cannot pass for
/// several.
pub(crate) fn escape_item(text: &str) -> String {
    escape_with(text, &[','], false)
}

/// [`escape`] for the environment of an `-e`/`-c` child: every control character as
/// `\u{a}`, none as `\n`, `\t` or `\r`, which `echo` in sh (dash) or `printf %b` would turn
/// back into control characters (`\u{` is not theirs, and `\\` only gives `\`). `also`:
/// separators to escape with a backslash too.
pub(crate) fn escape_env(text: &str, also: &[char]) -> String {
    escape_with(text, also, true)
}

/// The escaping itself: `also` escaped by a backslash; `unicode_only`: no short forms.
fn escape_with(text: &str, also: &[char], unicode_only: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && !unicode_only {
            out.extend(c.escape_default());
        } else if c.is_control() || is_invisible(c) {
            out.extend(c.escape_unicode());
        } else if c == '\\' || also.contains(&c) {
            out.push('\\');
            out.push(c);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters() {
        assert_eq!(escape("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\n");
        assert_eq!(escape("plain é"), "plain é");
    }

    #[test]
    fn escaped_text_reads_back_exactly() {
        // A real newline and a backslash followed by n differ once escaped.
        assert_eq!(escape("ali\nce"), r"ali\nce");
        assert_eq!(escape(r"ali\nce"), r"ali\\nce");
        assert_eq!(
            escape_item("a.example,DNS:b.example"),
            r"a.example\,DNS:b.example"
        );
        assert_eq!(escape_item(r"a\,b"), r"a\\\,b");
    }

    #[test]
    fn the_environment_has_nothing_a_shell_decodes() {
        assert_eq!(escape_env("ali\nce", &[]), r"ali\u{a}ce");
        assert_eq!(escape_env(r"ali\nce", &[]), r"ali\\nce");
        // Nothing that sh's echo or printf %b decodes: \n \t \r \0 \b \c \f \v.
        let all: String = (0u8..0x20).map(char::from).collect();
        let shown = escape_env(&all, &[]);
        for seq in [r"\n", r"\t", r"\r", r"\0", r"\b", r"\c", r"\f", r"\v"] {
            assert!(!shown.contains(seq), "{shown}");
        }
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
}
