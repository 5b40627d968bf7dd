//! BuildKit parity of built images (busybox base, as root): directory
//! destinations, `COPY --link`, symbolic `--chmod`, `RUN --mount` targets
//! relative to WORKDIR, `ADD <git URL>` against a git daemon on loopback,
//! and readable plain progress of parallel stages.
//!
//! Expectations are written by hand from Docker's behaviour (BuildKit's
//! dockerfile2llb and moby's integration tests), not taken from buildah:
//! buildah gives a new directory destination the source directory's
//! metadata, which Docker does not.

use crate::harness;
use harness::{build, stderr, with_busybox};

use harness::{context, fixture, require_root_and, D2v};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn built(d2v: &D2v, tag: &str, ctx: &Path, extra: &[&str]) -> String {
    let out = build(d2v, tag, ctx, extra);
    assert!(out.status.success(), "{}", stderr(&out));
    stderr(&out)
}

fn diff_ids(d2v: &D2v, image: &str) -> Vec<String> {
    let config: serde_json::Value = serde_json::from_str(&d2v.ok(&["inspect", image])).unwrap();
    config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_directory_copied_to_a_new_destination_gets_a_fresh_0755_root_dir() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    let ctx = context(&[("d/f", "f")]);
    std::fs::set_permissions(ctx.path().join("d"), PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::set_permissions(ctx.path().join("d/f"), PermissionsExt::from_mode(0o640)).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox AS src\n\
         RUN mkdir /sdir && echo x > /sdir/f && chown -R 100:200 /sdir && chmod 700 /sdir\n\
         FROM busybox\n\
         COPY d /newd\n\
         COPY --from=src /sdir /fromstage\n\
         COPY --chown=7:8 d /owned\n\
         COPY d /slash/\n",
    )
    .unwrap();
    built(&d2v, "dirs", ctx.path(), &[]);
    let m = harness::Mounted::new(&d2v, "dirs");
    let meta = |p: &str| std::fs::symlink_metadata(m.path().join(p)).unwrap();
    let owner_mode = |p: &str| {
        let x = meta(p);
        (x.uid(), x.gid(), x.mode() & 0o7777)
    };
    // moby's integration test: "incorrect ownership on /dir. expected 0:0".
    assert_eq!(owner_mode("newd"), (0, 0, 0o755));
    assert_eq!(owner_mode("newd/f"), (0, 0, 0o640));
    assert_eq!(owner_mode("fromstage"), (0, 0, 0o755));
    assert_eq!(owner_mode("fromstage/f"), (100, 200, 0o644));
    assert_eq!(owner_mode("owned"), (7, 8, 0o755));
    assert_eq!(owner_mode("owned/f"), (7, 8, 0o640));
    assert_eq!(owner_mode("slash"), (0, 0, 0o755));
}

#[test]
fn symbolic_chmod_applies_like_chmod() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    let ctx = context(&[("f", "f"), ("x", "x")]);
    std::fs::set_permissions(ctx.path().join("f"), PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::set_permissions(ctx.path().join("x"), PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nCOPY --chmod=u=rwx,go=rX f /f1\nCOPY --chmod=g+w,o-r f /f2\n\
         COPY --chmod=a+X x /x1\nCOPY --chmod=0640 f /f3\n",
    )
    .unwrap();
    built(&d2v, "modes", ctx.path(), &[]);
    let m = harness::Mounted::new(&d2v, "modes");
    let mode = |p: &str| std::fs::metadata(m.path().join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("f1"), 0o744);
    assert_eq!(mode("f2"), 0o660);
    assert_eq!(mode("x1"), 0o711);
    assert_eq!(mode("f3"), 0o640);
}

#[test]
fn a_linked_copy_does_not_rerun_when_what_is_below_it_changes() {
    if !require_root_and(&["tar"]) {
        return;
    }
    let d2v = with_busybox("base");
    let ctx = context(&[
        ("f", "linked\n"),
        (
            "Dockerfile",
            "FROM base\nARG V=1\nRUN echo $V > /v\nCOPY --link f /opt/f\nRUN cat /opt/f /v > /both\n",
        ),
    ]);
    built(&d2v, "linked", ctx.path(), &[]);
    let first = diff_ids(&d2v, "linked");
    // An earlier step changes: only the linked COPY is reused.
    let err = built(&d2v, "linked", ctx.path(), &["--build-arg", "V=2"]);
    assert_eq!(err.matches("CACHED").count(), 1, "{err}");
    assert!(err.contains("[stage-0 3/4] CACHED"), "{err}");
    let second = diff_ids(&d2v, "linked");
    assert_eq!(
        first[first.len() - 2],
        second[second.len() - 2],
        "the linked layer changed"
    );
    // The base image changes: the linked COPY is still reused.
    let base_ctx = context(&[("Dockerfile", "FROM busybox\nRUN echo new > /in-base\n")]);
    d2v.import(&format!("oci:{}:latest", fixture("busybox-oci")), "busybox");
    built(&d2v, "base", base_ctx.path(), &[]);
    let err = built(&d2v, "linked", ctx.path(), &["--build-arg", "V=2"]);
    assert_eq!(err.matches("CACHED").count(), 1, "{err}");
    let third = diff_ids(&d2v, "linked");
    assert_eq!(second[second.len() - 2], third[third.len() - 2]);
    let m = harness::Mounted::new(&d2v, "linked");
    assert_eq!(
        std::fs::read_to_string(m.path().join("both")).unwrap(),
        "linked\n2\n"
    );
    assert!(m.path().join("in-base").exists());
    drop(m);
    // The layer holds the copied file and its new parent only.
    let hex = third[third.len() - 2]
        .trim_start_matches("sha256:")
        .to_string();
    let blob = d2v.home().join("blobs/sha256").join(hex);
    let listing = harness::sh(&format!("tar -tf {}", blob.display()));
    let mut entries: Vec<&str> = listing.lines().map(|l| l.trim_end_matches('/')).collect();
    entries.sort();
    assert_eq!(entries, ["opt", "opt/f"], "{listing}");
}

