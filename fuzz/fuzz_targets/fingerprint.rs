//! --pin values: never a panic, and a parsed fingerprint prints back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stls::{fingerprint_text, parse_fingerprint};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(fp) = parse_fingerprint(text) {
        assert_eq!(parse_fingerprint(&fingerprint_text(&fp)), Ok(fp));
    }
});
