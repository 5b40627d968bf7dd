//! `d2v kernel build|path`: d2v's microVM guest kernel (see `d2v::run::kbuild`).

use anyhow::Context;
use d2v::run::kbuild;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `d2v kernel`.
#[derive(clap::Args, Debug)]
pub struct KernelArgs {
    #[command(subcommand)]
    command: KernelCommand,
}

#[derive(clap::Subcommand, Debug)]
enum KernelCommand {
    /// Build the microVM kernel from Debian's linux-source-6.1 (cached; `d2v
    /// run` boots it by default once built)
    Build {
        /// The kernel source tarball
        #[arg(long, default_value = kbuild::DEFAULT_SOURCE)]
        source: PathBuf,
        /// Where to put it (default: the first kernel directory:
        /// $D2V_KERNEL_DIR, ~/.cache/d2v/kernel, /var/cache/d2v/kernel for root)
        #[arg(long)]
        out: Option<PathBuf>,
        /// Parallel make jobs (default: the host's CPUs)
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
    },
    /// Print the kernel `d2v run` boots by default
    Path,
}

/// Runs `d2v kernel`.
pub fn run(a: KernelArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        KernelCommand::Build { source, out, jobs } => {
            let out = match out {
                Some(o) => o,
                None => kbuild::kernel_dirs()
                    .into_iter()
                    .next()
                    .context("no kernel directory")?,
            };
            let jobs = jobs.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            });
            let t0 = std::time::Instant::now();
            let path = kbuild::build(&source, &out, jobs, &mut |l| eprintln!("d2v kernel: {l}"))?;
            eprintln!("d2v kernel: done in {:.0} s", t0.elapsed().as_secs_f64());
            println!("{}", path.display());
        }
        KernelCommand::Path => match kbuild::installed() {
            Some(p) => println!("{}", p.display()),
            None => {
                let (k, _) = d2v::run::kernel::host_kernel()?;
                println!("{}", k.display());
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}
