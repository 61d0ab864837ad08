//! Starting a run (the parent's half of the clone) and supervising it to
//! the end: output capture with caps, the wall-clock timeout, the exit
//! status, resource usage, and cleanup on every path.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use sandbox_policy::{Limit, Policy};

use crate::child::OutputReader;
use crate::egress_pool::EgressRun;
use crate::relay::{self, Relay, Supervision};
use crate::stdio::{self, StdioChoice, pipe};
use crate::timings::{RunTimings, next_run_id};

use crate::cgroups::{CgroupJoins, RunCgroups};
use crate::decide::Decisions;
use crate::error::{Error, Result};
use crate::outcome::{ExitStatus, RunOutcome};
use crate::plan::{self, CommandSpec, PlanFds};
use crate::quotas::RunIds;
use crate::report::EffectiveSandbox;
use crate::seccomp::SeccompProgram;
use sandbox_child::{RECORD_STEP_FAILED, RECORD_STEP_PANICKED, Setup, monotonic_ns, spawn_init};

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
    /// With `spawn`: the caller's readers of piped stdout and stderr.
    pub(crate) readers: [Option<OutputReader>; 2],
    /// The command's terminal's master, with `pty`.
    pub(crate) terminal: Option<Arc<OwnedFd>>,
    /// Its relays, pidfd and deadline.
    pub(crate) supervision: Supervision,
    /// Our end of the sync pipe, open while we supervise: the child checks
    /// it to know we are alive.
    _parent_alive: OwnedFd,
    egress: Option<EgressRun>,
    cgroups: RunCgroups,
    /// Each tmpfs overlay upper (held past the run for its changes), and
    /// the lowers idmapped.
    overlays: crate::changes::OverlayRun,
    started: Instant,
    /// When the command exec'd.
    exec_at: Instant,
    timings: RunTimings,
    /// The run's `tracing` span.
    span: tracing::Span,
    reaped: bool,
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
    /// Called with each egress refusal as it happens.
    pub(crate) egress_hook: Option<EgressHook>,
    /// The bounds of a name pin's life, if not the forwarder's defaults.
    pub(crate) pin_ttl: Option<(std::time::Duration, std::time::Duration)>,
    /// The next run's cgroups, made ahead.
    pub(crate) cgroups_ahead: crate::cgroups::Ahead,
}

/// A caller's hook for egress refusals (see
/// [`Sandbox::on_egress_refusal`](crate::Sandbox::on_egress_refusal)).
#[derive(Clone)]
pub(crate) struct EgressHook(
    pub(crate) Arc<dyn Fn(&sandbox_net::forward::EgressRefusal) + Send + Sync>,
);

impl std::fmt::Debug for EgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EgressHook")
    }
}

/// The most bytes of each output stream passed on: `max_output_bytes`.
fn output_cap(inner: &Inner) -> u64 {
    match inner.policy.resources.max_output_bytes {
        Some(Limit::Max(n)) => n.bytes(),
        _ => u64::MAX,
    }
}

/// Kills a sandbox that will not be handed to the caller, and reaps it.
fn abandon(pid: i32, pidfd: impl AsFd) {
    let _ = rustix::process::pidfd_send_signal(pidfd.as_fd(), rustix::process::Signal::KILL);
    let _ = crate::sys::wait4(pid);
}

