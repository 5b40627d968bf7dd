//! A Dockerfile from the internet must not own the host (issue: confined,
//! rootless builds). Each test is a regression test for one way a RUN step or
//! an image could reach the host, run through `d2v build` as a user would.

use crate::harness;
use harness::{build, context, text, with_busybox};

use d2v_testkit::procs;
use harness::rootless::{self, RootlessD2v};
use harness::{fixture, require_root_and, D2v};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The entries of the topmost layer of `tag` in the store at `home`.
fn top_layer_entries(home: &Path, tag: &str) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no image {tag}"));
    let blob = |d: &serde_json::Value| {
        home.join("blobs/sha256")
            .join(d.as_str().unwrap().trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&manifest["digest"])).unwrap()).unwrap();
    let top = manifest["layers"].as_array().unwrap().last().unwrap();
    let mut ar = tar::Archive::new(std::fs::File::open(blob(&top["digest"])).unwrap());
    ar.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// A one-shot HTTP server on the host's 127.0.0.1 answering `SECRET-<port>`.
fn loopback_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let body = format!("SECRET-{port}");
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn run_steps_get_dockers_confinement_and_cannot_reach_host_root() {
    if !require_root_and(&["slirp4netns"]) {
        return;
    }
    let d2v = with_busybox("busybox");
    let port = loopback_server();
    let probe = format!(
        r#"FROM busybox
RUN grep -E '^(CapBnd|CapEff|Seccomp):' /proc/self/status; \
    grep -q ' /proc/sys ro,' /proc/self/mountinfo || echo proc/sys WRITABLE; \
    if (echo '|/tmp/x' > /proc/sys/kernel/core_pattern) 2>/dev/null; then echo core_pattern WRITTEN; fi; \
    if (echo 1 > /proc/sys/kernel/printk) 2>/dev/null; then echo printk WRITTEN; fi; \
    if (echo 1 > /proc/sysrq-trigger) 2>/dev/null; then echo sysrq WRITTEN; fi; \
    echo kcore=$(head -c 16 /proc/kcore | wc -c) keys=$(wc -c < /proc/keys) timer_list=$(wc -c < /proc/timer_list); \
    if mknod /tmp/blk b 8 0 2>/dev/null && head -c1 /tmp/blk >/dev/null 2>&1; then echo BLOCK DEVICE READ; fi; \
    ls /dev | tr '\n' ' '; echo; \
    grep -qi ':{port:04X} ' /proc/net/tcp && echo HOST SOCKETS VISIBLE; \
    printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 10.0.2.2 {port} 2>/dev/null; \
    printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 127.0.0.1 {port} 2>/dev/null; \
    if unshare -U true 2>/dev/null; then echo UNSHARE ALLOWED; fi; \
    echo probe done
"#
    );
    let ctx = context(&[("Dockerfile", &probe)]);
    let out = build(&d2v, "probe", ctx.path(), &["--no-cache"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("CapBnd:\t00000000a80425fb"), "{log}");
    assert!(log.contains("CapEff:\t00000000a80425fb"), "{log}");
    assert!(log.contains("Seccomp:\t2"), "{log}");
    assert!(log.contains("kcore=0 keys=0 timer_list=0"), "{log}");
    for bad in [
        "WRITABLE",
        "WRITTEN",
        "BLOCK DEVICE READ",
        "HOST SOCKETS VISIBLE",
        "SECRET-",
        "UNSHARE ALLOWED",
    ] {
        assert!(!log.contains(bad), "{bad}:\n{log}");
    }
    let devs = log
        .lines()
        .find(|l| l.contains("null") && l.contains("urandom"))
        .unwrap_or_else(|| panic!("no /dev listing:\n{log}"));
    // Plain progress prefixes each output line with its step ("[stage-0 2/2] ").
    let devs = devs.rsplit("] ").next().unwrap_or(devs);
    let mut devs: Vec<&str> = devs.split_whitespace().collect();
    devs.sort();
    assert_eq!(
        devs,
        [
            "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr",
            "stdin", "stdout", "tty", "urandom", "zero"
        ],
        "{log}"
    );
    assert!(log.contains("probe done"), "{log}");

    // The host's loopback service really answers: only the sandbox stops it.
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM busybox\nRUN --network=host printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 127.0.0.1 {port}\n"
        ),
    )]);
    let refused = build(&d2v, "hostnet", ctx.path(), &[]);
    assert!(!refused.status.success());
    let err = text(&refused);
    assert!(
        err.contains("Dockerfile:2") && err.contains("--allow network.host"),
        "{err}"
    );
    let allowed = build(&d2v, "hostnet", ctx.path(), &["--allow", "network.host"]);
    assert!(allowed.status.success(), "{}", text(&allowed));
    assert!(text(&allowed).contains(&format!("SECRET-{port}")));
}

