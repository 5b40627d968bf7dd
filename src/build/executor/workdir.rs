//! WORKDIR as a step: the directory and its missing parents created in an
//! overlay over the layers below, owned by the USER (BuildKit's rule).

use std::path::{Path, PathBuf};

use super::error::StepError;
use crate::build::inroot::Root;
use crate::build::overlay::Overlay;
use crate::build::user;
use crate::dockerfile::Step;

/// Creates `dir` for the WORKDIR `step` over `lower`; returns the overlay's
/// upper dir.
pub fn workdir(step: &Step, dir: &str, lower: &Path, work: &Path) -> Result<PathBuf, StepError> {
    let overlay = Overlay::create(work, vec![lower.to_path_buf()])?;
    let user = step.state.user.as_str();
    overlay.with_mounted(|merged| -> Result<(), StepError> {
        let root = Root::open(merged).map_err(|source| StepError::Io {
            path: merged.to_path_buf(),
            source,
        })?;
        let (uid, gid) = if user.is_empty() {
            (0, 0)
        } else {
            let u = user::exec_user(&root, user)?;
            (u.uid, u.gid)
        };
        root.mkdir_all(Path::new(dir), 0o755, uid, gid)
            .map_err(|source| StepError::Workdir {
                dir: dir.to_string(),
                source,
            })?;
        Ok(())
    })??;
    Ok(overlay.upper.clone())
}
