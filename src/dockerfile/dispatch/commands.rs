//! RUN and COPY/ADD: the instructions that change the filesystem, turned
//! into [`RunStep`] and [`CopyStep`] with BuildKit's heredoc, mount and flag rules.

use super::{Dispatcher, ScopeVars};
use crate::dockerfile::flags::{self, FlagValue};
use crate::dockerfile::heredoc;
use crate::dockerfile::instruction::{Form, Instruction};
use crate::dockerfile::lex::{expand_heredoc, expand_word};
use crate::dockerfile::steps::{CopyFrom, CopyStep, Heredoc, MountKind, Network, RunStep};
use crate::dockerfile::text::clean_path;

/// Go's `path.Clean` for any path (relative ones stay relative; "" is ".").
fn go_clean(p: &str) -> String {
    if p.starts_with('/') {
        return clean_path(p);
    }
    let cleaned = clean_path(&format!("/{p}"));
    let rel = cleaned.trim_start_matches('/');
    if rel.is_empty() {
        ".".into()
    } else {
        rel.to_string()
    }
}

/// A mount target as BuildKit places it: relative (or empty) targets are
/// joined with the WORKDIR; the root itself is refused.
pub(crate) fn mount_target(target: &str, workdir: &str) -> Result<String, String> {
    let joined = if target.starts_with('/') {
        clean_path(target)
    } else {
        clean_path(&format!("/{workdir}/{target}"))
    };
    if joined == "/" {
        return Err(format!("invalid mount target {joined:?}"));
    }
    Ok(joined)
}

