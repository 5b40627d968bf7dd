//! A small tar reader (ustar, GNU and pax) that keeps what the `tar` crate
//! loses or hides: pax records with binary values (xattrs such as
//! `security.capability` may contain newlines), the sparse maps of GNU
//! (old `S` and pax 1.0) sparse entries, and the archive offset of each
//! entry's data, so data can be copied straight out of a tar file.

use std::io::{self, Read};

use crate::meta::Timestamp;

const BLOCK: u64 = 512;

/// One member of the archive (after its long-name, pax and sparse headers).
#[derive(Debug, Clone, Default)]
pub struct TarEntry {
    /// Path.
    pub path: Vec<u8>,
    /// Link target (symlinks and hard links).
    pub link: Vec<u8>,
    /// Type flag (`b'0'`, `b'5'`, ...; GNU sparse is reported as `b'0'`).
    pub kind: u8,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: Timestamp,
    /// Access time, if recorded.
    pub atime: Option<Timestamp>,
    /// Change time, if recorded.
    pub ctime: Option<Timestamp>,
    /// Device numbers.
    pub dev: (u32, u32),
    /// Extended attributes from `SCHILY.xattr.*` records.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The file's logical size.
    pub size: u64,
    /// Data segments `(logical offset, length)`, stored back to back in the
    /// archive; `None` means one segment covering the whole file.
    pub sparse: Option<Vec<(u64, u64)>>,
    /// Archive offset of the first data byte.
    pub data_offset: u64,
    /// Data bytes stored in the archive.
    pub data_len: u64,
}

/// Skipping input bytes: by reading and discarding, or by seeking.
pub trait SkipBytes {
    /// Skip `n` bytes.
    fn skip_bytes(&mut self, n: u64) -> io::Result<()>;
}

/// Reads entries one after another; the caller consumes or skips each
/// entry's data through [`TarReader::read_data`] / the next call to `next`.
pub struct TarReader<R: Read + SkipBytes> {
    r: R,
    pos: u64,
    /// Data bytes of the current entry not yet consumed (plus padding).
    left: u64,
    pad: u64,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// A numeric header field: octal text, or base-256 when the top bit is set.
fn num(field: &[u8]) -> io::Result<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        let mut v: u64 = (field[0] & 0x7F) as u64;
        for &b in &field[1..] {
            v = v
                .checked_mul(256)
                .ok_or_else(|| bad("numeric field overflows"))?
                | b as u64;
        }
        return Ok(v);
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .take_while(|&b| b != 0)
        .filter(|&b| b != b' ')
        .collect();
    if s.is_empty() {
        return Ok(0);
    }
    let s = std::str::from_utf8(&s).map_err(|_| bad("numeric field is not text"))?;
    u64::from_str_radix(s, 8).map_err(|_| bad("numeric field is not octal"))
}

fn cstr(field: &[u8]) -> Vec<u8> {
    field.iter().copied().take_while(|&b| b != 0).collect()
}

/// A pax time: `[-]seconds[.fraction]`.
pub fn parse_time(s: &[u8]) -> Option<Timestamp> {
    let s = std::str::from_utf8(s).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut sec: i64 = secs.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let mut nsec: u32 = digits.parse().ok()?;
    if neg {
        sec = -sec;
        if nsec > 0 {
            sec -= 1;
            nsec = 1_000_000_000 - nsec;
        }
    }
    Some(Timestamp { sec, nsec })
}

