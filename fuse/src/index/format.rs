//! The on-disk layout of a layer index (all integers little-endian).
//!
//! ```text
//! header   (HEADER_LEN bytes): magic, version, section offsets and counts
//! entries  (ENTRY_LEN each), sorted by path bytes
//! segments (SEG_LEN each): sparse data runs (logical, blob offset, length)
//! xattrs   (XATTR_LEN each): name and value spans into the string area
//! strings  : paths, link targets, xattr names and values, back to back
//! checksum (CHECKSUM_LEN bytes): SHA-256 of everything before it
//! ```
//! Readers never trust the file: the checksum is verified when it is opened
//! (an index that fails it is rebuilt by the store) and every span is still
//! bounds-checked when used.

use super::tar::RawEntry;
use super::IndexError;
use sha2::{Digest as _, Sha256};

/// First eight bytes of every index file.
pub(crate) const MAGIC: &[u8; 8] = b"D2VLIDX\0";
/// Bumped on any incompatible layout change (2: the checksum trailer).
pub(crate) const VERSION: u32 = 2;
pub(crate) const HEADER_LEN: usize = 96;
pub(crate) const ENTRY_LEN: usize = 88;
pub(crate) const SEG_LEN: usize = 24;
pub(crate) const XATTR_LEN: usize = 16;
pub(crate) const CHECKSUM_LEN: usize = 32;

/// Entry flag: this path was a hard link in the tar.
pub(crate) const FLAG_HARDLINK: u8 = 1;
/// Entry flag: data is described by the segment table, not `data_off`.
pub(crate) const FLAG_SPARSE: u8 = 2;

/// Offsets within an entry record.
pub(crate) mod field {
    pub const PATH_OFF: usize = 0;
    pub const PATH_LEN: usize = 4;
    pub const LINK_OFF: usize = 8;
    pub const LINK_LEN: usize = 12;
    pub const KIND: usize = 16;
    pub const FLAGS: usize = 17;
    pub const MODE: usize = 20;
    pub const UID: usize = 24;
    pub const GID: usize = 28;
    pub const SIZE: usize = 32;
    pub const MTIME: usize = 40;
    pub const MTIME_NSEC: usize = 48;
    pub const RDEV_MAJOR: usize = 52;
    pub const RDEV_MINOR: usize = 56;
    pub const SEG_START: usize = 60;
    pub const SEG_COUNT: usize = 64;
    pub const XATTR_START: usize = 68;
    pub const XATTR_COUNT: usize = 72;
    pub const GROUP: usize = 76;
    pub const DATA_OFF: usize = 80;
}

/// Parsed header with absolute section offsets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub entry_count: u64,
    pub blob_size: u64,
    pub entries_off: u64,
    pub segs_off: u64,
    pub seg_count: u64,
    pub xattrs_off: u64,
    pub xattr_count: u64,
    pub strings_off: u64,
    pub strings_len: u64,
    pub total_len: u64,
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes(s.try_into().unwrap_or_default()))
        .unwrap_or(0)
}

pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap_or_default()))
        .unwrap_or(0)
}

impl Header {
    /// Reads and checks the header against the index file length and blob size.
    pub(crate) fn parse(b: &[u8], blob_size: u64) -> Result<Header, String> {
        if b.len() < HEADER_LEN {
            return Err("shorter than its header".into());
        }
        if &b[0..8] != MAGIC {
            return Err("bad magic".into());
        }
        let version = u32_at(b, 8);
        if version != VERSION {
            return Err(format!("version {version}, expected {VERSION}"));
        }
        let h = Header {
            entry_count: u64_at(b, 16),
            blob_size: u64_at(b, 24),
            entries_off: u64_at(b, 32),
            segs_off: u64_at(b, 40),
            seg_count: u64_at(b, 48),
            xattrs_off: u64_at(b, 56),
            xattr_count: u64_at(b, 64),
            strings_off: u64_at(b, 72),
            strings_len: u64_at(b, 80),
            total_len: u64_at(b, 88),
        };
        if h.total_len != b.len() as u64 || b.len() < HEADER_LEN + CHECKSUM_LEN {
            return Err("length does not match header".into());
        }
        let (body, sum) = b.split_at(b.len() - CHECKSUM_LEN);
        if Sha256::digest(body).as_slice() != sum {
            return Err("checksum mismatch".into());
        }
        if h.blob_size != blob_size {
            return Err(format!(
                "indexed a blob of {} bytes, blob has {blob_size}",
                h.blob_size
            ));
        }
        let spans = [
            (h.entries_off, h.entry_count, ENTRY_LEN),
            (h.segs_off, h.seg_count, SEG_LEN),
            (h.xattrs_off, h.xattr_count, XATTR_LEN),
            (h.strings_off, h.strings_len, 1),
        ];
        for (off, count, size) in spans {
            let end = count
                .checked_mul(size as u64)
                .and_then(|n| n.checked_add(off));
            let body_len = h.total_len - CHECKSUM_LEN as u64;
            if off < HEADER_LEN as u64 || end.is_none_or(|e| e > body_len) {
                return Err("section out of bounds".into());
            }
        }
        Ok(h)
    }
}