impl Dispatcher<'_> {
    pub(super) fn resolve(&mut self, value: &str, at: usize) -> Result<CopyFrom, (usize, String)> {
        let from = (self.resolve_from)(value).map_err(|m| (at, m))?;
        if let CopyFrom::Stage(i) = from {
            if !self.deps.contains(&i) {
                self.deps.push(i);
            }
        }
        Ok(from)
    }

    pub(super) fn run_step(
        &mut self,
        inst: &Instruction,
        esc: char,
        vars: &ScopeVars,
        workdir: &str,
    ) -> Result<RunStep, (usize, String)> {
        let flags = flags::check("RUN", &inst.flags)?;
        let mut run = RunStep {
            argv: Vec::new(),
            heredocs: Vec::new(),
            script: None,
            mounts: Vec::new(),
            network: Network::Default,
            insecure: false,
        };
        for f in &flags {
            let value = f.value.clone().unwrap_or_default();
            match f.name.as_str() {
                "mount" => {
                    let expand = |s: &str| expand_word(s, esc, vars).map_err(|e| e.0);
                    let (mut m, from) =
                        flags::mount(&value, &expand).map_err(|m| (f.value_pos, m))?;
                    if let Some(from) = from {
                        m.from = Some(self.resolve(&from, f.value_pos)?);
                    }
                    if matches!(
                        m.kind,
                        MountKind::Bind | MountKind::Cache | MountKind::Tmpfs
                    ) {
                        let raw = m.target.clone().unwrap_or_default();
                        if m.kind == MountKind::Cache && m.id.is_none() {
                            m.id = Some(go_clean(&raw));
                        }
                        m.target = Some(mount_target(&raw, workdir).map_err(|e| (f.value_pos, e))?);
                    }
                    run.mounts.push(m);
                }
                "network" => run.network = flags::network(&value).map_err(|m| (f.value_pos, m))?,
                "security" => {
                    run.insecure = match value.as_str() {
                        "insecure" => true,
                        "sandbox" => false,
                        _ => {
                            return Err((
                                f.value_pos,
                                format!("unsupported security mode {value:?}"),
                            ))
                        }
                    }
                }
                _ => {}
            }
        }
        match inst.form()? {
            Form::Json(argv) => run.argv = argv,
            Form::Shell => self.shell_run(inst, &mut run),
        }
        Ok(run)
    }

    /// Shell-form RUN, with BuildKit's here-document rules.
    fn shell_run(&self, inst: &Instruction, run: &mut RunStep) {
        let line = inst.args.text.clone();
        let docs = &inst.heredocs;
        let mut argv = self.shell();
        if docs.is_empty() {
            argv.push(line);
        } else if docs.len() == 1 && line.trim() == docs[0].word.as_str() {
            let doc = &docs[0];
            if doc.content.starts_with("#!") {
                run.script = Some(Heredoc {
                    name: doc.name.clone(),
                    content: doc.content.clone(),
                    expand: doc.expand,
                });
                argv.push(format!("/dev/pipes/{}", doc.name));
            } else {
                argv.push(doc.content.clone());
            }
        } else {
            let mut full = line;
            for d in docs {
                full.push('\n');
                full.push_str(&d.content);
                full.push_str(&d.name);
            }
            argv.push(full);
        }
        run.heredocs = docs
            .iter()
            .map(|d| Heredoc {
                name: d.name.clone(),
                content: d.content.clone(),
                expand: d.expand,
            })
            .collect();
        run.argv = argv;
    }

    pub(super) fn copy_step(
        &mut self,
        inst: &Instruction,
        esc: char,
        vars: &ScopeVars,
    ) -> Result<CopyStep, (usize, String)> {
        let is_add = inst.keyword == "ADD";
        let flags = flags::check(&inst.keyword, &inst.flags)?;
        let word = |s: &str, at: usize| expand_word(s, esc, vars).map_err(|e| (at, e.0));
        // Sources and destination: a JSON array, or whitespace-separated words.
        let words: Vec<(String, usize)> = match inst.form()? {
            Form::Json(values) => values
                .into_iter()
                .map(|v| {
                    let at = inst.find(0, &v);
                    (v, at)
                })
                .collect(),
            Form::Shell => inst.words(),
        };
        let Some(((dest_raw, dest_at), srcs)) = words.split_last() else {
            return Err((
                inst.pos,
                format!("{} requires at least two arguments", inst.keyword),
            ));
        };
        if srcs.is_empty() {
            return Err((
                inst.pos,
                format!("{} requires at least two arguments, but only one was provided. Destination could not be determined", inst.keyword),
            ));
        }
        let mut step = CopyStep::new(is_add, Vec::new(), word(dest_raw, *dest_at)?);
        let value = |f: &FlagValue| word(f.value.as_deref().unwrap_or_default(), f.value_pos);
        for f in &flags {
            let boolean = || flags::boolean(f).map_err(|m| (f.pos, m));
            match f.name.as_str() {
                "from" => {
                    let v = value(f)?;
                    if v.is_empty() {
                        return Err((f.value_pos, "--from can not be empty".into()));
                    }
                    step.from = Some(self.resolve(&v, f.value_pos)?);
                }
                "chown" => step.chown = Some(value(f)?),
                "chmod" => {
                    let v = value(f)?;
                    crate::dockerfile::chmod::parse(&v).map_err(|m| (f.value_pos, m))?;
                    step.chmod = Some(v);
                }
                "link" => step.link = boolean()?,
                "parents" => step.parents = boolean()?,
                "exclude" => step.exclude.push(value(f)?),
                "checksum" => step.checksum = Some(value(f)?),
                "keep-git-dir" => step.keep_git_dir = boolean()?,
                "unpack" => step.unpack = Some(boolean()?),
                _ => {}
            }
        }
        let mut docs = inst.heredocs.iter();
        for (src, at) in srcs {
            if heredoc::parse_marker(src).is_some() {
                if let Some(h) = docs.next() {
                    let content = if h.expand {
                        expand_heredoc(&h.content, vars).map_err(|e| (*at, e.0))?
                    } else {
                        h.content.clone()
                    };
                    step.heredocs.push(Heredoc {
                        name: h.name.clone(),
                        content,
                        expand: h.expand,
                    });
                    continue;
                }
            }
            step.sources.push(word(src, *at)?);
        }
        if step.sources.iter().any(String::is_empty) {
            return Err((inst.pos, "source can not be empty".into()));
        }
        Ok(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_targets_join_the_workdir() {
        assert_eq!(mount_target("", "/src").unwrap(), "/src");
        assert_eq!(mount_target(".", "/src").unwrap(), "/src");
        assert_eq!(mount_target("sub", "/src").unwrap(), "/src/sub");
        assert_eq!(mount_target("/abs/", "/src").unwrap(), "/abs");
        assert!(mount_target("/", "/src").is_err());
        assert!(mount_target("..", "/src").is_err());
        assert!(mount_target("", "/").is_err());
        assert_eq!(go_clean("./cache/"), "cache");
        assert_eq!(go_clean(""), ".");
    }
}
