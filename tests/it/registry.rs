//! Registries, for real: Debian's docker-registry (distribution 2.8) on
//! 127.0.0.1, seeded and read back with skopeo. `d2v pull`, `FROM` a registry
//! image, multi-arch indexes, digests, htpasswd auth, corrupted blobs,
//! `d2v push` and `d2v pack --push`.

use crate::harness;
use harness::stderr;

use d2v::store::oci::Digest;
use harness::registry::TestRegistry;
use harness::{fixture, require_root_and, sh, D2v, Mounted};
use std::path::Path;

/// Root (for mount and build) plus the registry tools.
fn facilities(extra: &[&str]) -> bool {
    let mut tools = vec!["docker-registry", "skopeo", "curl"];
    tools.extend_from_slice(extra);
    require_root_and(&tools)
}

/// A registry holding the busybox fixture as `busybox:latest`.
fn seeded() -> TestRegistry {
    let registry = TestRegistry::start();
    registry.seed(
        &format!("oci:{}:latest", fixture("busybox-oci")),
        "busybox:latest",
        false,
    );
    registry
}

fn names(d2v: &D2v) -> String {
    d2v.ok(&["images"])
}

#[test]
fn pull_then_mount_shows_the_files_and_pull_by_digest_works() {
    if !facilities(&[]) {
        return;
    }
    let registry = seeded();
    let d2v = D2v::new();
    let reference = format!("{}/busybox", registry.host());
    let digest = d2v.ok(&["pull", &reference]).trim().to_string();
    // The digest printed is the registry's manifest digest.
    let raw = sh(&format!(
        "curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
         http://{}/v2/busybox/manifests/latest | sha256sum",
        registry.host()
    ));
    assert_eq!(digest, format!("sha256:{}", &raw[..64]));

    // Stored under the reference as written and its normalised form.
    let list = names(&d2v);
    assert!(list.contains(&format!("{reference} ")), "{list}");
    assert!(list.contains(&format!("{reference}:latest ")), "{list}");
    {
        let mounted = Mounted::new(&d2v, &reference);
        assert!(mounted.path().join("bin/busybox").is_file());
    }
    // The same diff IDs as a plain import of the fixture.
    let imported = D2v::new();
    let id = imported.import(&format!("oci:{}:latest", fixture("busybox-oci")), "bb");
    let pulled: serde_json::Value =
        serde_json::from_str(&d2v.ok(&["inspect", &reference])).unwrap();
    let manifest = d2v.ok(&["inspect", "--manifest", &reference]);
    assert!(
        manifest.contains(id.trim()),
        "the pulled config digest is the imported image's ID: {manifest}"
    );
    assert_eq!(pulled["config"]["Cmd"], serde_json::json!(["/bin/sh"]));

    // Pushed to another repository of the same registry, the pulled layer is
    // mounted, not compressed and uploaded again: only the config moves.
    let original = registry.inspect("busybox:latest", true);
    let out = d2v.run(&["push", &reference, &format!("{}/copy:1", registry.host())]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 blobs uploaded, 1 already there"),
        "{}",
        stderr(&out)
    );
    let copy = registry.inspect("copy:1", true);
    assert_eq!(copy["layers"][0]["digest"], original["layers"][0]["digest"]);

    // By digest, into another store.
    let other = D2v::new();
    let by_digest = format!("{}/busybox@{digest}", registry.host());
    assert_eq!(other.ok(&["pull", &by_digest]).trim(), digest);
    let mounted = Mounted::new(&other, &by_digest);
    assert!(mounted.path().join("bin/busybox").is_file());
    drop(mounted);
    // A digest the registry lacks is an error naming it, and stores nothing.
    let missing = format!("{}/busybox@{}", registry.host(), Digest::of(b"nothing"));
    let err = other.fails(&["pull", &missing]);
    assert!(err.contains("not found"), "{err}");
    assert!(!names(&other).contains(Digest::of(b"nothing").hex()));
}

