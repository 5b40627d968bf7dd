//! COPY and ADD into an overlay's merged dir, every path resolved inside its root.
//!
//! INTERFACE FIXED BY THE EXECUTOR (src/build/executor.rs, the lead's): build
//! engineer, implement `copy` behind this signature (keep `CopyRequest`'s fields;
//! add what you need) — the executor calls it with the overlay mounted.

use crate::dockerfile::CopyStep;
use std::path::{Path, PathBuf};

/// Errors from COPY/ADD.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Not written yet.
    #[error("COPY/ADD is not implemented yet")]
    Unimplemented,
}

/// One COPY/ADD to carry out.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    /// The planned step (sources are unglobbed patterns, `dest` as expanded).
    pub step: CopyStep,
    /// Where sources are resolved: the context dir, or a read-only mount of the
    /// `--from` stage's or image's rootfs.
    pub src_root: PathBuf,
    /// True when `src_root` is the build context (`.dockerignore` applies).
    pub from_context: bool,
    /// The Dockerfile's path relative to the context, if inside it.
    pub dockerfile_in_context: Option<String>,
    /// The stage's WORKDIR when the step runs (relative `dest` is under it).
    pub workdir: String,
}

/// Carries out `req` into `merged` (the overlay's merged dir, the rootfs the step
/// writes into; `--chown` names resolve in its /etc/passwd and /etc/group).
pub fn copy(req: &CopyRequest, merged: &Path) -> Result<(), CopyError> {
    let _ = (req, merged);
    Err(CopyError::Unimplemented)
}
