//! Lowering of a per-syscall decision table to classic BPF.
//!
//! The program checks the architecture, refuses the x32 ABI where the
//! architecture has one, then walks a binary search tree over syscall-number
//! ranges: every run of consecutive numbers with the same fixed answer is one
//! leaf, and a syscall whose answer depends on its arguments (`socket`,
//! `personality`, `clone` …) is a leaf of its own that compares them. A
//! lookup costs about log2(leaves) jumps instead of runc's linear scan.

use libc::sock_filter;

/// `BPF_LD | BPF_W | BPF_ABS`: A = 32-bit word at offset k of `seccomp_data`.
const LD_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
/// `BPF_ALU | BPF_AND | BPF_K`: A &= k.
const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
/// `BPF_JMP | BPF_JA`: pc += k.
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGT: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
/// `BPF_RET | BPF_K`: return k.
const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Offsets in `struct seccomp_data` (linux/seccomp.h).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// What the filter answers for a syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Let it run.
    Allow,
    /// Fail it with this errno, without running it.
    Errno(u16),
    /// Kill the whole process (`SECCOMP_RET_KILL_PROCESS`).
    KillProcess,
}

impl Action {
    /// The `SECCOMP_RET_*` value the program returns.
    pub fn ret(self) -> u32 {
        match self {
            Action::Allow => libc::SECCOMP_RET_ALLOW,
            Action::Errno(errno) => libc::SECCOMP_RET_ERRNO | u32::from(errno),
            Action::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        }
    }
}

/// How one argument is compared with a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `arg == v`.
    Eq(u64),
    /// `arg < v` (unsigned).
    Lt(u64),
    /// `arg > v` (unsigned).
    Gt(u64),
    /// `arg & mask == value`.
    MaskedEq {
        /// Bits that are compared.
        mask: u64,
        /// What they must equal.
        value: u64,
    },
}

/// A comparison of syscall argument `index` (0–5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgCmp {
    /// Which argument.
    pub index: u8,
    /// The comparison.
    pub op: CmpOp,
    /// Compare only the low 32 bits: for arguments the kernel declares
    /// `int`, whose high register half it ignores (so a caller cannot slip
    /// past a 64-bit comparison by setting bits the kernel drops).
    pub low32: bool,
}

impl ArgCmp {
    /// A full 64-bit comparison, as libseccomp does by default.
    pub const fn u64(index: u8, op: CmpOp) -> ArgCmp {
        ArgCmp {
            index,
            op,
            low32: false,
        }
    }

    /// A comparison of an `int` argument: only its low 32 bits.
    pub const fn int(index: u8, op: CmpOp) -> ArgCmp {
        ArgCmp {
            index,
            op,
            low32: true,
        }
    }

    /// Whether `arg` satisfies this comparison (the reference semantics the
    /// BPF code implements).
    #[cfg(test)]
    pub fn matches(&self, arg: u64) -> bool {
        let (arg, op) = if self.low32 {
            (arg & 0xffff_ffff, self.op)
        } else {
            (arg, self.op)
        };
        match op {
            CmpOp::Eq(v) => arg == v,
            CmpOp::Lt(v) => arg < v,
            CmpOp::Gt(v) => arg > v,
            CmpOp::MaskedEq { mask, value } => arg & mask == value,
        }
    }
}

/// The answer for one syscall number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The same answer whatever the arguments.
    Fixed(Action),
    /// The first rule whose comparisons all hold gives the answer; if none
    /// holds, `otherwise`.
    Args {
        /// (comparisons that must all hold, answer).
        rules: Vec<(Vec<ArgCmp>, Action)>,
        /// The answer when no rule holds.
        otherwise: Action,
    },
}

impl Decision {
    /// The answer for a call with these arguments (reference semantics).
    #[cfg(test)]
    pub fn decide(&self, args: &[u64; 6]) -> Action {
        match self {
            Decision::Fixed(action) => *action,
            Decision::Args { rules, otherwise } => rules
                .iter()
                .find(|(cmps, _)| cmps.iter().all(|c| c.matches(args[usize::from(c.index)])))
                .map_or(*otherwise, |(_, action)| *action),
        }
    }
}

