//! Writing entries into a rootfs with every path resolved inside it: parents
//! are opened with `openat2(RESOLVE_IN_ROOT)` (so image symlinks are followed
//! but never out of the root) and the final name is created with `*at` calls
//! that do not follow it.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::inroot::{cpath, fstat, Root};

/// Metadata for an entry written into the rootfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits (and setuid/setgid/sticky).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (seconds, nanoseconds); `None` keeps "now".
    pub mtime: Option<(i64, i64)>,
}

/// Writes entries under a [`Root`]; `path`s are absolute image paths.
pub struct DestWriter<'a> {
    root: &'a Root,
    /// Directory mtimes to apply once their children are written.
    dir_times: Vec<(PathBuf, (i64, i64))>,
    /// Owner of missing parent directories created on the way (COPY --chown
    /// applies to them too, as in Docker and BuildKit).
    parent_owner: (u32, u32),
}

const DIR_FLAGS: i32 = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;

impl<'a> DestWriter<'a> {
    /// A writer into `root`.
    pub fn new(root: &'a Root) -> Self {
        Self {
            root,
            dir_times: Vec::new(),
            parent_owner: (0, 0),
        }
    }

    /// Missing parent directories are created owned by `(uid, gid)` (default root).
    pub fn set_parent_owner(&mut self, uid: u32, gid: u32) {
        self.parent_owner = (uid, gid);
    }

    /// The root written into.
    pub fn root(&self) -> &Root {
        self.root
    }

    /// Whether `path` resolves (following symlinks in-root) to a directory.
    pub fn is_dir(&self, path: &Path) -> bool {
        self.root
            .stat(path, true)
            .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
            .unwrap_or(false)
    }

