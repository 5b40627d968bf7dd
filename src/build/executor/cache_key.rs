//! Step cache keys: a pure function of the parent's key, the step and the
//! inputs the executor gathered for it (BuildKit's rules).
//!
//! * RUN keys on the instruction, its state (env, args, user, workdir, shell)
//!   and the checksum of each `--mount=type=bind` source; secrets never count.
//! * WORKDIR keys on the directory and the USER that owns it when created.
//! * COPY/ADD key on the instruction, the WORKDIR, and the content of what
//!   they copy (context checksums, a `--from` stage's key or image digest, the
//!   commits of git sources), not on mtimes. `COPY --link` leaves the parent
//!   out unless a `--chown` name must be looked up in the layers below.
//! * Config-only steps (ENV, LABEL, …) have no key of their own; they move
//!   the chain on.
//!
//! Every key chains: what follows a step keys on that step's key (after a
//! linked COPY, on the parent's and the COPY's together).

use crate::dockerfile::{Step, StepKind};
use crate::store::CacheKey;

/// What a step's key covers beyond the step itself: what the executor had to
/// read or ask for (see [`super::inputs`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyInputs {
    /// RUN: a checksum for each `--mount=type=bind`, in mount order.
    pub bind_sums: Vec<String>,
    /// COPY/ADD: the context sources' checksum, the `--from` stage's key or
    /// the `--from` image's manifest digest.
    pub copy_sources: String,
    /// ADD: the commits its git sources name now, one a line.
    pub git_commits: String,
}

/// A step's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepKeys {
    /// Its step-cache key; `None` for config-only steps (nothing to cache).
    pub cache: Option<CacheKey>,
    /// The key the next step chains from.
    pub chain: CacheKey,
}

