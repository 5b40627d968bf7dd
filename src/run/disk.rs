//! The disk a run boots: never the packed image itself, but a copy-on-write
//! layer over it, so packs are reused, concurrent runs of one image are safe
//! and `--disk-size` can give room. QEMU gets a qcow2 overlay whose backing
//! file is the packed image (opened read-only); Firecracker, which reads only
//! raw files, a reflink or sparse copy (so does `--disk-size`, whose copy
//! `resize2fs` grows). Anonymous runs keep their disk in a
//! temporary directory; `--name NAME` keeps it in
//! `$D2V_HOME/d2v/containers/NAME/` for the next `d2v run --name NAME`.

use super::RunError;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Disk image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// A qcow2 overlay (QEMU).
    Qcow2,
    /// A raw copy (Firecracker).
    Raw,
}

impl DiskFormat {
    /// QEMU's `format=` name.
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }
}

/// Creates `out`, a qcow2 overlay of the raw `base` of `size` bytes
/// (`qemu-img create -b`), `None` for the base's size.
pub fn qcow2_overlay(base: &Path, out: &Path, size: Option<u64>) -> Result<(), RunError> {
    let base = base.canonicalize().map_err(|e| RunError::io(base, e))?;
    let mut c = Command::new("qemu-img");
    c.args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&base)
        .arg(out);
    if let Some(s) = size {
        c.arg(s.to_string());
    }
    tool(&mut c, "qemu-img create", out)
}

