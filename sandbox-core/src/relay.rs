//! The supervisor's copying: the sandbox's stdout and stderr to where the
//! caller wants them (kept in memory, a reader of the caller's, or the
//! caller's own stream) as the bytes come, capped; the caller's stdin into
//! the sandbox's. One poll loop does it all, with the sandbox's pidfd and
//! the wall-clock deadline, so a slow or stuck destination never delays
//! the kill: it only holds the sandbox back (its pipe fills and it waits,
//! as with any pipe).

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::SendFlags;

use crate::error::{Error, Result};

/// At most this much is written at once to a destination that may block
/// (a socket or file of the caller's), once poll says it has room.
const BLOCKING_CHUNK: usize = 4096;

/// How long the sandbox's pipes may stay open after it is gone (a
/// concurrent spawn elsewhere in this process may briefly hold a copy).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Where one stream's bytes go.
#[derive(Debug)]
pub(crate) enum Sink {
    /// Kept in memory for the outcome.
    Capture,
    /// Our end of a caller's reader (a socket pair): sent without
    /// blocking and without `SIGPIPE`.
    Socket(OwnedFd),
    /// An fd written without blocking: our own pipe, or a new open file
    /// description of the caller's pipe or terminal.
    NonBlocking(OwnedFd),
    /// The caller's fd as it is (a file, a socket): written at most
    /// `BLOCKING_CHUNK` bytes at a time, once poll says it has room.
    Blocking(OwnedFd),
    /// Nowhere (a terminal's output with stdout set to `Null`).
    Discard,
}

impl Sink {
    fn fd(&self) -> Option<&OwnedFd> {
        match self {
            Sink::Capture | Sink::Discard => None,
            Sink::Socket(fd) | Sink::NonBlocking(fd) | Sink::Blocking(fd) => Some(fd),
        }
    }

    /// Writes from `bytes`: how many went, 0 if the destination is full.
    fn write(&self, bytes: &[u8]) -> std::result::Result<usize, Errno> {
        let result = match self {
            Sink::Capture | Sink::Discard => return Ok(bytes.len()),
            Sink::Socket(fd) => {
                rustix::net::send(fd, bytes, SendFlags::DONTWAIT | SendFlags::NOSIGNAL)
            }
            Sink::NonBlocking(fd) => rustix::io::write(fd, bytes),
            Sink::Blocking(fd) => rustix::io::write(fd, &bytes[..bytes.len().min(BLOCKING_CHUNK)]),
        };
        match result {
            Err(Errno::AGAIN | Errno::INTR) => Ok(0),
            other => other,
        }
    }
}

/// One stream being copied: from `source` to `sink`, at most `cap` bytes
/// passed on, the rest read and dropped.
#[derive(Debug)]
pub(crate) struct Relay {
    source: Option<OwnedFd>,
    /// `None` once the destination is gone or done with.
    sink: Option<Sink>,
    /// Read but not yet written (never for `Capture`).
    pending: Vec<u8>,
    /// For `Capture`.
    kept: Vec<u8>,
    cap: u64,
    passed: u64,
    /// Whether some bytes read were not passed on (past the cap, or the
    /// destination went away or failed).
    truncated: bool,
    /// For stdin: the sandbox's pipe's read end, held so that writing to
    /// the pipe never raises `SIGPIPE` here.
    _held: Option<OwnedFd>,
}

impl Relay {
    /// A stream that is not relayed (`/dev/null`).
    pub(crate) fn none() -> Self {
        Relay {
            source: None,
            sink: None,
            pending: Vec::new(),
            kept: Vec::new(),
            cap: 0,
            passed: 0,
            truncated: false,
            _held: None,
        }
    }

    /// The sandbox's stdout or stderr (`source`, the read end of its pipe).
    pub(crate) fn output(source: OwnedFd, sink: Sink, cap: u64) -> Self {
        Relay {
            source: Some(source),
            sink: Some(sink),
            cap,
            ..Relay::none()
        }
    }

    /// The caller's stdin (`source`) into the sandbox's pipe (`pipe`, non-
    /// blocking; `held`, its read end).
    pub(crate) fn input(source: OwnedFd, pipe: OwnedFd, held: OwnedFd) -> Self {
        Relay {
            source: Some(source),
            sink: Some(Sink::NonBlocking(pipe)),
            cap: u64::MAX,
            _held: Some(held),
            ..Relay::none()
        }
    }

    /// The caller's stdin (`source`) into the command's terminal (`master`,
    /// non-blocking).
    pub(crate) fn into_terminal(source: OwnedFd, master: OwnedFd) -> Self {
        Relay {
            source: Some(source),
            sink: Some(Sink::NonBlocking(master)),
            cap: u64::MAX,
            ..Relay::none()
        }
    }

