//! Making test trees: the metadata calls std has no safe wrapper for, each
//! panicking with the path and the OS error when it fails.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn check(r: libc::c_int, what: &str, p: &Path) {
    assert_eq!(
        r,
        0,
        "{what} {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// Sets `p`'s atime and mtime to `sec.nsec` (not following a symlink).
pub fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    let t = libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    let ts = [t, t];
    // SAFETY: a valid NUL-terminated path and a two-element timespec array.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            cpath(p).as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check(r, "utimensat", p);
}

/// Makes a device node or FIFO: `mode` holds the file type and permissions
/// (the umask applies).
pub fn mknod(p: &Path, mode: u32, major: u32, minor: u32) {
    // SAFETY: a valid NUL-terminated path; mknod has no memory preconditions.
    let r = unsafe { libc::mknod(cpath(p).as_ptr(), mode, libc::makedev(major, minor)) };
    check(r, "mknod", p);
}

/// Sets `p`'s owner (not following a symlink).
pub fn lchown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

/// Sets xattr `name` of `p` (not following a symlink).
pub fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let n = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a value buffer of the given length.
    let r = unsafe {
        libc::lsetxattr(
            cpath(p).as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check(r, &format!("setxattr {name}"), p);
}
