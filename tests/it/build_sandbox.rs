//! RUN sandbox over a real kernel overlayfs with a busybox lower dir.

use crate::build_common;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use build_common::*;
use d2v::build::layer::write_layer;
use d2v::build::sandbox::{run, NetworkMode, RunSpec, SandboxError, SandboxMount as RunMount};

struct Fixture {
    _dir: tempfile::TempDir,
    base: std::path::PathBuf,
    lower: std::path::PathBuf,
}

fn fixture() -> Option<Fixture> {
    if !facilities(true) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let lower = base.join("lower");
    busybox_rootfs(&lower);
    shift_tree(&lower, step_base());
    Some(Fixture {
        _dir: dir,
        base,
        lower,
    })
}

fn sh(cmd: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), cmd.into()]
}

fn run_capture(spec: &RunSpec) -> (i32, String, std::path::PathBuf) {
    let mut out = Vec::new();
    let outcome = run(spec, &mut |b| out.extend_from_slice(b), None).unwrap();
    (
        outcome.exit_code,
        String::from_utf8_lossy(&out).into_owned(),
        outcome.upper,
    )
}

#[test]
fn run_as_named_user_has_its_ids_groups_cwd_and_exact_env() {
    let Some(f) = fixture() else { return };
    let mut spec = RunSpec::new(
        sh("id -u; id -g; id -G; pwd; touch /home/app/mine"),
        vec![f.lower.clone()],
        scratch(&f.base, "s1"),
    );
    spec.user = "app".into();
    spec.workdir = "/work/dir".into();
    let (code, out, upper) = run_capture(&spec);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000", "{out}");
    assert_eq!(lines[1], "1000", "{out}");
    let mut groups: Vec<&str> = lines[2].split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, ["10", "1000", "29"], "{out}");
    assert_eq!(lines[3], "/work/dir");
    // WORKDIR was created as root; the file as the user.
    let md = std::fs::metadata(upper.join("work/dir")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), step_base());
    let md = std::fs::metadata(upper.join("home/app/mine")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), step_base() + 1000);

    let mut spec = RunSpec::new(
        vec!["env".into()],
        vec![f.lower.clone()],
        scratch(&f.base, "s2"),
    );
    spec.user = "app:staff".into();
    spec.env = vec!["FOO=bar baz".into(), "EMPTY=".into()];
    let (code, out, _) = run_capture(&spec);
    assert_eq!(code, 0, "{out}");
    let mut env: Vec<&str> = out.lines().collect();
    env.sort();
    assert_eq!(
        env,
        [
            "EMPTY=",
            "FOO=bar baz",
            "HOME=/home/app",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ]
    );

    let mut spec = RunSpec::new(
        sh("id -u; id -g; id -G"),
        vec![f.lower.clone()],
        scratch(&f.base, "s3"),
    );
    spec.user = "app:staff".into();
    let (_, out, _) = run_capture(&spec);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["1000", "50", "50"],
        "explicit group: no supplementary groups"
    );
}

#[test]
fn writes_deletes_and_opaque_replacements_become_whiteouts_in_the_layer() {
    let Some(f) = fixture() else { return };
    std::fs::create_dir_all(f.lower.join("data")).unwrap();
    std::fs::write(f.lower.join("data/keep"), "keep").unwrap();
    std::fs::write(f.lower.join("data/del"), "del").unwrap();
    std::fs::create_dir_all(f.lower.join("opq/sub")).unwrap();
    std::fs::write(f.lower.join("opq/a"), "a").unwrap();
    shift_tree(&f.lower, step_base());
    let spec = RunSpec::new(
        sh("echo hi > /data/new && ln /data/new /data/zlink && rm /data/del && rm -rf /opq && mkdir /opq && echo c > /opq/c && ln -s ../data/keep /opq/sym"),
        vec![f.lower.clone()],
        scratch(&f.base, "s"),
    );
    let (code, out, upper) = run_capture(&spec);
    assert_eq!(code, 0, "{out}");
    let layer = write_layer(&upper, &f.base, step_base()).unwrap();
    assert!(layer.digest.starts_with("sha256:") && layer.digest.len() == 71);
    assert_eq!(layer.size, std::fs::metadata(&layer.path).unwrap().len());
    let entries = read_tar(&layer.path);
    let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "data/",
            "data/.wh.del",
            "data/new",
            "data/zlink",
            "opq/",
            "opq/.wh..wh..opq",
            "opq/c",
            "opq/sym"
        ],
        "{entries:#?}"
    );
    let by = |n: &str| entries.iter().find(|e| e.path == n).unwrap();
    assert_eq!(by("data/new").content, b"hi\n");
    assert_eq!(by("data/zlink").kind, b'1', "hard link");
    assert_eq!(by("data/zlink").link.as_deref(), Some("data/new"));
    assert_eq!(by("opq/sym").kind, b'2');
    assert_eq!(by("opq/sym").link.as_deref(), Some("../data/keep"));
    // No overlay bookkeeping leaks into the layer.
    assert!(entries
        .iter()
        .all(|e| e.xattrs.iter().all(|(k, _)| !k.contains("overlay"))));
    // The same upper dir gives the same bytes.
    let again = write_layer(&upper, &f.base, step_base()).unwrap();
    assert_eq!(again.digest, layer.digest);
}

