//! PAX extended-header records (`len key=value\n`) and the value codecs
//! they need: fractional times, libarchive's percent-encoded names and
//! base64 values.

use super::tar::{dec, malformed};
use super::IndexError;

/// PAX time: `[-]SECONDS[.FRACTION]`.
pub(super) fn pax_time(v: &[u8], pos: usize) -> Result<(i64, u32), IndexError> {
    let s = std::str::from_utf8(v).map_err(|_| malformed(pos, "bad pax mtime"))?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().map_err(|_| malformed(pos, "bad pax mtime"))?;
    let mut nsec: u32 = 0;
    for (i, c) in frac.bytes().take(9).enumerate() {
        if !c.is_ascii_digit() {
            return Err(malformed(pos, "bad pax mtime fraction"));
        }
        nsec += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
    }
    if neg {
        if nsec > 0 {
            Ok((-secs - 1, 1_000_000_000 - nsec))
        } else {
            Ok((-secs, 0))
        }
    } else {
        Ok((secs, nsec))
    }
}

pub(super) fn parse_pax(
    mut body: &[u8],
    pos: usize,
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), IndexError> {
    while !body.is_empty() && body[0] != 0 {
        let sp = body
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| malformed(pos, "pax record without length"))?;
        let len = dec(&body[..sp], pos, "pax record length")? as usize;
        if len <= sp + 1 || len > body.len() || body[len - 1] != b'\n' {
            return Err(malformed(pos, "bad pax record length"));
        }
        let rec = &body[sp + 1..len - 1];
        let eq = rec
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| malformed(pos, "pax record without '='"))?;
        let key = rec[..eq].to_vec();
        let val = rec[eq + 1..].to_vec();
        if let Some(slot) = out
            .iter_mut()
            .find(|(k, _)| *k == key && !is_repeated(&key))
        {
            slot.1 = val;
        } else {
            out.push((key, val));
        }
        body = &body[len..];
    }
    Ok(())
}

fn is_repeated(key: &[u8]) -> bool {
    key == b"GNU.sparse.offset" || key == b"GNU.sparse.numbytes"
}

pub(super) fn pax_get<'a>(pax: &'a [(Vec<u8>, Vec<u8>)], key: &[u8]) -> Option<&'a [u8]> {
    pax.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_slice())
}

pub(super) fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let h = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

pub(super) fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_time_keeps_nanoseconds() {
        assert_eq!(
            pax_time(b"1700000000.123456789", 0).unwrap(),
            (1700000000, 123456789)
        );
        assert_eq!(pax_time(b"5.5", 0).unwrap(), (5, 500_000_000));
        assert_eq!(pax_time(b"-1.25", 0).unwrap(), (-2, 750_000_000));
    }

    #[test]
    fn base64_and_percent_decode() {
        assert_eq!(base64_decode(b"AQID").unwrap(), vec![1, 2, 3]);
        assert_eq!(base64_decode(b"AQ==").unwrap(), vec![1]);
        assert_eq!(percent_decode(b"user.a%3Db").unwrap(), b"user.a=b");
    }
}
