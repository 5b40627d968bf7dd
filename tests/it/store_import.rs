//! The store and `d2v import`: OCI layouts, docker archives and rootfs sources go in,
//! other OCI tools read the result, and bad input is refused without leaving anything.

use crate::harness;

use harness::{require_root_and, sh, D2v};
use std::path::{Path, PathBuf};

use harness::fixture;

/// Names of files in the store's scratch directory.
fn scratch_entries(d2v: &D2v) -> Vec<String> {
    std::fs::read_dir(d2v.home().join("d2v/tmp"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn oci_layout_import_is_readable_by_skopeo_and_umoci() {
    if !require_root_and(&["skopeo", "umoci"]) {
        return;
    }
    let d2v = D2v::new();
    let id = d2v.import(&format!("oci:{}:latest", fixture("busybox-oci")), "bb:1");
    assert!(id.trim().starts_with("sha256:"), "{id}");

    let list = d2v.ok(&["images"]);
    assert!(list.contains("bb:1"), "{list}");
    let config: serde_json::Value = serde_json::from_str(&d2v.ok(&["inspect", "bb:1"])).unwrap();
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);

    // Other OCI tools read the store as an ordinary OCI layout.
    let home = d2v.home().display().to_string();
    let inspected: serde_json::Value =
        serde_json::from_str(&sh(&format!("skopeo inspect --config oci:{home}:bb:1"))).unwrap();
    assert_eq!(inspected["config"]["Cmd"], config["config"]["Cmd"]);
    let raw: serde_json::Value =
        serde_json::from_str(&sh(&format!("skopeo inspect --raw oci:{home}:bb:1"))).unwrap();
    assert_eq!(raw["config"]["digest"].as_str().unwrap(), id.trim());
    let tags = sh(&format!("umoci ls --layout {home}"));
    assert!(tags.lines().any(|l| l == "bb:1"), "{tags}");
    let bundle = tempfile::tempdir().unwrap();
    sh(&format!(
        "umoci unpack --image {home}:bb:1 {}/b && test -x {}/b/rootfs/bin/busybox",
        bundle.path().display(),
        bundle.path().display()
    ));
    // Layers are kept uncompressed, and the compressed digest is remembered.
    let layer = &raw["layers"][0];
    assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar");
    let hex = layer["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    assert!(d2v
        .home()
        .join(format!("d2v/compressed/{hex}.json"))
        .is_file());
    assert!(d2v.home().join(format!("d2v/layers/{hex}.idx")).is_file());
}

#[test]
fn docker_archive_and_zstd_layers_import() {
    if !require_root_and(&["skopeo"]) {
        return;
    }
    let d2v = D2v::new();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().display();
    let src = fixture("busybox-oci");
    sh(&format!(
        "skopeo copy oci:{src}:latest docker-archive:{t}/bb.tar:busybox:latest && \
         skopeo copy --dest-compress-format zstd --dest-compress oci:{src}:latest oci:{t}/zst:latest"
    ));
    d2v.import(&format!("docker-archive:{t}/bb.tar"), "from-docker");
    d2v.import(&format!("oci:{t}/zst:latest"), "from-zstd");
    let a: serde_json::Value = serde_json::from_str(&d2v.ok(&["inspect", "from-docker"])).unwrap();
    let b: serde_json::Value = serde_json::from_str(&d2v.ok(&["inspect", "from-zstd"])).unwrap();
    // Whatever the packaging, the uncompressed layers are the same.
    assert_eq!(a["rootfs"]["diff_ids"], b["rootfs"]["diff_ids"]);
    let zst_layers: serde_json::Value =
        serde_json::from_str(&sh(&format!("skopeo inspect --raw oci:{t}/zst:latest"))).unwrap();
    assert!(zst_layers["layers"][0]["mediaType"]
        .as_str()
        .unwrap()
        .ends_with("zstd"));
}

#[test]
fn rootfs_import_from_tarball_and_directory_agree() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = D2v::new();
    d2v.import(&format!("rootfs:{}", fixture("busybox.tar")), "t");
    d2v.import(&format!("rootfs:{}", fixture("busybox-rootfs")), "d");
    let t: serde_json::Value = serde_json::from_str(&d2v.ok(&["inspect", "t"])).unwrap();
    let d: serde_json::Value = serde_json::from_str(&d2v.ok(&["inspect", "d"])).unwrap();
    assert_eq!(t["rootfs"]["diff_ids"], d["rootfs"]["diff_ids"]);
    assert_eq!(t["os"], "linux");
    let gz = tempfile::tempdir().unwrap();
    let gzpath = gz.path().join("bb.tar.gz");
    sh(&format!(
        "gzip -c {} > {}",
        fixture("busybox.tar"),
        gzpath.display()
    ));
    d2v.import(&format!("rootfs:{}", gzpath.display()), "gz");
    let g: serde_json::Value = serde_json::from_str(&d2v.ok(&["inspect", "gz"])).unwrap();
    assert_eq!(g["rootfs"]["diff_ids"], t["rootfs"]["diff_ids"]);
}

#[test]
fn corrupted_blob_is_refused_and_nothing_is_left() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = D2v::new();
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("bad");
    sh(&format!(
        "cp -a {} {}",
        fixture("busybox-oci"),
        copy.display()
    ));
    // Flip a byte in the (largest) layer blob.
    let layer = sh(&format!("ls -S {}/blobs/sha256 | head -1", copy.display()));
    let path = copy.join("blobs/sha256").join(layer.trim());
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let err = d2v.fails(&[
        "import",
        &format!("oci:{}:latest", copy.display()),
        "--as",
        "x",
    ]);
    assert!(
        err.contains("digest mismatch") || err.contains("decompress"),
        "{err}"
    );
    let images: serde_json::Value = serde_json::from_str(&d2v.ok(&["images", "--json"])).unwrap();
    assert_eq!(images, serde_json::json!([]));
    assert!(
        scratch_entries(&d2v).is_empty(),
        "{:?}",
        scratch_entries(&d2v)
    );
}

