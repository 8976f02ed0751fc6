//! The parsers of what users type, fed many deterministic pseudo-random and mutated inputs
//! (Unicode, control and invisible characters, very long strings): none may panic, and what
//! one accepts must satisfy its invariants and parse back to itself. A failure names the seed
//! and the input, so it can be reproduced.
//!
//! Parsers: `--pin` fingerprints, `--san` values, international host names, connect targets
//! and listen addresses, `--allow-san` values, and the escaping of peer-controlled text. And
//! the dialogues before TLS, whose input is a peer's: proxies' replies (HTTP CONNECT, SOCKS4a,
//! SOCKS5) and XMPP's XML, fed in random pieces as reads bring them (the fuzz targets
//! `proxy_replies` and `xmpp` do the same with a fuzzer).

use std::net::IpAddr;

use rustls::pki_types::ServerName;
use stls::AllowSan;
use stls::{client_hello_sni, parse_listen, parse_proxy_header, parse_target};
use stls::{escape, is_invisible};
use stls::{feed, Dialogue, Fed};
use stls::{fingerprint_text, parse_fingerprint};
use stls::{host_to_ascii, parse_san, San};

/// How many inputs each run tries.
const CASES: usize = 100_000;

/// xorshift64*: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Characters that matter to one parser or another, and some that should matter to none.
const CHARS: &[char] = &[
    '0',
    '1',
    '9',
    'a',
    'b',
    'f',
    'A',
    'F',
    'g',
    'x',
    'n',
    'z',
    'Z',
    ':',
    '.',
    '-',
    '*',
    '_',
    ' ',
    '=',
    '+',
    '/',
    '[',
    ']',
    '@',
    '?',
    '#',
    '%',
    '\'',
    '\\',
    '\t',
    '\n',
    '\r',
    '\0',
    '\u{1b}',
    '\u{7f}',
    '\u{85}',
    'ü',
    'é',
    'ß',
    'İ',
    '中',
    'ا',
    'ﬀ',
    'Ａ',
    '。',
    '\u{301}',
    '\u{200b}',
    '\u{200d}',
    '\u{202e}',
    '\u{2066}',
    '\u{feff}',
    '\u{2028}',
    '\u{e0041}',
    '\u{ad}',
    '\u{fffd}',
    '😀',
    '\u{10ffff}',
];

/// Valid and nearly valid inputs to mutate.
fn seeds() -> Vec<String> {
    let fp = fingerprint_text(&[0xab; 32]);
    vec![
        fp.clone(),
        fp.replace(':', ""),
        fp.to_lowercase(),
        format!("stls: sha256 fingerprint {fp}"),
        format!("sha256 Fingerprint={fp}"),
        format!("sha256:{}", fp.replace(':', "")),
        "+a".repeat(32),
        "bücher.example".into(),
        "xn--bcher-kva.example".into(),
        "*.example.com".into(),
        "*.bücher.test".into(),
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
        "2001:db8::1".into(),
        "example.com:443".into(),
        "[::1]:8443".into(),
        "https://example.com/path".into(),
        "imaps://user@mail.example:993".into(),
        "8443".into(),
        "a-b.c-d.example".into(),
        "dns:alice.example".into(),
        "IP:2001:db8::1".into(),
        "email:alice@corp".into(),
        "uri:spiffe://corp/alice".into(),
    ]
}

fn random_text(rng: &mut Rng, len: usize) -> String {
    (0..len).map(|_| *rng.pick(CHARS)).collect()
}

/// A seed changed in one to four places: insert, delete, replace, duplicate, cut, recase.
fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(chars.len() + 1);
        match rng.below(6) {
            0 => chars.insert(at, *rng.pick(CHARS)),
            1 if at < chars.len() => {
                chars.remove(at);
            }
            2 if at < chars.len() => chars[at] = *rng.pick(CHARS),
            3 => {
                let tail: Vec<char> = chars[at..].iter().take(8).copied().collect();
                chars.splice(at..at, tail);
            }
            4 => chars.truncate(at),
            _ => {
                if let Some(c) = chars.get_mut(at) {
                    *c = if c.is_lowercase() {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    };
                }
            }
        }
    }
    chars.into_iter().collect()
}

