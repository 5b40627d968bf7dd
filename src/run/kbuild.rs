//! `d2v kernel build`: d2v's own microVM guest kernel, built from Debian's
//! `linux-source-6.1` with the config fragment `kernel/microvm-x86_64.config`
//! over `make tinyconfig` (everything built in: virtio-mmio with command-line
//! devices, block, net, console, vsock, 9p, ext4; no modules, no ACPI, no
//! PCI). It boots without an initramfs and far faster than Debian's stock
//! kernel under TCG. The result is cached as
//! `vmlinux-microvm-<config>-<source>` in the kernel directory, and `d2v run`
//! boots it by default when it is there.

use super::kernel::write_atomic;
use super::RunError;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The config fragment, applied over `make ARCH=x86_64 tinyconfig`.
pub const FRAGMENT: &str = include_str!("../../kernel/microvm-x86_64.config");
/// Debian's kernel source (package `linux-source-6.1`).
pub const DEFAULT_SOURCE: &str = "/usr/src/linux-source-6.1.tar.xz";

/// Where built kernels live: `D2V_KERNEL_DIR`, else `/var/cache/d2v/kernel`
/// (root's, readable by everyone) and, for other users, also
/// `$XDG_CACHE_HOME/d2v/kernel` (`~/.cache/d2v/kernel`), searched first.
pub fn kernel_dirs() -> Vec<PathBuf> {
    if let Some(d) = std::env::var_os("D2V_KERNEL_DIR") {
        return vec![PathBuf::from(d)];
    }
    let system = PathBuf::from("/var/cache/d2v/kernel");
    let own = super::kernel::machine_cache_dir().join("kernel");
    if own == system {
        return vec![system];
    }
    vec![own, system]
}

fn short_hash(parts: &[&[u8]], n: usize) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(&h.finalize()[..n])
}

/// `vmlinux-microvm-<fragment hash>-`: every build of the current config.
fn prefix() -> String {
    format!("vmlinux-microvm-{}-", short_hash(&[FRAGMENT.as_bytes()], 6))
}

/// The cache name of a build from `source` (keyed on its name and size).
pub fn kernel_name(source: &Path) -> Result<String, RunError> {
    let md = std::fs::metadata(source).map_err(|e| RunError::io(source, e))?;
    let id = short_hash(
        &[
            source.as_os_str().as_encoded_bytes(),
            &md.len().to_le_bytes(),
        ],
        4,
    );
    Ok(format!("{}{id}", prefix()))
}

/// The newest built kernel of the current config, if any.
pub fn installed() -> Option<PathBuf> {
    let prefix = prefix();
    kernel_dirs().into_iter().find_map(|d| {
        let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&d)
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        found.sort();
        found.pop().map(|(_, p)| p)
    })
}

/// Whether `kernel` is one of ours (by its cache name).
pub fn is_microvm(kernel: &Path) -> bool {
    kernel
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("vmlinux-microvm-"))
}

fn run(cmd: &mut Command, what: &str, log: &Path) -> Result<(), RunError> {
    let out = std::fs::File::create(log).map_err(|e| RunError::io(log, e))?;
    let err = out.try_clone().map_err(|e| RunError::io(log, e))?;
    let st = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|source| RunError::Vmm {
            program: what.to_string(),
            source,
        })?;
    if !st.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(RunError::KernelBuild(format!(
            "{what} failed:\n{}",
            tail.join("\n")
        )));
    }
    Ok(())
}

/// The options the fragment sets that the final `.config` lost (a symbol
/// that does not exist or whose dependencies are missing).
pub fn missing_options(config: &str) -> Vec<String> {
    let have: std::collections::HashSet<&str> = config.lines().collect();
    FRAGMENT
        .lines()
        .filter(|l| l.starts_with("CONFIG_"))
        .filter(|l| !have.contains(l))
        .map(str::to_string)
        .collect()
}

