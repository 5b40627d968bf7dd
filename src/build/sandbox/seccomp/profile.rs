//! Docker's default seccomp profile as data: moby/profiles `seccomp/default.json`
//! (v0.2.3, vendored in moby/moby at b985e2313a86), rule for rule, in the
//! order of the file, with the `includes`/`excludes` conditions that moby's
//! `setupSeccomp` applies before handing the profile to runc.
//!
//! To refresh: diff the new `default.json` against that version and carry
//! the changes over (names are listed as in the file; names that do not exist
//! on an architecture are skipped when the program is built).

use super::bpf::{Action, ArgCmp, CmpOp};

// Capability numbers (linux/capability.h).
pub const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_SYS_MODULE: u32 = 16;
pub const CAP_SYS_RAWIO: u32 = 17;
pub const CAP_SYS_CHROOT: u32 = 18;
pub const CAP_SYS_PTRACE: u32 = 19;
pub const CAP_SYS_PACCT: u32 = 20;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_SYS_BOOT: u32 = 22;
pub const CAP_SYS_NICE: u32 = 23;
pub const CAP_SYS_TIME: u32 = 25;
pub const CAP_SYS_TTY_CONFIG: u32 = 26;
pub const CAP_SYSLOG: u32 = 34;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// The answer for a syscall no rule names: `defaultAction: SCMP_ACT_ERRNO`,
/// `defaultErrnoRet: 1`.
pub const DEFAULT_ACTION: Action = Action::Errno(libc::EPERM as u16);

/// One entry of the profile's `syscalls` list.
pub struct Rule {
    /// The syscalls it applies to.
    pub names: &'static [&'static str],
    /// What they get when it applies.
    pub action: Action,
    /// Comparisons that must all hold (none: whatever the arguments).
    pub args: &'static [ArgCmp],
    /// Applies only on these architectures (moby's names; empty: all).
    pub arches: &'static [&'static str],
    /// Does not apply on these architectures.
    pub not_arches: &'static [&'static str],
    /// Applies only when every one of these capabilities is held.
    pub caps: &'static [u32],
    /// Does not apply when any one of these capabilities is held.
    pub not_caps: &'static [u32],
}

impl Rule {
    /// The base every entry below starts from.
    const ALLOW: Rule = Rule {
        names: &[],
        action: Action::Allow,
        args: &[],
        arches: &[],
        not_arches: &[],
        caps: &[],
        not_caps: &[],
    };

    /// Whether this rule is part of the profile for a process on `arch`
    /// (moby's name) whose capability bounding set is `caps` (bit N =
    /// capability N), as moby's `setupSeccomp` decides.
    pub fn applies(&self, arch: &str, caps: u64) -> bool {
        let has = |cap: &u32| caps & (1u64 << cap) != 0;
        (self.arches.is_empty() || self.arches.contains(&arch))
            && !self.not_arches.contains(&arch)
            && self.caps.iter().all(has)
            && !self.not_caps.iter().any(has)
    }
}

