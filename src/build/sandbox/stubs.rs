//! Mount points inside a step's rootfs: found or created *inside* the root
//! (symlinks followed as if the root were `/`, never out of it), and removed
//! again afterwards without following anything the step may have changed.
//!
//! Creating: [`MountPoints::resolve`] walks the target one component at a
//! time from an `O_PATH` fd of the root, reading symlinks itself and keeping
//! `..` from leaving the root (what runc's securejoin does), creating what is
//! missing and recording each created entry by its real, symlink-free path.
//!
//! Removing: [`MountPoints::remove_from`] reopens each recorded parent in the
//! step's *upper* dir with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)`: if
//! the step replaced any component by a symlink, resolution fails and the
//! entry is left alone; otherwise an empty stub directory or empty stub file
//! is unlinked relative to that fd. Nothing on the host is ever reached.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

/// The most symlinks followed while resolving one mount target (Linux's limit).
const MAX_SYMLINKS: usize = 40;

/// The lower layers' `(mode, uid, gid)` of a path relative to the root, if any.
pub(super) type LowerMeta<'a> = &'a dyn Fn(&Path) -> Option<(u32, u32, u32)>;

/// What kind of mount point a target needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PointKind {
    /// A directory (tmpfs, directory binds, caches).
    Dir,
    /// A file (file binds such as `/etc/resolv.conf` or a secret).
    File,
}

/// The entries created as mount points in one root, to be removed afterwards.
#[derive(Debug, Default)]
pub(super) struct MountPoints {
    /// Created entries, real paths relative to the root, in creation order.
    created: Vec<(PathBuf, PointKind)>,
    /// Existing directories a mount point was created in: overlay copied
    /// them up only for that, and drops them again if they stay untouched.
    touched_dirs: Vec<PathBuf>,
    /// Owner given to created entries.
    owner: (u32, u32),
}

impl MountPoints {
    /// Mount points created from now on belong to `uid`:`gid` (the step's root).
    pub(super) fn new(uid: u32, gid: u32) -> Self {
        Self {
            owner: (uid, gid),
            ..Default::default()
        }
    }

