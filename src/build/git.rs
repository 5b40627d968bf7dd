//! `ADD <git URL>[#ref[:subdir]]`: a git repository as a build source, as
//! BuildKit reads it (`dfgitutil.ParseGitRef`): `git://`, `ssh://`,
//! `git@host:path`, and `http(s)://` URLs whose path ends in `.git`; the
//! fragment names a branch, tag or commit and a subdirectory.
//!
//! The repository is fetched with the `git` command (shallow where the ref
//! allows it, submodules included), into a scratch directory, with the
//! host's git configuration ignored and only network transports allowed (no
//! `file://`, no `ext::`). `--checksum` must match the commit;
//! `--keep-git-dir` keeps `.git`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors from fetching a git source.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The source is not a git URL d2v accepts.
    #[error("{0}: not a git URL (git://, ssh://, git@host:path, or http(s)://…/x.git)")]
    NotGit(String),
    /// `git` failed.
    #[error("git {what} of {url} failed: {stderr}")]
    Git {
        /// What was being done.
        what: String,
        /// The repository.
        url: String,
        /// git's message.
        stderr: String,
    },
    /// `--checksum` does not match the commit.
    #[error("{url}: expected checksum to match {expected}, got {actual}")]
    Checksum {
        /// The repository.
        url: String,
        /// `--checksum`.
        expected: String,
        /// The commit fetched.
        actual: String,
    },
    /// The subdirectory is not in the repository.
    #[error("{url}: subdirectory {subdir:?} not found")]
    Subdir {
        /// The repository.
        url: String,
        /// The fragment's subdirectory.
        subdir: String,
    },
    /// Running git or using the scratch dir failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A parsed git source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef {
    /// The remote, fragment removed.
    pub remote: String,
    /// Branch, tag or commit (empty: the remote's HEAD).
    pub reference: String,
    /// Subdirectory to take (empty: the whole tree).
    pub subdir: String,
}

/// Whether `src` names a git repository (BuildKit's rules).
pub fn is_git(src: &str) -> bool {
    parse(src).is_some()
}

/// Parses `URL[#ref[:subdir]]`, or `None` when it is not a git URL.
pub fn parse(src: &str) -> Option<GitRef> {
    let (remote, fragment) = match src.split_once('#') {
        Some((r, f)) => (r, f),
        None => (src, ""),
    };
    let scheme_ok = if let Some(rest) = remote.strip_prefix("git@") {
        rest.contains(':')
    } else if remote.starts_with("git://") || remote.starts_with("ssh://") {
        true
    } else if remote.starts_with("https://") || remote.starts_with("http://") {
        remote.ends_with(".git")
    } else {
        false
    };
    if !scheme_ok || remote.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (reference, subdir) = match fragment.split_once(':') {
        Some((r, s)) => (r, s),
        None => (fragment, ""),
    };
    Some(GitRef {
        remote: remote.to_string(),
        reference: reference.to_string(),
        subdir: subdir.to_string(),
    })
}

fn is_commit(r: &str) -> bool {
    (r.len() == 40 || r.len() == 64) && r.chars().all(|c| c.is_ascii_hexdigit())
}

/// A `git` command isolated from the host's configuration and credentials.
fn git(dir: &Path, home: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", "http:https:git:ssh")
        .args([
            "-c",
            "advice.detachedHead=false",
            "-c",
            "init.defaultBranch=main",
        ]);
    c
}

