//! The public face: `Sandbox` (its commands: `command.rs`).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;

use sandbox_policy::{Policy, SeccompMode};

use crate::cgroups::CgroupPlacement;
use crate::command::SandboxCommand;
use crate::decide::decide;
use crate::error::{Error, Result};
use crate::host::HostCapabilities;
use crate::probe::probe;
use crate::quotas::RunIds;
use crate::report::EffectiveSandbox;
use crate::run::Inner;
use crate::seccomp::{SeccompOptions, SeccompProgram};

/// A policy, checked against this host and ready to run commands.
///
/// Making a `Sandbox` resolves the policy, probes the host (once per
/// process) and compiles the seccomp filter; each
/// [`command`](Sandbox::command) then only builds its plan and clones.
/// A `Sandbox` is cheap to clone and may be shared between threads.
///
/// # Examples
///
/// ```no_run
/// use sandbox_core::Sandbox;
///
/// let sandbox = Sandbox::from_profile("default")?;
/// let outcome = sandbox.command("sh").args(["-c", "id -u; hostname"]).output()?;
/// assert!(outcome.success());
/// assert_eq!(outcome.stdout, b"65534\nsandbox\n");
/// println!("{}", outcome.report);
/// # Ok::<(), sandbox_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl Sandbox {
    /// A sandbox for `policy`, completed with the `default` profile for
    /// whatever it leaves unset. Empty run cgroups that callers which died
    /// left behind (`sandbox-<pid>-<n>` whose pid is gone) are removed.
    ///
    /// This does not refuse a policy the host cannot enforce: see
    /// [`report`](Sandbox::report); a run of it returns
    /// [`Error::Unavailable`] (with `on_unavailable = "fail"`).
    ///
    /// # Errors
    ///
    /// [`Error::Policy`] if the policy is invalid; [`Error::Prepare`] if
    /// the seccomp filter cannot be compiled for this architecture;
    /// [`Error::UnsupportedKernel`] on a kernel older than
    /// [`MINIMUM_KERNEL`](crate::MINIMUM_KERNEL).
    pub fn new(policy: Policy) -> Result<Self> {
        let began = std::time::Instant::now();
        let _decide = tracing::info_span!("sandbox_decide").entered();
        let host = probe();
        let probed = began.elapsed();
        // Empty run cgroups of callers that died without removing them.
        crate::cgroups::remove_stale_runs(&host.cgroups);
        let sandbox = Self::with_host(policy, host)?;
        tracing::info!(
            probe_us = probed.as_micros() as u64,
            decide_us = (began.elapsed() - probed).as_micros() as u64,
            fully_enforced = sandbox.report().fully_enforced(),
            "sandbox decided"
        );
        Ok(sandbox)
    }

    /// A sandbox for a built-in profile: `default`, `strict` or
    /// `networked`.
    ///
    /// # Errors
    ///
    /// [`Error::Policy`] for an unknown name.
    pub fn from_profile(name: &str) -> Result<Self> {
        Self::new(Policy::profile(name)?)
    }

    /// Like [`new`](Sandbox::new), against given host capabilities (to
    /// see what a policy would get on another host, or in tests).
    ///
    /// # Errors
    ///
    /// As for [`new`](Sandbox::new).
    pub fn with_host(policy: Policy, host: &HostCapabilities) -> Result<Self> {
        if !crate::host::kernel_supported(&host.kernel) {
            return Err(Error::UnsupportedKernel {
                release: host.kernel.clone(),
            });
        }
        let policy = policy.resolved();
        policy.validate()?;
        let (decisions, mut report) = decide(&policy, host);
        if decisions.fs_mode != sandbox_policy::FsMode::Off {
            let reachable = crate::sockets::check_binds(&policy)?;
            report
                .filesystem
                .mechanisms
                .extend(crate::sockets::report_lines(
                    &policy,
                    decisions.fs_mode,
                    &reachable,
                ));
        }
        let options = SeccompOptions::new(policy.privilege.allow_nested_userns.unwrap_or(false))
            .with_socket_families(policy.privilege.socket_families.as_deref().unwrap_or(&[]));
        let compiled = match decisions.seccomp {
            SeccompMode::Off => None,
            SeccompMode::Default => Some(SeccompProgram::default_filter_with(&options)),
            SeccompMode::Strict => Some(SeccompProgram::strict_filter_with(&options)),
        };
        let seccomp = compiled
            .transpose()
            .map_err(|e| Error::Prepare {
                what: "compile the seccomp filter".into(),
                error: std::io::Error::other(e),
            })?
            .map(Arc::new);
        Ok(Self {
            inner: Arc::new(Inner {
                policy,
                decisions,
                report,
                seccomp,
                dns_upstream: None,
                run_ids: RunIds::default(),
                egress_hook: None,
                pin_ttl: None,
                cgroups_ahead: crate::cgroups::Ahead::default(),
            }),
        })
    }

    /// Sends the sandbox's DNS queries (with `network.dns = true`, to the
    /// gateway its `/etc/resolv.conf` names) to `upstream` instead of the
    /// host's resolver (the first `nameserver` of the host's
    /// `/etc/resolv.conf`).
    ///
    /// ```no_run
    /// use sandbox_core::Sandbox;
    ///
    /// let sandbox = Sandbox::from_profile("networked")?
    ///     .with_dns_upstream("192.0.2.53:53".parse().unwrap());
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    #[must_use]
    pub fn with_dns_upstream(mut self, upstream: std::net::SocketAddr) -> Self {
        Arc::make_mut(&mut self.inner).dns_upstream = Some(upstream);
        self
    }

    /// Calls `hook` with each egress refusal of every run as it happens
    /// (what the forwarder refused and what the kernel's ruleset refused:
    /// when, the name or address, port, protocol and why), on the
    /// forwarder's thread: it must not block. Each run's
    /// [`RunOutcome::egress`](crate::RunOutcome::egress) lists them too.
    ///
    /// ```no_run
    /// use sandbox_core::Sandbox;
    ///
    /// let sandbox = Sandbox::from_profile("networked")?
    ///     .on_egress_refusal(|refusal| eprintln!("refused: {refusal}"));
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    #[must_use]
    pub fn on_egress_refusal(
        mut self,
        hook: impl Fn(&sandbox_net::forward::EgressRefusal) + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.inner).egress_hook = Some(crate::run::EgressHook(Arc::new(hook)));
        self
    }

    /// Bounds how long a DNS answer's addresses stay pinned to an allowed
    /// name (egress by name): the answer's TTL, raised to `min` and
    /// lowered to `max` (by default 30 s and 1 h). Shorter pins follow a
    /// name's addresses more closely; a connection made while its pin
    /// lived is kept when the pin expires.
    ///
    /// # Errors
    ///
    /// [`Error::Prepare`] unless `1 s <= min <= max <= 1 day`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use sandbox_core::Sandbox;
    ///
    /// let sandbox = Sandbox::from_profile("networked")?
    ///     .with_pin_ttl(Duration::from_secs(5), Duration::from_secs(300))?;
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    pub fn with_pin_ttl(
        mut self,
        min: std::time::Duration,
        max: std::time::Duration,
    ) -> Result<Self> {
        let day = std::time::Duration::from_secs(86_400);
        if min < std::time::Duration::from_secs(1) || min > max || max > day {
            return Err(Error::Prepare {
                what: format!("bound name pins to {min:?}..={max:?}"),
                error: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the bounds must satisfy 1 s <= min <= max <= 1 day",
                ),
            });
        }
        Arc::make_mut(&mut self.inner).pin_ttl = Some((min, max));
        Ok(self)
    }

    /// Takes a root caller's run ids from `ids` instead of 2^30 and up:
    /// each run's user namespace is owned by, and its user is, a host uid
    /// (and gid) of this range that no other run of the process holds at
    /// the same time, so that the kernel's per-user counters (inotify,
    /// queued signals, pipe buffers, process counts, …) are the run's own.
    /// Files a run creates in a writable bind are owned by that uid.
    ///
    /// ```no_run
    /// use sandbox_core::{RunIds, Sandbox};
    ///
    /// let ids = RunIds::new(2_000_000_000, 1_000_000).expect("a valid range");
    /// let sandbox = Sandbox::from_profile("default")?.with_run_ids(ids)?;
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::RunIdsUnmapped`] if this process's user namespace does not
    /// map every id of the range (as uid and gid), or its runs cannot take
    /// run ids at all (the caller is not root, or the default range is not
    /// mapped either: the report then says what its runs share).
    pub fn with_run_ids(mut self, ids: RunIds) -> Result<Self> {
        if !self.inner.decisions.credentials.run_ids || !ids.mapped_here() {
            return Err(Error::RunIdsUnmapped {
                first: ids.first,
                count: ids.count,
            });
        }
        Arc::make_mut(&mut self.inner).run_ids = ids;
        Ok(self)
    }

    /// Sets the MTU of the sandbox's egress link (`tap0`; 65520 unless
    /// set). A smaller MTU costs throughput: one frame per MTU crosses
    /// the forwarder.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCommand`] for an MTU outside 1280 (IPv6's minimum)
    /// ..= 65520.
    pub fn with_egress_mtu(mut self, mtu: u32) -> Result<Self> {
        if !(1280..=65520).contains(&mtu) {
            return Err(Error::InvalidCommand {
                reason: format!("egress MTU {mtu} is outside 1280..=65520"),
            });
        }
        let decisions = &mut Arc::make_mut(&mut self.inner).decisions;
        decisions.network = decisions.network.with_egress_mtu(mtu);
        Ok(self)
    }

    /// Chooses where this sandbox's runs get their cgroup v2 (the probe
    /// used [`CgroupPlacement::Auto`]), and decides again what the host
    /// enforces with it: see [`CgroupPlacement`] for the strategies.
    ///
    /// ```no_run
    /// use sandbox_core::{CgroupPlacement, Sandbox};
    ///
    /// let sandbox = Sandbox::from_profile("default")?
    ///     .with_cgroup_parent("/sys/fs/cgroup/ci.slice/jobs")?;
    /// println!("{}", sandbox.report());
    /// # Ok::<(), sandbox_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Prepare`] when the host has no cgroup v2 hierarchy, or a
    /// [`Parent`](CgroupPlacement::Parent) or
    /// [`MoveCgroupToLeaf`](CgroupPlacement::MoveCgroupToLeaf) placement
    /// cannot be made (the reason says which step failed; a move that
    /// failed is undone).
    pub fn with_cgroup_placement(self, placement: CgroupPlacement) -> Result<Self> {
        let mut host = self.inner.report.host.clone();
        let Some(unified) = host.cgroups.unified.as_mut() else {
            if placement == CgroupPlacement::Disabled {
                return Ok(self);
            }
            return Err(Error::Prepare {
                what: format!("place run cgroups ({placement:?})"),
                error: std::io::Error::other("this host has no cgroup v2 hierarchy mounted"),
            });
        };
        match crate::cgroups::place(&unified.mount, &unified.own, &placement) {
            Ok(p) => {
                crate::cgroups::remove_stale(&unified.mount, &p.parent);
                unified.placement = Some(p);
                unified.placement_failure = None;
            }
            Err(why) if placement == CgroupPlacement::Disabled => {
                unified.placement = None;
                unified.placement_failure = Some(why);
            }
            Err(why) => {
                return Err(Error::Prepare {
                    what: format!("place run cgroups ({placement:?})"),
                    error: std::io::Error::other(why),
                });
            }
        }
        let Inner {
            policy,
            decisions,
            dns_upstream,
            egress_hook,
            pin_ttl,
            ..
        } = &*self.inner;
        let mut rebuilt = Self::with_host(policy.clone(), &host)?;
        let inner = Arc::make_mut(&mut rebuilt.inner);
        inner.dns_upstream = *dns_upstream;
        inner.egress_hook = egress_hook.clone();
        inner.pin_ttl = *pin_ttl;
        if let Some(mtu) = decisions.network.egress_mtu() {
            inner.decisions.network = inner.decisions.network.with_egress_mtu(mtu);
        }
        Ok(rebuilt)
    }

    /// Runs' cgroups beneath `parent`, a delegated cgroup v2 the caller was
    /// given (absolute, or relative to the cgroup v2 mount): shorthand for
    /// [`with_cgroup_placement`](Sandbox::with_cgroup_placement)`(CgroupPlacement::Parent(parent))`.
    ///
    /// # Errors
    ///
    /// As for [`with_cgroup_placement`](Sandbox::with_cgroup_placement).
    pub fn with_cgroup_parent(self, parent: impl Into<PathBuf>) -> Result<Self> {
        self.with_cgroup_placement(CgroupPlacement::Parent(parent.into()))
    }

    /// What a run would be confined by here: per layer, enforced or not
    /// and by what, with the downgrades and notes.
    pub fn report(&self) -> &EffectiveSandbox {
        &self.inner.report
    }

    /// The resolved policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// A command to run in this sandbox. Like [`std::process::Command`],
    /// a program without a `/` is looked up in the sandbox's `PATH`.
    pub fn command(&self, program: impl AsRef<OsStr>) -> SandboxCommand {
        SandboxCommand::new(Arc::clone(&self.inner), program.as_ref())
    }
}
