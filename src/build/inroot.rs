//! Path resolution confined to a root directory with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: `..` stops at the root
//! and absolute symlinks restart at it, so an image's `/etc/x -> ../../..`
//! can never make a read or write land outside the rootfs.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// An open directory that paths are resolved inside of.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Open `path` as a root.
    pub fn open(path: &Path) -> io::Result<Self> {
        let c = cpath(path.as_os_str())?;
        // SAFETY: c is NUL-terminated; the returned fd is checked and owned.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        Ok(Self {
            fd: owned(fd)?,
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

    /// `openat2` of `rel` (absolute or relative, both taken from the root)
    /// with `flags`/`mode`, symlinks followed only inside the root.
    pub fn open_at(&self, rel: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
        openat2(self.fd(), &relative(rel), flags, mode)
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
        fstat(fd.as_raw_fd())
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
        let mut parent = openat2(self.fd(), Path::new("."), dir_flags, 0)?;
        let mut sofar = PathBuf::new();
        for comp in rel.components() {
            let Component::Normal(name) = comp else {
                continue;
            };
            sofar.push(name);
            match openat2(self.fd(), &sofar, dir_flags, 0) {
                Ok(fd) => parent = fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let c = cpath(name)?;
                    // SAFETY: parent is an open directory fd and c a NUL-terminated name.
                    let rc = unsafe { libc::mkdirat(parent.as_raw_fd(), c.as_ptr(), mode) };
                    if rc != 0 {
                        let err = io::Error::last_os_error();
                        if err.raw_os_error() != Some(libc::EEXIST) {
                            return Err(err);
                        }
                        // A dangling symlink: create where it points (inside
                        // the root), then carry on below it, as Docker's
                        // root-scoped MkdirAll does.
                        if let Some(target) = readlinkat(parent.as_raw_fd(), name) {
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
                    } else {
                        // SAFETY: as above; chown of the just-created entry, not following links.
                        let rc = unsafe {
                            libc::fchownat(
                                parent.as_raw_fd(),
                                c.as_ptr(),
                                uid,
                                gid,
                                libc::AT_SYMLINK_NOFOLLOW,
                            )
                        };
                        check(rc)?;
                        // mkdir's mode is filtered by the umask; set it exactly.
                        // SAFETY: as above.
                        let rc = unsafe { libc::fchmodat(parent.as_raw_fd(), c.as_ptr(), mode, 0) };
                        check(rc)?;
                    }
                    parent = openat2(self.fd(), &sofar, dir_flags, 0)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(parent)
    }
}

/// The target of the symlink `name` in `dir`, if it is one.
fn readlinkat(dir: RawFd, name: &OsStr) -> Option<PathBuf> {
    let c = cpath(name).ok()?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: dir is an open directory, c NUL-terminated, buf valid for its length.
    let n = unsafe { libc::readlinkat(dir, c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(PathBuf::from(OsStr::from_bytes(&buf)))
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

/// Raw `openat2(dirfd, path, {flags, mode, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS})`.
pub fn openat2(dirfd: RawFd, path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cpath(path.as_os_str())?;
    // SAFETY: open_how is plain old data; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
        mode as u64
    } else {
        0
    };
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    loop {
        // SAFETY: c is NUL-terminated, how is a valid open_how and its size is passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            let err = io::Error::last_os_error();
            // The kernel asks for a retry when a rename raced the lookup.
            if err.raw_os_error() == Some(libc::EAGAIN) {
                continue;
            }
            return Err(err);
        }
        return owned(fd as RawFd);
    }
}

/// `fstat` of an fd.
pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: stat is plain old data, filled by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is a caller-owned descriptor and st a valid out pointer.
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
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

pub(crate) fn owned(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
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
