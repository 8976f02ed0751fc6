//! --ciphers lists against each version set: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stls::provider;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
        &[&rustls::version::TLS13, &rustls::version::TLS12][..],
    ] {
        let _ = provider(Some(text), versions);
    }
});
