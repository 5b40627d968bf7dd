//! ADD's local archives: a tar, optionally gzip-, zstd-, bzip2- or
//! xz-compressed (told by content, not name), read by the same `d2v-tar`
//! reader as layers and unpacked through [`DestWriter`], so every write stays
//! in the rootfs.
//!
//! Paths are taken as Docker's chrooted unpack takes them
//! ([`PathRule::Clean`]): a leading `/` is the destination, `..` is resolved
//! lexically and stops there. An entry whose parent leads outside the destination
//! through a symlink (`lnk -> /x`, then `lnk/f`), and a hard link whose
//! target does, are refused, as Docker refuses them; an error names the
//! entry.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use d2v_tar::{Kind, PathRule, Reader};

use super::dest::{DestWriter, EntryMeta};
use super::inroot::Root;
use crate::compression;

/// Whether `path` holds a tar archive (possibly compressed) ADD would unpack.
pub fn is_archive(path: &Path) -> bool {
    let Ok(Ok((_, mut r))) = File::open(path).map(compression::decoder) else {
        return false;
    };
    let mut block = [0u8; d2v_tar::header::BLOCK];
    r.read_exact(&mut block).is_ok() && d2v_tar::header::looks_like_tar(&block)
}

/// Unpack the archive at `path` into the directory `dest` (an image path).
/// Owners come from the archive unless `chown` is given.
pub fn unpack(
    w: &mut DestWriter<'_>,
    path: &Path,
    dest: &Path,
    chown: Option<(u32, u32)>,
) -> io::Result<()> {
    let (_, r) = compression::decoder(File::open(path)?)?;
    let mut tar = Reader::from_read(r).with_rule(PathRule::Clean);
    let mut inside = Confined::new(dest);
    while let Some(e) = tar.next_entry().map_err(invalid)? {
        if e.path.is_empty() {
            continue; // the archive's root is the destination itself
        }
        let named = |err: io::Error| {
            io::Error::new(
                err.kind(),
                format!("entry {:?}: {err}", String::from_utf8_lossy(&e.path)),
            )
        };
        inside.check(w.root(), &e.path).map_err(named)?;
        let target = dest.join(OsStr::from_bytes(&e.path));
        let (uid, gid) = chown.unwrap_or((e.uid, e.gid));
        let meta = EntryMeta {
            mode: e.mode,
            uid,
            gid,
            mtime: Some((e.mtime.sec, i64::from(e.mtime.nsec))),
        };
        let done = match e.kind {
            Kind::Dir => w.dir(&target, meta),
            Kind::File => {
                let xattrs: Vec<(String, Vec<u8>)> = e
                    .xattrs
                    .iter()
                    .filter_map(|(k, v)| Some((String::from_utf8(k.clone()).ok()?, v.clone())))
                    .collect();
                w.file(&target, meta, &mut tar.contents(&e), &xattrs)
            }
            Kind::Symlink => w.symlink(&target, Path::new(OsStr::from_bytes(&e.link)), meta),
            Kind::HardLink => inside.check(w.root(), &e.link).and_then(|()| {
                w.hardlink(&target, &dest.join(OsStr::from_bytes(&e.link)))
                    .map_err(|err| {
                        let to = String::from_utf8_lossy(&e.link);
                        io::Error::new(err.kind(), format!("hard link to {to:?}: {err}"))
                    })
            }),
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo => {
                let t = match e.kind {
                    Kind::CharDevice => libc::S_IFCHR,
                    Kind::BlockDevice => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                w.special(&target, t, libc::makedev(e.dev.0, e.dev.1), meta)
            }
        };
        done.map_err(named)?;
    }
    Ok(())
}

fn invalid(e: d2v_tar::TarError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Checks that an entry's parent directories, as they exist in the rootfs
/// now, lead to places inside the destination.
struct Confined<'d> {
    dest: &'d Path,
    /// The destination's real host path, once it exists.
    real: Option<PathBuf>,
    /// The parent checked last (entries come grouped by directory).
    last_ok: Vec<u8>,
}

impl<'d> Confined<'d> {
    fn new(dest: &'d Path) -> Self {
        Confined {
            dest,
            real: None,
            last_ok: Vec::new(),
        }
    }

    /// `rel` (normalised, relative to the destination) may be written.
    fn check(&mut self, root: &Root, rel: &[u8]) -> io::Result<()> {
        let parent = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => &rel[..i],
            None => return Ok(()),
        };
        if parent == self.last_ok.as_slice() {
            return Ok(());
        }
        if self.real.is_none() {
            match real_path(root, self.dest) {
                Ok(p) => self.real = Some(p),
                // Nothing exists below a destination that does not exist yet.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        let real = self.real.as_deref().expect("set above");
        let mut end = 0;
        while end < parent.len() {
            end = parent[end..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(parent.len(), |i| end + i);
            let prefix = &parent[..end];
            let image_path = self.dest.join(OsStr::from_bytes(prefix));
            let outside = || {
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{:?} leads outside the destination {} through a symlink",
                        String::from_utf8_lossy(prefix),
                        self.dest.display()
                    ),
                )
            };
            match real_path(root, &image_path) {
                Ok(p) if p.starts_with(real) => {}
                Ok(_) => return Err(outside()),
                // A dangling symlink: writing through it would create its target.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    if root.exists(&image_path) {
                        return Err(outside());
                    }
                    break; // the rest is created as plain directories
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => break,
                Err(e) => return Err(e),
            }
            end += 1;
        }
        self.last_ok = parent.to_vec();
        Ok(())
    }
}

