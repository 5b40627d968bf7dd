//! The sandboxed child: runs between `clone` and `execve` as PID 1 of the new
//! namespaces. It only makes syscalls on data prepared by the parent (no
//! allocation, no locks), because the parent may be multi-threaded.

use std::cell::Cell;
use std::ffi::{c_void, CStr, CString};
use std::os::fd::RawFd;
use std::ptr;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// Docker's default capabilities: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL,
/// SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD,
/// AUDIT_WRITE, SETFCAP (`CapEff: 00000000a80425fb`).
pub(super) const DEFAULT_CAPS: u64 = 0xa804_25fb;
/// The highest capability number the kernel may know (CAP_CHECKPOINT_RESTORE).
const CAP_LAST: u32 = 40;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Which setup step failed (sent to the parent with errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum Stage {
    Private = 1,
    Overlay,
    PivotRoot,
    Proc,
    Sys,
    Dev,
    Bind,
    Tmpfs,
    Mkdir,
    Hostname,
    Network,
    Groups,
    Gid,
    Uid,
    Workdir,
    Stdio,
    Exec,
    ReadOnly,
    Parent,
    Caps,
}

impl Stage {
    pub(super) fn from_u32(v: u32) -> Option<Self> {
        use Stage::*;
        [
            Private, Overlay, PivotRoot, Proc, Sys, Dev, Bind, Tmpfs, Mkdir, Hostname, Network,
            Groups, Gid, Uid, Workdir, Stdio, Exec, ReadOnly, Parent, Caps,
        ]
        .into_iter()
        .find(|s| *s as u32 == v)
    }

    pub(super) fn describe(self) -> &'static str {
        use Stage::*;
        match self {
            Private => "making mounts private",
            Overlay => "mounting the overlay",
            PivotRoot => "switching to the rootfs",
            Proc => "mounting /proc",
            Sys => "mounting /sys",
            Dev => "setting up /dev",
            Bind => "bind-mounting",
            Tmpfs => "mounting a tmpfs",
            Mkdir => "creating a mount point",
            Hostname => "setting the hostname",
            Network => "bringing up lo",
            Groups => "setting supplementary groups",
            Gid => "setting the group id",
            Uid => "setting the user id",
            Workdir => "entering the working directory",
            Stdio => "setting up stdio",
            Exec => "executing the command",
            ReadOnly => "remounting read-only",
            Parent => "watching the parent",
            Caps => "dropping capabilities",
        }
    }
}

/// What a mount inside the root is.
pub(super) enum MountKind {
    /// Bind this host path (cloned with `open_tree` before the root switch).
    Bind { src: CString, readonly: bool },
    /// A fresh tmpfs with these options.
    Tmpfs { data: CString },
    /// An overlay with these options, mounted at the host path `at` before the
    /// root switch and then moved in (a writable-but-discarded bind).
    Overlay { data: CString, at: CString },
}

/// One mount inside the root, with the directories to create first.
pub(super) struct ChildMount {
    pub parents: Vec<CString>,
    pub target: CString,
    pub target_is_dir: bool,
    pub kind: MountKind,
    /// The detached mount tree (`open_tree`) for binds and overlays.
    pub tree_fd: Cell<RawFd>,
}

/// Everything the child needs, prepared by the parent.
pub(super) struct ChildPlan {
    pub merged: CString,
    pub overlay_data: CString,
    pub mounts: Vec<ChildMount>,
    pub hostname: CString,
    pub net_none: bool,
    pub privileged: bool,
    pub groups: Vec<libc::gid_t>,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub workdir_parents: Vec<CString>,
    pub workdir: CString,
    pub exec_candidates: Vec<CString>,
    pub argv: Vec<*const libc::c_char>,
    pub envp: Vec<*const libc::c_char>,
    pub out_fd: RawFd,
    pub err_fd: RawFd,
    pub read_fd: RawFd,
}

/// Report a failed stage with errno to the parent and exit.
fn fail(plan: &ChildPlan, stage: Stage) -> ! {
    // SAFETY: __errno_location is always valid for the calling thread.
    let errno = unsafe { *libc::__errno_location() };
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&(stage as u32).to_ne_bytes());
    msg[4..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: writing 8 bytes from a stack buffer to our error pipe, then exiting
    // without running any destructors or atexit handlers (this is a clone child).
    unsafe {
        libc::write(plan.err_fd, msg.as_ptr().cast(), msg.len());
        libc::_exit(125)
    }
}

