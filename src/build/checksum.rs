//! Content checksums of COPY/ADD sources for the step cache.
//!
//! BuildKit keys a COPY on what its sources hold, not on when they were touched:
//! the checksum covers each matched path (relative to the context), its type,
//! mode, owner, symlink target and file content — never mtimes — so touching a
//! file leaves the cache alone and editing one busts exactly the COPY that sees it.

use super::dockerignore::{DockerIgnore, IgnoreError};
use super::glob;
use sha2::{Digest, Sha256};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Errors from checksumming sources.
#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    /// The context's `.dockerignore` is malformed.
    #[error(transparent)]
    Ignore(#[from] IgnoreError),
    /// A source pattern is malformed.
    #[error(transparent)]
    Pattern(#[from] glob::BadPattern),
    /// Reading the context failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ChecksumError + '_ {
    move |source| ChecksumError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A hex checksum of what `sources` (COPY's unglobbed source patterns, relative
/// to `context`) match, honouring `.dockerignore`. Equal inputs give equal
/// checksums; a source that matches nothing contributes its pattern only (the
/// copy itself reports the error).
pub fn sources_checksum(
    context: &Path,
    sources: &[String],
    dockerfile_in_context: Option<&str>,
) -> Result<String, ChecksumError> {
    let mut ignore = DockerIgnore::load(context)?;
    if let Some(df) = dockerfile_in_context {
        ignore = ignore.keep_build_files(df)?;
    }
    let mut h = Sha256::new();
    for source in sources {
        h.update(b"source\0");
        h.update(source.as_bytes());
        h.update(b"\0");
        let pattern = glob::clean(source.trim_start_matches('/'));
        let mut matched = Vec::new();
        if glob::has_meta(&pattern) {
            let depth = pattern.split('/').count();
            for entry in walkdir::WalkDir::new(context)
                .min_depth(depth)
                .max_depth(depth)
                .sort_by_file_name()
            {
                let entry = entry.map_err(|e| ChecksumError::Io {
                    path: context.to_path_buf(),
                    source: e.into(),
                })?;
                let rel = rel_str(context, entry.path());
                if glob::matches(&pattern, &rel)? {
                    matched.push(rel);
                }
            }
        } else if pattern == "." || pattern.is_empty() {
            matched.push(".".to_string());
        } else {
            matched.push(pattern);
        }
        for rel in matched {
            hash_tree(&mut h, context, &rel, &ignore)?;
        }
    }
    Ok(hex::encode(h.finalize()))
}

fn rel_str(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    if rel.as_os_str().is_empty() {
        ".".into()
    } else {
        rel.to_string_lossy().into_owned()
    }
}

/// Hashes `rel` and, for a directory, everything below it that is not ignored.
fn hash_tree(
    h: &mut Sha256,
    context: &Path,
    rel: &str,
    ignore: &DockerIgnore,
) -> Result<(), ChecksumError> {
    let top = if rel == "." {
        context.to_path_buf()
    } else {
        context.join(rel)
    };
    if std::fs::symlink_metadata(&top).is_err() {
        return Ok(());
    }
    // A top-level source symlink is followed (as COPY does); those below are not.
    let walker = walkdir::WalkDir::new(&top)
        .follow_root_links(true)
        .follow_links(false)
        .sort_by_file_name();
    for entry in walker {
        let entry = entry.map_err(|e| ChecksumError::Io {
            path: top.clone(),
            source: e.into(),
        })?;
        let path = entry.path();
        let rel = rel_str(context, path);
        if rel != "." && ignore.is_excluded(&rel) {
            continue;
        }
        let meta = if path == top {
            std::fs::metadata(path)
        } else {
            std::fs::symlink_metadata(path)
        }
        .map_err(io_err(path))?;
        h.update(rel.as_bytes());
        h.update(format!("\0{:o}:{}:{}\0", meta.mode(), meta.uid(), meta.gid()).as_bytes());
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = std::fs::read_link(path).map_err(io_err(path))?;
            h.update(target.as_os_str().as_encoded_bytes());
        } else if ft.is_file() {
            let mut f = std::fs::File::open(path).map_err(io_err(path))?;
            let mut fh = Sha256::new();
            io::copy(&mut f, &mut fh).map_err(io_err(path))?;
            h.update(fh.finalize());
        }
        h.update(b"\n");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(dir: &Path, sources: &[&str]) -> String {
        let s: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        sources_checksum(dir, &s, Some("Dockerfile")).unwrap()
    }

    #[test]
    fn content_and_modes_count_but_mtimes_do_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "one").unwrap();
        std::fs::write(dir.path().join("b.txt"), "two").unwrap();
        let first = sum(dir.path(), &["*.txt"]);
        let f = std::fs::File::options()
            .append(true)
            .open(dir.path().join("a.txt"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(
            sum(dir.path(), &["*.txt"]),
            first,
            "mtime changed the checksum"
        );
        std::fs::write(dir.path().join("a.txt"), "uno").unwrap();
        let edited = sum(dir.path(), &["*.txt"]);
        assert_ne!(edited, first);
        assert_eq!(sum(dir.path(), &["b.txt"]), sum(dir.path(), &["b.txt"]));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("b.txt"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert_ne!(
            sum(dir.path(), &["*.txt"]),
            edited,
            "a mode change is a change"
        );
    }

    #[test]
    fn ignored_files_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/main.c"), "int main;").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "src/*.o\n").unwrap();
        let before = sum(dir.path(), &["."]);
        std::fs::write(dir.path().join("src/main.o"), "junk").unwrap();
        assert_eq!(sum(dir.path(), &["."]), before);
        std::fs::write(dir.path().join("src/util.c"), "int util;").unwrap();
        assert_ne!(sum(dir.path(), &["."]), before);
    }
}
