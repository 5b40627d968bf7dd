//! The Dockerfile front end: parse, expand, plan, image config.
//!
//! [`plan`] turns a Dockerfile into the stages the target needs, each a list
//! of [`Step`]s with the state they run in, plus the [`ImageConfig`] the
//! build will produce, following Docker/BuildKit (Dockerfile frontend 1.x):
//! ARG scopes and `--build-arg`, BuildKit's word expansion, the stage graph,
//! ONBUILD triggers, and the config instructions' rules.
//!
//! ```
//! use d2v::dockerfile::{plan, NoBaseImages, PlanOptions};
//! let text = "FROM scratch\nENV GREETING=hi\nCMD echo $GREETING\n";
//! let plan = plan(text, &PlanOptions::default(), &NoBaseImages).unwrap();
//! assert_eq!(
//!     plan.config.config.cmd,
//!     Some(vec!["/bin/sh".into(), "-c".into(), "echo $GREETING".into()])
//! );
//! ```
//!
//! Modules: [`lex`] (word expansion), `heredoc` (RUN here-documents),
//! `flags` (instruction flags), `dispatch` (instructions → steps/config),
//! `text` (logical lines), [`config`] (the image config), [`steps`] (the plan
//! types), `error` (located errors).

pub mod config;
mod dispatch;
mod error;
mod flags;
mod heredoc;
pub mod lex;
pub mod steps;
mod text;

pub use config::{ContainerConfig, Healthcheck, ImageConfig};
pub use error::{FrontendError, Location};
pub use steps::{
    Base, CopyFrom, CopyStep, Heredoc, MountKind, Network, RunMount, RunStep, Stage, Step,
    StepKind, StepState,
};

use dispatch::{Dispatcher, Origin, StageOutput};
use error::SourceMap;
use lex::{expand_word, split_words};
use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

/// The only platform d2v builds for.
pub const PLATFORM: &str = "linux/amd64";

/// Errors a [`BaseImages`] implementation may return.
pub type BaseError = Box<dyn std::error::Error + Send + Sync>;

/// Where base images' configs come from (the store implements this).
pub trait BaseImages {
    /// The config of image `name` (an expanded reference such as
    /// `debian:bookworm`), or `None` when the image is not available.
    fn config(&self, name: &str) -> Result<Option<ImageConfig>, BaseError>;
}

/// A [`BaseImages`] that knows no images (only `FROM scratch` works, or any
/// image in lenient mode).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBaseImages;

impl BaseImages for NoBaseImages {
    fn config(&self, _name: &str) -> Result<Option<ImageConfig>, BaseError> {
        Ok(None)
    }
}

/// Inputs to [`plan`] besides the Dockerfile text.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// The Dockerfile's path, used in error locations.
    pub dockerfile_path: PathBuf,
    /// `--build-arg K=V`, in order (later wins).
    pub build_args: Vec<(String, String)>,
    /// `--target`: the stage to build (default: the last).
    pub target: Option<String>,
    /// `--platform` (only `linux/amd64` is supported).
    pub platform: Option<String>,
    /// When a base image is not in [`BaseImages`], plan with an empty config
    /// and a warning instead of failing ("image not found in the store").
    pub lenient_bases: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            dockerfile_path: PathBuf::from("Dockerfile"),
            build_args: Vec::new(),
            target: None,
            platform: None,
            lenient_bases: false,
        }
    }
}

/// The build plan.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Plan {
    /// The stages the target needs, in dependency order (ascending index).
    pub stages: Vec<Stage>,
    /// The Dockerfile index of the target stage (also `stages.last()`).
    pub target: usize,
    /// The config of the final image.
    pub config: ImageConfig,
    /// Non-fatal problems (unused build args, bases planned without config).
    pub warnings: Vec<String>,
}

