//! A short-lived child that runs a list of steps and exits: the host
//! probe's trial (does this host let us make the namespaces a run makes?)
//! and the rootless egress namespace.

use std::ffi::c_int;
use std::os::fd::{AsRawFd, OwnedFd};

use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitOptions};

use std::time::Duration;

use crate::progress::{Progress, Setup, read_record_within};
use crate::record::{RECORD_STEP_FAILED, RECORD_STEP_PANICKED};
use crate::registers::Registers;
use crate::spawn::{exit, raw_clone, run_steps_or_exit};
use crate::step::Step;

/// Why a trial failed: the index of the failing step and its errno.
/// `step` is `usize::MAX` when the child itself failed before any step
/// (the clone) or could not be waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepFailure {
    /// The index of the failing step in the list given to
    /// [`Trial::start`], or `usize::MAX`.
    pub step: usize,
    /// Its errno; `ETIMEDOUT` for a step still running at the deadline,
    /// `ENOTRECOVERABLE` for one that panicked, `ECHILD` for a child that
    /// died in it without a report (a signal).
    pub errno: Errno,
    /// The step panicked (a bug in this crate) and the child aborted.
    pub panicked: bool,
}

impl StepFailure {
    fn of_child(errno: Errno) -> Self {
        Self::at(usize::MAX, errno)
    }

    /// A step's failure with `errno`.
    pub fn at(step: usize, errno: Errno) -> Self {
        Self {
            step,
            errno,
            panicked: false,
        }
    }
}

/// A child running a list of steps; [`Trial::finish`] waits for it.
#[derive(Debug)]
pub struct Trial {
    pid: libc::pid_t,
    read_end: OwnedFd,
    progress: Progress,
    reaped: bool,
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
        let mut registers = Registers::new(registers);
        let progress = Progress::new().map_err(StepFailure::of_child)?;
        let flags = (clone_flags as u32 as u64) | libc::SIGCHLD as u64;
        let pid = raw_clone(flags, std::ptr::null_mut());
        if pid < 0 {
            return Err(StepFailure::of_child(crate::last_errno()));
        }
        if pid == 0 {
            run_steps_or_exit(
                steps,
                0,
                &mut registers,
                &progress,
                write_end.as_raw_fd(),
                1,
            );
            exit(0);
        }
        drop(write_end);
        Ok(Self {
            pid: pid as libc::pid_t,
            read_end,
            progress,
            reaped: false,
        })
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the child; its first failing step, if any. A child that
    /// has not finished within `timeout` is killed and reported as failing
    /// with `ETIMEDOUT` at the step it was in.
    ///
    /// # Errors
    ///
    /// The failing step and its errno; `step` `usize::MAX` if the child
    /// died without a report or could not be waited for.
    pub fn finish_within(mut self, timeout: Duration) -> Result<(), StepFailure> {
        // The pipe closes when the child exits (or reports and exits).
        let read = read_record_within(&self.read_end, timeout);
        if matches!(read, Ok(Setup::TimedOut)) {
            let step = self.progress.current().unwrap_or(usize::MAX);
            self.kill_and_reap();
            return Err(StepFailure::at(step, Errno::TIMEDOUT));
        }
        let status = self.reap().map_err(StepFailure::of_child)?;
        match read {
            Ok(Setup::Record(RECORD_STEP_FAILED, index, errno)) => Err(StepFailure::at(
                index as usize,
                Errno::from_raw_os_error(errno),
            )),
            Ok(Setup::Record(RECORD_STEP_PANICKED, index, _)) => Err(StepFailure {
                panicked: true,
                ..StepFailure::at(index as usize, Errno::NOTRECOVERABLE)
            }),
            Err(errno) => Err(StepFailure::of_child(errno)),
            _ if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 => Ok(()),
            _ => Err(StepFailure::at(
                self.progress.current().unwrap_or(usize::MAX),
                Errno::CHILD,
            )),
        }
    }

    /// [`finish_within`](Trial::finish_within) with a minute's patience:
    /// long enough for any working host (a trial takes milliseconds).
    ///
    /// # Errors
    ///
    /// As [`finish_within`](Trial::finish_within).
    pub fn finish(self) -> Result<(), StepFailure> {
        self.finish_within(Duration::from_secs(60))
    }

    fn reap(&mut self) -> Result<c_int, Errno> {
        let pid = Pid::from_raw(self.pid).ok_or(Errno::SRCH)?;
        loop {
            match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
                Ok(status) => {
                    self.reaped = true;
                    return Ok(status.map_or(0, |(_, status)| status.as_raw()));
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn kill_and_reap(&mut self) {
        // Our own child, not reaped yet: the pid is still ours.
        if let Some(pid) = Pid::from_raw(self.pid) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
        let _ = self.reap();
    }
}

impl Drop for Trial {
    /// A trial dropped unfinished is killed and reaped: no zombie, no
    /// stray child.
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_and_reap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step that panics aborts the child, which names the step: the
    /// parent gets a panic record for it, not a hang and not the next
    /// step. Control: the step before it ran (it failed first when made to).
    #[test]
    fn a_panicking_step_aborts_the_child_and_names_the_step() {
        let write = |contents: &[u8]| Step::WriteSetting {
            path: c"/proc/self/comm".to_owned(),
            contents: contents.to_vec(),
        };
        let steps = [write(b"panic-test"), Step::Panic, write(b"never")];
        let failure = Trial::start(0, &steps, 0)
            .and_then(|t| t.finish_within(Duration::from_secs(30)))
            .unwrap_err();
        assert_eq!(
            failure,
            StepFailure {
                step: 1,
                errno: Errno::NOTRECOVERABLE,
                panicked: true
            }
        );
        assert_eq!(steps[failure.step].name(), "Panic");
        let failing_first = [
            Step::WriteSetting {
                path: c"/nonexistent/file".to_owned(),
                contents: b"x".to_vec(),
            },
            Step::Panic,
        ];
        let failure = Trial::start(0, &failing_first, 0)
            .and_then(|t| t.finish_within(Duration::from_secs(30)))
            .unwrap_err();
        assert_eq!(failure, StepFailure::at(0, Errno::NOENT));
    }
}