/// Where an image path resolves on the host (symlinks followed inside the root).
fn real_path(root: &Root, path: &Path) -> io::Result<PathBuf> {
    let fd = root.open_at(path, libc::O_PATH | libc::O_CLOEXEC, 0)?;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use d2v_tar::fixtures::Tar;

    /// A rootfs with /x and /dest, and an archive file holding `bytes`.
    fn setup(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("root/x")).unwrap();
        std::fs::create_dir_all(t.path().join("root/dest")).unwrap();
        let archive = t.path().join("a.tar");
        std::fs::write(&archive, bytes).unwrap();
        (t, archive)
    }

    fn add(t: &tempfile::TempDir, archive: &Path) -> io::Result<()> {
        let root = Root::open(&t.path().join("root")).unwrap();
        let mut w = DestWriter::new(&root);
        unpack(&mut w, archive, Path::new("/dest"), Some((0, 0)))?;
        w.finish()
    }

    #[test]
    fn entries_through_a_symlink_out_of_the_destination_are_refused() {
        // Issue 12 item 14: main wrote /x/f.
        for target in [&b"/x"[..], b"../x", b"/nowhere"] {
            let mut tar = Tar::new();
            tar.symlink(b"lnk", target).file(b"lnk/f", b"escaped");
            let (t, archive) = setup(&tar.end());
            let e = add(&t, &archive).unwrap_err();
            assert!(e.to_string().contains("entry \"lnk/f\""), "{e}");
            assert!(e.to_string().contains("outside the destination"), "{e}");
            assert!(!t.path().join("root/x/f").exists());
            assert!(!t.path().join("root/nowhere").exists());
        }
        let mut tar = Tar::new();
        tar.symlink(b"lnk", b"/x").hardlink(b"h", b"lnk/secret");
        let (t, archive) = setup(&tar.end());
        std::fs::write(t.path().join("root/x/secret"), b"s").unwrap();
        assert!(add(&t, &archive).is_err());
    }

    #[test]
    fn symlinks_inside_the_destination_are_followed() {
        let mut tar = Tar::new();
        tar.dir(b"real")
            .symlink(b"lnk", b"real")
            .file(b"lnk/f", b"in");
        let (t, archive) = setup(&tar.end());
        add(&t, &archive).unwrap();
        assert_eq!(
            std::fs::read(t.path().join("root/dest/real/f")).unwrap(),
            b"in"
        );
    }

    #[test]
    fn a_bad_hard_link_names_its_entry() {
        // Issue 12 item 15: main said the archive itself was missing.
        let mut tar = Tar::new();
        tar.file(b"present", b"x").hardlink(b"link", b"absent");
        let (t, archive) = setup(&tar.end());
        let e = add(&t, &archive).unwrap_err().to_string();
        assert!(e.contains("entry \"link\": hard link to \"absent\""), "{e}");
    }

    #[test]
    fn leading_slashes_and_dot_dot_stay_in_the_destination() {
        let mut tar = Tar::new();
        tar.file(b"/abs", b"a").file(b"d/../rel", b"r");
        let (t, archive) = setup(&tar.end());
        add(&t, &archive).unwrap();
        assert!(t.path().join("root/dest/abs").is_file());
        assert!(t.path().join("root/dest/rel").is_file());
        let mut tar = Tar::new();
        tar.file(b"../../up", b"u");
        let (t, archive) = setup(&tar.end());
        add(&t, &archive).unwrap();
        assert!(t.path().join("root/dest/up").is_file());
    }
}
