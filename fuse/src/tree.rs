//! The merged view of a layer stack, composed by the OCI image-layer rules.
//!
//! No FUSE types here: the FUSE adapter, the packer and the tests all walk
//! the same [`MergedTree`].

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;

use crate::index::{EntryKind, EntryRef, LayerIndex};

/// Inode number of the root directory.
pub const ROOT_INO: u64 = 1;

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Why a layer stack could not be composed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// More layers than the tree can address.
    #[error("too many layers: {0}")]
    TooManyLayers(usize),
}

/// Where a node's metadata and data come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    /// A directory no layer lists but some entry needs (0755 root:root).
    Implied,
    /// Entry `entry` of layer `layer`.
    Entry { layer: u16, entry: u32 },
}

/// One inode of the merged tree.
#[derive(Debug, Clone)]
pub struct Node {
    /// File type.
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky (`0o7777`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Size in bytes (logical size for sparse files; 0 for dirs and devices).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_nsec: u32,
    /// Device major number (device nodes only).
    pub rdev_major: u32,
    /// Device minor number (device nodes only).
    pub rdev_minor: u32,
    /// Link count: paths naming this inode, or 2 + subdirectories for dirs.
    pub nlink: u32,
    /// Parent directory inode (for hard links: the first path's parent).
    pub parent: u64,
    src: Src,
    /// Range of this dir's entries in `MergedTree::dirents`.
    children: (u32, u32),
}

/// A directory entry of the merged tree.
#[derive(Debug, Clone, Copy)]
struct Dirent {
    name_off: u32,
    name_len: u32,
    ino: u64,
}

/// One data run of a file, ready for `copy_file_range`/`pread`.
#[derive(Debug, Clone, Copy)]
pub struct DataSegment<'a> {
    /// Offset within the file.
    pub logical: u64,
    /// The layer blob holding the bytes.
    pub file: &'a File,
    /// Offset within the blob.
    pub blob_offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// A path visited by [`MergedTree::walk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkEntry {
    /// Path relative to the root, without a leading slash (root is empty).
    pub path: Vec<u8>,
    /// Inode number; a hard-linked inode appears once per path.
    pub ino: u64,
    /// True the first time `walk` yields this inode (false for later hard links).
    pub first: bool,
}

/// A read-only merged view of a stack of layers (index 0 is the bottom).
#[derive(Debug)]
pub struct MergedTree {
    layers: Vec<LayerIndex>,
    nodes: Vec<Node>,
    dirents: Vec<Dirent>,
    names: Vec<u8>,
}

/// Composition scratch node; names borrow from the mmapped indexes.
struct Tmp<'a> {
    src: Src,
    kind: EntryKind,
    children: BTreeMap<&'a [u8], u32>,
}

struct Builder<'a> {
    layers: &'a [LayerIndex],
    tmp: Vec<Tmp<'a>>,
}

impl<'a> Builder<'a> {
    fn new_node(&mut self, src: Src, kind: EntryKind) -> u32 {
        self.tmp.push(Tmp {
            src,
            kind,
            children: BTreeMap::new(),
        });
        (self.tmp.len() - 1) as u32
    }

    /// Finds an existing directory by path components (no creation).
    fn find_dir(&self, path: &[u8]) -> Option<u32> {
        let mut cur = 0u32;
        if path.is_empty() {
            return Some(0);
        }
        for c in path.split(|&b| b == b'/') {
            let next = *self.tmp[cur as usize].children.get(c)?;
            if self.tmp[next as usize].kind != EntryKind::Dir {
                return None;
            }
            cur = next;
        }
        Some(cur)
    }

    /// Finds or creates (implied) the directory at `path`, replacing any
    /// non-directory in the way.
    fn ensure_dir(&mut self, path: &'a [u8]) -> u32 {
        let mut cur = 0u32;
        if path.is_empty() {
            return 0;
        }
        for c in path.split(|&b| b == b'/') {
            let existing = self.tmp[cur as usize].children.get(c).copied();
            cur = match existing {
                Some(n) if self.tmp[n as usize].kind == EntryKind::Dir => n,
                _ => {
                    let n = self.new_node(Src::Implied, EntryKind::Dir);
                    self.tmp[cur as usize].children.insert(c, n);
                    n
                }
            };
        }
        cur
    }