#[test]
fn network_none_has_only_lo_and_insecure_needs_its_entitlement() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN --network=none echo ifaces: $(ls /sys/class/net)\n",
    )]);
    let out = build(&d2v, "none", ctx.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ifaces: lo\n"), "{}", text(&out));

    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo ok\nRUN --security=insecure grep -E '^(CapEff|Seccomp):' /proc/self/status\n",
    )]);
    let refused = build(&d2v, "insecure", ctx.path(), &[]);
    assert!(!refused.status.success());
    let err = text(&refused);
    assert!(
        err.contains("Dockerfile:3") && err.contains("--allow security.insecure"),
        "{err}"
    );
    assert!(
        !err.contains("echo ok"),
        "refused before any step ran: {err}"
    );
    let allowed = build(
        &d2v,
        "insecure",
        ctx.path(),
        &["--allow", "security.insecure"],
    );
    let log = text(&allowed);
    assert!(allowed.status.success(), "{log}");
    assert!(log.contains("Seccomp:\t0"), "{log}");
    assert!(!log.contains("CapEff:\t00000000a80425fb"), "{log}");
    // Unknown entitlements are an error, as in buildx.
    let bad = build(&d2v, "x", ctx.path(), &["--allow", "device"]);
    assert!(text(&bad).contains("unknown entitlement"), "{}", text(&bad));
}

#[test]
fn mount_point_clean_up_never_follows_a_steps_symlink_to_the_host() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    let host = tempfile::tempdir().unwrap();
    std::fs::create_dir(host.path().join("c")).unwrap();
    std::fs::write(host.path().join("emptyfile"), "").unwrap();
    let dockerfile = format!(
        "FROM busybox\nRUN --mount=type=tmpfs,target=/a/b/c --mount=type=tmpfs,target=/a/b/emptyfile \
         mv /a/b /a/old && ln -s {} /a/b\n",
        host.path().display()
    );
    let ctx = context(&[("Dockerfile", &dockerfile)]);
    let out = build(&d2v, "stubs", ctx.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(host.path().join("c").is_dir(), "host dir deleted");
    assert!(host.path().join("emptyfile").is_file(), "host file deleted");
}

/// The owner `path` has in the layers of `tag` (the topmost layer holding it).
fn layer_owner(home: &Path, tag: &str, path: &str) -> Option<(u64, u64)> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("index.json")).unwrap()).unwrap();
    let blob = |d: &serde_json::Value| {
        home.join("blobs/sha256")
            .join(d.as_str().unwrap().trim_start_matches("sha256:"))
    };
    let manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no image {tag}"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&manifest["digest"])).unwrap()).unwrap();
    let mut owner = None;
    for layer in manifest["layers"].as_array().unwrap() {
        let mut ar = tar::Archive::new(std::fs::File::open(blob(&layer["digest"])).unwrap());
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            if e.path().unwrap().to_string_lossy() == path {
                owner = Some((e.header().uid().unwrap(), e.header().gid().unwrap()));
            }
        }
    }
    owner
}

#[test]
fn a_step_chowns_to_ids_above_65535_as_under_docker() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    // A root `tar -x` of a tarball made elsewhere chowns to ids like these;
    // Docker maps no ids, so it works there.
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN touch /f && chown 197609:1000000 /f\n\
         RUN stat -c %u:%g /f > /seen && cat /seen\n",
    )]);
    let out = build(&d2v, "bigids", ctx.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("197609:1000000"), "{}", text(&out));
    assert_eq!(
        layer_owner(d2v.home(), "bigids", "f"),
        Some((197609, 1000000))
    );
}

#[test]
fn a_run_layer_holds_only_what_the_step_changed() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    // An image that has the files a RUN step gets generated copies of.
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY etc/ /etc/\nRUN mkdir /newdir\n",
        ),
        ("etc/hosts", "127.0.0.1 base\n"),
        ("etc/hostname", "base\n"),
        ("etc/resolv.conf", "nameserver 192.0.2.1\n"),
    ]);
    let out = build(&d2v, "onlynew", ctx.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(top_layer_entries(d2v.home(), "onlynew"), ["newdir/"]);
}

