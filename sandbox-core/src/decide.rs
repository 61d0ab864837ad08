//! Deciding, per layer, what this host can enforce of a policy: enforce,
//! downgrade (with the reason), or (in fail mode) refuse. Each facility
//! decides its own part (`namespaces`, `mount`, `network`, `credentials`,
//! `seccomp`, `landlock`, `rlimit`, `cgroups::limits`, `quotas`) and
//! writes what it found into one [`Findings`]; this module only runs them
//! in order and assembles the report.

use sandbox_policy::{OnUnavailable, Policy, SeccompMode, User};
use serde::Serialize;

use crate::cgroups::CgroupLimits;
use crate::credentials::Credentials;
use crate::namespaces::Namespaces;
use crate::network::NetworkPlan;
use crate::probe::{Capability, HostCapabilities};
use crate::report::{Downgrade, EffectiveSandbox, Layer, LayerReport, Note};

/// What the run will do, layer by layer.
#[derive(Debug, Clone)]
pub(crate) struct Decisions {
    /// New user, mount, pid, ipc, uts and cgroup namespaces, or none.
    pub(crate) namespaces: Namespaces,
    /// The filesystem view actually built.
    pub(crate) fs_mode: sandbox_policy::FsMode,
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

/// What the facilities found while deciding: downgrades, notes, and the
/// mechanisms each layer is enforced by.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    downgrades: Vec<Downgrade>,
    notes: Vec<Note>,
    mechanisms: [Vec<String>; 4],
}

impl Findings {
    /// `layer` is not enforced as asked, because of `reason`.
    pub(crate) fn down(&mut self, layer: Layer, reason: impl Into<String>) {
        self.downgrades.push(Downgrade {
            layer,
            reason: reason.into(),
        });
    }

    /// Something the caller should know about `layer` that is not a
    /// downgrade.
    pub(crate) fn note(&mut self, layer: Layer, message: impl Into<String>) {
        self.notes.push(Note {
            layer,
            message: message.into(),
        });
    }

    /// One mechanism `layer` is enforced by, in the report's order.
    pub(crate) fn mechanism(&mut self, layer: Layer, text: impl Into<String>) {
        let index = match layer {
            Layer::Filesystem => 0,
            Layer::Network => 1,
            Layer::Privilege => 2,
            Layer::Resources => 3,
        };
        self.mechanisms[index].push(text.into());
    }

    fn into_report(self, policy: &Policy, host: &HostCapabilities) -> EffectiveSandbox {
        let mut report = EffectiveSandbox {
            policy: policy.clone(),
            filesystem: LayerReport::default(),
            network: LayerReport::default(),
            privilege: LayerReport::default(),
            resources: LayerReport::default(),
            downgrades: self.downgrades,
            notes: self.notes,
            host: host.clone(),
        };
        let layers = [
            Layer::Filesystem,
            Layer::Network,
            Layer::Privilege,
            Layer::Resources,
        ];
        for (layer, mechanisms) in layers.into_iter().zip(self.mechanisms) {
            let enforced = !report.downgrades.iter().any(|d| d.layer == layer);
            *report.layer_mut(layer) = LayerReport {
                enforced,
                mechanisms,
            };
        }
        report
    }
}

/// The kebab-case name serde gives a policy enum value.
pub(crate) fn name_of(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Why a capability is (un)available, as the probe said.
pub(crate) fn reason(capability: &Capability) -> &str {
    match capability {
        Capability::Available => "available",
        Capability::Unavailable { reason } | Capability::Unknown { reason } => reason,
    }
}

/// Decides what of `policy` (resolved) this host enforces.
pub(crate) fn decide(policy: &Policy, host: &HostCapabilities) -> (Decisions, EffectiveSandbox) {
    let mut found = Findings::default();
    let namespaces = Namespaces::decide(host);
    let fs_mode = crate::mount::decide(policy, &namespaces, &mut found);
    let network = NetworkPlan::decide(policy, host, &namespaces, fs_mode, &mut found);
    let credentials = Credentials::decide(policy, host, &namespaces, &mut found);
    let seccomp = crate::seccomp::decide(policy, host, &mut found);
    let landlock_abi = crate::landlock::decide(policy, host, &mut found);
    crate::rlimit::decide(policy, &namespaces, &mut found);
    let pids_by_nproc = credentials.pids_by_nproc(policy, host);
    let (cgroup_limits, nproc) = CgroupLimits::decide(policy, host, pids_by_nproc, &mut found);
    let quotas = crate::quotas::decide(policy, host, &namespaces, &credentials, &mut found);
    let decisions = Decisions {
        namespaces,
        fs_mode,
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

/// The uid and gid the sandbox's user has inside.
pub(crate) fn ids_inside(user: Option<User>) -> (u32, u32) {
    match user.unwrap_or(User::Nobody) {
        User::Nobody => (65534, 65534),
        User::Root => (0, 0),
        User::Uid(uid) => (uid, uid),
    }
}
