//! The child side of a run: a list of steps prepared by the parent and
//! executed with raw syscalls over prebuilt buffers (DESIGN principle 2).
//!
//! Nothing here allocates, takes a lock or touches libc state beyond thin
//! syscall wrappers: the child is a copy of a possibly multithreaded
//! process, made with a raw `clone(2)`, in which any lock another thread
//! held at the time stays held forever. The first failing step is reported
//! to the parent as `(index, errno)` over a CLOEXEC pipe.

use std::cell::Cell;
use std::ffi::{CString, c_char, c_int, c_void};
use std::os::fd::{FromRawFd, OwnedFd};

use rustix::io::Errno;

use super::last_errno;
pub(crate) use super::mounts::{
    MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
};
use super::steps::run_step;

/// An index into the child's fd registers (fds the steps open and use).
pub(crate) type Reg = usize;

/// A register or stdio slot with no fd.
pub(crate) const NO_FD: c_int = -1;

/// What a mount target must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetKind {
    /// A directory (created if missing and `create` is set).
    Dir,
    /// A non-directory (an empty regular file is created if missing).
    File,
    /// Whatever is there (masks).
    Existing,
}

/// A null-terminated array of C strings (argv, envp), with the strings it
/// points into.
#[derive(Debug)]
pub(crate) struct CStringArray {
    _strings: Vec<CString>,
    pointers: Vec<*const c_char>,
}

// SAFETY: the pointers point into `strings`, which the array owns and never
// changes after construction; moving the array moves the heap buffers'
// owners, not the buffers.
unsafe impl Send for CStringArray {}

impl CStringArray {
    /// The null-terminated pointer array, for `execve`.
    pub(super) fn as_ptr(&self) -> *const *const c_char {
        self.pointers.as_ptr()
    }

    pub(crate) fn new(strings: Vec<CString>) -> Self {
        let mut pointers: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        pointers.push(std::ptr::null());
        Self {
            _strings: strings,
            pointers,
        }
    }
}

/// A BPF program to install: its instructions, as the kernel's
/// `struct sock_filter` array.
#[derive(Debug)]
pub(crate) struct RawFilter {
    pub(crate) instructions: *const c_void,
    pub(crate) len: u16,
}

// SAFETY: the pointer refers to a program owned by an `Arc<SeccompProgram>`
// that the plan holding this also holds (see `Step::Seccomp`).
unsafe impl Send for RawFilter {}

