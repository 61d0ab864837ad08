//! The filter's layers, compiled into one classic BPF program that finds a
//! syscall's action by binary search over its number.
//!
//! The filter is described as a stack of layers, each what one seccomp
//! program would do (listed syscalls, optionally with argument rules, get
//! one action; the rest another), combined as the kernel combines a stack
//! of programs: the most restrictive action wins, and between two of the
//! same kind the one of the layer installed last. Compiling that stack
//! into one program gives the same action for every syscall and argument
//! (the tests check it against the stack compiled program by program), in
//! a few hundred instructions instead of thousands: the kernel loads and
//! JIT-compiles it in a fraction of the time, and each syscall of the
//! sandbox runs about ten comparisons instead of a linear scan per layer.

use std::collections::BTreeMap;

use super::SeccompError;

/// One classic BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub(crate) code: u16,
    pub(crate) jt: u8,
    pub(crate) jf: u8,
    pub(crate) k: u32,
}

pub(crate) const LD_W_ABS: u16 = 0x20;
pub(crate) const JEQ_K: u16 = 0x15;
pub(crate) const JGE_K: u16 = 0x35;
pub(crate) const JA: u16 = 0x05;
pub(crate) const RET_K: u16 = 0x06;
pub(crate) const AND_K: u16 = 0x54;

/// `struct seccomp_data` offsets.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARGS: u32 = 16;

#[cfg(target_arch = "x86_64")]
pub(crate) const AUDIT_ARCH: u32 = 0xc000_003e;

/// What a layer, or the filter, does with a syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Action {
    Allow,
    Errno(u32),
    KillProcess,
}

impl Action {
    /// The value a seccomp program returns for it.
    pub(crate) fn ret(self) -> u32 {
        match self {
            Self::Allow => 0x7fff_0000,
            Self::Errno(e) => 0x0005_0000 | (e & 0xffff),
            Self::KillProcess => 0x8000_0000,
        }
    }

    /// The kernel's choice between the actions of a stack of programs,
    /// given in install order: the lowest action as a signed number (the
    /// most restrictive), and between equals the last installed.
    pub(crate) fn combine(actions: impl DoubleEndedIterator<Item = Action>) -> Action {
        let rank = |a: Action| (a.ret() & 0xffff_0000) as i32;
        let mut chosen: Option<Action> = None;
        for action in actions.rev() {
            if chosen.is_none_or(|c| rank(action) < rank(c)) {
                chosen = Some(action);
            }
        }
        chosen.unwrap_or(Action::Allow)
    }
}

/// How a condition compares an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    /// `(arg & mask) == value`.
    MaskedEq(u64),
}

/// A condition on argument `arg`: on its low 32 bits (`qword` false: an
/// `int` the kernel truncates) or all 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cond {
    pub(crate) arg: u8,
    pub(crate) qword: bool,
    pub(crate) op: Op,
    pub(crate) value: u64,
}

/// A rule holds when all its conditions do.
pub(crate) type Rule = Vec<Cond>;

/// One layer: a listed syscall whose rules are empty, or one of whose
/// rules holds, gets `on_match`; any other syscall `otherwise`.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub(crate) what: &'static str,
    pub(crate) rules: BTreeMap<u32, Vec<Rule>>,
    pub(crate) on_match: Action,
    pub(crate) otherwise: Action,
}

/// What the filter does with one syscall number.
#[derive(Debug, Clone, PartialEq)]
enum Leaf {
    Fixed(Action),
    /// One layer checks the arguments: if one of `rules` holds, `then`,
    /// else `other`.
    Checked {
        rules: Vec<Rule>,
        then: Action,
        other: Action,
    },
}

fn leaf(layers: &[Layer], nr: u32) -> Result<Leaf, SeccompError> {
    let mut checked: Option<(usize, &Vec<Rule>)> = None;
    let mut fixed = Vec::with_capacity(layers.len());
    for (i, layer) in layers.iter().enumerate() {
        match layer.rules.get(&nr) {
            None => fixed.push(Some(layer.otherwise)),
            Some(rules) if rules.is_empty() => fixed.push(Some(layer.on_match)),
            Some(rules) => {
                if let Some((first, _)) = checked {
                    return Err(SeccompError {
                        what: "compile",
                        detail: format!(
                            "layers {} and {} both check the arguments of syscall {nr}",
                            layers[first].what, layer.what
                        ),
                    });
                }
                checked = Some((i, rules));
                fixed.push(None);
            }
        }
    }
    let with = |action: Action| {
        Action::combine(
            fixed
                .iter()
                .map(|a| a.unwrap_or(action))
                .collect::<Vec<_>>()
                .into_iter(),
        )
    };
    Ok(match checked {
        None => Leaf::Fixed(with(Action::Allow)),
        Some((i, rules)) => {
            let (then, other) = (with(layers[i].on_match), with(layers[i].otherwise));
            if then == other {
                Leaf::Fixed(then)
            } else {
                Leaf::Checked {
                    rules: rules.clone(),
                    then,
                    other,
                }
            }
        }
    })
}

