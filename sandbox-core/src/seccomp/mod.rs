//! The seccomp filters, compiled to BPF in the parent (principle 2: nothing
//! is built after the fork) and installed last in the child.
//!
//! Both filters start from the table of every syscall this architecture
//! has up to the newest kernel the project knows ([`KNOWN_SYSCALLS`]): a
//! number not in it fails with `ENOSYS`, so a syscall a later kernel adds
//! does not widen the sandbox by itself. On top of that:
//!
//! - `default` refuses [`DEFAULT_DENIED`] with `EPERM` and allows every
//!   other known syscall;
//! - `strict` allows only [`STRICT_ALLOWED`] (plus `ioctl`, `clone` and
//!   `unshare` with argument checks) and refuses every other known syscall
//!   with `EPERM`.
//!
//! Both refuse `ioctl(TIOCSTI | TIOCLINUX)`, `clone`/`unshare` with
//! `CLONE_NEWUSER` unless nested user namespaces are allowed, and sockets
//! of any family but `AF_UNIX`, `AF_INET`, `AF_INET6` and `AF_NETLINK`
//! (`NETLINK_ROUTE`, `NETLINK_SOCK_DIAG`) with `EAFNOSUPPORT` unless the
//! policy lists the family. `clone3` fails with `ENOSYS`, so that libc falls
//! back to `clone`, whose flags a filter can read.
//!
//! The filter is a stack of programs; for a syscall the kernel runs each and
//! keeps the most restrictive action, and between two `ERRNO`s the one of
//! the program installed last. The order is: the denylist (or the strict
//! allowlist), the known-syscall table (so an unknown number gets `ENOSYS`
//! even under `strict`), the socket families, `clone3`.

use std::collections::BTreeMap;

use sandbox_policy::SocketFamily;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

mod decide;
mod denied;
mod strict;
#[cfg(target_arch = "x86_64")]
mod x86_64;

pub(crate) use decide::decide;
pub use denied::DEFAULT_DENIED;
pub use strict::STRICT_ALLOWED;
#[cfg(target_arch = "x86_64")]
pub use x86_64::KNOWN_SYSCALLS;

#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "sandbox-core's seccomp filters know the syscall table of x86_64 only; \
     add this architecture's table (src/seccomp/<arch>.rs) first"
);

/// A seccomp filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
#[error("seccomp filter: {what}: {detail}")]
pub struct SeccompError {
    what: &'static str,
    detail: String,
}

fn err(what: &'static str) -> impl Fn(seccompiler::BackendError) -> SeccompError {
    move |e| SeccompError {
        what,
        detail: e.to_string(),
    }
}

/// What a filter allows beyond its fixed lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SeccompOptions {
    /// Whether `clone`/`unshare` may create user namespaces.
    pub allow_nested_userns: bool,
    /// Socket families allowed besides unix, inet, inet6 and routing
    /// netlink.
    pub socket_families: Vec<SocketFamily>,
}

impl SeccompOptions {
    /// Options with nested user namespaces allowed or not, and no extra
    /// socket family.
    pub fn new(allow_nested_userns: bool) -> Self {
        Self {
            allow_nested_userns,
            socket_families: Vec::new(),
        }
    }

    /// The same options, with these socket families allowed too.
    #[must_use]
    pub fn with_socket_families(mut self, families: &[SocketFamily]) -> Self {
        self.socket_families = families.to_vec();
        self
    }
}

/// The number of a syscall of [`KNOWN_SYSCALLS`], by name.
///
/// # Errors
///
/// [`SeccompError`] if the name is not in the table (a bug in a list).
pub fn syscall_number(name: &str) -> Result<i64, SeccompError> {
    KNOWN_SYSCALLS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, nr)| nr)
        .ok_or_else(|| SeccompError {
            what: "syscall table",
            detail: format!("no syscall named {name} on this architecture"),
        })
}

fn arch() -> Result<TargetArch, SeccompError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(err("architecture"))
}

fn nr_key(nr: libc::c_long) -> i64 {
    i64::from(nr as i32)
}

fn compile(filter: SeccompFilter) -> Result<BpfProgram, SeccompError> {
    BpfProgram::try_from(filter).map_err(err("compile"))
}

