//! Shared test harness: the d2v binary, a throwaway store, the base-image fixtures,
//! and facility checks that fail loudly in CI.
#![allow(dead_code)]

pub mod buildah;
pub mod podman;
pub mod registry;
pub mod rootless;
pub mod tree;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Whether we run in CI, where a missing facility is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Returns false (after saying why) when a facility is missing outside CI;
/// panics when it is missing in CI.
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if in_ci() {
        panic!("required test facility missing: {what}");
    }
    eprintln!("SKIPPED: {what} is not available here (set CI=true to make this fail)");
    false
}

/// Whether we are root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `tool` is on PATH.
pub fn have_tool(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Checks root plus the given tools; see [`require`].
pub fn require_root_and(tools: &[&str]) -> bool {
    if !require(is_root(), "root") {
        return false;
    }
    tools.iter().all(|t| require(have_tool(t), t))
}

/// The base-image fixtures directory, built by `testdata/fixtures/make-fixtures.sh`
/// (once per machine; run it now if it is missing).
pub fn fixtures() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(
            std::env::var("D2V_FIXTURES").unwrap_or_else(|_| "/var/tmp/d2v-fixtures".into()),
        );
        if !(dir.join("debian.tar").is_file() && dir.join("busybox.tar").is_file()) {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fixtures/make-fixtures.sh");
            let status = Command::new(&script)
                .arg(&dir)
                .status()
                .expect("run make-fixtures.sh");
            assert!(status.success(), "make-fixtures.sh failed");
        }
        dir
    })
    .clone()
}

/// The path of fixture `name` (e.g. `busybox-oci`, `debian.tar`) as a string.
pub fn fixture(name: &str) -> String {
    fixtures().join(name).to_string_lossy().into_owned()
}

/// A throwaway store and a way to run d2v against it.
pub struct D2v {
    /// The store directory (`D2V_HOME`).
    pub home: tempfile::TempDir,
}

impl D2v {
    /// A new, empty store.
    pub fn new() -> D2v {
        let base = std::env::var("D2V_TEST_TMP").unwrap_or_else(|_| "/var/tmp".into());
        std::fs::create_dir_all(&base).unwrap();
        D2v {
            home: tempfile::Builder::new()
                .prefix("d2v-test-home-")
                .tempdir_in(base)
                .unwrap(),
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

/// Runs a shell command, panicking with its output when it fails; returns stdout.
pub fn sh(script: &str) -> String {
    let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every mount point currently listed in /proc/self/mountinfo.
pub fn mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect()
}

/// Whether `dir` is a mount point now.
pub fn is_mounted(dir: &Path) -> bool {
    let dir = dir.to_string_lossy();
    mount_points().iter().any(|m| *m == dir)
}
