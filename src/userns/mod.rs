//! User namespaces: where RUN steps' ids live on the host, and how an ordinary
//! user gets the privileges a build needs without being root.
//!
//! Every RUN step runs in a user namespace of its own whose ids map onto a
//! *subordinate range*: container id `c` is id `base + c` in the namespace d2v
//! itself runs in (the "outer" one), so root in a step is never the user that
//! owns the store, let alone host root. [`BuildNamespace::step_ids`] is that
//! range. Where it comes from is the only difference between root and an
//! ordinary user:
//!
//! * **root** stays in the host's user namespace and uses its own range: the
//!   `root` entry of `/etc/subuid` and `/etc/subgid` when there is one, else
//!   [`ROOT_RANGE_START`]` + 0..`[`ROOT_RANGE_COUNT`]: steps get ids
//!   `0..2^31`, not only `0..65536`, because tarballs made elsewhere carry
//!   owners such as 197609 or 1000000, and a root `tar -x` in a step chowns to
//!   them (as it does under Docker, which maps no ids at all).
//! * **an ordinary user** first enters a user namespace of its own, as rootless
//!   podman and BuildKit do: outer id 0 is the user, outer ids `1..=count` are
//!   the user's `/etc/subuid` range (written by the setuid `newuidmap` and
//!   `newgidmap` of the `uidmap` package). Steps then use `base = 1`, so step
//!   root is the first subordinate id, not the user. Without a subordinate
//!   range only the user itself is mapped (`base = 0, count = 1`): steps run as
//!   the user, with a warning, and a step that needs another id fails clearly.
//!
//! Either way the process also gets a private mount namespace ([`enter`]), so
//! the FUSE views and overlays a build mounts are invisible on the host and go
//! away with the process, even on `kill -9`.
//!
//! Layers record container ids: the RUN sandbox presents the lower layers
//! shifted by `base` (d2v-fuse's id shift) and the layer writer subtracts it.

mod subid;

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use thiserror::Error;

pub use subid::{SubIdRange, SubIds};

/// Where root's RUN steps map their ids when `/etc/subuid` has no `root` entry:
/// above every range `useradd` hands out (`SUB_UID_MAX` is 600,100,000).
pub const ROOT_RANGE_START: u32 = 1_000_000_000;

/// How many ids root's steps get from the default range: `0..2^31` (host ids
/// `ROOT_RANGE_START..ROOT_RANGE_START + 2^31`, below `u32::MAX`).
pub const ROOT_RANGE_COUNT: u32 = 1 << 31;

/// The fewest ids a subordinate range must hold to be used for steps: uids
/// and gids `0..=65535`, as Docker's and podman's default mappings. A larger
/// range is used whole.
pub const STEP_ID_COUNT: u32 = 65536;

/// Entering the build namespace failed.
#[derive(Debug, Error)]
pub enum UsernsError {
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
    /// `newuidmap` or `newgidmap` refused the mapping.
    #[error("{tool} {args} failed: {message}\n  (the uidmap package provides it; the user needs a range in /etc/subuid and /etc/subgid, e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER`)")]
    IdMap {
        /// The tool.
        tool: &'static str,
        /// Its arguments.
        args: String,
        /// What it said.
        message: String,
    },
    /// The process has threads already; a user namespace can only be entered
    /// by a single-threaded process.
    #[error("cannot enter a user namespace: the process is already multi-threaded")]
    Threaded,
}

fn sys(what: &'static str) -> impl FnOnce(io::Error) -> UsernsError {
    move |source| UsernsError::Sys { what, source }
}

/// A contiguous id mapping: container id `c` (for `c < count`) is outer id `base + c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// The outer id of container id 0.
    pub base: u32,
    /// How many ids are mapped.
    pub count: u32,
}

impl IdRange {
    /// The outer id of container id `c`, if mapped.
    pub fn to_outer(&self, c: u32) -> Option<u32> {
        (c < self.count).then(|| self.base + c)
    }

    /// The container id of outer id `o`, if it lies in the range.
    pub fn to_container(&self, o: u32) -> Option<u32> {
        o.checked_sub(self.base).filter(|c| *c < self.count)
    }

    /// The `/proc/PID/uid_map` line for a namespace whose ids are this range.
    pub fn map_line(&self) -> String {
        format!("0 {} {}\n", self.base, self.count)
    }
}

/// Who is building and where its steps' ids live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildNamespace {
    /// The uid d2v was started as (on the host).
    pub host_uid: u32,
    /// Whether d2v entered a user namespace of its own (an ordinary user).
    pub rootless: bool,
    /// The step uids, in outer ids.
    pub step_uids: IdRange,
    /// The step gids, in outer ids.
    pub step_gids: IdRange,
}

impl BuildNamespace {
    /// The uid and gid ranges as one value when they agree (they do unless
    /// `/etc/subuid` and `/etc/subgid` differ in size).
    pub fn step_ids(&self) -> (IdRange, IdRange) {
        (self.step_uids, self.step_gids)
    }

