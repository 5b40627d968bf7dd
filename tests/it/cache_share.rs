//! Sharing the step cache through a real registry (Debian's docker-registry on
//! 127.0.0.1): two stores stand for two build machines. What one pushes with
//! `--cache-to`, the other reuses with `--cache-from`, running no step.

use crate::harness;
use harness::stderr;

use harness::registry::TestRegistry;
use harness::{fixture, require_root_and, D2v, Mounted};
use std::path::Path;

/// Builds `ctx` as `app` with `extra` flags; panics with the log on failure.
fn build(d2v: &D2v, ctx: &Path, extra: &[&str]) -> String {
    let mut args = vec!["build", "-t", "app", "--progress", "plain"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let out = d2v.run(&args);
    assert!(out.status.success(), "build failed:\n{}", stderr(&out));
    stderr(&out)
}

/// A registry holding the busybox fixture, and an empty build context; `None`
/// when the facilities are missing (outside CI).
fn setup() -> Option<(TestRegistry, tempfile::TempDir)> {
    if !require_root_and(&["docker-registry", "skopeo"]) {
        return None;
    }
    let registry = TestRegistry::start();
    registry.seed(
        &format!("oci:{}:latest", fixture("busybox-oci")),
        "busybox:latest",
        false,
    );
    Some((registry, tempfile::tempdir().unwrap()))
}

fn file_of(d2v: &D2v, path: &str) -> String {
    let mounted = Mounted::new(d2v, "app");
    std::fs::read_to_string(mounted.path().join(path)).unwrap()
}

#[test]
fn a_second_store_reuses_the_first_ones_steps_through_the_registry() {
    let Some((registry, ctx)) = setup() else {
        return;
    };
    let host = registry.host();
    // Random bytes make any re-run visible: a reused step gives the same bytes.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {host}/busybox AS builder\n\
             RUN head -c 16 /dev/urandom | od -An -tx1 > /rand\n\
             FROM {host}/busybox\n\
             COPY --from=builder /rand /rand\n\
             COPY note.txt /note.txt\n\
             RUN head -c 8 /dev/urandom | od -An -tx1 | cat /rand /note.txt - > /all\n"
        ),
    )
    .unwrap();
    std::fs::write(ctx.path().join("note.txt"), "shared\n").unwrap();
    let cache = format!("{host}/cache:app");
    let to = format!("type=registry,ref={cache},mode=max");

    // Machine A: builds everything and exports every stage's steps.
    let a = D2v::new();
    let log = build(&a, ctx.path(), &["--cache-to", &to]);
    assert!(log.contains("4 steps run, 0 cached"), "{log}");
    assert!(log.contains("exported 4 cache entries"), "{log}");
    let a_all = file_of(&a, "all");
    // The cache's layers travel gzip-compressed, its config says what it is.
    let raw = registry.inspect("cache:app", true);
    assert_eq!(
        raw["config"]["mediaType"],
        "application/vnd.d2v.cache.config.v1+json"
    );
    let layers = raw["layers"].as_array().unwrap();
    // Four layer steps, but COPY --from=builder /rand makes the very tar the
    // builder's RUN made: a layer is listed once.
    assert_eq!(layers.len(), 3, "{raw}");
    assert!(
        layers
            .iter()
            .all(|l| l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"),
        "{raw}"
    );

    // Pushing the same cache again uploads nothing.
    let log = build(&a, ctx.path(), &["--cache-to", &to]);
    assert!(log.contains("0 blobs uploaded"), "{log}");

    // Machine B: an empty store; the base comes from the registry, every step
    // from the shared cache, byte for byte.
    let b = D2v::new();
    let log = build(&b, ctx.path(), &["--cache-from", &cache]);
    assert!(log.contains("imported 4 cache entries"), "{log}");
    assert!(log.contains("0 steps run, 4 cached"), "{log}");
    assert_eq!(file_of(&b, "all"), a_all);

    // A change on B reruns only what it touches, after the shared steps.
    std::fs::write(ctx.path().join("note.txt"), "changed on b\n").unwrap();
    let log = build(&b, ctx.path(), &["--cache-from", &cache]);
    assert!(log.contains("2 steps run, 2 cached"), "{log}");
    let b_all = file_of(&b, "all");
    assert!(b_all.contains("changed on b"), "{b_all}");
    assert!(
        b_all.starts_with(&a_all[..a_all.find('\n').unwrap()]),
        "{b_all}"
    );

    // min (the default) exports only the target's steps: the builder stage's
    // RUN stays on A.
    let min_ref = format!("{host}/cache:min");
    build(&a, ctx.path(), &["--cache-to", &min_ref]);
    let c = D2v::new();
    let log = build(&c, ctx.path(), &["--cache-from", &min_ref]);
    assert!(log.contains("imported 3 cache entries"), "{log}");
    assert!(log.contains("1 step run, 3 cached"), "{log}");
}

#[test]
fn cache_from_a_missing_ref_warns_and_a_non_cache_ref_fails() {
    let Some((registry, ctx)) = setup() else {
        return;
    };
    let host = registry.host();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {host}/busybox\nRUN echo hi > /hi\n"),
    )
    .unwrap();
    let d2v = D2v::new();
    let log = build(
        &d2v,
        ctx.path(),
        &["--cache-from", &format!("{host}/nothing:here")],
    );
    assert!(log.contains("no cache there yet"), "{log}");
    assert!(log.contains("1 step run"), "{log}");

    let out = d2v.run(&[
        "build",
        "-t",
        "app",
        "--cache-from",
        &format!("{host}/busybox:latest"),
        ctx.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a d2v build cache"),
        "{}",
        stderr(&out)
    );

    let out = d2v.run(&[
        "build",
        "-t",
        "app",
        "--cache-to",
        "type=local,dest=/tmp/x",
        ctx.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("only type=registry"),
        "{}",
        stderr(&out)
    );
}