/// What the program is built from.
pub struct Spec<'a> {
    /// `AUDIT_ARCH_*` the program accepts; any other gets `KillProcess`.
    pub audit_arch: u32,
    /// Syscall numbers with this bit set are another ABI on the same
    /// `AUDIT_ARCH` (x86_64's x32): refused with `KillProcess`, except -1.
    pub abi_bit: Option<u32>,
    /// `decisions[nr]` is the answer for syscall `nr`.
    pub decisions: &'a [Decision],
    /// The answer for every number at or past `decisions.len()`.
    pub beyond: Action,
}

/// Builds the program.
pub fn assemble(spec: &Spec<'_>) -> Vec<sock_filter> {
    let mut code = vec![
        stmt(LD_ABS, OFF_ARCH),
        jump(JEQ, spec.audit_arch, 1, 0),
        stmt(RET, Action::KillProcess.ret()),
        stmt(LD_ABS, OFF_NR),
    ];
    if let Some(bit) = spec.abi_bit {
        // -1 is "no syscall" (what a tracer sets to skip one): give it what
        // the kernel would, ENOSYS, rather than killing.
        code.extend([
            jump(JGE, bit, 0, 3),
            jump(JEQ, u32::MAX, 0, 1),
            stmt(RET, Action::Errno(libc::ENOSYS as u16).ret()),
            stmt(RET, Action::KillProcess.ret()),
        ]);
    }
    code.extend(tree(&leaves(spec.decisions, spec.beyond)));
    code
}

/// A leaf of the search tree: the numbers from `start` up to the next
/// leaf's start, and their answer.
struct Leaf<'a> {
    start: u32,
    answer: Answer<'a>,
}

enum Answer<'a> {
    Ret(Action),
    Args(&'a [(Vec<ArgCmp>, Action)], Action),
}

/// Runs of equal fixed answers merged; argument-dependent ones stay single.
fn leaves(decisions: &[Decision], beyond: Action) -> Vec<Leaf<'_>> {
    let mut out: Vec<Leaf<'_>> = Vec::new();
    let answers = decisions
        .iter()
        .map(|d| match d {
            Decision::Fixed(action) => Answer::Ret(*action),
            Decision::Args { rules, otherwise } => Answer::Args(rules, *otherwise),
        })
        .chain(std::iter::once(Answer::Ret(beyond)));
    for (nr, answer) in answers.enumerate() {
        if let (
            Some(Leaf {
                answer: Answer::Ret(last),
                ..
            }),
            Answer::Ret(this),
        ) = (out.last(), &answer)
        {
            if last == this {
                continue;
            }
        }
        let start = u32::try_from(nr).expect("syscall table fits in u32");
        out.push(Leaf { start, answer });
    }
    out
}

