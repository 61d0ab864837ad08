//! A running sandbox, from `SandboxCommand::spawn`: kill it, wait for
//! it, or ask whether it has ended.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::RecvFlags;

use crate::error::{Error, Result};
use crate::outcome::RunOutcome;

/// A running sandbox, from [`SandboxCommand::spawn`](crate::SandboxCommand::spawn).
///
/// Dropping it without [`wait`](SandboxChild::wait) leaves the sandbox
/// running under the shared supervisor until it ends or times out.
#[derive(Debug)]
pub struct SandboxChild {
    pid: i32,
    /// Until a wait has collected the outcome (then the sandbox is gone).
    pidfd: Option<Arc<OwnedFd>>,
    /// The command's stdin, if it was [`Stdio::Piped`](crate::Stdio::Piped). Drop it to send
    /// EOF.
    pub stdin: Option<File>,
    /// The command's stdout as it comes, if it was
    /// [`Stdio::Piped`](crate::Stdio::Piped) (capped at `max_output_bytes`).
    /// Take it to read it yourself; what is left here when the sandbox
    /// ends goes into the outcome's `stdout`.
    pub stdout: Option<OutputReader>,
    /// The command's stderr, as [`stdout`](SandboxChild::stdout).
    pub stderr: Option<OutputReader>,
    /// Where the supervisor sends the outcome.
    outcome_rx: Option<Receiver<Result<RunOutcome>>>,
    /// The command's terminal's master, with `pty`.
    terminal: Option<Arc<OwnedFd>>,
    /// What `wait` and `try_wait` read from readers the caller left here.
    collected: [Vec<u8>; 2],
    /// The outcome, once a wait has collected it.
    outcome: Option<RunOutcome>,
}

/// What the supervisor hands over once the command has exec'd.
#[derive(Debug)]
pub(crate) struct ChildEnds {
    pub(crate) pid: i32,
    pub(crate) pidfd: Arc<OwnedFd>,
    pub(crate) stdin: Option<File>,
    pub(crate) readers: [Option<OutputReader>; 2],
    pub(crate) terminal: Option<Arc<OwnedFd>>,
}

/// The command's stdout or stderr as the supervisor passes it on (at most
/// `max_output_bytes`), from [`SandboxChild::stdout`] and
/// [`SandboxChild::stderr`]. EOF once the command's stream has closed and
/// everything is passed on. Reading blocks; `AsFd` gives the fd for poll or
/// an async reactor.
#[derive(Debug)]
pub struct OutputReader(UnixStream);

impl OutputReader {
    pub(crate) fn new(stream: UnixStream) -> Self {
        OutputReader(stream)
    }
}

impl Read for OutputReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl AsFd for OutputReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for OutputReader {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl From<OutputReader> for OwnedFd {
    fn from(reader: OutputReader) -> OwnedFd {
        OwnedFd::from(reader.0)
    }
}

impl SandboxChild {
    /// A started sandbox, supervised by the thread `handle`.
    pub(crate) fn new(ends: ChildEnds, outcome_rx: Receiver<Result<RunOutcome>>) -> Self {
        let [stdout, stderr] = ends.readers;
        Self {
            pid: ends.pid,
            pidfd: Some(ends.pidfd),
            stdin: ends.stdin,
            stdout,
            stderr,
            outcome_rx: Some(outcome_rx),
            terminal: ends.terminal,
            collected: [Vec::new(), Vec::new()],
            outcome: None,
        }
    }

