//! Instructions → steps and config changes, one stage at a time, following
//! BuildKit's `dispatch*` functions. Config instructions live here; RUN and
//! COPY/ADD in [`commands`].

mod commands;
mod config;

use super::checks::{Check, Checks};
use super::config::{default_shell, History, ImageConfig};
use super::error::{FrontendError, Location, SourceMap};
use super::flags;
use super::instruction::Instruction;
use super::lex::{expand_word, split_words, Vars};
use super::steps::{CopyFrom, Step, StepKind, StepState};
use super::text::name_values;

/// How many bytes of step state (env, args) a whole plan may hold: each step
/// keeps a snapshot, so a big ENV repeated over many steps is bounded here.
pub(crate) const PLAN_STATE_BUDGET: usize = 256 << 20;

/// The plan's running total of step-state and expanded bytes.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    used: std::cell::Cell<usize>,
}

impl Budget {
    fn charge(&self, bytes: usize) -> Result<(), String> {
        self.used.set(self.used.get().saturating_add(bytes));
        if self.used.get() > PLAN_STATE_BUDGET {
            return Err(format!(
                "the Dockerfile expands to more than {} MiB (env, args and values of every step)",
                PLAN_STATE_BUDGET >> 20
            ));
        }
        Ok(())
    }

    fn charge_state(&self, state: &StepState) -> Result<(), String> {
        self.charge(
            state.env.iter().map(String::len).sum::<usize>()
                + state
                    .args
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
                + state.user.len()
                + state.workdir.len(),
        )
    }
}

/// Where an instruction's text comes from, for error locations.
pub(crate) struct Origin<'t> {
    /// The text the instruction's offsets index.
    pub(crate) map: SourceMap<'t>,
    /// For ONBUILD triggers of a base image: every location is this FROM.
    pub(crate) fixed: Option<Location>,
    /// The escape character of `map.text`.
    pub(crate) escape: char,
}

impl Origin<'_> {
    fn location(&self, pos: usize) -> Location {
        self.fixed.clone().unwrap_or_else(|| self.map.location(pos))
    }

    fn err(&self, pos: usize, inst: &str, msg: impl Into<String>) -> FrontendError {
        match &self.fixed {
            Some(loc) => {
                let trigger = self.map.text.trim_end();
                let msg = format!(
                    "ONBUILD trigger from the base image ({trigger}): {}",
                    msg.into()
                );
                self.map.error_at(loc.clone(), Some(inst), msg)
            }
            None => self.map.error(pos, Some(inst), msg),
        }
    }
}

/// Args (with values) then env: env wins, as in BuildKit's `getEnv`.
struct ScopeVars(Vec<(String, String)>);

impl Vars for ScopeVars {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name)
    }
}

/// What dispatching a stage produced.
pub(crate) struct StageOutput {
    pub(crate) steps: Vec<Step>,
    pub(crate) config: ImageConfig,
    /// Earlier stages this one reads from (COPY --from, RUN --mount from=).
    pub(crate) deps: Vec<usize>,
    /// ARG names declared in the stage.
    pub(crate) declared_args: Vec<String>,
    /// Whether a WORKDIR was set in this stage or the stages it is built on.
    pub(crate) workdir_set: bool,
    /// Build checks raised while dispatching.
    pub(crate) checks: Vec<Check>,
}

/// Resolves a `--from` value to a stage (by name or index) or an image.
pub(crate) type ResolveFrom<'r> = &'r dyn Fn(&str) -> Result<CopyFrom, String>;

/// Dispatches one stage's instructions.
pub(crate) struct Dispatcher<'r> {
    config: ImageConfig,
    args: Vec<(String, Option<String>)>,
    cmd_set: bool,
    steps: Vec<Step>,
    deps: Vec<usize>,
    declared: Vec<String>,
    build_args: &'r [(String, String)],
    global_args: &'r [(String, Option<String>)],
    resolve_from: ResolveFrom<'r>,
    /// Whether a WORKDIR was set (here or in a parent stage): BuildKit's
    /// WorkdirRelativePath check looks only at the first one.
    pub(crate) workdir_set: bool,
    /// The last CMD, ENTRYPOINT and HEALTHCHECK of the stage, for
    /// MultipleInstructionsDisallowed.
    last_once: Vec<(&'static str, Location)>,
    checks: Checks,
}