/// Proxy build args: usable without an ARG, never in the image config.
const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The predefined platform args, valued for linux/amd64.
fn predefined_args() -> Vec<(String, Option<String>)> {
    [
        ("TARGETPLATFORM", PLATFORM),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "amd64"),
        ("TARGETVARIANT", ""),
        ("BUILDPLATFORM", PLATFORM),
        ("BUILDOS", "linux"),
        ("BUILDARCH", "amd64"),
        ("BUILDVARIANT", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Some(v.to_string())))
    .collect()
}

fn with_values(args: &[(String, Option<String>)]) -> Vec<(String, String)> {
    args.iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect()
}

/// The config of `FROM scratch` (BuildKit's empty image).
fn scratch_config() -> ImageConfig {
    let mut c = ImageConfig::default();
    c.config.working_dir = Some("/".into());
    c.config.env = Some(vec![format!("PATH={}", config::DEFAULT_PATH)]);
    c
}

fn check_platform(value: &str) -> Result<(), String> {
    match value {
        "linux/amd64" | "linux/x86_64" | "amd64" => Ok(()),
        other => Err(format!(
            "unsupported platform {other:?}: d2v builds only {PLATFORM}"
        )),
    }
}

/// Converts a parser error (line known; column only reliable on line 1).
fn parse_error(map: &SourceMap<'_>, e: &parse_dockerfile::Error) -> FrontendError {
    let message = format!("{e:#}");
    let line = e.line().max(1);
    // parse-dockerfile 0.1 reports the line start offset as "column" past
    // line 1, so point at the line's first non-blank character instead.
    let location = if e.line() == 1 {
        map.location(e.column().saturating_sub(1))
    } else {
        map.line_location(line)
    };
    let instruction = message
        .strip_prefix("unknown instruction '")
        .and_then(|r| r.split('\'').next())
        .map(str::to_string)
        .or_else(|| {
            map.line_text(line)
                .and_then(|l| l.split_whitespace().next())
                .filter(|w| w.chars().all(|c| c.is_ascii_alphabetic()))
                .map(str::to_string)
        });
    map.error_at(location, instruction.as_deref(), message)
}

