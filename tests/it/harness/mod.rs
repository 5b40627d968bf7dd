//! Shared test harness: the d2v binary and a throwaway store; the facility
//! checks, fixtures and tree comparer of `d2v-testkit`, re-exported.
#![allow(dead_code)]

pub mod buildah;
pub mod podman;
pub mod registry;
pub mod rootless;

pub use d2v_testkit::{
    fixture, fixtures, have_tool, in_ci, is_mounted, mount_points, require, require_root_and, sh,
    tree,
};
use std::path::Path;
use std::process::{Command, Output};

/// A throwaway store and a way to run d2v against it.
pub struct D2v {
    /// The store directory (`D2V_HOME`).
    pub home: tempfile::TempDir,
}

impl D2v {
    /// A new, empty store.
    pub fn new() -> D2v {
        D2v {
            home: d2v_testkit::scratch("d2v-test-home-"),
        }
    }

    /// The store path.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// A `d2v` command using this store. `D2V_TEST_BIN` runs another d2v
    /// binary instead of this build's (to show that a regression test fails
    /// on an older build).
    pub fn cmd(&self) -> Command {
        let bin =
            std::env::var_os("D2V_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_d2v").into());
        let mut c = Command::new(bin);
        c.env("D2V_HOME", self.home.path());
        c
    }

    /// Runs d2v with `args`, returning its output whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run d2v")
    }

    /// Runs d2v with `args` and panics (showing stderr) unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "d2v {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs d2v with `args`, asserts it fails, and returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "d2v {args:?} unexpectedly succeeded:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }
}

impl D2v {
    /// Imports `source` (`oci:…`, `rootfs:…`, …) as `name`, panicking on
    /// failure; returns what d2v printed (the image ID).
    pub fn import(&self, source: &str, name: &str) -> String {
        self.ok(&["import", source, "--as", name])
    }
}

/// `d2v mount NAME` on a fresh directory; unmounts on drop and checks that
/// nothing is left mounted.
pub struct Mounted<'a> {
    d2v: &'a D2v,
    dir: tempfile::TempDir,
}

impl<'a> Mounted<'a> {
    /// Mounts image `name` of `d2v`'s store; asserts the mount is live on return.
    pub fn new(d2v: &'a D2v, name: &str) -> Mounted<'a> {
        let dir = tempfile::tempdir().unwrap();
        d2v.ok(&["mount", name, dir.path().to_str().unwrap()]);
        assert!(
            is_mounted(dir.path()),
            "d2v mount returned before the mount was live"
        );
        Mounted { d2v, dir }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        if is_mounted(self.dir.path()) {
            self.d2v.ok(&["umount", self.dir.path().to_str().unwrap()]);
        }
        assert!(!is_mounted(self.dir.path()), "mount left behind");
    }
}

/// Reads `r` to its end on another thread (so a child never blocks on a full
/// pipe); the thread returns what it read, as text.
pub fn drain(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let _ = r.read_to_end(&mut seen);
        String::from_utf8_lossy(&seen).into_owned()
    })
}

/// A temporary build context holding `files` (path, content).
pub fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    dir
}

/// A new store with the busybox fixture imported as `name`.
pub fn with_busybox(name: &str) -> D2v {
    let d2v = D2v::new();
    d2v.import(&format!("oci:{}:latest", fixture("busybox-oci")), name);
    d2v
}

/// `d2v build -t TAG --progress plain EXTRA… CTX` in `d2v`'s store, whatever
/// its exit code.
pub fn build(d2v: &D2v, tag: &str, ctx: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["build", "-t", tag, "--progress", "plain"];
    args.extend_from_slice(extra);
    let ctx = ctx.to_str().unwrap().to_string();
    args.push(&ctx);
    d2v.run(&args)
}

/// A command's stderr, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A command's stdout then stderr, as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
