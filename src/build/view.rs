//! The read-only view of a layer stack a build step works on, served by a
//! helper process (`d2v __serve-layers`), never by the build process itself.
//!
//! Why a separate process: a FUSE request already handed to a server thread
//! is waited out uninterruptibly by the kernel. If d2v served its own views
//! and was killed while one of its threads (an overlay lookup, a COPY) waited
//! on such a request, that thread would keep the process's file table, and
//! with it the `/dev/fuse` descriptor, alive forever: the connection would
//! never abort and the killed process would never finish dying. With the
//! server in its own process, killing d2v closes the pipe the server watches;
//! the server unmounts and exits; and a killed server aborts the connection,
//! so waiting requests fail instead of hanging.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::store::oci::Digest;
use crate::store::{Layer, Store};
use std::sync::Arc;

/// The view could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// Its mount point could not be created.
    #[error("creating {path}: {source}")]
    MountPoint {
        /// The mount point.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The d2v executable (which serves the view) could not be found.
    #[error("finding the d2v executable: {0}")]
    Exe(#[source] std::io::Error),
    /// The server could not be started.
    #[error("starting the layer view server: {0}")]
    Spawn(#[source] std::io::Error),
    /// The server failed before the view was ready: its own message.
    #[error("{0}")]
    Server(String),
    /// The server could not compose the layers.
    #[error("couldn't compose the layers")]
    Compose(#[source] crate::store::StoreError),
    /// The server could not mount or unmount the view.
    #[error("couldn't mount the layers on {}", dir.display())]
    Fuse {
        /// The mount point.
        dir: PathBuf,
        /// FUSE's error.
        #[source]
        source: d2v_fuse::MountError,
    },
    /// The server could not tell its parent the view is ready.
    #[error("telling the build the view is ready: {0}")]
    Ready(#[source] std::io::Error),
}

/// A read-only FUSE view of a layer stack, unmounted when dropped.
pub struct LayersMount {
    child: Option<Child>,
    /// Closing it tells the server to unmount and exit.
    stdin: Option<ChildStdin>,
    dir: PathBuf,
}

impl LayersMount {
    /// Where it is mounted.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for LayersMount {
    fn drop(&mut self) {
        self.stdin.take();
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

/// What the server prints once the view is live.
pub const READY: &str = "d2v-layers-ready";

/// Mounts `layers` read-only at `dir` (created), ids shown shifted by
/// `id_shift` (a RUN step's range, see [`crate::userns`]; 0 for d2v's own use),
/// served by `d2v __serve-layers` in the caller's mount namespace (call it from
/// a thread that has not unshared its own). Other users may use it (RUN steps
/// run as other ids), which is safe because a build's mounts live in its
/// private mount namespace.
pub fn mount_layers(
    store: &Store,
    layers: &[Layer],
    dir: &Path,
    id_shift: u32,
) -> Result<LayersMount, ViewError> {
    std::fs::create_dir_all(dir).map_err(|source| ViewError::MountPoint {
        path: dir.to_path_buf(),
        source,
    })?;
    let exe = std::env::current_exe().map_err(ViewError::Exe)?;
    let mut cmd = Command::new(exe);
    cmd.arg("__serve-layers")
        .arg("--dir")
        .arg(dir)
        .arg("--id-shift")
        .arg(id_shift.to_string())
        .args(layers.iter().map(|l| l.digest.to_string()))
        .env("D2V_HOME", store.root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own process group: a Ctrl-C meant for the build must not take the
    // view away under the steps being cancelled; it ends when d2v does.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(ViewError::Spawn)?;
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    let _ = BufReader::new(stdout).read_line(&mut line);
    if line.trim() == READY {
        let stdin = child.stdin.take();
        return Ok(LayersMount {
            child: Some(child),
            stdin,
            dir: dir.to_path_buf(),
        });
    }
    drop(child.stdin.take());
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let status = child.wait();
    let err = err.trim().trim_start_matches("d2v: error: ").to_string();
    Err(ViewError::Server(if err.is_empty() {
        format!("the layer view server exited ({status:?}) before the view was ready")
    } else {
        err
    }))
}

/// The server's side (`d2v __serve-layers`): mounts the merged tree of
/// `layers` (bottom first) on `dir` with ids shifted by `id_shift`, prints
/// [`READY`] on stdout, and serves until stdin closes (the build is done, or
/// dead); then unmounts.
pub fn serve(store: &Store, dir: &Path, id_shift: u32, layers: &[Digest]) -> Result<(), ViewError> {
    let tree = store.merged_tree(layers).map_err(ViewError::Compose)?;
    let opts = d2v_fuse::MountOptions {
        threads: 2,
        auto_unmount: false,
        allow_other: true,
        id_shift,
        suid_dev: true,
        ..Default::default()
    };
    let fuse = |source| ViewError::Fuse {
        dir: dir.to_path_buf(),
        source,
    };
    let mount = d2v_fuse::mount(Arc::new(tree), dir, &opts).map_err(fuse)?;
    let mut out = std::io::stdout();
    writeln!(out, "{READY}")
        .and_then(|()| out.flush())
        .map_err(ViewError::Ready)?;
    let mut buf = [0u8; 64];
    let mut stdin = std::io::stdin();
    while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
    mount.unmount().map_err(fuse)
}