    /// Resolves `target` (absolute, as the step sees it) inside `root`,
    /// creating missing components (directories, and the last one as `kind`);
    /// returns an `O_PATH` fd of the target and its real path in the root
    /// (relative, no symlinks).
    pub(super) fn resolve(
        &mut self,
        root: BorrowedFd<'_>,
        target: &Path,
        kind: PointKind,
    ) -> io::Result<(OwnedFd, PathBuf)> {
        let mut pending: Vec<OsString> = components(target);
        pending.reverse();
        // The real path so far and an fd for each of its directories.
        let mut real: Vec<OsString> = Vec::new();
        let mut dirs: Vec<OwnedFd> = vec![reopen_dir(root)?];
        let mut links = 0;
        while let Some(name) = pending.pop() {
            let last = pending.is_empty();
            if name == ".." {
                if dirs.len() > 1 {
                    dirs.pop();
                    real.pop();
                }
                continue;
            }
            let parent = dirs.last().expect("root stays").as_fd();
            match rustix::fs::statat(parent, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let link = rustix::fs::readlinkat(parent, &name, Vec::new())?;
                    let link = PathBuf::from(OsStr::from_bytes(link.as_bytes()));
                    if link.is_absolute() {
                        dirs.truncate(1);
                        real.clear();
                    }
                    let mut more = components(&link);
                    more.reverse();
                    pending.extend(more);
                    continue;
                }
                Ok(st) => {
                    let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                    if !last && !is_dir {
                        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
                    }
                    if !last {
                        // Overlay copies it up if a mount point is created below.
                        let mut p = rel_path(&real);
                        p.push(&name);
                        self.touched_dirs.push(p);
                    }
                }
                Err(e) if e == rustix::io::Errno::NOENT => {
                    let make_dir = !last || kind == PointKind::Dir;
                    if make_dir {
                        rustix::fs::mkdirat(parent, &name, Mode::from_raw_mode(0o755))?;
                    } else {
                        let fd = rustix::fs::openat(
                            parent,
                            &name,
                            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
                            Mode::from_raw_mode(0o644),
                        )?;
                        drop(fd);
                    }
                    rustix::fs::chownat(
                        parent,
                        &name,
                        Some(rustix::fs::Uid::from_raw(self.owner.0)),
                        Some(rustix::fs::Gid::from_raw(self.owner.1)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )?;
                    let mut p = rel_path(&real);
                    p.push(&name);
                    self.created.push((
                        p,
                        if make_dir {
                            PointKind::Dir
                        } else {
                            PointKind::File
                        },
                    ));
                }
                Err(e) => return Err(e.into()),
            }
            let fd = rustix::fs::openat(
                parent,
                &name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            real.push(name);
            if last {
                return Ok((fd, rel_path(&real)));
            }
            dirs.push(fd);
        }
        // The target resolved to the root itself (`/`, or `..` all the way).
        Ok((
            reopen_dir(dirs.last().expect("root stays").as_fd())?,
            PathBuf::new(),
        ))
    }

    /// Removes the created mount points from `upper` (the step's diff), deepest
    /// first, when they are still empty; then drops directories overlay copied
    /// up only because a mount point was created in them, when they are still
    /// empty, not opaque, and as the lower had them (`lower_meta` answers
    /// with the lower's `(mode, uid, gid)` of a path).
    pub(super) fn remove_from(&self, upper: &Path, lower_meta: LowerMeta<'_>) {
        let Ok(root) = rustix::fs::open(
            upper,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return;
        };
        let mut created: Vec<&(PathBuf, PointKind)> = self.created.iter().collect();
        created.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (path, kind) in created {
            let Some((dir, name)) = open_parent(root.as_fd(), path) else {
                continue;
            };
            let Ok(st) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            match (kind, FileType::from_raw_mode(st.st_mode)) {
                (PointKind::Dir, FileType::Directory) => {
                    // Fails (and is left) unless empty.
                    let _ = rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR);
                }
                (PointKind::File, FileType::RegularFile) if st.st_size == 0 => {
                    let _ = rustix::fs::unlinkat(&dir, name, AtFlags::empty());
                }
                _ => {}
            }
        }
        let mut touched: Vec<&PathBuf> = self.touched_dirs.iter().collect();
        touched.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        touched.dedup();
        for path in touched {
            let Some((dir, name)) = open_parent(root.as_fd(), path) else {
                continue;
            };
            let Ok(st) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                continue;
            }
            let Some((mode, uid, gid)) = lower_meta(path) else {
                continue;
            };
            if st.st_mode & 0o7777 != mode & 0o7777 || st.st_uid != uid || st.st_gid != gid {
                continue;
            }
            if is_opaque(&dir, name) || !is_empty_dir(&dir, name) {
                continue;
            }
            let _ = rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR);
        }
    }
}

fn rel_path(parts: &[OsString]) -> PathBuf {
    parts.iter().collect()
}

