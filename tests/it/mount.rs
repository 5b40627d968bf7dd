//! `d2v mount` / `d2v umount`: the lazy FUSE view of an image, as a user and as the
//! lower dir of a RUN step (chroot, overlayfs).

use crate::harness;

use harness::tree::{assert_same, describe, Ignore};
use harness::{is_mounted, require_root_and, sh, D2v, Mounted};

use harness::fixture;

#[test]
fn debian_through_the_mount_matches_the_extracted_tree() {
    if !require_root_and(&["tar"]) {
        return;
    }
    let d2v = D2v::new();
    d2v.import(&format!("rootfs:{}", fixture("debian.tar")), "debian");
    let m = Mounted::new(&d2v, "debian");
    let extracted = tempfile::tempdir_in("/var/tmp").unwrap();
    sh(&format!(
        "tar --xattrs --xattrs-include='*' --numeric-owner -xpf {} -C {}",
        fixture("debian.tar"),
        extracted.path().display()
    ));
    let ignore = Ignore {
        mtime: false,
        dir_size: true,
    };
    let a = describe(extracted.path(), ignore);
    let b = describe(m.path(), ignore);
    assert!(
        a.len() > 5000,
        "a Debian tree has thousands of paths, got {}",
        a.len()
    );
    assert_same("tar -x", &a, "d2v mount", &b);
    // The capability on ping survives (it is what lets ping run unprivileged).
    let caps = sh(&format!("getcap {}/usr/bin/ping", m.path().display()));
    assert!(caps.contains("cap_net_raw"), "{caps}");
}

#[test]
fn chroot_and_overlay_over_the_mount() {
    if !require_root_and(&["chroot"]) {
        return;
    }
    let d2v = D2v::new();
    d2v.import(&format!("oci:{}:latest", fixture("busybox-oci")), "bb");
    let m = Mounted::new(&d2v, "bb");
    let out = sh(&format!(
        "chroot {} /bin/sh -c 'echo hello from $(id -u) in $(pwd); ls /bin | wc -l'",
        m.path().display()
    ));
    assert!(out.starts_with("hello from 0 in /"), "{out}");
    // A non-root user inside the chroot sees modes enforced by the kernel.
    let out = sh(&format!(
        "chroot --userspec=1000:1000 {} /bin/sh -c 'head -1 /etc/passwd; touch /etc/x 2>&1 || echo denied'",
        m.path().display()
    ));
    assert!(
        out.starts_with("root:x:0:0:") && out.contains("denied"),
        "{out}"
    );

    // Kernel overlayfs with the FUSE mount as its lower dir: writes land in upper only.
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let w = work.path().display().to_string();
    let wp = work.path();
    sh(&format!("mkdir -p {w}/upper {w}/work {w}/merged"));
    sh(&format!(
        "mount -t overlay overlay -o lowerdir={},upperdir={w}/upper,workdir={w}/work {w}/merged",
        m.path().display()
    ));
    let result = std::panic::catch_unwind(|| {
        sh(&format!(
            "chroot {w}/merged /bin/sh -c 'echo new > /etc/new-file; rm /etc/group; mkdir -p /srv/a'"
        ));
        assert_eq!(
            std::fs::read_to_string(wp.join("upper/etc/new-file")).unwrap(),
            "new\n"
        );
        assert!(!m.path().join("etc/new-file").exists(), "the lower changed");
        assert!(m.path().join("etc/group").exists(), "the lower lost a file");
        assert!(!wp.join("merged/etc/group").exists());
        assert!(wp.join("upper/srv/a").is_dir());
    });
    sh(&format!("umount {w}/merged"));
    result.unwrap();
}