/// The parent's half of the setup: the id maps, the cgroups, and the
/// bytes that let the child go on.
fn parent_setup(
    plan: &plan::ParentPlan,
    pid: i32,
    sync_write: &OwnedFd,
    (cgroups, joins, in_cgroup): (&RunCgroups, &CgroupJoins, bool),
    egress: Option<(&Inner, &OwnedFd)>,
    overlay: Option<&OwnedFd>,
) -> Result<(Option<sandbox_net::forward::EgressForwarder>, Vec<PathBuf>)> {
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
    let idmapped = match overlay {
        Some(socket) => crate::idmap::send_lowers(pid, &plan.idmap_lowers, socket.as_fd())?,
        None => Vec::new(),
    };
    let go = || {
        rustix::io::write(sync_write, &[1])
            .map(drop)
            .map_err(Error::prepare_errno("start the sandbox"))
    };
    if plan.namespaces != 0 {
        // The child builds its root while we move it into the cgroups it
        // did not join itself (its first steps joined the v1 ones, and the
        // clone the v2 one where the kernel could); it waits for the
        // second byte before it forks the command.
        go()?;
        cgroups.attach_rest(pid, joins, in_cgroup)?;
    } else {
        cgroups.attach_rest(pid, joins, in_cgroup)?;
    }
    // The child handed the egress fds over in its network phase, before
    // it waits for the second byte.
    let forwarder = egress
        .map(|(inner, socket)| crate::forwarder::prepare_forwarder(inner, socket))
        .transpose()?;
    go()?;
    Ok((forwarder, idmapped))
}

