//! `d2v pack NAME`: an image of the store becomes an ext4 image that e2fsck
//! accepts, that holds exactly the image's tree plus the init and its config,
//! and that is the same bytes every time.

use crate::harness;

use harness::tree::{assert_same, describe, Ignore};
use harness::{require_root_and, sh, D2v};
use std::path::Path;

use harness::fixture;

fn fsck_clean(image: &Path) {
    let out = std::process::Command::new("e2fsck")
        .args(["-fn"])
        .arg(image)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "e2fsck -fn failed:\n{text}");
    for bad in ["wrong", "Fix?", "corrupt"] {
        assert!(!text.contains(bad), "e2fsck said {bad:?}:\n{text}");
    }
}

/// Loop-mounts `image` read-only for the life of the guard.
struct LoopMount(tempfile::TempDir);

impl LoopMount {
    fn new(image: &Path) -> LoopMount {
        let dir = tempfile::tempdir().unwrap();
        sh(&format!(
            "mount -o loop,ro {} {}",
            image.display(),
            dir.path().display()
        ));
        LoopMount(dir)
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[test]
fn debian_packs_into_a_clean_image_with_the_same_tree() {
    if !require_root_and(&["e2fsck", "getcap"]) {
        return;
    }
    let d2v = D2v::new();
    d2v.import(&format!("rootfs:{}", fixture("debian.tar")), "debian");
    let out = tempfile::tempdir_in("/var/tmp").unwrap();
    let image = out.path().join("debian.ext4");
    let summary = d2v.ok(&["pack", "debian", "-o", image.to_str().unwrap()]);
    assert!(summary.contains("files"), "{summary}");
    assert!(out.path().join("vm.json").is_file());
    fsck_clean(&image);

    let mnt = tempfile::tempdir().unwrap();
    d2v.ok(&["mount", "debian", mnt.path().to_str().unwrap()]);
    let from_store = describe(
        mnt.path(),
        Ignore {
            mtime: false,
            dir_size: true,
        },
    );
    d2v.ok(&["umount", mnt.path().to_str().unwrap()]);

    let lm = LoopMount::new(&image);
    let mut packed = describe(
        lm.0.path(),
        Ignore {
            mtime: false,
            dir_size: true,
        },
    );
    // What pack adds: the init (Debian's /sbin is a symlink to usr/sbin) and its config.
    let init = packed
        .remove(b"usr/sbin/d2v-init".as_slice())
        .expect("init in usr/sbin");
    assert!(init.starts_with("file mode=100755 uid=0 gid=0"), "{init}");
    assert!(packed.remove(b"etc/d2v/config.json".as_slice()).is_some());
    assert!(packed.remove(b"etc/d2v".as_slice()).is_some());
    assert!(packed.remove(b"lost+found".as_slice()).is_some());
    // The root dir's own metadata comes from the image, lost+found adds a link.
    packed.remove(b".".as_slice());
    let mut from_store = from_store;
    from_store.remove(b".".as_slice());
    assert_same("d2v mount", &from_store, "packed ext4", &packed);
    let caps = sh(&format!("getcap {}/usr/bin/ping", lm.0.path().display()));
    assert!(caps.contains("cap_net_raw"), "{caps}");
    drop(lm);
    fsck_clean(&image);
}

#[test]
fn packing_is_deterministic_and_unchanged_images_are_reused() {
    if !require_root_and(&["e2fsck"]) {
        return;
    }
    let d2v = D2v::new();
    d2v.import(&format!("oci:{}:latest", fixture("busybox-oci")), "bb");
    let out = tempfile::tempdir().unwrap();
    let a = out.path().join("a.ext4");
    let b = out.path().join("b.ext4");
    let pack = |p: &Path| {
        d2v.cmd()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["pack", "bb", "-o", p.to_str().unwrap()])
            .output()
            .unwrap()
    };
    assert!(pack(&a).status.success());
    assert!(pack(&b).status.success());
    let hash = |p: &Path| sh(&format!("sha256sum < {}", p.display()));
    assert_eq!(hash(&a), hash(&b), "same image, different bytes");
    fsck_clean(&a);

    let again = pack(&a);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(text.contains("reused"), "{text}");
    // A changed output file is packed again, not trusted.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&a)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let again = pack(&a);
    assert!(!String::from_utf8_lossy(&again.stdout).contains("reused"));
    assert_eq!(hash(&a), hash(&b));
}

#[test]
fn the_runtime_config_carries_the_image_config_with_resolved_ids() {
    if !require_root_and(&["debugfs"]) {
        return;
    }
    let d2v = D2v::new();
    d2v.import(&format!("oci:{}:latest", fixture("busybox-oci")), "bb");
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM bb\nUSER app\nWORKDIR /home/app\nENV A=1 B=\"two words\"\nEXPOSE 8080\n\
         STOPSIGNAL SIGQUIT\nLABEL org.example=yes\nENTRYPOINT [\"/bin/echo\"]\nCMD [\"hi\"]\n",
    )
    .unwrap();
    d2v.ok(&["build", "-t", "cfg", ctx.path().to_str().unwrap()]);
    let out = tempfile::tempdir().unwrap();
    let image = out.path().join("cfg.ext4");
    d2v.ok(&["pack", "cfg", "-o", image.to_str().unwrap()]);
    let json = sh(&format!(
        "debugfs -R 'cat /etc/d2v/config.json' {} 2>/dev/null",
        image.display()
    ));
    let c: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(c["entrypoint"], serde_json::json!(["/bin/echo"]));
    assert_eq!(c["cmd"], serde_json::json!(["hi"]));
    assert_eq!(c["user"], "app");
    assert_eq!(c["uid"], 1000);
    assert_eq!(c["gid"], 1000);
    assert_eq!(c["workdir"], "/home/app");
    assert_eq!(c["stop_signal"], "SIGQUIT");
    assert_eq!(c["exposed_ports"], serde_json::json!(["8080/tcp"]));
    assert_eq!(c["labels"]["org.example"], "yes");
    let env: Vec<String> = serde_json::from_value(c["env"].clone()).unwrap();
    assert!(env.contains(&"B=two words".to_string()), "{env:?}");
    let sbin = sh(&format!(
        "debugfs -R 'stat /sbin/d2v-init' {} 2>/dev/null",
        image.display()
    ));
    assert!(sbin.contains("Mode:  0755"), "{sbin}");
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn sha(p: &Path) -> String {
    sh(&format!("sha256sum < {}", p.display()))
}

#[test]
fn a_failing_pack_from_tar_leaves_the_old_image_and_names_the_entry() {
    // Issue 12 items 10, 12 and 15: main truncated the old image first,
    // packed a tar cut inside a header without its rest, and said
    // "..: invalid path" without naming the entry.
    use d2v_tar::fixtures::Tar;
    let d2v = D2v::new();
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let image = out.path().join("img.ext4");
    let img = image.to_str().unwrap();
    let good = src.path().join("good.tar");
    std::fs::write(&good, Tar::new().file(b"etc/hostname", b"vm\n").end()).unwrap();
    d2v.ok(&["pack", "--from-tar", good.to_str().unwrap(), "-o", img]);
    let before = sha(&image);
    let mut two = Tar::new();
    two.file(b"a", b"x").file(b"b", b"y");
    let cases = [
        ("cut.tar", two.end()[..1024 + 100].to_vec(), "truncated tar"),
        (
            "escape.tar",
            Tar::new().file(b"a/../../b", b"x").end(),
            "tar entry \"a/../../b\" has a '..' component",
        ),
        (
            "uid.tar",
            Tar::new().pax(&[(b"uid", b"x1")]).file(b"f", b"x").end(),
            "invalid pax uid",
        ),
    ];
    for (name, bytes, message) in cases {
        let bad = src.path().join(name);
        std::fs::write(&bad, bytes).unwrap();
        let err = d2v.fails(&["pack", "--from-tar", bad.to_str().unwrap(), "-o", img]);
        assert!(err.contains(message), "{name}: {err}");
        assert_eq!(sha(&image), before, "{name}: the old image changed");
        assert_eq!(listing(out.path()), ["img.ext4", "vm.json"], "{name}");
    }
}

#[test]
fn a_full_disk_or_a_kill_leaves_the_old_image_and_nothing_else() {
    // Issue 12 item 10: main left a truncated or partial image, and
    // `pack NAME` left .d2v-pack-* files that nothing removed.
    if !require_root_and(&["mount", "umount"]) {
        return;
    }
    use d2v_tar::fixtures::Tar;
    let d2v = D2v::new();
    let src = tempfile::tempdir_in("/var/tmp").unwrap();
    let small = tempfile::tempdir().unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=12m d2v-test {}",
        small.path().display()
    ));
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(small.path());
    let image = small.path().join("img.ext4");
    let img = image.to_str().unwrap();
    let good = src.path().join("good.tar");
    std::fs::write(&good, Tar::new().file(b"f", b"small").end()).unwrap();
    let flags = ["--no-journal", "--free", "0", "-o", img];
    d2v.ok(&[
        &["pack", "--from-tar", good.to_str().unwrap()][..],
        &flags[..],
    ]
    .concat());
    let before = sha(&image);

    // ENOSPC: 20 MiB of data does not fit the 12 MiB file system.
    let big = src.path().join("big.tar");
    std::fs::write(&big, Tar::new().file(b"big", &vec![7u8; 20 << 20]).end()).unwrap();
    let err = d2v.fails(
        &[
            &["pack", "--from-tar", big.to_str().unwrap()][..],
            &flags[..],
        ]
        .concat(),
    );
    assert!(err.contains("No space left"), "{err}");
    assert_eq!(sha(&image), before);
    assert_eq!(listing(small.path()), ["img.ext4", "vm.json"]);

    // kill -9 while the tar still streams in on standard input.
    let mut child = d2v
        .cmd()
        .args([&["pack", "--from-tar", "-"][..], &flags[..]].concat())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&vec![0x55u8; 1 << 20]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(sha(&image), before);
    assert_eq!(listing(small.path()), ["img.ext4", "vm.json"]);

    // kill -9 in the middle of `pack NAME`, and a leftover of a dead pack.
    d2v.import(&format!("rootfs:{}", fixture("debian.tar")), "debian");
    std::fs::write(small.path().join(".d2v-pack-4000000-x"), b"stale").unwrap();
    let out = tempfile::tempdir_in("/var/tmp").unwrap();
    let mut child = d2v
        .cmd()
        .args([
            "pack",
            "debian",
            "-o",
            out.path().join("d.ext4").to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it holds the image file open (it is then writing it).
    let fds = format!("/proc/{}/fd", child.id());
    let writing = || {
        std::fs::read_dir(&fds)
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(out.path())))
    };
    let started = std::time::Instant::now();
    while !writing() && started.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        listing(out.path())
            .iter()
            .filter(|n| n.starts_with(".d2v-pack"))
            .count(),
        0
    );
    d2v.ok(&[
        &["pack", "--from-tar", good.to_str().unwrap()][..],
        &flags[..],
    ]
    .concat());
    assert_eq!(
        listing(small.path()),
        ["img.ext4", "vm.json"],
        "stale file kept"
    );
}
