//! The FUSE protocol adapter: a thin, read-only `fuser::Filesystem` over a
//! [`MergedTree`].

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr,
    Request,
};

use crate::index::EntryKind;
use crate::tree::{MergedTree, Node};

/// Layers are immutable, so the kernel may cache entries and attributes for
/// as long as the mount lives.
const TTL: Duration = Duration::from_secs(365 * 24 * 3600);
const BLOCK_SIZE: u32 = 4096;

pub(crate) struct D2vFs {
    tree: Arc<MergedTree>,
    /// Added to every uid and gid shown (see [`crate::MountOptions::id_shift`]).
    id_shift: u32,
    /// The kernel agreed to skip OPEN/OPENDIR round trips when we answer
    /// them with ENOSYS (every open of an immutable file is the same).
    no_open: bool,
    no_opendir: bool,
}

impl D2vFs {
    pub(crate) fn new(tree: Arc<MergedTree>, id_shift: u32) -> D2vFs {
        D2vFs {
            tree,
            id_shift,
            no_open: false,
            no_opendir: false,
        }
    }

    fn attr(&self, ino: u64, n: &Node) -> FileAttr {
        let mtime = if n.mtime >= 0 {
            UNIX_EPOCH + Duration::new(n.mtime as u64, n.mtime_nsec)
        } else {
            UNIX_EPOCH - Duration::from_secs(n.mtime.unsigned_abs())
                + Duration::from_nanos(u64::from(n.mtime_nsec))
        };
        // Sizes and block counts as ext4 (what a container's rootfs usually sits
        // on) reports them, so `ls -l`, `du` and `ls`'s "total" in a RUN step
        // print what they print under Docker: whole 4 KiB blocks for data, and
        // directories sized by their entries in 4 KiB blocks.
        let (size, blocks) = match n.kind {
            EntryKind::File => (n.size, self.tree.stored_bytes(ino).div_ceil(4096) * 8),
            EntryKind::Dir => {
                let bytes: u64 = 24
                    + self
                        .tree
                        .children(ino)
                        .map(|(name, _)| 8 + (name.len() as u64).div_ceil(4) * 4)
                        .sum::<u64>();
                let size = bytes.div_ceil(4096).max(1) * 4096;
                (size, size / 512)
            }
            // Fast symlinks (< 60 bytes) live in the inode; longer ones take a block.
            EntryKind::Symlink => (n.size, if n.size < 60 { 0 } else { 8 }),
            _ => (n.size, 0),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks,
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind: file_type(n.kind),
            perm: (n.mode & 0o7777) as u16,
            nlink: n.nlink,
            uid: shift_id(n.uid, self.id_shift),
            gid: shift_id(n.gid, self.id_shift),
            rdev: libc::makedev(n.rdev_major, n.rdev_minor) as u32,
            blksize: BLOCK_SIZE,
            flags: 0,
        }
    }

    fn node(&self, ino: INodeNo) -> Result<&Node, Errno> {
        self.tree.get(ino.0).ok_or(Errno::ENOENT)
    }
}

/// The xattr holding a file's capabilities.
const CAPABILITY_XATTR: &[u8] = b"security.capability";
const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_REVISION_3: u32 = 0x0300_0000;
const VFS_CAP_REVISION_MASK: u32 = 0xff00_0000;

/// An id as shown through a shifted view; ids that would overflow show as the
/// kernel's overflow id (`nobody`), which maps nowhere.
fn shift_id(id: u32, shift: u32) -> u32 {
    id.checked_add(shift)
        .filter(|v| *v != u32::MAX)
        .unwrap_or(65534)
}

/// File capabilities through a shifted view: a v2 `security.capability`
/// (effective for whoever is root where the file is used) becomes v3 with the
/// shifted root as its owner, so that root of a user namespace whose id 0 is
/// `shift` gets them, as it would for a v2 xattr on its own filesystem.
fn shift_capability(v: &[u8], shift: u32) -> Vec<u8> {
    if v.len() != 20 {
        return v.to_vec();
    }
    let magic = u32::from_le_bytes(v[..4].try_into().expect("4 bytes"));
    if magic & VFS_CAP_REVISION_MASK != VFS_CAP_REVISION_2 {
        return v.to_vec();
    }
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&((magic & !VFS_CAP_REVISION_MASK) | VFS_CAP_REVISION_3).to_le_bytes());
    out.extend_from_slice(&v[4..]);
    out.extend_from_slice(&shift.to_le_bytes());
    out
}

fn file_type(k: EntryKind) -> FileType {
    match k {
        EntryKind::File => FileType::RegularFile,
        EntryKind::Dir => FileType::Directory,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::CharDevice => FileType::CharDevice,
        EntryKind::BlockDevice => FileType::BlockDevice,
        EntryKind::Fifo => FileType::NamedPipe,
    }
}

