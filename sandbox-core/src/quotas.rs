//! The kernel's per-user counters (`resources.kernel`), and who pays them.
//!
//! inotify instances and watches, fanotify groups and marks, namespaces and
//! queued signals are counted by the kernel per user and per user
//! namespace, not per cgroup. A sandbox's user namespace is charged to its
//! owner in the parent namespace, so without more a run draws on its
//! caller's share: host root's, for a root caller, and one run holding 128
//! inotify instances leaves the host's services none.
//!
//! Two things keep a run to its own share:
//! - the run's user namespace gets its own caps: `/proc/sys/user/max_*`
//!   written by the sandbox's setup (it holds `CAP_SYS_RESOURCE` there
//!   until it drops everything), and `RLIMIT_SIGPENDING` for the command;
//! - for a root caller, the namespace is owned by a host uid of the run's
//!   own (see [`RunIds`]), which is also the host uid the sandbox's user
//!   is: what the run holds is charged to that uid, never to host root,
//!   and no two runs share a per-user counter (pipe buffer pages,
//!   `RLIMIT_NPROC`, …). An unprivileged caller cannot do that: its runs
//!   share its own counters, and the report says which.

use sandbox_policy::{Limit, Policy};

/// What a run sets in its user namespace, decided once per [`Sandbox`].
///
/// [`Sandbox`]: crate::Sandbox
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct QuotaPlan {
    /// `/proc/sys/user/<name>` and the value written there.
    pub(crate) sysctls: Vec<(&'static str, u32)>,
    /// `RLIMIT_SIGPENDING` for the command.
    pub(crate) pending_signals: Option<u32>,
}

/// The sysctls each `resources.kernel` field sets.
const SYSCTLS: [(&str, &[&str]); 6] = [
    ("inotify_instances", &["max_inotify_instances"]),
    ("inotify_watches", &["max_inotify_watches"]),
    ("fanotify_groups", &["max_fanotify_groups"]),
    ("fanotify_marks", &["max_fanotify_marks"]),
    (
        "namespaces",
        &[
            "max_pid_namespaces",
            "max_mnt_namespaces",
            "max_net_namespaces",
            "max_uts_namespaces",
            "max_ipc_namespaces",
            "max_cgroup_namespaces",
            "max_time_namespaces",
        ],
    ),
    ("user_namespaces", &["max_user_namespaces"]),
];

/// Every sysctl a run may write, for the probe to try.
pub(crate) fn all_sysctls() -> impl Iterator<Item = &'static str> {
    SYSCTLS.iter().flat_map(|(_, names)| names.iter().copied())
}

/// The quotas a run of `policy` sets. User namespaces are capped at 0
/// unless nested ones are allowed, whatever `user_namespaces` says (the
/// seccomp filter refuses them too; this holds with seccomp off).
pub(crate) fn plan(policy: &Policy) -> QuotaPlan {
    let quotas = &policy.resources.kernel;
    let nested = policy.privilege.allow_nested_userns.unwrap_or(false);
    let mut sysctls = Vec::new();
    for ((field, value), (_, names)) in quotas.fields().into_iter().zip(SYSCTLS) {
        let value = match (field, value) {
            ("user_namespaces", _) if !nested => Some(0),
            (_, Some(Limit::Max(n))) => Some(n),
            _ => None,
        };
        if let Some(n) = value {
            sysctls.extend(names.iter().map(|name| (*name, n)));
        }
    }
    QuotaPlan {
        sysctls,
        pending_signals: match quotas.pending_signals {
            Some(Limit::Max(n)) => Some(n),
            _ => None,
        },
    }
}