    /// Create the missing parents of `path` (0755, owned by the parent owner)
    /// and open its parent.
    fn parent(&self, path: &Path) -> io::Result<(OwnedFd, CString)> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        let parent = path.parent().unwrap_or(Path::new("/"));
        let (uid, gid) = self.parent_owner;
        let fd = self.root.mkdir_all(parent, 0o755, uid, gid)?;
        Ok((fd, cpath(name)?))
    }

    /// Remove a non-directory at `name` in `dir` (so it can be replaced).
    fn clear(dir: &OwnedFd, name: &CString) -> io::Result<()> {
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "cannot replace a directory with a non-directory",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Create (or reuse, following in-root symlinks) the directory `path`;
    /// a new directory gets `meta`, an existing one is left as it is.
    pub fn dir(&mut self, path: &Path, meta: EntryMeta) -> io::Result<()> {
        if path.parent().is_none() || self.is_dir(path) {
            return Ok(());
        }
        let (parent, name) = self.parent(path)?;
        Self::clear(&parent, &name)?;
        rustix::fs::mkdirat(&parent, &name, Mode::from_raw_mode(0o700))?;
        set_meta(&parent, &name, meta, true)?;
        if let Some(t) = meta.mtime {
            self.dir_times.push((path.to_path_buf(), t));
        }
        Ok(())
    }

    /// Write a regular file at `path` from `data`, replacing a non-directory.
    pub fn file(
        &mut self,
        path: &Path,
        meta: EntryMeta,
        data: &mut dyn Read,
        xattrs: &[(String, Vec<u8>)],
    ) -> io::Result<()> {
        let (parent, name) = self.parent(path)?;
        Self::clear(&parent, &name)?;
        // O_EXCL|O_NOFOLLOW create a fresh file, never a link target.
        let fd = rustix::fs::openat(
            &parent,
            &name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut file = File::from(fd);
        io::copy(data, &mut file)?;
        for (k, v) in xattrs {
            let key = CString::new(k.as_str())?;
            // xattrs the target filesystem refuses are skipped, as BuildKit does.
            let _ = rustix::fs::fsetxattr(&file, &key, v, XattrFlags::empty());
        }
        drop(file);
        set_meta(&parent, &name, meta, true)
    }

    /// Create a symlink at `path` pointing at `target` (stored verbatim).
    pub fn symlink(&mut self, path: &Path, target: &Path, meta: EntryMeta) -> io::Result<()> {
        let (parent, name) = self.parent(path)?;
        Self::clear(&parent, &name)?;
        let t = cpath(target.as_os_str())?;
        rustix::fs::symlinkat(&t, &parent, &name)?;
        set_meta(&parent, &name, meta, false)
    }

    /// Create a hard link at `path` to the existing in-root `target`.
    pub fn hardlink(&mut self, path: &Path, target: &Path) -> io::Result<()> {
        let (parent, name) = self.parent(path)?;
        Self::clear(&parent, &name)?;
        let (tparent, tname) = {
            let tp = target.parent().unwrap_or(Path::new("/"));
            let fd = self.root.open_at(tp, DIR_FLAGS, 0)?;
            let n = cpath(target.file_name().unwrap_or_default())?;
            (fd, n)
        };
        // No flags, so a symlink target is linked itself, not followed.
        Ok(rustix::fs::linkat(
            &tparent,
            &tname,
            &parent,
            &name,
            AtFlags::empty(),
        )?)
    }

    /// Create a device node or fifo (`kind` is `S_IFCHR`, `S_IFBLK` or `S_IFIFO`).
    pub fn special(
        &mut self,
        path: &Path,
        kind: u32,
        rdev: u64,
        meta: EntryMeta,
    ) -> io::Result<()> {
        let (parent, name) = self.parent(path)?;
        Self::clear(&parent, &name)?;
        let kind = FileType::from_raw_mode(kind);
        rustix::fs::mknodat(&parent, &name, kind, Mode::from_raw_mode(0o600), rdev)?;
        set_meta(&parent, &name, meta, true)
    }

    /// Apply `meta` to an existing directory (used for the copied-onto dest).
    pub fn set_dir_meta(&mut self, path: &Path, meta: EntryMeta) -> io::Result<()> {
        if path.parent().is_none() {
            return Ok(());
        }
        let fd = self.root.open_at(path, DIR_FLAGS, 0)?;
        let (uid, gid) = (Uid::from_raw(meta.uid), Gid::from_raw(meta.gid));
        rustix::fs::fchown(&fd, Some(uid), Some(gid))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode & 0o7777))?;
        if let Some(t) = meta.mtime {
            self.dir_times.push((path.to_path_buf(), t));
        }
        Ok(())
    }

    /// Apply the saved directory mtimes (deepest first); call when done.
    pub fn finish(&mut self) -> io::Result<()> {
        let mut times = std::mem::take(&mut self.dir_times);
        times.sort_by_key(|(p, _)| std::cmp::Reverse(p.as_os_str().as_bytes().len()));
        for (path, (s, ns)) in times {
            if let Ok(fd) = self.root.open_at(&path, DIR_FLAGS, 0) {
                let _ = rustix::fs::futimens(&fd, &timestamps(s, ns));
            }
        }
        Ok(())
    }
}

/// Access and modification time both `s.ns`.
fn timestamps(s: i64, ns: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: s,
        tv_nsec: ns,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// chown, chmod (not for symlinks) and mtime of `name` in `dir`, never following it.
fn set_meta(dir: &OwnedFd, name: &CString, meta: EntryMeta, chmod: bool) -> io::Result<()> {
    let (uid, gid) = (Uid::from_raw(meta.uid), Gid::from_raw(meta.gid));
    rustix::fs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)?;
    if chmod {
        // chown clears setuid bits, so the mode goes on afterwards.
        let mode = Mode::from_raw_mode(meta.mode & 0o7777);
        rustix::fs::chmodat(dir, name, mode, AtFlags::empty())?;
    }
    if let Some((s, ns)) = meta.mtime {
        let times = timestamps(s, ns);
        rustix::fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    }
    Ok(())
}

/// `fstat` of a path resolved inside `root` without following the last link.
pub fn lstat_in(root: &Root, path: &Path) -> io::Result<libc::stat> {
    let fd = root.open_at(path, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
    fstat(&fd)
}