    fn apply_layer(&mut self, layer: u16) {
        let idx: &'a LayerIndex = &self.layers[layer as usize];
        // Whiteouts hide lower layers only, so apply them all before adding
        // this layer's own entries.
        let mut cache: Option<(&[u8], Option<u32>)> = None;
        for e in idx.entries() {
            let (parent, name) = split(e.path());
            let Some(hidden) = name.strip_prefix(WHITEOUT) else {
                continue;
            };
            let dir = match cache {
                Some((p, d)) if p == parent => d,
                _ => {
                    let d = self.find_dir(parent);
                    cache = Some((parent, d));
                    d
                }
            };
            let Some(dir) = dir else { continue };
            if name == OPAQUE {
                self.tmp[dir as usize].children.clear();
            } else {
                self.tmp[dir as usize].children.remove(hidden);
            }
        }
        let mut cache: Option<(&[u8], u32)> = None;
        for e in idx.entries() {
            let path = e.path();
            let src = Src::Entry {
                layer,
                entry: e.position() as u32,
            };
            let kind = e.kind();
            if path.is_empty() {
                if kind == EntryKind::Dir {
                    self.tmp[0].src = src;
                }
                continue;
            }
            let (parent, name) = split(path);
            if name.starts_with(WHITEOUT) {
                continue;
            }
            let dir = match cache {
                Some((p, d)) if p == parent && self.tmp[d as usize].kind == EntryKind::Dir => d,
                _ => self.ensure_dir(parent),
            };
            cache = Some((parent, dir));
            let existing = self.tmp[dir as usize].children.get(name).copied();
            match existing {
                Some(n)
                    if kind == EntryKind::Dir && self.tmp[n as usize].kind == EntryKind::Dir =>
                {
                    self.tmp[n as usize].src = src;
                }
                _ => {
                    let n = self.new_node(src, kind);
                    self.tmp[dir as usize].children.insert(name, n);
                }
            }
        }
    }
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

impl MergedTree {
    /// Composes `layers` (index 0 = bottom) by the OCI rules: `.wh.NAME`
    /// hides NAME below, `.wh..wh..opq` empties a directory of lower content,
    /// upper entries replace lower ones, missing parents are implied.
    /// Inode numbers are assigned deterministically (root = 1).
    pub fn new(layers: Vec<LayerIndex>) -> Result<MergedTree, TreeError> {
        if layers.len() > u16::MAX as usize {
            return Err(TreeError::TooManyLayers(layers.len()));
        }
        let mut b = Builder {
            layers: &layers,
            tmp: Vec::new(),
        };
        b.new_node(Src::Implied, EntryKind::Dir);
        for l in 0..layers.len() {
            b.apply_layer(l as u16);
        }
        let tmp = b.tmp;

        // Number inodes breadth-first per directory, children in name order.
        let mut nodes: Vec<Node> = Vec::with_capacity(tmp.len());
        let mut dirents: Vec<Dirent> = Vec::new();
        let mut names: Vec<u8> = Vec::new();
        let mut groups: HashMap<(u16, u32), u64> = HashMap::new();
        nodes.push(make_node(&layers, &tmp[0], ROOT_INO));
        let mut stack: Vec<(u32, u64)> = vec![(0, ROOT_INO)];
        while let Some((t, ino)) = stack.pop() {
            let start = dirents.len() as u32;
            let mut subdirs = 0u32;
            let mut pending_dirs = Vec::new();
            for (name, &child) in &tmp[t as usize].children {
                let c = &tmp[child as usize];
                let group = match c.src {
                    Src::Entry { layer, entry } if c.kind != EntryKind::Dir => layers
                        [layer as usize]
                        .entry(entry as usize)
                        .and_then(|e| e.link_group())
                        .map(|g| (layer, g)),
                    _ => None,
                };
                let child_ino = match group.and_then(|g| groups.get(&g).copied()) {
                    Some(existing) => {
                        nodes[existing as usize - 1].nlink += 1;
                        existing
                    }
                    None => {
                        let new_ino = nodes.len() as u64 + 1;
                        nodes.push(make_node(&layers, c, ino));
                        if let Some(g) = group {
                            groups.insert(g, new_ino);
                        }
                        if c.kind == EntryKind::Dir {
                            subdirs += 1;
                            pending_dirs.push((child, new_ino));
                        }
                        new_ino
                    }
                };
                dirents.push(Dirent {
                    name_off: names.len() as u32,
                    name_len: name.len() as u32,
                    ino: child_ino,
                });
                names.extend_from_slice(name);
            }
            let node = &mut nodes[ino as usize - 1];
            node.children = (start, dirents.len() as u32);
            node.nlink = 2 + subdirs;
            // Reversed so the subtree of the smallest name is numbered first.
            stack.extend(pending_dirs.into_iter().rev());
        }
        Ok(MergedTree {
            layers,
            nodes,
            dirents,
            names,
        })
    }

    /// The root inode number (always 1).
    pub fn root(&self) -> u64 {
        ROOT_INO
    }

    /// Number of inodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a tree has at least its root.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The layers this tree was composed from, bottom first.
    pub fn layers(&self) -> &[LayerIndex] {
        &self.layers
    }

    /// The node for `ino`, if it exists.
    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get((ino as usize).checked_sub(1)?)
    }

