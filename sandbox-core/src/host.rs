//! What this host can enforce, as the probe found it: plain data that
//! every facility's decision reads (the probing itself is `probe`).

use serde::{Deserialize, Serialize};

use crate::cgroups::CgroupSupport;

/// Whether a kernel facility is usable here, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Capability {
    /// Tried, and it works.
    Available,
    /// Tried, and it does not work; the reason says what failed.
    Unavailable {
        /// What failed, with the errno.
        reason: String,
    },
    /// Not tried (yet): the reason says why.
    Unknown {
        /// Why it was not tried.
        reason: String,
    },
}

impl Capability {
    /// Whether it is available.
    pub fn is_available(&self) -> bool {
        matches!(self, Capability::Available)
    }

    pub(crate) fn from_result<E: std::fmt::Display>(what: &str, result: Result<(), E>) -> Self {
        match result {
            Ok(()) => Capability::Available,
            Err(e) => Capability::Unavailable {
                reason: format!("{what}: {e}"),
            },
        }
    }
}

/// The host's sandboxing facilities, as [`probe`](crate::probe()) found them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HostCapabilities {
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// The effective uid of the caller.
    pub euid: u32,
    /// A user namespace can be created, mapped, and used to mount (tried in
    /// a child process: unshare, uid/gid maps, a private mount namespace, a
    /// tmpfs mount).
    pub user_namespaces: Capability,
    /// `openat2(2)` with `RESOLVE_*` flags.
    pub openat2: Capability,
    /// The Landlock ABI version, if Landlock is enabled.
    pub landlock_abi: Option<u32>,
    /// Landlock, with the reason when it is not usable.
    pub landlock: Capability,
    /// seccomp filters that return an errno.
    pub seccomp_filter: Capability,
    /// The cgroup hierarchies and whether the caller can create cgroups
    /// beneath its own.
    pub cgroups: CgroupSupport,
    /// `/dev/net/tun` can be opened.
    pub tun: Capability,
    /// nf_tables usable inside a user namespace: the very batch an
    /// allowlisted run installs (table, chains, rules) sent over netlink in
    /// a new network namespace of a new user namespace (tried in the same
    /// throwaway child as `user_namespaces`).
    pub nftables_in_userns: Capability,
    /// The kernel's per-user counters can be capped in a user namespace of
    /// the run's own: every `/proc/sys/user/max_*` a run writes, written in
    /// the same throwaway child as `user_namespaces`.
    pub kernel_quotas: Capability,
    /// A tmpfs made in a user namespace stores `user.` extended
    /// attributes (Linux 6.6+): what overlayfs in the sandbox's user
    /// namespace (`userxattr`) needs of a tmpfs upper to delete a lower
    /// directory. Tried in a throwaway child.
    pub overlay_tmpfs_upper: Capability,
}

/// The oldest kernel supported, as (major, minor): Ubuntu 22.04's 5.15.
/// Older kernels lack parts the spawn pipeline relies on without a
/// fallback (`cgroup.kill` 5.14, `mount_setattr` 5.12, Landlock 5.13,
/// `openat2` 5.6); features newer than this one are probed, each by trying
/// it. [`Sandbox`](crate::Sandbox) refuses an older kernel with
/// [`Error::UnsupportedKernel`](crate::Error::UnsupportedKernel).
pub const MINIMUM_KERNEL: (u32, u32) = (5, 15);

/// Whether `release` (`uname -r`: `6.1.0-57-amd64`) is at least
/// [`MINIMUM_KERNEL`]. A release that does not parse is given the benefit
/// of the doubt (the probes still decide each feature).
pub(crate) fn kernel_supported(release: &str) -> bool {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= MINIMUM_KERNEL,
        _ => true,
    }
}