#[test]
fn from_a_registry_image_builds_and_the_result_pushes() {
    if !facilities(&[]) {
        return;
    }
    let registry = seeded();
    let d2v = D2v::new();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/busybox\nRUN echo built > /hello\n",
            registry.host()
        ),
    )
    .unwrap();
    let out = d2v.run(&[
        "build",
        "-t",
        "out",
        "--progress",
        "plain",
        ctx.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "build failed:\n{}", stderr(&out));
    assert!(stderr(&out).contains("pulled"), "{}", stderr(&out));
    {
        let mounted = Mounted::new(&d2v, "out");
        let hello = std::fs::read_to_string(mounted.path().join("hello")).unwrap();
        assert_eq!(hello, "built\n");
    }
    // The base is in the store now: a second build does not pull again.
    let again = d2v.run(&["build", "-t", "out2", ctx.path().to_str().unwrap()]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(!stderr(&again).contains("pulled"), "{}", stderr(&again));

    // The two-layer result goes back to the registry and skopeo reads it.
    let target = format!("{}/built:1", registry.host());
    d2v.ok(&["push", "out", &target]);
    let inspected = registry.inspect("built:1", false);
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2);
}

/// An OCI layout at `dir` whose tag `multi` is an index listing a tiny arm64
/// image first and the busybox fixture as linux/amd64.
fn multi_arch_layout(dir: &Path) {
    sh(&format!(
        "cp -r {}/. {}",
        fixture("busybox-oci"),
        dir.display()
    ));
    let put = |bytes: &[u8]| -> (String, usize) {
        let d = Digest::of(bytes);
        std::fs::write(dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
        (d.to_string(), bytes.len())
    };
    let marker = tempfile::tempdir().unwrap();
    std::fs::write(marker.path().join("arm64-only"), "arm\n").unwrap();
    let layer = sh(&format!(
        "tar -C {} -cf - arm64-only | base64 -w0",
        marker.path().display()
    ));
    use base64::Engine as _;
    let layer = base64::engine::general_purpose::STANDARD
        .decode(layer.trim())
        .unwrap();
    let (layer_digest, layer_size) = put(&layer);
    let config = serde_json::json!({
        "architecture": "arm64", "os": "linux",
        "config": {}, "rootfs": {"type": "layers", "diff_ids": [layer_digest]}
    });
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer_size}]
    });
    let (arm_digest, arm_size) = put(&serde_json::to_vec(&manifest).unwrap());
    let top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let amd = &top["manifests"][0];
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": arm_digest, "size": arm_size,
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": amd["mediaType"], "digest": amd["digest"], "size": amd["size"],
             "platform": {"architecture": "amd64", "os": "linux"}}
        ]
    });
    let (index_digest, index_size) = put(&serde_json::to_vec(&index).unwrap());
    let layout = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                       "digest": index_digest, "size": index_size,
                       "annotations": {"org.opencontainers.image.ref.name": "multi"}}]
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&layout).unwrap()).unwrap();
}

#[test]
fn a_multi_arch_index_resolves_to_linux_amd64() {
    if !facilities(&[]) {
        return;
    }
    let registry = TestRegistry::start();
    let layout = tempfile::tempdir().unwrap();
    multi_arch_layout(layout.path());
    registry.seed(
        &format!("oci:{}:multi", layout.path().display()),
        "multi:latest",
        true,
    );
    let d2v = D2v::new();
    let reference = format!("{}/multi:latest", registry.host());
    let digest = d2v.ok(&["pull", &reference]).trim().to_string();
    // The digest printed is the index's, as docker pull shows it.
    let raw = sh(&format!(
        "curl -fsS -H 'Accept: application/vnd.oci.image.index.v1+json' \
         http://{}/v2/multi/manifests/latest | sha256sum",
        registry.host()
    ));
    assert_eq!(digest, format!("sha256:{}", &raw[..64]));
    let mounted = Mounted::new(&d2v, &reference);
    assert!(mounted.path().join("bin/busybox").is_file());
    assert!(!mounted.path().join("arm64-only").exists());
}