/// The quotas a run sets, with their report lines: none without a user
/// namespace of the run's own, or where the probe could not set them.
pub(crate) fn decide(
    policy: &Policy,
    host: &crate::host::HostCapabilities,
    namespaces: &crate::namespaces::Namespaces,
    run_ids: bool,
    found: &mut crate::findings::Findings,
) -> QuotaPlan {
    use crate::report::Layer;
    let asked = !policy.resources.kernel.is_unset();
    if !namespaces.made() {
        if asked {
            found.down(
                Layer::Resources,
                format!(
                    "resources.kernel: the quotas are set in the run's own user namespace, and user namespaces are unusable here ({})",
                    namespaces.why_not()
                ),
            );
        }
        return QuotaPlan::default();
    }
    let (lines, shared) = report(policy, host.euid == 0, run_ids);
    let available = host.kernel_quotas.is_available();
    if available {
        for line in lines {
            found.mechanism(Layer::Resources, line);
        }
    } else if asked {
        found.down(
            Layer::Resources,
            format!(
                "resources.kernel: the run's user namespace cannot cap them here ({})",
                crate::findings::reason(&host.kernel_quotas)
            ),
        );
    }
    if let Some(shared) = shared {
        found.note(Layer::Resources, shared);
    }
    if available {
        plan(policy)
    } else {
        QuotaPlan::default()
    }
}

/// What the report says of the quotas: the mechanism lines, and for an
/// unprivileged caller the note of what its runs still share with it.
fn report(policy: &Policy, root_caller: bool, run_ids: bool) -> (Vec<String>, Option<String>) {
    let mut lines = Vec::new();
    let set: Vec<String> = policy
        .resources
        .kernel
        .fields()
        .iter()
        .filter_map(|(name, value)| {
            let value = match (*name, value) {
                ("user_namespaces", _)
                    if !policy.privilege.allow_nested_userns.unwrap_or(false) =>
                {
                    "0".to_string()
                }
                (_, Some(Limit::Max(n))) => n.to_string(),
                _ => return None,
            };
            Some(format!("{} {value}", name.replace('_', " ")))
        })
        .collect();
    if !set.is_empty() {
        lines.push(format!(
            "kernel quotas in the run's own user namespace (/proc/sys/user/max_*, RLIMIT_SIGPENDING): {}",
            set.join(", ")
        ));
    }
    if root_caller && !run_ids {
        return (
            lines,
            Some(format!(
                "this process's user namespace does not map the run ids ({}..): every run's user is the host's nobody and its user namespace host root's, so host root's per-user counters (inotify, fanotify, namespaces, queued signals) are charged, and nobody's (pipe buffer pages, process counts) shared between runs (each run capped by the quotas above)",
                RunIds::default().first
            )),
        );
    }
    if root_caller {
        lines.push(
            "per-user kernel counters charged to a host uid and gid of the run's own (they own its user namespace and are its user's): inotify, fanotify, namespaces, queued signals, pipe buffer pages and process counts are the run's, never host root's".into(),
        );
        (lines, None)
    } else {
        (
            lines,
            Some(
                "an unprivileged caller's runs are charged to its own uid: inotify, fanotify, namespaces, queued signals, pipe buffer pages and its process count are shared between it and all its runs (each run capped by the quotas above)".into(),
            ),
        )
    }
}

/// Host ids for runs of a root caller: each run's user namespace is owned
/// by, and its user mapped to, a uid (and gid) of this range that no other
/// run of this process holds at the same time.
///
/// The default range, 2^30 and up, is above every real account and every
/// subordinate range `useradd` hands out (100000 + 65536 per user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunIds {
    /// The first id.
    pub first: u32,
    /// How many ids, from `first`.
    pub count: u32,
}

impl Default for RunIds {
    fn default() -> Self {
        Self {
            first: 1 << 30,
            count: 1 << 30,
        }
    }
}

impl RunIds {
    /// A range of `count` ids from `first`.
    ///
    /// # Errors
    ///
    /// A message if the range is empty, overlaps the ids below 65536
    /// (accounts, and the overflow id 65534), or runs past 2^32 − 2.
    pub fn new(first: u32, count: u32) -> Result<Self, String> {
        let last = u64::from(first) + u64::from(count);
        if count == 0 {
            Err("an empty range of run ids".into())
        } else if first < 65536 {
            Err(format!(
                "run ids from {first}: below 65536 they could be an account's (or nobody's)"
            ))
        } else if last > u64::from(u32::MAX - 1) {
            Err(format!(
                "run ids {first}..{last}: past 4294967294 (the kernel's invalid id)"
            ))
        } else {
            Ok(Self { first, count })
        }
    }

