//! Errors raised while building or opening a layer index.

use std::io;
use std::path::PathBuf;

/// Why a layer blob could not be indexed, or an index could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// An I/O operation on the blob or the index file failed.
    #[error("{op} {}", .path.display())]
    Io {
        /// What was being done ("open", "map", "write", ...).
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The layer blob is not a tar d2v accepts (the message names the entry).
    #[error(transparent)]
    Tar(#[from] d2v_tar::TarError),
    /// The index file is not a d2v layer index, is of another version, or is damaged.
    #[error("invalid layer index {path}: {reason}")]
    BadIndex {
        /// The index file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },
    /// The index would be larger than the format can address.
    #[error("layer too large to index: {0}")]
    TooLarge(&'static str),
}
