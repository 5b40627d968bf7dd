//! `d2v pack NAME`: an image of the store streamed into a bootable ext4 image.
//!
//! The image's merged tree is walked once, parents first, and every entry goes
//! straight into [`d2v_packer::Ext4Writer`]; file data is copied from the layer
//! blobs by offset (no extraction). Then `/sbin/d2v-init` (the static init) and
//! `/etc/d2v/config.json` (the runtime config: entrypoint, cmd, env, user with its
//! uid/gid resolved in the image, workdir, stop signal, …) are added, resolved
//! inside the image so a symlinked `/sbin` (merged-usr Debian) is honoured.
//!
//! The image is written to a temporary file beside the output and renamed into
//! place, and a record of what it was made from lets an unchanged image be reused
//! without packing it again.

use crate::runtime_config::{RuntimeConfig, RuntimeConfigExt};
use crate::store::{Store, StoreError};
use d2v_fuse::{EntryKind, MergedTree};
use d2v_packer::{Ext4Writer, Metadata, PackError, Summary, Timestamp};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where the init goes in the image.
pub const INIT_PATH: &[u8] = b"sbin/d2v-init";
/// Where the runtime config goes in the image.
pub const CONFIG_PATH: &[u8] = b"etc/d2v/config.json";

/// Errors from packing an image.
#[derive(Debug, thiserror::Error)]
pub enum PackImageError {
    /// The store could not provide the image.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The layers could not be composed.
    #[error("couldn't compose the image's layers: {0}")]
    Tree(#[from] d2v_fuse::TreeError),
    /// The ext4 writer failed.
    #[error("couldn't write the ext4 image: {0}")]
    Pack(#[from] PackError),
    /// A file around the image could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The image's config is not valid.
    #[error("the image config of {0} is not valid: {1}")]
    Config(String, String),
}

/// How to pack.
#[derive(Clone, Debug)]
pub struct PackOptions {
    /// The ext4 writer's options.
    pub writer: d2v_packer::Options,
    /// The init binary to install at `/sbin/d2v-init`.
    pub init: &'static [u8],
    /// Pack again even when an identical image is already at the output.
    pub force: bool,
}

/// What [`pack_image`] did.
#[derive(Clone, Debug)]
pub struct PackOutcome {
    /// The writer's summary; `None` when an identical earlier image was reused.
    pub summary: Option<Summary>,
    /// The runtime config written into the image.
    pub config: RuntimeConfig,
}

#[derive(serde::Serialize, serde::Deserialize, PartialEq)]
struct PackRecord {
    key: String,
    len: u64,
    mtime_ns: i128,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PackImageError + '_ {
    move |source| PackImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn file_stamp(path: &Path) -> Option<(u64, i128)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.len(),
        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
    ))
}

/// Packs image `name` of `store` into `out` (and reuses `out` when it already
/// holds exactly this image packed with these options).
pub fn pack_image(
    store: &Store,
    name: &str,
    out: &Path,
    opts: &PackOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PackOutcome, PackImageError> {
    let image = store.image(name)?;
    let oci = image
        .oci_config()
        .map_err(|e| PackImageError::Config(name.to_string(), e.to_string()))?;

    let key = {
        let mut h = Sha256::new();
        h.update(env!("CARGO_PKG_VERSION"));
        h.update(image.manifest_digest.as_str());
        h.update(format!("{:?}", opts.writer));
        h.update(Sha256::digest(opts.init));
        hex::encode(h.finalize())
    };
    let abs_out = std::path::absolute(out).map_err(io_err(out))?;
    let record_path = store.root().join("d2v/packs").join(format!(
        "{}.json",
        hex::encode(Sha256::digest(abs_out.as_os_str().as_encoded_bytes()))
    ));

    let layers = image
        .layers()
        .iter()
        .map(|d| store.open_layer(d))
        .collect::<Result<Vec<_>, _>>()?;
    let tree = MergedTree::new(layers)?;
    let passwd = read_file(&tree, b"etc/passwd");
    let group = read_file(&tree, b"etc/group");
    let config = RuntimeConfig::from_image_config(&oci, passwd.as_deref(), group.as_deref());

    if !opts.force {
        if let (Ok(bytes), Some((len, mtime_ns))) =
            (std::fs::read(&record_path), file_stamp(&abs_out))
        {
            let want = PackRecord {
                key: key.clone(),
                len,
                mtime_ns,
            };
            if serde_json::from_slice::<PackRecord>(&bytes).ok().as_ref() == Some(&want) {
                return Ok(PackOutcome {
                    summary: None,
                    config,
                });
            }
        }
    }

    let dir = abs_out.parent().unwrap_or(Path::new("/"));
    let tmp = tempfile::Builder::new()
        .prefix(".d2v-pack-")
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    let file = tmp.reopen().map_err(io_err(tmp.path()))?;
    let mut w = Ext4Writer::new(file, opts.writer.clone())?;

    // The init and config land where the image's own symlinks put them.
    let init_path = resolve_for_create(&tree, INIT_PATH);
    let config_path = resolve_for_create(&tree, CONFIG_PATH);
    write_tree(&tree, &mut w, &[&init_path, &config_path], progress)?;

    let epoch = opts.writer.source_date_epoch.unwrap_or(0);
    let t = Timestamp::from_secs(epoch);
    add_file(&mut w, &init_path, 0o755, opts.init, t)?;
    add_file(&mut w, &config_path, 0o644, config.to_json().as_bytes(), t)?;
    let summary = w.finish()?;

    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(io_err(tmp.path()))?;
    }
    tmp.persist(&abs_out)
        .map_err(|e| e.error)
        .map_err(io_err(&abs_out))?;
    if let Some((len, mtime_ns)) = file_stamp(&abs_out) {
        let record = PackRecord { key, len, mtime_ns };
        if let Some(parent) = record_path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        crate::store::write_atomic(
            &record_path,
            &serde_json::to_vec(&record).expect("serializes"),
        )?;
    }
    Ok(PackOutcome {
        summary: Some(summary),
        config,
    })
}

