//! Instructions → steps and config changes, one stage at a time, following
//! BuildKit's `dispatch*` functions. Config instructions live here; RUN and
//! COPY/ADD in [`commands`].

mod commands;

use super::checks::{looks_secret, Check, Checks};
use super::config::{
    default_shell, parse_duration, parse_port_spec, set_env, validate_signal, Healthcheck, History,
    ImageConfig,
};
use super::error::{FrontendError, Location, SourceMap};
use super::flags::{self, FlagValue};
use super::instruction::{Form, Instruction};
use super::lex::{expand_word, expand_words, split_words, Vars};
use super::steps::{CopyFrom, Step, StepKind, StepState};
use super::text::{clean_path, name_values};

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
        let esc = origin.escape;
        let state = self.state();
        let err = |at: usize, msg: String| origin.err(at, name, msg);
        budget.charge_state(&state).map_err(|m| err(pos, m))?;
        budget
            .charge(inst.line.text.len())
            .map_err(|m| err(pos, m))?;
        let text = inst.text().to_string();
        let vars = self.vars();
        let word = |s: &str, at: usize| {
            let w = expand_word(s, esc, &vars).map_err(|e| err(at, e.0))?;
            budget.charge(w.len()).map_err(|m| err(at, m))?;
            Ok::<_, FrontendError>(w)
        };
        let rest = inst.args.text.as_str();
        let rest_at = inst.args_at(0);
        // ENV and LABEL: `K=V` pairs, each word expanded; errors point at the word.
        let pairs = |what: &str| {
            let raw = name_values(rest, esc, what).map_err(|(w, m)| {
                let at = w.map_or(rest_at, |w| inst.find(0, &w));
                err(at, m)
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
                let key = word(&k, inst.args_at(kpos))?;
                if key.is_empty() {
                    return Err(err(
                        inst.args_at(kpos),
                        format!("{what} names can not be blank"),
                    ));
                }
                out.push((key, word(&v, inst.args_at(vpos))?, inst.args_at(kpos)));
            }
            Ok(out)
        };
        // Flags on instructions that take none are errors, as in BuildKit.
        if !matches!(name, "RUN" | "COPY" | "ADD" | "HEALTHCHECK" | "ONBUILD") {
            flags::check(name, &inst.flags).map_err(|(at, m)| err(at, m))?;
        }
        let legacy = |rest: &str| {
            split_words(rest, esc)
                .first()
                .is_some_and(|w| !w.contains('='))
        };
        match name {
            "ARG" => {
                let mut new_args = Vec::new();
                let mut cursor = 0;
                for w in split_words(rest, esc) {
                    let (key, default) = match w.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (w.clone(), None),
                    };
                    let kpos = rest[cursor.min(rest.len())..]
                        .find(&key)
                        .map_or(cursor, |i| cursor + i);
                    let vpos = kpos + key.len() + 1;
                    cursor = vpos.min(rest.len());
                    let key = word(&key, inst.args_at(kpos))?;
                    if key.is_empty() {
                        return Err(err(rest_at, "ARG names can not be blank".into()));
                    }
                    if looks_secret(&key) {
                        self.check(
                            origin,
                            "SecretsUsedInArgOrEnv",
                            pos,
                            format!("Do not use ARG or ENV instructions for sensitive data (ARG {key:?})"),
                        );
                    }
                    let default = match default {
                        Some(d) => Some(word(&d, inst.args_at(vpos))?),
                        None => None,
                    };
                    let value = lookup(self.build_args, &key).or(default).or_else(|| {
                        self.global_args
                            .iter()
                            .rev()
                            .find(|(k, _)| *k == key)
                            .and_then(|(_, v)| v.clone())
                    });
                    new_args.push((key, value));
                }
                if new_args.is_empty() {
                    return Err(err(pos, "ARG requires at least one argument".into()));
                }
                for (k, v) in new_args {
                    self.declared.push(k.clone());
                    self.args.retain(|(ek, _)| *ek != k);
                    self.args.push((k, v));
                }
                self.push(origin, inst, StepKind::Config, state, text);
            }
            "ENV" | "LABEL" => {
                let is_env = name == "ENV";
                if legacy(rest) {
                    self.check(
                        origin,
                        "LegacyKeyValueFormat",
                        pos,
                        format!("\"{name} key=value\" should be used instead of legacy \"{name} key value\" format"),
                    );
                }
                let mut by = Vec::new();
                for (k, v, _) in pairs(name)? {
                    by.push(format!("{k}={v}"));
                    if is_env {
                        if looks_secret(&k) {
                            self.check(
                                origin,
                                "SecretsUsedInArgOrEnv",
                                pos,
                                format!("Do not use ARG or ENV instructions for sensitive data (ENV {k:?})"),
                            );
                        }
                        set_env(self.config.config.env.get_or_insert_with(Vec::new), &k, &v);
                    } else {
                        self.config
                            .config
                            .labels
                            .get_or_insert_with(Default::default)
                            .insert(k, v);
                    }
                }
                let by = format!("{name} {}", by.join(" "));
                self.push(origin, inst, StepKind::Config, state, by);
            }
            "MAINTAINER" => {
                if rest.is_empty() {
                    return Err(err(pos, "MAINTAINER requires exactly one argument".into()));
                }
                self.config.author = Some(rest.to_string());
                self.push(origin, inst, StepKind::Config, state, text);
            }
            "EXPOSE" => {
                let raw_words = inst.words();
                for (raw, at) in &raw_words {
                    let (raw, at) = (raw.as_str(), *at);
                    let words = expand_words(raw, esc, &vars).map_err(|e| err(at, e.0))?;
                    for w in words {
                        let ports = parse_port_spec(&w).map_err(|m| err(at, m))?;
                        let map = self
                            .config
                            .config
                            .exposed_ports
                            .get_or_insert_with(Default::default);
                        for p in ports {
                            map.insert(p, Default::default());
                        }
                    }
                }
                if raw_words.is_empty() {
                    return Err(err(pos, "EXPOSE requires at least one argument".into()));
                }
                self.push(origin, inst, StepKind::Config, state, text);
            }
            "USER" => {
                let user = word(rest, rest_at)?;
                if user.is_empty() {
                    return Err(err(rest_at, "USER requires a user name or uid".into()));
                }
                self.config.config.user = Some(user);
                self.push(origin, inst, StepKind::Config, state, text);
            }
            "WORKDIR" => {
                let dir = word(rest, rest_at)?;
                if dir.is_empty() {
                    return Err(err(rest_at, "WORKDIR can not be blank".into()));
                }
                if !self.workdir_set && !dir.starts_with('/') {
                    self.check(
                        origin,
                        "WorkdirRelativePath",
                        pos,
                        format!("Relative workdir {dir:?} can have unexpected results if the base image changes"),
                    );
                }
                self.workdir_set = true;
                // BuildKit's NormalizeWorkdir: relative paths are joined to
                // the current one (and cleaned); absolute ones are kept as written.
                let current = self.config.config.working_dir.clone().unwrap_or_default();
                let joined = if dir.starts_with('/') {
                    dir
                } else {
                    clean_path(&format!("/{current}/{dir}"))
                };
                self.config.config.working_dir = Some(joined.clone());
                let by = format!("{text} # buildkit");
                self.push(origin, inst, StepKind::Workdir(joined), state, by);
            }
            "VOLUME" => {
                let mut paths = Vec::new();
                match inst.form().map_err(|(at, m)| err(at, m))? {
                    Form::Json(values) => {
                        for v in values {
                            let at = inst.find(0, &v);
                            paths.push((word(&v, at)?, at));
                        }
                    }
                    Form::Shell => {
                        for (raw, at) in inst.words() {
                            let words = expand_words(&raw, esc, &vars).map_err(|e| err(at, e.0))?;
                            paths.extend(words.into_iter().map(|w| (w, at)));
                        }
                    }
                }
                if paths.is_empty() {
                    return Err(err(pos, "VOLUME requires at least one argument".into()));
                }
                for (p, at) in paths {
                    if p.trim().is_empty() {
                        return Err(err(
                            at,
                            "VOLUME specified can not be an empty string".into(),
                        ));
                    }
                    self.config
                        .config
                        .volumes
                        .get_or_insert_with(Default::default)
                        .insert(p, Default::default());
                }
                self.push(origin, inst, StepKind::Config, state, text);
            }
            "STOPSIGNAL" => {
                let sig = word(rest, rest_at)?;
                validate_signal(&sig).map_err(|m| err(rest_at, m))?;
                self.config.config.stop_signal = Some(sig);
                self.push(origin, inst, StepKind::Config, state, text);
            }
            "SHELL" => {
                let Form::Json(shell) = inst.form().map_err(|(at, m)| err(at, m))? else {
                    return Err(err(
                        rest_at,
                        "SHELL requires the arguments to be in JSON form".into(),
                    ));
                };
                if shell.is_empty() {
                    return Err(err(rest_at, "SHELL requires at least one argument".into()));
                }
                self.config.config.shell = Some(shell);
                self.push(origin, inst, StepKind::Config, state, text);
            }
            "CMD" | "ENTRYPOINT" => {
                let is_cmd = name == "CMD";
                self.used_once(origin, if is_cmd { "CMD" } else { "ENTRYPOINT" }, pos);
                let form = inst.form().map_err(|(at, m)| err(at, m))?;
                if form == Form::Shell
                    && self.config.config.shell.as_ref().is_none_or(Vec::is_empty)
                {
                    self.check(
                        origin,
                        "JSONArgsRecommended",
                        pos,
                        format!("JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"),
                    );
                }
                let argv = self.command_argv(inst, form);
                if is_cmd {
                    self.config.config.cmd = Some(argv.clone());
                    self.cmd_set = true;
                } else {
                    self.config.config.entrypoint = Some(argv.clone());
                    if !self.cmd_set {
                        self.config.config.cmd = None;
                    }
                }
                let by = format!(
                    "{name} {}",
                    serde_json::to_string(&argv).unwrap_or_default()
                );
                self.push(origin, inst, StepKind::Config, state, by);
            }
            "HEALTHCHECK" => {
                self.used_once(origin, "HEALTHCHECK", pos);
                let hc = self.healthcheck(inst).map_err(|(at, m)| err(at, m))?;
                self.config.config.healthcheck = Some(hc);
                self.push(origin, inst, StepKind::Config, state, text);
            }
            "ONBUILD" => {
                let inner = inst.onbuild_inner(esc);
                if inner.keyword.is_empty() {
                    return Err(err(pos, "ONBUILD requires at least one argument".into()));
                }
                match inner.keyword.as_str() {
                    "ONBUILD" => return Err(err(pos, "ONBUILD ONBUILD is not allowed".into())),
                    "FROM" | "MAINTAINER" => {
                        return Err(err(
                            inner.pos,
                            format!("{} isn't allowed as an ONBUILD trigger", inner.keyword),
                        ))
                    }
                    k if !super::KEYWORDS.contains(&k) => {
                        return Err(err(
                            inner.pos,
                            format!("unknown instruction '{}'", inner.written),
                        ))
                    }
                    _ => {}
                }
                // BuildKit records the trigger as written, here-document bodies appended.
                let mut trigger = inst.flagged_args().text;
                for doc in &inst.heredocs {
                    trigger.push('\n');
                    trigger.push_str(&doc.raw);
                    trigger.push_str(&doc.name);
                }
                self.config
                    .config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(trigger);
                self.push(origin, inst, StepKind::Config, state, text);
            }
            "RUN" => {
                let run = self
                    .run_step(inst, esc, &vars, &state.workdir)
                    .map_err(|(at, m)| err(at, m))?;
                let by = format!("RUN {} # buildkit", run.argv.join(" "));
                self.push(origin, inst, StepKind::Run(run), state, by);
            }
            "COPY" | "ADD" => {
                let step = self
                    .copy_step(inst, esc, &vars)
                    .map_err(|(at, m)| err(at, m))?;
                let by = format!("{text} # buildkit");
                self.push(origin, inst, StepKind::Copy(step), state, by);
            }
            "FROM" => return Err(err(pos, "FROM inside a stage".into())),
            _ => return Err(err(pos, "unsupported instruction".into())),
        }
        Ok(())
    }

    /// The argv of CMD/ENTRYPOINT: exec form as is, shell form in SHELL.
    fn command_argv(&self, inst: &Instruction, form: Form) -> Vec<String> {
        match form {
            Form::Json(argv) => argv,
            Form::Shell => {
                let mut argv = self.shell();
                argv.push(inst.args.text.clone());
                argv
            }
        }
    }

    /// HEALTHCHECK [flags] NONE | CMD command.
    fn healthcheck(&self, inst: &Instruction) -> Result<Healthcheck, (usize, String)> {
        let flags = flags::check("HEALTHCHECK", &inst.flags)?;
        let rest = inst.args.text.as_str();
        let split = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let kind = rest[..split].to_ascii_uppercase();
        let cmd_from = rest[split..]
            .find(|c: char| !c.is_whitespace())
            .map_or(rest.len(), |i| split + i);
        match kind.as_str() {
            "NONE" => {
                if let Some(f) = flags.first() {
                    return Err((
                        f.pos,
                        "options are not allowed with HEALTHCHECK NONE".into(),
                    ));
                }
                if cmd_from < rest.len() {
                    return Err((
                        inst.args_at(cmd_from),
                        "HEALTHCHECK NONE takes no arguments".into(),
                    ));
                }
                Ok(Healthcheck {
                    test: vec!["NONE".into()],
                    ..Default::default()
                })
            }
            "CMD" => {
                let cmd = &rest[cmd_from..];
                let at = inst.args_at(cmd_from);
                let test = match super::instruction::json_form(cmd).map_err(|m| (at, m))? {
                    Form::Json(argv) => std::iter::once("CMD".to_string()).chain(argv).collect(),
                    Form::Shell if cmd.is_empty() => {
                        return Err((at, "Missing command after HEALTHCHECK CMD".into()))
                    }
                    Form::Shell => vec!["CMD-SHELL".into(), cmd.to_string()],
                };
                healthcheck_flags(test, &flags)
            }
            _ => Err((
                inst.args_at(0),
                format!("Unknown type {kind:?} in HEALTHCHECK (try CMD)"),
            )),
        }
    }
}

