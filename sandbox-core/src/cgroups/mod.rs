//! Finding the cgroup hierarchies of this host and the caller's own place in
//! each: the unified (v2) hierarchy, and v1 controllers on hybrid hosts.

mod dir;
pub(crate) mod limits;
mod placement;
mod run;
pub(crate) mod systemd;
mod types;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub(crate) use placement::{place, remove_stale};
pub(crate) use run::{Ahead, CgroupJoins, CgroupLimits, RunCgroups};
pub use types::{CgroupPlacement, CgroupStrategy, SUPERVISOR_LEAF, V2Placement};

/// The unified (cgroup v2) hierarchy, as seen from this process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnifiedHierarchy {
    /// Where it is mounted.
    pub mount: PathBuf,
    /// The caller's cgroup, relative to the mount.
    pub own: PathBuf,
    /// Controllers the caller's cgroup has (`cgroup.controllers`). A child
    /// cgroup only gets those its parent enables: see `placement`.
    pub controllers: Vec<String>,
    /// Whether a child cgroup can be created beneath the caller's own.
    pub writable: bool,
    /// Where per-run cgroups go on this hierarchy and which controllers
    /// they get there, as found (and, for a move, made) by the placement
    /// strategies; `None` when none worked.
    pub placement: Option<V2Placement>,
    /// Why no strategy worked, when `placement` is `None`.
    pub placement_failure: Option<String>,
}

/// A cgroup v1 hierarchy (one or more controllers mounted together).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1Hierarchy {
    /// The controllers it carries (`memory`, `pids`, `cpu`, …; named
    /// hierarchies as `name=systemd`).
    pub controllers: Vec<String>,
    /// Where it is mounted.
    pub mount: PathBuf,
    /// The caller's cgroup in it, relative to the mount.
    pub own: PathBuf,
    /// Whether a child cgroup can be created beneath the caller's own
    /// (tried only for hierarchies carrying `memory`, `pids` or `cpu`, the
    /// controllers a sandbox uses; `false` for the others).
    pub writable: bool,
}

/// The cgroup hierarchies of this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupSupport {
    /// The unified hierarchy, if mounted.
    pub unified: Option<UnifiedHierarchy>,
    /// v1 hierarchies, if any (a hybrid host).
    pub v1: Vec<V1Hierarchy>,
}

impl CgroupSupport {
    /// Whether `controller` (`memory`, `pids`, …) can be used beneath the
    /// caller's cgroup, in either hierarchy.
    pub fn can_limit(&self, controller: &str) -> bool {
        self.unified.as_ref().is_some_and(|u| {
            u.placement
                .as_ref()
                .is_some_and(|p| p.controllers.iter().any(|c| c == controller))
        }) || self
            .v1
            .iter()
            .any(|h| h.writable && h.controllers.iter().any(|c| c == controller))
    }
}

/// A mount of a cgroup filesystem, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    pub(crate) mount_point: PathBuf,
    /// The cgroup path of the mount's root (`/` unless a namespace or a bind
    /// shows a subtree).
    pub(crate) root: PathBuf,
    pub(crate) v2: bool,
    /// v1 controllers (from the super options).
    pub(crate) controllers: Vec<String>,
}

/// Parses `/proc/self/mountinfo` text for cgroup mounts.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        // id parent major:minor root mount-point options [optional…] - fstype source super-options
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = before.split(' ').collect();
        let rest: Vec<&str> = after.split(' ').collect();
        let (Some(root), Some(mount_point), Some(fstype)) =
            (fields.get(3), fields.get(4), rest.first())
        else {
            continue;
        };
        let v2 = match *fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let controllers = if v2 {
            Vec::new()
        } else {
            rest.get(2)
                .map(|opts| {
                    opts.split(',')
                        .filter(|o| {
                            !matches!(*o, "rw" | "ro")
                                && !o.starts_with("release_agent")
                                && *o != "noprefix"
                                && *o != "clone_children"
                                && *o != "xattr"
                                && *o != "cpuset_v2_mode"
                        })
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        mounts.push(CgroupMount {
            mount_point: unescape(mount_point),
            root: unescape(root),
            v2,
            controllers,
        });
    }
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from(
        String::from_utf8_lossy(&out).into_owned(),
    ))
}

/// One line of `/proc/self/cgroup`: hierarchy id, controllers, path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnCgroup {
    pub(crate) controllers: Vec<String>,
    pub(crate) path: PathBuf,
}

/// Parses `/proc/self/cgroup`. The v2 entry has no controllers (`0::/…`).
pub(crate) fn parse_proc_cgroup(text: &str) -> Vec<OwnCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(OwnCgroup {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect(),
                path: PathBuf::from(path),
            })
        })
        .collect()
}

