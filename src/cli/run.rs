//! `d2v run`: boot an image and exit with its entrypoint's exit code.

use anyhow::{bail, Context};
use d2v::run::{self, InitrdChoice, PortMapping, RunOptions, Vmm};
use d2v::runtime_config::RuntimeOverride;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `d2v run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Image name in the store, packed on demand (fetched first, like
    /// `docker run`, when the store lacks it)
    pub name: Option<String>,
    /// A packed ext4 root filesystem to boot
    #[arg(long, conflicts_with = "name")]
    pub image: Option<PathBuf>,
    /// Kernel (bzImage or vmlinux); default: the host's from /boot
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// auto (module initramfs when the kernel needs one), none, or a file
    #[arg(long, default_value = "auto")]
    pub initrd: String,
    /// qemu or firecracker; default: firecracker when it and KVM work, else qemu
    #[arg(long)]
    pub vmm: Option<String>,
    /// Guest memory (256M, 1G)
    #[arg(long, default_value = "256M")]
    pub mem: String,
    /// vCPUs
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// Publish a guest TCP port on 127.0.0.1 (HOST:GUEST)
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Set an environment variable (K=V), after the image's ENV
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Run as this user (name, uid, user:group)
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Replace the image's ENTRYPOINT (and clear its CMD)
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Print boot timestamps and kernel messages
    #[arg(long)]
    pub debug: bool,
    /// Extra kernel command-line word (repeatable), e.g. d2v.grace_ms=500
    #[arg(long = "kernel-arg")]
    pub kernel_args: Vec<String>,
    /// Where a missing image is fetched from
    #[command(flatten)]
    pub sources: super::sources::SourceArgs,
    /// Arguments replacing the image's CMD
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// Packs store image `name` for booting (reusing an unchanged earlier pack):
/// every run boots a fresh copy of the image, as every `docker run` starts a
/// fresh container.
fn pack_for_run(name: &str, sources: &super::sources::SourceArgs) -> anyhow::Result<PathBuf> {
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
    Ok(packed.path)
}

/// Runs `d2v run`.
pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let image = match (&a.image, &a.name) {
        (Some(p), _) => p.clone(),
        (None, Some(name)) => pack_for_run(name, &a.sources)?,
        (None, None) => bail!("give an image name or --image PATH"),
    };
    let initrd = match a.initrd.as_str() {
        "auto" => InitrdChoice::Auto,
        "none" => InitrdChoice::None,
        p => InitrdChoice::Path(PathBuf::from(p)),
    };
    let vmm = match a.vmm.as_deref() {
        None => None,
        Some("qemu") => Some(Vmm::Qemu),
        Some("firecracker") => Some(Vmm::Firecracker),
        Some(v) => bail!("unknown --vmm {v:?}: expected qemu or firecracker"),
    };
    let mem_mib = run::parse_mem(&a.mem).with_context(|| format!("bad --mem {:?}", a.mem))?;
    let publish = a
        .publish
        .iter()
        .map(|p| p.parse::<PortMapping>())
        .collect::<Result<Vec<_>, _>>()?;
    for e in &a.env {
        if !e.contains('=') {
            bail!("bad -e {e:?}: expected K=V");
        }
    }
    let opts = RunOptions {
        kernel: a.kernel,
        initrd,
        vmm,
        mem_mib,
        cpus: a.cpus,
        publish,
        overrides: RuntimeOverride::docker_run(a.entrypoint, a.args, a.env, a.user),
        debug: a.debug,
        extra_cmdline: a.kernel_args,
    };
    let code = run::run_image(&image, &opts)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