/// One step of the plan.
#[derive(Debug)]
pub(crate) enum Step {
    /// `close_range` over every fd from 3 up except these (sorted, all ≥ 3).
    CloseFdsExcept(Vec<c_int>),
    /// `prctl(PR_SET_PDEATHSIG, SIGKILL)`.
    ParentDeathSignal,
    /// Block until the parent says go (one byte on `fd`): after the id
    /// maps, and again after placing us in our cgroups. The parent keeps
    /// its end open for the whole run (see `CheckParentAlive`).
    WaitForParent(c_int),
    /// Fails with `ECANCELED` if the parent has closed its end of `fd`
    /// (it died): after the credentials change, which clears the
    /// parent-death signal, the signal is set again and this closes the
    /// window in which the parent could have died unnoticed.
    CheckParentAlive(c_int),
    /// `unshare(CLONE_NEWCGROUP)`, after the parent placed us in our cgroups.
    UnshareCgroup,
    /// `mount(NULL, "/", NULL, MS_REC | MS_PRIVATE)`.
    MakeMountsPrivate,
    /// `open_tree(AT_FDCWD, path, OPEN_TREE_CLONE [| AT_RECURSIVE])`.
    OpenTree {
        path: CString,
        recursive: bool,
        out: Reg,
    },
    /// `open(path, O_PATH | O_DIRECTORY)`.
    OpenDir { path: CString, out: Reg },
    /// `mount_setattr(mount, "", AT_EMPTY_PATH [| AT_RECURSIVE], set)`.
    SetMountAttrs {
        mount: Reg,
        set: u64,
        recursive: bool,
    },
    /// `fsopen`, `fsconfig` per option, `fsmount`.
    NewFilesystem {
        fstype: CString,
        options: Vec<(CString, Option<CString>)>,
        attrs: u64,
        out: Reg,
    },
    /// `move_mount(mount, "", AT_FDCWD, path)`: attach the new root at a
    /// staging point of the caller's (private) mount namespace.
    AttachAt { mount: Reg, path: CString },
    /// Walk `components` beneath `base` one at a time with `openat2`
    /// (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`),
    /// creating what is missing if `create`.
    Resolve {
        base: Reg,
        components: Vec<CString>,
        kind: TargetKind,
        create: bool,
        optional: bool,
        out: Reg,
    },
    /// `move_mount(from, "", to, "", F_EMPTY_PATH | T_EMPTY_PATH)`, then
    /// close both. A missing optional target closes `from` and succeeds.
    MoveMount { from: Reg, to: Reg },
    /// Cover `target` with `dir_source` or `file_source` by its type.
    Mask {
        target: Reg,
        dir_source: Reg,
        file_source: Reg,
    },
    /// `symlinkat(target, dir, name)`.
    Symlink {
        dir: Reg,
        name: CString,
        target: CString,
    },
    /// `openat(dir, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, 0644)`,
    /// write `contents`, `fchmod(0644)`, close.
    WriteFile {
        dir: Reg,
        name: CString,
        contents: Vec<u8>,
    },
    /// `open_tree(dir, name, OPEN_TREE_CLONE)`: a bind of one file or
    /// directory beneath `dir` (which must be attached in our namespace).
    OpenTreeAt { dir: Reg, name: CString, out: Reg },
    /// `open(path, O_WRONLY)`, write `contents` (a `/proc/sys` setting).
    WriteSetting { path: CString, contents: Vec<u8> },
    /// `unlinkat(dir, name, 0)`.
    Unlink { dir: Reg, name: CString },
    /// `close(reg)`.
    Close(Reg),
    /// Zero the memory holding this process's argv (`/proc/self/stat`
    /// fields `arg_start`, `arg_end`), so that `/proc/1/cmdline` in the
    /// sandbox does not show the caller's command line; and name the
    /// process (`PR_SET_NAME`).
    HideCallerIdentity {
        arg_start: usize,
        arg_len: usize,
        name: CString,
    },
    /// `fchdir(root)`, `pivot_root(".", ".")`, `umount2(".", MNT_DETACH)`,
    /// `chdir("/")`.
    PivotRoot { root: Reg },
    /// `mount_setattr(AT_FDCWD, "/", 0, MOUNT_ATTR_RDONLY)`.
    RootReadOnly,
    /// `sethostname`.
    SetHostname(CString),
    /// `ioctl(SIOCSIFFLAGS)` on `lo` with `IFF_UP`.
    LoopbackUp,
    /// Send a prebuilt nf_tables batch on a `NETLINK_NETFILTER` socket and
    /// check its ACKs.
    NftBatch { bytes: Vec<u8>, acks: u32 },
    /// `open("/dev/net/tun")` + `TUNSETIFF` (tap, no packet info); the tap
    /// must come out as link `index` (the requests that follow assume it).
    CreateTap {
        name: CString,
        index: c_int,
        out: Reg,
    },
    /// Send prebuilt rtnetlink requests, checking every ACK.
    Netlink { bytes: Vec<u8>, count: u32 },
    /// Pass the fd in `reg` to the parent over `socket` (`SCM_RIGHTS`).
    SendFd {
        socket: c_int,
        reg: Reg,
        buffer: std::cell::RefCell<sandbox_net::FdPassBuffer>,
    },
    /// Empty the bounding and ambient sets, lock the securebits.
    DropBoundingAndAmbient,
    /// `setgroups(0, NULL)`.
    ClearGroups,
    /// `setresgid(gid, gid, gid)`.
    SetGid(u32),
    /// `setresuid(uid, uid, uid)`.
    SetUid(u32),
    /// `capset` with every set empty.
    ClearCapabilities,
    /// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
    NoNewPrivs,
    /// Unblock every signal and reset every disposition to the default
    /// (Rust ignores `SIGPIPE`; an ignored signal stays ignored over exec).
    ResetSignals,
    /// `setsid()`: no controlling terminal, so no `TIOCSTI` into the
    /// caller's.
    NewSession,
    /// `dup2` each given fd onto 0, 1, 2 (`NO_FD`: leave as is).
    Stdio([c_int; 3]),
    /// `close_range(3, ~0, CLOSE_RANGE_CLOEXEC)`: nothing but 0–2 survives
    /// the exec.
    CloseOnExecAbove2,
    /// `chdir(path)`.
    Chdir(CString),
    /// `setrlimit(resource, soft, hard)`.
    Rlimit { resource: u32, soft: u64, hard: u64 },
    /// `landlock_create_ruleset`, one path-beneath rule per path, then
    /// `landlock_restrict_self`.
    Landlock {
        handled: [u64; 3],
        attr_size: usize,
        rules: Vec<(CString, u64)>,
    },
    /// `seccomp(SECCOMP_SET_MODE_FILTER)` per program. The `Arc` keeps the
    /// instructions the raw filters point at alive.
    Seccomp {
        filters: Vec<RawFilter>,
        _owner: std::sync::Arc<crate::seccomp::SeccompProgram>,
    },
    /// `execve` of each candidate path in turn (a `PATH` search prepared
    /// by the parent).
    Exec {
        candidates: Vec<CString>,
        argv: CStringArray,
        envp: CStringArray,
    },
}