#[test]
fn busy_or_bad_mountpoints_and_missing_images_fail_clearly() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = D2v::new();
    d2v.import(&format!("rootfs:{}", fixture("busybox.tar")), "bb");
    let m = Mounted::new(&d2v, "bb");
    let err = d2v.fails(&["mount", "bb", m.path().to_str().unwrap()]);
    assert!(
        err.contains("not empty") || err.contains("already"),
        "{err}"
    );
    let err = d2v.fails(&["mount", "bb", "/does/not/exist"]);
    assert!(err.contains("/does/not/exist"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = d2v.fails(&["mount", "nope", empty.path().to_str().unwrap()]);
    assert!(err.contains("no image named \"nope\""), "{err}");
    assert!(!is_mounted(empty.path()));
}

#[test]
fn a_killed_server_leaves_no_stale_mount() {
    if !require_root_and(&["fusermount3"]) {
        return;
    }
    let d2v = D2v::new();
    d2v.import(&format!("rootfs:{}", fixture("busybox.tar")), "bb");
    let dir = tempfile::tempdir().unwrap();
    let mut server = d2v
        .cmd()
        .args(["mount", "bb", dir.path().to_str().unwrap(), "--foreground"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !is_mounted(dir.path()) {
        assert!(std::time::Instant::now() < deadline, "mount never appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(dir.path().join("bin/busybox").exists());
    server.kill().unwrap();
    server.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while is_mounted(dir.path()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the mount outlived its killed server"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn umount_stops_the_background_server() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = D2v::new();
    d2v.import(&format!("rootfs:{}", fixture("busybox.tar")), "bb");
    let dir = tempfile::tempdir().unwrap();
    d2v.ok(&["mount", "bb", dir.path().to_str().unwrap()]);
    let servers = || {
        sh(&format!(
            "pgrep -f '[m]ount bb {} ' || true",
            dir.path().display()
        ))
    };
    assert!(!servers().trim().is_empty(), "no server process");
    d2v.ok(&["umount", dir.path().to_str().unwrap()]);
    assert!(!is_mounted(dir.path()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !servers().trim().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "server still running after umount"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Writes `bytes` to a file in `dir` and imports it as a rootfs image.
fn import_tar(d2v: &D2v, dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::process::Output {
    let path = dir.join(format!("{name}.tar"));
    std::fs::write(&path, bytes).unwrap();
    d2v.run(&[
        "import",
        &format!("rootfs:{}", path.display()),
        "--as",
        name,
    ])
}

#[test]
fn import_refuses_layers_no_view_or_image_could_hold() {
    // Issue 12 item 13: main imported uid 4294967296 as uid 0, and accepted a
    // NUL in a path and a 4096-byte symlink target (images that then could
    // be neither mounted nor packed).
    use d2v_tar::fixtures::Tar;
    let d2v = D2v::new();
    let dir = tempfile::tempdir().unwrap();
    let long = vec![b't'; 4096];
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "uid",
            Tar::new()
                .pax(&[(b"uid", b"4294967296")])
                .file(b"f", b"x")
                .end(),
            "tar entry \"f\" (header at byte 0): invalid pax uid \"4294967296\"",
        ),
        (
            "nul",
            Tar::new().pax(&[(b"path", b"a\0b")]).file(b"f", b"x").end(),
            "contains a NUL byte",
        ),
        (
            "symlink",
            Tar::new()
                .pax(&[(b"linkpath", &long[..])])
                .symlink(b"s", b"x")
                .end(),
            "symlink \"s\" has a target of 4096 bytes",
        ),
    ];
    for (name, bytes, message) in cases {
        let out = import_tar(&d2v, dir.path(), name, &bytes);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: imported");
        assert!(err.contains(message), "{name}: {err}");
        assert!(!d2v.ok(&["images"]).contains(name), "{name}: named anyway");
    }
}

#[test]
fn a_later_file_replaces_a_directory_in_the_view_and_the_image() {
    // Issue 12 item 13: a layer with dir x, x/y, then file x showed the directory.
    if !require_root_and(&["debugfs"]) {
        return;
    }
    use d2v_tar::fixtures::Tar;
    let d2v = D2v::new();
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tar::new();
    t.dir(b"x").file(b"x/y", b"under").file(b"x", b"the file");
    let out = import_tar(&d2v, dir.path(), "later", &t.end());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    {
        let m = Mounted::new(&d2v, "later");
        assert_eq!(std::fs::read(m.path().join("x")).unwrap(), b"the file");
    }
    let image = dir.path().join("later.ext4");
    d2v.ok(&["pack", "later", "-o", image.to_str().unwrap()]);
    let x = sh(&format!(
        "debugfs -R 'cat /x' {} 2>/dev/null",
        image.display()
    ));
    assert_eq!(x.trim_end_matches('\0'), "the file");
}
