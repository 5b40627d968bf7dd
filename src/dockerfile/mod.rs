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
//! Modules: `parser` (directives, logical lines, here-documents),
//! `instruction` (keyword, flags, arguments), [`lex`] (word expansion),
//! `heredoc` (here-document markers), [`checks`] (build checks),
//! `args` (ARG scopes), `stages` (the stage graph), `flags` (instruction
//! flags), `dispatch` (instructions → steps/config), `text` (logical lines),
//! [`config`] (the image config), [`steps`] (the plan types), `error`
//! (located errors).

mod args;
pub mod checks;
pub mod chmod;
pub mod config;
mod dispatch;
mod error;
mod flags;
mod heredoc;
mod instruction;
pub mod lex;
mod parser;
mod stages;
pub mod steps;
mod text;

pub use checks::Check;
pub use config::{ContainerConfig, Healthcheck, ImageConfig};
pub use error::{FrontendError, Location};
pub use steps::{
    Base, CopyFrom, CopyStep, Heredoc, MountKind, Network, RunMount, RunStep, Stage, Step,
    StepKind, StepState,
};

use checks::{CheckConfig, Checks};
use dispatch::{Budget, Dispatcher, Origin, StageOutput};
use error::SourceMap;
use instruction::Instruction;
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

    /// The message for an image [`BaseImages::config`] did not find.
    fn not_found(&self, name: &str) -> String {
        format!("image not found in the store: {name}")
    }
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
    /// Build checks that fired (BuildKit's linter rules), after `# check=skip`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    /// `# check=error=true`: a build with [`Plan::checks`] fails.
    #[serde(skip)]
    pub checks_are_errors: bool,
}

/// The config of `FROM scratch` (BuildKit's empty image).
fn scratch_config() -> ImageConfig {
    let mut c = ImageConfig::default();
    c.config.working_dir = Some("/".into());
    c.config.env = Some(vec![format!("PATH={}", config::DEFAULT_PATH)]);
    c
}

/// The instructions d2v knows (BuildKit's command list).
pub(crate) const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Parses the text into instructions; errors located.
fn instructions(
    text: &str,
    map: &SourceMap<'_>,
) -> Result<(parser::Directives, Vec<Instruction>), FrontendError> {
    let parsed = parser::parse(text).map_err(|e| {
        let line = map.location(e.pos).line;
        let inst = map
            .line_text(line)
            .and_then(|l| l.split_whitespace().next())
            .filter(|w| w.chars().all(|c| c.is_ascii_alphabetic()))
            .map(str::to_string);
        map.error(e.pos, inst.as_deref(), e.message)
    })?;
    let escape = parsed.directives.escape;
    let insts: Vec<Instruction> = parsed
        .nodes
        .iter()
        .map(|n| Instruction::from_node(n, escape))
        .collect();
    for inst in &insts {
        if !KEYWORDS.contains(&inst.keyword.as_str()) {
            return Err(map.error(
                inst.pos,
                Some(&inst.written),
                format!("unknown instruction '{}'", inst.written),
            ));
        }
    }
    Ok((parsed.directives, insts))
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
    let map = SourceMap::new(opts.dockerfile_path.display().to_string(), text);
    if let Some(p) = &opts.platform {
        stages::check_platform(p).map_err(FrontendError::general)?;
    }
    let (directives, insts) = instructions(text, &map)?;
    let escape = directives.escape;
    let check_config = match &directives.check {
        Some((value, at)) => CheckConfig::parse(value).map_err(|m| map.error(*at, None, m))?,
        None => CheckConfig::default(),
    };

    // Global scope: ARGs before the first FROM; then one stage per FROM.
    let first_from = insts.iter().position(|i| i.keyword == "FROM");
    let (global_insts, stage_insts) = insts.split_at(first_from.unwrap_or(insts.len()));
    if let Some(bad) = global_insts.iter().find(|i| i.keyword != "ARG") {
        return Err(map.error(bad.pos, Some(&bad.keyword), "expected FROM"));
    }
    let mut stages: Vec<(&Instruction, Vec<&Instruction>)> = Vec::new();
    for inst in stage_insts {
        match stages.last_mut() {
            Some((_, body)) if inst.keyword != "FROM" => body.push(inst),
            _ => stages.push((inst, Vec::new())),
        }
    }
    if stages.is_empty() {
        let at = insts.last().map_or(0, |i| i.pos);
        return Err(map.error(at, None, "dockerfile contains no stages to build"));
    }
    let global_refs: Vec<&Instruction> = global_insts.iter().collect();
    let (global_args, mut declared) =
        args::global_scope(&global_refs, escape, &opts.build_args, &map)?;
    let global_vars = args::with_values(&global_args);
    let mut checks = Checks::default();
    let global_names: Vec<String> = global_args.iter().map(|(k, _)| k.clone()).collect();
    checks::syntax_checks(&insts, &global_names, &map, &mut checks);

    // Stage headers: names, bases.
    let froms: Vec<&Instruction> = stages.iter().map(|(f, _)| *f).collect();
    let (names, bases_of) = stages::headers(&froms, escape, &global_vars, &map)?;

    let target = stages::target_index(opts.target.as_deref(), &names)?;

    let (mut results, mut stage_warnings) = dispatch_stages(
        &stages,
        &names,
        &bases_of,
        &global_args,
        &DispatchInputs {
            map: &map,
            opts,
            bases,
            escape,
        },
    );
    for out in results.iter().flatten() {
        for c in &out.checks {
            checks.add(&c.rule, c.location.clone(), c.message.clone());
        }
    }

    // The stages the target needs; report the earliest failing one.
    let needed = stages::needed(target, &bases_of, |i| {
        results[i]
            .as_ref()
            .map(|o| o.deps.clone())
            .unwrap_or_default()
    });
    if let Some(e) = needed.iter().find_map(|&i| results[i].as_ref().err()) {
        return Err(e.clone());
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
    warnings.extend(args::unused_build_args(&opts.build_args, &declared));
    let config = plan_stages
        .last()
        .map(|s| s.config.clone())
        .unwrap_or_default();
    let mut found = checks.found;
    found.retain(|c| check_config.enabled(&c.rule));
    found.sort_by_key(|c| (c.location.line, c.location.col));
    Ok(Plan {
        stages: plan_stages,
        target,
        config,
        warnings,
        checks: found,
        checks_are_errors: check_config.error,
    })
}

/// What every stage's dispatch reads.
struct DispatchInputs<'a> {
    map: &'a SourceMap<'a>,
    opts: &'a PlanOptions,
    bases: &'a dyn BaseImages,
    escape: char,
}

