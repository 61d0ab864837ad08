//! A running sandbox for async code (the `tokio` feature): the same
//! shared supervisor as [`SandboxChild`](crate::SandboxChild), so a
//! thousand sandboxes cost no thread each; the outcome comes on a oneshot
//! channel, output through the runtime's reactor.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::sync::oneshot;

use crate::child::{ChildControl, ChildEnds};
use crate::error::{Error, Result};
use crate::outcome::RunOutcome;

/// The command's stdout or stderr as it comes, for async code: the
/// [`OutputReader`](crate::OutputReader) of a blocking child, on the
/// runtime's reactor.
#[derive(Debug)]
pub struct AsyncOutputReader(tokio::net::UnixStream);

impl AsyncRead for AsyncOutputReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsFd for AsyncOutputReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A running sandbox, from
/// [`SandboxCommand::spawn_async`](crate::SandboxCommand::spawn_async).
///
/// Dropping it kills the sandbox (the supervisor reaps it), unless its
/// outcome has been collected; every `async` method is cancellation-safe:
/// dropped half-way, nothing is lost and it can be called again.
#[derive(Debug)]
pub struct AsyncChild {
    pid: i32,
    control: ChildControl,
    /// The command's stdin, if it was [`Stdio::Piped`](crate::Stdio::Piped).
    /// Drop it to send EOF.
    pub stdin: Option<tokio::net::unix::pipe::Sender>,
    /// The command's stdout as it comes, if piped; what is left here is
    /// collected into the outcome by [`wait`](AsyncChild::wait).
    pub stdout: Option<AsyncOutputReader>,
    /// The command's stderr, as [`stdout`](AsyncChild::stdout).
    pub stderr: Option<AsyncOutputReader>,
    outcome_rx: Option<oneshot::Receiver<Result<RunOutcome>>>,
    collected: [Vec<u8>; 2],
    outcome: Option<RunOutcome>,
}

fn reader(reader: Option<crate::OutputReader>) -> Result<Option<AsyncOutputReader>> {
    let Some(reader) = reader else {
        return Ok(None);
    };
    let stream = std::os::unix::net::UnixStream::from(OwnedFd::from(reader));
    stream
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(stream))
        .map(|s| Some(AsyncOutputReader(s)))
        .map_err(Error::prepare("put an output reader on the runtime"))
}

impl AsyncChild {
    pub(crate) fn new(
        ends: ChildEnds,
        outcome_rx: oneshot::Receiver<Result<RunOutcome>>,
    ) -> Result<Self> {
        let control = ChildControl::new(Some(ends.pidfd), ends.terminal);
        let stdin = match ends.stdin {
            Some(file) => Some(
                tokio::net::unix::pipe::Sender::from_file(file)
                    .map_err(Error::prepare("put stdin on the runtime"))?,
            ),
            None => None,
        };
        let [stdout, stderr] = ends.readers;
        Ok(AsyncChild {
            pid: ends.pid,
            control,
            stdin,
            stdout: reader(stdout)?,
            stderr: reader(stderr)?,
            outcome_rx: Some(outcome_rx),
            collected: [Vec::new(), Vec::new()],
            outcome: None,
        })
    }

    /// The host pid of the sandbox's first process.
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Kills the whole sandbox (as [`SandboxChild::kill`](crate::SandboxChild::kill)).
    ///
    /// # Errors
    ///
    /// [`Error::Supervise`] if the signal could not be sent.
    pub fn kill(&self) -> Result<()> {
        self.control.kill()
    }

    /// Sends a signal to the command (as
    /// [`SandboxChild::signal`](crate::SandboxChild::signal)).
    ///
    /// # Errors
    ///
    /// As [`SandboxChild::signal`](crate::SandboxChild::signal).
    pub fn signal(&self, signal: i32) -> Result<()> {
        self.control.signal(signal)
    }

    /// A handle that kills or resizes the sandbox from elsewhere.
    pub fn control(&self) -> ChildControl {
        self.control.clone()
    }

