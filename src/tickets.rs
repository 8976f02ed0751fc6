//! `listen --ticket-keys FILE`: session tickets sealed with keys from a file, so replicas
//! given the same file resume each other's sessions. The newest key (the last line) seals,
//! every key opens, so a key can be added everywhere before it is used, and removed after.
//!
//! A ticket is the key's id (the first 4 bytes of its SHA-256), a random 96-bit nonce, and
//! the session sealed with AES-256-GCM under that key (the id is the associated data). A
//! ticket whose id is unknown, or that does not open, is not an error: the client gets a full
//! handshake.

use std::fmt;
use std::path::Path;

use anyhow::{anyhow, Result};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

use crate::files::{self, Kind};

/// How many bytes name a key in a ticket.
const ID_LEN: usize = 4;

/// How long a client is told its ticket is good for: as rustls's own rotating ticketer.
/// Forward secrecy comes from replacing the keys in the file (and SIGHUP).
const LIFETIME_SECS: u32 = 6 * 60 * 60;

/// One key of the file.
struct TicketKey {
    id: [u8; ID_LEN],
    key: LessSafeKey,
}

/// The keys of a `--ticket-keys` file, newest last.
pub(crate) struct TicketKeys {
    keys: Vec<TicketKey>,
    random: SystemRandom,
}

impl fmt::Debug for TicketKeys {
    // Never the keys themselves.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TicketKeys({} keys)", self.keys.len())
    }
}

impl TicketKeys {
    /// Read `path`: one key a line, 64 hex digits each; `#` starts a comment.
    pub(crate) fn load(path: &Path) -> Result<TicketKeys> {
        use std::os::unix::fs::PermissionsExt;
        let text = files::read_file(path, Kind::TicketKeys)?;
        let keys = parse(&String::from_utf8_lossy(&text), &path.display().to_string())?;
        // Whoever reads the keys can open every ticket, and so recorded TLS 1.2 sessions.
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
                crate::report::warn(format_args!(
                    "{}: others may read these ticket keys; make it readable by stls only \
                     (chmod 600)",
                    path.display()
                ));
            }
        }
        Ok(keys)
    }
}

/// The keys in `text`; `name` says where it came from in messages.
fn parse(text: &str, name: &str) -> Result<TicketKeys> {
    const HOW: &str = "a key is 64 hex digits (32 bytes), as `openssl rand -hex 32` prints";
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let n = n + 1;
        if !line.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(anyhow!("{name}, line {n}: not hex digits: {HOW}"));
        }
        let bytes = hex(line)
            .filter(|b| b.len() == 32)
            .ok_or_else(|| anyhow!("{name}, line {n}: {} hex digits: {HOW}", line.len()))?;
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| anyhow!("{name}, line {n}: the key cannot be used"))?;
        let mut id = [0; ID_LEN];
        id.copy_from_slice(&digest(&SHA256, &bytes).as_ref()[..ID_LEN]);
        keys.push(TicketKey {
            id,
            key: LessSafeKey::new(unbound),
        });
    }
    if keys.is_empty() {
        return Err(anyhow!(
            "{name}: no key in it ({HOW}; make one with `openssl rand -hex 32 >> {name}`)"
        ));
    }
    Ok(TicketKeys {
        keys,
        random: SystemRandom::new(),
    })
}

/// Hex digits to bytes; None if their number is odd.
fn hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if digits.len() % 2 != 0 {
        return None;
    }
    let value = |d: u8| {
        char::from(d)
            .to_digit(16)
            .and_then(|v| u8::try_from(v).ok())
    };
    digits
        .chunks(2)
        .map(|p| Some(value(p[0])? << 4 | value(p[1])?))
        .collect()
}

impl ProducesTickets for TicketKeys {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let newest = self.keys.last()?;
        let mut nonce = [0; NONCE_LEN];
        self.random.fill(&mut nonce).ok()?;
        let mut sealed = plain.to_vec();
        newest
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(newest.id),
                &mut sealed,
            )
            .ok()?;
        let mut ticket = Vec::with_capacity(ID_LEN + NONCE_LEN + sealed.len());
        ticket.extend_from_slice(&newest.id);
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let (id, rest) = ticket.split_at_checked(ID_LEN)?;
        let (nonce, sealed) = rest.split_at_checked(NONCE_LEN)?;
        // Two keys of one file may share an id (1 in 2^32): each is tried.
        self.keys.iter().filter(|k| k.id == id).find_map(|k| {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut buf = sealed.to_vec();
            let plain = k.key.open_in_place(nonce, Aad::from(k.id), &mut buf).ok()?;
            Some(plain.to_vec())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    #[test]
    fn the_newest_seals_and_every_key_opens() {
        let old = parse(A, "k").expect("one key");
        let both = parse(&format!("# rotated\n{A}\n\n{B}  # newest\n"), "k").expect("two keys");
        let ticket = old.encrypt(b"session").expect("sealed");
        assert_eq!(both.decrypt(&ticket).as_deref(), Some(&b"session"[..]));
        let newer = both.encrypt(b"session").expect("sealed");
        assert_eq!(old.decrypt(&newer), None, "an unknown key id opens nothing");
        let mut forged = ticket.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(both.decrypt(&forged), None);
        assert_eq!(both.decrypt(&ticket[..10]), None);
        assert_eq!(both.decrypt(&[]), None);
    }

    #[test]
    fn bad_lines_are_named() {
        let err = |t: &str| parse(t, "keys.txt").err().map(|e| e.to_string());
        let short = err(&format!("{A}\n{}\n", &B[..62])).unwrap_or_default();
        assert!(short.contains("keys.txt, line 2: 62 hex digits"), "{short}");
        let odd = err(&format!("# c\n\n{}\n", &B[..63])).unwrap_or_default();
        assert!(odd.contains("line 3: 63 hex digits"), "{odd}");
        let not_hex = err("zz\n").unwrap_or_default();
        assert!(not_hex.contains("line 1: not hex digits"), "{not_hex}");
        let empty = err("# nothing\n\n").unwrap_or_default();
        assert!(empty.contains("keys.txt: no key in it"), "{empty}");
    }
}
