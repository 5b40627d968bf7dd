//! Subcommand definitions and dispatch. Each subcommand lives in its own module.

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
enum Command {}

/// Parse the command line, run the subcommand and turn errors into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<ExitCode> = match cli.command {};
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("d2v: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
