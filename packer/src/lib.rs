//! `d2v-packer`: a streaming, compact, deterministic ext4 image writer.
//!
//! Entries go in one at a time, like building a tar: create an entry with
//! its metadata, hand over a regular file's data (bytes, or a range of
//! another file copied with `copy_file_range`), add hard links, finish. File
//! data is written to the image as it arrives; the metadata (directories,
//! extent trees, inode tables, bitmaps, journal) is laid out at the end, and
//! the image is sized to what it holds plus the free space asked for. The
//! same input gives the same bytes: the UUID and directory hash seed derive
//! from a digest of the entries.
//!
//! The result has 4 KiB blocks, extents, `flex_bg`, `64bit`, `metadata_csum`,
//! `dir_index`, 256-byte inodes with nanosecond timestamps, in-inode and
//! shared xattr blocks, and (by default) a jbd2 journal and free space: a
//! writable root file system that `e2fsck -fn` accepts.
//!
//! ```no_run
//! use d2v_packer::{Ext4Writer, Metadata, Options, Timestamp, S_IFDIR, S_IFREG};
//! let out = std::fs::File::create("rootfs.ext4")?;
//! let mut w = Ext4Writer::new(out, Options::default())?;
//! let t = Timestamp::from_secs(1_700_000_000);
//! w.create(b"etc", &Metadata::new(S_IFDIR | 0o755, t), None, 0)?;
//! w.create(b"etc/hostname", &Metadata::new(S_IFREG | 0o644, t), None, 4)?;
//! w.write_data(b"vm0\n")?;
//! let summary = w.finish()?;
//! println!("{} bytes", summary.image_bytes);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bitmap;
mod crc;
mod dir;
mod error;
mod extent;
mod format;
mod geometry;
mod group;
mod htree;
mod inode;
mod journal;
mod layout;
mod le;
mod meta;
mod node;
mod options;
pub mod source;
mod stream;
mod summary;
mod superblock;
mod tables;
mod writer;
mod xattr;

pub use error::PackError;
pub use format::BLOCK_SIZE;
pub use meta::{
    Metadata, Timestamp, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK,
};
pub use options::Options;
pub use summary::Summary;
pub use writer::Ext4Writer;

/// The half-MD4 directory hash of `name` under `seed`, as the kernel computes it
/// (exposed for tests and tools).
pub fn dir_hash(name: &[u8], seed: &[u32; 4]) -> (u32, u32) {
    htree::half_md4(name, seed)
}
