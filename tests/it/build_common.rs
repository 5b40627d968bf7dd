//! Shared fixtures for the build_* integration tests: a busybox rootfs with a
//! named non-root user, and the root/facility gate (fail under `CI=true`,
//! skip with a reason otherwise).
#![allow(dead_code)]

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether the test can run; panics when a facility is missing under CI.
pub fn facilities(need_busybox: bool) -> bool {
    let mut missing = Vec::new();
    if !d2v_testkit::is_root() {
        missing.push("root".to_string());
    }
    if !d2v_testkit::facility::have_filesystem("overlay") {
        missing.push("overlayfs".to_string());
    }
    if need_busybox && !Path::new("/bin/busybox").exists() {
        missing.push("/bin/busybox (Debian package busybox-static)".to_string());
    }
    d2v_testkit::require(missing.is_empty(), &missing.join(", "))
}

/// The /etc/passwd of [`busybox_rootfs`]: root and `app` (1000:1000).
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n";
/// The /etc/group of [`busybox_rootfs`]: `app` is in wheel and audio.
pub const GROUP: &str =
    "root:x:0:\nwheel:x:10:app\naudio:x:29:app,other\napp:x:1000:\nstaff:x:50:\n";

/// A busybox rootfs in `dir`: /bin/busybox plus applet links, /etc/passwd and
/// /etc/group with user `app` (1000:1000, groups wheel and audio), /tmp, /root.
pub fn busybox_rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    let out = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8(out.stdout).unwrap().lines() {
        if applet != "busybox" {
            let _ = symlink("busybox", dir.join("bin").join(applet));
        }
    }
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/passwd"), PASSWD).unwrap();
    std::fs::write(dir.join("etc/group"), GROUP).unwrap();
    for d in ["tmp", "root", "home/app"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::chown(dir.join("home/app"), Some(1000), Some(1000)).unwrap();
}

/// Shifts the owner of every entry under `dir` (itself included) by `base`:
/// a RUN step's user namespace sees container id `c` as `base + c`, which is
/// how d2v-fuse presents the layers to it. Entries already shifted are left.
pub fn shift_tree(dir: &Path, base: u32) {
    use std::os::unix::fs::MetadataExt;
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.unwrap();
        let md = entry.path().symlink_metadata().unwrap();
        let shift = |id: u32| if id < base { id + base } else { id };
        std::os::unix::fs::lchown(entry.path(), Some(shift(md.uid())), Some(shift(md.gid())))
            .unwrap();
    }
}

/// The id shift of this process's RUN steps.
pub fn step_base() -> u32 {
    d2v::userns::current().step_uids.base
}

/// A fresh scratch dir (an empty subdir of a temp dir) for one step.
pub fn scratch(base: &Path, name: &str) -> PathBuf {
    let p = base.join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Entries of a layer tar: (path, entry type byte, link target, size, mode, uid, gid, content).
pub fn read_tar(path: &Path) -> Vec<TarEntry> {
    let mut ar = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut content).unwrap();
        let xattrs = e
            .pax_extensions()
            .unwrap()
            .map(|exts| {
                exts.filter_map(|x| x.ok())
                    .filter_map(|x| {
                        x.key()
                            .ok()
                            .and_then(|k| k.strip_prefix("SCHILY.xattr."))
                            .map(|k| (k.to_string(), x.value_bytes().to_vec()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let h = e.header().clone();
        out.push(TarEntry {
            path: e.path().unwrap().to_string_lossy().into_owned(),
            kind: h.entry_type().as_byte(),
            link: e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned()),
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            content,
            xattrs,
        });
    }
    out
}

/// One entry read back from a layer.
#[derive(Debug, Clone)]
pub struct TarEntry {
    /// The entry's path as stored (no leading `/`).
    pub path: String,
    /// The tar type flag (`b'0'` file, `b'5'` directory, ...).
    pub kind: u8,
    /// The link target of a symlink or hard link.
    pub link: Option<String>,
    /// Permission bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// A regular file's bytes.
    pub content: Vec<u8>,
    /// Extended attributes, in archive order.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Lines of /proc/self/mountinfo mentioning `needle`.
pub fn mounts_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(String::from)
        .collect()
}

/// PIDs whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}
