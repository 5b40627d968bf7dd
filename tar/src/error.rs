//! The one error type of the reader: what is wrong, where in the archive, and
//! (once the header is read) which entry.

use std::io;

/// Why an archive could not be read. Entry errors name the entry's path.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Reading the input failed.
    #[error("reading the archive at byte {offset}")]
    Io {
        /// Archive offset of the read.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The archive ends inside a header, an extension or an entry's data.
    #[error("truncated tar: {what} at byte {offset} runs past the end of the archive")]
    Truncated {
        /// What was cut short.
        what: &'static str,
        /// Archive offset of the header or data.
        offset: u64,
    },
    /// A header's checksum does not match its contents.
    #[error("bad tar header checksum at byte {offset}")]
    BadChecksum {
        /// Archive offset of the header.
        offset: u64,
    },
    /// A header, PAX record or sparse map is malformed.
    #[error("malformed tar header at byte {offset}: {reason}")]
    Malformed {
        /// Archive offset of the header.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A field of an entry does not parse or is out of range.
    #[error("tar entry {} (header at byte {offset}): invalid {field} {}", lossy(.path), lossy(.value))]
    BadField {
        /// The entry's path as stored.
        path: Vec<u8>,
        /// Archive offset of its header.
        offset: u64,
        /// The field (`uid`, `pax mtime`, ...).
        field: &'static str,
        /// The value as stored (octal fields: the raw bytes).
        value: Vec<u8>,
    },
    /// An entry's path is absolute.
    #[error("tar entry {} has an absolute path", lossy(.path))]
    AbsolutePath {
        /// The path as stored.
        path: Vec<u8>,
    },
    /// An entry's path has a `..` component.
    #[error("tar entry {} has a '..' component", lossy(.path))]
    ParentComponent {
        /// The path as stored.
        path: Vec<u8>,
    },
    /// An entry's path (or link target) contains a NUL byte.
    #[error("tar entry {} contains a NUL byte", lossy(.path))]
    NulInPath {
        /// The path as stored.
        path: Vec<u8>,
    },
    /// A component of an entry's path is longer than 255 bytes (`NAME_MAX`).
    #[error("tar entry {} has a name longer than 255 bytes", lossy(.path))]
    NameTooLong {
        /// The path as stored.
        path: Vec<u8>,
    },
    /// A symlink's target is empty or longer than 4095 bytes.
    #[error("symlink {} has a target of {len} bytes (it needs 1 to 4095)", lossy(.path))]
    BadSymlink {
        /// The symlink's path.
        path: Vec<u8>,
        /// Length of its target.
        len: usize,
    },
    /// A hard link's target is absolute or has a `..` component.
    #[error("hard link {} points outside the archive: {}", lossy(.path), lossy(.target))]
    HardLinkOutside {
        /// The link's path.
        path: Vec<u8>,
        /// Its target as stored.
        target: Vec<u8>,
    },
    /// A hard link's target is not an earlier non-directory entry.
    #[error("hard link {} points to missing entry {}", lossy(.path), lossy(.target))]
    HardLinkMissing {
        /// The link's path.
        path: Vec<u8>,
        /// Its (normalised) target.
        target: Vec<u8>,
    },
    /// An entry lies under a path whose current entry is not a directory.
    #[error("tar entry {}: {} is not a directory", lossy(.path), lossy(.parent))]
    ParentNotDir {
        /// The entry's path.
        path: Vec<u8>,
        /// The ancestor that is not a directory.
        parent: Vec<u8>,
    },
    /// An entry names the archive root (`./`) but is not a directory.
    #[error("tar entry {} names the archive root but is not a directory", lossy(.path))]
    RootNotDir {
        /// The path as stored.
        path: Vec<u8>,
    },
    /// A GNU multi-volume or other entry type that cannot be read alone.
    #[error("tar entry {} has unsupported type {kind:?}", lossy(.path))]
    Unsupported {
        /// The entry's path.
        path: Vec<u8>,
        /// The type flag.
        kind: char,
    },
    /// A fixed limit was exceeded.
    #[error("tar archive exceeds a limit: {0}")]
    Limit(&'static str),
}

/// A path for messages: quoted, invalid UTF-8 replaced.
pub(crate) fn lossy(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(b))
}