    fn entry(&self, ino: u64) -> Option<EntryRef<'_>> {
        match self.get(ino)?.src {
            Src::Implied => None,
            Src::Entry { layer, entry } => self.layers[layer as usize].entry(entry as usize),
        }
    }

    fn dirents(&self, ino: u64) -> &[Dirent] {
        match self.get(ino) {
            Some(n) if n.kind == EntryKind::Dir => {
                &self.dirents[n.children.0 as usize..n.children.1 as usize]
            }
            _ => &[],
        }
    }

    fn name(&self, d: &Dirent) -> &[u8] {
        &self.names[d.name_off as usize..(d.name_off + d.name_len) as usize]
    }

    /// Looks `name` up in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Option<u64> {
        let ds = self.dirents(parent);
        ds.binary_search_by(|d| self.name(d).cmp(name))
            .ok()
            .map(|i| ds[i].ino)
    }

    /// A directory's entries (name, inode), sorted by name bytes; empty for non-dirs.
    pub fn children(
        &self,
        ino: u64,
    ) -> impl ExactSizeIterator<Item = (&[u8], u64)> + DoubleEndedIterator + '_ {
        self.dirents(ino).iter().map(move |d| (self.name(d), d.ino))
    }

    /// Extended attributes (name, value) of `ino`.
    pub fn xattrs(&self, ino: u64) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.entry(ino).into_iter().flat_map(|e| e.xattrs())
    }

    /// The value of one extended attribute.
    pub fn xattr(&self, ino: u64, name: &[u8]) -> Option<&[u8]> {
        self.xattrs(ino).find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// A symlink's target bytes.
    pub fn symlink_target(&self, ino: u64) -> Option<&[u8]> {
        self.entry(ino)?.symlink_target()
    }

    /// A regular file's bytes when stored contiguously (zero-copy from the mmap).
    pub fn contiguous_data(&self, ino: u64) -> Option<&[u8]> {
        self.entry(ino)?.contiguous_data()
    }

    /// Reads file bytes at `offset`; holes of sparse files read as zeros.
    pub fn read_at(&self, ino: u64, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let node = self
            .get(ino)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        match node.kind {
            EntryKind::File => match self.entry(ino) {
                Some(e) => e.read_at(offset, buf),
                None => Ok(0),
            },
            EntryKind::Dir => Err(io::Error::from_raw_os_error(libc::EISDIR)),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }

    /// A regular file's data runs with the blob each lives in; gaps are holes.
    pub fn data_segments(&self, ino: u64) -> Vec<DataSegment<'_>> {
        let Some(Src::Entry { layer, entry }) = self.get(ino).map(|n| n.src) else {
            return Vec::new();
        };
        let l = &self.layers[layer as usize];
        let Some(e) = l.entry(entry as usize) else {
            return Vec::new();
        };
        e.segments()
            .map(|s| DataSegment {
                logical: s.logical,
                file: l.blob_file(),
                blob_offset: s.blob,
                len: s.len,
            })
            .collect()
    }

    /// Bytes of data a file actually stores (its size minus holes).
    pub fn stored_bytes(&self, ino: u64) -> u64 {
        self.entry(ino)
            .map_or(0, |e| e.segments().map(|s| s.len).sum())
    }

    /// Every path, depth-first, parents before children, names in byte order.
    pub fn walk(&self) -> impl Iterator<Item = WalkEntry> + '_ {
        let mut seen = vec![false; self.nodes.len() + 1];
        let mut stack: Vec<(Vec<u8>, u64)> = vec![(Vec::new(), ROOT_INO)];
        std::iter::from_fn(move || {
            let (path, ino) = stack.pop()?;
            let first = !std::mem::replace(&mut seen[ino as usize], true);
            if first {
                for (name, child) in self.children(ino).rev() {
                    let mut p = path.clone();
                    if !p.is_empty() {
                        p.push(b'/');
                    }
                    p.extend_from_slice(name);
                    stack.push((p, child));
                }
            }
            Some(WalkEntry { path, ino, first })
        })
    }

    /// Total bytes of file data stored (excluding holes), for statfs.
    pub fn data_bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.blob().len() as u64).sum()
    }
}

fn make_node(layers: &[LayerIndex], t: &Tmp, parent: u64) -> Node {
    let mut n = Node {
        kind: t.kind,
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: 0,
        mtime_nsec: 0,
        rdev_major: 0,
        rdev_minor: 0,
        nlink: 1,
        parent,
        src: t.src,
        children: (0, 0),
    };
    if let Src::Entry { layer, entry } = t.src {
        if let Some(e) = layers[layer as usize].entry(entry as usize) {
            n.mode = e.mode();
            n.uid = e.uid();
            n.gid = e.gid();
            n.size = match e.kind() {
                EntryKind::File => e.size(),
                EntryKind::Symlink => e.symlink_target().map_or(0, |t| t.len() as u64),
                _ => 0,
            };
            (n.mtime, n.mtime_nsec) = e.mtime();
            (n.rdev_major, n.rdev_minor) = e.rdev();
        }
    }
    n
}
