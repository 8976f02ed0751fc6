//! Certificate and key files (--cert, --key, --cacert, --client-ca): any bytes give
//! certificates, a key, or an error naming the file; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stls::{certs_from_pem, key_from_pem};

fuzz_target!(|data: &[u8]| {
    if let Err(e) = certs_from_pem(data, "fuzz.pem") {
        assert!(format!("{e:#}").starts_with("fuzz.pem: "));
    }
    if let Err(e) = key_from_pem(data, "fuzz.key") {
        assert!(format!("{e:#}").starts_with("fuzz.key: "));
    }
});
