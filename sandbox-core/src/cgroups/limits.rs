//! Which of the policy's memory, pids and cpu limits this host enforces
//! through the run's cgroups, with the report lines (and the downgrade
//! that names what is missing where one cannot be).

use sandbox_policy::{Limit, Policy};

use super::CgroupLimits;
use crate::findings::Findings;
use crate::host::HostCapabilities;
use crate::report::Layer;

impl CgroupLimits {
    /// The limits `policy` gets on this host, and the `RLIMIT_NPROC`
    /// that stands in for the pids limit when `pids_by_nproc` (see
    /// `Credentials::pids_by_nproc`).
    pub(crate) fn decide(
        policy: &Policy,
        host: &HostCapabilities,
        pids_by_nproc: bool,
        found: &mut Findings,
    ) -> (Self, Option<u32>) {
        let r = &policy.resources;
        let memory = match r.memory {
            Some(Limit::Max(m)) => {
                limit(host, "memory", format!("memory {m}"), found).then_some(m.bytes())
            }
            _ => None,
        };
        let mut nproc = None;
        let pids = match r.pids {
            // Without a pids cgroup, a root caller can still make the limit
            // the run's own: RLIMIT_NPROC counts per user, and the run gets
            // a host uid no other process has.
            Some(Limit::Max(n)) if pids_by_nproc => {
                found.mechanism(
                    Layer::Resources,
                    format!(
                        "pids {n}: RLIMIT_NPROC, the sandbox's user mapped to a host uid of the run's own (no writable pids cgroup)"
                    ),
                );
                nproc = Some(n);
                None
            }
            Some(Limit::Max(n)) => limit(host, "pids", format!("pids {n}"), found).then_some(n),
            _ => None,
        };
        let cpu = match r.cpu {
            Some(Limit::Max(n)) => {
                limit(host, "cpu", format!("cpu {n}% of one CPU"), found).then_some(n)
            }
            _ => None,
        };
        let limits = Self { memory, pids, cpu };
        limits.tracking(host, found);
        (limits, nproc)
    }

    /// Where the run gets cgroups at all, the unified hierarchy tracks it
    /// too (unless a controller there already put it there).
    fn tracking(&self, host: &HostCapabilities, found: &mut Findings) {
        let v2_limits = [
            ("memory", self.memory.is_some()),
            ("pids", self.pids.is_some()),
            ("cpu", self.cpu.is_some()),
        ]
        .iter()
        .any(|(c, on)| *on && host.cgroups.hierarchy_for(c).is_some_and(|h| h.v2));
        if let Some((mount, parent)) = host.cgroups.tracking_parent()
            && self.any()
        {
            found.mechanism(
                Layer::Resources,
                if v2_limits {
                    "the run's cgroup v2 tracks all of it as well (cgroup.events; cgroup.kill at teardown)"
                        .to_string()
                } else {
                    format!(
                        "the run tracked in a per-run cgroup v2 beneath {} as well (cgroup.events; cgroup.kill at teardown)",
                        super::beneath(&mount, &parent).display()
                    )
                },
            );
        }
    }
}

/// Whether `controller` has a hierarchy where this caller can make a run's
/// cgroup: the mechanism line if so, else the downgrade naming why not.
fn limit(host: &HostCapabilities, controller: &str, asked: String, found: &mut Findings) -> bool {
    if let Some(h) = host.cgroups.hierarchy_for(controller) {
        found.mechanism(
            Layer::Resources,
            format!("{asked}: {}", h.describe(controller)),
        );
        return true;
    }
    let v2_why = host
        .cgroups
        .unified
        .as_ref()
        .map(|u| match (&u.placement, &u.placement_failure) {
            (Some(p), _) => format!(
                "; cgroup v2 gives run cgroups beneath {} only {}",
                super::beneath(&u.mount, &p.parent).display(),
                if p.controllers.is_empty() {
                    "no controller".to_string()
                } else {
                    p.controllers.join(", ")
                }
            ),
            (None, Some(why)) => format!("; cgroup v2: {why}"),
            (None, None) => String::new(),
        })
        .unwrap_or_default();
    found.down(
        Layer::Resources,
        format!(
            "{asked}: no cgroup with the {controller} controller where this caller can make a run's cgroup{v2_why}{}",
            if host.euid != 0 {
                " (unprivileged: delegate a subtree, or give one with Sandbox::with_cgroup_placement)"
            } else {
                ""
            }
        ),
    );
    false
}
