//! Builds the guest init (`init/`, crate `d2v-init`) as a static binary and hands
//! its path to `d2v::run::init_binary()` (`include_bytes!`), so `d2v pack` can
//! write `/sbin/d2v-init` with no extra step.
//!
//! The init is built by a nested `cargo build` in its own target dir under
//! OUT_DIR: `no_std` over glibc linked statically (`--cfg d2v_init_static`,
//! `+crt-static`), opt-level "s", panic=abort, LTO, stripped. Set
//! `D2V_INIT_BINARY=/path/to/d2v-init` to embed a prebuilt one instead.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=init/src");
    println!("cargo:rerun-if-changed=init/Cargo.toml");
    // init links d2v-runtime (the config model, USER resolver, channel protocol).
    println!("cargo:rerun-if-changed=runtime/src");
    println!("cargo:rerun-if-changed=runtime/Cargo.toml");
    println!("cargo:rerun-if-env-changed=D2V_INIT_BINARY");

    let embedded = out.join("d2v-init");
    if let Some(prebuilt) = env::var_os("D2V_INIT_BINARY") {
        std::fs::copy(&prebuilt, &embedded)
            .unwrap_or_else(|e| panic!("copying D2V_INIT_BINARY {prebuilt:?}: {e}"));
    } else {
        build_init(&root, &out, &embedded);
    }
    println!("cargo:rustc-env=D2V_INIT_PATH={}", embedded.display());
}

fn build_init(root: &Path, out: &Path, embedded: &Path) {
    let target_dir = out.join("init-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(root.join("init/Cargo.toml"))
        .arg("-p")
        .arg("d2v-init")
        .arg("--target")
        .arg(GUEST_TARGET)
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's flags, wrappers (clippy) and target dir must not leak in.
    for (key, _) in env::vars_os() {
        let k = key.to_string_lossy();
        let keep = k == "CARGO_HOME" || k == "CARGO_NET_OFFLINE";
        if (k.starts_with("CARGO_") && !keep)
            || k.starts_with("RUSTC_WRAPPER")
            || k.starts_with("RUSTC_WORKSPACE_WRAPPER")
            || k == "RUSTFLAGS"
            || k == "RUSTDOCFLAGS"
        {
            cmd.env_remove(&key);
        }
    }
    let flags = [
        "-Ctarget-feature=+crt-static",
        "-Crelocation-model=static",
        "--cfg",
        "d2v_init_static",
    ];
    cmd.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"))
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true");
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build d2v-init: {e}"));
    assert!(
        status.success(),
        "building the static d2v-init failed ({status})"
    );
    let built = target_dir
        .join(GUEST_TARGET)
        .join("release")
        .join("d2v-init");
    std::fs::copy(&built, embedded).unwrap_or_else(|e| panic!("copying {built:?}: {e}"));
}