/// The keys of `step` run on a parent whose chain key is `parent`.
pub fn step_keys(parent: &CacheKey, step: &Step, inputs: &KeyInputs) -> StepKeys {
    let kind = serde_json::to_vec(&step.kind).expect("a step serializes");
    let parent_key = parent.0.as_bytes();
    let key = match &step.kind {
        StepKind::Config => {
            let state = serde_json::to_vec(&step.state).expect("a step's state serializes");
            return StepKeys {
                cache: None,
                chain: CacheKey::derive([parent_key, &kind, &state]),
            };
        }
        StepKind::Run(_) => {
            let state = serde_json::to_vec(&step.state).expect("a step's state serializes");
            let parts = [parent_key, &kind, &state]
                .into_iter()
                .chain(inputs.bind_sums.iter().map(|s| s.as_bytes()));
            CacheKey::derive(parts)
        }
        StepKind::Workdir(_) => CacheKey::derive([parent_key, &kind, step.state.user.as_bytes()]),
        StepKind::Copy(copy) => {
            // A --chown name resolves in the layers below, so it keeps them.
            let named_owner = copy
                .chown
                .as_deref()
                .is_some_and(|c| c.split(':').any(|p| p.parse::<u32>().is_err()));
            let base = if copy.link && !named_owner {
                b"link".as_slice()
            } else {
                parent_key
            };
            CacheKey::derive([
                base,
                &kind,
                step.state.workdir.as_bytes(),
                inputs.copy_sources.as_bytes(),
                inputs.git_commits.as_bytes(),
            ])
        }
    };
    // What follows a linked COPY runs on the parent's layers plus this one.
    let chain = match &step.kind {
        StepKind::Copy(c) if c.link => CacheKey::derive([parent_key, key.0.as_bytes()]),
        _ => key.clone(),
    };
    StepKeys {
        cache: Some(key),
        chain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::{CopyStep, Location, RunStep, StepState};

    fn step(kind: StepKind) -> Step {
        Step {
            location: Location {
                file: "Dockerfile".into(),
                line: 1,
                col: 1,
            },
            text: "X".into(),
            kind,
            state: StepState::default(),
        }
    }

    fn run(argv: &[&str]) -> Step {
        step(StepKind::Run(RunStep {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            heredocs: Vec::new(),
            script: None,
            mounts: Vec::new(),
            network: Default::default(),
            insecure: false,
        }))
    }

    fn copy(link: bool, chown: Option<&str>) -> Step {
        step(StepKind::Copy(CopyStep {
            is_add: false,
            sources: vec!["a".into()],
            heredocs: Vec::new(),
            dest: "/b".into(),
            from: None,
            chown: chown.map(str::to_string),
            chmod: None,
            link,
            parents: false,
            exclude: Vec::new(),
            checksum: None,
            keep_git_dir: false,
            unpack: None,
        }))
    }

    fn parent(name: &str) -> CacheKey {
        CacheKey::derive([name.as_bytes()])
    }

    fn keys(p: &str, s: &Step, inputs: &KeyInputs) -> StepKeys {
        step_keys(&parent(p), s, inputs)
    }

    #[test]
    fn keys_are_stable() {
        // The step cache of earlier builds must keep hitting: this pins the
        // derivation of a RUN key.
        let k = keys("scratch", &run(&["true"]), &KeyInputs::default());
        let kind = br#"{"run":{"argv":["true"],"heredocs":[],"script":null,"mounts":[],"network":"default","insecure":false}}"#;
        let state = br#"{"env":[],"args":[],"user":"","workdir":"","shell":[]}"#;
        let expected = CacheKey::derive([parent("scratch").0.as_bytes(), kind, state]);
        assert_eq!(k.cache, Some(expected.clone()));
        assert_eq!(k.chain, expected);
    }

    #[test]
    fn a_key_covers_the_parent_the_step_and_its_state() {
        let none = KeyInputs::default();
        let a = keys("p", &run(&["true"]), &none);
        assert_eq!(a, keys("p", &run(&["true"]), &none), "deterministic");
        assert_ne!(a, keys("q", &run(&["true"]), &none), "parent");
        assert_ne!(a, keys("p", &run(&["false"]), &none), "command");
        let mut env = run(&["true"]);
        env.state.env.push("A=1".into());
        assert_ne!(a, keys("p", &env, &none), "env");
        let bind = KeyInputs {
            bind_sums: vec!["sum".into()],
            ..Default::default()
        };
        assert_ne!(a, keys("p", &run(&["true"]), &bind), "bind mount content");
    }

    #[test]
    fn config_steps_move_only_the_chain() {
        let mut env = step(StepKind::Config);
        env.state.env.push("A=1".into());
        let k = keys("p", &env, &KeyInputs::default());
        assert_eq!(k.cache, None);
        assert_ne!(k.chain, parent("p"));
        assert_ne!(k.chain, keys("q", &env, &KeyInputs::default()).chain);
    }

    #[test]
    fn workdir_keys_on_its_owner() {
        let w = step(StepKind::Workdir("/app".into()));
        let mut as_app = w.clone();
        as_app.state.user = "app".into();
        let none = KeyInputs::default();
        assert_ne!(keys("p", &w, &none), keys("p", &as_app, &none));
        // Env does not change what WORKDIR creates.
        let mut env = w.clone();
        env.state.env.push("A=1".into());
        assert_eq!(keys("p", &w, &none), keys("p", &env, &none));
    }

    #[test]
    fn copy_keys_on_content_and_workdir() {
        let c = copy(false, None);
        let sum = |s: &str| KeyInputs {
            copy_sources: s.into(),
            ..Default::default()
        };
        let a = keys("p", &c, &sum("1"));
        assert_ne!(a, keys("p", &c, &sum("2")), "content");
        assert_ne!(a, keys("q", &c, &sum("1")), "parent");
        let mut elsewhere = c.clone();
        elsewhere.state.workdir = "/src".into();
        assert_ne!(a, keys("p", &elsewhere, &sum("1")), "workdir");
        let git = KeyInputs {
            copy_sources: "1".into(),
            git_commits: "abc\n".into(),
            ..Default::default()
        };
        assert_ne!(a, keys("p", &c, &git), "git commits");
    }

    #[test]
    fn linked_copy_leaves_the_parent_out_of_its_key_but_not_the_chain() {
        let inputs = KeyInputs {
            copy_sources: "1".into(),
            ..Default::default()
        };
        let (a, b) = (
            keys("p", &copy(true, None), &inputs),
            keys("q", &copy(true, None), &inputs),
        );
        assert_eq!(a.cache, b.cache, "the layer is reused on any parent");
        assert_ne!(a.chain, b.chain, "what follows still depends on the parent");
        let cache = a.cache.unwrap();
        assert_eq!(
            a.chain,
            CacheKey::derive([parent("p").0.as_bytes(), cache.0.as_bytes()])
        );
        // Numeric owners need no lookup; a name is looked up in the parent.
        let numeric = copy(true, Some("1000:1000"));
        assert_eq!(
            keys("p", &numeric, &inputs).cache,
            keys("q", &numeric, &inputs).cache
        );
        let named = copy(true, Some("app"));
        assert_ne!(
            keys("p", &named, &inputs).cache,
            keys("q", &named, &inputs).cache
        );
    }
}
