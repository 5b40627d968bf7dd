//! PAX extended headers: `LEN KEY=VALUE\n` records, split by their length
//! prefixes (never on newlines, so binary values such as `security.capability`
//! survive), the keys d2v applies, and the value codecs they need.

use crate::entry::Time;

/// The extension state that applies to the next real entry: GNU long names
/// and PAX records, kept raw until the entry is built (so a bad value can be
/// reported with the entry's path).
#[derive(Debug, Default)]
pub(crate) struct Extensions {
    /// GNU `L`: the long path.
    pub long_name: Option<Vec<u8>>,
    /// GNU `K`: the long link target.
    pub long_link: Option<Vec<u8>>,
    pub path: Option<Vec<u8>>,
    pub linkpath: Option<Vec<u8>>,
    pub size: Option<Vec<u8>>,
    pub uid: Option<Vec<u8>>,
    pub gid: Option<Vec<u8>>,
    pub mtime: Option<Vec<u8>>,
    pub atime: Option<Vec<u8>>,
    pub ctime: Option<Vec<u8>>,
    /// Extended attributes, in order of first appearance; a repeated name
    /// takes the later value.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// GNU sparse records (formats 0.0, 0.1 and 1.0).
    pub sparse: SparseRecords,
    /// Bytes of extension data held, to bound memory.
    pub held: usize,
}

/// The `GNU.sparse.*` records of a PAX header.
#[derive(Debug, Default)]
pub(crate) struct SparseRecords {
    pub major: Option<Vec<u8>>,
    pub minor: Option<Vec<u8>>,
    /// `GNU.sparse.name` (1.0, also written by 0.1).
    pub name: Option<Vec<u8>>,
    /// `GNU.sparse.realsize` (1.0) or `GNU.sparse.size` (0.x).
    pub realsize: Option<Vec<u8>>,
    /// `GNU.sparse.map` (0.1).
    pub map: Option<Vec<u8>>,
    /// Repeated `GNU.sparse.offset` / `GNU.sparse.numbytes` (0.0).
    pub offsets: Vec<Vec<u8>>,
    pub numbytes: Vec<Vec<u8>>,
}

impl Extensions {
    /// True when no extension header is waiting for its entry.
    pub fn is_empty(&self) -> bool {
        self.held == 0 && self.long_name.is_none() && self.long_link.is_none()
    }

    /// Applies one PAX record. An empty value unsets a standard key (POSIX);
    /// attribute values may be empty.
    fn apply(&mut self, key: &[u8], value: &[u8]) {
        let set = |slot: &mut Option<Vec<u8>>| {
            *slot = (!value.is_empty()).then(|| value.to_vec());
        };
        match key {
            b"path" => set(&mut self.path),
            b"linkpath" => set(&mut self.linkpath),
            b"size" => set(&mut self.size),
            b"uid" => set(&mut self.uid),
            b"gid" => set(&mut self.gid),
            b"mtime" => set(&mut self.mtime),
            b"atime" => set(&mut self.atime),
            b"ctime" => set(&mut self.ctime),
            b"GNU.sparse.major" => set(&mut self.sparse.major),
            b"GNU.sparse.minor" => set(&mut self.sparse.minor),
            b"GNU.sparse.name" => set(&mut self.sparse.name),
            b"GNU.sparse.realsize" | b"GNU.sparse.size" => set(&mut self.sparse.realsize),
            b"GNU.sparse.map" => set(&mut self.sparse.map),
            b"GNU.sparse.offset" => self.sparse.offsets.push(value.to_vec()),
            b"GNU.sparse.numbytes" => self.sparse.numbytes.push(value.to_vec()),
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    self.set_xattr(name.to_vec(), value.to_vec());
                } else if let Some(enc) = key.strip_prefix(b"LIBARCHIVE.xattr.") {
                    // libarchive: percent-encoded name, base64 value. A record
                    // that does not decode is skipped, as libarchive does.
                    if let (Some(name), Some(val)) = (percent_decode(enc), base64_decode(value)) {
                        self.set_xattr(name, val);
                    }
                }
                // Other keys (uname, gname, charset, comment, SCHILY.acl.*, ...)
                // carry nothing d2v stores.
            }
        }
    }

    fn set_xattr(&mut self, name: Vec<u8>, value: Vec<u8>) {
        if let Some(slot) = self.xattrs.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        } else {
            self.xattrs.push((name, value));
        }
    }

    /// Applies every record of a PAX header body.
    pub fn apply_records(&mut self, body: &[u8]) -> Result<(), &'static str> {
        records(body, |k, v| self.apply(k, v))
    }
}

