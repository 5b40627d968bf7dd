//! The parent's side of a step's process: USER, env and program resolved in
//! the image; the child cloned into its namespaces (raw `clone`: the child
//! runs [`super::child`] without allocating); its id maps written, its
//! network started, its output streamed, and the child reaped.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::child::{child_main, ChildPlan, SetupStep};
use super::{
    clean_abs, confine, cstr, io_err, net, prepare, seccomp, NetworkMode, RunSpec, SandboxError,
    DEFAULT_PATH,
};
use crate::build::inroot::{cpath, Root};
use crate::build::user;

/// The identity and program of a step, resolved in the image.
pub(super) struct Command {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    workdir: String,
    env: Vec<CString>,
    argv: Vec<CString>,
    candidates: Vec<CString>,
}

/// Resolves USER, the environment and the program candidates.
pub(super) fn resolve_command(spec: &RunSpec, lower: &Root) -> Result<Command, SandboxError> {
    let user = user::exec_user(lower, &spec.user)?;
    let count = spec.ids.count;
    if user.uid >= count || user.gid >= count {
        return Err(SandboxError::Unmapped {
            uid: user.uid,
            gid: user.gid,
            count,
        });
    }
    let groups: Vec<u32> = user.groups.iter().copied().filter(|g| *g < count).collect();
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string();
    let argv0 = &spec.argv[0];
    let candidates: Vec<CString> = if argv0.contains('/') {
        vec![cstr(argv0)?]
    } else {
        path_var
            .split(':')
            .map(|d| if d.is_empty() { "." } else { d })
            .map(|d| cstr(&format!("{}/{argv0}", d.trim_end_matches('/'))))
            .collect::<Result<_, _>>()?
    };
    let workdir = clean_abs(if spec.workdir.is_empty() {
        "/"
    } else {
        &spec.workdir
    })?;
    Ok(Command {
        uid: user.uid,
        gid: user.gid,
        groups,
        workdir,
        env: env.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?,
        argv: spec
            .argv
            .iter()
            .map(|a| cstr(a))
            .collect::<Result<_, _>>()?,
        candidates,
    })
}

/// Clones the child into the prepared rootfs, sets up its ids and network,
/// lets it run, streams its output and reaps it. Runs in the thread that
/// owns the prepared mounts.
pub(super) fn spawn_and_wait(
    spec: &RunSpec,
    prepared: &prepare::Prepared,
    command: &Command,
    seccomp: Option<&seccomp::SeccompProgram>,
    output: &mut (dyn FnMut(&[u8]) + Send),
    cancel: Option<&AtomicBool>,
) -> Result<i32, SandboxError> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (sync_r, sync_w) = pipe()?;
    let mut argv: Vec<*const libc::c_char> = command.argv.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = command.env.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let confine = !spec.privileged;
    let mut masked: Vec<&str> = confine::MASKED_PATHS.to_vec();
    let thermal = confine::thermal_throttle_paths();
    masked.extend(thermal.iter().map(String::as_str));
    let plan = ChildPlan {
        rootfs: cpath(prepared.merged.as_os_str()).map_err(io_err("rootfs path"))?,
        proc_at: cpath(prepared.proc_at.as_os_str()).map_err(io_err("proc path"))?,
        sys_at: cpath(prepared.sys_at.as_os_str()).map_err(io_err("sys path"))?,
        own_net: spec.network != NetworkMode::Host,
        confine,
        masked: if confine {
            masked.iter().map(|p| cstr(p)).collect::<Result<_, _>>()?
        } else {
            Vec::new()
        },
        readonly: if confine {
            confine::READONLY_PATHS
                .iter()
                .map(|p| cstr(p))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        },
        seccomp: seccomp.map(|s| s.as_fprog()),
        hostname: cstr(&spec.hostname)?,
        groups: command.groups.clone(),
        may_setgroups: std::fs::read_to_string("/proc/self/setgroups")
            .map(|s| s.trim() != "deny")
            .unwrap_or(true),
        uid: command.uid,
        gid: command.gid,
        workdir_parents: ancestors_c(&command.workdir)?,
        workdir: cstr(&command.workdir)?,
        exec_candidates: command.candidates.clone(),
        argv,
        envp,
        out_fd: out_w.as_raw_fd(),
        err_fd: err_w.as_raw_fd(),
        close_fds: [out_r.as_raw_fd(), sync_w.as_raw_fd()],
        sync_fd: sync_r.as_raw_fd(),
    };
    let mut flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWCGROUP;
    if spec.network != NetworkMode::Host {
        flags |= libc::CLONE_NEWNET;
    }
    let mut stack = vec![0u8; 256 * 1024];
    // The stack grows down: the child starts at the buffer's end, 16-aligned.
    let top = stack.as_mut_ptr_range().end;
    let top = (top as usize & !15) as *mut libc::c_void;
    // SAFETY: `top` is the 16-aligned end of a live 256 KiB buffer that
    // outlives the clone call; the child runs on its own copy of it (no
    // CLONE_VM) and only reads `plan`, which stays alive in the parent until
    // the child is reaped. SIGCHLD makes it waitable.
    let raw_pid = unsafe {
        libc::clone(
            child_main,
            top,
            flags | libc::SIGCHLD,
            &plan as *const ChildPlan as *mut libc::c_void,
        )
    };
    if raw_pid < 0 {
        return Err(io_err("clone")(io::Error::last_os_error()));
    }
    let pid = Pid::from_raw(raw_pid);
    drop(out_w);
    drop(err_w);
    drop(sync_r);
    // From here on the child must be reaped whatever happens.
    // The write end stays open until the child is reaped: the child checks
    // it for a hang-up to notice a parent that died while it changed ids.
    let released = release(spec, pid, &sync_w);
    let (network, cancelled) = match released {
        Ok(net) => {
            let pumped = pump(out_r.as_fd(), output, cancel, pid);
            (Some(net), pumped)
        }
        Err(e) => {
            kill(pid);
            (None, Err(e))
        }
    };
    let status = wait(pid);
    drop(sync_w);
    drop(network);
    let cancelled = cancelled?;
    let status = status?;
    if cancelled {
        return Err(SandboxError::Cancelled);
    }
    if let Some(e) = setup_failure(err_r, &spec.argv[0], &plan) {
        return Err(e);
    }
    Ok(status)
}