/// The program: the architecture check (another one is killed, as each
/// layer's own program would), then a binary search over ranges of
/// syscall numbers that share a leaf.
pub(crate) fn compile(layers: &[Layer]) -> Result<Vec<Insn>, SeccompError> {
    // Every number up to one past the highest any layer lists; beyond it,
    // all numbers (x32's, negative ones) share the last one's leaf.
    let top = layers
        .iter()
        .filter_map(|l| l.rules.keys().next_back())
        .max()
        .map_or(0, |&nr| nr.saturating_add(1));
    let mut ranges: Vec<(u32, Leaf)> = Vec::new();
    for nr in 0..=top {
        let leaf = leaf(layers, nr)?;
        if ranges.last().is_none_or(|(_, last)| *last != leaf) {
            ranges.push((nr, leaf));
        }
    }
    let mut program = vec![
        stmt(LD_W_ABS, ARCH),
        jump(JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(RET_K, Action::KillProcess.ret()),
        stmt(LD_W_ABS, NR),
    ];
    program.extend(search(&ranges)?);
    if program.len() > 4096 {
        return Err(SeccompError {
            what: "compile",
            detail: format!("{} instructions (at most 4096)", program.len()),
        });
    }
    Ok(program)
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

fn offset(n: usize) -> Result<u8, SeccompError> {
    u8::try_from(n).map_err(|_| SeccompError {
        what: "compile",
        detail: format!("a jump of {n} instructions"),
    })
}

/// The search over `ranges` (each from its number to the next one's),
/// with the syscall number in the accumulator.
fn search(ranges: &[(u32, Leaf)]) -> Result<Vec<Insn>, SeccompError> {
    match ranges {
        [] => Ok(vec![stmt(RET_K, Action::Allow.ret())]),
        [(_, leaf)] => leaf_code(leaf),
        _ => {
            let mid = ranges.len() / 2;
            let (below, above) = (search(&ranges[..mid])?, search(&ranges[mid..])?);
            let split = ranges[mid].0;
            let mut out = Vec::with_capacity(below.len() + above.len() + 2);
            match u8::try_from(below.len()) {
                // nr >= split: over the lower half.
                Ok(skip) => out.push(jump(JGE_K, split, skip, 0)),
                Err(_) => {
                    out.push(jump(JGE_K, split, 0, 1));
                    out.push(stmt(JA, below.len() as u32));
                }
            }
            out.extend(below);
            out.extend(above);
            Ok(out)
        }
    }
}

/// A leaf: its return, or its argument checks (which load arguments: the
/// number is not needed after them). Each rule's conditions fall through
/// while they hold, to the rule's `then`; a condition that fails jumps
/// past it, to the next rule (or `other` after the last).
fn leaf_code(leaf: &Leaf) -> Result<Vec<Insn>, SeccompError> {
    let (rules, then, other) = match leaf {
        Leaf::Fixed(action) => return Ok(vec![stmt(RET_K, action.ret())]),
        Leaf::Checked { rules, then, other } => (rules, *then, *other),
    };
    let mut out = Vec::new();
    for rule in rules {
        let start = out.len();
        let len: usize = rule.iter().map(cond_len).sum();
        // The offset from the jump at `out.len()` to the rule's end.
        let fail = |out: &Vec<Insn>| offset(start + len - out.len());
        for cond in rule {
            let load = |half: u32| stmt(LD_W_ABS, ARGS + 8 * u32::from(cond.arg) + 4 * half);
            let word = |half: u32| (cond.value >> (32 * half)) as u32;
            match cond.op {
                Op::Eq | Op::MaskedEq(_) => {
                    for half in 0..halves(cond) {
                        out.push(load(half));
                        if let Op::MaskedEq(mask) = cond.op {
                            out.push(stmt(AND_K, (mask >> (32 * half)) as u32));
                        }
                        let f = fail(&out)?;
                        out.push(jump(JEQ_K, word(half), 0, f));
                    }
                }
                Op::Ne if !cond.qword => {
                    out.push(load(0));
                    let f = fail(&out)?;
                    out.push(jump(JEQ_K, word(0), f, 0));
                }
                Op::Ne => {
                    // Holds if either word differs.
                    out.push(load(0));
                    out.push(jump(JEQ_K, word(0), 0, 2));
                    out.push(load(1));
                    let f = fail(&out)?;
                    out.push(jump(JEQ_K, word(1), f, 0));
                }
            }
        }
        debug_assert_eq!(out.len(), start + len);
        out.push(stmt(RET_K, then.ret()));
    }
    out.push(stmt(RET_K, other.ret()));
    Ok(out)
}

fn halves(cond: &Cond) -> u32 {
    if cond.qword { 2 } else { 1 }
}

/// The instructions of one condition.
fn cond_len(cond: &Cond) -> usize {
    let per_half = match cond.op {
        Op::MaskedEq(_) => 3,
        Op::Eq | Op::Ne => 2,
    };
    per_half * halves(cond) as usize
}
