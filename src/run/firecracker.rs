//! Booting under Firecracker: a `vm.json` (`--config-file`, written with
//! `d2v_packer::vmconfig`), the serial console on a pipe, and a graceful stop as
//! the API's `SendCtrlAltDel`, which init turns into the image's STOPSIGNAL.
//! Firecracker exits when the guest reboots (`reboot=k`); the exit code comes
//! from init's last console line.
//!
//! Not exercised by the test suite on hosts without a usable KVM.

use super::qemu::{cmdline, supervise, Accel};
use super::{console, BootFiles, RunError, RunOptions};
use d2v_packer::vmconfig::VmConfig;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The Firecracker binary.
pub const FIRECRACKER: &str = "firecracker";

/// Whether a `firecracker` binary is on PATH.
pub fn installed() -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(FIRECRACKER).is_file()))
        .unwrap_or(false)
}

fn send_ctrl_alt_del(api: &Path) {
    let body = r#"{"action_type":"SendCtrlAltDel"}"#;
    if let Ok(mut s) = UnixStream::connect(api) {
        let req = format!(
            "PUT /actions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(req.as_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Boots `image` with Firecracker; returns the entrypoint's exit code.
pub fn boot(image: &Path, files: &BootFiles, opts: &RunOptions) -> Result<i32, RunError> {
    if !opts.publish.is_empty() {
        return Err(RunError::Firecracker(
            "-p needs a tap device, which d2v does not set up yet; use --vmm qemu".into(),
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| RunError::io(Path::new("/tmp"), e))?;
    let mut vm = VmConfig::new(&files.kernel, image, false);
    // No isa-debug-exit here: drop the port word so init does not poke it.
    let args: Vec<String> = cmdline(opts, Accel::Kvm, files.initrd.is_some())
        .split(' ')
        .filter(|w| !w.starts_with("d2v.exit_port="))
        .map(str::to_string)
        .collect();
    vm.boot_source.boot_args = format!("{} pci=off", args.join(" "));
    vm.boot_source.initrd_path = files.initrd.clone();
    vm.machine_config.vcpu_count = opts.cpus;
    vm.machine_config.mem_size_mib = opts.mem_mib;
    let config = dir.path().join("vm.json");
    vm.write(&config).map_err(|e| RunError::io(&config, e))?;
    let api = dir.path().join("api.sock");
    super::qemu::install_stop_handlers();
    let mut child = Command::new(FIRECRACKER)
        .arg("--api-sock")
        .arg(&api)
        .arg("--config-file")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| RunError::Vmm {
            program: FIRECRACKER.into(),
            source,
        })?;
    let reader = console::stream(child.stdout.take().expect("piped stdout"));
    let status = supervise(&mut child, FIRECRACKER, |child, n| {
        if n <= 2 {
            send_ctrl_alt_del(&api);
        } else {
            let _ = child.kill();
        }
    })?;
    match reader.join().unwrap_or(None) {
        Some(code) => Ok(code),
        None => Err(RunError::NoExitCode(status.code().unwrap_or(-1))),
    }
}
