//! `d2v __serve-layers` (hidden): serves the read-only view of a layer stack
//! for a build step until its parent closes our stdin (see `d2v::build::view`).

use anyhow::{Context, Result};
use clap::Args;
use d2v::store::oci::Digest;
use d2v::store::Store;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `d2v __serve-layers`.
#[derive(Args, Debug)]
pub struct ServeLayersArgs {
    /// The mount point (created by the caller)
    #[arg(long)]
    pub dir: PathBuf,
    /// Added to every uid and gid shown
    #[arg(long, default_value_t = 0)]
    pub id_shift: u32,
    /// The layers, bottom first (digests of the store at D2V_HOME)
    pub layers: Vec<String>,
}

/// Mounts, says so on stdout, and serves until stdin closes.
pub fn run(args: ServeLayersArgs) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let layers = args
        .layers
        .iter()
        .map(|d| d.parse().with_context(|| format!("bad layer digest {d}")))
        .collect::<Result<Vec<Digest>>>()?;
    let tree = store
        .merged_tree(&layers)
        .context("couldn't compose the layers")?;
    let opts = d2v_fuse::MountOptions {
        threads: 2,
        auto_unmount: false,
        allow_other: true,
        id_shift: args.id_shift,
        suid_dev: true,
        ..Default::default()
    };
    let mount = d2v_fuse::mount(Arc::new(tree), &args.dir, &opts)
        .with_context(|| format!("couldn't mount the layers on {}", args.dir.display()))?;
    let mut out = std::io::stdout();
    writeln!(out, "{}", d2v::build::view::READY)?;
    out.flush()?;
    // Until the build process closes the pipe (done, or dead).
    let mut buf = [0u8; 64];
    let mut stdin = std::io::stdin();
    while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
    mount
        .unmount()
        .with_context(|| format!("couldn't unmount {}", args.dir.display()))?;
    Ok(ExitCode::SUCCESS)
}
