//! From a layer blob to index entries: the blob is read by `d2v-tar` straight
//! from the mmap (nothing is copied), resolved the way extracting it would
//! (later entries win), and every surviving path becomes one [`RawEntry`].

use d2v_tar::{Archive, Kind};

use super::{EntryKind, IndexError, Segment};

/// One surviving path of a layer, with the metadata and data of its inode.
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// The path was a hard link in the tar.
    pub hardlink: bool,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Logical size (the real size for sparse files).
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Symlink target, or the normalised hard-link target.
    pub link: Vec<u8>,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Blob offset of contiguous data (when `sparse` is `None`).
    pub data_off: u64,
    pub sparse: Option<Vec<Segment>>,
    /// Hard-link group: the same value for every path of one inode, or
    /// `u32::MAX` for an inode with one path.
    pub group: u32,
}

/// The surviving paths of the layer tar `data`, in tar order.
pub(crate) fn parse(data: &[u8]) -> Result<Vec<RawEntry>, IndexError> {
    let (mut entries, members) = Archive::from_slice(data)?.into_parts();
    let mut out = Vec::with_capacity(members.len());
    for m in &members {
        // Each member names its own entry, so its path can be moved out.
        let path = std::mem::take(&mut entries[m.entry as usize].path);
        let e = &entries[m.entry as usize];
        let ino = &entries[m.inode as usize];
        let kind = match ino.kind {
            Kind::Dir => EntryKind::Dir,
            Kind::Symlink => EntryKind::Symlink,
            Kind::CharDevice => EntryKind::CharDevice,
            Kind::BlockDevice => EntryKind::BlockDevice,
            Kind::Fifo => EntryKind::Fifo,
            Kind::File | Kind::HardLink => EntryKind::File,
        };
        // A hard link to a symlink is another symlink with the same target.
        let hardlink = e.kind == Kind::HardLink && ino.kind != Kind::Symlink;
        let link = match (ino.kind, hardlink) {
            (Kind::Symlink, _) => ino.link.clone(),
            (_, true) => e.link.clone(),
            _ => Vec::new(),
        };
        let sparse = ino.sparse.as_ref().map(|_| {
            ino.data_runs()
                .map(|r| Segment {
                    logical: r.logical,
                    blob: r.archive,
                    len: r.len,
                })
                .collect()
        });
        out.push(RawEntry {
            path,
            kind,
            hardlink,
            mode: ino.mode,
            uid: ino.uid,
            gid: ino.gid,
            size: ino.size,
            mtime: ino.mtime.sec,
            mtime_nsec: ino.mtime.nsec,
            link,
            rdev_major: ino.dev.0,
            rdev_minor: ino.dev.1,
            xattrs: ino.xattrs.clone(),
            data_off: ino.data_offset,
            sparse,
            group: if m.shared { m.inode } else { u32::MAX },
        });
    }
    Ok(out)
}
