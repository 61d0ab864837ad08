//! A running sandbox, from `SandboxCommand::spawn`: kill it, wait for
//! it, or ask whether it has ended.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::outcome::RunOutcome;

/// A running sandbox, from [`SandboxCommand::spawn`](crate::SandboxCommand::spawn).
///
/// Dropping it without [`wait`](SandboxChild::wait) leaves the sandbox
/// running under its supervisor thread until it ends or times out.
#[derive(Debug)]
pub struct SandboxChild {
    pid: i32,
    /// Until a wait has collected the outcome (then the sandbox is gone).
    pidfd: Option<Arc<OwnedFd>>,
    /// The command's stdin, if it was [`Stdio::Piped`](crate::Stdio::Piped). Drop it to send
    /// EOF.
    pub stdin: Option<File>,
    handle: Option<JoinHandle<Result<RunOutcome>>>,
    /// The outcome, once a wait has collected it.
    outcome: Option<RunOutcome>,
}

impl SandboxChild {
    /// A started sandbox, supervised by the thread `handle`.
    pub(crate) fn new(
        pid: i32,
        pidfd: Arc<OwnedFd>,
        stdin: Option<File>,
        handle: JoinHandle<Result<RunOutcome>>,
    ) -> Self {
        Self {
            pid,
            pidfd: Some(pidfd),
            stdin,
            handle: Some(handle),
            outcome: None,
        }
    }

    /// The host pid of the sandbox's first process (PID 1 inside it).
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Kills the whole sandbox (`SIGKILL` to its PID 1, which takes its pid
    /// namespace with it). Killing one that has ended is not an error.
    ///
    /// # Errors
    ///
    /// [`Error::Supervise`] if the signal could not be sent.
    pub fn kill(&self) -> Result<()> {
        let Some(pidfd) = &self.pidfd else {
            return Ok(());
        };
        match rustix::process::pidfd_send_signal(&**pidfd, rustix::process::Signal::KILL) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(Error::supervise("kill the sandbox")(e)),
        }
    }

    /// Waits for the sandbox to end (closing its stdin first, if piped)
    /// and returns the outcome; again on later calls.
    ///
    /// # Errors
    ///
    /// [`Error::Supervise`] or [`Error::Supervisor`] if supervision failed
    /// (a later call then says the outcome is lost).
    pub fn wait(&mut self) -> Result<RunOutcome> {
        if let Some(outcome) = &self.outcome {
            return Ok(outcome.clone());
        }
        drop(self.stdin.take());
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(Ok(outcome))) => {
                self.pidfd = None;
                self.outcome = Some(outcome.clone());
                Ok(outcome)
            }
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(Error::Supervisor {
                what: "the supervisor thread panicked",
            }),
            None => Err(Error::Supervisor {
                what: "an earlier wait failed: the outcome is lost",
            }),
        }
    }

    /// The outcome if the sandbox has ended (and its output has been
    /// drained), without blocking; `None` while it runs.
    ///
    /// # Errors
    ///
    /// As [`wait`](SandboxChild::wait).
    pub fn try_wait(&mut self) -> Result<Option<RunOutcome>> {
        if self.outcome.is_none()
            && self
                .handle
                .as_ref()
                .is_some_and(|handle| !handle.is_finished())
        {
            return Ok(None);
        }
        self.wait().map(Some)
    }
}
