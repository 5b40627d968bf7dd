//! What extracting an archive's entries in order leaves behind, without
//! extracting anything: each path's last entry wins, a directory replaced by
//! a non-directory takes everything under it along, a directory entry for an
//! existing directory only changes its metadata, and a hard link shares the
//! inode its target had when the link was read. These are the semantics of
//! `tar -x` and of applying an OCI layer; the FUSE index and `pack --from-tar`
//! both build on them, so they cannot disagree.
//!
//! Every entry costs O(its path length): parents are found through a cursor
//! on the previous entry's parent directory and a (directory, name) map, so
//! deep trees stay linear.

use std::collections::HashMap;

use crate::entry::{Entry, Kind};
use crate::error::TarError;
use crate::reader::Reader;
use crate::source::Source;

/// Most bytes of paths of directories that entries imply without listing
/// them (bounds the work of writers that create them by full path).
pub const MAX_IMPLIED_PATH_BYTES: u64 = 256 << 20;

const NONE: u32 = u32::MAX;

/// A path that survives extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// The entry naming this path (index into [`Archive::entries`]).
    pub entry: u32,
    /// The entry whose metadata and data the path has: itself, or for a hard
    /// link the entry it links to. Members with the same `inode` are one file.
    pub inode: u32,
    /// True when other members share this inode (hard links).
    pub shared: bool,
}

/// The entries of an archive and the paths that survive extracting them.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    entries: Vec<Entry>,
    members: Vec<Member>,
}

impl Archive {
    /// Reads every entry of `reader` and resolves them.
    pub fn read<S: Source>(reader: &mut Reader<S>) -> Result<Archive, TarError> {
        let mut b = Builder::default();
        while let Some(e) = reader.next_entry()? {
            b.add(e)?;
        }
        Ok(b.finish())
    }

    /// Reads an archive held in memory ([`crate::PathRule::Strict`]).
    pub fn from_slice(data: &[u8]) -> Result<Archive, TarError> {
        Archive::read(&mut Reader::from_slice(data))
    }

    /// Every entry, in archive order (replaced ones included).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Entry `i`.
    pub fn entry(&self, i: u32) -> &Entry {
        &self.entries[i as usize]
    }

    /// The entries and the members, to take paths out of entries without
    /// copying them.
    pub fn into_parts(self) -> (Vec<Entry>, Vec<Member>) {
        (self.entries, self.members)
    }

    /// The surviving paths in archive order: parents may come after their
    /// children (a directory listed late, or never: then it is implied, a
    /// plain 0755 directory), but never a path under a non-directory.
    pub fn members(&self) -> &[Member] {
        &self.members
    }
}

/// A path of the tree being built.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// The entry now at this path, or `NONE` for an implied directory.
    entry: u32,
    dir: bool,
    alive: bool,
    first_child: u32,
    next_sibling: u32,
}

/// The directory chain of the previous entry's parent.
#[derive(Debug, Default)]
struct Cursor {
    path: Vec<u8>,
    /// Byte offset where each component ends, and its node.
    ends: Vec<usize>,
    nodes: Vec<u32>,
    /// [`Builder::kills`] when the chain was last known alive.
    kills: u64,
}

/// Resolves entries one at a time.
#[derive(Debug)]
pub struct Builder {
    entries: Vec<Entry>,
    /// The inode entry of each entry (itself unless a hard link).
    inode: Vec<u32>,
    nodes: Vec<Node>,
    children: HashMap<(u32, Box<[u8]>), u32>,
    cursor: Cursor,
    /// Times a directory lost its contents (invalidates the cursor).
    kills: u64,
    implied_bytes: u64,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            entries: Vec::new(),
            inode: Vec::new(),
            nodes: vec![Node {
                entry: NONE,
                dir: true,
                alive: true,
                first_child: NONE,
                next_sibling: NONE,
            }],
            children: HashMap::new(),
            cursor: Cursor::default(),
            kills: 0,
            implied_bytes: 0,
        }
    }
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

impl Builder {
    /// Applies the next entry.
    pub fn add(&mut self, e: Entry) -> Result<(), TarError> {
        let idx = u32::try_from(self.entries.len())
            .ok()
            .filter(|&i| i < NONE)
            .ok_or(TarError::Limit("more than 4 billion entries"))?;
        if e.path.is_empty() {
            if e.kind != Kind::Dir {
                return Err(TarError::RootNotDir { path: e.path });
            }
            self.nodes[0].entry = idx;
            return self.push(e, idx);
        }
        // A hard link shares whatever its target is now, before this entry
        // can replace it.
        let inode = if e.kind == Kind::HardLink {
            let target = self
                .lookup(&e.link)
                .map(|n| self.nodes[n as usize])
                .filter(|n| !n.dir && n.entry != NONE)
                .ok_or_else(|| TarError::HardLinkMissing {
                    path: e.path.clone(),
                    target: e.link.clone(),
                })?;
            self.inode[target.entry as usize]
        } else {
            idx
        };
        let (parent, name) = split(&e.path);
        let dir = self.dir_for(parent, &e.path)?;
        let key = (dir, Box::<[u8]>::from(name));
        let existing = self
            .children
            .get(&key)
            .copied()
            .filter(|&n| self.nodes[n as usize].alive);
        match existing {
            Some(n) => {
                let node = self.nodes[n as usize];
                if node.dir && !e.is_dir() {
                    self.kill_children(n);
                }
                let node = &mut self.nodes[n as usize];
                node.entry = idx;
                node.dir = e.is_dir();
            }
            None => {
                let n = self.new_node(dir, idx, e.is_dir())?;
                self.children.insert(key, n);
            }
        }
        self.inode.push(inode);
        self.entries.push(e);
        Ok(())
    }

