//! What the parent hands the child across `clone` (every path and string
//! prepared, nothing for the child to allocate), and what the child reports
//! back when a setup step fails.

use std::ffi::CString;
use std::os::fd::RawFd;

/// Which setup step failed (sent to the parent with errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(in crate::build::sandbox) enum SetupStep {
    Parent = 1,
    Private,
    Rootfs,
    Proc,
    Sys,
    PivotRoot,
    Identity,
    Mask,
    ReadOnly,
    Hostname,
    Network,
    Workdir,
    Caps,
    Seccomp,
    Groups,
    Gid,
    Uid,
    Stdio,
    Exec,
}

impl SetupStep {
    const ALL: [SetupStep; 19] = [
        SetupStep::Parent,
        SetupStep::Private,
        SetupStep::Rootfs,
        SetupStep::Proc,
        SetupStep::Sys,
        SetupStep::PivotRoot,
        SetupStep::Identity,
        SetupStep::Mask,
        SetupStep::ReadOnly,
        SetupStep::Hostname,
        SetupStep::Network,
        SetupStep::Workdir,
        SetupStep::Caps,
        SetupStep::Seccomp,
        SetupStep::Groups,
        SetupStep::Gid,
        SetupStep::Uid,
        SetupStep::Stdio,
        SetupStep::Exec,
    ];

    pub(in crate::build::sandbox) fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as u32 == v)
    }

    pub(in crate::build::sandbox) fn describe(self) -> &'static str {
        match self {
            SetupStep::Parent => "waiting for the parent",
            SetupStep::Private => "making mounts private",
            SetupStep::Rootfs => "binding the rootfs",
            SetupStep::Proc => "mounting /proc",
            SetupStep::Sys => "mounting /sys",
            SetupStep::PivotRoot => "switching to the rootfs",
            SetupStep::Identity => "becoming root of the user namespace",
            SetupStep::Mask => "masking a /proc or /sys path",
            SetupStep::ReadOnly => "making a /proc path read-only",
            SetupStep::Hostname => "setting the hostname",
            SetupStep::Network => "bringing up lo",
            SetupStep::Workdir => "entering the working directory",
            SetupStep::Caps => "dropping capabilities",
            SetupStep::Seccomp => "installing the seccomp profile",
            SetupStep::Groups => "setting supplementary groups",
            SetupStep::Gid => "setting the group id",
            SetupStep::Uid => "setting the user id",
            SetupStep::Stdio => "setting up stdio",
            SetupStep::Exec => "executing the command",
        }
    }
}

/// Everything the child needs, prepared by the parent.
pub(in crate::build::sandbox) struct ChildPlan {
    /// Host path of the prepared rootfs (the overlay with /dev and the step's
    /// mounts already in place).
    pub rootfs: CString,
    /// Host path where `/proc` goes (inside `rootfs`, symlink-free).
    pub proc_at: CString,
    /// Host path where `/sys` goes.
    pub sys_at: CString,
    /// The step has its own network namespace: mount a sysfs of its own and
    /// bring `lo` up. Otherwise the host's `/sys` is bound read-only.
    pub own_net: bool,
    /// Docker's confinement (masks, read-only paths, capabilities, seccomp);
    /// off only for `RUN --security=insecure`.
    pub confine: bool,
    /// Absolute paths to mask, inside the new root.
    pub masked: Vec<CString>,
    /// Absolute paths to make read-only, inside the new root.
    pub readonly: Vec<CString>,
    /// The seccomp program (points into the parent's memory, which the child
    /// has a copy of).
    pub seccomp: Option<libc::sock_fprog>,
    pub hostname: CString,
    pub groups: Vec<libc::gid_t>,
    /// setgroups(2) is allowed (not when d2v's own user namespace was set up
    /// without subordinate ids, which requires denying it).
    pub may_setgroups: bool,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub workdir_parents: Vec<CString>,
    pub workdir: CString,
    pub exec_candidates: Vec<CString>,
    pub argv: Vec<*const libc::c_char>,
    pub envp: Vec<*const libc::c_char>,
    /// Where the command's stdout and stderr go.
    pub out_fd: RawFd,
    /// Where a setup failure is reported (8 bytes: step, errno).
    pub err_fd: RawFd,
    /// Fds of the parent's ends, closed first.
    pub close_fds: [RawFd; 2],
    /// Readable once the parent has set everything up outside.
    pub sync_fd: RawFd,
}
