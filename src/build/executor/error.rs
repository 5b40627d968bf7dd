//! The build's errors: what ends a build, and what went wrong inside a step
//! (typed, with its cause, so `d2v build` can say file:line:col, the
//! instruction and why).

use std::io;
use std::path::PathBuf;

use crate::build::checksum::ChecksumError;
use crate::build::copy::CopyError;
use crate::build::entitlements::EntitlementError;
use crate::build::git::GitError;
use crate::build::layer::LayerError;
use crate::build::overlay::OverlayError;
use crate::build::sandbox::SandboxError;
use crate::build::user::UserError;
use crate::build::view::ViewError;
use crate::dockerfile::Step;
use crate::source::ResolveError;
use crate::store::StoreError;

use super::StageBuilderError;

/// Errors that end a build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A RUN step exited non-zero.
    #[error("{location}: `{text}` failed with exit code {code}")]
    RunFailed {
        /// file:line:col of the step.
        location: String,
        /// The instruction.
        text: String,
        /// Its exit code.
        code: i32,
    },
    /// A step could not be carried out.
    #[error("{location}: `{text}`: {source}")]
    Step {
        /// file:line:col of the step.
        location: String,
        /// The instruction.
        text: String,
        /// What went wrong.
        source: Box<StepError>,
    },
    /// A stage's base image could not be had.
    #[error("stage {stage}: base image {image:?}: {source}")]
    BaseImage {
        /// The stage's name (or index).
        stage: String,
        /// The image reference.
        image: String,
        /// Why.
        source: Box<ResolveError>,
    },
    /// The stage builder (`--stage-builder`) failed to build a stage.
    #[error("stage {stage}: {builder} failed: {source}")]
    StageBuilder {
        /// The stage's name.
        stage: String,
        /// Who was building it.
        builder: String,
        /// The builder's error.
        source: StageBuilderError,
    },
    /// A step needs an entitlement the build was not started with.
    #[error(transparent)]
    Entitlement(#[from] EntitlementError),
    /// The plan's stages depend on each other in a cycle.
    #[error("the stages depend on each other in a cycle")]
    Cycle,
    /// The plan names no target stage.
    #[error("the plan has no target stage")]
    NoTarget,
    /// A stage is built on a stage that was not built.
    #[error("stage {0} was not built")]
    StageNotBuilt(usize),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The build was interrupted.
    #[error("build interrupted")]
    Cancelled,
}

impl BuildError {
    /// `error` as the failure of `step`: a cancellation stays one, a RUN's
    /// exit code becomes [`BuildError::RunFailed`].
    pub(super) fn at(step: &Step, error: StepError) -> BuildError {
        match error {
            StepError::Cancelled | StepError::Sandbox(SandboxError::Cancelled) => {
                BuildError::Cancelled
            }
            StepError::Exited(code) => BuildError::RunFailed {
                location: step.location.to_string(),
                text: step.text.clone(),
                code,
            },
            source => BuildError::Step {
                location: step.location.to_string(),
                text: step.text.clone(),
                source: Box::new(source),
            },
        }
    }
}

/// What went wrong inside one step.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The read-only view of the layers below could not be mounted.
    #[error(transparent)]
    View(#[from] ViewError),
    /// The step's overlay failed.
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    /// The RUN sandbox could not run the command.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// COPY/ADD failed.
    #[error(transparent)]
    Copy(#[from] CopyError),
    /// The COPY sources or bind mount could not be checksummed.
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
    /// An ADD git source could not be resolved.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The upper dir could not be written as a layer.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// A `--from` image could not be had.
    #[error(transparent)]
    Image(#[from] ResolveError),
    /// USER did not resolve in the image.
    #[error(transparent)]
    User(#[from] UserError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file operation on a path failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// WORKDIR could not be created.
    #[error("creating {dir}: {source}")]
    Workdir {
        /// The directory.
        dir: String,
        /// Why.
        source: io::Error,
    },
    /// A `--from` stage was not built.
    #[error("stage {0} was not built")]
    StageNotBuilt(usize),
    /// A required secret was not given.
    #[error("secret {id:?} is required but was not given (--secret id={id},src=PATH)")]
    MissingSecret {
        /// The secret's id.
        id: String,
    },
    /// `RUN --mount=type=ssh`.
    #[error("RUN --mount=type=ssh is not supported")]
    Ssh,
    /// The RUN command exited non-zero (becomes [`BuildError::RunFailed`]).
    #[error("exited with code {0}")]
    Exited(i32),
    /// The build was interrupted (becomes [`BuildError::Cancelled`]).
    #[error("interrupted")]
    Cancelled,
}

/// A closure that turns an I/O error on `path` into a [`StepError`].
pub(super) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StepError {
    let path = path.into();
    move |source| StepError::Io { path, source }
}