fn input(rng: &mut Rng, seeds: &[String]) -> String {
    match rng.below(100) {
        0..=49 => {
            let seed = rng.pick(seeds).clone();
            mutate(rng, &seed)
        }
        50..=59 => {
            let (a, b) = (rng.pick(seeds).clone(), rng.pick(seeds).clone());
            mutate(rng, &format!("{a}{b}"))
        }
        60..=98 => {
            let len = rng.below(40);
            random_text(rng, len)
        }
        _ => {
            // Long (up to 10,000 characters): a seed or a label repeated past every limit.
            let unit = if rng.below(2) == 0 {
                rng.pick(seeds).clone()
            } else {
                random_text(rng, 3) + "."
            };
            unit.repeat(1 + rng.below(100))
                .chars()
                .take(10_000)
                .collect()
        }
    }
}

/// Nothing a terminal would act on or hide.
fn is_printable(text: &str) -> bool {
    !text.chars().any(|c| c.is_control() || is_invisible(c))
}

fn check_fingerprint(text: &str) {
    match parse_fingerprint(text) {
        Ok(fp) => {
            let canonical = fingerprint_text(&fp);
            assert_eq!(parse_fingerprint(&canonical), Ok(fp));
            assert_eq!(
                parse_fingerprint(&canonical.replace(':', "").to_lowercase()),
                Ok(fp)
            );
            let digits = text.chars().filter(char::is_ascii_hexdigit).count();
            assert!(digits >= 64, "accepted with {digits} hex digits");
            assert!(!text.contains('+'), "a sign is not a hex digit");
        }
        Err(msg) => {
            assert!(msg.starts_with("--pin '"), "{msg}");
            assert!(is_printable(&msg), "unescaped: {msg:?}");
        }
    }
}

fn check_san(text: &str) {
    match parse_san(text) {
        Ok(san) => {
            let written = san.to_string();
            assert!(written.is_ascii());
            assert_eq!(parse_san(&written), Ok(san.clone()), "round trip");
            match &san {
                San::Ip(ip) => assert_eq!(text.parse::<IpAddr>().ok(), Some(*ip)),
                San::Dns(name) => {
                    assert!(!name.bytes().any(|b| b.is_ascii_uppercase()), "{name}");
                    let base = name.strip_prefix("*.").unwrap_or(name);
                    assert!(!base.contains('*'), "{name}");
                    assert!(base.len() <= 253, "{name}");
                    assert!(
                        base.split('.')
                            .all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-')),
                        "{name}"
                    );
                    assert!(
                        ServerName::try_from(base.to_string()).is_ok(),
                        "rustls refuses {base}"
                    );
                }
            }
        }
        Err(msg) => {
            assert!(msg.starts_with("--san '"), "{msg}");
            assert!(is_printable(&msg), "unescaped: {msg:?}");
        }
    }
}

fn check_host(text: &str) {
    match host_to_ascii(text) {
        Ok(host) => {
            assert!(host.is_ascii());
            if text.is_ascii() {
                assert_eq!(host, text, "ASCII is left as it is");
            } else {
                assert!(
                    ServerName::try_from(host.to_string()).is_ok(),
                    "rustls refuses {host}"
                );
            }
            assert_eq!(host_to_ascii(&host).as_deref(), Ok(&*host), "idempotent");
        }
        Err(msg) => assert!(is_printable(&msg), "unescaped: {msg:?}"),
    }
}

fn check_addresses(text: &str) {
    if let Ok(hp) = parse_target(text, None) {
        assert_ne!(hp.port, 0);
        assert_eq!(parse_target(&hp.to_string(), None), Ok(hp));
    }
    if let Some((host, port)) = text.split_once(' ') {
        let _ = parse_target(host, Some(port));
    }
    let _ = parse_listen(text);
}

fn check_escape(text: &str) {
    let shown = escape(text);
    assert!(is_printable(&shown), "unescaped: {shown:?}");
    if is_printable(text) && !text.contains('\\') {
        assert_eq!(shown, text, "printable text is left as it is");
    }
    assert_eq!(
        unescape(&shown).as_deref(),
        Some(text),
        "reads back: {shown}"
    );
}

/// The text `escape` was given: `\\` is a backslash, `\n` `\r` `\t` those controls,
/// `\u{HEX}` a character; any other backslash cannot come from `escape`.
fn unescape(shown: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = shown;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let short = [('\\', '\\'), ('n', '\n'), ('r', '\r'), ('t', '\t')]
            .into_iter()
            .find(|(c, _)| after.starts_with(*c));
        if let Some((_, c)) = short {
            out.push(c);
            rest = &after[1..];
        } else {
            let (hex, more) = after.strip_prefix("u{")?.split_once('}')?;
            out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
            rest = more;
        }
    }
    out.push_str(rest);
    Some(out)
}

