//! Building one stage: its base, then each step in turn, each one a cache
//! hit or a run over the layers so far.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::cache_key::step_keys;
use super::commit::history_added;
use super::error::{io_at, BuildError, StepError};
use super::BuildOptions;
use crate::build::layer;
use crate::build::progress::{Progress, StepRun, StepStatus};
use crate::build::view::{mount_layers, LayersMount};
use crate::dockerfile::{Base, CopyFrom, Plan, Stage, Step, StepKind};
use crate::source::Resolver;
use crate::store::{CacheEntry, CacheKey, Layer, Store};

/// A stage's filesystem and identity as the build goes.
#[derive(Clone, Debug)]
pub(super) struct StageResult {
    /// Its layers, bottom first.
    pub layers: Vec<Layer>,
    /// The chain key the next step keys on.
    pub key: CacheKey,
    /// For each step of this stage and the stages it is built on (not base
    /// images): `None` for config-only steps, else whether it added a layer.
    /// The config's last history entries line up with these.
    pub added: Vec<Option<bool>>,
    /// The cache keys of the filesystem steps in this chain, bottom first.
    pub steps: Vec<CacheKey>,
}

impl StageResult {
    fn base(layers: Vec<Layer>, key: CacheKey) -> StageResult {
        StageResult {
            layers,
            key,
            added: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// This result after a filesystem step keyed `key` that added `layer`.
    fn after(mut self, key: CacheKey, chain: CacheKey, layer: Option<Layer>) -> StageResult {
        self.added.push(Some(layer.is_some()));
        self.layers.extend(layer);
        self.steps.push(key);
        self.key = chain;
        self
    }
}

/// The state one build shares between the stages it builds at once.
pub(super) struct Executor<'a> {
    /// Stages the stage builder builds.
    pub delegated: HashSet<usize>,
    pub store: &'a Store,
    pub images: &'a Resolver<'a>,
    pub opts: &'a BuildOptions,
    pub progress: &'a Progress,
    pub cancel: &'a AtomicBool,
    pub stages: Mutex<HashMap<usize, StageResult>>,
    pub executed: AtomicUsize,
    pub cached: AtomicUsize,
    /// Checksums of context sources, by source list.
    pub context_sums: Mutex<HashMap<String, String>>,
}

/// `[name 2/5]`, the label of a stage's step in progress lines.
fn stage_label(stage: &Stage, n: usize, total: usize) -> String {
    match &stage.name {
        Some(name) => format!("[{name} {n}/{total}]"),
        None => format!("[stage-{} {n}/{total}]", stage.index),
    }
}

/// A stage's name, or its index when it has none.
pub(super) fn stage_name(plan: &Plan, index: usize) -> String {
    plan.stages
        .iter()
        .find(|s| s.index == index)
        .and_then(|s| s.name.clone())
        .unwrap_or_else(|| index.to_string())
}

/// How many steps `stage` and the stages it is built on (`FROM stage`) have:
/// the history entries they add on top of their base image.
fn chain_steps(plan: &Plan, stage: &Stage) -> usize {
    let parent = match stage.base {
        Base::Stage(i) => plan.stages.iter().find(|s| s.index == i),
        _ => None,
    };
    stage.steps.len() + parent.map_or(0, |p| chain_steps(plan, p))
}

impl Executor<'_> {
    pub(super) fn lock_stages(&self) -> MutexGuard<'_, HashMap<usize, StageResult>> {
        self.stages.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn lock_context_sums(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.context_sums.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn stage_result(&self, index: usize) -> Option<StageResult> {
        self.lock_stages().get(&index).cloned()
    }

    /// The chain key of a built stage.
    pub(super) fn stage_key(&self, index: usize) -> Result<CacheKey, StepError> {
        self.stage_result(index)
            .map(|s| s.key)
            .ok_or(StepError::StageNotBuilt(index))
    }

    fn check_cancel(&self) -> Result<(), BuildError> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(BuildError::Cancelled);
        }
        Ok(())
    }

    /// Builds `stage`: here, step by step, or by the stage builder.
    pub(super) fn stage(&self, plan: &Plan, stage: &Stage) -> Result<StageResult, BuildError> {
        if self.delegated.contains(&stage.index) {
            return self.external_stage(plan, stage);
        }
        // Like BuildKit, count FROM and the steps that touch the filesystem.
        let total = 1 + stage
            .steps
            .iter()
            .filter(|s| !matches!(s.kind, StepKind::Config))
            .count();
        let from = match &stage.base {
            Base::Scratch => "FROM scratch".to_string(),
            Base::Image(name) => format!("FROM {name}"),
            Base::Stage(i) => format!("FROM stage {}", stage_name(plan, *i)),
        };
        let from_run = self
            .progress
            .step_start(&stage_label(stage, 1, total), &from);
        let mut state = self.base(stage)?;
        self.progress.step_end(from_run, StepStatus::Done);
        let mut n = 1;
        for step in &stage.steps {
            self.check_cancel()?;
            if !matches!(step.kind, StepKind::Config) {
                n += 1;
            }
            state = self.step(&stage_label(stage, n, total), step, state)?;
        }
        Ok(state)
    }

    /// What a stage starts from.
    fn base(&self, stage: &Stage) -> Result<StageResult, BuildError> {
        Ok(match &stage.base {
            Base::Scratch => {
                StageResult::base(Vec::new(), CacheKey::derive([b"scratch".as_slice()]))
            }
            Base::Image(name) => {
                let image = self
                    .images
                    .image(name)
                    .map_err(|source| BuildError::BaseImage {
                        stage: stage
                            .name
                            .clone()
                            .unwrap_or_else(|| stage.index.to_string()),
                        image: name.clone(),
                        source: Box::new(source),
                    })?;
                let key = CacheKey::derive([
                    b"image".as_slice(),
                    image.manifest_digest.as_str().as_bytes(),
                ]);
                StageResult::base(image.layer_blobs(), key)
            }
            Base::Stage(i) => self.stage_result(*i).ok_or(BuildError::StageNotBuilt(*i))?,
        })
    }

    /// Has the stage builder build `stage` and takes its image's layers.
    fn external_stage(&self, plan: &Plan, stage: &Stage) -> Result<StageResult, BuildError> {
        let builder = self
            .opts
            .stage_builder
            .as_ref()
            .expect("stages are delegated only with a stage builder");
        let name = stage_name(plan, stage.index);
        let mut run = self.progress.step_start(
            &format!("[{name}]"),
            &format!("build stage {name} with {}", builder.describe()),
        );
        let progress = self.progress;
        let built = builder.build_stage(
            self.store,
            stage,
            &mut |bytes| progress.output(&mut run, bytes),
            self.cancel,
        );
        let image = match built {
            Ok(image) => image,
            Err(source) => {
                self.progress.step_end(run, StepStatus::Failed);
                self.check_cancel()?;
                return Err(BuildError::StageBuilder {
                    stage: name,
                    builder: builder.describe(),
                    source,
                });
            }
        };
        self.check_cancel()?;
        self.progress.step_end(run, StepStatus::Done);
        self.executed.fetch_add(1, Ordering::SeqCst);
        Ok(StageResult {
            key: CacheKey::derive([b"external-stage".as_slice(), image.id.as_bytes()]),
            added: history_added(&image.config, chain_steps(plan, stage)),
            layers: image.layers,
            // The daemon's layers are no step-cache entries of d2v's.
            steps: Vec::new(),
        })
    }

    /// One step on `parent`: its keys, then a cache hit or a run.
    fn step(
        &self,
        label: &str,
        step: &Step,
        parent: StageResult,
    ) -> Result<StageResult, BuildError> {
        let inputs = self.key_inputs(step).map_err(|e| BuildError::at(step, e))?;
        let keys = step_keys(&parent.key, step, &inputs);
        let Some(key) = keys.cache else {
            // No filesystem change: only the chain moves on.
            let mut state = parent;
            state.added.push(None);
            state.key = keys.chain;
            return Ok(state);
        };
        let mut run = self.progress.step_start(label, &step.text);
        if !self.opts.no_cache {
            if let Some(hit) = self.store.cache_get(&key)? {
                self.progress.step_end(run, StepStatus::Cached);
                self.cached.fetch_add(1, Ordering::SeqCst);
                return Ok(parent.after(key, keys.chain, hit.layer));
            }
        }
        let layer = match self.execute(step, &parent.layers, &mut run) {
            Ok(layer) => layer,
            Err(e) => {
                self.progress.step_end(run, StepStatus::Failed);
                return Err(BuildError::at(step, e));
            }
        };
        self.store.cache_put(&CacheEntry {
            key: key.clone(),
            layer: layer.clone(),
            description: step.text.clone(),
            created: crate::timefmt::created_now(),
            extra: serde_json::Value::Null,
        })?;
        self.progress.step_end(run, StepStatus::Done);
        self.executed.fetch_add(1, Ordering::SeqCst);
        Ok(parent.after(key, keys.chain, layer))
    }

    /// Runs one filesystem step over `below`; returns its layer (or none when
    /// it changed nothing).
    fn execute(
        &self,
        step: &Step,
        below: &[Layer],
        progress: &mut StepRun,
    ) -> Result<Option<Layer>, StepError> {
        let scratch = self.store.scratch_dir()?;
        // A RUN step's user namespace sees the layers' ids shifted into its range.
        let shift = match step.kind {
            StepKind::Run(_) => crate::userns::current().step_uids.base,
            _ => 0,
        };
        let lower = mount_layers(self.store, below, &scratch.path().join("lower"), shift)?;
        let work = scratch.path().join("step");
        std::fs::create_dir(&work).map_err(io_at(&work))?;
        let upper = match &step.kind {
            StepKind::Run(run) => {
                self.run(step, run, lower.dir(), &work, scratch.path(), progress)?
            }
            StepKind::Workdir(dir) => super::workdir::workdir(step, dir, lower.dir(), &work)?,
            StepKind::Copy(copy) => self.copy(step, copy, lower.dir(), &work, scratch.path())?,
            StepKind::Config => unreachable!("config steps have no filesystem"),
        };
        drop(lower);
        self.store_layer(&upper, shift)
    }

    /// Writes an upper dir into the store as a layer; `None` when it is empty.
    fn store_layer(&self, upper: &std::path::Path, shift: u32) -> Result<Option<Layer>, StepError> {
        let empty = std::fs::read_dir(upper)
            .map_err(io_at(upper))?
            .next()
            .is_none();
        if empty {
            return Ok(None);
        }
        let mut blob = self.store.blob_writer()?;
        layer::write_layer_to(upper, &mut blob, shift)?;
        let layer = Layer::from(blob.commit_sized(None)?);
        self.store.ensure_layer_index(&layer.digest)?;
        Ok(Some(layer))
    }

    /// The layers of a `--from` stage or image.
    pub(super) fn layers_of(&self, from: &CopyFrom) -> Result<Vec<Layer>, StepError> {
        match from {
            CopyFrom::Stage(i) => self
                .stage_result(*i)
                .map(|s| s.layers)
                .ok_or(StepError::StageNotBuilt(*i)),
            CopyFrom::Image(name) => Ok(self.images.image(name)?.layer_blobs()),
        }
    }

    /// Mounts the layers of a `--from` stage or image read-only at `dir`,
    /// ids shifted by `shift`.
    pub(super) fn mount_from(
        &self,
        from: &CopyFrom,
        dir: &std::path::Path,
        shift: u32,
    ) -> Result<LayersMount, StepError> {
        let layers = self.layers_of(from)?;
        Ok(mount_layers(self.store, &layers, dir, shift)?)
    }
}