/// The caller's cgroup relative to a mount whose root is `mount_root`: the
/// path with the mount's root stripped (a cgroup namespace or a bind shows
/// only a subtree).
pub(crate) fn relative_to_mount(own: &Path, mount_root: &Path) -> Option<PathBuf> {
    let rel = own.strip_prefix(mount_root).ok()?;
    Some(if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel.to_path_buf()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_hybrid_host() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 /sub /sys/fs/cgroup/pids\\040x rw - cgroup cgroup rw,pids,clone_children
";
        let mounts = parse_mountinfo(mountinfo);
        assert_eq!(mounts.len(), 4);
        assert!(mounts[0].v2 && mounts[0].mount_point == Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(mounts[1].controllers, ["memory"]);
        assert_eq!(mounts[2].controllers, ["cpu", "cpuacct"]);
        assert_eq!(mounts[3].controllers, ["pids"]);
        assert_eq!(mounts[3].mount_point, Path::new("/sys/fs/cgroup/pids x"));
        assert_eq!(mounts[3].root, Path::new("/sub"));
        let own = parse_proc_cgroup("4:memory:/job/42\n2:cpu,cpuacct:/\n0::/user.slice\n");
        assert_eq!(own[0].controllers, ["memory"]);
        assert_eq!(own[0].path, Path::new("/job/42"));
        assert!(own[2].controllers.is_empty());
        assert_eq!(
            relative_to_mount(Path::new("/job/42"), Path::new("/")),
            Some(PathBuf::from("job/42"))
        );
        assert_eq!(
            relative_to_mount(Path::new("/sub"), Path::new("/sub")),
            Some(PathBuf::from("."))
        );
        assert_eq!(
            relative_to_mount(Path::new("/other"), Path::new("/sub")),
            None
        );
    }
}

/// The hierarchy a run's cgroup for one controller goes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChosenHierarchy {
    pub(crate) v2: bool,
    pub(crate) mount: PathBuf,
    /// The parent of the run's cgroup, relative to the mount.
    pub(crate) parent: PathBuf,
    /// How the parent was found (cgroup v2).
    pub(crate) strategy: Option<CgroupStrategy>,
    /// systemd moves each run's process in (cgroup v2, a scope).
    pub(crate) moved_by_manager: bool,
}

impl ChosenHierarchy {
    /// How a limit on `controller` is enforced, for the report.
    pub(crate) fn describe(&self, controller: &str) -> String {
        let file = match (self.v2, controller) {
            (true, "memory") => "memory.max, memory.swap.max 0",
            (false, "memory") => "memory.limit_in_bytes (and memory.memsw.limit_in_bytes)",
            (_, "pids") => "pids.max",
            (true, "cpu") => "cpu.max",
            (false, "cpu") => "cpu.cfs_quota_us / cpu.cfs_period_us",
            _ => controller,
        };
        format!(
            "cgroup {} {file}, in a per-run cgroup beneath {}{}",
            if self.v2 { "v2" } else { "v1" },
            beneath(&self.mount, &self.parent).display(),
            self.strategy
                .map(|s| if self.moved_by_manager {
                    format!(" ({s}; systemd moves each run's process into it)")
                } else {
                    format!(" ({s})")
                })
                .unwrap_or_default()
        )
    }
}

/// The caller's cgroup `own` in the hierarchy mounted at `mount`, as a path.
pub(crate) fn beneath(mount: &Path, own: &Path) -> PathBuf {
    if own.as_os_str().is_empty() || own == Path::new(".") {
        mount.to_path_buf()
    } else {
        mount.join(own)
    }
}

/// Removes the empty run cgroups of dead callers wherever this caller's
/// runs make theirs.
pub(crate) fn remove_stale_runs(support: &CgroupSupport) -> usize {
    let mut removed = 0;
    if let Some((mount, parent)) = support.tracking_parent() {
        removed += remove_stale(&mount, &parent);
    }
    for h in support.v1.iter().filter(|h| h.writable) {
        removed += remove_stale(&h.mount, &h.own);
    }
    removed
}

impl CgroupSupport {
    /// Where a per-run cgroup limiting `controller` would go: the unified
    /// hierarchy if it has the controller and is writable, else a writable
    /// v1 hierarchy carrying it.
    pub(crate) fn hierarchy_for(&self, controller: &str) -> Option<ChosenHierarchy> {
        if let Some(u) = &self.unified
            && let Some(p) = &u.placement
            && p.controllers.iter().any(|c| c == controller)
        {
            return Some(ChosenHierarchy {
                v2: true,
                mount: u.mount.clone(),
                parent: p.parent.clone(),
                strategy: Some(p.strategy),
                moved_by_manager: p.moved_by_manager,
            });
        }
        self.v1
            .iter()
            .find(|h| h.writable && h.controllers.iter().any(|c| c == controller))
            .map(|h| ChosenHierarchy {
                v2: false,
                mount: h.mount.clone(),
                parent: h.own.clone(),
                strategy: None,
                moved_by_manager: false,
            })
    }

    /// Where a run's cgroup v2 that only tracks the run (no controller:
    /// `cgroup.events`, `cgroup.kill`) goes: the placement's parent, or
    /// the caller's own cgroup where one can be made there.
    pub(crate) fn tracking_parent(&self) -> Option<(PathBuf, PathBuf)> {
        let u = self.unified.as_ref()?;
        match &u.placement {
            Some(p) => Some((u.mount.clone(), p.parent.clone())),
            None if u.writable => Some((u.mount.clone(), u.own.clone())),
            None => None,
        }
    }
}
