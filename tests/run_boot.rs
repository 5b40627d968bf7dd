//! Real boots of `d2v run` under QEMU (TCG here; KVM where it works): the
//! entrypoint sees what the image's runtime config and the `docker run`-style
//! flags say, and `d2v run` exits with its code.

mod run_support;

use run_support::{build_image, config, d2v_run, probe_image, probe_lines};

#[test]
fn runs_entrypoint_as_user_in_workdir_with_env_and_exit_code() {
    require_facilities!();
    let img = probe_image();
    let b = d2v_run(&img.path, &[]);
    let out = b.out();
    let p = probe_lines(&out);
    assert!(
        p.contains(&"probe: uid=1000 gid=1000 groups=10,29,1000"),
        "{p:?}"
    );
    assert!(p.contains(&"probe: cwd=/srv/data"), "{p:?}");
    for env in [
        "probe: env FOO=bar",
        "probe: env GREETING=hello world",
        "probe: env HOME=/home/app",
        "probe: env HOSTNAME=probe-box",
        "probe: env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ] {
        assert!(p.contains(&env), "missing {env}: {p:?}");
    }
    // What the kernel passes to init (TERM=linux, BOOT_IMAGE...) is dropped.
    assert_eq!(
        p.iter().filter(|l| l.starts_with("probe: env ")).count(),
        5,
        "{p:?}"
    );
    assert!(
        p.contains(&"probe: argv[0]=probe") && p.contains(&"probe: argv[1]=exit"),
        "{p:?}"
    );
    // No kernel or init text without --debug.
    assert!(
        !out.contains("d2v-init") && !b.stderr.contains("d2v-init"),
        "{out}{}",
        b.stderr
    );
    assert_eq!(b.code, Some(0));
}

#[test]
fn flags_override_like_docker_run() {
    require_facilities!();
    let img = probe_image();
    let env_file = img.dir.path().join("env");
    std::fs::write(&env_file, "# comment\nFROM_FILE=1\nFOO=from-file\n").unwrap();
    let b = d2v_run(
        &img.path,
        &[
            "--env-file",
            env_file.to_str().unwrap(),
            "-e",
            "FOO=baz",
            "-e",
            "NEW=1",
            "-e",
            "HOST_ONLY",
            "--user",
            "app:staff",
            "-w",
            "/tmp/w",
            "--hostname",
            "flagged",
            "--",
            "exit",
            "7",
        ],
    );
    let out = b.out();
    let p = probe_lines(&out);
    assert!(p.contains(&"probe: uid=1000 gid=50 groups="), "{p:?}");
    assert!(
        p.contains(&"probe: env FOO=baz") && p.contains(&"probe: env NEW=1"),
        "{p:?}"
    );
    assert!(p.contains(&"probe: env FROM_FILE=1"), "{p:?}");
    assert!(
        !p.iter()
            .any(|l| l.contains("FOO=bar") || l.contains("HOST_ONLY")),
        "{p:?}"
    );
    assert!(
        p.contains(&"probe: cwd=/tmp/w") && p.contains(&"probe: env HOSTNAME=flagged"),
        "{p:?}"
    );
    assert!(p.contains(&"probe: argv[2]=7"), "{p:?}");
    assert_eq!(b.code, Some(7));
}

#[test]
fn entrypoint_flag_replaces_entrypoint_and_cmd() {
    require_facilities!();
    let img = probe_image();
    let b = d2v_run(
        &img.path,
        &[
            "--entrypoint",
            "/bin/sh",
            "--",
            "-c",
            "echo \"sh: $FOO in $(pwd)\"; exit 3",
        ],
    );
    assert_eq!(b.out(), "sh: bar in /srv/data\n");
    assert_eq!(b.code, Some(3));
}

#[test]
fn cmd_only_image_with_shell_form_runs_through_sh() {
    require_facilities!();
    let img = build_image(
        &config(|c| {
            c.cmd = vec!["/bin/sh".into(), "-c".into(), "probe exit $CODE".into()];
            c.env = vec!["CODE=4".into()];
        }),
        &[],
    );
    let b = d2v_run(&img.path, &[]);
    let out = b.out();
    let p = probe_lines(&out);
    // root is listed in wheel, and root (0) is its primary group: both are
    // supplementary groups, as runc gives them.
    assert!(p.contains(&"probe: uid=0 gid=0 groups=0,10"), "{p:?}");
    assert!(p.contains(&"probe: cwd=/"), "{p:?}");
    assert!(p.contains(&"probe: env HOME=/root"), "{p:?}");
    // No --hostname: a random container ID, as Docker names a container.
    let host = p
        .iter()
        .find_map(|l| l.strip_prefix("probe: env HOSTNAME="))
        .unwrap();
    assert!(
        host.len() == 12 && host.chars().all(|c| c.is_ascii_hexdigit()),
        "{host}"
    );
    assert_eq!(b.code, Some(4));
}

#[test]
fn orphans_are_reaped_and_leftovers_killed() {
    require_facilities!();
    let img = build_image(
        &config(|c| {
            c.entrypoint = vec![
                "/bin/sh".into(),
                "-c".into(),
                "probe zombies && exec probe linger".into(),
            ];
        }),
        &[],
    );
    let b = d2v_run(&img.path, &["--grace-ms", "300", "--debug"]);
    assert!(b.out().contains("probe: zombies=0"), "{}", b.out());
    assert!(
        b.out().contains("probe: lingering child started"),
        "{}",
        b.out()
    );
    assert!(b.stderr.contains("sending SIGKILL"), "{}", b.stderr);
    assert_eq!(b.code, Some(5));
}

#[test]
fn unknown_user_missing_command_and_broken_config_exit_like_docker() {
    require_facilities!();
    let img = probe_image();
    let b = d2v_run(&img.path, &["--user", "ghost"]);
    assert_eq!(b.code, Some(126));
    assert!(
        b.stderr
            .contains("unable to find user ghost: no matching entries in passwd file"),
        "{}",
        b.stderr
    );
    let b = d2v_run(&img.path, &["--entrypoint", "no-such-command"]);
    assert_eq!(b.code, Some(127));
    assert!(
        b.stderr.contains("executable file not found in $PATH"),
        "{}",
        b.stderr
    );

    let broken = build_image("{\"entrypoint\": [\"probe\",", &[]);
    let b = d2v_run(&broken.path, &[]);
    assert!(
        b.stderr
            .contains("couldn't parse /etc/d2v/config.json: unexpected end of input"),
        "{}",
        b.stderr
    );
    assert_eq!(b.code, Some(241));
}

#[test]
fn missing_kernel_and_unreadable_image_are_clear_errors() {
    require_facilities!();
    let img = probe_image();
    // As `docker run`: 125 when the failure is d2v's own, not the app's.
    let b = d2v_run(&img.path, &["--kernel", "/nonexistent/vmlinuz"]);
    assert_eq!(b.code, Some(125));
    assert!(
        b.stderr.contains("kernel /nonexistent/vmlinuz not found"),
        "{}",
        b.stderr
    );
    let b = d2v_run(std::path::Path::new("/nonexistent/rootfs.ext4"), &[]);
    assert_eq!(b.code, Some(125));
    assert!(
        b.stderr
            .contains("couldn't open image /nonexistent/rootfs.ext4"),
        "{}",
        b.stderr
    );
    let b = d2v_run(&img.path, &["--vmm", "bogus"]);
    assert_eq!(b.code, Some(125));
    assert!(
        b.stderr.contains("expected qemu or firecracker"),
        "{}",
        b.stderr
    );
}
