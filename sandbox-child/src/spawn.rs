//! Cloning a child that runs a plan: the run's PID 1 (and its command
//! process), and the short-lived children of the probe and the rootless
//! egress namespace.

use std::ffi::{c_int, c_void};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::io::Errno;
use rustix::process::{DumpableBehavior, Uid};
use rustix::thread::CapabilitiesSecureBits;

use crate::exec::run_step;
use crate::progress::Progress;
use crate::record::{
    RECORD_COMMAND_CONTINUED, RECORD_COMMAND_STATUS, RECORD_COMMAND_STOPPED, RECORD_STEP_FAILED,
    RECORD_STEP_PANICKED, write_record,
};
use crate::registers::Registers;
use crate::step::{ChildPlan, Step};
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
/// kernel's rule for credential changes, `suid_dumpable`): the last guard
/// of the threads that overlap puts the caller's dumpable flag back as it
/// was before the first.
pub(crate) struct ThreadOwner {
    euid: Uid,
    securebits: CapabilitiesSecureBits,
}

/// How many threads are owners now, and the dumpable flag the process had
/// before the first: the last to finish puts it back (a thread that
/// restored what another had changed would leave the process
/// non-dumpable for good).
static OWNERS: std::sync::Mutex<(usize, Option<DumpableBehavior>)> =
    std::sync::Mutex::new((0, None));

impl ThreadOwner {
    pub(crate) fn become_owner(owner: u32) -> Result<Self, Errno> {
        if owner == u32::MAX {
            return Err(Errno::INVAL);
        }
        let securebits = rustix::thread::capabilities_secure_bits()?;
        {
            let mut owners = OWNERS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if owners.0 == 0 {
                owners.1 = Some(rustix::process::dumpable_behavior()?);
            }
            owners.0 += 1;
        }
        // From here the guard undoes whatever was done, on every path.
        let guard = Self {
            euid: rustix::process::geteuid(),
            securebits,
        };
        rustix::thread::set_capabilities_secure_bits(
            securebits | CapabilitiesSecureBits::NO_SETUID_FIXUP,
        )?;
        // rustix's thread call is the raw syscall: this thread only.
        rustix::thread::set_thread_res_uid(None, Uid::from_raw_unchecked(owner), None)?;
        Ok(guard)
    }
}

impl Drop for ThreadOwner {
    fn drop(&mut self) {
        // The thread's own euid back (its real and saved uids never
        // changed, so this is always allowed), then its securebits, and
        // with the last owner the process's dumpable flag.
        let _ = rustix::thread::set_thread_res_uid(None, self.euid, None);
        let _ = rustix::thread::set_capabilities_secure_bits(self.securebits);
        let mut owners = OWNERS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        owners.0 = owners.0.saturating_sub(1);
        if owners.0 == 0 {
            if let Some(dumpable) = owners.1.take() {
                let _ = rustix::process::set_dumpable_behavior(dumpable);
            }
        }
    }
}

/// The sandbox's PID 1, as [`spawn_init`] made it.
#[derive(Debug)]
pub struct Init {
    /// Its pid (in the caller's pid namespace).
    pub pid: i32,
    /// A pidfd for it.
    pub pidfd: OwnedFd,
    /// The page its steps mark as they run.
    pub progress: Progress,
    /// Whether it was cloned straight into the cgroup it was given
    /// (`CLONE_INTO_CGROUP`); if not, the caller must move it there.
    pub in_cgroup: bool,
}

/// `clone3`'s arguments (`struct clone_args`, up to `cgroup`: 5.7+).
#[repr(C)]
#[derive(Default)]
pub(crate) struct CloneArgs {
    pub(crate) flags: u64,
    pub(crate) pidfd: u64,
    pub(crate) child_tid: u64,
    pub(crate) parent_tid: u64,
    pub(crate) exit_signal: u64,
    pub(crate) stack: u64,
    pub(crate) stack_size: u64,
    pub(crate) tls: u64,
    pub(crate) set_tid: u64,
    pub(crate) set_tid_size: u64,
    pub(crate) cgroup: u64,
}

pub(crate) const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Set once `clone3` with a cgroup failed in a way that says this kernel
/// (or a seccomp filter over us) does not have it: later runs go straight
/// to `clone`.
pub(crate) static NO_CLONE_INTO_CGROUP: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// `clone3` with `flags`, the exit signal `SIGCHLD`, no new stack (the
/// child continues at the return, like `fork`) and `CLONE_INTO_CGROUP`
/// into `cgroup`.
fn raw_clone3_into(flags: u64, pidfd: *mut c_int, cgroup: c_int) -> libc::c_long {
    let args = CloneArgs {
        flags: flags | CLONE_INTO_CGROUP,
        pidfd: pidfd as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup as u32 as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3(2) reads `args` (a live, fully initialised struct of
    // the size passed); without CLONE_VM and with no stack the child gets
    // a copy of the address space and both continue at the return;
    // `pidfd` points at a live c_int (CLONE_PIDFD).
    unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw const args,
            std::mem::size_of::<CloneArgs>(),
        )
    }
}