#[test]
fn htpasswd_auth_from_flag_and_docker_config_and_a_wrong_password_fails() {
    if !facilities(&["htpasswd"]) {
        return;
    }
    let registry = TestRegistry::with_htpasswd("alice", "s3cret");
    registry.seed(
        &format!("oci:{}:latest", fixture("busybox-oci")),
        "private/bb:1",
        false,
    );
    let reference = format!("{}/private/bb:1", registry.host());
    let no_docker_config = tempfile::tempdir().unwrap();
    let run = |d2v: &D2v, args: &[&str], docker_config: &Path| {
        d2v.cmd()
            .args(args)
            .env("DOCKER_CONFIG", docker_config)
            .output()
            .unwrap()
    };

    // Anonymous: refused, clearly, and nothing is named.
    let d2v = D2v::new();
    let out = run(&d2v, &["pull", &reference], no_docker_config.path());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("authentication"), "{}", stderr(&out));
    // A wrong password: the same.
    let out = run(
        &d2v,
        &["pull", "--registry-auth", "alice:wrong", &reference],
        no_docker_config.path(),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("authentication to 127.0.0.1") && err.contains("--registry-auth"),
        "{err}"
    );
    assert!(!names(&d2v).contains("private/bb"));

    // --registry-auth, for that registry only.
    let flag = format!("{}=alice:s3cret", registry.host());
    let out = run(
        &d2v,
        &["pull", "--registry-auth", &flag, &reference],
        no_docker_config.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(names(&d2v).contains("private/bb:1"));

    // The auths of a Docker config.json (base64 user:password).
    use base64::Engine as _;
    let docker = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    std::fs::write(
        docker.path().join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let other = D2v::new();
    let out = run(&other, &["pull", &reference], docker.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let mounted = Mounted::new(&other, &reference);
    assert!(mounted.path().join("bin/busybox").is_file());
    drop(mounted);

    // Pushing needs the credentials too.
    let out = run(
        &other,
        &[
            "push",
            &reference,
            &format!("{}/private/copy:1", registry.host()),
        ],
        docker.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_corrupted_blob_is_rejected_and_leaves_no_name() {
    if !facilities(&[]) {
        return;
    }
    let registry = seeded();
    let raw = registry.inspect("busybox:latest", true);
    let layer = raw["layers"][0]["digest"].as_str().unwrap();
    let data = registry.blob_data(layer);
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();

    let d2v = D2v::new();
    let reference = format!("{}/busybox:latest", registry.host());
    let err = d2v.fails(&["pull", &reference]);
    assert!(err.contains("failed verification"), "{err}");
    assert!(err.contains(layer), "{err}");
    assert!(!names(&d2v).contains("busybox"), "{}", names(&d2v));
    // A build naming it fails the same way, and names nothing either.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), format!("FROM {reference}\n")).unwrap();
    let err = d2v.fails(&["build", "-t", "x", ctx.path().to_str().unwrap()]);
    assert!(err.contains("failed verification"), "{err}");
    assert_eq!(names(&d2v).lines().count(), 1, "{}", names(&d2v));
}

#[test]
fn push_refuses_a_layer_whose_stored_bytes_changed() {
    if !facilities(&[]) {
        return;
    }
    let registry = TestRegistry::start();
    let d2v = D2v::new();
    d2v.import(&format!("rootfs:{}", fixture("busybox.tar")), "bb");
    let manifest: serde_json::Value =
        serde_json::from_str(&d2v.ok(&["inspect", "--manifest", "bb"])).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let blob = d2v
        .home()
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&blob).unwrap();
    let at = bytes.len() / 2;
    bytes[at..at + 4].copy_from_slice(b"evil");
    std::fs::write(&blob, &bytes).unwrap();

    let reference = format!("{}/damaged:1", registry.host());
    let err = d2v.fails(&["push", "bb", &reference]);
    assert!(err.contains(&format!("blob {layer} is damaged")), "{err}");
    let status = sh(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' http://{}/v2/damaged/manifests/1",
        registry.host()
    ));
    assert_eq!(status, "404", "no manifest was pushed");
}

#[test]
fn push_is_read_back_by_skopeo_with_the_same_digests_and_a_second_push_skips_blobs() {
    if !facilities(&[]) {
        return;
    }
    let registry = TestRegistry::start();
    let d2v = D2v::new();
    let id = d2v.import(&format!("oci:{}:bookworm", fixture("debian-oci")), "deb");
    let id = id.trim();
    let config: serde_json::Value = serde_json::from_str(&d2v.ok(&["inspect", "deb"])).unwrap();
    let reference = format!("{}/pushed/debian:bookworm", registry.host());

    let out = d2v.run(&["push", "deb", &reference]);
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let layers = config["rootfs"]["diff_ids"].as_array().unwrap().len();
    assert!(
        stderr(&out).contains(&format!("{} blobs uploaded, 0 already there", layers + 1)),
        "{}",
        stderr(&out)
    );

    // skopeo sees the same manifest digest, config digest and gzip layers.
    let inspected = registry.inspect("pushed/debian:bookworm", false);
    assert_eq!(inspected["Digest"].as_str().unwrap(), digest);
    let raw = registry.inspect("pushed/debian:bookworm", true);
    assert_eq!(raw["config"]["digest"].as_str().unwrap(), id);
    for layer in raw["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
    // Copied back to an OCI layout: the same config, the same diff IDs.
    let back = tempfile::tempdir().unwrap();
    sh(&format!(
        "skopeo copy -q --src-tls-verify=false docker://{reference} oci:{}:back",
        back.path().display()
    ));
    let again = D2v::new();
    let back_id = again.import(&format!("oci:{}:back", back.path().display()), "back");
    assert_eq!(back_id.trim(), id);
    let back_config: serde_json::Value =
        serde_json::from_str(&again.ok(&["inspect", "back"])).unwrap();
    assert_eq!(back_config["rootfs"], config["rootfs"]);

    // A second push sends no blob (the gzip forms are recorded) and gives the
    // same manifest; so does a push to another tag.
    let out = d2v.run(&["push", "deb", &reference]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("0 blobs uploaded, {} already there", layers + 1)),
        "{}",
        stderr(&out)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), digest);

    // And d2v pulls its own push back to the same image.
    let pulled = D2v::new();
    pulled.ok(&["pull", &reference]);
    let manifest = pulled.ok(&["inspect", "--manifest", &reference]);
    assert!(manifest.contains(id), "{manifest}");
}

#[test]
fn pack_push_makes_an_oci_artifact_whose_ext4_comes_back_identical() {
    if !facilities(&["e2fsck"]) {
        return;
    }
    let registry = TestRegistry::start();
    let d2v = D2v::new();
    d2v.import(&format!("oci:{}:latest", fixture("busybox-oci")), "bb");
    let out_dir = tempfile::tempdir().unwrap();
    let image = out_dir.path().join("rootfs.ext4");
    let reference = format!("{}/vms/bb:1", registry.host());
    let out = d2v.run(&[
        "pack",
        "bb",
        "-o",
        image.to_str().unwrap(),
        "--push",
        &reference,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let digest = stdout.lines().last().unwrap().trim().to_string();
    assert!(digest.starts_with("sha256:"), "{stdout}");

    let raw = registry.inspect("vms/bb:1", true);
    assert_eq!(raw["artifactType"], "application/vnd.d2v.vm.v1");
    assert_eq!(
        raw["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    let layers = raw["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["mediaType"], "application/vnd.d2v.rootfs.ext4");
    assert_eq!(
        layers[0]["annotations"]["org.opencontainers.image.title"],
        "rootfs.ext4"
    );
    assert_eq!(
        layers[1]["mediaType"],
        "application/vnd.d2v.vm.config.v1+json"
    );

    // The ext4 blob comes back byte for byte, and vm.json too.
    let fetched = out_dir.path().join("fetched.ext4");
    registry.get(
        &format!("vms/bb/blobs/{}", layers[0]["digest"].as_str().unwrap()),
        &fetched,
    );
    assert_eq!(
        std::fs::read(&fetched).unwrap(),
        std::fs::read(&image).unwrap()
    );
    let vm = out_dir.path().join("fetched.json");
    registry.get(
        &format!("vms/bb/blobs/{}", layers[1]["digest"].as_str().unwrap()),
        &vm,
    );
    assert_eq!(
        std::fs::read(&vm).unwrap(),
        std::fs::read(out_dir.path().join("vm.json")).unwrap()
    );

    // d2v pull refuses an artifact as an image, clearly.
    let err = d2v.fails(&["pull", &reference]);
    assert!(err.contains("not a container image"), "{err}");
}

#[test]
fn push_manifest_and_pull_manifest_move_store_blobs_without_naming_anything() {
    if !facilities(&[]) {
        return;
    }
    use d2v::registry::{Registry, RegistryOptions};
    use d2v::store::Store;
    let registry = TestRegistry::start();
    let a = D2v::new();
    a.import(&format!("oci:{}:latest", fixture("busybox-oci")), "bb");
    let client = Registry::new(RegistryOptions {
        quiet: true,
        ..Default::default()
    })
    .unwrap();

    // The store's own manifest: an uncompressed layer and the config.
    let store_a = Store::open(a.home()).unwrap();
    let image = store_a.image("bb").unwrap();
    let reference = format!("{}/shared/cache:1", registry.host());
    let pushed = client
        .push_manifest(&store_a, &image.manifest, &reference)
        .unwrap();
    assert_eq!(pushed.uploaded.len(), 2);
    assert_eq!(pushed.digest, Digest::of(&pushed.manifest_bytes));
    let again = client
        .push_manifest(&store_a, &image.manifest, &reference)
        .unwrap();
    assert_eq!((again.uploaded.len(), again.existing.len()), (0, 2));

    let b = D2v::new();
    let store_b = Store::open(b.home()).unwrap();
    let pulled = client.pull_manifest(&store_b, &reference).unwrap();
    assert_eq!(pulled.digest, pushed.digest);
    assert_eq!(pulled.manifest_bytes, pushed.manifest_bytes);
    assert_eq!(pulled.config, image.config);
    assert_eq!(pulled.blobs.len(), 1);
    let layer = &pulled.blobs[0].stored;
    assert_eq!(layer.digest, image.manifest.layers[0].digest);
    assert!(store_b.has_blob(&layer.digest));
    assert!(store_b.images().unwrap().is_empty());

    // A blob in neither the store nor the registry is refused before the manifest.
    let mut broken = image.manifest.clone();
    broken.layers[0].digest = Digest::of(b"absent");
    let err = client
        .push_manifest(
            &store_a,
            &broken,
            &format!("{}/shared/broken:1", registry.host()),
        )
        .unwrap_err();
    assert!(err.to_string().contains("missing blob"), "{err}");
}

#[test]
fn mount_and_pack_fetch_a_missing_image_like_docker_run() {
    if !facilities(&["e2fsck"]) {
        return;
    }
    let registry = seeded();
    let reference = format!("{}/busybox:latest", registry.host());

    // mount on an empty store pulls first, then shows the files.
    let d2v = D2v::new();
    {
        let mounted = Mounted::new(&d2v, &reference);
        assert!(mounted.path().join("bin/busybox").is_file());
    }
    assert!(names(&d2v).contains(&format!("{reference} ")));

    // pack on another empty store does the same.
    let other = D2v::new();
    let out_dir = tempfile::tempdir().unwrap();
    let image = out_dir.path().join("bb.ext4");
    let out = other.run(&["pack", &reference, "-o", image.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    sh(&format!("e2fsck -fn {} >/dev/null", image.display()));

    // Without a source that has it, the error says what was looked up.
    let empty = tempfile::tempdir().unwrap();
    let out = other.run(&[
        "mount",
        "--image-sources",
        "store",
        &format!("{}/nothing:1", registry.host()),
        empty.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("no image named") && err.contains("looked in: store"),
        "{err}"
    );
}
