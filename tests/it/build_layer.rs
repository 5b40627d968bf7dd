//! Layer diffs of hand-made overlay upper dirs: whiteouts, opaque dirs,
//! xattrs, long names, hard links, devices, determinism.

use crate::build_common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use build_common::*;
use d2v::build::layer::{write_layer, write_layer_to};

fn setxattr(p: &Path, k: &str, v: &[u8]) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let key = CString::new(k).unwrap();
    // SAFETY: valid NUL-terminated strings and a buffer of v.len() bytes.
    let rc = unsafe { libc::lsetxattr(c.as_ptr(), key.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    assert_eq!(
        rc,
        0,
        "setxattr {k} on {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

fn mknod(p: &Path, mode: u32, dev: u64) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mknod(c.as_ptr(), mode, dev) }, 0);
}

#[test]
fn upper_dir_markers_become_oci_entries_and_overlay_xattrs_are_dropped() {
    if !facilities(false) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path().join("upper");
    std::fs::create_dir_all(upper.join("etc/opaque")).unwrap();
    std::fs::write(upper.join("etc/opaque/new"), "n").unwrap();
    setxattr(&upper.join("etc/opaque"), "trusted.overlay.opaque", b"y");
    setxattr(&upper.join("etc"), "trusted.overlay.origin", b"\x00junk");
    mknod(&upper.join("etc/gone"), libc::S_IFCHR | 0o600, 0);
    mknod(
        &upper.join("etc/null"),
        libc::S_IFCHR | 0o666,
        libc::makedev(1, 3),
    );
    std::fs::write(upper.join("ping"), "bin").unwrap();
    setxattr(
        &upper.join("ping"),
        "security.capability",
        &[
            1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    setxattr(&upper.join("ping"), "user.note", b"kept");
    let long = "d".repeat(120);
    std::fs::create_dir_all(upper.join(&long)).unwrap();
    std::fs::write(upper.join(&long).join("f".repeat(90)), "long").unwrap();
    std::fs::hard_link(upper.join("ping"), upper.join("ping2")).unwrap();
    std::os::unix::fs::symlink("x".repeat(150), upper.join("longlink")).unwrap();

    let layer = write_layer(&upper, dir.path(), 0).unwrap();
    let entries = read_tar(&layer.path);
    let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    let long_dir = format!("{long}/");
    let long_file = format!("{long}/{}", "f".repeat(90));
    assert_eq!(
        names,
        [
            long_dir.as_str(),
            long_file.as_str(),
            "etc/",
            "etc/.wh.gone",
            "etc/null",
            "etc/opaque/",
            "etc/opaque/.wh..wh..opq",
            "etc/opaque/new",
            "longlink",
            "ping",
            "ping2"
        ]
    );
    let by = |n: &str| entries.iter().find(|e| e.path == n).unwrap();
    assert!(by("etc/").xattrs.is_empty(), "overlay xattrs stripped");
    assert!(by("etc/opaque/").xattrs.is_empty());
    assert_eq!(by("etc/.wh.gone").kind, b'0');
    assert_eq!(by("etc/null").kind, b'3');
    let ping = by("ping");
    assert!(ping.xattrs.iter().any(|(k, _)| k == "security.capability"));
    assert!(ping
        .xattrs
        .iter()
        .any(|(k, v)| k == "user.note" && v == b"kept"));
    assert_eq!(by("ping2").kind, b'1');
    assert_eq!(by("ping2").link.as_deref(), Some("ping"));
    assert_eq!(by(&long_file).content, b"long");
    assert_eq!(
        by("longlink").link.as_deref(),
        Some("x".repeat(150).as_str())
    );

    // Streaming gives the same bytes as the file, and the digest matches them.
    let mut buf = Vec::new();
    write_layer_to(&upper, &mut buf, 0).unwrap();
    assert_eq!(buf, std::fs::read(&layer.path).unwrap());
    use sha2::Digest;
    assert_eq!(
        layer.digest,
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&buf)))
    );
}