/// What the parent's half of the setup gets while PID 1 runs its steps.
#[derive(Debug)]
pub struct Starting<'a> {
    /// PID 1's pid (in the caller's pid namespace).
    pub pid: i32,
    /// A pidfd for it.
    pub pidfd: BorrowedFd<'a>,
    /// The page its steps mark as they run.
    pub progress: &'a Progress,
    /// Whether it was cloned straight into the cgroup it was given.
    pub in_cgroup: bool,
}

/// Clones the sandbox's PID 1 with `namespaces` (`CLONE_NEW*` flags) and
/// runs `plan` in it, and `parent` (the parent's half of the setup: the id
/// maps, the bytes that let PID 1 go on, waiting for the command's exec)
/// with it; returns PID 1 and what `parent` returned. With `owner`, the
/// new user namespace is owned by that host uid (the clone is made with
/// it as the thread's effective uid). With `cgroup` (a cgroup v2
/// directory), PID 1 is cloned straight into it where the kernel can
/// (`clone3` with `CLONE_INTO_CGROUP`, 5.7+: no migration afterwards);
/// [`Init::in_cgroup`] says whether it was.
///
/// With [`ChildPlan::shared`], PID 1 shares the caller's memory until it
/// execs the reaper (no page table is copied: see `shared`), and `parent`
/// runs on a thread of its own meanwhile; otherwise PID 1 is a copy of
/// the caller and `parent` runs here after the clone.
///
/// # Errors
///
/// The clone's errno (`parent` did not run).
pub fn spawn_init<R: Send>(
    namespaces: c_int,
    plan: &ChildPlan,
    owner: Option<u32>,
    cgroup: Option<BorrowedFd<'_>>,
    parent: impl FnOnce(&Starting<'_>) -> R + Send,
) -> Result<(Init, R), Errno> {
    if plan.shared {
        return crate::shared::spawn_shared(namespaces, plan, owner, cgroup, parent);
    }
    use std::sync::atomic::Ordering;
    let mut registers = Registers::new(plan.registers);
    let progress = Progress::new()?;
    let mut pidfd: c_int = -1;
    let flags = (namespaces as u32 as u64) | libc::CLONE_PIDFD as u64;
    let guard = owner.map(ThreadOwner::become_owner).transpose()?;
    let mut in_cgroup = false;
    let mut pid = -1;
    if let Some(cgroup) = cgroup.filter(|_| !NO_CLONE_INTO_CGROUP.load(Ordering::Relaxed)) {
        pid = raw_clone3_into(flags, &mut pidfd, cgroup.as_raw_fd());
        if pid < 0 {
            // Any failure is retried with a plain clone (which fails the
            // same way if the namespaces were the reason); a kernel or
            // filter without clone3's cgroup is not asked again.
            if matches!(errno(), libc::ENOSYS | libc::E2BIG | libc::EINVAL) {
                NO_CLONE_INTO_CGROUP.store(true, Ordering::Relaxed);
            }
        } else {
            in_cgroup = true;
        }
    }
    if pid < 0 {
        pid = raw_clone(flags | libc::SIGCHLD as u64, &mut pidfd);
    }
    let clone_error = (pid < 0).then(last_errno);
    if pid == 0 {
        // The child: its credentials are a copy; the user namespace it is
        // in reset its securebits and gave it every capability there.
        std::mem::forget(guard);
        init_main(plan, &mut registers, &progress);
    }
    drop(guard);
    if let Some(errno) = clone_error {
        return Err(errno);
    }
    // SAFETY: CLONE_PIDFD stored a new pidfd, owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let init = Init {
        pid: pid as i32,
        pidfd,
        progress,
        in_cgroup,
    };
    let result = parent(&Starting {
        pid: init.pid,
        pidfd: init.pidfd.as_fd(),
        progress: &init.progress,
        in_cgroup,
    });
    Ok((init, result))
}

/// Aborts the child when the step it guards panics: dropped only while
/// unwinding (a step that returns forgets it). It reports the step on the
/// setup pipe and on stderr, then aborts: a panic must not go on to run
/// the next step, or std's code after clone (which may take locks another
/// thread of the caller held).
struct AbortOnPanic<'a> {
    step: &'a Step,
    index: usize,
    report: c_int,
}

