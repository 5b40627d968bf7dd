//! Feeding an [`Ext4Writer`] from a directory on disk or a tar stream,
//! keeping xattrs, hard links, sparse holes and devices.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::error::PackError;
use crate::meta::*;
use crate::Ext4Writer;

/// Files smaller than this are read and written rather than copied by range.
const SMALL_FILE: u64 = 256 << 10;

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

/// Whether ext4 can store an attribute of this name.
fn storable_xattr(name: &[u8]) -> bool {
    [
        &b"user."[..],
        b"trusted.",
        b"security.",
        b"system.posix_acl_access",
        b"system.posix_acl_default",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// The [`Metadata`] of `path` (not following symlinks), xattrs included.
pub fn metadata_of(path: &Path, st: &std::fs::Metadata) -> Result<Metadata, PackError> {
    let mut xattrs = Vec::new();
    let names = xattr::list(path).map_err(|e| src_err(path, e))?;
    for name in names {
        let nb = name.as_bytes();
        if !storable_xattr(nb) {
            continue;
        }
        if let Some(v) = xattr::get(path, &name).map_err(|e| src_err(path, e))? {
            xattrs.push((nb.to_vec(), v));
        }
    }
    xattrs.sort();
    Ok(Metadata {
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
    })
}

/// Data segments `(offset, len)` of a file, from `SEEK_DATA`/`SEEK_HOLE`.
fn data_segments(f: &File, size: u64) -> Vec<(u64, u64)> {
    let fd = f.as_raw_fd();
    let mut segs = Vec::new();
    let mut pos: i64 = 0;
    while (pos as u64) < size {
        // SAFETY: lseek on a descriptor we own has no memory effects.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            return vec![(0, size)]; // no hole support: all data
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 {
            size as i64
        } else {
            hole.min(size as i64)
        };
        if end > data {
            segs.push((data as u64, (end - data) as u64));
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
    let mut buf = Vec::new();
    walk(root, &mut Vec::new(), w, &mut links, &mut buf, progress)
}

fn walk(
    dir: &Path,
    rel: &mut Vec<u8>,
    w: &mut Ext4Writer,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
    buf: &mut Vec<u8>,
    progress: &mut dyn FnMut(&Ext4Writer),
) -> Result<(), PackError> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| src_err(dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| src_err(dir, e))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let path = dir.join(&name);
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        let st = std::fs::symlink_metadata(&path).map_err(|e| src_err(&path, e))?;
        let ft = st.file_type();
        if !ft.is_dir() && st.nlink() > 1 {
            if let Some(first) = links.get(&(st.dev(), st.ino())) {
                w.link(rel, first)?;
                rel.truncate(len);
                continue;
            }
            links.insert((st.dev(), st.ino()), rel.clone());
        }
        let meta = metadata_of(&path, &st)?;
        if ft.is_dir() {
            w.create(rel, &meta, None, 0)?;
            walk(&path, rel, w, links, buf, progress)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| src_err(&path, e))?;
            w.create(rel, &meta, Some(target.as_os_str().as_bytes()), 0)?;
        } else if ft.is_file() {
            let size = st.len();
            w.create(rel, &meta, None, size)?;
            let f = File::open(&path).map_err(|e| src_err(&path, e))?;
            let sparse = st.blocks() * 512 < size;
            if size <= SMALL_FILE && !sparse {
                buf.clear();
                (&f).take(size)
                    .read_to_end(buf)
                    .map_err(|e| src_err(&path, e))?;
                if buf.len() as u64 != size {
                    return Err(src_err(&path, std::io::ErrorKind::UnexpectedEof.into()));
                }
                w.write_data(buf)?;
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

fn parse_time(s: &[u8]) -> Option<Timestamp> {
    let s = std::str::from_utf8(s).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut sec: i64 = secs.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let mut nsec: u32 = digits.parse().ok()?;
    if neg {
        sec = -sec;
        if nsec > 0 {
            sec -= 1;
            nsec = 1_000_000_000 - nsec;
        }
    }
    Some(Timestamp { sec, nsec })
}

/// Create any missing parent directories of `path`, with `meta`.
fn ensure_parents(w: &mut Ext4Writer, path: &[u8], meta: &Metadata) -> Result<(), PackError> {
    let mut end = 0;
    let trimmed: &[u8] = {
        let mut p = path;
        while let Some(r) = p.strip_suffix(b"/") {
            p = r;
        }
        p
    };
    while let Some(i) = trimmed[end..].iter().position(|&c| c == b'/') {
        let parent = &trimmed[..end + i];
        if !parent.is_empty() && parent != b"." && !w.exists(parent) {
            w.create(parent, meta, None, 0)?;
        }
        end += i + 1;
    }
    Ok(())
}

/// Pack a tar stream (ustar, GNU or pax; PAX `SCHILY.xattr.*` records become
/// xattrs) into `w`. Missing parent directories are created with mode 0755
/// and `epoch` as their time; all-zero blocks of GNU sparse entries stay holes.
pub fn pack_tar(input: impl Read, w: &mut Ext4Writer, epoch: i64) -> Result<(), PackError> {
    pack_tar_with_progress(input, w, epoch, &mut |_| {})
}

/// [`pack_tar`], calling `progress` after every entry.
pub fn pack_tar_with_progress(
    input: impl Read,
    w: &mut Ext4Writer,
    epoch: i64,
    progress: &mut dyn FnMut(&Ext4Writer),
) -> Result<(), PackError> {
    let terr = |e: std::io::Error| PackError::Tar(e.to_string());
    let mut ar = tar::Archive::new(input);
    let implied = Metadata::new(S_IFDIR | 0o755, Timestamp::from_secs(epoch));
    let mut buf = vec![0u8; 1 << 20];
    for entry in ar.entries().map_err(terr)? {
        let mut entry = entry.map_err(terr)?;
        let path = entry.path_bytes().into_owned();
        let h = entry.header().clone();
        let et = h.entry_type();
        let mut meta = Metadata {
            mode: h.mode().map_err(terr)? & 0o7777,
            uid: h.uid().map_err(terr)? as u32,
            gid: h.gid().map_err(terr)? as u32,
            ..Metadata::default()
        };
        let mtime = Timestamp::from_secs(h.mtime().map_err(terr)? as i64);
        meta.mtime = mtime;
        meta.atime = mtime;
        meta.ctime = mtime;
        if let Some(pax) = entry.pax_extensions().map_err(terr)? {
            for ext in pax {
                let ext = ext.map_err(terr)?;
                let key = ext.key_bytes();
                let val = ext.value_bytes();
                let num = || {
                    std::str::from_utf8(val)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                };
                match key {
                    b"mtime" => meta.mtime = parse_time(val).unwrap_or(meta.mtime),
                    b"atime" => meta.atime = parse_time(val).unwrap_or(meta.atime),
                    b"ctime" => meta.ctime = parse_time(val).unwrap_or(meta.ctime),
                    b"uid" => meta.uid = num().unwrap_or(meta.uid as u64) as u32,
                    b"gid" => meta.gid = num().unwrap_or(meta.gid as u64) as u32,
                    _ => {
                        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                            if storable_xattr(name) {
                                meta.xattrs.push((name.to_vec(), val.to_vec()));
                            }
                        }
                    }
                }
            }
        }
        ensure_parents(w, &path, &implied)?;
        use tar::EntryType as E;
        match et {
            E::Directory => {
                meta.mode |= S_IFDIR;
                w.create(&path, &meta, None, 0)?;
            }
            E::Symlink => {
                meta.mode |= S_IFLNK;
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| PackError::Tar("symlink without target".into()))?;
                w.create(&path, &meta, Some(&target), 0)?;
            }
            E::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| PackError::Tar("hard link without target".into()))?;
                w.link(&path, &target)?;
            }
            E::Char | E::Block | E::Fifo => {
                meta.mode |= match et {
                    E::Char => S_IFCHR,
                    E::Block => S_IFBLK,
                    _ => S_IFIFO,
                };
                let major = h.device_major().map_err(terr)?.unwrap_or(0);
                let minor = h.device_minor().map_err(terr)?.unwrap_or(0);
                meta.rdev = (major, minor);
                w.create(&path, &meta, None, 0)?;
            }
            E::Regular | E::Continuous | E::GNUSparse => {
                meta.mode |= S_IFREG;
                let size = entry.size();
                w.create(&path, &meta, None, size)?;
                let sparse = et == E::GNUSparse;
                let mut off = 0u64;
                loop {
                    let n = read_full(&mut entry, &mut buf).map_err(terr)?;
                    if n == 0 {
                        break;
                    }
                    if sparse {
                        for chunk in buf[..n].chunks(crate::BLOCK_SIZE) {
                            if chunk.iter().any(|&b| b != 0) {
                                w.write_data_at(off, chunk)?;
                            }
                            off += chunk.len() as u64;
                        }
                    } else {
                        w.write_data(&buf[..n])?;
                        off += n as u64;
                    }
                }
                if off != size {
                    return Err(PackError::Tar(format!(
                        "{}: short entry",
                        String::from_utf8_lossy(&path)
                    )));
                }
            }
            _ => {} // pax/GNU headers are consumed by the tar crate; others are ignored
        }
        progress(w);
    }
    Ok(())
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// `OsStr` helper for callers building paths from bytes.
pub fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}
