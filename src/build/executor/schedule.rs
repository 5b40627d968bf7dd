//! The stage scheduler: stages whose dependencies are built run together, as
//! many at once as there are lanes; the first failure stops the others.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::error::BuildError;
use super::stage::{Executor, StageResult};
use super::BuildOptions;
use crate::build::progress::Progress;
use crate::dockerfile::{Base, CopyFrom, Plan, Stage, StepKind};

/// The stages a stage needs built first.
pub fn stage_deps(stage: &Stage) -> Vec<usize> {
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

/// The stages `opts.stage_builder` builds: those other stages depend on, not
/// the target, and named (a daemon's build `target` is a stage name).
pub fn delegated_stages(plan: &Plan, opts: &BuildOptions, progress: &Progress) -> HashSet<usize> {
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

/// Splits `remaining` into the stages whose dependencies are all in `done`
/// and the rest, each in plan order.
fn ready<'p>(remaining: Vec<&'p Stage>, done: &[usize]) -> (Vec<&'p Stage>, Vec<&'p Stage>) {
    remaining
        .into_iter()
        .partition(|s| stage_deps(s).iter().all(|d| done.contains(d)))
}

impl Executor<'_> {
    /// Builds every stage of `plan`, up to `lanes` at once; each result is
    /// recorded as its stage finishes.
    pub(super) fn build_stages(&self, plan: &Plan, lanes: usize) -> Result<(), BuildError> {
        let mut remaining: Vec<&Stage> = plan.stages.iter().collect();
        while !remaining.is_empty() {
            let done: Vec<usize> = self.lock_stages().keys().copied().collect();
            let (ready, blocked) = ready(remaining, &done);
            if ready.is_empty() {
                return Err(BuildError::Cycle);
            }
            let (now, later) = ready.split_at(ready.len().min(lanes.max(1)));
            remaining = later.iter().copied().chain(blocked).collect();
            let mut first_err = None;
            for (index, r) in self.build_together(plan, now) {
                match r {
                    Ok(result) => {
                        self.lock_stages().insert(index, result);
                    }
                    // A real failure beats the cancellation it caused in a sibling.
                    Err(e) => {
                        if matches!(first_err, None | Some(BuildError::Cancelled)) {
                            first_err = Some(e);
                        }
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Builds `stages` at once, each on its own thread (one runs here); a
    /// failing stage cancels its siblings.
    fn build_together(
        &self,
        plan: &Plan,
        stages: &[&Stage],
    ) -> Vec<(usize, Result<StageResult, BuildError>)> {
        if let [stage] = stages {
            return vec![(stage.index, self.stage(plan, stage))];
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = stages
                .iter()
                .map(|stage| {
                    scope.spawn(move || {
                        let r = self.stage(plan, stage);
                        if r.is_err() {
                            // Stop the sibling stages too.
                            self.cancel.store(true, Ordering::SeqCst);
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::{CopyStep, Location, Step, StepState};

    fn stage(index: usize, base: Base, copy_from: &[usize]) -> Stage {
        let steps = copy_from
            .iter()
            .map(|i| Step {
                location: Location {
                    file: "Dockerfile".into(),
                    line: 1,
                    col: 1,
                },
                text: format!("COPY --from={i} / /"),
                kind: StepKind::Copy(CopyStep {
                    from: Some(CopyFrom::Stage(*i)),
                    ..CopyStep::new(false, vec!["/".into()], "/".into())
                }),
                state: StepState::default(),
            })
            .collect();
        Stage {
            index,
            name: None,
            base,
            steps,
            config: Default::default(),
        }
    }

    #[test]
    fn dependencies_come_from_the_base_and_copy_from() {
        assert_eq!(stage_deps(&stage(2, Base::Stage(0), &[1])), [0, 1]);
        assert!(stage_deps(&stage(0, Base::Scratch, &[])).is_empty());
    }

    #[test]
    fn ready_stages_are_those_whose_dependencies_are_built() {
        let stages = [
            stage(0, Base::Scratch, &[]),
            stage(1, Base::Stage(0), &[]),
            stage(2, Base::Scratch, &[0, 1]),
            stage(3, Base::Scratch, &[]),
        ];
        let all: Vec<&Stage> = stages.iter().collect();
        let index = |v: &[&Stage]| v.iter().map(|s| s.index).collect::<Vec<_>>();
        let (now, later) = ready(all.clone(), &[]);
        assert_eq!((index(&now), index(&later)), (vec![0, 3], vec![1, 2]));
        let (now, later) = ready(later, &[0, 3]);
        assert_eq!((index(&now), index(&later)), (vec![1], vec![2]));
        let (now, _) = ready(later, &[0, 1, 3]);
        assert_eq!(index(&now), [2]);
    }
}
