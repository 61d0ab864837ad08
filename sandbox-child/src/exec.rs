//! The executor: one [`Step`] at a time, through rustix wherever rustix
//! wraps the call (it allocates nothing for `&CStr` paths and stack
//! buffers), with `unsafe` only for what it does not: `close_range`,
//! Landlock, seccomp, `execve`, the signal dispositions, the argument
//! area, and the tap's `TUNSETIFF` (in `net.rs`) and `mount_setattr` (in
//! `mounts.rs`). Each `unsafe` block states its own invariant.

use std::ffi::{CStr, CString, c_int};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::thread::{CapabilitiesSecureBits, CapabilitySet, CapabilitySets, UnshareFlags};

use crate::mounts::{self, Resolve};
use crate::net;
use crate::registers::Registers;
use crate::step::{CStringArray, NO_FD, RawFilter, Step};

/// An fd the child inherited from the parent (a pipe end, the egress
/// socket, a stdio fd), by its number in the child's table.
pub(crate) fn inherited(fd: c_int) -> Result<BorrowedFd<'static>, Errno> {
    if fd < 0 {
        return Err(Errno::BADF);
    }
    // SAFETY: the parent put this number in the plan for an fd it owns
    // and keeps open until the child has exec'd or exited; the clone
    // copied the fd table, so in the child the number names that open
    // file until a step closes it — and the steps that close fds
    // (`CloseFdsExcept`, `CloseOnExecAbove2`, PID 1 after the fork) come
    // after every step that names a closed one (the plan's order).
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// `close_range(first, last, flags)`: not in rustix.
fn close_range(first: u32, last: u32, flags: u32) -> Result<(), Errno> {
    // SAFETY: close_range(2) takes three integers. Closing fds cannot
    // break memory safety by itself; the I/O-safety risk (an `OwnedFd`
    // whose number was closed under it) is excluded by the plan: the
    // child's registers are empty when `CloseFdsExcept` runs (it is PID
    // 1's first step), and `CLOSE_RANGE_CLOEXEC` closes nothing.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    if ret < 0 {
        Err(crate::last_errno())
    } else {
        Ok(())
    }
}

/// `close_range` over every fd from 3 up except `keep` (sorted, ≥ 3).
fn close_fds_except(keep: &[c_int]) -> Result<(), Errno> {
    let mut low: u32 = 3;
    for &fd in keep {
        let fd = u32::try_from(fd).map_err(|_| Errno::BADF)?;
        if fd > low {
            close_range(low, fd - 1, 0)?;
        }
        low = fd.saturating_add(1);
    }
    close_range(low, u32::MAX, 0)
}

/// Blocks until the parent writes one byte on `fd`; `ECANCELED` at EOF
/// (the parent died or gave up).
fn wait_for_parent(fd: c_int) -> Result<(), Errno> {
    let fd = inherited(fd)?;
    let mut byte = [0u8; 1];
    loop {
        match rustix::io::read(fd, &mut byte) {
            Ok(1) => return Ok(()),
            Err(Errno::INTR) => {}
            _ => return Err(Errno::CANCELED),
        }
    }
}

/// `ECANCELED` if the parent has closed its end of `fd`.
fn check_parent_alive(fd: c_int) -> Result<(), Errno> {
    use rustix::event::{PollFd, PollFlags, poll};
    let fd = inherited(fd)?;
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    poll(&mut fds, Some(&rustix::event::Timespec::default()))?;
    if fds[0].revents().contains(PollFlags::HUP) {
        return Err(Errno::CANCELED);
    }
    Ok(())
}

/// `unshare(flags)`.
fn unshare(flags: UnshareFlags) -> Result<(), Errno> {
    // SAFETY: `unshare_unsafe` is unsafe because `CLONE_FILES` would leave
    // other threads' fds unusable here; the child is single-threaded (a
    // clone without `CLONE_THREAD` copies only the calling thread).
    unsafe { rustix::thread::unshare_unsafe(flags) }
}