    /// Whether overlayfs mounted here must keep its bookkeeping in `user.`
    /// xattrs (`userxattr`): mounts inside a user namespace cannot use `trusted.`.
    pub fn overlay_userxattr(&self) -> bool {
        self.rootless
    }
}

static CURRENT: OnceLock<BuildNamespace> = OnceLock::new();

/// The build namespace this process is in: the one [`enter`] set up, or, if it
/// was never called (a library user, a test running as root), root's layout
/// without a private mount namespace.
pub fn current() -> &'static BuildNamespace {
    CURRENT.get_or_init(|| {
        let uid = nix::unistd::geteuid().as_raw();
        let subids = SubIds::load();
        root_layout(uid, &subids)
    })
}

fn root_layout(uid: u32, subids: &SubIds) -> BuildNamespace {
    // One shift for uids and gids (d2v-fuse shifts both by the same amount), so
    // root's own entries are used only when they start at the same id.
    let range = match (subids.uid_range("root", 0), subids.gid_range("root", 0)) {
        (Some(u), Some(g)) if u.start == g.start && u.count.min(g.count) >= STEP_ID_COUNT => {
            IdRange {
                base: u.start,
                count: u.count.min(g.count),
            }
        }
        _ => IdRange {
            base: ROOT_RANGE_START,
            count: ROOT_RANGE_COUNT,
        },
    };
    BuildNamespace {
        host_uid: uid,
        rootless: false,
        step_uids: range,
        step_gids: range,
    }
}

/// What [`enter`] reports besides the namespace.
#[derive(Debug, Default)]
pub struct EnterReport {
    /// A warning for the user (no subordinate ids), if any.
    pub warning: Option<String>,
}

/// Sets up this process for building: a private mount namespace, and for an
/// ordinary user a user namespace first (see the module docs). Must be called
/// while the process is single-threaded (first thing in `main`); calling it
/// again is a no-op. The store location is resolved before the switch and
/// exported as `D2V_HOME`, because inside the namespace the user is uid 0.
pub fn enter(store_root: PathBuf) -> Result<EnterReport, UsernsError> {
    if CURRENT.get().is_some() {
        return Ok(EnterReport::default());
    }
    if thread_count() > 1 {
        return Err(UsernsError::Threaded);
    }
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let subids = SubIds::load();
    let mut report = EnterReport::default();
    let ns = if uid == 0 {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(|e| sys("unsharing the mount namespace")(e.into()))?;
        root_layout(uid, &subids)
    } else {
        let name = user_name(uid);
        let uids = subids.uid_range(&name, uid);
        let gids = subids.gid_range(&name, uid);
        // SAFETY: single-threaded (checked above), so set_var races nothing.
        unsafe { std::env::set_var("D2V_HOME", &store_root) };
        match (uids, gids) {
            (Some(u), Some(g)) => {
                // Outer ids 1..=count, so the whole range bar the id that would
                // overflow.
                let count = u.count.min(g.count).min(u32::MAX - 1);
                enter_mapped(uid, gid, u, g, count)?;
                BuildNamespace {
                    host_uid: uid,
                    rootless: true,
                    step_uids: IdRange { base: 1, count },
                    step_gids: IdRange { base: 1, count },
                }
            }
            _ => {
                enter_single(uid, gid)?;
                report.warning = Some(format!(
                    "{name} (uid {uid}) has no subordinate id range in /etc/subuid and /etc/subgid: \
                     RUN steps run as {name} itself and cannot switch to other users \
                     (add one with `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}`)"
                ));
                BuildNamespace {
                    host_uid: uid,
                    rootless: true,
                    step_uids: IdRange { base: 0, count: 1 },
                    step_gids: IdRange { base: 0, count: 1 },
                }
            }
        }
    };
    make_mounts_private()?;
    let _ = CURRENT.set(ns);
    Ok(report)
}

fn make_mounts_private() -> Result<(), UsernsError> {
    use nix::mount::{mount, MsFlags};
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| sys("making mounts private")(e.into()))
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

