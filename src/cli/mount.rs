//! `d2v mount` and `d2v umount`: the read-only FUSE view of an image.

use anyhow::{bail, Context, Result};
use clap::Args;
use d2v::store::Store;
use nix::sys::signal::{SigSet, Signal};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;

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
    check_mountpoint(&args.dir)?;
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

fn check_mountpoint(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir).with_context(|| format!("mount point {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("mount point {} is not a directory", dir.display());
    }
    if std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "mount point {} is not empty (or is already a mount)",
            dir.display()
        );
    }
    Ok(())
}

/// Builds the merged tree of `name` from the store.
pub fn merged_tree(store: &Store, name: &str) -> Result<d2v_fuse::MergedTree> {
    let image = store.image(name)?;
    store
        .merged_tree(&image.layers())
        .with_context(|| format!("couldn't compose the layers of {name}"))
}

fn serve(args: &MountArgs) -> Result<ExitCode> {
    if args.daemon {
        // We are not a process group leader after exec, so this cannot fail.
        let _ = nix::unistd::setsid();
    }
    let store = Store::open_default()?;
    let tree = Arc::new(merged_tree(&store, &args.name)?);
    let signals = block_stop_signals();
    // Root's view unmounts itself if the server dies (fusermount3's
    // auto_unmount, which needs the kernel's allow_other; d2v-fuse then turns
    // other users away itself). An ordinary user's fusermount3 allows that
    // only with user_allow_other, so without --allow-other its view does not.
    let root = nix::unistd::geteuid().is_root();
    let opts = d2v_fuse::MountOptions {
        threads: args.threads.max(1),
        allow_other: args.allow_other,
        auto_unmount: root || args.allow_other,
        suid_dev: false,
        id_shift: 0,
        ..Default::default()
    };
    let mount = d2v_fuse::mount(tree, &args.dir, &opts)
        .with_context(|| format!("couldn't mount {} on {}", args.name, args.dir.display()))?;
    let dir = args.dir.clone();
    std::thread::spawn(move || {
        wait_for(signals);
        let _ = d2v_fuse::unmount(&dir);
    });
    if args.daemon {
        println!("{READY}");
        detach_stdio();
    } else {
        eprintln!(
            "mounted {} on {}; Ctrl-C or `d2v umount` to stop",
            args.name,
            args.dir.display()
        );
    }
    mount.wait();
    Ok(ExitCode::SUCCESS)
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread and every thread it starts later.
fn block_stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(sig);
    }
    let _ = set.thread_block();
    set
}

fn wait_for(set: SigSet) {
    let _ = set.wait();
}

/// Points stdout and stderr at /dev/null so the parent's pipes can close.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
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
