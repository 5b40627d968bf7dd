//! `d2v pack`: write an ext4 root file system image (and `vm.json` beside it)
//! from an image in the store, a tar archive or a directory (the work is in
//! [`d2v::pack`]; this is flags and output).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use d2v::run::vmconfig::VmConfig;
use d2v_packer::{Ext4Writer, Options, Summary};

/// Flags of `d2v pack`.
#[derive(clap::Args, Debug)]
pub struct PackArgs {
    /// Image in the store to pack (its merged tree).
    #[arg(conflicts_with_all = ["from_tar", "from_dir"], required_unless_present_any = ["from_tar", "from_dir"])]
    pub name: Option<String>,
    /// Pack a tar archive instead (plain, gzip, zstd, bzip2 or xz; `-` for
    /// stdin), read as strictly as a layer; a later entry replaces an earlier one.
    #[arg(long, value_name = "FILE", conflicts_with = "from_dir")]
    pub from_tar: Option<PathBuf>,
    /// Pack a directory tree instead.
    #[arg(long, value_name = "DIR")]
    pub from_dir: Option<PathBuf>,
    /// Output image file.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,
    /// Free space to leave in the image (e.g. 256M, 1G).
    /// Default: max(64 MiB, 25% of the data); 0 with --read-only.
    #[arg(long, value_name = "SIZE", value_parser = d2v::units::parse_size)]
    pub free: Option<u64>,
    /// Exact image size (e.g. 2G); fails if the tree does not fit.
    #[arg(long, value_name = "SIZE", value_parser = d2v::units::parse_size)]
    pub size: Option<u64>,
    /// Leave out the jbd2 journal.
    #[arg(long)]
    pub no_journal: bool,
    /// Store every file and directory in data blocks, none inline in its
    /// inode (for readers without the ext4 `inline_data` feature).
    #[arg(long)]
    pub no_inline_data: bool,
    /// The tightest image for a read-only root (no journal, no free space
    /// unless --free asks for some); vm.json marks the drive read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Kernel image path written into vm.json.
    #[arg(long, value_name = "PATH", default_value = "vmlinux")]
    pub kernel: PathBuf,
    /// Also push the image and vm.json to a registry as an OCI artifact
    /// (REGISTRY/REPOSITORY[:TAG])
    #[arg(long, value_name = "REF")]
    pub push: Option<String>,
    #[command(flatten)]
    pub sources: super::sources::SourceArgs,
}

/// Progress on stderr, only when it is a terminal, at most ten times a second.
struct Progress {
    tty: bool,
    last: Instant,
}

impl Progress {
    fn tick(&mut self, w: &Ext4Writer) {
        if !self.tty || self.last.elapsed() < Duration::from_millis(100) {
            return;
        }
        self.last = Instant::now();
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r\x1b[Kpacking: {} entries, {:.1} MiB",
            w.entries(),
            w.data_bytes_written() as f64 / (1 << 20) as f64
        );
        let _ = e.flush();
    }

