//! Reading a stapled OCSP response (RFC 6960) far enough to say what it says about the
//! certificate: good, revoked or unknown, and the time span it covers. Nothing here is
//! verified — it is what `inspect` reports, and what `listen --ocsp` checks it was given.

use crate::describe::date;

/// What a response says about the first certificate it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Status {
    /// "good", "revoked", "unknown", or why there is no answer ("unsuccessful (3)").
    pub status: String,
    pub this_update: Option<String>,
    pub next_update: Option<String>,
}

/// One DER element: tag, contents, and what follows it.
fn tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| a << 8 | b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A GeneralizedTime ("20261201120000Z") as a date.
fn time(content: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(content).ok()?;
    let digits = text.get(..14)?;
    let n = |r: std::ops::Range<usize>| digits.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (h, mi, s) = (n(8..10)?, n(10..12)?, n(12..14)?);
    let month = time::Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let day = time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?)
        .ok()?;
    let t = day
        .with_hms(
            u8::try_from(h).ok()?,
            u8::try_from(mi).ok()?,
            u8::try_from(s).ok()?,
        )
        .ok()?
        .assume_utc();
    Some(date(t.unix_timestamp()))
}

/// What `der` says, if it is an OCSP response at all.
pub(crate) fn status(der: &[u8]) -> Option<Status> {
    let (0x30, resp, _) = tlv(der)? else {
        return None;
    };
    let (0x0a, code, rest) = tlv(resp)? else {
        return None;
    };
    let code = *code.first()?;
    if code != 0 {
        return Some(Status {
            status: format!("unsuccessful ({code})"),
            this_update: None,
            next_update: None,
        });
    }
    let (0xa0, bytes, _) = tlv(rest)? else {
        return None;
    };
    let (0x30, bytes, _) = tlv(bytes)? else {
        return None;
    };
    let (0x06, _, rest) = tlv(bytes)? else {
        return None;
    };
    let (0x04, basic, _) = tlv(rest)? else {
        return None;
    };
    let (0x30, basic, _) = tlv(basic)? else {
        return None;
    };
    let (0x30, data, _) = tlv(basic)? else {
        return None;
    };
    // version [0] (optional), responderID [1]/[2], producedAt, responses.
    let mut rest = data;
    let (mut tag, _, mut after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after;
        (tag, _, after) = tlv(rest)?;
    }
    if tag != 0xa1 && tag != 0xa2 {
        return None;
    }
    let (0x18, _, rest) = tlv(after)? else {
        return None;
    };
    let (0x30, responses, _) = tlv(rest)? else {
        return None;
    };
    let (0x30, single, _) = tlv(responses)? else {
        return None;
    };
    let (0x30, _, rest) = tlv(single)? else {
        return None;
    };
    let (tag, _, rest) = tlv(rest)?;
    let status = match tag {
        0x80 => "good",
        0xa1 => "revoked",
        0x82 => "unknown",
        _ => return None,
    };
    let (this_update, rest) = match tlv(rest) {
        Some((0x18, t, rest)) => (time(t), rest),
        _ => (None, rest),
    };
    let next_update = match tlv(rest) {
        Some((0xa0, inner, _)) => {
            tlv(inner).and_then(|(tag, t, _)| (tag == 0x18).then(|| time(t)).flatten())
        }
        _ => None,
    };
    Some(Status {
        status: status.to_string(),
        this_update,
        next_update,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_a_response() {
        assert_eq!(status(b""), None);
        assert_eq!(status(&[0x30, 0x03, 0x0a, 0x01]), None);
        let unsuccessful = [0x30, 0x03, 0x0a, 0x01, 0x03];
        assert_eq!(status(&unsuccessful).unwrap().status, "unsuccessful (3)");
        assert_eq!(time(b"20261201120000Z").unwrap(), "2026-12-01 12:00:00 UTC");
    }
}
