//! RUN: a command in new mount, PID, UTS and IPC namespaces (and a network
//! namespace with only `lo` for `--network=none`), on a kernel overlayfs
//! whose upper dir becomes the step's layer.
//!
//! The child is PID 1 of its PID namespace, so killing it (on failure, on
//! cancel, or when the parent dies: `PR_SET_PDEATHSIG`) takes every process of
//! the step with it, and every mount lives in the child's mount namespace, so
//! nothing is left behind on the host when it exits. Inside: the overlay as
//! root (`pivot_root`), a new `/proc`, read-only `/sys`, a minimal `/dev`
//! tmpfs, `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname` bind-mounted
//! from generated files, the step's `RUN --mount`s, Docker's default
//! capability set (unless privileged), then the image USER's
//! groups, gid and uid, WORKDIR (created as root if missing) and `execve` with
//! exactly the environment given. Mount points the sandbox had to create are
//! removed from the upper dir afterwards, as BuildKit does.
//!
//! ```no_run
//! use d2v::build::sandbox::{run, RunSpec};
//! let spec = RunSpec::new(vec!["/bin/sh".into(), "-c".into(), "echo hi > /greeting".into()],
//!     vec!["/var/lib/d2v/mnt/base".into()], "/var/lib/d2v/tmp/step-1".into());
//! let outcome = run(&spec, &mut |bytes| print!("{}", String::from_utf8_lossy(bytes)), None).unwrap();
//! assert_eq!(outcome.exit_code, 0);
//! // outcome.upper is the step's diff: d2v::build::layer::write_layer(&outcome.upper, ...)
//! ```

mod child;
pub mod seccomp;

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use thiserror::Error;

