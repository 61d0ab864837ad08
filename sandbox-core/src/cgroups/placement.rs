//! Where a run's cgroup v2 can get its controllers: a parent cgroup that
//! holds no process and enables `memory`, `pids` and `cpu` for its
//! children (cgroup v2's "no internal processes" rule: a cgroup holding
//! processes cannot give its children controllers).
//!
//! The strategies, tried in this order by [`CgroupPlacement::Auto`]:
//!
//! 1. **a delegated parent**: the caller's cgroup is a leaf (named
//!    `supervisor`, or marked delegated by systemd with the
//!    `trusted.delegate` / `user.delegate` xattr on its parent) of a parent
//!    that holds no process and that the caller can create cgroups in —
//!    systemd's `DelegateSubgroup=` layout, or the leaf another process of
//!    the caller's made (strategy 3);
//! 2. **the caller's own cgroup**, where it can enable the controllers for
//!    its children itself: the root cgroup (exempt from the rule), or a
//!    cgroup holding no process;
//! 3. **moving the caller into a leaf of its own cgroup**
//!    (`<own>/supervisor`), then enabling the controllers in `<own>`: only
//!    where the caller's cgroup holds no process but the caller and those
//!    it started (they move with it, each with all its threads). On a host
//!    whose init is systemd, this comes after 4 unless systemd delegated the
//!    caller's cgroup (or one above it) with `Delegate=yes`: the cgroups of
//!    other units are systemd's to manage;
//! 4. **a transient systemd scope** with `Delegate=yes`, from the system
//!    manager (a root caller) or the caller's user manager (any other),
//!    over D-Bus: see the `systemd` module. One scope serves the process.
//!
//! Each step is the exact operation a run relies on (a write to
//! `cgroup.subtree_control`, a `mkdir`, a write to `cgroup.procs`), made
//! through `openat2-root` beneath the hierarchy's mount.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::dir::Cg;
use super::systemd;

/// The controllers a sandbox limits with.
pub(crate) const WANTED: [&str; 3] = ["memory", "pids", "cpu"];

/// The leaf the caller moves into (strategy 3), and the name that marks a
/// delegated parent (strategy 1).
pub const SUPERVISOR_LEAF: &str = "supervisor";

/// How per-run cgroups on the unified hierarchy find their parent.
///
/// # Examples
///
/// ```no_run
/// use sandbox_core::{CgroupPlacement, Sandbox};
///
/// // A systemd unit with `Delegate=yes` gave us this subtree:
/// let sandbox = Sandbox::from_profile("default")?
///     .with_cgroup_placement(CgroupPlacement::Parent("/sys/fs/cgroup/jobs.slice/runner".into()))?;
/// # Ok::<(), sandbox_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CgroupPlacement {
    /// The strategies of this module, in order (the default).
    #[default]
    Auto,
    /// A delegated parent the caller was given: an absolute path (beneath
    /// the cgroup v2 mount) or one relative to the mount. It must hold no
    /// process; the controllers are enabled in it if they are not already.
    Parent(PathBuf),
    /// Move **every process** of the caller's cgroup (the caller and
    /// whatever shares its cgroup: a container's shell, say) into
    /// `<own>/supervisor`, then enable the controllers in `<own>`. Opt-in:
    /// it moves processes that are not the caller's.
    MoveCgroupToLeaf,
    /// A transient systemd scope with `Delegate=yes`, from the system
    /// manager (a root caller) or the caller's user manager: the last
    /// automatic strategy, asked for first.
    SystemdScope,
    /// Make no cgroup v2 placement: limits that need one are downgrades.
    Disabled,
}

/// The strategy that found the parent of a run's cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CgroupStrategy {
    /// A parent the caller gave ([`CgroupPlacement::Parent`]).
    GivenParent,
    /// An empty delegated parent of the caller's leaf cgroup.
    DelegatedParent,
    /// The caller's own cgroup, which can enable controllers for its
    /// children (the root cgroup, or one holding no process).
    OwnCgroup,
    /// The caller moved itself (and the processes it started) into
    /// `<own>/supervisor`.
    MovedToLeaf,
    /// Every process of the caller's cgroup was moved into
    /// `<own>/supervisor` ([`CgroupPlacement::MoveCgroupToLeaf`]).
    MovedCgroupToLeaf,
    /// A transient scope with `Delegate=yes` from the systemd system
    /// manager.
    SystemdSystemScope,
    /// A transient scope with `Delegate=yes` from the caller's systemd user
    /// manager.
    SystemdUserScope,
}

