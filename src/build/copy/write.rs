//! Writing matched sources into the destination rootfs: directories walked
//! with `.dockerignore` exceptions, owners and modes as Docker sets them
//! (`--chown`, `--chmod`, kept from `--from` roots), hard links kept.

use std::fs::{self, File};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{io_at, CopyError};
use crate::build::dest::{DestWriter, EntryMeta};
use crate::build::dockerignore::DockerIgnore;
use crate::dockerfile::chmod;

/// How entries are written.
pub(super) struct Opts<'a> {
    /// `--chown`, resolved.
    pub chown: Option<(u32, u32)>,
    /// `--chmod`, octal or symbolic.
    pub chmod: Option<&'a str>,
    /// Keep source owners (sources from a rootfs, not the context).
    pub keep_owner: bool,
    /// `.dockerignore`.
    pub ignore: &'a DockerIgnore,
    /// `--exclude`.
    pub exclude: &'a DockerIgnore,
    /// (dev, ino) of multiply-linked files already copied → where they went,
    /// so hard links stay hard links, as in BuildKit.
    pub links: std::cell::RefCell<std::collections::HashMap<(u64, u64), PathBuf>>,
}

impl Opts<'_> {
    fn meta(&self, st: &fs::Metadata) -> EntryMeta {
        let (uid, gid) = match (self.chown, self.keep_owner) {
            (Some(o), _) => o,
            (None, true) => (st.uid(), st.gid()),
            (None, false) => (0, 0),
        };
        let mode = st.mode() & 0o7777;
        let mode = match self.chmod {
            Some(spec) => chmod::apply(spec, mode, st.is_dir()).unwrap_or(mode),
            None => mode,
        };
        EntryMeta {
            mode,
            uid,
            gid,
            mtime: Some((st.mtime(), st.mtime_nsec())),
        }
    }

    fn skipped(&self, rel: &str) -> bool {
        self.ignore.is_excluded(rel) || self.exclude.is_excluded(rel)
    }
}

/// Copy the contents of the directory `host` (source-relative `rel`) into the
/// image directory `target`. Returns whether anything was written.
pub(super) fn copy_dir(
    w: &mut DestWriter<'_>,
    host: &Path,
    rel: &str,
    target: &Path,
    opts: &Opts<'_>,
    top: bool,
) -> Result<bool, CopyError> {
    let st = fs::symlink_metadata(host).map_err(io_at(host))?;
    let meta = opts.meta(&st);
    let existed = w.is_dir(target);
    // An excluded dir is entered only for `!` exceptions, and kept only if
    // something inside it is.
    let dir_skipped = !top && opts.skipped(rel);
    if dir_skipped && !opts.ignore.has_exceptions() {
        return Ok(false);
    }
    if !dir_skipped {
        if existed {
            if !top {
                // BuildKit applies the source dir's metadata to an existing dir.
                w.set_dir_meta(target, meta).map_err(io_at(target))?;
            }
        } else if top {
            // The destination a directory's contents go into is new: Docker
            // makes it 0755, owned by root or the --chown owner; only what is
            // copied into it keeps the source's metadata.
            let (uid, gid) = opts.chown.unwrap_or((0, 0));
            let new = EntryMeta {
                mode: 0o755,
                uid,
                gid,
                mtime: None,
            };
            w.dir(target, new).map_err(io_at(target))?;
        } else {
            w.dir(target, meta).map_err(io_at(target))?;
        }
    }
    let mut names: Vec<_> = fs::read_dir(host)
        .map_err(io_at(host))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort();
    let mut wrote = !dir_skipped;
    for name in names {
        let child_host = host.join(&name);
        let n = name.to_string_lossy();
        let child_rel = if rel == "." || rel.is_empty() {
            n.to_string()
        } else {
            format!("{rel}/{n}")
        };
        let child_target = target.join(&name);
        let cst = fs::symlink_metadata(&child_host).map_err(io_at(&child_host))?;
        if cst.is_dir() {
            wrote |= copy_dir(w, &child_host, &child_rel, &child_target, opts, false)?;
        } else if !opts.skipped(&child_rel) {
            if dir_skipped && !w.is_dir(target) {
                w.dir(target, meta).map_err(io_at(target))?;
            }
            copy_entry(w, &child_host, &cst, &child_target, opts)?;
            wrote = true;
        }
    }
    if dir_skipped && wrote && w.is_dir(target) {
        w.set_dir_meta(target, meta).map_err(io_at(target))?;
    }
    Ok(wrote)
}

/// Copy one non-directory entry.
pub(super) fn copy_entry(
    w: &mut DestWriter<'_>,
    host: &Path,
    st: &fs::Metadata,
    target: &Path,
    opts: &Opts<'_>,
) -> Result<(), CopyError> {
    let mut meta = opts.meta(st);
    let ft = st.file_type();
    if ft.is_file() && st.nlink() > 1 {
        let key = (st.dev(), st.ino());
        let first = opts.links.borrow().get(&key).cloned();
        match first {
            Some(first) => return w.hardlink(target, &first).map_err(io_at(target)),
            None => {
                opts.links.borrow_mut().insert(key, target.to_path_buf());
            }
        }
    }
    if ft.is_file() {
        let mut f = File::open(host).map_err(io_at(host))?;
        let xattrs: Vec<(String, Vec<u8>)> = crate::build::layer::read_xattrs(host)
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("trusted.overlay.") && k != "security.selinux")
            .collect();
        w.file(target, meta, &mut f, &xattrs).map_err(io_at(target))
    } else if ft.is_symlink() {
        let link = fs::read_link(host).map_err(io_at(host))?;
        meta.mode = 0o777;
        w.symlink(target, &link, meta).map_err(io_at(target))
    } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
        let kind = st.mode() & libc::S_IFMT;
        w.special(target, kind, st.rdev(), meta)
            .map_err(io_at(target))
    } else {
        Ok(()) // sockets are not copied
    }
}
