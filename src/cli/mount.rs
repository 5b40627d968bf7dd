//! `d2v mount` and `d2v umount`: the read-only FUSE view of an image.

use anyhow::{bail, Context, Result};
use clap::Args;
use d2v::mount;
use d2v::store::Store;
use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

/// Arguments of `d2v mount`.
#[derive(Args, Debug)]
pub struct MountArgs {
    /// The image's name
    pub name: String,
    /// An empty directory to mount it on
    pub dir: PathBuf,
    /// Stay attached and serve until unmounted or interrupted
    #[arg(long)]
    pub foreground: bool,
    /// FUSE server threads
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Let other users read the view too (FUSE allow_other; as root, or with
    /// user_allow_other in /etc/fuse.conf). setuid bits and device nodes are
    /// never honoured either way (nosuid,nodev)
    #[arg(long)]
    pub allow_other: bool,
    /// Internal: run as the detached server of a background mount
    #[arg(long, hide = true)]
    pub daemon: bool,
    /// Where a missing image is fetched from
    #[command(flatten)]
    pub sources: super::sources::SourceArgs,
}

const READY: &str = "d2v-mount-ready";

/// Mounts an image. In the background unless `--foreground`: a detached copy of
/// d2v serves the mount, and this returns once the mount is live.
pub fn mount(args: MountArgs) -> Result<ExitCode> {
    mount::check_mountpoint(&args.dir)?;
    if !args.daemon {
        args.sources.ensure(&Store::open_default()?, &args.name)?;
    }
    if args.foreground || args.daemon {
        return serve(&args);
    }
    let exe = std::env::current_exe().context("couldn't find the d2v executable")?;
    let mut child = Command::new(exe)
        .arg("mount")
        .arg(&args.name)
        .arg(&args.dir)
        .arg("--threads")
        .arg(args.threads.to_string())
        .args(args.allow_other.then_some("--allow-other"))
        .arg("--daemon")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("couldn't start the mount server")?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    if line.trim() == READY {
        return Ok(ExitCode::SUCCESS);
    }
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut err);
    }
    let status = child.wait()?;
    let err = err.trim().trim_start_matches("d2v: error: ");
    if err.is_empty() {
        bail!("the mount server exited ({status}) before the mount was ready");
    }
    bail!("{err}")
}

fn serve(args: &MountArgs) -> Result<ExitCode> {
    if args.daemon {
        mount::new_session();
    }
    let store = Store::open_default()?;
    let opts = mount::ServeOptions {
        threads: args.threads,
        allow_other: args.allow_other,
    };
    mount::serve(&store, &args.name, &args.dir, opts, || {
        if args.daemon {
            println!("{READY}");
            mount::detach_stdio();
        } else {
            eprintln!(
                "mounted {} on {}; Ctrl-C or `d2v umount` to stop",
                args.name,
                args.dir.display()
            );
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `d2v umount`.
#[derive(Args, Debug)]
pub struct UmountArgs {
    /// The mount point
    pub dir: PathBuf,
}

/// Unmounts a `d2v mount`.
pub fn umount(args: UmountArgs) -> Result<ExitCode> {
    d2v_fuse::unmount(&args.dir)
        .with_context(|| format!("couldn't unmount {}", args.dir.display()))?;
    Ok(ExitCode::SUCCESS)
}
