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

fn errno() -> c_int {
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

/// Clones the sandbox's PID 1 with `namespaces` (`CLONE_NEW*` flags) and
/// runs `plan` in it. Returns its host pid and a pidfd.
pub(crate) fn spawn_init(namespaces: c_int, plan: &ChildPlan) -> Result<(i32, OwnedFd), Errno> {
    let registers: Vec<Cell<c_int>> = (0..plan.registers).map(|_| Cell::new(NO_FD)).collect();
    let mut pidfd: c_int = -1;
    let flags = (namespaces as u32 as u64) | libc::CLONE_PIDFD as u64 | libc::SIGCHLD as u64;
    let pid = raw_clone(flags, &mut pidfd);
    if pid < 0 {
        return Err(last_errno());
    }
    if pid == 0 {
        init_main(plan, &registers);
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

/// `openat2(dir, name, flags, RESOLVE_BENEATH | NO_SYMLINKS | NO_MAGICLINKS)`.
fn openat2_beneath(dir: c_int, name: &CString, flags: c_int) -> Result<c_int, c_int> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2(2) with a NUL-terminated name and a live open_how of
    // the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            name.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd as c_int)
    }
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
/// `MOUNT_ATTR_RDONLY`.
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// `MOUNT_ATTR_NOSUID`.
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
/// `MOUNT_ATTR_NODEV`.
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
/// `MOUNT_ATTR_NOEXEC`.
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x8;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn mount_setattr(dir: c_int, path: &std::ffi::CStr, flags: libc::c_uint, set: u64) -> c_int {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr(2) with a NUL-terminated path and a live
    // mount_attr of the size passed (MOUNT_ATTR_SIZE_VER0).
    unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dir,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ) as c_int
    }
}

#[repr(C, packed)]
struct LandlockPathBeneath {
    allowed_access: u64,
    parent_fd: i32,
}

/// Checks a syscall's return value.
fn check(ret: impl Into<i64>) -> Result<i64, c_int> {
    let ret = ret.into();
    if ret < 0 { Err(errno()) } else { Ok(ret) }
}

fn reg(registers: &[Cell<c_int>], r: Reg) -> c_int {
    registers.get(r).map_or(NO_FD, Cell::get)
}

fn set_reg(registers: &[Cell<c_int>], r: Reg, fd: i64) {
    if let Some(cell) = registers.get(r) {
        cell.set(fd as c_int);
    }
}

fn close_reg(registers: &[Cell<c_int>], r: Reg) {
    let fd = reg(registers, r);
    if fd >= 0 {
        // SAFETY: close(2) of an fd this plan opened.
        unsafe { libc::close(fd) };
        set_reg(registers, r, i64::from(NO_FD));
    }
}