/// Dispatches every stage in order (ONBUILD triggers of its base first);
/// each stage's result and warnings.
fn dispatch_stages(
    stages: &[(&Instruction, Vec<&Instruction>)],
    names: &[Option<String>],
    bases_of: &[Base],
    global_args: &[(String, Option<String>)],
    inputs: &DispatchInputs<'_>,
) -> (Vec<Result<StageOutput, FrontendError>>, Vec<Vec<String>>) {
    let DispatchInputs {
        map,
        opts,
        bases,
        escape,
    } = *inputs;
    // Dispatch every stage in order; errors stay with their stage and only
    // count if the target needs it (BuildKit does not resolve unused stages).
    let proxy = args::proxy_args(&opts.build_args);
    let mut results: Vec<Result<StageOutput, FrontendError>> = Vec::new();
    let mut stage_warnings: Vec<Vec<String>> = Vec::new();
    let budget = Budget::default();
    for (idx, (from, body)) in stages.iter().enumerate() {
        let mut warnings = Vec::new();
        let image_at = from.args_at(0);
        let base_config = match &bases_of[idx] {
            Base::Scratch => Ok((scratch_config(), false)),
            Base::Stage(j) => results[*j]
                .as_ref()
                .map(|o| (o.config.clone(), o.workdir_set))
                .map_err(Clone::clone),
            Base::Image(r) => match bases.config(r) {
                Ok(Some(c)) => Ok((c, false)),
                Ok(None) if opts.lenient_bases => {
                    warnings.push(format!(
                        "base image {r:?} is not in the store; planned with an empty config"
                    ));
                    Ok((ImageConfig::default(), false))
                }
                Ok(None) => Err(map.error(image_at, Some("FROM"), bases.not_found(r))),
                Err(e) => Err(map.error(
                    image_at,
                    Some("FROM"),
                    format!("reading the config of {r}: {e}"),
                )),
            },
        };
        let result = base_config.and_then(|(config, workdir_set)| {
            let resolve = |v: &str| stages::resolve_from(v, idx, names);
            let (mut d, triggers) = Dispatcher::new(
                config,
                &opts.build_args,
                global_args,
                proxy.clone(),
                &resolve,
            );
            d.workdir_set = workdir_set;
            let from_loc = map.location(from.pos);
            for trigger in triggers {
                run_trigger(&mut d, map, &from_loc, &trigger, &budget)?;
            }
            let origin = Origin {
                map: map.clone(),
                fixed: None,
                escape,
            };
            for inst in body {
                d.dispatch(&origin, inst, &budget)?;
            }
            Ok(d.finish())
        });
        results.push(result);
        stage_warnings.push(warnings);
    }
    (results, stage_warnings)
}

/// Runs one ONBUILD trigger of the base image at the start of the stage.
fn run_trigger(
    d: &mut Dispatcher<'_>,
    map: &SourceMap<'_>,
    from_loc: &Location,
    trigger: &str,
    budget: &Budget,
) -> Result<(), FrontendError> {
    let fail = |m: String| {
        map.error_at(
            from_loc.clone(),
            Some("FROM"),
            format!("ONBUILD trigger from the base image ({trigger}): {m}"),
        )
    };
    let trigger_map = SourceMap::new(map.file.clone(), trigger);
    let (_, insts) = instructions(trigger, &trigger_map).map_err(|e| fail(e.message))?;
    let origin = Origin {
        map: trigger_map,
        fixed: Some(from_loc.clone()),
        escape: '\\',
    };
    for inst in &insts {
        d.dispatch(&origin, inst, budget)?;
    }
    Ok(())
}
