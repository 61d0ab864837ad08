//! The namespaces a run is made in: new user, mount, pid, ipc, uts and
//! cgroup namespaces where user namespaces work here, none where they do
//! not (every layer that needs them is then downgraded by its facility).

use crate::host::HostCapabilities;

/// Whether a run gets namespaces of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Namespaces {
    /// New user, mount, pid, ipc, uts and cgroup namespaces (and a network
    /// namespace, as the network plan says).
    New,
    /// None: user namespaces are unusable here, for this reason.
    Unavailable(String),
}

impl Namespaces {
    /// What the probe found.
    pub(crate) fn decide(host: &HostCapabilities) -> Self {
        if host.user_namespaces.is_available() {
            Self::New
        } else {
            Self::Unavailable(crate::findings::reason(&host.user_namespaces).to_string())
        }
    }

    /// Whether the run gets them.
    pub(crate) fn made(&self) -> bool {
        matches!(self, Self::New)
    }

    /// Why not ("available" when they are).
    pub(crate) fn why_not(&self) -> &str {
        match self {
            Self::New => "available",
            Self::Unavailable(why) => why,
        }
    }

    /// The `CLONE_NEW*` flags of the clone (the cgroup namespace is
    /// unshared later, once the parent has placed the child), with a new
    /// network namespace if `network`.
    pub(crate) fn clone_flags(&self, network: bool) -> libc::c_int {
        if !self.made() {
            return 0;
        }
        let mut flags = libc::CLONE_NEWUSER
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS;
        if network {
            flags |= libc::CLONE_NEWNET;
        }
        flags
    }
}
