//! Who the command runs as: its uid and gid inside the sandbox, the host
//! ids they map to (a root caller's runs each get a host uid of their
//! own, see `quotas::RunIds`), and the privilege drop (groups, ids, every
//! capability set, `no_new_privs`).

use sandbox_policy::{Limit, Policy, User};

use crate::findings::{Findings, ids_inside};
use crate::host::HostCapabilities;
use crate::namespaces::Namespaces;
use crate::report::Layer;

/// The command's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Credentials {
    /// The uid inside the sandbox.
    pub(crate) uid: u32,
    /// The gid inside the sandbox.
    pub(crate) gid: u32,
    /// Each run's user namespace owned by, and its user mapped to, a host
    /// uid and gid of its own (root callers).
    pub(crate) run_ids: bool,
}

impl Credentials {
    /// The identity `policy` gets on this host, with its report lines.
    pub(crate) fn decide(
        policy: &Policy,
        host: &HostCapabilities,
        namespaces: &Namespaces,
        found: &mut Findings,
    ) -> Self {
        let user = policy.privilege.user;
        let (uid, gid) = ids_inside(user);
        // A root caller's runs each get a host uid and gid of their own,
        // which own their user namespace (see `quotas`).
        let run_ids =
            namespaces.made() && host.euid == 0 && crate::quotas::RunIds::default().mapped_here();
        if namespaces.made() {
            found.mechanism(
                Layer::Privilege,
                if host.euid == 0 {
                    format!(
                        "user namespace: runs as uid {uid} inside, {} outside; setup ran as the namespace's root and gave it up",
                        if run_ids {
                            "a host uid of the run's own (2^30 and up), which also owns its user namespace"
                        } else {
                            "the host's nobody (65534)"
                        }
                    )
                } else {
                    format!(
                        "user namespace: runs as uid {uid} inside, the caller's uid {} outside",
                        host.euid
                    )
                },
            );
            found.mechanism(
                Layer::Privilege,
                "pid, ipc, uts (hostname \"sandbox\") and cgroup namespaces",
            );
            if host.euid != 0 {
                found.note(
                    Layer::Privilege,
                    "unprivileged caller: the caller's supplementary groups stay (setgroups is denied in an unprivileged user namespace)",
                );
            }
        } else {
            found.down(
                Layer::Privilege,
                format!(
                    "privilege.user = {}: no user namespace ({}); the command runs as the caller, uid {}",
                    user.unwrap_or(User::Nobody),
                    namespaces.why_not(),
                    host.euid
                ),
            );
        }
        found.mechanism(
            Layer::Privilege,
            "no capabilities (effective, permitted, inheritable, ambient and bounding sets empty; securebits locked), no_new_privs, new session (setsid), parent-death signal, fds above 2 closed",
        );
        Self { uid, gid, run_ids }
    }

    /// Whether `resources.pids` is enforced by `RLIMIT_NPROC` under the
    /// run's own host uid: a root caller's run, with no pids cgroup it can
    /// make.
    pub(crate) fn pids_by_nproc(&self, policy: &Policy, host: &HostCapabilities) -> bool {
        self.run_ids
            && matches!(policy.resources.pids, Some(Limit::Max(_)))
            && host.cgroups.hierarchy_for("pids").is_none()
    }
}
