//! `d2v run`: boot an image as `docker run` runs a container, and exit with
//! its entrypoint's exit code.

use anyhow::{bail, Context};
use d2v::run::{self, InitrdChoice, PortMapping, RunOptions, Vmm, Volume};
use d2v::runtime_config::docker_run_overrides;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `d2v run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Image name in the store, packed on demand (fetched first, like
    /// `docker run`, when the store lacks it)
    pub name: Option<String>,
    /// A packed ext4 root filesystem to boot (never modified)
    #[arg(long, conflicts_with = "name")]
    pub image: Option<PathBuf>,
    /// Keep stdin open and send it to the entrypoint
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the entrypoint a terminal (the host's size; resizes follow)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set an environment variable: K=V, or K for the host's value
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file (K=V lines, # comments)
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// Run as this user (name, uid, user:group)
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Working directory inside the guest
    #[arg(long, short = 'w')]
    pub workdir: Option<String>,
    /// The guest's hostname (default: a random container ID)
    #[arg(long)]
    pub hostname: Option<String>,
    /// Replace the image's ENTRYPOINT (and clear its CMD)
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Publish a guest port: [IP:][HOST:]GUEST[/tcp|/udp] (no HOST: a free one)
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<PortMapping>,
    /// Publish every EXPOSEd port on a free host port
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Network: default (outbound access, like Docker's bridge) or none
    #[arg(long, default_value = "default", value_parser = run::parse_network, action = clap::ArgAction::Set)]
    pub network: bool,
    /// Share a host directory: HOST:GUEST[:ro]
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<Volume>,
    /// Keep the run's disk under this name; `d2v run --name N` again boots it
    #[arg(long = "name")]
    pub container: Option<String>,
    /// Remove the named run's disk when it exits
    #[arg(long)]
    pub rm: bool,
    /// Seconds between the stop signal and SIGKILL when d2v is asked to stop
    #[arg(long, default_value_t = 10)]
    pub stop_timeout: u64,
    /// Size of the run's disk (the root filesystem grows to it): 2G, 512M
    #[arg(long, value_parser = d2v::units::parse_size)]
    pub disk_size: Option<u64>,
    /// Guest memory (256M, 1G)
    #[arg(long, short = 'm', alias = "memory", default_value = "1G", value_parser = d2v::units::parse_mem_mib)]
    pub mem: u32,
    /// vCPUs (default: the host's, at most 4)
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Kernel (vmlinux or bzImage); default: `d2v kernel build`'s, else the host's
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// auto (module initramfs when the kernel needs one), none, or a file
    #[arg(long, default_value = "auto")]
    pub initrd: InitrdChoice,
    /// qemu or firecracker; default: firecracker when it and KVM work and the
    /// run needs nothing only QEMU offers, else qemu
    #[arg(long)]
    pub vmm: Option<Vmm>,
    /// Kernel and init messages on stderr
    #[arg(long)]
    pub debug: bool,
    /// Extra kernel command-line word (repeatable)
    #[arg(long = "kernel-arg")]
    pub kernel_args: Vec<String>,
    /// Milliseconds leftover processes get between SIGTERM and SIGKILL after
    /// the entrypoint exits
    #[arg(long, hide = true)]
    pub grace_ms: Option<u64>,
    /// Where a missing image is fetched from
    #[command(flatten)]
    pub sources: super::sources::SourceArgs,
    /// Arguments replacing the image's CMD
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// A packed store image and the ports it EXPOSEs.
struct Packed {
    path: PathBuf,
    exposed: Vec<String>,
}

/// Packs store image `name` for booting, reusing an unchanged earlier pack
/// (runs never modify it: each boots its own copy-on-write disk). The one
/// place `d2v run` packs.
fn pack_for_run(name: &str, sources: &super::sources::SourceArgs) -> anyhow::Result<Packed> {
    let store = d2v::store::Store::open_default()?;
    sources.ensure(&store, name)?;
    let writer = d2v_packer::Options {
        source_date_epoch: Some(0),
        ..Default::default()
    };
    let packed = d2v::pack::pack_store_image(&store, name, None, writer, &mut |_, _| {})
        .with_context(|| format!("couldn't pack {name}"))?;
    if let Some(s) = packed.summary {
        eprintln!(
            "packed {name}: {} files, {:.1} MiB image",
            s.files,
            s.image_bytes as f64 / (1 << 20) as f64
        );
    }
    Ok(Packed {
        path: packed.path,
        exposed: packed.config.exposed_ports,
    })
}

/// `-e K=V`, `-e K` (the host's value, dropped when unset, as Docker does)
/// The run's options from its flags and the image's exposed ports (`-P`).
fn options(a: RunArgs, exposed: &[String]) -> anyhow::Result<RunOptions> {
    let mut publish = a.publish;
    if a.publish_all {
        publish.extend(exposed.iter().filter_map(|e| PortMapping::for_exposed(e)));
    }
    if !a.network && !publish.is_empty() {
        bail!("-p and -P need a network: drop --network none");
    }
    let mut overrides = docker_run_overrides(
        a.entrypoint,
        a.args,
        run::environment(&a.env, &a.env_file)?,
        a.user,
    );
    overrides.workdir = a.workdir;
    overrides.hostname = a.hostname;
    Ok(RunOptions {
        kernel: a.kernel,
        initrd: a.initrd,
        vmm: a.vmm,
        mem_mib: a.mem,
        cpus: a.cpus.unwrap_or_else(run::default_cpus),
        network: a.network,
        publish,
        volumes: a.volume,
        overrides,
        stdin: a.interactive,
        tty: a.tty,
        stop_timeout: Duration::from_secs(a.stop_timeout),
        disk_size: a.disk_size,
        name: a.container,
        remove: a.rm,
        debug: a.debug,
        grace_ms: a.grace_ms,
        extra_cmdline: a.kernel_args,
    })
}

/// Runs `d2v run`.
pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let (image, exposed) = match (&a.image, &a.name) {
        (Some(p), _) => (p.clone(), Vec::new()),
        (None, Some(name)) => {
            let p = pack_for_run(name, &a.sources)?;
            (p.path, p.exposed)
        }
        (None, None) => bail!("give an image name or --image PATH"),
    };
    let opts = options(a, &exposed)?;
    let code = run::run_image(Path::new(&image), &opts)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
