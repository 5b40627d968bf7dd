//! Layer indexes: a compact, mmapped table of every entry in an uncompressed
//! layer tar, pointing at where each file's bytes live inside the blob.

mod error;
mod format;
mod tar;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

pub use error::IndexError;
use format::{field, u32_at, u64_at, Header};

/// The type of a tar entry (hard links take the type of their target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryKind {
    /// Regular file.
    File = 0,
    /// Directory.
    Dir = 1,
    /// Symbolic link.
    Symlink = 2,
    /// Character device.
    CharDevice = 3,
    /// Block device.
    BlockDevice = 4,
    /// Named pipe.
    Fifo = 5,
}

impl EntryKind {
    fn from_u8(v: u8) -> EntryKind {
        match v {
            1 => EntryKind::Dir,
            2 => EntryKind::Symlink,
            3 => EntryKind::CharDevice,
            4 => EntryKind::BlockDevice,
            5 => EntryKind::Fifo,
            _ => EntryKind::File,
        }
    }
}

/// A run of file data: `len` bytes at logical offset `logical` live at `blob`
/// in the layer blob. Gaps between segments are holes (zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Offset within the file.
    pub logical: u64,
    /// Offset within the layer blob.
    pub blob: u64,
    /// Length in bytes.
    pub len: u64,
}

/// What [`LayerIndex::build`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Entries in the index (after later duplicates replaced earlier ones).
    pub entries: u64,
    /// Size of the written index file.
    pub index_bytes: u64,
    /// Size of the tar blob.
    pub blob_bytes: u64,
}

/// A layer blob and its index, both memory-mapped.
#[derive(Debug)]
pub struct LayerIndex {
    blob_file: File,
    blob: Option<Mmap>,
    index: Mmap,
    header: Header,
}

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> IndexError + 'p {
    move |source| IndexError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn map(file: &File, path: &Path) -> Result<Option<Mmap>, IndexError> {
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: layer blobs and indexes are immutable once written (content
    // addressed, replaced only by rename), so the mapping is not modified
    // underneath us; all reads from it are bounds-checked.
    let m = unsafe { Mmap::map(file) }.map_err(io_err("mmap", path))?;
    Ok(Some(m))
}

impl LayerIndex {
    /// Reads the tar blob once and writes its index to `index_path` atomically
    /// (temp file in the same directory, then rename).
    pub fn build(blob: &Path, index_path: &Path) -> Result<IndexStats, IndexError> {
        let file = File::open(blob).map_err(io_err("open", blob))?;
        let mapped = map(&file, blob)?;
        let data: &[u8] = mapped.as_deref().unwrap_or(&[]);
        let mut entries = tar::parse(data)?;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let image = format::write(&entries, data.len() as u64)?;
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let mut tmp = tmp_path(index_path);
        let mut n = 0;
        let mut out = loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
            {
                Ok(f) => break f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => {
                    n += 1;
                    tmp.set_extension(format!("tmp{n}"));
                }
                Err(e) => return Err(io_err("create", dir)(e)),
            }
        };
        let res = out
            .write_all(&image)
            .and_then(|_| out.sync_all())
            .and_then(|_| std::fs::rename(&tmp, index_path));
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err("write", index_path)(e));
        }
        Ok(IndexStats {
            entries: entries.len() as u64,
            index_bytes: image.len() as u64,
            blob_bytes: data.len() as u64,
        })
    }

    /// Maps the blob and its index; validates the index header and its
    /// checksum (one SHA-256 pass over the index, not the blob).
    pub fn open(blob: &Path, index_path: &Path) -> Result<LayerIndex, IndexError> {
        let blob_file = File::open(blob).map_err(io_err("open", blob))?;
        let blob_map = map(&blob_file, blob)?;
        let idx_file = File::open(index_path).map_err(io_err("open", index_path))?;
        let index = map(&idx_file, index_path)?.ok_or_else(|| IndexError::BadIndex {
            path: index_path.to_path_buf(),
            reason: "empty file".into(),
        })?;
        let blob_len = blob_map.as_ref().map_or(0, |m| m.len() as u64);
        let header = Header::parse(&index, blob_len).map_err(|reason| IndexError::BadIndex {
            path: index_path.to_path_buf(),
            reason,
        })?;
        Ok(LayerIndex {
            blob_file,
            blob: blob_map,
            index,
            header,
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.header.entry_count as usize
    }

    /// True when the layer has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry at position `i` (entries are sorted by path bytes).
    pub fn entry(&self, i: usize) -> Option<EntryRef<'_>> {
        (i < self.len()).then_some(EntryRef { index: self, i })
    }

    /// All entries, sorted by path bytes.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = EntryRef<'_>> + '_ {
        (0..self.len()).map(move |i| EntryRef { index: self, i })
    }

    /// Finds an entry by normalised path (binary search).
    pub fn find(&self, path: &[u8]) -> Option<EntryRef<'_>> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let e = EntryRef {
                index: self,
                i: mid,
            };
            match e.path().cmp(path) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(e),
            }
        }
        None
    }

    /// The whole layer blob.
    pub fn blob(&self) -> &[u8] {
        self.blob.as_deref().unwrap_or(&[])
    }

    /// The open layer blob, for `copy_file_range`/`pread` by offset.
    pub fn blob_file(&self) -> &File {
        &self.blob_file
    }

    fn string(&self, off: u32, len: u32) -> &[u8] {
        let start = self.header.strings_off as usize + off as usize;
        let end = start.saturating_add(len as usize);
        let limit = (self.header.strings_off + self.header.strings_len) as usize;
        if end > limit {
            return &[];
        }
        self.index.get(start..end).unwrap_or(&[])
    }

    fn record(&self, i: usize) -> &[u8] {
        let start = self.header.entries_off as usize + i * format::ENTRY_LEN;
        self.index
            .get(start..start + format::ENTRY_LEN)
            .unwrap_or(&[])
    }
}

