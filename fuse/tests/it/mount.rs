//! The FUSE view: compared path by path with the reference, used as a chroot
//! root and as an overlayfs lower dir, and taken down cleanly.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use d2v_fuse::{is_mountpoint, mount, unmount, MergedTree, MountError, MountOptions};

fn mounted(dir: &Path) -> bool {
    let canon = dir.canonicalize().unwrap();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(canon.to_str().unwrap()))
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fuse_view_matches_reference_extraction() {
    if !require_fuse() || !require_root_and(&["tar", "setcap"]) {
        return;
    }
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let m = mount(
        Arc::new(tree(&f.blobs)),
        dir.path(),
        &MountOptions::default(),
    )
    .unwrap();
    assert!(mounted(dir.path()));
    let actual = scan_dir(dir.path());
    assert!(actual.len() > 10_000);
    assert_same(&f.expected, &actual);
    m.unmount().unwrap();
    assert!(!mounted(dir.path()));
}

#[test]
fn view_is_read_only_and_xattr_probes_follow_the_protocol() {
    if !require_fuse() || !require_root_and(&["tar", "setcap"]) {
        return;
    }
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let _m = mount(
        Arc::new(tree(&f.blobs)),
        dir.path(),
        &MountOptions::default(),
    )
    .unwrap();
    let p = dir.path().join("x/attr");
    let err = fs::OpenOptions::new().write(true).open(&p).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    let err = fs::create_dir(dir.path().join("newdir")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    let c = cpath(&p);
    let name = std::ffi::CString::new("user.foo").unwrap();
    // SAFETY: size probe with a null buffer.
    let n = unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
    assert_eq!(n, 3);
    let mut small = [0u8; 2];
    // SAFETY: buffer of the given length.
    let n = unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), small.as_mut_ptr().cast(), 2) };
    assert_eq!(n, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ERANGE)
    );
    let missing = std::ffi::CString::new("user.missing").unwrap();
    // SAFETY: size probe with a null buffer.
    let n = unsafe { libc::lgetxattr(c.as_ptr(), missing.as_ptr(), std::ptr::null_mut(), 0) };
    assert_eq!(n, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ENODATA)
    );
    // statfs reports our filesystem.
    // SAFETY: statvfs is plain data; all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let path = cpath(dir.path());
    // SAFETY: `path` is a NUL-terminated string that outlives the call and `st`
    // is a writable statvfs the kernel fills.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    assert_eq!(rc, 0);
    assert!(st.f_files as usize >= 10_000);
    assert_eq!(st.f_flag & libc::ST_RDONLY, libc::ST_RDONLY);
}

/// A layer holding a busybox userland, for chroot tests.
fn busybox_layer(work: &Path) -> PathBuf {
    let root = work.join("bb");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for app in [
        "sh", "ls", "cat", "id", "stat", "echo", "touch", "head", "wc",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(app)).unwrap();
    }
    write(&root.join("etc/hello"), b"hello from the layer\n");
    write(&root.join("secret/file"), b"root only\n");
    chmod(&root.join("secret"), 0o700);
    write(&root.join("bin/su-ish"), b"#!/bin/sh\n");
    chmod(&root.join("bin/su-ish"), 0o4755);
    fs::create_dir_all(root.join("dev")).unwrap();
    mknod(&root.join("dev/null"), libc::S_IFCHR, 0o666, 1, 3);
    fs::create_dir_all(root.join("tmp")).unwrap();
    chmod(&root.join("tmp"), 0o1777);
    let blob = work.join("busybox.tar");
    gnu_tar(&root, &blob, "pax", &[]);
    blob
}

