//! The ClientHello rustls will not send — TLS 1.1, 1.0 and SSLv3, and TLS 1.2 offering only
//! suites rustls has no code for (RSA key exchange, CBC, 3DES, RC4) — and a bounded reader of
//! the server's first answer: its ServerHello's version and suite, or an alert.
//! `inspect --probe` asks with these whether a server accepts what stls never negotiates;
//! nothing goes further than the ServerHello.

/// Protocol versions as they are on the wire.
pub(crate) const SSL3: u16 = 0x0300;
pub(crate) const TLS10: u16 = 0x0301;
pub(crate) const TLS11: u16 = 0x0302;
pub(crate) const TLS12: u16 = 0x0303;

/// How many bytes of the answer are read at most: a record header, a handshake header, the
/// version, the random, the longest session id and the suite — all that is looked at.
pub(crate) const ENOUGH: usize = 5 + 4 + 2 + 32 + 1 + 32 + 2;

/// The weak classes, each with the suites that make it (IANA numbers).
pub(crate) const WEAK: [(&str, &[u16]); 4] = [
    // RSA key exchange: no forward secrecy.
    (
        "no-forward-secrecy",
        &[
            0x002f, 0x0035, 0x003c, 0x003d, 0x009c, 0x009d, 0x000a, 0x0005, 0x0004,
        ],
    ),
    (
        "cbc",
        &[
            0xc013, 0xc014, 0xc009, 0xc00a, 0xc023, 0xc024, 0xc027, 0xc028, 0x0033, 0x0039, 0x0067,
            0x006b, 0x002f, 0x0035, 0x003c, 0x003d,
        ],
    ),
    ("3des", &[0xc012, 0xc008, 0x0016, 0x000a]),
    ("rc4", &[0xc011, 0xc007, 0x0005, 0x0004]),
];

/// What a legacy version is offered: the suites old servers have, forward-secret first.
pub(crate) const LEGACY_SUITES: &[u16] = &[
    0xc02b, 0xc02f, 0xc02c, 0xc030, 0xc009, 0xc013, 0xc00a, 0xc014, 0x0033, 0x0039, 0x009c, 0x009d,
    0x002f, 0x0035, 0xc012, 0x0016, 0x000a, 0xc011, 0x0005, 0x0004,
];

/// A version's name as stls prints it.
pub(crate) fn version_name(version: u16) -> String {
    match version {
        SSL3 => "SSLv3".to_string(),
        TLS10 => "TLSv1.0".to_string(),
        TLS11 => "TLSv1.1".to_string(),
        TLS12 => "TLSv1.2".to_string(),
        0x0304 => "TLSv1.3".to_string(),
        v => format!("0x{v:04x}"),
    }
}

/// A ClientHello record offering `version` and `suites`, naming `host` (SNI) when given.
/// SSLv3 has no extensions; the others carry what old servers need for ECDHE.
pub(crate) fn client_hello(version: u16, suites: &[u16], host: Option<&str>) -> Vec<u8> {
    let mut body = Vec::with_capacity(256);
    body.extend(version.to_be_bytes());
    let mut random = [0u8; 32];
    // A predictable random is harmless here: no key is ever agreed.
    let _ = aws_lc_rs::rand::fill(&mut random);
    body.extend(random);
    body.push(0); // no session id
                  // The renegotiation SCSV after the suites, as every client of that era sent it.
    push_u16_list(&mut body, suites.iter().copied().chain([0x00ff]));
    body.extend([1, 0]); // null compression only
    if version > SSL3 {
        let mut ext = Vec::new();
        if let Some(host) = host.filter(|h| h.len() < 256) {
            let mut names = vec![0];
            names.extend((host.len() as u16).to_be_bytes());
            names.extend(host.as_bytes());
            let mut list = (names.len() as u16).to_be_bytes().to_vec();
            list.extend(names);
            push_extension(&mut ext, 0x0000, &list);
        }
        // supported_groups: X25519, P-256, P-384, P-521.
        let mut groups = Vec::new();
        push_u16_list(&mut groups, [0x001d, 0x0017, 0x0018, 0x0019]);
        push_extension(&mut ext, 0x000a, &groups);
        // ec_point_formats: uncompressed.
        push_extension(&mut ext, 0x000b, &[1, 0]);
        // signature_algorithms, read by TLS 1.2 servers only.
        let mut sigs = Vec::new();
        push_u16_list(
            &mut sigs,
            [
                0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0203,
                0x0201,
            ],
        );
        push_extension(&mut ext, 0x000d, &sigs);
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
    }
    let mut handshake = vec![1];
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    // The record says TLS 1.0 (SSLv3 for SSLv3), as old servers expect.
    let mut record = vec![0x16];
    record.extend(version.min(TLS10).to_be_bytes());
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

fn push_u16_list(out: &mut Vec<u8>, items: impl IntoIterator<Item = u16>) {
    let items: Vec<u8> = items.into_iter().flat_map(u16::to_be_bytes).collect();
    out.extend((items.len() as u16).to_be_bytes());
    out.extend(items);
}

fn push_extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend(kind.to_be_bytes());
    out.extend((data.len() as u16).to_be_bytes());
    out.extend(data);
}

/// The server's first answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A ServerHello: the version and suite the server chose.
    Hello { version: u16, suite: u16 },
    /// An alert (its description): the server refused.
    Alert(u8),
    /// Anything else: not an answer in TLS.
    Other,
}

