//! USER and `--chown` resolution in the image's own `/etc/passwd` and
//! `/etc/group` (never the host's NSS), read inside the rootfs. The rules are
//! `d2v_runtime::user`'s, the resolver init runs at boot and pack runs for the
//! image's config, so a RUN step, `d2v pack` and the booted VM agree on who
//! USER is (runc's rules: supplementary groups are the groups that list the
//! user, and its primary group when `/etc/group` has it).

use std::path::Path;

pub use d2v_runtime::user::{ExecUser, UserError};

use super::inroot::Root;

/// `/etc/passwd` and `/etc/group` inside `root`, `None` where missing.
fn files(root: &Root) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let read = |p: &str| root.read(Path::new(p)).ok();
    (read("/etc/passwd"), read("/etc/group"))
}

/// Resolves a Dockerfile `USER` value (`name`, `uid`, `name:group`,
/// `uid:gid`, empty = root) in `root` with runc's rules: a numeric uid need
/// not exist; without a group, the supplementary groups come from
/// `/etc/group`.
pub fn exec_user(root: &Root, spec: &str) -> Result<ExecUser, UserError> {
    let (passwd, group) = files(root);
    d2v_runtime::user::resolve(spec, passwd.as_deref(), group.as_deref())
}

/// Resolves a `COPY --chown` value in `root` as BuildKit does: a user name
/// takes its passwd primary group, a bare uid uses the same number as gid,
/// and an explicit `:group` wins. Names must exist; numbers need not.
pub fn chown(root: &Root, spec: &str) -> Result<(u32, u32), UserError> {
    let (passwd, group) = files(root);
    d2v_runtime::user::chown(spec, passwd.as_deref(), group.as_deref())
}