/// Rules matching every syscall of `names`, unconditionally.
fn by_name(names: &[&str]) -> Result<BTreeMap<i64, Vec<SeccompRule>>, SeccompError> {
    names
        .iter()
        .map(|name| syscall_number(name).map(|nr| (nr, Vec::new())))
        .collect()
}

/// A condition on the low 32 bits of an argument (an `int` the kernel
/// truncates, whatever the caller put in the high bits).
fn dword(arg: u8, op: SeccompCmpOp, value: u32) -> Result<SeccompCondition, SeccompError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, u64::from(value))
        .map_err(err("argument condition"))
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, SeccompError> {
    SeccompRule::new(conditions).map_err(err("rule"))
}

/// A rule matching when `flag` is set in argument 0 (`set`), or clear.
fn flag_rule(flag: libc::c_int, set: bool) -> Result<SeccompRule, SeccompError> {
    let flag = flag as u64;
    SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(flag),
        if set { flag } else { 0 },
    )
    .and_then(|c| SeccompRule::new(vec![c]))
    .map_err(err("clone flag rule"))
}

/// The program of the known-syscall table: a known number passes, any
/// other fails with `ENOSYS` (as it would on a kernel without it).
fn known_program(arch: TargetArch, known: &[(&str, i64)]) -> Result<BpfProgram, SeccompError> {
    let rules = known.iter().map(|&(_, nr)| (nr, Vec::new())).collect();
    compile(
        SeccompFilter::new(
            rules,
            SeccompAction::Errno(libc::ENOSYS as u32),
            SeccompAction::Allow,
            arch,
        )
        .map_err(err("known syscalls"))?,
    )
}

/// `personality(2)` values Docker's profile also allows: the query
/// (`0xffffffff`), `PER_LINUX`, `PER_LINUX32` and either with
/// `ADDR_NO_RANDOMIZE`. Anything else (`READ_IMPLIES_EXEC`, `MMAP_PAGE_ZERO`,
/// …) is refused.
const PERSONALITIES: [u32; 5] = [0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The socket program: `socket` and `socketpair` of a family not allowed
/// fail with `EAFNOSUPPORT`; so does a netlink socket of a protocol other
/// than `NETLINK_ROUTE` and `NETLINK_SOCK_DIAG` unless every netlink
/// protocol is allowed.
fn socket_program(arch: TargetArch, extra: &[SocketFamily]) -> Result<BpfProgram, SeccompError> {
    let mut families = vec![
        libc::AF_UNIX as u32,
        libc::AF_INET as u32,
        libc::AF_INET6 as u32,
        libc::AF_NETLINK as u32,
    ];
    families.extend(extra.iter().map(|f| f.number()));
    families.sort_unstable();
    families.dedup();
    let other_family = || {
        families
            .iter()
            .map(|&f| dword(0, SeccompCmpOp::Ne, f))
            .collect::<Result<Vec<_>, _>>()
            .and_then(rule)
    };
    let mut socket_rules = vec![other_family()?];
    if !extra.contains(&SocketFamily::Netlink) {
        socket_rules.push(rule(vec![
            dword(0, SeccompCmpOp::Eq, libc::AF_NETLINK as u32)?,
            dword(2, SeccompCmpOp::Ne, libc::NETLINK_ROUTE as u32)?,
            dword(2, SeccompCmpOp::Ne, libc::NETLINK_SOCK_DIAG as u32)?,
        ])?);
    }
    let rules = [
        (nr_key(libc::SYS_socket), socket_rules),
        (nr_key(libc::SYS_socketpair), vec![other_family()?]),
    ]
    .into_iter()
    .collect();
    compile(
        SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EAFNOSUPPORT as u32),
            arch,
        )
        .map_err(err("socket families"))?,
    )
}

/// `clone3` takes its flags in a struct a filter cannot read: make it fail
/// with `ENOSYS` so that libc falls back to `clone`, whose flags the rules
/// can inspect. Installed last, so its errno wins over an allowlist's.
fn clone3_enosys(arch: TargetArch) -> Result<BpfProgram, SeccompError> {
    compile(
        SeccompFilter::new(
            [(nr_key(libc::SYS_clone3), Vec::new())]
                .into_iter()
                .collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch,
        )
        .map_err(err("clone3"))?,
    )
}

