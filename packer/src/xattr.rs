//! Extended attributes: the in-inode area and shared xattr blocks, entries
//! sorted and hashed as `fs/ext4/xattr.c` expects, POSIX ACLs converted to
//! ext4's compact on-disk form.

use crate::crc::crc32c_raw;
use crate::inode::XATTR_SPACE;
use crate::le::{put_u16, put_u32};
use crate::BLOCK_SIZE;

/// Magic of the in-inode area and of xattr blocks.
pub const MAGIC: u32 = 0xEA02_0000;
/// Block header size.
const BLOCK_HEADER: usize = 32;

/// An attribute in on-disk form: name index, name suffix, value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attr {
    /// `EXT4_XATTR_INDEX_*`.
    pub index: u8,
    /// Name without the index's prefix.
    pub name: Vec<u8>,
    /// Stored value.
    pub value: Vec<u8>,
}

/// Why an attribute cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XattrError {
    /// The name has no ext4 namespace prefix.
    UnknownNamespace,
    /// A POSIX ACL value could not be parsed.
    BadAcl,
    /// The name suffix is longer than 255 bytes.
    NameTooLong,
}

const PREFIXES: &[(&[u8], u8)] = &[
    (b"system.posix_acl_access", 2),
    (b"system.posix_acl_default", 3),
    (b"system.richacl", 8),
    (b"user.", 1),
    (b"trusted.", 4),
    (b"security.", 6),
    (b"system.", 7),
];

/// Convert a full name and value (as `getxattr` returns them) to on-disk form.
pub fn to_attr(name: &[u8], value: &[u8]) -> Result<Attr, XattrError> {
    for (prefix, index) in PREFIXES {
        if let Some(rest) = name.strip_prefix(*prefix) {
            if (*index == 2 || *index == 3 || *index == 8) && !rest.is_empty() {
                continue;
            }
            if rest.len() > 255 {
                return Err(XattrError::NameTooLong);
            }
            let value = if *index == 2 || *index == 3 {
                acl_to_disk(value).ok_or(XattrError::BadAcl)?
            } else {
                value.to_vec()
            };
            return Ok(Attr {
                index: *index,
                name: rest.to_vec(),
                value,
            });
        }
    }
    Err(XattrError::UnknownNamespace)
}

/// POSIX ACL xattr (version 2, 8-byte entries) to ext4's version 1 format
/// (4-byte entries for the owner/group/mask/other tags, 8 bytes otherwise).
fn acl_to_disk(v: &[u8]) -> Option<Vec<u8>> {
    if v.len() < 4 || (v.len() - 4) & 7 != 0 || u32::from_le_bytes(v[..4].try_into().ok()?) != 2 {
        return None;
    }
    let mut out = 1u32.to_le_bytes().to_vec();
    for e in v[4..].chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        out.extend_from_slice(&e[..4]);
        match tag {
            0x01 | 0x04 | 0x10 | 0x20 => {}
            0x02 | 0x08 => out.extend_from_slice(&e[4..8]),
            _ => return None,
        }
    }
    Some(out)
}

fn entry_size(a: &Attr) -> usize {
    (16 + a.name.len() + 3) & !3
}

fn value_size(a: &Attr) -> usize {
    (a.value.len() + 3) & !3
}

/// `ext4_xattr_hash_entry`.
pub fn entry_hash(a: &Attr) -> u32 {
    let mut h: u32 = 0;
    for &c in &a.name {
        h = (h << 5) ^ (h >> 27) ^ c as u32;
    }
    for w in a.value.chunks(4) {
        let mut word = [0u8; 4];
        word[..w.len()].copy_from_slice(w);
        h = (h << 16) ^ (h >> 16) ^ u32::from_le_bytes(word);
    }
    h
}

/// Sort into the order ext4 keeps: by index, then name length, then name.
pub fn sort(attrs: &mut [Attr]) {
    attrs.sort_by(|a, b| (a.index, a.name.len(), &a.name).cmp(&(b.index, b.name.len(), &b.name)));
}

/// Whether `attrs` fit the in-inode area.
pub fn fits_inline(attrs: &[Attr]) -> bool {
    4 + attrs
        .iter()
        .map(|a| entry_size(a) + value_size(a))
        .sum::<usize>()
        + 4
        <= XATTR_SPACE
}

/// `EXT4_XATTR_INDEX_SYSTEM`, the namespace of `system.data`.
const INDEX_SYSTEM: u8 = 7;

/// The `system.data` attribute that holds an inline-data inode's bytes
/// beyond the 60 in `i_block` (present, possibly empty, on every such inode).
pub fn inline_data_attr(value: Vec<u8>) -> Attr {
    Attr {
        index: INDEX_SYSTEM,
        name: b"data".to_vec(),
        value,
    }
}

/// The longest `system.data` value that fits the in-inode area next to
/// `attrs` (a multiple of 4), or `None` if not even an empty one fits.
pub fn max_inline_data_value(attrs: &[Attr]) -> Option<usize> {
    let data_entry = entry_size(&inline_data_attr(Vec::new()));
    let used = 4
        + attrs
            .iter()
            .map(|a| entry_size(a) + value_size(a))
            .sum::<usize>()
        + data_entry
        + 4;
    XATTR_SPACE.checked_sub(used).map(|free| free & !3)
}