impl std::fmt::Display for CgroupStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::GivenParent => "a delegated parent the caller gave",
            Self::DelegatedParent => "the empty delegated parent of the caller's leaf cgroup",
            Self::OwnCgroup => {
                "the caller's own cgroup, which enables controllers for its children"
            }
            Self::MovedToLeaf => "the caller moved itself into <own>/supervisor",
            Self::MovedCgroupToLeaf => {
                "every process of the caller's cgroup moved into <own>/supervisor (as asked)"
            }
            Self::SystemdSystemScope => {
                "a transient scope with Delegate=yes from the systemd system manager"
            }
            Self::SystemdUserScope => {
                "a transient scope with Delegate=yes from the caller's systemd user manager"
            }
        })
    }
}

/// Where a run's cgroup v2 goes, and what it gets there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct V2Placement {
    /// How this parent was found.
    pub strategy: CgroupStrategy,
    /// The parent of the per-run cgroups, relative to the mount.
    pub parent: PathBuf,
    /// The controllers a child of `parent` gets (its
    /// `cgroup.subtree_control`, read back after enabling).
    pub controllers: Vec<String>,
    /// Whether the caller cannot move a run's process into `parent` itself
    /// and the systemd manager of the scope does it for each run
    /// (`AttachProcessesToUnit`: a caller whose cgroup is not beneath its
    /// manager's, as in a login session).
    pub moved_by_manager: bool,
}

/// Finds (and where a strategy says so, makes) the placement of per-run
/// cgroups in the unified hierarchy mounted at `mount`, for a caller in
/// `own` (relative to it).
///
/// # Errors
///
/// Every strategy's reason for failing, joined; whatever a failed strategy
/// did is undone (a moved caller is moved back).
pub(crate) fn place(
    mount: &Path,
    own: &Path,
    mode: &CgroupPlacement,
) -> Result<V2Placement, String> {
    let root = openat2_root::Root::open(mount)
        .map_err(|e| format!("open the cgroup v2 mount {}: {e}", mount.display()))?;
    let own_cg = Cg {
        root: &root,
        path: own.to_path_buf(),
    };
    let placed = |strategy, parent: &Cg<'_>, controllers| V2Placement {
        strategy,
        parent: parent.path.clone(),
        controllers,
        moved_by_manager: false,
    };
    match mode {
        CgroupPlacement::Disabled => Err("cgroup placement disabled by the caller".into()),
        CgroupPlacement::Parent(path) => {
            let rel = path.strip_prefix(mount).unwrap_or(path);
            let rel = if rel.as_os_str().is_empty() {
                Path::new(".")
            } else {
                rel
            };
            let parent = Cg {
                root: &root,
                path: rel.to_path_buf(),
            };
            let procs = parent.procs()?;
            if !procs.is_empty() && rel != Path::new(".") {
                return Err(format!(
                    "the given parent {} holds processes ({}), so it cannot give its children controllers",
                    mount.join(rel).display(),
                    procs.len()
                ));
            }
            let enabled = parent.enable()?;
            parent.can_create()?;
            Ok(placed(
                CgroupStrategy::GivenParent,
                &parent,
                enabled.controllers,
            ))
        }
        CgroupPlacement::SystemdScope => systemd::place(&root, mount),
        CgroupPlacement::MoveCgroupToLeaf => {
            let leaf = move_into_leaf(&own_cg, true)?;
            enable_after_move(&own_cg, &leaf, CgroupStrategy::MovedCgroupToLeaf)
        }
        CgroupPlacement::Auto => {
            let mut why = Vec::new();
            // 1. A delegated parent of our leaf.
            if let Some(parent_path) = own
                .parent()
                .filter(|p| !p.as_os_str().is_empty() && own != Path::new("."))
            {
                let parent = Cg {
                    root: &root,
                    path: parent_path.to_path_buf(),
                };
                let marked = own.file_name() == Some(SUPERVISOR_LEAF.as_ref())
                    || parent.has_delegate_xattr();
                if marked {
                    match parent.procs() {
                        Ok(p) if p.is_empty() => match parent.enable().and_then(|e| {
                            parent.can_create()?;
                            Ok(e)
                        }) {
                            Ok(e) => {
                                return Ok(placed(
                                    CgroupStrategy::DelegatedParent,
                                    &parent,
                                    e.controllers,
                                ));
                            }
                            Err(e) => why.push(format!("delegated parent: {e}")),
                        },
                        Ok(_) => why.push(format!(
                            "delegated parent: {} holds processes",
                            parent.path.display()
                        )),
                        Err(e) => why.push(format!("delegated parent: {e}")),
                    }
                }
            }
            // 2. Our own cgroup enables controllers for its children. A
            // cgroup holding processes may enable the threaded controllers
            // (pids, cpu) but not memory: a partial result is kept only if
            // moving (3) does no better.
            let mut partial = None;
            match own_cg.enable().and_then(|e| {
                own_cg.can_create()?;
                Ok(e)
            }) {
                // Enabled, or none of them to enable (a hybrid host's
                // unified hierarchy: run cgroups there only track the run).
                Ok(e) if e.refused.is_empty() => {
                    return Ok(placed(CgroupStrategy::OwnCgroup, &own_cg, e.controllers));
                }
                Ok(e) => {
                    why.push(format!("own cgroup: {}", e.refused.join("; ")));
                    own_cg.disable(&e.newly);
                    partial = Some(e.newly);
                }
                Err(e) => why.push(format!("own cgroup: {e}")),
            }
            // 3. Move ourselves into a leaf, where we are alone — on a
            // systemd host only where the unit was delegated to us (systemd
            // owns the cgroups of the others): else a scope comes first.
            let try_move = |why: &mut Vec<String>| match move_into_leaf(&own_cg, false) {
                Ok(leaf) => match enable_after_move(&own_cg, &leaf, CgroupStrategy::MovedToLeaf) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        why.push(format!("move into {SUPERVISOR_LEAF}: {e}"));
                        None
                    }
                },
                Err(e) => {
                    why.push(format!("move into {SUPERVISOR_LEAF}: {e}"));
                    None
                }
            };
            let scope_first = systemd::host_runs_systemd() && !delegated_to_us(&own_cg);
            if !scope_first && let Some(p) = try_move(&mut why) {
                return Ok(p);
            }
            // 4. A transient systemd scope.
            match systemd::place(&root, mount) {
                Ok(p) => return Ok(p),
                Err(e) => why.push(format!("systemd scope: {e}")),
            }
            if scope_first && let Some(p) = try_move(&mut why) {
                return Ok(p);
            }
            if partial.is_some()
                && let Ok(e) = own_cg.enable()
                && !e.controllers.is_empty()
            {
                // What the own cgroup can give (the threaded controllers);
                // the decision downgrades the rest, with `why`.
                return Ok(placed(CgroupStrategy::OwnCgroup, &own_cg, e.controllers));
            }
            Err(why.join("; "))
        }
    }
}

