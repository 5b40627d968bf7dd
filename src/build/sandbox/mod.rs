//! RUN: a command confined as Docker confines a container, and more: in a user
//! namespace of its own whose ids are a subordinate range (root in a step is
//! never root on the host, nor the user that owns the store), with mount, PID,
//! UTS, IPC, cgroup and network namespaces, on a kernel overlayfs whose upper
//! dir becomes the step's layer.
//!
//! The parent side, in a helper thread with a private mount namespace:
//! mounts the overlay (lower: the layers, shown with ids shifted into the
//! step's range by d2v-fuse), resolves every mount point *inside* the root
//! ([`stubs`]), mounts onto fds ([`mounts`]) a `/dev` with only Docker's
//! device nodes, the generated `/etc/{resolv.conf,hosts,hostname}`, and the
//! step's `RUN --mount`s, then clones the child, writes its id maps, starts
//! its network ([`net`]: slirp4netns, host loopback refused), and lets it go.
//! The child ([`child`]) mounts `/proc` and `/sys`, switches root, masks and
//! write-protects Docker's `/proc` and `/sys` paths, drops to Docker's
//! capability set and seccomp profile ([`confine`], [`seccomp`]), becomes the
//! image's USER, and execs.
//!
//! The child is PID 1 of its PID namespace, so killing it (on failure, on
//! cancel, or when d2v dies: `PR_SET_PDEATHSIG`) takes every process of the
//! step with it; every mount lives in namespaces that die with the step or
//! the helper thread. Afterwards the mount points d2v created are removed
//! from the upper dir without following anything the step changed.
//!
//! ```no_run
//! use d2v::build::sandbox::{run, RunSpec};
//! let spec = RunSpec::new(vec!["/bin/sh".into(), "-c".into(), "echo hi > /greeting".into()],
//!     vec!["/var/lib/d2v/mnt/base".into()], "/var/lib/d2v/tmp/step-1".into());
//! let outcome = run(&spec, &mut |bytes| print!("{}", String::from_utf8_lossy(bytes)), None).unwrap();
//! assert_eq!(outcome.exit_code, 0);
//! // outcome.upper is the step's diff:
//! // d2v::build::layer::write_layer_to(&outcome.upper, std::io::sink(), spec.ids.base)
//! ```

mod child;
pub mod confine;
mod mounts;
pub mod net;
mod prepare;
pub mod seccomp;
mod stubs;

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use thiserror::Error;

use super::inroot::{cpath, Root};
use super::overlay::{Overlay, OverlayError};
use super::user::{self, UserError};
use crate::userns::IdRange;
use child::{child_main, ChildPlan, SetupStep};
pub use net::NetError;

/// The default `PATH` when the step's environment has none (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A RUN step could not be run (as opposed to running and failing).
#[derive(Debug, Error)]
pub enum SandboxError {
    /// Preparing the overlay failed.
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    /// The USER could not be resolved in the image.
    #[error(transparent)]
    User(#[from] UserError),
    /// The step's network could not be started.
    #[error(transparent)]
    Network(#[from] NetError),
    /// A host-side operation failed.
    #[error("sandbox: {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The child failed before the command started.
    #[error("sandbox: {step}{} failed: {source}", path.as_deref().map(|p| format!(" {p}")).unwrap_or_default())]
    Setup {
        /// The setup step that failed.
        step: &'static str,
        /// The path it failed on, where one is known.
        path: Option<String>,
        /// The errno it failed with.
        source: io::Error,
    },
    /// The command was not found or could not be executed.
    #[error("sandbox: cannot execute {argv0:?}: {source}")]
    Exec {
        /// The program.
        argv0: String,
        /// Why.
        source: io::Error,
    },
    /// The USER's ids lie outside the ids this build may map.
    #[error(
        "sandbox: the step runs as uid {uid} gid {gid}, but only ids 0..{count} can be mapped \
         for RUN steps (the user running d2v has no subordinate id range: add one to \
         /etc/subuid and /etc/subgid, e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER`)"
    )]
    Unmapped {
        /// The uid.
        uid: u32,
        /// The gid.
        gid: u32,
        /// How many ids are mapped.
        count: u32,
    },
    /// The run was cancelled.
    #[error("sandbox: cancelled")]
    Cancelled,
    /// The spec is unusable.
    #[error("sandbox: {0}")]
    Invalid(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Io { what, source }
}

/// The network a RUN step sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// Its own network namespace with outbound access through slirp4netns
    /// (Docker's default for builds), the host's loopback out of reach.
    #[default]
    Private,
    /// Its own network namespace with only `lo`, up (`--network=none`).
    None,
    /// The host's network namespace (`--network=host`, only when allowed).
    Host,
}

