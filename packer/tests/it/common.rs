//! Helpers shared by the packer's integration tests: the e2fsck judge, loop
//! mounts, and a tree comparison.
#![allow(dead_code)]

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use d2v_packer::{Ext4Writer, Options, Summary};
use d2v_testkit::tree::{self, describe_with, Compare, Ignore};

pub use d2v_testkit::{assert_fsck_clean, require, require_root, require_tool};

/// Extract the whole tree of `image` into the existing directory `out` with
/// `debugfs rdump` (which reads inline data and needs no root).
pub fn debugfs_rdump(image: &Path, out: &Path) {
    let st = Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", out.display()))
        .arg(image)
        .output()
        .expect("run debugfs");
    assert!(st.status.success(), "debugfs rdump: {st:?}");
}

/// `debugfs -R CMD image`, its standard output.
pub fn debugfs(image: &Path, cmd: &str) -> String {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(cmd)
        .arg(image)
        .output()
        .expect("run debugfs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pack `dir` into `image` with `opts`.
pub fn pack_dir(dir: &Path, image: &Path, opts: Options) -> Summary {
    let f = File::create(image).unwrap();
    let mut w = Ext4Writer::new(f, opts).unwrap();
    d2v_packer::source::pack_dir(dir, &mut w).unwrap();
    w.finish().unwrap()
}

/// A loop mount that is undone on drop.
pub struct Mount {
    pub dir: tempfile::TempDir,
}

impl Mount {
    /// Mount `image` at a fresh directory with `-o loop,<opts>`.
    pub fn new(image: &Path, opts: &str) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "ext4", "-o", &format!("loop,{opts}")])
            .arg(image)
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount {} failed", image.display());
        Mount { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// `b` in lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Assert that the mounted image at `mnt` matches the source tree `src`:
/// every path's type, mode, owner, size (but a directory's), mtime (symlinks'
/// too), device number, link target, xattrs and content, the same hard-link
/// groups, and the root directory's mode and owner. The mount's lost+found
/// is left out.
pub fn assert_same_tree(src: &Path, mnt: &Path) {
    let compare = Compare {
        ignore: Ignore {
            mtime: false,
            dir_size: true,
        },
        symlink_mtime: true,
        link_groups: true,
        ..Compare::default()
    };
    let mut a = describe_with(src, &compare);
    let mut b = describe_with(mnt, &compare);
    b.remove(b"lost+found".as_slice());
    a.remove(b".".as_slice());
    b.remove(b".".as_slice());
    tree::assert_same("source", &a, "image", &b);
    let ra = std::fs::symlink_metadata(src).unwrap();
    let rb = std::fs::symlink_metadata(mnt).unwrap();
    assert_eq!(
        (ra.mode(), ra.uid(), ra.gid()),
        (rb.mode(), rb.uid(), rb.gid()),
        "root dir"
    );
}

/// A scratch directory on a real disk (not tmpfs, so holes and xattrs work).
pub fn scratch() -> tempfile::TempDir {
    d2v_testkit::scratch("d2v-packer-")
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub use d2v_testkit::fsutil::{lchown, mknod, set_mtime};

/// Build a source tree with every edge the packer must keep (needs root for
/// devices and ownership). Returns the paths whose times were set last.
pub fn build_edge_tree(src: &Path) {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let d = |p: &str| {
        let p = src.join(p);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    d("etc");
    d("usr/bin");
    d("var/empty");
    d("deep/a/b/c/d/e/f/g");
    // Files of edge sizes.
    for (i, n) in [0usize, 1, 4095, 4096, 4097, 8191, 8192, 65537, 1 << 20]
        .into_iter()
        .enumerate()
    {
        std::fs::write(src.join(format!("etc/size-{n}")), bytes(i as u64 + 1, n)).unwrap();
    }
    // A 255-byte name.
    let long = "n".repeat(250) + ".long";
    std::fs::write(src.join("etc").join(&long), b"long name").unwrap();
    // A directory spanning many blocks (htree).
    let many = d("many");
    for i in 0..3000 {
        std::fs::write(
            many.join(format!("entry-{i:05}-{}", "x".repeat(i % 40))),
            format!("{i}"),
        )
        .unwrap();
    }
    // Symlinks: fast (59), slow (60) and long.
    symlink("a".repeat(59), src.join("link59")).unwrap();
    symlink("b".repeat(60), src.join("link60")).unwrap();
    symlink("c/".repeat(1500), src.join("linklong")).unwrap();
    symlink("etc/size-1", src.join("link-rel")).unwrap();
    // Hard links.
    std::fs::write(src.join("usr/bin/tool"), bytes(99, 5000)).unwrap();
    std::fs::hard_link(src.join("usr/bin/tool"), src.join("usr/bin/tool2")).unwrap();
    std::fs::hard_link(src.join("usr/bin/tool"), src.join("etc/tool3")).unwrap();
    // Sparse file: 64 MiB with three data islands.
    {
        let f = File::create(src.join("var/sparse")).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&bytes(5, 10_000), 4096 * 3).unwrap();
        f.write_all_at(&bytes(6, 4096), 20 << 20).unwrap();
        f.write_all_at(&bytes(7, 100), (64 << 20) - 100).unwrap();
    }
    // Devices, fifo, socket.
    mknod(&src.join("var/null"), libc::S_IFCHR | 0o666, 1, 3);
    mknod(&src.join("var/bigdev"), libc::S_IFBLK | 0o660, 259, 70000);
    mknod(&src.join("var/fifo"), libc::S_IFIFO | 0o644, 0, 0);
    let sock = src.join("var/sock");
    let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    // Ownership and special bits.
    std::fs::write(src.join("usr/bin/suid"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        src.join("usr/bin/suid"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::set_permissions(src.join("usr/bin"), std::fs::Permissions::from_mode(0o2775)).unwrap();
    let tmp = d("tmp");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    lchown(&src.join("etc/size-1"), 70000, 80000);
    lchown(&src.join("link59"), 65536, 4_294_967_294);
    lchown(&src.join("var/empty"), 1000, 1000);
    // Xattrs: small in-inode, big spilling to a shared block (several files share it).
    xattr::set(src.join("etc/size-1"), "user.small", b"v").unwrap();
    for f in ["etc/size-0", "etc/size-4095", "etc/size-4096"] {
        xattr::set(src.join(f), "user.big", &bytes(3, 300)).unwrap();
        xattr::set(src.join(f), "trusted.other", b"shared").unwrap();
    }
    xattr::set(src.join("var/empty"), "user.dir", b"on a dir").unwrap();
    xattr::set(src.join("etc/size-4097"), "user.unique", &bytes(4, 1000)).unwrap();
    // A file capability, the way Debian's ping has one.
    let ping = src.join("usr/bin/ping");
    std::fs::write(&ping, b"\x7fELF fake ping").unwrap();
    let st = Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(&ping)
        .status()
        .unwrap();
    assert!(st.success(), "setcap failed");
    // Times last: ns, before 1970, after 2038, on files, links and dirs.
    set_mtime(&src.join("etc/size-1"), -1_234_567_890, 500_000_000);
    set_mtime(&src.join("etc/size-0"), 4_000_000_000, 123_456_789);
    set_mtime(&src.join("link60"), 8_000_000_000, 1);
    set_mtime(&src.join("etc/size-4097"), 1_700_000_000, 999_999_999);
    for p in [
        "deep/a/b/c/d/e/f/g",
        "var",
        "var/empty",
        "many",
        "etc",
        "usr/bin",
        "usr",
        "tmp",
        "deep",
    ] {
        set_mtime(&src.join(p), 1_600_000_000, 42);
    }
}