/// The profile's rules, in the file's order.
#[rustfmt::skip]
pub static RULES: &[Rule] = &[
    Rule {
        names: &[
            "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat",
            "capget", "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime",
            "clock_adjtime64", "clock_getres", "clock_getres_time64", "clock_gettime",
            "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range",
            "connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create",
            "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
            "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit",
            "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
            "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32",
            "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock",
            "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs",
            "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex", "futex_requeue",
            "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "futimesat", "getcpu",
            "getcwd", "getdents", "getdents64", "getegid", "getegid32", "geteuid", "geteuid32",
            "getgid", "getgid32", "getgroups", "getgroups32", "getitimer", "getpeername",
            "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid",
            "getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage",
            "getsid", "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday",
            "getuid", "getuid32", "getxattr", "getxattrat", "inotify_add_watch", "inotify_init",
            "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy",
            "io_getevents", "io_pgetevents", "io_pgetevents_time64", "ioprio_get", "ioprio_set",
            "io_setup", "io_submit", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset",
            "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat",
            "listen", "listmount", "listxattr", "listxattrat", "llistxattr", "_llseek",
            "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise",
            "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir",
            "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2",
            "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
            "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap",
            "mseal", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall",
            "munmap", "name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open",
            "openat", "openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2",
            "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl",
            "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease", "pselect6",
            "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink",
            "readlinkat", "readv", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg",
            "remap_file_pages", "removexattr", "removexattrat", "rename", "renameat", "renameat2",
            "restart_syscall", "riscv_hwprobe", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
            "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
            "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity",
            "sched_getattr", "sched_getparam", "sched_get_priority_max", "sched_get_priority_min",
            "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
            "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler",
            "sched_yield", "seccomp", "select", "semctl", "semget", "semop", "semtimedop",
            "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto",
            "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups",
            "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32",
            "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32",
            "setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area",
            "set_tid_address", "setuid", "setuid32", "setxattr", "setxattrat", "shmat", "shmctl",
            "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask",
            "sigreturn", "socketcall", "socketpair", "splice", "stat", "stat64", "statfs",
            "statfs64", "statmount", "statx", "symlink", "symlinkat", "sync", "sync_file_range",
            "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete",
            "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
            "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
            "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate", "truncate64",
            "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "uretprobe", "utime",
            "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid",
            "waitpid", "write", "writev",
        ],
        ..Rule::ALLOW
    },
    Rule {
        names: &["process_vm_readv", "process_vm_writev", "ptrace"],
        // Docker: only on kernels >= 4.8, older than any d2v supports.
        ..Rule::ALLOW
    },
    Rule {
        // Every address family but AF_VSOCK (40). Docker compares 64 bits;
        // `family` is an `int`, so we compare its low half: the same answer
        // for every real call, and no way past it by setting the high half.
        names: &["socket"],
        args: &[ArgCmp::int(0, CmpOp::Lt(38))],
        ..Rule::ALLOW
    },
    Rule {
        names: &["socket"],
        args: &[ArgCmp::int(0, CmpOp::Eq(39))],
        ..Rule::ALLOW
    },
    Rule {
        names: &["socket"],
        args: &[ArgCmp::int(0, CmpOp::Gt(40))],
        ..Rule::ALLOW
    },
    Rule {
        // PER_LINUX, PER_LINUX32, UNAME26 (with PER_LINUX32) and the query.
        names: &["personality"],
        args: &[ArgCmp::u64(0, CmpOp::Eq(0))],
        ..Rule::ALLOW
    },
    Rule {
        names: &["personality"],
        args: &[ArgCmp::u64(0, CmpOp::Eq(8))],
        ..Rule::ALLOW
    },
    Rule {
        names: &["personality"],
        args: &[ArgCmp::u64(0, CmpOp::Eq(0x20000))],
        ..Rule::ALLOW
    },
    Rule {
        names: &["personality"],
        args: &[ArgCmp::u64(0, CmpOp::Eq(0x20008))],
        ..Rule::ALLOW
    },
    Rule {
        names: &["personality"],
        args: &[ArgCmp::u64(0, CmpOp::Eq(0xffffffff))],
        ..Rule::ALLOW
    },
    Rule {
        names: &["sync_file_range2", "swapcontext"],
        arches: &["ppc64le"],
        ..Rule::ALLOW
    },
    Rule {
        names: &[
            "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
            "cacheflush", "set_tls",
        ],
        arches: &["arm", "arm64"],
        ..Rule::ALLOW
    },
    Rule {
        names: &["arch_prctl"],
        arches: &["amd64", "x32"],
        ..Rule::ALLOW
    },
    Rule {
        names: &["modify_ldt"],
        arches: &["amd64", "x32", "x86"],
        ..Rule::ALLOW
    },
    Rule {
        names: &[
            "s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr",
        ],
        arches: &["s390", "s390x"],
        ..Rule::ALLOW
    },
    Rule {
        names: &["riscv_flush_icache"],
        arches: &["riscv64"],
        ..Rule::ALLOW
    },
    Rule {
        names: &["open_by_handle_at"],
        caps: &[CAP_DAC_READ_SEARCH],
        ..Rule::ALLOW
    },
    Rule {
        names: &[
            "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
            "lookup_dcookie", "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr",
            "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open", "quotactl",
            "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2",
            "unshare",
        ],
        caps: &[CAP_SYS_ADMIN],
        ..Rule::ALLOW
    },
    Rule {
        // No CLONE_NEW* namespace flag (0x7e020000) without CAP_SYS_ADMIN.
        names: &["clone"],
        args: &[ArgCmp::u64(
            0,
            CmpOp::MaskedEq {
                mask: 0x7e020000,
                value: 0,
            },
        )],
        not_arches: &["s390", "s390x"],
        not_caps: &[CAP_SYS_ADMIN],
        ..Rule::ALLOW
    },
    Rule {
        names: &["clone"],
        args: &[ArgCmp::u64(
            1,
            CmpOp::MaskedEq {
                mask: 0x7e020000,
                value: 0,
            },
        )],
        arches: &["s390", "s390x"],
        not_caps: &[CAP_SYS_ADMIN],
        ..Rule::ALLOW
    },
    Rule {
        // clone3 passes its flags in memory a filter cannot read: ENOSYS
        // makes glibc fall back to clone, whose flags are checked above.
        names: &["clone3"],
        action: Action::Errno(libc::ENOSYS as u16),
        not_caps: &[CAP_SYS_ADMIN],
        ..Rule::ALLOW
    },
    Rule {
        names: &["reboot"],
        caps: &[CAP_SYS_BOOT],
        ..Rule::ALLOW
    },
    Rule {
        names: &["chroot"],
        caps: &[CAP_SYS_CHROOT],
        ..Rule::ALLOW
    },
    Rule {
        names: &["delete_module", "init_module", "finit_module"],
        caps: &[CAP_SYS_MODULE],
        ..Rule::ALLOW
    },
    Rule {
        names: &["acct"],
        caps: &[CAP_SYS_PACCT],
        ..Rule::ALLOW
    },
    Rule {
        names: &[
            "kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev",
            "ptrace",
        ],
        caps: &[CAP_SYS_PTRACE],
        ..Rule::ALLOW
    },
    Rule {
        names: &["iopl", "ioperm"],
        caps: &[CAP_SYS_RAWIO],
        ..Rule::ALLOW
    },
    Rule {
        names: &["settimeofday", "stime", "clock_settime", "clock_settime64"],
        caps: &[CAP_SYS_TIME],
        ..Rule::ALLOW
    },
    Rule {
        names: &["vhangup"],
        caps: &[CAP_SYS_TTY_CONFIG],
        ..Rule::ALLOW
    },
    Rule {
        names: &[
            "get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node",
        ],
        caps: &[CAP_SYS_NICE],
        ..Rule::ALLOW
    },
    Rule {
        names: &["syslog"],
        caps: &[CAP_SYSLOG],
        ..Rule::ALLOW
    },
    Rule {
        names: &["bpf"],
        caps: &[CAP_BPF],
        ..Rule::ALLOW
    },
    Rule {
        names: &["perf_event_open"],
        caps: &[CAP_PERFMON],
        ..Rule::ALLOW
    },
];
