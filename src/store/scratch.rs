//! Per-process scratch space under `d2v/tmp`, and its removal once the
//! process that made it is gone.
//!
//! Scratch holds what a step is working on: the FUSE lower and overlay of a
//! build step, a layer being written, an archive being unpacked. It is 0700,
//! so no other user can reach into it (say, to run a setuid file a RUN step
//! just made). A process killed with `kill -9` may leave mounts behind in it,
//! a FUSE mount whose server is gone (every access fails with ENOTCONN):
//! [`remove_scratch`] detaches those before it removes anything.

use super::{IoContext, Result, Store};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static SCRATCH_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates `dir` (and its parents) and makes it 0700.
pub(super) fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .ctx("create directory", dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).ctx("chmod", dir)
}

impl Store {
    /// Where scratch directories live.
    pub(super) fn scratch_parent(&self) -> PathBuf {
        self.root().join("d2v/tmp")
    }

    /// A fresh scratch directory for this process (mode 0700), removed when
    /// the guard drops.
    pub fn scratch_dir(&self) -> Result<tempfile::TempDir> {
        let n = SCRATCH_COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{}-{n}-", std::process::id());
        let parent = self.scratch_parent();
        tempfile::Builder::new()
            .prefix(&prefix)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&parent)
            .ctx("create scratch directory in", &parent)
    }
}

/// Removes the scratch entry `path` (a directory or a file) that a dead
/// process left: first every mount at or below it is detached
/// (`umount2(MNT_DETACH)`; EINVAL, not a mount, and EPERM, a mount this
/// process may not touch, are ignored), then the tree is removed. Prune
/// removes scratch only through this function.
pub fn remove_scratch(path: &Path) -> std::io::Result<()> {
    let real = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => parent.canonicalize()?.join(name),
        _ => path.to_path_buf(),
    };
    for _ in 0..3 {
        detach_mounts_under(&real);
        let meta = match std::fs::symlink_metadata(&real) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if is_enotconn(&e) => continue,
            Err(e) => return Err(e),
        };
        let removed = if meta.is_dir() {
            std::fs::remove_dir_all(&real)
        } else {
            std::fs::remove_file(&real)
        };
        match removed {
            Ok(()) => return Ok(()),
            // A mount appeared below (or was not listed): detach and try again.
            Err(e) if is_enotconn(&e) || e.raw_os_error() == Some(libc::EBUSY) => continue,
            Err(e) => return Err(e),
        }
    }
    // Last try, reporting whatever still fails.
    std::fs::remove_dir_all(&real)
}

fn is_enotconn(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOTCONN)
}

/// Detaches every mount of this mount namespace at or below `dir`, deepest first.
fn detach_mounts_under(dir: &Path) {
    let mut points: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for point in points {
        // Not a mount (any more), or not ours to detach: nothing to do here.
        let _ = rustix::mount::unmount(&point, rustix::mount::UnmountFlags::DETACH);
    }
}

/// The mount points listed in `/proc/self/mountinfo` (field 5, with the
/// kernel's octal escapes undone).
fn mount_points() -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let Ok(text) = std::fs::read("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|field| PathBuf::from(std::ffi::OsString::from_vec(unescape(field))))
        .collect()
}

/// Undoes mountinfo's `\ooo` escapes (space, tab, newline, backslash).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(br"/a\040b\134c"), b"/a b\\c");
        assert_eq!(unescape(br"/plain\09"), br"/plain\09");
    }

    #[test]
    fn scratch_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let scratch = store.scratch_dir().unwrap();
        for p in [scratch.path(), &store.scratch_parent()] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o700, "{}", p.display());
        }
    }
}