    fn push(&mut self, e: Entry, idx: u32) -> Result<(), TarError> {
        self.inode.push(idx);
        self.entries.push(e);
        Ok(())
    }

    /// The surviving members, in archive order.
    pub fn finish(self) -> Archive {
        let mut members: Vec<Member> = self
            .nodes
            .iter()
            .filter(|n| n.alive && n.entry != NONE)
            .map(|n| Member {
                entry: n.entry,
                inode: self.inode[n.entry as usize],
                shared: false,
            })
            .collect();
        members.sort_unstable_by_key(|m| m.entry);
        let mut count: HashMap<u32, u32> = HashMap::new();
        for m in &members {
            *count.entry(m.inode).or_default() += 1;
        }
        for m in &mut members {
            m.shared = count[&m.inode] > 1;
        }
        Archive {
            entries: self.entries,
            members,
        }
    }

    fn new_node(&mut self, parent: u32, entry: u32, dir: bool) -> Result<u32, TarError> {
        let n = u32::try_from(self.nodes.len())
            .ok()
            .filter(|&i| i < NONE)
            .ok_or(TarError::Limit("more than 4 billion paths"))?;
        let p = &mut self.nodes[parent as usize];
        let next_sibling = std::mem::replace(&mut p.first_child, n);
        self.nodes.push(Node {
            entry,
            dir,
            alive: true,
            first_child: NONE,
            next_sibling,
        });
        Ok(n)
    }

    /// Marks everything under directory `n` gone.
    fn kill_children(&mut self, n: u32) {
        self.kills += 1;
        let mut stack = vec![std::mem::replace(
            &mut self.nodes[n as usize].first_child,
            NONE,
        )];
        while let Some(mut c) = stack.pop() {
            while c != NONE {
                let node = &mut self.nodes[c as usize];
                if node.alive {
                    node.alive = false;
                    stack.push(node.first_child);
                }
                c = node.next_sibling;
            }
        }
    }

    fn child(&self, dir: u32, name: &[u8]) -> Option<u32> {
        self.children
            .get(&(dir, Box::from(name)))
            .copied()
            .filter(|&n| self.nodes[n as usize].alive)
    }

    /// The live node at `path`, if any.
    fn lookup(&self, path: &[u8]) -> Option<u32> {
        let mut cur = 0u32;
        if path.is_empty() {
            return Some(0);
        }
        for c in path.split(|&b| b == b'/') {
            if !self.nodes[cur as usize].dir {
                return None;
            }
            cur = self.child(cur, c)?;
        }
        Some(cur)
    }

    /// The directory node at `parent` (creating implied directories), for
    /// the entry at `full`. Starts from the components shared with the
    /// previous entry's parent.
    fn dir_for(&mut self, parent: &[u8], full: &[u8]) -> Result<u32, TarError> {
        if parent.is_empty() {
            return Ok(0);
        }
        let c = &mut self.cursor;
        if c.kills != self.kills {
            let alive = c
                .nodes
                .iter()
                .take_while(|&&n| {
                    let node = &self.nodes[n as usize];
                    node.alive && node.dir
                })
                .count();
            c.nodes.truncate(alive);
            c.ends.truncate(alive);
            c.kills = self.kills;
        }
        // Components shared with the cursor: those ending inside the common
        // prefix (only the last can end where the new parent's name goes on).
        let common = if parent.starts_with(&c.path) {
            c.path.len()
        } else {
            c.path
                .iter()
                .zip(parent)
                .take_while(|(a, b)| a == b)
                .count()
        };
        let mut keep = c.ends.partition_point(|&end| end <= common);
        if keep > 0 {
            let end = c.ends[keep - 1];
            if end < parent.len() && parent[end] != b'/' {
                keep -= 1;
            }
        }
        c.nodes.truncate(keep);
        c.ends.truncate(keep);
        let mut cur = c.nodes.last().copied().unwrap_or(0);
        let mut at = c.ends.last().map_or(0, |&e| e + 1);
        self.cursor.path.clear();
        self.cursor.path.extend_from_slice(parent);
        while at <= parent.len() {
            let end = parent[at..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(parent.len(), |i| at + i);
            let name = &parent[at..end];
            cur = match self.child(cur, name) {
                Some(n) if self.nodes[n as usize].dir => n,
                Some(_) => {
                    return Err(TarError::ParentNotDir {
                        path: full.to_vec(),
                        parent: parent[..end].to_vec(),
                    })
                }
                None => {
                    self.implied_bytes += end as u64;
                    if self.implied_bytes > MAX_IMPLIED_PATH_BYTES {
                        return Err(TarError::Limit(
                            "more than 256 MiB of paths of directories the archive implies",
                        ));
                    }
                    let n = self.new_node(cur, NONE, true)?;
                    self.children.insert((cur, Box::from(name)), n);
                    n
                }
            };
            self.cursor.ends.push(end);
            self.cursor.nodes.push(cur);
            at = end + 1;
        }
        Ok(cur)
    }
}