impl Drop for AbortOnPanic<'_> {
    fn drop(&mut self) {
        write_record(
            self.report,
            RECORD_STEP_PANICKED,
            u32::try_from(self.index).unwrap_or(u32::MAX),
            0,
        );
        let mut line = [0u8; 128];
        let mut at = 0;
        let mut digits = [0u8; 20];
        let parts: [&[u8]; 5] = [
            b"sandbox-child: step ",
            decimal(self.index, &mut digits),
            b" (",
            self.step.name().as_bytes(),
            b") panicked; aborting\n",
        ];
        for part in parts {
            for &byte in part {
                if let Some(slot) = line.get_mut(at) {
                    *slot = byte;
                    at += 1;
                }
            }
        }
        if let Ok(stderr) = crate::exec::inherited(2) {
            let _ = rustix::io::write(stderr, line.get(..at).unwrap_or_default());
        }
        std::process::abort();
    }
}

/// `n` in decimal, written at the end of `buffer` (no allocation; 20
/// digits hold any `usize`).
pub(crate) fn decimal(mut n: usize, buffer: &mut [u8; 20]) -> &[u8] {
    let mut at = buffer.len();
    while let Some(slot) = at.checked_sub(1).and_then(|i| buffer.get_mut(i)) {
        *slot = b'0' + (n % 10) as u8;
        at -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buffer.get(at..).unwrap_or_default()
}

/// Runs `steps`, numbered from `base`, each marked in `progress` before it
/// runs; at the first failure, writes its record on `report` and exits
/// with `code`. A step that panics aborts the child ([`AbortOnPanic`]).
/// Nothing here allocates.
pub(crate) fn run_steps_or_exit(
    steps: &[Step],
    base: usize,
    registers: &mut Registers,
    progress: &Progress,
    report: c_int,
    code: c_int,
) {
    for (offset, step) in steps.iter().enumerate() {
        let index = base + offset;
        progress.mark(index);
        let guard = AbortOnPanic {
            step,
            index,
            report,
        };
        let result = run_step(step, registers);
        std::mem::forget(guard);
        if let Err(e) = result {
            write_record(
                report,
                RECORD_STEP_FAILED,
                u32::try_from(index).unwrap_or(u32::MAX),
                e.raw_os_error(),
            );
            exit(code);
        }
    }
}

/// What the command process's first function gets: PID 1's plan and
/// registers, shared (PID 1 is suspended until the command has exec'd).
struct CommandStart<'a> {
    plan: &'a ChildPlan,
    registers: *mut Registers,
    progress: &'a Progress,
}

/// The command process's stack: mapped by PID 1 (a syscall, not the
/// allocator), unmapped once the command has execed.
const COMMAND_STACK: usize = 256 << 10;

extern "C" fn command_main(start: *mut c_void) -> c_int {
    // SAFETY: `start` is the `CommandStart` on PID 1's stack, alive: PID 1
    // is suspended (CLONE_VFORK) until this process execs or exits, and
    // nothing else runs in this address space meanwhile (PID 1 is single
    // threaded), so the registers are ours alone.
    let start = unsafe { &*(start as *const CommandStart<'_>) };
    let registers = unsafe { &mut *start.registers };
    let plan = start.plan;
    run_steps_or_exit(
        &plan.command_steps,
        plan.init_steps.len(),
        registers,
        start.progress,
        plan.setup_fd,
        127,
    );
    exit(127)
}

/// Starts the command process: a `clone` sharing PID 1's memory
/// (`CLONE_VM | CLONE_VFORK`, on a stack of its own), so that nothing is
/// copied for a process that only runs its steps and execs; PID 1 goes on
/// once it has. Returns its pid, or the errno.
fn start_command(
    plan: &ChildPlan,
    registers: &mut Registers,
    progress: &Progress,
) -> Result<c_int, c_int> {
    use rustix::mm::{MapFlags, ProtFlags};
    // A guard page below the stack.
    // SAFETY: a new anonymous mapping, at an address the kernel picks.
    let base = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            COMMAND_STACK + 4096,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE | MapFlags::STACK,
        )
    }
    .map_err(|e| e.raw_os_error())?;
    // SAFETY: the first page of the mapping just made.
    unsafe { rustix::mm::mprotect(base, 4096, rustix::mm::MprotectFlags::empty()) }
        .map_err(|e| e.raw_os_error())?;
    let mut start = CommandStart {
        plan,
        registers,
        progress,
    };
    // SAFETY: the stack's top, 16-byte aligned, is the end of the mapping;
    // `command_main` runs there with `start`, which lives on this frame
    // until clone returns (CLONE_VFORK: after the command exec'd or
    // exited). glibc's clone calls it on the new stack and exits with its
    // return value.
    let pid = unsafe {
        let top = base.cast::<u8>().add(COMMAND_STACK + 4096);
        libc::clone(
            command_main,
            top.cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&raw mut start).cast(),
        )
    };
    let result = if pid < 0 { Err(errno()) } else { Ok(pid) };
    // The command has execed or exited (CLONE_VFORK): its stack is free;
    // in a shared clone it is the caller's memory.
    // SAFETY: the mapping made above, no longer used.
    let _ = unsafe { rustix::mm::munmap(base, COMMAND_STACK + 4096) };
    result
}

