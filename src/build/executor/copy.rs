//! COPY/ADD as a step: the sources' root (the context, or a read-only view
//! of a `--from` stage or image), an overlay over the layers below (or over
//! nothing, for `--link`), and `crate::build::copy` carrying the copy out in
//! its merged dir.

use std::path::{Path, PathBuf};

use super::error::{io_at, StepError};
use super::stage::Executor;
use crate::build::copy::{self, CopyRequest};
use crate::build::overlay::Overlay;
use crate::dockerfile::{CopyStep, Step};

impl Executor<'_> {
    /// Carries out `copy` (the COPY/ADD `step`) on `lower`; returns the
    /// overlay's upper dir.
    pub(super) fn copy(
        &self,
        step: &Step,
        copy: &CopyStep,
        lower: &Path,
        work: &Path,
        scratch: &Path,
    ) -> Result<PathBuf, StepError> {
        let (src_root, _view) = match &copy.from {
            None => (self.opts.context.clone(), None),
            Some(from) => {
                let dir = scratch.join("from");
                let view = self.mount_from(from, &dir, 0)?;
                (dir, Some(view))
            }
        };
        // COPY --link: the files land on an empty base, so the layer does not
        // depend on the layers below (--chown names still resolve in them).
        let base = if copy.link {
            let empty = scratch.join("link-base");
            std::fs::create_dir_all(&empty).map_err(io_at(&empty))?;
            empty
        } else {
            lower.to_path_buf()
        };
        let overlay = Overlay::create(work, vec![base])?;
        let request = CopyRequest {
            step: copy.clone(),
            src_root,
            from_context: copy.from.is_none(),
            dockerfile_in_context: self.opts.dockerfile_in_context.clone(),
            workdir: step.state.workdir.clone(),
            users_root: copy.link.then(|| lower.to_path_buf()),
        };
        overlay.with_mounted(|merged| copy::copy(&request, merged))??;
        Ok(overlay.upper.clone())
    }
}