/// A mount a RUN step gets (`RUN --mount`, resolved by the executor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxMount {
    /// `type=cache`: a host directory kept between builds (the caller keys it
    /// by id under the store), mounted read-write unless `readonly`.
    Cache {
        /// Absolute path in the container.
        target: String,
        /// The persistent host directory.
        host_dir: PathBuf,
        /// Mount read-only.
        readonly: bool,
        /// Owner (container ids) and mode given to the directory when created.
        owner: (u32, u32),
        /// Mode of the directory when created.
        mode: u32,
    },
    /// `type=bind`: `source` resolved inside `root` (the context dir or a
    /// stage's rootfs). Read-only unless `readwrite`, in which case writes go
    /// to a throwaway overlay and are discarded, as in BuildKit.
    Bind {
        /// Absolute path in the container.
        target: String,
        /// The directory `source` is resolved in.
        root: PathBuf,
        /// Path inside `root` (`.` for all of it).
        source: PathBuf,
        /// Allow (discarded) writes.
        readwrite: bool,
    },
    /// `type=tmpfs`.
    Tmpfs {
        /// Absolute path in the container.
        target: String,
        /// Size limit in bytes.
        size: Option<u64>,
    },
    /// `type=secret`: a host file, copied into a private tmpfs and mounted
    /// read-only (default target `/run/secrets/ID`); never part of the layer.
    Secret {
        /// Absolute path in the container.
        target: String,
        /// The secret's host file.
        source: PathBuf,
        /// Owner (container ids) of the file.
        owner: (u32, u32),
        /// Its mode.
        mode: u32,
    },
}

impl SandboxMount {
    fn target(&self) -> &str {
        match self {
            SandboxMount::Cache { target, .. }
            | SandboxMount::Bind { target, .. }
            | SandboxMount::Tmpfs { target, .. }
            | SandboxMount::Secret { target, .. } => target,
        }
    }
}

/// One RUN step.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The program and its arguments (shell form already wrapped in SHELL).
    pub argv: Vec<String>,
    /// The environment, exactly (`K=V`); `PATH` and `HOME` are added if absent.
    pub env: Vec<String>,
    /// The stage's USER (`name`, `uid`, `name:group`…); empty is root.
    pub user: String,
    /// The stage's WORKDIR (absolute; `/` if unset).
    pub workdir: String,
    /// The hostname inside.
    pub hostname: String,
    /// The network.
    pub network: NetworkMode,
    /// `RUN --security=insecure`: every capability (of the step's user
    /// namespace: still not host root), no seccomp, no masked paths.
    pub privileged: bool,
    /// `RUN --mount`s.
    pub mounts: Vec<SandboxMount>,
    /// The read-only rootfs layers, topmost first (a d2v-fuse mount in
    /// production), showing container ids shifted by `ids.base`.
    pub lower: Vec<PathBuf>,
    /// An existing, empty scratch dir (under the store's tmp) for the
    /// overlay's upper/work/merged dirs and generated files.
    pub scratch: PathBuf,
    /// The step's ids: container id `c` is `ids.base + c` where d2v runs.
    pub ids: IdRange,
}

impl RunSpec {
    /// A spec with defaults: root, `/`, hostname `d2v`, a private network, no
    /// mounts, no env, this process's step id range.
    pub fn new(argv: Vec<String>, lower: Vec<PathBuf>, scratch: PathBuf) -> Self {
        Self {
            argv,
            env: Vec::new(),
            user: String::new(),
            workdir: "/".into(),
            hostname: "d2v".into(),
            network: NetworkMode::Private,
            privileged: false,
            mounts: Vec::new(),
            lower,
            scratch,
            ids: crate::userns::current().step_uids,
        }
    }
}

/// How a RUN ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The exit code (128 + signal if killed by one).
    pub exit_code: i32,
    /// The overlay's upper dir: the step's diff, ids shifted by the spec's
    /// `ids.base` (the layer writer takes the shift).
    pub upper: PathBuf,
}

/// The identity and program of a step, resolved in the image.
struct Command {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    workdir: String,
    env: Vec<CString>,
    argv: Vec<CString>,
    candidates: Vec<CString>,
}