#[test]
fn killing_a_build_leaves_no_mount_process_or_scratch_prune_cannot_clear() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo a > /a\nRUN sleep 4391\n",
    )]);
    let home = d2v.home().to_string_lossy().into_owned();
    let start_build = || {
        d2v.cmd()
            .args(["build", "-t", "k", "--no-cache", "--progress", "plain"])
            .arg(ctx.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // Kill at moments spread over the build: during setup, the first RUN,
    // between steps, and inside the long RUN.
    for i in 0..10u64 {
        let mut child = start_build();
        std::thread::sleep(Duration::from_millis(50 + i * 97 % 700));
        child.kill().unwrap();
        child.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
            let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&home)).collect();
            // The step, and the processes serving the build's layer views.
            let procs = Command::new("pgrep")
                .args(["-f", &format!("sleep 4391|__serve-layers --dir {home}")])
                .output()
                .unwrap();
            if left.is_empty() && procs.stdout.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kill {i}: left behind: mounts {left:?}, processes {}",
                String::from_utf8_lossy(&procs.stdout)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The step's slirp4netns is reparented to init when d2v dies; it must
    // end too (its exit pipe, whose write end only d2v held, closes).
    let mut child = start_build();
    let tree = procs::wait_for_descendant(&mut child, "sleep 4391", Duration::from_secs(60))
        .unwrap_or_else(|status| panic!("the build ended early: {status}"));
    let slirps: Vec<_> = tree
        .into_iter()
        .filter(|p| p.cmdline.starts_with("slirp4netns"))
        .collect();
    assert!(!slirps.is_empty(), "no slirp4netns below the build");
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while slirps.iter().any(|p| p.alive()) {
        assert!(
            Instant::now() < deadline,
            "slirp4netns outlived the killed build: {slirps:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d2v.ok(&["prune"]);
    let tmp = d2v.home().join("d2v/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "scratch left after prune: {left:?}");
}

#[test]
fn d2v_mount_honours_no_setuid_and_is_private_unless_asked() {
    if !require_root_and(&[]) {
        return;
    }
    let d2v = with_busybox("busybox");
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN mkdir /suid && cp /bin/busybox /suid/busybox && chmod 4755 /suid/busybox\n",
    )]);
    let out = build(&d2v, "suid", ctx.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let as_nobody = |cmd: &str| {
        Command::new("runuser")
            .args(["-u", "nobody", "--", "sh", "-c", cmd])
            .output()
            .unwrap()
    };
    for allow_other in [false, true] {
        let mnt = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            mnt.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let m = mnt.path().to_str().unwrap();
        let mut args = vec!["mount", "suid", m];
        if allow_other {
            args.push("--allow-other");
        }
        d2v.ok(&args);
        let listed = as_nobody(&format!("ls {m}/suid"));
        let euid = as_nobody(&format!("{m}/suid/busybox id -u"));
        d2v.ok(&["umount", m]);
        if allow_other {
            assert!(listed.status.success(), "{}", text(&listed));
            let uid = String::from_utf8_lossy(&euid.stdout).trim().to_string();
            assert_eq!(uid, "65534", "setuid honoured: {}", text(&euid));
        } else {
            assert!(!listed.status.success(), "other users can list the view");
        }
    }
}

#[test]
fn a_build_as_an_ordinary_user_makes_the_same_layers_as_root() {
    if !require_root_and(&["newuidmap", "slirp4netns"]) {
        return;
    }
    let dockerfile = "FROM busybox\n\
        RUN echo bob:x:1234:1234::/tmp:/bin/sh >> /etc/passwd && mkdir /data && echo hi > /data/f && chown 1234:1234 /data/f\n\
        USER bob\n\
        RUN id -u > /tmp/who && touch /tmp/bobs\n\
        USER root\n\
        RUN chmod 4755 /data/f && ln -s /data/f /data/l && rm /etc/group- 2>/dev/null; ls -ln /data\n";
    let ctx = context(&[("Dockerfile", dockerfile)]);
    let root = with_busybox("busybox");
    let out = build(&root, "same", ctx.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));

    let user = RootlessD2v::new();
    user.ok(&[
        "import",
        &format!("oci:{}:latest", fixture("busybox-oci")),
        "--as",
        "busybox",
    ]);
    let ctx_copy = rootless::readable_copy(ctx.path());
    let out = user.run(&[
        "build",
        "-t",
        "same",
        "--progress",
        "plain",
        ctx_copy.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "as {}: {}",
        rootless::USER,
        text(&out)
    );
    // The same entries with the same owners, modes, sizes, links and xattrs
    // in the same layers (mtimes of what the steps wrote differ by run).
    assert_eq!(
        layer_listing(root.home(), "same"),
        layer_listing(user.home(), "same")
    );
}

/// Every entry of every layer of `tag`: path, type, mode, uid, gid, size,
/// link target, xattrs.
fn layer_listing(home: &Path, tag: &str) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap();
    let blob = |d: &serde_json::Value| {
        home.join("blobs/sha256")
            .join(d.as_str().unwrap().trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&manifest["digest"])).unwrap()).unwrap();
    let mut out = Vec::new();
    for (i, layer) in manifest["layers"].as_array().unwrap().iter().enumerate() {
        let mut ar = tar::Archive::new(std::fs::File::open(blob(&layer["digest"])).unwrap());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let xattrs: Vec<String> = e
                .pax_extensions()
                .unwrap()
                .map(|x| {
                    x.filter_map(|x| x.ok())
                        .filter(|x| x.key().is_ok_and(|k| k.starts_with("SCHILY.xattr.")))
                        .map(|x| format!("{}={:?}", x.key().unwrap(), x.value_bytes()))
                        .collect()
                })
                .unwrap_or_default();
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            out.push(format!(
                "{i} {} {:?} {:o} {}:{} {} {:?} {:?} {}",
                e.path().unwrap().display(),
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.size().unwrap(),
                e.link_name().unwrap(),
                xattrs,
                if e.path().unwrap().starts_with("tmp/who") {
                    String::from_utf8_lossy(&content).into_owned()
                } else {
                    String::new()
                }
            ));
        }
    }
    out
}

