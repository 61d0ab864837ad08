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
//! The filter is described as a stack of layers, combined as the kernel
//! combines a stack of programs: for a syscall the most restrictive action
//! wins, and between two `ERRNO`s the one of the layer installed last. The
//! order is: the denylist (or the strict allowlist), the known-syscall
//! table (so an unknown number gets `ENOSYS` even under `strict`), the
//! socket families, `clone3`. The stack is compiled into one program that
//! finds a syscall's action by binary search over its number (`bpf`):
//! about 220 instructions where a program per layer took 2,400, loaded in
//! a fifteenth of the time, and about ten comparisons per syscall.

use std::collections::BTreeMap;

use sandbox_policy::SocketFamily;

use bpf::{Action, Cond, Insn, Layer, Op, Rule};

mod bpf;
mod decide;
mod denied;
#[cfg(test)]
mod equivalence;
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

fn nr_key(nr: libc::c_long) -> u32 {
    nr as u32
}

/// Every syscall of `names`, unconditionally.
fn by_name(names: &[&str]) -> Result<BTreeMap<u32, Vec<Rule>>, SeccompError> {
    names
        .iter()
        .map(|name| syscall_number(name).map(|nr| (nr as u32, Vec::new())))
        .collect()
}

/// A condition on the low 32 bits of an argument (an `int` the kernel
/// truncates, whatever the caller put in the high bits).
fn dword(arg: u8, op: Op, value: u32) -> Cond {
    Cond {
        arg,
        qword: false,
        op,
        value: u64::from(value),
    }
}

/// A rule holding when `flag` is set in argument 0 (`set`), or clear.
fn flag_rule(flag: libc::c_int, set: bool) -> Rule {
    let flag = flag as u64;
    vec![Cond {
        arg: 0,
        qword: true,
        op: Op::MaskedEq(flag),
        value: if set { flag } else { 0 },
    }]
}

/// The layer of the known-syscall table: a known number passes, any other
/// fails with `ENOSYS` (as it would on a kernel without it).
fn known_layer(known: &[(&str, i64)]) -> Layer {
    Layer {
        what: "known syscalls",
        rules: known
            .iter()
            .map(|&(_, nr)| (nr as u32, Vec::new()))
            .collect(),
        on_match: Action::Allow,
        otherwise: Action::Errno(libc::ENOSYS as u32),
    }
}