fn check_allow_san(text: &str) {
    match AllowSan::parse(text) {
        Ok(allow) => assert_eq!(AllowSan::parse(&allow.to_string()), Ok(allow), "round trip"),
        Err(msg) => {
            assert!(msg.starts_with("--allow-san '"), "{msg}");
            assert!(is_printable(&msg), "unescaped: {msg:?}");
        }
    }
}

/// Feed `check` the same [`CASES`] inputs every run; a failure names the case and input.
fn fuzz(check: fn(&str)) {
    let seed = 0x5eed_f00d;
    let mut rng = Rng(seed);
    let seeds = seeds();
    for case in 0..CASES {
        let text = input(&mut rng, &seeds);
        if std::panic::catch_unwind(|| check(&text)).is_err() {
            panic!("seed {seed:#x}, case {case}: input {text:?}");
        }
    }
}

#[test]
fn pin_values() {
    fuzz(check_fingerprint);
}

#[test]
fn san_values() {
    fuzz(check_san);
}

#[test]
fn host_names() {
    fuzz(check_host);
}

#[test]
fn addresses() {
    fuzz(check_addresses);
}

#[test]
fn escaping() {
    fuzz(check_escape);
}

#[test]
fn allow_san_values() {
    fuzz(check_allow_san);
}

#[test]
fn seeds_are_accepted_where_they_should_be() {
    // The mutations start from valid values: make sure they are, or the run tests little.
    let fp = fingerprint_text(&[0xab; 32]);
    for line in [
        fp.clone(),
        format!("stls: sha256 fingerprint {fp}"),
        format!("sha256 Fingerprint={fp}"),
    ] {
        assert_eq!(parse_fingerprint(&line), Ok([0xab; 32]), "{line}");
    }
    for san in ["bücher.example", "*.example.com", "::1", "a-b.c-d.example"] {
        assert!(parse_san(san).is_ok(), "{san}");
    }
    assert!(parse_target("[::1]:8443", None).is_ok());
    for allow in [
        "dns:alice.example",
        "IP:2001:db8::1",
        "email:alice@corp",
        "alice",
    ] {
        assert!(AllowSan::parse(allow).is_ok(), "{allow}");
    }
    assert!(host_to_ascii("bücher.example").is_ok());
}

/// Every dialogue [`feed`] plays.
const DIALOGUES: [Dialogue; 7] = [
    Dialogue::HttpProxy { credentials: false },
    Dialogue::HttpProxy { credentials: true },
    Dialogue::Socks4a,
    Dialogue::Socks5 { credentials: false },
    Dialogue::Socks5 { credentials: true },
    Dialogue::XmppClient,
    Dialogue::XmppServer,
];

