//! Directory entries (`ext4_dir_entry_2`) and linear directory blocks, each
//! ending in a 12-byte checksum tail (`ext4_dir_entry_tail`).

use crate::crc::crc32c_raw;
use crate::le::{put_u16, put_u32};
use crate::BLOCK_SIZE;

/// Bytes at the end of a leaf block reserved for the checksum tail.
pub const TAIL_SIZE: usize = 12;
/// Usable bytes in a leaf block.
pub const LEAF_SPACE: usize = BLOCK_SIZE - TAIL_SIZE;

/// One name in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name (1..=255 bytes, no `/` or NUL).
    pub name: Vec<u8>,
    /// Inode number it points to.
    pub ino: u32,
    /// `EXT4_FT_*` file type.
    pub file_type: u8,
}

/// `EXT4_FT_*` for the `S_IF*` bits of `mode`.
pub fn file_type(mode: u32) -> u8 {
    use crate::meta::*;
    match mode & S_IFMT {
        S_IFREG => 1,
        S_IFDIR => 2,
        S_IFCHR => 3,
        S_IFBLK => 4,
        S_IFIFO => 5,
        S_IFSOCK => 6,
        S_IFLNK => 7,
        _ => 0,
    }
}

/// Minimal record length of an entry with a name of `name_len` bytes.
pub fn rec_len(name_len: usize) -> usize {
    (8 + name_len + 3) & !3
}

/// Write an entry at `off` with record length `rec`.
pub fn put_entry(blk: &mut [u8], off: usize, ino: u32, rec: usize, name: &[u8], ft: u8) {
    put_u32(blk, off, ino);
    put_u16(blk, off + 4, rec as u16);
    blk[off + 6] = name.len() as u8;
    blk[off + 7] = ft;
    blk[off + 8..off + 8 + name.len()].copy_from_slice(name);
}

/// Fill in the checksum tail of a leaf block.
pub fn seal_leaf(blk: &mut [u8], inode_seed: u32) {
    let t = LEAF_SPACE;
    put_u32(blk, t, 0);
    put_u16(blk, t + 4, TAIL_SIZE as u16);
    blk[t + 6] = 0;
    blk[t + 7] = 0xDE;
    let crc = crc32c_raw(inode_seed, &blk[..t]);
    put_u32(blk, t + 8, crc);
}

/// Pack entries into leaf blocks, in order, filling each block before
/// starting the next. Blocks come back unsealed. `on_block_start` is told the
/// index of each entry that opens a new block.
pub fn pack_leaves<'a>(
    entries: impl IntoIterator<Item = &'a DirEntry>,
    mut on_block_start: impl FnMut(usize),
) -> Vec<Vec<u8>> {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut off = 0usize;
    let mut last_off = 0usize;
    for (i, e) in entries.into_iter().enumerate() {
        let need = rec_len(e.name.len());
        if blocks.is_empty() || off + need > LEAF_SPACE {
            if let Some(b) = blocks.last_mut() {
                put_u16(b, last_off + 4, (LEAF_SPACE - last_off) as u16);
            }
            blocks.push(vec![0u8; BLOCK_SIZE]);
            off = 0;
            on_block_start(i);
        }
        let b = blocks.last_mut().expect("a block was just pushed");
        put_entry(b, off, e.ino, need, &e.name, e.file_type);
        last_off = off;
        off += need;
    }
    if let Some(b) = blocks.last_mut() {
        put_u16(b, last_off + 4, (LEAF_SPACE - last_off) as u16);
    }
    blocks
}

/// An empty leaf block (one unused entry spanning it), for padding.
pub fn empty_leaf() -> Vec<u8> {
    let mut b = vec![0u8; BLOCK_SIZE];
    put_u16(&mut b, 4, LEAF_SPACE as u16);
    b
}

/// Bytes of an inline directory's `i_block` that hold entries: all but the
/// 4-byte parent inode number (its implied `..`) at the front.
pub const INLINE_ENTRY_SPACE: usize = 56;

