//! Booting under QEMU `-M microvm`: virtio-mmio block (and net for `-p`), the
//! serial console on a pipe, isa-debug-exit for the exit code, an i8042 so a
//! graceful stop is Ctrl-Alt-Del (like Firecracker's SendCtrlAltDel), and KVM
//! only when a probe boot shows it can really run the kernel; else TCG with
//! `tsc_early_khz` (microvm has no PIT/HPET to calibrate against).

use super::kernel::{cache_dir, file_key};
use super::{console, BootFiles, RunError, RunOptions};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// isa-debug-exit's port; init writes the exit code there (QEMU exits with
/// `(code << 1) | 1`).
pub const EXIT_PORT: u16 = 0x501;

/// How the guest CPU is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization.
    Kvm,
    /// QEMU's emulator.
    Tcg,
}

/// The host TSC frequency in kHz, from /proc/cpuinfo's `cpu MHz`.
pub fn host_tsc_khz() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0).round() as u64)
}

fn base_command(
    kernel: &Path,
    initrd: Option<&Path>,
    accel: Accel,
    mem: u32,
    cpus: u32,
) -> Command {
    let mut c = Command::new(QEMU);
    c.args(["-M", "microvm,x-option-roms=off,rtc=off"])
        .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
        .args(["-m", &format!("{mem}M"), "-smp", &cpus.to_string()])
        .arg("-kernel")
        .arg(kernel);
    match accel {
        Accel::Kvm => c.args(["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => c.args(["-accel", "tcg", "-cpu", "max"]),
    };
    if let Some(i) = initrd {
        c.arg("-initrd").arg(i);
    }
    c.args([
        "-chardev",
        "stdio,id=con,signal=off",
        "-serial",
        "chardev:con",
    ]);
    c
}

/// Whether KVM can really boot `kernel` here (cached per kernel). `/dev/kvm`
/// may exist yet be unable to run a stock kernel (nested PVM backends), so a
/// short probe boot decides: the kernel must get far enough to panic for want
/// of a root device, and `-no-reboot` ends QEMU. `D2V_ACCEL=kvm|tcg` forces.
pub fn choose_accel(kernel: &Path) -> Accel {
    match std::env::var("D2V_ACCEL").as_deref() {
        Ok("kvm") => return Accel::Kvm,
        Ok("tcg") => return Accel::Tcg,
        _ => {}
    }
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Accel::Tcg;
    }
    let key = file_key(kernel).unwrap_or_default();
    let cache = cache_dir().join(format!("kvm-probe-{key}"));
    if let Ok(v) = std::fs::read_to_string(&cache) {
        return if v.trim() == "kvm" {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
    }
    let ok = probe_kvm(kernel);
    let _ = std::fs::create_dir_all(cache_dir());
    let _ = std::fs::write(&cache, if ok { "kvm\n" } else { "tcg\n" });
    if ok {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

fn probe_kvm(kernel: &Path) -> bool {
    let mut c = base_command(kernel, None, Accel::Kvm, 128, 1);
    c.args([
        "-append",
        "console=ttyS0 panic=-1 root=/dev/d2v-probe-none rootwait=0",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let Ok(mut child) = c.spawn() else {
        return false;
    };
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let exited = loop {
        match child.try_wait() {
            Ok(Some(_)) => break true,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
        }
    };
    let text = reader.join().unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    exited && text.contains("Linux version") && text.contains("Kernel panic")
}

/// The kernel command line for a d2v boot.
pub fn cmdline(opts: &RunOptions, accel: Accel, has_initrd: bool) -> String {
    let mut words: Vec<String> = [
        "console=ttyS0",
        "reboot=k",
        "panic=-1",
        "root=/dev/vda",
        "rw",
        "rootfstype=ext4",
        "init=/sbin/d2v-init",
        "i8042.noaux",
        "i8042.nomux",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if has_initrd {
        words.push("rdinit=/init".into());
    }
    if !opts.debug {
        words.push("quiet".into());
    }
    if accel == Accel::Tcg {
        if let Some(khz) = host_tsc_khz() {
            words.push(format!("tsc_early_khz={khz}"));
        }
        // TCG's TSC drifts against jiffies; without this the watchdog drops
        // the TSC for the coarse jiffies clocksource.
        words.push("tsc=reliable".into());
    }
    words.push(format!("d2v.exit_port={EXIT_PORT:#x}"));
    if opts.debug {
        words.push("d2v.debug".into());
    }
    let mut ov = opts.overrides.clone();
    if !opts.publish.is_empty() && ov.network.is_none() {
        ov.network = Some(crate::runtime_config::NetworkConfig::qemu_user());
    }
    if !ov.is_empty() {
        words.push(ov.to_kernel_arg());
    }
    words.extend(opts.extra_cmdline.iter().cloned());
    words.join(" ")
}

/// SIGINT/SIGTERM received by d2v while a VM runs.
pub(crate) static STOP_REQUESTS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_stop_signal(_sig: libc::c_int) {
    STOP_REQUESTS.fetch_add(1, Ordering::SeqCst);
}

/// Waits for the VMM `child` to exit. Each SIGINT/SIGTERM d2v receives
/// meanwhile is handed to `on_stop` with its running count (1, 2, …), which asks
/// the VM to stop (gracefully first, forcibly after repeated requests).
pub(crate) fn supervise(
    child: &mut Child,
    program: &str,
    mut on_stop: impl FnMut(&mut Child, usize),
) -> Result<ExitStatus, RunError> {
    let mut handled = 0;
    loop {
        if let Some(st) = child
            .try_wait()
            .map_err(|e| RunError::io(Path::new(program), e))?
        {
            return Ok(st);
        }
        let asked = STOP_REQUESTS.load(Ordering::SeqCst);
        while handled < asked {
            handled += 1;
            on_stop(child, handled);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Counts SIGINT/SIGTERM in [`STOP_REQUESTS`] instead of dying: the VM is asked
/// to stop gracefully.
pub(crate) fn install_stop_handlers() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches an atomic counter.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

fn monitor(path: &Path, command: &str) {
    if let Ok(mut s) = UnixStream::connect(path) {
        let _ = s.write_all(format!("{command}\n").as_bytes());
        let _ = s.flush();
        // Give the HMP server a moment to read before we hang up.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Boots `image` with QEMU; returns the entrypoint's exit code. SIGINT/SIGTERM
/// to d2v become a graceful stop (Ctrl-Alt-Del → init → STOPSIGNAL); a third
/// one quits QEMU.
pub fn boot(image: &Path, files: &BootFiles, opts: &RunOptions) -> Result<i32, RunError> {
    let accel = choose_accel(&files.kernel);
    let dir = tempfile::tempdir().map_err(|e| RunError::io(Path::new("/tmp"), e))?;
    let mon: PathBuf = dir.path().join("monitor.sock");
    let mut c = base_command(
        &files.kernel,
        files.initrd.as_deref(),
        accel,
        opts.mem_mib,
        opts.cpus,
    );
    c.arg("-append")
        .arg(cmdline(opts, accel, files.initrd.is_some()))
        .args(["-device", "i8042"])
        .args([
            "-device",
            &format!("isa-debug-exit,iobase={EXIT_PORT:#x},iosize=2"),
        ])
        .arg("-drive")
        .arg(format!(
            "id=root,file={},format=raw,if=none,cache=unsafe",
            image.display().to_string().replace(',', ",,")
        ))
        .args(["-device", "virtio-blk-device,drive=root"])
        .arg("-monitor")
        .arg(format!("unix:{},server=on,wait=off", mon.display()));
    if !opts.publish.is_empty() {
        let fwd: Vec<String> = opts
            .publish
            .iter()
            .map(|p| format!("hostfwd=tcp:127.0.0.1:{}-:{}", p.host, p.guest))
            .collect();
        c.arg("-netdev")
            .arg(format!("user,id=net0,{}", fwd.join(",")))
            .args(["-device", "virtio-net-device,netdev=net0"]);
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    install_stop_handlers();
    let mut child = c.spawn().map_err(|source| RunError::Vmm {
        program: QEMU.into(),
        source,
    })?;
    let reader = console::stream(child.stdout.take().expect("piped stdout"));
    let status = supervise(&mut child, QEMU, |_, n| {
        // Twice a graceful stop (the guest's init turns it into STOPSIGNAL), then quit.
        if n <= 2 {
            monitor(&mon, "sendkey ctrl-alt-delete");
        } else {
            monitor(&mon, "quit");
        }
    })?;
    let reported = reader.join().unwrap_or(None);
    let raw = status.code().unwrap_or(-1);
    match reported {
        Some(code) => Ok(code),
        None if raw > 0 && raw & 1 == 1 => Ok(raw >> 1),
        None => Err(RunError::NoExitCode(raw)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime_config::RuntimeOverride;

    #[test]
    fn command_line_carries_overrides_and_network_for_published_ports() {
        let opts = RunOptions {
            publish: vec!["18080:8080".parse().unwrap()],
            overrides: RuntimeOverride::docker_run(None, vec!["a".into()], vec![], None),
            ..Default::default()
        };
        let line = cmdline(&opts, Accel::Tcg, true);
        assert!(line.contains("init=/sbin/d2v-init"));
        assert!(line.contains("d2v.exit_port=0x501"));
        let word = line.split(' ').find(|w| w.starts_with("d2v.run=")).unwrap();
        let o = RuntimeOverride::from_kernel_arg(word).unwrap();
        assert_eq!(o.cmd, Some(vec!["a".to_string()]));
        assert_eq!(o.network.unwrap().address, "10.0.2.15/24");
        let plain = cmdline(&RunOptions::default(), Accel::Kvm, false);
        assert!(!plain.contains("d2v.run=") && !plain.contains("tsc_early_khz"));
    }
}