/// Replies and streams, each with whether it reaches TLS (the others are refusals a real
/// peer could send), with characters of two, three and four bytes in the XML.
fn dialogue_seeds(dialogue: Dialogue) -> Vec<(Vec<u8>, bool)> {
    let text = |t: &str, go: bool| (t.as_bytes().to_vec(), go);
    match dialogue {
        Dialogue::HttpProxy { .. } => vec![
            text("HTTP/1.1 200 Connection established\r\n\r\n", true),
            text("HTTP/1.0 204 No Content\r\nVia: 1.1 proxy\r\n\r\n", true),
            text("HTTP/1.1 200 OK\r\n\r\n\x16\x03\x03\x00\x02", true),
            text("HTTP/1.1 2xx OK\r\n\r\n", false),
            text(
                "HTTP/1.1 407 Proxy Authentication Required\r\n\
                 Proxy-Authenticate: Basic realm=\"p\"\r\n\r\n",
                false,
            ),
        ],
        Dialogue::Socks4a => vec![
            (vec![0, 0x5a, 1, 187, 127, 0, 0, 1], true),
            (vec![0, 0x5b, 0, 0, 0, 0, 0, 0], false),
        ],
        Dialogue::Socks5 { credentials } => {
            let method: &[u8] = if credentials { &[5, 2, 1, 0] } else { &[5, 0] };
            let named = |reply: u8| [&[5, reply, 0, 3, 9][..], b"localhost", &[1, 187]].concat();
            let ipv6 = [&[5, 0, 0, 4][..], &[0; 16], &[1, 187]].concat();
            [
                (vec![5, 0, 0, 1, 127, 0, 0, 1, 1, 187], true),
                (ipv6, true),
                (named(0), true),
                (named(4), false),
                // A failure without an address, or one of an unknown type.
                (vec![5, 1], false),
                (vec![5, 4, 0, 0], false),
                (vec![5, 0, 0, 9], false),
            ]
            .into_iter()
            .map(|(connect, go)| ([method, &connect].concat(), go))
            .collect()
        }
        Dialogue::XmppClient => vec![
            text(
                "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
                 xmlns:stream='http://etherx.jabber.org/streams' from='bücher.example' \
                 id='中文😀' version='1.0'><stream:features>\
                 <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
                 <mechanisms><mechanism>É</mechanism></mechanisms></stream:features>\n\
                 <proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
                true,
            ),
            text(
                "<stream:stream id='é'><stream:features>\
                 <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>\
                 <proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'>😀</proceed>",
                true,
            ),
            text("<stream:stream id='é'><stream:features/>", false),
        ],
        Dialogue::XmppServer => vec![
            text(
                "<?xml version='1.0'?><stream:stream to='bücher.example' xmlns='jabber:client' \
                 xmlns:stream='http://etherx.jabber.org/streams' version='1.0' \
                 xml:lang='中文'>\n<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
                true,
            ),
            text(
                "<stream:stream to='😀'> <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>\
                 </starttls>",
                true,
            ),
            // More than 1 KiB before any element, however it arrives.
            (
                [&[b'x'; 1100][..], b"<stream:stream to='a'><starttls/>"].concat(),
                false,
            ),
        ],
    }
}

/// Bytes that matter to one dialogue or another: delimiters, SOCKS codes, the lead and
/// continuation bytes of UTF-8, bytes never valid in it, a TLS record's start.
const BYTES: &[u8] = &[
    0, 1, 2, 3, 4, 5, 0x5a, 0x16, b'<', b'>', b'/', b'\'', b'"', b'=', b' ', b'\r', b'\n', b'2',
    b'0', b'H', b':', b's', 0x80, 0xa9, 0xbf, 0xc3, 0xe4, 0xf0, 0x9f, 0xc0, 0xf8, 0xff,
];

