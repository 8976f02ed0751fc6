//! International host names and `stls cert --san` values: never a panic; an accepted host is
//! ASCII and maps to itself, and an accepted SAN prints back to the same SAN.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stls::{host_to_ascii, parse_san};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(host) = host_to_ascii(text) {
        assert!(host.is_ascii());
        assert_eq!(host_to_ascii(&host).as_deref(), Ok(&*host));
    }
    if let Ok(san) = parse_san(text) {
        assert_eq!(parse_san(&san.to_string()), Ok(san));
    }
});
