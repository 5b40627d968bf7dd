//! The sandboxed child: runs between `clone` and `execve` as PID 1 of the
//! step's namespaces (user, mount, PID, UTS, IPC, cgroup and, unless the step
//! uses the host's, network). It only makes system calls on data the parent
//! prepared (no allocation, no locks): the parent may be multi-threaded.
//! Raw `libc` is used here on purpose, for that reason.
//!
//! Order matters:
//! 1. wait until the parent has written the id maps (and started the network);
//! 2. with the credentials it was cloned with (the store owner's, which can
//!    reach the scratch dir), bind the prepared rootfs onto itself (a mount of
//!    its own, so `pivot_root` may use it), mount `/proc` and `/sys` (before the
//!    switch: a user namespace may mount them only where the host's are
//!    visible), switch root and drop the old one;
//! 3. become root of the user namespace (container root, a subordinate id);
//! 4. mask and write-protect `/proc` and `/sys` paths as Docker does;
//! 5. hostname, loopback, working directory;
//! 6. drop the capability bounding set to Docker's, install Docker's seccomp
//!    profile (while CAP_SYS_ADMIN is still held), switch to the USER and its
//!    groups, set the capabilities, and exec.

use std::ffi::{c_void, CStr};
use std::ptr;

use super::confine::{CAP_LAST, DEFAULT_CAPS};

mod plan;
pub(super) use plan::{ChildPlan, SetupStep};

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

fn errno() -> i32 {
    // SAFETY: __errno_location has no preconditions.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: it points at this thread's errno, valid for the thread's life.
    unsafe { *errno }
}

fn set_errno(value: i32) {
    // SAFETY: __errno_location has no preconditions.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: it points at this thread's errno, writable for the thread's life.
    unsafe { *errno = value };
}

/// Report a failed step with errno to the parent and exit.
fn fail(plan: &ChildPlan, step: SetupStep) -> ! {
    fail_at(plan, step, u32::MAX)
}

/// Report a failed step on the plan's path number `index` (a masked or
/// read-only path), with errno, to the parent and exit.
fn fail_at(plan: &ChildPlan, step: SetupStep, index: u32) -> ! {
    let e = errno();
    let mut msg = [0u8; 12];
    msg[..4].copy_from_slice(&(step as u32).to_ne_bytes());
    msg[4..8].copy_from_slice(&e.to_ne_bytes());
    msg[8..].copy_from_slice(&index.to_ne_bytes());
    // SAFETY: writing msg.len() bytes from a stack buffer to our error pipe.
    unsafe { libc::write(plan.err_fd, msg.as_ptr().cast(), msg.len()) };
    // SAFETY: exiting without running any destructors or atexit handlers, as a
    // clone child of a multi-threaded parent must.
    unsafe { libc::_exit(125) }
}

fn ok(plan: &ChildPlan, rc: libc::c_long, step: SetupStep) {
    if rc < 0 {
        fail(plan, step);
    }
}

