//! `d2v pull` and `d2v push`, and the registry options every command that
//! talks to a registry shares.

use anyhow::{Context, Result};
use clap::Args;
use d2v::registry::{AuthEntry, PushReport, Registry, RegistryOptions};
use d2v::source::reference::store_names;
use d2v::store::Store;
use std::process::ExitCode;

/// How registries are reached.
#[derive(Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// Registry credentials, [REGISTRY=]USER:PASS (repeatable; without
    /// REGISTRY= for every registry); the Docker config.json's auths are used too
    #[arg(
        long = "registry-auth",
        env = "D2V_REGISTRY_AUTH",
        value_name = "[REGISTRY=]USER:PASS",
        hide_env_values = true
    )]
    pub registry_auth: Vec<AuthEntry>,
    /// Talk plain HTTP to this registry (repeatable); loopback ones always are
    #[arg(
        long = "insecure-registry",
        env = "D2V_INSECURE_REGISTRIES",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub insecure_registry: Vec<String>,
}

impl RegistryArgs {
    /// The options these flags ask for.
    pub fn options(&self) -> RegistryOptions {
        RegistryOptions {
            auth: self.registry_auth.clone(),
            insecure: self.insecure_registry.clone(),
            ..RegistryOptions::default()
        }
    }

    /// A registry handle with these options.
    pub fn registry(&self) -> Result<Registry> {
        Ok(Registry::new(self.options())?)
    }
}

/// Arguments of `d2v pull`.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// The image: [REGISTRY/]REPOSITORY[:TAG|@DIGEST] (Docker Hub by default)
    pub reference: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Pulls an image into the store under the reference as written and its
/// normalised form; prints the digest the reference resolved to.
pub fn pull(args: PullArgs) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let registry = args.registry.registry()?;
    let started = std::time::Instant::now();
    let names = store_names(&args.reference);
    // The error names the reference already.
    let (image, pulled) = registry.pull_image(&store, &args.reference, &names)?;
    eprintln!(
        "pulled {} ({} layers, {:.1} MiB uncompressed, {:.1}s)",
        names.join(" = "),
        image.manifest.layers.len(),
        image.size() as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64()
    );
    println!("{}", pulled.reference_digest());
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `d2v push`.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// The image in the store
    pub name: String,
    /// Where to push it: REGISTRY/REPOSITORY[:TAG]
    pub reference: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Says what a push did on stderr and prints the manifest digest.
pub fn report_push(what: &str, report: &PushReport, started: std::time::Instant) {
    eprintln!(
        "pushed {what} to {}: {} blobs uploaded, {} already there ({:.1}s)",
        report.reference,
        report.uploaded.len(),
        report.existing.len(),
        started.elapsed().as_secs_f64()
    );
    println!("{}", report.digest);
}

/// Pushes a store image to a registry.
pub fn push(args: PushArgs) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let registry = args.registry.registry()?;
    let started = std::time::Instant::now();
    let report = registry
        .push_image(&store, &args.name, &args.reference)
        .with_context(|| format!("couldn't push {} to {}", args.name, args.reference))?;
    report_push(&args.name, &report, started);
    Ok(ExitCode::SUCCESS)
}
