//! The program checked two ways: a small classic-BPF interpreter evaluates
//! it on (arch, nr, args) as the kernel would (here and in `lowering`), and
//! the kernel itself runs it in a forked child (`kernel`).

mod kernel;
mod lowering;
mod profile_json;

use super::bpf::Action;
use super::{syscalls, Arch, SeccompProgram};

const DOCKER_CAPS: u64 = 0xa804_25fb;
const CAP_SYS_ADMIN: u64 = 1 << 21;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const EPERM: Verdict = Verdict::Errno(libc::EPERM as u32);
const ENOSYS: Verdict = Verdict::Errno(libc::ENOSYS as u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    Errno(u32),
    Kill,
}

/// Runs `prog` on a `seccomp_data` as the kernel's classic-BPF interpreter
/// does, for the opcodes our generator emits (anything else fails the test);
/// returns the verdict and the number of instructions executed.
fn eval(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> (Verdict, usize) {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, arg) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_le_bytes());
    }
    let (mut a, mut pc, mut steps) = (0u32, 0usize, 0usize);
    loop {
        let insn = prog.get(pc).expect("pc ran off the end of the program");
        let k = insn.k;
        pc += 1;
        steps += 1;
        let cond = |taken: bool| usize::from(if taken { insn.jt } else { insn.jf });
        match u32::from(insn.code) {
            c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                let k = k as usize;
                assert!(
                    k.is_multiple_of(4) && k + 4 <= data.len(),
                    "bad load offset {k}"
                );
                a = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
            }
            c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => a &= k,
            c if c == libc::BPF_JMP | libc::BPF_JA => pc += k as usize,
            c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => pc += cond(a == k),
            c if c == libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K => pc += cond(a > k),
            c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => pc += cond(a >= k),
            c if c == libc::BPF_RET | libc::BPF_K => {
                let verdict = match k & libc::SECCOMP_RET_ACTION_FULL {
                    libc::SECCOMP_RET_ALLOW => Verdict::Allow,
                    libc::SECCOMP_RET_ERRNO => Verdict::Errno(k & libc::SECCOMP_RET_DATA),
                    libc::SECCOMP_RET_KILL_PROCESS => Verdict::Kill,
                    other => panic!("unexpected return action {other:#x}"),
                };
                return (verdict, steps);
            }
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
}

fn verdict_of(action: Action) -> Verdict {
    match action {
        Action::Allow => Verdict::Allow,
        Action::Errno(e) => Verdict::Errno(u32::from(e)),
        Action::KillProcess => Verdict::Kill,
    }
}

/// The number of `name` on `arch`.
fn nr(arch: Arch, name: &str) -> u32 {
    let pos = arch.table().iter().position(|n| *n == name);
    pos.unwrap_or_else(|| panic!("{name} not in the {arch:?} table")) as u32
}

/// Docker's program for `arch` and `caps`, asked about `name(args…)`.
struct Probe {
    arch: Arch,
    prog: SeccompProgram,
}

impl Probe {
    fn new(arch: Arch, caps: u64) -> Probe {
        Probe {
            arch,
            prog: SeccompProgram::docker_default_for(arch, caps),
        }
    }

    fn call(&self, name: &str, args: &[u64]) -> Verdict {
        self.raw(nr(self.arch, name), args)
    }

    fn raw(&self, nr: u32, args: &[u64]) -> Verdict {
        let mut full = [0u64; 6];
        full[..args.len()].copy_from_slice(args);
        eval(self.prog.instructions(), self.arch.audit_arch(), nr, full).0
    }
}

const BOTH: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

#[test]
fn everyday_syscalls_are_allowed() {
    for arch in BOTH {
        let p = Probe::new(arch, DOCKER_CAPS);
        for name in [
            "read",
            "write",
            "openat",
            "close",
            "execve",
            "getpid",
            "mmap",
            "futex",
            "wait4",
            "chroot",
            "ptrace",
            "fchmodat2",
            "mseal",
            "prctl",
            "capset",
            "setresuid",
        ] {
            assert_eq!(p.call(name, &[]), Verdict::Allow, "{arch:?} {name}");
        }
    }
    assert_eq!(
        Probe::new(Arch::X86_64, DOCKER_CAPS).call("arch_prctl", &[]),
        Verdict::Allow
    );
}

