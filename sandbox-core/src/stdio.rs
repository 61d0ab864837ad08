//! What a command's stdin, stdout and stderr are connected to, and how
//! each is wired for one run.
//!
//! No fd of the caller's ever enters the sandbox: the command gets a pipe
//! (or `/dev/null`), and the supervisor relays between that pipe and the
//! caller's stream (see `relay`). So a command cannot change the caller's
//! terminal settings, leave `O_NONBLOCK` on the caller's open file, or
//! write past the output cap, and the wall-clock limit never waits on it.

use std::ffi::c_int;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;

use crate::child::OutputReader;
use crate::error::{Error, Result};
use crate::plan::PtyPlan;
use crate::relay::{Relay, Sink};
use sandbox_child::NO_FD;

/// What a command's stdin, stdout or stderr is connected to.
///
/// The command itself always gets a pipe or `/dev/null`; with
/// [`Inherit`](Stdio::Inherit) and [`Fd`](Stdio::Fd) the supervisor
/// copies between that pipe and the caller's stream as the bytes come.
///
/// # Examples
///
/// ```no_run
/// # let sandbox = sandbox_core::Sandbox::from_profile("default")?;
/// let log = std::fs::File::create("/tmp/build.log").map_err(|e| sandbox_core::Error::Prepare {
///     what: "create the log".into(), error: e })?;
/// let outcome = sandbox.command("make").stdout(log.into()).status()?;
/// # Ok::<(), sandbox_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub enum Stdio {
    /// `/dev/null`.
    Null,
    /// The caller's own stream (its fd 0, 1 or 2), relayed: output as it
    /// comes, up to `max_output_bytes`; input as the caller's stdin has it.
    Inherit,
    /// A pipe: for stdout and stderr, captured into the
    /// [`RunOutcome`](crate::RunOutcome) up to `max_output_bytes` (or, with
    /// [`spawn`](crate::SandboxCommand::spawn), readable as it comes from
    /// [`SandboxChild::stdout`](crate::SandboxChild::stdout)); for stdin,
    /// given to the caller as [`SandboxChild::stdin`](crate::SandboxChild::stdin).
    Piped,
    /// A file, pipe or socket of the caller's, relayed like
    /// [`Inherit`](Stdio::Inherit). Made with `Stdio::from(file)` or
    /// `Stdio::from(owned_fd)`.
    Fd(Arc<OwnedFd>),
}

impl From<OwnedFd> for Stdio {
    fn from(fd: OwnedFd) -> Self {
        Stdio::Fd(Arc::new(fd))
    }
}

impl From<File> for Stdio {
    fn from(file: File) -> Self {
        Stdio::from(OwnedFd::from(file))
    }
}

impl From<UnixStream> for Stdio {
    fn from(stream: UnixStream) -> Self {
        Stdio::from(OwnedFd::from(stream))
    }
}

/// The three stdio choices of a command, whether it gets a terminal, and
/// who hears of its job-control changes.
#[derive(Clone)]
pub(crate) struct StdioChoice {
    pub(crate) stdin: Stdio,
    pub(crate) stdout: Stdio,
    pub(crate) stderr: Stdio,
    pub(crate) pty: bool,
    pub(crate) job_control: Option<crate::relay::JobControlHook>,
}

impl std::fmt::Debug for StdioChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioChoice")
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .field("pty", &self.pty)
            .finish_non_exhaustive()
    }
}

/// One run's stdio as the parent has it once the command runs.
#[derive(Debug)]
pub(crate) struct Wiring {
    /// The caller's end of a piped stdin.
    pub(crate) stdin: Option<File>,
    /// The caller's stdin (or fd) copied into the sandbox's.
    pub(crate) stdin_relay: Option<Relay>,
    /// The sandbox's stdout and stderr, relayed or captured.
    pub(crate) outputs: [Relay; 2],
    /// With `readers`: the caller's ends of piped stdout and stderr.
    pub(crate) readers: [Option<OutputReader>; 2],
    /// The command's terminal's master (`pty`), for window sizes.
    pub(crate) terminal: Option<Arc<OwnedFd>>,
}

/// One run's stdio before the clone.
#[derive(Debug)]
pub(crate) enum Prepared {
    /// Pipes (or `/dev/null`): the sandbox's ends, dup'd onto its 0, 1, 2
    /// and closed here once setup is done, and the parent's.
    Pipes {
        child: [OwnedFd; 3],
        wiring: Box<Wiring>,
    },
    /// A terminal of the command's own, made inside the sandbox: its master
    /// comes back over `parent`.
    Terminal {
        parent: OwnedFd,
        child: OwnedFd,
        rows: u16,
        cols: u16,
    },
}

impl Prepared {
    /// The fds the command's 0, 1, 2 are dup'd from (`NO_FD` with a
    /// terminal).
    pub(crate) fn stdio_fds(&self) -> [c_int; 3] {
        match self {
            Prepared::Pipes { child, .. } => child.each_ref().map(AsRawFd::as_raw_fd),
            Prepared::Terminal { .. } => [NO_FD; 3],
        }
    }

