//! HOST:PORT, [V6]:PORT, HOST PORT and listen addresses: never a panic, and what parses
//! prints back to something that parses to the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stls::{parse_listen, parse_target};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(hp) = parse_target(text, None) {
        assert_eq!(parse_target(&hp.to_string(), None), Ok(hp));
    }
    if let Some((host, port)) = text.split_once(' ') {
        let _ = parse_target(host, Some(port));
    }
    let _ = parse_listen(text);
});