    /// Waits for the sandbox to end (closing its stdin first) and returns
    /// the outcome; again on later calls. Output left in
    /// [`stdout`](AsyncChild::stdout) and [`stderr`](AsyncChild::stderr)
    /// is read into it meanwhile.
    ///
    /// # Errors
    ///
    /// [`Error::Supervise`] or [`Error::Supervisor`] if supervision failed.
    pub async fn wait(&mut self) -> Result<RunOutcome> {
        if let Some(outcome) = &self.outcome {
            return Ok(outcome.clone());
        }
        drop(self.stdin.take());
        let [out, err] = &mut self.collected;
        let (a, b) = tokio::join!(
            read_to_end(&mut self.stdout, out),
            read_to_end(&mut self.stderr, err)
        );
        a.and(b)
            .map_err(Error::supervise_io("read the command's output"))?;
        let Some(rx) = &mut self.outcome_rx else {
            return Err(Error::Supervisor {
                what: "an earlier wait failed: the outcome is lost",
            });
        };
        let received = rx.await.map_err(|_| ());
        self.complete(received)
    }

    /// Waits for the sandbox to end, with the output of piped streams
    /// (as [`wait`](AsyncChild::wait); a reader taken is not read).
    ///
    /// # Errors
    ///
    /// As [`wait`](AsyncChild::wait).
    pub async fn output(mut self) -> Result<RunOutcome> {
        self.wait().await
    }

    /// The outcome if the sandbox has ended, without waiting; `None` while
    /// it runs.
    ///
    /// # Errors
    ///
    /// As [`wait`](AsyncChild::wait).
    pub fn try_wait(&mut self) -> Result<Option<RunOutcome>> {
        if let Some(outcome) = &self.outcome {
            return Ok(Some(outcome.clone()));
        }
        // Keep the supervisor from waiting on room in a reader nobody reads.
        self.read_available()?;
        let Some(rx) = &mut self.outcome_rx else {
            return Err(Error::Supervisor {
                what: "an earlier wait failed: the outcome is lost",
            });
        };
        let received = match rx.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => return Ok(None),
            Err(oneshot::error::TryRecvError::Closed) => Err(()),
            Ok(received) => Ok(received),
        };
        // The supervisor is done: the readers hold the rest, then EOF.
        self.read_available()?;
        self.complete(received).map(Some)
    }

    /// Reads what the readers still here have now, without waiting.
    fn read_available(&mut self) -> Result<()> {
        for (reader, buf) in [&mut self.stdout, &mut self.stderr]
            .into_iter()
            .zip(&mut self.collected)
        {
            while let Some(stream) = reader {
                let mut chunk = [0u8; 16 * 1024];
                match stream.0.try_read(&mut chunk) {
                    Ok(0) => *reader = None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(Error::supervise_io("read the command's output")(e)),
                }
            }
        }
        Ok(())
    }

    /// The outcome from the supervisor (`Err(())`: it lost the run), with
    /// what was collected from the readers.
    fn complete(
        &mut self,
        received: std::result::Result<Result<RunOutcome>, ()>,
    ) -> Result<RunOutcome> {
        self.outcome_rx = None;
        let mut outcome = received.map_err(|()| Error::Supervisor {
            what: "the supervisor lost the run (a bug in sandbox-core); the sandbox was killed",
        })??;
        let [stdout, stderr] = std::mem::take(&mut self.collected);
        if outcome.stdout.is_empty() {
            outcome.stdout = stdout;
        }
        if outcome.stderr.is_empty() {
            outcome.stderr = stderr;
        }
        self.outcome = Some(outcome.clone());
        Ok(outcome)
    }
}

async fn read_to_end(reader: &mut Option<AsyncOutputReader>, buf: &mut Vec<u8>) -> io::Result<()> {
    if let Some(stream) = reader {
        stream.read_to_end(buf).await?;
        *reader = None;
    }
    Ok(())
}

impl Drop for AsyncChild {
    fn drop(&mut self) {
        if self.outcome.is_none() {
            let _ = self.control.kill();
        }
    }
}