/// The normal components of an absolute or relative container path (`.`
/// dropped, `..` kept for the walker).
fn components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn reopen_dir(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        fd,
        ".",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The parent directory of `path` inside `root` (no symlink anywhere on the
/// way, no leaving the root, no crossing into another mount) and the last name.
fn open_parent<'a>(root: BorrowedFd<'_>, path: &'a Path) -> Option<(OwnedFd, &'a OsStr)> {
    let name = path.file_name()?;
    let parent = path.parent().unwrap_or(Path::new(""));
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let fd = rustix::fs::openat2(
        root,
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::IN_ROOT
            | ResolveFlags::NO_SYMLINKS
            | ResolveFlags::NO_MAGICLINKS
            | ResolveFlags::NO_XDEV,
    )
    .ok()?;
    Some((fd, name))
}

fn is_empty_dir(dir: &OwnedFd, name: &OsStr) -> bool {
    let Ok(fd) = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let Ok(mut entries) = rustix::fs::Dir::read_from(&fd) else {
        return false;
    };
    entries.all(|e| {
        e.map(|e| matches!(e.file_name().to_bytes(), b"." | b".."))
            .unwrap_or(false)
    })
}

fn is_opaque(dir: &OwnedFd, name: &OsStr) -> bool {
    let Ok(fd) = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return true;
    };
    let mut buf = [0u8; 8];
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|k| rustix::fs::fgetxattr(&fd, *k, &mut buf).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root_fd(p: &Path) -> OwnedFd {
        rustix::fs::open(p, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    fn owner() -> (u32, u32) {
        (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        )
    }

    #[test]
    fn creates_missing_components_inside_the_root_and_records_them() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        let (u, g) = owner();
        let mut mp = MountPoints::new(u, g);
        let (_, real) = mp
            .resolve(
                root_fd(t.path()).as_fd(),
                Path::new("/etc/a/b"),
                PointKind::File,
            )
            .unwrap();
        assert_eq!(real, PathBuf::from("etc/a/b"));
        assert!(t.path().join("etc/a/b").is_file());
        assert_eq!(
            mp.created,
            vec![
                (PathBuf::from("etc/a"), PointKind::Dir),
                (PathBuf::from("etc/a/b"), PointKind::File)
            ]
        );
        assert_eq!(mp.touched_dirs, vec![PathBuf::from("etc")]);
        mp.remove_from(t.path(), &|_| None);
        assert!(!t.path().join("etc/a").exists());
        assert!(t.path().join("etc").exists(), "no lower metadata: kept");
    }

    #[test]
    fn symlinks_are_followed_inside_the_root_only() {
        let t = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("var/run")).unwrap();
        symlink("/var/run", root.join("run")).unwrap();
        symlink(host.path(), root.join("escape")).unwrap();
        symlink("../../../..", root.join("var/up")).unwrap();
        let (u, g) = owner();
        let mut mp = MountPoints::new(u, g);
        let r = root_fd(&root);
        let (_, real) = mp
            .resolve(r.as_fd(), Path::new("/run/secrets/x"), PointKind::File)
            .unwrap();
        assert_eq!(real, PathBuf::from("var/run/secrets/x"));
        assert!(root.join("var/run/secrets/x").is_file());
        mp.resolve(r.as_fd(), Path::new("/escape/d"), PointKind::Dir)
            .unwrap();
        assert!(
            std::fs::read_dir(host.path()).unwrap().next().is_none(),
            "nothing created on the host"
        );
        mp.resolve(r.as_fd(), Path::new("/var/up/tmp/z"), PointKind::Dir)
            .unwrap();
        assert!(root.join("tmp/z").is_dir());
        mp.remove_from(&root, &|_| None);
        assert!(!root.join("var/run/secrets").exists());
        assert!(!root.join("tmp").exists());
    }

    #[test]
    fn removal_never_follows_a_symlink_planted_after_creation() {
        let t = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        std::fs::create_dir(host.path().join("c")).unwrap();
        std::fs::write(host.path().join("emptyfile"), "").unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let (u, g) = owner();
        let mut mp = MountPoints::new(u, g);
        let r = root_fd(&root);
        mp.resolve(r.as_fd(), Path::new("/a/b/c"), PointKind::Dir)
            .unwrap();
        mp.resolve(r.as_fd(), Path::new("/a/b/emptyfile"), PointKind::File)
            .unwrap();
        // What a step can do: move the tree away and plant a symlink.
        std::fs::rename(root.join("a/b"), root.join("a/old")).unwrap();
        symlink(host.path(), root.join("a/b")).unwrap();
        mp.remove_from(&root, &|_| None);
        assert!(host.path().join("c").is_dir(), "host dir deleted");
        assert!(host.path().join("emptyfile").is_file(), "host file deleted");
    }

    #[test]
    fn a_file_where_a_directory_is_needed_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), "x").unwrap();
        let (u, g) = owner();
        let mut mp = MountPoints::new(u, g);
        let err = mp
            .resolve(root_fd(t.path()).as_fd(), Path::new("/f/x"), PointKind::Dir)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR));
    }
}