fn tmp_path(p: &Path) -> PathBuf {
    let mut name = p.file_name().unwrap_or_default().to_os_string();
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    name.push(format!(".{}-{seq}.tmp", std::process::id()));
    p.with_file_name(name)
}

/// A view of one index entry; cheap to copy.
#[derive(Clone, Copy)]
pub struct EntryRef<'a> {
    index: &'a LayerIndex,
    i: usize,
}

impl std::fmt::Debug for EntryRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryRef")
            .field("path", &String::from_utf8_lossy(self.path()))
            .field("kind", &self.kind())
            .field("mode", &format_args!("{:o}", self.mode()))
            .field("size", &self.size())
            .finish()
    }
}

impl<'a> EntryRef<'a> {
    fn r(&self) -> &'a [u8] {
        self.index.record(self.i)
    }

    /// Position of this entry in its index.
    pub fn position(&self) -> usize {
        self.i
    }

    /// Normalised path (no leading `./` or `/`, no trailing `/`; root is empty).
    pub fn path(&self) -> &'a [u8] {
        let r = self.r();
        self.index
            .string(u32_at(r, field::PATH_OFF), u32_at(r, field::PATH_LEN))
    }

    /// Entry type.
    pub fn kind(&self) -> EntryKind {
        EntryKind::from_u8(self.r().get(field::KIND).copied().unwrap_or(0))
    }

    fn flags(&self) -> u8 {
        self.r().get(field::FLAGS).copied().unwrap_or(0)
    }

    /// Permission bits including setuid, setgid and sticky (`0o7777` mask).
    pub fn mode(&self) -> u32 {
        u32_at(self.r(), field::MODE)
    }

    /// Owner uid.
    pub fn uid(&self) -> u32 {
        u32_at(self.r(), field::UID)
    }

    /// Owner gid.
    pub fn gid(&self) -> u32 {
        u32_at(self.r(), field::GID)
    }

    /// Logical size in bytes (real size for sparse files, 0 for non-files).
    pub fn size(&self) -> u64 {
        u64_at(self.r(), field::SIZE)
    }

    /// Modification time: seconds since the epoch and nanoseconds.
    pub fn mtime(&self) -> (i64, u32) {
        (
            u64_at(self.r(), field::MTIME) as i64,
            u32_at(self.r(), field::MTIME_NSEC),
        )
    }

    /// Device major and minor numbers (zero unless a device node).
    pub fn rdev(&self) -> (u32, u32) {
        (
            u32_at(self.r(), field::RDEV_MAJOR),
            u32_at(self.r(), field::RDEV_MINOR),
        )
    }

    /// Symlink target bytes, for symlinks.
    pub fn symlink_target(&self) -> Option<&'a [u8]> {
        (self.kind() == EntryKind::Symlink).then(|| self.link())
    }

    /// For entries that were hard links in the tar: the path they link to.
    pub fn hardlink_target(&self) -> Option<&'a [u8]> {
        (self.flags() & format::FLAG_HARDLINK != 0).then(|| self.link())
    }

    fn link(&self) -> &'a [u8] {
        let r = self.r();
        self.index
            .string(u32_at(r, field::LINK_OFF), u32_at(r, field::LINK_LEN))
    }

    /// Hard-link group: entries of this layer with the same group are one inode.
    pub fn link_group(&self) -> Option<u32> {
        Some(u32_at(self.r(), field::GROUP)).filter(|&g| g != u32::MAX)
    }

    /// True when the file has holes described by [`EntryRef::segments`].
    pub fn is_sparse(&self) -> bool {
        self.flags() & format::FLAG_SPARSE != 0
    }

    /// Data runs of a regular file, in logical order; gaps are holes.
    pub fn segments(&self) -> impl Iterator<Item = Segment> + 'a {
        let r = self.r();
        let idx = self.index;
        let (start, count, single) = if self.kind() != EntryKind::File {
            (0, 0, None)
        } else if self.is_sparse() {
            (
                u32_at(r, field::SEG_START) as u64,
                u32_at(r, field::SEG_COUNT) as u64,
                None,
            )
        } else {
            let size = self.size();
            let seg = Segment {
                logical: 0,
                blob: u64_at(r, field::DATA_OFF),
                len: size,
            };
            (0, 0, (size > 0).then_some(seg))
        };
        let h = idx.header;
        let table = (start..start + count).filter_map(move |k| {
            if k >= h.seg_count {
                return None;
            }
            let at = (h.segs_off + k * format::SEG_LEN as u64) as usize;
            Some(Segment {
                logical: u64_at(&idx.index, at),
                blob: u64_at(&idx.index, at + 8),
                len: u64_at(&idx.index, at + 16),
            })
        });
        single.into_iter().chain(table)
    }

    /// The file's bytes straight from the blob when stored contiguously.
    pub fn contiguous_data(&self) -> Option<&'a [u8]> {
        if self.kind() != EntryKind::File || self.is_sparse() {
            return None;
        }
        let start = u64_at(self.r(), field::DATA_OFF) as usize;
        self.index
            .blob()
            .get(start..start.checked_add(self.size() as usize)?)
    }

    /// Extended attributes as (name, value) pairs, in tar order.
    pub fn xattrs(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let r = self.r();
        let idx = self.index;
        let start = u32_at(r, field::XATTR_START) as u64;
        let count = u32_at(r, field::XATTR_COUNT) as u64;
        let h = idx.header;
        (start..start + count).filter_map(move |k| {
            if k >= h.xattr_count {
                return None;
            }
            let at = (h.xattrs_off + k * format::XATTR_LEN as u64) as usize;
            let b = &idx.index;
            Some((
                idx.string(u32_at(b, at), u32_at(b, at + 4)),
                idx.string(u32_at(b, at + 8), u32_at(b, at + 12)),
            ))
        })
    }

    /// Copies file bytes at `offset` into `buf`, zero-filling holes; returns
    /// the count copied (short only at end of file).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.size();
        if offset >= size {
            return Ok(0);
        }
        let n = buf.len().min((size - offset) as usize);
        let buf = &mut buf[..n];
        let blob = self.index.blob();
        if !self.is_sparse() {
            let src = self.contiguous_data().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "entry data outside blob")
            })?;
            buf.copy_from_slice(&src[offset as usize..offset as usize + n]);
            return Ok(n);
        }
        buf.fill(0);
        let end = offset + n as u64;
        for s in self.segments() {
            let (a, b) = (s.logical.max(offset), (s.logical + s.len).min(end));
            if a >= b {
                continue;
            }
            let from = (s.blob + (a - s.logical)) as usize;
            let src = blob.get(from..from + (b - a) as usize).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "segment outside blob")
            })?;
            buf[(a - offset) as usize..(b - offset) as usize].copy_from_slice(src);
        }
        Ok(n)
    }
}