/// Calls `each(key, value)` for every record of a PAX header body. Each
/// record is `LEN KEY=VALUE\n` where LEN counts the whole record, so values
/// may hold any byte, newlines included. A NUL where a record would start
/// ends the body (some writers pad with NULs).
pub fn records(mut body: &[u8], mut each: impl FnMut(&[u8], &[u8])) -> Result<(), &'static str> {
    while !body.is_empty() && body[0] != 0 {
        let sp = body
            .iter()
            .take(20)
            .position(|&b| b == b' ')
            .ok_or("pax record without a length")?;
        let len = decimal(&body[..sp]).ok_or("bad pax record length")?;
        let len = usize::try_from(len).map_err(|_| "bad pax record length")?;
        if len <= sp + 1 || len > body.len() || body[len - 1] != b'\n' {
            return Err("bad pax record length");
        }
        let rec = &body[sp + 1..len - 1];
        let eq = rec
            .iter()
            .position(|&b| b == b'=')
            .ok_or("pax record without '='")?;
        each(&rec[..eq], &rec[eq + 1..]);
        body = &body[len..];
    }
    Ok(())
}

/// A decimal number (ASCII digits, surrounding spaces allowed); `None` when
/// it is anything else or does not fit.
pub fn decimal(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &d in v {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

/// A PAX time: `[-]SECONDS[.FRACTION]`, to nanoseconds (digits past the ninth
/// are checked and dropped).
pub fn time(v: &[u8]) -> Option<Time> {
    let (neg, v) = match v.strip_prefix(b"-") {
        Some(r) => (true, r),
        None => (false, v),
    };
    let (secs, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &[][..]),
    };
    if secs.is_empty() || !secs.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let secs = i64::try_from(decimal(secs)?).ok()?;
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut nsec: u32 = 0;
    for i in 0..9 {
        nsec = nsec * 10 + frac.get(i).map_or(0, |d| u32::from(d - b'0'));
    }
    Some(if !neg {
        Time { sec: secs, nsec }
    } else if nsec > 0 {
        Time {
            sec: -secs - 1,
            nsec: 1_000_000_000 - nsec,
        }
    } else {
        Time {
            sec: -secs,
            nsec: 0,
        }
    })
}

/// libarchive's percent-encoding of attribute names.
pub fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
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

/// Standard base64 (padding optional).
pub fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 3);
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

    fn rec(k: &str, v: &[u8]) -> Vec<u8> {
        let body_len = k.len() + v.len() + 3;
        let mut n = body_len + 1;
        while format!("{n}").len() + body_len != n {
            n += 1;
        }
        let mut r = format!("{n} {k}=").into_bytes();
        r.extend_from_slice(v);
        r.push(b'\n');
        r
    }

    #[test]
    fn records_may_hold_newlines_and_equals_signs() {
        let mut data = rec("SCHILY.xattr.user.x", b"a\nb=c\n\0");
        data.extend(rec("path", b"some/where"));
        let mut got = Vec::new();
        records(&data, |k, v| got.push((k.to_vec(), v.to_vec()))).unwrap();
        assert_eq!(
            got,
            vec![
                (b"SCHILY.xattr.user.x".to_vec(), b"a\nb=c\n\0".to_vec()),
                (b"path".to_vec(), b"some/where".to_vec())
            ]
        );
    }

    #[test]
    fn bad_records_are_errors() {
        for bad in [&b"5 a=b"[..], b"99 a=b\n", b"x a=b\n", b"6 ab\n\n", b"3 \n"] {
            assert!(records(bad, |_, _| {}).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_keep_nanoseconds() {
        assert_eq!(
            time(b"1700000000.123456789"),
            Some(Time {
                sec: 1700000000,
                nsec: 123456789
            })
        );
        assert_eq!(
            time(b"5.5"),
            Some(Time {
                sec: 5,
                nsec: 500_000_000
            })
        );
        assert_eq!(
            time(b"-1.25"),
            Some(Time {
                sec: -2,
                nsec: 750_000_000
            })
        );
        assert_eq!(time(b"7.0000000019"), Some(Time { sec: 7, nsec: 1 }));
        for bad in [
            &b""[..],
            b"abc",
            b"1.2x",
            b"-",
            b".5",
            b"99999999999999999999",
        ] {
            assert_eq!(time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn decimals_are_strict() {
        assert_eq!(decimal(b"4294967296"), Some(1 << 32));
        assert_eq!(decimal(b" 12 "), Some(12));
        assert_eq!(decimal(b"-1"), None);
        assert_eq!(decimal(b"1e3"), None);
        assert_eq!(decimal(b"18446744073709551616"), None);
    }

    #[test]
    fn base64_and_percent_decode() {
        assert_eq!(base64_decode(b"AQID").unwrap(), vec![1, 2, 3]);
        assert_eq!(base64_decode(b"AQ==").unwrap(), vec![1]);
        assert_eq!(percent_decode(b"user.a%3Db").unwrap(), b"user.a=b");
    }
}
