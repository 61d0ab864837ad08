//! PID 1 cloned sharing the caller's memory (`CLONE_VM | CLONE_VFORK`, on
//! a stack of its own), as `posix_spawn` makes a child: no page table of
//! the caller is copied, so a run costs the same from a caller of 4 GiB as
//! from a small one. The cloning thread sleeps until PID 1 has execed the
//! reaper (see `reaper`), which gives it an address space of its own;
//! meanwhile the parent's half of the setup runs on a helper thread.
//!
//! Until that exec PID 1 runs in the caller's memory beside the caller's
//! other threads: it allocates nothing (as everywhere on the child's
//! path), writes only its own stack, its registers and the progress page,
//! and uses the sleeping thread's thread-local storage (errno) only.

use std::ffi::{c_int, c_long, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::io::Errno;

use crate::progress::Progress;
use crate::registers::Registers;
use crate::spawn::{CloneArgs, Init, Starting};
use crate::step::ChildPlan;

/// PID 1's stack.
const STACK: usize = 256 << 10;

#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".pushsection .text.sandbox_child_clone3, \"ax\", @progbits",
    ".globl sandbox_child_clone3",
    ".hidden sandbox_child_clone3",
    ".type sandbox_child_clone3, @function",
    // (args, size, fn, arg): clone3(args, size); the child calls fn(arg)
    // on the stack args names and exits with its return value.
    "sandbox_child_clone3:",
    "movq %rdx, %r8",
    "movq %rcx, %r9",
    "movl $435, %eax",
    "syscall",
    "testq %rax, %rax",
    "jnz .Lsbx_clone3_parent",
    "xorl %ebp, %ebp",
    "movq %r9, %rdi",
    "call *%r8",
    "movl %eax, %edi",
    "movl $60, %eax",
    "syscall",
    "ud2",
    ".Lsbx_clone3_parent:",
    "ret",
    ".size sandbox_child_clone3, . - sandbox_child_clone3",
    ".popsection",
    options(att_syntax)
);

#[cfg(target_arch = "x86_64")]
unsafe extern "C" {
    fn sandbox_child_clone3(
        args: *const CloneArgs,
        size: usize,
        entry: extern "C" fn(*mut c_void) -> c_int,
        arg: *mut c_void,
    ) -> c_long;
}

/// A new stack for a child: `STACK` bytes above a guard page, unmapped on
/// drop.
pub(crate) struct Stack {
    base: *mut c_void,
}

impl Stack {
    pub(crate) fn new() -> Result<Self, rustix::io::Errno> {
        use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};
        // SAFETY: a new anonymous mapping at an address the kernel picks.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                STACK + 4096,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::STACK,
            )
        }?;
        let stack = Self { base };
        // SAFETY: the first page of the mapping just made.
        unsafe { rustix::mm::mprotect(base, 4096, MprotectFlags::empty()) }?;
        Ok(stack)
    }

    /// The lowest usable address and the size above it.
    fn area(&self) -> (u64, u64) {
        (self.base as u64 + 4096, STACK as u64)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping `new` made, used by no process any more (a
        // vfork child has execed or exited when its clone returns).
        let _ = unsafe { rustix::mm::munmap(self.base, STACK + 4096) };
    }
}

