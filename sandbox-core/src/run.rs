//! Starting a run (the parent's half of the clone) and supervising it to
//! the end: output capture with caps, the wall-clock timeout, the exit
//! status, resource usage, and cleanup on every path.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use sandbox_policy::{Limit, Policy};

use crate::cgroups::RunCgroups;
use crate::decide::Decisions;
use crate::error::{Error, Result};
use crate::outcome::{EgressStats, ExitStatus, RunOutcome};
use crate::plan::{self, CommandSpec, PlanFds};
use crate::quotas::RunIds;
use crate::report::EffectiveSandbox;
use crate::seccomp::SeccompProgram;
use sandbox_child::{
    NO_FD, RECORD_COMMAND_STATUS, RECORD_LEN, RECORD_STEP_FAILED, RECORD_STEP_PANICKED, Setup,
    decode_record, spawn_init,
};

/// How long the sandbox's setup (from the clone to the command's `execve`)
/// may take before the sandbox is killed and the run fails naming the
/// step it was stuck in. Setup takes milliseconds; this is for a child
/// that would otherwise hang the caller for ever.
pub(crate) const SETUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A sandbox whose command has started (its `execve` succeeded).
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) pid: i32,
    pub(crate) pidfd: Arc<OwnedFd>,
    pub(crate) stdin: Option<File>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    status: OwnedFd,
    /// Our end of the sync pipe, open while we supervise: the child checks
    /// it to know we are alive.
    _parent_alive: OwnedFd,
    egress: Option<EgressRun>,
    cgroups: RunCgroups,
    started: Instant,
    reaped: bool,
}

/// The forwarder of a run with allowlisted egress.
#[derive(Debug)]
struct EgressRun {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<EgressStats>>,
}

impl EgressRun {
    /// Stops the forwarder; what it did.
    fn stop(&mut self) -> Option<EgressStats> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let thread = self.thread.take()?;
        Some(thread.join().unwrap_or_else(|_| EgressStats {
            error: Some("the forwarder thread panicked".into()),
            ..EgressStats::default()
        }))
    }
}

fn start_forwarder(inner: &Inner, socket: &OwnedFd) -> Result<EgressRun> {
    use sandbox_net::forward::{EgressForwarder, EgressPolicy, ForwarderLimits};
    use sandbox_net::{EgressAddressing, Gateway};
    let fail = |what: &'static str| {
        move |e: sandbox_net::Error| Error::Supervise {
            what,
            error: std::io::Error::other(e),
        }
    };
    let tap = sandbox_net::recv_fd(socket).map_err(fail("receive the tap fd"))?;
    let policy = EgressPolicy::from_network(&inner.policy.network, Gateway::default());
    let mut forwarder = EgressForwarder::new(
        tap,
        policy,
        &EgressAddressing {
            mtu: inner
                .decisions
                .network
                .egress_mtu()
                .unwrap_or(EgressAddressing::default().mtu),
            ..EgressAddressing::default()
        },
        inner.dns_upstream,
        ForwarderLimits::default(),
    )
    .map_err(fail("start the egress forwarder"))?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("sandbox-egress".into())
        .spawn(move || {
            let error = forwarder.run(&flag).err().map(|e| e.to_string());
            EgressStats::from_counters(&forwarder.counters(), error)
        })
        .map_err(Error::prepare("start the egress forwarder thread"))?;
    Ok(EgressRun {
        stop,
        thread: Some(thread),
    })
}

/// What a command's stdin, stdout or stderr is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio {
    /// `/dev/null`.
    Null,
    /// The caller's own stream. (The command still runs in a new session,
    /// so it cannot push input into the caller's terminal.)
    Inherit,
    /// A pipe: for stdout and stderr, captured into the
    /// [`RunOutcome`](crate::RunOutcome) up to `max_output_bytes`; for stdin, given to the
    /// caller as [`SandboxChild::stdin`](crate::SandboxChild::stdin).
    Piped,
}

