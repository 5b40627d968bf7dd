//! `d2v mount`'s server: an image's merged tree served read-only over FUSE
//! (nosuid, nodev) until it is unmounted or d2v gets SIGINT, SIGTERM or
//! SIGHUP, which unmount it.

use crate::store::{Store, StoreError};
use nix::sys::signal::{SigSet, Signal};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why an image could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point is missing, not a directory, or not empty.
    #[error("mount point {dir}: {why}")]
    MountPoint {
        /// The mount point.
        dir: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The image or its layers could not be read from the store.
    #[error("couldn't compose the layers of {name}")]
    Compose {
        /// The image.
        name: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The image is not in the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// FUSE refused the mount.
    #[error("couldn't mount {name} on {}", dir.display())]
    Fuse {
        /// The image.
        name: String,
        /// The mount point.
        dir: PathBuf,
        /// FUSE's error.
        #[source]
        source: d2v_fuse::MountError,
    },
}

/// How to serve a view.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// FUSE server threads (at least 1).
    pub threads: usize,
    /// Let other users read the view (FUSE `allow_other`).
    pub allow_other: bool,
}

/// Checks that `dir` is an empty directory, as `mount` will need.
pub fn check_mountpoint(dir: &Path) -> Result<(), MountError> {
    let bad = |why: String| MountError::MountPoint {
        dir: dir.to_path_buf(),
        why,
    };
    let meta = std::fs::metadata(dir).map_err(|e| bad(e.to_string()))?;
    if !meta.is_dir() {
        return Err(bad("not a directory".into()));
    }
    let mut entries = std::fs::read_dir(dir).map_err(|e| bad(e.to_string()))?;
    if entries.next().is_some() {
        return Err(bad("not empty (or already a mount)".into()));
    }
    Ok(())
}

/// Mounts the merged tree of image `name` on `dir`, calls `ready` once the
/// mount is live, and serves it until it is unmounted (`d2v umount`) or a
/// stop signal arrives, which unmounts it.
pub fn serve(
    store: &Store,
    name: &str,
    dir: &Path,
    opts: ServeOptions,
    ready: impl FnOnce(),
) -> Result<(), MountError> {
    let image = store.image(name)?;
    let tree = store
        .merged_tree(&image.layers())
        .map_err(|source| MountError::Compose {
            name: name.to_string(),
            source,
        })?;
    // Blocked here, so in every thread started below: the signal thread
    // alone takes them, with sigwait.
    let mut stop = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        stop.add(s);
    }
    let _ = stop.thread_block();
    // Root's view unmounts itself if the server dies (fusermount3's
    // auto_unmount, which needs the kernel's allow_other; d2v-fuse then turns
    // other users away itself). An ordinary user's fusermount3 allows that
    // only with user_allow_other, so without allow_other its view does not.
    let root = nix::unistd::geteuid().is_root();
    let fuse_opts = d2v_fuse::MountOptions {
        threads: opts.threads.max(1),
        allow_other: opts.allow_other,
        auto_unmount: root || opts.allow_other,
        suid_dev: false,
        id_shift: 0,
        ..Default::default()
    };
    let mount =
        d2v_fuse::mount(Arc::new(tree), dir, &fuse_opts).map_err(|source| MountError::Fuse {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            source,
        })?;
    let at = dir.to_path_buf();
    std::thread::spawn(move || {
        if stop.wait().is_ok() {
            let _ = d2v_fuse::unmount(&at);
        }
    });
    ready();
    mount.wait();
    Ok(())
}

/// Leaves the caller's session (a background server outlives its terminal).
pub fn new_session() {
    let _ = nix::unistd::setsid();
}

/// Points stdout and stderr at /dev/null, so that the pipes a background
/// server was started with close once it has said it is ready.
pub fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(null.as_fd());
        let _ = nix::unistd::dup2_stderr(null.as_fd());
    }
}