fn mount(
    src: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> libc::c_long {
    // SAFETY: every pointer is a NUL-terminated string kept alive by the plan or
    // a static literal, or NULL where mount(2) allows it.
    unsafe {
        libc::mount(
            src.map_or(ptr::null(), |s| s.as_ptr()),
            target.as_ptr(),
            fstype.map_or(ptr::null(), |f| f.as_ptr()),
            flags,
            data.map_or(ptr::null(), |d| d.as_ptr().cast::<c_void>()),
        )
        .into()
    }
}

/// mkdir that tolerates an existing entry.
fn mkdir(path: &CStr, mode: libc::mode_t) -> libc::c_long {
    // SAFETY: path is NUL-terminated.
    let rc = unsafe { libc::mkdir(path.as_ptr(), mode) };
    if rc < 0 && errno() == libc::EEXIST {
        return 0;
    }
    rc.into()
}

const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// The child's body. Never returns.
pub(super) extern "C" fn child_main(arg: *mut c_void) -> libc::c_int {
    // SAFETY: arg points at the ChildPlan the parent keeps alive across clone;
    // without CLONE_VM the child has its own copy of that memory.
    let plan = unsafe { &*(arg as *const ChildPlan) };
    for fd in plan.close_fds {
        // SAFETY: the parent's ends of our pipes, inherited and unused here.
        unsafe { libc::close(fd) };
    }
    // SAFETY: asking to die with the parent takes no pointers.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    ok(plan, rc.into(), SetupStep::Parent);
    let mut byte = 0u8;
    // SAFETY: reading one byte into a stack variable.
    if unsafe { libc::read(plan.sync_fd, (&mut byte as *mut u8).cast(), 1) } != 1 {
        // The parent gave up before releasing us (it reports why).
        // SAFETY: exiting without destructors or atexit handlers (clone child).
        unsafe { libc::_exit(125) };
    }
    enter_rootfs(plan);
    become_namespace_root(plan);
    if plan.confine {
        mask_paths(plan);
    }
    // SAFETY: sethostname with a valid buffer and length.
    let rc = unsafe { libc::sethostname(plan.hostname.as_ptr(), plan.hostname.as_bytes().len()) };
    ok(plan, rc.into(), SetupStep::Hostname);
    if plan.own_net {
        loopback_up(plan);
    }
    for p in &plan.workdir_parents {
        ok(plan, mkdir(p, 0o755), SetupStep::Workdir);
    }
    drop_to_user_and_exec(plan)
}

/// Step 2: the rootfs, `/proc`, `/sys`, and the root switch.
fn enter_rootfs(plan: &ChildPlan) {
    ok(
        plan,
        mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None),
        SetupStep::Private,
    );
    // The rootfs was mounted by the parent, so in this user namespace it is
    // locked and pivot_root refuses it: a recursive bind of it is our own.
    ok(
        plan,
        mount(
            Some(&plan.rootfs),
            &plan.rootfs,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        ),
        SetupStep::Rootfs,
    );
    ok(
        plan,
        mount(
            Some(c"proc"),
            &plan.proc_at,
            Some(c"proc"),
            NOSUID_NODEV_NOEXEC,
            None,
        ),
        SetupStep::Proc,
    );
    if plan.own_net {
        ok(
            plan,
            mount(
                Some(c"sysfs"),
                &plan.sys_at,
                Some(c"sysfs"),
                NOSUID_NODEV_NOEXEC | libc::MS_RDONLY,
                None,
            ),
            SetupStep::Sys,
        );
    } else {
        ok(
            plan,
            mount(
                Some(c"/sys"),
                &plan.sys_at,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            ),
            SetupStep::Sys,
        );
        // Best effort: the host's sysfs flags are locked here; its files
        // belong to host root, which this namespace cannot write anyway.
        let _ = mount(
            None,
            &plan.sys_at,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | NOSUID_NODEV_NOEXEC,
            None,
        );
    }
    // pivot_root(".", ".") stacks the old root on the new one, and the detach
    // removes it.
    // SAFETY: chdir to the plan's NUL-terminated rootfs path.
    let rc = unsafe { libc::chdir(plan.rootfs.as_ptr()) };
    ok(plan, rc.into(), SetupStep::PivotRoot);
    // SAFETY: pivot_root with two NUL-terminated static paths.
    let rc = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) };
    ok(plan, rc, SetupStep::PivotRoot);
    // SAFETY: umount2 of a NUL-terminated static path.
    let rc = unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) };
    ok(plan, rc.into(), SetupStep::PivotRoot);
    // SAFETY: chdir to a NUL-terminated static path.
    let rc = unsafe { libc::chdir(c"/".as_ptr()) };
    ok(plan, rc.into(), SetupStep::PivotRoot);
}

/// Step 3: root of the user namespace, with no supplementary groups.
fn become_namespace_root(plan: &ChildPlan) {
    // Raw identity syscalls: glibc's wrappers would try to signal the
    // parent's other threads, which do not exist in this clone.
    // SAFETY: setresgid takes integers only.
    let rc = unsafe { libc::syscall(libc::SYS_setresgid, 0, 0, 0) };
    ok(plan, rc, SetupStep::Identity);
    // SAFETY: setresuid takes integers only.
    let rc = unsafe { libc::syscall(libc::SYS_setresuid, 0, 0, 0) };
    ok(plan, rc, SetupStep::Identity);
    if plan.may_setgroups {
        // SAFETY: an empty group list: count 0, so the NULL array is never read.
        let rc = unsafe { libc::syscall(libc::SYS_setgroups, 0, ptr::null::<libc::gid_t>()) };
        ok(plan, rc, SetupStep::Identity);
    }
}

/// Step 4: Docker's masked and read-only paths.
fn mask_paths(plan: &ChildPlan) {
    for (i, p) in plan.masked.iter().enumerate() {
        // SAFETY: stat into a zeroed stack buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: p is NUL-terminated and st is valid for writing.
        if unsafe { libc::stat(p.as_ptr(), &mut st) } < 0 {
            if errno() == libc::ENOENT {
                continue;
            }
            fail_at(plan, SetupStep::Mask, i as u32);
        }
        let rc = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            mount(
                Some(c"tmpfs"),
                p,
                Some(c"tmpfs"),
                libc::MS_RDONLY | NOSUID_NODEV_NOEXEC,
                Some(c"size=0"),
            )
        } else {
            mount(Some(c"/dev/null"), p, None, libc::MS_BIND, None)
        };
        if rc < 0 {
            fail_at(plan, SetupStep::Mask, i as u32);
        }
    }
    for (i, p) in plan.readonly.iter().enumerate() {
        let rc = mount(Some(p), p, None, libc::MS_BIND | libc::MS_REC, None);
        if rc < 0 && errno() == libc::ENOENT {
            continue;
        }
        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | NOSUID_NODEV_NOEXEC;
        if rc < 0 || mount(None, p, None, flags, None) < 0 {
            fail_at(plan, SetupStep::ReadOnly, i as u32);
        }
    }
}