/// Write `entries` one after another into `region`, the last one's record
/// stretched to the region's end; an empty region gets one unused entry.
fn fill_region(region: &mut [u8], entries: &[&DirEntry]) {
    let mut off = 0;
    for (i, e) in entries.iter().enumerate() {
        let rec = if i + 1 == entries.len() {
            region.len() - off
        } else {
            rec_len(e.name.len())
        };
        put_entry(region, off, e.ino, rec, &e.name, e.file_type);
        off += rec;
    }
    if entries.is_empty() {
        put_u16(region, 4, region.len() as u16);
    }
}

/// Lay a directory out inline (`INCOMPAT_INLINE_DATA`): `i_block` holds the
/// parent inode and as many entries as fit its 56 bytes, in order; the rest
/// go to the `system.data` value, which then takes all `room` bytes the
/// inode has for it (as the kernel does when it grows an inline directory).
/// Returns `i_block` and the value (empty when `i_block` sufficed), or `None`
/// when the entries do not fit.
pub fn pack_inline(parent: u32, entries: &[DirEntry], room: usize) -> Option<([u8; 60], Vec<u8>)> {
    let mut head = Vec::new();
    let mut used = 0;
    let mut rest = entries.iter().peekable();
    while let Some(e) = rest.peek() {
        let need = rec_len(e.name.len());
        if used + need > INLINE_ENTRY_SPACE {
            break;
        }
        used += need;
        head.push(*e);
        rest.next();
    }
    let tail: Vec<&DirEntry> = rest.collect();
    let mut i_block = [0u8; 60];
    put_u32(&mut i_block, 0, parent);
    fill_region(&mut i_block[4..], &head);
    if tail.is_empty() {
        return Some((i_block, Vec::new()));
    }
    let need: usize = tail.iter().map(|e| rec_len(e.name.len())).sum();
    if need > room {
        return None;
    }
    let mut value = vec![0u8; room];
    fill_region(&mut value, &tail);
    Some((i_block, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::le::get_u32;

    fn entry(name: &str, ino: u32) -> DirEntry {
        DirEntry {
            name: name.as_bytes().to_vec(),
            ino,
            file_type: 1,
        }
    }

    /// (inode, rec_len, name) of each entry in a region.
    fn walk(region: &[u8]) -> Vec<(u32, usize, Vec<u8>)> {
        let mut out = Vec::new();
        let mut off = 0;
        while off < region.len() {
            let rec = u16::from_le_bytes([region[off + 4], region[off + 5]]) as usize;
            let n = region[off + 6] as usize;
            out.push((
                get_u32(region, off),
                rec,
                region[off + 8..off + 8 + n].to_vec(),
            ));
            off += rec;
        }
        assert_eq!(off, region.len(), "records cover the region exactly");
        out
    }

    #[test]
    fn an_empty_inline_dir_has_one_unused_entry() {
        let (ib, v) = pack_inline(7, &[], 68).unwrap();
        assert_eq!(get_u32(&ib, 0), 7);
        assert_eq!(walk(&ib[4..]), vec![(0, 56, vec![])]);
        assert!(v.is_empty());
    }

    #[test]
    fn entries_spill_from_i_block_into_the_value() {
        // 16 + 16 + 16 bytes fit the 56 of i_block; the fourth spills.
        let es: Vec<_> = (0..4).map(|i| entry(&format!("name{i}"), 20 + i)).collect();
        let (ib, v) = pack_inline(2, &es, 68).unwrap();
        let head = walk(&ib[4..]);
        assert_eq!(head.len(), 3);
        assert_eq!(head[2].1, 56 - 32);
        assert_eq!(v.len(), 68);
        assert_eq!(walk(&v), vec![(23, 68, b"name3".to_vec())]);
        let many: Vec<_> = (0..9).map(|i| entry(&format!("name{i}"), 20 + i)).collect();
        assert!(pack_inline(2, &many, 68).is_none());
    }
}
