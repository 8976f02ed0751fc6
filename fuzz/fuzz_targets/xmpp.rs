//! XMPP's STARTTLS dialogue, our client's and our server's side, fed the peer's XML whole and
//! in pieces as reads bring them (characters of several bytes cut in two included): never a
//! panic, a failure is one printable line, and what reaches TLS whole reaches it however it
//! is cut.
//!
//! The first byte picks the side, the second how the rest is cut into reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stls::{feed, is_invisible, Dialogue, Fed};

/// `input` in pieces of 1 to 16 bytes, their sizes drawn from `seed`.
fn pieces(input: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed) | 0x100;
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let (piece, tail) = rest.split_at((1 + state as usize % 16).min(rest.len()));
        out.push(piece);
        rest = tail;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [pick, cut, input @ ..] = data else {
        return;
    };
    let dialogue = match pick % 2 {
        0 => Dialogue::XmppClient,
        _ => Dialogue::XmppServer,
    };
    let whole = feed(dialogue, [input]);
    for fed in [&whole, &feed(dialogue, pieces(input, *cut))] {
        if let Fed::Failed(msg) = fed {
            assert!(
                !msg.chars().any(|c| c.is_control() || is_invisible(c)),
                "{msg:?}"
            );
        }
    }
    if let Fed::Go(_) = whole {
        assert_eq!(feed(dialogue, pieces(input, *cut)), whole);
        assert_eq!(feed(dialogue, input.chunks(1)), whole);
    }
});
