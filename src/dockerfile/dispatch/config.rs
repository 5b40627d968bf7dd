//! The config instructions (ARG, ENV, LABEL, EXPOSE, USER, WORKDIR,
//! VOLUME, STOPSIGNAL, SHELL, CMD, ENTRYPOINT, HEALTHCHECK, ONBUILD,
//! MAINTAINER): each changes the stage's config and args, with BuildKit's
//! rules and build checks.

use super::{lookup, Cx, Dispatcher, Handled};
use crate::dockerfile::checks::looks_secret;
use crate::dockerfile::config::{
    parse_duration, parse_port_spec, set_env, validate_signal, Healthcheck,
};
use crate::dockerfile::error::FrontendError;
use crate::dockerfile::flags::{self, FlagValue};
use crate::dockerfile::instruction::{Form, Instruction};
use crate::dockerfile::lex::{expand_words, split_words};
use crate::dockerfile::text::clean_path;

impl Dispatcher<'_> {
    /// ARG: declare args, a build arg or the global value winning over the default.
    pub(super) fn arg(&mut self, cx: &Cx<'_, '_>) -> Handled {
        let inst = cx.inst;
        let esc = cx.esc();
        let pos = cx.inst.pos;
        let rest = inst.args.text.as_str();
        let rest_at = inst.args_at(0);
        let err = |at: usize, msg: String| cx.err(at, msg);
        let word = |s: &str, at: usize| cx.word(s, at);
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
                    cx.origin,
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
        Ok(None)
    }

    /// ENV and LABEL: `K=V` pairs (or the legacy `K V`).
    pub(super) fn env_label(&mut self, cx: &Cx<'_, '_>) -> Handled {
        let inst = cx.inst;
        let pos = cx.inst.pos;
        let name = inst.keyword.as_str();
        let is_env = name == "ENV";
        if cx.legacy() {
            self.check(
                cx.origin,
                "LegacyKeyValueFormat",
                pos,
                format!("\"{name} key=value\" should be used instead of legacy \"{name} key value\" format"),
            );
        }
        let mut by = Vec::new();
        for (k, v, _) in cx.pairs(name)? {
            by.push(format!("{k}={v}"));
            if is_env {
                if looks_secret(&k) {
                    self.check(
                        cx.origin,
                        "SecretsUsedInArgOrEnv",
                        pos,
                        format!(
                            "Do not use ARG or ENV instructions for sensitive data (ENV {k:?})"
                        ),
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
        Ok(Some(by))
    }

    /// MAINTAINER: the author.
    pub(super) fn maintainer(&mut self, cx: &Cx<'_, '_>) -> Handled {
        let inst = cx.inst;
        let pos = cx.inst.pos;
        let rest = inst.args.text.as_str();
        let err = |at: usize, msg: String| cx.err(at, msg);
        if rest.is_empty() {
            return Err(err(pos, "MAINTAINER requires exactly one argument".into()));
        }
        self.config.author = Some(rest.to_string());
        Ok(None)
    }

    /// EXPOSE: ports and ranges.
    pub(super) fn expose(&mut self, cx: &Cx<'_, '_>) -> Handled {
        let inst = cx.inst;
        let esc = cx.esc();
        let pos = cx.inst.pos;
        let err = |at: usize, msg: String| cx.err(at, msg);
        let vars = &cx.vars;
        let raw_words = inst.words();
        for (raw, at) in &raw_words {
            let (raw, at) = (raw.as_str(), *at);
            let words = expand_words(raw, esc, vars).map_err(|e| err(at, e.0))?;
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
        Ok(None)
    }

    /// USER.
    pub(super) fn user(&mut self, cx: &Cx<'_, '_>) -> Handled {
        let inst = cx.inst;
        let rest = inst.args.text.as_str();
        let rest_at = inst.args_at(0);
        let err = |at: usize, msg: String| cx.err(at, msg);
        let word = |s: &str, at: usize| cx.word(s, at);
        let user = word(rest, rest_at)?;
        if user.is_empty() {
            return Err(err(rest_at, "USER requires a user name or uid".into()));
        }
        self.config.config.user = Some(user);
        Ok(None)
    }

    /// WORKDIR: relative paths join the current one; returns the directory.
    pub(super) fn workdir_inst(&mut self, cx: &Cx<'_, '_>) -> Result<String, FrontendError> {
        let inst = cx.inst;
        let pos = cx.inst.pos;
        let rest = inst.args.text.as_str();
        let rest_at = inst.args_at(0);
        let err = |at: usize, msg: String| cx.err(at, msg);
        let word = |s: &str, at: usize| cx.word(s, at);
        let dir = word(rest, rest_at)?;
        if dir.is_empty() {
            return Err(err(rest_at, "WORKDIR can not be blank".into()));
        }
        if !self.workdir_set && !dir.starts_with('/') {
            self.check(
                cx.origin,
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
        Ok(joined)
    }

    /// VOLUME: a JSON array or words.
    pub(super) fn volume(&mut self, cx: &Cx<'_, '_>) -> Handled {
        let inst = cx.inst;
        let esc = cx.esc();
        let pos = cx.inst.pos;
        let err = |at: usize, msg: String| cx.err(at, msg);
        let word = |s: &str, at: usize| cx.word(s, at);
        let vars = &cx.vars;
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
                    let words = expand_words(&raw, esc, vars).map_err(|e| err(at, e.0))?;
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
        Ok(None)
    }

    /// STOPSIGNAL.
    pub(super) fn stopsignal(&mut self, cx: &Cx<'_, '_>) -> Handled {
        let inst = cx.inst;
        let rest = inst.args.text.as_str();
        let rest_at = inst.args_at(0);
        let err = |at: usize, msg: String| cx.err(at, msg);
        let word = |s: &str, at: usize| cx.word(s, at);
        let sig = word(rest, rest_at)?;
        validate_signal(&sig).map_err(|m| err(rest_at, m))?;
        self.config.config.stop_signal = Some(sig);
        Ok(None)
    }

    /// SHELL: a JSON array.
    pub(super) fn shell_inst(&mut self, cx: &Cx<'_, '_>) -> Handled {
        let inst = cx.inst;
        let rest_at = inst.args_at(0);
        let err = |at: usize, msg: String| cx.err(at, msg);
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
        Ok(None)
    }

    /// CMD and ENTRYPOINT (ENTRYPOINT drops a CMD the stage did not set).
    pub(super) fn cmd_entrypoint(&mut self, cx: &Cx<'_, '_>) -> Handled {
        let inst = cx.inst;
        let pos = cx.inst.pos;
        let name = inst.keyword.as_str();
        let err = |at: usize, msg: String| cx.err(at, msg);
        let is_cmd = name == "CMD";
        self.used_once(cx.origin, if is_cmd { "CMD" } else { "ENTRYPOINT" }, pos);
        let form = inst.form().map_err(|(at, m)| err(at, m))?;
        if form == Form::Shell && self.config.config.shell.as_ref().is_none_or(Vec::is_empty) {
            self.check(
                cx.origin,
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
        Ok(Some(by))
    }

    /// ONBUILD: records the trigger as written.
    pub(super) fn onbuild(&mut self, cx: &Cx<'_, '_>) -> Handled {
        let inst = cx.inst;
        let esc = cx.esc();
        let pos = cx.inst.pos;
        let err = |at: usize, msg: String| cx.err(at, msg);
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
            k if !crate::dockerfile::KEYWORDS.contains(&k) => {
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
        Ok(None)
    }

    /// The argv of CMD/ENTRYPOINT: exec form as is, shell form in SHELL.
    pub(super) fn command_argv(&self, inst: &Instruction, form: Form) -> Vec<String> {
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
    pub(super) fn healthcheck(&self, inst: &Instruction) -> Result<Healthcheck, (usize, String)> {
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
                let test = match crate::dockerfile::instruction::json_form(cmd)
                    .map_err(|m| (at, m))?
                {
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