    /// The terminal's part of the plan.
    pub(crate) fn pty_plan(&self) -> Option<PtyPlan<'_>> {
        match self {
            Prepared::Pipes { .. } => None,
            Prepared::Terminal {
                child, rows, cols, ..
            } => Some(PtyPlan {
                socket: child.as_fd(),
                rows: *rows,
                cols: *cols,
            }),
        }
    }

    /// Once the command has exec'd: the parent's side. A terminal's master
    /// is received and relayed to and from the caller's choices (stdout
    /// carries both of the command's output streams).
    pub(crate) fn into_wiring(
        self,
        choice: &StdioChoice,
        readers: bool,
        cap: u64,
    ) -> Result<Wiring> {
        let (parent, child) = match self {
            Prepared::Pipes { wiring, .. } => return Ok(*wiring),
            Prepared::Terminal { parent, child, .. } => (parent, child),
        };
        drop(child);
        let master = sandbox_net::recv_fd(&parent).map_err(|e| Error::Supervise {
            what: "receive the terminal's master",
            error: std::io::Error::other(e),
        })?;
        rustix::fs::fcntl_setfl(&master, OFlags::NONBLOCK)
            .map_err(Error::supervise("make the terminal's master non-blocking"))?;
        let copy = |master: &OwnedFd| {
            rustix::io::fcntl_dupfd_cloexec(master, 3)
                .map_err(Error::supervise("duplicate the terminal's master"))
        };
        let (stdin, stdin_relay) = match &choice.stdin {
            Stdio::Null => (None, None),
            Stdio::Piped => {
                let (read, write) = pipe("the stdin pipe")?;
                let relay = Relay::into_terminal(read, copy(&master)?);
                (Some(File::from(write)), Some(relay))
            }
            other => match callers(other, 0, false)? {
                Some((source, _)) => (None, Some(Relay::into_terminal(source, copy(&master)?))),
                None => (None, None),
            },
        };
        let (sink, reader) = output_sink(&choice.stdout, 1, readers)?;
        let terminal = Some(Arc::new(copy(&master)?));
        Ok(Wiring {
            stdin,
            stdin_relay,
            outputs: [
                Relay::output(master, sink.unwrap_or(Sink::Discard), cap),
                Relay::none(),
            ],
            readers: [reader, None],
            terminal,
        })
    }
}

/// The window size of the caller's terminal, if stdout or stdin is one
/// (`Inherit` or `Fd`); else 24 × 80.
fn window_size(choice: &StdioChoice) -> (u16, u16) {
    let size_of = |stream: &Stdio, index: usize| -> Option<(u16, u16)> {
        let size = match stream {
            Stdio::Inherit if index == 0 => rustix::termios::tcgetwinsize(std::io::stdin()),
            Stdio::Inherit => rustix::termios::tcgetwinsize(std::io::stdout()),
            Stdio::Fd(fd) => rustix::termios::tcgetwinsize(fd),
            Stdio::Null | Stdio::Piped => return None,
        }
        .ok()?;
        (size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row, size.ws_col))
    };
    size_of(&choice.stdout, 1)
        .or_else(|| size_of(&choice.stdin, 0))
        .unwrap_or((24, 80))
}

pub(crate) fn pipe(what: &'static str) -> Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(Error::prepare_errno(what))
}

fn dev_null(flags: OFlags) -> Result<OwnedFd> {
    rustix::fs::open("/dev/null", flags | OFlags::CLOEXEC, Mode::empty())
        .map_err(Error::prepare_errno("open /dev/null"))
}

/// A copy of the caller's stream `fd` (its own fd 0, 1 or 2 for
/// `Inherit`) to read or write from the supervisor; `None` if the caller
/// has none open there. Pipes and terminals are opened anew without
/// blocking (a new open file description, so the caller's flags are not
/// touched); anything else is used as it is, a page at a time once poll
/// says it is ready.
fn caller_stream(fd: BorrowedFd<'_>, write: bool, name: &str) -> Result<Option<(OwnedFd, bool)>> {
    let stat = match rustix::fs::fstat(fd) {
        Ok(stat) => stat,
        Err(Errno::BADF) => return Ok(None),
        Err(e) => {
            return Err(Error::prepare_errno(format!("fstat the caller's {name}"))(
                e,
            ));
        }
    };
    let kind = rustix::fs::FileType::from_raw_mode(stat.st_mode);
    if matches!(
        kind,
        rustix::fs::FileType::Fifo | rustix::fs::FileType::CharacterDevice
    ) {
        let access = if write {
            OFlags::WRONLY
        } else {
            OFlags::RDONLY
        };
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        // O_NOCTTY: a terminal reopened here must not become the caller's
        // controlling terminal.
        if let Ok(reopened) = rustix::fs::open(
            path.as_str(),
            access | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            return Ok(Some((reopened, true)));
        }
    }
    let copy = rustix::io::fcntl_dupfd_cloexec(fd, 3).map_err(Error::prepare_errno(format!(
        "duplicate the caller's {name}"
    )))?;
    Ok(Some((copy, false)))
}