/// What every run of one sandbox shares: the resolved policy, the
/// decisions, the report and the compiled seccomp filter.
#[derive(Debug, Clone)]
pub(crate) struct Inner {
    pub(crate) policy: Policy,
    pub(crate) decisions: Decisions,
    pub(crate) report: EffectiveSandbox,
    pub(crate) seccomp: Option<Arc<SeccompProgram>>,
    /// Where the forwarder sends the sandbox's DNS queries (`None`: the
    /// host's resolver, from `/etc/resolv.conf`).
    pub(crate) dns_upstream: Option<std::net::SocketAddr>,
    /// The host ids a root caller's runs take (see `RunIds`).
    pub(crate) run_ids: RunIds,
}

/// The three stdio choices of a command.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StdioChoice {
    pub(crate) stdin: Stdio,
    pub(crate) stdout: Stdio,
    pub(crate) stderr: Stdio,
}

fn pipe(what: &'static str) -> Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(Error::prepare_errno(what))
}

/// The child's end (and the parent's, if piped) of one stdio stream.
fn stdio_fds(choice: Stdio, is_input: bool) -> Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    match choice {
        Stdio::Inherit => Ok((None, None)),
        Stdio::Null => {
            let flags = if is_input {
                OFlags::RDONLY
            } else {
                OFlags::WRONLY
            };
            let null = rustix::fs::open("/dev/null", flags | OFlags::CLOEXEC, Mode::empty())
                .map_err(Error::prepare_errno("open /dev/null"))?;
            Ok((Some(null), None))
        }
        Stdio::Piped => {
            let (read, write) = pipe("a stdio pipe")?;
            Ok(if is_input {
                (Some(read), Some(write))
            } else {
                (Some(write), Some(read))
            })
        }
    }
}

fn raw(fd: &Option<OwnedFd>) -> i32 {
    fd.as_ref().map_or(NO_FD, |fd| fd.as_raw_fd())
}

/// Kills a sandbox that will not be handed to the caller, and reaps it.
fn abandon(pid: i32, pidfd: &OwnedFd) {
    let _ = rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
    let _ = crate::sys::wait4(pid);
}

/// The parent's half of the setup: the id maps, the cgroups, and the
/// bytes that let the child go on.
fn parent_setup(
    plan: &plan::Plan,
    pid: i32,
    sync_write: &OwnedFd,
    cgroups: &RunCgroups,
) -> Result<()> {
    if plan.namespaces != 0 {
        let write = |file: &str, contents: &str| -> Result<()> {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, contents)
                .map_err(Error::prepare(format!("write {contents:?} to {path}")))
        };
        if plan.deny_setgroups {
            write("setgroups", "deny")?;
        }
        write("uid_map", &plan.uid_map)?;
        write("gid_map", &plan.gid_map)?;
    }
    let go = || {
        rustix::io::write(sync_write, &[1])
            .map(drop)
            .map_err(Error::prepare_errno("start the sandbox"))
    };
    if plan.namespaces != 0 {
        // The child builds its root while we move it into its cgroups; it
        // waits for the second byte before it forks the command.
        go()?;
        cgroups.attach(pid)?;
    } else {
        cgroups.attach(pid)?;
    }
    go()
}

/// What the setup pipe and the parent's half say together: `Ok` once the
/// command has exec'd; the failing step (the child's report explains more
/// than our broken pipe), a stuck one, or the parent's own error.
fn setup_outcome(
    record: Result<Setup>,
    parent_result: Result<()>,
    plan: &plan::Plan,
    progress: &sandbox_child::Progress,
) -> Result<()> {
    let step_name = |index: usize| {
        plan.descriptions
            .get(index)
            .cloned()
            .unwrap_or_else(|| format!("step {index}"))
    };
    match record {
        Ok(Setup::Record(RECORD_STEP_FAILED, index, errno)) => Err(Error::Setup {
            step: step_name(index as usize),
            error: std::io::Error::from_raw_os_error(errno),
        }),
        Ok(Setup::Record(RECORD_STEP_PANICKED, index, _)) => Err(Error::Setup {
            step: step_name(index as usize),
            error: std::io::Error::other(
                "the step panicked (a bug in sandbox-child) and the sandbox aborted",
            ),
        }),
        Ok(Setup::TimedOut) => Err(Error::Setup {
            step: progress
                .current()
                .map_or_else(|| "the clone".to_string(), step_name),
            error: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "still not done after {} s; the sandbox was killed",
                    SETUP_TIMEOUT.as_secs()
                ),
            ),
        }),
        Err(e) if parent_result.is_ok() => Err(e),
        _ => parent_result,
    }
}

