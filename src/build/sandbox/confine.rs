//! What Docker's default confinement is made of, as data: the capability set,
//! the `/proc` and `/sys` paths it masks and the ones it makes read-only
//! (moby's `daemon/pkg/oci/defaults.go`). The child applies them; the seccomp
//! profile lives in [`super::seccomp`].

/// Docker's default capabilities: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL,
/// SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD,
/// AUDIT_WRITE, SETFCAP (`CapBnd: 00000000a80425fb`).
pub const DEFAULT_CAPS: u64 = 0xa804_25fb;

/// The highest capability number a kernel may know (CAP_CHECKPOINT_RESTORE).
pub const CAP_LAST: u32 = 40;

/// Paths hidden from the step: a file gets `/dev/null` bound over it, a
/// directory an empty read-only tmpfs. Missing ones are skipped.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Paths the step may read but not write (bound read-only over themselves).
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The host device nodes a step gets in its `/dev` (bind-mounted, as rootless
/// runtimes do: a user namespace cannot create device nodes), and nothing else.
pub const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

/// Per-CPU thermal throttle directories Docker masks too (they exist only on
/// some hardware), as `/sys/devices/system/cpu/cpuN/thermal_throttle`.
pub fn thermal_throttle_paths() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/devices/system/cpu") else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("cpu") && n[3..].chars().all(|c| c.is_ascii_digit()))
        .map(|n| format!("/sys/devices/system/cpu/{n}/thermal_throttle"))
        .filter(|p| std::path::Path::new(p).exists())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_caps_are_dockers_fourteen() {
        // CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4, KILL 5, SETGID 6,
        // SETUID 7, SETPCAP 8, NET_BIND_SERVICE 10, NET_RAW 13, SYS_CHROOT 18,
        // MKNOD 27, AUDIT_WRITE 29, SETFCAP 31.
        let bits = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];
        assert_eq!(bits.iter().fold(0u64, |a, b| a | 1 << b), DEFAULT_CAPS);
    }

    #[test]
    fn lists_are_absolute_and_inside_proc_or_sys_or_dev() {
        for p in MASKED_PATHS.iter().chain(READONLY_PATHS) {
            assert!(p.starts_with("/proc/") || p.starts_with("/sys/"), "{p}");
        }
        for d in DEVICES {
            assert!(d.starts_with("/dev/"), "{d}");
        }
    }
}