fn healthcheck_flags(
    test: Vec<String>,
    flags: &[FlagValue],
) -> Result<Healthcheck, (usize, String)> {
    let mut hc = Healthcheck {
        test,
        ..Default::default()
    };
    for f in flags {
        let v = f.value.clone().unwrap_or_default();
        let dur = || {
            let d = parse_duration(&v).map_err(|m| (f.value_pos, m))?;
            if d != 0 && d < 1_000_000 {
                return Err((f.value_pos, format!("--{} cannot be less than 1ms", f.name)));
            }
            if d < 0 {
                return Err((f.value_pos, format!("--{} cannot be negative", f.name)));
            }
            Ok(d)
        };
        match f.name.as_str() {
            "interval" => hc.interval = dur()?,
            "timeout" => hc.timeout = dur()?,
            "start-period" => hc.start_period = dur()?,
            "start-interval" => hc.start_interval = dur()?,
            "retries" => {
                hc.retries = v
                    .parse()
                    .map_err(|_| (f.value_pos, format!("invalid --retries value {v:?}")))?;
                if hc.retries < 0 {
                    return Err((f.value_pos, "--retries cannot be negative".into()));
                }
            }
            _ => {}
        }
    }
    Ok(hc)
}

fn lookup(list: &[(String, String)], key: &str) -> Option<String> {
    list.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}