/// `attrs` plus a `system.data` entry holding `value`, sorted.
pub fn with_inline_data(attrs: &[Attr], value: Vec<u8>) -> Vec<Attr> {
    let mut all = attrs.to_vec();
    all.push(inline_data_attr(value));
    sort(&mut all);
    all
}

/// Whether `attrs` fit one xattr block.
pub fn fits_block(attrs: &[Attr]) -> bool {
    BLOCK_HEADER
        + attrs
            .iter()
            .map(|a| entry_size(a) + value_size(a))
            .sum::<usize>()
        + 4
        <= BLOCK_SIZE
}

/// Lay out entries at `entries_at` and values downward from `end` in `buf`;
/// value offsets are relative to `base`. Returns the entry hashes.
fn lay_out(buf: &mut [u8], attrs: &[Attr], entries_at: usize, base: usize, end: usize) -> Vec<u32> {
    let mut off = entries_at;
    let mut vend = end;
    let mut hashes = Vec::with_capacity(attrs.len());
    for a in attrs {
        let voff = if a.value.is_empty() {
            0
        } else {
            vend -= value_size(a);
            buf[vend..vend + a.value.len()].copy_from_slice(&a.value);
            vend - base
        };
        let h = entry_hash(a);
        hashes.push(h);
        buf[off] = a.name.len() as u8;
        buf[off + 1] = a.index;
        put_u16(buf, off + 2, voff as u16);
        put_u32(buf, off + 4, 0);
        put_u32(buf, off + 8, a.value.len() as u32);
        put_u32(buf, off + 12, h);
        buf[off + 16..off + 16 + a.name.len()].copy_from_slice(&a.name);
        off += entry_size(a);
    }
    hashes
}

/// The in-inode area for sorted `attrs` (which must [`fits_inline`]).
pub fn inline_area(attrs: &[Attr]) -> Vec<u8> {
    if attrs.is_empty() {
        return Vec::new();
    }
    let mut buf = vec![0u8; XATTR_SPACE];
    put_u32(&mut buf, 0, MAGIC);
    lay_out(&mut buf, attrs, 4, 4, XATTR_SPACE);
    buf
}

/// A shared xattr block for sorted `attrs` (which must [`fits_block`]),
/// referenced by `refcount` inodes, stored at block `block_nr`.
pub fn block(attrs: &[Attr], refcount: u32, block_nr: u64, csum_seed: u32) -> Vec<u8> {
    let mut buf = vec![0u8; BLOCK_SIZE];
    put_u32(&mut buf, 0, MAGIC);
    put_u32(&mut buf, 4, refcount);
    put_u32(&mut buf, 8, 1);
    let hashes = lay_out(&mut buf, attrs, BLOCK_HEADER, 0, BLOCK_SIZE);
    let mut h: u32 = 0;
    for eh in hashes {
        if eh == 0 {
            h = 0;
            break;
        }
        h = (h << 16) ^ (h >> 16) ^ eh;
    }
    put_u32(&mut buf, 12, h);
    let crc = crc32c_raw(crc32c_raw(csum_seed, &block_nr.to_le_bytes()), &buf);
    put_u32(&mut buf, 16, crc);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_indexes() {
        assert_eq!(to_attr(b"user.a", b"v").unwrap().index, 1);
        assert_eq!(
            to_attr(b"security.capability", b"v").unwrap().name,
            b"capability"
        );
        assert_eq!(to_attr(b"trusted.overlay.opaque", b"y").unwrap().index, 4);
        assert_eq!(
            to_attr(b"bogus.x", b"").unwrap_err(),
            XattrError::UnknownNamespace
        );
    }

    #[test]
    fn acls_are_converted_to_the_short_form() {
        // user::rw-, user:1000:r--, group::r--, mask::r--, other::---
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 1000),
            (4, 4, u32::MAX),
            (0x10, 4, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        let a = to_attr(b"system.posix_acl_access", &v).unwrap();
        assert_eq!(a.index, 2);
        assert!(a.name.is_empty());
        assert_eq!(a.value.len(), 4 + 4 + 8 + 4 + 4 + 4);
    }

    #[test]
    fn inline_space_limits() {
        let small = vec![to_attr(b"user.a", &[1; 8]).unwrap()];
        assert!(fits_inline(&small));
        let big = vec![to_attr(b"user.a", &[1; 200]).unwrap()];
        assert!(!fits_inline(&big));
        assert!(fits_block(&big));
    }

    #[test]
    fn inline_data_room_matches_the_kernel() {
        // 256-byte inodes, i_extra_isize 32: the kernel's
        // get_max_inline_xattr_value_size gives 68 bytes, so 128 in all.
        assert_eq!(max_inline_data_value(&[]), Some(68));
        assert!(fits_inline(&with_inline_data(&[], vec![7; 68])));
        assert!(!fits_inline(&with_inline_data(&[], vec![7; 69])));
        let cap = vec![to_attr(b"security.capability", &[1; 20]).unwrap()];
        let room = max_inline_data_value(&cap).unwrap();
        assert!(fits_inline(&with_inline_data(&cap, vec![0; room])));
        assert!(!fits_inline(&with_inline_data(&cap, vec![0; room + 1])));
        let big = vec![to_attr(b"user.a", &[1; 80]).unwrap()];
        assert_eq!(max_inline_data_value(&big), None);
    }
}