/// What the setup pipe and the parent's half say together: `Ok` once the
/// command has exec'd; the failing step (the child's report explains more
/// than our broken pipe), a stuck one, or the parent's own error.
fn setup_outcome(
    record: Result<Setup>,
    parent_result: Result<()>,
    plan: &plan::ParentPlan,
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
    plan: &plan::ParentPlan,
    pid: i32,
    pidfd: BorrowedFd<'_>,
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
/// `readers`: piped stdout and stderr go to readers for the caller (see
/// `stdio::wire`).
pub(crate) fn start(
    inner: &Inner,
    spec: &CommandSpec,
    stdio: &StdioChoice,
    readers: bool,
) -> Result<Started> {
    if inner.decisions.fail_closed && !inner.report.downgrades.is_empty() {
        return Err(Error::Unavailable {
            downgrades: inner.report.downgrades.clone(),
        });
    }
    let span = tracing::info_span!(
        "sandbox_run",
        run_id = next_run_id(),
        program = %spec.program.to_string_lossy(),
        pid = tracing::field::Empty,
    );
    let _run = span.enter();
    let (sync_read, sync_write) = pipe("the sync pipe")?;
    let (setup_read, setup_write) = pipe("the setup pipe")?;
    let (status_read, status_write) = pipe("the status pipe")?;
    let prepared = stdio::prepare(stdio, readers, output_cap(inner))?;
    // The child hands the tap (egress runs) and each tmpfs overlay upper
    // over on these.
    let egress_sockets =
        plan::handoff_sockets(inner.decisions.network.egress_mtu().is_some(), "egress")?;
    let overlay_sockets = plan::handoff_sockets(
        crate::changes::handoff_wanted(&inner.policy, &inner.decisions),
        "overlay",
    )?;
    let limits = inner.decisions.cgroup_limits;
    let cgroups = if limits.any() {
        inner
            .cgroups_ahead
            .take(&inner.report.host.cgroups, &limits)?
    } else {
        RunCgroups::default()
    };
    let joins = cgroups.joins()?;
    let cgroup_tasks: Vec<std::ffi::c_int> =
        joins.tasks.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
    // A root caller's isolated run joins a network namespace made ahead.
    let netns = (inner.decisions.network == crate::network::NetworkPlan::Isolated
        && inner.decisions.namespaces.made()
        && inner.report.host.euid == 0)
        .then(crate::netns_pool::take)
        .flatten();
    let fds = PlanFds {
        sync_read: sync_read.as_raw_fd(),
        setup_write: setup_write.as_raw_fd(),
        status_write: status_write.as_raw_fd(),
        stdio: prepared.stdio_fds(),
        egress_socket: egress_sockets.as_ref().map(|(_, child)| child.as_fd()),
        pty: prepared.pty_plan(),
        cgroup_tasks: &cgroup_tasks,
        overlay_socket: overlay_sockets.as_ref().map(|(_, child)| child.as_fd()),
        netns: netns.as_ref().map(|fd| fd.as_fd()),
    };
    let planned_at = Instant::now();
    let plan = {
        let _plan = tracing::debug_span!("plan").entered();
        plan_run(inner, spec, fds)?
    };
    let mut timings = RunTimings {
        plan: planned_at.elapsed(),
        ..RunTimings::default()
    };
    let started = Instant::now();
    let into_cgroup = joins.into.as_ref().map(|(_, fd)| fd.as_fd());
    // The child's ends stay open until PID 1 has its copies.
    let (egress_parent, egress_child) = egress_sockets.unzip();
    let (overlay_parent, overlay_child) = overlay_sockets.unzip();
    let child_ends = (
        (sync_read, setup_write, status_write),
        (egress_child, overlay_child),
    );
    let parent_plan = &plan.parent;
    // The parent's half of the setup, once PID 1 exists (on a thread of its
    // own while a PID 1 sharing our memory runs: see `spawn_init`).
    // (With this thread's subscriber, wherever it runs.)
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let parent_half = |child: &sandbox_child::Starting<'_>| {
        drop(child_ends);
        let cloned = started.elapsed();
        let _dispatch = tracing::dispatcher::set_default(&dispatch);
        let _setup = tracing::debug_span!(parent: &span, "setup").entered();
        let parent_result = parent_setup(
            parent_plan,
            child.pid,
            &sync_write,
            (&cgroups, &joins, child.in_cgroup),
            egress_parent.as_ref().map(|socket| (inner, socket)),
            overlay_parent.as_ref(),
        );
        let (parent_result, forwarder, idmapped) = match parent_result {
            Ok((forwarder, idmapped)) => (Ok(()), forwarder, idmapped),
            Err(e) => (Err(e), None, Vec::new()),
        };
        let setup = await_setup(
            parent_plan,
            child.pid,
            child.pidfd,
            child.progress,
            parent_result,
            &setup_read,
        );
        (cloned, setup.map(|()| (forwarder, idmapped)))
    };
    let (
        sandbox_child::Init {
            pid,
            pidfd,
            progress,
            ..
        },
        (cloned, setup),
    ) = {
        let _clone = tracing::debug_span!("clone").entered();
        // (Back in the caller's namespace as soon as the clone returns.)
        let _joined = netns
            .as_ref()
            .map(crate::netns_pool::Joined::enter)
            .transpose()
            .map_err(|e| Error::Prepare {
                what: "join a network namespace made ahead".into(),
                error: std::io::Error::other(e),
            })?;
        spawn_init(
            plan.parent.namespaces,
            &plan.child,
            plan.parent.owner,
            into_cgroup,
            parent_half,
        )
        .map_err(Error::prepare_errno("clone the sandbox"))?
    };
    timings.clone = cloned;
    span.record("pid", pid);
    let (forwarder, idmapped) = setup?;
    // The child sent each tmpfs upper during its setup, which is done.
    let mut tmpfs_uppers = Vec::new();
    if let Some(socket) = &overlay_parent {
        for _ in 0..crate::changes::tmpfs_overlays(&inner.policy, inner.decisions.fs_mode) {
            match sandbox_net::recv_fd(socket) {
                Ok(fd) => tmpfs_uppers.push(fd),
                Err(e) => {
                    abandon(pid, &pidfd);
                    return Err(Error::Supervise {
                        what: "receive an overlay's upper",
                        error: std::io::Error::other(e),
                    });
                }
            }
        }
    }
    drop(overlay_parent);
    timings.setup = started.elapsed();
    timings.phases = RunTimings::phases_from(&plan.parent.phases, &progress, monotonic_ns());
    for (phase, took) in &timings.phases {
        tracing::debug!(phase, us = took.as_micros() as u64, "setup phase");
    }
    let wiring = match prepared.into_wiring(stdio, readers, output_cap(inner)) {
        Ok(wiring) => wiring,
        Err(e) => {
            abandon(pid, &pidfd);
            return Err(e);
        }
    };
    // The forwarder runs on a pool thread of the caller's, in the caller's
    // network namespace.
    drop(egress_parent);
    let egress = match forwarder.map(crate::egress_pool::run) {
        Some(Ok(egress)) => Some(egress),
        Some(Err(e)) => {
            abandon(pid, &pidfd);
            return Err(e);
        }
        None => None,
    };
    let pidfd = Arc::new(pidfd);
    let deadline = match inner.policy.resources.wall_time {
        Some(Limit::Max(t)) => Some(started + t.to_std()),
        _ => None,
    };
    Ok(Started {
        pid,
        supervision: Supervision::new(
            wiring.stdin_relay,
            wiring.outputs,
            Arc::clone(&pidfd),
            status_read,
            deadline,
            stdio.job_control.clone(),
        ),
        pidfd,
        stdin: wiring.stdin,
        readers: wiring.readers,
        terminal: wiring.terminal,
        _parent_alive: sync_write,
        egress,
        cgroups,
        overlays: crate::changes::OverlayRun {
            tmpfs_uppers,
            idmapped,
        },
        started,
        exec_at: Instant::now(),
        timings,
        span: span.clone(),
        reaped: false,
    })
}