    /// What was kept (`Capture`), whether some was not passed on.
    pub(crate) fn into_captured(self) -> (Vec<u8>, bool) {
        (self.kept, self.truncated)
    }

    /// Nothing more to read or write.
    fn finished(&self) -> bool {
        self.source.is_none() && self.pending.is_empty()
    }

    /// Stops reading (the sandbox is gone and its pipe has not closed).
    fn close_source(&mut self) {
        self.source = None;
        self.settle();
    }

    /// After EOF, with nothing pending: lets the destination go (the
    /// caller's reader sees EOF, the sandbox's stdin closes).
    fn settle(&mut self) {
        if self.source.is_none()
            && self.pending.is_empty()
            && !matches!(self.sink, Some(Sink::Capture))
        {
            self.sink = None;
        }
    }

    /// The fd and events to poll for: the destination while bytes are
    /// pending, else the source.
    fn interest(&self) -> Option<(&OwnedFd, PollFlags)> {
        if !self.pending.is_empty() {
            return self
                .sink
                .as_ref()
                .and_then(Sink::fd)
                .map(|fd| (fd, PollFlags::OUT));
        }
        self.source.as_ref().map(|fd| (fd, PollFlags::IN))
    }

    /// Handles readiness from `interest`.
    fn on_ready(&mut self, scratch: &mut [u8]) {
        if self.pending.is_empty() {
            self.read(scratch);
        } else {
            self.flush();
        }
        self.settle();
    }

    /// One read from the source (poll said it is ready, so it does not
    /// block), passed on within the cap.
    fn read(&mut self, scratch: &mut [u8]) {
        let Some(source) = &self.source else {
            return;
        };
        let n = match rustix::io::read(source, &mut *scratch) {
            Ok(n) => n,
            Err(Errno::AGAIN | Errno::INTR) => return,
            // EIO from a terminal that hung up, or any other failure: the
            // stream has ended.
            Err(_) => 0,
        };
        if n == 0 {
            self.source = None;
            return;
        }
        let room = self.cap.saturating_sub(self.passed);
        let take = n.min(usize::try_from(room).unwrap_or(usize::MAX));
        if take < n {
            self.truncated = true;
        }
        self.passed += take as u64;
        match &self.sink {
            Some(Sink::Capture) => self.kept.extend_from_slice(&scratch[..take]),
            Some(Sink::Discard) => {}
            Some(_) => {
                self.pending.extend_from_slice(&scratch[..take]);
                self.flush();
            }
            None => {
                if take > 0 {
                    self.truncated = true;
                }
            }
        }
    }

    /// Writes what is pending until the destination is full.
    fn flush(&mut self) {
        let Some(sink) = &self.sink else {
            self.pending.clear();
            return;
        };
        let mut written = 0;
        while written < self.pending.len() {
            match sink.write(&self.pending[written..]) {
                Ok(0) => break,
                Ok(n) => {
                    written += n;
                    if matches!(sink, Sink::Blocking(_)) {
                        break;
                    }
                }
                // The reader went away (EPIPE), the disk is full, the
                // terminal hung up: the rest is dropped, and said so. The
                // source closes too, so the writer learns it as it would
                // from a pipe of its own (EPIPE, SIGPIPE).
                Err(_) => {
                    self.sink = None;
                    self.source = None;
                    self.pending.clear();
                    self.truncated = true;
                    return;
                }
            }
        }
        self.pending.drain(..written);
    }
}

/// Which fd of a [`Supervision`] an interest is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// The stdin relay.
    Stdin,
    /// Output relay 0 (stdout) or 1 (stderr).
    Output(usize),
    /// The sandbox's pidfd (readable once it has exited).
    Exit,
    /// The status pipe: PID 1's records (job control, the exit status).
    Status,
}

/// A change in a running command's job-control state, reported to the
/// hook of [`SandboxCommand::on_job_control`](crate::SandboxCommand::on_job_control).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobControl {
    /// The command was stopped by this signal (`SIGTSTP` from its
    /// terminal, `SIGSTOP`, …); it stays stopped until continued with
    /// [`SandboxChild::signal`](crate::SandboxChild::signal)`(SIGCONT)`.
    Stopped(i32),
    /// The command was continued.
    Continued,
}

/// Called with each job-control change of a run (from the thread that
/// supervises it: keep it quick).
pub(crate) type JobControlHook = std::sync::Arc<dyn Fn(JobControl) + Send + Sync>;

