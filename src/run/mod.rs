//! `d2v run`: boot a packed image under QEMU (`-M microvm`, virtio-mmio, like
//! Firecracker) or Firecracker, stream its console and return the entrypoint's
//! exit code.
//!
//! The seam for `d2v run NAME` is [`run_image`]: give it the packed ext4 and the
//! per-boot [`RuntimeOverride`]s in [`RunOptions`].
//!
//! ```no_run
//! use d2v::run::{run_image, RunOptions};
//! let code = run_image("rootfs.ext4".as_ref(), &RunOptions::default())?;
//! std::process::exit(code);
//! # Ok::<(), d2v::run::RunError>(())
//! ```

pub mod console;
pub mod firecracker;
pub mod initramfs;
pub mod kernel;
pub mod qemu;

use crate::runtime_config::RuntimeOverride;
use std::path::{Path, PathBuf};

/// The static guest init (`d2v-init`), built by `build.rs` and embedded here so
/// `d2v pack` can write it to `/sbin/d2v-init` with no extra step.
pub fn init_binary() -> &'static [u8] {
    include_bytes!(env!("D2V_INIT_PATH"))
}

/// What can go wrong before or around a boot. The guest's own failures arrive
/// as exit codes with a console line from init.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No `--kernel` and nothing usable in /boot.
    #[error("no kernel to boot: none in /boot (install Debian's linux-image-amd64) and no --kernel given")]
    NoKernel,
    /// `--kernel PATH` does not exist.
    #[error("kernel {0} not found")]
    KernelNotFound(PathBuf),
    /// The image cannot be opened for reading and writing.
    #[error("couldn't open image {path}: {source}")]
    Image {
        /// The image.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file d2v reads or writes around the boot.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The VMM binary is missing or could not start.
    #[error("couldn't start {program}: {source} (install Debian's qemu-system-x86)")]
    Vmm {
        /// The binary.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// Firecracker was asked for but cannot run here.
    #[error("firecracker can't run here: {0}")]
    Firecracker(String),
    /// A `-p` value that is not `HOST:GUEST`.
    #[error("bad port mapping {0:?}: expected HOST:GUEST")]
    BadPort(String),
    /// The VM stopped without init reporting an exit code.
    #[error("the VM stopped without reporting an exit code (VMM exit status {0})")]
    NoExitCode(i32),
}

impl RunError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> RunError {
        RunError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Which VMM boots the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vmm {
    /// QEMU `-M microvm`.
    Qemu,
    /// Firecracker (needs a usable KVM).
    Firecracker,
}

/// `--initrd auto|PATH|none`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum InitrdChoice {
    /// The module initramfs when the kernel's virtio/ext4 drivers are modules.
    #[default]
    Auto,
    /// No initramfs.
    None,
    /// This file.
    Path(PathBuf),
}

/// `-p HOST:GUEST` (TCP, bound to 127.0.0.1 on the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    /// Host port.
    pub host: u16,
    /// Guest port.
    pub guest: u16,
}

impl std::str::FromStr for PortMapping {
    type Err = RunError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RunError::BadPort(s.to_string());
        let spec = s.strip_suffix("/tcp").unwrap_or(s);
        let (h, g) = spec.split_once(':').ok_or_else(bad)?;
        Ok(PortMapping {
            host: h.parse().map_err(|_| bad())?,
            guest: g.parse().map_err(|_| bad())?,
        })
    }
}

/// How to boot.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Kernel image (bzImage or vmlinux); default: the host's from /boot.
    pub kernel: Option<PathBuf>,
    /// Initramfs choice.
    pub initrd: InitrdChoice,
    /// VMM; `None` picks Firecracker when it and KVM are usable, else QEMU.
    pub vmm: Option<Vmm>,
    /// Guest memory in MiB.
    pub mem_mib: u32,
    /// vCPUs.
    pub cpus: u32,
    /// Published ports (QEMU user networking; eth0 is configured by init).
    pub publish: Vec<PortMapping>,
    /// Per-boot overrides of the image's runtime config.
    pub overrides: RuntimeOverride,
    /// `d2v.debug`: init prints boot timestamps; the kernel is not quiet.
    pub debug: bool,
    /// Extra kernel command-line words.
    pub extra_cmdline: Vec<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            kernel: None,
            initrd: InitrdChoice::Auto,
            vmm: None,
            mem_mib: 256,
            cpus: 1,
            publish: Vec::new(),
            overrides: RuntimeOverride::default(),
            debug: false,
            extra_cmdline: Vec::new(),
        }
    }
}