impl Filesystem for D2vFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Best effort: older kernels lack some of these, which is fine.
        for cap in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_PARALLEL_DIROPS,
        ] {
            let _ = config.add_capabilities(cap);
        }
        self.no_open = config
            .add_capabilities(InitFlags::FUSE_NO_OPEN_SUPPORT)
            .is_ok();
        self.no_opendir = config
            .add_capabilities(InitFlags::FUSE_NO_OPENDIR_SUPPORT)
            .is_ok();
        let _ = config.set_max_readahead(1 << 20);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.tree.lookup(parent.0, name.as_bytes()) {
            Some(ino) => match self.tree.get(ino) {
                Some(n) => reply.entry(&TTL, &self.attr(ino, n), Generation(0)),
                None => reply.error(Errno::EIO),
            },
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.node(ino) {
            Ok(n) => reply.attr(&TTL, &self.attr(ino.0, n)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.tree.symlink_target(ino.0) {
            Some(t) => reply.data(t),
            None => reply.error(Errno::EINVAL),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.node(ino) {
            Ok(n) if n.kind == EntryKind::Dir => reply.error(Errno::EISDIR),
            Ok(_) if flags.acc_mode() != OpenAccMode::O_RDONLY => reply.error(Errno::EROFS),
            Ok(_) if flags.0 & libc::O_TRUNC != 0 => reply.error(Errno::EROFS),
            Ok(_) if self.no_open => reply.error(Errno::ENOSYS),
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // Contiguous files are answered straight from the mmapped blob.
        if let Some(data) = self.tree.contiguous_data(ino.0) {
            let start = (offset as usize).min(data.len());
            let end = start.saturating_add(size as usize).min(data.len());
            return reply.data(&data[start..end]);
        }
        let mut buf = vec![0u8; size as usize];
        match self.tree.read_at(ino.0, offset, &mut buf) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => reply.error(Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.node(ino) {
            Ok(n) if n.kind == EntryKind::Dir && self.no_opendir => reply.error(Errno::ENOSYS),
            Ok(n) if n.kind == EntryKind::Dir => {
                reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE)
            }
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let n = match self.node(ino) {
            Ok(n) if n.kind == EntryKind::Dir => n,
            Ok(_) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(e),
        };
        // Offsets: 1 = ".", 2 = "..", 3.. = children; each entry carries the
        // offset of the one after it.
        let mut next = offset;
        if next == 0 {
            if reply.add(ino, 1, FileType::Directory, ".") {
                return reply.ok();
            }
            next = 1;
        }
        if next == 1 {
            if reply.add(INodeNo(n.parent), 2, FileType::Directory, "..") {
                return reply.ok();
            }
            next = 2;
        }
        for (i, (name, child)) in self
            .tree
            .children(ino.0)
            .enumerate()
            .skip(next as usize - 2)
        {
            let kind = self
                .tree
                .get(child)
                .map_or(FileType::RegularFile, |c| file_type(c.kind));
            if reply.add(INodeNo(child), i as u64 + 3, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let n = match self.node(ino) {
            Ok(n) if n.kind == EntryKind::Dir => n,
            Ok(_) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(e),
        };
        let mut next = offset;
        if next == 0 {
            if reply.add(ino, 1, ".", &TTL, &self.attr(ino.0, n), Generation(0)) {
                return reply.ok();
            }
            next = 1;
        }
        if next == 1 {
            let p = self.tree.get(n.parent).unwrap_or(n);
            if reply.add(
                INodeNo(n.parent),
                2,
                "..",
                &TTL,
                &self.attr(n.parent, p),
                Generation(0),
            ) {
                return reply.ok();
            }
            next = 2;
        }
        for (i, (name, child)) in self
            .tree
            .children(ino.0)
            .enumerate()
            .skip(next as usize - 2)
        {
            let Some(c) = self.tree.get(child) else {
                continue;
            };
            let attr = self.attr(child, c);
            let name = OsStr::from_bytes(name);
            if reply.add(
                INodeNo(child),
                i as u64 + 3,
                name,
                &TTL,
                &attr,
                Generation(0),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let blocks = self.tree.data_bytes().div_ceil(u64::from(BLOCK_SIZE));
        let files = self.tree.len() as u64;
        reply.statfs(blocks, 0, 0, files, 0, BLOCK_SIZE, 255, BLOCK_SIZE);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if self.tree.get(ino.0).is_none() {
            return reply.error(Errno::ENOENT);
        }
        let value = self.tree.xattr(ino.0, name.as_bytes());
        let shifted;
        let value = match value {
            Some(v) if self.id_shift != 0 && name.as_bytes() == CAPABILITY_XATTR => {
                shifted = shift_capability(v, self.id_shift);
                Some(&shifted[..])
            }
            v => v,
        };
        match value {
            None => reply.error(Errno::NO_XATTR),
            Some(v) if size == 0 => reply.size(v.len() as u32),
            Some(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
            Some(v) => reply.data(v),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if self.tree.get(ino.0).is_none() {
            return reply.error(Errno::ENOENT);
        }
        let mut list = Vec::new();
        for (n, _) in self.tree.xattrs(ino.0) {
            list.extend_from_slice(n);
            list.push(0);
        }
        if size == 0 {
            reply.size(list.len() as u32)
        } else if list.len() > size as usize {
            reply.error(Errno::ERANGE)
        } else {
            reply.data(&list)
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.node(ino) {
            Ok(_) if mask.contains(AccessFlags::W_OK) => reply.error(Errno::EROFS),
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_shift_and_overflow_to_nobody() {
        assert_eq!(shift_id(0, 0), 0);
        assert_eq!(shift_id(1000, 100), 1100);
        assert_eq!(shift_id(u32::MAX - 5, 10), 65534);
        assert_eq!(shift_id(u32::MAX - 1, 1), 65534);
    }

    #[test]
    fn v2_capabilities_become_v3_owned_by_the_shifted_root() {
        let mut v2 = 0x0200_0001u32.to_le_bytes().to_vec();
        v2.extend_from_slice(&[0x00, 0x20, 0, 0, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let v3 = shift_capability(&v2, 1_000_000);
        assert_eq!(v3.len(), 24);
        assert_eq!(u32::from_le_bytes(v3[..4].try_into().unwrap()), 0x0300_0001);
        assert_eq!(&v3[4..20], &v2[4..]);
        assert_eq!(u32::from_le_bytes(v3[20..].try_into().unwrap()), 1_000_000);
        // Anything else passes through.
        assert_eq!(shift_capability(&v3, 5), v3);
        assert_eq!(shift_capability(b"junk", 5), b"junk");
    }
}
