//! The integration tests, as one binary (one link, one run): a module per area, each driving
//! the real stls binary; `util` is the harness they share. `peers.rs`, outside it, lists the
//! test peers that are missing.

mod util;

mod certgen;
mod controls;
mod cookbook;
mod corpus;
mod docs;
mod ending;
mod errors;
mod faults;
mod files;
mod fuzz;
mod input;
mod inspect;
mod interop;
mod lifecycle;
mod listen;
mod load;
mod lookups;
mod matrix;
mod observe;
mod probe;
mod proxies;
mod routes;
mod scaleout;
mod servers;
mod sessions;
mod starttls;
mod stream;
mod trust;
mod tunnels;
mod unix;
mod verify;
