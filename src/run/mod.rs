//! `d2v run`: boot a packed image as `docker run` runs a container. The VM
//! boots a copy-on-write disk over the image ([`disk`]) under QEMU (`-M
//! microvm`) or Firecracker, and talks to the guest's init over one channel
//! ([`channel`], [`session`]): the run request and clock in, the
//! entrypoint's stdout and stderr (separate, byte-exact), init's messages and
//! the exit code out; stdin with `-i`, a terminal with `-t`, stop requests on
//! SIGINT/SIGTERM/SIGHUP.
//!
//! ```no_run
//! use d2v::run::{run_image, RunOptions};
//! let code = run_image("rootfs.ext4".as_ref(), &RunOptions::default())?;
//! std::process::exit(code);
//! # Ok::<(), d2v::run::RunError>(())
//! ```

pub mod channel;
pub mod console;
pub mod disk;
pub mod firecracker;
pub mod initramfs;
pub mod kbuild;
pub mod kernel;
pub mod options;
pub mod ports;
pub mod qemu;
pub mod session;
pub mod signals;
pub mod terminal;
pub mod vmconfig;

use crate::runtime_config::{NetworkConfig, RunRequest, VolumeMount};
use channel::{ChannelListener, Transport};
use disk::{Container, DiskFormat};
pub use kernel::KernelKind;
pub use options::{
    default_cpus, environment, parse_network, InitrdChoice, RunOptions, Vmm, Volume,
};
pub use ports::PortMapping;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The static guest init (`d2v-init`), built by `build.rs` and embedded here so
/// `d2v pack` can write it to `/sbin/d2v-init` with no extra step.
pub fn init_binary() -> &'static [u8] {
    include_bytes!(env!("D2V_INIT_PATH"))
}

/// What can go wrong before or around a boot. The guest's own failures
/// arrive as exit codes with a message from init.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No `--kernel`, no built microVM kernel and nothing usable in /boot.
    #[error("no kernel to boot: none in /boot (install Debian's linux-image-amd64, or run `d2v kernel build`) and no --kernel given")]
    NoKernel,
    /// `--kernel PATH` does not exist.
    #[error("kernel {0} not found")]
    KernelNotFound(PathBuf),
    /// The image cannot be opened for reading.
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
    /// The VMM (or qemu-img, make) is missing or could not start.
    #[error(
        "couldn't start {program}: {source} (install Debian's qemu-system-x86 and qemu-utils)"
    )]
    Vmm {
        /// The binary.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// Firecracker was asked for but cannot do this run.
    #[error("firecracker can't run here: {0}")]
    Firecracker(String),
    /// A `-p` value that is not `[IP:][HOST:]GUEST[/PROTO]`.
    #[error("bad port mapping {0:?}: expected [IP:][HOST:]GUEST[/tcp|/udp]")]
    BadPort(String),
    /// A `-v` value that is not `HOST:GUEST[:ro]`.
    #[error("bad volume {0:?}: expected HOST:GUEST[:ro|:rw] with an existing host directory and an absolute guest path")]
    BadVolume(String),
    /// Any other flag value d2v run cannot use.
    #[error("bad {flag} {value:?}: {expected}")]
    BadFlag {
        /// The flag (`--vmm`, `-e`, …).
        flag: &'static str,
        /// The value given.
        value: String,
        /// What it should look like.
        expected: &'static str,
    },
    /// The run's disk could not be made.
    #[error("{0}")]
    Disk(String),
    /// A named container's problem.
    #[error("{0}")]
    Container(String),
    /// The guest channel failed.
    #[error("the channel to the guest failed: {0}")]
    NoChannel(String),
    /// `d2v kernel build` failed.
    #[error("kernel build: {0}")]
    KernelBuild(String),
    /// The VM stopped without init reporting an exit code.
    #[error("the VM stopped without reporting an exit code (VMM exit status {status}); its console ended with:\n{console}")]
    NoExitCode {
        /// The VMM's exit status.
        status: i32,
        /// The console's last lines.
        console: String,
    },
}