/// Writes the child's id maps, starts its network, and lets it go.
fn release(
    spec: &RunSpec,
    pid: Pid,
    sync_w: &OwnedFd,
) -> Result<Option<net::StepNetwork>, SandboxError> {
    let line = spec.ids.map_line();
    for file in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{pid}/{file}"), &line).map_err(io_err(format!(
            "writing the step's {file} ({})",
            line.trim()
        )))?;
    }
    let network = match spec.network {
        NetworkMode::Private => Some(net::StepNetwork::start(pid.as_raw())?),
        NetworkMode::None | NetworkMode::Host => None,
    };
    rustix::io::write(sync_w, b"1").map_err(|e| io_err("releasing the step")(e.into()))?;
    Ok(network)
}

/// The setup failure the child reported, if any.
fn setup_failure(err_r: OwnedFd, argv0: &str, plan: &ChildPlan) -> Option<SandboxError> {
    let mut report = [0u8; 12];
    let n = rustix::io::read(&err_r, &mut report).unwrap_or(0);
    if n != 12 {
        return None;
    }
    let step = u32::from_ne_bytes(report[..4].try_into().expect("4 bytes"));
    let errno = i32::from_ne_bytes(report[4..8].try_into().expect("4 bytes"));
    let index = u32::from_ne_bytes(report[8..].try_into().expect("4 bytes")) as usize;
    let source = io::Error::from_raw_os_error(errno);
    let step = SetupStep::from_u32(step);
    let path = match step {
        Some(SetupStep::Mask) => plan.masked.get(index),
        Some(SetupStep::ReadOnly) => plan.readonly.get(index),
        _ => None,
    }
    .map(|p| p.to_string_lossy().into_owned());
    Some(match step {
        Some(SetupStep::Exec) => SandboxError::Exec {
            argv0: argv0.to_string(),
            source,
        },
        Some(s) => SandboxError::Setup {
            step: s.describe(),
            path,
            source,
        },
        None => SandboxError::Setup {
            step: "setup",
            path,
            source,
        },
    })
}

/// `/a`, `/a/b`, `/a/b/c` for `/a/b/c`.
fn ancestors_c(path: &str) -> Result<Vec<CString>, SandboxError> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    (1..=parts.len())
        .map(|i| cstr(&format!("/{}", parts[..i].join("/"))))
        .collect()
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| io_err("pipe")(e.into()))
}

/// SIGKILL to our own unreaped child: as its PID namespace's init, it takes
/// every process of the step with it.
fn kill(pid: Pid) {
    let _ = signal::kill(pid, Signal::SIGKILL);
}

/// Copy output to `sink` until EOF; on cancel, kill the namespace's init.
/// Returns whether the run was cancelled.
fn pump(
    fd: BorrowedFd<'_>,
    sink: &mut (dyn FnMut(&[u8]) + Send),
    cancel: Option<&AtomicBool>,
    pid: Pid,
) -> Result<bool, SandboxError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut cancelled = false;
    loop {
        if !cancelled && cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            kill(pid);
            cancelled = true;
        }
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u8)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(io_err("poll")(e.into())),
        }
        let n = match rustix::io::read(fd, &mut buf) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(io_err("reading output")(e.into())),
        };
        if n == 0 {
            return Ok(cancelled);
        }
        if !cancelled {
            sink(&buf[..n]);
        }
    }
}

/// Reap the child; its exit code, or 128 + signal.
fn wait(pid: Pid) -> Result<i32, SandboxError> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(io_err("waitpid")(e.into())),
        }
    }
}
