//! The one tree comparer: a comparable line for every path under a directory
//! (type, mode, owner, size, mtime, link target, device number, content hash,
//! link count or hard-link group, xattrs) and a diff of two such descriptions.
//!
//! A tree that is not a directory (d2v-fuse's `MergedTree`, read through its
//! API) is described by building an [`Entry`] per path and calling
//! [`describe_entries`], so it is judged by exactly the same lines.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
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

/// How to describe a tree: [`Ignore`] plus what some comparisons add.
#[derive(Clone, Copy, Default)]
pub struct Compare {
    /// What to leave out.
    pub ignore: Ignore,
    /// Compare symlink mtimes too (GNU tar does not restore them, so by
    /// default they are left out).
    pub symlink_mtime: bool,
    /// Show every entry's link count (by default only a regular file's, when
    /// above 1).
    pub nlink_all: bool,
    /// Name each hard-link group (non-directories sharing an inode) by its
    /// first path, so two trees must link the same paths together.
    pub link_groups: bool,
    /// Leave symlinks' xattrs out.
    pub skip_symlink_xattrs: bool,
}

/// The kind of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Directory.
    Dir,
    /// Regular file.
    File,
    /// Symbolic link.
    Symlink,
    /// Device, FIFO or socket.
    Special,
}

/// Everything compared about one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its kind.
    pub kind: Kind,
    /// `st_mode`: file type bits and permissions.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// `st_size`.
    pub size: u64,
    /// mtime: seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// Link count.
    pub nlink: u64,
    /// Device number (`st_rdev`).
    pub rdev: u64,
    /// Inode number: only to find hard-link groups within one tree.
    pub ino: u64,
    /// A symlink's target.
    pub target: Option<Vec<u8>>,
    /// A regular file's SHA-256, hex.
    pub sha256: Option<String>,
    /// Extended attributes: name and value.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Entry {
    /// `lstat`, content hash and xattrs of `path`.
    pub fn of(path: &Path) -> Entry {
        let m = std::fs::symlink_metadata(path).unwrap();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_file() {
            Kind::File
        } else {
            Kind::Special
        };
        Entry {
            kind,
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            nlink: m.nlink(),
            rdev: m.rdev(),
            ino: m.ino(),
            target: ft.is_symlink().then(|| {
                std::fs::read_link(path)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            }),
            sha256: ft
                .is_file()
                .then(|| content_hash(std::fs::File::open(path).unwrap())),
            xattrs: xattrs(path),
        }
    }

    /// The comparable line of this entry.
    pub fn line(&self, c: &Compare) -> String {
        let symlink = self.kind == Kind::Symlink;
        let kind = match self.kind {
            Kind::Dir => "dir",
            Kind::Symlink => "link",
            Kind::File => "file",
            Kind::Special => "special",
        };
        let mut line = format!(
            "{kind} mode={:o} uid={} gid={}",
            self.mode, self.uid, self.gid
        );
        if !(symlink || self.kind == Kind::Dir && c.ignore.dir_size) {
            line += &format!(" size={}", self.size);
        }
        if !c.ignore.mtime && (!symlink || c.symlink_mtime) {
            line += &format!(" mtime={}.{:09}", self.mtime.0, self.mtime.1);
        }
        if let Some(target) = &self.target {
            line += &format!(" -> {}", String::from_utf8_lossy(target));
        }
        if self.kind == Kind::Special {
            line += &format!(" rdev={}", self.rdev);
        }
        if let Some(sha) = &self.sha256 {
            line += &format!(" sha256={sha}");
            if self.nlink > 1 && !c.nlink_all {
                line += &format!(" nlink={}", self.nlink);
            }
        }
        if c.nlink_all {
            line += &format!(" nlink={}", self.nlink);
        }
        if !(symlink && c.skip_symlink_xattrs) {
            for (k, v) in &self.xattrs {
                line += &format!(" xattr:{}={}", String::from_utf8_lossy(k), hex::encode(v));
            }
        }
        line
    }
}

/// The SHA-256 of everything `r` yields, hex: a regular file's content in an
/// [`Entry`].
pub fn content_hash(mut r: impl std::io::Read) -> String {
    let mut h = Sha256::new();
    std::io::copy(&mut r, &mut h).unwrap();
    hex::encode(h.finalize())
}

/// The xattrs of `path` (not following symlinks); none where the filesystem
/// has no xattr support.
pub fn xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut out = BTreeMap::new();
    let failed = |what: &str| -> bool {
        let e = std::io::Error::last_os_error();
        let unsupported = e.raw_os_error() == Some(libc::EOPNOTSUPP);
        assert!(unsupported, "{what} {}: {e}", path.display());
        true
    };
    // SAFETY: a null buffer with size 0 asks for the needed size.
    let n = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if n == 0 || n < 0 && failed("llistxattr") {
        return out;
    }
    let mut names = vec![0u8; n as usize];
    // SAFETY: `names` has room for `names.len()` bytes.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "llistxattr {}", path.display());
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let cname = CString::new(name).unwrap();
        // SAFETY: size probe with a null buffer.
        let len = unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), std::ptr::null_mut(), 0) };
        assert!(len >= 0, "lgetxattr {}", path.display());
        let mut val = vec![0u8; len as usize];
        // SAFETY: `val` has room for `val.len()` bytes.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                val.as_mut_ptr().cast(),
                val.len(),
            )
        };
        assert!(len >= 0, "lgetxattr {}", path.display());
        val.truncate(len as usize);
        out.insert(name.to_vec(), val);
    }
    out
}

/// One line per path (relative to `root`, root itself as "."), sorted.
pub fn describe(root: &Path, ignore: Ignore) -> BTreeMap<Vec<u8>, String> {
    describe_with(
        root,
        &Compare {
            ignore,
            ..Compare::default()
        },
    )
}

/// [`describe`] with more choices.
pub fn describe_with(root: &Path, c: &Compare) -> BTreeMap<Vec<u8>, String> {
    let entries = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .map(|entry| {
            let entry = entry.unwrap();
            let rel = entry.path().strip_prefix(root).unwrap();
            let key = if rel.as_os_str().is_empty() {
                b".".to_vec()
            } else {
                rel.as_os_str().as_bytes().to_vec()
            };
            (key, Entry::of(entry.path()))
        });
    describe_entries(entries, c)
}

/// The lines of `entries` (relative path, root as "."), sorted by path.
pub fn describe_entries(
    entries: impl IntoIterator<Item = (Vec<u8>, Entry)>,
    c: &Compare,
) -> BTreeMap<Vec<u8>, String> {
    let entries: BTreeMap<Vec<u8>, Entry> = entries.into_iter().collect();
    let mut first_of_inode: HashMap<u64, &[u8]> = HashMap::new();
    let mut links: HashMap<u64, usize> = HashMap::new();
    for (path, e) in &entries {
        if e.kind != Kind::Dir {
            first_of_inode.entry(e.ino).or_insert(path);
            *links.entry(e.ino).or_default() += 1;
        }
    }
    entries
        .iter()
        .map(|(path, e)| {
            let mut line = e.line(c);
            if c.link_groups && e.kind != Kind::Dir && links[&e.ino] > 1 {
                let first = first_of_inode[&e.ino];
                line += &format!(" group={}", String::from_utf8_lossy(first));
            }
            (path.clone(), line)
        })
        .collect()
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
