//! The compiled filter against the oracle: each layer compiled on its own
//! by `seccompiler` and stacked as the kernel stacks programs (as the
//! filter was installed before it had its own compiler). A classic BPF
//! interpreter runs both over every syscall number up to past the table,
//! x32 and negative numbers, another architecture, and for each syscall
//! with argument rules every combination of the values its conditions
//! name, their neighbours and the values with high bits set.

use std::collections::BTreeSet;

use sandbox_policy::SocketFamily;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::bpf::{AUDIT_ARCH, Action, Insn, Layer, Op};
use super::{KNOWN_SYSCALLS, SeccompOptions, SeccompProgram};

/// `struct seccomp_data`, as the program sees it.
fn data(nr: u32, arch: u32, args: [u64; 6]) -> [u8; 64] {
    let mut d = [0u8; 64];
    d[0..4].copy_from_slice(&nr.to_ne_bytes());
    d[4..8].copy_from_slice(&arch.to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
    }
    d
}

/// Runs a classic BPF program (the instructions either compiler emits).
fn run(program: &[(u16, u8, u8, u32)], data: &[u8; 64]) -> u32 {
    let (mut acc, mut pc) = (0u32, 0usize);
    loop {
        let (code, jt, jf, k) = program[pc];
        pc += 1;
        let jump = |cond: bool| usize::from(if cond { jt } else { jf });
        match code {
            0x20 => {
                let at = k as usize;
                acc = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
            }
            0x54 => acc &= k,
            0x15 => pc += jump(acc == k),
            0x35 => pc += jump(acc >= k),
            0x25 => pc += jump(acc > k),
            0x45 => pc += jump(acc & k != 0),
            0x05 => pc += k as usize,
            0x06 => return k,
            _ => panic!("opcode {code:#x} not interpreted"),
        }
    }
}

/// The kernel's choice over a stack (install order): the lowest action
/// as a signed number, between equals the last installed.
fn stacked(programs: &[Vec<(u16, u8, u8, u32)>], data: &[u8; 64]) -> u32 {
    let mut chosen: Option<u32> = None;
    for p in programs.iter().rev() {
        let ret = run(p, data);
        let rank = |r: u32| (r & 0xffff_0000) as i32;
        if chosen.is_none_or(|c| rank(ret) < rank(c)) {
            chosen = Some(ret);
        }
    }
    chosen.unwrap()
}

fn oracle_action(a: Action) -> SeccompAction {
    match a {
        Action::Allow => SeccompAction::Allow,
        Action::Errno(e) => SeccompAction::Errno(e),
        Action::KillProcess => SeccompAction::KillProcess,
    }
}

/// A layer compiled by seccompiler, as its own program.
fn oracle(layer: &Layer) -> Vec<(u16, u8, u8, u32)> {
    let rules = layer
        .rules
        .iter()
        .map(|(&nr, rules)| {
            let rules = rules
                .iter()
                .map(|rule| {
                    let conds = rule
                        .iter()
                        .map(|c| {
                            let len = if c.qword {
                                SeccompCmpArgLen::Qword
                            } else {
                                SeccompCmpArgLen::Dword
                            };
                            let op = match c.op {
                                Op::Eq => SeccompCmpOp::Eq,
                                Op::Ne => SeccompCmpOp::Ne,
                                Op::MaskedEq(m) => SeccompCmpOp::MaskedEq(m),
                            };
                            SeccompCondition::new(c.arg, len, op, c.value).unwrap()
                        })
                        .collect();
                    SeccompRule::new(conds).unwrap()
                })
                .collect();
            (i64::from(nr), rules)
        })
        .collect();
    let filter = SeccompFilter::new(
        rules,
        oracle_action(layer.otherwise),
        oracle_action(layer.on_match),
        TargetArch::try_from(std::env::consts::ARCH).unwrap(),
    )
    .unwrap();
    BpfProgram::try_from(filter)
        .unwrap()
        .iter()
        .map(|i| (i.code, i.jt, i.jf, i.k))
        .collect()
}