/// Zeroes this process's argument area and names it.
fn hide_caller_identity(arg_start: usize, arg_len: usize, name: &CStr) -> Result<(), Errno> {
    if arg_start != 0 {
        // SAFETY: `arg_start..arg_start + arg_len` is this process's own
        // copy of the argument strings at the top of its initial stack, as
        // the kernel reported it for the parent (`/proc/self/stat` fields
        // `arg_start`, `arg_end`) and the clone copied: mapped, writable,
        // and read by nothing in this process again (std's `args()` was
        // copied at start-up, and the child never calls it).
        unsafe { std::ptr::write_bytes(arg_start as *mut u8, 0, arg_len) };
    }
    rustix::thread::set_name(name)
}

/// Empties the bounding and ambient sets and locks the securebits.
fn drop_bounding_and_ambient() -> Result<(), Errno> {
    for cap in 0..64 {
        match rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(
            1 << cap,
        )) {
            Ok(()) => {}
            // Past the last capability this kernel knows.
            Err(Errno::INVAL) => break,
            Err(e) => return Err(e),
        }
    }
    rustix::thread::clear_ambient_capability_set()?;
    // Each locked: exec as uid 0 grants nothing, ever again.
    rustix::thread::set_capabilities_secure_bits(
        CapabilitiesSecureBits::NO_ROOT
            | CapabilitiesSecureBits::NO_ROOT_LOCKED
            | CapabilitiesSecureBits::KEEP_CAPS_LOCKED
            | CapabilitiesSecureBits::NO_CAP_AMBIENT_RAISE
            | CapabilitiesSecureBits::NO_CAP_AMBIENT_RAISE_LOCKED,
    )
}

fn set_gid(gid: u32) -> Result<(), Errno> {
    if gid == u32::MAX {
        return Err(Errno::INVAL);
    }
    let gid = rustix::process::Gid::from_raw_unchecked(gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid)
}

fn set_uid(uid: u32) -> Result<(), Errno> {
    if uid == u32::MAX {
        return Err(Errno::INVAL);
    }
    let uid = rustix::process::Uid::from_raw_unchecked(uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid)
}

fn clear_capabilities() -> Result<(), Errno> {
    let none = CapabilitySet::empty();
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: none,
            permitted: none,
            inheritable: none,
        },
    )
}

/// Unblocks every signal and resets every disposition to the default.
fn reset_signals() -> Result<(), Errno> {
    // SAFETY: sigemptyset initialises the local set; sigprocmask reads it
    // (libc's `sigset_t`, libc's layout). sigaction reads a live local
    // `struct sigaction` of libc's type (glibc converts it to the
    // kernel's), whose handler is SIG_DFL: no code of ours is installed.
    // Signals glibc reserves for itself (32, 33) are refused by glibc
    // with EINVAL and ignored here: exec resets their handlers anyway.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        if libc::sigprocmask(libc::SIG_SETMASK, &raw const set, std::ptr::null_mut()) < 0 {
            return Err(crate::last_errno());
        }
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &raw const default, std::ptr::null_mut());
            }
        }
    }
    Ok(())
}

fn stdio(fds: [c_int; 3]) -> Result<(), Errno> {
    let [stdin, stdout, stderr] = fds;
    if stdin != NO_FD {
        rustix::stdio::dup2_stdin(inherited(stdin)?)?;
    }
    if stdout != NO_FD {
        rustix::stdio::dup2_stdout(inherited(stdout)?)?;
    }
    if stderr != NO_FD {
        rustix::stdio::dup2_stderr(inherited(stderr)?)?;
    }
    Ok(())
}

/// A new pty from `/dev/ptmx` (the sandbox's own devpts once the root is
/// built): its master and its peer, sized `rows` × `cols`.
fn open_pty(rows: u16, cols: u16) -> Result<(OwnedFd, OwnedFd), Errno> {
    use rustix::pty::OpenptFlags;
    let master = rustix::fs::open(
        c"/dev/ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::pty::unlockpt(&master)?;
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&master, size)?;
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    )?;
    Ok((master, slave))
}

/// The terminal `tty` (the session's) as stdin, stdout and stderr, with
/// this process's group in the foreground.
fn terminal_stdio(tty: BorrowedFd<'_>) -> Result<(), Errno> {
    rustix::stdio::dup2_stdin(tty)?;
    rustix::stdio::dup2_stdout(tty)?;
    rustix::stdio::dup2_stderr(tty)?;
    // A background group calling tcsetpgrp gets SIGTTOU: ignored for the
    // call (the ResetSignals step after restores the default).
    // SAFETY: sigaction reads a live local `struct sigaction` of libc's
    // type whose handler is SIG_IGN: no code of ours is installed.
    unsafe {
        let mut ignore: libc::sigaction = std::mem::zeroed();
        ignore.sa_sigaction = libc::SIG_IGN;
        libc::sigaction(libc::SIGTTOU, &raw const ignore, std::ptr::null_mut());
    }
    rustix::termios::tcsetpgrp(tty, rustix::process::getpid())
}