    /// Reads what the readers still here have: until both end (`block`),
    /// or what is there now.
    fn collect(&mut self, block: bool) -> Result<()> {
        let mut scratch = [0u8; 16 * 1024];
        loop {
            let open: Vec<usize> = [&self.stdout, &self.stderr]
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.is_some().then_some(i))
                .collect();
            if open.is_empty() {
                return Ok(());
            }
            let ready: Vec<bool> = {
                let readers = [&self.stdout, &self.stderr];
                let mut pollfds: Vec<PollFd<'_>> = open
                    .iter()
                    .filter_map(|&i| readers[i].as_ref())
                    .map(|r| PollFd::new(r, PollFlags::IN))
                    .collect();
                let zero = rustix::time::Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                match rustix::event::poll(&mut pollfds, (!block).then_some(&zero)) {
                    Ok(_) | Err(Errno::INTR) => {}
                    Err(e) => return Err(Error::supervise("poll the output readers")(e)),
                }
                pollfds.iter().map(|p| !p.revents().is_empty()).collect()
            };
            if !block && !ready.contains(&true) {
                return Ok(());
            }
            for (&i, _) in open.iter().zip(&ready).filter(|(_, r)| **r) {
                let reader = if i == 0 {
                    &mut self.stdout
                } else {
                    &mut self.stderr
                };
                let Some(stream) = reader else { continue };
                match rustix::net::recv(&*stream, &mut scratch, RecvFlags::DONTWAIT) {
                    Ok((0, _)) | Err(Errno::CONNRESET) => *reader = None,
                    Ok((n, _)) => self.collected[i].extend_from_slice(&scratch[..n]),
                    Err(Errno::AGAIN | Errno::INTR) => {}
                    Err(e) => return Err(Error::supervise("read the command's output")(e)),
                }
            }
        }
    }

    /// The host pid of the sandbox's first process (PID 1 inside it).
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// A handle that kills or resizes this sandbox from another thread
    /// while this one waits.
    pub fn control(&self) -> ChildControl {
        ChildControl {
            pidfd: self.pidfd.clone(),
            terminal: self.terminal.clone(),
        }
    }

    /// Sends `signal` (`libc::SIGTERM`, …) to the command's process
    /// group: the sandbox's PID 1 passes on `SIGHUP`, `SIGINT`, `SIGQUIT`,
    /// `SIGTERM`, `SIGUSR1`, `SIGUSR2`, `SIGCONT` and `SIGTSTP`;
    /// `SIGKILL` kills the whole sandbox (as [`kill`](SandboxChild::kill)).
    /// Signalling one that has ended is not an error.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCommand`] for any other signal; [`Error::Supervise`]
    /// if it could not be sent.
    pub fn signal(&self, signal: i32) -> Result<()> {
        self.control().signal(signal)
    }

    /// Sets the window size of the command's terminal (with
    /// [`pty`](crate::SandboxCommand::pty)); the kernel sends `SIGWINCH`
    /// to its foreground process group.
    ///
    /// # Errors
    ///
    /// [`Error::Supervise`] if the command has no terminal or the size
    /// could not be set.
    pub fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        self.control().resize(rows, cols)
    }

    /// Kills the whole sandbox (`SIGKILL` to its PID 1, which takes its pid
    /// namespace with it). Killing one that has ended is not an error.
    ///
    /// # Errors
    ///
    /// [`Error::Supervise`] if the signal could not be sent.
    pub fn kill(&self) -> Result<()> {
        self.control().kill()
    }

    /// Waits for the sandbox to end (closing its stdin first, if piped)
    /// and returns the outcome; again on later calls. Output left in
    /// [`stdout`](SandboxChild::stdout) and [`stderr`](SandboxChild::stderr)
    /// is read into the outcome; a reader taken must be read to its end
    /// (or dropped), or the sandbox waits for room to write, as with any
    /// pipe.
    ///
    /// # Errors
    ///
    /// [`Error::Supervise`] or [`Error::Supervisor`] if supervision failed
    /// (a later call then says the outcome is lost).
    pub fn wait(&mut self) -> Result<RunOutcome> {
        drop(self.stdin.take());
        match self.outcome(true)? {
            Some(outcome) => Ok(outcome),
            None => Err(Error::Supervisor {
                what: "the supervisor gave no outcome",
            }),
        }
    }

    /// The outcome if the sandbox has ended (and its output has been
    /// passed on), without blocking; `None` while it runs.
    ///
    /// # Errors
    ///
    /// As [`wait`](SandboxChild::wait).
    pub fn try_wait(&mut self) -> Result<Option<RunOutcome>> {
        self.outcome(false)
    }

    /// The outcome, waiting for it (`block`) or not.
    fn outcome(&mut self, block: bool) -> Result<Option<RunOutcome>> {
        if let Some(outcome) = &self.outcome {
            return Ok(Some(outcome.clone()));
        }
        // Read what the readers left here have, so the supervisor never
        // waits for room in them.
        self.collect(block)?;
        let lost = Error::Supervisor {
            what: "the supervisor lost the run (a bug in sandbox-core); the sandbox was killed",
        };
        let received = match &self.outcome_rx {
            None => {
                return Err(Error::Supervisor {
                    what: "an earlier wait failed: the outcome is lost",
                });
            }
            Some(rx) if block => rx.recv().map_err(|_| lost),
            Some(rx) => match rx.try_recv() {
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(None),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(lost),
                Ok(outcome) => Ok(outcome),
            },
        };
        self.outcome_rx = None;
        let mut outcome = received??;
        // The supervisor is done: what is left in the readers ends in EOF.
        self.collect(true)?;
        let [stdout, stderr] = std::mem::take(&mut self.collected);
        if outcome.stdout.is_empty() {
            outcome.stdout = stdout;
        }
        if outcome.stderr.is_empty() {
            outcome.stderr = stderr;
        }
        self.pidfd = None;
        self.outcome = Some(outcome.clone());
        Ok(Some(outcome))
    }
}