/// `clone3(args)` with `CLONE_VM | CLONE_VFORK` on `stack`: the child
/// runs `entry(arg)` and exits with its return; this returns (the pid, or
/// `-errno`) once the child has execed or exited.
#[cfg(target_arch = "x86_64")]
pub(crate) fn clone_shared(
    args: &mut CloneArgs,
    stack: &Stack,
    entry: extern "C" fn(*mut c_void) -> c_int,
    arg: *mut c_void,
) -> c_long {
    let (low, size) = stack.area();
    args.flags |= (libc::CLONE_VM | libc::CLONE_VFORK) as u64;
    args.stack = low;
    args.stack_size = size;
    // SAFETY: clone3(2) reads `args` (live, fully initialised, its size
    // passed); the child runs `entry(arg)` on `stack` (mapped, ours, not
    // used by anything else) and exits; the kernel writes the pid and
    // pidfd where `args` says, pointers the caller keeps alive; this
    // thread sleeps until the child has execed or exited, so `arg` and
    // what it points to outlive the child's use of them.
    let ret = unsafe { sandbox_child_clone3(args, std::mem::size_of::<CloneArgs>(), entry, arg) };
    if ret < 0 {
        -libc::c_long::from(crate::errno())
    } else {
        ret
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn clone_shared(
    _: &mut CloneArgs,
    _: &Stack,
    _: extern "C" fn(*mut c_void) -> c_int,
    _: *mut c_void,
) -> c_long {
    -libc::c_long::from(libc::ENOSYS)
}

/// Whether PID 1 can be cloned sharing the caller's memory here
/// ([`ChildPlan::shared`](crate::ChildPlan::shared)): the reaper exists and
/// a child can exec it (tried once per process, as a run does it: a
/// shared clone that execs the reaper with no arguments, which exits 125
/// at once; 127 means the exec failed, as under `vm.memfd_noexec = 2`).
pub fn shared_clone_usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        let Some(reaper) = crate::reaper_fd() else {
            return false;
        };
        let Ok(stack) = Stack::new() else {
            return false;
        };
        extern "C" fn try_exec(fd: *mut c_void) -> c_int {
            let argv = [c"sbx-init".as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null::<std::ffi::c_char>()];
            // SAFETY: execveat(2) of the reaper's fd with live local
            // NULL-terminated arrays; on failure nothing changed.
            unsafe {
                libc::syscall(
                    libc::SYS_execveat,
                    fd as usize as c_int,
                    c"".as_ptr(),
                    argv.as_ptr(),
                    envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                );
            }
            127
        }
        use std::os::fd::AsRawFd;
        let mut args = CloneArgs {
            exit_signal: libc::SIGCHLD as u64,
            ..CloneArgs::default()
        };
        let pid = clone_shared(
            &mut args,
            &stack,
            try_exec,
            reaper.as_raw_fd() as usize as *mut c_void,
        );
        if pid <= 0 {
            return false;
        }
        let mut status = 0;
        // SAFETY: waitpid(2) of our own child into a live local.
        let waited = unsafe { libc::waitpid(pid as i32, &raw mut status, 0) };
        waited == pid as i32 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 125
    })
}

/// The pid and pidfd the kernel writes for a shared clone (into memory the
/// helper thread reads while the cloning thread sleeps): 0 and -1 until
/// then; a negative pid is `-errno` of a clone that failed.
#[derive(Debug)]
pub(crate) struct Ids {
    pub(crate) pid: AtomicI32,
    pub(crate) pidfd: AtomicI32,
}

impl Ids {
    pub(crate) fn new() -> Self {
        Self {
            pid: AtomicI32::new(0),
            pidfd: AtomicI32::new(-1),
        }
    }

    /// Waits until the clone wrote the pid (or failed); the pid.
    pub(crate) fn wait_pid(&self) -> i32 {
        loop {
            let pid = self.pid.load(Ordering::Acquire);
            if pid != 0 {
                return pid;
            }
            std::thread::yield_now();
        }
    }
}

/// What PID 1 starts with in a shared clone: the plan and registers it
/// would have had as a copy (the registers written by PID 1 only, while
/// the cloning thread sleeps).
struct SharedStart<'a> {
    plan: &'a ChildPlan,
    registers: *mut Registers,
    progress: &'a Progress,
}