#[test]
fn debian_steps_reach_the_mirror_but_not_the_hosts_loopback() {
    if !require_root_and(&["slirp4netns"]) {
        return;
    }
    let d2v = D2v::new();
    d2v.import(
        &format!("oci:{}:bookworm", fixture("debian-oci")),
        "debian:bookworm",
    );
    let port = loopback_server();
    let dockerfile = format!(
        "FROM debian:bookworm\n\
         RUN apt-get update -q >/dev/null && echo MIRROR REACHED; \
             for host in 10.0.2.2 127.0.0.1; do \
               timeout 5 bash -c \"exec 3<>/dev/tcp/$host/{port} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3\" 2>/dev/null; \
             done; \
             echo probe done\n"
    );
    let ctx = context(&[("Dockerfile", &dockerfile)]);
    let out = build(&d2v, "debprobe", ctx.path(), &[]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("MIRROR REACHED"), "{log}");
    assert!(!log.contains("SECRET-"), "{log}");
    assert!(log.contains("probe done"), "{log}");
}

#[test]
fn killing_a_rootless_build_leaves_nothing_its_prune_cannot_clear() {
    if !require_root_and(&["newuidmap", "slirp4netns"]) {
        return;
    }
    let user = RootlessD2v::new();
    user.ok(&[
        "import",
        &format!("oci:{}:latest", fixture("busybox-oci")),
        "--as",
        "busybox",
    ]);
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN mkdir -p /x/y && echo data > /x/y/f && chown -R 1000:1000 /x && sleep 4392\n",
    )]);
    let ctx = rootless::readable_copy(ctx.path());
    let mut child = user
        .cmd()
        .args(["build", "-t", "k", "--progress", "plain"])
        .arg(ctx.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the long step (below this build, not anywhere on the
    // machine), then kill d2v itself (not runuser).
    let tree = match procs::wait_for_descendant(&mut child, "sleep 4392", Duration::from_secs(60)) {
        Ok(tree) => tree,
        Err(status) => panic!("the build ended before its step started ({status})"),
    };
    let d2v = tree
        .iter()
        .find(|p| p.cmdline.contains(" build -t k "))
        .unwrap_or_else(|| panic!("no d2v in {tree:?}"));
    // SAFETY: signalling a process of the build this test started.
    assert_eq!(unsafe { libc::kill(d2v.pid as i32, libc::SIGKILL) }, 0);
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some(p) = tree.iter().find(|p| p.cmdline == "sleep 4392" && p.alive()) {
        assert!(Instant::now() < deadline, "the step survived d2v: {p:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let home = user.home().to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(&home), "mounts left: {mounts}");
    // Its scratch holds files of the user's subordinate ids: only d2v, in
    // the user's namespace, can remove them.
    let tmp = user.home().join("d2v/tmp");
    assert!(std::fs::read_dir(&tmp).unwrap().next().is_some());
    user.ok(&["prune"]);
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "scratch left after prune: {left:?}");
}

#[test]
fn an_ordinary_user_imports_mounts_packs_pulls_pushes_and_prunes() {
    if !require_root_and(&["newuidmap", "fusermount3", "docker-registry"]) {
        return;
    }
    let user = RootlessD2v::new();
    user.ok(&[
        "import",
        &format!("oci:{}:latest", fixture("busybox-oci")),
        "--as",
        "busybox",
    ]);
    assert!(user.ok(&["images"]).contains("busybox"));
    // The view appears in the user's own mount namespace, readable by them,
    // and goes away with `d2v umount`.
    let mnt = tempfile::tempdir().unwrap();
    let u = rootless::user();
    std::os::unix::fs::chown(mnt.path(), Some(u.uid), Some(u.gid)).unwrap();
    let m = mnt.path().to_str().unwrap();
    user.ok(&["mount", "busybox", m]);
    let as_user = Command::new("runuser")
        .args(["-u", rootless::USER, "--", "cat"])
        .arg(mnt.path().join("etc/passwd"))
        .output()
        .unwrap();
    // Not even root may look into another user's private view.
    let as_root = std::fs::read_to_string(mnt.path().join("etc/passwd"));
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    user.ok(&["umount", m]);
    assert!(
        String::from_utf8_lossy(&as_user.stdout).starts_with("root:"),
        "{}",
        text(&as_user)
    );
    assert!(as_root.is_err());
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(m) && l.contains("nosuid,nodev")),
        "{mounts}"
    );
    assert!(!std::fs::read_to_string("/proc/mounts").unwrap().contains(m));
    // pack writes an image the user owns.
    let out_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(out_dir.path(), Some(u.uid), Some(u.gid)).unwrap();
    let ext4 = out_dir.path().join("bb.ext4");
    user.ok(&["pack", "busybox", "-o", ext4.to_str().unwrap()]);
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&ext4)
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{}", text(&fsck));
    // push to and pull from a registry.
    let registry = harness::registry::TestRegistry::start();
    let reference = format!("{}/rootless/busybox:1", registry.host());
    user.ok(&["push", "busybox", &reference]);
    let other = RootlessD2v::new();
    other.ok(&["pull", &reference]);
    assert!(other.ok(&["images"]).contains("rootless/busybox"));
    user.ok(&["rm", "busybox"]);
    user.ok(&["prune"]);
}

