//! A store image's merged tree streamed into the ext4 writer, parents first,
//! file data copied from the layer blobs by offset.

use std::collections::HashMap;

use d2v_fuse::{EntryKind, MergedTree};
use d2v_packer::{Ext4Writer, Metadata, PackError, Timestamp};

/// Streams every path of `tree` into `w`, except those in `skip`; `progress`
/// gets (files, bytes) every 256 files and at the end.
pub(super) fn write_tree(
    tree: &MergedTree,
    w: &mut Ext4Writer,
    skip: &[&[u8]],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), PackError> {
    let mut first_path: HashMap<u64, Vec<u8>> = HashMap::new();
    let (mut files, mut bytes) = (0u64, 0u64);
    for entry in tree.walk() {
        if skip.contains(&entry.path.as_slice()) {
            continue;
        }
        let Some(node) = tree.get(entry.ino) else {
            continue;
        };
        if !entry.first {
            w.link(&entry.path, &first_path[&entry.ino])?;
            continue;
        }
        if node.nlink > 1 && node.kind != EntryKind::Dir {
            first_path.insert(entry.ino, entry.path.clone());
        }
        let type_bits = match node.kind {
            EntryKind::File => libc::S_IFREG,
            EntryKind::Dir => libc::S_IFDIR,
            EntryKind::Symlink => libc::S_IFLNK,
            EntryKind::CharDevice => libc::S_IFCHR,
            EntryKind::BlockDevice => libc::S_IFBLK,
            EntryKind::Fifo => libc::S_IFIFO,
        };
        let t = Timestamp {
            sec: node.mtime,
            nsec: node.mtime_nsec,
        };
        let meta = Metadata {
            mode: type_bits | (node.mode & 0o7777),
            uid: node.uid,
            gid: node.gid,
            atime: t,
            mtime: t,
            ctime: t,
            rdev: (node.rdev_major, node.rdev_minor),
            xattrs: tree
                .xattrs(entry.ino)
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect(),
        };
        match node.kind {
            EntryKind::Symlink => {
                let target = tree.symlink_target(entry.ino).unwrap_or(b"");
                w.create(&entry.path, &meta, Some(target), 0)?;
            }
            EntryKind::File => {
                w.create(&entry.path, &meta, None, node.size)?;
                for seg in tree.data_segments(entry.ino) {
                    w.copy_range(seg.file, seg.blob_offset, seg.logical, seg.len)?;
                }
                files += 1;
                bytes += node.size;
                if files.is_multiple_of(256) {
                    progress(files, bytes);
                }
            }
            _ => w.create(&entry.path, &meta, None, 0)?,
        }
    }
    progress(files, bytes);
    Ok(())
}

/// Adds a regular file owned by root, creating missing parent directories.
pub(super) fn add_file(
    w: &mut Ext4Writer,
    path: &[u8],
    mode: u32,
    data: &[u8],
    t: Timestamp,
) -> Result<(), PackError> {
    let mut parent = Vec::new();
    let parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    for part in &parts[..parts.len() - 1] {
        if !parent.is_empty() {
            parent.push(b'/');
        }
        parent.extend_from_slice(part);
        if !w.exists(&parent) {
            w.create(&parent, &Metadata::new(libc::S_IFDIR | 0o755, t), None, 0)?;
        }
    }
    w.create(
        path,
        &Metadata::new(libc::S_IFREG | mode, t),
        None,
        data.len() as u64,
    )?;
    w.write_data(data)?;
    Ok(())
}