#[test]
fn generated_etc_files_and_mount_points_are_not_in_the_layer() {
    let Some(f) = fixture() else { return };
    let spec = RunSpec::new(
        sh("cat /etc/hostname; grep -c localhost /etc/hosts; test -e /etc/resolv.conf && ls /dev && mount | grep -c ' /proc '"),
        vec![f.lower.clone()],
        scratch(&f.base, "s"),
    );
    let (code, out, upper) = run_capture(&spec);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("d2v\n"), "{out}");
    for dev in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx", "fd", "stdin",
    ] {
        assert!(
            out.lines().any(|l| l.split_whitespace().any(|w| w == dev)),
            "/dev/{dev} missing: {out}"
        );
    }
    let layer = write_layer(&upper, &f.base, step_base()).unwrap();
    let entries = read_tar(&layer.path);
    assert!(
        entries.is_empty(),
        "a no-op RUN leaves an empty layer, got {entries:#?}"
    );
}

#[test]
fn failing_run_returns_its_exit_code_and_leaves_no_process_or_mount() {
    let Some(f) = fixture() else { return };
    let s = scratch(&f.base, "s");
    let spec = RunSpec::new(
        sh("sleep 4243 & echo started; exit 3"),
        vec![f.lower.clone()],
        s.clone(),
    );
    let (code, out, _) = run_capture(&spec);
    assert_eq!(code, 3, "{out}");
    assert_eq!(out, "started\n");
    assert!(
        processes_with("sleep 4243").is_empty(),
        "the background sleep survived"
    );
    assert!(
        mounts_mentioning(&s).is_empty(),
        "mounts left: {:?}",
        mounts_mentioning(&s)
    );
}

#[test]
fn cancel_kills_the_whole_step() {
    let Some(f) = fixture() else { return };
    let s = scratch(&f.base, "s");
    let spec = RunSpec::new(
        sh("sleep 4244 & sleep 4245"),
        vec![f.lower.clone()],
        s.clone(),
    );
    let cancel = AtomicBool::new(false);
    let started = std::time::Instant::now();
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(300));
            cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        run(&spec, &mut |_| {}, Some(&cancel))
    });
    assert!(matches!(result, Err(SandboxError::Cancelled)), "{result:?}");
    assert!(started.elapsed().as_secs() < 30);
    assert!(processes_with("sleep 4244").is_empty() && processes_with("sleep 4245").is_empty());
    assert!(mounts_mentioning(&s).is_empty());
}

#[test]
fn missing_program_is_an_exec_error() {
    let Some(f) = fixture() else { return };
    let spec = RunSpec::new(
        vec!["no-such-tool".into()],
        vec![f.lower.clone()],
        scratch(&f.base, "s"),
    );
    let err = run(&spec, &mut |_| {}, None).unwrap_err();
    assert!(
        matches!(&err, SandboxError::Exec { argv0, .. } if argv0 == "no-such-tool"),
        "{err}"
    );
}

#[test]
fn network_none_has_only_loopback_and_it_is_up() {
    let Some(f) = fixture() else { return };
    let mut spec = RunSpec::new(
        sh("tail -n +3 /proc/net/dev | cut -d: -f1; cat /sys/class/net/lo/flags"),
        vec![f.lower.clone()],
        scratch(&f.base, "s"),
    );
    spec.network = NetworkMode::None;
    let (code, out, _) = run_capture(&spec);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0], "lo", "{out}");
    assert_eq!(lines.len(), 2, "only lo expected: {out}");
    let flags = u32::from_str_radix(lines[1].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is not up: {out}");
}