/// `struct landlock_path_beneath_attr` (packed, as in the kernel's uapi).
#[repr(C, packed)]
struct LandlockPathBeneath {
    allowed_access: u64,
    parent_fd: i32,
}

/// `landlock_create_ruleset`, one path-beneath rule per existing path,
/// `landlock_restrict_self`.
fn landlock(handled: &[u64; 3], attr_size: usize, rules: &[(CString, u64)]) -> Result<(), Errno> {
    if attr_size > size_of_val(handled) {
        return Err(Errno::INVAL);
    }
    // SAFETY: landlock_create_ruleset(2) reads `attr_size` bytes of the
    // ruleset attribute, which `handled` holds (three u64s laid out as
    // `struct landlock_ruleset_attr`'s fields in order; `attr_size` is
    // checked above to be within it). It returns a new fd, owned below.
    let ruleset = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            handled.as_ptr(),
            attr_size,
            0u32,
        )
    };
    let ruleset = owned_fd(ruleset)?;
    for (path, access) in rules {
        let dir = match rustix::fs::open(
            path.as_c_str(),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(dir) => dir,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e),
        };
        let rule = LandlockPathBeneath {
            allowed_access: *access,
            parent_fd: dir.as_raw_fd(),
        };
        const LANDLOCK_RULE_PATH_BENEATH: c_int = 1;
        // SAFETY: landlock_add_rule(2) reads one packed
        // `struct landlock_path_beneath_attr` from a live local; both fds
        // are open (owned here) for the call.
        let added = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                ruleset.as_raw_fd(),
                LANDLOCK_RULE_PATH_BENEATH,
                &raw const rule,
                0u32,
            )
        };
        if added < 0 {
            return Err(crate::last_errno());
        }
    }
    // SAFETY: landlock_restrict_self(2) takes an open ruleset fd and flags.
    let ret = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) };
    if ret < 0 {
        return Err(crate::last_errno());
    }
    Ok(())
}

/// A syscall's new fd, owned.
fn owned_fd(ret: libc::c_long) -> Result<OwnedFd, Errno> {
    if ret < 0 {
        return Err(crate::last_errno());
    }
    let fd = c_int::try_from(ret).map_err(|_| Errno::BADF)?;
    // SAFETY: the syscall just returned this fd, new and owned by nobody.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// `seccomp(SECCOMP_SET_MODE_FILTER)` per program.
/// Installs `filters` on the calling thread, in order
/// (`seccomp(SECCOMP_SET_MODE_FILTER)`); the thread must have
/// `no_new_privs` set or hold `CAP_SYS_ADMIN`.
///
/// # Errors
///
/// The kernel's errno for the first filter it refused.
pub fn install_filters(filters: &[RawFilter]) -> Result<(), Errno> {
    for filter in filters {
        let program = libc::sock_fprog {
            len: filter.len,
            filter: filter.instructions as *mut libc::sock_filter,
        };
        const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
        // SAFETY: seccomp(2) copies `len` `struct sock_filter`s from
        // `filter.instructions`, which point into a program the step's
        // `_owner` keeps alive for as long as the plan (see
        // `Step::Seccomp`); `program` is a live local. The kernel copies
        // the program: nothing is read after the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                0u32,
                &raw const program,
            )
        };
        if ret < 0 {
            return Err(crate::last_errno());
        }
    }
    Ok(())
}

/// `execve` of each candidate in turn; the errno that best says why none
/// ran.
fn exec(candidates: &[CString], argv: &CStringArray, envp: &CStringArray) -> Errno {
    let mut result = Errno::NOENT;
    for path in candidates {
        // SAFETY: execve(2) reads a NUL-terminated path and two
        // NULL-terminated arrays of pointers to NUL-terminated strings,
        // all owned by the plan (`CStringArray` keeps its strings alive
        // and never changes them). It returns only on failure.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        match crate::last_errno() {
            Errno::NOENT | Errno::NOTDIR => {}
            Errno::ACCESS => result = Errno::ACCESS,
            other => return other,
        }
    }
    result
}

