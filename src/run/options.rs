//! `d2v run`'s options: what `docker run`'s flags and the VM's own ask for.

use super::ports::PortMapping;
use super::RunError;
use crate::runtime_config::RuntimeOverride;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which VMM boots the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vmm {
    /// QEMU `-M microvm`.
    Qemu,
    /// Firecracker (needs a usable KVM).
    Firecracker,
}

impl std::str::FromStr for Vmm {
    type Err = RunError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "qemu" => Ok(Vmm::Qemu),
            "firecracker" => Ok(Vmm::Firecracker),
            _ => Err(RunError::BadFlag {
                flag: "--vmm",
                value: s.to_string(),
                expected: "expected qemu or firecracker",
            }),
        }
    }
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

impl std::str::FromStr for InitrdChoice {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => InitrdChoice::Auto,
            "none" => InitrdChoice::None,
            p => InitrdChoice::Path(PathBuf::from(p)),
        })
    }
}

/// `--network default|bridge|none`: whether the VM gets a network.
pub fn parse_network(s: &str) -> Result<bool, RunError> {
    match s {
        "default" | "bridge" => Ok(true),
        "none" => Ok(false),
        _ => Err(RunError::BadFlag {
            flag: "--network",
            value: s.to_string(),
            expected: "expected default or none",
        }),
    }
}

/// The environment `-e` and `--env-file` give, as `docker run` reads them:
/// files first, then `-e` in order; `K=V` as is, a bare `K` takes d2v's own
/// value and is dropped when d2v has none; `#` lines and blank lines in a
/// file are skipped.
pub fn environment(env: &[String], files: &[PathBuf]) -> Result<Vec<String>, RunError> {
    let mut out = Vec::new();
    let mut add = |entry: &str| {
        if entry.contains('=') {
            out.push(entry.to_string());
        } else if let Ok(v) = std::env::var(entry) {
            out.push(format!("{entry}={v}"));
        }
    };
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| RunError::io(f, e))?;
        for line in text.lines() {
            let line = line.trim_start();
            if !line.is_empty() && !line.starts_with('#') {
                add(line);
            }
        }
    }
    for e in env {
        if e.is_empty() || e.starts_with('=') {
            return Err(RunError::BadFlag {
                flag: "-e",
                value: e.clone(),
                expected: "expected K=V or K",
            });
        }
        add(e);
    }
    Ok(out)
}

/// `-v HOST:GUEST[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The host directory.
    pub host: PathBuf,
    /// Where it appears in the guest.
    pub guest: String,
    /// Read-only in the guest.
    pub read_only: bool,
}

impl std::str::FromStr for Volume {
    type Err = RunError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RunError::BadVolume(s.to_string());
        let parts: Vec<&str> = s.split(':').collect();
        let (host, guest, read_only) = match parts.as_slice() {
            [h, g] => (*h, *g, false),
            [h, g, "ro"] => (*h, *g, true),
            [h, g, "rw"] => (*h, *g, false),
            _ => return Err(bad()),
        };
        let host = Path::new(host).canonicalize().map_err(|_| bad())?;
        if !host.is_dir() || !guest.starts_with('/') {
            return Err(bad());
        }
        Ok(Volume {
            host,
            guest: guest.to_string(),
            read_only,
        })
    }
}

/// How to boot.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Kernel image (bzImage or vmlinux); default: the built microVM kernel,
    /// else the host's from /boot.
    pub kernel: Option<PathBuf>,
    /// Initramfs choice.
    pub initrd: InitrdChoice,
    /// VMM; `None` picks Firecracker when it and KVM are usable and the run
    /// needs nothing only QEMU offers, else QEMU.
    pub vmm: Option<Vmm>,
    /// Guest memory in MiB.
    pub mem_mib: u32,
    /// vCPUs.
    pub cpus: u32,
    /// Outbound network (QEMU user networking); `--network none` turns it off.
    pub network: bool,
    /// Published ports (`-p`, and `-P`'s).
    pub publish: Vec<PortMapping>,
    /// Shared host directories.
    pub volumes: Vec<Volume>,
    /// Per-run overrides of the image's runtime config.
    pub overrides: RuntimeOverride,
    /// `-i`.
    pub stdin: bool,
    /// `-t`.
    pub tty: bool,
    /// `--stop-timeout`.
    pub stop_timeout: Duration,
    /// `--disk-size` in bytes: the root filesystem grows to it.
    pub disk_size: Option<u64>,
    /// `--name`: keep the disk for the next run of that name.
    pub name: Option<String>,
    /// `--rm`: remove the named container's disk afterwards.
    pub remove: bool,
    /// `--debug`: kernel and init messages on stderr.
    pub debug: bool,
    /// Between SIGTERM and SIGKILL for processes left when the main one exits.
    pub grace_ms: Option<u64>,
    /// Extra kernel command-line words.
    pub extra_cmdline: Vec<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            kernel: None,
            initrd: InitrdChoice::Auto,
            vmm: None,
            mem_mib: 1024,
            cpus: default_cpus(),
            network: true,
            publish: Vec::new(),
            volumes: Vec::new(),
            overrides: RuntimeOverride::default(),
            stdin: false,
            tty: false,
            stop_timeout: Duration::from_secs(10),
            disk_size: None,
            name: None,
            remove: false,
            debug: false,
            grace_ms: None,
            extra_cmdline: Vec::new(),
        }
    }
}

/// Docker gives a container every CPU; a VM gets the host's count, at most 4.
pub fn default_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get().min(4) as u32)
        .unwrap_or(1)
}