#[test]
fn chroot_into_view_runs_busybox_with_devices_setuid_and_permissions() {
    if !require_fuse() || !require_root_and(&["tar", "chroot", "busybox"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let blob = busybox_layer(work.path());
    let dir = work.path().join("mnt");
    fs::create_dir(&dir).unwrap();
    // A build's view: device nodes and setuid bits honoured, other ids allowed.
    let opts = MountOptions {
        suid_dev: true,
        allow_other: true,
        ..MountOptions::default()
    };
    let _m = mount(Arc::new(tree(&[blob])), &dir, &opts).unwrap();
    let out = run(Command::new("chroot").arg(&dir).args([
        "/bin/sh",
        "-c",
        "cat /etc/hello; stat -c '%A %t:%T' /dev/null; stat -c %A /bin/su-ish; \
         echo discard > /dev/null && echo devnull-ok; id -u",
    ]));
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        out,
        "hello from the layer\ncrw-rw-rw- 1:3\n-rwsr-xr-x\ndevnull-ok\n0\n"
    );
    // A non-root user is checked by the kernel against the layer's modes.
    let o = Command::new("chroot")
        .args(["--userspec=1000:1000"])
        .arg(&dir)
        .args(["/bin/sh", "-c", "cat /etc/hello && cat /secret/file"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello from the layer\n");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn view_serves_as_overlayfs_lower_dir_and_writes_land_in_upper() {
    if !require_fuse() || !require_root_and(&["tar", "mount", "umount"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let blob = busybox_layer(work.path());
    let lower = work.path().join("lower");
    let (upper, wd, merged) = (
        work.path().join("upper"),
        work.path().join("work"),
        work.path().join("merged"),
    );
    for d in [&lower, &upper, &wd, &merged] {
        fs::create_dir(d).unwrap();
    }
    let m = mount(Arc::new(tree(&[blob])), &lower, &MountOptions::default()).unwrap();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        wd.display()
    );
    let ok = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged)
        .status()
        .unwrap()
        .success();
    assert!(ok, "overlay mount over the FUSE lower dir failed");
    fs::write(merged.join("etc/new"), b"written through overlay\n").unwrap();
    let mut hello = fs::read(merged.join("etc/hello")).unwrap();
    hello.extend_from_slice(b"appended\n");
    fs::write(merged.join("etc/hello"), &hello).unwrap();
    fs::remove_file(merged.join("secret/file")).unwrap();
    assert_eq!(
        fs::read(merged.join("bin/busybox")).unwrap(),
        fs::read("/bin/busybox").unwrap()
    );
    run(Command::new("umount").arg(&merged));

    assert_eq!(
        fs::read(upper.join("etc/new")).unwrap(),
        b"written through overlay\n"
    );
    assert_eq!(fs::read(upper.join("etc/hello")).unwrap(), hello);
    let wh = fs::symlink_metadata(upper.join("secret/file")).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout expected"
    );
    assert!(
        !upper.join("bin/busybox").exists(),
        "untouched files stay in lower"
    );
    // The lower view is unchanged.
    assert_eq!(
        fs::read(lower.join("etc/hello")).unwrap(),
        b"hello from the layer\n"
    );
    assert!(!lower.join("etc/new").exists());
    assert!(lower.join("secret/file").exists());
    m.unmount().unwrap();
}

/// Not a test on its own: when D2V_FUSE_SERVE is set, mounts and serves
/// forever so the parent test can SIGKILL it.
#[test]
fn serve_helper() {
    let (Ok(dir), Ok(blob)) = (
        std::env::var("D2V_FUSE_SERVE"),
        std::env::var("D2V_FUSE_BLOB"),
    ) else {
        return;
    };
    let t = Arc::new(tree(&[PathBuf::from(blob)]));
    let _m = mount(t, Path::new(&dir), &MountOptions::default()).unwrap();
    println!("READY");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn small_layer(work: &Path) -> PathBuf {
    let blob = work.join("small.tar");
    let mut b = tar::Builder::new(fs::File::create(&blob).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(6);
    b.append_data(&mut h, "hello", &b"world\n"[..]).unwrap();
    b.finish().unwrap();
    blob
}

#[test]
fn killed_server_leaves_no_stale_mount() {
    if !require_fuse() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let blob = small_layer(work.path());
    let dir = work.path().join("mnt");
    fs::create_dir(&dir).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "mount::serve_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("D2V_FUSE_SERVE", &dir)
        .env("D2V_FUSE_BLOB", &blob)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.unwrap().contains("READY")),
        "server never became ready"
    );
    assert!(mounted(&dir));
    assert_eq!(fs::read(dir.join("hello")).unwrap(), b"world\n");
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until("the auto-unmount after SIGKILL", || !mounted(&dir));
}

#[test]
fn bad_mountpoints_give_clear_errors() {
    if !require_fuse() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let blob = small_layer(work.path());
    let t = Arc::new(tree(std::slice::from_ref(&blob)));
    let o = MountOptions::default();
    let missing = work.path().join("missing");
    assert!(matches!(
        mount(t.clone(), &missing, &o),
        Err(MountError::NotFound(_))
    ));
    assert!(matches!(
        mount(t.clone(), &blob, &o),
        Err(MountError::NotADirectory(_))
    ));
    let full = work.path().join("full");
    write(&full.join("x"), b"x");
    assert!(matches!(
        mount(t.clone(), &full, &o),
        Err(MountError::NotEmpty(_))
    ));
    let dir = work.path().join("mnt");
    fs::create_dir(&dir).unwrap();
    let m = mount(t.clone(), &dir, &o).unwrap();
    let again = mount(t.clone(), &dir, &o);
    assert!(
        matches!(again, Err(MountError::AlreadyMounted(_))),
        "{again:?}"
    );
    let msg = again.unwrap_err().to_string();
    assert!(msg.contains("already a mount point"), "{msg}");
    // Unmounting from outside ends `wait`.
    let waiter = std::thread::spawn(move || m.wait());
    unmount(&dir).unwrap();
    let start = Instant::now();
    while !waiter.is_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "wait() did not return"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!is_mountpoint(&dir.canonicalize().unwrap()));
    assert!(matches!(unmount(&dir), Err(MountError::NotMounted(_))));
}

#[test]
fn single_threaded_mount_without_auto_unmount_works() {
    if !require_fuse() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let blob = small_layer(work.path());
    let dir = work.path().join("mnt");
    fs::create_dir(&dir).unwrap();
    let o = MountOptions {
        threads: 1,
        auto_unmount: false,
        ..MountOptions::default()
    };
    let tree: MergedTree = tree(&[blob]);
    let m = mount(Arc::new(tree), &dir, &o).unwrap();
    assert_eq!(fs::read(dir.join("hello")).unwrap(), b"world\n");
    drop(m);
    assert!(!mounted(&dir));
}

#[test]
fn default_mount_is_nosuid_nodev_and_private() {
    if !require_fuse() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let blob = small_layer(work.path());
    let dir = work.path().join("mnt");
    fs::create_dir(&dir).unwrap();
    let m = mount(Arc::new(tree(&[blob])), &dir, &MountOptions::default()).unwrap();
    let line = fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .find(|l| l.contains(dir.to_str().unwrap()))
        .unwrap()
        .to_string();
    drop(m);
    let opts: Vec<&str> = line.split(' ').nth(3).unwrap().split(',').collect();
    assert!(
        opts.contains(&"nosuid") && opts.contains(&"nodev"),
        "{line}"
    );
    assert!(!opts.contains(&"default_permissions"), "{line}");
}

#[test]
fn default_mount_unmounts_on_drop() {
    if !require_fuse() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let blob = small_layer(work.path());
    let dir = work.path().join("mnt");
    fs::create_dir(&dir).unwrap();
    let m = mount(Arc::new(tree(&[blob])), &dir, &MountOptions::default()).unwrap();
    assert_eq!(fs::read(dir.join("hello")).unwrap(), b"world\n");
    drop(m);
    assert!(!mounted(&dir));
}
