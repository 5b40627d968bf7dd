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

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
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
    let mode_of = |mode: u32, is_dir: bool| match chmod {
        Some(spec) => chmod::apply(spec, mode, is_dir).unwrap_or(mode),
        None => mode,
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
    let mut matched: Vec<Matched> = Vec::new();
    let mut urls: Vec<&String> = Vec::new();
    // Git checkouts live until the copy is done.
    let mut checkouts: Vec<tempfile::TempDir> = Vec::new();
    for pattern in &step.sources {
        if let Some(r) = git::parse(pattern) {
            if !step.is_add {
                return Err(CopyError::Unsupported(format!(
                    "COPY of a git repository ({pattern}); use ADD"
                )));
            }
            let (found, scratch) = git_source(&r, step, &exclude)?;
            matched.extend(found);
            checkouts.push(scratch);
            continue;
        }
        if url::is_url(pattern) {
            if !step.is_add {
                return Err(CopyError::Unsupported(format!(
                    "COPY of a URL ({pattern}); use ADD"
                )));
            }
            urls.push(pattern);
            continue;
        }
        let found = match_sources(&src, pattern, &ignore, &exclude)?;
        if found.is_empty() && !glob::has_meta(pattern) {
            return Err(CopyError::NotFound(pattern.clone()));
        }
        matched.extend(found);
    }

    let dest = dest_path(&step.dest, &req.workdir);
    let total = matched.len() + step.heredocs.len() + urls.len();
    let mut w = DestWriter::new(&root);
    // Docker: new files and directories are 0:0 "unless the optional --chown flag
    // specifies" an owner, which then applies to the directories COPY creates too.
    let (new_uid, new_gid) = chown.unwrap_or((0, 0));
    w.set_parent_owner(new_uid, new_gid);
    let explicit_dir = step.dest.ends_with('/')
        || step.dest.ends_with("/.")
        || step.dest == "."
        || w.is_dir(&dest);
    let several = total > 1;
    if several && !explicit_dir {
        return Err(CopyError::DestNotDir);
    }
    let dest_is_dir = explicit_dir || step.parents;
    let opts = Opts {
        chown,
        chmod,
        keep_owner: !req.from_context,
        ignore: &ignore,
        exclude: &exclude,
        links: Default::default(),
    };
    if dest_is_dir && !w.is_dir(&dest) {
        w.dir(
            &dest,
            EntryMeta {
                mode: 0o755,
                uid: new_uid,
                gid: new_gid,
                mtime: None,
            },
        )
        .map_err(io_at(&dest))?;
    }

    let no_ignore = DockerIgnore::default();
    let git_opts = Opts {
        ignore: &no_ignore,
        links: Default::default(),
        ..opts
    };
    for m in &matched {
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
            copy_dir(&mut w, &m.host, &m.rel, &target, opts, true)?;
        } else {
            let target = if dest_is_dir {
                out_base.join(&m.name)
            } else {
                dest.clone()
            };
            if step.is_add
                && step.unpack != Some(false)
                && st.is_file()
                && archive::is_archive(&m.host)
            {
                let into = if dest_is_dir { out_base } else { dest.clone() };
                archive::unpack(&mut w, &m.host, &into, chown).map_err(io_at(&m.host))?;
            } else {
                copy_entry(&mut w, &m.host, &st, &target, opts)?;
            }
        }
    }
    for url in urls {
        let mut dl = url::fetch(url, step.checksum.as_deref())?;
        let target = if dest_is_dir {
            dest.join(&dl.name)
        } else {
            dest.clone()
        };
        let (uid, gid) = chown.unwrap_or((0, 0));
        // Docker gives downloaded files mode 0600.
        let meta = EntryMeta {
            mode: mode_of(0o600, false),
            uid,
            gid,
            mtime: dl.mtime.map(|s| (s, 0)),
        };
        w.file(&target, meta, &mut dl.file, &[])
            .map_err(io_at(&target))?;
    }
    for doc in &step.heredocs {
        let target = if dest_is_dir {
            dest.join(&doc.name)
        } else {
            dest.clone()
        };
        let (uid, gid) = chown.unwrap_or((0, 0));
        let meta = EntryMeta {
            mode: mode_of(0o644, false),
            uid,
            gid,
            mtime: None,
        };
        w.file(&target, meta, &mut doc.content.as_bytes(), &[])
            .map_err(io_at(&target))?;
    }
    w.finish().map_err(io_at(merged))
}

