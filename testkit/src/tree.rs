//! A comparable description of every path under a directory: type, mode, owner,
//! size, mtime, link target, device number, xattrs and content hash.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What to leave out of a comparison.
#[derive(Clone, Copy, Default)]
pub struct Ignore {
    /// Leave mtimes out.
    pub mtime: bool,
    /// Leave directory sizes out (they differ between filesystems).
    pub dir_size: bool,
}

/// Lists `name` xattrs of `path` (not following symlinks).
pub fn xattrs(path: &Path) -> BTreeMap<String, String> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut out = BTreeMap::new();
    // SAFETY: a null buffer with size 0 asks for the needed size.
    let n = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if n <= 0 {
        return out;
    }
    let mut names = vec![0u8; n as usize];
    // SAFETY: `names` has room for `n` bytes.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return out;
    }
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let cname = CString::new(name).unwrap();
        // SAFETY: size probe with a null buffer.
        let len = unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), std::ptr::null_mut(), 0) };
        let mut val = vec![0u8; len.max(0) as usize];
        // SAFETY: `val` has room for `len` bytes.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                val.as_mut_ptr().cast(),
                val.len(),
            )
        };
        val.truncate(len.max(0) as usize);
        out.insert(String::from_utf8_lossy(name).into_owned(), hex::encode(val));
    }
    out
}

/// One line per path (relative to `root`, root itself as "."), sorted.
pub fn describe(root: &Path, ignore: Ignore) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap();
        let key = if rel.as_os_str().is_empty() {
            b".".to_vec()
        } else {
            rel.as_os_str().as_bytes().to_vec()
        };
        let m = std::fs::symlink_metadata(path).unwrap();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "link"
        } else if ft.is_file() {
            "file"
        } else {
            "special"
        };
        let mut line = format!("{kind} mode={:o} uid={} gid={}", m.mode(), m.uid(), m.gid());
        if !(ft.is_symlink() || ft.is_dir() && ignore.dir_size) {
            line += &format!(" size={}", m.size());
        }
        if !ignore.mtime && !ft.is_symlink() {
            line += &format!(" mtime={}.{:09}", m.mtime(), m.mtime_nsec());
        }
        if ft.is_symlink() {
            let target = std::fs::read_link(path).unwrap();
            line += &format!(
                " -> {}",
                String::from_utf8_lossy(target.as_os_str().as_bytes())
            );
        }
        if !ft.is_dir() && !ft.is_file() && !ft.is_symlink() {
            line += &format!(" rdev={}", m.rdev());
        }
        if ft.is_file() {
            let mut h = Sha256::new();
            let mut f = std::fs::File::open(path).unwrap();
            std::io::copy(&mut f, &mut h).unwrap();
            line += &format!(" sha256={}", hex::encode(h.finalize()));
            if m.nlink() > 1 {
                line += &format!(" nlink={}", m.nlink());
            }
        }
        for (k, v) in xattrs(path) {
            line += &format!(" xattr:{k}={v}");
        }
        out.insert(key, line);
    }
    out
}

/// Asserts two descriptions are equal, printing the first differences.
pub fn assert_same(
    a_name: &str,
    a: &BTreeMap<Vec<u8>, String>,
    b_name: &str,
    b: &BTreeMap<Vec<u8>, String>,
) {
    let mut diffs = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => diffs.push(format!(
                "only in {a_name}: {} {v}",
                String::from_utf8_lossy(k)
            )),
            Some(w) if w != v => diffs.push(format!(
                "{}:\n  {a_name}: {v}\n  {b_name}: {w}",
                String::from_utf8_lossy(k)
            )),
            _ => {}
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            diffs.push(format!(
                "only in {b_name}: {} {v}",
                String::from_utf8_lossy(k)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences between {a_name} ({} paths) and {b_name} ({} paths); first ones:\n{}",
        diffs.len(),
        a.len(),
        b.len(),
        diffs
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
