//! Running the entrypoint as PID 1's child: spawn, signal forwarding, zombie
//! reaping, and the shutdown that follows the main process's exit.

use crate::sys::{self, cstr, Errno, Micros};
use crate::users::ExecUser;
use alloc::ffi::CString;
use alloc::string::String;
use alloc::vec::Vec;
use core::ptr;

/// Everything needed to start the entrypoint.
pub struct Launch {
    /// PATH used to find `argv[0]` (the child's own PATH).
    pub path: String,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub user: ExecUser,
    pub workdir: String,
    /// What a VMM's graceful stop (Ctrl-Alt-Del → SIGINT from the kernel) becomes.
    pub stop_signal: i32,
    pub debug: bool,
    /// Between SIGTERM and SIGKILL for processes left after the main one exits.
    pub grace_ms: u64,
}

/// Signals PID 1 forwards to the main process.
const FORWARDED: [i32; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

fn sigset(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a plain sigset_t.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn is_executable(path: &[u8]) -> bool {
    let p = cstr(path);
    // SAFETY: p is a valid C string; st is an out-parameter.
    unsafe {
        let mut st: libc::stat = core::mem::zeroed();
        libc::stat(p.as_ptr(), &mut st) == 0
            && st.st_mode & libc::S_IFMT == libc::S_IFREG
            && st.st_mode & 0o111 != 0
    }
}

/// Finds `name` like execvp does, in `path` (the child's PATH, not init's).
pub fn lookup(name: &str, path: &str) -> Option<String> {
    if name.contains('/') {
        return Some(name.into());
    }
    path.split(':')
        .map(|dir| if dir.is_empty() { "." } else { dir })
        .map(|dir| alloc::format!("{}/{name}", dir.trim_end_matches('/')))
        .find(|cand| is_executable(cand.as_bytes()))
}

fn child_fail(msg: &[u8], err: Errno, code: i32) -> ! {
    let line = alloc::format!("d2v-init: {}: {err}\n", String::from_utf8_lossy(msg));
    sys::write_all(2, line.as_bytes());
    // SAFETY: _exit ends the forked child without running parent state's cleanup.
    unsafe { libc::_exit(code) }
}

/// Spawns the entrypoint and supervises it until it exits; returns its wait status.
pub fn run(l: &Launch) -> i32 {
    let mut all = Vec::from(FORWARDED);
    all.push(libc::SIGCHLD);
    let set = sigset(&all);
    // SAFETY: blocking signals for this (single-threaded) process.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, ptr::null_mut()) };

    let Some(exe) = lookup(&l.argv[0], &l.path) else {
        say!("couldn't find {:?} in PATH={}: ENOENT", l.argv[0], l.path);
        return 127 << 8;
    };
    let exe_c = cstr(exe.as_bytes());
    let argv_c: Vec<CString> = l.argv.iter().map(|a| cstr(a.as_bytes())).collect();
    let env_c: Vec<CString> = l.env.iter().map(|e| cstr(e.as_bytes())).collect();
    let mut argv_p: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(ptr::null());
    let mut env_p: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    env_p.push(ptr::null());
    let workdir_c = cstr(l.workdir.as_bytes());
    let groups: Vec<libc::gid_t> = l.user.groups.clone();

    if l.debug {
        say!("[{}] exec {}", Micros(sys::boottime()), exe);
    }
    // SAFETY: fork in a single-threaded process; the child only makes
    // async-signal-safe calls on memory prepared before the fork, then execs.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        say!("couldn't fork: {}", Errno::last());
        return crate::pid1::code::SPAWN << 8;
    }
    if pid == 0 {
        // SAFETY: see above; each call's failure ends the child with a message.
        unsafe {
            let empty = sigset(&[]);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, ptr::null_mut());
            libc::setsid();
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                child_fail(b"couldn't set supplementary groups", Errno::last(), 126);
            }
            if libc::setgid(l.user.gid) != 0 {
                child_fail(b"couldn't set gid", Errno::last(), 126);
            }
            if libc::setuid(l.user.uid) != 0 {
                child_fail(b"couldn't set uid", Errno::last(), 126);
            }
            if libc::chdir(workdir_c.as_ptr()) != 0 {
                child_fail(b"couldn't chdir to workdir", Errno::last(), 126);
            }
            libc::execve(exe_c.as_ptr(), argv_p.as_ptr(), env_p.as_ptr());
            let e = Errno::last();
            let msg = alloc::format!("couldn't exec {exe}");
            child_fail(
                msg.as_bytes(),
                e,
                if e.0 == libc::ENOENT { 127 } else { 126 },
            );
        }
    }
    loop {
        // SAFETY: info is an out-parameter for sigwaitinfo on our blocked set.
        let mut info: libc::siginfo_t = unsafe { core::mem::zeroed() };
        let sig = unsafe { libc::sigwaitinfo(&set, &mut info) };
        if sig < 0 {
            continue;
        }
        if sig == libc::SIGCHLD {
            if let Some(status) = reap(pid) {
                return status;
            }
        } else if sig == libc::SIGINT && info.si_code == libc::SI_KERNEL {
            say!(
                "stop requested: sending signal {} to {}",
                l.stop_signal,
                l.argv[0]
            );
            // SAFETY: signalling our child.
            unsafe { libc::kill(pid, l.stop_signal) };
        } else {
            // SAFETY: signalling our child.
            unsafe { libc::kill(pid, sig) };
        }
    }
}

