//! The raw syscalls rustix does not wrap here (the child's are in
//! `sandbox-child`): Landlock and seccomp availability, `wait4`, an exit
//! hook, and the cgroup placeholder process.
//!
//! This is the only module of the crate allowed to use `unsafe`.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

use rustix::io::Errno;

pub(crate) use sandbox_child::last_errno;

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`—The
/// Landlock ABI version the kernel offers.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/landlock_create_ruleset.2.html)
pub(crate) fn landlock_abi_version() -> Result<u32, Errno> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_long = 1;
    // SAFETY: with a NULL attribute pointer, size 0 and the VERSION flag the
    // kernel reads no memory and returns the ABI version (or an error); no
    // fd is created.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0 as libc::size_t,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if ret < 0 {
        Err(last_errno())
    } else {
        u32::try_from(ret).map_err(|_| Errno::OVERFLOW)
    }
}

/// `atexit(hook)`—`hook` runs when the process exits normally (`exit`, a
/// return from `main`), before the other threads are stopped.
pub(crate) fn at_exit(hook: extern "C" fn()) -> Result<(), Errno> {
    // SAFETY: atexit(3) stores a function pointer that lives as long as the
    // process (a plain `extern "C" fn`).
    if unsafe { libc::atexit(hook) } == 0 {
        Ok(())
    } else {
        Err(Errno::NOMEM)
    }
}

/// `seccomp(SECCOMP_GET_ACTION_AVAIL, 0, &SECCOMP_RET_ERRNO)`—Whether the
/// kernel supports seccomp filters returning an errno.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/seccomp.2.html)
pub(crate) fn seccomp_errno_action_available() -> Result<(), Errno> {
    const SECCOMP_GET_ACTION_AVAIL: libc::c_long = 2;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let action: u32 = SECCOMP_RET_ERRNO;
    // SAFETY: the kernel reads one u32 through the pointer, which points at
    // a live local for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        )
    };
    if ret < 0 { Err(last_errno()) } else { Ok(()) }
}

/// What `wait4(2)` reports of a reaped child and its reaped descendants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Usage {
    /// User plus system CPU time.
    pub(crate) cpu_time: std::time::Duration,
    /// The largest resident set of any one process, in bytes.
    pub(crate) max_rss: Option<u64>,
}

/// `wait4(pid, &status, 0, &rusage)`—Reaps our child `pid` (retrying on
/// `EINTR`) and returns its resource usage.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/wait4.2.html)
pub(crate) fn wait4(pid: i32) -> Result<Usage, Errno> {
    let mut status = 0;
    // SAFETY: rusage is plain data; zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4(2) with live locals for the status and the usage.
        let ret = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if ret >= 0 {
            break;
        }
        let errno = last_errno();
        if errno != Errno::INTR {
            return Err(errno);
        }
    }
    let tv = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec as u64)
            + std::time::Duration::from_micros(t.tv_usec as u64)
    };
    Ok(Usage {
        cpu_time: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss: u64::try_from(usage.ru_maxrss)
            .ok()
            .filter(|&kib| kib > 0)
            .map(|kib| kib * 1024),
    })
}

/// A child that does nothing but hold a cgroup alive: it sleeps in
/// `read(2)` on a pipe whose only write end the caller keeps (close-on-exec),
/// so it exits when the caller drops it or the caller's process ends (a
/// thread's death, unlike `PR_SET_PDEATHSIG`, does not end it).
#[derive(Debug)]
pub(crate) struct Placeholder {
    pid: libc::pid_t,
    write_end: Option<std::os::fd::OwnedFd>,
}

impl Placeholder {
    /// Forks the placeholder, in its own session (a terminal's ^C is not
    /// for it) with every inherited fd but its pipe closed.
    pub(crate) fn spawn() -> Result<Self, Errno> {
        let (read_end, write_end) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let read_fd = read_end.as_raw_fd();
        // SAFETY: fork(2) in a possibly multithreaded process: the child
        // calls only async-signal-safe syscalls (setsid, prctl, close_range,
        // read, _exit) on locals prepared before the fork, and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(last_errno());
        }
        if pid == 0 {
            // SAFETY: as above; `read_fd` is our pipe's read end, the one fd
            // kept open; the buffer is a live local.
            unsafe {
                libc::setsid();
                libc::prctl(libc::PR_SET_NAME, c"sandbox-scope".as_ptr(), 0, 0, 0);
                if read_fd > 0 {
                    libc::syscall(libc::SYS_close_range, 0u32, (read_fd - 1) as u32, 0u32);
                }
                libc::syscall(libc::SYS_close_range, (read_fd + 1) as u32, u32::MAX, 0u32);
                let mut byte = 0u8;
                loop {
                    let n = libc::read(read_fd, (&raw mut byte).cast(), 1);
                    if n >= 0 || *libc::__errno_location() != libc::EINTR {
                        libc::_exit(0);
                    }
                }
            }
        }
        drop(read_end);
        Ok(Self {
            pid,
            write_end: Some(write_end),
        })
    }

    /// Its pid.
    pub(crate) fn pid(&self) -> u32 {
        self.pid as u32
    }
}

impl Drop for Placeholder {
    fn drop(&mut self) {
        // Killed rather than sent EOF: a run's init forked meanwhile holds
        // a copy of the write end until that run ends, and waiting for
        // that would block here.
        drop(self.write_end.take());
        // SAFETY: kill(2) of our own child, which we have not reaped yet
        // (so the pid is still ours).
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: waitpid(2) on our own child, with a live local for the
        // status.
        while unsafe { libc::waitpid(self.pid, &mut status, 0) } < 0 && last_errno() == Errno::INTR
        {
        }
    }
}
