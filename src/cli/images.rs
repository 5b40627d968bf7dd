//! `d2v import`, `d2v images`, `d2v inspect`, `d2v rm` and `d2v prune`.

use anyhow::{Context, Result};
use clap::Args;
use d2v::import::Source;
use d2v::store::Store;
use d2v::units::human_size;
use std::process::ExitCode;

/// Arguments of `d2v import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// oci:DIR[:TAG], docker-archive:FILE[:REF], docker-daemon:REF (DOCKER_HOST) or rootfs:PATH (tarball or directory)
    pub source: String,
    /// The name to give the image in the store
    #[arg(long = "as", value_name = "NAME")]
    pub name: String,
}

/// Imports an image.
pub fn import(args: ImportArgs) -> Result<ExitCode> {
    let source: Source = args.source.parse()?;
    let store = Store::open_default()?;
    let started = std::time::Instant::now();
    let image = match &source {
        Source::DockerDaemon(reference) => {
            d2v::daemon::Daemon::connect(&d2v::daemon::default_host())
                .and_then(|daemon| {
                    daemon.import(&store, reference, std::slice::from_ref(&args.name))
                })
                .map_err(anyhow::Error::from)
        }
        other => d2v::import::import(&store, other, &args.name).map_err(anyhow::Error::from),
    }
    .with_context(|| format!("couldn't import {}", args.source))?;
    eprintln!(
        "imported {} as {} ({} layers, {}, {:.1}s)",
        args.source,
        args.name,
        image.manifest.layers.len(),
        human_size(image.size()),
        started.elapsed().as_secs_f64()
    );
    println!("{}", image.id());
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `d2v images`.
#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// Lists the images in the store.
pub fn images(args: ImagesArgs) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let images = store.images()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&images)?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = images
        .iter()
        .map(|i| i.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("{:width$}  {:12}  {:>10}  CREATED", "NAME", "ID", "SIZE");
    let mut damaged = 0;
    for i in images {
        match (&i.id, &i.damaged) {
            (Some(id), None) => println!(
                "{:width$}  {:12}  {:>10}  {}",
                i.name,
                id.short(),
                human_size(i.size),
                i.created.as_deref().unwrap_or("-")
            ),
            (_, problem) => {
                damaged += 1;
                println!("{:width$}  {:12}  {:>10}  -", i.name, "DAMAGED", "-");
                eprintln!(
                    "d2v: warning: image {:?} is damaged: {}",
                    i.name,
                    problem.as_deref().unwrap_or("unreadable")
                );
            }
        }
    }
    if damaged > 0 {
        eprintln!(
            "d2v: warning: {damaged} damaged image(s); `d2v check --repair` removes their names"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `d2v inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The image's name
    pub name: String,
    /// Print the manifest instead of the config
    #[arg(long)]
    pub manifest: bool,
}

/// Prints an image's config (or manifest) as JSON.
pub fn inspect(args: InspectArgs) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let image = store.image(&args.name)?;
    let value = if args.manifest {
        serde_json::to_value(&image.manifest)?
    } else {
        image.config_json()?
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `d2v rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// The names to remove
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Removes image names (blobs stay until `d2v prune`).
pub fn rm(args: RmArgs) -> Result<ExitCode> {
    let store = Store::open_default()?;
    for name in &args.names {
        store.remove_image(name)?;
        println!("removed {name}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `d2v prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Keep at most this much layer data that only the step cache holds (e.g. 2G),
    /// evicting the least recently used cache entries first
    #[arg(long, value_name = "SIZE", value_parser = d2v::units::parse_size)]
    pub cache_budget: Option<u64>,
    /// Drop the whole step cache too
    #[arg(long)]
    pub all: bool,
}

/// Removes blobs no name (or cache entry) needs.
pub fn prune(args: PruneArgs) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let evicted = if args.all {
        store.cache_clear()?
    } else if let Some(budget) = args.cache_budget {
        store.cache_trim(budget)?
    } else {
        0
    };
    let report = store.prune()?;
    println!(
        "removed {} blobs, {} cache entries and {} scratch entries, freed {}",
        report.blobs,
        evicted,
        report.scratch,
        human_size(report.bytes)
    );
    for (path, why) in &report.failed {
        eprintln!("d2v: warning: could not remove {}: {why}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `d2v cache`.
#[derive(Args, Debug)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

/// `d2v cache` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum CacheCommand {
    /// List the step cache, least recently used first
    Ls {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

/// Lists the step cache.
pub fn cache(args: CacheArgs) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let CacheCommand::Ls { json } = args.command;
    let entries = store.cache_entries()?;
    if json {
        let list: Vec<_> = entries.iter().map(|(e, _)| e).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:12}  {:12}  {:>10}  STEP", "KEY", "LAYER", "SIZE");
    for (e, _) in &entries {
        let (layer, size) = match &e.layer {
            Some(l) => (l.digest.short().to_string(), human_size(l.size)),
            None => ("-".into(), "-".into()),
        };
        let mut step = e.description.replace('\n', " ");
        if step.len() > 60 {
            let mut cut = 57;
            while !step.is_char_boundary(cut) {
                cut -= 1;
            }
            step.truncate(cut);
            step.push_str("...");
        }
        println!(
            "{:12}  {:12}  {:>10}  {}",
            &e.key.as_str()[..12],
            layer,
            size,
            step
        );
    }
    Ok(ExitCode::SUCCESS)
}
