//! `listen --passthrough`: the client's ClientHello read without answering it, for the name
//! it asks for (SNI), as nginx's `ssl_preread` does. [`client_hello_sni`] reads it from
//! what has arrived, across TLS records and reads, within [`HELLO_MAX`] bytes; [`Preread`]
//! is the stage that waits for it (played by `preamble`, bounded by the handshake's time).
//! Nothing is taken: every byte read is handed on, to our TLS, or to a passthrough backend
//! that does the handshake itself.

use std::sync::Arc;

use anyhow::Result;

use crate::backend::{Backend, Routes};
use crate::error::Class;
use crate::preamble::{Dialogue, Preamble, Progress};

/// The longest ClientHello read: the handshake message, and the records that carry it.
pub(crate) const HELLO_MAX: usize = 16 * 1024;

/// The largest TLS record's payload (plaintext), before encryption adds to it.
const RECORD_MAX: usize = 16 * 1024;

/// Read a ClientHello from the start of `bytes` (TLS records): `Ok(None)` while it may still
/// come whole, `Ok(Some(name))` once it has (`name`: its SNI host name, lower case, if it
/// has one), or why `bytes` are not one.
pub fn client_hello_sni(bytes: &[u8]) -> Result<Option<Option<String>>, String> {
    read_hello(bytes).map_err(|e| match e {
        Unread::TooLong(why) | Unread::Unreadable(why) => why,
    })
}

/// Why bytes are not a ClientHello read for its name.
enum Unread {
    /// It is longer than [`HELLO_MAX`]: more than is read.
    TooLong(String),
    /// Not a ClientHello that can be read.
    Unreadable(String),
}

/// [`client_hello_sni`], telling a ClientHello too long apart from the rest.
fn read_hello(bytes: &[u8]) -> Result<Option<Option<String>>, Unread> {
    let mut hello = Vec::new();
    let mut rest = bytes;
    loop {
        // The handshake message, once its records have brought it whole.
        if hello.len() >= 4 {
            if hello[0] != 1 {
                return Err(Unread::Unreadable(
                    "the first handshake message is not a ClientHello".to_string(),
                ));
            }
            let len =
                usize::from(hello[1]) << 16 | usize::from(hello[2]) << 8 | usize::from(hello[3]);
            if len > HELLO_MAX {
                return Err(Unread::TooLong(format!(
                    "sent a ClientHello of {len} bytes, more than {} KiB",
                    HELLO_MAX / 1024
                )));
            }
            if hello.len() >= 4 + len {
                return server_name(&hello[4..4 + len])
                    .map(Some)
                    .map_err(Unread::Unreadable);
            }
        }
        let [kind, _, _, hi, lo, ..] = *rest else {
            return Ok(None);
        };
        if kind != 0x16 {
            return Err(Unread::Unreadable("not a TLS handshake record".to_string()));
        }
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len == 0 || len > RECORD_MAX {
            return Err(Unread::Unreadable(format!("a TLS record of {len} bytes")));
        }
        let Some(payload) = rest.get(5..5 + len) else {
            return Ok(None);
        };
        hello.extend_from_slice(payload);
        rest = &rest[5 + len..];
    }
}

/// A reader of a message's fields, each taken whole or not at all.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("a ClientHello cut short".to_string());
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<usize, String> {
        Ok(usize::from(self.take(1)?[0]))
    }

    fn u16(&mut self) -> Result<usize, String> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    /// A field preceded by its length in `width` bytes (1 or 2).
    fn vec(&mut self, width: usize) -> Result<Fields<'a>, String> {
        let n = if width == 1 { self.u8()? } else { self.u16()? };
        Ok(Fields(self.take(n)?))
    }
}

/// The SNI host name of a ClientHello's body, if it has one.
fn server_name(body: &[u8]) -> Result<Option<String>, String> {
    let mut f = Fields(body);
    f.take(2 + 32)?; // version, random
    f.vec(1)?; // session id
    f.vec(2)?; // cipher suites
    f.vec(1)?; // compression methods
    if f.0.is_empty() {
        return Ok(None); // no extensions
    }
    let mut extensions = f.vec(2)?;
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let mut data = extensions.vec(2)?;
        if kind != 0 {
            continue;
        }
        let mut list = data.vec(2)?;
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name = list.vec(2)?.0;
            if name_type == 0 {
                return match std::str::from_utf8(name) {
                    Ok(name) if name.is_ascii() => Ok(Some(name.to_ascii_lowercase())),
                    _ => Err("an SNI host name that is not ASCII".to_string()),
                };
            }
        }
    }
    Ok(None)
}

