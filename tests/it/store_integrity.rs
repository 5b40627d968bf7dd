//! A store that never lies: `d2v prune` beside imports and builds breaks
//! nothing, a changed byte in a stored layer is noticed before anything uses
//! it, `d2v check` finds and repairs what is damaged, one damaged image does
//! not hide the others, and prune gets past the dead mounts of a killed build.

use crate::harness;
use harness::{build, stderr, with_busybox};

use d2v_testkit::procs;
use harness::{fixture, mount_points, require_root_and, sh, D2v};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A build context holding `Dockerfile` and a file `f`.
fn context(dockerfile: &str, f: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(dir.path().join("f"), f).unwrap();
    dir
}

/// The stored layer blob of image `name` (its only or last layer).
fn top_layer(d2v: &D2v, name: &str) -> PathBuf {
    let manifest: serde_json::Value =
        serde_json::from_str(&d2v.ok(&["inspect", "--manifest", name])).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let digest = layers.last().unwrap()["digest"].as_str().unwrap();
    d2v.home()
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

#[test]
fn prune_beside_imports_and_builds_breaks_nothing() {
    if !require_root_and(&["tar"]) {
        return;
    }
    let d2v = Arc::new(with_busybox("busybox"));
    // Distinct layers: busybox with one more file each, so that every import
    // writes a blob that nothing names yet.
    let tars = tempfile::tempdir().unwrap();
    let n_imports = 12;
    for i in 0..n_imports {
        let t = tars.path().display();
        sh(&format!(
            "cp {} {t}/t{i}.tar && mkdir -p {t}/x{i} && echo {i} > {t}/x{i}/id-{i} && \
             tar -rf {t}/t{i}.tar -C {t}/x{i} id-{i}",
            fixture("busybox.tar")
        ));
    }
    let done = Arc::new(AtomicBool::new(false));
    let pruner = {
        let (d2v, done) = (d2v.clone(), done.clone());
        std::thread::spawn(move || {
            let mut runs = 0;
            while !done.load(Ordering::Relaxed) {
                let out = d2v.run(&["prune"]);
                assert!(out.status.success(), "prune failed: {}", stderr(&out));
                runs += 1;
            }
            runs
        })
    };
    let importer = {
        let d2v = d2v.clone();
        let dir = tars.path().to_path_buf();
        std::thread::spawn(move || {
            (0..n_imports)
                .map(|i| {
                    let src = format!("rootfs:{}/t{i}.tar", dir.display());
                    (
                        format!("imp{i}"),
                        d2v.run(&["import", &src, "--as", &format!("imp{i}")]),
                    )
                })
                .collect::<Vec<_>>()
        })
    };
    let mut results = Vec::new();
    for i in 0..6 {
        let ctx = context(
            &format!("FROM busybox\nRUN echo run-{i} > /built-{i}\nCOPY f /f\n"),
            &format!("file {i}\n"),
        );
        results.push((
            format!("b{i}"),
            build(&d2v, &format!("b{i}"), ctx.path(), &[]),
        ));
    }
    results.extend(importer.join().unwrap());
    done.store(true, Ordering::Relaxed);
    let prunes = pruner.join().unwrap();
    assert!(prunes > 3, "prune ran {prunes} times only");

    for (name, out) in &results {
        assert!(out.status.success(), "{name} failed: {}", stderr(out));
    }
    // Every image is whole: every blob, index and reference checks out.
    let check = d2v.run(&["check"]);
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        stderr(&check)
    );
    let images: Vec<serde_json::Value> =
        serde_json::from_str(&d2v.ok(&["images", "--json"])).unwrap();
    assert_eq!(images.len(), 1 + results.len());
    assert!(
        images.iter().all(|i| i.get("damaged").is_none()),
        "{images:?}"
    );
}

#[test]
fn a_changed_layer_byte_is_noticed_before_anything_trusts_it() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    let pack_dir = tempfile::tempdir().unwrap();
    let out_img = pack_dir.path().join("bb.ext4");
    let blob = top_layer(&d2v, "busybox");
    // Four bytes of etc/passwd's data, overwritten in place.
    let mut bytes = std::fs::read(&blob).unwrap();
    let at = bytes
        .windows(10)
        .position(|w| w == b"root:x:0:0")
        .expect("etc/passwd in the layer");
    bytes[at..at + 4].copy_from_slice(b"evil");
    std::fs::write(&blob, &bytes).unwrap();

    let mnt = tempfile::tempdir().unwrap();
    let err = d2v.fails(&["mount", "busybox", mnt.path().to_str().unwrap()]);
    assert!(err.contains("is damaged"), "mount: {err}");
    assert!(!mount_points().iter().any(|m| Path::new(m) == mnt.path()));
    let err = d2v.fails(&["pack", "busybox", "-o", out_img.to_str().unwrap()]);
    assert!(err.contains("is damaged"), "pack: {err}");
    assert!(!out_img.exists());
    let ctx = context("FROM busybox\nRUN cat /etc/passwd\n", "");
    let out = build(&d2v, "uses", ctx.path(), &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is damaged"),
        "build: {}",
        stderr(&out)
    );

    // check finds it (exit 1) and --repair drops the blob and the name.
    let out = d2v.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let found = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(found.contains("its bytes hash to"), "{found}");
    assert!(found.contains("image busybox"), "{found}");
    let repaired = d2v.ok(&["check", "--repair"]);
    assert!(repaired.contains("(removed)"), "{repaired}");
    assert!(repaired.contains("(name removed)"), "{repaired}");
    assert!(!blob.exists());
    assert_eq!(d2v.ok(&["images", "--json"]).trim(), "[]");
    let clean = d2v.ok(&["check"]);
    assert!(clean.is_empty(), "{clean}");
}

