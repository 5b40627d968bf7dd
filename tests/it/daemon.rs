//! The Docker-API daemon as an image source and stage builder, against a
//! private Podman API service (`podman system service`).

use crate::harness;

use harness::podman::{self, Podman};
use harness::{fixture, require_root_and, D2v, Mounted};
use std::time::{Duration, Instant};

/// A name only the daemon has (the store of each test starts empty).
const DAEMON_ONLY: &str = "d2v-test/daemon-only:1";

fn podman_with_busybox() -> Option<Podman> {
    let mut tools = podman::TOOLS.to_vec();
    tools.push("curl");
    if !require_root_and(&tools) {
        return None;
    }
    let podman = Podman::start();
    podman.load_oci(&fixture("busybox-oci"), "latest", DAEMON_ONLY);
    Some(podman)
}

/// Runs d2v with `DOCKER_HOST=host`; returns whether it succeeded, its stdout
/// and its stderr.
fn d2v_at(d2v: &D2v, host: &str, args: &[&str]) -> (bool, String, String) {
    let out = d2v
        .cmd()
        .env("DOCKER_HOST", host)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Like [`d2v_at`], asserting success; returns stdout and stderr.
fn ok_at(d2v: &D2v, host: &str, args: &[&str]) -> (String, String) {
    let (ok, out, err) = d2v_at(d2v, host, args);
    assert!(ok, "d2v {args:?} failed:\n{err}");
    (out, err)
}

/// Like [`d2v_at`], asserting failure; returns stderr.
fn fails_at(d2v: &D2v, host: &str, args: &[&str]) -> String {
    let (ok, out, err) = d2v_at(d2v, host, args);
    assert!(!ok, "d2v {args:?} unexpectedly succeeded:\n{out}");
    err
}

fn context(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    dir
}

#[test]
fn import_from_the_daemon_then_mount() {
    let Some(podman) = podman_with_busybox() else {
        return;
    };
    let host = podman.docker_host();
    let d2v = D2v::new();
    let source = format!("docker-daemon:{DAEMON_ONLY}");
    let (id, _) = ok_at(&d2v, &host, &["import", &source, "--as", "bb:daemon"]);
    // The image ID is the daemon's: the config came over byte for byte.
    let daemon_id = podman.run(&["image", "inspect", "--format", "{{.Id}}", DAEMON_ONLY]);
    assert_eq!(
        id.trim().trim_start_matches("sha256:"),
        daemon_id.trim().trim_start_matches("sha256:")
    );
    let mnt = Mounted::new(&d2v, "bb:daemon");
    assert!(mnt.path().join("bin/busybox").is_file());
    assert!(mnt.path().join("etc/passwd").is_file());

    // A reference the daemon lacks is a clear error.
    let err = fails_at(
        &d2v,
        &host,
        &["import", "docker-daemon:d2v-test/absent:1", "--as", "x"],
    );
    assert!(
        err.contains("has no image") && err.contains("absent"),
        "{err}"
    );
}

#[test]
fn from_an_image_only_the_daemon_has() {
    let Some(podman) = podman_with_busybox() else {
        return;
    };
    let host = podman.docker_host();
    let d2v = D2v::new();
    let ctx = context(&format!(
        "FROM {DAEMON_ONLY}\nRUN echo built-on-daemon-base > /marker\n"
    ));
    let c = ctx.path().to_str().unwrap();

    // Without the daemon in the lookup order the base is not found: the
    // registry (Docker Hub for this name) is unreachable here, or lacks it.
    let err = fails_at(
        &d2v,
        &host,
        &[
            "build",
            "-t",
            "app:1",
            "--image-sources",
            "store,registry",
            c,
        ],
    );
    assert!(
        err.contains(&format!(
            "image {DAEMON_ONLY} not found (looked in: store, registry)"
        )) || err.contains(&format!("registry: {DAEMON_ONLY}")),
        "{err}"
    );

    // With the default order (store, daemon, registry) it comes from the daemon.
    ok_at(&d2v, &host, &["build", "-t", "app:1", c]);
    // Stored under the name as written and its normalised form.
    let images = d2v.ok(&["images"]);
    assert!(images.contains(DAEMON_ONLY), "{images}");
    assert!(
        images.contains("docker.io/d2v-test/daemon-only:1"),
        "{images}"
    );
    let mnt = Mounted::new(&d2v, "app:1");
    assert_eq!(
        std::fs::read_to_string(mnt.path().join("marker")).unwrap(),
        "built-on-daemon-base\n"
    );
}

#[test]
fn an_unreachable_daemon_falls_through_quickly() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = D2v::new();
    let ctx = context("FROM d2v-test/nowhere:1\nRUN true\n");
    let c = ctx.path().to_str().unwrap();
    let dead = tempfile::tempdir().unwrap();
    // A socket whose listener never accepts would hang a client without a
    // timeout; a missing socket and a closed port fail at once.
    let silent = dead.path().join("silent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&silent).unwrap();
    let silent = format!("unix://{}", silent.display());
    for host in [
        format!("unix://{}", dead.path().join("absent.sock").display()),
        silent.clone(),
        "tcp://127.0.0.1:1".to_string(),
    ] {
        let started = Instant::now();
        let err = fails_at(
            &d2v,
            &host,
            &["build", "-t", "x", "--image-sources", "store,daemon", c],
        );
        assert!(
            err.contains("not found (looked in: store, daemon)"),
            "{host}: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{host}: took {:?}",
            started.elapsed()
        );
    }
    // --stage-builder docker needs the daemon: a clear error, not a hang
    // (--docker-host wins over DOCKER_HOST).
    let err = fails_at(
        &d2v,
        "unix:///nonexistent.sock",
        &[
            "build",
            "-t",
            "x",
            "--stage-builder",
            "docker",
            "--docker-host",
            &silent,
            c,
        ],
    );
    assert!(
        err.contains("no Docker-API daemon is reachable") && err.contains("silent.sock"),
        "{err}"
    );
}

#[test]
fn stage_builder_docker_builds_the_builder_stage_in_the_daemon() {
    let Some(podman) = podman_with_busybox() else {
        return;
    };
    let host = podman.docker_host();
    let d2v = D2v::new();
    let ctx = context(&format!(
        "FROM {DAEMON_ONLY} AS builder\n\
         ARG GREETING=hello\n\
         COPY input.txt /src/input.txt\n\
         RUN mkdir -p /out && cat /src/input.txt > /out/made.txt && echo \"$GREETING from the builder\" >> /out/made.txt\n\
         FROM {DAEMON_ONLY}\n\
         COPY --from=builder /out/made.txt /made.txt\n"
    ));
    std::fs::write(ctx.path().join("input.txt"), "context file\n").unwrap();
    let c = ctx.path().to_str().unwrap();
    let build = [
        "build",
        "-t",
        "two:1",
        "--stage-builder",
        "docker",
        "--progress",
        "plain",
        "--build-arg",
        "GREETING=hi",
        c,
    ];
    let (_, progress) = ok_at(&d2v, &host, &build);
    // The builder stage went through the daemon, streaming its output...
    assert!(
        progress.contains("build stage builder with the Docker daemon at"),
        "{progress}"
    );
    assert!(progress.contains("STEP"), "{progress}");
    // ... which now holds the image it built.
    let listed = podman.run(&["images", "--format", "{{.Repository}}"]);
    assert!(listed.contains("d2v-stage/builder"), "{listed}");
    {
        let mnt = Mounted::new(&d2v, "two:1");
        assert_eq!(
            std::fs::read_to_string(mnt.path().join("made.txt")).unwrap(),
            "context file\nhi from the builder\n"
        );
    }

    // Again: the daemon's cache gives the same image, so the COPY --from hits
    // d2v's step cache.
    let (_, progress) = ok_at(&d2v, &host, &build);
    assert!(progress.contains("CACHED"), "{progress}");

    // A failing daemon build names the stage and carries the daemon's message.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {DAEMON_ONLY} AS broken\nRUN exit 7\nFROM {DAEMON_ONLY}\nCOPY --from=broken /etc/passwd /p\n"
        ),
    )
    .unwrap();
    let err = fails_at(
        &d2v,
        &host,
        &["build", "-t", "bad:1", "--stage-builder", "docker", c],
    );
    assert!(
        err.contains("stage broken") && err.contains("exit 7"),
        "{err}"
    );
}
