//! Docker's default seccomp profile for RUN steps, compiled to a classic-BPF
//! program by our own small generator (no libseccomp).
//!
//! The profile (moby/profiles `seccomp/default.json`, in `profile.rs`) is
//! filtered for the architecture and the process's capabilities exactly as
//! moby does before handing it to runc, the names are turned into numbers
//! with the tables in `syscalls.rs`, and `bpf.rs` lowers the result to a
//! program that checks the architecture, refuses the x32 ABI, and finds the
//! syscall in a binary search tree over number ranges. As runc does, a
//! number past the highest one the profile names gets `ENOSYS` (so a libc
//! newer than the profile falls back from a syscall it does not know), every
//! other unnamed one `EPERM`.
//!
//! Two places where we are stricter than `docker run`: only the native ABI
//! is allowed (Docker's profile also lets i386 and x32 binaries run on
//! x86_64, and 32-bit ARM on aarch64: i386's `socketcall` multiplexer
//! would carry `socket` past the family check below), and `socket`'s `int` family is
//! compared on its low 32 bits, so a high half the kernel ignores cannot
//! smuggle `AF_VSOCK` past the check.
//!
//! Why not the `seccompiler` crate: its filter has a single match action, so
//! `clone3 → ENOSYS` next to the allow list would take two stacked filters;
//! it neither refuses x32 nor answers ENOSYS past the known numbers, its
//! output is a linear scan, and we would still need the name tables.
//!
//! ```no_run
//! use d2v::build::sandbox::seccomp::{install, SeccompProgram};
//! // In the parent, before clone: allocating is fine here.
//! let program = SeccompProgram::docker_default(0xa804_25fb);
//! let fprog = program.as_fprog(); // `program` must outlive the child's use
//! // In the clone child, after its mounts, while it still has CAP_SYS_ADMIN
//! // in its user namespace, before execve:
//! if install(&fprog) != 0 { /* report errno to the parent */ }
//! ```

mod bpf;
mod profile;
mod syscalls;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;

use bpf::{Action, ArgCmp, Decision, Spec};
use profile::{DEFAULT_ACTION, RULES};

/// An architecture we have a syscall table for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// x86_64, native ABI (x32 and i386 refused).
    X86_64,
    /// aarch64 (32-bit ARM refused).
    Aarch64,
}

impl Arch {
    /// The architecture d2v was built for.
    #[cfg(target_arch = "x86_64")]
    pub const NATIVE: Arch = Arch::X86_64;
    /// The architecture d2v was built for.
    #[cfg(target_arch = "aarch64")]
    pub const NATIVE: Arch = Arch::Aarch64;

    /// `AUDIT_ARCH_*` (linux/audit.h): the ELF machine, 64-bit, little-endian.
    pub fn audit_arch(self) -> u32 {
        const ARCH_64BIT_LE: u32 = 0x8000_0000 | 0x4000_0000;
        match self {
            Arch::X86_64 => ARCH_64BIT_LE | 62,   // EM_X86_64
            Arch::Aarch64 => ARCH_64BIT_LE | 183, // EM_AARCH64
        }
    }