    fn files(&mut self, files: u64, bytes: u64) {
        if !self.tty || self.last.elapsed() < Duration::from_millis(100) {
            return;
        }
        self.last = Instant::now();
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r\x1b[Kpacking: {files} files, {:.1} MiB", mib(bytes));
        let _ = e.flush();
    }

    fn done(&self) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// One line: files, data bytes, image size, overhead.
pub fn summary_line(out: &Path, s: &Summary) -> String {
    format!(
        "{}: {} files, {} dirs, {} symlinks ({} files, {} dirs inline); {:.1} MiB data in a {:.1} MiB image ({:.1} MiB free, {:.1} MiB journal, overhead {:.2}%)",
        out.display(),
        s.files,
        s.dirs,
        s.symlinks,
        s.inline_files,
        s.inline_dirs,
        mib(s.data_bytes),
        mib(s.image_bytes),
        mib(s.free_bytes),
        mib(s.journal_bytes),
        s.overhead_percent()
    )
}

/// Run `d2v pack`.
pub fn run(args: PackArgs) -> anyhow::Result<ExitCode> {
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Some(
            v.trim()
                .parse::<i64>()
                .context("SOURCE_DATE_EPOCH must be an integer")?,
        ),
        Err(_) => None,
    };
    let opts = Options {
        journal: !args.no_journal && !args.read_only,
        inline_data: !args.no_inline_data,
        free_bytes: args.free,
        size: args.size,
        read_only_tight: args.read_only,
        source_date_epoch: epoch,
        ..Options::default()
    };
    let mut progress = Progress {
        tty: std::io::stderr().is_terminal(),
        last: Instant::now(),
    };
    if let Some(name) = &args.name {
        return pack_store_image(name, &args, opts, &mut progress);
    }
    let mut tick = |w: &Ext4Writer| progress.tick(w);
    let summary = if let Some(tar) = &args.from_tar {
        d2v::pack::pack_tar(tar, &args.output, opts, &mut tick)
    } else if let Some(dir) = &args.from_dir {
        d2v::pack::pack_dir(dir, &args.output, opts, &mut tick)
    } else {
        unreachable!("clap requires NAME, --from-tar or --from-dir")
    }
    .with_context(|| format!("couldn't pack into {}", args.output.display()))?;
    progress.done();
    let vm_json = write_vm_json(&args)?;
    println!("{}", summary_line(&args.output, &summary));
    push_artifact(&args, &vm_json)
}

/// Writes vm.json (Firecracker's `--config-file`) beside the packed image.
fn write_vm_json(args: &PackArgs) -> anyhow::Result<PathBuf> {
    let image = std::path::absolute(&args.output).unwrap_or_else(|_| args.output.clone());
    let vm_json = image.with_file_name("vm.json");
    VmConfig::new(&args.kernel, &image, args.read_only)
        .write(&vm_json)
        .with_context(|| format!("writing {}", vm_json.display()))?;
    Ok(vm_json)
}

/// `--push REF`: the packed image and its vm.json as an OCI artifact.
fn push_artifact(args: &PackArgs, vm_json: &Path) -> anyhow::Result<ExitCode> {
    let Some(reference) = &args.push else {
        return Ok(ExitCode::SUCCESS);
    };
    let store = d2v::store::Store::open_default()?;
    let registry = args.sources.registry.registry()?;
    let started = Instant::now();
    let report = registry
        .push_vm_artifact(&store, &args.output, vm_json, reference)
        .with_context(|| format!("couldn't push {} to {reference}", args.output.display()))?;
    super::registry::report_push(&args.output.display().to_string(), &report, started);
    Ok(ExitCode::SUCCESS)
}

/// `d2v pack NAME`: the image's merged tree, streamed from the layer blobs, plus
/// the init and its runtime config; an unchanged earlier pack is reused.
fn pack_store_image(
    name: &str,
    args: &PackArgs,
    opts: Options,
    progress: &mut Progress,
) -> anyhow::Result<ExitCode> {
    let store = d2v::store::Store::open_default()?;
    args.sources.ensure(&store, name)?;
    let started = Instant::now();
    let outcome = d2v::pack::pack_store_image(
        &store,
        name,
        Some(&args.output),
        opts,
        &mut |files, bytes| progress.files(files, bytes),
    )
    .with_context(|| format!("couldn't pack {name} into {}", args.output.display()))?;
    progress.done();
    let vm_json = write_vm_json(args)?;
    match outcome.summary {
        Some(summary) => println!(
            "{} ({:.2}s)",
            summary_line(&args.output, &summary),
            started.elapsed().as_secs_f64()
        ),
        None => println!(
            "{}: unchanged since the last pack of {name}, reused ({:.2}s)",
            args.output.display(),
            started.elapsed().as_secs_f64()
        ),
    }
    push_artifact(args, &vm_json)
}