/// Builds the kernel from `source` (a `linux-source` tarball) with `jobs`
/// parallel jobs into `out_dir`; returns the cached vmlinux. Progress lines go
/// to `progress`.
pub fn build(
    source: &Path,
    out_dir: &Path,
    jobs: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, RunError> {
    let target = out_dir.join(kernel_name(source)?);
    if target.is_file() {
        progress(&format!("already built: {}", target.display()));
        return Ok(target);
    }
    std::fs::create_dir_all(out_dir).map_err(|e| RunError::io(out_dir, e))?;
    let work = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(out_dir)
        .map_err(|e| RunError::io(out_dir, e))?;
    let log = work.path().join("build.log");
    progress(&format!("unpacking {}", source.display()));
    run(
        Command::new("tar")
            .arg("-xf")
            .arg(source)
            .arg("-C")
            .arg(work.path())
            .arg("--strip-components=1"),
        "tar",
        &log,
    )?;
    let fragment = work.path().join("d2v-microvm.config");
    std::fs::write(&fragment, FRAGMENT).map_err(|e| RunError::io(&fragment, e))?;
    progress("configuring (tinyconfig + kernel/microvm-x86_64.config)");
    let make = |args: &[&str]| {
        let mut c = Command::new("make");
        c.current_dir(work.path()).arg("ARCH=x86_64").args(args);
        c
    };
    run(&mut make(&["tinyconfig"]), "make tinyconfig", &log)?;
    run(
        Command::new("scripts/kconfig/merge_config.sh")
            .current_dir(work.path())
            .env("ARCH", "x86_64")
            .args(["-m", ".config", "d2v-microvm.config"]),
        "merge_config.sh",
        &log,
    )?;
    run(&mut make(&["olddefconfig"]), "make olddefconfig", &log)?;
    let config_path = work.path().join(".config");
    let config =
        std::fs::read_to_string(&config_path).map_err(|e| RunError::io(&config_path, e))?;
    let missing = missing_options(&config);
    if !missing.is_empty() {
        return Err(RunError::KernelBuild(format!(
            "the kernel config lost {} (a symbol missing from this source, or its dependencies)",
            missing.join(", ")
        )));
    }
    progress(&format!(
        "building vmlinux with {jobs} jobs (make -j{jobs})"
    ));
    run(
        &mut make(&[&format!("-j{jobs}"), "vmlinux"]),
        "make vmlinux",
        &log,
    )?;
    let built = work.path().join("vmlinux");
    let data = std::fs::read(&built).map_err(|e| RunError::io(&built, e))?;
    write_atomic(&target, &data)?;
    // Every user's `d2v run` boots root's build.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| RunError::io(&target, e))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fragment_builds_a_microvm_kernel() {
        for must in [
            "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y",
            "CONFIG_VIRTIO_CONSOLE=y",
            "CONFIG_VIRTIO_VSOCKETS=y",
            "CONFIG_VIRTIO_BLK=y",
            "CONFIG_EXT4_FS=y",
            "CONFIG_9P_FS=y",
            "CONFIG_PVH=y",
        ] {
            assert!(FRAGMENT.lines().any(|l| l == must), "{must}");
        }
        assert!(!FRAGMENT.contains("=m"), "everything built in");
        assert_eq!(missing_options(FRAGMENT), Vec::<String>::new());
        assert!(missing_options("CONFIG_PVH=y\n").contains(&"CONFIG_EXT4_FS=y".to_string()));
    }

    #[test]
    fn built_kernels_are_named_for_their_config_and_source() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("linux-source-6.1.tar.xz");
        std::fs::write(&src, b"x").unwrap();
        let name = kernel_name(&src).unwrap();
        assert!(
            name.starts_with(&prefix()) && is_microvm(Path::new(&name)),
            "{name}"
        );
        assert!(!is_microvm(Path::new("/boot/vmlinuz-6.1.0-57-amd64")));
    }
}