fn run(mut cmd: Command, what: &str, url: &str) -> Result<String, GitError> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(GitError::Git {
            what: what.to_string(),
            url: url.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit `r.reference` names on the remote (for the cache key), without
/// fetching the tree: `git ls-remote`, or the reference itself when it is a commit.
pub fn resolve(r: &GitRef, scratch: &Path) -> Result<String, GitError> {
    if is_commit(&r.reference) {
        return Ok(r.reference.to_lowercase());
    }
    let wanted = if r.reference.is_empty() {
        "HEAD".to_string()
    } else {
        r.reference.clone()
    };
    let mut cmd = git(scratch, scratch);
    cmd.args(["ls-remote", "--", &r.remote, &wanted]);
    let listing = run(cmd, "ls-remote", &r.remote)?;
    // Prefer an exact HEAD, then a branch, then a tag (peeled `^{}` first).
    let mut best: Option<(u8, String)> = None;
    for line in listing.lines() {
        let Some((sha, name)) = line.split_once('\t') else {
            continue;
        };
        let rank = if name == wanted {
            0
        } else if name == format!("refs/heads/{wanted}") {
            1
        } else if name == format!("refs/tags/{wanted}^{{}}") {
            2
        } else if name == format!("refs/tags/{wanted}") {
            3
        } else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| rank < *b) {
            best = Some((rank, sha.to_string()));
        }
    }
    best.map(|(_, sha)| sha).ok_or_else(|| GitError::Git {
        what: "ls-remote".into(),
        url: r.remote.clone(),
        stderr: format!("no ref {wanted:?}"),
    })
}

/// A checked-out repository.
#[derive(Debug)]
pub struct Checkout {
    /// The work tree (with `.git` only when kept).
    pub dir: PathBuf,
    /// The commit checked out.
    pub commit: String,
}

/// Fetches `r` into `scratch/repo` and checks it out; `.git` is removed
/// unless `keep_git_dir`; `checksum` (a commit, or a prefix of one) must match.
pub fn fetch(
    r: &GitRef,
    scratch: &Path,
    keep_git_dir: bool,
    checksum: Option<&str>,
) -> Result<Checkout, GitError> {
    let dir = scratch.join("repo");
    std::fs::create_dir_all(&dir)?;
    let url = r.remote.as_str();
    let step = |args: &[&str], what: &str| {
        let mut cmd = git(&dir, scratch);
        cmd.args(args);
        run(cmd, what, url)
    };
    step(&["init", "-q"], "init")?;
    step(&["remote", "add", "origin", url], "remote add")?;
    let reference = if r.reference.is_empty() {
        "HEAD"
    } else {
        r.reference.as_str()
    };
    if is_commit(reference) {
        // Servers may refuse a commit by id in a shallow fetch: take it all.
        step(&["fetch", "-q", "--tags", "origin"], "fetch")?;
        step(&["checkout", "-q", "--detach", reference], "checkout")?;
    } else {
        step(
            &["fetch", "-q", "--depth=1", "--no-tags", "origin", reference],
            "fetch",
        )?;
        step(&["checkout", "-q", "--detach", "FETCH_HEAD"], "checkout")?;
    }
    step(
        &[
            "submodule",
            "update",
            "-q",
            "--init",
            "--recursive",
            "--depth=1",
        ],
        "submodule update",
    )?;
    let commit = step(&["rev-parse", "HEAD"], "rev-parse")?;
    if let Some(expected) = checksum.filter(|c| !c.is_empty()) {
        let e = expected.to_lowercase();
        if e.len() < 7 || !commit.starts_with(&e) {
            return Err(GitError::Checksum {
                url: url.to_string(),
                expected: expected.to_string(),
                actual: commit,
            });
        }
    }
    if !keep_git_dir {
        std::fs::remove_dir_all(dir.join(".git"))?;
    }
    Ok(Checkout { dir, commit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_git_urls_like_buildkit() {
        let r = parse("https://github.com/moby/buildkit.git#v0.10.1:docs").unwrap();
        assert_eq!(r.remote, "https://github.com/moby/buildkit.git");
        assert_eq!(r.reference, "v0.10.1");
        assert_eq!(r.subdir, "docs");
        assert!(is_git("git@github.com:moby/buildkit.git"));
        assert!(is_git("git://127.0.0.1:9418/repo.git#main"));
        assert!(is_git("ssh://git@host/x"));
        assert!(!is_git("https://example.com/archive.tar.gz"));
        assert!(!is_git("file:///etc/repo.git"));
        assert!(!is_git("ext::sh -c touch% /tmp/pwned"));
        assert!(!is_git("./local.git"));
    }
}
