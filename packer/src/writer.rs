//! [`Ext4Writer`]: entries come in one at a time (tar-like), file data is
//! streamed into the image as it arrives, and [`Ext4Writer::finish`] lays out
//! the metadata (see `layout.rs`).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

use crate::dir::{self, DirEntry};
use crate::error::PackError;
use crate::extent;
use crate::format::*;
use crate::layout::{self, Built};
use crate::meta::*;
use crate::node::{Kind, Node};
use crate::options::Options;
use crate::stream::BlockStream;
use crate::summary::Summary;
use crate::xattr::{self, Attr};

/// The regular file currently receiving data.
struct OpenFile {
    ino: u32,
    path: String,
    size: u64,
    /// Lowest logical offset the next write may start at.
    pos: u64,
    /// A partially filled block: its logical number and contents.
    pending: Option<(u32, Box<[u8; BLOCK_SIZE]>)>,
    /// The whole content, for a file small enough to live in its inode.
    inline: Option<Vec<u8>>,
}

/// A streaming ext4 image writer with a tar-like API.
///
/// Create entries in any order that has parents before children; after
/// creating a regular file, hand over its data with [`Self::write_data`] or
/// [`Self::copy_range`]. [`Self::finish`] writes the metadata.
pub struct Ext4Writer {
    opts: Options,
    stream: BlockStream,
    /// Inodes, index = inode number - 1.
    nodes: Vec<Node>,
    paths: HashMap<Vec<u8>, u32>,
    open: Option<OpenFile>,
    hasher: Sha256,
    /// Blocks reserved for group descriptors after the superblock.
    gdt_reserved: u64,
    hard_links: u64,
}

