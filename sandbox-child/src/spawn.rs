//! Cloning a child that runs a plan: the run's PID 1 (and its command
//! process), and the short-lived children of the probe and the rootless
//! egress namespace.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::os::fd::{FromRawFd, OwnedFd};

use rustix::io::Errno;

use crate::exec::run_step;
use crate::progress::Progress;
use crate::record::{RECORD_COMMAND_STATUS, RECORD_STEP_FAILED, write_record};
use crate::step::{ChildPlan, NO_FD};
use crate::{errno, last_errno};

pub(crate) fn exit(code: c_int) -> ! {
    // SAFETY: _exit(2) is async-signal-safe and does not return.
    unsafe { libc::_exit(code) }
}

/// A raw `clone(2)` with no new stack: like `fork`, but without glibc's
/// fork handlers (which take locks other threads may hold).
pub(crate) fn raw_clone(flags: u64, pidfd: *mut c_int) -> libc::c_long {
    // SAFETY: clone(2) without CLONE_VM and with a NULL stack gives the
    // child a copy of the address space and continues both at the return;
    // `pidfd` is either NULL or points at a live c_int (CLONE_PIDFD).
    unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<c_void>(),
            pidfd,
            std::ptr::null_mut::<c_void>(),
            0usize,
        )
    }
}

/// The calling thread's effective uid set to `owner` for the life of the
/// guard (and back to the one it had after): a user namespace it creates
/// meanwhile is owned by `owner`. Only this thread's credentials change
/// (raw `setresuid`, not libc's, which would change every thread's), and
/// with `SECBIT_NO_SETUID_FIXUP` it keeps its capabilities, so the new
/// namespace is made by a privileged process as before (an LSM that
/// restricts unprivileged user namespaces does not apply).
///
/// A change of effective uid also makes the process non-dumpable (the
/// kernel's rule for credential changes, `suid_dumpable`): the guard puts
/// the caller's dumpable flag back as it was.
struct ThreadOwner {
    euid: libc::uid_t,
    securebits: libc::c_long,
    dumpable: libc::c_long,
}

impl ThreadOwner {
    fn become_owner(owner: libc::uid_t) -> Result<Self, Errno> {
        // SAFETY: prctl(2) and setresuid(2) as raw syscalls on the calling
        // thread only; each failure is returned before anything else ran,
        // and the first change is undone when the second fails.
        unsafe {
            let securebits = libc::syscall(libc::SYS_prctl, libc::PR_GET_SECUREBITS, 0, 0, 0, 0);
            let dumpable = libc::syscall(libc::SYS_prctl, libc::PR_GET_DUMPABLE, 0, 0, 0, 0);
            if securebits < 0 || dumpable < 0 {
                return Err(last_errno());
            }
            const SECBIT_NO_SETUID_FIXUP: libc::c_long = 1 << 2;
            if libc::syscall(
                libc::SYS_prctl,
                libc::PR_SET_SECUREBITS,
                securebits | SECBIT_NO_SETUID_FIXUP,
                0,
                0,
                0,
            ) < 0
            {
                return Err(last_errno());
            }
            let euid = libc::geteuid();
            let keep: libc::uid_t = libc::uid_t::MAX; // -1: unchanged
            if libc::syscall(libc::SYS_setresuid, keep, owner, keep) < 0 {
                let e = last_errno();
                libc::syscall(
                    libc::SYS_prctl,
                    libc::PR_SET_SECUREBITS,
                    securebits,
                    0,
                    0,
                    0,
                );
                return Err(e);
            }
            Ok(Self {
                euid,
                securebits,
                dumpable,
            })
        }
    }
}