/// Parses `256M`, `1G`, `512` (MiB) into MiB.
pub fn parse_mem(s: &str) -> Option<u32> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'G' | 'g' => (&s[..s.len() - 1], 1024),
        'M' | 'm' => (&s[..s.len() - 1], 1),
        _ => (s, 1),
    };
    num.parse::<u32>().ok()?.checked_mul(mult)
}

/// Kernel, initramfs and version to boot for `opts`.
pub struct BootFiles {
    /// The kernel to hand the VMM (an unpacked vmlinux when possible).
    pub kernel: PathBuf,
    /// The initramfs, if any.
    pub initrd: Option<PathBuf>,
}

/// Resolves the kernel and initramfs: the host's kernel unpacked and cached,
/// the module initramfs built and cached when needed.
pub fn boot_files(opts: &RunOptions) -> Result<BootFiles, RunError> {
    let (source, version) = match &opts.kernel {
        Some(k) => {
            if !k.is_file() {
                return Err(RunError::KernelNotFound(k.clone()));
            }
            (k.clone(), kernel_version_of(k))
        }
        None => {
            let (k, v) = kernel::host_kernel()?;
            (k, Some(v))
        }
    };
    let kernel = kernel::bootable_kernel(&source)?;
    let initrd = match &opts.initrd {
        InitrdChoice::None => None,
        InitrdChoice::Path(p) => {
            if !p.is_file() {
                return Err(RunError::io(p, std::io::ErrorKind::NotFound.into()));
            }
            Some(p.clone())
        }
        InitrdChoice::Auto => match version {
            Some(v) if initramfs::needs_initramfs(&v) => {
                Some(initramfs::initramfs_for(&v, init_binary())?)
            }
            _ => None,
        },
    };
    Ok(BootFiles { kernel, initrd })
}

/// `vmlinuz-<ver>` → `<ver>`, when its modules are installed.
fn kernel_version_of(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let v = name
        .strip_prefix("vmlinuz-")
        .or_else(|| name.strip_prefix("vmlinux-"))?;
    Path::new("/lib/modules")
        .join(v)
        .is_dir()
        .then(|| v.to_string())
}

/// Boots `image` (a packed ext4 with `/sbin/d2v-init` and
/// `/etc/d2v/config.json`) and returns the entrypoint's exit code.
pub fn run_image(image: &Path, opts: &RunOptions) -> Result<i32, RunError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(|source| RunError::Image {
            path: image.to_path_buf(),
            source,
        })?;
    let files = boot_files(opts)?;
    let kvm = || qemu::choose_accel(&files.kernel) == qemu::Accel::Kvm;
    let vmm = match opts.vmm {
        Some(v) => v,
        None if firecracker::installed() && opts.publish.is_empty() && kvm() => Vmm::Firecracker,
        None => Vmm::Qemu,
    };
    match vmm {
        Vmm::Firecracker if !firecracker::installed() => Err(RunError::Firecracker(
            "no firecracker binary on PATH".into(),
        )),
        Vmm::Firecracker if !kvm() => Err(RunError::Firecracker(
            "KVM cannot run a kernel on this host".into(),
        )),
        Vmm::Firecracker => firecracker::boot(image, &files, opts),
        Vmm::Qemu => qemu::boot(image, &files, opts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_values() {
        assert_eq!(parse_mem("256M"), Some(256));
        assert_eq!(parse_mem("1G"), Some(1024));
        assert_eq!(parse_mem("64"), Some(64));
        assert_eq!(parse_mem("x"), None);
        let p: PortMapping = "18080:8080".parse().unwrap();
        assert_eq!((p.host, p.guest), (18080, 8080));
        assert!("8080".parse::<PortMapping>().is_err());
        assert!("a:b".parse::<PortMapping>().is_err());
    }

    #[test]
    fn embedded_init_is_a_static_elf_under_one_mib() {
        let elf = init_binary();
        assert!(elf.starts_with(b"\x7fELF"));
        assert!(elf.len() < 1 << 20, "init is {} bytes", elf.len());
    }
}