impl Started {
    /// Runs the sandbox to its end: drains stdout and stderr (keeping at
    /// most `max_output_bytes` of each), kills it at the wall-clock limit,
    /// and collects the status and usage.
    pub(crate) fn supervise(mut self, inner: &Inner) -> Result<RunOutcome> {
        drop(self.stdin.take());
        relay::supervise_here(&mut self.supervision)?;
        self.finish(inner)
    }

    /// Once the supervision is done: reaps the sandbox and collects the
    /// status, the usage and what the relays kept.
    pub(crate) fn finish(mut self, inner: &Inner) -> Result<RunOutcome> {
        let timed_out = self.supervision.timed_out;
        let mut timings = std::mem::take(&mut self.timings);
        timings.supervise = self.exec_at.elapsed();
        let teardown_at = Instant::now();
        let _teardown = tracing::debug_span!(parent: &self.span, "teardown").entered();
        let usage =
            crate::sys::wait4(self.pid).map_err(Error::supervise("wait for the sandbox"))?;
        self.reaped = true;
        let egress = self.egress.as_mut().and_then(EgressRun::stop);
        let wall_time = self.started.elapsed();
        // PID 1 is gone: its last records, then EOF.
        self.supervision.read_status(true);
        let status = match self.supervision.command_status {
            Some(raw) => ExitStatus::from_wait_status(raw),
            // PID 1 was killed (timeout, kill()) before the command ended.
            None => ExitStatus::Signaled(libc::SIGKILL),
        };
        let [out, err] = std::mem::replace(
            &mut self.supervision.outputs,
            [Relay::none(), Relay::none()],
        );
        let (stdout, stdout_truncated) = out.into_captured();
        let (stderr, stderr_truncated) = err.into_captured();
        let mut outcome = RunOutcome {
            status,
            timed_out,
            oom_killed: self.cgroups.oom_killed(),
            pids_limit_hit: self.cgroups.pids_limit_hit(),
            stdout,
            stdout_truncated,
            stderr,
            stderr_truncated,
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
            timings: RunTimings::default(),
            changes: crate::changes::run_changes(
                &inner.policy,
                &inner.decisions,
                std::mem::take(&mut self.overlays),
            ),
        };
        // The run's cgroups go now, inside the teardown's time.
        drop(std::mem::take(&mut self.cgroups));
        timings.teardown = teardown_at.elapsed();
        tracing::info!(
            parent: &self.span,
            status = %outcome.status,
            timed_out,
            timings = %timings,
            "sandbox run ended"
        );
        outcome.timings = timings;
        Ok(outcome)
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
