//! XMPP's STARTTLS dialogue, our client's and our server's side, fed the peer's XML whole and
//! in pieces as reads bring them (characters of several bytes cut in two included): never a
//! panic, a failure is one printable line, and what reaches TLS whole reaches it however it
//! is cut.
//!
//! The first byte picks the side, the second how the rest is cut into reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stls::{feed, is_invisible, Dialogue, Fed};

#[path = "shared/pieces.rs"]
mod pieces;
use pieces::pieces;

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
