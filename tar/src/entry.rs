//! One archive member after its extension headers are applied: a normalised
//! path, its metadata, and where its stored data lies in the archive.

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A regular file (also GNU sparse and contiguous files, and unknown types).
    File,
    /// Another name for an earlier entry; [`Entry::link`] is its normalised path.
    HardLink,
    /// A symbolic link; [`Entry::link`] is its target as stored.
    Symlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A directory.
    Dir,
    /// A named pipe.
    Fifo,
}

/// A point in time: seconds since the epoch and nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time {
    /// Seconds since the epoch (negative before 1970).
    pub sec: i64,
    /// Nanoseconds, `0..1_000_000_000`.
    pub nsec: u32,
}

/// A run of a sparse file's stored data: `len` bytes at logical `offset`.
/// Runs are stored back to back in the archive; what lies between them is a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseRun {
    /// Offset within the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Normalised path: no leading `./`, no empty or `.` components, no
    /// trailing slash; the archive root is empty.
    pub path: Vec<u8>,
    /// What it is.
    pub kind: Kind,
    /// Symlink target (as stored) or hard-link target (normalised); empty otherwise.
    pub link: Vec<u8>,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: Time,
    /// Access time, when the archive records one.
    pub atime: Option<Time>,
    /// Status change time, when the archive records one.
    pub ctime: Option<Time>,
    /// Device major and minor numbers (devices only, else zero).
    pub dev: (u32, u32),
    /// Extended attributes (name, value) in archive order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// A regular file's logical size (the real size of a sparse file); 0 otherwise.
    pub size: u64,
    /// A sparse file's data runs, in increasing, non-overlapping order.
    pub sparse: Option<Vec<SparseRun>>,
    /// Archive offset of the entry's first header (its extension headers
    /// included), for messages.
    pub header_offset: u64,
    /// Archive offset of the first stored data byte.
    pub data_offset: u64,
    /// Stored data bytes (the sum of the runs for a sparse file).
    pub data_len: u64,
}

/// A run of file data as it lies in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRun {
    /// Offset within the file.
    pub logical: u64,
    /// Offset within the archive.
    pub archive: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Entry {
    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    /// A regular file's data runs in logical order, with their archive
    /// offsets; gaps are holes. Empty for other kinds and empty files.
    pub fn data_runs(&self) -> impl Iterator<Item = DataRun> + '_ {
        let file = self.kind == Kind::File;
        let whole = (file && self.sparse.is_none() && self.size > 0).then_some(DataRun {
            logical: 0,
            archive: self.data_offset,
            len: self.size,
        });
        let mut at = self.data_offset;
        let runs = self
            .sparse
            .iter()
            .flatten()
            .filter(move |_| file)
            .map(move |r| {
                let run = DataRun {
                    logical: r.offset,
                    archive: at,
                    len: r.len,
                };
                at += r.len;
                run
            });
        whole.into_iter().chain(runs)
    }
}