/// Read the server's first answer from the first bytes it sent (at most [`ENOUGH`] are
/// looked at); `None` while more bytes are needed. A ServerHello cut short by the end of
/// its record is `Other`.
pub fn server_hello(bytes: &[u8]) -> Option<Answer> {
    let bytes = &bytes[..bytes.len().min(ENOUGH)];
    let [kind, _, _, hi, lo, rest @ ..] = bytes else {
        return None;
    };
    let record_len = usize::from(u16::from_be_bytes([*hi, *lo]));
    let record = &rest[..rest.len().min(record_len)];
    // Whether more of the record may still come (and be needed).
    let more = record.len() < record_len && bytes.len() < ENOUGH;
    match kind {
        0x15 => match record {
            [_, description, ..] => Some(Answer::Alert(*description)),
            _ if more => None,
            _ => Some(Answer::Other),
        },
        0x16 => match hello_fields(record) {
            Some(answer) => Some(answer),
            None if more => None,
            None => Some(Answer::Other),
        },
        _ => Some(Answer::Other),
    }
}

/// A ServerHello's version and suite from its handshake message, if all of it is there; a
/// message that is not a ServerHello is `Other`.
fn hello_fields(msg: &[u8]) -> Option<Answer> {
    let [kind, _, _, _, v1, v2, rest @ ..] = msg else {
        return None;
    };
    if *kind != 2 {
        return Some(Answer::Other);
    }
    let (_random, rest) = rest.split_at_checked(32)?;
    let (&sid_len, rest) = rest.split_first()?;
    let sid_len = usize::from(sid_len);
    if sid_len > 32 {
        return Some(Answer::Other);
    }
    let (_sid, rest) = rest.split_at_checked(sid_len)?;
    let [s1, s2, ..] = rest else {
        return None;
    };
    Some(Answer::Hello {
        version: u16::from_be_bytes([*v1, *v2]),
        suite: u16::from_be_bytes([*s1, *s2]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_hello_record(version: u16, suite: u16, sid: usize) -> Vec<u8> {
        let mut body = version.to_be_bytes().to_vec();
        body.extend([7; 32]);
        body.push(sid as u8);
        body.extend(vec![1; sid]);
        body.extend(suite.to_be_bytes());
        body.push(0);
        let mut msg = vec![2, 0, 0, body.len() as u8];
        msg.extend(body);
        let mut rec = vec![0x16, 3, 1, 0, msg.len() as u8];
        rec.extend(msg);
        rec
    }

    #[test]
    fn reads_a_server_hello_byte_by_byte() {
        for sid in [0, 32] {
            let rec = server_hello_record(TLS10, 0xc013, sid);
            let whole = server_hello(&rec);
            assert_eq!(
                whole,
                Some(Answer::Hello {
                    version: TLS10,
                    suite: 0xc013
                })
            );
            // Every prefix that stops before the suite needs more.
            let needed = 5 + 4 + 2 + 32 + 1 + sid + 2;
            for n in 0..needed {
                assert_eq!(server_hello(&rec[..n]), None, "{n} bytes");
            }
        }
    }

    #[test]
    fn alerts_and_other_answers() {
        assert_eq!(
            server_hello(&[0x15, 3, 3, 0, 2, 2, 70]),
            Some(Answer::Alert(70))
        );
        assert_eq!(server_hello(&[0x15, 3, 3, 0, 2, 2]), None);
        assert_eq!(server_hello(&[0x15, 3, 3, 0, 1, 2]), Some(Answer::Other));
        assert_eq!(server_hello(b"HTTP/1.1 400 Bad"), Some(Answer::Other));
        // A certificate message first, a short record, a long session id.
        assert_eq!(
            server_hello(&[0x16, 3, 3, 0, 4, 11, 0, 0, 0]),
            Some(Answer::Other)
        );
        assert_eq!(
            server_hello(&[0x16, 3, 3, 0, 3, 2, 0, 0]),
            Some(Answer::Other)
        );
        let mut long = server_hello_record(TLS12, 1, 0);
        long[5 + 4 + 2 + 32] = 33;
        assert_eq!(server_hello(&long), Some(Answer::Other));
    }

    /// Mutated ServerHellos and alerts, and random bytes: never a panic, and once there is
    /// an answer, more bytes do not change it.
    #[test]
    fn hostile_answers() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let seeds = [
            server_hello_record(TLS12, 0xc02f, 32),
            vec![0x15, 3, 3, 0, 2, 2, 40],
            vec![0x16, 3, 3, 0, 0],
        ];
        for _ in 0..20_000 {
            let mut bytes = seeds[next() as usize % seeds.len()].clone();
            for _ in 0..next() % 4 {
                let at = next() as usize % bytes.len();
                bytes[at] = next() as u8;
            }
            bytes.truncate(next() as usize % (bytes.len() + 1));
            if next() % 4 == 0 {
                bytes = (0..next() % 100).map(|_| next() as u8).collect();
            }
            if let Some(answer) = server_hello(&bytes) {
                let mut longer = bytes.clone();
                longer.extend((0..next() % 50).map(|_| next() as u8));
                assert_eq!(server_hello(&longer), Some(answer), "{bytes:?}");
            }
        }
    }

    #[test]
    fn client_hellos_are_well_formed() {
        for (version, host) in [(SSL3, None), (TLS10, Some("example.com")), (TLS12, None)] {
            let rec = client_hello(version, LEGACY_SUITES, host);
            assert_eq!(rec[0], 0x16);
            assert_eq!(
                usize::from(u16::from_be_bytes([rec[3], rec[4]])),
                rec.len() - 5
            );
            assert_eq!(rec[5], 1);
            assert_eq!(u16::from_be_bytes([rec[9], rec[10]]), version);
            assert!(rec.len() < 1_200);
        }
    }
}
