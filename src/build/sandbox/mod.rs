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
mod spawn;
mod stubs;

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use thiserror::Error;

use super::inroot::Root;
use super::overlay::{Overlay, OverlayError};
use super::user::UserError;
use crate::userns::IdRange;
pub use net::NetError;
use spawn::{resolve_command, spawn_and_wait};

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
