//! What `-v` and `inspect` print of a peer's certificate, from any bytes: never a panic, and
//! nothing a terminal would act on or hide (no control character but the line breaks stls
//! puts between lines, no invisible character).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stls::{certificate_text, is_invisible};

fuzz_target!(|data: &[u8]| {
    if let Some(text) = certificate_text(data) {
        for c in text.chars() {
            assert!(
                c == '\n' || !(c.is_control() || is_invisible(c)),
                "{c:?} in {text}"
            );
        }
    }
});