/// `open(path, O_WRONLY)`, write `contents` whole.
fn write_setting(path: &CStr, contents: &[u8]) -> Result<(), Errno> {
    let fd = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    mounts::write_all(&fd, contents)
}

/// Writes `0` to an inherited cgroup v1 `tasks` file: the calling thread
/// moves itself into that cgroup.
fn join_cgroup(fd: c_int) -> Result<(), Errno> {
    loop {
        match rustix::io::write(inherited(fd)?, b"0") {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Runs one step. The match only dispatches: each arm is one call with
/// the step's own arguments, so it grows by a line or two per step kind
/// (its length, over the ~80 lines a function gets here, is that list).
pub(crate) fn run_step(step: &Step, registers: &mut Registers) -> Result<(), Errno> {
    use rustix::process as p;
    match step {
        Step::CloseFdsExcept(keep) => close_fds_except(keep),
        Step::ParentDeathSignal => {
            p::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        }
        Step::WaitForParent(fd) => wait_for_parent(*fd),
        Step::CheckParentAlive(fd) => check_parent_alive(*fd),
        Step::JoinCgroup(fd) => join_cgroup(*fd),
        Step::UnshareCgroup => unshare(UnshareFlags::NEWCGROUP),
        Step::Unshare(flags) => unshare(UnshareFlags::from_bits_retain(*flags as u32)),
        Step::Mount {
            source,
            target,
            fstype,
            flags,
        } => mounts::old_mount(source, target, fstype.as_ref(), *flags),
        Step::OpenFile { path, flags, out } => {
            let flags = OFlags::from_bits_retain(*flags as u32) | OFlags::CLOEXEC;
            registers.put(
                *out,
                rustix::fs::open(path.as_c_str(), flags, Mode::empty())?,
            )
        }
        Step::MakeMountsPrivate => mounts::make_private(),
        Step::OpenTree {
            path,
            recursive,
            out,
        } => registers.put(*out, mounts::open_tree(path, *recursive)?),
        Step::OpenDir { path, out } => registers.put(*out, mounts::open_dir(path)?),
        Step::SetMountAttrs {
            mount,
            set,
            recursive,
        } => mounts::set_attrs(registers.get(*mount)?, *set, *recursive),
        Step::NewFilesystem {
            fstype,
            options,
            attrs,
            out,
        } => registers.put(*out, mounts::new_filesystem(fstype, options, *attrs)?),
        Step::AttachAt { mount, path } => mounts::attach_at(registers.get(*mount)?, path),
        Step::RecvMount { socket, path } => net::recv_mount(inherited(*socket)?, path),
        Step::NewOverlay {
            lowers,
            upper,
            work,
            attrs,
            out,
        } => {
            use std::os::fd::AsRawFd;
            let raw = |r: crate::Reg| registers.get(r).map(|fd| fd.as_raw_fd());
            let fs = mounts::new_overlay(
                lowers.iter().map(|&r| raw(r)),
                raw(*upper)?,
                raw(*work)?,
                *attrs,
            )?;
            registers.put(*out, fs)
        }
        Step::Resolve {
            base,
            components,
            kind,
            create,
            optional,
            out,
        } => {
            let how = Resolve {
                kind: *kind,
                create: *create,
                optional: *optional,
            };
            match mounts::resolve(registers.get(*base)?, components, how)? {
                Some(fd) => registers.put(*out, fd),
                None => {
                    registers.close(*out);
                    Ok(())
                }
            }
        }
        Step::MoveMount { from, to } => mounts::move_mount(registers, *from, *to),
        Step::Mask {
            target,
            dir_source,
            file_source,
        } => mounts::mask(registers, *target, *dir_source, *file_source),
        Step::Symlink { dir, name, target } => mounts::symlink(registers.get(*dir)?, name, target),
        Step::WriteFile {
            dir,
            name,
            contents,
        } => mounts::write_file(registers.get(*dir)?, name, contents),
        Step::OpenTreeAt { dir, name, out } => {
            let tree = mounts::open_tree_at(registers.get(*dir)?, name)?;
            registers.put(*out, tree)
        }
        Step::WriteSetting { path, contents } => write_setting(path, contents),
        Step::Unlink { dir, name } => mounts::unlink(registers.get(*dir)?, name),
        Step::Chmod { reg, mode } => mounts::chmod(registers.get(*reg)?, *mode),
        Step::Chown { reg, uid, gid } => mounts::chown(registers.get(*reg)?, *uid, *gid),
        Step::CopyTree { from, to, uid, gid } => {
            crate::copy::copy_tree(registers.get(*from)?, registers.get(*to)?, (*uid, *gid))
        }
        Step::SetXattr { path, name, value } => rustix::fs::lsetxattr(
            path.as_c_str(),
            name.as_c_str(),
            value,
            rustix::fs::XattrFlags::empty(),
        ),
        Step::RemoveDir { dir, name } => rustix::fs::unlinkat(
            registers.get(*dir)?,
            name.as_c_str(),
            rustix::fs::AtFlags::REMOVEDIR,
        ),
        Step::Unmount { path } => {
            rustix::mount::unmount(path.as_c_str(), rustix::mount::UnmountFlags::DETACH)
        }
        Step::Close(r) => {
            registers.close(*r);
            Ok(())
        }
        Step::HideCallerIdentity {
            arg_start,
            arg_len,
            name,
        } => hide_caller_identity(*arg_start, *arg_len, name),
        Step::PivotRoot { root } => {
            mounts::pivot_root(registers.get(*root)?)?;
            registers.close(*root);
            Ok(())
        }
        Step::RootReadOnly => mounts::root_read_only(),
        Step::SetHostname(name) => rustix::system::sethostname(name.as_bytes()),
        Step::LoopbackUp => net::loopback_up(),
        Step::NftBatch { bytes, acks } => net::nft_batch(bytes, *acks),
        Step::CreateTap { name, index, out } => registers.put(*out, net::create_tap(name, *index)?),
        Step::Netlink { bytes, count } => net::rtnetlink(bytes, *count),
        Step::OpenNetfilter { out } => registers.put(
            *out,
            net::netlink_socket(Some(rustix::net::netlink::NETFILTER))?,
        ),
        Step::SendFd { socket, reg } => net::send_fd(inherited(*socket)?, registers.get(*reg)?),
        Step::DropBoundingAndAmbient => drop_bounding_and_ambient(),
        Step::ClearGroups => rustix::thread::set_thread_groups(&[]),
        Step::SetGid(gid) => set_gid(*gid),
        Step::SetUid(uid) => set_uid(*uid),
        Step::ClearCapabilities => clear_capabilities(),
        Step::NoNewPrivs => rustix::thread::set_no_new_privs(true),
        Step::ResetSignals => reset_signals(),
        Step::NewSession => p::setsid().map(drop),
        Step::NewProcessGroup => p::setpgid(None, None),
        Step::ControllingTerminal(reg) => p::ioctl_tiocsctty(registers.get(*reg)?),
        Step::Stdio(fds) => stdio(*fds),
        Step::OpenPty {
            master,
            slave,
            rows,
            cols,
        } => {
            let (m, s) = open_pty(*rows, *cols)?;
            registers.put(*master, m)?;
            registers.put(*slave, s)
        }
        Step::TerminalStdio(reg) => {
            terminal_stdio(registers.get(*reg)?)?;
            registers.close(*reg);
            Ok(())
        }
        Step::CloseOnExecAbove2 => {
            const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
            close_range(3, u32::MAX, CLOSE_RANGE_CLOEXEC)
        }
        Step::Chdir(path) => p::chdir(path.as_c_str()),
        Step::Rlimit {
            resource,
            soft,
            hard,
        } => p::setrlimit(
            *resource,
            p::Rlimit {
                current: Some(*soft),
                maximum: Some(*hard),
            },
        ),
        Step::Landlock {
            handled,
            attr_size,
            rules,
        } => landlock(handled, *attr_size, rules),
        Step::Seccomp { filters, .. } => install_filters(filters),
        Step::Exec {
            candidates,
            argv,
            envp,
        } => Err(exec(candidates, argv, envp)),
        #[cfg(test)]
        Step::Panic => panic!("a test's panic"),
    }
}
