//! Path resolution confined to a root directory with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: `..` stops at the root
//! and absolute symlinks restart at it, so an image's `/etc/x -> ../../..`
//! can never make a read or write land outside the rootfs.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Gid, Mode, OFlags, ResolveFlags, Uid};
use rustix::io::Errno;

/// An open directory that paths are resolved inside of.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Open `path` as a root.
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The root's host path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root's directory fd.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Root {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Root {
    /// `openat2` of `rel` (absolute or relative, both taken from the root)
    /// with `flags`/`mode`, symlinks followed only inside the root.
    pub fn open_at(&self, rel: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
        openat2(&self.fd, &relative(rel), flags, mode)
    }

    /// Read a whole regular file inside the root.
    pub fn read(&self, rel: &Path) -> io::Result<Vec<u8>> {
        let fd = self.open_at(rel, libc::O_RDONLY | libc::O_CLOEXEC, 0)?;
        let mut buf = Vec::new();
        File::from(fd).read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// `stat` of `rel` resolved in the root (following symlinks in-root when
    /// `follow`, else describing a final symlink itself).
    pub fn stat(&self, rel: &Path, follow: bool) -> io::Result<libc::stat> {
        let flags = libc::O_PATH | libc::O_CLOEXEC | if follow { 0 } else { libc::O_NOFOLLOW };
        let fd = self.open_at(rel, flags, 0)?;
        fstat(&fd)
    }

    /// Whether `rel` exists (without following a final symlink).
    pub fn exists(&self, rel: &Path) -> bool {
        self.stat(rel, false).is_ok()
    }

    /// Create `rel` and its missing parents as directories (`mode`, owned by
    /// `uid:gid`), resolving every step inside the root; the directory's fd.
    pub fn mkdir_all(&self, rel: &Path, mode: u32, uid: u32, gid: u32) -> io::Result<OwnedFd> {
        self.mkdir_all_depth(rel, mode, uid, gid, 0)
    }

    fn mkdir_all_depth(
        &self,
        rel: &Path,
        mode: u32,
        uid: u32,
        gid: u32,
        depth: u32,
    ) -> io::Result<OwnedFd> {
        if depth > 40 {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let rel = relative(rel);
        let dir_flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
        let mut parent = openat2(&self.fd, Path::new("."), dir_flags, 0)?;
        let mut sofar = PathBuf::new();
        for comp in rel.components() {
            let Component::Normal(name) = comp else {
                continue;
            };
            sofar.push(name);
            match openat2(&self.fd, &sofar, dir_flags, 0) {
                Ok(fd) => parent = fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(mode)) {
                        Ok(()) => {
                            // Not following links: chown the just-created entry.
                            let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
                            rustix::fs::chownat(
                                &parent,
                                name,
                                Some(uid),
                                Some(gid),
                                AtFlags::SYMLINK_NOFOLLOW,
                            )?;
                            // mkdir's mode is filtered by the umask; set it exactly.
                            let m = Mode::from_raw_mode(mode);
                            rustix::fs::chmodat(&parent, name, m, AtFlags::empty())?;
                        }
                        Err(e) if e != Errno::EXIST => return Err(e.into()),
                        Err(_) => {
                            // A dangling symlink: create where it points (inside
                            // the root), then carry on below it, as Docker's
                            // root-scoped MkdirAll does.
                            if let Some(target) = readlinkat(&parent, name) {
                                let rest: PathBuf =
                                    rel.components().skip(sofar.components().count()).collect();
                                let base = if target.is_absolute() {
                                    PathBuf::from("/")
                                } else {
                                    Path::new("/").join(sofar.parent().unwrap_or(Path::new("")))
                                };
                                let joined = base.join(target).join(rest);
                                let cleaned = super::glob::clean(&joined.to_string_lossy());
                                return self.mkdir_all_depth(
                                    Path::new(&cleaned),
                                    mode,
                                    uid,
                                    gid,
                                    depth + 1,
                                );
                            }
                        }
                    }
                    parent = openat2(&self.fd, &sofar, dir_flags, 0)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(parent)
    }
}

/// The target of the symlink `name` in `dir`, if it is one.
fn readlinkat(dir: impl AsFd, name: &OsStr) -> Option<PathBuf> {
    let target = rustix::fs::readlinkat(dir, name, Vec::new()).ok()?;
    Some(PathBuf::from(OsString::from_vec(target.into_bytes())))
}

/// Turn any path into one relative to the root (`/a/b` → `a/b`, `` → `.`).
pub fn relative(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// `openat2(dirfd, path, {flags | O_CLOEXEC, mode, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS})`.
pub fn openat2(dirfd: impl AsFd, path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let dirfd = dirfd.as_fd();
    let oflags = OFlags::from_bits_retain((flags | libc::O_CLOEXEC) as u32);
    // The kernel rejects a mode unless the open may create a file.
    let mode = if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
        Mode::from_raw_mode(mode)
    } else {
        Mode::empty()
    };
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    loop {
        match rustix::fs::openat2(dirfd, path, oflags, mode, resolve) {
            // The kernel asks for a retry when a rename raced the lookup.
            Err(Errno::AGAIN) => continue,
            other => return Ok(other?),
        }
    }
}

/// `fstat` of an fd.
pub fn fstat(fd: impl AsFd) -> io::Result<libc::stat> {
    Ok(nix::sys::stat::fstat(fd)?)
}

/// Path → C string (fails on interior NUL).
pub fn cpath(p: &OsStr) -> io::Result<CString> {
    CString::new(p.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// The final component of `p` as an owned name.
pub fn file_name(p: &Path) -> Option<OsString> {
    p.file_name().map(|n| n.to_os_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_cannot_leave_the_root() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(outer.path().join("secret"), b"host").unwrap();
        std::fs::write(root.join("secret"), b"image").unwrap();
        symlink("../../secret", root.join("etc/up")).unwrap();
        symlink("/secret", root.join("etc/abs")).unwrap();
        let r = Root::open(&root).unwrap();
        assert_eq!(r.read(Path::new("etc/up")).unwrap(), b"image");
        assert_eq!(r.read(Path::new("/etc/abs")).unwrap(), b"image");
        assert_eq!(r.read(Path::new("../secret")).unwrap(), b"image");
    }

    #[test]
    fn mkdir_all_follows_symlinks_inside_the_root() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        symlink("../../../", root.join("escape")).unwrap();
        let r = Root::open(&root).unwrap();
        r.mkdir_all(Path::new("escape/made/here"), 0o755, 0, 0)
            .unwrap();
        assert!(root.join("made/here").is_dir());
        assert!(!outer.path().join("made").exists());
    }
}
