//! The lowering to BPF: comparisons on edge values, random rule sets, the
//! whole program against its decision table, and the program's shape.

use super::{eval, verdict_of, Verdict, BOTH, CAP_SYS_ADMIN, DOCKER_CAPS};
use crate::build::sandbox::seccomp::bpf::{self, Action, ArgCmp, CmpOp, Decision, Spec};
use crate::build::sandbox::seccomp::{docker_decisions, Arch, SeccompProgram};
use proptest::prelude::*;

/// Every jump lands inside the program and every path ends in `ret`, as the
/// kernel's checker demands; the program fits in BPF_MAXINSNS.
#[test]
fn programs_are_well_formed() {
    for arch in BOTH {
        for caps in [0, DOCKER_CAPS, u64::MAX >> 23] {
            let prog = SeccompProgram::docker_default_for(arch, caps);
            let insns = prog.instructions();
            assert!(insns.len() <= libc::BPF_MAXINSNS as usize);
            for (pc, insn) in insns.iter().enumerate() {
                let class = u32::from(insn.code) & 0x07;
                if class == libc::BPF_JMP {
                    let (a, b) = if u32::from(insn.code) == libc::BPF_JMP | libc::BPF_JA {
                        (insn.k as usize, insn.k as usize)
                    } else {
                        (usize::from(insn.jt), usize::from(insn.jf))
                    };
                    assert!(pc + 1 + a.max(b) < insns.len(), "{arch:?} jump at {pc} out");
                }
            }
            let last = insns.last().unwrap();
            assert_eq!(u32::from(last.code), libc::BPF_RET | libc::BPF_K);
        }
    }
}

/// The size and cost of the program; printed with `--nocapture`.
#[test]
fn program_size_and_path_lengths() {
    for arch in BOTH {
        let prog = SeccompProgram::docker_default_for(arch, DOCKER_CAPS);
        let steps: Vec<usize> = (0..arch.table().len() as u32)
            .map(|nr| eval(prog.instructions(), arch.audit_arch(), nr, [0; 6]).1)
            .collect();
        let max = steps.iter().max().unwrap();
        let mean = steps.iter().sum::<usize>() as f64 / steps.len() as f64;
        eprintln!(
            "{arch:?}: {} instructions; per syscall: max {max}, mean {mean:.1} executed",
            prog.len()
        );
    }
}

/// 64-bit values built from halves around the edges comparisons care about.
fn edge_values() -> Vec<u64> {
    const HALVES: [u64; 6] = [0, 1, 2, 0x7fff_ffff, 0xffff_fffe, 0xffff_ffff];
    HALVES
        .iter()
        .flat_map(|hi| HALVES.iter().map(move |lo| hi << 32 | lo))
        .collect()
}

fn single_rule(cmp: ArgCmp) -> Vec<libc::sock_filter> {
    let decisions = vec![Decision::Args {
        rules: vec![(vec![cmp], Action::Errno(1))],
        otherwise: Action::Allow,
    }];
    bpf::assemble(&Spec {
        audit_arch: 1,
        abi_bit: None,
        decisions: &decisions,
        beyond: Action::KillProcess,
    })
}

/// Every comparison, on every pair of edge values, in both widths, lowers to
/// code that agrees with its meaning.
#[test]
fn argument_comparisons_lower_correctly() {
    let values = edge_values();
    let mut ops = Vec::new();
    for &v in &values {
        ops.extend([CmpOp::Eq(v), CmpOp::Lt(v), CmpOp::Gt(v)]);
        for &mask in &values {
            ops.push(CmpOp::MaskedEq {
                mask,
                value: v & mask,
            });
        }
    }
    for op in ops {
        for low32 in [false, true] {
            let cmp = ArgCmp {
                index: 3,
                op,
                low32,
            };
            let code = single_rule(cmp);
            for &arg in &values {
                let want = if cmp.matches(arg) {
                    Verdict::Errno(1)
                } else {
                    Verdict::Allow
                };
                let args = [0, 0, 0, arg, 0, 0];
                assert_eq!(eval(&code, 1, 0, args).0, want, "{cmp:?} on {arg:#x}");
            }
        }
    }
}

fn arb_edge() -> impl Strategy<Value = u64> {
    prop::sample::select(edge_values())
}

fn arb_cmp() -> impl Strategy<Value = ArgCmp> {
    let op = prop_oneof![
        arb_edge().prop_map(CmpOp::Eq),
        arb_edge().prop_map(CmpOp::Lt),
        arb_edge().prop_map(CmpOp::Gt),
        (arb_edge(), arb_edge()).prop_map(|(mask, v)| CmpOp::MaskedEq {
            mask,
            value: v & mask
        }),
    ];
    (0u8..6, op, any::<bool>()).prop_map(|(index, op, low32)| ArgCmp { index, op, low32 })
}

fn arb_arg() -> impl Strategy<Value = u64> {
    prop_oneof![any::<u64>(), arb_edge(), 0u64..64]
}

proptest! {
    /// Several rules of several comparisons each: the first rule that holds
    /// answers, as libseccomp does.
    #[test]
    fn argument_rules_lower_correctly(
        rules in prop::collection::vec(prop::collection::vec(arb_cmp(), 1..3), 1..4),
        args in prop::array::uniform6(arb_arg()),
    ) {
        let rules: Vec<(Vec<ArgCmp>, Action)> = rules
            .into_iter()
            .enumerate()
            .map(|(i, cmps)| (cmps, Action::Errno(i as u16 + 1)))
            .collect();
        let decision = Decision::Args { rules, otherwise: Action::Allow };
        let want = verdict_of(decision.decide(&args));
        let decisions = vec![decision];
        let code = bpf::assemble(&Spec {
            audit_arch: 1,
            abi_bit: None,
            decisions: &decisions,
            beyond: Action::KillProcess,
        });
        prop_assert_eq!(eval(&code, 1, 0, args).0, want);
    }

    /// Docker's program answers every syscall as the decision table says.
    #[test]
    fn program_matches_its_decision_table(
        nr in 0u32..600,
        args in prop::array::uniform6(arb_arg()),
        admin in any::<bool>(),
        aarch64 in any::<bool>(),
    ) {
        let arch = if aarch64 { Arch::Aarch64 } else { Arch::X86_64 };
        let caps = if admin { DOCKER_CAPS | CAP_SYS_ADMIN } else { DOCKER_CAPS };
        let (decisions, beyond) = docker_decisions(arch, caps);
        let want = decisions.get(nr as usize).map_or(beyond, |d| d.decide(&args));
        let prog = SeccompProgram::docker_default_for(arch, caps);
        prop_assert_eq!(eval(prog.instructions(), arch.audit_arch(), nr, args).0, verdict_of(want));
    }
}