    /// The name moby's profile uses for it in `arches`.
    fn moby_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// `TABLE[nr]` is the name of syscall `nr`.
    fn table(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &syscalls::X86_64,
            Arch::Aarch64 => &syscalls::AARCH64,
        }
    }

    /// The bit that marks another ABI's syscall numbers on the same
    /// `AUDIT_ARCH` (`__X32_SYSCALL_BIT`).
    fn abi_bit(self) -> Option<u32> {
        match self {
            Arch::X86_64 => Some(0x4000_0000),
            Arch::Aarch64 => None,
        }
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("seccomp: no syscall table for this architecture (add one to seccomp/syscalls.rs)");

/// A compiled classic-BPF seccomp program.
#[derive(Clone)]
pub struct SeccompProgram {
    filter: Vec<libc::sock_filter>,
}

impl SeccompProgram {
    /// Docker's default profile (moby/profiles seccomp `default.json`) for a
    /// process whose effective/bounding capabilities are `caps` (bit N =
    /// capability N), for the architecture d2v runs on.
    /// `docker_default(0xa804_25fb)` is what `docker run` applies by default.
    pub fn docker_default(caps: u64) -> SeccompProgram {
        SeccompProgram::docker_default_for(Arch::NATIVE, caps)
    }

    /// [`SeccompProgram::docker_default`] for another architecture (for
    /// tests and inspection: it can only be installed on that one).
    pub fn docker_default_for(arch: Arch, caps: u64) -> SeccompProgram {
        let (decisions, beyond) = docker_decisions(arch, caps);
        let filter = bpf::assemble(&Spec {
            audit_arch: arch.audit_arch(),
            abi_bit: arch.abi_bit(),
            decisions: &decisions,
            beyond,
        });
        assert!(
            filter.len() <= libc::BPF_MAXINSNS as usize,
            "seccomp program of {} instructions is too long for the kernel",
            filter.len()
        );
        SeccompProgram { filter }
    }

    /// The `sock_fprog` for seccomp(2); valid while `self` lives.
    pub fn as_fprog(&self) -> libc::sock_fprog {
        libc::sock_fprog {
            // Bounded by BPF_MAXINSNS (asserted when built).
            len: self.filter.len() as libc::c_ushort,
            // The kernel only reads the program.
            filter: self.filter.as_ptr().cast_mut(),
        }
    }

    /// Number of instructions (for tests / debugging).
    pub fn len(&self) -> usize {
        self.filter.len()
    }

    /// Always false: a program at least checks the architecture.
    pub fn is_empty(&self) -> bool {
        self.filter.is_empty()
    }

    /// The instructions.
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.filter
    }
}

impl fmt::Debug for SeccompProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SeccompProgram({} instructions)", self.filter.len())
    }
}

/// The answer for every syscall number of `arch` below the first number past
/// the highest one the profile names, and the answer from there on (ENOSYS).
fn docker_decisions(arch: Arch, caps: u64) -> (Vec<Decision>, Action) {
    let mut by_name: HashMap<&str, Vec<&profile::Rule>> = HashMap::new();
    for rule in RULES.iter().filter(|r| r.applies(arch.moby_name(), caps)) {
        for name in rule.names {
            by_name.entry(name).or_default().push(rule);
        }
    }
    let mut decisions = Vec::with_capacity(arch.table().len());
    let mut end = 0;
    for (nr, name) in arch.table().iter().enumerate() {
        match by_name.get(name) {
            Some(rules) => {
                decisions.push(decide(rules));
                end = nr + 1;
            }
            None => decisions.push(Decision::Fixed(DEFAULT_ACTION)),
        }
    }
    decisions.truncate(end);
    (decisions, Action::Errno(libc::ENOSYS as u16))
}

/// libseccomp's semantics for several rules on one syscall: a rule without
/// argument comparisons decides alone; otherwise the first rule whose
/// comparisons all hold, else the default.
fn decide(rules: &[&profile::Rule]) -> Decision {
    if let Some(rule) = rules.iter().find(|r| r.args.is_empty()) {
        return Decision::Fixed(rule.action);
    }
    Decision::Args {
        rules: rules
            .iter()
            .map(|r| (r.args.to_vec(), r.action))
            .collect::<Vec<(Vec<ArgCmp>, Action)>>(),
        otherwise: DEFAULT_ACTION,
    }
}

/// Installs `prog` in the calling thread with
/// `seccomp(SECCOMP_SET_MODE_FILTER)`.
///
/// Async-signal-safe (no allocation, no locks): meant for a clone child
/// between clone and execve. Without `PR_SET_NO_NEW_PRIVS` (which Docker
/// does not set either) the caller needs CAP_SYS_ADMIN in its user namespace.
/// Everything after it runs under the filter, so call it after the child's
/// mounts and hostname, before it drops capabilities and calls execve (all
/// allowed). Returns the raw return code (0, or -1 with errno set).
pub fn install(prog: &libc::sock_fprog) -> libc::c_int {
    // SAFETY: seccomp(2) reads `prog` and the `len` instructions it points
    // to, which the caller's `SeccompProgram` keeps alive; it writes nothing.
    unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            prog as *const libc::sock_fprog,
        ) as libc::c_int
    }
}
