//! Deciding, per layer, what this host can enforce of a policy: enforce,
//! downgrade (with the reason), or (in fail mode) refuse. Each facility
//! decides its own part (`namespaces`, `mount`, `network`, `credentials`,
//! `seccomp`, `landlock`, `rlimit`, `cgroups::limits`, `quotas`) and
//! writes what it found into one `Findings`; this module only runs them
//! in order and assembles the report.

use sandbox_policy::{OnUnavailable, Policy, SeccompMode};

use crate::cgroups::CgroupLimits;
use crate::credentials::Credentials;
use crate::findings::Findings;
use crate::host::HostCapabilities;
use crate::namespaces::Namespaces;
use crate::network::NetworkPlan;
use crate::report::EffectiveSandbox;

/// What the run will do, layer by layer.
#[derive(Debug, Clone)]
pub(crate) struct Decisions {
    /// New user, mount, pid, ipc, uts and cgroup namespaces, or none.
    pub(crate) namespaces: Namespaces,
    /// The filesystem view actually built.
    pub(crate) fs_mode: sandbox_policy::FsMode,
    /// Overlays with `fallback = "copy"` are copies (overlayfs cannot
    /// serve a tmpfs upper here).
    pub(crate) overlay_copy: bool,
    /// The network the run gets.
    pub(crate) network: NetworkPlan,
    /// The seccomp filter installed.
    pub(crate) seccomp: SeccompMode,
    /// The Landlock ABI used, if Landlock is applied.
    pub(crate) landlock_abi: Option<u32>,
    /// The limits enforced through the run's cgroups.
    pub(crate) cgroup_limits: CgroupLimits,
    /// Process limit enforced instead by `RLIMIT_NPROC` under a host uid
    /// of the run's own (root callers, where no pids cgroup is writable).
    pub(crate) nproc: Option<u32>,
    /// Who the command runs as, inside and outside.
    pub(crate) credentials: Credentials,
    /// The kernel quotas set in the run's user namespace.
    pub(crate) quotas: crate::quotas::QuotaPlan,
    /// `on_unavailable = "fail"`.
    pub(crate) fail_closed: bool,
}

/// Decides what of `policy` (resolved) this host enforces.
pub(crate) fn decide(policy: &Policy, host: &HostCapabilities) -> (Decisions, EffectiveSandbox) {
    let mut found = Findings::default();
    let namespaces = Namespaces::decide(host);
    let fs_mode = crate::mount::decide(policy, host, &namespaces, &mut found);
    let network = NetworkPlan::decide(policy, host, &namespaces, fs_mode, &mut found);
    let credentials = Credentials::decide(policy, host, &namespaces, &mut found);
    let seccomp = crate::seccomp::decide(policy, host, &mut found);
    let landlock_abi = crate::landlock::decide(policy, host, &mut found);
    crate::rlimit::decide(policy, &namespaces, &mut found);
    let pids_by_nproc = credentials.pids_by_nproc(policy, host);
    let (cgroup_limits, nproc) = CgroupLimits::decide(policy, host, pids_by_nproc, &mut found);
    let quotas = crate::quotas::decide(policy, host, &namespaces, credentials.run_ids, &mut found);
    if credentials.run_ids && !crate::mount::overlays(policy, fs_mode).is_empty() {
        found.mechanism(
            crate::report::Layer::Filesystem,
            format!(
                "overlay lowers idmapped to the run's user namespace where their filesystem allows (ext4, xfs, btrfs, tmpfs 6.3+; not overlayfs): a file keeps its owner for the ids the run maps (0 and {}), others show as 65534; each overlay's outcome says whether it was",
                credentials.uid
            ),
        );
    }
    let decisions = Decisions {
        namespaces,
        fs_mode,
        overlay_copy: !host.overlay_tmpfs_upper.is_available(),
        network,
        seccomp,
        landlock_abi,
        cgroup_limits,
        nproc,
        credentials,
        quotas,
        fail_closed: policy.on_unavailable.unwrap_or(OnUnavailable::Fail) == OnUnavailable::Fail,
    };
    (decisions, found.into_report(policy, host))
}