fn ok(plan: &ChildPlan, rc: libc::c_int, stage: Stage) {
    if rc < 0 {
        fail(plan, stage);
    }
}

fn mount(
    src: &CStr,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> libc::c_int {
    // SAFETY: every pointer is a NUL-terminated string kept alive by the plan or
    // a static literal, or NULL where mount(2) allows it.
    unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.map_or(ptr::null(), |f| f.as_ptr()),
            flags,
            data.map_or(ptr::null(), |d| d.as_ptr().cast::<c_void>()),
        )
    }
}

/// mkdir that tolerates an existing entry.
fn mkdir(path: &CStr, mode: libc::mode_t) -> libc::c_int {
    // SAFETY: path is NUL-terminated.
    let rc = unsafe { libc::mkdir(path.as_ptr(), mode) };
    // SAFETY: reading errno of this thread.
    if rc < 0 && unsafe { *libc::__errno_location() } == libc::EEXIST {
        return 0;
    }
    rc
}

/// Create an empty file (a mount point) if nothing is there.
fn touch(path: &CStr) -> libc::c_int {
    // SAFETY: path is NUL-terminated; the fd is closed right away.
    unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
            0o644,
        );
        if fd < 0 {
            if *libc::__errno_location() == libc::EISDIR {
                return 0;
            }
            return -1;
        }
        libc::close(fd);
        0
    }
}

