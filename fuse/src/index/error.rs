//! Errors raised while building or opening a layer index.

use std::io;
use std::path::PathBuf;

/// Why a layer blob could not be indexed, or an index could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// An I/O operation on the blob or the index file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "map", "write", ...).
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The tar stream ends in the middle of a header or of an entry's data.
    #[error("truncated tar: {what} at byte {offset} runs past the end of the blob")]
    Truncated {
        /// What was cut short.
        what: &'static str,
        /// Byte offset of the header or record in the blob.
        offset: u64,
    },
    /// A tar header's checksum does not match its contents.
    #[error("bad tar header checksum at byte {offset}")]
    BadChecksum {
        /// Byte offset of the header in the blob.
        offset: u64,
    },
    /// A header or extended record is malformed.
    #[error("malformed tar header at byte {offset}: {reason}")]
    Malformed {
        /// Byte offset of the header in the blob.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An entry's path is absolute.
    #[error("tar entry {} has an absolute path", lossy(.path))]
    AbsolutePath {
        /// The raw path as stored in the tar.
        path: Vec<u8>,
    },
    /// An entry's path has a `..` component.
    #[error("tar entry {} has a '..' component", lossy(.path))]
    ParentComponent {
        /// The raw path as stored in the tar.
        path: Vec<u8>,
    },
    /// A hard link points outside the layer (absolute or `..`).
    #[error("hard link {} points outside the layer: {}", lossy(.path), lossy(.target))]
    HardLinkOutside {
        /// The link entry's path.
        path: Vec<u8>,
        /// The raw link target.
        target: Vec<u8>,
    },
    /// A hard link's target is not an earlier non-directory entry of the same layer.
    #[error("hard link {} points to missing entry {}", lossy(.path), lossy(.target))]
    HardLinkMissing {
        /// The link entry's path.
        path: Vec<u8>,
        /// The (normalised) link target.
        target: Vec<u8>,
    },
    /// A GNU multi-volume or other unsupported entry type.
    #[error("tar entry {} has unsupported type {kind:?}", lossy(.path))]
    Unsupported {
        /// The entry's path.
        path: Vec<u8>,
        /// The type flag byte.
        kind: char,
    },
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

fn lossy(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(b))
}
