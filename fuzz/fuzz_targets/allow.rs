//! `--allow-san` values: never a panic; an accepted value prints back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stls::AllowSan;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(allow) = AllowSan::parse(text) {
        assert_eq!(AllowSan::parse(&allow.to_string()), Ok(allow));
    }
});
