//! A short-lived child that runs a list of steps and exits: the host
//! probe's trial (does this host let us make the namespaces a run makes?)
//! and the rootless egress namespace.

use std::cell::Cell;
use std::ffi::c_int;
use std::os::fd::{AsRawFd, OwnedFd};

use rustix::io::Errno;

use crate::exec::run_step;
use crate::record::{RECORD_LEN, RECORD_STEP_FAILED, decode_record, write_record};
use crate::spawn::{exit, raw_clone};
use crate::step::{NO_FD, Step};

/// Why a trial failed: the index of the failing step and its errno.
/// `step` is `usize::MAX` when the child itself failed (the clone, or it
/// died without a report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepFailure {
    /// The index of the failing step in the list given to
    /// [`Trial::start`], or `usize::MAX`.
    pub step: usize,
    /// Its errno.
    pub errno: Errno,
}

impl StepFailure {
    fn of_child(errno: Errno) -> Self {
        Self {
            step: usize::MAX,
            errno,
        }
    }
}

/// A child running a list of steps; [`Trial::finish`] waits for it.
#[derive(Debug)]
pub struct Trial {
    pid: libc::pid_t,
    read_end: OwnedFd,
}

impl Trial {
    /// Clones a child with `clone_flags` (`CLONE_NEW*`, or 0) that runs
    /// `steps` with `registers` fd registers, reports the first failing
    /// step and exits; returns at once, so that the caller can work with
    /// the child meanwhile (write its id maps, receive its fds).
    ///
    /// # Errors
    ///
    /// The pipe's or the clone's errno.
    pub fn start(
        clone_flags: c_int,
        steps: &[Step],
        registers: usize,
    ) -> Result<Self, StepFailure> {
        let (read_end, write_end) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(StepFailure::of_child)?;
        let cells: Vec<Cell<c_int>> = (0..registers).map(|_| Cell::new(NO_FD)).collect();
        let flags = (clone_flags as u32 as u64) | libc::SIGCHLD as u64;
        let pid = raw_clone(flags, std::ptr::null_mut());
        if pid < 0 {
            return Err(StepFailure::of_child(crate::last_errno()));
        }
        if pid == 0 {
            let report = write_end.as_raw_fd();
            for (index, step) in steps.iter().enumerate() {
                if let Err(errno) = run_step(step, &cells) {
                    write_record(report, RECORD_STEP_FAILED, index as u32, errno);
                    exit(1);
                }
            }
            exit(0);
        }
        drop(write_end);
        Ok(Self {
            pid: pid as libc::pid_t,
            read_end,
        })
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the child; its first failing step, if any.
    ///
    /// # Errors
    ///
    /// The failing step and its errno; `step` `usize::MAX` if the child
    /// died without a report or could not be waited for.
    pub fn finish(self) -> Result<(), StepFailure> {
        let mut status = 0;
        // SAFETY: waitpid(2) on our own child, with a live local for the
        // status.
        while unsafe { libc::waitpid(self.pid, &mut status, 0) } < 0 {
            let errno = crate::last_errno();
            if errno != Errno::INTR {
                return Err(StepFailure::of_child(errno));
            }
        }
        let mut record = [0u8; RECORD_LEN];
        if rustix::io::read(&self.read_end, &mut record).unwrap_or(0) == RECORD_LEN {
            let (kind, index, errno) = decode_record(&record);
            if kind == RECORD_STEP_FAILED {
                return Err(StepFailure {
                    step: index as usize,
                    errno: Errno::from_raw_os_error(errno),
                });
            }
        }
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            Ok(())
        } else {
            Err(StepFailure::of_child(Errno::CHILD))
        }
    }
}
