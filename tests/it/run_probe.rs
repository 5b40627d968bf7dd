//! The same probe image run by `d2v run` and by `podman --runtime runc run`
//! (the container the VM stands in for), compared field by field. The
//! differences a VM is allowed are listed in `docs/runtime-config.md` and
//! below: the kernel and root filesystem, addresses and DNS server values,
//! Podman's own extras (`container=podman`, `TERM`, `/run/.containerenv`,
//! `host.containers.internal`, its bind mounts and masked /proc and /sys
//! paths), Docker's `/dev/core` (Podman has none), and RLIMIT_NOFILE (the test
//! must cap Podman's).

use crate::run_support;

use run_support::{build_root, config, d2v_run, finish, probe_lines};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

fn fields<'a>(out: &'a str, key: &str) -> BTreeSet<&'a str> {
    let prefix = format!("{key} ");
    out.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

fn podman(store: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(store.join("root"))
        .arg("--runroot")
        .arg(store.join("runroot"));
    c
}

#[test]
fn the_vm_looks_like_the_container_to_the_app() {
    require_facilities!("podman", "runc", "tar");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let cfg = config(|c| {
        c.entrypoint = vec!["probe".into(), "report".into()];
        c.user = "app".into();
        c.workdir = "/srv/data".into();
        c.env = vec!["FOO=bar".into(), "GREETING=hello world".into()];
        c.stop_signal = "SIGQUIT".into();
    });
    build_root(&root, &cfg, &[]);
    let img = dir.path().join("rootfs.ext4");
    let mut w = d2v_packer::Ext4Writer::new(
        std::fs::File::create(&img).unwrap(),
        d2v_packer::Options::default(),
    )
    .unwrap();
    d2v_packer::source::pack_dir(&root, &mut w).unwrap();
    w.finish().unwrap();
    let vm = d2v_run(&img, &["--hostname", "probe-host"]);
    assert_eq!(vm.code, Some(0));

    let tar = dir.path().join("root.tar");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    let store = dir.path().join("podman");
    let tag = format!("localhost/d2v-probe-cmp:{}", std::process::id());
    let import = podman(&store)
        .arg("import")
        .args(["--change", "USER app", "--change", "WORKDIR /srv/data"])
        .args([
            "--change",
            "ENV FOO=bar",
            "--change",
            "ENV GREETING=\"hello world\"",
        ])
        .args([
            "--change",
            "STOPSIGNAL SIGQUIT",
            "--change",
            r#"ENTRYPOINT ["probe", "report"]"#,
        ])
        .arg(&tar)
        .arg(&tag)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(import.success());
    let out = podman(&store)
        .args([
            "--runtime",
            "runc",
            "run",
            "--rm",
            "--hostname",
            "probe-host",
        ])
        // This sandbox's hard limits are below Podman's defaults.
        .args([
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=4096:4096",
        ])
        .arg(&tag)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let ct = finish(out);
    let _ = podman(&store).args(["rmi", "-f", &tag]).output();
    assert_eq!(ct.code, Some(0));
    let (v, c) = (vm.out(), ct.out());

    // Identity, directory, umask, stdio: the same.
    for key in [
        "probe: uid=",
        "probe: cwd=",
        "umask ",
        "fd0 ",
        "fd1 ",
        "fd2 ",
        "dev_stdout_writable ",
    ] {
        let pick = |o: &str| o.lines().find(|l| l.starts_with(key)).map(str::to_string);
        assert_eq!(pick(&v), pick(&c), "{key}");
    }
    // The environment, less Podman's own additions.
    let env = |o: &str| -> BTreeSet<String> {
        probe_lines(o)
            .into_iter()
            .filter(|l| l.starts_with("probe: env "))
            .filter(|l| !l.contains("env container=") && !l.contains("env TERM="))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(env(&v), env(&c));
    // The host's name everywhere it shows.
    for key in ["hostname", "etc_hostname"] {
        assert_eq!(fields(&v, key), fields(&c, key), "{key}");
    }
    let names_host = |o: &str| {
        fields(o, "hosts")
            .iter()
            .any(|l| l.split_whitespace().skip(1).any(|n| n == "probe-host"))
            && fields(o, "hosts")
                .iter()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["127.0.0.1", "localhost"])
    };
    assert!(names_host(&v) && names_host(&c), "{v}\n{c}");
    assert_eq!(fields(&v, "resolv").len(), 1);
    assert!(fields(&v, "resolv")
        .iter()
        .all(|l| l.starts_with("nameserver ")));
    // The clocks agree (the two runs are seconds apart at most).
    let date = |o: &str| {
        fields(o, "date")
            .iter()
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert!((date(&v) - date(&c)).abs() < 120.0);
    // The image's /run is kept; Podman adds only its marker file.
    let mut run_c = fields(&c, "run");
    run_c.remove(".containerenv");
    assert_eq!(fields(&v, "run"), run_c);
    assert!(fields(&v, "run").contains("from-image"));
    // Docker's /dev; Podman has no /dev/core.
    let mut dev_v = fields(&v, "dev");
    dev_v.remove("core");
    assert_eq!(dev_v, fields(&c, "dev"));
    // The same mount points for what a process uses.
    let targets = |o: &str| -> BTreeSet<String> {
        fields(o, "mount")
            .iter()
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect()
    };
    for t in [
        "/",
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    ] {
        assert!(
            targets(&v).contains(t) && targets(&c).contains(t),
            "{t}: {:?} {:?}",
            targets(&v),
            targets(&c)
        );
    }
}