/// Step 6: bounding set, seccomp, USER, capabilities, stdio, exec. The order
/// keeps CAP_SYS_ADMIN until seccomp is installed and drops root last.
fn drop_to_user_and_exec(plan: &ChildPlan) -> ! {
    if plan.confine {
        for cap in 0..=CAP_LAST {
            if DEFAULT_CAPS & (1u64 << cap) == 0 {
                // SAFETY: PR_CAPBSET_DROP takes a capability number, no pointers.
                let rc =
                    unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
                // Caps newer than the running kernel do not exist: EINVAL.
                if rc < 0 && errno() != libc::EINVAL {
                    fail(plan, SetupStep::Caps);
                }
            }
        }
    }
    if let Some(prog) = &plan.seccomp {
        ok(
            plan,
            super::seccomp::install(prog).into(),
            SetupStep::Seccomp,
        );
    }
    if plan.may_setgroups {
        let gids = plan.groups.as_ptr();
        // SAFETY: gids points at the plan's plan.groups.len() group ids.
        let rc = unsafe { libc::syscall(libc::SYS_setgroups, plan.groups.len(), gids) };
        ok(plan, rc, SetupStep::Groups);
    }
    // SAFETY: setresgid takes integers only (raw: see become_namespace_root).
    let rc = unsafe { libc::syscall(libc::SYS_setresgid, plan.gid, plan.gid, plan.gid) };
    ok(plan, rc, SetupStep::Gid);
    // SAFETY: setresuid takes integers only.
    let rc = unsafe { libc::syscall(libc::SYS_setresuid, plan.uid, plan.uid, plan.uid) };
    ok(plan, rc, SetupStep::Uid);
    // Changing ids cleared the parent-death signal: set it again, then make
    // sure the parent did not die in between (it holds the sync pipe's
    // write end open until the step is reaped).
    // SAFETY: PR_SET_PDEATHSIG takes a signal number, no pointers.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    ok(plan, rc.into(), SetupStep::Parent);
    let mut pfd = libc::pollfd {
        fd: plan.sync_fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd on the stack, with a zero timeout.
    if unsafe { libc::poll(&mut pfd, 1, 0) } != 0 && pfd.revents & libc::POLLHUP != 0 {
        // SAFETY: exiting without destructors or atexit handlers (clone child).
        unsafe { libc::_exit(125) };
    }
    if plan.confine && plan.uid == 0 {
        // A non-root uid has lost its capabilities in setresuid already.
        set_default_caps(plan);
    }
    // SAFETY: chdir to the plan's NUL-terminated working directory.
    let rc = unsafe { libc::chdir(plan.workdir.as_ptr()) };
    ok(plan, rc.into(), SetupStep::Workdir);
    connect_stdio(plan);
    let mut last_errno = libc::ENOENT;
    for cand in &plan.exec_candidates {
        // SAFETY: cand is NUL-terminated and argv/envp are the plan's
        // NULL-terminated arrays of pointers into strings it owns.
        unsafe { libc::execve(cand.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr()) };
        let e = errno();
        // Like execvp: keep looking past missing or inaccessible entries.
        if e != libc::ENOENT && e != libc::ENOTDIR {
            last_errno = e;
        }
    }
    set_errno(last_errno);
    fail(plan, SetupStep::Exec)
}

/// Docker's default capabilities, effective, permitted and inheritable.
fn set_default_caps(plan: &ChildPlan) {
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
    // SAFETY: a version-3 header and the two CapData words that version reads,
    // both on the stack for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    ok(plan, rc, SetupStep::Caps);
}

/// stdin from /dev/null, stdout and stderr to the step's output pipe, and
/// close-on-exec on everything else.
fn connect_stdio(plan: &ChildPlan) {
    // SAFETY: open of a NUL-terminated static path.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
    ok(plan, null.into(), SetupStep::Stdio);
    for (from, to) in [(null, 0), (plan.out_fd, 1), (plan.out_fd, 2)] {
        // SAFETY: dup2 between descriptors, no pointers.
        let rc = unsafe { libc::dup2(from, to) };
        ok(plan, rc.into(), SetupStep::Stdio);
    }
    // Nothing else the parent had open may reach the command.
    // SAFETY: close_range takes integers only.
    unsafe {
        libc::close_range(
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        )
    };
}

#[repr(C)]
struct IfreqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn loopback_up(plan: &ChildPlan) {
    // SAFETY: socket takes integers only.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    ok(plan, sock.into(), SetupStep::Network);
    let mut req = IfreqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: SIOCGIFFLAGS fills the flags of a correctly sized ifreq.
    let rc = unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) };
    ok(plan, rc.into(), SetupStep::Network);
    req.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the same ifreq.
    let rc = unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) };
    ok(plan, rc.into(), SetupStep::Network);
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(sock) };
}