/// Fetches an ADD git source into a scratch dir (kept alive by the caller
/// until the copy is done) and matches its subdirectory inside the checkout.
fn git_source(
    r: &git::GitRef,
    step: &CopyStep,
    exclude: &DockerIgnore,
) -> Result<(Vec<Matched>, tempfile::TempDir), CopyError> {
    let scratch = tempfile::tempdir().map_err(io_at("scratch"))?;
    let checkout = git::fetch(
        r,
        scratch.path(),
        step.keep_git_dir,
        step.checksum.as_deref(),
    )?;
    let tree = Root::open(&checkout.dir).map_err(io_at(&checkout.dir))?;
    let mut found = match_sources(&tree, &r.subdir, &DockerIgnore::default(), exclude)?;
    if found.is_empty() {
        return Err(git::GitError::Subdir {
            url: r.remote.clone(),
            subdir: r.subdir.clone(),
        }
        .into());
    }
    for m in &mut found {
        m.git = true;
    }
    Ok((found, scratch))
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

struct Opts<'a> {
    chown: Option<(u32, u32)>,
    /// `--chmod`, octal or symbolic.
    chmod: Option<&'a str>,
    /// Keep source owners (sources from a rootfs, not the context).
    keep_owner: bool,
    ignore: &'a DockerIgnore,
    exclude: &'a DockerIgnore,
    /// (dev, ino) of multiply-linked files already copied → where they went,
    /// so hard links stay hard links, as in BuildKit.
    links: std::cell::RefCell<std::collections::HashMap<(u64, u64), PathBuf>>,
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

/// One matched source.
#[derive(Debug)]
struct Matched {
    /// Host path of the (top-level-symlink-resolved) source.
    host: PathBuf,
    /// Path relative to the source root, as matched (for ignore rules).
    rel: String,
    /// The name it is copied under (the matched name, not a link target's).
    name: String,
    /// What `--parents` keeps (from a `/./` pivot when present).
    parents_rel: PathBuf,
    /// A git checkout (no `.dockerignore` applies).
    git: bool,
}

/// Match one source pattern in `src`.
fn match_sources(
    src: &Root,
    pattern: &str,
    ignore: &DockerIgnore,
    exclude: &DockerIgnore,
) -> Result<Vec<Matched>, CopyError> {
    let pivot = pattern.find("/./").map(|i| glob::clean(&pattern[..i]));
    let cleaned = glob::clean(&format!("/{pattern}"));
    let rel_pattern = cleaned.trim_start_matches('/').to_string();
    let rels: Vec<String> = if rel_pattern.is_empty() {
        vec![String::new()]
    } else if glob::has_meta(&rel_pattern) {
        expand_glob(src, &rel_pattern)?
    } else {
        vec![rel_pattern.clone()]
    };
    let mut out = Vec::new();
    for rel in rels {
        let rel_for_rules = if rel.is_empty() {
            ".".to_string()
        } else {
            rel.clone()
        };
        if !rel.is_empty() && exclude.is_excluded(&rel) {
            continue;
        }
        // Follow a top-level symlink, inside the root only.
        let fd = match src.open_at(Path::new(&rel_for_rules), libc::O_PATH, 0) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(io_at(&rel_for_rules)(e)),
        };
        let host =
            fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(io_at(&rel))?;
        if !host.starts_with(src.path())
            && fs::canonicalize(src.path())
                .map(|p| !host.starts_with(p))
                .unwrap_or(true)
        {
            return Err(CopyError::NotFound(rel));
        }
        // What .dockerignore leaves out is not in the context at all, except
        // directories holding `!` exceptions.
        if !rel.is_empty()
            && ignore.is_excluded(&rel)
            && !(ignore.has_exceptions() && host.is_dir())
        {
            continue;
        }
        let name = Path::new(&rel)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parents_rel = match &pivot {
            Some(p) if p != "." => PathBuf::from(&rel)
                .strip_prefix(p.trim_start_matches('/'))
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| PathBuf::from(&rel)),
            _ => PathBuf::from(&rel),
        };
        out.push(Matched {
            host,
            rel: rel_for_rules,
            name,
            parents_rel,
            git: false,
        });
    }
    Ok(out)
}

/// All paths in `src` matching `pattern` element by element (Go
/// `filepath.Match` per element; directories followed in-root).
fn expand_glob(src: &Root, pattern: &str) -> Result<Vec<String>, CopyError> {
    let mut current = vec![String::new()];
    for part in pattern.split('/') {
        let mut next = Vec::new();
        for base in &current {
            if !glob::has_meta(part) {
                let p = if base.is_empty() {
                    part.to_string()
                } else {
                    format!("{base}/{part}")
                };
                if src.stat(Path::new(&p), false).is_ok() {
                    next.push(p);
                }
                continue;
            }
            let dir = if base.is_empty() { "." } else { base.as_str() };
            let Ok(fd) = src.open_at(Path::new(dir), libc::O_RDONLY | libc::O_DIRECTORY, 0) else {
                continue;
            };
            let host =
                fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(io_at(dir))?;
            let mut names: Vec<String> = fs::read_dir(&host)
                .map_err(io_at(&host))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for n in names {
                if glob::matches(part, &n).map_err(|_| CopyError::Pattern(pattern.to_string()))? {
                    next.push(if base.is_empty() {
                        n
                    } else {
                        format!("{base}/{n}")
                    });
                }
            }
        }
        current = next;
    }
    Ok(current)
}

/// Copy the contents of the directory `host` (source-relative `rel`) into the
/// image directory `target`. Returns whether anything was written.
fn copy_dir(
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
fn copy_entry(
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
        let xattrs: Vec<(String, Vec<u8>)> = super::layer::read_xattrs(host)
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