/// Split pax data into `(key, value)` records using their length prefixes.
fn pax_records(data: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && rest[0] != 0 {
        let sp = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| bad("pax record without length"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("pax record length is not a number"))?;
        if len <= sp + 1 || len > rest.len() {
            return Err(bad("pax record length out of range"));
        }
        let rec = &rest[sp + 1..len - 1]; // drop the trailing newline
        let eq = rec
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| bad("pax record without '='"))?;
        out.push((rec[..eq].to_vec(), rec[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

impl<R: Read + SkipBytes> TarReader<R> {
    /// Read from `r`, which is positioned at the start of the archive.
    pub fn new(r: R) -> Self {
        TarReader {
            r,
            pos: 0,
            left: 0,
            pad: 0,
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.r.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, n: u64) -> io::Result<()> {
        if n > 0 {
            self.r.skip_bytes(n)?;
            self.pos += n;
        }
        Ok(())
    }

    fn read_member(&mut self, size: u64) -> io::Result<Vec<u8>> {
        if size > 64 << 20 {
            return Err(bad("extension header larger than 64 MiB"));
        }
        let mut v = vec![0u8; size as usize];
        self.read_exact(&mut v)?;
        self.skip(size.next_multiple_of(BLOCK) - size)?;
        Ok(v)
    }

    /// Archive offset of the next byte `read_data` returns.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Read up to `buf.len()` bytes of the current entry's stored data.
    pub fn read_data(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = (buf.len() as u64).min(self.left) as usize;
        if k == 0 {
            return Ok(0);
        }
        self.read_exact(&mut buf[..k])?;
        self.left -= k as u64;
        Ok(k)
    }

    /// Skip `n` bytes of the current entry's data (e.g. copied by offset instead).
    pub fn skip_data(&mut self, n: u64) -> io::Result<()> {
        let n = n.min(self.left);
        self.skip(n)?;
        self.left -= n;
        Ok(())
    }

    /// The next entry, or `None` at the end of the archive.
    pub fn next_entry(&mut self) -> io::Result<Option<TarEntry>> {
        let rest = self.left + self.pad;
        self.skip(rest)?;
        self.left = 0;
        self.pad = 0;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        loop {
            let mut h = [0u8; 512];
            match self.r.read_exact(&mut h) {
                Ok(()) => self.pos += BLOCK,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            }
            if h.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            let stored = num(&h[148..156])?;
            let sum: u64 = h
                .iter()
                .enumerate()
                .map(|(i, &b)| {
                    if (148..156).contains(&i) {
                        32
                    } else {
                        b as u64
                    }
                })
                .sum();
            if stored != sum {
                return Err(bad("header checksum mismatch"));
            }
            let kind = h[156];
            let size = num(&h[124..136])?;
            match kind {
                b'L' => {
                    long_name = Some(cstr(&self.read_member(size)?));
                    continue;
                }
                b'K' => {
                    long_link = Some(cstr(&self.read_member(size)?));
                    continue;
                }
                b'x' => {
                    let data = self.read_member(size)?;
                    pax.extend(pax_records(&data)?);
                    continue;
                }
                b'g' => {
                    self.read_member(size)?;
                    continue;
                }
                _ => {}
            }
            let ustar = &h[257..263] == b"ustar\0";
            let gnu = &h[257..265] == b"ustar  \0";
            let mut e = TarEntry {
                kind: if kind == 0 || kind == b'7' || kind == b'S' {
                    b'0'
                } else {
                    kind
                },
                mode: (num(&h[100..108])? & 0o7777) as u32,
                uid: num(&h[108..116])? as u32,
                gid: num(&h[116..124])? as u32,
                mtime: Timestamp::from_secs(num(&h[136..148])? as i64),
                dev: (num(&h[329..337])? as u32, num(&h[337..345])? as u32),
                data_len: size,
                size,
                ..TarEntry::default()
            };
            e.path = cstr(&h[0..100]);
            if ustar && h[345] != 0 {
                let mut p = cstr(&h[345..500]);
                p.push(b'/');
                p.extend_from_slice(&e.path);
                e.path = p;
            }
            e.link = cstr(&h[157..257]);
            if gnu {
                let a = num(&h[345..357])?;
                let c = num(&h[357..369])?;
                if a != 0 {
                    e.atime = Some(Timestamp::from_secs(a as i64));
                }
                if c != 0 {
                    e.ctime = Some(Timestamp::from_secs(c as i64));
                }
            }
            if kind == b'S' {
                // Old GNU sparse: 4 map entries in the header, more in
                // extension blocks of 21; realsize at 483.
                let mut map = Vec::new();
                let mut push = |chunk: &[u8]| -> io::Result<()> {
                    let off = num(&chunk[..12])?;
                    let len = num(&chunk[12..24])?;
                    if off != 0 || len != 0 {
                        map.push((off, len));
                    }
                    Ok(())
                };
                for i in 0..4 {
                    push(&h[386 + 24 * i..386 + 24 * (i + 1)])?;
                }
                let mut extended = h[482] != 0;
                while extended {
                    let mut x = [0u8; 512];
                    self.read_exact(&mut x)?;
                    for i in 0..21 {
                        push(&x[24 * i..24 * (i + 1)])?;
                    }
                    extended = x[504] != 0;
                }
                e.size = num(&h[483..495])?;
                e.sparse = Some(map);
            }
            let mut pax_sparse = false;
            for (k, v) in &pax {
                match k.as_slice() {
                    b"path" => e.path = v.clone(),
                    b"linkpath" => e.link = v.clone(),
                    b"size" => {
                        e.data_len = std::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| bad("pax size"))?;
                        e.size = e.data_len;
                    }
                    b"uid" => {
                        e.uid = std::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(e.uid)
                    }
                    b"gid" => {
                        e.gid = std::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(e.gid)
                    }
                    b"mtime" => e.mtime = parse_time(v).unwrap_or(e.mtime),
                    b"atime" => e.atime = parse_time(v).or(e.atime),
                    b"ctime" => e.ctime = parse_time(v).or(e.ctime),
                    b"GNU.sparse.major" => pax_sparse = v == b"1",
                    _ => {
                        if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                            e.xattrs.push((name.to_vec(), v.clone()));
                        }
                    }
                }
            }
            if let Some(n) = long_name {
                e.path = n;
            }
            if let Some(l) = long_link {
                e.link = l;
            }
            self.left = e.data_len;
            self.pad = e.data_len.next_multiple_of(BLOCK) - e.data_len;
            if pax_sparse {
                // GNU sparse 1.0: the real name and size are pax records, the
                // map is decimal text at the start of the data, padded to 512.
                for (k, v) in &pax {
                    match k.as_slice() {
                        b"GNU.sparse.name" => e.path = v.clone(),
                        b"GNU.sparse.realsize" => {
                            e.size = std::str::from_utf8(v)
                                .ok()
                                .and_then(|s| s.parse().ok())
                                .ok_or_else(|| bad("sparse realsize"))?
                        }
                        _ => {}
                    }
                }
                let mut text = Vec::new();
                let mut nums = Vec::new();
                let mut want: Option<usize> = None;
                while want.is_none_or(|w| nums.len() < 1 + 2 * w) {
                    let mut blk = [0u8; 512];
                    let k = self.read_data(&mut blk)?;
                    if k < 512 {
                        return Err(bad("truncated sparse map"));
                    }
                    text.extend_from_slice(&blk);
                    let mut lines = text.split(|&b| b == b'\n').collect::<Vec<_>>();
                    lines.pop(); // incomplete tail
                    nums = lines
                        .iter()
                        .map(|l| {
                            std::str::from_utf8(l)
                                .ok()
                                .and_then(|s| s.parse::<u64>().ok())
                        })
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| bad("sparse map is not numbers"))?;
                    if want.is_none() && !nums.is_empty() {
                        want = Some(nums[0] as usize);
                    }
                }
                let map = nums[1..1 + 2 * want.unwrap_or(0)]
                    .chunks(2)
                    .map(|c| (c[0], c[1]))
                    .collect();
                e.sparse = Some(map);
            }
            e.data_offset = self.pos;
            if !matches!(e.kind, b'0') {
                // Only regular files have data we hand out.
                e.size = if e.kind == b'1' { 0 } else { e.size };
            }
            return Ok(Some(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_may_hold_newlines() {
        let rec = |k: &str, v: &[u8]| {
            let body_len = k.len() + v.len() + 3; // ' ' '=' '\n'
            let mut n = body_len + 1;
            while format!("{n}").len() + body_len != n {
                n += 1;
            }
            let mut r = format!("{n} {k}=").into_bytes();
            r.extend_from_slice(v);
            r.push(b'\n');
            r
        };
        let mut data = rec("SCHILY.xattr.user.x", b"a\nb=c\n");
        data.extend(rec("path", b"some/where"));
        let recs = pax_records(&data).unwrap();
        assert_eq!(
            recs[0],
            (b"SCHILY.xattr.user.x".to_vec(), b"a\nb=c\n".to_vec())
        );
        assert_eq!(recs[1], (b"path".to_vec(), b"some/where".to_vec()));
    }

    #[test]
    fn numbers_in_octal_and_base_256() {
        assert_eq!(num(b"0000644\0").unwrap(), 0o644);
        assert_eq!(num(b"        ").unwrap(), 0);
        assert_eq!(
            num(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0]).unwrap(),
            2 << 16
        );
    }

    #[test]
    fn negative_pax_times() {
        assert_eq!(
            parse_time(b"-1.25"),
            Some(Timestamp {
                sec: -2,
                nsec: 750_000_000
            })
        );
        assert_eq!(
            parse_time(b"1700000000.000000001"),
            Some(Timestamp {
                sec: 1_700_000_000,
                nsec: 1
            })
        );
    }
}