/// Serialises sorted entries into an index image.
pub(crate) fn write(entries: &[RawEntry], blob_size: u64) -> Result<Vec<u8>, IndexError> {
    let mut strings: Vec<u8> = Vec::new();
    let mut segs: Vec<u8> = Vec::new();
    let mut xattrs: Vec<u8> = Vec::new();
    let mut recs: Vec<u8> = Vec::with_capacity(entries.len() * ENTRY_LEN);
    let mut nsegs: u64 = 0;
    let mut nx: u64 = 0;
    let put_str = |strings: &mut Vec<u8>, s: &[u8]| -> Result<(u32, u32), IndexError> {
        let off = u32::try_from(strings.len()).map_err(|_| IndexError::TooLarge("strings"))?;
        let len = u32::try_from(s.len()).map_err(|_| IndexError::TooLarge("string"))?;
        strings.extend_from_slice(s);
        Ok((off, len))
    };
    for e in entries {
        let mut r = [0u8; ENTRY_LEN];
        let (po, pl) = put_str(&mut strings, &e.path)?;
        let (lo, ll) = put_str(&mut strings, &e.link)?;
        let seg_start = u32::try_from(nsegs).map_err(|_| IndexError::TooLarge("segments"))?;
        let mut seg_count = 0u32;
        let mut flags = 0u8;
        if e.hardlink {
            flags |= FLAG_HARDLINK;
        }
        if let Some(list) = &e.sparse {
            flags |= FLAG_SPARSE;
            for s in list {
                segs.extend_from_slice(&s.logical.to_le_bytes());
                segs.extend_from_slice(&s.blob.to_le_bytes());
                segs.extend_from_slice(&s.len.to_le_bytes());
                seg_count += 1;
            }
            nsegs += u64::from(seg_count);
        }
        let x_start = u32::try_from(nx).map_err(|_| IndexError::TooLarge("xattrs"))?;
        for (n, v) in &e.xattrs {
            let (no, nl) = put_str(&mut strings, n)?;
            let (vo, vl) = put_str(&mut strings, v)?;
            for x in [no, nl, vo, vl] {
                xattrs.extend_from_slice(&x.to_le_bytes());
            }
            nx += 1;
        }
        let put32 = |r: &mut [u8; ENTRY_LEN], at: usize, v: u32| {
            r[at..at + 4].copy_from_slice(&v.to_le_bytes())
        };
        let put64 = |r: &mut [u8; ENTRY_LEN], at: usize, v: u64| {
            r[at..at + 8].copy_from_slice(&v.to_le_bytes())
        };
        put32(&mut r, field::PATH_OFF, po);
        put32(&mut r, field::PATH_LEN, pl);
        put32(&mut r, field::LINK_OFF, lo);
        put32(&mut r, field::LINK_LEN, ll);
        r[field::KIND] = e.kind as u8;
        r[field::FLAGS] = flags;
        put32(&mut r, field::MODE, e.mode);
        put32(&mut r, field::UID, e.uid);
        put32(&mut r, field::GID, e.gid);
        put64(&mut r, field::SIZE, e.size);
        put64(&mut r, field::MTIME, e.mtime as u64);
        put32(&mut r, field::MTIME_NSEC, e.mtime_nsec);
        put32(&mut r, field::RDEV_MAJOR, e.rdev_major);
        put32(&mut r, field::RDEV_MINOR, e.rdev_minor);
        put32(&mut r, field::SEG_START, seg_start);
        put32(&mut r, field::SEG_COUNT, seg_count);
        put32(&mut r, field::XATTR_START, x_start);
        put32(&mut r, field::XATTR_COUNT, e.xattrs.len() as u32);
        put32(&mut r, field::GROUP, e.group);
        put64(&mut r, field::DATA_OFF, e.data_off);
        recs.extend_from_slice(&r);
    }
    let entries_off = HEADER_LEN as u64;
    let segs_off = entries_off + recs.len() as u64;
    let xattrs_off = segs_off + segs.len() as u64;
    let strings_off = xattrs_off + xattrs.len() as u64;
    let total = strings_off + strings.len() as u64 + CHECKSUM_LEN as u64;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for v in [
        entries.len() as u64,
        blob_size,
        entries_off,
        segs_off,
        nsegs,
        xattrs_off,
        nx,
        strings_off,
        strings.len() as u64,
        total,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    debug_assert_eq!(out.len(), HEADER_LEN);
    out.extend_from_slice(&recs);
    out.extend_from_slice(&segs);
    out.extend_from_slice(&xattrs);
    out.extend_from_slice(&strings);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_byte_anywhere_fails_the_checksum() {
        let image = write(&[], 0).unwrap();
        assert!(Header::parse(&image, 0).is_ok());
        // Past the header, where only the checksum notices.
        for at in [HEADER_LEN, image.len() - 1] {
            let mut bad = image.clone();
            bad[at] ^= 0x5a;
            assert_eq!(
                Header::parse(&bad, 0).unwrap_err(),
                "checksum mismatch",
                "byte {at}"
            );
        }
    }
}
