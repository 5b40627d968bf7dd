//! How the image is shaped: [`Options`].

/// How the image is shaped.
#[derive(Debug, Clone)]
pub struct Options {
    /// Include a jbd2 journal (inode 8). Default: true.
    pub journal: bool,
    /// Journal size in bytes; `None` follows `mke2fs`'s defaults (4 MiB for
    /// images up to 128 MiB, 16 MiB up to 1 GiB, 32 MiB up to 2 GiB, 64 MiB beyond).
    pub journal_bytes: Option<u64>,
    /// Free space to leave for the VM; `None` means max(64 MiB, 25% of the data).
    pub free_bytes: Option<u64>,
    /// Exact image size in bytes (rounded down to 4 KiB); `None` sizes it to fit.
    pub size: Option<u64>,
    /// Free inodes to leave; `None` means one per 16 KiB of free space, at least
    /// 16384 (none for `read_only_tight`).
    pub free_inodes: Option<u64>,
    /// The tightest image for a read-only root: no journal, no free space or
    /// inodes beyond what `free_bytes`/`free_inodes` explicitly ask for. The
    /// file system is still writable (no `read-only` feature flag).
    pub read_only_tight: bool,
    /// Time used where an entry has none (root, lost+found, superblock).
    pub source_date_epoch: Option<i64>,
    /// Largest image this writer may grow to, which sizes the group descriptor
    /// table reserved at the start of the image before data streams in
    /// (64 bytes per 128 MiB). Default 1 TiB (512 KiB reserved; unused blocks stay free).
    pub max_size: u64,
    /// Volume label (up to 16 bytes).
    pub label: Vec<u8>,
    /// UUID to use instead of the one derived from the content.
    pub uuid: Option<[u8; 16]>,
    /// Store small regular files (1 to 128 bytes) and small directories in
    /// their inode (`INCOMPAT_INLINE_DATA`): no data block, no tail slack.
    /// Default: true. Readers that do not know the feature (some libraries,
    /// kernels before 3.8) need it off.
    pub inline_data: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            journal: true,
            journal_bytes: None,
            free_bytes: None,
            size: None,
            free_inodes: None,
            read_only_tight: false,
            source_date_epoch: None,
            max_size: 1 << 40,
            label: Vec::new(),
            uuid: None,
            inline_data: true,
        }
    }
}
