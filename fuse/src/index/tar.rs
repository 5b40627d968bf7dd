//! A single-pass tar reader over an in-memory (mmapped) blob.
//!
//! Understands ustar, GNU (long names `L`/`K`, old sparse `S` with extension
//! blocks) and PAX (`x` records incl. `SCHILY.xattr.*`, `LIBARCHIVE.xattr.*`,
//! fractional `mtime`, GNU sparse 0.0/0.1/1.0). It records where each entry's
//! data lives instead of copying it.

use std::collections::HashMap;

use super::pax::{base64_decode, parse_pax, pax_get, pax_time, percent_decode};
use super::{EntryKind, IndexError, Segment};

const BLOCK: usize = 512;

/// One tar entry after extension headers are applied and paths normalised.
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    pub path: Vec<u8>,
    pub kind: EntryKind,
    pub hardlink: bool,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Logical size (the real size for sparse files).
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Symlink target, or the normalised hard-link target.
    pub link: Vec<u8>,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Blob offset of contiguous data (when `sparse` is `None`).
    pub data_off: u64,
    pub sparse: Option<Vec<Segment>>,
    /// Hard-link group id (tar ordinal of the original), `u32::MAX` if none.
    pub group: u32,
}

/// A sparse file's (logical offset, length) runs, its real size and the blob
/// offset where its stored data starts.
type SparseMap = (Vec<(u64, u64)>, u64, usize);