#[test]
fn run_mount_targets_are_relative_to_the_workdir() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    let ctx = context(&[
        ("hello.txt", "hi\n"),
        (
            "Dockerfile",
            "FROM busybox\nWORKDIR /src\n\
             RUN --mount=type=bind cat hello.txt > /out1\n\
             RUN --mount=type=bind,target=sub cat sub/hello.txt > /out2\n",
        ),
    ]);
    built(&d2v, "mounts", ctx.path(), &[]);
    let m = harness::Mounted::new(&d2v, "mounts");
    assert_eq!(
        std::fs::read_to_string(m.path().join("out1")).unwrap(),
        "hi\n"
    );
    assert_eq!(
        std::fs::read_to_string(m.path().join("out2")).unwrap(),
        "hi\n"
    );
    drop(m);
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=bind,target=/ true\n",
    )]);
    let out = build(&d2v, "root", ctx.path(), &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid mount target \"/\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn parallel_stages_print_whole_prefixed_lines() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    let run = |me: &str| {
        format!(
            "RUN for i in 1 2 3 4 5 6 7 8; do printf '{me}-part-'; sleep 0.05; echo {me}-line-$i; done"
        )
    };
    let dockerfile = format!(
        "FROM busybox AS a\n{}\nFROM busybox AS b\n{}\nFROM busybox\n\
         COPY --from=a /etc/passwd /a\nCOPY --from=b /etc/passwd /b\n",
        run("a"),
        run("b")
    );
    let ctx = context(&[("Dockerfile", &dockerfile)]);
    let err = built(&d2v, "par", ctx.path(), &[]);
    let mut seen = 0;
    for line in err
        .lines()
        .filter(|l| l.contains("-line-") && !l.starts_with("=>"))
    {
        let ok_a = line.starts_with("[a 2/2] a-part-a-line-");
        let ok_b = line.starts_with("[b 2/2] b-part-b-line-");
        assert!(
            ok_a || ok_b,
            "interleaved or unprefixed line {line:?} in:\n{err}"
        );
        seen += 1;
    }
    assert_eq!(seen, 16, "{err}");
}

/// A `git daemon` serving a directory on a loopback port; killed on drop.
struct GitDaemon {
    child: std::process::Child,
    port: u16,
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git_daemon(base: &Path) -> GitDaemon {
    let port = 20000 + (std::process::id() % 20000) as u16;
    // git-daemon itself, not the `git` wrapper (killing that would leave
    // the daemon running).
    let exec_path = harness::sh("git --exec-path").trim().to_string();
    let child = Command::new(Path::new(&exec_path).join("git-daemon"))
        .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", base.display()))
        .arg(base)
        .spawn()
        .expect("git daemon");
    // Owned by the guard from here on: it is killed and waited for on drop.
    let daemon = GitDaemon { child, port };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return daemon;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("git daemon did not listen on {port}");
}

fn git(dir: &Path, args: &str) -> String {
    harness::sh(&format!(
        "cd {} && git -c user.email=t@t -c user.name=t {args}",
        dir.display()
    ))
}

#[test]
fn add_of_a_git_repository() {
    if !require_root_and(&["git"]) {
        return;
    }
    let served = tempfile::tempdir().unwrap();
    let work = served.path().join("work");
    std::fs::create_dir_all(work.join("sub")).unwrap();
    std::fs::write(work.join("a.txt"), "one\n").unwrap();
    std::fs::write(work.join("sub/b.txt"), "b\n").unwrap();
    git(&work, "init -q -b main . && git add -A && git -c user.email=t@t -c user.name=t commit -qm one && git tag v1");
    let first = git(&work, "rev-parse HEAD").trim().to_string();
    std::fs::write(work.join("a.txt"), "two\n").unwrap();
    git(&work, "commit -qam two");
    git(served.path(), "clone -q --bare work repo.git");
    let daemon = git_daemon(served.path());
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);