/// One run's supervision: its relays, its pidfd, its status pipe and its
/// deadline, as a state machine any poll loop can drive (`interests`,
/// `on_ready`, `tick`): the caller's own thread for `output()`, or the
/// shared supervisor for spawned runs.
pub(crate) struct Supervision {
    stdin: Option<Relay>,
    pub(crate) outputs: [Relay; 2],
    pidfd: std::sync::Arc<OwnedFd>,
    deadline: Option<Instant>,
    pub(crate) timed_out: bool,
    exited_at: Option<Instant>,
    /// PID 1's status pipe, until EOF.
    status: Option<OwnedFd>,
    /// The command's wait status, once PID 1 has sent it.
    pub(crate) command_status: Option<i32>,
    job_control: Option<JobControlHook>,
}

impl std::fmt::Debug for JobControlHookDebug<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(hook)"
        } else {
            "None"
        })
    }
}

/// `Debug` for an optional hook.
struct JobControlHookDebug<'a>(&'a Option<JobControlHook>);

impl std::fmt::Debug for Supervision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervision")
            .field("stdin", &self.stdin)
            .field("outputs", &self.outputs)
            .field("deadline", &self.deadline)
            .field("timed_out", &self.timed_out)
            .field("exited_at", &self.exited_at)
            .field("command_status", &self.command_status)
            .field("job_control", &JobControlHookDebug(&self.job_control))
            .finish_non_exhaustive()
    }
}

impl Supervision {
    /// Supervises a run that has started.
    pub(crate) fn new(
        stdin: Option<Relay>,
        outputs: [Relay; 2],
        pidfd: std::sync::Arc<OwnedFd>,
        status: OwnedFd,
        deadline: Option<Instant>,
        job_control: Option<JobControlHook>,
    ) -> Self {
        Supervision {
            stdin,
            outputs,
            pidfd,
            deadline,
            timed_out: false,
            exited_at: None,
            status: Some(status),
            command_status: None,
            job_control,
        }
    }

    /// Reads PID 1's records: job-control changes go to the hook, the exit
    /// status is kept. `block`: until EOF (PID 1 is gone).
    pub(crate) fn read_status(&mut self, block: bool) {
        use sandbox_child::{
            RECORD_COMMAND_CONTINUED, RECORD_COMMAND_STATUS, RECORD_COMMAND_STOPPED, RECORD_LEN,
            decode_record,
        };
        // A whole number of records: each is one atomic write.
        let mut buf = [0u8; RECORD_LEN * 16];
        loop {
            let Some(status) = &self.status else {
                return;
            };
            let n = match rustix::io::read(status, &mut buf) {
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(_) => 0,
            };
            if n == 0 {
                self.status = None;
                return;
            }
            for chunk in buf[..n].chunks_exact(RECORD_LEN) {
                let mut record = [0u8; RECORD_LEN];
                record.copy_from_slice(chunk);
                let event = match decode_record(&record) {
                    (RECORD_COMMAND_STATUS, _, raw) => {
                        self.command_status = Some(raw);
                        None
                    }
                    (RECORD_COMMAND_STOPPED, _, signal) => Some(JobControl::Stopped(signal)),
                    (RECORD_COMMAND_CONTINUED, _, _) => Some(JobControl::Continued),
                    _ => None,
                };
                if let (Some(event), Some(hook)) = (event, &self.job_control) {
                    hook(event);
                }
            }
            if !block {
                return;
            }
        }
    }

    /// The sandbox has exited and its stdout and stderr are passed on.
    pub(crate) fn done(&self) -> bool {
        self.exited_at.is_some() && self.outputs.iter().all(Relay::finished)
    }

    /// What to poll for now.
    pub(crate) fn interests(&self) -> impl Iterator<Item = (&OwnedFd, PollFlags, Slot)> {
        let stdin = self
            .stdin
            .as_ref()
            .and_then(Relay::interest)
            .map(|(fd, events)| (fd, events, Slot::Stdin));
        let outputs = self.outputs.iter().enumerate().filter_map(|(i, relay)| {
            relay
                .interest()
                .map(|(fd, events)| (fd, events, Slot::Output(i)))
        });
        let exit = self
            .exited_at
            .is_none()
            .then_some((&*self.pidfd, PollFlags::IN, Slot::Exit));
        let status = self
            .status
            .as_ref()
            .map(|fd| (fd, PollFlags::IN, Slot::Status));
        stdin.into_iter().chain(outputs).chain(exit).chain(status)
    }

    /// Handles readiness of `slot`.
    pub(crate) fn on_ready(&mut self, slot: Slot, scratch: &mut [u8]) {
        match slot {
            Slot::Stdin => {
                if let Some(relay) = &mut self.stdin {
                    relay.on_ready(scratch);
                }
            }
            Slot::Output(i) => self.outputs[i].on_ready(scratch),
            Slot::Exit => {
                self.exited_at = Some(Instant::now());
                // The stdin relay stops with the sandbox.
                self.stdin = None;
            }
            Slot::Status => self.read_status(false),
        }
    }