/// Enters a new user and mount namespace mapping outer 0 to `uid`/`gid` and
/// outer `1..=count` to the subordinate ranges, through `newuidmap` and
/// `newgidmap` run by a helper that stays outside.
fn enter_mapped(
    uid: u32,
    gid: u32,
    subuid: SubIdRange,
    subgid: SubIdRange,
    count: u32,
) -> Result<(), UsernsError> {
    let (go_r, go_w) = nix::unistd::pipe().map_err(|e| sys("pipe")(e.into()))?;
    let (res_r, res_w) = nix::unistd::pipe().map_err(|e| sys("pipe")(e.into()))?;
    let me = std::process::id();
    let uid_args = format!("{me} 0 {uid} 1 1 {} {count}", subuid.start);
    let gid_args = format!("{me} 0 {gid} 1 1 {} {count}", subgid.start);
    // SAFETY: the process is single-threaded (checked by the caller), so the
    // child may allocate and run Command before it exits.
    match unsafe { nix::unistd::fork() }.map_err(|e| sys("fork")(e.into()))? {
        nix::unistd::ForkResult::Child => {
            drop(go_w);
            drop(res_r);
            let code = map_helper(go_r, res_w, &uid_args, &gid_args);
            // SAFETY: leave without running the parent's destructors or atexit.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(go_r);
            drop(res_w);
            let unshared = nix::sched::unshare(
                nix::sched::CloneFlags::CLONE_NEWUSER | nix::sched::CloneFlags::CLONE_NEWNS,
            );
            let mut go = std::fs::File::from(go_w);
            let _ = go.write_all(if unshared.is_ok() { b"1" } else { b"0" });
            drop(go);
            let mut msg = String::new();
            let _ = std::fs::File::from(res_r).read_to_string(&mut msg);
            let _ = nix::sys::wait::waitpid(child, None);
            unshared.map_err(|e| sys("unsharing the user namespace")(e.into()))?;
            if let Some(rest) = msg.strip_prefix("err ") {
                let (tool, rest) = rest.split_once('\t').unwrap_or(("newuidmap", rest));
                let (args, message) = rest.split_once('\t').unwrap_or(("", rest));
                return Err(UsernsError::IdMap {
                    tool: if tool == "newgidmap" {
                        "newgidmap"
                    } else {
                        "newuidmap"
                    },
                    args: args.to_string(),
                    message: message.trim().to_string(),
                });
            }
            if msg != "ok" {
                return Err(UsernsError::IdMap {
                    tool: "newuidmap",
                    args: uid_args,
                    message: "the id-mapping helper died".into(),
                });
            }
            Ok(())
        }
    }
}

/// The helper's side: wait for the parent to unshare, map its ids, report.
fn map_helper(go: OwnedFd, res: OwnedFd, uid_args: &str, gid_args: &str) -> i32 {
    let mut flag = [0u8; 1];
    let mut go = std::fs::File::from(go);
    let mut res = std::fs::File::from(res);
    if go.read_exact(&mut flag).is_err() || flag[0] != b'1' {
        let _ = res.write_all(b"skipped");
        return 1;
    }
    for (tool, args) in [("newuidmap", uid_args), ("newgidmap", gid_args)] {
        let out = Command::new(tool).args(args.split(' ')).output();
        let failure = match out {
            Ok(o) if o.status.success() => continue,
            Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        let _ = write!(res, "err {tool}\t{args}\t{failure}");
        return 1;
    }
    let _ = res.write_all(b"ok");
    let _ = res.as_raw_fd();
    0
}

/// Enters a new user and mount namespace mapping only the user itself to 0
/// (what an unprivileged process may write for itself).
fn enter_single(uid: u32, gid: u32) -> Result<(), UsernsError> {
    nix::sched::unshare(
        nix::sched::CloneFlags::CLONE_NEWUSER | nix::sched::CloneFlags::CLONE_NEWNS,
    )
    .map_err(|e| sys("unsharing the user namespace")(e.into()))?;
    std::fs::write("/proc/self/setgroups", "deny").map_err(sys("writing setgroups"))?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1\n")).map_err(sys("writing uid_map"))?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1\n")).map_err(sys("writing gid_map"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_range_maps_both_ways_within_its_count() {
        let r = IdRange {
            base: 100,
            count: 10,
        };
        assert_eq!(r.to_outer(0), Some(100));
        assert_eq!(r.to_outer(9), Some(109));
        assert_eq!(r.to_outer(10), None);
        assert_eq!(r.to_container(105), Some(5));
        assert_eq!(r.to_container(99), None);
        assert_eq!(r.to_container(110), None);
        assert_eq!(r.map_line(), "0 100 10\n");
    }

    #[test]
    fn root_uses_its_subuid_entry_or_the_default_range() {
        let none = SubIds::parse("", "");
        let ns = root_layout(0, &none);
        assert_eq!(ns.step_uids.base, ROOT_RANGE_START);
        assert_eq!(ns.step_uids.count, ROOT_RANGE_COUNT);
        assert!(u64::from(ROOT_RANGE_START) + u64::from(ROOT_RANGE_COUNT) < u64::from(u32::MAX));
        assert!(!ns.rootless);
        let some = SubIds::parse("root:200000:65536\n", "root:200000:70000\n");
        let ns = root_layout(0, &some);
        assert_eq!(ns.step_uids.base, 200000);
        assert_eq!(ns.step_gids.base, 200000);
        assert_eq!(ns.step_gids.count, 65536, "the smaller of the two ranges");
        // Different starts for uids and gids: one shift cannot serve both.
        let apart = SubIds::parse("root:200000:65536\n", "root:300000:65536\n");
        assert_eq!(root_layout(0, &apart).step_uids.base, ROOT_RANGE_START);
        // Too small a range is not used.
        let small = SubIds::parse("root:200000:1000\n", "");
        assert_eq!(root_layout(0, &small).step_uids.base, ROOT_RANGE_START);
    }
}