    /// Whether the caller's user namespace maps every id of the range, as
    /// uid and as gid (a root caller in a container whose namespace maps
    /// 65536 ids cannot take ids from 2^30).
    pub(crate) fn mapped_here(&self) -> bool {
        static MAPS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
        let (uids, gids) = MAPS.get_or_init(|| {
            let read = |file| std::fs::read_to_string(file).unwrap_or_default();
            (read("/proc/self/uid_map"), read("/proc/self/gid_map"))
        });
        self.covered_by(uids) && self.covered_by(gids)
    }

    /// Whether one line of an id map (`inside outside count`, as
    /// `/proc/self/uid_map` has them) covers the whole range.
    fn covered_by(&self, map: &str) -> bool {
        let (first, end) = (
            u64::from(self.first),
            u64::from(self.first) + u64::from(self.count),
        );
        map.lines().any(|line| {
            let mut f = line.split_whitespace().map(|n| n.parse::<u64>().ok());
            match (f.next().flatten(), f.next().flatten(), f.next().flatten()) {
                (Some(inside), Some(_), Some(count)) => inside <= first && end <= inside + count,
                _ => false,
            }
        })
    }

    /// The id for the next run of this process: from its pid and a
    /// counter, so that concurrent runs of one process differ, and
    /// processes differ unless their pids collide in the range.
    pub(crate) fn next(&self) -> u32 {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let run = u64::from(COUNTER.fetch_add(1, Ordering::Relaxed) % (1 << 11));
        let slot = ((u64::from(std::process::id()) << 11) + run) % u64::from(self.count);
        self.first + slot as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_caps_every_counter_and_user_namespaces_at_0() {
        let plan = plan(&Policy::default().resolved());
        let get = |name: &str| plan.sysctls.iter().find(|(n, _)| *n == name).map(|p| p.1);
        assert_eq!(get("max_inotify_instances"), Some(32));
        assert_eq!(get("max_user_namespaces"), Some(0));
        assert_eq!(get("max_time_namespaces"), Some(64));
        assert_eq!(plan.pending_signals, Some(1024));
        assert_eq!(plan.sysctls.len(), all_sysctls().count());
        let nested = Policy::from_toml_str(
            "[privilege]\nallow_nested_userns = true\n[resources.kernel]\nuser_namespaces = 3\ninotify_watches = \"unlimited\"\n",
        )
        .unwrap()
        .resolved();
        let plan = super::plan(&nested);
        let get = |name: &str| plan.sysctls.iter().find(|(n, _)| *n == name).map(|p| p.1);
        assert_eq!(get("max_user_namespaces"), Some(3));
        assert_eq!(get("max_inotify_watches"), None, "unlimited: not written");
    }

    #[test]
    fn run_ids_stay_in_their_range() {
        let ids = RunIds::new(100_000_000, 10).unwrap();
        for _ in 0..100 {
            let id = ids.next();
            assert!((100_000_000..100_000_010).contains(&id), "{id}");
        }
        assert!(RunIds::new(1000, 10).is_err());
        assert!(RunIds::new(u32::MAX - 5, 10).is_err());
        assert!(RunIds::new(1 << 30, 0).is_err());
        let d = RunIds::default();
        assert!(u64::from(d.first) + u64::from(d.count) < u64::from(u32::MAX));
        // This process's namespace maps what it maps: the whole range in
        // the initial namespace, and never an id past 2^32 - 1.
        let everything = std::fs::read_to_string("/proc/self/uid_map")
            .unwrap()
            .contains("4294967295");
        assert_eq!(d.mapped_here(), everything);
        // A container's namespace mapping 65536 ids: no run ids from 2^30.
        let container = "         0     100000      65536\n";
        assert!(!d.covered_by(container));
        assert!(RunIds::new(65536, 1).is_ok_and(|r| !r.covered_by(container)));
        let full = "         0          0 4294967295\n";
        assert!(d.covered_by(full));
        assert!(!d.covered_by("garbage\n"));
    }
}
