//! An overlayfs upper dir turned into a deterministic OCI layer tar.
//!
//! Overlay marks deletions with 0/0 character devices and replaced directories
//! with the `trusted.overlay.opaque=y` xattr (`user.overlay.opaque` when
//! mounted in a user namespace); OCI layers say the same with
//! `.wh.NAME` and `.wh..wh..opq` entries. Entries are written in sorted order,
//! with numeric owners, PAX records for long names, nanosecond mtimes and
//! xattrs (`SCHILY.xattr.*`, overlay's own stripped), and hard links inside the
//! layer as tar hard links, so the same upper dir always gives the same bytes.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};
use thiserror::Error;

/// The prefix OCI uses for a deleted entry.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The entry OCI uses to mark a directory opaque.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// Turning an upper dir into a layer failed.
#[derive(Debug, Error)]
pub enum LayerError {
    /// An I/O error on a path.
    #[error("layer diff: {path}: {source}")]
    Io {
        /// The path the operation failed on.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A layer tar written to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerTar {
    /// Where the tar is.
    pub path: PathBuf,
    /// `sha256:<hex>` of the tar bytes (the OCI diff ID and, uncompressed, the blob digest).
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

/// Write the layer for `upper` into a new file in `out_dir` (e.g. the store's
/// tmp dir), hashing as it streams. `shift` is subtracted from every owner:
/// a RUN step's upper dir holds ids shifted into its user namespace's range
/// (see [`crate::userns`]); 0 for an upper dir written with container ids.
pub fn write_layer(upper: &Path, out_dir: &Path, shift: u32) -> Result<LayerTar, LayerError> {
    let tmp = tempfile::Builder::new()
        .prefix("layer-")
        .suffix(".tar")
        .tempfile_in(out_dir)
        .map_err(io_err(out_dir))?;
    let (file, path) = tmp.keep().map_err(|e| LayerError::Io {
        path: out_dir.to_path_buf(),
        source: e.error,
    })?;
    let result = (|| {
        let mut hashing = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file));
        write_layer_to(upper, &mut hashing, shift)?;
        hashing.inner.flush().map_err(io_err(&path))?;
        let (digest, size) = hashing.finish();
        Ok(LayerTar {
            path: path.clone(),
            digest,
            size,
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&path);
    }
    result
}

/// Stream the layer for `upper` into `out` (tar end blocks included), owners
/// shifted down by `shift` (see [`write_layer`]).
pub fn write_layer_to<W: Write>(upper: &Path, out: W, shift: u32) -> Result<(), LayerError> {
    let mut w = LayerWriter {
        tar: tar::Builder::new(out),
        links: HashMap::new(),
        shift,
    };
    w.dir_children(upper, "")?;
    w.tar.finish().map_err(io_err(upper))?;
    Ok(())
}

/// A writer that hashes what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wrap `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// `("sha256:<hex>", bytes written)`.
    pub fn finish(self) -> (String, u64) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.count,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct LayerWriter<W: Write> {
    tar: tar::Builder<W>,
    /// (dev, ino) of multiply-linked files already written → their tar name.
    links: HashMap<(u64, u64), String>,
    /// Subtracted from owners (a RUN step's id shift).
    shift: u32,
}

impl<W: Write> LayerWriter<W> {
    /// Write the sorted children of the directory `dir` (tar name `prefix`).
    fn dir_children(&mut self, dir: &Path, prefix: &str) -> Result<(), LayerError> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(io_err(dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err(dir))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let path = dir.join(&name);
            let name_str = String::from_utf8_lossy(name.as_bytes()).into_owned();
            let tar_name = format!("{prefix}{name_str}");
            self.entry(&path, &tar_name, prefix, &name_str)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        path: &Path,
        tar_name: &str,
        prefix: &str,
        name: &str,
    ) -> Result<(), LayerError> {
        let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
        let ft = meta.file_type();
        let xattrs = read_xattrs(path).map_err(io_err(path))?;
        let is_overlay_whiteout = (ft.is_char_device() && meta.rdev() == 0)
            || (ft.is_file()
                && meta.len() == 0
                && xattrs
                    .iter()
                    .any(|(k, _)| k == "trusted.overlay.whiteout" || k == "user.overlay.whiteout"));
        if is_overlay_whiteout {
            // Overlay creates whiteouts as its mounter: their owner means nothing.
            let wh = format!("{prefix}{WHITEOUT_PREFIX}{name}");
            return self.empty_file(&wh, (0, 0), &meta);
        }
        let kept: Vec<(String, Vec<u8>)> = xattrs
            .into_iter()
            .filter(|(k, _)| !is_overlay_xattr(k))
            .map(|(k, v)| {
                let v = if k == "security.capability" {
                    unshift_capability(v, self.shift)
                } else {
                    v
                };
                (k, v)
            })
            .collect();
        let owner = self.owner(&meta);
        let mut header = Header::new_ustar();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(u64::from(owner.0));
        header.set_gid(u64::from(owner.1));
        header.set_mtime(meta.mtime().max(0) as u64);
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if meta.mtime_nsec() != 0 {
            pax.push((
                "mtime".into(),
                format!("{}.{:09}", meta.mtime(), meta.mtime_nsec()).into_bytes(),
            ));
        }
        for (k, v) in &kept {
            pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
        }

        if ft.is_dir() {
            let dir_name = format!("{tar_name}/");
            header.set_entry_type(EntryType::Directory);
            header.set_size(0);
            self.append(header, &dir_name, None, pax, io::empty())?;
            let opaque = read_xattr(path, "trusted.overlay.opaque")
                .or_else(|| read_xattr(path, "user.overlay.opaque"));
            if opaque.as_deref() == Some(b"y") {
                self.empty_file(&format!("{dir_name}{OPAQUE_WHITEOUT}"), owner, &meta)?;
            }
            return self.dir_children(path, &dir_name);
        }
        if ft.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(target) = self.links.get(&key).cloned() {
                header.set_entry_type(EntryType::Link);
                header.set_size(0);
                return self.append(header, tar_name, Some(target.as_bytes()), pax, io::empty());
            }
            self.links.insert(key, tar_name.to_string());
        }
        if ft.is_file() {
            header.set_entry_type(EntryType::Regular);
            header.set_size(meta.len());
            // Never through a symlink, whatever raced the metadata read.
            let file = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .map_err(io_err(path))?;
            return self.append(header, tar_name, None, pax, file);
        }
        if ft.is_symlink() {
            let target = fs::read_link(path).map_err(io_err(path))?;
            header.set_entry_type(EntryType::Symlink);
            header.set_size(0);
            let target = target.as_os_str().as_bytes().to_vec();
            return self.append(header, tar_name, Some(&target), pax, io::empty());
        }
        if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            header.set_entry_type(if ft.is_char_device() {
                EntryType::Char
            } else if ft.is_block_device() {
                EntryType::Block
            } else {
                EntryType::Fifo
            });
            header.set_size(0);
            let rdev = meta.rdev();
            header
                .set_device_major(libc::major(rdev))
                .and_then(|_| header.set_device_minor(libc::minor(rdev)))
                .map_err(io_err(path))?;
            return self.append(header, tar_name, None, pax, io::empty());
        }
        // Sockets have no place in a layer.
        Ok(())
    }

