//! Block group descriptors (64 bytes each with the `64bit` feature).

use crate::crc::crc32c_raw;
use crate::format::DESC_SIZE;
use crate::le::{put_u16, put_u32};

/// `EXT4_BG_INODE_ZEROED`: the inode table is zeroed (no lazy init needed).
pub const BG_INODE_ZEROED: u16 = 0x4;

/// One block group's descriptor.
#[derive(Debug, Clone, Default)]
pub struct GroupDesc {
    /// Block holding this group's block bitmap.
    pub block_bitmap: u64,
    /// Block holding this group's inode bitmap.
    pub inode_bitmap: u64,
    /// First block of this group's inode table.
    pub inode_table: u64,
    /// Free blocks in the group.
    pub free_blocks: u32,
    /// Free inodes in the group.
    pub free_inodes: u32,
    /// Directories in the group.
    pub used_dirs: u32,
    /// Inodes at the end of the table never used.
    pub itable_unused: u32,
    /// crc32c of the block bitmap.
    pub block_bitmap_csum: u32,
    /// crc32c of the inode bitmap.
    pub inode_bitmap_csum: u32,
}

impl GroupDesc {
    /// Serialise descriptor `group`, with its checksum under `csum_seed`.
    pub fn to_bytes(&self, group: u32, csum_seed: u32) -> [u8; DESC_SIZE] {
        let mut b = [0u8; DESC_SIZE];
        put_u32(&mut b, 0x0, self.block_bitmap as u32);
        put_u32(&mut b, 0x4, self.inode_bitmap as u32);
        put_u32(&mut b, 0x8, self.inode_table as u32);
        put_u16(&mut b, 0xC, self.free_blocks as u16);
        put_u16(&mut b, 0xE, self.free_inodes as u16);
        put_u16(&mut b, 0x10, self.used_dirs as u16);
        put_u16(&mut b, 0x12, BG_INODE_ZEROED);
        put_u16(&mut b, 0x18, self.block_bitmap_csum as u16);
        put_u16(&mut b, 0x1A, self.inode_bitmap_csum as u16);
        put_u16(&mut b, 0x1C, self.itable_unused as u16);
        put_u32(&mut b, 0x20, (self.block_bitmap >> 32) as u32);
        put_u32(&mut b, 0x24, (self.inode_bitmap >> 32) as u32);
        put_u32(&mut b, 0x28, (self.inode_table >> 32) as u32);
        put_u16(&mut b, 0x2C, (self.free_blocks >> 16) as u16);
        put_u16(&mut b, 0x2E, (self.free_inodes >> 16) as u16);
        put_u16(&mut b, 0x30, (self.used_dirs >> 16) as u16);
        put_u16(&mut b, 0x32, (self.itable_unused >> 16) as u16);
        put_u16(&mut b, 0x38, (self.block_bitmap_csum >> 16) as u16);
        put_u16(&mut b, 0x3A, (self.inode_bitmap_csum >> 16) as u16);
        // bg_checksum (0x1E) is still zero here, which is what the crc covers.
        let crc = crc32c_raw(crc32c_raw(csum_seed, &group.to_le_bytes()), &b);
        put_u16(&mut b, 0x1E, crc as u16);
        b
    }
}
