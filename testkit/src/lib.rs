//! Test support shared by every d2v crate's tests (a dev-dependency only).
//!
//! - [`facility`]: the one facility check. A test that cannot find root, a tool
//!   or a kernel feature **panics when `CI` is set** (to anything but empty, `0`
//!   or `false`) and otherwise returns early after printing why it skipped.
//! - [`fixtures`]: where the shared base-image fixtures live (`D2V_FIXTURES`).
//! - [`fsutil`]: making test trees (mtimes, device nodes, owners, xattrs).
//! - [`procs`]: the processes of one process tree (not the whole machine's).
//! - [`tree`]: a comparable description of a directory tree and a diff of two.
//! - [`scratch`], [`sh`], [`mount_points`], [`assert_fsck_clean`]: the small
//!   helpers several test suites had their own copy of.

pub mod facility;
pub mod fixtures;
pub mod fsutil;
pub mod procs;
pub mod tree;

pub use facility::{
    have_tool, in_ci, is_root, require, require_fuse, require_root, require_root_and, require_tool,
};
pub use fixtures::{fixture, fixtures};

use std::path::Path;
use std::process::Command;

/// A fresh scratch directory named `PREFIX…` on a real disk (`D2V_TEST_TMP`,
/// default `/var/tmp`, not tmpfs, so holes, xattrs and overlayfs work).
pub fn scratch(prefix: &str) -> tempfile::TempDir {
    let base = std::env::var("D2V_TEST_TMP").unwrap_or_else(|_| "/var/tmp".into());
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .unwrap()
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

/// Asserts that `e2fsck -fn` accepts `image`: exit 0 and no complaint
/// ("wrong", "Fix?", "corrupt", an answered "? no") in its output.
pub fn assert_fsck_clean(image: &Path) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(image)
        .output()
        .expect("run e2fsck");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lower = text.to_lowercase();
    assert!(
        out.status.code() == Some(0)
            && !lower.contains("wrong")
            && !text.contains("Fix?")
            && !lower.contains("corrupt")
            && !text.contains("? no"),
        "e2fsck -fn {} is not clean ({}):\n{text}",
        image.display(),
        out.status
    );
}