impl Drop for ThreadOwner {
    fn drop(&mut self) {
        // SAFETY: as in `become_owner`: the thread's own euid back (its
        // real and saved uids never changed, so this is always allowed),
        // then its securebits.
        unsafe {
            let keep: libc::uid_t = libc::uid_t::MAX;
            libc::syscall(libc::SYS_setresuid, keep, self.euid, keep);
            libc::syscall(
                libc::SYS_prctl,
                libc::PR_SET_SECUREBITS,
                self.securebits,
                0,
                0,
                0,
            );
            libc::syscall(
                libc::SYS_prctl,
                libc::PR_SET_DUMPABLE,
                self.dumpable,
                0,
                0,
                0,
            );
        }
    }
}

/// Clones the sandbox's PID 1 with `namespaces` (`CLONE_NEW*` flags) and
/// runs `plan` in it; with `owner`, the new user namespace is owned by
/// that host uid (the clone is made with it as the thread's effective
/// uid). Returns its host pid and a pidfd.
pub fn spawn_init(
    namespaces: c_int,
    plan: &ChildPlan,
    owner: Option<u32>,
) -> Result<(i32, OwnedFd, Progress), Errno> {
    let registers: Vec<Cell<c_int>> = (0..plan.registers).map(|_| Cell::new(NO_FD)).collect();
    let progress = Progress::new()?;
    let mut pidfd: c_int = -1;
    let flags = (namespaces as u32 as u64) | libc::CLONE_PIDFD as u64 | libc::SIGCHLD as u64;
    let guard = owner.map(ThreadOwner::become_owner).transpose()?;
    let pid = raw_clone(flags, &mut pidfd);
    let clone_error = (pid < 0).then(last_errno);
    if pid == 0 {
        // The child: its credentials are a copy; the user namespace it is
        // in reset its securebits and gave it every capability there.
        std::mem::forget(guard);
        init_main(plan, &registers, &progress);
    }
    drop(guard);
    if let Some(errno) = clone_error {
        return Err(errno);
    }
    // SAFETY: CLONE_PIDFD stored a new pidfd, owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok((pid as i32, pidfd, progress))
}

/// Runs `steps`, numbered from `base`, each marked in `progress` before it
/// runs; at the first failure, writes its record on `report` and exits
/// with `code`. Nothing here allocates.
pub(crate) fn run_steps_or_exit(
    steps: &[crate::step::Step],
    base: usize,
    registers: &[Cell<c_int>],
    progress: &Progress,
    report: c_int,
    code: c_int,
) {
    for (offset, step) in steps.iter().enumerate() {
        let index = base + offset;
        progress.mark(index);
        if let Err(e) = run_step(step, registers) {
            write_record(report, RECORD_STEP_FAILED, index as u32, e);
            exit(code);
        }
    }
}

fn init_main(plan: &ChildPlan, registers: &[Cell<c_int>], progress: &Progress) -> ! {
    run_steps_or_exit(&plan.init_steps, 0, registers, progress, plan.setup_fd, 126);
    let command = raw_clone(libc::SIGCHLD as u64, std::ptr::null_mut());
    if command < 0 {
        let index = plan.init_steps.len() + plan.command_steps.len();
        write_record(plan.setup_fd, RECORD_STEP_FAILED, index as u32, errno());
        exit(126);
    }
    if command == 0 {
        let base = plan.init_steps.len();
        run_steps_or_exit(
            &plan.command_steps,
            base,
            registers,
            progress,
            plan.setup_fd,
            127,
        );
        exit(127);
    }
    // PID 1 from here: keep only the status pipe, and reap until the
    // command ends. Exiting then makes the kernel kill everything else in
    // the pid namespace.
    // SAFETY: close(2) and prctl(2) on our own fds and process.
    unsafe {
        for &fd in &plan.close_after_fork {
            libc::close(fd);
        }
        libc::close(plan.setup_fd);
        for fd in 0..3 {
            libc::close(fd);
        }
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    loop {
        let mut status: c_int = 0;
        // SAFETY: waitpid(2) with a live local for the status.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == command as i32 {
            write_record(plan.status_fd, RECORD_COMMAND_STATUS, 0, status);
            exit(0);
        }
        if pid < 0 && errno() != libc::EINTR {
            exit(125);
        }
    }
}
