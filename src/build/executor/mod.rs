//! The build executor: runs a [`Plan`]'s stages step by step on the store's
//! layers, reusing the step cache, and records the result as an image.
//!
//! Each step that touches the filesystem works on the stage's layers so far,
//! mounted read-only through d2v-fuse, under a kernel overlayfs whose upper dir
//! becomes the step's layer. Cache keys chain: a step's key covers its
//! parent's key, the expanded instruction, the state it runs in, and for
//! COPY/ADD the content of its sources.
//!
//! | module | job |
//! |---|---|
//! | `schedule` | which stages can build now; parallel lanes; the first failure stops the rest |
//! | `stage` | one stage: its base, then each step a cache hit or a run; a step's upper dir stored as its layer |
//! | `cache_key` | a step's cache key and chain key: a pure function of the parent's key, the step and its inputs |
//! | `inputs` | what the key covers beyond the step: context checksums, `--from` keys and digests, git commits |
//! | `run` | RUN: the sandbox's spec and `--mount`s from the step |
//! | `copy` | COPY/ADD: source root, overlay (or an empty base for `--link`), then `build::copy` |
//! | `workdir` | WORKDIR: the directory created as USER |
//! | `commit` | the target stage recorded as an image (history lined up, unchanged images kept) |
//! | `error` | [`BuildError`], and [`StepError`] with its cause |

mod cache_key;
mod commit;
mod copy;
mod error;
mod inputs;
mod run;
mod schedule;
mod stage;
mod workdir;

pub use error::{BuildError, StepError};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::progress::Progress;
use crate::dockerfile::{Plan, Stage};
use crate::source::Resolver;
use crate::store::{CacheKey, ExternalImage, Image, Store};
use stage::Executor;

/// What a [`StageBuilder`] fails with: its own error, boxed.
pub type StageBuilderError = Box<dyn std::error::Error + Send + Sync>;

/// Builds stages somewhere else: `d2v build --stage-builder docker` hands the
/// stages that other stages depend on (except the target) to a Docker-API
/// daemon. The stage's result is the built image's layers; its cache key is
/// derived from the image's ID, so steps that use it (`COPY --from`) hit the
/// step cache when the builder produces the same image again. The builder is
/// asked on every build (it has its own cache).
pub trait StageBuilder: Send + Sync + std::fmt::Debug {
    /// Who builds, for progress lines (`the Docker daemon at unix:///…`).
    fn describe(&self) -> String;

    /// Builds the named `stage` and returns its image, layers in `store`;
    /// `output` receives the build's progress text. Once `cancel` is set the
    /// builder gives up soon (any error will do: the executor reports the
    /// cancellation).
    fn build_stage(
        &self,
        store: &Store,
        stage: &Stage,
        output: &mut dyn FnMut(&[u8]),
        cancel: &AtomicBool,
    ) -> Result<ExternalImage, StageBuilderError>;
}

/// What to build and how.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile's path relative to the context, when inside it (kept in
    /// the context even if `.dockerignore` excludes it).
    pub dockerfile_in_context: Option<String>,
    /// The name to give the result.
    pub tag: String,
    /// Ignore the step cache (results are still recorded in it).
    pub no_cache: bool,
    /// `--secret id=ID,src=PATH`.
    pub secrets: HashMap<String, PathBuf>,
    /// Builds the stages other stages depend on elsewhere (`--stage-builder
    /// docker`); `None` builds every stage here.
    pub stage_builder: Option<Arc<dyn StageBuilder>>,
    /// What RUN steps may do beyond the default confinement (`--allow`).
    pub allow: super::entitlements::Entitlements,
}

/// What a build did.
#[derive(Clone, Debug)]
pub struct BuildReport {
    /// The image recorded under the tag.
    pub image: Image,
    /// Steps executed.
    pub executed: usize,
    /// Steps reused from the cache.
    pub cached: usize,
    /// Whether the image already under the tag was kept because nothing changed.
    pub unchanged: bool,
    /// The cache keys of the steps that make up the target image, bottom first
    /// (what `--cache-to mode=min` shares).
    pub target_steps: Vec<CacheKey>,
    /// The cache keys of every step of every stage built (`mode=max`).
    pub all_steps: Vec<CacheKey>,
}

/// Runs `plan` and records the target stage's image under `opts.tag`.
///
/// Stages whose dependencies are built run in parallel, as many at once as the
/// machine has cores. The first failure stops the others at their next step
/// (or kills their running RUN) and is the error returned.
pub fn build(
    images: &Resolver<'_>,
    plan: &Plan,
    opts: &BuildOptions,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<BuildReport, BuildError> {
    let store = images.store();
    opts.allow.check(plan)?;
    let ex = Executor {
        delegated: schedule::delegated_stages(plan, opts, progress),
        store,
        images,
        opts,
        progress,
        cancel,
        stages: Mutex::new(HashMap::new()),
        executed: AtomicUsize::new(0),
        cached: AtomicUsize::new(0),
        context_sums: Mutex::new(HashMap::new()),
    };
    let lanes = std::thread::available_parallelism().map_or(1, |n| n.get());
    ex.build_stages(plan, lanes)?;
    let result = ex.stage_result(plan.target).ok_or(BuildError::NoTarget)?;
    let (image, unchanged) = commit::commit(store, &opts.tag, &plan.config, &result)?;
    // Every stage's steps, stages in plan order, each key once.
    let mut all_steps: Vec<CacheKey> = Vec::new();
    let mut built: Vec<_> = ex.lock_stages().clone().into_iter().collect();
    built.sort_by_key(|(index, _)| *index);
    for (_, stage) in built {
        for key in stage.steps {
            if !all_steps.contains(&key) {
                all_steps.push(key);
            }
        }
    }
    Ok(BuildReport {
        image,
        executed: ex.executed.load(Ordering::SeqCst),
        cached: ex.cached.load(Ordering::SeqCst),
        unchanged,
        target_steps: result.steps,
        all_steps,
    })
}