/// A seed changed in one to four places: insert, delete, replace, duplicate, cut.
fn mutate_bytes(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(5) {
            0 => bytes.insert(at, *rng.pick(BYTES)),
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            2 if at < bytes.len() => bytes[at] = *rng.pick(BYTES),
            3 => {
                let tail: Vec<u8> = bytes[at..].iter().take(16).copied().collect();
                bytes.splice(at..at, tail);
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

fn dialogue_input(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    match rng.below(100) {
        0..=9 => rng.pick(seeds).clone(),
        10..=69 => {
            let seed = rng.pick(seeds).clone();
            mutate_bytes(rng, &seed)
        }
        70..=79 => {
            let (a, b) = (rng.pick(seeds).clone(), rng.pick(seeds).clone());
            mutate_bytes(rng, &[a, b].concat())
        }
        _ => (0..rng.below(64)).map(|_| *rng.pick(BYTES)).collect(),
    }
}

/// `input` cut at random places into pieces of 1 to 16 bytes (sometimes all of one byte).
fn random_pieces<'a>(rng: &mut Rng, input: &'a [u8]) -> Vec<&'a [u8]> {
    let most = if rng.below(4) == 0 { 1 } else { 16 };
    let mut pieces = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at((1 + rng.below(most)).min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// What the dialogues promise whatever the peer sends: no panic; a failure is one printable
/// line; what the whole input brings to TLS, any cutting of it into reads brings there too;
/// and a proxy's reply is read the same however it is cut.
fn check_dialogue(dialogue: Dialogue, input: &[u8], pieces: &[&[u8]]) {
    let whole = feed(dialogue, [input]);
    let cut = feed(dialogue, pieces.iter().copied());
    for fed in [&whole, &cut] {
        if let Fed::Failed(msg) = fed {
            assert!(is_printable(msg), "unescaped: {msg:?}");
        }
    }
    let proxy = !matches!(dialogue, Dialogue::XmppClient | Dialogue::XmppServer);
    if proxy || matches!(whole, Fed::Go(_)) {
        assert_eq!(cut, whole, "fed in {} pieces", pieces.len());
    }
}

/// Feed each dialogue `cases` inputs in random pieces; a failure names the case and input.
fn fuzz_dialogues(dialogues: &[Dialogue], cases: usize) {
    let seed = 0xd1a1_0605;
    let mut rng = Rng(seed);
    for &dialogue in dialogues {
        let seeds: Vec<Vec<u8>> = dialogue_seeds(dialogue).into_iter().map(|s| s.0).collect();
        for case in 0..cases {
            let input = dialogue_input(&mut rng, &seeds);
            let pieces = random_pieces(&mut rng, &input);
            if std::panic::catch_unwind(|| check_dialogue(dialogue, &input, &pieces)).is_err() {
                let sizes: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
                panic!(
                    "seed {seed:#x}, {dialogue:?} case {case}: input {:?} in pieces {sizes:?}",
                    String::from_utf8_lossy(&input)
                );
            }
        }
    }
}

/// As the fuzz target `proxy_replies`.
#[test]
fn proxy_replies() {
    fuzz_dialogues(&DIALOGUES[..5], 3000);
}

/// As the fuzz target `xmpp`.
#[test]
fn xmpp_across_reads() {
    fuzz_dialogues(&DIALOGUES[5..], 3000);
}

#[test]
fn every_dialogue_seed_reaches_tls_however_it_is_cut() {
    // Whole, and cut into two reads at every byte: a character of XML split between reads
    // is no error. A refusal is told as soon as it is complete, not after bytes that may
    // never come.
    for dialogue in DIALOGUES {
        for (seed, go) in dialogue_seeds(dialogue) {
            let whole = feed(dialogue, [&seed[..]]);
            let shown = String::from_utf8_lossy(&seed);
            assert_eq!(
                matches!(whole, Fed::Go(_)),
                go,
                "{dialogue:?} {shown:?}: {whole:?}"
            );
            assert!(
                !matches!(whole, Fed::More),
                "{dialogue:?} {shown:?}: {whole:?}"
            );
            for at in 1..seed.len() {
                let (a, b) = seed.split_at(at);
                if go {
                    assert_eq!(feed(dialogue, [a, b]), whole, "{dialogue:?} cut at {at}");
                }
            }
        }
    }
}

/// As the fuzz target `proxy_header`: PROXY headers (`listen --accept-proxy`), valid ones
/// mutated, truncated and grown: never a panic, and a header read is exactly its own bytes.
#[test]
fn proxy_headers() {
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 9, 0x13, 0x88, 0x01, 0xbb]);
    let seeds: [&[u8]; 4] = [
        b"PROXY TCP4 192.0.2.1 192.0.2.9 5000 443\r\n",
        b"PROXY TCP6 2001:db8::1 ::1 5000 443\r\n",
        b"PROXY UNKNOWN\r\n",
        &v2,
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..CASES {
        let mut input = rng.pick(&seeds).to_vec();
        for _ in 0..rng.below(4) {
            let at = rng.below(input.len() + 1);
            match rng.below(3) {
                0 if at < input.len() => input[at] = rng.next() as u8,
                1 => input.truncate(at),
                _ => input.insert(at, rng.next() as u8),
            }
        }
        let parsed = std::panic::catch_unwind(|| parse_proxy_header(&input));
        let Ok(parsed) = parsed else {
            panic!("case {case}: input {input:?}");
        };
        if let Ok(Some((n, header))) = parsed {
            assert!(n <= input.len(), "case {case}: {input:?}");
            assert_eq!(parse_proxy_header(&input[..n]), Ok(Some((n, header))));
            assert_eq!(parse_proxy_header(&input[..n - 1]), Ok(None), "{input:?}");
        }
    }
}

/// As the fuzz target `client_hello`: ClientHellos (`listen --passthrough`) made by rustls,
/// mutated, truncated and grown: never a panic.
#[test]
fn client_hellos() {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from("pass.example").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    assert_eq!(
        client_hello_sni(&hello),
        Ok(Some(Some("pass.example".to_string())))
    );
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for case in 0..CASES / 10 {
        let mut input = hello.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(input.len() + 1);
            match rng.below(3) {
                0 if at < input.len() => input[at] = rng.next() as u8,
                1 => input.truncate(at),
                _ => input.insert(at, rng.next() as u8),
            }
        }
        if std::panic::catch_unwind(|| client_hello_sni(&input)).is_err() {
            panic!("case {case}: input {input:?}");
        }
    }
}
