//! On-disk constants of the ext4 images this writer makes, in one place: the
//! geometry every structure shares, the reserved inode numbers, the feature
//! flags the superblock announces, and the inode flags. Each structure's own
//! layout (field offsets, magic numbers) stays in its module.

/// File system block size.
pub const BLOCK_SIZE: usize = 4096;
/// Blocks per block group (one bitmap block's worth).
pub const BLOCKS_PER_GROUP: u64 = 8 * BLOCK_SIZE as u64;
/// Bytes per block group.
pub const GROUP_BYTES: u64 = BLOCKS_PER_GROUP * BLOCK_SIZE as u64;
/// Bytes per inode (`s_inode_size`).
pub const INODE_SIZE: usize = 256;
/// Inodes per inode table block.
pub const INODES_PER_BLOCK: u64 = (BLOCK_SIZE / INODE_SIZE) as u64;
/// Bytes per group descriptor (`s_desc_size`, 64bit feature).
pub const DESC_SIZE: usize = 64;

/// The root directory's inode.
pub const ROOT_INO: u32 = 2;
/// The journal's inode.
pub const JOURNAL_INO: u32 = 8;
/// lost+found, the first non-reserved inode.
pub const LOST_FOUND_INO: u32 = 11;

/// Bytes of inline data that `i_block` holds; the rest goes to `system.data`.
pub const INLINE_I_BLOCK: usize = 60;
/// Largest file: 2^32 blocks.
pub const MAX_FILE_SIZE: u64 = (1u64 << 32) * BLOCK_SIZE as u64 - BLOCK_SIZE as u64;
/// Most inodes sharing one xattr block (the kernel's `EXT4_XATTR_REFCOUNT_MAX`).
pub const XATTR_REFCOUNT_MAX: u32 = 1024;
/// Directories with more links than this report 1 (`dir_nlink`).
pub const LINK_MAX: u32 = 65000;

/// ext4 superblock magic.
pub const SUPER_MAGIC: u16 = 0xEF53;
/// `COMPAT_HAS_JOURNAL`.
pub const COMPAT_HAS_JOURNAL: u32 = 0x4;
/// `COMPAT_EXT_ATTR`.
pub const COMPAT_EXT_ATTR: u32 = 0x8;
/// `COMPAT_DIR_INDEX`.
pub const COMPAT_DIR_INDEX: u32 = 0x20;
/// `COMPAT_SPARSE_SUPER2`: backups only in the groups `s_backup_bgs` names.
pub const COMPAT_SPARSE_SUPER2: u32 = 0x200;
/// `INCOMPAT_FILETYPE`.
pub const INCOMPAT_FILETYPE: u32 = 0x2;
/// `INCOMPAT_EXTENTS`.
pub const INCOMPAT_EXTENTS: u32 = 0x40;
/// `INCOMPAT_64BIT`.
pub const INCOMPAT_64BIT: u32 = 0x80;
/// `INCOMPAT_FLEX_BG`.
pub const INCOMPAT_FLEX_BG: u32 = 0x200;
/// `INCOMPAT_INLINE_DATA`: small files and directories live in their inode.
pub const INCOMPAT_INLINE_DATA: u32 = 0x8000;
/// `RO_COMPAT_SPARSE_SUPER`.
pub const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
/// `RO_COMPAT_LARGE_FILE`.
pub const RO_COMPAT_LARGE_FILE: u32 = 0x2;
/// `RO_COMPAT_HUGE_FILE`.
pub const RO_COMPAT_HUGE_FILE: u32 = 0x8;
/// `RO_COMPAT_DIR_NLINK`.
pub const RO_COMPAT_DIR_NLINK: u32 = 0x20;
/// `RO_COMPAT_EXTRA_ISIZE`.
pub const RO_COMPAT_EXTRA_ISIZE: u32 = 0x40;
/// `RO_COMPAT_METADATA_CSUM`.
pub const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
/// `s_flags`: directory hashes use unsigned chars (same on every architecture).
pub const FLAGS_UNSIGNED_HASH: u32 = 0x2;

/// `EXT4_INDEX_FL`: a hashed (htree) directory.
pub const FL_INDEX: u32 = 0x1000;
/// `EXT4_HUGE_FILE_FL`: `i_blocks` counts file system blocks, not sectors.
pub const FL_HUGE_FILE: u32 = 0x4_0000;
/// `EXT4_EXTENTS_FL`: `i_block` holds an extent tree.
pub const FL_EXTENTS: u32 = 0x8_0000;
/// `EXT4_INLINE_DATA_FL`: the data is in `i_block` and the `system.data` xattr.
pub const FL_INLINE_DATA: u32 = 0x1000_0000;