/// Extension state that applies to the next real entry.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Parses every entry of `data`; later duplicates of a path replace earlier ones.
pub(crate) fn parse(data: &[u8]) -> Result<Vec<RawEntry>, IndexError> {
    let mut entries: Vec<RawEntry> = Vec::new();
    let mut live: Vec<bool> = Vec::new();
    let mut by_path: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut pending = Pending::default();
    let mut pos = 0usize;
    loop {
        if pos == data.len() {
            if pending.long_name.is_some() || !pending.pax.is_empty() {
                return Err(IndexError::Truncated {
                    what: "extended header without entry",
                    offset: pos as u64,
                });
            }
            break; // Tolerate a missing end-of-archive marker.
        }
        let Some(h) = data.get(pos..pos + BLOCK) else {
            return Err(IndexError::Truncated {
                what: "header",
                offset: pos as u64,
            });
        };
        if h.iter().all(|&b| b == 0) {
            break;
        }
        verify_checksum(h, pos)?;
        let typeflag = h[156];
        let mut size = num(&h[124..136], pos, "size")?;
        if typeflag != b'x' && typeflag != b'g' {
            if let Some(v) = pax_get(&pending.pax, b"size") {
                size = dec(v, pos, "pax size")?;
            }
        }
        let mut data_off = pos + BLOCK;
        // Old GNU sparse: extension blocks of sparse map follow the header.
        let mut gnu_sparse: Option<(Vec<(u64, u64)>, u64)> = None;
        if typeflag == b'S' {
            let mut map = Vec::new();
            push_sparse(&h[386..482], 4, &mut map, pos)?;
            let mut extended = h[482] != 0;
            let real = num(&h[483..495], pos, "sparse realsize")?;
            while extended {
                let Some(ext) = data.get(data_off..data_off + BLOCK) else {
                    return Err(IndexError::Truncated {
                        what: "sparse extension header",
                        offset: data_off as u64,
                    });
                };
                push_sparse(&ext[..504], 21, &mut map, data_off)?;
                extended = ext[504] != 0;
                data_off += BLOCK;
            }
            gnu_sparse = Some((map, real));
        }
        let end = (data_off as u64)
            .checked_add(size)
            .filter(|&e| e <= data.len() as u64)
            .ok_or(IndexError::Truncated {
                what: "entry data",
                offset: pos as u64,
            })? as usize;
        let body = &data[data_off..end];
        let next = data_off + (size as usize).div_ceil(BLOCK) * BLOCK;
        match typeflag {
            b'L' => pending.long_name = Some(trim_nul(body).to_vec()),
            b'K' => pending.long_link = Some(trim_nul(body).to_vec()),
            b'x' => parse_pax(body, pos, &mut pending.pax)?,
            b'g' | b'V' => {}
            _ => {
                let p = std::mem::take(&mut pending);
                let mut e = build_entry(h, typeflag, p, pos, data_off, size, gnu_sparse, data)?;
                if e.hardlink {
                    let target = by_path
                        .get(&e.link)
                        .map(|&i| &entries[i])
                        .filter(|t| t.kind != EntryKind::Dir)
                        .ok_or_else(|| IndexError::HardLinkMissing {
                            path: e.path.clone(),
                            target: e.link.clone(),
                        })?;
                    let tgt_idx = by_path[&e.link];
                    let group = if target.group == u32::MAX {
                        tgt_idx as u32
                    } else {
                        target.group
                    };
                    let t = target.clone();
                    entries[tgt_idx].group = group;
                    e.kind = t.kind;
                    e.mode = t.mode;
                    e.uid = t.uid;
                    e.gid = t.gid;
                    e.size = t.size;
                    e.mtime = t.mtime;
                    e.mtime_nsec = t.mtime_nsec;
                    e.rdev_major = t.rdev_major;
                    e.rdev_minor = t.rdev_minor;
                    e.xattrs = t.xattrs;
                    e.data_off = t.data_off;
                    e.sparse = t.sparse;
                    e.group = group;
                    if t.kind == EntryKind::Symlink {
                        // A hard link to a symlink carries the symlink's target.
                        e.link = t.link;
                        e.hardlink = false;
                    }
                }
                if let Some(old) = by_path.insert(e.path.clone(), entries.len()) {
                    live[old] = false;
                }
                entries.push(e);
                live.push(true);
            }
        }
        pos = next;
        if pos > data.len() {
            return Err(IndexError::Truncated {
                what: "entry padding",
                offset: pos as u64,
            });
        }
    }
    let mut out = Vec::with_capacity(entries.len());
    for (e, l) in entries.into_iter().zip(live) {
        if l {
            out.push(e);
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn build_entry(
    h: &[u8],
    typeflag: u8,
    p: Pending,
    pos: usize,
    data_off: usize,
    size: u64,
    gnu_sparse: Option<(Vec<(u64, u64)>, u64)>,
    data: &[u8],
) -> Result<RawEntry, IndexError> {
    let ustar = &h[257..263] == b"ustar\0";
    let raw_path = if let Some(v) = pax_get(&p.pax, b"GNU.sparse.name") {
        v.to_vec()
    } else if let Some(v) = pax_get(&p.pax, b"path") {
        v.to_vec()
    } else if let Some(v) = p.long_name {
        v
    } else {
        let name = trim_nul(&h[0..100]);
        let prefix = trim_nul(&h[345..500]);
        if ustar && !prefix.is_empty() {
            let mut v = prefix.to_vec();
            v.push(b'/');
            v.extend_from_slice(name);
            v
        } else {
            name.to_vec()
        }
    };
    let path = normalize(&raw_path).map_err(|abs| {
        if abs {
            IndexError::AbsolutePath {
                path: raw_path.clone(),
            }
        } else {
            IndexError::ParentComponent {
                path: raw_path.clone(),
            }
        }
    })?;
    let raw_link = if let Some(v) = pax_get(&p.pax, b"linkpath") {
        v.to_vec()
    } else if let Some(v) = p.long_link {
        v
    } else {
        trim_nul(&h[157..257]).to_vec()
    };
    let (kind, hardlink) = match typeflag {
        b'0' | 0 | b'7' | b'S' => (EntryKind::File, false),
        b'1' => (EntryKind::File, true),
        b'2' => (EntryKind::Symlink, false),
        b'3' => (EntryKind::CharDevice, false),
        b'4' => (EntryKind::BlockDevice, false),
        b'5' | b'D' => (EntryKind::Dir, false),
        b'6' => (EntryKind::Fifo, false),
        b'M' | b'N' => {
            return Err(IndexError::Unsupported {
                path,
                kind: typeflag as char,
            })
        }
        _ => (EntryKind::File, false),
    };
    // Old-style tars mark directories only by a trailing slash.
    let kind = if (typeflag == 0 || typeflag == b'0') && raw_path.ends_with(b"/") {
        EntryKind::Dir
    } else {
        kind
    };
    let link = if hardlink {
        normalize(&raw_link).map_err(|_| IndexError::HardLinkOutside {
            path: path.clone(),
            target: raw_link.clone(),
        })?
    } else if kind == EntryKind::Symlink {
        raw_link
    } else {
        Vec::new()
    };
    let mode = (num(&h[100..108], pos, "mode")? & 0o7777) as u32;
    let mut uid = num(&h[108..116], pos, "uid")? as u32;
    let mut gid = num(&h[116..124], pos, "gid")? as u32;
    let mut mtime = num_signed(&h[136..148], pos, "mtime")?;
    let mut mtime_nsec = 0u32;
    let (mut rdev_major, mut rdev_minor) = (0, 0);
    if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
        rdev_major = num(&h[329..337], pos, "devmajor")? as u32;
        rdev_minor = num(&h[337..345], pos, "devminor")? as u32;
    }
    let mut xattrs = Vec::new();
    let mut sparse_major: Option<u64> = None;
    let mut sparse_real: Option<u64> = None;
    let mut sparse_offsets: Vec<u64> = Vec::new();
    let mut sparse_sizes: Vec<u64> = Vec::new();
    let mut sparse_map01: Option<Vec<u64>> = None;
    for (k, v) in &p.pax {
        match k.as_slice() {
            b"uid" => uid = dec(v, pos, "pax uid")? as u32,
            b"gid" => gid = dec(v, pos, "pax gid")? as u32,
            b"mtime" => (mtime, mtime_nsec) = pax_time(v, pos)?,
            b"GNU.sparse.major" => sparse_major = Some(dec(v, pos, "sparse major")?),
            b"GNU.sparse.realsize" | b"GNU.sparse.size" => {
                sparse_real = Some(dec(v, pos, "sparse size")?)
            }
            b"GNU.sparse.offset" => sparse_offsets.push(dec(v, pos, "sparse offset")?),
            b"GNU.sparse.numbytes" => sparse_sizes.push(dec(v, pos, "sparse numbytes")?),
            b"GNU.sparse.map" => {
                let mut m = Vec::new();
                for part in v.split(|&b| b == b',').filter(|s| !s.is_empty()) {
                    m.push(dec(part, pos, "sparse map")?);
                }
                sparse_map01 = Some(m);
            }
            _ => {
                if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                    set_xattr(&mut xattrs, name.to_vec(), v.clone());
                } else if let Some(enc) = k.strip_prefix(b"LIBARCHIVE.xattr.") {
                    if let (Some(name), Some(val)) = (percent_decode(enc), base64_decode(v)) {
                        set_xattr(&mut xattrs, name, val);
                    }
                }
            }
        }
    }
    let mut e = RawEntry {
        path,
        kind,
        hardlink,
        mode,
        uid,
        gid,
        size: if kind == EntryKind::File { size } else { 0 },
        mtime,
        mtime_nsec,
        link,
        rdev_major,
        rdev_minor,
        xattrs,
        data_off: data_off as u64,
        sparse: None,
        group: u32::MAX,
    };
    if hardlink {
        return Ok(e);
    }
    // Work out the sparse map, if any, and where each stored chunk lives.
    let mut map: Option<SparseMap> = None;
    if let Some((pairs, real)) = gnu_sparse {
        map = Some((pairs, real, data_off));
    } else if sparse_major == Some(1) {
        let body = &data[data_off..data_off + size as usize];
        let (pairs, consumed) = parse_sparse10(body, pos)?;
        let real = sparse_real.unwrap_or(0);
        map = Some((pairs, real, data_off + consumed));
    } else if let Some(m) = sparse_map01 {
        if m.len() % 2 != 0 {
            return Err(malformed(pos, "odd GNU.sparse.map"));
        }
        let pairs = m.chunks(2).map(|c| (c[0], c[1])).collect();
        map = Some((pairs, sparse_real.unwrap_or(size), data_off));
    } else if !sparse_offsets.is_empty() {
        if sparse_offsets.len() != sparse_sizes.len() {
            return Err(malformed(pos, "unpaired GNU.sparse.offset/numbytes"));
        }
        let pairs = sparse_offsets.into_iter().zip(sparse_sizes).collect();
        map = Some((pairs, sparse_real.unwrap_or(size), data_off));
    }
    if let Some((pairs, real, start)) = map {
        let mut segs = Vec::with_capacity(pairs.len());
        let mut blob = start as u64;
        let limit = (data_off as u64) + size;
        for (logical, len) in pairs {
            if len == 0 {
                continue;
            }
            if blob + len > limit || logical.checked_add(len).is_none_or(|e| e > real) {
                return Err(malformed(
                    pos,
                    "sparse map exceeds stored data or real size",
                ));
            }
            segs.push(Segment { logical, blob, len });
            blob += len;
        }
        e.size = real;
        e.sparse = Some(segs);
        e.kind = EntryKind::File;
    }
    Ok(e)
}

fn set_xattr(xattrs: &mut Vec<(Vec<u8>, Vec<u8>)>, name: Vec<u8>, val: Vec<u8>) {
    if let Some(slot) = xattrs.iter_mut().find(|(n, _)| *n == name) {
        slot.1 = val;
    } else {
        xattrs.push((name, val));
    }
}

/// Normalises a tar path: strips `./`, empty and `.` components and a trailing
/// slash. `Err(true)` for absolute paths, `Err(false)` for `..` components.
pub(crate) fn normalize(raw: &[u8]) -> Result<Vec<u8>, bool> {
    if raw.starts_with(b"/") {
        return Err(true);
    }
    let mut out = Vec::with_capacity(raw.len());
    for c in raw.split(|&b| b == b'/') {
        if c.is_empty() || c == b"." {
            continue;
        }
        if c == b".." {
            return Err(false);
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    Ok(out)
}

fn verify_checksum(h: &[u8], pos: usize) -> Result<(), IndexError> {
    let stored = num(&h[148..156], pos, "checksum")
        .map_err(|_| IndexError::BadChecksum { offset: pos as u64 })?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if stored == unsigned || stored as i64 == signed {
        Ok(())
    } else {
        Err(IndexError::BadChecksum { offset: pos as u64 })
    }
}

pub(super) fn malformed(pos: usize, reason: &str) -> IndexError {
    IndexError::Malformed {
        offset: pos as u64,
        reason: reason.to_string(),
    }
}

fn trim_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// A numeric header field: octal (space/NUL padded) or GNU base-256.
fn num(f: &[u8], pos: usize, what: &str) -> Result<u64, IndexError> {
    if f.first().is_some_and(|&b| b & 0x80 != 0) {
        if f[0] == 0xff {
            return Err(malformed(pos, &format!("negative {what}")));
        }
        let mut v: u64 = u64::from(f[0] & 0x7f);
        for &b in &f[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(|| malformed(pos, &format!("{what} overflows")))?;
        }
        return Ok(v);
    }
    let mut v: u64 = 0;
    let mut seen = false;
    for &b in f {
        match b {
            b'0'..=b'7' => {
                seen = true;
                v = v
                    .checked_mul(8)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .ok_or_else(|| malformed(pos, &format!("{what} overflows")))?;
            }
            b' ' if !seen => {}
            b' ' | 0 => break,
            _ => return Err(malformed(pos, &format!("bad octal digit in {what}"))),
        }
    }
    Ok(v)
}

fn num_signed(f: &[u8], pos: usize, what: &str) -> Result<i64, IndexError> {
    if f.first() == Some(&0xff) {
        // Two's complement base-256 negative number.
        let mut v: i64 = -1;
        for &b in &f[f.len().saturating_sub(8)..] {
            v = (v << 8) | i64::from(b);
        }
        return Ok(v);
    }
    Ok(num(f, pos, what)? as i64)
}

pub(super) fn dec(v: &[u8], pos: usize, what: &str) -> Result<u64, IndexError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| malformed(pos, &format!("bad decimal {what}")))
}

fn push_sparse(
    area: &[u8],
    n: usize,
    map: &mut Vec<(u64, u64)>,
    pos: usize,
) -> Result<(), IndexError> {
    for i in 0..n {
        let off = &area[i * 24..i * 24 + 12];
        let len = &area[i * 24 + 12..i * 24 + 24];
        if off[0] == 0 && len[0] == 0 {
            break;
        }
        map.push((
            num(off, pos, "sparse offset")?,
            num(len, pos, "sparse numbytes")?,
        ));
    }
    Ok(())
}

/// GNU sparse 1.0: a decimal map (`count\n` then `offset\nsize\n` pairs) at the
/// start of the data, padded to a block. Returns the pairs and the map's size.
fn parse_sparse10(body: &[u8], pos: usize) -> Result<(Vec<(u64, u64)>, usize), IndexError> {
    let mut at = 0usize;
    let next = |at: &mut usize| -> Result<u64, IndexError> {
        let rest = body
            .get(*at..)
            .ok_or_else(|| malformed(pos, "sparse 1.0 map truncated"))?;
        let nl = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| malformed(pos, "sparse 1.0 map truncated"))?;
        let v = dec(&rest[..nl], pos, "sparse 1.0 map")?;
        *at += nl + 1;
        Ok(v)
    };
    let count = next(&mut at)?;
    if count > (body.len() as u64) {
        return Err(malformed(pos, "sparse 1.0 map count too large"));
    }
    let mut pairs = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let o = next(&mut at)?;
        let l = next(&mut at)?;
        pairs.push((o, l));
    }
    let consumed = at.div_ceil(BLOCK) * BLOCK;
    if consumed > body.len() {
        return Err(malformed(pos, "sparse 1.0 map truncated"));
    }
    Ok((pairs, consumed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_strips_dot_and_slashes() {
        assert_eq!(normalize(b"./a/b/").unwrap(), b"a/b");
        assert_eq!(normalize(b"./").unwrap(), b"");
        assert_eq!(normalize(b"a//./b").unwrap(), b"a/b");
        assert_eq!(normalize(b"/etc"), Err(true));
        assert_eq!(normalize(b"a/../b"), Err(false));
    }
}