impl<'r> Dispatcher<'r> {
    /// Starts a stage from its base's config. Clears the base's ONBUILD
    /// triggers (they are returned: the caller runs them first) and adds the
    /// default PATH when the base has none.
    pub(crate) fn new(
        mut config: ImageConfig,
        build_args: &'r [(String, String)],
        global_args: &'r [(String, Option<String>)],
        proxy_args: Vec<(String, Option<String>)>,
        resolve_from: ResolveFrom<'r>,
    ) -> (Self, Vec<String>) {
        let triggers = config.config.on_build.take().unwrap_or_default();
        let env = config.config.env.get_or_insert_with(Vec::new);
        if !env.iter().any(|kv| kv.starts_with("PATH=")) {
            env.push(format!("PATH={}", super::config::DEFAULT_PATH));
        }
        let d = Dispatcher {
            config,
            args: proxy_args,
            cmd_set: false,
            steps: Vec::new(),
            deps: Vec::new(),
            declared: Vec::new(),
            build_args,
            global_args,
            resolve_from,
            workdir_set: false,
            last_once: Vec::new(),
            checks: Checks::default(),
        };
        (d, triggers)
    }

    /// The stage's result.
    pub(crate) fn finish(self) -> StageOutput {
        StageOutput {
            steps: self.steps,
            config: self.config,
            deps: self.deps,
            declared_args: self.declared,
            workdir_set: self.workdir_set,
            checks: self.checks.found,
        }
    }

    fn vars(&self) -> ScopeVars {
        let mut v: Vec<(String, String)> = self
            .args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        for kv in self.config.config.env.iter().flatten() {
            let (k, val) = kv.split_once('=').unwrap_or((kv, ""));
            v.push((k.to_string(), val.to_string()));
        }
        ScopeVars(v)
    }

    fn state(&self) -> StepState {
        let c = &self.config.config;
        StepState {
            env: c.env.clone().unwrap_or_default(),
            args: self
                .args
                .iter()
                .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                .collect(),
            user: c.user.clone().unwrap_or_default(),
            workdir: c
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
            shell: c.shell.clone().unwrap_or_else(default_shell),
        }
    }

    fn shell(&self) -> Vec<String> {
        self.config
            .config
            .shell
            .clone()
            .unwrap_or_else(default_shell)
    }

    /// A build check at `pos`.
    fn check(&mut self, origin: &Origin<'_>, rule: &str, pos: usize, message: String) {
        if origin.fixed.is_none() {
            self.checks.add(rule, origin.location(pos), message);
        }
    }

    /// MultipleInstructionsDisallowed: an earlier CMD/ENTRYPOINT/HEALTHCHECK
    /// of the stage is overridden.
    fn used_once(&mut self, origin: &Origin<'_>, name: &'static str, pos: usize) {
        let here = origin.location(pos);
        if let Some(k) = self.last_once.iter().position(|(n, _)| *n == name) {
            let (_, earlier) = self.last_once.remove(k);
            if origin.fixed.is_none() {
                self.checks.add(
                    "MultipleInstructionsDisallowed",
                    earlier,
                    format!("Multiple {name} instructions should not be used in the same stage because only the last one will be used"),
                );
            }
        }
        self.last_once.push((name, here));
    }

    fn push(
        &mut self,
        origin: &Origin<'_>,
        inst: &Instruction,
        kind: StepKind,
        state: StepState,
        created_by: String,
    ) {
        let empty_layer = matches!(kind, StepKind::Config);
        self.config.history.push(History {
            created: None,
            created_by: Some(created_by),
            comment: Some("buildkit.dockerfile.v0".into()),
            empty_layer: empty_layer.then_some(true),
        });
        self.steps.push(Step {
            location: origin.location(inst.pos),
            text: inst.text().to_string(),
            kind,
            state,
        });
    }

