//! Matching COPY/ADD sources: patterns globbed inside their root (a
//! top-level symlink followed, in-root only), `.dockerignore` and `--exclude`
//! applied, ADD's git sources fetched and URLs set aside.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::{io_at, CopyError};
use crate::build::dockerignore::DockerIgnore;
use crate::build::git;
use crate::build::glob;
use crate::build::inroot::Root;
use crate::build::url;
use crate::dockerfile::CopyStep;

/// What a step's sources matched.
pub(super) struct Found<'s> {
    /// Files and directories, in source order.
    pub matched: Vec<Matched>,
    /// ADD's URLs, to download.
    pub urls: Vec<&'s String>,
    /// Git checkouts, which live until the copy is done.
    pub checkouts: Vec<tempfile::TempDir>,
    /// Here-documents of the step.
    heredocs: usize,
}

impl Found<'_> {
    /// How many things are copied: more than one needs a directory destination.
    pub fn count(&self) -> usize {
        self.matched.len() + self.urls.len() + self.heredocs
    }
}

/// Matches every source of `step` in `src`.
pub(super) fn match_all<'s>(
    step: &'s CopyStep,
    src: &Root,
    ignore: &DockerIgnore,
    exclude: &DockerIgnore,
) -> Result<Found<'s>, CopyError> {
    let mut found = Found {
        matched: Vec::new(),
        urls: Vec::new(),
        checkouts: Vec::new(),
        heredocs: step.heredocs.len(),
    };
    for pattern in &step.sources {
        if let Some(r) = git::parse(pattern) {
            if !step.is_add {
                return Err(CopyError::Unsupported(format!(
                    "COPY of a git repository ({pattern}); use ADD"
                )));
            }
            let (matched, scratch) = git_source(&r, step, exclude)?;
            found.matched.extend(matched);
            found.checkouts.push(scratch);
            continue;
        }
        if url::is_url(pattern) {
            if !step.is_add {
                return Err(CopyError::Unsupported(format!(
                    "COPY of a URL ({pattern}); use ADD"
                )));
            }
            found.urls.push(pattern);
            continue;
        }
        let matched = match_sources(src, pattern, ignore, exclude)?;
        if matched.is_empty() && !glob::has_meta(pattern) {
            return Err(CopyError::NotFound(pattern.clone()));
        }
        found.matched.extend(matched);
    }
    Ok(found)
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

/// One matched source.
#[derive(Debug)]
pub(super) struct Matched {
    /// Host path of the (top-level-symlink-resolved) source.
    pub host: PathBuf,
    /// Path relative to the source root, as matched (for ignore rules).
    pub rel: String,
    /// The name it is copied under (the matched name, not a link target's).
    pub name: String,
    /// What `--parents` keeps (from a `/./` pivot when present).
    pub parents_rel: PathBuf,
    /// A git checkout (no `.dockerignore` applies).
    pub git: bool,
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