#[test]
fn a_garbled_layer_index_is_rebuilt() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    let blob = top_layer(&d2v, "busybox");
    let hex = blob.file_name().unwrap().to_str().unwrap();
    let idx = d2v.home().join(format!("d2v/layers/{hex}.idx"));
    let good = std::fs::read(&idx).unwrap();
    // Random bytes after the header (which stays intact).
    let mut bad = good.clone();
    let mut x = 0x9e3779b9u32;
    for b in &mut bad[200..] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    std::fs::write(&idx, &bad).unwrap();
    // A mount does not trust it: it is rebuilt, and the names are right.
    {
        let mnt = harness::Mounted::new(&d2v, "busybox");
        let passwd = std::fs::read_to_string(mnt.path().join("etc/passwd")).unwrap();
        assert!(passwd.starts_with("root:x:0:0"), "{passwd}");
    }
    assert_eq!(std::fs::read(&idx).unwrap(), good, "rebuilt byte for byte");
    // `d2v check` finds a garbled index, and --repair rebuilds it.
    std::fs::write(&idx, &bad).unwrap();
    let out = d2v.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let found = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(found.contains("does not match its blob"), "{found}");
    let repaired = d2v.ok(&["check", "--repair"]);
    assert!(repaired.contains("(rebuilt)"), "{repaired}");
    assert_eq!(std::fs::read(&idx).unwrap(), good);
    d2v.ok(&["check"]);
}

#[test]
fn one_damaged_image_does_not_hide_the_others() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    d2v.import(&format!("rootfs:{}", fixture("busybox.tar")), "other");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d2v.home().join("index.json")).unwrap())
            .unwrap();
    let entry = manifest["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "other")
        .unwrap();
    let hex = entry["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    std::fs::remove_file(d2v.home().join("blobs/sha256").join(hex)).unwrap();

    let out = d2v.run(&["images"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.lines().any(|l| l.starts_with("busybox ")), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("other ") && l.contains("DAMAGED")),
        "{table}"
    );
    assert!(
        stderr(&out).contains("image \"other\" is damaged"),
        "{}",
        stderr(&out)
    );
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&d2v.ok(&["images", "--json"])).unwrap();
    assert_eq!(json.len(), 2);
    let err = d2v.fails(&["inspect", "other"]);
    assert!(err.contains("image \"other\" is damaged"), "{err}");
}

#[test]
fn prune_gets_past_the_dead_mounts_of_a_killed_build() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    // The quotes keep the progress line (the command) from saying "started".
    let ctx = context("FROM busybox\nRUN echo st''arted; sleep 297\n", "");
    let mut child = d2v
        .cmd()
        .args(["build", "-t", "k", "--progress", "plain"])
        .arg(ctx.path())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    // Wait until the step's `sleep 297` runs below this build (not anywhere
    // else on the machine).
    let seen = harness::drain(child.stderr.take().unwrap());
    let tree = match procs::wait_for_descendant(&mut child, "sleep 297", Duration::from_secs(120)) {
        Ok(tree) => tree,
        Err(status) => panic!("build ended early ({status}): {}", seen.join().unwrap()),
    };
    // kill -9 the build's whole process group.
    // SAFETY: signalling the process group of a child this test started.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    child.wait().unwrap();
    let home = d2v.home().to_str().unwrap().to_string();
    // And whatever of its tree is in other groups (the step is in its own
    // session), so that only dead mounts are left for prune.
    for p in tree.iter().filter(|p| p.alive()) {
        // SAFETY: signalling a process of the build this test started.
        unsafe { libc::kill(p.pid as i32, libc::SIGKILL) };
    }

    let out = d2v.run(&["prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("could not remove"),
        "{}",
        stderr(&out)
    );
    let left: Vec<_> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(&home))
        .collect();
    assert!(left.is_empty(), "mounts left: {left:?}");
    let tmp: Vec<_> = std::fs::read_dir(d2v.home().join("d2v/tmp"))
        .unwrap()
        .collect();
    assert!(tmp.is_empty(), "scratch left: {tmp:?}");
}

#[test]
fn prune_reports_what_it_cannot_remove_and_goes_on() {
    if !require_root_and(&["chattr"]) {
        return;
    }
    let d2v = D2v::new();
    d2v.ok(&["images"]); // creates the store
                         // Two scratch entries of a process that is gone (no pid is this large),
                         // one of them holding a file nobody may remove.
    let tmp = d2v.home().join("d2v/tmp");
    let stuck = tmp.join("4194399-0-stuck");
    let gone = tmp.join("4194399-1-gone");
    for dir in [&stuck, &gone] {
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/f"), b"x").unwrap();
    }
    let immutable = stuck.join("sub/f");
    sh(&format!("chattr +i {}", immutable.display()));
    struct Mutable(PathBuf);
    impl Drop for Mutable {
        fn drop(&mut self) {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.0)
                .status();
        }
    }
    let _undo = Mutable(immutable);

    let out = d2v.run(&["prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("could not remove {}", stuck.display())),
        "{}",
        stderr(&out)
    );
    assert!(!gone.exists(), "prune went on past the stuck entry");
}
