//! Instructions → steps and config changes, one stage at a time, following
//! BuildKit's `dispatch*` functions. Config instructions live here; RUN and
//! COPY/ADD in [`commands`].

mod commands;

use super::config::{
    default_shell, parse_duration, parse_port_spec, set_env, validate_signal, Healthcheck, History,
    ImageConfig,
};
use super::error::{FrontendError, Location, SourceMap};
use super::flags::{self, FlagValue};
use super::heredoc::RawHeredoc;
use super::lex::{expand_word, expand_words, split_words, Vars};
use super::steps::{CopyFrom, Step, StepKind, StepState};
use super::text::{clean_path, first_line, join_continuations, name_values};
use parse_dockerfile::{Command, HealthcheckArguments, Instruction, JsonOrStringArray};
use std::collections::HashMap;

/// Where an instruction's text comes from, for spans and error locations.
pub(crate) struct Origin<'t> {
    /// The text the instruction's spans index.
    pub(crate) map: SourceMap<'t>,
    /// RUN here-documents by RUN keyword offset in `map.text`.
    pub(crate) heredocs: &'t HashMap<usize, Vec<RawHeredoc>>,
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
                let trigger = first_line(self.map.text, pos, self.escape);
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

/// The instruction's keyword (upper case) and the byte offset where it starts.
pub(crate) fn keyword(inst: &Instruction<'_>) -> (&'static str, usize) {
    let (name, span) = match inst {
        Instruction::Add(i) => ("ADD", &i.add.span),
        Instruction::Arg(i) => ("ARG", &i.arg.span),
        Instruction::Cmd(i) => ("CMD", &i.cmd.span),
        Instruction::Copy(i) => ("COPY", &i.copy.span),
        Instruction::Entrypoint(i) => ("ENTRYPOINT", &i.entrypoint.span),
        Instruction::Env(i) => ("ENV", &i.env.span),
        Instruction::Expose(i) => ("EXPOSE", &i.expose.span),
        Instruction::From(i) => ("FROM", &i.from.span),
        Instruction::Healthcheck(i) => ("HEALTHCHECK", &i.healthcheck.span),
        Instruction::Label(i) => ("LABEL", &i.label.span),
        Instruction::Maintainer(i) => ("MAINTAINER", &i.maintainer.span),
        Instruction::Onbuild(i) => ("ONBUILD", &i.onbuild.span),
        Instruction::Run(i) => ("RUN", &i.run.span),
        Instruction::Shell(i) => ("SHELL", &i.shell.span),
        Instruction::Stopsignal(i) => ("STOPSIGNAL", &i.stopsignal.span),
        Instruction::User(i) => ("USER", &i.user.span),
        Instruction::Volume(i) => ("VOLUME", &i.volume.span),
        Instruction::Workdir(i) => ("WORKDIR", &i.workdir.span),
        _ => ("UNKNOWN", &(0..0)),
    };
    (name, span.start)
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

    fn push(
        &mut self,
        origin: &Origin<'_>,
        pos: usize,
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
            location: origin.location(pos),
            text: first_line(origin.map.text, pos, origin.escape),
            kind,
            state,
        });
    }

    /// Dispatches one instruction.
    pub(crate) fn dispatch(
        &mut self,
        origin: &Origin<'_>,
        inst: &Instruction<'_>,
    ) -> Result<(), FrontendError> {
        let (name, pos) = keyword(inst);
        let esc = origin.escape;
        let state = self.state();
        let text = first_line(origin.map.text, pos, esc);
        let err = |at: usize, msg: String| origin.err(at, name, msg);
        let vars = self.vars();
        let word = |s: &str, at: usize| expand_word(s, esc, &vars).map_err(|e| err(at, e.0));
        // ENV and LABEL: `K=V` pairs, each word expanded; errors point at the word.
        let pairs = |value: &str, span: &std::ops::Range<usize>, what: &str| {
            let text = origin.map.text;
            let raw = name_values(value, esc, what).map_err(|(w, m)| {
                let at = w.map_or(span.start, |w| find_from(text, span.start, span.end, &w));
                err(at, m)
            })?;
            let mut out = Vec::new();
            let mut cursor = span.start;
            for (k, v) in raw {
                let kpos = find_from(text, cursor, span.end, &k);
                let vpos = find_from(text, kpos + k.len(), span.end, &v);
                cursor = (vpos + v.len()).min(span.end);
                let k = word(&k, kpos)?;
                if k.is_empty() {
                    return Err(err(kpos, format!("{what} names can not be blank")));
                }
                out.push((k, word(&v, vpos)?));
            }
            Ok(out)
        };
        match inst {
            Instruction::Arg(i) => {
                let mut new_args = Vec::new();
                let mut cursor = i.arguments.span.start;
                for w in split_words(&i.arguments.value, esc) {
                    let (key, default) = match w.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (w.clone(), None),
                    };
                    let kpos = find_from(origin.map.text, cursor, i.arguments.span.end, &key);
                    let vpos = kpos + key.len() + 1;
                    cursor = vpos.min(i.arguments.span.end);
                    let key = word(&key, kpos)?;
                    if key.is_empty() {
                        return Err(err(
                            i.arguments.span.start,
                            "ARG names can not be blank".into(),
                        ));
                    }
                    let default = match default {
                        Some(d) => Some(word(&d, vpos)?),
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
                for (k, v) in new_args {
                    self.declared.push(k.clone());
                    self.args.retain(|(ek, _)| *ek != k);
                    self.args.push((k, v));
                }
                self.push(origin, pos, StepKind::Config, state, text);
            }
            Instruction::Env(i) => {
                let expanded = pairs(&i.arguments.value, &i.arguments.span, "ENV")?;
                let env = self.config.config.env.get_or_insert_with(Vec::new);
                let mut by = Vec::new();
                for (k, v) in expanded {
                    set_env(env, &k, &v);
                    by.push(format!("{k}={v}"));
                }
                self.push(
                    origin,
                    pos,
                    StepKind::Config,
                    state,
                    format!("ENV {}", by.join(" ")),
                );
            }
            Instruction::Label(i) => {
                let mut by = Vec::new();
                for (k, v) in pairs(&i.arguments.value, &i.arguments.span, "LABEL")? {
                    by.push(format!("{k}={v}"));
                    self.config
                        .config
                        .labels
                        .get_or_insert_with(Default::default)
                        .insert(k, v);
                }
                self.push(
                    origin,
                    pos,
                    StepKind::Config,
                    state,
                    format!("LABEL {}", by.join(" ")),
                );
            }
            Instruction::Maintainer(i) => {
                self.config.author = Some(i.name.value.to_string());
                self.push(origin, pos, StepKind::Config, state, text);
            }
            Instruction::Expose(i) => {
                for arg in &i.arguments {
                    let words = expand_words(&arg.value, esc, &vars)
                        .map_err(|e| err(arg.span.start, e.0))?;
                    for w in words {
                        let ports = parse_port_spec(&w).map_err(|m| err(arg.span.start, m))?;
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
                self.push(origin, pos, StepKind::Config, state, text);
            }
            Instruction::User(i) => {
                let user = word(&i.arguments.value, i.arguments.span.start)?;
                if user.is_empty() {
                    return Err(err(
                        i.arguments.span.start,
                        "USER requires a user name or uid".into(),
                    ));
                }
                self.config.config.user = Some(user);
                self.push(origin, pos, StepKind::Config, state, text);
            }
            Instruction::Workdir(i) => {
                let dir = word(&i.arguments.value, i.arguments.span.start)?;
                if dir.is_empty() {
                    return Err(err(
                        i.arguments.span.start,
                        "WORKDIR can not be blank".into(),
                    ));
                }
                // BuildKit's NormalizeWorkdir: relative paths are joined to
                // the current one (and cleaned); absolute ones are kept as written.
                let current = self.config.config.working_dir.clone().unwrap_or_default();
                let joined = if dir.starts_with('/') {
                    dir
                } else {
                    clean_path(&format!("/{current}/{dir}"))
                };
                self.config.config.working_dir = Some(joined.clone());
                self.push(
                    origin,
                    pos,
                    StepKind::Workdir(joined),
                    state,
                    format!("{text} # buildkit"),
                );
            }
            Instruction::Volume(i) => {
                let mut paths = Vec::new();
                match &i.arguments {
                    JsonOrStringArray::Json(a) => {
                        for v in &a.value {
                            paths.push((word(&v.value, v.span.start)?, v.span.start));
                        }
                    }
                    JsonOrStringArray::String(a) => {
                        for v in a {
                            let words = expand_words(&v.value, esc, &vars)
                                .map_err(|e| err(v.span.start, e.0))?;
                            paths.extend(words.into_iter().map(|w| (w, v.span.start)));
                        }
                    }
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
                self.push(origin, pos, StepKind::Config, state, text);
            }
            Instruction::Stopsignal(i) => {
                let sig = word(&i.arguments.value, i.arguments.span.start)?;
                validate_signal(&sig).map_err(|m| err(i.arguments.span.start, m))?;
                self.config.config.stop_signal = Some(sig);
                self.push(origin, pos, StepKind::Config, state, text);
            }
            Instruction::Shell(i) => {
                self.config.config.shell =
                    Some(i.arguments.iter().map(|a| a.value.to_string()).collect());
                self.push(origin, pos, StepKind::Config, state, text);
            }
            Instruction::Cmd(i) => {
                let argv = self.command_argv(origin, &i.arguments);
                self.config.config.cmd = Some(argv.clone());
                self.cmd_set = true;
                let by = format!("CMD {}", serde_json::to_string(&argv).unwrap_or_default());
                self.push(origin, pos, StepKind::Config, state, by);
            }
            Instruction::Entrypoint(i) => {
                let argv = self.command_argv(origin, &i.arguments);
                self.config.config.entrypoint = Some(argv.clone());
                if !self.cmd_set {
                    self.config.config.cmd = None;
                }
                let by = format!(
                    "ENTRYPOINT {}",
                    serde_json::to_string(&argv).unwrap_or_default()
                );
                self.push(origin, pos, StepKind::Config, state, by);
            }
            Instruction::Healthcheck(i) => {
                let flags =
                    flags::check("HEALTHCHECK", &i.options).map_err(|(at, m)| err(at, m))?;
                let hc = match &i.arguments {
                    HealthcheckArguments::None { .. } => {
                        if let Some(f) = flags.first() {
                            return Err(err(
                                f.pos,
                                "options are not allowed with HEALTHCHECK NONE".into(),
                            ));
                        }
                        Healthcheck {
                            test: vec!["NONE".into()],
                            ..Default::default()
                        }
                    }
                    HealthcheckArguments::Cmd { arguments, .. } => {
                        let test = match arguments {
                            Command::Exec(a) => std::iter::once("CMD".to_string())
                                .chain(a.value.iter().map(|s| s.value.to_string()))
                                .collect(),
                            Command::Shell(s) => {
                                let raw = origin.map.text.get(s.span.clone()).unwrap_or(s.value);
                                vec!["CMD-SHELL".into(), join_continuations(raw, esc, false)]
                            }
                            _ => Vec::new(),
                        };
                        healthcheck_flags(test, &flags).map_err(|(at, m)| err(at, m))?
                    }
                    _ => Healthcheck::default(),
                };
                self.config.config.healthcheck = Some(hc);
                self.push(origin, pos, StepKind::Config, state, text);
            }
            Instruction::Onbuild(i) => {
                let (inner, inner_pos) = keyword(&i.instruction);
                if matches!(inner, "ONBUILD" | "FROM" | "MAINTAINER") {
                    return Err(err(
                        inner_pos,
                        format!("{inner} isn't allowed as an ONBUILD trigger"),
                    ));
                }
                let trigger = trigger_text(origin.map.text, &i.instruction, inner_pos, esc);
                self.config
                    .config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(trigger);
                self.push(origin, pos, StepKind::Config, state, text);
            }
            Instruction::Run(i) => {
                let run = self
                    .run_step(origin, i, &vars)
                    .map_err(|(at, m)| err(at, m))?;
                let by = format!("RUN {} # buildkit", run.argv.join(" "));
                self.push(origin, pos, StepKind::Run(run), state, by);
            }
            Instruction::Copy(_) | Instruction::Add(_) => {
                let (add, options, src, dest) = match inst {
                    Instruction::Copy(i) => (false, &i.options, &i.src, &i.dest),
                    Instruction::Add(i) => (true, &i.options, &i.src, &i.dest),
                    _ => unreachable!(),
                };
                let step = self
                    .copy_step(origin, add, options, src, dest, pos, &vars)
                    .map_err(|(at, m)| err(at, m))?;
                self.push(
                    origin,
                    pos,
                    StepKind::Copy(step),
                    state,
                    format!("{text} # buildkit"),
                );
            }
            Instruction::From(_) => return Err(err(pos, "FROM inside a stage".into())),
            _ => return Err(err(pos, "unsupported instruction".into())),
        }
        Ok(())
    }

    fn command_argv(&self, origin: &Origin<'_>, cmd: &Command<'_>) -> Vec<String> {
        match cmd {
            Command::Exec(a) => a.value.iter().map(|s| s.value.to_string()).collect(),
            Command::Shell(s) => {
                let raw = origin.map.text.get(s.span.clone()).unwrap_or(s.value);
                let mut argv = self.shell();
                argv.push(join_continuations(raw, origin.escape, false));
                argv
            }
            _ => Vec::new(),
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

/// The text of an ONBUILD trigger as written: its first logical line, or
/// through the last here-document's terminator when it has any.
fn trigger_text(text: &str, inner: &Instruction<'_>, pos: usize, esc: char) -> String {
    let heredoc_end = match inner {
        Instruction::Run(r) => r.here_docs.iter().map(|h| h.span.end).max(),
        Instruction::Copy(parse_dockerfile::CopyInstruction { src, .. })
        | Instruction::Add(parse_dockerfile::AddInstruction { src, .. }) => src
            .iter()
            .filter_map(|s| match s {
                parse_dockerfile::Source::HereDoc(h) => Some(h.span.end),
                _ => None,
            })
            .max(),
        _ => None,
    };
    match heredoc_end {
        Some(end) => {
            // The terminator line starts at `end`; keep it, without its newline.
            let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
            text[pos..line_end].trim_end_matches('\r').to_string()
        }
        None => first_line(text, pos, esc),
    }
}

/// Where `needle` starts in `text[from..to]`, for error carets; `from`
/// when it is not found there verbatim (e.g. split by a line continuation).
fn find_from(text: &str, from: usize, to: usize, needle: &str) -> usize {
    text.get(from..to.max(from))
        .and_then(|t| t.find(needle))
        .map_or(from, |i| from + i)
}

fn lookup(list: &[(String, String)], key: &str) -> Option<String> {
    list.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// Parses an ONBUILD trigger into an instruction list (with its own text).
pub(crate) fn parse_trigger(trigger: &str) -> String {
    format!("FROM scratch\n{trigger}\n")
}