/// The socket pair the child hands the tap over on (egress runs only).
fn egress_sockets(inner: &Inner) -> Result<Option<(OwnedFd, OwnedFd)>> {
    if inner.decisions.network.egress_mtu().is_none() {
        return Ok(None);
    }
    rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map(Some)
    .map_err(Error::prepare_errno("the egress socket pair"))
}

/// This run's plan, with its identity (a root caller's run id).
fn plan_run(inner: &Inner, spec: &CommandSpec, fds: PlanFds<'_>) -> Result<plan::Plan> {
    plan::build(
        &inner.policy,
        &inner.decisions,
        inner.seccomp.as_ref(),
        spec,
        fds,
        plan::RunIdentity {
            euid: inner.report.host.euid,
            egid: rustix::process::getegid().as_raw(),
            run_id: inner
                .decisions
                .credentials
                .run_ids
                .then(|| inner.run_ids.next()),
        },
    )
}

/// Waits for the child's setup: failures arrive as a record, EOF means
/// the command exec'd. A child stuck in a step (a netlink reply that never
/// comes, a hung FUSE lookup) is killed after `SETUP_TIMEOUT` and named by
/// its step. A sandbox whose setup failed is killed and reaped.
fn await_setup(
    plan: &plan::Plan,
    pid: i32,
    pidfd: &OwnedFd,
    progress: &sandbox_child::Progress,
    parent_result: Result<()>,
    setup_read: &OwnedFd,
) -> Result<()> {
    if parent_result.is_err() {
        // The child may have failed first (and so refused our bytes): its
        // report explains more than our broken pipe.
        abandon(pid, pidfd);
    }
    let record = sandbox_child::read_record_within(setup_read, SETUP_TIMEOUT)
        .map_err(Error::supervise("read the setup pipe"));
    let mut abandoned = parent_result.is_err();
    if parent_result.is_ok() && matches!(record, Ok(Setup::Record(..) | Setup::TimedOut)) {
        abandon(pid, pidfd);
        abandoned = true;
    }
    let outcome = setup_outcome(record, parent_result, plan, progress);
    if outcome.is_err() && !abandoned {
        abandon(pid, pidfd);
    }
    outcome
}

