//! The build executor: runs a [`Plan`]'s stages step by step on the store's
//! layers, reusing the step cache, and records the result as an image.
//!
//! Each step that touches the filesystem works on the stage's layers so far,
//! mounted read-only through d2v-fuse, under a kernel overlayfs whose upper dir
//! becomes the step's layer (RUN in the sandbox; COPY/ADD and WORKDIR from here).
//! Cache keys chain: a step's key covers its parent's key, the expanded
//! instruction, the state it runs in, and for COPY/ADD the content of its sources.

use super::progress::{Progress, StepRun, StepStatus};
use crate::dockerfile::{
    Base, CopyFrom, ImageConfig, MountKind, Network as PlanNetwork, Plan, RunMount as PlanMount,
    Stage, Step, StepKind,
};
use crate::source::Resolver;
use crate::store::oci::Digest;
use crate::store::{CacheEntry, CacheKey, Image, Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

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
    #[error("{location}: `{text}`: {message}")]
    Step {
        /// file:line:col of the step.
        location: String,
        /// The instruction.
        text: String,
        /// What went wrong.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The build was interrupted.
    #[error("build interrupted")]
    Cancelled,
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// An image built outside this executor, its layers already in the store.
pub use crate::store::ExternalImage;

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
    /// `output` receives the build's progress text. The error is the
    /// builder's message. Once `cancel` is set the builder gives up soon
    /// (any error will do: the executor reports the cancellation).
    fn build_stage(
        &self,
        store: &Store,
        stage: &Stage,
        output: &mut dyn FnMut(&[u8]),
        cancel: &AtomicBool,
    ) -> Result<ExternalImage, String>;
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

/// A stage's filesystem and identity as the build goes.
#[derive(Clone, Debug)]
struct StageResult {
    layers: Vec<(Digest, u64)>,
    key: CacheKey,
    /// For each step of this stage and the stages it is built on (not base
    /// images): `None` for config-only steps, else whether it added a layer.
    /// The config's last history entries line up with these.
    added: Vec<Option<bool>>,
    /// The cache keys of the filesystem steps in this chain, bottom first.
    steps: Vec<CacheKey>,
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
    opts.allow
        .check(plan)
        .map_err(|e| BuildError::Other(e.to_string()))?;
    let delegated = delegated_stages(plan, opts, progress);
    let ex = Executor {
        delegated,
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
    let mut remaining: Vec<&Stage> = plan.stages.iter().collect();
    while !remaining.is_empty() {
        let done: Vec<usize> = ex.lock_stages().keys().copied().collect();
        let (ready, blocked): (Vec<&Stage>, Vec<&Stage>) = remaining
            .into_iter()
            .partition(|s| stage_deps(s).iter().all(|d| done.contains(d)));
        if ready.is_empty() {
            return Err(BuildError::Other(
                "the stages depend on each other in a cycle".into(),
            ));
        }
        let (now, later) = ready.split_at(ready.len().min(lanes));
        remaining = later.iter().copied().chain(blocked).collect();
        let results: Vec<(usize, Result<StageResult, BuildError>)> = if now.len() == 1 {
            vec![(now[0].index, ex.stage(plan, now[0]))]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = now
                    .iter()
                    .map(|stage| {
                        let ex = &ex;
                        scope.spawn(move || {
                            let r = ex.stage(plan, stage);
                            if r.is_err() {
                                // Stop the sibling stages too.
                                ex.cancel.store(true, Ordering::SeqCst);
                            }
                            (stage.index, r)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a stage thread panicked"))
                    .collect()
            })
        };
        let mut first_err = None;
        for (index, r) in results {
            match r {
                Ok(result) => {
                    ex.lock_stages().insert(index, result);
                }
                // A real failure beats the cancellation it caused in a sibling.
                Err(e) => match (&first_err, &e) {
                    (None, _) | (Some(BuildError::Cancelled), _) => first_err = Some(e),
                    _ => {}
                },
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
    }
    let target = plan
        .stages
        .iter()
        .find(|s| s.index == plan.target)
        .ok_or_else(|| BuildError::Other("the plan has no target stage".into()))?;
    let result = ex.lock_stages()[&target.index].clone();
    let (image, unchanged) = commit(store, &opts.tag, target, &plan.config, &result)?;
    let mut all_steps: Vec<CacheKey> = Vec::new();
    let stages = ex.lock_stages();
    let mut built: Vec<_> = stages.iter().collect();
    built.sort_by_key(|(index, _)| **index);
    for (_, stage) in built {
        for key in &stage.steps {
            if !all_steps.contains(key) {
                all_steps.push(key.clone());
            }
        }
    }
    drop(stages);
    Ok(BuildReport {
        image,
        executed: ex.executed.load(Ordering::SeqCst),
        cached: ex.cached.load(Ordering::SeqCst),
        unchanged,
        target_steps: result.steps,
        all_steps,
    })
}

/// The stages `opts.stage_builder` builds: those other stages depend on, not
/// the target, and named (a daemon's build `target` is a stage name).
fn delegated_stages(plan: &Plan, opts: &BuildOptions, progress: &Progress) -> HashSet<usize> {
    if opts.stage_builder.is_none() {
        return HashSet::new();
    }
    let needed: HashSet<usize> = plan
        .stages
        .iter()
        .flat_map(stage_deps)
        .filter(|i| *i != plan.target)
        .collect();
    let mut out = HashSet::new();
    for stage in plan.stages.iter().filter(|s| needed.contains(&s.index)) {
        if stage.name.is_some() {
            out.insert(stage.index);
        } else {
            progress.note(&format!(
                "warning: stage {} has no name (FROM … AS NAME): built natively, not by the stage builder",
                stage.index
            ));
        }
    }
    out
}

/// The stages a stage needs built first.
fn stage_deps(stage: &Stage) -> Vec<usize> {
    let mut deps = Vec::new();
    if let Base::Stage(i) = stage.base {
        deps.push(i);
    }
    for step in &stage.steps {
        match &step.kind {
            StepKind::Copy(c) => {
                if let Some(CopyFrom::Stage(i)) = c.from {
                    deps.push(i);
                }
            }
            StepKind::Run(r) => deps.extend(r.mounts.iter().filter_map(|m| match m.from {
                Some(CopyFrom::Stage(i)) => Some(i),
                _ => None,
            })),
            _ => {}
        }
    }
    deps
}

struct Executor<'a> {
    /// Stages the stage builder builds.
    delegated: HashSet<usize>,
    store: &'a Store,
    images: &'a Resolver<'a>,
    opts: &'a BuildOptions,
    progress: &'a Progress,
    cancel: &'a AtomicBool,
    stages: Mutex<HashMap<usize, StageResult>>,
    executed: AtomicUsize,
    cached: AtomicUsize,
    context_sums: Mutex<HashMap<String, String>>,
}

fn stage_label(stage: &Stage, n: usize, total: usize) -> String {
    match &stage.name {
        Some(name) => format!("[{name} {n}/{total}]"),
        None => format!("[stage-{} {n}/{total}]", stage.index),
    }
}

fn step_err(step: &Step, message: impl std::fmt::Display) -> BuildError {
    BuildError::Step {
        location: step.location.to_string(),
        text: step.text.clone(),
        message: message.to_string(),
    }
}

impl Executor<'_> {
    fn lock_stages(&self) -> MutexGuard<'_, HashMap<usize, StageResult>> {
        self.stages.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stage_result(&self, index: usize) -> Option<StageResult> {
        self.lock_stages().get(&index).cloned()
    }

    fn check_cancel(&self) -> Result<(), BuildError> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(BuildError::Cancelled);
        }
        Ok(())
    }

    fn stage(&self, plan: &Plan, stage: &Stage) -> Result<StageResult, BuildError> {
        if self.delegated.contains(&stage.index) {
            return self.external_stage(plan, stage);
        }
        // Like BuildKit, count FROM and the steps that touch the filesystem.
        let total = 1 + stage
            .steps
            .iter()
            .filter(|s| !matches!(s.kind, StepKind::Config))
            .count();
        let label = stage_label(stage, 1, total);
        let from = match &stage.base {
            Base::Scratch => "FROM scratch".to_string(),
            Base::Image(name) => format!("FROM {name}"),
            Base::Stage(i) => format!("FROM stage {}", stage_name(plan, *i)),
        };
        let from_run = self.progress.step_start(&label, &from);
        let mut state = match &stage.base {
            Base::Scratch => StageResult {
                layers: Vec::new(),
                key: CacheKey::derive([b"scratch".as_slice()]),
                added: Vec::new(),
                steps: Vec::new(),
            },
            Base::Image(name) => {
                let image = self.images.image(name).map_err(|e| {
                    BuildError::Other(format!(
                        "stage {}: base image {name:?}: {e}",
                        stage.name.as_deref().unwrap_or(&stage.index.to_string())
                    ))
                })?;
                StageResult {
                    layers: image
                        .manifest
                        .layers
                        .iter()
                        .map(|l| (l.digest.clone(), l.size))
                        .collect(),
                    key: CacheKey::derive([
                        b"image".as_slice(),
                        image.manifest_digest.as_str().as_bytes(),
                    ]),
                    added: Vec::new(),
                    steps: Vec::new(),
                }
            }
            Base::Stage(i) => self
                .stage_result(*i)
                .ok_or_else(|| BuildError::Other(format!("stage {i} was not built")))?,
        };
        self.progress.step_end(from_run, StepStatus::Done);
        let mut n = 1;
        for step in &stage.steps {
            self.check_cancel()?;
            if !matches!(step.kind, StepKind::Config) {
                n += 1;
            }
            let label = stage_label(stage, n, total);
            state = self.step(plan, &label, step, state)?;
        }
        Ok(state)
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
            Err(message) => {
                self.progress.step_end(run, StepStatus::Failed);
                self.check_cancel()?;
                return Err(BuildError::Other(format!(
                    "stage {name}: {} failed: {message}",
                    builder.describe()
                )));
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

    fn step(
        &self,
        plan: &Plan,
        label: &str,
        step: &Step,
        parent: StageResult,
    ) -> Result<StageResult, BuildError> {
        let kind_json = serde_json::to_vec(&step.kind).expect("steps serialize");
        let key = match &step.kind {
            StepKind::Config => {
                // No filesystem change: only the chain identity moves on.
                let state = serde_json::to_vec(&step.state).expect("serializes");
                let mut added = parent.added;
                added.push(None);
                return Ok(StageResult {
                    layers: parent.layers,
                    key: CacheKey::derive([parent.key.0.as_bytes(), &kind_json, &state]),
                    added,
                    steps: parent.steps,
                });
            }
            StepKind::Run(run) => {
                let state = serde_json::to_vec(&step.state).expect("serializes");
                let mut parts = vec![parent.key.0.clone().into_bytes(), kind_json, state];
                for m in &run.mounts {
                    if m.kind == MountKind::Bind {
                        parts.push(self.bind_source_sum(step, m)?.into_bytes());
                    }
                }
                CacheKey::derive(parts.iter().map(|p| p.as_slice()))
            }
            StepKind::Workdir(_) => CacheKey::derive([
                parent.key.0.as_bytes(),
                &kind_json,
                step.state.user.as_bytes(),
            ]),
            StepKind::Copy(copy) => {
                let sources = match &copy.from {
                    None => self.context_sum(step, &copy.sources)?,
                    Some(CopyFrom::Stage(i)) => self
                        .stage_result(*i)
                        .map(|s| s.key.0)
                        .ok_or_else(|| step_err(step, format!("stage {i} was not built")))?,
                    Some(CopyFrom::Image(name)) => self
                        .images
                        .image(name)
                        .map_err(|e| step_err(step, e))?
                        .manifest_digest
                        .to_string(),
                };
                // A linked COPY's key leaves out the parent unless a --chown
                // name has to be looked up in the layers below.
                let named_owner = copy
                    .chown
                    .as_deref()
                    .is_some_and(|c| c.split(':').any(|p| p.parse::<u32>().is_err()));
                let parent_part = if copy.link && !named_owner {
                    "link".as_bytes()
                } else {
                    parent.key.0.as_bytes()
                };
                CacheKey::derive([
                    parent_part,
                    &kind_json,
                    step.state.workdir.as_bytes(),
                    sources.as_bytes(),
                    self.git_commits(step, copy)?.as_bytes(),
                ])
            }
        };
        // The chain goes on from the parent even after a linked COPY: what
        // follows runs on the parent's layers plus this one.
        let chain = match &step.kind {
            StepKind::Copy(c) if c.link => {
                CacheKey::derive([parent.key.0.as_bytes(), key.0.as_bytes()])
            }
            _ => key.clone(),
        };

        let mut run = self.progress.step_start(label, &step.text);
        if !self.opts.no_cache {
            if let Some(hit) = self.store.cache_get(&key)? {
                self.progress.step_end(run, StepStatus::Cached);
                self.cached.fetch_add(1, Ordering::SeqCst);
                let mut added = parent.added;
                added.push(Some(hit.layer.is_some()));
                let mut layers = parent.layers;
                layers.extend(hit.layer);
                let mut steps = parent.steps;
                steps.push(key.clone());
                return Ok(StageResult {
                    layers,
                    key: chain,
                    added,
                    steps,
                });
            }
        }
        let layer = match self.execute(plan, step, &parent, &mut run) {
            Ok(layer) => layer,
            Err(e) => {
                self.progress.step_end(run, StepStatus::Failed);
                return Err(e);
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
        let mut added = parent.added;
        added.push(Some(layer.is_some()));
        let mut layers = parent.layers;
        layers.extend(layer);
        let mut steps = parent.steps;
        steps.push(key.clone());
        Ok(StageResult {
            layers,
            key: chain,
            added,
            steps,
        })
    }

    /// Runs one filesystem step over the parent's layers; returns its layer
    /// (or none when it changed nothing).
    fn execute(
        &self,
        plan: &Plan,
        step: &Step,
        parent: &StageResult,
        progress: &mut StepRun,
    ) -> Result<Option<(Digest, u64)>, BuildError> {
        let scratch = self.store.scratch_dir()?;
        // A RUN step's user namespace sees the layers' ids shifted into its range.
        let shift = match step.kind {
            StepKind::Run(_) => crate::userns::current().step_uids.base,
            _ => 0,
        };
        let lower = mount_layers(
            self.store,
            &parent.layers,
            &scratch.path().join("lower"),
            shift,
        )
        .map_err(|e| step_err(step, e))?;
        let work = scratch.path().join("step");
        std::fs::create_dir(&work).map_err(|e| step_err(step, e))?;
        let upper = match &step.kind {
            StepKind::Run(_) => {
                self.run(plan, step, lower.dir(), &work, scratch.path(), progress)?
            }
            StepKind::Workdir(dir) => {
                let ov = super::overlay::Overlay::create(&work, vec![lower.dir().to_path_buf()])
                    .map_err(|e| step_err(step, e))?;
                let user = step.state.user.clone();
                let dir = dir.clone();
                ov.with_mounted(move |merged| -> Result<(), String> {
                    let root = super::inroot::Root::open(merged).map_err(|e| e.to_string())?;
                    let (uid, gid) = if user.is_empty() {
                        (0, 0)
                    } else {
                        let db = super::user::UserDb::load(&root);
                        let u = db.exec_user(&user).map_err(|e| e.to_string())?;
                        (u.uid, u.gid)
                    };
                    root.mkdir_all(Path::new(&dir), 0o755, uid, gid)
                        .map_err(|e| format!("creating {dir}: {e}"))?;
                    Ok(())
                })
                .map_err(|e| step_err(step, e))?
                .map_err(|e| step_err(step, e))?;
                ov.upper.clone()
            }
            StepKind::Copy(_) => self.copy(plan, step, lower.dir(), &work, scratch.path())?,
            StepKind::Config => unreachable!("config steps have no filesystem"),
        };
        drop(lower);
        self.store_layer(step, &upper, shift)
    }

    fn store_layer(
        &self,
        step: &Step,
        upper: &Path,
        shift: u32,
    ) -> Result<Option<(Digest, u64)>, BuildError> {
        let empty = std::fs::read_dir(upper)
            .map_err(|e| step_err(step, e))?
            .next()
            .is_none();
        if empty {
            return Ok(None);
        }
        let mut blob = self.store.blob_writer()?;
        super::layer::write_layer_to(upper, &mut blob, shift).map_err(|e| step_err(step, e))?;
        let (digest, size) = blob.commit_sized(None)?;
        self.store.ensure_layer_index(&digest)?;
        Ok(Some((digest, size)))
    }

    fn run(
        &self,
        plan: &Plan,
        step: &Step,
        lower: &Path,
        work: &Path,
        scratch: &Path,
        run_progress: &mut StepRun,
    ) -> Result<PathBuf, BuildError> {
        use super::sandbox;
        let StepKind::Run(run) = &step.kind else {
            unreachable!()
        };
        let mut spec = sandbox::RunSpec::new(
            run.argv.clone(),
            vec![lower.to_path_buf()],
            work.to_path_buf(),
        );
        let mut env = step.state.env.clone();
        for (k, v) in &step.state.args {
            if !env.iter().any(|e| e.split('=').next() == Some(k.as_str())) {
                env.push(format!("{k}={v}"));
            }
        }
        spec.env = env;
        spec.user = step.state.user.clone();
        spec.workdir = if step.state.workdir.is_empty() {
            "/".into()
        } else {
            step.state.workdir.clone()
        };
        // Entitlements were checked before the build started.
        spec.network = match run.network {
            PlanNetwork::Default => sandbox::NetworkMode::Private,
            PlanNetwork::None => sandbox::NetworkMode::None,
            PlanNetwork::Host => sandbox::NetworkMode::Host,
        };
        spec.privileged = run.insecure;
        let mut stage_mounts = Vec::new();
        for m in &run.mounts {
            spec.mounts
                .push(self.run_mount(plan, step, m, scratch, &mut stage_mounts)?);
        }
        if let Some(script) = &run.script {
            let dir = scratch.join("pipes");
            std::fs::create_dir_all(&dir).map_err(|e| step_err(step, e))?;
            let file = dir.join(&script.name);
            std::fs::write(&file, &script.content).map_err(|e| step_err(step, e))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| step_err(step, e))?;
            spec.mounts.push(sandbox::SandboxMount::Bind {
                target: format!("/dev/pipes/{}", script.name),
                root: dir,
                source: PathBuf::from(&script.name),
                readwrite: false,
            });
        }
        let progress = self.progress;
        let outcome = sandbox::run(
            &spec,
            &mut |bytes| progress.output(run_progress, bytes),
            Some(self.cancel),
        )
        .map_err(|e| match e {
            sandbox::SandboxError::Cancelled => BuildError::Cancelled,
            e => step_err(step, e),
        })?;
        drop(stage_mounts);
        if outcome.exit_code != 0 {
            return Err(BuildError::RunFailed {
                location: step.location.to_string(),
                text: step.text.clone(),
                code: outcome.exit_code,
            });
        }
        Ok(outcome.upper)
    }

    fn run_mount(
        &self,
        plan: &Plan,
        step: &Step,
        m: &PlanMount,
        scratch: &Path,
        keep: &mut Vec<LayersMount>,
    ) -> Result<super::sandbox::SandboxMount, BuildError> {
        use super::sandbox::SandboxMount as RunMount;
        let _ = plan;
        let target = m.target.clone().unwrap_or_default();
        Ok(match m.kind {
            MountKind::Cache => {
                let id = m.id.clone().unwrap_or_else(|| target.clone());
                // Per id range: its files belong to the steps' ids.
                let base = crate::userns::current().step_uids.base;
                let dir = self
                    .store
                    .root()
                    .join("d2v/run-cache")
                    .join(base.to_string())
                    .join(hex::encode(sha2_256(id.as_bytes())));
                RunMount::Cache {
                    target,
                    host_dir: dir,
                    readonly: m.readonly.unwrap_or(false),
                    owner: (m.uid.unwrap_or(0), m.gid.unwrap_or(0)),
                    mode: m.mode.unwrap_or(0o755),
                }
            }
            MountKind::Tmpfs => RunMount::Tmpfs {
                target,
                size: m.size,
            },
            MountKind::Secret => {
                let id =
                    m.id.clone()
                        .or_else(|| {
                            m.target
                                .as_deref()
                                .and_then(|t| t.rsplit('/').next())
                                .map(str::to_string)
                        })
                        .unwrap_or_default();
                let Some(src) = self.opts.secrets.get(&id) else {
                    if m.required {
                        return Err(step_err(step, format!("secret {id:?} is required but was not given (--secret id={id},src=PATH)")));
                    }
                    return Ok(RunMount::Tmpfs {
                        target: format!("/run/secrets/{id}.absent"),
                        size: Some(4096),
                    });
                };
                RunMount::Secret {
                    target: m
                        .target
                        .clone()
                        .unwrap_or_else(|| format!("/run/secrets/{id}")),
                    source: src.clone(),
                    owner: (m.uid.unwrap_or(0), m.gid.unwrap_or(0)),
                    mode: m.mode.unwrap_or(0o400),
                }
            }
            MountKind::Bind => {
                let source = PathBuf::from(m.source.clone().unwrap_or_else(|| ".".into()));
                let root = match &m.from {
                    None => self.opts.context.clone(),
                    Some(from) => {
                        let layers = self.layers_of(step, from)?;
                        let mnt = mount_layers(
                            self.store,
                            &layers,
                            &scratch.join(format!("bind-from-{}", keep.len())),
                            crate::userns::current().step_uids.base,
                        )
                        .map_err(|e| step_err(step, e))?;
                        let dir = mnt.dir().to_path_buf();
                        keep.push(mnt);
                        dir
                    }
                };
                RunMount::Bind {
                    target,
                    root,
                    source,
                    readwrite: m.readonly == Some(false),
                }
            }
            MountKind::Ssh => return Err(step_err(step, "RUN --mount=type=ssh is not supported")),
        })
    }

    fn layers_of(&self, step: &Step, from: &CopyFrom) -> Result<Vec<(Digest, u64)>, BuildError> {
        match from {
            CopyFrom::Stage(i) => self
                .stage_result(*i)
                .map(|s| s.layers)
                .ok_or_else(|| step_err(step, format!("stage {i} was not built"))),
            CopyFrom::Image(name) => Ok(self
                .images
                .image(name)
                .map_err(|e| step_err(step, e))?
                .manifest
                .layers
                .iter()
                .map(|l| (l.digest.clone(), l.size))
                .collect()),
        }
    }

    fn copy(
        &self,
        plan: &Plan,
        step: &Step,
        lower: &Path,
        work: &Path,
        scratch: &Path,
    ) -> Result<PathBuf, BuildError> {
        let StepKind::Copy(copy) = &step.kind else {
            unreachable!()
        };
        let _ = plan;
        let (src_root, _src_mount) = match &copy.from {
            None => (self.opts.context.clone(), None),
            Some(from) => {
                let layers = self.layers_of(step, from)?;
                let mnt = mount_layers(self.store, &layers, &scratch.join("from"), 0)
                    .map_err(|e| step_err(step, e))?;
                (mnt.dir().to_path_buf(), Some(mnt))
            }
        };
        // COPY --link: the files land on an empty base, so the layer does not
        // depend on the layers below (--chown names still resolve in them).
        let base = if copy.link {
            let empty = scratch.join("link-base");
            std::fs::create_dir_all(&empty).map_err(|e| step_err(step, e))?;
            empty
        } else {
            lower.to_path_buf()
        };
        let ov =
            super::overlay::Overlay::create(work, vec![base]).map_err(|e| step_err(step, e))?;
        let request = super::copy::CopyRequest {
            step: copy.clone(),
            src_root,
            from_context: copy.from.is_none(),
            dockerfile_in_context: self.opts.dockerfile_in_context.clone(),
            workdir: step.state.workdir.clone(),
            users_root: copy.link.then(|| lower.to_path_buf()),
        };
        ov.with_mounted(|merged| super::copy::copy(&request, merged))
            .map_err(|e| step_err(step, e))?
            .map_err(|e| step_err(step, e))?;
        Ok(ov.upper.clone())
    }

    /// Checksum of COPY sources in the context (content, modes, owners; not mtimes).
    fn context_sum(&self, step: &Step, sources: &[String]) -> Result<String, BuildError> {
        let cache_key = sources.join("\0");
        if let Some(sum) = self
            .context_sums
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cache_key)
        {
            return Ok(sum.clone());
        }
        let sum = super::checksum::sources_checksum(
            &self.opts.context,
            sources,
            self.opts.dockerfile_in_context.as_deref(),
        )
        .map_err(|e| step_err(step, e))?;
        self.context_sums
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cache_key, sum.clone());
        Ok(sum)
    }

    /// The commits an ADD's git sources name now (`git ls-remote`), so a
    /// branch that moved is fetched again.
    fn git_commits(
        &self,
        step: &Step,
        copy: &crate::dockerfile::CopyStep,
    ) -> Result<String, BuildError> {
        let mut out = String::new();
        for r in copy.sources.iter().filter_map(|s| super::git::parse(s)) {
            if !copy.is_add {
                continue;
            }
            let scratch = self.store.scratch_dir()?;
            let commit = super::git::resolve(&r, scratch.path()).map_err(|e| step_err(step, e))?;
            out.push_str(&commit);
            out.push('\n');
        }
        Ok(out)
    }

    fn bind_source_sum(&self, step: &Step, m: &PlanMount) -> Result<String, BuildError> {
        match &m.from {
            None => self.context_sum(step, &[m.source.clone().unwrap_or_else(|| ".".into())]),
            Some(CopyFrom::Stage(i)) => {
                Ok(self.stage_result(*i).map(|s| s.key.0).unwrap_or_default())
            }
            Some(CopyFrom::Image(name)) => Ok(name.clone()),
        }
    }
}

fn sha2_256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
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

/// For an externally built image, whether each of its last `steps` history
/// entries added a layer (the [`StageResult::added`] of those steps).
fn history_added(config: &[u8], steps: usize) -> Vec<Option<bool>> {
    let history: Vec<bool> = ImageConfig::from_json(config)
        .map(|c| {
            c.history
                .iter()
                .map(|h| h.empty_layer != Some(true))
                .collect()
        })
        .unwrap_or_default();
    let tail = &history[history.len().saturating_sub(steps)..];
    let mut added = vec![None; steps - tail.len()];
    added.extend(tail.iter().map(|a| Some(*a)));
    added
}

fn stage_name(plan: &Plan, index: usize) -> String {
    plan.stages
        .iter()
        .find(|s| s.index == index)
        .and_then(|s| s.name.clone())
        .unwrap_or_else(|| index.to_string())
}

pub use super::view::{mount_layers, LayersMount};

/// Records the target stage as image `tag`, unless an identical image (but for
/// its creation time) is already there.
fn commit(
    store: &Store,
    tag: &str,
    stage: &Stage,
    config: &ImageConfig,
    result: &StageResult,
) -> Result<(Image, bool), BuildError> {
    let mut config = config.clone();
    config.rootfs.diff_ids = result.layers.iter().map(|(d, _)| d.to_string()).collect();
    let _ = stage;
    // Steps that changed nothing are empty layers in the history, as in BuildKit.
    if config.history.len() >= result.added.len() {
        let skip = config.history.len() - result.added.len();
        for (h, added) in config.history[skip..].iter_mut().zip(&result.added) {
            match added {
                Some(true) => h.empty_layer = None,
                Some(false) | None => h.empty_layer = Some(true),
            }
        }
    }
    let comparable = |c: &ImageConfig| {
        let mut c = c.clone();
        c.created = None;
        for h in &mut c.history {
            h.created = None;
        }
        serde_json::to_value(&c).ok()
    };
    if let Ok(existing) = store.image(tag) {
        if let Ok(old) = ImageConfig::from_json(&existing.config) {
            if comparable(&old) == comparable(&config)
                && existing.layers()
                    == result
                        .layers
                        .iter()
                        .map(|(d, _)| d.clone())
                        .collect::<Vec<_>>()
            {
                return Ok((existing, true));
            }
        }
    }
    let now = crate::timefmt::created_now();
    config.created = Some(now.clone());
    for h in &mut config.history {
        if h.created.is_none() {
            h.created = Some(now.clone());
        }
    }
    let bytes = serde_json::to_vec(&config).map_err(|e| BuildError::Other(e.to_string()))?;
    Ok((store.commit_image(tag, &bytes, &result.layers)?, false))
}

#[cfg(test)]
mod tests {
    use super::history_added;

    #[test]
    fn external_history_lines_up_with_the_last_steps() {
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"history":[
            {"created_by":"base"},
            {"created_by":"ENV A=1","empty_layer":true},
            {"created_by":"RUN x"}]}"#;
        assert_eq!(history_added(config, 2), vec![Some(false), Some(true)]);
        // Fewer history entries than steps: the missing ones count as config-only.
        assert_eq!(
            history_added(config, 4),
            vec![None, Some(true), Some(false), Some(true)]
        );
        assert_eq!(history_added(b"not json", 1), vec![None]);
    }
}
