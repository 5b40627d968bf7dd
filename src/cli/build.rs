//! `d2v build`: build a Dockerfile natively into an image in the store.

use anyhow::{bail, Context, Result};
use clap::Args;
use d2v::build::entitlements::Entitlements;
use d2v::build::executor::{self, BuildError, BuildOptions, StageBuilder};
use d2v::build::progress::{Progress, ProgressMode};
use d2v::daemon::stage::BuildRequest;
use d2v::daemon::DockerStageBuilder;
use d2v::dockerfile;
use d2v::store::Store;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use d2v::build::cache_share::{self, CacheSpec};
use d2v::build::interrupt;
use d2v::build::secret::SecretSpec;

/// Arguments of `d2v build`.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The name to give the image
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tag: String,
    #[command(flatten)]
    pub dockerfile: super::plan::DockerfileArgs,
    /// Run every step, ignoring the step cache
    #[arg(long)]
    pub no_cache: bool,
    /// A secret for RUN --mount=type=secret: id=ID,src=PATH
    #[arg(long, value_name = "id=ID,src=PATH")]
    pub secret: Vec<SecretSpec>,
    /// Progress output
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Who builds the stages that other stages depend on: native (here), or
    /// docker (a Docker-API daemon's build API; see --docker-host)
    #[arg(long = "stage-builder", value_enum, default_value_t = StageBuilderKind::Native)]
    pub stage_builder: StageBuilderKind,
    /// Share the step cache: push it to a registry after the build. REF, or
    /// type=registry,ref=REF[,mode=min|max] (max: every stage's steps)
    #[arg(long = "cache-to", value_name = "REF")]
    pub cache_to: Vec<CacheSpec>,
    /// Use a step cache a registry holds (pushed with --cache-to): REF, or
    /// type=registry,ref=REF
    #[arg(long = "cache-from", value_name = "REF")]
    pub cache_from: Vec<CacheSpec>,
    /// Grant RUN steps an entitlement: network.host (RUN --network=host),
    /// security.insecure (RUN --security=insecure); repeatable or comma-separated
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// Only run the build checks (BuildKit's `docker build --check`): print
    /// them and exit 1 when any fired, without building
    #[arg(long)]
    pub check: bool,
    /// Where base images come from
    #[command(flatten)]
    pub sources: super::sources::SourceArgs,
    /// The build context directory
    pub context: PathBuf,
}

/// `--stage-builder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StageBuilderKind {
    /// Every stage is built by d2v.
    Native,
    /// Named stages other stages depend on are built by the Docker daemon.
    Docker,
}

/// without their config, as `d2v plan` does) and report the checks only.
fn check_only(
    text: &str,
    mut opts: dockerfile::PlanOptions,
    bases: &dyn dockerfile::BaseImages,
) -> Result<ExitCode> {
    opts.lenient_bases = true;
    let plan = dockerfile::plan(text, &opts, bases)?;
    let reported = super::plan::report_checks(&plan, |line| eprintln!("{line}"));
    match plan.checks.len() {
        0 => eprintln!("Check complete, no warnings found."),
        n => eprintln!(
            "Check complete, {n} warning{} found!",
            if n == 1 { " has been" } else { "s have been" }
        ),
    }
    reported?;
    Ok(if plan.checks.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `d2v build`.
pub fn run(args: BuildArgs) -> Result<ExitCode> {
    let path = args.dockerfile.path(&args.context);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("couldn't read the Dockerfile {}", path.display()))?;
    if !args.context.is_dir() {
        bail!(
            "the build context {} is not a directory",
            args.context.display()
        );
    }
    let context = args.context.canonicalize()?;
    let dockerfile_in_context = path.canonicalize().ok().and_then(|p| {
        p.strip_prefix(&context)
            .ok()
            .map(|r| r.to_string_lossy().into_owned())
    });
    let secrets: HashMap<_, _> = args.secret.into_iter().map(|s| (s.id, s.src)).collect();
    d2v::store::validate_name(&args.tag)?;
    let allow = Entitlements::parse(&args.allow)?;

    let store = Store::open_default()?;
    let opts = args.dockerfile.plan_options(path.clone(), false)?;
    // Ask for the daemon first: without it, nothing else is worth doing.
    let stage_builder: Option<Arc<dyn StageBuilder>> = match args.stage_builder {
        StageBuilderKind::Native => None,
        StageBuilderKind::Docker => {
            let request = BuildRequest {
                context: context.clone(),
                dockerfile_text: text.clone(),
                dockerfile_in_context: dockerfile_in_context.clone(),
                build_args: opts.build_args.clone(),
                no_cache: args.no_cache,
            };
            let host = args.sources.docker_host();
            Some(Arc::new(
                DockerStageBuilder::connect(&host, request)
                    .context("--stage-builder docker needs a Docker-API daemon")?,
            ))
        }
    };
    if args.check {
        // Checks need no base image from elsewhere: the store's, or none.
        return check_only(&text, opts, &store);
    }
    let resolver = args.sources.resolver(&store)?;
    let plan = dockerfile::plan(&text, &opts, &resolver)?;
    let progress = Progress::new(args.progress);
    for w in &plan.warnings {
        progress.note(&format!("warning: {w}"));
    }
    super::plan::report_checks(&plan, |line| progress.note(line))?;

    let cancel = interrupt::cancel_on_signals();
    let build_opts = BuildOptions {
        context,
        dockerfile_in_context,
        tag: args.tag.clone(),
        no_cache: args.no_cache,
        secrets,
        stage_builder,
        allow,
    };
    let registry = if args.cache_to.is_empty() && args.cache_from.is_empty() {
        None
    } else {
        Some(args.sources.registry.registry()?)
    };
    if let Some(registry) = &registry {
        cache_share::import(&store, registry, &args.cache_from, &progress)?;
    }
    match executor::build(&resolver, &plan, &build_opts, &progress, cancel) {
        Ok(report) => {
            if let Some(registry) = &registry {
                cache_share::export(
                    &store,
                    registry,
                    &args.cache_to,
                    &report.target_steps,
                    &report.all_steps,
                    &progress,
                )?;
            }
            progress.finish(&format!(
                "built {} ({}): {} step{} run, {} cached{}",
                args.tag,
                report.image.id().short(),
                report.executed,
                if report.executed == 1 { "" } else { "s" },
                report.cached,
                if report.unchanged {
                    ", image unchanged"
                } else {
                    ""
                }
            ));
            println!("{}", report.image.id());
            Ok(ExitCode::SUCCESS)
        }
        Err(BuildError::Cancelled) => {
            eprintln!("d2v: build interrupted; nothing was recorded for the unfinished step");
            Ok(ExitCode::from(130))
        }
        Err(e) => Err(e.into()),
    }
}
