//! The jbd2 journal (inode 8): an empty journal is its superblock (v2,
//! big-endian) in the first block followed by blocks that are never read
//! until the kernel writes them.

use crate::BLOCK_SIZE;

/// jbd2 magic.
const MAGIC: u32 = 0xC03B_3998;
/// `JBD2_SUPERBLOCK_V2`.
const SUPERBLOCK_V2: u32 = 4;

/// Journal size in blocks for a file system of `fs_blocks` blocks, following
/// `mke2fs`'s defaults (4 MiB up to 128 MiB, 16 MiB up to 1 GiB, ...).
pub fn default_blocks(fs_blocks: u64) -> u32 {
    match fs_blocks {
        0..32_768 => 1024,
        32_768..262_144 => 4096,
        262_144..524_288 => 8192,
        524_288..4_194_304 => 16_384,
        _ => 32_768,
    }
}

/// The journal superblock for a clean, empty journal of `blocks` blocks.
pub fn superblock(blocks: u32, uuid: &[u8; 16]) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK_SIZE];
    let mut put = |off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_be_bytes());
    put(0x0, MAGIC);
    put(0x4, SUPERBLOCK_V2);
    put(0x8, 0);
    put(0xC, BLOCK_SIZE as u32);
    put(0x10, blocks);
    put(0x14, 1); // first log block
    put(0x18, 1); // first expected commit sequence
    put(0x1C, 0); // s_start = 0: the journal is clean
    put(0x40, 1); // one user: this file system
    b[0x30..0x40].copy_from_slice(uuid);
    b
}