/// Whether systemd delegated `own` to its processes: the
/// `trusted.delegate` / `user.delegate` xattr it sets on a unit with
/// `Delegate=yes`, on `own` or on the unit above the cgroups its processes
/// made (`svc.service/sub`). The nearest unit decides: beneath a delegated
/// `user@1000.service`, the user manager's own `app.slice/x.service` is
/// that manager's, not delegated to `x`.
fn delegated_to_us(own: &Cg<'_>) -> bool {
    let mut path = own.path.clone();
    loop {
        if path.as_os_str().is_empty() || path == Path::new(".") {
            return false;
        }
        let cg = Cg {
            root: own.root,
            path: path.clone(),
        };
        if cg.has_delegate_xattr() {
            return true;
        }
        let is_unit = path
            .extension()
            .is_some_and(|e| ["service", "scope", "slice"].contains(&e.to_string_lossy().as_ref()));
        if is_unit || !path.pop() {
            return false;
        }
    }
}

/// Moves the caller (or, with `everyone`, every process of `own`) into
/// `<own>/supervisor`, returning the leaf.
fn move_into_leaf<'a>(own: &Cg<'a>, everyone: bool) -> Result<Cg<'a>, String> {
    let leaf = Cg {
        root: own.root,
        path: own.file(SUPERVISOR_LEAF),
    };
    // Checked before the leaf is made: nothing to undo on a refusal.
    empty_into(own, None, everyone)?;
    match own.root.create_dir(&leaf.path, 0o755) {
        Ok(()) => {}
        Err(e) if e.kind() == openat2_root::ErrorKind::Os(libc::EEXIST) => {}
        Err(e) => return Err(format!("create {}: {e}", leaf.path.display())),
    }
    if let Err(e) = empty_into(own, Some(&leaf), everyone) {
        undo_move(own, &leaf);
        return Err(e);
    }
    Ok(leaf)
}

