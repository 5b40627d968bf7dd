//! Feeding an [`Ext4Writer`] from a directory on disk, keeping xattrs, hard
//! links, sparse holes and devices.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rustix::fs::{Mode, OFlags, SeekFrom};
use rustix::io::Errno;

use super::{storable_xattr, SMALL_FILE};
use crate::error::PackError;
use crate::meta::*;
use crate::Ext4Writer;

fn src_err(path: &Path, e: std::io::Error) -> PackError {
    PackError::Source {
        path: path.display().to_string(),
        source: e,
    }
}

/// Split a `dev_t` into (major, minor) as glibc does.
pub fn dev_split(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xFFF) | ((dev >> 32) & !0xFFF);
    let minor = (dev & 0xFF) | ((dev >> 12) & !0xFF);
    (major as u32, minor as u32)
}

/// The [`Metadata`] of `path` (not following symlinks), xattrs included.
pub fn metadata_of(path: &Path, st: &std::fs::Metadata) -> Result<Metadata, PackError> {
    let names = xattr::list(path).map_err(|e| src_err(path, e))?;
    let xattrs = storable_xattrs(names, |n| xattr::get(path, n)).map_err(|e| src_err(path, e))?;
    Ok(metadata_with(st, xattrs))
}

/// The storable xattrs among `names`, read with `get`, sorted.
fn storable_xattrs(
    names: xattr::XAttrs,
    get: impl Fn(&OsStr) -> std::io::Result<Option<Vec<u8>>>,
) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut xattrs = Vec::new();
    for name in names {
        let nb = name.as_bytes();
        if !storable_xattr(nb) {
            continue;
        }
        if let Some(v) = get(&name)? {
            xattrs.push((nb.to_vec(), v));
        }
    }
    xattrs.sort();
    Ok(xattrs)
}

/// [`Metadata`] from a stat result and the xattrs already read.
fn metadata_with(st: &std::fs::Metadata, xattrs: Vec<(Vec<u8>, Vec<u8>)>) -> Metadata {
    Metadata {
        mode: st.mode(),
        uid: st.uid(),
        gid: st.gid(),
        atime: Timestamp {
            sec: st.atime(),
            nsec: st.atime_nsec() as u32,
        },
        mtime: Timestamp {
            sec: st.mtime(),
            nsec: st.mtime_nsec() as u32,
        },
        ctime: Timestamp {
            sec: st.ctime(),
            nsec: st.ctime_nsec() as u32,
        },
        rdev: dev_split(st.rdev()),
        xattrs,
    }
}

/// Open `name` in the directory `dir` without following a symlink, so the
/// kernel looks up one component instead of the whole path.
fn open_in(dir: &File, name: &OsStr) -> std::io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    Ok(File::from(rustix::fs::openat(
        dir,
        name,
        flags,
        Mode::empty(),
    )?))
}

/// Data segments `(offset, len)` of a file, from `SEEK_DATA`/`SEEK_HOLE`.
fn data_segments(f: &File, size: u64) -> Vec<(u64, u64)> {
    let mut segs = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let data = match rustix::fs::seek(f, SeekFrom::Data(pos)) {
            Ok(data) => data,
            Err(Errno::NXIO) => break,        // only a hole remains
            Err(_) => return vec![(0, size)], // no hole support: all data
        };
        let end = match rustix::fs::seek(f, SeekFrom::Hole(data)) {
            Ok(hole) => hole.min(size),
            Err(_) => size,
        };
        if end > data {
            segs.push((data, end - data));
        }
        pos = end;
    }
    segs
}

/// Pack the tree under `root` (its own metadata becomes the root's) into `w`.
/// Entries are visited in byte order of their names; files with several
/// links become hard links; holes stay holes.
pub fn pack_dir(root: &Path, w: &mut Ext4Writer) -> Result<(), PackError> {
    pack_dir_with_progress(root, w, &mut |_| {})
}

/// [`pack_dir`], calling `progress` after every entry.
pub fn pack_dir_with_progress(
    root: &Path,
    w: &mut Ext4Writer,
    progress: &mut dyn FnMut(&Ext4Writer),
) -> Result<(), PackError> {
    let st = std::fs::symlink_metadata(root).map_err(|e| src_err(root, e))?;
    w.create(b"", &metadata_of(root, &st)?, None, 0)?;
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    walk(root, &mut Vec::new(), w, &mut links, progress)
}

fn walk(
    dir: &Path,
    rel: &mut Vec<u8>,
    w: &mut Ext4Writer,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
    progress: &mut dyn FnMut(&Ext4Writer),
) -> Result<(), PackError> {
    let dir_fd = File::open(dir).map_err(|e| src_err(dir, e))?;
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| src_err(dir, e))?
        .map(|e| e.and_then(|e| Ok((e.file_name(), e.file_type()?.is_file()))))
        .collect::<Result<_, _>>()
        .map_err(|e| src_err(dir, e))?;
    names.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (name, is_file) in names {
        let path = dir.join(&name);
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        // Regular files (the bulk) are opened relative to their directory
        // and stat'ed and read through the descriptor.
        let opened = if is_file {
            let f = open_in(&dir_fd, &name).map_err(|e| src_err(&path, e))?;
            let st = f.metadata().map_err(|e| src_err(&path, e))?;
            Some((f, st))
        } else {
            None
        };
        let st = match &opened {
            Some((_, st)) => st.clone(),
            None => std::fs::symlink_metadata(&path).map_err(|e| src_err(&path, e))?,
        };
        let ft = st.file_type();
        if !ft.is_dir() && st.nlink() > 1 {
            if let Some(first) = links.get(&(st.dev(), st.ino())) {
                w.link(rel, first)?;
                rel.truncate(len);
                continue;
            }
            links.insert((st.dev(), st.ino()), rel.clone());
        }
        let meta = match &opened {
            Some((f, _)) if ft.is_file() => {
                use xattr::FileExt;
                let names = f.list_xattr().map_err(|e| src_err(&path, e))?;
                let xattrs =
                    storable_xattrs(names, |n| f.get_xattr(n)).map_err(|e| src_err(&path, e))?;
                metadata_with(&st, xattrs)
            }
            _ => metadata_of(&path, &st)?,
        };
        if ft.is_dir() {
            w.create(rel, &meta, None, 0)?;
            walk(&path, rel, w, links, progress)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| src_err(&path, e))?;
            w.create(rel, &meta, Some(target.as_os_str().as_bytes()), 0)?;
        } else if ft.is_file() {
            let size = st.len();
            w.create(rel, &meta, None, size)?;
            let f = match opened {
                Some((f, _)) => f,
                None => File::open(&path).map_err(|e| src_err(&path, e))?,
            };
            let sparse = st.blocks() * 512 < size;
            if size <= SMALL_FILE && !sparse {
                w.read_data(&mut &f)?;
            } else {
                let segs = if sparse {
                    data_segments(&f, size)
                } else {
                    vec![(0, size)]
                };
                for (off, n) in segs {
                    w.copy_range(&f, off, off, n)?;
                }
            }
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() || ft.is_socket() {
            w.create(rel, &meta, None, 0)?;
        }
        progress(w);
        rel.truncate(len);
    }
    Ok(())
}