/// Streams every path of `tree` into `w`, except those in `skip`.
fn write_tree(
    tree: &MergedTree,
    w: &mut Ext4Writer,
    skip: &[&[u8]],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), PackImageError> {
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
fn add_file(
    w: &mut Ext4Writer,
    path: &[u8],
    mode: u32,
    data: &[u8],
    t: Timestamp,
) -> Result<(), PackImageError> {
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

/// Resolves `path` inside the tree (symlinks followed, never above the root) and
/// returns the canonical path and inode of what it names, or `None` if nothing.
pub fn resolve(tree: &MergedTree, path: &[u8]) -> Option<(Vec<u8>, u64)> {
    let mut path = path.to_vec();
    for _ in 0..40 {
        let (dir, parent) = resolve_parent(tree, &path)?;
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or(b"").to_vec();
        let ino = tree.lookup(parent, &name)?;
        if tree.get(ino)?.kind != EntryKind::Symlink {
            let full = if dir.is_empty() {
                name
            } else {
                [&dir[..], b"/", &name].concat()
            };
            return Some((full, ino));
        }
        path = join_link(&dir, tree.symlink_target(ino)?);
    }
    None
}

/// Where `path` should be created: its parent resolved inside the tree (when the
/// parent exists), plus its own name.
fn resolve_for_create(tree: &MergedTree, path: &[u8]) -> Vec<u8> {
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(b"");
    match resolve_parent(tree, path) {
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

/// Resolves every component of `path` but the last, returning the canonical
/// directory path and its inode.
fn resolve_parent(tree: &MergedTree, path: &[u8]) -> Option<(Vec<u8>, u64)> {
    let comps: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    let (_, dirs) = comps.split_last()?;
    let mut stack: Vec<(Vec<u8>, u64)> = vec![(Vec::new(), tree.root())];
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
        let ino = tree.lookup(cur, &comp)?;
        let node = tree.get(ino)?;
        match node.kind {
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
                if hops > 40 {
                    return None;
                }
                let target = tree.symlink_target(ino)?;
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

fn join_link(dir: &[u8], target: &[u8]) -> Vec<u8> {
    if target.starts_with(b"/") {
        target[1..].to_vec()
    } else if dir.is_empty() {
        target.to_vec()
    } else {
        [dir, b"/", target].concat()
    }
}

/// Reads a (small) file of the tree, following symlinks inside it.
pub fn read_file(tree: &MergedTree, path: &[u8]) -> Option<Vec<u8>> {
    let (_, ino) = resolve(tree, path)?;
    let node = tree.get(ino)?;
    if node.kind != EntryKind::File || node.size > 16 << 20 {
        return None;
    }
    let mut buf = vec![0u8; node.size as usize];
    let mut off = 0;
    while off < buf.len() {
        let n = tree.read_at(ino, off as u64, &mut buf[off..]).ok()?;
        if n == 0 {
            break;
        }
        off += n;
    }
    buf.truncate(off);
    Some(buf)
}
