//! Feeding an [`Ext4Writer`] from a tar archive, read by `d2v-tar` with the
//! same rules as layer import and `d2v mount`: later entries win, hard links
//! share their target's inode, sparse files keep their holes.
//!
//! The archive is read twice: once for its headers (data skipped by offset)
//! to learn which paths survive, then the survivors are written in archive
//! order with their data copied out by offset (`copy_file_range` for large
//! runs). A stream is spooled to an unnamed temporary file first.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

use d2v_tar::{Archive, Entry, Kind, Reader};

use super::{storable_xattr, SMALL_FILE};
use crate::error::PackError;
use crate::meta::*;
use crate::writer::show;
use crate::Ext4Writer;

/// Pack a tar stream (ustar, GNU or pax; `SCHILY.xattr.*` records become
/// xattrs) into `w`, spooling it to an unnamed file in the temporary
/// directory. Missing parent directories are created with mode 0755 and
/// `epoch` as their time; sparse files keep their holes.
pub fn pack_tar<'a>(
    input: impl Read + 'a,
    w: &mut Ext4Writer,
    epoch: i64,
) -> Result<(), PackError> {
    pack_tar_with_progress(input, w, epoch, &mut |_| {})
}

/// [`pack_tar`], calling `progress` after every entry.
pub fn pack_tar_with_progress<'a>(
    mut input: impl Read + 'a,
    w: &mut Ext4Writer,
    epoch: i64,
    progress: &mut dyn FnMut(&Ext4Writer),
) -> Result<(), PackError> {
    let spool_err = |source| PackError::Source {
        path: "tar stream".into(),
        source,
    };
    let mut spool = tempfile::tempfile().map_err(spool_err)?;
    std::io::copy(&mut input, &mut spool).map_err(spool_err)?;
    pack_tar_file(&spool, w, epoch, progress)
}

/// [`pack_tar`] from a tar file: its headers are read by offset and its file
/// data copied straight out of it, never read whole into memory.
pub fn pack_tar_file(
    file: &File,
    w: &mut Ext4Writer,
    epoch: i64,
    progress: &mut dyn FnMut(&Ext4Writer),
) -> Result<(), PackError> {
    let mut reader = Reader::from_file(file).map_err(|source| PackError::Source {
        path: "tar file".into(),
        source,
    })?;
    let archive = Archive::read(&mut reader)?;
    let implied = Metadata::new(S_IFDIR | 0o755, Timestamp::from_secs(epoch));
    // The path each hard-linked inode was first created at.
    let mut first: HashMap<u32, &[u8]> = HashMap::new();
    let mut buf = Vec::new();
    for m in archive.members() {
        let path = archive.entry(m.entry).path.as_slice();
        ensure_parents(w, path, &implied)?;
        if m.shared {
            if let Some(target) = first.get(&m.inode) {
                w.link(path, target)?;
                progress(w);
                continue;
            }
            first.insert(m.inode, path);
        }
        let ino = archive.entry(m.inode);
        write_entry(w, path, ino, file, &mut buf)?;
        progress(w);
    }
    Ok(())
}

/// Creates `path` with the metadata and data of the entry `e`.
fn write_entry(
    w: &mut Ext4Writer,
    path: &[u8],
    e: &Entry,
    file: &File,
    buf: &mut Vec<u8>,
) -> Result<(), PackError> {
    let time = |t: d2v_tar::Time| Timestamp {
        sec: t.sec,
        nsec: t.nsec,
    };
    let mut meta = Metadata {
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        mtime: time(e.mtime),
        atime: time(e.atime.unwrap_or(e.mtime)),
        ctime: time(e.ctime.unwrap_or(e.mtime)),
        rdev: e.dev,
        xattrs: e
            .xattrs
            .iter()
            .filter(|(k, _)| storable_xattr(k))
            .cloned()
            .collect(),
    };
    meta.mode |= match e.kind {
        Kind::Dir => S_IFDIR,
        Kind::Symlink => S_IFLNK,
        Kind::CharDevice => S_IFCHR,
        Kind::BlockDevice => S_IFBLK,
        Kind::Fifo => S_IFIFO,
        Kind::File | Kind::HardLink => S_IFREG,
    };
    match e.kind {
        Kind::Symlink => return w.create(path, &meta, Some(&e.link), 0),
        Kind::File | Kind::HardLink => {}
        _ => return w.create(path, &meta, None, 0),
    }
    w.create(path, &meta, None, e.size)?;
    let read_err = |source| PackError::Source {
        path: show(path),
        source,
    };
    for run in e.data_runs() {
        if run.len >= SMALL_FILE {
            w.copy_range(file, run.archive, run.logical, run.len)?;
            continue;
        }
        buf.resize(run.len as usize, 0);
        file.read_exact_at(buf, run.archive).map_err(read_err)?;
        w.write_data_at(run.logical, buf)?;
    }
    Ok(())
}

/// Creates the missing parent directories of `path` with `meta`, top down.
/// The parent is looked up first: when it exists (the usual case) this costs
/// one lookup, so deep trees stay linear.
fn ensure_parents(w: &mut Ext4Writer, path: &[u8], meta: &Metadata) -> Result<(), PackError> {
    let Some(mut end) = path.iter().rposition(|&c| c == b'/') else {
        return Ok(());
    };
    let mut missing = Vec::new();
    while !w.exists(&path[..end]) {
        missing.push(end);
        match path[..end].iter().rposition(|&c| c == b'/') {
            Some(i) => end = i,
            None => break,
        }
    }
    for &end in missing.iter().rev() {
        w.create(&path[..end], meta, None, 0)?;
    }
    Ok(())
}