/// Reaps every exited child; returns the main one's status when it is among them.
fn reap(main: i32) -> Option<i32> {
    let mut main_status = None;
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out-parameter.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return main_status;
        }
        if pid == main {
            main_status = Some(status);
        }
    }
}

/// Exit code from a wait status, as a shell reports it.
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

fn kill_the_rest(grace_ms: u64) {
    // SAFETY: kill(-1) signals every process but PID 1 itself.
    unsafe { libc::kill(-1, libc::SIGTERM) };
    let chld = sigset(&[libc::SIGCHLD]);
    let deadline = sys::boottime() + grace_ms * 1000;
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out-parameter.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid < 0 {
            return; // ECHILD: nothing left
        }
        if pid > 0 {
            continue;
        }
        let now = sys::boottime();
        if now >= deadline {
            break;
        }
        let left = deadline - now;
        let ts = libc::timespec {
            tv_sec: (left / 1_000_000) as libc::time_t,
            tv_nsec: ((left % 1_000_000) * 1000) as libc::c_long,
        };
        // SAFETY: waiting on the blocked SIGCHLD with a timeout.
        unsafe { libc::sigtimedwait(&chld, ptr::null_mut(), &ts) };
    }
    say!("processes left after {} ms: sending SIGKILL", grace_ms);
    // SAFETY: as above.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out-parameter; blocking wait until ECHILD.
        if unsafe { libc::waitpid(-1, &mut status, 0) } < 0 {
            return;
        }
    }
}

/// After the main process exited: stop the rest, sync, remount / read-only,
/// report the code and power off.
pub fn shutdown(l: &Launch, status: i32, exit_port: Option<u16>) -> ! {
    let code = exit_code(status);
    kill_the_rest(l.grace_ms);
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    if let Err(e) = sys::mount(b"", b"/", b"", libc::MS_REMOUNT | libc::MS_RDONLY, b"") {
        say!("couldn't remount / read-only: {e}");
    }
    say!("{} exited with code {code}", l.argv[0]);
    power_off(exit_port, code)
}

/// Flushes the console, passes `code` out through QEMU's isa-debug-exit port when
/// asked, and reboots (which QEMU `-no-reboot` and Firecracker turn into an exit).
pub fn power_off(exit_port: Option<u16>, code: i32) -> ! {
    // SAFETY: tcdrain waits for queued console output; sync flushes filesystems.
    unsafe {
        libc::tcdrain(1);
        libc::tcdrain(2);
        libc::sync();
    }
    if let Some(port) = exit_port {
        write_exit_port(port, code);
    }
    // SAFETY: reboot(2) as PID 1 with CAP_SYS_BOOT.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    // Not in a VM (or reboot refused): fall back to exiting.
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

#[cfg(target_arch = "x86_64")]
fn write_exit_port(port: u16, code: i32) {
    // SAFETY: ioperm grants this process access to the two port bytes; the
    // `out` then writes to QEMU's isa-debug-exit, which ends the VM.
    unsafe {
        if libc::ioperm(port as libc::c_ulong, 2, 1) != 0 {
            return;
        }
        core::arch::asm!("out dx, ax", in("dx") port, in("ax") code as u16, options(nomem, nostack));
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn write_exit_port(_port: u16, _code: i32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_argv0_in_the_given_path() {
        assert_eq!(
            lookup("sh", "/nonexistent:/bin").as_deref(),
            Some("/bin/sh")
        );
        assert_eq!(lookup("./x", "/bin").as_deref(), Some("./x"));
        assert_eq!(lookup("definitely-not-a-command", "/bin:/usr/bin"), None);
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(libc::SIGKILL), 137);
    }
}