    /// Dispatches one instruction.
    pub(crate) fn dispatch(
        &mut self,
        origin: &Origin<'_>,
        inst: &Instruction,
        budget: &Budget,
    ) -> Result<(), FrontendError> {
        let name = inst.keyword.as_str();
        let pos = inst.pos;
        let state = self.state();
        let err = |at: usize, msg: String| origin.err(at, name, msg);
        budget.charge_state(&state).map_err(|m| err(pos, m))?;
        budget
            .charge(inst.line.text.len())
            .map_err(|m| err(pos, m))?;
        // Flags on instructions that take none are errors, as in BuildKit.
        if !matches!(name, "RUN" | "COPY" | "ADD" | "HEALTHCHECK" | "ONBUILD") {
            flags::check(name, &inst.flags).map_err(|(at, m)| err(at, m))?;
        }
        let text = inst.text().to_string();
        let cx = Cx {
            origin,
            inst,
            vars: self.vars(),
            budget,
        };
        let (kind, created_by) = match name {
            "ARG" => (StepKind::Config, self.arg(&cx)?),
            "ENV" | "LABEL" => (StepKind::Config, self.env_label(&cx)?),
            "MAINTAINER" => (StepKind::Config, self.maintainer(&cx)?),
            "EXPOSE" => (StepKind::Config, self.expose(&cx)?),
            "USER" => (StepKind::Config, self.user(&cx)?),
            "VOLUME" => (StepKind::Config, self.volume(&cx)?),
            "STOPSIGNAL" => (StepKind::Config, self.stopsignal(&cx)?),
            "SHELL" => (StepKind::Config, self.shell_inst(&cx)?),
            "CMD" | "ENTRYPOINT" => (StepKind::Config, self.cmd_entrypoint(&cx)?),
            "ONBUILD" => (StepKind::Config, self.onbuild(&cx)?),
            "HEALTHCHECK" => {
                self.used_once(origin, "HEALTHCHECK", pos);
                let hc = self.healthcheck(inst).map_err(|(at, m)| err(at, m))?;
                self.config.config.healthcheck = Some(hc);
                (StepKind::Config, None)
            }
            "WORKDIR" => {
                let dir = self.workdir_inst(&cx)?;
                (StepKind::Workdir(dir), Some(format!("{text} # buildkit")))
            }
            "RUN" => {
                let run = self
                    .run_step(inst, origin.escape, &cx.vars, &state.workdir)
                    .map_err(|(at, m)| err(at, m))?;
                let by = format!("RUN {} # buildkit", run.argv.join(" "));
                (StepKind::Run(run), Some(by))
            }
            "COPY" | "ADD" => {
                let step = self
                    .copy_step(inst, origin.escape, &cx.vars)
                    .map_err(|(at, m)| err(at, m))?;
                (StepKind::Copy(step), Some(format!("{text} # buildkit")))
            }
            "FROM" => return Err(err(pos, "FROM inside a stage".into())),
            _ => return Err(err(pos, "unsupported instruction".into())),
        };
        let created_by = created_by.unwrap_or(text);
        self.push(origin, inst, kind, state, created_by);
        Ok(())
    }
}

/// What a config instruction's handler returns: its history text when it
/// is not the instruction as written.
type Handled = Result<Option<String>, FrontendError>;

/// One instruction being dispatched: where it is, the variables in scope,
/// and the plan's budget every expanded word is charged to.
struct Cx<'a, 'o> {
    origin: &'a Origin<'o>,
    inst: &'a Instruction,
    vars: ScopeVars,
    budget: &'a Budget,
}

impl Cx<'_, '_> {
    fn esc(&self) -> char {
        self.origin.escape
    }

    /// An error at `at`, in this instruction.
    fn err(&self, at: usize, msg: String) -> FrontendError {
        self.origin.err(at, &self.inst.keyword, msg)
    }

    /// Expands one word (charged to the budget); errors point at `at`.
    fn word(&self, s: &str, at: usize) -> Result<String, FrontendError> {
        let w = expand_word(s, self.esc(), &self.vars).map_err(|e| self.err(at, e.0))?;
        self.budget.charge(w.len()).map_err(|m| self.err(at, m))?;
        Ok(w)
    }

    /// Whether ENV/LABEL use the legacy `KEY value` form.
    fn legacy(&self) -> bool {
        split_words(&self.inst.args.text, self.esc())
            .first()
            .is_some_and(|w| !w.contains('='))
    }

    /// ENV and LABEL: `K=V` pairs, each word expanded; errors point at the word.
    fn pairs(&self, what: &str) -> Result<Vec<(String, String, usize)>, FrontendError> {
        let inst = self.inst;
        let rest = inst.args.text.as_str();
        let raw = name_values(rest, self.esc(), what).map_err(|(w, m)| {
            let at = w.map_or(inst.args_at(0), |w| inst.find(0, &w));
            self.err(at, m)
        })?;
        let mut out = Vec::new();
        let mut cursor = 0;
        for (k, v) in raw {
            let kpos = rest[cursor.min(rest.len())..]
                .find(&k)
                .map_or(cursor, |i| cursor + i);
            let vpos = rest[(kpos + k.len()).min(rest.len())..]
                .find(&v)
                .map_or(kpos + k.len(), |i| kpos + k.len() + i);
            cursor = (vpos + v.len()).min(rest.len());
            let key = self.word(&k, inst.args_at(kpos))?;
            if key.is_empty() {
                return Err(self.err(inst.args_at(kpos), format!("{what} names can not be blank")));
            }
            out.push((key, self.word(&v, inst.args_at(vpos))?, inst.args_at(kpos)));
        }
        Ok(out)
    }
}

fn lookup(list: &[(String, String)], key: &str) -> Option<String> {
    list.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}
