//! ADD's local archives: tar, optionally gzip-, zstd-, bzip2- or xz-compressed, detected
//! by content (not name) and unpacked through [`DestWriter`], so archive
//! entries are confined to the rootfs like every other COPY write.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use super::dest::{DestWriter, EntryMeta};

/// The compression wrapping a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
    /// bzip2.
    Bzip2,
    /// xz.
    Xz,
}

fn detect(magic: &[u8]) -> Compression {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if magic.starts_with(b"BZh") {
        Compression::Bzip2
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else {
        Compression::None
    }
}

fn open_decoded(path: &Path) -> io::Result<Option<Box<dyn Read>>> {
    let mut file = BufReader::new(File::open(path)?);
    let kind = detect(file.fill_buf()?);
    Ok(match kind {
        Compression::None => Some(Box::new(file)),
        Compression::Gzip => Some(Box::new(flate2::read::MultiGzDecoder::new(file))),
        Compression::Zstd => Some(Box::new(zstd::stream::read::Decoder::with_buffer(file)?)),
        Compression::Bzip2 => Some(Box::new(bzip2::read::BzDecoder::new(file))),
        Compression::Xz => {
            // lzma-rs decodes whole streams only: spill to an anonymous temp file.
            let mut out = tempfile::tempfile()?;
            lzma_rs::xz_decompress(&mut file, &mut out)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            io::Seek::rewind(&mut out)?;
            Some(Box::new(BufReader::new(out)))
        }
    })
}

/// Whether `path` holds a tar archive (possibly compressed) ADD would unpack.
pub fn is_archive(path: &Path) -> bool {
    let Ok(Some(mut r)) = open_decoded(path) else {
        return false;
    };
    let mut block = [0u8; 512];
    if r.read_exact(&mut block).is_err() {
        return false;
    }
    // A ustar/GNU magic, or an old-style header whose checksum adds up.
    if &block[257..262] == b"ustar" {
        return true;
    }
    let stored = std::str::from_utf8(&block[148..156])
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok());
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u32
            }
        })
        .sum();
    block[0] != 0 && stored == Some(sum)
}

/// Unpack the archive at `path` into the directory `dest` (an image path).
/// Owners come from the archive unless `chown` is given.
pub fn unpack(
    w: &mut DestWriter<'_>,
    path: &Path,
    dest: &Path,
    chown: Option<(u32, u32)>,
) -> io::Result<()> {
    let r = open_decoded(path)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "unsupported compression"))?;
    let mut ar = tar::Archive::new(r);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let rel = entry.path()?.into_owned();
        let Some(rel) = confine(&rel) else { continue };
        let target = dest.join(&rel);
        let h = entry.header().clone();
        let (uid, gid) = match chown {
            Some(o) => o,
            None => (h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32),
        };
        let meta = EntryMeta {
            mode: h.mode().unwrap_or(0o644),
            uid,
            gid,
            mtime: Some((h.mtime().unwrap_or(0) as i64, 0)),
        };
        let kind = h.entry_type();
        let xattrs: Vec<(String, Vec<u8>)> = entry
            .pax_extensions()?
            .map(|exts| {
                exts.filter_map(|x| x.ok())
                    .filter_map(|x| {
                        let k = x.key().ok()?.strip_prefix("SCHILY.xattr.")?.to_string();
                        Some((k, x.value_bytes().to_vec()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        match kind {
            tar::EntryType::Directory => w.dir(&target, meta)?,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                w.file(&target, meta, &mut entry, &xattrs)?
            }
            tar::EntryType::Symlink => {
                let link = entry.link_name()?.unwrap_or_default().into_owned();
                w.symlink(&target, &link, meta)?
            }
            tar::EntryType::Link => {
                let link = entry.link_name()?.unwrap_or_default().into_owned();
                if let Some(l) = confine(&link) {
                    w.hardlink(&target, &dest.join(l))?
                }
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let t = match kind {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let rdev = libc::makedev(
                    h.device_major()?.unwrap_or(0),
                    h.device_minor()?.unwrap_or(0),
                );
                w.special(&target, t, rdev, meta)?
            }
            _ => {}
        }
    }
    Ok(())
}

/// An archive member path made relative, `..` clamped at the archive root.
fn confine(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}