pub(crate) fn init_main(plan: &ChildPlan, registers: &mut Registers, progress: &Progress) -> ! {
    run_steps_or_exit(&plan.init_steps, 0, registers, progress, plan.setup_fd, 126);
    // PID 1 holds a copy of the caller's memory until it execs the
    // reaper: non-dumpable before the command exists, so that no process
    // of the sandbox may read it through /proc/1/mem (same uid, no Yama)
    // in the moment before that exec (the command's own exec gives it a
    // fresh address space, dumpable as usual). Sharing the caller's
    // memory, PID 1 must not change its flag: only root callers' runs
    // share, whose PID 1 has host ids the sandbox's user does not.
    if !plan.shared {
        let _ =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    }
    let command = match start_command(plan, registers, progress) {
        Ok(pid) => libc::c_long::from(pid),
        Err(errno) => {
            let index = plan.init_steps.len() + plan.command_steps.len();
            write_record(plan.setup_fd, RECORD_STEP_FAILED, index as u32, errno);
            exit(126);
        }
    };
    // PID 1 from here: keep only the status pipe, and reap until the
    // command ends. Exiting then makes the kernel kill everything else in
    // the pid namespace.
    for &fd in plan
        .close_after_fork
        .iter()
        .chain(&[plan.setup_fd, 0, 1, 2])
    {
        // SAFETY: close(2) of fds PID 1 inherited (the plan's pipe ends and
        // stdio): no register holds them and no step runs in PID 1 after
        // this, so nothing refers to these numbers again.
        unsafe { libc::close(fd) };
    }
    if plan.reaper_fd >= 0 {
        crate::reaper::exec_reaper(plan.reaper_fd, command as i32, plan.status_fd);
        if plan.shared {
            // Not to go on in the caller's memory: the run ends (no status
            // record: the parent says PID 1 ended without one).
            exit(125);
        }
    }
    forward_signals(command as i32);
    let options = rustix::process::WaitOptions::UNTRACED | rustix::process::WaitOptions::CONTINUED;
    // Whether the last change reported was a stop.
    let mut stopped = false;
    loop {
        match rustix::process::wait(options) {
            Ok(Some((pid, status))) if i64::from(pid.as_raw_nonzero().get()) == command => {
                if let Some(signal) = status.stopping_signal() {
                    stopped = true;
                    write_record(plan.status_fd, RECORD_COMMAND_STOPPED, 0, signal);
                } else if status.continued() {
                    stopped = false;
                    write_record(plan.status_fd, RECORD_COMMAND_CONTINUED, 0, 0);
                } else {
                    // A command that exits soon after it was continued may
                    // do so before we saw the continue (the kernel then
                    // reports only the exit): it ran again unless SIGKILL
                    // ended it stopped.
                    if stopped && status.terminating_signal() != Some(libc::SIGKILL) {
                        write_record(plan.status_fd, RECORD_COMMAND_CONTINUED, 0, 0);
                    }
                    write_record(plan.status_fd, RECORD_COMMAND_STATUS, 0, status.as_raw());
                    exit(0);
                }
            }
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => exit(125),
        }
    }
}

/// The command process (a session and process group leader), for the
/// forwarding handler.
static COMMAND: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The signals PID 1 passes on to the command's process group: a signal
/// from outside the pid namespace reaches its init only if init handles
/// it, so this is how the caller signals the command (and how job control
/// continues it).
pub const FORWARDED_SIGNALS: [c_int; 8] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGCONT,
    libc::SIGTSTP,
];

extern "C" fn forward(signal: c_int) {
    let command = COMMAND.load(std::sync::atomic::Ordering::Relaxed);
    if command > 0 {
        // SAFETY: kill(2) is async-signal-safe; a negative pid names the
        // command's process group.
        unsafe { libc::kill(-command, signal) };
    }
}

/// Installs `forward` for `FORWARDED_SIGNALS` in PID 1 and unblocks them
/// (PID 1 inherited the cloning thread's handlers and mask).
fn forward_signals(command: i32) {
    COMMAND.store(command, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: sigaction reads a live local `struct sigaction` of libc's
    // type whose handler is `forward`, an async-signal-safe function that
    // lives as long as the process; sigprocmask reads a live local set.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = forward as extern "C" fn(c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&raw mut action.sa_mask);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        for signal in FORWARDED_SIGNALS {
            libc::sigaction(signal, &raw const action, std::ptr::null_mut());
            libc::sigaddset(&raw mut set, signal);
        }
        libc::sigprocmask(libc::SIG_UNBLOCK, &raw const set, std::ptr::null_mut());
    }
}