    /// The container owner of an entry: its ids less the step's shift.
    fn owner(&self, meta: &fs::Metadata) -> (u32, u32) {
        (
            meta.uid().saturating_sub(self.shift),
            meta.gid().saturating_sub(self.shift),
        )
    }

    /// A zero-length whiteout marker with `owner` and `meta`'s mtime.
    fn empty_file(
        &mut self,
        tar_name: &str,
        owner: (u32, u32),
        meta: &fs::Metadata,
    ) -> Result<(), LayerError> {
        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(0o600);
        header.set_uid(u64::from(owner.0));
        header.set_gid(u64::from(owner.1));
        header.set_mtime(meta.mtime().max(0) as u64);
        header.set_size(0);
        self.append(header, tar_name, None, Vec::new(), io::empty())
    }

    /// Append `header` named `name` (with an optional link target), preceded
    /// by a PAX header when the name or target do not fit ustar or `pax` has
    /// records.
    fn append(
        &mut self,
        mut header: Header,
        name: &str,
        link: Option<&[u8]>,
        mut pax: Vec<(String, Vec<u8>)>,
        data: impl io::Read,
    ) -> Result<(), LayerError> {
        let err_path = PathBuf::from(name);
        if header.set_path(name).is_err() {
            pax.push(("path".into(), name.as_bytes().to_vec()));
            set_truncated_name(&mut header, name.as_bytes());
        }
        if let Some(link) = link {
            if link.len() > 100 || header.set_link_name_literal(link).is_err() {
                pax.push(("linkpath".into(), link.to_vec()));
                header
                    .set_link_name_literal(&link[..link.len().min(100)])
                    .map_err(io_err(&err_path))?;
            }
        }
        if !pax.is_empty() {
            pax.sort();
            let mut body = Vec::new();
            for (k, v) in &pax {
                body.extend_from_slice(&pax_record(k, v));
            }
            let mut ph = Header::new_ustar();
            ph.set_entry_type(EntryType::XHeader);
            ph.set_mode(0o644);
            ph.set_size(body.len() as u64);
            ph.set_mtime(header.mtime().unwrap_or(0));
            let pax_name = format!(
                "PaxHeaders.0/{}",
                name.rsplit('/').find(|s| !s.is_empty()).unwrap_or(name)
            );
            let pax_name = &pax_name.as_bytes()[..pax_name.len().min(99)];
            set_truncated_name(&mut ph, pax_name);
            ph.set_cksum();
            self.tar.append(&ph, &body[..]).map_err(io_err(&err_path))?;
        }
        header.set_cksum();
        self.tar.append(&header, data).map_err(io_err(&err_path))
    }
}