/// `personality(2)` values Docker's profile also allows: the query
/// (`0xffffffff`), `PER_LINUX`, `PER_LINUX32` and either with
/// `ADDR_NO_RANDOMIZE`. Anything else (`READ_IMPLIES_EXEC`, `MMAP_PAGE_ZERO`,
/// …) is refused.
const PERSONALITIES: [u32; 5] = [0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The socket layer: `socket` and `socketpair` of a family not allowed
/// fail with `EAFNOSUPPORT`; so does a netlink socket of a protocol other
/// than `NETLINK_ROUTE` and `NETLINK_SOCK_DIAG` unless every netlink
/// protocol is allowed.
fn socket_layer(extra: &[SocketFamily]) -> Layer {
    let mut families = vec![
        libc::AF_UNIX as u32,
        libc::AF_INET as u32,
        libc::AF_INET6 as u32,
        libc::AF_NETLINK as u32,
    ];
    families.extend(extra.iter().map(|f| f.number()));
    families.sort_unstable();
    families.dedup();
    let other_family = || -> Rule { families.iter().map(|&f| dword(0, Op::Ne, f)).collect() };
    let mut socket_rules = vec![other_family()];
    if !extra.contains(&SocketFamily::Netlink) {
        socket_rules.push(vec![
            dword(0, Op::Eq, libc::AF_NETLINK as u32),
            dword(2, Op::Ne, libc::NETLINK_ROUTE as u32),
            dword(2, Op::Ne, libc::NETLINK_SOCK_DIAG as u32),
        ]);
    }
    Layer {
        what: "socket families",
        rules: [
            (nr_key(libc::SYS_socket), socket_rules),
            (nr_key(libc::SYS_socketpair), vec![other_family()]),
        ]
        .into_iter()
        .collect(),
        on_match: Action::Errno(libc::EAFNOSUPPORT as u32),
        otherwise: Action::Allow,
    }
}

/// `clone3` takes its flags in a struct a filter cannot read: make it fail
/// with `ENOSYS` so that libc falls back to `clone`, whose flags the rules
/// can inspect. The last layer, so its errno wins over an allowlist's.
fn clone3_layer() -> Layer {
    Layer {
        what: "clone3",
        rules: [(nr_key(libc::SYS_clone3), Vec::new())]
            .into_iter()
            .collect(),
        on_match: Action::Errno(libc::ENOSYS as u32),
        otherwise: Action::Allow,
    }
}

/// A compiled filter, ready to install: built in the parent, installed in
/// the child with one `seccomp(2)` call.
#[derive(Debug, Clone)]
pub struct SeccompProgram {
    program: Vec<Insn>,
    /// The layers it was compiled from (the tests compare the two).
    #[cfg(test)]
    layers: Vec<Layer>,
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
        let mut rules = by_name(DEFAULT_DENIED)?;
        // ioctl(fd, TIOCSTI | TIOCLINUX, …): typing into, or driving, the
        // terminal of whoever started the sandbox. The request is an int.
        let ioctl_rules = [libc::TIOCSTI, libc::TIOCLINUX]
            .into_iter()
            .map(|req| vec![dword(1, Op::Eq, req as u32)])
            .collect();
        rules.insert(nr_key(libc::SYS_ioctl), ioctl_rules);
        let other_personality = PERSONALITIES.iter().map(|&p| dword(0, Op::Ne, p)).collect();
        rules.insert(nr_key(libc::SYS_personality), vec![other_personality]);
        if !options.allow_nested_userns {
            for nr in [libc::SYS_unshare, libc::SYS_clone] {
                rules.insert(nr_key(nr), vec![flag_rule(libc::CLONE_NEWUSER, true)]);
            }
        }
        let deny = Layer {
            what: "denylist",
            rules,
            on_match: Action::Errno(libc::EPERM as u32),
            otherwise: Action::Allow,
        };
        Self::from_layers(vec![
            deny,
            known_layer(known),
            socket_layer(&options.socket_families),
            clone3_layer(),
        ])
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
        let mut rules = by_name(STRICT_ALLOWED)?;
        // ioctl is allowed unless the request is TIOCSTI or TIOCLINUX.
        let ioctl = vec![
            dword(1, Op::Ne, libc::TIOCSTI as u32),
            dword(1, Op::Ne, libc::TIOCLINUX as u32),
        ];
        rules.insert(nr_key(libc::SYS_ioctl), vec![ioctl]);
        let clone_rule = if options.allow_nested_userns {
            Vec::new()
        } else {
            vec![flag_rule(libc::CLONE_NEWUSER, false)]
        };
        rules.insert(nr_key(libc::SYS_clone), clone_rule.clone());
        rules.insert(nr_key(libc::SYS_unshare), clone_rule);
        let allow = Layer {
            what: "allowlist",
            rules,
            on_match: Action::Allow,
            otherwise: Action::Errno(libc::EPERM as u32),
        };
        Self::from_layers(vec![
            allow,
            known_layer(KNOWN_SYSCALLS),
            socket_layer(&options.socket_families),
            clone3_layer(),
        ])
    }

    fn from_layers(layers: Vec<Layer>) -> Result<Self, SeccompError> {
        Ok(Self {
            program: bpf::compile(&layers)?,
            #[cfg(test)]
            layers,
        })
    }

    /// The program as the kernel's `sock_fprog` parts, for the child.
    pub(crate) fn raw_filters(&self) -> Vec<sandbox_child::RawFilter> {
        vec![sandbox_child::RawFilter {
            instructions: self.program.as_ptr().cast(),
            len: u16::try_from(self.program.len()).unwrap_or(u16::MAX),
        }]
    }

    /// Installs the filter on the calling thread (not the whole process;
    /// a sandbox's child is single-threaded). The thread must already have
    /// `no_new_privs` set or hold `CAP_SYS_ADMIN`.
    ///
    /// # Errors
    ///
    /// [`SeccompError`] with the kernel's errno.
    pub fn install_on_current_thread(&self) -> Result<(), SeccompError> {
        sandbox_child::install_filters(&self.raw_filters()).map_err(|e| SeccompError {
            what: "install",
            detail: e.to_string(),
        })
    }

    /// The number of BPF instructions.
    pub fn len(&self) -> usize {
        self.program.len()
    }

    /// Whether there is nothing to install.
    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
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
                for p in [&default, &strict] {
                    assert!(p.len() <= 4096, "{} instructions", p.len());
                }
            }
        }
    }
}