    /// Kills the sandbox at its deadline; stops waiting for pipes a
    /// concurrent spawn may hold past `CLOSE_GRACE` after the exit.
    /// Returns how long the loop may sleep before calling again.
    pub(crate) fn tick(&mut self, now: Instant) -> Option<Duration> {
        match self.exited_at {
            Some(at) => {
                if now.saturating_duration_since(at) > CLOSE_GRACE {
                    self.outputs.iter_mut().for_each(Relay::close_source);
                }
                Some(Duration::from_millis(100))
            }
            None => {
                let deadline = self.deadline?;
                if now >= deadline {
                    if !self.timed_out {
                        self.timed_out = true;
                        let _ = rustix::process::pidfd_send_signal(
                            &*self.pidfd,
                            rustix::process::Signal::KILL,
                        );
                    }
                    // Killed: the pidfd says when it is gone.
                    return None;
                }
                Some(deadline - now)
            }
        }
    }
}

/// A poll(2) timeout for `timeout` (`None`: for ever).
pub(crate) fn timespec(timeout: Option<Duration>) -> Option<rustix::time::Timespec> {
    timeout.map(|t| rustix::time::Timespec {
        tv_sec: t.as_secs() as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    })
}

/// Drives one supervision to its end in this thread.
pub(crate) fn supervise_here(supervision: &mut Supervision) -> Result<()> {
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        let timeout = supervision.tick(Instant::now());
        if supervision.done() {
            return Ok(());
        }
        let ready: Vec<Slot> = {
            let (mut pollfds, slots): (Vec<PollFd<'_>>, Vec<Slot>) = supervision
                .interests()
                .map(|(fd, events, slot)| (PollFd::new(fd, events), slot))
                .unzip();
            match rustix::event::poll(&mut pollfds, timespec(timeout).as_ref()) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(Error::supervise("poll")(e)),
            }
            slots
                .into_iter()
                .zip(&pollfds)
                .filter(|(_, p)| !p.revents().is_empty())
                .map(|(slot, _)| slot)
                .collect()
        };
        for slot in ready {
            supervision.on_ready(slot, &mut scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> (OwnedFd, OwnedFd) {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap()
    }

    #[test]
    fn a_capture_keeps_the_cap_and_says_what_it_dropped() {
        let (read, write) = pipe();
        let mut relay = Relay::output(read, Sink::Capture, 5);
        rustix::io::write(&write, b"0123456789").unwrap();
        drop(write);
        let mut scratch = [0u8; 4];
        while !relay.finished() {
            relay.on_ready(&mut scratch);
        }
        assert_eq!(relay.into_captured(), (b"01234".to_vec(), true));
    }

    #[test]
    fn a_full_destination_holds_the_bytes_until_it_has_room() {
        let (read, write) = pipe();
        let (dest_read, dest_write) = pipe();
        rustix::fs::fcntl_setfl(&dest_write, rustix::fs::OFlags::NONBLOCK).unwrap();
        // Fill the destination.
        let big = vec![7u8; 1 << 20];
        let mut filled = 0;
        while let Ok(n) = rustix::io::write(&dest_write, &big) {
            filled += n;
        }
        let mut relay = Relay::output(read, Sink::NonBlocking(dest_write), u64::MAX);
        rustix::io::write(&write, b"hello").unwrap();
        let mut scratch = [0u8; 64];
        relay.on_ready(&mut scratch);
        assert_eq!(
            relay.pending, b"hello",
            "held while the destination is full"
        );
        assert_eq!(relay.interest().map(|(_, e)| e), Some(PollFlags::OUT));
        // Make room, then the pending bytes go.
        let mut sink = vec![0u8; filled];
        let mut drained = 0;
        while drained < filled {
            drained += rustix::io::read(&dest_read, &mut sink[drained..]).unwrap();
        }
        relay.on_ready(&mut scratch);
        assert!(relay.pending.is_empty());
        let mut got = [0u8; 5];
        rustix::io::read(&dest_read, &mut got).unwrap();
        assert_eq!(&got, b"hello");
        assert!(!relay.truncated);
    }

    #[test]
    fn a_destination_that_goes_away_is_dropped_and_said_so() {
        let (read, write) = pipe();
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut relay = Relay::output(read, Sink::Socket(OwnedFd::from(ours)), u64::MAX);
        drop(theirs);
        rustix::io::write(&write, b"lost").unwrap();
        drop(write);
        let mut scratch = [0u8; 64];
        while !relay.finished() {
            relay.on_ready(&mut scratch);
        }
        assert!(relay.truncated);
        assert!(relay.sink.is_none());
    }
}
