//! What stls says on stderr: levels (`-q`, `-v`), one-line messages with the `stls:` prefix,
//! and escaping of every string a peer controls (`describe` says what `-v` shows).

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicI8, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Map, Value};

static LEVEL: AtomicI8 = AtomicI8::new(0);
static JSON: AtomicBool = AtomicBool::new(false);

/// `-q` gives -1 (errors and warnings only), `-v` 1, `-vv` 2.
pub(crate) fn set_level(quiet: bool, verbose: u8) {
    let level = if quiet { -1 } else { verbose.min(10) as i8 };
    LEVEL.store(level, Ordering::Relaxed);
}

pub(crate) fn level() -> i8 {
    LEVEL.load(Ordering::Relaxed)
}

/// `--log-format json`: every line is one JSON object.
pub(crate) fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

/// Whether lines are JSON objects (`--log-format json`).
pub(crate) fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// How much a line matters: `level` in `--log-format json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// Write one line to stderr in one write. A diagnostic that cannot be written (stderr closed,
/// full for more than a moment, or its reader gone) is dropped: it must never stop the
/// transfer, let alone panic.
/// As text, a message of several lines (a certificate under `-v`) has `stls: ` before each,
/// so every line can be told from the peer's bytes and filtered by its prefix; as JSON it is
/// one object whatever its lines, `event` saying what it is about (`message` for a line
/// without a more specific one, `error` for the error that ends the run).
fn line(level: Level, event: &str, msg: impl Display, fields: Option<Map<String, Value>>) {
    let msg = msg.to_string();
    let text = if json() {
        json_line(level, event, msg, fields)
    } else {
        let prefix = if level == Level::Warn {
            "warning: "
        } else {
            ""
        };
        let mut text = String::with_capacity(msg.len() + 16);
        for (i, part) in msg.split('\n').enumerate() {
            text.push_str("stls: ");
            if i == 0 {
                text.push_str(prefix);
            }
            text.push_str(part);
            text.push('\n');
        }
        text
    };
    write_stderr(&text, level == Level::Error);
}

/// Lines dropped since stderr last took one: said before the next line it takes.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Write `text` to stderr, waiting for it to take each piece at most a moment — longer for
/// the error that ends the run (`last`) — and not at all while lines are being dropped: a
/// reader that stopped reading a pipe must not hold up the connections. What stderr does not
/// take in time is dropped, and counted.
fn write_stderr(text: &str, last: bool) {
    let mut err = std::io::stderr().lock();
    let dropping = DROPPED.load(Ordering::Relaxed) > 0;
    let wait = match (last, dropping) {
        (true, _) => Duration::from_secs(1),
        (false, true) => Duration::ZERO,
        (false, false) => Duration::from_millis(100),
    };
    if dropping && writable(&err, wait) {
        let n = DROPPED.swap(0, Ordering::Relaxed);
        let _ = err.write_all(format!("stls: {n} lines dropped: stderr was full\n").as_bytes());
    }
    // A pipe takes up to PIPE_BUF bytes at once without blocking when it says it is writable.
    for piece in text.as_bytes().chunks(4096) {
        if !writable(&err, wait) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if err.write_all(piece).is_err() {
            return;
        }
    }
}

/// Whether stderr takes bytes now, or within `wait`.
fn writable(err: &impl std::os::fd::AsFd, wait: Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    if !may_block() {
        return true;
    }
    let mut fds = [PollFd::new(err, PollFlags::OUT)];
    let timeout = Timespec {
        tv_sec: wait.as_secs() as i64,
        tv_nsec: i64::from(wait.subsec_nanos()),
    };
    loop {
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => return false,
            // Writable, or an error the write will meet (a reader gone: EPIPE, ignored).
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return true,
        }
    }
}

/// Whether a write to stderr can wait for a reader: a pipe, a socket or a terminal; a file
/// or /dev/null takes every line at once, with no poll(2) before it.
fn may_block() -> bool {
    static MAY_BLOCK: OnceLock<bool> = OnceLock::new();
    *MAY_BLOCK.get_or_init(|| {
        use rustix::fs::FileType;
        let err = std::io::stderr();
        match rustix::fs::fstat(&err) {
            Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => false,
                FileType::CharacterDevice => err.is_terminal(),
                _ => true,
            },
            Err(_) => true,
        }
    })
}

/// One line of `--log-format json`: `ts`, `level`, `event`, `msg`, then `fields`.
fn json_line(level: Level, event: &str, msg: String, fields: Option<Map<String, Value>>) -> String {
    let mut obj = Map::new();
    obj.insert("ts".into(), Value::String(now_rfc3339()));
    obj.insert("level".into(), level.name().into());
    obj.insert("event".into(), event.into());
    obj.insert("msg".into(), Value::String(msg));
    if let Some(fields) = fields {
        obj.extend(fields);
    }
    // A map of strings and numbers always serialises.
    let mut text = Value::Object(obj).to_string();
    text.push('\n');
    text
}

/// Now, as RFC 3339 in UTC with milliseconds: `2026-01-31T23:59:59.123Z`.
fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
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

impl Event {
    fn name(self) -> &'static str {
        match self {
            Event::Listening => "listening",
            Event::Accepted => "accepted",
            Event::Established => "established",
            Event::Closed => "closed",
            Event::Refused => "refused",
            Event::Reloaded => "reloaded",
            Event::Draining => "draining",
            Event::Stopped => "stopped",
        }
    }
}