/// Parses, expands and plans a Dockerfile.
///
/// Errors carry file:line:col and the instruction, and render the source
/// line with a caret. See [`PlanOptions::lenient_bases`] for unknown bases.
pub fn plan(
    dockerfile_text: &str,
    opts: &PlanOptions,
    bases: &dyn BaseImages,
) -> Result<Plan, FrontendError> {
    let text = dockerfile_text
        .strip_prefix('\u{feff}')
        .unwrap_or(dockerfile_text);
    let map = SourceMap {
        file: opts.dockerfile_path.display().to_string(),
        text,
    };
    if let Some(p) = &opts.platform {
        check_platform(p).map_err(FrontendError::general)?;
    }
    let prepared = heredoc::prepare(text).map_err(|u| {
        let line = map.location(u.pos).line;
        let inst = map
            .line_text(line)
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_string);
        map.error(
            u.pos,
            inst.as_deref(),
            format!("unterminated heredoc: no line {:?} ends it", u.name),
        )
    })?;
    let parsed = parse_dockerfile::parse(&prepared.text).map_err(|e| parse_error(&map, &e))?;
    let escape = parsed
        .parser_directives
        .escape
        .as_ref()
        .map_or('\\', |d| d.value.value);

    // Global scope: predefined platform args, then ARGs before the first FROM.
    let mut global_args = predefined_args();
    let mut declared: HashSet<String> = HashSet::new();
    for arg in parsed.global_args() {
        let at = arg.arguments.span.start;
        for w in split_words(&arg.arguments.value, escape) {
            let vars = with_values(&global_args);
            let (key, default) = match w.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (w.clone(), None),
            };
            let lex_err = |e: lex::LexError| map.error(at, Some("ARG"), e.0);
            let key = expand_word(&key, escape, &vars).map_err(lex_err)?;
            let default = match default {
                Some(d) => Some(expand_word(&d, escape, &vars).map_err(lex_err)?),
                None => None,
            };
            let value = opts
                .build_args
                .iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
                .or(default);
            declared.insert(key.clone());
            global_args.retain(|(k, _)| *k != key);
            global_args.push((key, value));
        }
    }
    let global_vars = with_values(&global_args);

    // Stage headers: names, bases.
    let stages: Vec<_> = parsed.stages().collect();
    let names: Vec<Option<String>> = stages
        .iter()
        .map(|s| s.from.as_.as_ref().map(|(_, n)| n.value.to_lowercase()))
        .collect();
    let mut bases_of = Vec::new();
    for (idx, st) in stages.iter().enumerate() {
        let from = st.from;
        let ferr = |at: usize, m: String| map.error(at, Some("FROM"), m);
        let fl = flags::check("FROM", &from.options).map_err(|(at, m)| ferr(at, m))?;
        for f in &fl {
            let v = expand_word(f.value.as_deref().unwrap_or_default(), escape, &global_vars)
                .map_err(|e| ferr(f.value_pos, e.0))?;
            check_platform(&v).map_err(|m| ferr(f.value_pos, m))?;
        }
        let image = expand_word(&from.image.value, escape, &global_vars)
            .map_err(|e| ferr(from.image.span.start, e.0))?;
        if image.trim().is_empty() {
            return Err(ferr(
                from.image.span.start,
                format!(
                    "base name ({}) should not be blank after expansion",
                    from.image.value
                ),
            ));
        }
        let lower = image.to_lowercase();
        let base = if let Some(j) = names[..idx]
            .iter()
            .position(|n| n.as_deref() == Some(lower.as_str()))
        {
            Base::Stage(j)
        } else if lower == "scratch" {
            Base::Scratch
        } else {
            Base::Image(image)
        };
        bases_of.push(base);
    }

    let target = match &opts.target {
        Some(t) => names
            .iter()
            .position(|n| n.as_deref() == Some(t.to_lowercase().as_str()))
            .or_else(|| t.parse::<usize>().ok().filter(|&i| i < stages.len()))
            .ok_or_else(|| {
                FrontendError::general(format!("target stage {t:?} could not be found"))
            })?,
        None => stages.len() - 1,
    };

    let proxy: Vec<(String, Option<String>)> = opts
        .build_args
        .iter()
        .filter(|(k, _)| PROXY_ARGS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();

    // Dispatch every stage in order; errors stay with their stage and only
    // count if the target needs it (BuildKit does not resolve unused stages).
    let mut results: Vec<Result<StageOutput, FrontendError>> = Vec::new();
    let mut stage_warnings: Vec<Vec<String>> = Vec::new();
    for (idx, st) in stages.iter().enumerate() {
        let mut warnings = Vec::new();
        let from_at = st.from.from.span.start;
        let image_at = st.from.image.span.start;
        let base_config = match &bases_of[idx] {
            Base::Scratch => Ok(scratch_config()),
            Base::Stage(j) => results[*j]
                .as_ref()
                .map(|o| o.config.clone())
                .map_err(Clone::clone),
            Base::Image(r) => match bases.config(r) {
                Ok(Some(c)) => Ok(c),
                Ok(None) if opts.lenient_bases => {
                    warnings.push(format!(
                        "base image {r:?} is not in the store; planned with an empty config"
                    ));
                    Ok(ImageConfig::default())
                }
                Ok(None) => Err(map.error(
                    image_at,
                    Some("FROM"),
                    format!("image not found in the store: {r}"),
                )),
                Err(e) => Err(map.error(
                    image_at,
                    Some("FROM"),
                    format!("reading the config of {r}: {e}"),
                )),
            },
        };
        let result = base_config.and_then(|config| {
            let resolve = |v: &str| resolve_from(v, idx, &names);
            let (mut d, triggers) = Dispatcher::new(
                config,
                &opts.build_args,
                &global_args,
                proxy.clone(),
                &resolve,
            );
            let from_loc = map.location(from_at);
            for trigger in triggers {
                run_trigger(&mut d, &map, &from_loc, &trigger)?;
            }
            let origin = Origin {
                map: map.clone(),
                heredocs: &prepared.run_heredocs,
                fixed: None,
                escape,
            };
            for inst in st.instructions {
                d.dispatch(&origin, inst)?;
            }
            Ok(d.finish())
        });
        results.push(result);
        stage_warnings.push(warnings);
    }

    // The stages the target needs.
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if !needed.insert(i) {
            continue;
        }
        let out = results[i].as_ref().map_err(Clone::clone)?;
        if let Base::Stage(j) = bases_of[i] {
            todo.push(j);
        }
        todo.extend(out.deps.iter().copied());
    }
    // Report the earliest failing needed stage first.
    for &i in &needed {
        if let Err(e) = &results[i] {
            return Err(e.clone());
        }
    }

    let mut warnings = Vec::new();
    let mut plan_stages = Vec::new();
    for &i in &needed {
        warnings.append(&mut stage_warnings[i]);
        let Ok(out) = std::mem::replace(&mut results[i], Err(FrontendError::general(""))) else {
            continue;
        };
        declared.extend(out.declared_args.iter().cloned());
        plan_stages.push(Stage {
            index: i,
            name: names[i].clone(),
            base: bases_of[i].clone(),
            steps: out.steps,
            config: out.config,
        });
    }
    let mut reported = HashSet::new();
    for (k, _) in &opts.build_args {
        if !declared.contains(k) && !PROXY_ARGS.contains(&k.as_str()) && reported.insert(k) {
            warnings.push(format!(
                "build arg {k} was not consumed: no ARG in the target's stages declares it"
            ));
        }
    }
    let config = plan_stages
        .last()
        .map(|s| s.config.clone())
        .unwrap_or_default();
    Ok(Plan {
        stages: plan_stages,
        target,
        config,
        warnings,
    })
}

