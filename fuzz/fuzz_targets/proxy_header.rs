//! The PROXY protocol header of `listen --accept-proxy`, as a load balancer (or anyone who
//! reaches the port) sends it: never a panic; a header read is no longer than the input, is
//! read the same from exactly its own bytes, and no shorter prefix of it is taken for one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stls::parse_proxy_header;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((n, header))) = parse_proxy_header(data) {
        assert!(n <= data.len());
        assert_eq!(parse_proxy_header(&data[..n]), Ok(Some((n, header))));
        assert_eq!(parse_proxy_header(&data[..n - 1]), Ok(None));
    }
});
