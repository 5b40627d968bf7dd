//! `d2v plan`: print the build plan and the image config a Dockerfile gives.

use anyhow::{bail, Context};
use clap::Args;
use d2v::dockerfile::{self, PlanOptions};
use d2v::store::Store;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The Dockerfile options `d2v build` and `d2v plan` share.
#[derive(Args, Debug)]
pub struct DockerfileArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile; `d2v plan -f -` reads stdin)
    #[arg(short = 'f', long = "file", value_name = "DOCKERFILE")]
    pub file: Option<PathBuf>,
    /// A build arg; `K` alone takes the value of the environment variable K
    #[arg(long = "build-arg", value_name = "K=V")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last)
    #[arg(long)]
    pub target: Option<String>,
    /// Target platform (only linux/amd64)
    #[arg(long)]
    pub platform: Option<String>,
}

impl DockerfileArgs {
    /// The Dockerfile's path: `-f`, else CONTEXT/Dockerfile.
    pub fn path(&self, context: &Path) -> PathBuf {
        self.file
            .clone()
            .unwrap_or_else(|| context.join("Dockerfile"))
    }

    /// The planner's options for the Dockerfile at `path`.
    pub fn plan_options(&self, path: PathBuf, lenient_bases: bool) -> anyhow::Result<PlanOptions> {
        Ok(PlanOptions {
            dockerfile_path: path,
            build_args: build_args(&self.build_args)?,
            target: self.target.clone(),
            platform: self.platform.clone(),
            lenient_bases,
        })
    }
}

/// Arguments of `d2v plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub dockerfile: DockerfileArgs,
    /// The build context directory.
    pub context: PathBuf,
}

/// Parses `--build-arg` values the way `docker build` does.
pub(super) fn build_args(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for a in raw {
        match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => out.push((k.to_string(), v.to_string())),
            Some(_) => bail!("invalid --build-arg {a:?}: the name is empty"),
            // Docker: a name without a value takes it from the environment,
            // and is dropped when the environment has none.
            None => {
                if let Ok(v) = std::env::var(a) {
                    out.push((a.clone(), v));
                }
            }
        }
    }
    Ok(out)
}

/// Shows the build checks that fired, one `warning: FILE:LINE:COL: Rule:
/// message` line each; with `# check=error=true`, fails when any did.
pub(super) fn report_checks(
    plan: &dockerfile::Plan,
    mut emit: impl FnMut(&str),
) -> anyhow::Result<()> {
    for c in &plan.checks {
        emit(&format!("warning: {c}"));
    }
    if plan.checks_are_errors && !plan.checks.is_empty() {
        let mut rules: Vec<&str> = plan.checks.iter().map(|c| c.rule.as_str()).collect();
        rules.dedup();
        bail!(
            "lint violation found for rules: {} (# check=error=true)",
            rules.join(", ")
        );
    }
    Ok(())
}

/// Runs `d2v plan`: prints `{"stages", "target", "config", "warnings"}` as
/// JSON on stdout; warnings also go to stderr.
pub fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let path = args.dockerfile.path(&args.context);
    let stdin = path.as_os_str() == "-";
    let text = if stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the Dockerfile from stdin")?;
        s
    } else {
        std::fs::read_to_string(&path)
            .with_context(|| format!("reading the Dockerfile {}", path.display()))?
    };
    let shown = if stdin {
        PathBuf::from("<stdin>")
    } else {
        path
    };
    // `plan` only describes: a base missing from the store is planned with
    // an empty config and a warning (`d2v build` fails on it instead).
    let opts = args.dockerfile.plan_options(shown, true)?;
    let store = Store::open_default()?;
    let plan = dockerfile::plan(&text, &opts, &store)?;
    for w in &plan.warnings {
        eprintln!("d2v: warning: {w}");
    }
    report_checks(&plan, |line| eprintln!("d2v: {line}"))?;
    let json = serde_json::to_string_pretty(&plan).context("serializing the plan")?;
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}
