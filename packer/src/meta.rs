//! What a caller says about an entry: its metadata, independent of ext4.

/// A point in time with nanoseconds, as ext4 stores it (seconds may be
/// negative, i.e. before 1970, and beyond 2038, up to year 2446).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub sec: i64,
    /// Nanoseconds, `0..1_000_000_000`.
    pub nsec: u32,
}

impl Timestamp {
    /// A whole-second timestamp.
    pub fn from_secs(sec: i64) -> Self {
        Timestamp { sec, nsec: 0 }
    }
}

/// File type bits of `mode` (`S_IFMT`).
pub const S_IFMT: u32 = 0o170000;
/// Socket.
pub const S_IFSOCK: u32 = 0o140000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Block device.
pub const S_IFBLK: u32 = 0o060000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Character device.
pub const S_IFCHR: u32 = 0o020000;
/// FIFO.
pub const S_IFIFO: u32 = 0o010000;

/// The metadata of one entry handed to [`crate::Ext4Writer::create`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    /// Permission bits (incl. setuid/setgid/sticky) and the `S_IF*` type bits.
    pub mode: u32,
    /// Owner (full 32 bits).
    pub uid: u32,
    /// Group (full 32 bits).
    pub gid: u32,
    /// Access time.
    pub atime: Timestamp,
    /// Modification time.
    pub mtime: Timestamp,
    /// Change time.
    pub ctime: Timestamp,
    /// Device number `(major, minor)` for character and block devices.
    pub rdev: (u32, u32),
    /// Extended attributes, full names (`user.foo`, `security.capability`) and values.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Metadata {
    /// Metadata of the given mode (type bits included), owned by root, with
    /// all three times set to `time`.
    pub fn new(mode: u32, time: Timestamp) -> Self {
        Metadata {
            mode,
            uid: 0,
            gid: 0,
            atime: time,
            mtime: time,
            ctime: time,
            rdev: (0, 0),
            xattrs: Vec::new(),
        }
    }

    /// The `S_IF*` type bits.
    pub fn file_type(&self) -> u32 {
        self.mode & S_IFMT
    }
}
