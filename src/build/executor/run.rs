//! RUN: the sandbox's spec assembled from the step (env and build args,
//! USER, WORKDIR, network, `--mount`s, a here-document script), then run in
//! the sandbox (`crate::build::sandbox`), whose overlay upper dir is the
//! step's diff.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::{io_at, StepError};
use super::stage::Executor;
use crate::build::progress::StepRun;
use crate::build::sandbox::{self, NetworkMode, RunSpec, SandboxMount};
use crate::build::view::LayersMount;
use crate::dockerfile::{MountKind, Network, RunMount, RunStep, Step};

/// The sandbox spec of `run` (the RUN `step`) over the read-only `lower`,
/// with `work` as its scratch dir; mounts not included.
pub fn run_spec(step: &Step, run: &RunStep, lower: &Path, work: &Path) -> RunSpec {
    let mut spec = RunSpec::new(
        run.argv.clone(),
        vec![lower.to_path_buf()],
        work.to_path_buf(),
    );
    // Build args reach the process unless the env sets the same name.
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
        Network::Default => NetworkMode::Private,
        Network::None => NetworkMode::None,
        Network::Host => NetworkMode::Host,
    };
    spec.privileged = run.insecure;
    spec
}

impl Executor<'_> {
    /// Runs the RUN `step` over `lower`; returns the overlay's upper dir.
    pub(super) fn run(
        &self,
        step: &Step,
        run: &RunStep,
        lower: &Path,
        work: &Path,
        scratch: &Path,
        run_progress: &mut StepRun,
    ) -> Result<PathBuf, StepError> {
        let mut spec = run_spec(step, run, lower, work);
        // The views of `--mount from=` stages, mounted until the step ends.
        let mut views = Vec::new();
        for m in &run.mounts {
            spec.mounts.push(self.run_mount(m, scratch, &mut views)?);
        }
        if let Some(script) = &run.script {
            // A `#!` here-document runs as a file, as BuildKit does.
            let dir = scratch.join("pipes");
            std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
            let file = dir.join(&script.name);
            std::fs::write(&file, &script.content).map_err(io_at(&file))?;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
                .map_err(io_at(&file))?;
            spec.mounts.push(SandboxMount::Bind {
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
        )?;
        drop(views);
        if outcome.exit_code != 0 {
            return Err(StepError::Exited(outcome.exit_code));
        }
        Ok(outcome.upper)
    }

    /// The sandbox mount of one `RUN --mount`; the view of a `from=` stage or
    /// image is kept in `views`.
    fn run_mount(
        &self,
        m: &RunMount,
        scratch: &Path,
        views: &mut Vec<LayersMount>,
    ) -> Result<SandboxMount, StepError> {
        let target = m.target.clone().unwrap_or_default();
        let owner = (m.uid.unwrap_or(0), m.gid.unwrap_or(0));
        Ok(match m.kind {
            MountKind::Cache => {
                let id = m.id.clone().unwrap_or_else(|| target.clone());
                // Per id range: its files belong to the steps' ids.
                let base = crate::userns::current().step_uids.base;
                SandboxMount::Cache {
                    target,
                    host_dir: self
                        .store
                        .root()
                        .join("d2v/run-cache")
                        .join(base.to_string())
                        .join(crate::store::oci::Digest::of(id.as_bytes()).hex()),
                    readonly: m.readonly.unwrap_or(false),
                    owner,
                    mode: m.mode.unwrap_or(0o755),
                }
            }
            MountKind::Tmpfs => SandboxMount::Tmpfs {
                target,
                size: m.size,
            },
            MountKind::Secret => self.secret_mount(m)?,
            MountKind::Bind => {
                let root = match &m.from {
                    None => self.opts.context.clone(),
                    Some(from) => {
                        let dir = scratch.join(format!("bind-from-{}", views.len()));
                        let base = crate::userns::current().step_uids.base;
                        let view = self.mount_from(from, &dir, base)?;
                        views.push(view);
                        dir
                    }
                };
                SandboxMount::Bind {
                    target,
                    root,
                    source: PathBuf::from(m.source.clone().unwrap_or_else(|| ".".into())),
                    readwrite: m.readonly == Some(false),
                }
            }
            MountKind::Ssh => return Err(StepError::Ssh),
        })
    }

    /// `--mount=type=secret`: the `--secret` file of its id, or, when the
    /// build was given none and the secret is optional, an empty tmpfs beside
    /// where it would be.
    fn secret_mount(&self, m: &RunMount) -> Result<SandboxMount, StepError> {
        let id =
            m.id.clone()
                .or_else(|| {
                    m.target
                        .as_deref()
                        .and_then(|t| t.rsplit('/').next())
                        .map(str::to_string)
                })
                .unwrap_or_default();
        let Some(file) = self.opts.secrets.get(&id) else {
            if m.required {
                return Err(StepError::MissingSecret { id });
            }
            return Ok(SandboxMount::Tmpfs {
                target: format!("/run/secrets/{id}.absent"),
                size: Some(4096),
            });
        };
        Ok(SandboxMount::Secret {
            target: m
                .target
                .clone()
                .unwrap_or_else(|| format!("/run/secrets/{id}")),
            source: file.clone(),
            owner: (m.uid.unwrap_or(0), m.gid.unwrap_or(0)),
            mode: m.mode.unwrap_or(0o400),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::{Location, StepKind, StepState};

    fn step(state: StepState, network: Network, insecure: bool) -> (Step, RunStep) {
        let run = RunStep {
            argv: vec!["sh".into(), "-c".into(), "true".into()],
            heredocs: Vec::new(),
            script: None,
            mounts: Vec::new(),
            network,
            insecure,
        };
        let step = Step {
            location: Location {
                file: "Dockerfile".into(),
                line: 2,
                col: 1,
            },
            text: "RUN true".into(),
            kind: StepKind::Run(run.clone()),
            state,
        };
        (step, run)
    }

    #[test]
    fn build_args_fill_in_what_env_does_not_set() {
        let state = StepState {
            env: vec!["A=env".into()],
            args: vec![("A".into(), "arg".into()), ("B".into(), "arg".into())],
            user: "app".into(),
            workdir: String::new(),
            shell: Vec::new(),
        };
        let (step, run) = step(state, Network::Default, false);
        let spec = run_spec(&step, &run, Path::new("/lower"), Path::new("/work"));
        assert_eq!(spec.env, ["A=env", "B=arg"]);
        assert_eq!(spec.user, "app");
        assert_eq!(spec.workdir, "/", "no WORKDIR runs in /");
        assert_eq!(spec.network, NetworkMode::Private);
        assert!(!spec.privileged);
        assert_eq!(spec.lower, [PathBuf::from("/lower")]);
        assert_eq!(spec.scratch, PathBuf::from("/work"));
    }

    #[test]
    fn network_and_security_flags_carry_over() {
        let state = StepState {
            workdir: "/src".into(),
            ..Default::default()
        };
        let (step, run) = step(state, Network::Host, true);
        let spec = run_spec(&step, &run, Path::new("/l"), Path::new("/w"));
        assert_eq!(spec.workdir, "/src");
        assert_eq!(spec.network, NetworkMode::Host);
        assert!(spec.privileged);
        let (step, run) = step_none();
        assert_eq!(
            run_spec(&step, &run, Path::new("/l"), Path::new("/w")).network,
            NetworkMode::None
        );
    }

    fn step_none() -> (Step, RunStep) {
        step(StepState::default(), Network::None, false)
    }
}
