//! The guest kernel: d2v's microVM kernel when `d2v kernel build` made one
//! (see [`super::kbuild`]), else the host's own from /boot, unpacked from its
//! bzImage into an ELF vmlinux (QEMU and Firecracker boot it directly through
//! PVH, much faster than the bzImage under TCG), and cached.

use super::RunError;
use crate::compression::Format;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Which kind of kernel boots, which decides the machine and the initramfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelKind {
    /// d2v's own (`d2v kernel build`): all built in, devices on the command line.
    Microvm,
    /// A distribution kernel: modules (a d2v initramfs), devices through ACPI.
    Distro,
}

/// The store directory: `D2V_HOME`, else `/var/lib/d2v` for root, else
/// `$XDG_DATA_HOME/d2v` (`~/.local/share/d2v`).
pub fn store_root() -> PathBuf {
    if let Some(h) = std::env::var_os("D2V_HOME") {
        return PathBuf::from(h);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/d2v");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(x).join("d2v");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
    PathBuf::from(home).join(".local/share/d2v")
}

/// Where unpacked kernels and initramfs images are cached.
pub fn cache_dir() -> PathBuf {
    store_root().join("kernels")
}

/// Machine-wide facts and files, shared by every store: `/var/cache/d2v` for
/// root, else `$XDG_CACHE_HOME/d2v` (`~/.cache/d2v`).
pub fn machine_cache_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/cache/d2v");
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("d2v")
}

/// The host kernel image in /boot: the running kernel's when present, else the
/// newest `vmlinuz-*`. Returns the path and the kernel version (for modules).
pub fn host_kernel() -> Result<(PathBuf, String), RunError> {
    let running = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let running = running.trim();
    let own = Path::new("/boot").join(format!("vmlinuz-{running}"));
    if !running.is_empty() && own.is_file() {
        return Ok((own, running.to_string()));
    }
    let mut found: Vec<(PathBuf, String)> = std::fs::read_dir("/boot")
        .map_err(|_| RunError::NoKernel)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let ver = name.strip_prefix("vmlinuz-")?.to_string();
            Some((e.path(), ver))
        })
        .collect();
    found.sort_by_key(|k| version_key(&k.1));
    found.pop().ok_or(RunError::NoKernel)
}

fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Finds the compressed vmlinux inside a bzImage via the setup header's
/// `payload_offset`/`payload_length` (boot protocol ≥ 2.08).
/// The payload's compression is told by [`Format::sniff`]; gzip, xz and zstd
/// are the ones this unpacks.
pub fn bzimage_payload(image: &[u8]) -> Option<(Format, &[u8])> {
    if image.len() < 0x250 || &image[0x202..0x206] != b"HdrS" {
        return None;
    }
    let setup_sects = match image[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let off = u32::from_le_bytes(image[0x248..0x24c].try_into().ok()?) as usize;
    let len = u32::from_le_bytes(image[0x24c..0x250].try_into().ok()?) as usize;
    let start = (setup_sects + 1) * 512 + off;
    let payload = image.get(start..start.checked_add(len)?)?;
    match Format::sniff(payload) {
        kind @ (Format::Gzip | Format::Xz | Format::Zstd) => Some((kind, payload)),
        Format::Plain | Format::Bzip2 => None,
    }
}

/// Unpacks the ELF vmlinux from a bzImage; `None` when the payload is not one
/// we can decompress (the caller then boots the bzImage itself).
pub fn extract_vmlinux(image: &[u8]) -> Option<Vec<u8>> {
    let (kind, payload) = bzimage_payload(image)?;
    let out = match kind {
        Format::Gzip => {
            let mut out = Vec::new();
            let mut d = flate2::read::GzDecoder::new(payload);
            std::io::Read::read_to_end(&mut d, &mut out).ok()?;
            out
        }
        Format::Zstd => {
            let mut out = Vec::new();
            let mut d = zstd::stream::read::Decoder::new(payload)
                .ok()?
                .single_frame();
            std::io::Read::read_to_end(&mut d, &mut out).ok()?;
            out
        }
        // xz-utils with --single-stream: the kernel appends a size word
        // after the stream, which a whole-file decoder takes for garbage.
        Format::Xz => {
            let mut child = Command::new("xz")
                .args(["-dc", "--single-stream"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            let mut stdin = child.stdin.take()?;
            let data = payload.to_vec();
            let writer = std::thread::spawn(move || stdin.write_all(&data));
            let out = child.wait_with_output().ok()?;
            let _ = writer.join();
            out.stdout
        }
        Format::Plain | Format::Bzip2 => return None,
    };
    out.starts_with(b"\x7fELF").then_some(out)
}

/// A short content key for cache names: path, size and mtime of the source.
pub fn file_key(path: &Path) -> Result<String, RunError> {
    let md = std::fs::metadata(path).map_err(|e| RunError::io(path, e))?;
    let mut h = Sha256::new();
    h.update(path.as_os_str().as_encoded_bytes());
    h.update(md.len().to_le_bytes());
    if let Ok(m) = md.modified() {
        if let Ok(d) = m.duration_since(std::time::UNIX_EPOCH) {
            h.update(d.as_nanos().to_le_bytes());
        }
    }
    Ok(hex::encode(&h.finalize()[..8]))
}

/// Writes `data` to `path` atomically (temp file + rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), RunError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| RunError::io(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| RunError::io(dir, e))?;
    tmp.write_all(data).map_err(|e| RunError::io(path, e))?;
    tmp.persist(path).map_err(|e| RunError::io(path, e.error))?;
    Ok(())
}

/// The kernel to boot for `kernel` (a bzImage or vmlinux): the cached unpacked
/// vmlinux when the bzImage can be unpacked, else `kernel` itself.
pub fn bootable_kernel(kernel: &Path) -> Result<PathBuf, RunError> {
    let cached = cache_dir().join(format!("vmlinux-{}", file_key(kernel)?));
    if cached.is_file() {
        return Ok(cached);
    }
    let image = std::fs::read(kernel).map_err(|e| RunError::io(kernel, e))?;
    if image.starts_with(b"\x7fELF") {
        return Ok(kernel.to_path_buf());
    }
    match extract_vmlinux(&image) {
        Some(vmlinux) => {
            write_atomic(&cached, &vmlinux)?;
            Ok(cached)
        }
        None => Ok(kernel.to_path_buf()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_bzimages() {
        assert!(bzimage_payload(b"not a kernel").is_none());
        let mut fake = vec![0u8; 0x1000];
        fake[0x202..0x206].copy_from_slice(b"HdrS");
        fake[0x1f1] = 1;
        // payload_offset 0, length 4 → at 1024: gzip magic then junk.
        fake[0x24c..0x250].copy_from_slice(&4u32.to_le_bytes());
        fake[1024..1028].copy_from_slice(&[0x1f, 0x8b, 8, 0]);
        assert_eq!(bzimage_payload(&fake).map(|p| p.0), Some(Format::Gzip));
        assert!(extract_vmlinux(&fake).is_none());
    }

    #[test]
    fn orders_kernel_versions_numerically() {
        assert!(version_key("6.1.0-56-amd64") > version_key("6.1.0-9-amd64"));
    }
}