use super::inroot::{cpath, owned, Root};
use super::overlay::{Overlay, OverlayError};
use super::user::{UserDb, UserError};
use child::{child_main, ChildMount, ChildPlan, MountKind, Stage};

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
    /// A host-side operation failed.
    #[error("sandbox: {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The child failed before the command started.
    #[error("sandbox: {stage} failed: {source}")]
    Setup {
        /// The setup step that failed.
        stage: &'static str,
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
pub enum Network {
    /// The host's network (Docker's default for builds).
    #[default]
    Host,
    /// A new network namespace with only `lo`, up.
    None,
}

/// A `RUN --mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMount {
    /// `type=cache`: a host directory kept between builds (the caller keys it
    /// by id under the store), mounted read-write unless `readonly`.
    Cache {
        /// Absolute path in the container.
        target: String,
        /// The persistent host directory.
        host_dir: PathBuf,
        /// Mount read-only.
        readonly: bool,
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
    /// `type=secret`: a host file bind-mounted read-only (default target
    /// `/run/secrets/ID`); never part of the layer.
    Secret {
        /// Absolute path in the container.
        target: String,
        /// The secret's host file.
        source: PathBuf,
    },
}

impl RunMount {
    fn target(&self) -> &str {
        match self {
            RunMount::Cache { target, .. }
            | RunMount::Bind { target, .. }
            | RunMount::Tmpfs { target, .. }
            | RunMount::Secret { target, .. } => target,
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
    pub network: Network,
    /// Keep every capability (`RUN --security=insecure`); otherwise the
    /// command gets Docker's default set.
    pub privileged: bool,
    /// `RUN --mount`s.
    pub mounts: Vec<RunMount>,
    /// The read-only rootfs layers, topmost first (a d2v-fuse mount in production).
    pub lower: Vec<PathBuf>,
    /// An existing, empty scratch dir (under the store's tmp) for the
    /// overlay's upper/work/merged dirs and generated files.
    pub scratch: PathBuf,
}

impl RunSpec {
    /// A spec with defaults: root, `/`, hostname `d2v`, host network, no mounts, no env.
    pub fn new(argv: Vec<String>, lower: Vec<PathBuf>, scratch: PathBuf) -> Self {
        Self {
            argv,
            env: Vec::new(),
            user: String::new(),
            workdir: "/".into(),
            hostname: "d2v".into(),
            network: Network::Host,
            privileged: false,
            mounts: Vec::new(),
            lower,
            scratch,
        }
    }
}

/// How a RUN ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The exit code (128 + signal if killed by one).
    pub exit_code: i32,
    /// The overlay's upper dir: the step's diff.
    pub upper: PathBuf,
}

/// Run `spec`, streaming the command's stdout and stderr (merged) to
/// `output`. `cancel`, when set to true, kills the step's whole PID namespace
/// and returns [`SandboxError::Cancelled`].
pub fn run(
    spec: &RunSpec,
    output: &mut dyn FnMut(&[u8]),
    cancel: Option<&AtomicBool>,
) -> Result<RunOutcome, SandboxError> {
    if spec.argv.is_empty() {
        return Err(SandboxError::Invalid("empty command".into()));
    }
    if spec.lower.is_empty() {
        return Err(SandboxError::Invalid("no lower dir".into()));
    }
    let overlay = Overlay::create(&spec.scratch, spec.lower.clone())?;
    let lower_roots: Vec<Root> = spec
        .lower
        .iter()
        .map(|p| Root::open(p).map_err(io_err(format!("opening lower {}", p.display()))))
        .collect::<Result<_, _>>()?;
    let exists_in_lower = |p: &Path| lower_roots.iter().any(|r| r.exists(p));
    let users = UserDb::load(&lower_roots[0]);
    let user = users.exec_user(&spec.user)?;

    // Generated files, bind-mounted over /etc/{resolv.conf,hosts,hostname}.
    let etc_dir = spec.scratch.join("etc");
    std::fs::create_dir(&etc_dir).map_err(io_err("creating scratch etc"))?;
    let resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    let hosts = format!(
        "127.0.0.1\tlocalhost {h}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        h = spec.hostname
    );
    let generated: [(&str, Vec<u8>); 3] = [
        ("/etc/resolv.conf", resolv),
        ("/etc/hosts", hosts.into_bytes()),
        ("/etc/hostname", format!("{}\n", spec.hostname).into_bytes()),
    ];

    let mut mounts: Vec<ChildMount> = Vec::new();
    let mut stubs: Vec<PathBuf> = Vec::new();
    let mut copied_up: Vec<PathBuf> = Vec::new();
    let mut add_stub_paths = |target: &Path, stubs: &mut Vec<PathBuf>| {
        let mut sofar = PathBuf::from("/");
        for c in target.components() {
            if let Component::Normal(n) = c {
                sofar.push(n);
                if !exists_in_lower(&sofar) {
                    if !stubs.contains(&sofar) {
                        stubs.push(sofar.clone());
                    }
                } else if sofar != target && !copied_up.contains(&sofar) {
                    copied_up.push(sofar.clone());
                }
            }
        }
    };
    let host_path = |p: &Path| -> Result<CString, SandboxError> {
        let real =
            std::fs::canonicalize(p).map_err(io_err(format!("resolving {}", p.display())))?;
        cpath(real.as_os_str()).map_err(io_err(format!("resolving {}", p.display())))
    };
    for (target, content) in &generated {
        let file = etc_dir.join(Path::new(target).file_name().unwrap_or_default());
        std::fs::write(&file, content).map_err(io_err(format!("writing {}", file.display())))?;
        add_stub_paths(Path::new(target), &mut stubs);
        mounts.push(child_mount(
            target,
            false,
            MountKind::Bind {
                src: host_path(&file)?,
                readonly: false,
            },
        )?);
    }
    for (i, m) in spec.mounts.iter().enumerate() {
        let target = clean_abs(m.target())?;
        add_stub_paths(Path::new(&target), &mut stubs);
        let cm = match m {
            RunMount::Cache {
                host_dir, readonly, ..
            } => {
                std::fs::create_dir_all(host_dir)
                    .map_err(io_err(format!("creating cache dir {}", host_dir.display())))?;
                child_mount(
                    &target,
                    true,
                    MountKind::Bind {
                        src: host_path(host_dir)?,
                        readonly: *readonly,
                    },
                )?
            }
            RunMount::Bind {
                root,
                source,
                readwrite,
                ..
            } => {
                let r = Root::open(root)
                    .map_err(io_err(format!("opening bind root {}", root.display())))?;
                let fd = r.open_at(source, libc::O_PATH, 0).map_err(io_err(format!(
                    "resolving bind source {} in {}",
                    source.display(),
                    root.display()
                )))?;
                let is_dir = super::inroot::fstat(fd.as_raw_fd())
                    .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                    .unwrap_or(false);
                // The in-root resolution, as a host path the child can reach.
                let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                    .map_err(io_err("resolving bind source"))?;
                if *readwrite && is_dir {
                    // Writes land in a throwaway upper dir under scratch.
                    let scratch = spec.scratch.join(format!("bind-{i}"));
                    std::fs::create_dir(&scratch).map_err(io_err("creating bind scratch"))?;
                    let ov = Overlay::create(&scratch, vec![real])?;
                    let at = cpath(ov.merged.as_os_str()).map_err(io_err("bind scratch"))?;
                    child_mount(
                        &target,
                        true,
                        MountKind::Overlay {
                            data: ov.options()?,
                            at,
                        },
                    )?
                } else {
                    let src = cpath(real.as_os_str()).map_err(io_err("bind source"))?;
                    child_mount(
                        &target,
                        is_dir,
                        MountKind::Bind {
                            src,
                            readonly: !*readwrite,
                        },
                    )?
                }
            }
            RunMount::Tmpfs { size, .. } => {
                let data = match size {
                    Some(s) => format!("mode=1777,size={s}"),
                    None => "mode=1777".to_string(),
                };
                child_mount(
                    &target,
                    true,
                    MountKind::Tmpfs {
                        data: CString::new(data).expect("no NUL"),
                    },
                )?
            }
            RunMount::Secret { source, .. } => child_mount(
                &target,
                false,
                MountKind::Bind {
                    src: host_path(source)?,
                    readonly: true,
                },
            )?,
        };
        mounts.push(cm);
    }
    for fixed in ["/proc", "/sys", "/dev"] {
        add_stub_paths(Path::new(fixed), &mut stubs);
    }

    // Environment and program lookup (PATH of the step's env, like execvp).
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
    let argv_c: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<_, _>>()?;
    let env_c: Vec<CString> = env.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?;
    let mut argv_p: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());

    let workdir = clean_abs(if spec.workdir.is_empty() {
        "/"
    } else {
        &spec.workdir
    })?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let plan = ChildPlan {
        merged: cpath(overlay.merged.as_os_str()).map_err(io_err("merged path"))?,
        overlay_data: overlay.options()?,
        mounts,
        hostname: cstr(&spec.hostname)?,
        net_none: spec.network == Network::None,
        privileged: spec.privileged,
        groups: user.additional_gids.clone(),
        uid: user.uid,
        gid: user.gid,
        workdir_parents: ancestors_c(&workdir, true)?,
        workdir: cstr(&workdir)?,
        exec_candidates: candidates,
        argv: argv_p,
        envp,
        out_fd: out_w.as_raw_fd(),
        err_fd: err_w.as_raw_fd(),
        read_fd: out_r.as_raw_fd(),
    };

    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if spec.network == Network::None {
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
    let pumped = pump(out_r.as_raw_fd(), output, cancel, pid);
    let status = wait(pid);
    drop(plan);
    let cancelled = pumped?;
    let status = status?;

    let mut report = [0u8; 8];
    // SAFETY: reading at most 8 bytes into a stack buffer from our pipe.
    let n = unsafe { libc::read(err_r.as_raw_fd(), report.as_mut_ptr().cast(), 8) };
    remove_stubs(&overlay.upper, &stubs);
    prune_copied_up(&overlay.upper, &lower_roots, &copied_up);
    if cancelled {
        return Err(SandboxError::Cancelled);
    }
    if n == 8 {
        let stage = u32::from_ne_bytes(report[..4].try_into().expect("4 bytes"));
        let errno = i32::from_ne_bytes(report[4..].try_into().expect("4 bytes"));
        let source = io::Error::from_raw_os_error(errno);
        return Err(match Stage::from_u32(stage) {
            Some(Stage::Exec) => SandboxError::Exec {
                argv0: argv0.clone(),
                source,
            },
            Some(s) => SandboxError::Setup {
                stage: s.describe(),
                source,
            },
            None => SandboxError::Setup {
                stage: "setup",
                source,
            },
        });
    }
    Ok(RunOutcome {
        exit_code: status,
        upper: overlay.upper,
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

/// `/a`, `/a/b`, … for `/a/b/c` (including it when `inclusive`).
fn ancestors_c(path: &str, inclusive: bool) -> Result<Vec<CString>, SandboxError> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let n = if inclusive {
        parts.len()
    } else {
        parts.len().saturating_sub(1)
    };
    (1..=n)
        .map(|i| cstr(&format!("/{}", parts[..i].join("/"))))
        .collect()
}

fn child_mount(target: &str, is_dir: bool, kind: MountKind) -> Result<ChildMount, SandboxError> {
    Ok(ChildMount {
        parents: ancestors_c(target, false)?,
        target: cstr(target)?,
        target_is_dir: is_dir,
        kind,
        tree_fd: std::cell::Cell::new(-1),
    })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-element array for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc < 0 {
        return Err(io_err("pipe")(io::Error::last_os_error()));
    }
    let r = owned(fds[0]).map_err(io_err("pipe"))?;
    let w = owned(fds[1]).map_err(io_err("pipe"))?;
    Ok((r, w))
}

/// Copy output to `sink` until EOF; on cancel, kill the namespace's init.
/// Returns whether the run was cancelled.
fn pump(
    fd: RawFd,
    sink: &mut dyn FnMut(&[u8]),
    cancel: Option<&AtomicBool>,
    pid: libc::pid_t,
) -> Result<bool, SandboxError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut cancelled = false;
    loop {
        if !cancelled && cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            // SAFETY: pid is our own unreaped child; SIGKILL to a PID
            // namespace's init kills every process in that namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
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

/// Drop mount points the sandbox created (and that stayed empty) from the
/// upper dir, deepest first, so they are not part of the layer.
fn remove_stubs(upper: &Path, stubs: &[PathBuf]) {
    let mut sorted: Vec<&PathBuf> = stubs.iter().collect();
    sorted.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for stub in sorted {
        let host = upper.join(stub.strip_prefix("/").unwrap_or(stub));
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        if meta.is_dir() {
            let _ = std::fs::remove_dir(&host); // only if empty
        } else if meta.is_file() && meta.len() == 0 {
            let _ = std::fs::remove_file(&host);
        }
    }
}

/// Drop directories that overlay copied up only because a mount point was
/// created inside them: still empty, not opaque, and with the lower's mode
/// and owner. Deepest first.
fn prune_copied_up(upper: &Path, lower: &[Root], dirs: &[PathBuf]) {
    let mut sorted: Vec<&PathBuf> = dirs.iter().collect();
    sorted.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for dir in sorted {
        let rel = dir.strip_prefix("/").unwrap_or(dir);
        let host = upper.join(rel);
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        let Some(lower_st) = lower.iter().find_map(|r| r.stat(rel, false).ok()) else {
            continue;
        };
        let empty = std::fs::read_dir(&host)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        let opaque = super::layer::read_xattr(&host, "trusted.overlay.opaque").is_some();
        if meta.is_dir()
            && empty
            && !opaque
            && meta.mode() & 0o7777 == lower_st.st_mode & 0o7777
            && meta.uid() == lower_st.st_uid
            && meta.gid() == lower_st.st_gid
        {
            let _ = std::fs::remove_dir(&host);
        }
    }
}
