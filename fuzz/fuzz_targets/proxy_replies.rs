//! Proxies' replies (HTTP CONNECT with and without credentials, SOCKS4a, SOCKS5 with and
//! without credentials), fed whole and in pieces as reads bring them: never a panic, a
//! failure is one printable line, and a reply is read the same however it is cut.
//!
//! The first byte picks the dialogue, the second how the rest is cut into reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stls::{feed, is_invisible, Dialogue, Fed};

const DIALOGUES: [Dialogue; 5] = [
    Dialogue::HttpProxy { credentials: false },
    Dialogue::HttpProxy { credentials: true },
    Dialogue::Socks4a,
    Dialogue::Socks5 { credentials: false },
    Dialogue::Socks5 { credentials: true },
];

#[path = "shared/pieces.rs"]
mod pieces;
use pieces::pieces;

fuzz_target!(|data: &[u8]| {
    let [pick, cut, input @ ..] = data else {
        return;
    };
    // Past 64 KiB before TLS one whole read is refused at once, where pieces may reach the
    // go-ahead first.
    if input.len() > 60_000 {
        return;
    }
    let dialogue = DIALOGUES[usize::from(*pick) % DIALOGUES.len()];
    let whole = feed(dialogue, [input]);
    if let Fed::Failed(msg) = &whole {
        assert!(
            !msg.chars().any(|c| c.is_control() || is_invisible(c)),
            "{msg:?}"
        );
    }
    assert_eq!(feed(dialogue, pieces(input, *cut)), whole);
    assert_eq!(feed(dialogue, input.chunks(1)), whole);
});
