//! RUN and COPY/ADD: the instructions that change the filesystem, turned
//! into [`RunStep`] and [`CopyStep`] with BuildKit's heredoc, mount and flag rules.

use super::{Dispatcher, Origin, ScopeVars};
use crate::dockerfile::flags::{self, FlagValue};
use crate::dockerfile::heredoc::RawHeredoc;
use crate::dockerfile::lex::{expand_heredoc, expand_word, split_words};
use crate::dockerfile::steps::{CopyFrom, CopyStep, Heredoc, Network, RunStep};
use crate::dockerfile::text::{first_line, join_continuations};
use parse_dockerfile::{Command, Source};

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
        origin: &Origin<'_>,
        i: &parse_dockerfile::RunInstruction<'_>,
        vars: &ScopeVars,
    ) -> Result<RunStep, (usize, String)> {
        let esc = origin.escape;
        let flags = flags::check("RUN", &i.options)?;
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
        let (_, pos) = (0, i.run.span.start);
        match &i.arguments {
            Command::Exec(a) => run.argv = a.value.iter().map(|s| s.value.to_string()).collect(),
            Command::Shell(s) => {
                let raw = origin.map.text.get(s.span.clone()).unwrap_or(s.value);
                let line = join_continuations(raw, esc, false);
                let docs = origin.heredocs.get(&pos).cloned().unwrap_or_default();
                // Heredocs the parser itself read (`RUN <<EOF` when the
                // pre-pass did not run, e.g. in ONBUILD triggers).
                let docs = if docs.is_empty() && !i.here_docs.is_empty() {
                    i.here_docs
                        .iter()
                        .map(|h| RawHeredoc {
                            name: line
                                .trim_start_matches('<')
                                .trim_start_matches('-')
                                .split_whitespace()
                                .next()
                                .unwrap_or_default()
                                .trim_matches(['"', '\''])
                                .to_string(),
                            content: h.value.to_string(),
                            expand: h.expand,
                            word: String::new(),
                        })
                        .collect()
                } else {
                    docs
                };
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
                    for d in &docs {
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
            _ => {}
        }
        Ok(run)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn copy_step(
        &mut self,
        origin: &Origin<'_>,
        is_add: bool,
        options: &[parse_dockerfile::Flag<'_>],
        src: &[Source<'_>],
        dest: &parse_dockerfile::UnescapedString<'_>,
        pos: usize,
        vars: &ScopeVars,
    ) -> Result<CopyStep, (usize, String)> {
        let esc = origin.escape;
        let flags = flags::check(if is_add { "ADD" } else { "COPY" }, options)?;
        let word = |s: &str, at: usize| expand_word(s, esc, vars).map_err(|e| (at, e.0));
        let mut step = CopyStep {
            is_add,
            sources: Vec::new(),
            heredocs: Vec::new(),
            dest: word(&dest.value, dest.span.start)?,
            from: None,
            chown: None,
            chmod: None,
            link: false,
            parents: false,
            exclude: Vec::new(),
            checksum: None,
            keep_git_dir: false,
            unpack: None,
        };
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
                "chmod" => step.chmod = Some(value(f)?),
                "link" => step.link = boolean()?,
                "parents" => step.parents = boolean()?,
                "exclude" => step.exclude.push(value(f)?),
                "checksum" => step.checksum = Some(value(f)?),
                "keep-git-dir" => step.keep_git_dir = boolean()?,
                "unpack" => step.unpack = Some(boolean()?),
                _ => {}
            }
        }
        let line = first_line(origin.map.text, pos, esc);
        let mut names = split_words(&line, '\\')
            .into_iter()
            .filter_map(|w| heredoc_name(&w));
        for s in src {
            match s {
                Source::Path(p) => step.sources.push(word(&p.value, p.span.start)?),
                Source::HereDoc(h) => {
                    let name = names.next().unwrap_or_else(|| "heredoc".into());
                    let content = if h.expand {
                        expand_heredoc(&h.value, vars).map_err(|e| (h.span.start, e.0))?
                    } else {
                        h.value.to_string()
                    };
                    step.heredocs.push(Heredoc {
                        name,
                        content,
                        expand: h.expand,
                    });
                }
                _ => {}
            }
        }
        if step.sources.iter().any(String::is_empty) {
            return Err((pos, "source can not be empty".into()));
        }
        Ok(step)
    }
}

/// The file name of a COPY here-document marker word.
fn heredoc_name(word: &str) -> Option<String> {
    let rest = word.strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let none: Vec<(String, String)> = Vec::new();
    expand_word(rest, '\\', &none)
        .ok()
        .filter(|n| !n.is_empty())
}
