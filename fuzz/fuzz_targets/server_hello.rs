//! A server's first bytes, as `inspect --probe` reads them after its own ClientHello: never a
//! panic, the same answer whatever follows once there is one, and nothing past the bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stls::server_hello;

fuzz_target!(|data: &[u8]| {
    let Some(answer) = server_hello(data) else {
        return;
    };
    let mut longer = data.to_vec();
    longer.extend_from_slice(&[0xff; 100]);
    assert_eq!(server_hello(&longer), Some(answer));
});
