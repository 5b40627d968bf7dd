//! Gathering what a step's cache key covers beyond the step itself: content
//! checksums of COPY sources and bind-mounted context, the keys of `--from`
//! stages, the digests of `--from` images, the commits of ADD's git sources.

use super::cache_key::KeyInputs;
use super::error::StepError;
use super::stage::Executor;
use crate::build::{checksum, git};
use crate::dockerfile::{CopyFrom, CopyStep, MountKind, RunMount, Step, StepKind};

impl Executor<'_> {
    /// What `step`'s key covers beyond the step and its parent.
    pub(super) fn key_inputs(&self, step: &Step) -> Result<KeyInputs, StepError> {
        let mut inputs = KeyInputs::default();
        match &step.kind {
            StepKind::Run(run) => {
                for m in run.mounts.iter().filter(|m| m.kind == MountKind::Bind) {
                    inputs.bind_sums.push(self.bind_source_sum(m)?);
                }
            }
            StepKind::Copy(copy) => {
                inputs.copy_sources = match &copy.from {
                    None => self.context_sum(&copy.sources)?,
                    Some(CopyFrom::Stage(i)) => self.stage_key(*i)?.0,
                    Some(CopyFrom::Image(name)) => {
                        self.images.image(name)?.manifest_digest.to_string()
                    }
                };
                inputs.git_commits = self.git_commits(copy)?;
            }
            StepKind::Workdir(_) | StepKind::Config => {}
        }
        Ok(inputs)
    }

    /// Checksum of sources in the context (content, modes, owners; not
    /// mtimes), computed once per build for each list of sources.
    fn context_sum(&self, sources: &[String]) -> Result<String, StepError> {
        let cache_key = sources.join("\0");
        if let Some(sum) = self.lock_context_sums().get(&cache_key) {
            return Ok(sum.clone());
        }
        let sum = checksum::sources_checksum(
            &self.opts.context,
            sources,
            self.opts.dockerfile_in_context.as_deref(),
        )?;
        self.lock_context_sums().insert(cache_key, sum.clone());
        Ok(sum)
    }

    /// The commits an ADD's git sources name now (`git ls-remote`), so a
    /// branch that moved is fetched again.
    fn git_commits(&self, copy: &CopyStep) -> Result<String, StepError> {
        let mut out = String::new();
        if !copy.is_add {
            return Ok(out);
        }
        for r in copy.sources.iter().filter_map(|s| git::parse(s)) {
            let scratch = self.store.scratch_dir()?;
            out.push_str(&git::resolve(&r, scratch.path())?);
            out.push('\n');
        }
        Ok(out)
    }

    /// What a bind mount's content is known by: the checksum of its context
    /// source, the key of its stage, or its image's reference.
    fn bind_source_sum(&self, m: &RunMount) -> Result<String, StepError> {
        match &m.from {
            None => self.context_sum(&[m.source.clone().unwrap_or_else(|| ".".into())]),
            Some(CopyFrom::Stage(i)) => {
                Ok(self.stage_result(*i).map(|s| s.key.0).unwrap_or_default())
            }
            Some(CopyFrom::Image(name)) => Ok(name.clone()),
        }
    }
}