/// Put at most 100 bytes of `name` in the ustar name field.
fn set_truncated_name(header: &mut Header, name: &[u8]) {
    let field = &mut header.as_old_mut().name;
    field.fill(0);
    let n = name.len().min(field.len());
    field[..n].copy_from_slice(&name[..n]);
}

/// One PAX record: `"<len> <key>=<value>\n"` where len counts itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len = rest + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// File capabilities set in a user namespace are stored as v3, owned by that
/// namespace's root (`shift` where d2v reads them): in a layer they become v2,
/// as Docker stores them. Others pass through.
fn unshift_capability(v: Vec<u8>, shift: u32) -> Vec<u8> {
    const REVISION_MASK: u32 = 0xff00_0000;
    const REVISION_2: u32 = 0x0200_0000;
    const REVISION_3: u32 = 0x0300_0000;
    if v.len() != 24 {
        return v;
    }
    let magic = u32::from_le_bytes(v[..4].try_into().expect("4 bytes"));
    let rootid = u32::from_le_bytes(v[20..24].try_into().expect("4 bytes"));
    if magic & REVISION_MASK != REVISION_3 || rootid != shift {
        return v;
    }
    let mut out = ((magic & !REVISION_MASK) | REVISION_2)
        .to_le_bytes()
        .to_vec();
    out.extend_from_slice(&v[4..20]);
    out
}

/// Whether an xattr is overlayfs bookkeeping (never part of a layer).
fn is_overlay_xattr(key: &str) -> bool {
    key.starts_with("trusted.overlay.") || key.starts_with("user.overlay.")
}

/// All xattrs of `path` (not following symlinks), sorted by name.
pub(crate) fn read_xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut buf = vec![0u8; 1024];
    let len = loop {
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => buf.resize(buf.len() * 4, 0),
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for key in buf[..len].split(|b| *b == 0).filter(|k| !k.is_empty()) {
        let key = String::from_utf8_lossy(key).into_owned();
        if let Some(value) = read_xattr(path, &key) {
            out.push((key, value));
        }
    }
    out.sort();
    Ok(out)
}

/// One xattr of `path` (not following symlinks), `None` if absent.
pub(crate) fn read_xattr(path: &Path, key: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, key, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Some(buf);
            }
            Err(Errno::RANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 8, 0),
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_capabilities_of_the_step_root_become_v2() {
        let mut v3 = 0x0300_0001u32.to_le_bytes().to_vec();
        v3.extend_from_slice(&[1u8; 16]);
        v3.extend_from_slice(&7u32.to_le_bytes());
        let v2 = unshift_capability(v3.clone(), 7);
        assert_eq!(v2.len(), 20);
        assert_eq!(u32::from_le_bytes(v2[..4].try_into().unwrap()), 0x0200_0001);
        assert_eq!(&v2[4..], &[1u8; 16]);
        // Owned by another root: left as it is.
        assert_eq!(unshift_capability(v3.clone(), 8), v3);
    }

    #[test]
    fn pax_record_length_counts_itself() {
        for (k, v) in [
            ("path", "a".repeat(5)),
            ("path", "b".repeat(200)),
            ("k", "x".repeat(4)),
        ] {
            let rec = pax_record(k, v.as_bytes());
            let text = String::from_utf8(rec.clone()).unwrap();
            let len: usize = text.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(len, rec.len(), "{text:?}");
        }
    }
}
