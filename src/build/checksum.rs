//! Content checksums of COPY/ADD sources for the step cache.
//!
//! BuildKit keys a COPY on what its sources hold, not on when they were touched:
//! the checksum covers each matched path (relative to the context), its type,
//! mode, owner, symlink target and file content — never mtimes — so touching a
//! file leaves the cache alone and editing one busts exactly the COPY that sees it.
//!
//! Sources are resolved exactly as the copy resolves them: the pattern is
//! cleaned as an absolute path (`../../x` is `x`), globs are expanded
//! directory by directory, the top-level source is opened with
//! `openat2(RESOLVE_IN_ROOT)` (a symlink to `/etc/shadow` is the context's
//! `etc/shadow`), and everything below it through directory fds without
//! following symlinks. Not a byte outside the context is read.

use super::dockerignore::{DockerIgnore, IgnoreError};
use super::glob;
use super::inroot::Root;
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags};
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
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

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> ChecksumError {
    let path = path.into();
    move |source| ChecksumError::Io { path, source }
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// `openat2` below the root fd: `..` and absolute symlinks stay inside.
fn open_in_root(root: &Root, rel: &str, flags: OFlags) -> io::Result<OwnedFd> {
    rustix::fs::openat2(
        root,
        rel,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(errno)
}

/// The sorted entry names of an open directory.
fn dir_names(fd: &OwnedFd) -> io::Result<Vec<OsString>> {
    let dup = rustix::io::dup(fd).map_err(errno)?;
    let mut names = Vec::new();
    for entry in Dir::read_from(dup).map_err(errno)? {
        let entry = entry.map_err(errno)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
    names.sort();
    Ok(names)
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
    let root = Root::open(context).map_err(io_err(context))?;
    let mut h = Sha256::new();
    for source in sources {
        h.update(b"source\0");
        h.update(source.as_bytes());
        h.update(b"\0");
        // As the copy: the pattern is cleaned as an absolute path in the root.
        let cleaned = glob::clean(&format!("/{source}"));
        let pattern = cleaned.trim_start_matches('/');
        let matched = if pattern.is_empty() {
            vec![".".to_string()]
        } else if glob::has_meta(pattern) {
            expand_glob(&root, pattern)?
        } else {
            vec![pattern.to_string()]
        };
        for rel in matched {
            hash_tree(&mut h, &root, &rel, &ignore)?;
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Paths in the root matching `pattern` element by element, as the copy
/// expands them (directories resolved in the root).
fn expand_glob(root: &Root, pattern: &str) -> Result<Vec<String>, ChecksumError> {
    let mut current = vec![String::new()];
    for part in pattern.split('/') {
        let mut next = Vec::new();
        for base in &current {
            let join = |n: &str| {
                if base.is_empty() {
                    n.to_string()
                } else {
                    format!("{base}/{n}")
                }
            };
            if !glob::has_meta(part) {
                let p = join(part);
                if open_in_root(root, &p, OFlags::PATH | OFlags::NOFOLLOW).is_ok() {
                    next.push(p);
                }
                continue;
            }
            let dir = if base.is_empty() { "." } else { base.as_str() };
            let Ok(fd) = open_in_root(root, dir, OFlags::RDONLY | OFlags::DIRECTORY) else {
                continue;
            };
            for name in dir_names(&fd).map_err(io_err(dir))? {
                let name = name.to_string_lossy();
                if glob::matches(part, &name)? {
                    next.push(join(&name));
                }
            }
        }
        current = next;
    }
    Ok(current)
}

/// One directory being walked: its fd, its path, its remaining entries.
struct Frame {
    fd: OwnedFd,
    rel: String,
    names: std::vec::IntoIter<OsString>,
}

/// Hashes `rel` (a top-level symlink followed inside the root) and, for a
/// directory, everything below it that is not ignored, without following
/// symlinks below the top.
fn hash_tree(
    h: &mut Sha256,
    root: &Root,
    rel: &str,
    ignore: &DockerIgnore,
) -> Result<(), ChecksumError> {
    let top = match open_in_root(root, rel, OFlags::PATH) {
        Ok(fd) => fd,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
            ) =>
        {
            return Ok(())
        }
        Err(e) => return Err(io_err(rel)(e)),
    };
    let st = rustix::fs::fstat(&top).map_err(|e| io_err(rel)(errno(e)))?;
    let kind = FileType::from_raw_mode(st.st_mode);
    record(h, rel, &st, kind);
    match kind {
        FileType::RegularFile => {
            let fd =
                open_in_root(root, rel, OFlags::RDONLY | OFlags::NONBLOCK).map_err(io_err(rel))?;
            hash_content(h, fd, rel)?;
        }
        FileType::Directory => {
            let fd =
                open_in_root(root, rel, OFlags::RDONLY | OFlags::DIRECTORY).map_err(io_err(rel))?;
            walk(h, fd, rel, ignore)?;
        }
        _ => {}
    }
    h.update(b"\n");
    Ok(())
}

/// Walks below an open directory, depth first in name order, with an
/// explicit stack (a deep tree cannot exhaust the thread's stack).
fn walk(
    h: &mut Sha256,
    fd: OwnedFd,
    rel: &str,
    ignore: &DockerIgnore,
) -> Result<(), ChecksumError> {
    let names = dir_names(&fd).map_err(io_err(rel))?;
    let mut stack = vec![Frame {
        fd,
        rel: rel.to_string(),
        names: names.into_iter(),
    }];
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.names.next() else {
            stack.pop();
            continue;
        };
        let child = if frame.rel == "." {
            name.to_string_lossy().into_owned()
        } else {
            format!("{}/{}", frame.rel, name.to_string_lossy())
        };
        let excluded = ignore.is_excluded(&child);
        if excluded && !ignore.has_exceptions() {
            continue;
        }
        let dir = frame.fd.as_fd();
        let st = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(&child)(errno(e)))?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if !excluded {
            record(h, &child, &st, kind);
        }
        let open = |flags: OFlags| {
            rustix::fs::openat(
                dir,
                &name,
                flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err(&child)(errno(e)))
        };
        match kind {
            FileType::Symlink if !excluded => {
                let target = rustix::fs::readlinkat(dir, &name, Vec::new())
                    .map_err(|e| io_err(&child)(errno(e)))?;
                h.update(target.as_bytes());
            }
            FileType::RegularFile if !excluded => {
                hash_content(h, open(OFlags::RDONLY | OFlags::NONBLOCK)?, &child)?;
            }
            FileType::Directory => {
                let sub = open(OFlags::RDONLY | OFlags::DIRECTORY)?;
                let names = dir_names(&sub).map_err(io_err(&child))?;
                if !excluded {
                    h.update(b"\n");
                }
                stack.push(Frame {
                    fd: sub,
                    rel: child,
                    names: names.into_iter(),
                });
                continue;
            }
            _ => {}
        }
        if !excluded {
            h.update(b"\n");
        }
    }
    Ok(())
}

fn record(h: &mut Sha256, rel: &str, st: &rustix::fs::Stat, kind: FileType) {
    h.update(rel.as_bytes());
    let mode = if kind == FileType::Symlink {
        0o777
    } else {
        st.st_mode & 0o7777
    };
    h.update(format!("\0{kind:?}:{mode:o}:{}:{}\0", st.st_uid, st.st_gid).as_bytes());
}

fn hash_content(h: &mut Sha256, fd: OwnedFd, rel: &str) -> Result<(), ChecksumError> {
    let mut f = std::fs::File::from(fd);
    let mut fh = Sha256::new();
    io::copy(&mut f, &mut fh).map_err(io_err(rel))?;
    h.update(fh.finalize());
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

    /// A context with files outside it, reachable by `..`, absolute
    /// symlinks and relative symlinks: (tempdir, context, outside file).
    fn escape_setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let secret = outside.join("shadow");
        std::fs::write(&secret, "host secret 1").unwrap();
        std::os::unix::fs::symlink(&secret, ctx.join("link")).unwrap();
        std::os::unix::fs::symlink(&outside, ctx.join("absdir")).unwrap();
        std::os::unix::fs::symlink("../outside", ctx.join("reldir")).unwrap();
        (dir, ctx, secret)
    }

    #[test]
    fn symlinks_and_dotdot_never_reach_host_files() {
        let (_dir, ctx, secret) = escape_setup();
        let sources = [
            "link",
            "../outside",
            "../../../../../../outside/shadow",
            "absdir/shadow",
            "reldir",
            "reldir/shadow",
            "*dir",
            "*/shadow",
        ];
        let before: Vec<String> = sources.iter().map(|s| sum(&ctx, &[s])).collect();
        // Were any host byte read, a change outside would change a checksum.
        std::fs::write(&secret, "host secret 2, longer").unwrap();
        let after: Vec<String> = sources.iter().map(|s| sum(&ctx, &[s])).collect();
        for ((s, b), a) in sources.iter().zip(&before).zip(&after) {
            assert_eq!(
                b, a,
                "the checksum of {s:?} read a file outside the context"
            );
        }
        // The context's own files still count, through a symlink inside it.
        std::fs::create_dir_all(ctx.join("outside")).unwrap();
        std::fs::write(ctx.join("outside/shadow"), "in the context").unwrap();
        assert_ne!(sum(&ctx, &["reldir/shadow"]), after[5]);
    }

    #[test]
    fn a_dotdot_source_is_the_contexts_own_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), "1").unwrap();
        let x = sum(dir.path(), &["../../x"]);
        std::fs::write(dir.path().join("x"), "changed").unwrap();
        assert_ne!(
            sum(dir.path(), &["../../x"]),
            x,
            "../../x is the context's x"
        );
        let a = sum(dir.path(), &["../../../../usr"]);
        std::fs::write(dir.path().join("x"), "2").unwrap();
        assert_eq!(sum(dir.path(), &["../../../../usr"]), a);
    }

    #[test]
    fn a_dockerignore_symlink_stays_in_the_context() {
        let (_dir, ctx, secret) = escape_setup();
        std::fs::write(&secret, "*\n").unwrap();
        std::os::unix::fs::symlink(&secret, ctx.join(".dockerignore")).unwrap();
        std::fs::write(ctx.join("a"), "a").unwrap();
        // The host file would ignore everything; resolved in the root it is absent.
        let ig = DockerIgnore::load(&ctx).unwrap();
        assert!(!ig.is_excluded("a"));
    }
}