/// The caller's stream for `choice` (`Inherit` or `Fd`), or `None`.
fn callers(choice: &Stdio, index: usize, write: bool) -> Result<Option<(OwnedFd, bool)>> {
    const NAMES: [&str; 3] = ["stdin", "stdout", "stderr"];
    let name = NAMES[index];
    match choice {
        Stdio::Inherit => match index {
            0 => caller_stream(std::io::stdin().as_fd(), write, name),
            1 => caller_stream(std::io::stdout().as_fd(), write, name),
            _ => caller_stream(std::io::stderr().as_fd(), write, name),
        },
        Stdio::Fd(fd) => caller_stream(fd.as_fd(), write, &format!("{name} fd")),
        Stdio::Null | Stdio::Piped => Ok(None),
    }
}

/// Prepares one run's stdio. `readers`: piped stdout and stderr go to
/// [`OutputReader`]s (a spawned child) rather than into the outcome.
/// `cap`: the most bytes of each output stream passed on.
pub(crate) fn prepare(choice: &StdioChoice, readers: bool, cap: u64) -> Result<Prepared> {
    if choice.pty {
        let (parent, child) =
            UnixStream::pair().map_err(Error::prepare("the terminal's socket pair"))?;
        let (rows, cols) = window_size(choice);
        return Ok(Prepared::Terminal {
            parent: parent.into(),
            child: child.into(),
            rows,
            cols,
        });
    }
    let (child_in, stdin, stdin_relay) = match &choice.stdin {
        Stdio::Null => (dev_null(OFlags::RDONLY)?, None, None),
        Stdio::Piped => {
            let (read, write) = pipe("the stdin pipe")?;
            (read, Some(File::from(write)), None)
        }
        other => match callers(other, 0, false)? {
            None => (dev_null(OFlags::RDONLY)?, None, None),
            Some((source, _)) => {
                let (read, write) = pipe("the stdin pipe")?;
                rustix::fs::fcntl_setfl(&write, OFlags::NONBLOCK)
                    .map_err(Error::prepare_errno("make the stdin pipe non-blocking"))?;
                // Held, never read: a write to the pipe then never raises
                // SIGPIPE in the caller, whatever the command does.
                let held = rustix::io::fcntl_dupfd_cloexec(&read, 3)
                    .map_err(Error::prepare_errno("hold the stdin pipe"))?;
                let relay = Relay::input(source, write, held);
                (read, None, Some(relay))
            }
        },
    };
    let (out, out_relay, out_reader) = wire_output(&choice.stdout, 1, readers, cap)?;
    let (err, err_relay, err_reader) = wire_output(&choice.stderr, 2, readers, cap)?;
    Ok(Prepared::Pipes {
        child: [child_in, out, err],
        wiring: Box::new(Wiring {
            stdin,
            stdin_relay,
            outputs: [out_relay, err_relay],
            readers: [out_reader, err_reader],
            terminal: None,
        }),
    })
}

/// Where stdout (`index` 1) or stderr (2) goes: a sink (`None`: nowhere,
/// `/dev/null`), and the caller's reader if there is one.
fn output_sink(
    stream: &Stdio,
    index: usize,
    readers: bool,
) -> Result<(Option<Sink>, Option<OutputReader>)> {
    Ok(match stream {
        Stdio::Null => (None, None),
        Stdio::Piped if readers => {
            let (ours, theirs) =
                UnixStream::pair().map_err(Error::prepare("the output socket pair"))?;
            (
                Some(Sink::Socket(OwnedFd::from(ours))),
                Some(OutputReader::new(theirs)),
            )
        }
        Stdio::Piped => (Some(Sink::Capture), None),
        other => (
            callers(other, index, true)?.map(|(fd, nonblocking)| {
                if nonblocking {
                    Sink::NonBlocking(fd)
                } else {
                    Sink::Blocking(fd)
                }
            }),
            None,
        ),
    })
}

/// Wires stdout (`index` 1) or stderr (2): the sandbox's end, the relay,
/// and the caller's reader if there is one.
fn wire_output(
    stream: &Stdio,
    index: usize,
    readers: bool,
    cap: u64,
) -> Result<(OwnedFd, Relay, Option<OutputReader>)> {
    Ok(match output_sink(stream, index, readers)? {
        (None, _) => (dev_null(OFlags::WRONLY)?, Relay::none(), None),
        (Some(sink), reader) => {
            let (read, write) = pipe("an output pipe")?;
            (write, Relay::output(read, sink, cap), reader)
        }
    })
}