/// The child's body. Never returns.
pub(super) extern "C" fn child_main(arg: *mut c_void) -> libc::c_int {
    // SAFETY: arg points at the ChildPlan the parent keeps alive across clone;
    // without CLONE_VM the child has its own copy of that memory.
    let plan = unsafe { &*(arg as *const ChildPlan) };
    // SAFETY: plain syscalls on fds and values from the plan.
    unsafe {
        libc::close(plan.read_fd);
        // Die with the parent. (getppid is 0 across the PID namespace boundary,
        // so the usual "already orphaned?" check cannot be made here.)
        ok(
            plan,
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0),
            Stage::Parent,
        );
    }
    ok(
        plan,
        mount(c"none", c"/", None, libc::MS_REC | libc::MS_PRIVATE, None),
        Stage::Private,
    );
    ok(
        plan,
        mount(
            c"overlay",
            &plan.merged,
            Some(c"overlay"),
            0,
            Some(&plan.overlay_data),
        ),
        Stage::Overlay,
    );
    // Host paths vanish with the root switch: clone their mounts first.
    for m in &plan.mounts {
        let src = match &m.kind {
            MountKind::Bind { src, .. } => src,
            MountKind::Overlay { data, at } => {
                ok(
                    plan,
                    mount(c"overlay", at, Some(c"overlay"), 0, Some(data)),
                    Stage::Bind,
                );
                at
            }
            MountKind::Tmpfs { .. } => continue,
        };
        let flags =
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint;
        // SAFETY: open_tree on a NUL-terminated path; the result is checked.
        let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, src.as_ptr(), flags) }
            as libc::c_int;
        ok(plan, fd, Stage::Bind);
        m.tree_fd.set(fd);
    }
    // SAFETY: chdir/pivot_root/umount2 on NUL-terminated paths; pivot_root(".", ".")
    // stacks the old root on the new one, and the detach removes it.
    unsafe {
        ok(plan, libc::chdir(plan.merged.as_ptr()), Stage::PivotRoot);
        let rc = libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int;
        if rc == 0 {
            ok(
                plan,
                libc::umount2(c".".as_ptr(), libc::MNT_DETACH),
                Stage::PivotRoot,
            );
        } else {
            ok(plan, libc::chroot(c".".as_ptr()), Stage::PivotRoot);
        }
        ok(plan, libc::chdir(c"/".as_ptr()), Stage::PivotRoot);
    }
    let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    ok(plan, mkdir(c"/proc", 0o555), Stage::Proc);
    ok(
        plan,
        mount(c"proc", c"/proc", Some(c"proc"), nosuid_nodev_noexec, None),
        Stage::Proc,
    );
    ok(plan, mkdir(c"/sys", 0o555), Stage::Sys);
    ok(
        plan,
        mount(
            c"sysfs",
            c"/sys",
            Some(c"sysfs"),
            nosuid_nodev_noexec | libc::MS_RDONLY,
            None,
        ),
        Stage::Sys,
    );
    setup_dev(plan);
    for m in &plan.mounts {
        for p in &m.parents {
            ok(plan, mkdir(p, 0o755), Stage::Mkdir);
        }
        let rc = if m.target_is_dir {
            mkdir(&m.target, 0o755)
        } else {
            touch(&m.target)
        };
        ok(plan, rc, Stage::Mkdir);
        match &m.kind {
            MountKind::Tmpfs { data } => {
                ok(
                    plan,
                    mount(
                        c"tmpfs",
                        &m.target,
                        Some(c"tmpfs"),
                        libc::MS_NOSUID | libc::MS_NODEV,
                        Some(data),
                    ),
                    Stage::Tmpfs,
                );
            }
            MountKind::Bind { .. } | MountKind::Overlay { .. } => {
                // SAFETY: move_mount of our detached tree onto a path resolved
                // inside the new root; the fd is closed afterwards.
                unsafe {
                    let rc = libc::syscall(
                        libc::SYS_move_mount,
                        m.tree_fd.get(),
                        c"".as_ptr(),
                        libc::AT_FDCWD,
                        m.target.as_ptr(),
                        MOVE_MOUNT_F_EMPTY_PATH,
                    ) as libc::c_int;
                    ok(plan, rc, Stage::Bind);
                    libc::close(m.tree_fd.get());
                }
                if let MountKind::Bind { readonly: true, .. } = m.kind {
                    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                    ok(
                        plan,
                        mount(c"none", &m.target, None, flags, None),
                        Stage::ReadOnly,
                    );
                }
            }
        }
    }
    // SAFETY: sethostname with a valid buffer and length.
    ok(
        plan,
        unsafe { libc::sethostname(plan.hostname.as_ptr(), plan.hostname.as_bytes().len()) },
        Stage::Hostname,
    );
    if plan.net_none {
        loopback_up(plan);
    }
    for p in &plan.workdir_parents {
        ok(plan, mkdir(p, 0o755), Stage::Workdir);
    }
    // SAFETY: identity changes with values and arrays from the plan; order is
    // bounding set, groups, gid, uid, capabilities, so dropping root comes last.
    unsafe {
        // Docker's default capability set: drop the rest from the bounding
        // set now, and from the process once it is the final user.
        if !plan.privileged {
            for cap in 0..=CAP_LAST {
                if DEFAULT_CAPS & (1u64 << cap) == 0 {
                    let rc = libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
                    // Caps newer than the running kernel do not exist: EINVAL.
                    if rc < 0 && *libc::__errno_location() != libc::EINVAL {
                        fail(plan, Stage::Caps);
                    }
                }
            }
        }
        // Raw syscalls: glibc's wrappers would try to signal the parent's
        // other threads (its setxid broadcast), which do not exist in this
        // clone, and wait for them forever.
        let gids = plan.groups.as_ptr();
        let rc = libc::syscall(libc::SYS_setgroups, plan.groups.len(), gids);
        ok(plan, rc as libc::c_int, Stage::Groups);
        let rc = libc::syscall(libc::SYS_setresgid, plan.gid, plan.gid, plan.gid);
        ok(plan, rc as libc::c_int, Stage::Gid);
        let rc = libc::syscall(libc::SYS_setresuid, plan.uid, plan.uid, plan.uid);
        ok(plan, rc as libc::c_int, Stage::Uid);
        if !plan.privileged && plan.uid == 0 {
            // A non-root uid has lost its capabilities in setresuid already.
            let header = CapHeader {
                version: LINUX_CAPABILITY_VERSION_3,
                pid: 0,
            };
            let low = DEFAULT_CAPS as u32;
            let high = (DEFAULT_CAPS >> 32) as u32;
            let data = [
                CapData {
                    effective: low,
                    permitted: low,
                    inheritable: low,
                },
                CapData {
                    effective: high,
                    permitted: high,
                    inheritable: high,
                },
            ];
            let rc = libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr());
            ok(plan, rc as libc::c_int, Stage::Caps);
        }
        ok(plan, libc::chdir(plan.workdir.as_ptr()), Stage::Workdir);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        ok(plan, null, Stage::Stdio);
        ok(plan, libc::dup2(null, 0), Stage::Stdio);
        ok(plan, libc::dup2(plan.out_fd, 1), Stage::Stdio);
        ok(plan, libc::dup2(plan.out_fd, 2), Stage::Stdio);
        // Nothing else the parent had open may reach the command.
        libc::close_range(
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        );
        let mut last_errno = libc::ENOENT;
        for cand in &plan.exec_candidates {
            libc::execve(cand.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
            let e = *libc::__errno_location();
            // Like execvp: keep looking past missing or inaccessible entries.
            if e != libc::ENOENT && e != libc::ENOTDIR {
                last_errno = e;
            }
        }
        *libc::__errno_location() = last_errno;
    }
    fail(plan, Stage::Exec)
}

