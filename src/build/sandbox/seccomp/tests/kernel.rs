//! The kernel accepts the program and enforces it, in forked children.

use super::DOCKER_CAPS;
use crate::build::sandbox::seccomp::{install, SeccompProgram};

/// Forks; the child runs `child` (raw syscalls only: the test harness is
/// multi-threaded) and exits with its code; returns the wait status.
fn in_child(child: impl FnOnce() -> i32) -> libc::c_int {
    // SAFETY: the child only makes raw syscalls on memory prepared before
    // the fork, then exits or execs; the parent only waits for it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = child();
        // SAFETY: leave the forked child without running the harness's
        // destructors or atexit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child into a stack int.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    status
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A raw `clone(SIGCHLD | extra)` like fork (no new stack: the child runs on a
/// copy of ours) whose child exits at once; the parent's return value.
fn clone_and_exit(extra: libc::c_long) -> libc::c_long {
    // SAFETY: no pointers are passed; the child only calls _exit below.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_long | extra,
            0,
            0,
            0,
            0,
        )
    };
    if pid == 0 {
        // SAFETY: leave the new process at once, running nothing of ours.
        unsafe { libc::_exit(0) };
    }
    pid
}

/// In the child, under the installed filter: what a RUN step would see.
/// Returns 0, or the number of the first check that failed.
fn confined_checks(argv: &[*const libc::c_char; 2], envp: &[*const libc::c_char; 1]) -> i32 {
    // SAFETY: PR_GET_SECCOMP takes no arguments.
    if unsafe { libc::prctl(libc::PR_GET_SECCOMP) } != 2 {
        return 12;
    }
    // SAFETY: unshare takes flags only.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != -1 || errno() != libc::EPERM {
        return 13;
    }
    let (src, dst) = (c"none".as_ptr(), c"/mnt".as_ptr());
    // SAFETY: NUL-terminated static strings and no data.
    let rc = unsafe { libc::syscall(libc::SYS_mount, src, dst, c"tmpfs".as_ptr(), 0, 0) };
    if rc != -1 || errno() != libc::EPERM {
        return 14;
    }
    // SAFETY: getpid takes no arguments.
    if unsafe { libc::syscall(libc::SYS_getpid) } <= 0 {
        return 15;
    }
    // SAFETY: a NULL clone_args of size 0, which the kernel rejects before
    // reading; the filter answers ENOSYS first anyway.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0) };
    if rc != -1 || errno() != libc::ENOSYS {
        return 16;
    }
    // SAFETY: socket takes integers only.
    let sock = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) };
    if sock != -1 || errno() != libc::EPERM {
        return 17;
    }
    let fork = clone_and_exit(0);
    if fork < 0 {
        return 18;
    }
    let mut status = 0;
    // SAFETY: waiting for the child just cloned, into a stack int.
    let reaped = unsafe { libc::waitpid(fork as i32, &mut status, 0) };
    if reaped != fork as i32 || status != 0 {
        return 18;
    }
    let ns = clone_and_exit(libc::CLONE_NEWUSER as libc::c_long);
    if ns != -1 || errno() != libc::EPERM {
        return 19;
    }
    // SAFETY: argv and envp are NULL-terminated arrays of NUL-terminated
    // static strings.
    unsafe { libc::execve(argv[0], argv.as_ptr(), envp.as_ptr()) };
    20
}

/// The kernel accepts the program and enforces it: installed as root (and
/// again from a fresh user namespace, where the RUN sandbox installs it),
/// without no_new_privs, for Docker's default capabilities.
#[test]
fn kernel_enforces_the_program() {
    let prog = SeccompProgram::docker_default(DOCKER_CAPS);
    let fprog = prog.as_fprog();
    let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    for userns in [false, true] {
        let status = in_child(|| {
            // SAFETY: a raw syscall with no pointers.
            if userns && unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
                return 10;
            }
            if install(&fprog) != 0 {
                return 11;
            }
            confined_checks(&argv, &envp)
        });
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "userns={userns}: child status {status:#x} (exit {}: see confined_checks)",
            libc::WEXITSTATUS(status)
        );
    }
}

/// An x32 syscall number and an i386 `int 0x80` kill the process (a process
/// without the filter gets ENOSYS / its pid).
#[cfg(target_arch = "x86_64")]
#[test]
fn kernel_kills_other_abis() {
    let prog = SeccompProgram::docker_default(DOCKER_CAPS);
    let fprog = prog.as_fprog();
    let getpid_x32 = 0x4000_0000 | libc::SYS_getpid;
    for filtered in [false, true] {
        let status = in_child(|| {
            if filtered && install(&fprog) != 0 {
                return 11;
            }
            // SAFETY: a raw syscall with no pointers.
            let ret = unsafe { libc::syscall(getpid_x32) };
            i32::from(ret != -1 || errno() != libc::ENOSYS)
        });
        check_killed(status, filtered, "x32 getpid");
        let status = in_child(|| {
            if filtered && install(&fprog) != 0 {
                return 11;
            }
            let pid: i32;
            // SAFETY: i386 getpid (20) through the compat entry; it takes no
            // arguments and touches no memory.
            unsafe {
                std::arch::asm!(
                    "int 0x80",
                    inlateout("eax") 20 => pid,
                    out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                    options(nostack),
                );
            }
            // SAFETY: a raw syscall with no pointers.
            i32::from(pid as libc::c_long != unsafe { libc::syscall(libc::SYS_getpid) })
        });
        check_killed(status, filtered, "i386 getpid");
    }
}

/// Without the filter the child exits 0 (the call behaved as usual); with
/// it, the child dies of SIGSYS.
#[cfg(target_arch = "x86_64")]
fn check_killed(status: libc::c_int, filtered: bool, what: &str) {
    if filtered {
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
            "{what}: status {status:#x}, want SIGSYS"
        );
    } else {
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{what} without filter: status {status:#x}"
        );
    }
}