#[test]
fn dangerous_syscalls_get_eperm() {
    for arch in BOTH {
        let p = Probe::new(arch, DOCKER_CAPS);
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "kexec_load",
            "init_module",
            "finit_module",
            "open_by_handle_at",
            "reboot",
            "swapon",
            "pivot_root",
            "sethostname",
            "perf_event_open",
            "userfaultfd",
            "fsopen",
            "open_tree",
            "move_mount",
            "settimeofday",
            "kcmp",
            "iopl",
            "acct",
            "mbind",
            "syslog",
            "vhangup",
            "io_uring_setup",
            "quotactl",
        ] {
            if arch == Arch::Aarch64 && ["iopl"].contains(&name) {
                continue;
            }
            assert_eq!(p.call(name, &[]), EPERM, "{arch:?} {name}");
        }
    }
}

#[test]
fn clone_may_not_make_namespaces() {
    let flags: [(u64, Verdict); 7] = [
        (libc::SIGCHLD as u64, Verdict::Allow),
        // What pthread_create passes.
        (0x003d_0f00, Verdict::Allow),
        ((libc::CLONE_NEWUSER | libc::SIGCHLD) as u64, EPERM),
        ((libc::CLONE_NEWNS | libc::SIGCHLD) as u64, EPERM),
        ((libc::CLONE_NEWNET | libc::SIGCHLD) as u64, EPERM),
        (libc::CLONE_NEWPID as u64, EPERM),
        (libc::CLONE_NEWCGROUP as u64, EPERM),
    ];
    for arch in BOTH {
        let p = Probe::new(arch, DOCKER_CAPS);
        for (flag, want) in flags {
            assert_eq!(p.call("clone", &[flag]), want, "{arch:?} clone({flag:#x})");
        }
        assert_eq!(p.call("clone3", &[]), ENOSYS, "{arch:?}");
    }
}

#[test]
fn socket_refuses_only_vsock() {
    let p = Probe::new(Arch::X86_64, DOCKER_CAPS);
    for family in [
        libc::AF_UNIX,
        libc::AF_INET,
        libc::AF_INET6,
        libc::AF_NETLINK,
        37,
        39,
        41,
        45,
    ] {
        assert_eq!(
            p.call("socket", &[family as u64]),
            Verdict::Allow,
            "family {family}"
        );
    }
    assert_eq!(p.call("socket", &[libc::AF_VSOCK as u64]), EPERM);
    assert_eq!(p.call("socket", &[38]), EPERM);
    // The kernel reads an int: a high half must not sneak AF_VSOCK through.
    assert_eq!(
        p.call("socket", &[(1 << 32) | libc::AF_VSOCK as u64]),
        EPERM
    );
    // A negative int, sign-extended: allowed, as Docker does (the kernel says EAFNOSUPPORT).
    assert_eq!(p.call("socket", &[-1i64 as u64]), Verdict::Allow);
}

#[test]
fn personality_only_for_the_listed_values() {
    for arch in BOTH {
        let p = Probe::new(arch, DOCKER_CAPS);
        for v in [0, 8, 0x2_0000, 0x2_0008, 0xffff_ffff] {
            assert_eq!(
                p.call("personality", &[v]),
                Verdict::Allow,
                "{arch:?} {v:#x}"
            );
        }
        for v in [0x004_0000, 0x1, 0x1_0000_0000, 0x1_ffff_ffff] {
            assert_eq!(p.call("personality", &[v]), EPERM, "{arch:?} {v:#x}");
        }
    }
}

#[test]
fn other_abis_and_architectures_are_killed() {
    let p = Probe::new(Arch::X86_64, DOCKER_CAPS);
    // x32's read and execve.
    assert_eq!(p.raw(0x4000_0000, &[]), Verdict::Kill);
    assert_eq!(p.raw(0x4000_0000 | 520, &[]), Verdict::Kill);
    assert_eq!(p.raw(u32::MAX, &[]), ENOSYS);
    let i386 = eval(p.prog.instructions(), AUDIT_ARCH_I386, 20, [0; 6]).0;
    assert_eq!(i386, Verdict::Kill);
    let arm64 = eval(
        p.prog.instructions(),
        Arch::Aarch64.audit_arch(),
        63,
        [0; 6],
    )
    .0;
    assert_eq!(arm64, Verdict::Kill);
    let a = Probe::new(Arch::Aarch64, DOCKER_CAPS);
    let x86 = eval(a.prog.instructions(), Arch::X86_64.audit_arch(), 0, [0; 6]).0;
    assert_eq!(x86, Verdict::Kill);
}

