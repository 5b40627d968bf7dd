//! `d2v __serve-layers` (hidden): serves the read-only view of a layer stack
//! for a build step until its parent closes our stdin (see `d2v::build::view`).

use anyhow::{Context, Result};
use clap::Args;
use d2v::store::oci::Digest;
use d2v::store::Store;
use std::path::PathBuf;
use std::process::ExitCode;

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
    d2v::build::view::serve(&store, &args.dir, args.id_shift, &layers)?;
    Ok(ExitCode::SUCCESS)
}