fn setup_dev(plan: &ChildPlan) {
    ok(plan, mkdir(c"/dev", 0o755), Stage::Dev);
    ok(
        plan,
        mount(
            c"tmpfs",
            c"/dev",
            Some(c"tmpfs"),
            libc::MS_NOSUID,
            Some(c"mode=755,size=65536k"),
        ),
        Stage::Dev,
    );
    let devices: [(&CStr, u32, u32); 6] = [
        (c"/dev/null", 1, 3),
        (c"/dev/zero", 1, 5),
        (c"/dev/full", 1, 7),
        (c"/dev/random", 1, 8),
        (c"/dev/urandom", 1, 9),
        (c"/dev/tty", 5, 0),
    ];
    for (path, major, minor) in devices {
        // SAFETY: mknod/chmod on NUL-terminated paths in our private /dev tmpfs.
        unsafe {
            ok(
                plan,
                libc::mknod(
                    path.as_ptr(),
                    libc::S_IFCHR | 0o666,
                    libc::makedev(major, minor),
                ),
                Stage::Dev,
            );
            ok(plan, libc::chmod(path.as_ptr(), 0o666), Stage::Dev);
        }
    }
    ok(plan, mkdir(c"/dev/pts", 0o755), Stage::Dev);
    ok(
        plan,
        mount(
            c"devpts",
            c"/dev/pts",
            Some(c"devpts"),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some(c"newinstance,ptmxmode=0666,mode=0620,gid=5"),
        ),
        Stage::Dev,
    );
    ok(plan, mkdir(c"/dev/shm", 0o1777), Stage::Dev);
    ok(
        plan,
        mount(
            c"shm",
            c"/dev/shm",
            Some(c"tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(c"mode=1777,size=65536k"),
        ),
        Stage::Dev,
    );
    let links: [(&CStr, &CStr); 6] = [
        (c"pts/ptmx", c"/dev/ptmx"),
        (c"/proc/self/fd", c"/dev/fd"),
        (c"/proc/self/fd/0", c"/dev/stdin"),
        (c"/proc/self/fd/1", c"/dev/stdout"),
        (c"/proc/self/fd/2", c"/dev/stderr"),
        (c"/proc/kcore", c"/dev/core"),
    ];
    for (target, link) in links {
        // SAFETY: NUL-terminated strings.
        ok(
            plan,
            unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) },
            Stage::Dev,
        );
    }
}

#[repr(C)]
struct IfreqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn loopback_up(plan: &ChildPlan) {
    // SAFETY: a datagram socket and two ioctls on a correctly sized ifreq.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        ok(plan, sock, Stage::Network);
        let mut req = IfreqFlags {
            name: [0; libc::IFNAMSIZ],
            flags: 0,
            _pad: [0; 22],
        };
        req.name[..2].copy_from_slice(b"lo");
        ok(
            plan,
            libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req),
            Stage::Network,
        );
        req.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        ok(
            plan,
            libc::ioctl(sock, libc::SIOCSIFFLAGS, &req),
            Stage::Network,
        );
        libc::close(sock);
    }
}
