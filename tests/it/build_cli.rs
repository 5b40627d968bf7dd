//! `d2v build` end to end: RUN in the sandbox over the lazy rootfs, users, the
//! step cache, failures that leave nothing behind, and the built image's content.

use crate::harness;
use harness::{build, context, stderr, with_busybox};

use d2v_testkit::procs;
use harness::{mount_points, require_root_and, sh, D2v};
use std::time::{Duration, Instant};

/// Reads a file of an image through `d2v mount`.
fn read_in_image(d2v: &D2v, image: &str, path: &str) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    d2v.ok(&["mount", image, dir.path().to_str().unwrap()]);
    let content = std::fs::read_to_string(dir.path().join(path.trim_start_matches('/'))).ok();
    d2v.ok(&["umount", dir.path().to_str().unwrap()]);
    content
}

#[test]
fn run_steps_see_user_workdir_env_and_args() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    let ctx = context(&[(
        "Dockerfile",
        r#"FROM busybox
ARG FLAVOUR=plain
ENV GREETING="hello there"
RUN echo "$GREETING/$FLAVOUR" > /greeting
WORKDIR /srv/app
USER app
RUN (id -u; id -g; id -G; pwd; echo "$GREETING"; echo "$FLAVOUR") > /tmp/seen
USER root
RUN echo "$HOME" > /root-home
"#,
    )]);
    let out = build(&d2v, "seen", ctx.path(), &["--build-arg", "FLAVOUR=spicy"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        read_in_image(&d2v, "seen", "/greeting").unwrap(),
        "hello there/spicy\n"
    );
    let seen = read_in_image(&d2v, "seen", "/tmp/seen").unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    // app is 1000:1000 and a member of audio (29) and video (44) in the image's /etc/group.
    assert_eq!(lines[0], "1000", "{seen}");
    assert_eq!(lines[1], "1000", "{seen}");
    let mut groups: Vec<&str> = lines[2].split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, ["1000", "29", "44"], "{seen}");
    assert_eq!(lines[3], "/srv/app");
    assert_eq!(lines[4], "hello there");
    assert_eq!(lines[5], "spicy");
    assert_eq!(
        read_in_image(&d2v, "seen", "/root-home").unwrap(),
        "/root\n"
    );
    let config: serde_json::Value = serde_json::from_str(&d2v.ok(&["inspect", "seen"])).unwrap();
    assert_eq!(config["config"]["WorkingDir"], "/srv/app");
    assert_eq!(config["config"]["User"], "root");
}

#[test]
fn rebuilds_reuse_the_cache_and_an_arg_change_busts_only_what_sees_it() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo one > /one\nARG V=1\nRUN echo $V > /v\nRUN echo three > /three\n",
    )]);
    let first = build(&d2v, "c", ctx.path(), &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let id1 = String::from_utf8_lossy(&first.stdout).trim().to_string();

    let again = build(&d2v, "c", ctx.path(), &[]);
    assert!(again.status.success());
    let err = stderr(&again);
    assert_eq!(err.matches("CACHED").count(), 3, "{err}");
    assert!(err.contains("0 steps run"), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        id1,
        "a no-op rebuild keeps the image"
    );

    let changed = build(&d2v, "c", ctx.path(), &["--build-arg", "V=2"]);
    assert!(changed.status.success());
    let err = stderr(&changed);
    assert_eq!(
        err.matches("CACHED").count(),
        1,
        "only the step before the ARG is reused: {err}"
    );
    assert_eq!(read_in_image(&d2v, "c", "/v").unwrap(), "2\n");

    let forced = build(&d2v, "c", ctx.path(), &["--no-cache"]);
    assert!(forced.status.success());
    assert_eq!(stderr(&forced).matches("CACHED").count(), 0);
    let entries = d2v.ok(&["cache", "ls"]);
    assert!(entries.contains("RUN echo three > /three"), "{entries}");
}

#[test]
fn a_failing_run_names_the_step_and_leaves_nothing_behind() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    // A sleep no other process on the machine runs (2 to 3 s long).
    let sleep = format!("sleep 2.{:07}", std::process::id());
    let dockerfile = format!(
        "FROM busybox\nRUN echo before > /before\nRUN echo some output; {sleep} & exit 7\n"
    );
    let ctx = context(&[("Dockerfile", &dockerfile)]);
    let out = build(&d2v, "broken", ctx.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(err.contains("exit code 7"), "{err}");
    assert!(
        err.contains("some output"),
        "the step's output is shown: {err}"
    );
    assert!(
        !mount_points()
            .iter()
            .any(|m| m.starts_with(d2v.home().to_str().unwrap())),
        "a mount was left behind"
    );
    let images: serde_json::Value = serde_json::from_str(&d2v.ok(&["images", "--json"])).unwrap();
    assert_eq!(
        images.as_array().unwrap().len(),
        1,
        "only the base image: {images}"
    );
    // The successful step before it is cached; the failing one is not.
    let cache = d2v.ok(&["cache", "ls"]);
    assert!(cache.contains("echo before"), "{cache}");
    assert!(!cache.contains("exit 7"), "{cache}");
    let tmp: Vec<_> = std::fs::read_dir(d2v.home().join("d2v/tmp"))
        .unwrap()
        .collect();
    assert!(tmp.is_empty(), "scratch left behind: {tmp:?}");
    // No process of the step survives (the PID namespace was torn down).
    let leftover = sh(&format!("pgrep -f '[s]{}' || true", &sleep[1..]));
    assert!(
        leftover.trim().is_empty(),
        "a step process survived: {leftover}"
    );
}