#[test]
fn file_capabilities_of_the_image_work_in_a_step() {
    if !require_root_and(&["setcap"]) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", fixture("busybox-rootfs")))
        .arg(root.path())
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::create_dir(root.path().join("capdir")).unwrap();
    std::fs::copy(
        root.path().join("bin/busybox"),
        root.path().join("capdir/grep"),
    )
    .unwrap();
    let ok = Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(root.path().join("capdir/grep"))
        .status()
        .unwrap();
    assert!(ok.success());
    let d2v = D2v::new();
    d2v.import(&format!("rootfs:{}", root.path().display()), "capimg");
    let ctx = context(&[(
        "Dockerfile",
        "FROM capimg\nUSER app\nRUN /capdir/grep CapEff /proc/self/status\n",
    )]);
    let out = build(&d2v, "caps", ctx.path(), &[]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("CapEff:\t0000000000002000"), "{log}");
}

#[test]
fn a_user_without_subordinate_ids_builds_as_itself_and_is_told_why_other_users_fail() {
    if !require_root_and(&[]) {
        return;
    }
    let name = "d2v-nosubids";
    if !Command::new("id")
        .arg(name)
        .output()
        .unwrap()
        .status
        .success()
    {
        let ok = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", name])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let kept: String = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with(&format!("{name}:")))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(file, kept).unwrap();
    }
    let u = rootless::user(); // for the copied binary
    let home = tempfile::Builder::new()
        .prefix("d2v-nosub-home-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let ok = Command::new("chown")
        .arg(format!("{name}:"))
        .arg(home.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let run = |args: &[&str]| {
        Command::new("runuser")
            .args(["-u", name, "--", "env", "-i", "PATH=/usr/bin:/bin"])
            .arg(format!("HOME=/home/{name}"))
            .arg(format!("D2V_HOME={}", home.path().display()))
            .arg(&u.bin)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "import",
        &format!("oci:{}:latest", fixture("busybox-oci")),
        "--as",
        "busybox",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let ctx = rootless::readable_copy(
        context(&[("Dockerfile", "FROM busybox\nRUN id -u > /who\n")]).path(),
    );
    let out = run(&["build", "-t", "me", ctx.path().to_str().unwrap()]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("no subordinate id range"), "{log}");
    let ctx = rootless::readable_copy(
        context(&[("Dockerfile", "FROM busybox\nUSER app\nRUN id -u\n")]).path(),
    );
    let out = run(&["build", "-t", "app", ctx.path().to_str().unwrap()]);
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("Dockerfile:3") && log.contains("/etc/subuid"),
        "{log}"
    );
}
