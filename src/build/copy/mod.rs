//! COPY and ADD into an overlay's merged dir, every path resolved inside its root.
//!
//! Sources are resolved inside their own root (the build context, or a
//! stage's or image's rootfs) and destinations inside the target rootfs, both
//! with `openat2(RESOLVE_IN_ROOT)`: a symlink pointing at `/` or `../..` is
//! followed as Docker does, but only ever inside the root. Docker's rules:
//! a directory source copies its contents; several sources (or a glob) need a
//! directory destination ending in `/`; a top-level source symlink is
//! followed; files keep their mode; owners are 0:0 from the context and kept
//! from `--from` roots unless `--chown` (names from the target's
//! `/etc/passwd` and `/etc/group`); `--chmod` is octal or symbolic; new destination
//! parents are 0755 root; `.dockerignore` and `--exclude` filter; `--parents`
//! keeps source paths (from a `/./` pivot if present); ADD unpacks local tar
//! archives (plain, gzip, zstd, bzip2, xz) and downloads URLs (`--checksum`).
//! For `--link` the executor hands in an overlay over an empty base, so the
//! layer holds only the copied files and their new parents, as BuildKit's.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::archive;
use super::dest::{DestWriter, EntryMeta};
use super::dockerignore::{DockerIgnore, IgnoreError};
use super::git;
use super::glob;
use super::inroot::Root;
use super::url;
use super::user::{self, UserError};
use crate::dockerfile::{chmod, CopyStep};
use sources::Matched;
use write::{copy_dir, copy_entry, Opts};

mod sources;
mod write;

