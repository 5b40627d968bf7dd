//! The module initramfs for stock kernels (Debian's have virtio and ext4 as
//! modules): a newc cpio, written here, holding `d2v-init` as `/init`, the
//! needed `.ko` files and `/d2v-initrd`, the list init loads in order.

use super::kernel::{cache_dir, write_atomic};
use super::RunError;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// Modules the guest needs, in the order asked; dependencies come first.
/// Missing ones are skipped (a kernel may have them built in).
pub const WANTED_MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "vmw_vsock_virtio_transport",
    "9p",
    "9pnet_virtio",
    "crc32c_generic",
    "crc32c-intel",
    "ext4",
];

/// A newc (SVR4, no CRC) cpio archive writer, as the kernel's initramfs
/// unpacker reads it.
#[derive(Default)]
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.buf.len() & 3 != 0 {
            self.buf.push(0);
        }
    }

    /// A directory (parents must come first).
    pub fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }

    /// A regular file with permission bits `perm`.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, (0, 0), data);
    }

    /// A character device node.
    pub fn chardev(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, 0o020000 | perm, (major, minor), &[]);
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.buf
    }
}

fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = base.split(".ko").next().unwrap_or(base);
    base.replace('-', "_")
}

/// Load order (paths relative to `/lib/modules/<ver>`) for `wanted` given
/// `modules.dep`, whose lines list each module's full dependency set with the
/// deepest dependency last (modprobe loads them in reverse).
pub fn load_order(modules_dep: &str, wanted: &[&str]) -> Vec<String> {
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in modules_dep.lines() {
        let Some((m, rest)) = line.split_once(':') else {
            continue;
        };
        let d = rest.split_whitespace().map(str::to_string).collect();
        deps.insert(module_name(m), (m.to_string(), d));
    }
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    fn visit(
        path: &str,
        deps: &BTreeMap<String, (String, Vec<String>)>,
        seen: &mut HashSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(path.to_string()) {
            return;
        }
        if let Some((_, d)) = deps.get(&module_name(path)) {
            for dep in d.iter().rev() {
                visit(dep, deps, seen, order);
            }
        }
        order.push(path.to_string());
    }
    for w in wanted {
        if let Some((path, _)) = deps.get(&w.replace('-', "_")) {
            visit(path, &deps, &mut seen, &mut order);
        }
    }
    order
}

/// Whether `kver`'s block driver is a module, i.e. the kernel needs our initramfs.
pub fn needs_initramfs(kver: &str) -> bool {
    let dep = Path::new("/lib/modules").join(kver).join("modules.dep");
    std::fs::read_to_string(dep)
        .map(|d| !load_order(&d, &["virtio_blk"]).is_empty())
        .unwrap_or(false)
}

/// Builds (or reuses from the cache) the initramfs for kernel version `kver`
/// around `init` (the `d2v-init` binary).
pub fn initramfs_for(kver: &str, init: &[u8]) -> Result<PathBuf, RunError> {
    let moddir = Path::new("/lib/modules").join(kver);
    let dep_path = moddir.join("modules.dep");
    let dep = std::fs::read_to_string(&dep_path).map_err(|e| RunError::io(&dep_path, e))?;
    let order = load_order(&dep, WANTED_MODULES);
    let mut h = Sha256::new();
    h.update(kver.as_bytes());
    h.update(dep.as_bytes());
    h.update(init);
    let key = hex::encode(&h.finalize()[..8]);
    let cached = cache_dir().join(format!("initramfs-{kver}-{key}.cpio"));
    if cached.is_file() {
        return Ok(cached);
    }
    let mut cpio = Cpio::default();
    for d in ["dev", "proc", "sys", "newroot", "lib", "lib/modules"] {
        cpio.dir(d);
    }
    cpio.chardev("dev/console", 0o600, 5, 1);
    cpio.file("init", 0o755, init);
    let base = format!("lib/modules/{kver}");
    cpio.dir(&base);
    let mut made = HashSet::new();
    let mut list = String::new();
    for m in &order {
        // Parent directories first.
        let rel = format!("{base}/{m}");
        let mut acc = String::new();
        for part in rel
            .split('/')
            .collect::<Vec<_>>()
            .iter()
            .rev()
            .skip(1)
            .rev()
        {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            if acc.len() > base.len() && made.insert(acc.clone()) {
                cpio.dir(&acc);
            }
        }
        let src = moddir.join(m);
        let data = std::fs::read(&src).map_err(|e| RunError::io(&src, e))?;
        cpio.file(&rel, 0o644, &data);
        list.push_str(&format!("/{rel}\n"));
    }
    cpio.file("d2v-initrd", 0o644, list.as_bytes());
    write_atomic(&cached, &cpio.finish())?;
    Ok(cached)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n\
kernel/fs/jbd2/jbd2.ko:\nkernel/fs/mbcache.ko:\nkernel/lib/crc16.ko:\n\
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
kernel/drivers/virtio/virtio.ko:\nkernel/drivers/virtio/virtio_ring.ko:\n\
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
kernel/arch/x86/crypto/crc32c-intel.ko:\n";

    #[test]
    fn orders_modules_dependencies_first_without_duplicates() {
        let o = load_order(
            DEP,
            &["virtio_mmio", "virtio_blk", "crc32c-intel", "nope", "ext4"],
        );
        let names: Vec<String> = o.iter().map(|p| module_name(p)).collect();
        assert_eq!(
            names,
            [
                "virtio_ring",
                "virtio",
                "virtio_mmio",
                "virtio_blk",
                "crc32c_intel",
                "jbd2",
                "mbcache",
                "crc16",
                "ext4"
            ]
        );
    }

    #[test]
    fn writes_newc_headers_the_kernel_reads() {
        let mut c = Cpio::default();
        c.dir("dev");
        c.file("init", 0o755, b"abc");
        let a = c.finish();
        assert!(a.starts_with(b"070701"));
        assert_eq!(a.len() % 4, 0);
        // The second header's mode field is a regular 0755 file; size 3.
        let second = a.windows(6).skip(1).position(|w| w == b"070701").unwrap() + 1;
        let h = std::str::from_utf8(&a[second..second + 110]).unwrap();
        assert_eq!(&h[14..22], "000081ED");
        assert_eq!(&h[54..62], "00000003");
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