fn write_tar(path: &Path, entries: &[(&str, &[u8])]) {
    // Raw ustar headers, so that names the tar crate would refuse can be written.
    let mut out = Vec::new();
    for (name, data) in entries {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    std::fs::write(path, out).unwrap();
}

#[test]
fn malicious_and_broken_tarballs_are_refused() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = D2v::new();
    let tmp = tempfile::tempdir().unwrap();
    type Entries<'a> = Vec<(&'a str, &'a [u8])>;
    let cases: Vec<(&str, Entries)> = vec![
        ("dotdot", vec![("../../etc/evil", b"x")]),
        ("absolute", vec![("/etc/evil", b"x")]),
    ];
    for (name, entries) in cases {
        let path = tmp.path().join(format!("{name}.tar"));
        write_tar(&path, &entries);
        let err = d2v.fails(&[
            "import",
            &format!("rootfs:{}", path.display()),
            "--as",
            name,
        ]);
        assert!(err.contains("d2v: error"), "{name}: {err}");
    }
    // Truncated in the middle of a file's data.
    let good = std::fs::read(fixture("busybox.tar")).unwrap();
    let cut = tmp.path().join("cut.tar");
    std::fs::write(&cut, &good[..good.len() / 3 + 100]).unwrap();
    let err = d2v.fails(&[
        "import",
        &format!("rootfs:{}", cut.display()),
        "--as",
        "cut",
    ]);
    assert!(err.contains("d2v: error"), "{err}");
    assert!(!Path::new("/etc/evil").exists());
    let images: serde_json::Value = serde_json::from_str(&d2v.ok(&["images", "--json"])).unwrap();
    assert_eq!(images, serde_json::json!([]));
}

#[test]
fn missing_names_and_sources_give_clear_errors() {
    let d2v = D2v::new();
    let err = d2v.fails(&["inspect", "nope"]);
    assert!(err.contains("no image named \"nope\""), "{err}");
    let err = d2v.fails(&["rm", "nope"]);
    assert!(err.contains("no image named"), "{err}");
    let err = d2v.fails(&["import", "tarball:/x", "--as", "a"]);
    assert!(err.contains("unknown image source"), "{err}");
    let err = d2v.fails(&["import", "oci:/does/not/exist", "--as", "a"]);
    assert!(err.contains("/does/not/exist"), "{err}");
}

