//! What [`crate::Ext4Writer::finish`] produced: [`Summary`].

/// What [`Ext4Writer::finish`] produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Regular files (inodes, not names).
    pub files: u64,
    /// Directories, including the root and lost+found.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Devices, fifos and sockets.
    pub specials: u64,
    /// Regular files stored in their inode (inline data).
    pub inline_files: u64,
    /// Directories stored in their inode (inline data).
    pub inline_dirs: u64,
    /// Extra names of hard-linked files.
    pub hard_links: u64,
    /// Sum of regular file sizes.
    pub data_bytes: u64,
    /// Bytes of data blocks actually stored (holes excluded, tails padded).
    pub data_block_bytes: u64,
    /// Image size in bytes.
    pub image_bytes: u64,
    /// Journal size in bytes.
    pub journal_bytes: u64,
    /// Free space in bytes.
    pub free_bytes: u64,
    /// Free inodes.
    pub free_inodes: u64,
    /// Inode table bytes holding the free inodes (headroom, not overhead).
    pub free_inode_table_bytes: u64,
    /// Everything else: superblock, descriptors, bitmaps, inode tables,
    /// directories, extent trees, xattr blocks, slow symlinks.
    pub overhead_bytes: u64,
    /// The file system UUID.
    pub uuid: [u8; 16],
}

impl Summary {
    /// Overhead as a percentage of the image size minus journal and free space.
    pub fn overhead_percent(&self) -> f64 {
        let base = self
            .image_bytes
            .saturating_sub(self.journal_bytes + self.free_bytes);
        if base == 0 {
            0.0
        } else {
            100.0 * self.overhead_bytes as f64 / base as f64
        }
    }
}