/// Kills or resizes a running sandbox from any thread, from
/// [`SandboxChild::control`].
#[derive(Debug, Clone)]
pub struct ChildControl {
    pidfd: Option<Arc<OwnedFd>>,
    terminal: Option<Arc<OwnedFd>>,
}

impl ChildControl {
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn new(pidfd: Option<Arc<OwnedFd>>, terminal: Option<Arc<OwnedFd>>) -> Self {
        ChildControl { pidfd, terminal }
    }

    /// As [`SandboxChild::kill`].
    ///
    /// # Errors
    ///
    /// [`Error::Supervise`] if the signal could not be sent.
    pub fn kill(&self) -> Result<()> {
        let Some(pidfd) = &self.pidfd else {
            return Ok(());
        };
        match rustix::process::pidfd_send_signal(&**pidfd, rustix::process::Signal::KILL) {
            Ok(()) | Err(Errno::SRCH) => Ok(()),
            Err(e) => Err(Error::supervise("kill the sandbox")(e)),
        }
    }

    /// As [`SandboxChild::signal`].
    ///
    /// # Errors
    ///
    /// As [`SandboxChild::signal`].
    pub fn signal(&self, signal: i32) -> Result<()> {
        if signal == libc::SIGKILL {
            return self.kill();
        }
        let forwarded = sandbox_child::FORWARDED_SIGNALS.contains(&signal);
        let Some(signal) = rustix::process::Signal::from_named_raw(signal).filter(|_| forwarded)
        else {
            return Err(Error::InvalidCommand {
                reason: format!(
                    "signal {signal} is not passed on to the command (these are: HUP, INT, QUIT, \
                     TERM, USR1, USR2, CONT, TSTP; KILL kills the sandbox)"
                ),
            });
        };
        let Some(pidfd) = &self.pidfd else {
            return Ok(());
        };
        match rustix::process::pidfd_send_signal(&**pidfd, signal) {
            Ok(()) | Err(Errno::SRCH) => Ok(()),
            Err(e) => Err(Error::supervise("signal the sandbox")(e)),
        }
    }

    /// As [`SandboxChild::resize`].
    ///
    /// # Errors
    ///
    /// As [`SandboxChild::resize`].
    pub fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        let Some(terminal) = &self.terminal else {
            return Err(Error::supervise("resize the terminal")(Errno::NOTTY));
        };
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&**terminal, size)
            .map_err(Error::supervise("resize the terminal"))
    }
}