#[test]
fn rm_then_prune_collects_unreferenced_blobs() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = D2v::new();
    d2v.import(&format!("rootfs:{}", fixture("busybox.tar")), "a");
    d2v.import(&format!("oci:{}:latest", fixture("busybox-oci")), "b");
    let count = || {
        std::fs::read_dir(d2v.home().join("blobs/sha256"))
            .unwrap()
            .count()
    };
    let before = count();
    // Nothing unreferenced yet.
    d2v.ok(&["prune"]);
    assert_eq!(count(), before);
    d2v.ok(&["rm", "a"]);
    let out = d2v.ok(&["prune"]);
    assert!(out.contains("removed"), "{out}");
    assert!(count() < before);
    // The remaining image is intact.
    d2v.ok(&["inspect", "b"]);
    let idx = std::fs::read_dir(d2v.home().join("d2v/layers"))
        .unwrap()
        .count();
    assert_eq!(idx, 1, "only b's layer index remains");
}

#[test]
fn concurrent_imports_both_land() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = D2v::new();
    let src = format!("rootfs:{}", fixture("busybox.tar"));
    let mut children: Vec<_> = (0..4)
        .map(|i| {
            d2v.cmd()
                .args(["import", &src, "--as", &format!("c{i}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    let images: Vec<serde_json::Value> =
        serde_json::from_str(&d2v.ok(&["images", "--json"])).unwrap();
    let mut names: Vec<_> = images
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["c0", "c1", "c2", "c3"]);
}

/// A copy of the busybox OCI layout whose config lists other diff IDs (its
/// layer is fine, the config vouches for something else).
fn layout_with_wrong_diff_ids(dir: &Path) {
    use d2v::store::oci::Digest;
    sh(&format!(
        "cp -a {} {}",
        fixture("busybox-oci"),
        dir.display()
    ));
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let mut index = read(dir.join("index.json"));
    let mut manifest = read(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let mut config = read(blob(manifest["config"]["digest"].as_str().unwrap()));
    config["rootfs"]["diff_ids"][0] = Digest::of(b"another layer").to_string().into();
    let put = |value: &serde_json::Value| -> (String, usize) {
        let bytes = serde_json::to_vec(value).unwrap();
        let digest = Digest::of(&bytes).to_string();
        std::fs::write(blob(&digest), &bytes).unwrap();
        (digest, bytes.len())
    };
    let (digest, size) = put(&config);
    manifest["config"]["digest"] = digest.into();
    manifest["config"]["size"] = size.into();
    let (digest, size) = put(&manifest);
    index["manifests"][0]["digest"] = digest.into();
    index["manifests"][0]["size"] = size.into();
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn a_failed_import_leaves_no_decompressed_blob_behind() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = D2v::new();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("lying");
    layout_with_wrong_diff_ids(&layout);
    let err = d2v.fails(&["import", &format!("oci:{}", layout.display()), "--as", "x"]);
    assert!(err.contains("do not match the layers"), "{err}");
    let blobs: Vec<_> = std::fs::read_dir(d2v.home().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(blobs.is_empty(), "left behind: {blobs:?}");
    let indexes = std::fs::read_dir(d2v.home().join("d2v/layers"))
        .unwrap()
        .count();
    assert_eq!(indexes, 0);
}

/// Runs `d2v import SOURCE --as x`, killing it (and failing) after 60 s.
fn import_within_a_minute(d2v: &D2v, source: &str) -> std::process::Output {
    let mut child = d2v
        .cmd()
        .args(["import", source, "--as", "x"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("d2v import {source} still reading after 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_layout_layer_longer_than_declared_or_endless_is_refused() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = D2v::new();
    let tmp = tempfile::tempdir().unwrap();
    for (case, needle) in [
        ("zero", "not a regular file"),
        ("longer", "more than the declared"),
    ] {
        let copy = tmp.path().join(case);
        sh(&format!(
            "cp -a {} {}",
            fixture("busybox-oci"),
            copy.display()
        ));
        let layer = sh(&format!("ls -S {}/blobs/sha256 | head -1", copy.display()));
        let path = copy.join("blobs/sha256").join(layer.trim());
        if case == "longer" {
            sh(&format!("head -c 4096 /dev/urandom >> {}", path.display()));
        } else {
            sh(&format!("ln -sf /dev/zero {}", path.display()));
        }
        let out = import_within_a_minute(&d2v, &format!("oci:{}:latest", copy.display()));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{case}: {err}");
        assert!(err.contains(needle), "{case}: {err}");
    }
    assert_eq!(
        std::fs::read_dir(d2v.home().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_chained_error_is_printed_once() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = D2v::new();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("dotdot.tar");
    write_tar(&path, &[("a/../../etc/evil", b"x")]);
    let err = d2v.fails(&["import", &format!("rootfs:{}", path.display()), "--as", "e"]);
    assert_eq!(err.matches("has a '..' component").count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
