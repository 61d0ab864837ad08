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

fn arch() -> Result<TargetArch, SeccompError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(err("architecture"))
}

fn nr_key(nr: libc::c_long) -> i64 {
    i64::from(nr as i32)
}

fn compile(filter: SeccompFilter) -> Result<BpfProgram, SeccompError> {
    BpfProgram::try_from(filter).map_err(err("compile"))
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

/// Syscalls the `strict` filter allows (besides `ioctl`, `clone` and
/// `unshare`, which it allows conditionally).
pub const STRICT_ALLOWED: &[(&str, libc::c_long)] = &[
    ("read", libc::SYS_read),
    ("write", libc::SYS_write),
    ("readv", libc::SYS_readv),
    ("writev", libc::SYS_writev),
    ("pread64", libc::SYS_pread64),
    ("pwrite64", libc::SYS_pwrite64),
    ("preadv", libc::SYS_preadv),
    ("pwritev", libc::SYS_pwritev),
    ("preadv2", libc::SYS_preadv2),
    ("pwritev2", libc::SYS_pwritev2),
    ("openat", libc::SYS_openat),
    ("openat2", libc::SYS_openat2),
    ("close", libc::SYS_close),
    ("close_range", libc::SYS_close_range),
    ("fstat", libc::SYS_fstat),
    ("newfstatat", libc::SYS_newfstatat),
    ("statx", libc::SYS_statx),
    ("lseek", libc::SYS_lseek),
    ("mmap", libc::SYS_mmap),
    ("munmap", libc::SYS_munmap),
    ("mprotect", libc::SYS_mprotect),
    ("mremap", libc::SYS_mremap),
    ("madvise", libc::SYS_madvise),
    ("msync", libc::SYS_msync),
    ("mincore", libc::SYS_mincore),
    ("brk", libc::SYS_brk),
    ("rt_sigaction", libc::SYS_rt_sigaction),
    ("rt_sigprocmask", libc::SYS_rt_sigprocmask),
    ("rt_sigreturn", libc::SYS_rt_sigreturn),
    ("rt_sigsuspend", libc::SYS_rt_sigsuspend),
    ("rt_sigtimedwait", libc::SYS_rt_sigtimedwait),
    ("rt_sigqueueinfo", libc::SYS_rt_sigqueueinfo),
    ("rt_sigpending", libc::SYS_rt_sigpending),
    ("sigaltstack", libc::SYS_sigaltstack),
    ("fcntl", libc::SYS_fcntl),
    ("flock", libc::SYS_flock),
    ("fsync", libc::SYS_fsync),
    ("fdatasync", libc::SYS_fdatasync),
    ("syncfs", libc::SYS_syncfs),
    ("ftruncate", libc::SYS_ftruncate),
    ("truncate", libc::SYS_truncate),
    ("getdents64", libc::SYS_getdents64),
    ("getcwd", libc::SYS_getcwd),
    ("chdir", libc::SYS_chdir),
    ("fchdir", libc::SYS_fchdir),
    ("renameat", libc::SYS_renameat),
    ("renameat2", libc::SYS_renameat2),
    ("mkdirat", libc::SYS_mkdirat),
    ("unlinkat", libc::SYS_unlinkat),
    ("symlinkat", libc::SYS_symlinkat),
    ("linkat", libc::SYS_linkat),
    ("readlinkat", libc::SYS_readlinkat),
    ("mknodat", libc::SYS_mknodat),
    ("fchmod", libc::SYS_fchmod),
    ("fchmodat", libc::SYS_fchmodat),
    ("fchown", libc::SYS_fchown),
    ("fchownat", libc::SYS_fchownat),
    ("faccessat", libc::SYS_faccessat),
    ("faccessat2", libc::SYS_faccessat2),
    ("utimensat", libc::SYS_utimensat),
    ("umask", libc::SYS_umask),
    ("dup", libc::SYS_dup),
    ("dup3", libc::SYS_dup3),
    ("pipe2", libc::SYS_pipe2),
    ("statfs", libc::SYS_statfs),
    ("fstatfs", libc::SYS_fstatfs),
    ("socket", libc::SYS_socket),
    ("socketpair", libc::SYS_socketpair),
    ("connect", libc::SYS_connect),
    ("bind", libc::SYS_bind),
    ("listen", libc::SYS_listen),
    ("accept", libc::SYS_accept),
    ("accept4", libc::SYS_accept4),
    ("sendto", libc::SYS_sendto),
    ("recvfrom", libc::SYS_recvfrom),
    ("sendmsg", libc::SYS_sendmsg),
    ("recvmsg", libc::SYS_recvmsg),
    ("sendmmsg", libc::SYS_sendmmsg),
    ("recvmmsg", libc::SYS_recvmmsg),
    ("shutdown", libc::SYS_shutdown),
    ("getsockname", libc::SYS_getsockname),
    ("getpeername", libc::SYS_getpeername),
    ("setsockopt", libc::SYS_setsockopt),
    ("getsockopt", libc::SYS_getsockopt),
    ("ppoll", libc::SYS_ppoll),
    ("pselect6", libc::SYS_pselect6),
    ("epoll_create1", libc::SYS_epoll_create1),
    ("epoll_ctl", libc::SYS_epoll_ctl),
    ("epoll_pwait", libc::SYS_epoll_pwait),
    ("epoll_pwait2", libc::SYS_epoll_pwait2),
    ("eventfd2", libc::SYS_eventfd2),
    ("signalfd4", libc::SYS_signalfd4),
    ("timerfd_create", libc::SYS_timerfd_create),
    ("timerfd_settime", libc::SYS_timerfd_settime),
    ("timerfd_gettime", libc::SYS_timerfd_gettime),
    ("timer_create", libc::SYS_timer_create),
    ("timer_settime", libc::SYS_timer_settime),
    ("timer_gettime", libc::SYS_timer_gettime),
    ("timer_getoverrun", libc::SYS_timer_getoverrun),
    ("timer_delete", libc::SYS_timer_delete),
    ("getitimer", libc::SYS_getitimer),
    ("setitimer", libc::SYS_setitimer),
    ("execve", libc::SYS_execve),
    ("execveat", libc::SYS_execveat),
    ("exit", libc::SYS_exit),
    ("exit_group", libc::SYS_exit_group),
    ("wait4", libc::SYS_wait4),
    ("waitid", libc::SYS_waitid),
    ("kill", libc::SYS_kill),
    ("tgkill", libc::SYS_tgkill),
    ("tkill", libc::SYS_tkill),
    ("pidfd_open", libc::SYS_pidfd_open),
    ("pidfd_send_signal", libc::SYS_pidfd_send_signal),
    ("getpid", libc::SYS_getpid),
    ("getppid", libc::SYS_getppid),
    ("gettid", libc::SYS_gettid),
    ("getuid", libc::SYS_getuid),
    ("geteuid", libc::SYS_geteuid),
    ("getgid", libc::SYS_getgid),
    ("getegid", libc::SYS_getegid),
    ("getresuid", libc::SYS_getresuid),
    ("getresgid", libc::SYS_getresgid),
    ("getgroups", libc::SYS_getgroups),
    ("getpgid", libc::SYS_getpgid),
    ("setpgid", libc::SYS_setpgid),
    ("getsid", libc::SYS_getsid),
    ("setsid", libc::SYS_setsid),
    ("setuid", libc::SYS_setuid),
    ("setgid", libc::SYS_setgid),
    ("setreuid", libc::SYS_setreuid),
    ("setregid", libc::SYS_setregid),
    ("setresuid", libc::SYS_setresuid),
    ("setresgid", libc::SYS_setresgid),
    ("setgroups", libc::SYS_setgroups),
    ("setfsuid", libc::SYS_setfsuid),
    ("setfsgid", libc::SYS_setfsgid),
    ("capget", libc::SYS_capget),
    ("uname", libc::SYS_uname),
    ("sysinfo", libc::SYS_sysinfo),
    ("getrlimit", libc::SYS_getrlimit),
    ("setrlimit", libc::SYS_setrlimit),
    ("prlimit64", libc::SYS_prlimit64),
    ("getrusage", libc::SYS_getrusage),
    ("times", libc::SYS_times),
    ("getpriority", libc::SYS_getpriority),
    ("setpriority", libc::SYS_setpriority),
    ("clock_gettime", libc::SYS_clock_gettime),
    ("clock_getres", libc::SYS_clock_getres),
    ("clock_nanosleep", libc::SYS_clock_nanosleep),
    ("nanosleep", libc::SYS_nanosleep),
    ("gettimeofday", libc::SYS_gettimeofday),
    ("sched_yield", libc::SYS_sched_yield),
    ("sched_getaffinity", libc::SYS_sched_getaffinity),
    ("sched_setaffinity", libc::SYS_sched_setaffinity),
    ("sched_getparam", libc::SYS_sched_getparam),
    ("sched_getscheduler", libc::SYS_sched_getscheduler),
    ("sched_get_priority_max", libc::SYS_sched_get_priority_max),
    ("sched_get_priority_min", libc::SYS_sched_get_priority_min),
    ("getrandom", libc::SYS_getrandom),
    ("futex", libc::SYS_futex),
    ("futex_waitv", libc::SYS_futex_waitv),
    ("set_robust_list", libc::SYS_set_robust_list),
    ("get_robust_list", libc::SYS_get_robust_list),
    ("set_tid_address", libc::SYS_set_tid_address),
    ("rseq", libc::SYS_rseq),
    ("restart_syscall", libc::SYS_restart_syscall),
    ("prctl", libc::SYS_prctl),
    ("seccomp", libc::SYS_seccomp),
    ("membarrier", libc::SYS_membarrier),
    ("memfd_create", libc::SYS_memfd_create),
    ("sendfile", libc::SYS_sendfile),
    ("copy_file_range", libc::SYS_copy_file_range),
    ("splice", libc::SYS_splice),
    ("tee", libc::SYS_tee),
    ("fadvise64", libc::SYS_fadvise64),
    ("fallocate", libc::SYS_fallocate),
    ("inotify_init1", libc::SYS_inotify_init1),
    ("inotify_add_watch", libc::SYS_inotify_add_watch),
    ("inotify_rm_watch", libc::SYS_inotify_rm_watch),
    ("getxattr", libc::SYS_getxattr),
    ("lgetxattr", libc::SYS_lgetxattr),
    ("fgetxattr", libc::SYS_fgetxattr),
    ("listxattr", libc::SYS_listxattr),
    ("llistxattr", libc::SYS_llistxattr),
    ("flistxattr", libc::SYS_flistxattr),
    ("mlock", libc::SYS_mlock),
    ("munlock", libc::SYS_munlock),
    #[cfg(target_arch = "x86_64")]
    ("open", libc::SYS_open),
    #[cfg(target_arch = "x86_64")]
    ("creat", libc::SYS_creat),
    #[cfg(target_arch = "x86_64")]
    ("stat", libc::SYS_stat),
    #[cfg(target_arch = "x86_64")]
    ("lstat", libc::SYS_lstat),
    #[cfg(target_arch = "x86_64")]
    ("access", libc::SYS_access),
    #[cfg(target_arch = "x86_64")]
    ("pipe", libc::SYS_pipe),
    #[cfg(target_arch = "x86_64")]
    ("dup2", libc::SYS_dup2),
    #[cfg(target_arch = "x86_64")]
    ("fork", libc::SYS_fork),
    #[cfg(target_arch = "x86_64")]
    ("vfork", libc::SYS_vfork),
    #[cfg(target_arch = "x86_64")]
    ("getdents", libc::SYS_getdents),
    #[cfg(target_arch = "x86_64")]
    ("readlink", libc::SYS_readlink),
    #[cfg(target_arch = "x86_64")]
    ("unlink", libc::SYS_unlink),
    #[cfg(target_arch = "x86_64")]
    ("rmdir", libc::SYS_rmdir),
    #[cfg(target_arch = "x86_64")]
    ("mkdir", libc::SYS_mkdir),
    #[cfg(target_arch = "x86_64")]
    ("symlink", libc::SYS_symlink),
    #[cfg(target_arch = "x86_64")]
    ("link", libc::SYS_link),
    #[cfg(target_arch = "x86_64")]
    ("chmod", libc::SYS_chmod),
    #[cfg(target_arch = "x86_64")]
    ("chown", libc::SYS_chown),
    #[cfg(target_arch = "x86_64")]
    ("lchown", libc::SYS_lchown),
    #[cfg(target_arch = "x86_64")]
    ("rename", libc::SYS_rename),
    #[cfg(target_arch = "x86_64")]
    ("poll", libc::SYS_poll),
    #[cfg(target_arch = "x86_64")]
    ("select", libc::SYS_select),
    #[cfg(target_arch = "x86_64")]
    ("epoll_wait", libc::SYS_epoll_wait),
    #[cfg(target_arch = "x86_64")]
    ("epoll_create", libc::SYS_epoll_create),
    #[cfg(target_arch = "x86_64")]
    ("alarm", libc::SYS_alarm),
    #[cfg(target_arch = "x86_64")]
    ("pause", libc::SYS_pause),
    #[cfg(target_arch = "x86_64")]
    ("arch_prctl", libc::SYS_arch_prctl),
    #[cfg(target_arch = "x86_64")]
    ("getpgrp", libc::SYS_getpgrp),
    #[cfg(target_arch = "x86_64")]
    ("time", libc::SYS_time),
    #[cfg(target_arch = "x86_64")]
    ("utimes", libc::SYS_utimes),
    #[cfg(target_arch = "x86_64")]
    ("futimesat", libc::SYS_futimesat),
    #[cfg(target_arch = "x86_64")]
    ("eventfd", libc::SYS_eventfd),
    #[cfg(target_arch = "x86_64")]
    ("signalfd", libc::SYS_signalfd),
    #[cfg(target_arch = "x86_64")]
    ("inotify_init", libc::SYS_inotify_init),
    #[cfg(target_arch = "x86_64")]
    ("mknod", libc::SYS_mknod),
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
        let arch = arch()?;
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DEFAULT_DENIED
            .iter()
            .map(|&(_, nr)| (nr_key(nr), Vec::new()))
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
                .and_then(|c| SeccompRule::new(vec![c]))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(err("ioctl rule"))?;
        rules.insert(nr_key(libc::SYS_ioctl), ioctl_rules);
        if !allow_nested_userns {
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
            programs: vec![compile(deny)?, clone3_enosys(arch)?],
        })
    }

    /// The `strict` filter: an allowlist of [`STRICT_ALLOWED`], the
    /// syscalls shells, coreutils and common interpreters (Python, Perl,
    /// Node) need; anything else fails with `EPERM`. The conditional rules
    /// of the `default` filter apply too (no `TIOCSTI`/`TIOCLINUX`, no new
    /// user namespace unless `allow_nested_userns`).
    ///
    /// # Errors
    ///
    /// [`SeccompError`] if this architecture is not supported by the BPF
    /// compiler.
    pub fn strict_filter(allow_nested_userns: bool) -> Result<Self, SeccompError> {
        let arch = arch()?;
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = STRICT_ALLOWED
            .iter()
            .map(|&(_, nr)| (nr_key(nr), Vec::new()))
            .collect();
        // ioctl is allowed unless the request is TIOCSTI or TIOCLINUX.
        let not_request = |req: libc::c_ulong| {
            SeccompCondition::new(
                1,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Ne,
                u64::from(req as u32),
            )
        };
        let ioctl = not_request(libc::TIOCSTI)
            .and_then(|a| not_request(libc::TIOCLINUX).map(|b| vec![a, b]))
            .and_then(SeccompRule::new)
            .map_err(err("ioctl rule"))?;
        rules.insert(nr_key(libc::SYS_ioctl), vec![ioctl]);
        let clone_rule = if allow_nested_userns {
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
            programs: vec![compile(allow)?, clone3_enosys(arch)?],
        })
    }

    /// The programs as the kernel's `sock_fprog` parts, for the child.
    pub(crate) fn raw_filters(&self) -> Vec<crate::sys::child::RawFilter> {
        self.programs
            .iter()
            .map(|p| crate::sys::child::RawFilter {
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
