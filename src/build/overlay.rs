//! Kernel overlayfs for one step: read-only lower dirs (a d2v-fuse mount in
//! production), a fresh upper dir that becomes the step's layer, and the
//! workdir overlay needs beside it.
//!
//! Options keep the upper dir a plain diff: no redirects (`redirect_dir=nofollow`: renamed lower
//! dirs are copied up whole), no `metacopy` (copied-up files carry their
//! data), no `index`.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use nix::sched::CloneFlags;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

/// Mounting or using an overlay failed.
#[derive(Debug, Error)]
pub enum OverlayError {
    /// A filesystem call failed on a path.
    #[error("overlay: {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A path cannot be passed in overlay's mount options.
    #[error("overlay: path {0} contains ',' or ':' which overlay options cannot carry")]
    BadPath(PathBuf),
    /// The helper thread panicked.
    #[error("overlay: the mount thread panicked")]
    Panicked,
}

/// The directories of one overlay mount.
#[derive(Debug, Clone)]
pub struct Overlay {
    /// Read-only lower dirs, topmost first.
    pub lower: Vec<PathBuf>,
    /// The writable upper dir (the step's diff).
    pub upper: PathBuf,
    /// Overlay's work dir (same filesystem as `upper`).
    pub work: PathBuf,
    /// Where the merged view is mounted.
    pub merged: PathBuf,
    /// Keep overlay's bookkeeping in `user.overlay.*` xattrs (`userxattr`): a
    /// mount inside a user namespace (rootless d2v) cannot use `trusted.*`.
    pub userxattr: bool,
}

impl Overlay {
    /// Create `upper`, `work` and `merged` inside `scratch` (which must exist).
    pub fn create(scratch: &Path, lower: Vec<PathBuf>) -> Result<Self, OverlayError> {
        let ov = Self {
            lower,
            upper: scratch.join("upper"),
            work: scratch.join("work"),
            merged: scratch.join("merged"),
            userxattr: crate::userns::current().overlay_userxattr(),
        };
        for dir in [&ov.upper, &ov.work, &ov.merged] {
            std::fs::create_dir(dir).map_err(|source| OverlayError::Io {
                what: "creating",
                path: dir.clone(),
                source,
            })?;
        }
        // The upper root's metadata never reaches the layer, but keep it sane.
        let _ = std::fs::set_permissions(
            &ov.upper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        );
        Ok(ov)
    }

    /// The `mount -t overlay` data string.
    pub fn options(&self) -> Result<CString, OverlayError> {
        let all = self.lower.iter().chain([&self.upper, &self.work]);
        for p in all {
            let s = p.to_string_lossy();
            if s.contains(',') || s.contains(':') {
                return Err(OverlayError::BadPath(p.clone()));
            }
        }
        let lower: Vec<String> = self
            .lower
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let mut opts = format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=nofollow,index=off,metacopy=off",
            lower.join(":"),
            self.upper.display(),
            self.work.display()
        );
        if self.userxattr {
            opts.push_str(",userxattr");
        }
        CString::new(opts).map_err(|_| OverlayError::BadPath(self.upper.clone()))
    }

    /// Mount the overlay at `merged` in the calling thread's mount namespace.
    pub fn mount(&self) -> Result<(), OverlayError> {
        let opts = self.options()?;
        let flags = MountFlags::empty();
        rustix::mount::mount("overlay", &self.merged, "overlay", flags, opts.as_c_str())
            .map_err(|e| self.io("mounting overlay at", e.into()))
    }

    fn io(&self, what: &'static str, source: io::Error) -> OverlayError {
        OverlayError::Io {
            what,
            path: self.merged.clone(),
            source,
        }
    }

    /// Run `f` with the overlay mounted at `merged`, in a private mount
    /// namespace of a helper thread: the mount is invisible to the rest of the
    /// system and disappears with the thread, even if `f` panics.
    pub fn with_mounted<R: Send>(
        &self,
        f: impl FnOnce(&Path) -> R + Send,
    ) -> Result<R, OverlayError> {
        std::thread::scope(|s| {
            s.spawn(|| {
                enter_private_mount_ns()
                    .map_err(|source| self.io("unsharing mount ns for", source))?;
                self.mount()?;
                let out = f(&self.merged);
                rustix::mount::unmount(&self.merged, UnmountFlags::DETACH)
                    .map_err(|e| self.io("unmounting", e.into()))?;
                Ok(out)
            })
            .join()
            .map_err(|_| OverlayError::Panicked)?
        })
    }
}

/// Give the calling thread its own mount namespace with private propagation.
/// Only for a thread that exits when done: the namespace dies with it.
pub(crate) fn enter_private_mount_ns() -> io::Result<()> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)?;
    // mount(NULL, "/", NULL, MS_REC|MS_PRIVATE, NULL): only changes propagation.
    let private = MountPropagationFlags::REC | MountPropagationFlags::PRIVATE;
    Ok(rustix::mount::mount_change("/", private)?)
}