/// Moves every process of `own` into `leaf` (with `leaf` `None`: only
/// checks that each may move), round after round while new ones appear (a
/// process the caller started may fork while it moves: the child lands in
/// the old cgroup). Without `everyone`, a process that is not the caller
/// or one it started is a refusal.
fn empty_into(own: &Cg<'_>, leaf: Option<&Cg<'_>>, everyone: bool) -> Result<(), String> {
    let me = std::process::id();
    for _ in 0..20 {
        let procs = own.procs()?;
        if procs.is_empty() {
            return Ok(());
        }
        // The caller's own processes: itself and those it started.
        let others = procs.iter().filter(|&&p| !descends_from(p, me)).count();
        if !everyone && others > 0 {
            return Err(format!(
                "{} holds {others} process(es) that are not the caller's; moving the caller would not empty it (CgroupPlacement::MoveCgroupToLeaf moves them all)",
                own.path.display(),
            ));
        }
        let Some(leaf) = leaf else {
            return Ok(());
        };
        for pid in procs {
            if let Err(e) = leaf.write("cgroup.procs", &pid.to_string()) {
                // A process that exited meanwhile is not in the way.
                if Path::new(&format!("/proc/{pid}")).exists() {
                    return Err(e);
                }
            }
        }
    }
    Err(format!(
        "{} kept gaining processes while they were moved",
        own.path.display()
    ))
}

fn enable_after_move(
    own: &Cg<'_>,
    leaf: &Cg<'_>,
    strategy: CgroupStrategy,
) -> Result<V2Placement, String> {
    // A fork racing the move can leave a process behind, and the domain
    // controllers are then refused (EBUSY): move it too, and again.
    let mut last = String::new();
    for _ in 0..5 {
        match own.enable() {
            Ok(e) if e.refused.is_empty() => {
                if let Err(why) = own.can_create() {
                    undo_move(own, leaf);
                    return Err(why);
                }
                return Ok(V2Placement {
                    strategy,
                    parent: own.path.clone(),
                    controllers: e.controllers,
                    moved_by_manager: false,
                });
            }
            Ok(e) => last = e.refused.join("; "),
            Err(e) => last = e,
        }
        if let Err(e) = empty_into(
            own,
            Some(leaf),
            strategy == CgroupStrategy::MovedCgroupToLeaf,
        ) {
            last = e;
            break;
        }
    }
    undo_move(own, leaf);
    Err(last)
}

/// Whether `pid` is `ancestor` or one of its descendants (by the parent
/// chain in `/proc/<pid>/stat`).
fn descends_from(mut pid: u32, ancestor: u32) -> bool {
    for _ in 0..64 {
        if pid == ancestor {
            return true;
        }
        if pid <= 1 {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // `pid (comm) state ppid …`, where comm may hold anything but the
        // last `)`.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
        else {
            return false;
        };
        pid = ppid;
    }
    false
}

/// Puts the processes of `leaf` back in `own` and removes the leaf.
fn undo_move(own: &Cg<'_>, leaf: &Cg<'_>) {
    for pid in leaf.procs().unwrap_or_default() {
        let _ = own.write("cgroup.procs", &pid.to_string());
    }
    let _ = own.root.remove_dir(&leaf.path);
}

/// Removes the empty run cgroups (`sandbox-<pid>-<n>`, `sandbox-probe-<pid>`)
/// that callers which died without cleaning up left in `parent` (beneath
/// `mount`): those whose pid is gone and that hold nothing. A live run's
/// cgroup is never touched (its caller's pid exists, and rmdir of a
/// populated cgroup fails anyway).
pub(crate) fn remove_stale(mount: &Path, parent: &Path) -> usize {
    let Ok(root) = openat2_root::Root::open(mount) else {
        return 0;
    };
    let Ok(entries) = root.read_dir(parent) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = stale_owner(&name) else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = if parent == Path::new(".") {
            PathBuf::from(&name)
        } else {
            parent.join(&name)
        };
        if root.remove_dir(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The pid in a run cgroup's name.
fn stale_owner(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix("sandbox-probe-")
        .or_else(|| name.strip_prefix("sandbox-"))?;
    rest.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_cgroup_names_give_their_owner() {
        assert_eq!(stale_owner("sandbox-193-0"), Some(193));
        assert_eq!(stale_owner("sandbox-probe-77"), Some(77));
        assert_eq!(stale_owner("supervisor"), None);
        assert_eq!(stale_owner("sandbox-x-1"), None);
    }
}