/// Runs a disk tool; a failure names it, the disk and the tool's stderr.
fn tool(c: &mut Command, what: &str, disk: &Path) -> Result<(), RunError> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|source| RunError::Vmm {
            program: what.split(' ').next().unwrap_or(what).into(),
            source,
        })?;
    if !out.status.success() {
        return Err(RunError::Disk(format!(
            "{what} failed for {}: {}",
            disk.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Copies `base` to `out` sharing blocks where the filesystem can (FICLONE),
/// else copying only its data extents (holes stay holes), then extends it to
/// `size` bytes when asked.
pub fn sparse_copy(base: &Path, out: &Path, size: Option<u64>) -> Result<(), RunError> {
    use nix::unistd::{lseek, Whence};
    let src = File::open(base).map_err(|e| RunError::io(base, e))?;
    let dst = File::create(out).map_err(|e| RunError::io(out, e))?;
    let len = src.metadata().map_err(|e| RunError::io(base, e))?.len();
    let cloned = rustix::fs::ioctl_ficlone(&dst, &src).is_ok();
    if !cloned {
        dst.set_len(len).map_err(|e| RunError::io(out, e))?;
        let mut pos: i64 = 0;
        while (pos as u64) < len {
            let data = match lseek(&src, pos, Whence::SeekData) {
                Ok(d) => d,
                Err(nix::errno::Errno::ENXIO) => break,
                Err(e) => return Err(RunError::io(base, e.into())),
            };
            let hole =
                lseek(&src, data, Whence::SeekHole).map_err(|e| RunError::io(base, e.into()))?;
            let mut off_in = data;
            let mut off_out = data;
            let mut left = (hole - data) as usize;
            while left > 0 {
                let n = nix::fcntl::copy_file_range(
                    &src,
                    Some(&mut off_in),
                    &dst,
                    Some(&mut off_out),
                    left,
                )
                .map_err(|e| RunError::io(out, e.into()))?;
                if n == 0 {
                    break;
                }
                left -= n;
            }
            pos = hole;
        }
    }
    if let Some(s) = size.filter(|&s| s > len) {
        dst.set_len(s).map_err(|e| RunError::io(out, e))?;
    }
    Ok(())
}

/// Grows the ext4 filesystem in `disk` (a raw file) to the file's size with
/// `resize2fs` (e2fsprogs).
pub fn grow_filesystem(disk: &Path) -> Result<(), RunError> {
    let prog = ["/sbin/resize2fs", "/usr/sbin/resize2fs"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("resize2fs");
    tool(Command::new(prog).arg("-f").arg(disk), "resize2fs", disk)
}

/// A named run's directory, locked while a VM uses it.
pub struct Container {
    /// `$D2V_HOME/d2v/containers/NAME`.
    pub dir: PathBuf,
    /// Whether it existed before this run (its disk is reused).
    pub existed: bool,
    _lock: Flock<File>,
}

/// Valid names: Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_name(name: &str) -> bool {
    let mut c = name.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && c.all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
}

impl Container {
    /// Opens (or creates) container `name` under `store` for `image`; an
    /// existing one must have been made from the same image.
    pub fn open(store: &Path, name: &str, image: &Path) -> Result<Container, RunError> {
        if !valid_name(name) {
            return Err(RunError::Container(format!(
                "invalid container name {name:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*"
            )));
        }
        let dir = store.join("d2v/containers").join(name);
        std::fs::create_dir_all(&dir).map_err(|e| RunError::io(&dir, e))?;
        let lock_path = dir.join("lock");
        let f = File::create(&lock_path).map_err(|e| RunError::io(&lock_path, e))?;
        let lock = Flock::lock(f, FlockArg::LockExclusiveNonblock)
            .map_err(|_| RunError::Container(format!("container {name} is already running")))?;
        let image = image.canonicalize().map_err(|e| RunError::io(image, e))?;
        let record = dir.join("image");
        let existed = dir.join("disk").exists();
        match std::fs::read(&record) {
            Ok(prev) if existed && prev != image.as_os_str().as_encoded_bytes() => {
                return Err(RunError::Container(format!(
                    "container {name} was made from {}, not {}; remove it with `d2v run --rm --name {name}` or pick another name",
                    String::from_utf8_lossy(&prev),
                    image.display()
                )))
            }
            _ => std::fs::write(&record, image.as_os_str().as_encoded_bytes())
                .map_err(|e| RunError::io(&record, e))?,
        }
        Ok(Container {
            dir,
            existed,
            _lock: lock,
        })
    }

    /// Removes the container (`--rm`).
    pub fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn names() {
        assert!(
            valid_name("web-1.a_b") && !valid_name("-x") && !valid_name("a/b") && !valid_name("")
        );
    }

    #[test]
    fn sparse_copy_keeps_data_and_holes_and_grows() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        let mut f = File::create(&base).unwrap();
        f.write_all(b"head").unwrap();
        f.seek(SeekFrom::Start(8 << 20)).unwrap();
        f.write_all(b"tail").unwrap();
        drop(f);
        let out = dir.path().join("copy");
        sparse_copy(&base, &out, Some(16 << 20)).unwrap();
        let data = std::fs::read(&out).unwrap();
        assert_eq!(data.len(), 16 << 20);
        assert_eq!(&data[..4], b"head");
        assert_eq!(&data[8 << 20..(8 << 20) + 4], b"tail");
        assert!(data[4..8 << 20].iter().all(|&b| b == 0));
        let blocks = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&out).unwrap());
        assert!(
            blocks * 512 < 4 << 20,
            "the copy is not sparse: {blocks} blocks"
        );
    }

    #[test]
    fn a_named_container_is_locked_and_tied_to_its_image() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.ext4"), dir.path().join("b.ext4"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        let c = Container::open(dir.path(), "web", &a).unwrap();
        assert!(!c.existed);
        let busy = Container::open(dir.path(), "web", &a).err().unwrap();
        assert!(busy.to_string().contains("already running"), "{busy}");
        std::fs::write(c.dir.join("disk"), b"").unwrap();
        drop(c);
        assert!(Container::open(dir.path(), "web", &a).unwrap().existed);
        let other = Container::open(dir.path(), "web", &b).err().unwrap();
        assert!(other.to_string().contains("was made from"), "{other}");
    }
}
