//! The image file being packed: written where nothing can mistake it for the
//! output, and put in place only when it is complete. A failing pack, a full
//! disk or `kill -9` leaves an existing image as it was and no partial file.
//!
//! The file is unnamed (`O_TMPFILE`) in the output's directory while it is
//! written, so a killed pack leaves nothing behind; when done it is linked
//! under a temporary name and renamed over the output. Where the file system
//! has no `O_TMPFILE`, it is a named `.d2v-pack-PID-…` file from the start;
//! every pack removes such files left by processes that no longer run.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, Mode, OFlags, CWD};

/// Prefix of temporary image names.
const PREFIX: &str = ".d2v-pack-";

/// An image file under construction for `target`.
#[derive(Debug)]
pub struct Output {
    file: File,
    target: PathBuf,
    /// The temporary name, when the file has had one from the start.
    named: Option<tempfile::TempPath>,
}

impl Output {
    /// Starts an image for `target` (absolute or relative), in its directory.
    pub fn create(target: &Path) -> io::Result<Output> {
        let target = std::path::absolute(target)?;
        let dir = target.parent().unwrap_or(Path::new("/")).to_path_buf();
        remove_stale(&dir);
        let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
        match rustix::fs::openat(CWD, &dir, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => Ok(Output {
                file: File::from(fd),
                target,
                named: None,
            }),
            // No O_TMPFILE here (FUSE, NFS, old kernels): a named file.
            Err(e)
                if [
                    rustix::io::Errno::OPNOTSUPP,
                    rustix::io::Errno::ISDIR,
                    rustix::io::Errno::INVAL,
                ]
                .contains(&e) =>
            {
                let tmp = tempfile::Builder::new()
                    .prefix(&format!("{PREFIX}{}-", std::process::id()))
                    .tempfile_in(&dir)?;
                let (file, path) = tmp.into_parts();
                Ok(Output {
                    file,
                    target,
                    named: Some(path),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The file to write the image into.
    pub fn file(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// The output path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Puts the finished image in place (mode 0644), replacing what was there.
    pub fn commit(self) -> io::Result<()> {
        self.file
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        let named = match self.named {
            Some(path) => path,
            None => {
                let dir = self.target.parent().unwrap_or(Path::new("/"));
                let name = dir.join(format!("{PREFIX}{}-{}", std::process::id(), unique()));
                let proc = format!("/proc/self/fd/{}", self.file.as_raw_fd());
                rustix::fs::linkat(CWD, proc.as_str(), CWD, &name, AtFlags::SYMLINK_FOLLOW)?;
                tempfile::TempPath::try_from_path(name)?
            }
        };
        named.persist(&self.target).map_err(|e| e.error)
    }
}

/// A name no other pack of this process uses.
fn unique() -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{seq}-{nanos:x}")
}

/// Removes temporary images in `dir` that nobody is writing any more: those
/// whose process has exited, and those of older d2v versions (no process id
/// in the name) untouched for ten minutes. Failures are ignored: this is
/// cleanup, and the pack itself does not depend on it.
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if is_stale(&name, &e.path()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn is_stale(name: &OsString, path: &Path) -> bool {
    let Some(rest) = name.as_bytes().strip_prefix(PREFIX.as_bytes()) else {
        return false;
    };
    let pid = rest
        .split(|&b| b == b'-')
        .next()
        .filter(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit))
        .and_then(|p| std::str::from_utf8(p).ok()?.parse::<u32>().ok());
    match pid {
        Some(pid) if rest.contains(&b'-') => !Path::new(&format!("/proc/{pid}")).exists(),
        _ => std::fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn an_image_replaces_the_output_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("img");
        std::fs::write(&target, b"good").unwrap();
        let out = Output::create(&target).unwrap();
        out.file().unwrap().write_all(b"half").unwrap();
        drop(out);
        assert_eq!(std::fs::read(&target).unwrap(), b"good");
        let out = Output::create(&target).unwrap();
        out.file().unwrap().write_all(b"new").unwrap();
        out.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["img"]);
    }

    #[test]
    fn leftovers_of_dead_packs_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // No process has pid 4000000 (above the kernel's pid_max limit).
        let dead = dir.path().join(".d2v-pack-4000000-xyz");
        let mine = dir
            .path()
            .join(format!(".d2v-pack-{}-abc", std::process::id()));
        let legacy_fresh = dir.path().join(".d2v-pack-Ab3xYz");
        for p in [&dead, &mine, &legacy_fresh] {
            std::fs::write(p, b"x").unwrap();
        }
        Output::create(&dir.path().join("img")).unwrap();
        assert!(!dead.exists());
        assert!(mine.exists() && legacy_fresh.exists());
    }
}
