//! Several stls behind a load balancer: a port two listeners share (SO_REUSEPORT), as when a
//! new one starts while the old one still serves.

use crate::util::*;

#[test]
fn two_listeners_share_a_port() {
    // As when a new stls starts while the old one still serves: both bind.
    let port = free_port().to_string();
    let start = || {
        let mut cmd = stls();
        cmd.args(["listen", "-k", &format!("127.0.0.1:{port}")]);
        Listener::start_cmd(&mut cmd, Input::Null)
    };
    let old = start();
    let new = start();
    assert_eq!(old.port, new.port);
    new.stop();
    old.stop();
}