/// Clones the sandbox and runs its setup; returns once the command has
/// exec'd, or with the step that failed.
pub(crate) fn start(inner: &Inner, spec: &CommandSpec, stdio: StdioChoice) -> Result<Started> {
    if inner.decisions.fail_closed && !inner.report.downgrades.is_empty() {
        return Err(Error::Unavailable {
            downgrades: inner.report.downgrades.clone(),
        });
    }
    let (sync_read, sync_write) = pipe("the sync pipe")?;
    let (setup_read, setup_write) = pipe("the setup pipe")?;
    let (status_read, status_write) = pipe("the status pipe")?;
    let (child_in, parent_in) = stdio_fds(stdio.stdin, true)?;
    let (child_out, parent_out) = stdio_fds(stdio.stdout, false)?;
    let (child_err, parent_err) = stdio_fds(stdio.stderr, false)?;
    let egress_sockets = egress_sockets(inner)?;
    let limits = inner.decisions.cgroup_limits;
    let cgroups = if limits.any() {
        RunCgroups::create(&inner.report.host.cgroups, &limits)?
    } else {
        RunCgroups::default()
    };
    let fds = PlanFds {
        sync_read: sync_read.as_raw_fd(),
        setup_write: setup_write.as_raw_fd(),
        status_write: status_write.as_raw_fd(),
        stdio: [raw(&child_in), raw(&child_out), raw(&child_err)],
        egress_socket: egress_sockets.as_ref().map(|(_, child)| child.as_fd()),
    };
    let plan = plan_run(inner, spec, fds)?;
    let started = Instant::now();
    let (pid, pidfd, progress) = spawn_init(plan.namespaces, &plan.child, plan.owner)
        .map_err(Error::prepare_errno("clone the sandbox"))?;
    drop((sync_read, setup_write, status_write));
    drop((child_in, child_out, child_err));
    let egress_parent = egress_sockets.map(|(parent, _child)| parent);

    let parent_result = parent_setup(&plan, pid, &sync_write, &cgroups);
    await_setup(&plan, pid, &pidfd, &progress, parent_result, &setup_read)?;
    // The child handed over the tap before it exec'd: the forwarder runs in
    // a thread of the caller's, in the caller's network namespace.
    let egress = match egress_parent {
        Some(socket) => match start_forwarder(inner, &socket) {
            Ok(egress) => Some(egress),
            Err(e) => {
                abandon(pid, &pidfd);
                return Err(e);
            }
        },
        None => None,
    };
    Ok(Started {
        pid,
        pidfd: Arc::new(pidfd),
        stdin: parent_in.map(File::from),
        stdout: parent_out,
        stderr: parent_err,
        status: status_read,
        _parent_alive: sync_write,
        egress,
        cgroups,
        started,
        reaped: false,
    })
}

/// One captured stream: the bytes kept, and whether some were dropped.
#[derive(Debug, Default)]
struct Capture {
    kept: Vec<u8>,
    truncated: bool,
}

impl Capture {
    /// Reads what is available; returns false at EOF.
    fn read_from(&mut self, fd: &OwnedFd, cap: u64, scratch: &mut [u8]) -> Result<bool> {
        loop {
            match rustix::io::read(fd, &mut *scratch) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    let room = usize::try_from(cap)
                        .unwrap_or(usize::MAX)
                        .saturating_sub(self.kept.len());
                    let keep = n.min(room);
                    self.kept.extend_from_slice(&scratch[..keep]);
                    if keep < n {
                        self.truncated = true;
                    }
                }
                Err(Errno::AGAIN) => return Ok(true),
                Err(Errno::INTR) => {}
                Err(e) => return Err(Error::supervise("read the command's output")(e)),
            }
        }
    }
}