/// A compiled filter set, ready to install: built in the parent, installed
/// in the child with one `seccomp(2)` call per program.
#[derive(Debug, Clone)]
pub struct SeccompProgram {
    programs: Vec<BpfProgram>,
}

impl SeccompProgram {
    /// The `default` filter with no extra socket family. With
    /// `allow_nested_userns` false, `unshare` and `clone` with
    /// `CLONE_NEWUSER` are refused too.
    ///
    /// # Errors
    ///
    /// [`SeccompError`] if this architecture is not supported by the BPF
    /// compiler.
    pub fn default_filter(allow_nested_userns: bool) -> Result<Self, SeccompError> {
        Self::default_filter_with(&SeccompOptions::new(allow_nested_userns))
    }

    /// The `default` filter: every known syscall but [`DEFAULT_DENIED`]
    /// and the argument checks of the module's description.
    ///
    /// # Errors
    ///
    /// [`SeccompError`] if this architecture is not supported by the BPF
    /// compiler.
    pub fn default_filter_with(options: &SeccompOptions) -> Result<Self, SeccompError> {
        Self::default_filter_knowing(options, KNOWN_SYSCALLS)
    }

    /// The `default` filter as if `known` were the table of known
    /// syscalls: for tests that show what an unknown number gets.
    #[doc(hidden)]
    pub fn default_filter_knowing(
        options: &SeccompOptions,
        known: &[(&str, i64)],
    ) -> Result<Self, SeccompError> {
        let arch = arch()?;
        let mut rules = by_name(DEFAULT_DENIED)?;
        // ioctl(fd, TIOCSTI | TIOCLINUX, …): typing into, or driving, the
        // terminal of whoever started the sandbox. The request is an int.
        let ioctl_rules = [libc::TIOCSTI, libc::TIOCLINUX]
            .into_iter()
            .map(|req| dword(1, SeccompCmpOp::Eq, req as u32).and_then(|c| rule(vec![c])))
            .collect::<Result<Vec<_>, _>>()?;
        rules.insert(nr_key(libc::SYS_ioctl), ioctl_rules);
        let other_personality = PERSONALITIES
            .iter()
            .map(|&p| dword(0, SeccompCmpOp::Ne, p))
            .collect::<Result<Vec<_>, _>>()?;
        rules.insert(
            nr_key(libc::SYS_personality),
            vec![rule(other_personality)?],
        );
        if !options.allow_nested_userns {
            for nr in [libc::SYS_unshare, libc::SYS_clone] {
                rules.insert(nr_key(nr), vec![flag_rule(libc::CLONE_NEWUSER, true)?]);
            }
        }
        let deny = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch,
        )
        .map_err(err("denylist"))?;
        Ok(Self {
            programs: vec![
                compile(deny)?,
                known_program(arch, known)?,
                socket_program(arch, &options.socket_families)?,
                clone3_enosys(arch)?,
            ],
        })
    }

    /// The `strict` filter with no extra socket family.
    ///
    /// # Errors
    ///
    /// [`SeccompError`] if this architecture is not supported by the BPF
    /// compiler.
    pub fn strict_filter(allow_nested_userns: bool) -> Result<Self, SeccompError> {
        Self::strict_filter_with(&SeccompOptions::new(allow_nested_userns))
    }

    /// The `strict` filter: an allowlist of [`STRICT_ALLOWED`], the
    /// syscalls shells, coreutils and common interpreters (Python, Perl,
    /// Node) need; any other known syscall fails with `EPERM`, an unknown
    /// one with `ENOSYS`. The argument checks of the `default` filter apply
    /// too (no `TIOCSTI`/`TIOCLINUX`, no new user namespace unless
    /// `allow_nested_userns`, the socket families).
    ///
    /// # Errors
    ///
    /// [`SeccompError`] if this architecture is not supported by the BPF
    /// compiler.
    pub fn strict_filter_with(options: &SeccompOptions) -> Result<Self, SeccompError> {
        let arch = arch()?;
        let mut rules = by_name(STRICT_ALLOWED)?;
        // ioctl is allowed unless the request is TIOCSTI or TIOCLINUX.
        let ioctl = rule(vec![
            dword(1, SeccompCmpOp::Ne, libc::TIOCSTI as u32)?,
            dword(1, SeccompCmpOp::Ne, libc::TIOCLINUX as u32)?,
        ])?;
        rules.insert(nr_key(libc::SYS_ioctl), vec![ioctl]);
        let clone_rule = if options.allow_nested_userns {
            Vec::new()
        } else {
            vec![flag_rule(libc::CLONE_NEWUSER, false)?]
        };
        rules.insert(nr_key(libc::SYS_clone), clone_rule.clone());
        rules.insert(nr_key(libc::SYS_unshare), clone_rule);
        let allow = SeccompFilter::new(
            rules,
            SeccompAction::Errno(libc::EPERM as u32),
            SeccompAction::Allow,
            arch,
        )
        .map_err(err("allowlist"))?;
        Ok(Self {
            programs: vec![
                compile(allow)?,
                known_program(arch, KNOWN_SYSCALLS)?,
                socket_program(arch, &options.socket_families)?,
                clone3_enosys(arch)?,
            ],
        })
    }

    /// The programs as the kernel's `sock_fprog` parts, for the child.
    pub(crate) fn raw_filters(&self) -> Vec<sandbox_child::RawFilter> {
        self.programs
            .iter()
            .map(|p| sandbox_child::RawFilter {
                instructions: p.as_ptr().cast(),
                len: u16::try_from(p.len()).unwrap_or(u16::MAX),
            })
            .collect()
    }

    /// Installs the filters on the calling thread (not the whole process;
    /// a sandbox's child is single-threaded). The thread must already have
    /// `no_new_privs` set or hold `CAP_SYS_ADMIN`.
    ///
    /// # Errors
    ///
    /// [`SeccompError`] with the kernel's errno.
    pub fn install_on_current_thread(&self) -> Result<(), SeccompError> {
        for program in &self.programs {
            seccompiler::apply_filter(program).map_err(|e| SeccompError {
                what: "install",
                detail: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// The number of BPF instructions, across programs.
    pub fn len(&self) -> usize {
        self.programs.iter().map(Vec::len).sum()
    }

    /// Whether there is nothing to install.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_is_a_known_syscall() {
        for name in DEFAULT_DENIED.iter().chain(STRICT_ALLOWED) {
            assert!(syscall_number(name).is_ok(), "{name} is not in the table");
        }
    }

    #[test]
    fn the_table_is_sorted_unique_and_agrees_with_libc() {
        for pair in KNOWN_SYSCALLS.windows(2) {
            assert!(pair[0].1 < pair[1].1, "{:?} before {:?}", pair[0], pair[1]);
        }
        for (name, nr) in [
            ("read", libc::SYS_read),
            ("clone3", libc::SYS_clone3),
            ("memfd_secret", libc::SYS_memfd_secret),
            ("mseal", libc::SYS_mseal),
            ("personality", libc::SYS_personality),
            ("socket", libc::SYS_socket),
        ] {
            assert_eq!(syscall_number(name).ok(), Some(nr), "{name}");
        }
    }

    #[test]
    fn a_denied_syscall_is_not_in_the_strict_allowlist() {
        for name in DEFAULT_DENIED {
            assert!(!STRICT_ALLOWED.contains(name), "{name}");
        }
    }

    #[test]
    fn filters_compile_with_every_option() {
        for nested in [false, true] {
            for families in [&[][..], SocketFamily::ALL] {
                let options = SeccompOptions::new(nested).with_socket_families(families);
                let default = SeccompProgram::default_filter_with(&options).unwrap();
                let strict = SeccompProgram::strict_filter_with(&options).unwrap();
                // One sock_fprog holds at most BPF_MAXINSNS instructions.
                for p in default.programs.iter().chain(&strict.programs) {
                    assert!(p.len() <= 4096, "{} instructions", p.len());
                }
            }
        }
    }
}
