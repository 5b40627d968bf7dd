//! The one facility check: a test that cannot find what it needs fails loudly
//! in CI and skips with a message elsewhere.

use std::path::Path;

/// Whether we run in CI, where a missing facility is a failure, not a skip:
/// `CI` is set to anything but empty, `0` or `false`.
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

/// Whether `tool` is on PATH (`command -v tool`).
pub fn have_tool(tool: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Checks that we are root; see [`require`].
pub fn require_root() -> bool {
    require(is_root(), "root")
}

/// Checks that `tool` is on PATH; see [`require`].
pub fn require_tool(tool: &str) -> bool {
    require(have_tool(tool), tool)
}

/// Checks root plus the given tools; see [`require`].
pub fn require_root_and(tools: &[&str]) -> bool {
    require_root() && tools.iter().all(|t| require_tool(t))
}

/// Whether the kernel offers filesystem `fs` (`/proc/filesystems`).
pub fn have_filesystem(fs: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some(fs))
}

/// Root, `fusermount3` and `/dev/fuse`; see [`require`].
pub fn require_fuse() -> bool {
    require_root_and(&["fusermount3"]) && require(Path::new("/dev/fuse").exists(), "/dev/fuse")
}