#[test]
fn network_none_has_only_loopback_and_run_mounts_work() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "s3cr3t").unwrap();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\n\
             RUN --network=none ls /sys/class/net > /nets\n\
             RUN --mount=type=secret,id=token cat /run/secrets/token | wc -c > /secret-len\n\
             RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && ls /scratch > /tmpfs-seen\n\
             RUN --mount=type=cache,target=/cache echo run >> /cache/log && wc -l < /cache/log > /cache-count\n\
             RUN --mount=type=bind,source=data,target=/data cat /data/file > /bound\n",
        ),
        ("data/file", "from the context\n"),
    ]);
    let secret_arg = format!("id=token,src={}", secret.path().display());
    let out = build(&d2v, "m", ctx.path(), &["--secret", &secret_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_in_image(&d2v, "m", "/nets").unwrap(), "lo\n");
    assert_eq!(read_in_image(&d2v, "m", "/secret-len").unwrap().trim(), "6");
    assert_eq!(read_in_image(&d2v, "m", "/tmpfs-seen").unwrap(), "x\n");
    assert_eq!(
        read_in_image(&d2v, "m", "/bound").unwrap(),
        "from the context\n"
    );
    // Mounted things are not in the image.
    assert!(read_in_image(&d2v, "m", "/run/secrets/token").is_none());
    assert!(read_in_image(&d2v, "m", "/scratch/x").is_none());
    assert!(read_in_image(&d2v, "m", "/cache/log").is_none());
    // The secret's value is nowhere in the store.
    let grep = sh(&format!("grep -rl s3cr3t {} || true", d2v.home().display()));
    assert!(grep.trim().is_empty(), "secret leaked into {grep}");
    // The cache mount persists between builds (with --no-cache the step reruns).
    let out = build(
        &d2v,
        "m",
        ctx.path(),
        &["--secret", &secret_arg, "--no-cache"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        read_in_image(&d2v, "m", "/cache-count").unwrap().trim(),
        "2"
    );
}

#[test]
fn dockerfile_errors_point_at_the_line() {
    let d2v = D2v::new();
    let ctx = context(&[("Dockerfile", "FROM scratch\nFROBNICATE now\n")]);
    let out = build(&d2v, "x", ctx.path(), &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(":2:"), "{err}");
    assert!(err.to_lowercase().contains("frobnicate"), "{err}");
    let ctx = context(&[("Dockerfile", "FROM not-imported\nRUN true\n")]);
    let out = build(&d2v, "x", ctx.path(), &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not-imported"), "{}", stderr(&out));
}

#[test]
fn ctrl_c_stops_the_build_and_leaves_nothing() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo started; sleep 300; echo never > /x\n",
    )]);
    let mut child = d2v
        .cmd()
        .args([
            "build",
            "-t",
            "int",
            "--progress",
            "plain",
            ctx.path().to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the step's `sleep 300` runs: a process of this build's own
    // tree (not of anything else on the machine).
    let seen = harness::drain(child.stderr.take().unwrap());
    let step = match procs::wait_for_descendant(&mut child, "sleep 300", Duration::from_secs(120)) {
        Ok(tree) => tree,
        Err(status) => panic!("build ended early ({status}): {}", seen.join().unwrap()),
    };
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let messages = seen.join().unwrap();
    assert_eq!(status.code(), Some(130), "{messages}");
    assert!(
        !mount_points()
            .iter()
            .any(|m| m.starts_with(d2v.home().to_str().unwrap())),
        "a mount was left behind"
    );
    // The step's processes die with its PID namespace; allow the kernel a
    // moment to finish tearing it down, then name any survivor of the tree
    // seen while the step ran.
    let deadline = Instant::now() + Duration::from_secs(3);
    let leftover = loop {
        let alive: Vec<_> = step.iter().filter(|p| p.alive()).collect();
        if alive.is_empty() || Instant::now() > deadline {
            break format!("{alive:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(leftover, "[]", "a process of the build survived");
    assert!(!d2v.ok(&["cache", "ls"]).contains("sleep 300"));
    let tmp: Vec<_> = std::fs::read_dir(d2v.home().join("d2v/tmp"))
        .unwrap()
        .collect();
    assert!(tmp.is_empty(), "scratch left behind: {tmp:?}");
}

#[test]
fn independent_stages_build_at_the_same_time() {
    if !require_root_and(&[]) {
        return;
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        assert!(!harness::in_ci(), "CI machines have at least 2 cores");
        return;
    }
    let d2v = with_busybox("busybox");
    // Each stage announces itself in a shared cache mount and waits (up to 20 s)
    // for the other: this only succeeds when both run at once.
    let wait_for = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,id=rendezvous,target=/r touch /r/{me} && \
             i=0; while [ ! -e /r/{other} ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; \
             test -e /r/{other} && echo {me} > /{me}"
        )
    };
    let dockerfile = format!(
        "FROM busybox AS a\n{}\nFROM busybox AS b\n{}\nFROM busybox\n\
         COPY --from=a /a /a\nCOPY --from=b /b /b\n",
        wait_for("a", "b"),
        wait_for("b", "a")
    );
    let ctx = context(&[("Dockerfile", &dockerfile)]);
    let out = build(&d2v, "par", ctx.path(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_in_image(&d2v, "par", "/a").unwrap(), "a\n");
    assert_eq!(read_in_image(&d2v, "par", "/b").unwrap(), "b\n");

    // A failure in one stage stops its sibling and is the error reported.
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox AS slow\nRUN sleep 30\nFROM busybox AS bad\nRUN exit 4\n\
         FROM busybox\nCOPY --from=slow /etc/passwd /x\nCOPY --from=bad /etc/passwd /y\n",
    )]);
    let started = std::time::Instant::now();
    let out = build(&d2v, "par2", ctx.path(), &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("exit code 4"), "{err}");
    // Not a timing claim about speed: the sleeping sibling was killed, not waited for.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "{err}"
    );
}
