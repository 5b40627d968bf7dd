//! The packer's error type: what failed, and on which path.

use std::io;

/// Everything that can go wrong while packing.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Writing the image failed.
    #[error("writing the image")]
    Io(#[from] io::Error),
    /// Reading a source (file, directory, tar stream) failed.
    #[error("{path}")]
    Source {
        /// The source path.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The path is empty after normalisation where a name is needed, or has `..`.
    #[error("{0}: invalid path")]
    BadPath(String),
    /// A path component is longer than 255 bytes.
    #[error("{0}: name longer than 255 bytes")]
    NameTooLong(String),
    /// The parent directory was not created before the entry.
    #[error("{0}: parent directory does not exist")]
    NoParent(String),
    /// A non-directory entry was created twice.
    #[error("{0}: already exists")]
    Exists(String),
    /// A symlink without a target, or with one of more than 4095 bytes.
    #[error("{0}: a symlink needs a target of 1 to 4095 bytes")]
    BadSymlink(String),
    /// The mode has no known file type.
    #[error("{0}: unknown file type in mode {1:o}")]
    BadMode(String, u32),
    /// An extended attribute cannot be stored.
    #[error("{path}: extended attribute {name}: {reason}")]
    Xattr {
        /// Entry path.
        path: String,
        /// Attribute name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// `write_data`/`copy_range` without a regular file just created.
    #[error("no regular file is open to receive data")]
    NoOpenFile,
    /// More data than the size given to `create`, or data out of order.
    #[error(
        "{path}: data at offset {offset} does not fit the declared size {size} or goes backwards"
    )]
    BadData {
        /// Entry path.
        path: String,
        /// Offending logical offset.
        offset: u64,
        /// Declared size.
        size: u64,
    },
    /// A file larger than ext4's 16 TiB limit for 4 KiB blocks.
    #[error("{0}: file too large for ext4")]
    FileTooLarge(String),
    /// The hard link target does not exist or is a directory.
    #[error("{0}: hard link target {1} is missing or a directory")]
    BadLink(String, String),
    /// A directory too large for a two-level htree.
    #[error("{0}: directory has too many entries")]
    DirTooLarge(String),
    /// The tree does not fit the `size` asked for.
    #[error("the image needs {needed} bytes but its size was set to {size}")]
    TooSmall {
        /// Bytes needed.
        needed: u64,
        /// Bytes allowed.
        size: u64,
    },
    /// The image outgrew the group descriptor space reserved at the start.
    #[error("the image ({0} bytes) outgrew the space reserved for group descriptors; set Options::max_size")]
    TooLarge(u64),
    /// A tar archive d2v does not accept (the message names the entry).
    #[error(transparent)]
    Tar(#[from] d2v_tar::TarError),
}