/// Errors from COPY/ADD.
#[derive(Debug, Error)]
pub enum CopyError {
    /// A source does not exist (or is excluded by `.dockerignore`).
    #[error("{0:?}: not found")]
    NotFound(String),
    /// Several sources into a destination that is not a directory.
    #[error("when using COPY with more than one source file, the destination must be a directory and end with a /")]
    DestNotDir,
    /// `--chown` did not resolve in the target rootfs.
    #[error("--chown: {0}")]
    Chown(#[from] UserError),
    /// `--chmod` is not a mode.
    #[error("--chmod: {0}")]
    Chmod(String),
    /// A bad pattern.
    #[error("bad pattern {0:?}")]
    Pattern(String),
    /// `.dockerignore` / `--exclude` trouble.
    #[error(transparent)]
    Ignore(#[from] IgnoreError),
    /// Downloading an ADD URL failed.
    #[error(transparent)]
    Url(#[from] super::url::UrlError),
    /// Fetching an ADD git repository failed.
    #[error(transparent)]
    Git(#[from] git::GitError),
    /// Not supported (ADD of git repos, COPY of URLs).
    #[error("{0} is not supported yet")]
    Unsupported(String),
    /// I/O on a path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: io::Error,
    },
}

fn io_at(path: impl AsRef<Path>) -> impl FnOnce(io::Error) -> CopyError {
    let path = path.as_ref().display().to_string();
    move |source| CopyError::Io { path, source }
}

/// One COPY/ADD to carry out.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    /// The planned step (sources are unglobbed patterns, `dest` as expanded).
    pub step: CopyStep,
    /// Where sources are resolved: the context dir, or a read-only mount of the
    /// `--from` stage's or image's rootfs.
    pub src_root: PathBuf,
    /// True when `src_root` is the build context (`.dockerignore` applies).
    pub from_context: bool,
    /// The Dockerfile's path relative to the context, if inside it.
    pub dockerfile_in_context: Option<String>,
    /// The stage's WORKDIR when the step runs (relative `dest` is under it).
    pub workdir: String,
    /// Where `--chown` names are looked up when not in the rootfs written
    /// into (`COPY --link` writes onto an empty base).
    pub users_root: Option<PathBuf>,
}

/// Carries out `req` into `merged` (the overlay's merged dir, the rootfs the step
/// writes into; `--chown` names resolve in its /etc/passwd and /etc/group).
pub fn copy(req: &CopyRequest, merged: &Path) -> Result<(), CopyError> {
    let step = &req.step;
    let root = Root::open(merged).map_err(io_at(merged))?;
    let chown = match &step.chown {
        Some(spec) if !spec.is_empty() => {
            let users = match &req.users_root {
                Some(dir) => Root::open(dir).map_err(io_at(dir))?,
                None => Root::open(merged).map_err(io_at(merged))?,
            };
            Some(user::chown(&users, spec)?)
        }
        _ => None,
    };
    let chmod = match &step.chmod {
        Some(m) if !m.is_empty() => {
            chmod::parse(m).map_err(CopyError::Chmod)?;
            Some(m.as_str())
        }
        _ => None,
    };
    let ignore = if req.from_context {
        let mut ig = DockerIgnore::load(&req.src_root)?;
        if let Some(df) = &req.dockerfile_in_context {
            ig = ig.keep_build_files(df)?;
        }
        ig
    } else {
        DockerIgnore::default()
    };
    let exclude = DockerIgnore::from_patterns(&step.exclude)?;
    let src = Root::open(&req.src_root).map_err(io_at(&req.src_root))?;
    // Match sources first: the count decides what the destination is.
    let found = sources::match_all(step, &src, &ignore, &exclude)?;

    let dest = dest_path(&step.dest, &req.workdir);
    let mut w = DestWriter::new(&root);
    // Docker: new files and directories are 0:0 "unless the optional --chown flag
    // specifies" an owner, which then applies to the directories COPY creates too.
    let (new_uid, new_gid) = chown.unwrap_or((0, 0));
    w.set_parent_owner(new_uid, new_gid);
    let explicit_dir = step.dest.ends_with('/')
        || step.dest.ends_with("/.")
        || step.dest == "."
        || w.is_dir(&dest);
    if found.count() > 1 && !explicit_dir {
        return Err(CopyError::DestNotDir);
    }
    let into = Destination {
        dest,
        is_dir: explicit_dir || step.parents,
    };
    if into.is_dir && !w.is_dir(&into.dest) {
        let meta = EntryMeta {
            mode: 0o755,
            uid: new_uid,
            gid: new_gid,
            mtime: None,
        };
        w.dir(&into.dest, meta).map_err(io_at(&into.dest))?;
    }
    let opts = Opts {
        chown,
        chmod,
        keep_owner: !req.from_context,
        ignore: &ignore,
        exclude: &exclude,
        links: Default::default(),
    };
    copy_matched(&mut w, step, &found.matched, &into, opts)?;
    for url in &found.urls {
        let mut dl = url::fetch(url, step.checksum.as_deref())?;
        // Docker gives downloaded files mode 0600.
        let meta = new_file_meta(chown, chmod, 0o600, dl.mtime.map(|s| (s, 0)));
        let target = into.entry(&dl.name);
        w.file(&target, meta, &mut dl.file, &[])
            .map_err(io_at(&target))?;
    }
    for doc in &step.heredocs {
        let meta = new_file_meta(chown, chmod, 0o644, None);
        let target = into.entry(&doc.name);
        w.file(&target, meta, &mut doc.content.as_bytes(), &[])
            .map_err(io_at(&target))?;
    }
    w.finish().map_err(io_at(merged))
}

/// Where a copy goes: the destination, and whether it is a directory that
/// sources go into (else the one source becomes it).
struct Destination {
    dest: PathBuf,
    is_dir: bool,
}

impl Destination {
    /// Where an entry named `name` goes.
    fn entry(&self, name: &str) -> PathBuf {
        if self.is_dir {
            self.dest.join(name)
        } else {
            self.dest.clone()
        }
    }
}

/// The metadata of a file COPY/ADD makes itself (a download, a
/// here-document): `mode` through `--chmod`, owned by root or `--chown`.
fn new_file_meta(
    chown: Option<(u32, u32)>,
    chmod: Option<&str>,
    mode: u32,
    mtime: Option<(i64, i64)>,
) -> EntryMeta {
    let (uid, gid) = chown.unwrap_or((0, 0));
    let mode = match chmod {
        Some(spec) => chmod::apply(spec, mode, false).unwrap_or(mode),
        None => mode,
    };
    EntryMeta {
        mode,
        uid,
        gid,
        mtime,
    }
}

/// Copies the matched sources (files, directories' contents, ADD's local
/// archives unpacked) into `into`.
fn copy_matched(
    w: &mut DestWriter<'_>,
    step: &CopyStep,
    matched: &[Matched],
    into: &Destination,
    opts: Opts<'_>,
) -> Result<(), CopyError> {
    // A git checkout has no .dockerignore, and its own hard links.
    let no_ignore = DockerIgnore::default();
    let git_opts = Opts {
        ignore: &no_ignore,
        links: Default::default(),
        ..opts
    };
    let dest = &into.dest;
    for m in matched {
        let opts = if m.git { &git_opts } else { &opts };
        let st = fs::symlink_metadata(&m.host).map_err(io_at(&m.host))?;
        let out_base = if step.parents {
            dest.join(m.parents_rel.parent().unwrap_or(Path::new("")))
        } else {
            dest.clone()
        };
        if st.is_dir() {
            let target = if step.parents {
                dest.join(&m.parents_rel)
            } else {
                out_base
            };
            copy_dir(w, &m.host, &m.rel, &target, opts, true)?;
            continue;
        }
        if step.is_add && step.unpack != Some(false) && st.is_file() && archive::is_archive(&m.host)
        {
            let to = if into.is_dir { out_base } else { dest.clone() };
            archive::unpack(w, &m.host, &to, opts.chown).map_err(io_at(&m.host))?;
        } else {
            let target = if into.is_dir {
                out_base.join(&m.name)
            } else {
                dest.clone()
            };
            copy_entry(w, &m.host, &st, &target, opts)?;
        }
    }
    Ok(())
}

/// The destination as an absolute image path.
fn dest_path(dest: &str, workdir: &str) -> PathBuf {
    let joined = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("{}/{dest}", if workdir.is_empty() { "/" } else { workdir })
    };
    PathBuf::from(glob::clean(&joined))
}