impl Started {
    /// Reads stdout and stderr until both close and the sandbox has
    /// exited (keeping at most `cap` bytes of each), killing it at
    /// `deadline`: the captures, and whether it was killed for time.
    fn drain(&mut self, cap: u64, deadline: Option<Instant>) -> Result<([Capture; 2], bool)> {
        for fd in [&self.stdout, &self.stderr].into_iter().flatten() {
            rustix::fs::fcntl_setfl(fd, OFlags::NONBLOCK)
                .map_err(Error::supervise("make the output pipes non-blocking"))?;
        }
        let mut captures = [Capture::default(), Capture::default()];
        let mut scratch = vec![0u8; 64 * 1024];
        let mut timed_out = false;
        let mut exited = false;
        let mut exited_at: Option<Instant> = None;
        let mut streams: [Option<OwnedFd>; 2] = [self.stdout.take(), self.stderr.take()];
        loop {
            let open: Vec<usize> = (0..2).filter(|&i| streams[i].is_some()).collect();
            if exited && open.is_empty() {
                break;
            }
            // After the sandbox is gone, its pipes close at once unless a
            // concurrent spawn elsewhere in this process briefly holds a
            // copy; do not wait on that for long.
            if let Some(at) = exited_at
                && at.elapsed() > Duration::from_secs(2)
            {
                break;
            }
            let timeout = if exited {
                Some(Duration::from_millis(100))
            } else {
                deadline.map(|d| d.saturating_duration_since(Instant::now()))
            };
            let timespec = timeout.map(|t| rustix::time::Timespec {
                tv_sec: t.as_secs() as i64,
                tv_nsec: i64::from(t.subsec_nanos()),
            });
            let ready: Vec<bool> = {
                let mut pollfds: Vec<PollFd<'_>> = streams
                    .iter()
                    .flatten()
                    .map(|fd| PollFd::new(fd, PollFlags::IN))
                    .collect();
                if !exited {
                    pollfds.push(PollFd::new(&*self.pidfd, PollFlags::IN));
                }
                match rustix::event::poll(&mut pollfds, timespec.as_ref()) {
                    Ok(_) | Err(Errno::INTR) => {}
                    Err(e) => return Err(Error::supervise("poll")(e)),
                }
                pollfds.iter().map(|p| !p.revents().is_empty()).collect()
            };
            for (slot, &i) in open.iter().enumerate() {
                if ready[slot]
                    && let Some(fd) = &streams[i]
                    && !captures[i].read_from(fd, cap, &mut scratch)?
                {
                    streams[i] = None;
                }
            }
            if !exited && ready.get(open.len()).copied().unwrap_or(false) {
                exited = true;
                exited_at = Some(Instant::now());
            }
            if !exited
                && !timed_out
                && let Some(d) = deadline
                && Instant::now() >= d
            {
                timed_out = true;
                let _ =
                    rustix::process::pidfd_send_signal(&*self.pidfd, rustix::process::Signal::KILL);
            }
        }
        Ok((captures, timed_out))
    }

    /// Runs the sandbox to its end: drains stdout and stderr (keeping at
    /// most `max_output_bytes` of each), kills it at the wall-clock limit,
    /// and collects the status and usage.
    pub(crate) fn supervise(mut self, inner: &Inner) -> Result<RunOutcome> {
        drop(self.stdin.take());
        let resources = &inner.policy.resources;
        let cap = match resources.max_output_bytes {
            Some(Limit::Max(n)) => n.bytes(),
            _ => u64::MAX,
        };
        let deadline = match resources.wall_time {
            Some(Limit::Max(t)) => Some(self.started + t.to_std()),
            _ => None,
        };
        let (captures, timed_out) = self.drain(cap, deadline)?;
        let usage =
            crate::sys::wait4(self.pid).map_err(Error::supervise("wait for the sandbox"))?;
        self.reaped = true;
        let egress = self.egress.as_mut().and_then(EgressRun::stop);
        let wall_time = self.started.elapsed();
        let mut record = [0u8; RECORD_LEN];
        let status = match rustix::io::read(&self.status, &mut record) {
            Ok(RECORD_LEN) => match decode_record(&record) {
                (RECORD_COMMAND_STATUS, _, raw) => ExitStatus::from_wait_status(raw),
                _ => ExitStatus::Signaled(libc::SIGKILL),
            },
            // PID 1 was killed (timeout, kill()) before the command ended.
            _ => ExitStatus::Signaled(libc::SIGKILL),
        };
        let [stdout, stderr] = captures;
        Ok(RunOutcome {
            status,
            timed_out,
            oom_killed: self.cgroups.oom_killed(),
            pids_limit_hit: self.cgroups.pids_limit_hit(),
            stdout: stdout.kept,
            stdout_truncated: stdout.truncated,
            stderr: stderr.kept,
            stderr_truncated: stderr.truncated,
            wall_time,
            // The cgroup's count includes processes never reaped (killed
            // with their namespace).
            cpu_time: self
                .cgroups
                .cpu_time()
                .map_or(usage.cpu_time, |c| c.max(usage.cpu_time)),
            peak_memory: self.cgroups.peak_memory().or(usage.max_rss),
            egress,
            report: inner.report.clone(),
        })
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if !self.reaped {
            abandon(self.pid, &self.pidfd);
        }
        if let Some(egress) = self.egress.as_mut() {
            egress.stop();
        }
    }
}