/// Normalise a path: drop empty, `.` components and leading `/`; refuse `..`.
fn normalize(path: &[u8]) -> Result<Vec<u8>, PackError> {
    let mut out = Vec::with_capacity(path.len());
    for comp in path.split(|&c| c == b'/') {
        if comp.is_empty() || comp == b"." {
            continue;
        }
        if comp == b".." || comp.contains(&0) {
            return Err(PackError::BadPath(show(path)));
        }
        if comp.len() > 255 {
            return Err(PackError::NameTooLong(show(path)));
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(comp);
    }
    Ok(out)
}

/// A path for messages.
pub(crate) fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&c| c == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

impl Ext4Writer {
    /// Start an image in `out`, which is truncated first. The root directory
    /// and `lost+found` exist from the start.
    pub fn new(out: File, opts: Options) -> Result<Self, PackError> {
        // Truncating even an empty file makes ext4 flush the whole image
        // when it is closed (auto_da_alloc): only truncate what has data.
        if out.metadata()?.len() > 0 {
            out.set_len(0)?;
        }
        let groups_max = opts
            .size
            .unwrap_or(opts.max_size)
            .div_ceil(GROUP_BYTES)
            .max(1);
        let gdt_reserved = (groups_max * DESC_SIZE as u64).div_ceil(BLOCK_SIZE as u64);
        // Group 1 starts with the backup superblock and descriptors
        // (sparse_super2); the stream leaves room for them there.
        let hole = (groups_max > 1).then(|| {
            let start = BLOCKS_PER_GROUP;
            (start, start + 1 + gdt_reserved)
        });
        let stream = BlockStream::new(out, 1 + gdt_reserved, hole);
        let t = Timestamp::from_secs(opts.source_date_epoch.unwrap_or(0));
        let mut nodes = Vec::new();
        for ino in 1..=LOST_FOUND_INO {
            let node = match ino {
                ROOT_INO => Node::new(
                    Metadata::new(S_IFDIR | 0o755, t),
                    Vec::new(),
                    Kind::Dir {
                        entries: Vec::new(),
                        parent: ROOT_INO,
                        subdirs: 0,
                    },
                ),
                LOST_FOUND_INO => Node::new(
                    Metadata::new(S_IFDIR | 0o700, t),
                    Vec::new(),
                    Kind::Dir {
                        entries: Vec::new(),
                        parent: ROOT_INO,
                        subdirs: 0,
                    },
                ),
                _ => Node::new(Metadata::default(), Vec::new(), Kind::Reserved),
            };
            nodes.push(node);
        }
        let mut w = Ext4Writer {
            opts,
            stream,
            nodes,
            paths: HashMap::new(),
            open: None,
            hasher: Sha256::new(),
            gdt_reserved,
            hard_links: 0,
        };
        w.paths.insert(Vec::new(), ROOT_INO);
        w.add_entry(ROOT_INO, b"lost+found", LOST_FOUND_INO, S_IFDIR);
        w.paths.insert(b"lost+found".to_vec(), LOST_FOUND_INO);
        Ok(w)
    }

    fn node(&self, ino: u32) -> &Node {
        &self.nodes[ino as usize - 1]
    }

    fn node_mut(&mut self, ino: u32) -> &mut Node {
        &mut self.nodes[ino as usize - 1]
    }

    fn add_entry(&mut self, parent: u32, name: &[u8], ino: u32, mode: u32) {
        let is_dir = mode & S_IFMT == S_IFDIR;
        if let Kind::Dir {
            entries, subdirs, ..
        } = &mut self.node_mut(parent).kind
        {
            entries.push(DirEntry {
                name: name.to_vec(),
                ino,
                file_type: dir::file_type(mode),
            });
            if is_dir {
                *subdirs += 1;
            }
        }
    }

    fn hash_entry(&mut self, tag: &[u8], path: &[u8], meta: &Metadata, extra: &[u8], size: u64) {
        let h = &mut self.hasher;
        h.update(tag);
        h.update((path.len() as u64).to_le_bytes());
        h.update(path);
        h.update(meta.mode.to_le_bytes());
        h.update(meta.uid.to_le_bytes());
        h.update(meta.gid.to_le_bytes());
        for t in [meta.atime, meta.mtime, meta.ctime] {
            h.update(t.sec.to_le_bytes());
            h.update(t.nsec.to_le_bytes());
        }
        h.update(meta.rdev.0.to_le_bytes());
        h.update(meta.rdev.1.to_le_bytes());
        for (k, v) in &meta.xattrs {
            h.update((k.len() as u64).to_le_bytes());
            h.update(k);
            h.update((v.len() as u64).to_le_bytes());
            h.update(v);
        }
        h.update((extra.len() as u64).to_le_bytes());
        h.update(extra);
        h.update(size.to_le_bytes());
    }

    fn convert_xattrs(path: &[u8], meta: &Metadata) -> Result<Vec<Attr>, PackError> {
        let mut attrs = Vec::with_capacity(meta.xattrs.len());
        for (name, value) in &meta.xattrs {
            let a = xattr::to_attr(name, value).map_err(|e| PackError::Xattr {
                path: show(path),
                name: show(name),
                reason: match e {
                    xattr::XattrError::UnknownNamespace => "unknown namespace",
                    xattr::XattrError::BadAcl => "malformed POSIX ACL",
                    xattr::XattrError::NameTooLong => "name too long",
                },
            })?;
            attrs.push(a);
        }
        xattr::sort(&mut attrs);
        attrs.dedup_by(|a, b| a.index == b.index && a.name == b.name);
        if !xattr::fits_inline(&attrs) && !xattr::fits_block(&attrs) {
            // Name the largest: the one to look at (or drop) first.
            let largest = meta
                .xattrs
                .iter()
                .max_by_key(|(_, v)| v.len())
                .map_or_else(String::new, |(n, _)| show(n));
            return Err(PackError::Xattr {
                path: show(path),
                name: largest,
                reason: "the largest of the attributes, which together do not fit one 4 KiB block",
            });
        }
        Ok(attrs)
    }

    /// Create an entry. `meta.mode` carries the type. Symlinks need
    /// `symlink_target`; regular files declare their `size` and then receive
    /// data. Creating an existing directory again updates its metadata (so a
    /// tar's explicit `./` or `lost+found/` entries work); other duplicates fail.
    pub fn create(
        &mut self,
        path: &[u8],
        meta: &Metadata,
        symlink_target: Option<&[u8]>,
        size: u64,
    ) -> Result<(), PackError> {
        self.close_file()?;
        let path = normalize(path)?;
        let ftype = meta.file_type();
        let attrs = Self::convert_xattrs(&path, meta)?;
        if let Some(&ino) = self.paths.get(&path) {
            let is_dir = matches!(self.node(ino).kind, Kind::Dir { .. });
            if is_dir && ftype == S_IFDIR {
                self.hash_entry(b"D", &path, meta, &[], 0);
                let n = self.node_mut(ino);
                n.meta = meta.clone();
                n.attrs = attrs;
                return Ok(());
            }
            return Err(PackError::Exists(show(&path)));
        }
        if path.is_empty() {
            return Err(PackError::BadPath("/".into()));
        }
        let (parent_path, name) = split_parent(&path);
        let parent = match self.paths.get(parent_path) {
            Some(&p) if matches!(self.node(p).kind, Kind::Dir { .. }) => p,
            _ => return Err(PackError::NoParent(show(&path))),
        };
        let name = name.to_vec();
        let ino = self.nodes.len() as u32 + 1;
        let mut node_size = 0;
        let kind = match ftype {
            S_IFDIR => Kind::Dir {
                entries: Vec::new(),
                parent,
                subdirs: 0,
            },
            S_IFREG => {
                if size > MAX_FILE_SIZE {
                    return Err(PackError::FileTooLarge(show(&path)));
                }
                node_size = size;
                Kind::File
            }
            S_IFLNK => match symlink_target {
                Some(t) if !t.is_empty() && t.len() < BLOCK_SIZE => {
                    node_size = t.len() as u64;
                    Kind::Symlink(t.to_vec())
                }
                _ => return Err(PackError::BadSymlink(show(&path))),
            },
            S_IFCHR | S_IFBLK | S_IFIFO | S_IFSOCK => Kind::Special,
            _ => return Err(PackError::BadMode(show(&path), meta.mode)),
        };
        let tag: &[u8] = match kind {
            Kind::Dir { .. } => b"D",
            Kind::File => b"F",
            Kind::Symlink(_) => b"S",
            _ => b"X",
        };
        self.hash_entry(tag, &path, meta, symlink_target.unwrap_or(&[]), size);
        let inline = (ftype == S_IFREG && self.opts.inline_data && size > 0)
            .then(|| xattr::max_inline_data_value(&attrs))
            .flatten()
            .filter(|room| size <= (INLINE_I_BLOCK + room) as u64)
            .map(|_| vec![0u8; size as usize]);
        let mut node = Node::new(meta.clone(), attrs, kind);
        node.size = node_size;
        if ftype == S_IFREG {
            self.open = Some(OpenFile {
                ino,
                path: show(&path),
                size,
                pos: 0,
                pending: None,
                inline,
            });
        }
        self.nodes.push(node);
        self.add_entry(parent, &name, ino, meta.mode);
        self.paths.insert(path, ino);
        Ok(())
    }

    /// Add `path` as another name (hard link) of the existing non-directory `target`.
    pub fn link(&mut self, path: &[u8], target: &[u8]) -> Result<(), PackError> {
        let path = normalize(path)?;
        let target = normalize(target)?;
        let ino = match self.paths.get(&target) {
            Some(&i) if !matches!(self.node(i).kind, Kind::Dir { .. }) => i,
            _ => return Err(PackError::BadLink(show(&path), show(&target))),
        };
        if self.paths.contains_key(&path) {
            return Err(PackError::Exists(show(&path)));
        }
        let (parent_path, name) = split_parent(&path);
        let parent = match self.paths.get(parent_path) {
            Some(&p) if matches!(self.node(p).kind, Kind::Dir { .. }) => p,
            _ => return Err(PackError::NoParent(show(&path))),
        };
        let name = name.to_vec();
        self.hasher.update(b"L");
        self.hasher.update((path.len() as u64).to_le_bytes());
        self.hasher.update(&path);
        self.hasher.update(ino.to_le_bytes());
        let mode = self.node(ino).meta.mode;
        self.add_entry(parent, &name, ino, mode);
        self.node_mut(ino).links += 1;
        self.hard_links += 1;
        self.paths.insert(path, ino);
        Ok(())
    }

    /// Whether `path` exists in the image so far.
    pub fn exists(&self, path: &[u8]) -> bool {
        normalize(path).is_ok_and(|p| self.paths.contains_key(&p))
    }

    /// Write data at logical offset `offset` of the regular file just
    /// created; offsets must not go backwards, skipped ranges stay holes.
    pub fn write_data_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), PackError> {
        self.put(offset, buf)
    }

    /// Append data to the regular file just created.
    pub fn write_data(&mut self, buf: &[u8]) -> Result<(), PackError> {
        let pos = self.open.as_ref().ok_or(PackError::NoOpenFile)?.pos;
        self.put(pos, buf)
    }

    /// Read the rest of the regular file just created (everything from
    /// its current position to its declared size) from `src`, straight into
    /// the image buffer.
    pub fn read_data(&mut self, src: &mut dyn Read) -> Result<(), PackError> {
        let f = self.open.as_mut().ok_or(PackError::NoOpenFile)?;
        let (pos, len) = (f.pos, f.size - f.pos);
        let source = |e| PackError::Source {
            path: f.path.clone(),
            source: e,
        };
        if let Some(buf) = f.inline.as_mut() {
            src.read_exact(&mut buf[pos as usize..]).map_err(source)?;
            f.pos = f.size;
            return Ok(());
        }
        if len == 0 || pos % BLOCK_SIZE as u64 != 0 || f.pending.is_some() {
            let mut tmp = Vec::with_capacity(len as usize);
            src.take(len).read_to_end(&mut tmp).map_err(source)?;
            if tmp.len() as u64 != len {
                return Err(source(std::io::ErrorKind::UnexpectedEof.into()));
            }
            return self.put(pos, &tmp);
        }
        let path = f.path.clone();
        let first = self
            .stream
            .push_with(len as usize, |b| src.read_exact(b))
            .map_err(|e| PackError::Source { path, source: e })?;
        let bs = BLOCK_SIZE as u64;
        self.record(pos / bs, first, len.div_ceil(bs));
        self.open.as_mut().expect("open").pos = pos + len;
        Ok(())
    }

    /// Copy `len` bytes of `src` from `src_offset` to logical offset
    /// `logical_offset` of the regular file just created, with
    /// `copy_file_range` where possible. Segments must come in increasing
    /// order; what lies between them stays a hole.
    pub fn copy_range(
        &mut self,
        src: &File,
        src_offset: u64,
        logical_offset: u64,
        len: u64,
    ) -> Result<(), PackError> {
        let bs = BLOCK_SIZE as u64;
        self.check_range(logical_offset, len)?;
        let read = |buf: &mut [u8], off: u64| {
            src.read_exact_at(buf, off).map_err(|e| PackError::Source {
                path: "copy source".into(),
                source: e,
            })
        };
        if self.open.as_ref().is_some_and(|f| f.inline.is_some()) {
            let mut tmp = vec![0u8; len as usize];
            read(&mut tmp, src_offset)?;
            return self.put(logical_offset, &tmp);
        }
        let mut off = logical_offset;
        let mut soff = src_offset;
        let end = logical_offset + len;
        // Unaligned head and short pieces go through the pending block.
        if off & (bs - 1) != 0 || end - off < bs {
            let n = (bs - off % bs).min(end - off);
            let mut tmp = vec![0u8; n as usize];
            read(&mut tmp, soff)?;
            self.put(off, &tmp)?;
            off += n;
            soff += n;
        }
        let whole = (end - off) / bs * bs;
        if whole > 0 {
            self.flush_pending()?;
            let mut lblk = off / bs;
            for (first, n) in self.stream.copy_from(src, soff, whole)? {
                self.record(lblk, first, n);
                lblk += n;
            }
            off += whole;
            soff += whole;
            if let Some(f) = self.open.as_mut() {
                f.pos = off;
            }
        }
        if off < end {
            let mut tmp = vec![0u8; (end - off) as usize];
            read(&mut tmp, soff)?;
            self.put(off, &tmp)?;
        }
        Ok(())
    }

    fn check_range(&self, off: u64, len: u64) -> Result<(), PackError> {
        let f = self.open.as_ref().ok_or(PackError::NoOpenFile)?;
        if off < f.pos || off.checked_add(len).is_none_or(|e| e > f.size) {
            return Err(PackError::BadData {
                path: f.path.clone(),
                offset: off,
                size: f.size,
            });
        }
        Ok(())
    }

    /// Note that logical blocks `[lblk, lblk + n)` of the open file are at `first..`.
    fn record(&mut self, lblk: u64, first: u64, n: u64) {
        let ino = self.open.as_ref().expect("an open file").ino;
        let node = self.node_mut(ino);
        extent::push(&mut node.extents, lblk as u32, first, n as u32);
        node.data_blocks += n;
    }

    /// Store `data` at logical offset `off` of the open file.
    fn put(&mut self, off: u64, data: &[u8]) -> Result<(), PackError> {
        let bs = BLOCK_SIZE as u64;
        self.check_range(off, data.len() as u64)?;
        let f = self.open.as_mut().expect("checked");
        if let Some(buf) = f.inline.as_mut() {
            buf[off as usize..off as usize + data.len()].copy_from_slice(data);
            f.pos = off + data.len() as u64;
            return Ok(());
        }
        let mut off = off;
        let mut d = data;
        while !d.is_empty() {
            let lblk = (off / bs) as u32;
            let inblk = (off % bs) as usize;
            if inblk != 0 || d.len() < BLOCK_SIZE {
                let n = (BLOCK_SIZE - inblk).min(d.len());
                let same = matches!(&self.open.as_ref().expect("open").pending, Some((b, _)) if *b == lblk);
                if !same {
                    self.flush_pending()?;
                    self.open.as_mut().expect("open").pending =
                        Some((lblk, Box::new([0u8; BLOCK_SIZE])));
                }
                let f = self.open.as_mut().expect("open");
                let (_, buf) = f.pending.as_mut().expect("pending");
                buf[inblk..inblk + n].copy_from_slice(&d[..n]);
                off += n as u64;
                d = &d[n..];
                f.pos = off;
                if inblk + n == BLOCK_SIZE {
                    self.flush_pending()?;
                }
            } else {
                self.flush_pending()?;
                let whole = d.len() / BLOCK_SIZE * BLOCK_SIZE;
                let first = self.stream.push(&d[..whole])?;
                self.record(lblk as u64, first, (whole / BLOCK_SIZE) as u64);
                off += whole as u64;
                d = &d[whole..];
                self.open.as_mut().expect("open").pos = off;
            }
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> Result<(), PackError> {
        let Some(f) = self.open.as_mut() else {
            return Ok(());
        };
        if let Some((lblk, buf)) = f.pending.take() {
            let first = self.stream.push(&buf[..])?;
            self.record(lblk as u64, first, 1);
        }
        Ok(())
    }

    fn close_file(&mut self) -> Result<(), PackError> {
        self.flush_pending()?;
        if let Some(OpenFile {
            ino,
            inline: Some(data),
            ..
        }) = self.open.take()
        {
            self.node_mut(ino).inline = Some(data);
        }
        Ok(())
    }

    /// Bytes of data written into the image so far (for progress).
    pub fn data_bytes_written(&self) -> u64 {
        let skipped: u64 = self.stream.gaps().iter().map(|(s, e)| e - s).sum();
        (self.stream.next_block() - 1 - self.gdt_reserved - skipped) * BLOCK_SIZE as u64
    }

    /// Inodes created so far (for progress).
    pub fn entries(&self) -> u64 {
        self.nodes.len() as u64 - LOST_FOUND_INO as u64
    }

    /// Lay out the metadata, write it, and size the image.
    pub fn finish(mut self) -> Result<Summary, PackError> {
        self.close_file()?;
        layout::finish(Built {
            opts: self.opts,
            stream: self.stream,
            nodes: self.nodes,
            digest: self.hasher.finalize().into(),
            gdt_reserved: self.gdt_reserved,
            hard_links: self.hard_links,
        })
    }
}
