//! Who a run is made by, and its user namespace's id maps.

use crate::decide::Decisions;

/// The host's nobody.
const NOBODY: u32 = 65534;

/// Who a run is made by, and the host id it takes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunIdentity {
    /// The caller's effective uid and gid.
    pub(crate) euid: u32,
    pub(crate) egid: u32,
    /// A root caller's run id (see `quotas::RunIds`).
    pub(crate) run_id: Option<u32>,
}

/// The uid and gid maps of the run's user namespace.
pub(super) fn id_maps(decisions: &Decisions, identity: RunIdentity) -> (String, String) {
    let RunIdentity { euid, egid, run_id } = identity;
    let root_caller = euid == 0;
    let (uid, gid) = (decisions.credentials.uid, decisions.credentials.gid);
    // The host uid the sandbox's user is: a root caller's run id (which
    // also owns the user namespace), else the host's nobody.
    let host_uid = run_id.unwrap_or(NOBODY);
    let id_map = |inside: u32, host: u32, mapped: u32| {
        if !root_caller {
            format!("{inside} {host} 1\n")
        } else if inside == 0 {
            // The sandbox's root is the host's nobody (or the run's own
            // uid), setup included.
            format!("0 {mapped} 1\n")
        } else {
            // Setup runs as root of the namespace (host root, no
            // capabilities outside it); the command as the host's nobody.
            format!("0 0 1\n{inside} {mapped} 1\n")
        }
    };
    (
        id_map(uid, euid, host_uid),
        id_map(gid, egid, run_id.unwrap_or(NOBODY)),
    )
}
