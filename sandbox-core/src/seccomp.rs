//! The `default` seccomp filter, compiled to BPF in the parent (principle 2:
//! nothing is built after the fork) and installed last in the child.
//!
//! `default` is a denylist: the syscalls a sandboxed process has no business
//! making fail with `EPERM`; everything else is allowed. `clone3` fails with
//! `ENOSYS` instead, so that libc falls back to `clone`, whose flags the
//! filter can inspect (a new user namespace is refused unless
//! `allow_nested_userns`).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

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

/// Syscalls the `default` filter refuses outright.
pub const DEFAULT_DENIED: &[(&str, libc::c_long)] = &[
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("bpf", libc::SYS_bpf),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("setns", libc::SYS_setns),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("reboot", libc::SYS_reboot),
    ("acct", libc::SYS_acct),
    ("syslog", libc::SYS_syslog),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    ("quotactl", libc::SYS_quotactl),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("uselib", libc::SYS_uselib),
];

/// A compiled filter set, ready to install: built in the parent, installed
/// in the child with one `seccomp(2)` call per program.
#[derive(Debug, Clone)]
pub struct SeccompProgram {
    programs: Vec<BpfProgram>,
}

impl SeccompProgram {
    /// The `default` filter. With `allow_nested_userns` false, `unshare` and
    /// `clone` with `CLONE_NEWUSER` are refused too.
    ///
    /// # Errors
    ///
    /// [`SeccompError`] if this architecture is not supported by the BPF
    /// compiler.
    pub fn default_filter(allow_nested_userns: bool) -> Result<Self, SeccompError> {
        let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(err("architecture"))?;
        let cond = |arg, op, value| SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value);
        let rule = |conds: Vec<SeccompCondition>| SeccompRule::new(conds);
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DEFAULT_DENIED
            .iter()
            .map(|&(_, nr)| (i64::from(nr as i32), Vec::new()))
            .collect();
        // ioctl(fd, TIOCSTI | TIOCLINUX, …): typing into, or driving, the
        // terminal of whoever started the sandbox. The request is an int.
        let ioctl_rules = [libc::TIOCSTI, libc::TIOCLINUX]
            .into_iter()
            .map(|req| {
                SeccompCondition::new(
                    1,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Eq,
                    u64::from(req as u32),
                )
                .and_then(|c| rule(vec![c]))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(err("ioctl rule"))?;
        rules.insert(i64::from(libc::SYS_ioctl as i32), ioctl_rules);
        if !allow_nested_userns {
            let newuser = libc::CLONE_NEWUSER as u64;
            for nr in [libc::SYS_unshare, libc::SYS_clone] {
                let r = cond(0, SeccompCmpOp::MaskedEq(newuser), newuser)
                    .and_then(|c| rule(vec![c]))
                    .map_err(err("user namespace rule"))?;
                rules.insert(i64::from(nr as i32), vec![r]);
            }
        }
        let deny = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch,
        )
        .map_err(err("denylist"))?;
        // clone3 takes its flags in a struct the filter cannot read: make
        // libc fall back to clone, which the rules above can inspect.
        let clone3 = SeccompFilter::new(
            [(i64::from(libc::SYS_clone3 as i32), Vec::new())]
                .into_iter()
                .collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch,
        )
        .map_err(err("clone3"))?;
        let compile = |f: SeccompFilter| BpfProgram::try_from(f).map_err(err("compile"));
        Ok(Self {
            programs: vec![compile(deny)?, compile(clone3)?],
        })
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