/// A line about `event`, shown unless `-q`.
pub(crate) fn note(event: Event, msg: impl Display) {
    if level() >= 0 {
        line(Level::Info, event.name(), msg, None);
    }
}

/// A warning about `event`: always shown.
pub(crate) fn note_warn(event: Event, msg: impl Display) {
    line(Level::Warn, event.name(), msg, None);
}

/// A line shown unless `-q`.
pub(crate) fn info(msg: impl Display) {
    if level() >= 0 {
        line(Level::Info, "message", msg, None);
    }
}

/// A line shown with `-v`.
pub(crate) fn verbose(msg: impl Display) {
    if level() >= 1 {
        line(Level::Debug, "message", msg, None);
    }
}

/// Always shown.
pub(crate) fn warn(msg: impl Display) {
    line(Level::Warn, "message", msg, None);
}

/// Always shown: the one line for the error that ends the run.
pub(crate) fn error(msg: impl Display) {
    line(Level::Error, "error", msg, None);
}

/// The client certificate of a connection, as its log line gives it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientCert {
    /// The subject's one common name (none if it has none, or several).
    pub cn: Option<String>,
    /// Every subjectAltName as `DNS:x`, `IP:y`, …
    pub sans: Vec<String>,
    /// The certificate's SHA-256 fingerprint.
    pub sha256: String,
}

/// What a connection's log lines say of it (`--log-format json`); strings are escaped.
#[derive(Clone, Debug, Default)]
pub(crate) struct Summary {
    /// The client accepted (`listen`; `connect --from`: the plain client), else the server.
    pub peer: String,
    pub sni: Option<String>,
    pub alpn: Option<String>,
    pub version: Option<String>,
    pub cipher: Option<String>,
    pub client: Option<ClientCert>,
    /// From the peer, and to it (plaintext).
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: u64,
}

impl Summary {
    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("peer".into(), self.peer.clone().into());
        for (key, value) in [
            ("sni", &self.sni),
            ("alpn", &self.alpn),
            ("version", &self.version),
            ("cipher", &self.cipher),
        ] {
            m.insert(key.into(), value.clone().map_or(Value::Null, Value::String));
        }
        if let Some(c) = &self.client {
            let mut client = Map::new();
            client.insert("cn".into(), c.cn.clone().map_or(Value::Null, Value::String));
            client.insert("sans".into(), c.sans.clone().into());
            client.insert("sha256".into(), c.sha256.clone().into());
            m.insert("client".into(), Value::Object(client));
        }
        m.insert("bytes_in".into(), self.bytes_in.into());
        m.insert("bytes_out".into(), self.bytes_out.into());
        m.insert("duration_ms".into(), self.duration_ms.into());
        m
    }
}

/// How a connection ended, for its `closed` or `refused` line: `outcome` (the name
/// metrics count it by), `status` (the exit class's number; 0 when it ended well) and
/// `reason` (the error; none when it ended well).
pub(crate) struct End<'a> {
    pub outcome: &'a str,
    pub status: u8,
    pub reason: Option<String>,
}

/// `--log-format json`: the one `closed` or `refused` line of a connection, at every level
/// (even `-q`): info when it ended well, else warn. Nothing as text, whose lines about a
/// connection's end are said where they always were.
pub(crate) fn connection_end(event: Event, summary: &Summary, end: &End<'_>) {
    if !json() {
        return;
    }
    let mut fields = summary.fields();
    fields.insert("outcome".into(), end.outcome.into());
    fields.insert("status".into(), end.status.into());
    fields.insert(
        "reason".into(),
        end.reason.clone().map_or(Value::Null, Value::String),
    );
    let level = if end.reason.is_none() {
        Level::Info
    } else {
        Level::Warn
    };
    let msg = match &end.reason {
        Some(reason) => format!("{}: {reason}", summary.peer),
        None => format!(
            "{}: closed after {:.3}s: {} bytes received, {} bytes sent",
            summary.peer,
            summary.duration_ms as f64 / 1000.0,
            summary.bytes_in,
            summary.bytes_out
        ),
    };
    line(level, event.name(), msg, Some(fields));
}

/// `--log-format json` with `-v`: a connection's `accepted` or `established` line, with
/// what is known of it then.
pub(crate) fn connection_event(event: Event, summary: &Summary, msg: impl Display) {
    if connection_events() {
        line(Level::Debug, event.name(), msg, Some(summary.fields()));
    }
}

/// Whether [`connection_event`] says anything: the caller need not gather a summary
/// otherwise.
pub(crate) fn connection_events() -> bool {
    json() && level() >= 1
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
    fn timestamps_are_rfc3339_utc() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("in range");
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn a_json_line_is_one_object_whatever_its_lines() {
        let mut fields = Map::new();
        fields.insert("peer".into(), "127.0.0.1:1".into());
        let text = json_line(Level::Debug, "message", "a\nb \"c\"".into(), Some(fields));
        assert!(text.ends_with('\n'));
        assert_eq!(text.matches('\n').count(), 1);
        let v: Value = serde_json::from_str(&text).expect("one JSON object");
        assert_eq!(v["msg"], "a\nb \"c\"");
        assert_eq!(v["level"], "debug");
        assert_eq!(v["event"], "message");
        assert_eq!(v["peer"], "127.0.0.1:1");
    }

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