/// What the child runs: PID 1's steps, then (in the forked command
/// process) the command's steps ending in `execve`.
#[derive(Debug)]
pub(crate) struct ChildPlan {
    pub(crate) init_steps: Vec<Step>,
    pub(crate) command_steps: Vec<Step>,
    pub(crate) registers: usize,
    /// Write end of the setup pipe: failures, and EOF once the command
    /// has exec'd (PID 1 closes its copy after the fork).
    pub(crate) setup_fd: c_int,
    /// Write end of the status pipe: PID 1's report of the command's wait
    /// status.
    pub(crate) status_fd: c_int,
    /// Fds PID 1 closes once the command process has its copies.
    pub(crate) close_after_fork: Vec<c_int>,
}

/// A record on the setup or status pipe.
pub(crate) const RECORD_LEN: usize = 12;
/// A step failed: `(index, errno)`.
pub(crate) const RECORD_STEP_FAILED: u32 = 1;
/// The command ended: `(0, wait status)`.
pub(crate) const RECORD_COMMAND_STATUS: u32 = 2;

/// Decodes a record: `(kind, index, value)`.
pub(crate) fn decode_record(bytes: &[u8; RECORD_LEN]) -> (u32, u32, i32) {
    let word = |i: usize| [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
    (
        u32::from_ne_bytes(word(0)),
        u32::from_ne_bytes(word(4)),
        i32::from_ne_bytes(word(8)),
    )
}

fn write_record(fd: c_int, kind: u32, index: u32, value: i32) {
    let mut record = [0u8; RECORD_LEN];
    record[..4].copy_from_slice(&kind.to_ne_bytes());
    record[4..8].copy_from_slice(&index.to_ne_bytes());
    record[8..].copy_from_slice(&value.to_ne_bytes());
    // SAFETY: write(2) of a live local buffer; a pipe write of 12 bytes is
    // atomic (below PIPE_BUF).
    unsafe {
        libc::write(fd, record.as_ptr().cast(), RECORD_LEN);
    }
}

pub(super) fn errno() -> c_int {
    // SAFETY: reading the calling thread's errno is async-signal-safe.
    unsafe { *libc::__errno_location() }
}

fn exit(code: c_int) -> ! {
    // SAFETY: _exit(2) is async-signal-safe and does not return.
    unsafe { libc::_exit(code) }
}

/// A raw `clone(2)` with no new stack: like `fork`, but without glibc's
/// fork handlers (which take locks other threads may hold).
fn raw_clone(flags: u64, pidfd: *mut c_int) -> libc::c_long {
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
pub(crate) fn spawn_init(
    namespaces: c_int,
    plan: &ChildPlan,
    owner: Option<u32>,
) -> Result<(i32, OwnedFd), Errno> {
    let registers: Vec<Cell<c_int>> = (0..plan.registers).map(|_| Cell::new(NO_FD)).collect();
    let mut pidfd: c_int = -1;
    let flags = (namespaces as u32 as u64) | libc::CLONE_PIDFD as u64 | libc::SIGCHLD as u64;
    let guard = owner.map(ThreadOwner::become_owner).transpose()?;
    let pid = raw_clone(flags, &mut pidfd);
    let clone_error = (pid < 0).then(last_errno);
    if pid == 0 {
        // The child: its credentials are a copy; the user namespace it is
        // in reset its securebits and gave it every capability there.
        std::mem::forget(guard);
        init_main(plan, &registers);
    }
    drop(guard);
    if let Some(errno) = clone_error {
        return Err(errno);
    }
    // SAFETY: CLONE_PIDFD stored a new pidfd, owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok((pid as i32, pidfd))
}

fn init_main(plan: &ChildPlan, registers: &[Cell<c_int>]) -> ! {
    for (index, step) in plan.init_steps.iter().enumerate() {
        if let Err(e) = run_step(step, registers) {
            write_record(plan.setup_fd, RECORD_STEP_FAILED, index as u32, e);
            exit(126);
        }
    }
    let command = raw_clone(libc::SIGCHLD as u64, std::ptr::null_mut());
    if command < 0 {
        let index = plan.init_steps.len() + plan.command_steps.len();
        write_record(plan.setup_fd, RECORD_STEP_FAILED, index as u32, errno());
        exit(126);
    }
    if command == 0 {
        let base = plan.init_steps.len();
        for (index, step) in plan.command_steps.iter().enumerate() {
            if let Err(e) = run_step(step, registers) {
                write_record(plan.setup_fd, RECORD_STEP_FAILED, (base + index) as u32, e);
                exit(127);
            }
        }
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
