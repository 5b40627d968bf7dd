//! Booting under QEMU `-M microvm`: virtio-mmio block (a qcow2 overlay of the
//! packed image), net (user networking, `hostfwd` for published ports), 9p
//! for volumes and a virtio-console port for the host channel; the serial
//! console only for kernel messages; isa-debug-exit for a quick power-off.
//! KVM only when a probe boot shows it can really run the kernel; else TCG
//! with `tsc_early_khz` (microvm has no PIT/HPET to calibrate against).

use super::channel::ChannelListener;
use super::disk::DiskFormat;
use super::kernel::{machine_cache_dir, KernelKind};
use super::ports::PortMapping;
use super::{BootFiles, RunOptions};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// isa-debug-exit's port: init's quick power-off (the exit code itself
/// travels on the channel).
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

fn base_command(files: &BootFiles, accel: Accel, mem: u32, cpus: u32) -> Command {
    let mut c = Command::new(QEMU);
    let machine = match files.kind {
        // Our kernel takes its virtio-mmio devices from the command line and
        // has no ACPI; the RTC stays (reading its absence stalls 2.6 s).
        KernelKind::Microvm => "microvm,x-option-roms=off,acpi=off",
        // Debian's finds them through microvm's ACPI tables.
        KernelKind::Distro => "microvm,x-option-roms=off,rtc=off",
    };
    c.args(["-M", machine])
        .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
        .args(["-m", &format!("{mem}M"), "-smp", &cpus.to_string()])
        .arg("-kernel")
        .arg(&files.kernel);
    match accel {
        Accel::Kvm => c.args(["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => c.args(["-accel", "tcg", "-cpu", "max"]),
    };
    if let Some(i) = &files.initrd {
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
    // A fact of this machine (its KVM and host kernel) and of the guest
    // kernel: cached machine-wide, not per store.
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let key = content_key(kernel);
    let name = format!("kvm-probe-{key}-{}", host.trim());
    let cache = machine_cache_dir().join(&name);
    // An ordinary user may reuse root's answer.
    let known = std::fs::read_to_string(&cache)
        .or_else(|_| std::fs::read_to_string(Path::new("/var/cache/d2v").join(&name)));
    if let Ok(v) = known {
        return if v.trim() == "kvm" {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
    }
    let ok = probe_kvm(kernel);
    let _ = std::fs::create_dir_all(machine_cache_dir());
    let _ = std::fs::write(&cache, if ok { "kvm\n" } else { "tcg\n" });
    if ok {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

/// A key for a kernel's contents wherever its file lives (each store unpacks
/// its own copy of the host's kernel): its size and its first MiB.
fn content_key(kernel: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    if let Ok(mut f) = std::fs::File::open(kernel) {
        let mut buf = vec![0u8; 1 << 20];
        let n = f.read(&mut buf).unwrap_or(0);
        h.update(&buf[..n]);
        h.update(f.metadata().map(|m| m.len()).unwrap_or(0).to_le_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

fn probe_kvm(kernel: &Path) -> bool {
    let files = BootFiles {
        kernel: kernel.to_path_buf(),
        initrd: None,
        kind: KernelKind::Distro,
    };
    let mut c = base_command(&files, Accel::Kvm, 128, 1);
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

/// The kernel command line for a d2v boot: static words only; the run's
/// config travels over the channel.
pub fn cmdline(opts: &RunOptions, files: &BootFiles, accel: Accel) -> String {
    let mut words: Vec<String> = [
        "console=ttyS0",
        "reboot=t",
        "panic=-1",
        "root=/dev/vda",
        "rw",
        "rootfstype=ext4",
        "init=/sbin/d2v-init",
        "random.trust_cpu=on",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if files.initrd.is_some() {
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
        if files.kind == KernelKind::Microvm {
            // Under TCG the local APIC timer fails its verification anyway
            // (after a 150-250 ms calibration), write-protecting the kernel
            // costs 0.1-0.2 s of page-table work, and probing four legacy
            // UARTs another 50 ms.
            words.extend(["noapictimer", "rodata=off", "8250.nr_uarts=1"].map(String::from));
        }
    }
    words.push(format!("d2v.exit_port={EXIT_PORT:#x}"));
    if opts.debug {
        words.push("d2v.debug".into());
    }
    words.extend(opts.extra_cmdline.iter().cloned());
    words.join(" ")
}

/// The 9p share of volume `i`: its mount tag and QEMU's arguments.
pub fn volume_args(i: usize, v: &super::Volume) -> (String, [String; 4]) {
    let tag = format!("d2v-v{i}");
    // Root keeps the host's owners and modes, as a bind mount does; an
    // ordinary user's QEMU cannot, and files it creates belong to that user.
    let model = if nix::unistd::geteuid().is_root() {
        "passthrough"
    } else {
        "none"
    };
    let mut fsdev = format!(
        "local,id=fs{i},path={},security_model={model}",
        v.host.display().to_string().replace(',', ",,")
    );
    if v.read_only {
        fsdev.push_str(",readonly=on");
    }
    let dev = format!("virtio-9p-device,fsdev=fs{i},mount_tag={tag}");
    (tag, ["-fsdev".into(), fsdev, "-device".into(), dev])
}

/// Where a run's disk is and what it is.
pub struct Disk<'a> {
    /// The overlay (or copy) to boot.
    pub path: &'a Path,
    /// Its format.
    pub format: DiskFormat,
}

/// The QEMU command for a run: kernel, disk, network, volumes, the channel.
pub fn command(
    files: &BootFiles,
    disk: &Disk<'_>,
    opts: &RunOptions,
    publish: &[PortMapping],
    channel: &ChannelListener,
) -> Command {
    let accel = choose_accel(&files.kernel);
    let mut c = base_command(files, accel, opts.mem_mib, opts.cpus);
    let cache = if opts.name.is_some() {
        "writeback"
    } else {
        "unsafe"
    };
    c.arg("-append")
        .arg(cmdline(opts, files, accel))
        .args([
            "-device",
            &format!("isa-debug-exit,iobase={EXIT_PORT:#x},iosize=2"),
        ])
        .arg("-drive")
        .arg(format!(
            "id=root,file={},format={},if=none,cache={cache},discard=unmap",
            disk.path.display().to_string().replace(',', ",,"),
            disk.format.name()
        ))
        .args(["-device", "virtio-blk-device,drive=root"])
        .args(channel.qemu_args());
    if opts.network {
        let mut netdev = "user,id=net0".to_string();
        for p in publish {
            netdev.push(',');
            netdev.push_str(&p.hostfwd());
        }
        c.arg("-netdev")
            .arg(netdev)
            .args(["-device", "virtio-net-device,netdev=net0"]);
    }
    for (i, v) in opts.volumes.iter().enumerate() {
        c.args(volume_args(i, v).1);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_holds_no_run_config() {
        let files = BootFiles {
            kernel: "/k".into(),
            initrd: None,
            kind: KernelKind::Microvm,
        };
        let opts = RunOptions {
            overrides: crate::runtime_config::docker_run_overrides(
                None,
                vec!["a".into()],
                vec!["X=1".into()],
                None,
            ),
            ..Default::default()
        };
        let line = cmdline(&opts, &files, Accel::Tcg);
        assert!(
            line.contains("init=/sbin/d2v-init") && line.contains("quiet"),
            "{line}"
        );
        assert!(!line.contains("X=1") && !line.contains("d2v.run"), "{line}");
        assert!(
            line.contains("tsc=reliable") && !line.contains("rdinit"),
            "{line}"
        );
    }

    #[test]
    fn volumes_are_9p_shares_read_only_when_asked() {
        let v = crate::run::Volume {
            host: "/srv/a,b".into(),
            guest: "/data".into(),
            read_only: true,
        };
        let (tag, args) = volume_args(2, &v);
        assert_eq!(tag, "d2v-v2");
        assert!(
            args[1].contains("path=/srv/a,,b") && args[1].ends_with(",readonly=on"),
            "{args:?}"
        );
        assert_eq!(args[3], "virtio-9p-device,fsdev=fs2,mount_tag=d2v-v2");
    }
}
