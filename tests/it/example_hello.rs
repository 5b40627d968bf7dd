//! The bundled example end to end, as the README's demo runs it: a multi-stage C
//! build FROM a debootstrapped Debian (gcc installed with apt-get in a builder
//! stage, a static binary copied into the final stage, run as a named non-root
//! user), packed and booted: the VM shows the Dockerfile's USER (with its
//! supplementary group), WORKDIR, ENV, ENTRYPOINT and CMD, and `d2v run` exits
//! with the program's exit code.

use crate::harness;

use harness::{require_root_and, D2v};
use std::path::Path;

#[test]
fn hello_builds_packs_and_boots_like_docker_run() {
    if !require_root_and(&["qemu-system-x86_64"]) {
        return;
    }
    let kernel_present = d2v::run::kbuild::installed().is_some()
        || std::fs::read_dir("/boot")
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz"))
            })
            .unwrap_or(false);
    if !harness::require(
        kernel_present,
        "a kernel (d2v kernel build, or linux-image-amd64)",
    ) {
        return;
    }
    let d2v = D2v::new();
    let fixtures = harness::fixtures();
    d2v.ok(&[
        "import",
        &format!("oci:{}:bookworm", fixtures.join("debian-oci").display()),
        "--as",
        "debian:bookworm",
    ]);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    d2v.ok(&[
        "build",
        "-t",
        "hello",
        "--progress",
        "plain",
        example.to_str().unwrap(),
    ]);

    let config: serde_json::Value = serde_json::from_str(&d2v.ok(&["inspect", "hello"])).unwrap();
    assert_eq!(config["config"]["User"], "app");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/hello"])
    );

    // One VM boot at a time in this test binary (TCG is CPU-bound).
    let _one = crate::run_support::one_boot();
    // CMD as the image says: exit 0.
    let out = d2v.run(&["run", "hello"]);
    let console =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{console}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("packed hello"),
        "{console}"
    );
    assert!(
        console.contains("Hello from a microVM, world!"),
        "{console}"
    );
    assert!(console.contains("uid=1000 gid=1000 groups="), "{console}");
    let groups = console
        .lines()
        .find_map(|l| l.split("groups=").nth(1))
        .unwrap_or_default()
        .to_string();
    assert!(
        groups.split(',').any(|g| g.trim() == "2000"),
        "app is in staff2: {console}"
    );
    assert!(console.contains("cwd=/home/app"), "{console}");
    assert!(console.contains("argv[1]=world"), "{console}");

    // `-- ARGS` replaces CMD, and the program's exit code comes out of the
    // VM; the second run reuses the pack (the first run did not change it).
    let out = d2v.run(&["run", "hello", "--", "microVM", "5"]);
    let console =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{console}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("packed"),
        "the second run packed again: {console}"
    );
    assert!(
        console.contains("Hello from a microVM, microVM!"),
        "{console}"
    );
}
