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