#[test]
fn numbers_past_the_profile_get_enosys_holes_get_eperm() {
    for arch in BOTH {
        let p = Probe::new(arch, DOCKER_CAPS);
        // removexattrat (466) is the profile's newest; 467+ is newer.
        assert_eq!(p.call("removexattrat", &[]), Verdict::Allow);
        assert_eq!(p.call("open_tree_attr", &[]), ENOSYS, "{arch:?}");
        assert_eq!(p.raw(1000, &[]), ENOSYS);
        // The unassigned gap below 424 is the default action.
        assert_eq!(p.raw(400, &[]), EPERM);
    }
}

#[test]
fn capabilities_open_their_groups() {
    let groups: [(u32, &[&str]); 11] = [
        (
            21,
            &[
                "mount",
                "umount2",
                "unshare",
                "setns",
                "sethostname",
                "bpf",
                "clone3",
            ],
        ),
        (2, &["open_by_handle_at"]),
        (16, &["init_module", "finit_module", "delete_module"]),
        (19, &["kcmp", "pidfd_getfd", "process_madvise"]),
        (25, &["settimeofday", "clock_settime"]),
        (23, &["mbind", "set_mempolicy"]),
        (34, &["syslog"]),
        (39, &["bpf"]),
        (38, &["perf_event_open"]),
        (22, &["reboot"]),
        (20, &["acct"]),
    ];
    for arch in BOTH {
        let without = Probe::new(arch, DOCKER_CAPS);
        for (cap, names) in groups {
            let with = Probe::new(arch, DOCKER_CAPS | 1 << cap);
            for name in names {
                assert_ne!(
                    without.call(name, &[]),
                    Verdict::Allow,
                    "{name} without cap {cap}"
                );
                assert_eq!(
                    with.call(name, &[]),
                    Verdict::Allow,
                    "{name} with cap {cap}"
                );
            }
        }
        let admin = Probe::new(arch, DOCKER_CAPS | CAP_SYS_ADMIN);
        let newuser = (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64;
        assert_eq!(admin.call("clone", &[newuser]), Verdict::Allow);
        // Without CAP_SYS_CHROOT, chroot goes.
        let no_chroot = Probe::new(arch, DOCKER_CAPS & !(1 << 18));
        assert_eq!(no_chroot.call("chroot", &[]), EPERM);
    }
}

#[test]
fn tables_agree_with_libc() {
    macro_rules! check {
        ($table:expr, $($name:ident),*) => {
            $(assert_eq!($table[libc::$name as usize], &stringify!($name)[4..]);)*
        };
    }
    let native = Arch::NATIVE.table();
    #[rustfmt::skip]
    check!(
        native, SYS_read, SYS_write, SYS_openat, SYS_execve, SYS_clone, SYS_clone3, SYS_mount,
        SYS_umount2, SYS_unshare, SYS_setns, SYS_personality, SYS_socket, SYS_chroot,
        SYS_pivot_root, SYS_io_getevents, SYS_rseq, SYS_pidfd_open, SYS_set_mempolicy_home_node,
        SYS_fchmodat2, SYS_mseal, SYS_keyctl, SYS_kexec_file_load, SYS_open_by_handle_at,
        SYS_process_madvise, SYS_memfd_secret
    );
    #[cfg(target_arch = "x86_64")]
    check!(
        native,
        SYS_arch_prctl,
        SYS_modify_ldt,
        SYS_renameat,
        SYS_getrlimit
    );
    // The other architecture's table, from asm-generic/unistd.h.
    let a64: [(&str, usize); 8] = [
        ("io_setup", 0),
        ("umount2", 39),
        ("mount", 40),
        ("openat", 56),
        ("read", 63),
        ("personality", 92),
        ("clone", 220),
        ("execve", 221),
    ];
    for (name, nr) in a64 {
        assert_eq!(syscalls::AARCH64[nr], name);
    }
    // x86_64 numbers shared by every table from 424 on.
    for nr in 424..syscalls::X86_64.len() {
        assert_eq!(syscalls::X86_64[nr], syscalls::AARCH64[nr], "{nr}");
    }
}
