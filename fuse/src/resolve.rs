//! Paths resolved inside a [`MergedTree`] the way the kernel would inside the
//! image: symlinks followed (absolute ones from the image's root), `..`
//! stopping at the root, at most 40 links, never a host path.

use crate::index::EntryKind;
use crate::tree::MergedTree;

/// Most symlinks followed in one resolution (the kernel's `MAXSYMLINKS`).
const MAX_LINKS: u32 = 40;

impl MergedTree {
    /// Resolves `path` (symlinks followed, never above the root): the
    /// canonical path and inode of what it names, or `None` if nothing.
    pub fn resolve(&self, path: &[u8]) -> Option<(Vec<u8>, u64)> {
        let mut path = path.to_vec();
        for _ in 0..MAX_LINKS {
            let (dir, parent) = self.resolve_parent(&path)?;
            let name = path.rsplit(|&b| b == b'/').next().unwrap_or(b"").to_vec();
            let ino = self.lookup(parent, &name)?;
            if self.get(ino)?.kind != EntryKind::Symlink {
                let full = if dir.is_empty() {
                    name
                } else {
                    [&dir[..], b"/", &name].concat()
                };
                return Some((full, ino));
            }
            path = join_link(&dir, self.symlink_target(ino)?);
        }
        None
    }

    /// Where `path` should be created: its parent resolved inside the tree
    /// (when the parent exists), plus its own name.
    pub fn resolve_for_create(&self, path: &[u8]) -> Vec<u8> {
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or(b"");
        match self.resolve_parent(path) {
            Some((mut dir, _)) => {
                if !dir.is_empty() {
                    dir.push(b'/');
                }
                dir.extend_from_slice(name);
                dir
            }
            None => path.to_vec(),
        }
    }

    /// The contents of the regular file `path` names (symlinks followed),
    /// when it is at most `limit` bytes.
    pub fn read_file(&self, path: &[u8], limit: u64) -> Option<Vec<u8>> {
        let (_, ino) = self.resolve(path)?;
        let node = self.get(ino)?;
        if node.kind != EntryKind::File || node.size > limit {
            return None;
        }
        let mut buf = vec![0u8; node.size as usize];
        let mut off = 0;
        while off < buf.len() {
            let n = self.read_at(ino, off as u64, &mut buf[off..]).ok()?;
            if n == 0 {
                break;
            }
            off += n;
        }
        buf.truncate(off);
        Some(buf)
    }

    /// Resolves every component of `path` but the last: the canonical
    /// directory path and its inode.
    fn resolve_parent(&self, path: &[u8]) -> Option<(Vec<u8>, u64)> {
        let comps: Vec<&[u8]> = path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .collect();
        let (_, dirs) = comps.split_last()?;
        let mut stack: Vec<(Vec<u8>, u64)> = vec![(Vec::new(), self.root())];
        let mut todo: Vec<Vec<u8>> = dirs.iter().rev().map(|c| c.to_vec()).collect();
        let mut hops = 0;
        while let Some(comp) = todo.pop() {
            let (cur_path, cur) = stack.last().cloned()?;
            if comp == b".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let ino = self.lookup(cur, &comp)?;
            match self.get(ino)?.kind {
                EntryKind::Dir => {
                    let mut p = cur_path;
                    if !p.is_empty() {
                        p.push(b'/');
                    }
                    p.extend_from_slice(&comp);
                    stack.push((p, ino));
                }
                EntryKind::Symlink => {
                    hops += 1;
                    if hops > MAX_LINKS {
                        return None;
                    }
                    let target = self.symlink_target(ino)?;
                    if target.starts_with(b"/") {
                        stack.truncate(1);
                    }
                    for c in target.split(|&b| b == b'/').rev() {
                        if !c.is_empty() && c != b"." {
                            todo.push(c.to_vec());
                        }
                    }
                }
                _ => return None,
            }
        }
        stack.pop()
    }
}

/// A symlink target taken relative to the directory `dir` it sits in.
fn join_link(dir: &[u8], target: &[u8]) -> Vec<u8> {
    if let Some(abs) = target.strip_prefix(b"/") {
        abs.to_vec()
    } else if dir.is_empty() {
        target.to_vec()
    } else {
        [dir, b"/", target].concat()
    }
}