/// Run `spec`, streaming the command's stdout and stderr (merged) to
/// `output`. `cancel`, when set to true, kills the step's whole PID namespace
/// and returns [`SandboxError::Cancelled`].
pub fn run(
    spec: &RunSpec,
    output: &mut (dyn FnMut(&[u8]) + Send),
    cancel: Option<&AtomicBool>,
) -> Result<RunOutcome, SandboxError> {
    if spec.argv.is_empty() {
        return Err(SandboxError::Invalid("empty command".into()));
    }
    if spec.lower.is_empty() {
        return Err(SandboxError::Invalid("no lower dir".into()));
    }
    let overlay = Overlay::create(&spec.scratch, spec.lower.clone())?;
    let lower_root = Root::open(&spec.lower[0])
        .map_err(io_err(format!("opening lower {}", spec.lower[0].display())))?;
    let command = resolve_command(spec, &lower_root)?;
    prepare::own_upper_root(&overlay, &lower_root)?;

    let seccomp =
        (!spec.privileged).then(|| seccomp::SeccompProgram::docker_default(confine::DEFAULT_CAPS));
    let (ended, points) = std::thread::scope(|s| {
        s.spawn(|| {
            let prepared = prepare::Prepared::new(spec, &overlay)?;
            let result =
                spawn_and_wait(spec, &prepared, &command, seccomp.as_ref(), output, cancel);
            prepared.unmount();
            result.map(|r| (r, prepared.points))
        })
        .join()
        .map_err(|_| SandboxError::Invalid("the sandbox thread panicked".into()))?
    })?;
    let lower_meta = |p: &Path| {
        lower_root
            .stat(p, false)
            .ok()
            .map(|st| (st.st_mode, st.st_uid, st.st_gid))
    };
    points.remove_from(&overlay.upper, &lower_meta);
    let exit_code = ended;
    Ok(RunOutcome {
        exit_code,
        upper: overlay.upper,
    })
}

/// Resolves USER, the environment and the program candidates.
fn resolve_command(spec: &RunSpec, lower: &Root) -> Result<Command, SandboxError> {
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
fn spawn_and_wait(
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
    // SAFETY: the stack buffer outlives the clone call; the child runs on its
    // own copy of it (no CLONE_VM) and only reads `plan`, which stays alive in
    // the parent until the child is reaped. SIGCHLD makes it waitable.
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(stack.len());
        let top = (top as usize & !15) as *mut libc::c_void;
        libc::clone(
            child_main,
            top,
            flags | libc::SIGCHLD,
            &plan as *const ChildPlan as *mut libc::c_void,
        )
    };
    if pid < 0 {
        return Err(io_err("clone")(io::Error::last_os_error()));
    }
    drop(out_w);
    drop(err_w);
    drop(sync_r);
    // From here on the child must be reaped whatever happens.
    // The write end stays open until the child is reaped: the child checks
    // it for a hang-up to notice a parent that died while it changed ids.
    let released = release(spec, pid, &sync_w);
    let (network, cancelled) = match released {
        Ok(net) => {
            let pumped = pump(out_r.as_raw_fd(), output, cancel, pid);
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
    pid: libc::pid_t,
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
        NetworkMode::Private => Some(net::StepNetwork::start(pid)?),
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

/// The overlay dirs of a finished run can be removed with this (best effort).
pub fn cleanup(scratch: &Path) {
    let _ = std::fs::remove_dir_all(scratch);
}

fn cstr(s: &str) -> Result<CString, SandboxError> {
    CString::new(s).map_err(|_| SandboxError::Invalid(format!("{s:?} contains NUL")))
}

/// Normalise a container path to an absolute path without `.`/`..`.
fn clean_abs(p: &str) -> Result<String, SandboxError> {
    let cleaned = super::glob::clean(&format!("/{p}"));
    if cleaned.contains('\0') {
        return Err(SandboxError::Invalid(format!("bad path {p:?}")));
    }
    Ok(cleaned)
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

fn kill(pid: libc::pid_t) {
    // SAFETY: pid is our own unreaped child; SIGKILL to a PID namespace's init
    // kills every process in that namespace.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Copy output to `sink` until EOF; on cancel, kill the namespace's init.
/// Returns whether the run was cancelled.
fn pump(
    fd: RawFd,
    sink: &mut (dyn FnMut(&[u8]) + Send),
    cancel: Option<&AtomicBool>,
    pid: libc::pid_t,
) -> Result<bool, SandboxError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut cancelled = false;
    loop {
        if !cancelled && cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            kill(pid);
            cancelled = true;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, 100) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(io_err("poll")(e));
        }
        if rc == 0 {
            continue;
        }
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(io_err("reading output")(e));
        }
        if n == 0 {
            return Ok(cancelled);
        }
        if !cancelled {
            sink(&buf[..n as usize]);
        }
    }
}

/// Reap the child; its exit code, or 128 + signal.
fn wait(pid: libc::pid_t) -> Result<i32, SandboxError> {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(io_err("waitpid")(e));
        }
    }
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    })
}
