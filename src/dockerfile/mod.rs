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
//! `args` (ARG scopes), `stages` (the stage graph), `flags` (instruction
//! flags), `dispatch` (instructions → steps/config), `text` (logical lines),
//! [`config`] (the image config), [`steps`] (the plan types), `error`
//! (located errors).

mod args;
pub mod config;
mod dispatch;
mod error;
mod flags;
mod heredoc;
pub mod lex;
mod stages;
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
}

/// The config of `FROM scratch` (BuildKit's empty image).
fn scratch_config() -> ImageConfig {
    let mut c = ImageConfig::default();
    c.config.working_dir = Some("/".into());
    c.config.env = Some(vec![format!("PATH={}", config::DEFAULT_PATH)]);
    c
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
        stages::check_platform(p).map_err(FrontendError::general)?;
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
    let (global_args, mut declared) = args::global_scope(&parsed, escape, &opts.build_args, &map)?;
    let global_vars = args::with_values(&global_args);

    // Stage headers: names, bases.
    let stages: Vec<_> = parsed.stages().collect();
    let (names, bases_of) = stages::headers(&stages, escape, &global_vars, &map)?;

    let target = stages::target_index(opts.target.as_deref(), &names)?;

    let proxy = args::proxy_args(&opts.build_args);

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
                Ok(None) => Err(map.error(image_at, Some("FROM"), bases.not_found(r))),
                Err(e) => Err(map.error(
                    image_at,
                    Some("FROM"),
                    format!("reading the config of {r}: {e}"),
                )),
            },
        };
        let result = base_config.and_then(|config| {
            let resolve = |v: &str| stages::resolve_from(v, idx, &names);
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
    Ok(Plan {
        stages: plan_stages,
        target,
        config,
        warnings,
    })
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