extern "C" fn shared_entry(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `SharedStart` on the cloning thread's frame,
    // alive until the clone returns, which is after this process execs or
    // exits (CLONE_VFORK); its registers are written by nobody else
    // meanwhile (the parent's helper thread does not touch them).
    let start = unsafe { &*(arg as *const SharedStart<'_>) };
    let registers = unsafe { &mut *start.registers };
    crate::spawn::init_main(start.plan, registers, start.progress)
}

/// `spawn_init` with PID 1 sharing the caller's memory.
pub(crate) fn spawn_shared<R: Send>(
    namespaces: c_int,
    plan: &ChildPlan,
    owner: Option<u32>,
    cgroup: Option<BorrowedFd<'_>>,
    parent: impl FnOnce(&Starting<'_>) -> R + Send,
) -> Result<(Init, R), Errno> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut registers = Registers::new(plan.registers);
    let progress = Progress::new()?;
    let stack = Stack::new()?;
    let ids = Ids::new();
    let in_cgroup = AtomicBool::new(false);
    let mut start = SharedStart {
        plan,
        registers: &raw mut registers,
        progress: &progress,
    };
    let (pid, result) = std::thread::scope(|scope| {
        // Named apart from the caller's threads (a thread inherits its
        // creator's name): it lives only while PID 1 sets up.
        let helper = std::thread::Builder::new()
            .name("sbx-setup".into())
            .spawn_scoped(scope, || {
                let pid = ids.wait_pid();
                if pid < 0 {
                    return None;
                }
                // SAFETY: the kernel stored a new pidfd before PID 1 ran; it
                // stays open until the `Init` made below owns it.
                let pidfd = unsafe { BorrowedFd::borrow_raw(ids.pidfd.load(Ordering::Acquire)) };
                let starting = Starting {
                    pid,
                    pidfd,
                    progress: &progress,
                    in_cgroup: in_cgroup.load(Ordering::Acquire),
                };
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parent(&starting)));
                if result.is_err() {
                    // PID 1 would wait for us for ever, and the cloning thread
                    // for it: it goes, and the panic goes on after the join.
                    let _ =
                        rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
                }
                Some(result)
            });
        let helper = match helper {
            Ok(helper) => helper,
            Err(_) => return (Err(Errno::AGAIN), Ok(None)),
        };
        let guard = match owner
            .map(crate::spawn::ThreadOwner::become_owner)
            .transpose()
        {
            Ok(guard) => guard,
            Err(e) => {
                ids.pid.store(-e.raw_os_error(), Ordering::Release);
                let _ = helper.join();
                return (Err(e), Ok(None));
            }
        };
        let flags = (namespaces as u32 as u64)
            | libc::CLONE_PIDFD as u64
            | libc::CLONE_PARENT_SETTID as u64;
        let args = |flags: u64, cgroup: u64| CloneArgs {
            flags,
            pidfd: ids.pidfd.as_ptr() as u64,
            parent_tid: ids.pid.as_ptr() as u64,
            exit_signal: libc::SIGCHLD as u64,
            cgroup,
            ..CloneArgs::default()
        };
        let arg = (&raw mut start).cast::<c_void>();
        let mut pid: libc::c_long = -1;
        if let Some(cgroup) =
            cgroup.filter(|_| !crate::spawn::NO_CLONE_INTO_CGROUP.load(Ordering::Relaxed))
        {
            in_cgroup.store(true, Ordering::Release);
            let mut with = args(
                flags | crate::spawn::CLONE_INTO_CGROUP,
                cgroup.as_raw_fd() as u32 as u64,
            );
            pid = clone_shared(&mut with, &stack, shared_entry, arg);
            if pid < 0 {
                if matches!(-pid as c_int, libc::ENOSYS | libc::E2BIG | libc::EINVAL) {
                    crate::spawn::NO_CLONE_INTO_CGROUP.store(true, Ordering::Relaxed);
                }
                in_cgroup.store(false, Ordering::Release);
            }
        }
        if pid < 0 {
            pid = clone_shared(&mut args(flags, 0), &stack, shared_entry, arg);
        }
        drop(guard);
        if pid < 0 {
            ids.pid.store(pid as i32, Ordering::Release);
        }
        // A helper that panicked: its panic goes on below.
        let result = match helper.join() {
            Ok(Some(Err(panic))) | Err(panic) => Err(panic),
            Ok(Some(Ok(result))) => Ok(Some(result)),
            Ok(None) => Ok(None),
        };
        if pid < 0 {
            (Err(Errno::from_raw_os_error(-pid as c_int)), result)
        } else {
            (Ok(pid as i32), result)
        }
    });
    // PID 1 filled the registers with fds of its own table (it has execed
    // or exited): their numbers are not ours to close.
    registers.forget();
    let result = result.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    let pid = pid?;
    let result = result.ok_or(Errno::CHILD)?;
    // SAFETY: CLONE_PIDFD stored a new pidfd, owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(ids.pidfd.load(Ordering::Acquire)) };
    Ok((
        Init {
            pid,
            pidfd,
            progress,
            in_cgroup: in_cgroup.load(Ordering::Acquire),
        },
        result,
    ))
}
