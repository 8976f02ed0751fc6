//! The ClientHello `listen --passthrough` reads for its name, as anyone who reaches the port
//! sends it: never a panic, and a name is read the same however the bytes are cut short
//! (a prefix either waits for more, or is refused, or reads what the whole does).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stls::client_hello_sni;

fuzz_target!(|data: &[u8]| {
    let whole = client_hello_sni(data);
    if let Ok(Some(_)) = &whole {
        for n in 0..data.len() {
            match client_hello_sni(&data[..n]) {
                Ok(Some(sni)) => assert_eq!(Ok(Some(sni)), whole),
                Ok(None) | Err(_) => {}
            }
        }
    }
});