#[test]
fn run_mounts_cache_tmpfs_secret_and_bind_stay_out_of_the_layer() {
    let Some(f) = fixture() else { return };
    let cache = f.base.join("cache");
    let secret = f.base.join("secret.txt");
    std::fs::write(&secret, "s3cr3t").unwrap();
    let context = f.base.join("context");
    std::fs::create_dir_all(context.join("sub")).unwrap();
    std::fs::write(context.join("sub/file"), "from context").unwrap();
    let mounts = vec![
        RunMount::Cache {
            target: "/var/cache/thing".into(),
            host_dir: cache.clone(),
            readonly: false,
            owner: (0, 0),
            mode: 0o755,
        },
        RunMount::Tmpfs {
            target: "/scratchpad".into(),
            size: Some(1 << 20),
        },
        RunMount::Secret {
            target: "/run/secrets/token".into(),
            source: secret.clone(),
            owner: (0, 0),
            mode: 0o400,
        },
        RunMount::Bind {
            target: "/ctx".into(),
            root: context.clone(),
            source: "sub".into(),
            readwrite: false,
        },
        RunMount::Bind {
            target: "/ctx-rw".into(),
            root: context.clone(),
            source: "/sub".into(),
            readwrite: true,
        },
    ];
    let script = "cat /run/secrets/token; echo; cat /ctx/file; echo; \
        echo one >> /var/cache/thing/log; cat /var/cache/thing/log | wc -l; \
        echo t > /scratchpad/t && grep -c ' /scratchpad tmpfs' /proc/mounts; \
        if (echo x > /ctx/new) 2>/dev/null; then echo ro-broken; else echo ro-ok; fi; \
        echo y > /ctx-rw/new && echo rw-ok; echo kept > /kept";
    let mut spec = RunSpec::new(sh(script), vec![f.lower.clone()], scratch(&f.base, "s1"));
    spec.mounts = mounts.clone();
    let (code, out, upper) = run_capture(&spec);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "s3cr3t\nfrom context\n1\n1\nro-ok\nrw-ok\n");
    assert!(
        !context.join("sub/new").exists(),
        "rw bind writes must be discarded"
    );
    let entries = read_tar(&write_layer(&upper, &f.base, step_base()).unwrap().path);
    let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, ["kept"], "{entries:#?}");
    assert!(entries
        .iter()
        .all(|e| !e.content.windows(6).any(|w| w == b"s3cr3t")));

    // The cache persists into the next run.
    let mut spec = RunSpec::new(
        sh("echo two >> /var/cache/thing/log; wc -l < /var/cache/thing/log"),
        vec![f.lower.clone()],
        scratch(&f.base, "s2"),
    );
    spec.mounts = mounts[..1].to_vec();
    let (_, out, _) = run_capture(&spec);
    assert_eq!(out.trim(), "2");
    assert_eq!(
        std::fs::read_to_string(cache.join("log")).unwrap(),
        "one\ntwo\n"
    );
}

#[test]
fn image_symlinks_cannot_redirect_mount_points_to_the_host() {
    let Some(f) = fixture() else { return };
    // An image whose /run points at the host's root must not make the secret
    // mount land on the host.
    std::os::unix::fs::symlink("/../../../../../../tmp", f.lower.join("run")).unwrap();
    let secret = f.base.join("secret.txt");
    std::fs::write(&secret, "s").unwrap();
    let marker = format!("d2v-escape-{}", std::process::id());
    let mut spec = RunSpec::new(
        sh("cat /tmp/secrets/x"),
        vec![f.lower.clone()],
        scratch(&f.base, "s"),
    );
    spec.mounts = vec![RunMount::Secret {
        target: format!("/run/{marker}/x"),
        source: secret,
        owner: (0, 0),
        mode: 0o400,
    }];
    let _ = run(&spec, &mut |_| {}, None);
    assert!(
        !Path::new("/tmp").join(&marker).exists(),
        "mount point created on the host"
    );
}

#[test]
fn root_gets_dockers_default_capabilities_unless_privileged() {
    let Some(f) = fixture() else { return };
    let cmd = "grep -E '^Cap(Eff|Bnd)' /proc/self/status";
    let (code, out, _) = run_capture(&RunSpec::new(
        sh(cmd),
        vec![f.lower.clone()],
        scratch(&f.base, "s1"),
    ));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    let mut spec = RunSpec::new(sh(cmd), vec![f.lower.clone()], scratch(&f.base, "s2"));
    spec.privileged = true;
    let (_, out, _) = run_capture(&spec);
    assert!(
        !out.contains("a80425fb"),
        "privileged keeps everything: {out}"
    );
    let mut spec = RunSpec::new(sh(cmd), vec![f.lower.clone()], scratch(&f.base, "s3"));
    spec.user = "app".into();
    let (_, out, _) = run_capture(&spec);
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
}
