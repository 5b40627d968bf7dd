//! The Docker-API daemon as an image source and stage builder, against a
//! private Podman API service (`podman system service`).

mod harness;

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
    let d2v = D2v::new();
    let out = d2v
        .cmd()
        .env("DOCKER_HOST", podman.docker_host())
        .args([
            "import",
            &format!("docker-daemon:{DAEMON_ONLY}"),
            "--as",
            "bb:daemon",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap();
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
    let out = d2v
        .cmd()
        .env("DOCKER_HOST", podman.docker_host())
        .args(["import", "docker-daemon:d2v-test/absent:1", "--as", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
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
    let d2v = D2v::new();
    let ctx = context(&format!(
        "FROM {DAEMON_ONLY}\nRUN echo built-on-daemon-base > /marker\n"
    ));
    let c = ctx.path().to_str().unwrap();

    // Without the daemon in the lookup order the base is not found.
    let out = d2v
        .cmd()
        .env("DOCKER_HOST", podman.docker_host())
        .args([
            "build",
            "-t",
            "app:1",
            "--image-sources",
            "store,registry",
            c,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "image {DAEMON_ONLY} not found (looked in: store, registry)"
        )),
        "{err}"
    );

    // With the default order (store, daemon, registry) it comes from the daemon.
    let out = d2v
        .cmd()
        .env("DOCKER_HOST", podman.docker_host())
        .args(["build", "-t", "app:1", c])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    // A socket path nothing listens on, and a TCP port that drops packets
    // would hang without a timeout: neither may stall the build.
    let dead = tempfile::tempdir().unwrap();
    let sock = dead.path().join("docker.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    for host in [
        format!("unix://{}", dead.path().join("absent.sock").display()),
        // Accepted by the kernel's backlog but never answered.
        format!("unix://{}", sock.display()),
        "tcp://127.0.0.1:1".to_string(),
    ] {
        let started = Instant::now();
        let out = d2v
            .cmd()
            .args(["build", "-t", "x", "--docker-host", &host])
            .args(["--image-sources", "store,daemon", c])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
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
    // --stage-builder docker needs the daemon: a clear error, not a hang.
    let out = d2v
        .cmd()
        .args(["build", "-t", "x", "--stage-builder", "docker"])
        .args(["--docker-host", &format!("unix://{}", sock.display()), c])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no Docker-API daemon is reachable"), "{err}");
}

#[test]
fn stage_builder_docker_builds_the_builder_stage_in_the_daemon() {
    let Some(podman) = podman_with_busybox() else {
        return;
    };
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
    std::fs::write(ctx.path().join("ignored.txt"), "x\n").unwrap();
    std::fs::write(ctx.path().join(".dockerignore"), "ignored.txt\n").unwrap();
    let c = ctx.path().to_str().unwrap();
    let build = |extra: &[&str]| {
        let out = d2v
            .cmd()
            .env("DOCKER_HOST", podman.docker_host())
            .args([
                "build",
                "-t",
                "two:1",
                "--stage-builder",
                "docker",
                "--progress",
                "plain",
            ])
            .args(["--build-arg", "GREETING=hi"])
            .args(extra)
            .arg(c)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        err
    };
    let progress = build(&[]);
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
    let progress = build(&[]);
    assert!(progress.contains("CACHED"), "{progress}");

    // A failing daemon build names the stage and carries the daemon's message.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {DAEMON_ONLY} AS broken\nRUN exit 7\nFROM {DAEMON_ONLY}\nCOPY --from=broken /etc/passwd /p\n"
        ),
    )
    .unwrap();
    let out = d2v
        .cmd()
        .env("DOCKER_HOST", podman.docker_host())
        .args(["build", "-t", "bad:1", "--stage-builder", "docker", c])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stage broken") && err.contains("exit 7"),
        "{err}"
    );
}
