//! The raw syscalls rustix does not wrap, and the one place this crate uses
//! `fork`: trying a namespace setup in a throwaway child.
//!
//! This is the only module of the crate allowed to use `unsafe`.
#![allow(unsafe_code)]

pub(crate) mod child;
mod mounts;
mod steps;

use std::ffi::CStr;
use std::os::fd::AsRawFd;

use rustix::io::Errno;

pub(crate) fn last_errno() -> Errno {
    Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO)
}

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

/// One step of a child trial: a syscall with arguments prepared before the
/// fork, so that the child allocates nothing.
pub(crate) enum TrialStep<'a> {
    /// `unshare(flags)`.
    Unshare(libc::c_int),
    /// `open(path, O_WRONLY)`, `write(contents)`, `close`.
    WriteFile(&'a CStr, &'a [u8]),
    /// `mount(source, target, fstype, flags, NULL)`.
    Mount(&'a CStr, &'a CStr, Option<&'a CStr>, libc::c_ulong),
    /// Send the nf_tables batch `request` on a netlink socket of
    /// `protocol` and wait for its `acks` ACKs.
    NetlinkAck(libc::c_int, &'a [u8], u32),
}

/// The child side of [`TrialStep::NetlinkAck`]: an nf_tables batch sent
/// with `sandbox-net`'s allocation-free sender. Returns the errno on
/// failure.
fn netlink_ack(protocol: libc::c_int, request: &[u8], acks: u32) -> Result<(), libc::c_int> {
    // SAFETY: socket(2) and close(2) on our own fd.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        // SAFETY: reading errno.
        return Err(unsafe { *libc::__errno_location() });
    }
    let result = sandbox_net::send_nft_batch(fd, request, acks).map_err(|(_, e)| e);
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
    result
}

/// Why a child trial failed: the index of the failing step and its errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TrialFailure {
    pub(crate) step: usize,
    pub(crate) errno: Errno,
}

/// Forks a child that runs `steps` and exits; returns the first failing
/// step and its errno. The child only makes raw syscalls on buffers built
/// before the fork, so this is safe to call from a multithreaded process.
#[cfg(test)]
pub(crate) fn run_trial_in_child(steps: &[TrialStep<'_>]) -> Result<(), TrialFailure> {
    start_trial(steps)?.finish()
}

/// A trial child that is running; [`RunningTrial::finish`] waits for it.
#[derive(Debug)]
pub(crate) struct RunningTrial {
    pid: libc::pid_t,
    read_end: std::os::fd::OwnedFd,
}

/// Starts [`run_trial_in_child`]'s child and returns at once, so that the
/// caller can do other work while it runs.
pub(crate) fn start_trial(steps: &[TrialStep<'_>]) -> Result<RunningTrial, TrialFailure> {
    let fork_failed = |errno| TrialFailure {
        step: usize::MAX,
        errno,
    };
    let (read_end, write_end) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(fork_failed)?;
    // SAFETY: fork(2) in a possibly multithreaded process: the child below
    // calls only async-signal-safe syscalls (unshare, open, write, close,
    // mount, _exit) on memory prepared before the fork, and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(fork_failed(last_errno()));
    }
    if pid == 0 {
        drop(read_end);
        let report = |step: usize, errno: libc::c_int| -> ! {
            let record = [step as u32, errno as u32];
            // SAFETY: write(2) of 8 bytes from a live local array to our own
            // pipe fd, then _exit(2): both async-signal-safe.
            unsafe {
                libc::write(write_end.as_raw_fd(), record.as_ptr().cast(), 8);
                libc::_exit(1)
            }
        };
        for (i, step) in steps.iter().enumerate() {
            // SAFETY: each call passes NUL-terminated strings and byte slices
            // that live in the parent's (copied) memory for the whole child.
            let ok = unsafe {
                match step {
                    TrialStep::Unshare(flags) => libc::unshare(*flags) == 0,
                    TrialStep::WriteFile(path, contents) => {
                        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                        fd >= 0
                            && libc::write(fd, contents.as_ptr().cast(), contents.len())
                                == contents.len() as isize
                            && libc::close(fd) == 0
                    }
                    TrialStep::NetlinkAck(protocol, request, acks) => {
                        match netlink_ack(*protocol, request, *acks) {
                            Ok(()) => true,
                            Err(errno) => {
                                *libc::__errno_location() = errno;
                                false
                            }
                        }
                    }
                    TrialStep::Mount(source, target, fstype, flags) => {
                        libc::mount(
                            source.as_ptr(),
                            target.as_ptr(),
                            fstype.map_or(std::ptr::null(), |f| f.as_ptr()),
                            *flags,
                            std::ptr::null(),
                        ) == 0
                    }
                }
            };
            if !ok {
                // SAFETY: reading errno is async-signal-safe.
                report(i, unsafe { *libc::__errno_location() });
            }
        }
        // SAFETY: _exit(2) is async-signal-safe and does not return.
        unsafe { libc::_exit(0) }
    }
    drop(write_end);
    Ok(RunningTrial { pid, read_end })
}

impl RunningTrial {
    /// Waits for the trial child; its first failing step, if any.
    pub(crate) fn finish(self) -> Result<(), TrialFailure> {
        let RunningTrial { pid, read_end } = self;
        let fork_failed = |errno| TrialFailure {
            step: usize::MAX,
            errno,
        };
        let mut status = 0;
        // SAFETY: waitpid(2) on the child we just forked, with a live local for
        // the status.
        while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
            let errno = last_errno();
            if errno != Errno::INTR {
                return Err(fork_failed(errno));
            }
        }
        let mut record = [0u8; 8];
        let read = rustix::io::read(&read_end, &mut record).unwrap_or(0);
        if read == 8 {
            let step = u32::from_ne_bytes([record[0], record[1], record[2], record[3]]) as usize;
            let errno = i32::from_ne_bytes([record[4], record[5], record[6], record[7]]);
            return Err(TrialFailure {
                step,
                errno: Errno::from_raw_os_error(errno),
            });
        }
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            Ok(())
        } else {
            Err(TrialFailure {
                step: usize::MAX,
                errno: Errno::CHILD,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trial_reports_its_first_failing_step_and_errno() {
        let ok = c"/proc/self/comm";
        let missing = c"/nonexistent/file";
        let steps = [
            TrialStep::WriteFile(ok, b"probe-test"),
            TrialStep::WriteFile(missing, b"x"),
            TrialStep::WriteFile(ok, b"never"),
        ];
        assert_eq!(
            run_trial_in_child(&steps),
            Err(TrialFailure {
                step: 1,
                errno: Errno::NOENT
            })
        );
        assert_eq!(run_trial_in_child(&steps[..1]), Ok(()));
        assert_eq!(run_trial_in_child(&[]), Ok(()));
    }
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