/// Values worth trying for one argument, from the conditions on it.
fn candidates(values: &BTreeSet<(u64, Option<u64>)>) -> Vec<u64> {
    let mut out: BTreeSet<u64> = [0, 1, u64::MAX, 0xffff_ffff, 1 << 32].into();
    for &(v, mask) in values {
        for x in [
            v,
            v ^ 1,
            v.wrapping_add(1),
            v.wrapping_sub(1),
            v | 1 << 32,
            v | 1 << 63,
        ] {
            out.insert(x);
            out.insert(x & 0xffff_ffff);
        }
        if let Some(m) = mask {
            out.insert(v | !m);
            out.insert(v & !m);
            out.insert(!v & m);
        }
    }
    out.into_iter().collect()
}

/// Every input of the grid gets the same action from both.
fn assert_equivalent(program: &SeccompProgram, label: &str) {
    let ours: Vec<(u16, u8, u8, u32)> = program
        .program
        .iter()
        .map(|&Insn { code, jt, jf, k }| (code, jt, jf, k))
        .collect();
    let theirs: Vec<_> = program.layers.iter().map(oracle).collect();
    let mut numbers: Vec<u32> = (0..=600).collect();
    numbers.extend([
        0x4000_0000,
        0x4000_0001,
        0x4000_003b,
        0x4000_0200,
        0x4000_0221,
    ]);
    numbers.extend([0x7fff_ffff, 0x8000_0000, 0xffff_ffff]);
    let mut checked = 0u64;
    for arch in [AUDIT_ARCH, 0x4000_0003] {
        for &nr in &numbers {
            // The values the layers' conditions on this syscall name.
            let mut per_arg: [BTreeSet<(u64, Option<u64>)>; 6] = Default::default();
            for layer in &program.layers {
                for rule in layer.rules.get(&nr).into_iter().flatten() {
                    for c in rule {
                        let mask = if let Op::MaskedEq(m) = c.op {
                            Some(m)
                        } else {
                            None
                        };
                        per_arg[usize::from(c.arg)].insert((c.value, mask));
                    }
                }
            }
            let grids: Vec<Vec<u64>> = per_arg
                .iter()
                .map(|v| {
                    if v.is_empty() {
                        vec![0, u64::MAX]
                    } else {
                        candidates(v)
                    }
                })
                .collect();
            let used: Vec<usize> = (0..6).filter(|&i| !per_arg[i].is_empty()).collect();
            let mut inputs = vec![[0u64; 6], [u64::MAX; 6]];
            if !used.is_empty() {
                inputs.clear();
                let mut stack = vec![[0u64; 6]];
                for &i in &used {
                    stack = stack
                        .into_iter()
                        .flat_map(|a| {
                            grids[i].iter().map(move |&v| {
                                let mut a = a;
                                a[i] = v;
                                a
                            })
                        })
                        .collect();
                }
                inputs = stack;
            }
            for args in inputs {
                let d = data(nr, arch, args);
                let (want, got) = (stacked(&theirs, &d), run(&ours, &d));
                assert_eq!(
                    got, want,
                    "{label}: syscall {nr:#x} arch {arch:#x} args {args:x?}: compiled {got:#x}, stacked {want:#x}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "{label}: {checked} inputs");
}

#[test]
fn the_compiled_filter_acts_as_the_stack_of_its_layers() {
    let families: [&[SocketFamily]; 3] = [&[], &[SocketFamily::Netlink], SocketFamily::ALL];
    for nested in [false, true] {
        for extra in families {
            let options = SeccompOptions::new(nested).with_socket_families(extra);
            let label = format!("nested {nested}, families {extra:?}");
            let default = SeccompProgram::default_filter_with(&options).unwrap();
            assert_equivalent(&default, &format!("default, {label}"));
            let strict = SeccompProgram::strict_filter_with(&options).unwrap();
            assert_equivalent(&strict, &format!("strict, {label}"));
        }
    }
    // A table that ends early: a number past it is unknown.
    let short = SeccompProgram::default_filter_knowing(
        &SeccompOptions::new(false),
        &KNOWN_SYSCALLS[..KNOWN_SYSCALLS.len() - 20],
    )
    .unwrap();
    assert_equivalent(&short, "default, short table");
}

#[test]
fn the_compiled_filter_is_small() {
    let default = SeccompProgram::default_filter(false).unwrap();
    let stacked: usize = default.layers.iter().map(|l| oracle(l).len()).sum();
    assert!(
        default.len() * 3 < stacked,
        "{} instructions, against {stacked} stacked",
        default.len()
    );
}
