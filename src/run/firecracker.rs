//! Booting under Firecracker: a `vm.json` (`--config-file`) with the kernel,
//! a raw copy-on-write copy of the image (Firecracker reads no qcow2), the
//! machine size and a vsock device for the host channel (`d2v.channel=vsock`
//! tells init to connect there). Firecracker exits when the guest reboots
//! (`reboot=k`).
//!
//! What Firecracker users do not get (it has no such devices): `-v` (no 9p or
//! virtio-fs: copy the files into the image or attach a block device by hand),
//! and networking, which needs a tap device d2v does not create yet: runs
//! are `--network none`, and `-p` is refused.
//!
//! Not exercised by the boot tests on hosts without a usable KVM; the
//! configuration and the channel's vsock side are unit-tested.

use super::channel::ChannelListener;
use super::vmconfig::VmConfig;
use super::{BootFiles, RunError, RunOptions};
use std::path::Path;
use std::process::Command;

/// The Firecracker binary.
pub const FIRECRACKER: &str = "firecracker";

/// Whether a `firecracker` binary is on PATH.
pub fn installed() -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(FIRECRACKER).is_file()))
        .unwrap_or(false)
}

/// The kernel command line under Firecracker.
pub fn boot_args(opts: &RunOptions, files: &BootFiles) -> String {
    let mut words = vec![
        "console=ttyS0",
        "reboot=k",
        "panic=-1",
        "pci=off",
        "root=/dev/vda",
        "rw",
        "rootfstype=ext4",
        "init=/sbin/d2v-init",
        "d2v.channel=vsock",
    ];
    if files.initrd.is_some() {
        words.push("rdinit=/init");
    }
    words.push(if opts.debug { "d2v.debug" } else { "quiet" });
    let mut line = words.join(" ");
    for w in &opts.extra_cmdline {
        line.push(' ');
        line.push_str(w);
    }
    line
}

/// Refuses what Firecracker cannot do.
pub fn check(opts: &RunOptions, publish: usize) -> Result<(), RunError> {
    if !opts.volumes.is_empty() {
        return Err(RunError::Firecracker(
            "-v needs a shared filesystem device, which Firecracker does not have; use --vmm qemu"
                .into(),
        ));
    }
    if publish > 0 {
        return Err(RunError::Firecracker(
            "-p needs a tap device, which d2v does not set up yet; use --vmm qemu".into(),
        ));
    }
    Ok(())
}

/// The `vm.json` for a run.
pub fn vm_config(
    files: &BootFiles,
    disk: &Path,
    opts: &RunOptions,
    channel: &ChannelListener,
) -> VmConfig {
    let mut vm = VmConfig::new(&files.kernel, disk, false);
    vm.boot_source.boot_args = boot_args(opts, files);
    vm.boot_source.initrd_path = files.initrd.clone();
    vm.machine_config.vcpu_count = opts.cpus;
    vm.machine_config.mem_size_mib = opts.mem_mib;
    vm.vsock = Some(channel.vsock_config());
    vm
}

/// The Firecracker command for `config` (written into `dir`).
pub fn command(dir: &Path, config: &VmConfig) -> Result<Command, RunError> {
    let path = dir.join("vm.json");
    config.write(&path).map_err(|e| RunError::io(&path, e))?;
    let mut c = Command::new(FIRECRACKER);
    c.arg("--api-sock")
        .arg(dir.join("api.sock"))
        .arg("--config-file")
        .arg(&path);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::channel::Transport;
    use crate::run::kernel::KernelKind;

    #[test]
    fn vm_json_boots_the_copy_with_a_vsock_channel() {
        let dir = tempfile::tempdir().unwrap();
        let ch = ChannelListener::bind(dir.path(), Transport::Vsock).unwrap();
        let files = BootFiles {
            kernel: "/k/vmlinux".into(),
            initrd: None,
            kind: KernelKind::Microvm,
        };
        let opts = RunOptions {
            cpus: 2,
            mem_mib: 512,
            ..Default::default()
        };
        let vm = vm_config(&files, &dir.path().join("disk"), &opts, &ch);
        let cmd = command(dir.path(), &vm).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("vm.json")).unwrap()).unwrap();
        assert!(v["boot-source"]["boot_args"]
            .as_str()
            .unwrap()
            .contains("d2v.channel=vsock"));
        assert_eq!(v["drives"][0]["is_read_only"], false);
        assert_eq!(v["machine-config"]["vcpu_count"], 2);
        assert_eq!(v["vsock"]["guest_cid"], 3);
        assert_eq!(
            v["vsock"]["uds_path"].as_str().unwrap(),
            dir.path().join("vsock.sock").to_str().unwrap()
        );
        assert_eq!(cmd.get_program(), "firecracker");
        assert!(check(&opts, 1).is_err() && check(&opts, 0).is_ok());
    }
}
