//! Subcommand definitions and dispatch. Each subcommand lives in its own module.

mod build;
mod check;
mod images;
mod kernel;
mod mount;

mod pack;
mod plan;
mod registry;
mod run;
mod serve_layers;
mod sources;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Turn a Dockerfile into a bootable microVM root filesystem.
#[derive(Parser, Debug)]
#[command(name = "d2v", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build a Dockerfile into an image in the store
    Build(build::BuildArgs),
    /// Import a base image: oci:DIR[:TAG], docker-archive:FILE[:REF], docker-daemon:REF or rootfs:PATH
    Import(images::ImportArgs),
    /// List the images in the store
    Images(images::ImagesArgs),
    /// Print an image's config as JSON
    Inspect(images::InspectArgs),
    /// Remove image names (blobs stay until `d2v prune`)
    Rm(images::RmArgs),
    /// Remove blobs and scratch nothing refers to
    Prune(images::PruneArgs),
    /// Inspect the step cache
    Cache(images::CacheArgs),
    /// Verify every blob, layer index, image and cache entry of the store
    Check(check::CheckArgs),
    /// Pull an image from a registry into the store; prints its digest
    Pull(registry::PullArgs),
    /// Push an image of the store to a registry; prints the manifest digest
    Push(registry::PushArgs),
    /// Mount an image's root filesystem read-only through FUSE
    Mount(mount::MountArgs),
    /// Unmount a `d2v mount`
    Umount(mount::UmountArgs),
    /// Internal: serve a build step's view of its layers
    #[command(name = "__serve-layers", hide = true)]
    ServeLayers(serve_layers::ServeLayersArgs),
    /// Pack a tree (tar, directory, or store image) into a bootable ext4 image.
    Pack(pack::PackArgs),
    /// Print the build plan and image config of a Dockerfile as JSON
    Plan(plan::PlanArgs),
    /// Boot an image in a microVM and exit with its entrypoint's exit code
    Run(Box<run::RunArgs>),
    /// Build or locate d2v's microVM guest kernel
    Kernel(kernel::KernelArgs),
}

/// Parse the command line, run the subcommand and turn errors into an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // A bad `d2v run` flag is d2v's failure too: 125, as `docker run`.
            let run = std::env::args().nth(1).as_deref() == Some("run");
            return match e.exit_code() {
                0 => ExitCode::SUCCESS,
                _ if run => ExitCode::from(125),
                code => ExitCode::from(code.clamp(1, 255) as u8),
            };
        }
    };
    // Commands that mount (build) or remove what RUN steps wrote (prune) run
    // in the build namespace; this must happen while single-threaded.
    if matches!(cli.command, Command::Build(_) | Command::Prune(_)) {
        if let Err(err) = enter_build_namespace() {
            eprintln!("d2v: error: {err:#}");
            return ExitCode::FAILURE;
        }
    }
    // `docker run` exits 125 when the failure is its own, not the app's.
    let own_failure = if matches!(cli.command, Command::Run(_)) {
        ExitCode::from(125)
    } else {
        ExitCode::FAILURE
    };
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Build(a) => build::run(a),
        Command::Import(a) => images::import(a),
        Command::Images(a) => images::images(a),
        Command::Inspect(a) => images::inspect(a),
        Command::Rm(a) => images::rm(a),
        Command::Prune(a) => images::prune(a),
        Command::Cache(a) => images::cache(a),
        Command::Check(a) => check::check(a),
        Command::Pull(a) => registry::pull(a),
        Command::Push(a) => registry::push(a),
        Command::Mount(a) => mount::mount(a),
        Command::Umount(a) => mount::umount(a),
        Command::ServeLayers(a) => serve_layers::run(a),
        Command::Pack(args) => pack::run(args),
        Command::Plan(a) => plan::run(a),
        Command::Run(a) => run::run(*a),
        Command::Kernel(a) => kernel::run(a),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("d2v: error: {}", error_chain(&err));
            own_failure
        }
    }
}

/// Enters the private mount namespace (and, for an ordinary user, the user
/// namespace) builds run in; see `d2v::userns`.
fn enter_build_namespace() -> anyhow::Result<()> {
    use anyhow::Context;
    let report = d2v::userns::enter(d2v::store::Store::default_root())
        .context("couldn't set up the build's namespaces")?;
    if let Some(w) = report.warning {
        eprintln!("d2v: warning: {w}");
    }
    Ok(())
}

/// An error and its causes on one line, joined by ": ", each said once: a
/// cause whose text the message so far already contains (an error type that
/// prints its source inside its own message) is not repeated.
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("layer x: {source}")]
    struct Outer {
        source: Inner,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("tar entry \"a/../b\" has a '..' component")]
    struct Inner;

    #[test]
    fn every_cause_is_printed_once() {
        let err = anyhow::Error::from(Outer { source: Inner }).context("couldn't import rootfs:x");
        assert_eq!(
            error_chain(&err),
            "couldn't import rootfs:x: layer x: tar entry \"a/../b\" has a '..' component"
        );
        let plain = anyhow::anyhow!("no cause");
        assert_eq!(error_chain(&plain), "no cause");
    }
}