/// Resolves `COPY --from` / `--mount from=` for stage `idx`.
fn resolve_from(value: &str, idx: usize, names: &[Option<String>]) -> Result<CopyFrom, String> {
    let lower = value.to_lowercase();
    let by_name = names
        .iter()
        .position(|n| n.as_deref() == Some(lower.as_str()));
    let by_index = value.parse::<usize>().ok().filter(|_| by_name.is_none());
    match by_name.or(by_index) {
        Some(j) if j < idx => Ok(CopyFrom::Stage(j)),
        Some(j) if j == idx => Err(format!("circular dependency detected on stage: {value}")),
        Some(j) if j < names.len() => Err(format!(
            "stage {value:?} (stage {j}) is defined later; only earlier stages can be used"
        )),
        Some(_) if by_index.is_some() => Err(format!("stage index {value} does not exist")),
        _ => Ok(CopyFrom::Image(value.to_string())),
    }
}

/// Runs one ONBUILD trigger of the base image at the start of the stage.
fn run_trigger(
    d: &mut Dispatcher<'_>,
    map: &SourceMap<'_>,
    from_loc: &Location,
    trigger: &str,
) -> Result<(), FrontendError> {
    let text = dispatch::parse_trigger(trigger);
    let fail = |m: String| {
        map.error_at(
            from_loc.clone(),
            Some("FROM"),
            format!("ONBUILD trigger from the base image ({trigger}): {m}"),
        )
    };
    let prepared =
        heredoc::prepare(&text).map_err(|u| fail(format!("unterminated heredoc {}", u.name)))?;
    let parsed = parse_dockerfile::parse(&prepared.text).map_err(|e| fail(format!("{e:#}")))?;
    let origin = Origin {
        map: SourceMap {
            file: map.file.clone(),
            text: &text,
        },
        heredocs: &prepared.run_heredocs,
        fixed: Some(from_loc.clone()),
        escape: '\\',
    };
    for inst in parsed.instructions.iter().skip(1) {
        d.dispatch(&origin, inst)?;
    }
    Ok(())
}