    let d2v = with_busybox("busybox");
    let dockerfile = format!(
        "FROM busybox\nADD {url} /whole\nADD {url}#v1:sub /sub\n\
         ADD --keep-git-dir=true {url}#main /kept\nADD --checksum={first} {url}#v1 /pinned\n"
    );
    let ctx = context(&[("Dockerfile", &dockerfile)]);
    built(&d2v, "git", ctx.path(), &[]);
    {
        let m = harness::Mounted::new(&d2v, "git");
        let read = |p: &str| std::fs::read_to_string(m.path().join(p)).unwrap();
        assert_eq!(read("whole/a.txt"), "two\n");
        assert_eq!(read("whole/sub/b.txt"), "b\n");
        assert!(!m.path().join("whole/.git").exists());
        assert_eq!(read("sub/b.txt"), "b\n");
        assert!(!m.path().join("sub/a.txt").exists());
        assert!(m.path().join("kept/.git").is_dir());
        assert_eq!(read("pinned/a.txt"), "one\n");
    }
    // Unchanged remote: every step is reused.
    let err = built(&d2v, "git", ctx.path(), &[]);
    assert_eq!(err.matches("CACHED").count(), 4, "{err}");
    // A new commit on the branch is fetched again.
    std::fs::write(work.join("a.txt"), "three\n").unwrap();
    git(&work, "commit -qam three");
    git(
        &work,
        &format!("push -q {} main", served.path().join("repo.git").display()),
    );
    built(&d2v, "git", ctx.path(), &[]);
    {
        let m = harness::Mounted::new(&d2v, "git");
        assert_eq!(
            std::fs::read_to_string(m.path().join("whole/a.txt")).unwrap(),
            "three\n"
        );
        assert_eq!(
            std::fs::read_to_string(m.path().join("pinned/a.txt")).unwrap(),
            "one\n"
        );
    }
    // A checksum that is not the commit fails the step.
    let bad = context(&[(
        "Dockerfile",
        &format!(
            "FROM busybox\nADD --checksum=0000000000000000000000000000000000000000 {url}#v1 /x\n"
        ),
    )]);
    let out = build(&d2v, "bad", bad.path(), &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("expected checksum to match"),
        "{}",
        stderr(&out)
    );
}

/// The corpus Dockerfiles that need only Debian packages, a small
/// representative subset (one apt install with cache mounts, users and
/// groups, SHELL and labels, RUN here-documents), built on the Debian
/// fixture; their configs match the hand-checked `config.json` in every
/// field the Dockerfile sets (the fixture's own config differs from the
/// planning base in what it inherits).
#[test]
fn corpus_dockerfiles_that_need_only_debian_build() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = D2v::new();
    d2v.import(
        &format!("oci:{}:bookworm", fixture("debian-oci")),
        "debian:bookworm",
    );
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/corpus");
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "debian-users-groups",
            &[("/etc/passwd", "app:x:10001:10001")],
        ),
        (
            "debian-shell-only",
            &[("/opt/demo/etc/demo.conf", "mode=prod")],
        ),
        ("heredoc-run-script", &[("/srv/data/state", "ready")]),
        ("debian-apt-cache-mounts", &[("/usr/bin/jq", "")]),
    ];
    for (name, files) in cases {
        let dir = corpus.join(name);
        built(&d2v, name, &dir, &[]);
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let actual: serde_json::Value = serde_json::from_str(&d2v.ok(&["inspect", name])).unwrap();
        let text = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
        for (field, keyword) in [
            ("User", "USER"),
            ("WorkingDir", "WORKDIR"),
            ("Entrypoint", "ENTRYPOINT"),
            ("Cmd", "CMD"),
            ("Labels", "LABEL"),
            ("Shell", "SHELL"),
        ] {
            if text.lines().any(|l| l.starts_with(keyword)) {
                assert_eq!(
                    actual["config"][field], expected["config"][field],
                    "{name}: {field}"
                );
            }
        }
        for env in expected["config"]["Env"].as_array().unwrap() {
            let env = env.as_str().unwrap();
            if !env.starts_with("PATH=") {
                assert!(
                    actual["config"]["Env"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|e| e == env),
                    "{name}: {env} missing from {}",
                    actual["config"]
                );
            }
        }
        let m = harness::Mounted::new(&d2v, name);
        for (path, needle) in *files {
            let p = m.path().join(path.trim_start_matches('/'));
            let content = std::fs::read(&p).unwrap_or_else(|e| panic!("{name}: {path}: {e}"));
            assert!(
                String::from_utf8_lossy(&content).contains(needle),
                "{name}: {path} lacks {needle:?}"
            );
        }
    }
}