#[allow(clippy::too_many_lines)]
fn run_step(step: &Step, registers: &[Cell<c_int>]) -> Result<(), c_int> {
    // SAFETY (for the whole match): every call is a thin syscall wrapper
    // given NUL-terminated strings and buffers the plan owns, or live
    // locals; fds come from the registers this plan filled.
    unsafe {
        match step {
            Step::CloseFdsExcept(keep) => {
                let mut low: u32 = 3;
                for &fd in keep {
                    let fd = fd as u32;
                    if fd > low {
                        check(libc::syscall(libc::SYS_close_range, low, fd - 1, 0))?;
                    }
                    low = fd + 1;
                }
                check(libc::syscall(libc::SYS_close_range, low, u32::MAX, 0))?;
            }
            Step::ParentDeathSignal => {
                check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
            }
            Step::WaitForParent(fd) => {
                let mut byte = 0u8;
                loop {
                    let n = libc::read(*fd, (&mut byte as *mut u8).cast(), 1);
                    if n == 1 {
                        break;
                    }
                    if n < 0 && errno() == libc::EINTR {
                        continue;
                    }
                    return Err(libc::ECANCELED);
                }
            }
            Step::CheckParentAlive(fd) => {
                let mut poll = libc::pollfd {
                    fd: *fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                check(libc::poll(&mut poll, 1, 0))?;
                if poll.revents & libc::POLLHUP != 0 {
                    return Err(libc::ECANCELED);
                }
            }
            Step::UnshareCgroup => {
                check(libc::unshare(libc::CLONE_NEWCGROUP))?;
            }
            Step::MakeMountsPrivate => {
                check(libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
            }
            Step::OpenTree {
                path,
                recursive,
                out,
            } => {
                let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
                if *recursive {
                    flags |= AT_RECURSIVE;
                }
                let fd = check(libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    flags,
                ))?;
                set_reg(registers, *out, fd);
            }
            Step::OpenDir { path, out } => {
                let fd = check(libc::open(
                    path.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                ))?;
                set_reg(registers, *out, fd);
            }
            Step::SetMountAttrs {
                mount,
                set,
                recursive,
            } => {
                let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
                if *recursive {
                    flags |= AT_RECURSIVE;
                }
                check(mount_setattr(reg(registers, *mount), c"", flags, *set))?;
            }
            Step::NewFilesystem {
                fstype,
                options,
                attrs,
                out,
            } => {
                let fs = check(libc::syscall(
                    libc::SYS_fsopen,
                    fstype.as_ptr(),
                    FSOPEN_CLOEXEC,
                ))? as c_int;
                let result = (|| {
                    for (key, value) in options {
                        match value {
                            Some(v) => check(libc::syscall(
                                libc::SYS_fsconfig,
                                fs,
                                FSCONFIG_SET_STRING,
                                key.as_ptr(),
                                v.as_ptr(),
                                0,
                            ))?,
                            None => check(libc::syscall(
                                libc::SYS_fsconfig,
                                fs,
                                FSCONFIG_SET_FLAG,
                                key.as_ptr(),
                                std::ptr::null::<c_char>(),
                                0,
                            ))?,
                        };
                    }
                    check(libc::syscall(
                        libc::SYS_fsconfig,
                        fs,
                        FSCONFIG_CMD_CREATE,
                        std::ptr::null::<c_char>(),
                        std::ptr::null::<c_char>(),
                        0,
                    ))?;
                    check(libc::syscall(
                        libc::SYS_fsmount,
                        fs,
                        FSMOUNT_CLOEXEC,
                        *attrs,
                    ))
                })();
                libc::close(fs);
                set_reg(registers, *out, result?);
            }
            Step::AttachAt { mount, path } => {
                check(libc::syscall(
                    libc::SYS_move_mount,
                    reg(registers, *mount),
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                ))?;
            }
            Step::Resolve {
                base,
                components,
                kind,
                create,
                optional,
                out,
            } => {
                let mut dir = reg(registers, *base);
                let mut owned = NO_FD;
                for (i, name) in components.iter().enumerate() {
                    let last = i + 1 == components.len();
                    let flags = if !last || *kind == TargetKind::Dir {
                        libc::O_PATH | libc::O_DIRECTORY
                    } else {
                        libc::O_PATH
                    };
                    // Open what is there; create it only if it is missing
                    // (a read-only mount refuses even an mkdir of an
                    // existing name with EROFS).
                    let mut opened = openat2_beneath(dir, name, flags);
                    if *create && opened == Err(libc::ENOENT) {
                        let made = if last && *kind == TargetKind::File {
                            libc::mknodat(dir, name.as_ptr(), libc::S_IFREG | 0o644, 0)
                        } else {
                            libc::mkdirat(dir, name.as_ptr(), 0o755)
                        };
                        opened = if made < 0 && errno() != libc::EEXIST {
                            Err(errno())
                        } else {
                            openat2_beneath(dir, name, flags)
                        };
                    }
                    if owned >= 0 {
                        libc::close(owned);
                    }
                    match opened {
                        Ok(fd) => {
                            dir = fd;
                            owned = fd;
                        }
                        Err(libc::ENOENT) if *optional => {
                            set_reg(registers, *out, i64::from(NO_FD));
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                    }
                }
                set_reg(registers, *out, i64::from(owned));
            }
            Step::MoveMount { from, to } => {
                let target = reg(registers, *to);
                if target >= 0 {
                    check(libc::syscall(
                        libc::SYS_move_mount,
                        reg(registers, *from),
                        c"".as_ptr(),
                        target,
                        c"".as_ptr(),
                        MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
                    ))?;
                }
                close_reg(registers, *from);
                close_reg(registers, *to);
            }
            Step::Mask {
                target,
                dir_source,
                file_source,
            } => {
                let fd = reg(registers, *target);
                if fd >= 0 {
                    let mut st: libc::stat = std::mem::zeroed();
                    check(libc::fstat(fd, &mut st))?;
                    let source = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                        *dir_source
                    } else {
                        *file_source
                    };
                    check(libc::syscall(
                        libc::SYS_move_mount,
                        reg(registers, source),
                        c"".as_ptr(),
                        fd,
                        c"".as_ptr(),
                        MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
                    ))?;
                }
                close_reg(registers, *target);
                close_reg(registers, *dir_source);
                close_reg(registers, *file_source);
            }
            Step::Symlink { dir, name, target } => {
                check(libc::symlinkat(
                    target.as_ptr(),
                    reg(registers, *dir),
                    name.as_ptr(),
                ))?;
            }
            Step::Close(r) => close_reg(registers, *r),
            Step::HideCallerIdentity {
                arg_start,
                arg_len,
                name,
            } => {
                // SAFETY (beyond the block's): the range is this process's
                // own copy of the argument area at the top of its initial
                // stack, as the kernel reports it; nothing in this process
                // reads it again.
                if *arg_start != 0 {
                    std::ptr::write_bytes(*arg_start as *mut u8, 0, *arg_len);
                }
                check(libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0))?;
            }
            Step::PivotRoot { root } => {
                check(libc::fchdir(reg(registers, *root)))?;
                check(libc::syscall(
                    libc::SYS_pivot_root,
                    c".".as_ptr(),
                    c".".as_ptr(),
                ))?;
                check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
                check(libc::chdir(c"/".as_ptr()))?;
                close_reg(registers, *root);
            }
            Step::RootReadOnly => {
                check(mount_setattr(libc::AT_FDCWD, c"/", 0, MOUNT_ATTR_RDONLY))?;
            }
            Step::SetHostname(name) => {
                check(libc::sethostname(name.as_ptr(), name.as_bytes().len()))?;
            }
            Step::LoopbackUp => {
                let sock = check(libc::socket(
                    libc::AF_INET,
                    libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                    0,
                ))? as c_int;
                let mut req: libc::ifreq = std::mem::zeroed();
                req.ifr_name[0] = b'l' as c_char;
                req.ifr_name[1] = b'o' as c_char;
                let result =
                    check(libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req)).and_then(|_| {
                        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                        check(libc::ioctl(sock, libc::SIOCSIFFLAGS, &req))
                    });
                libc::close(sock);
                result?;
            }
            Step::NftBatch { bytes, acks } => {
                let fd = check(libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::NETLINK_NETFILTER,
                ))? as c_int;
                let sent = sandbox_net::send_nft_batch(fd, bytes, *acks);
                libc::close(fd);
                sent.map_err(|(_, e)| e)?;
            }
            Step::CreateTap { name, index, out } => {
                let tun = check(libc::open(
                    c"/dev/net/tun".as_ptr(),
                    libc::O_RDWR | libc::O_CLOEXEC,
                ))? as c_int;
                set_reg(registers, *out, i64::from(tun));
                let mut request: libc::ifreq = std::mem::zeroed();
                for (slot, byte) in request.ifr_name.iter_mut().zip(name.as_bytes()) {
                    *slot = *byte as c_char;
                }
                request.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
                check(libc::ioctl(tun, libc::TUNSETIFF as _, &mut request))?;
                check(libc::ioctl(tun, libc::SIOCGIFINDEX as _, &mut request)).or_else(|_| {
                    // SIOCGIFINDEX wants a socket on some kernels.
                    let sock = check(libc::socket(
                        libc::AF_INET,
                        libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                        0,
                    ))? as c_int;
                    let r = check(libc::ioctl(sock, libc::SIOCGIFINDEX as _, &mut request));
                    libc::close(sock);
                    r
                })?;
                if request.ifr_ifru.ifru_ifindex != *index {
                    return Err(libc::ENXIO);
                }
            }
            Step::Netlink { bytes, count } => {
                let fd = check(libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::NETLINK_ROUTE,
                ))? as c_int;
                let sent = sandbox_net::send_prebuilt(
                    std::os::fd::BorrowedFd::borrow_raw(fd),
                    bytes,
                    *count,
                );
                libc::close(fd);
                sent.map_err(|(_, e)| e)?;
            }
            Step::SendFd {
                socket,
                reg: r,
                buffer,
            } => {
                let fd = reg(registers, *r);
                let mut buffer = buffer.try_borrow_mut().map_err(|_| libc::EBUSY)?;
                buffer.send_raw(*socket, fd)?;
            }
            Step::DropBoundingAndAmbient => {
                for cap in 0..64 {
                    if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 {
                        if errno() == libc::EINVAL {
                            break;
                        }
                        return Err(errno());
                    }
                }
                check(libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_CLEAR_ALL,
                    0,
                    0,
                    0,
                ))?;
                // SECBIT_NOROOT, SECBIT_NO_CAP_AMBIENT_RAISE and
                // SECBIT_KEEP_CAPS_LOCKED, each locked: exec as uid 0
                // grants nothing, ever again.
                const SECURE_BITS: libc::c_ulong =
                    (1 << 0) | (1 << 1) | (1 << 5) | (1 << 6) | (1 << 7);
                check(libc::prctl(libc::PR_SET_SECUREBITS, SECURE_BITS, 0, 0, 0))?;
            }
            Step::ClearGroups => {
                check(libc::syscall(
                    libc::SYS_setgroups,
                    0,
                    std::ptr::null::<libc::gid_t>(),
                ))?;
            }
            Step::SetGid(gid) => {
                check(libc::syscall(libc::SYS_setresgid, *gid, *gid, *gid))?;
            }
            Step::SetUid(uid) => {
                check(libc::syscall(libc::SYS_setresuid, *uid, *uid, *uid))?;
            }
            Step::ClearCapabilities => {
                #[repr(C)]
                struct Header {
                    version: u32,
                    pid: c_int,
                }
                #[repr(C)]
                struct Data {
                    effective: u32,
                    permitted: u32,
                    inheritable: u32,
                }
                let header = Header {
                    version: 0x2008_0522,
                    pid: 0,
                };
                let data = [
                    Data {
                        effective: 0,
                        permitted: 0,
                        inheritable: 0,
                    },
                    Data {
                        effective: 0,
                        permitted: 0,
                        inheritable: 0,
                    },
                ];
                check(libc::syscall(
                    libc::SYS_capset,
                    &header as *const Header,
                    data.as_ptr(),
                ))?;
            }
            Step::NoNewPrivs => {
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            }
            Step::ResetSignals => {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                check(libc::syscall(
                    libc::SYS_rt_sigprocmask,
                    libc::SIG_SETMASK,
                    &set as *const libc::sigset_t,
                    std::ptr::null_mut::<libc::sigset_t>(),
                    8usize,
                ))?;
                // The kernel's struct sigaction (x86-64 and aarch64 layout):
                // handler, flags, restorer, mask.
                #[repr(C)]
                struct KernelSigaction {
                    handler: usize,
                    flags: libc::c_ulong,
                    restorer: usize,
                    mask: u64,
                }
                let default = KernelSigaction {
                    handler: libc::SIG_DFL,
                    flags: 0,
                    restorer: 0,
                    mask: 0,
                };
                for sig in 1..=64 {
                    if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                        continue;
                    }
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        sig,
                        &default as *const KernelSigaction,
                        std::ptr::null_mut::<KernelSigaction>(),
                        8usize,
                    );
                }
            }
            Step::NewSession => {
                check(libc::setsid())?;
            }
            Step::Stdio(fds) => {
                for (target, &fd) in fds.iter().enumerate() {
                    if fd != NO_FD {
                        check(libc::dup2(fd, target as c_int))?;
                    }
                }
            }
            Step::CloseOnExecAbove2 => {
                const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
                check(libc::syscall(
                    libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    CLOSE_RANGE_CLOEXEC,
                ))?;
            }
            Step::Chdir(path) => {
                check(libc::chdir(path.as_ptr()))?;
            }
            Step::Rlimit {
                resource,
                soft,
                hard,
            } => {
                let limit = libc::rlimit {
                    rlim_cur: *soft,
                    rlim_max: *hard,
                };
                check(libc::setrlimit(*resource, &limit))?;
            }
            Step::Landlock {
                handled,
                attr_size,
                rules,
            } => {
                let ruleset = check(libc::syscall(
                    libc::SYS_landlock_create_ruleset,
                    handled.as_ptr(),
                    *attr_size,
                    0u32,
                ))? as c_int;
                let result = (|| {
                    for (path, access) in rules {
                        let fd = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
                        if fd < 0 {
                            if errno() == libc::ENOENT {
                                continue;
                            }
                            return Err(errno());
                        }
                        let rule = LandlockPathBeneath {
                            allowed_access: *access,
                            parent_fd: fd,
                        };
                        const LANDLOCK_RULE_PATH_BENEATH: c_int = 1;
                        let added = libc::syscall(
                            libc::SYS_landlock_add_rule,
                            ruleset,
                            LANDLOCK_RULE_PATH_BENEATH,
                            &rule as *const LandlockPathBeneath,
                            0u32,
                        );
                        let e = errno();
                        libc::close(fd);
                        if added < 0 {
                            return Err(e);
                        }
                    }
                    check(libc::syscall(
                        libc::SYS_landlock_restrict_self,
                        ruleset,
                        0u32,
                    ))
                })();
                libc::close(ruleset);
                result?;
            }
            Step::Seccomp { filters, .. } => {
                for filter in filters {
                    let program = libc::sock_fprog {
                        len: filter.len,
                        filter: filter.instructions as *mut libc::sock_filter,
                    };
                    const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
                    check(libc::syscall(
                        libc::SYS_seccomp,
                        SECCOMP_SET_MODE_FILTER,
                        0u32,
                        &program as *const libc::sock_fprog,
                    ))?;
                }
            }
            Step::Exec {
                candidates,
                argv,
                envp,
            } => {
                let mut result = libc::ENOENT;
                for path in candidates {
                    libc::execve(
                        path.as_ptr(),
                        argv.pointers.as_ptr(),
                        envp.pointers.as_ptr(),
                    );
                    match errno() {
                        libc::ENOENT | libc::ENOTDIR => {}
                        libc::EACCES => result = libc::EACCES,
                        other => return Err(other),
                    }
                }
                return Err(result);
            }
        }
    }
    Ok(())
}
