//! The ext4 superblock (1024 bytes at byte offset 1024 of the image).

use crate::crc::crc32c_raw;
use crate::format::*;
use crate::le::{put_u16, put_u32};

/// The fields of the superblock this writer sets; everything else is zero.
#[derive(Debug, Clone, Default)]
pub struct Superblock {
    /// Total inodes (`inodes_per_group * groups`).
    pub inodes_count: u32,
    /// Total blocks.
    pub blocks_count: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Free inodes.
    pub free_inodes: u32,
    /// Blocks per group (32768 for 4 KiB blocks).
    pub blocks_per_group: u32,
    /// Inodes per group.
    pub inodes_per_group: u32,
    /// Mount, write, mkfs and last-check time.
    pub time: i64,
    /// Compatible features.
    pub feature_compat: u32,
    /// Incompatible features.
    pub feature_incompat: u32,
    /// Read-only-compatible features.
    pub feature_ro_compat: u32,
    /// Filesystem UUID.
    pub uuid: [u8; 16],
    /// Volume label (up to 16 bytes).
    pub volume_name: [u8; 16],
    /// Journal inode (8) or 0.
    pub journal_inum: u32,
    /// Directory hash seed.
    pub hash_seed: [u8; 16],
    /// Backup of the journal inode's `i_block` (15 words), then `i_size_high`, `i_size`.
    pub jnl_blocks: Option<[u32; 17]>,
    /// log2 of groups per flex group.
    pub log_groups_per_flex: u8,
    /// Groups holding a backup superblock and descriptors (`sparse_super2`; 0: none).
    pub backup_bgs: [u32; 2],
    /// The group this copy sits in (0 for the primary).
    pub block_group_nr: u16,
}

impl Superblock {
    /// Serialise, including the crc32c checksum over the first 1020 bytes.
    pub fn to_bytes(&self) -> [u8; 1024] {
        let mut b = [0u8; 1024];
        put_u32(&mut b, 0x0, self.inodes_count);
        put_u32(&mut b, 0x4, self.blocks_count as u32);
        put_u32(&mut b, 0xC, self.free_blocks as u32);
        put_u32(&mut b, 0x10, self.free_inodes);
        put_u32(&mut b, 0x14, 0); // first data block: 0 with 4 KiB blocks
        put_u32(&mut b, 0x18, 2); // log2(block size) - 10
        put_u32(&mut b, 0x1C, 2); // cluster size == block size
        put_u32(&mut b, 0x20, self.blocks_per_group);
        put_u32(&mut b, 0x24, self.blocks_per_group);
        put_u32(&mut b, 0x28, self.inodes_per_group);
        let t = self.time as u32;
        let t_hi = (self.time >> 32) as u8;
        put_u32(&mut b, 0x2C, 0); // s_mtime: never mounted
        put_u32(&mut b, 0x30, t); // s_wtime
        put_u16(&mut b, 0x34, 0); // mount count
        put_u16(&mut b, 0x36, 0xFFFF); // max mount count: no forced checks
        put_u16(&mut b, 0x38, SUPER_MAGIC);
        put_u16(&mut b, 0x3A, 1); // state: clean
        put_u16(&mut b, 0x3C, 1); // errors: continue
        put_u32(&mut b, 0x40, t); // last check
        put_u32(&mut b, 0x4C, 1); // dynamic revision
        put_u32(&mut b, 0x54, 11); // first non-reserved inode
        put_u16(&mut b, 0x58, INODE_SIZE as u16);
        put_u16(&mut b, 0x5A, self.block_group_nr);
        put_u32(&mut b, 0x5C, self.feature_compat);
        put_u32(&mut b, 0x60, self.feature_incompat);
        put_u32(&mut b, 0x64, self.feature_ro_compat);
        b[0x68..0x78].copy_from_slice(&self.uuid);
        b[0x78..0x88].copy_from_slice(&self.volume_name);
        put_u32(&mut b, 0xE0, self.journal_inum);
        b[0xEC..0xFC].copy_from_slice(&self.hash_seed);
        b[0xFC] = 1; // default hash: half_md4
        if let Some(jb) = &self.jnl_blocks {
            b[0xFD] = 1; // EXT3_JNL_BACKUP_BLOCKS
            for (i, w) in jb.iter().enumerate() {
                put_u32(&mut b, 0x10C + 4 * i, *w);
            }
        }
        put_u16(&mut b, 0xFE, DESC_SIZE as u16);
        put_u32(&mut b, 0x100, 0x000C); // default mount options: user_xattr, acl
        put_u32(&mut b, 0x108, t); // mkfs time
        put_u32(&mut b, 0x150, (self.blocks_count >> 32) as u32);
        put_u32(&mut b, 0x158, (self.free_blocks >> 32) as u32);
        put_u16(&mut b, 0x15C, crate::inode::EXTRA_ISIZE);
        put_u16(&mut b, 0x15E, crate::inode::EXTRA_ISIZE);
        put_u32(&mut b, 0x160, FLAGS_UNSIGNED_HASH);
        b[0x174] = self.log_groups_per_flex;
        b[0x175] = 1; // checksum type: crc32c
        put_u32(&mut b, 0x24C, self.backup_bgs[0]);
        put_u32(&mut b, 0x250, self.backup_bgs[1]);
        b[0x274] = t_hi; // s_wtime_hi
        b[0x276] = t_hi; // s_mkfs_time_hi
        b[0x277] = t_hi; // s_lastcheck_hi
        let csum = crc32c_raw(!0, &b[..0x3FC]);
        put_u32(&mut b, 0x3FC, csum);
        b
    }
}