impl RunError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> RunError {
        RunError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Kernel, initramfs and kind to boot.
pub struct BootFiles {
    /// The kernel to hand the VMM (an unpacked vmlinux when possible).
    pub kernel: PathBuf,
    /// The initramfs, if any.
    pub initrd: Option<PathBuf>,
    /// Ours or a distribution's.
    pub kind: KernelKind,
}

/// Resolves the kernel and initramfs: `--kernel`, else the built microVM
/// kernel, else the host's kernel unpacked and cached with the module
/// initramfs it needs.
pub fn boot_files(opts: &RunOptions) -> Result<BootFiles, RunError> {
    let (source, version, kind) = match &opts.kernel {
        Some(k) => {
            if !k.is_file() {
                return Err(RunError::KernelNotFound(k.clone()));
            }
            let kind = if kbuild::is_microvm(k) {
                KernelKind::Microvm
            } else {
                KernelKind::Distro
            };
            (k.clone(), kernel_version_of(k), kind)
        }
        None => match kbuild::installed() {
            Some(k) => (k, None, KernelKind::Microvm),
            None => {
                let (k, v) = kernel::host_kernel()?;
                (k, Some(v), KernelKind::Distro)
            }
        },
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
    Ok(BootFiles {
        kernel,
        initrd,
        kind,
    })
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

/// A Docker-style container ID's first 12 hex digits: the default hostname.
pub fn random_hostname() -> String {
    let mut b = [0u8; 6];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    hex::encode(b)
}

fn choose_vmm(opts: &RunOptions, files: &BootFiles) -> Vmm {
    let kvm = || qemu::choose_accel(&files.kernel) == qemu::Accel::Kvm;
    match opts.vmm {
        Some(v) => v,
        None if firecracker::installed()
            && !opts.network
            && opts.volumes.is_empty()
            && opts.publish.is_empty()
            && kvm() =>
        {
            Vmm::Firecracker
        }
        None => Vmm::Qemu,
    }
}

/// The run request init receives.
fn request(opts: &RunOptions) -> RunRequest {
    let mut overrides = opts.overrides.clone();
    if opts.network && overrides.network.is_none() {
        overrides.network = Some(NetworkConfig::qemu_user());
    }
    let (rows, cols) = if opts.tty {
        terminal::size(std::io::stdin().as_fd()).unwrap_or((24, 80))
    } else {
        (0, 0)
    };
    RunRequest {
        overrides,
        stdin: opts.stdin,
        tty: opts.tty,
        rows,
        cols,
        volumes: opts
            .volumes
            .iter()
            .enumerate()
            .map(|(i, v)| VolumeMount {
                tag: qemu::volume_args(i, v).0,
                target: v.guest.clone(),
                read_only: v.read_only,
            })
            .collect(),
        hostname: random_hostname(),
        debug: opts.debug,
        grace_ms: opts.grace_ms,
    }
}

/// Boots `image` (a packed ext4 with `/sbin/d2v-init` and
/// `/etc/d2v/config.json`, never written to) and returns the entrypoint's
/// exit code.
pub fn run_image(image: &Path, opts: &RunOptions) -> Result<i32, RunError> {
    let t0 = std::time::Instant::now();
    std::fs::File::open(image).map_err(|source| RunError::Image {
        path: image.to_path_buf(),
        source,
    })?;
    let files = boot_files(opts)?;
    let vmm = choose_vmm(opts, &files);
    let publish = opts
        .publish
        .iter()
        .map(|p| p.resolve())
        .collect::<Result<Vec<_>, _>>()?;
    if vmm == Vmm::Firecracker {
        firecracker::check(opts, publish.len())?;
    }
    let dir = tempfile::Builder::new()
        .prefix("d2v-run-")
        .tempdir()
        .map_err(|e| RunError::io(&std::env::temp_dir(), e))?;
    let container = match &opts.name {
        Some(n) => Some(Container::open(&kernel::store_root(), n, image)?),
        None => None,
    };
    let disk_dir = container.as_ref().map_or(dir.path(), |c| c.dir.as_path());
    let disk_path = disk_dir.join("disk");
    // A qcow2 overlay where QEMU boots an image as it is; a copy for
    // Firecracker, and for --disk-size, whose filesystem resize2fs grows
    // first (the packer's sparse_super2 rules out the kernel's online resize).
    let format = match (vmm, opts.disk_size) {
        (Vmm::Qemu, None) => DiskFormat::Qcow2,
        _ => DiskFormat::Raw,
    };
    if !container.as_ref().is_some_and(|c| c.existed) {
        match format {
            DiskFormat::Qcow2 => disk::qcow2_overlay(image, &disk_path, None)?,
            DiskFormat::Raw => disk::sparse_copy(image, &disk_path, opts.disk_size)?,
        }
        if opts.disk_size.is_some() {
            disk::grow_filesystem(&disk_path)?;
        }
    }
    for p in &publish {
        eprintln!("{}", p.docker_port_line());
    }
    let transport = match vmm {
        Vmm::Qemu => Transport::VirtioConsole,
        Vmm::Firecracker => Transport::Vsock,
    };
    let listener = ChannelListener::bind(dir.path(), transport)?;
    let mut cmd = match vmm {
        Vmm::Qemu => qemu::command(
            &files,
            &qemu::Disk {
                path: &disk_path,
                format,
            },
            opts,
            &publish,
            &listener,
        ),
        Vmm::Firecracker => firecracker::command(
            dir.path(),
            &firecracker::vm_config(&files, &disk_path, opts, &listener),
        )?,
    };
    let program = cmd.get_program().to_string_lossy().into_owned();
    let session = session::Session {
        request: request(opts),
        debug: opts.debug,
        stop_timeout: opts.stop_timeout,
        t0,
    };
    session.mark("disk ready, starting the VMM");
    let code = boot(&mut cmd, &program, &listener, &session, opts)?;
    if opts.remove {
        if let Some(c) = container {
            c.remove();
        }
    }
    Ok(code)
}

/// Starts the VMM in its own session (a terminal's Ctrl-C reaches only d2v;
/// it dies with d2v), runs the session, and returns the exit code.
fn boot(
    cmd: &mut std::process::Command,
    program: &str,
    listener: &ChannelListener,
    session: &session::Session,
    opts: &RunOptions,
) -> Result<i32, RunError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid and prctl are async-signal-safe and touch no memory
    // shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            Ok(())
        });
    }
    signals::install();
    let mut child = cmd.spawn().map_err(|source| RunError::Vmm {
        program: program.to_string(),
        source,
    })?;
    let console = console::Console::default();
    let out = console.collect(child.stdout.take().expect("piped stdout"), opts.debug);
    let err = console.collect(child.stderr.take().expect("piped stderr"), opts.debug);
    let timeout = Duration::from_secs(if listener.transport() == Transport::Vsock {
        60
    } else {
        120
    });
    let raw = opts.tty.then(terminal::RawMode::enable).flatten();
    let result = listener
        .accept(timeout, || matches!(child.try_wait(), Ok(None)))
        .and_then(|stream| {
            session.mark("channel connected");
            session::run(stream, session, &mut child)
        });
    drop(raw);
    if result.is_err() {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| RunError::io(Path::new(program), e))?;
    let _ = (out.join(), err.join());
    match result {
        Ok(Some(code)) => Ok(code),
        Ok(None) => Err(RunError::NoExitCode {
            status: status.code().unwrap_or(-1),
            console: console.tail(),
        }),
        Err(RunError::NoChannel(why)) => Err(RunError::NoChannel(format!(
            "{why}; the console ended with:\n{}",
            console.tail()
        ))),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_values() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let v: Volume = format!("{d}:/data:ro").parse().unwrap();
        assert!(v.read_only && v.guest == "/data");
        assert!(!format!("{d}:/data").parse::<Volume>().unwrap().read_only);
        for bad in [
            format!("{d}:rel"),
            "/nonexistent-d2v:/x".into(),
            format!("{d}:/x:rx"),
            d.to_string(),
        ] {
            assert!(bad.parse::<Volume>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_run_request_names_the_host_and_turns_the_network_on() {
        let r = request(&RunOptions::default());
        let h = r.hostname;
        assert_eq!(h.len(), 12);
        assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(r.overrides.network.unwrap().address, "10.0.2.15/24");
        let none = RunOptions {
            network: false,
            ..Default::default()
        };
        assert!(request(&none).overrides.network.is_none());
    }

    #[test]
    fn embedded_init_is_a_static_elf_under_one_mib() {
        let elf = init_binary();
        assert!(elf.starts_with(b"\x7fELF"));
        assert!(elf.len() < 1 << 20, "init is {} bytes", elf.len());
    }
}
