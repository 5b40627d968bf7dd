//! `d2v check`: verify the store, and with `--repair` drop what cannot be trusted.

use anyhow::Result;
use clap::Args;
use d2v::store::{CheckOptions, Store};
use std::process::ExitCode;

/// Arguments of `d2v check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Remove damaged blobs, rebuild bad layer indexes, and drop the names of
    /// images (and the cache entries) that depend on what was removed
    #[arg(long)]
    pub repair: bool,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

/// Verifies every blob, layer index, image and cache entry of the store.
/// Exits 1 when something is wrong and `--repair` was not given.
pub fn check(args: CheckArgs) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let started = std::time::Instant::now();
    let report = store.check(CheckOptions {
        repair: args.repair,
    })?;
    let secs = started.elapsed().as_secs_f64();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for f in &report.findings {
            match &f.action {
                Some(action) => println!("{}: {} ({action})", f.subject, f.problem),
                None => println!("{}: {}", f.subject, f.problem),
            }
        }
        eprintln!(
            "checked {} blobs ({}, {:.0} MB/s), {} layer indexes, {} images, {} cache entries in {secs:.1}s: {}",
            report.blobs,
            d2v::units::human_size(report.bytes),
            report.bytes as f64 / 1e6 / secs.max(1e-9),
            report.indexes,
            report.images,
            report.cache_entries,
            match (report.findings.len(), args.repair) {
                (0, _) => "all good".to_string(),
                (n, true) => format!("{n} problem(s), repaired as shown"),
                (n, false) => format!("{n} problem(s); `d2v check --repair` drops what cannot be trusted"),
            }
        );
    }
    Ok(if report.findings.is_empty() || args.repair {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