/// The stage of `--passthrough`: waits for the ClientHello and decides by its name whether
/// the connection passes through, and to which backend.
pub(crate) struct Preread {
    routes: Arc<Routes>,
    /// The backend chosen, and the name it was chosen by.
    pub(crate) chosen: Option<(Backend, String)>,
}

impl Preread {
    pub(crate) fn new(routes: Arc<Routes>) -> Preread {
        Preread {
            routes,
            chosen: None,
        }
    }
}

impl Dialogue for Preread {
    fn what(&self) -> String {
        "ClientHello (--passthrough)".to_string()
    }

    fn tag(&self) -> String {
        "preread".to_string()
    }

    fn class(&self) -> Class {
        Class::Handshake
    }

    fn start(&mut self, _p: &mut Preamble) {}

    fn step(&mut self, p: &mut Preamble) -> Result<Progress> {
        match read_hello(&p.inbox) {
            Ok(None) if p.inbox.len() > HELLO_MAX + 5 * (HELLO_MAX / 512 + 1) => {
                Err(p.fail(format!(
                    "sent more than {} KiB without a whole ClientHello",
                    HELLO_MAX / 1024
                )))
            }
            Ok(None) => Ok(Progress::More),
            Ok(Some(sni)) => {
                self.chosen = self
                    .routes
                    .pick(sni.as_deref())
                    .map(|(backend, _)| (backend.clone(), sni.unwrap_or_default()));
                Ok(Progress::Go)
            }
            // More than is read: neither passed through nor ours.
            Err(Unread::TooLong(why)) => Err(p.fail(why)),
            // Not a ClientHello we can read: ours to answer, and our handshake says what is
            // wrong with it.
            Err(Unread::Unreadable(_)) => Ok(Progress::Go),
        }
    }

    fn early(&self) -> Option<&'static str> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello body naming `sni`, as a client sends it.
    fn hello(sni: &str) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        let name = sni.as_bytes();
        let mut ext = vec![0, 0]; // server_name
        let list_len = 3 + name.len();
        ext.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
        ext.extend_from_slice(&(list_len as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
        let mut exts = vec![0, 0x2b, 0, 3, 2, 3, 4]; // supported_versions first
        exts.extend_from_slice(&ext);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut msg = vec![1, 0];
        msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
        msg.extend_from_slice(&body);
        msg
    }

    /// `msg` in records of at most `size` bytes.
    fn records(msg: &[u8], size: usize) -> Vec<u8> {
        msg.chunks(size)
            .flat_map(|c| {
                let mut r = vec![0x16, 3, 1];
                r.extend_from_slice(&(c.len() as u16).to_be_bytes());
                r.extend_from_slice(c);
                r
            })
            .collect()
    }

    #[test]
    fn sni_across_records_and_reads() {
        let msg = hello("Pass.Example");
        for size in [msg.len(), 10, 1] {
            let wire = records(&msg, size);
            assert_eq!(
                client_hello_sni(&wire),
                Ok(Some(Some("pass.example".to_string())))
            );
            for n in 0..wire.len() {
                assert_eq!(client_hello_sni(&wire[..n]), Ok(None), "{size} {n}");
            }
        }
        assert!(client_hello_sni(b"GET / HTTP/1.1\r\n").is_err());
        assert!(client_hello_sni(&[0x16, 3, 1, 0, 4, 2, 0, 0, 0]).is_err());
        assert!(client_hello_sni(&[0x16, 3, 1, 0x50, 0]).is_err());
        // A whole ClientHello with no extensions has no name.
        let mut bare = vec![1, 0, 0, 41, 3, 3];
        bare.extend_from_slice(&[0; 32]);
        bare.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        assert_eq!(client_hello_sni(&records(&bare, 100)), Ok(Some(None)));
    }
}