/// A balanced search tree over the leaves; every path ends in a `ret`, so
/// subtrees compose by plain concatenation. Expects A = syscall number.
fn tree(leaves: &[Leaf<'_>]) -> Vec<sock_filter> {
    if let [leaf] = leaves {
        return match leaf.answer {
            Answer::Ret(action) => vec![stmt(RET, action.ret())],
            Answer::Args(rules, otherwise) => arg_block(rules, otherwise),
        };
    }
    let mid = leaves.len() / 2;
    let (left, right) = (tree(&leaves[..mid]), tree(&leaves[mid..]));
    let mut code = Vec::with_capacity(left.len() + right.len() + 2);
    match u8::try_from(left.len()) {
        Ok(skip) => code.push(jump(JGE, leaves[mid].start, skip, 0)),
        Err(_) => {
            // Conditional jumps reach 255 instructions; a longer left
            // subtree is skipped with an unconditional jump.
            code.push(jump(JGE, leaves[mid].start, 0, 1));
            code.push(stmt(JA, left.len() as u32));
        }
    }
    code.extend(left);
    code.extend(right);
    code
}

/// Where a conditional jump goes: `Skip(n)` instructions ahead (0 = the
/// next one), or to the next rule (`Fail`).
#[derive(Clone, Copy)]
enum To {
    Skip(u8),
    Fail,
}

const NEXT: To = To::Skip(0);

/// An instruction whose jump targets are not resolved yet.
struct Pending {
    insn: sock_filter,
    jt: To,
    jf: To,
}

fn p(insn: sock_filter) -> Pending {
    Pending {
        insn,
        jt: NEXT,
        jf: NEXT,
    }
}

fn pj(code: u16, k: u32, jt: To, jf: To) -> Pending {
    Pending {
        insn: jump(code, k, 0, 0),
        jt,
        jf,
    }
}

/// The rules in order, each `[comparisons…, ret action]` with a failed
/// comparison jumping to the next rule, then `ret otherwise`.
fn arg_block(rules: &[(Vec<ArgCmp>, Action)], otherwise: Action) -> Vec<sock_filter> {
    let mut code = Vec::new();
    'rule: for (cmps, action) in rules {
        let mut rule = Vec::new();
        for cmp in cmps {
            match cmp_code(cmp) {
                Some(pending) => rule.extend(pending),
                // Can never hold: the rule never matches.
                None => continue 'rule,
            }
        }
        rule.push(p(stmt(RET, action.ret())));
        let len = rule.len();
        for (idx, pending) in rule.into_iter().enumerate() {
            // A failed comparison lands just past this rule's `ret`.
            let resolve = |to: To| match to {
                To::Skip(n) => n,
                To::Fail => u8::try_from(len - idx - 1).expect("a rule is short"),
            };
            let mut insn = pending.insn;
            insn.jt = resolve(pending.jt);
            insn.jf = resolve(pending.jf);
            code.push(insn);
        }
    }
    code.push(stmt(RET, otherwise.ret()));
    code
}

/// The code for one comparison: falls through when it holds, jumps to
/// `Fail` when not. `None` when it can never hold; empty when it always does.
fn cmp_code(cmp: &ArgCmp) -> Option<Vec<Pending>> {
    // Little-endian: the low word of argument i comes first.
    let lo = OFF_ARGS + 8 * u32::from(cmp.index);
    let hi = lo + 4;
    let split = |v: u64| ((v >> 32) as u32, v as u32);
    let ld = |off| p(stmt(LD_ABS, off));
    let mut code = Vec::new();
    match cmp.op {
        CmpOp::Eq(v) => {
            let (vh, vl) = split(v);
            if cmp.low32 {
                if vh != 0 {
                    return None;
                }
            } else {
                code.extend([ld(hi), pj(JEQ, vh, NEXT, To::Fail)]);
            }
            code.extend([ld(lo), pj(JEQ, vl, NEXT, To::Fail)]);
        }
        CmpOp::MaskedEq { mask, value } => {
            let ((mh, ml), (vh, vl)) = (split(mask), split(value));
            if cmp.low32 || (mh == 0 && vh == 0) {
                if vh != 0 {
                    return None;
                }
            } else {
                code.extend([ld(hi), p(stmt(AND_K, mh)), pj(JEQ, vh, NEXT, To::Fail)]);
            }
            code.extend([ld(lo), p(stmt(AND_K, ml)), pj(JEQ, vl, NEXT, To::Fail)]);
        }
        CmpOp::Gt(v) => {
            let (vh, vl) = split(v);
            if cmp.low32 {
                if vh != 0 {
                    return None;
                }
            } else {
                // hi > vh: holds (skip the rest); hi < vh: fails.
                code.extend([
                    ld(hi),
                    pj(JGT, vh, To::Skip(3), NEXT),
                    pj(JEQ, vh, NEXT, To::Fail),
                ]);
            }
            code.extend([ld(lo), pj(JGT, vl, NEXT, To::Fail)]);
        }
        CmpOp::Lt(v) => {
            let (vh, vl) = split(v);
            if cmp.low32 {
                if vh != 0 {
                    return Some(code);
                }
            } else {
                // hi < vh: holds (skip the rest); hi > vh: fails.
                code.extend([
                    ld(hi),
                    pj(JGE, vh, NEXT, To::Skip(3)),
                    pj(JEQ, vh, NEXT, To::Fail),
                ]);
            }
            code.extend([ld(lo), pj(JGE, vl, To::Fail, NEXT)]);
        }
    }
    Some(code)
}

const fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}
