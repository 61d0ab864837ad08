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

use super::dir::Cg;
use super::systemd;
use super::types::{CgroupPlacement, CgroupStrategy, SUPERVISOR_LEAF, V2Placement};

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
    match mode {
        CgroupPlacement::Disabled => Err("cgroup placement disabled by the caller".into()),
        CgroupPlacement::Parent(path) => place_in_given(&root, mount, path),
        CgroupPlacement::SystemdScope => systemd::place(&root, mount),
        CgroupPlacement::MoveCgroupToLeaf => {
            let leaf = move_into_leaf(&own_cg, true)?;
            enable_after_move(&own_cg, &leaf, CgroupStrategy::MovedCgroupToLeaf)
        }
        CgroupPlacement::Auto => place_auto(&root, mount, &own_cg),
    }
}

fn placed(strategy: CgroupStrategy, parent: &Cg<'_>, controllers: Vec<String>) -> V2Placement {
    V2Placement {
        strategy,
        parent: parent.path.clone(),
        controllers,
        moved_by_manager: false,
    }
}

/// The parent the caller gave: it must hold no process (unless it is the
/// root) and let us enable controllers and create cgroups.
fn place_in_given(
    root: &openat2_root::Root,
    mount: &Path,
    path: &Path,
) -> Result<V2Placement, String> {
    let rel = path.strip_prefix(mount).unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let parent = Cg {
        root,
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

/// Strategy 1: a delegated parent of our leaf (see the module's doc).
fn delegated_parent(own_cg: &Cg<'_>, why: &mut Vec<String>) -> Option<V2Placement> {
    let own = &own_cg.path;
    let parent_path = own
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && own != Path::new("."))?;
    let parent = Cg {
        root: own_cg.root,
        path: parent_path.to_path_buf(),
    };
    let marked = own.file_name() == Some(SUPERVISOR_LEAF.as_ref()) || parent.has_delegate_xattr();
    if !marked {
        return None;
    }
    match parent.procs() {
        Ok(p) if p.is_empty() => match parent.enable().and_then(|e| {
            parent.can_create()?;
            Ok(e)
        }) {
            Ok(e) => {
                return Some(placed(
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
    None
}

/// Strategy 2: our own cgroup enables controllers for its children. A
/// cgroup holding processes may enable the threaded controllers (pids,
/// cpu) but not memory: then `Err(true)`, a partial result kept only if
/// moving (3) does no better.
fn own_cgroup(own_cg: &Cg<'_>, why: &mut Vec<String>) -> Result<V2Placement, bool> {
    match own_cg.enable().and_then(|e| {
        own_cg.can_create()?;
        Ok(e)
    }) {
        // Enabled, or none of them to enable (a hybrid host's unified
        // hierarchy: run cgroups there only track the run).
        Ok(e) if e.refused.is_empty() => {
            Ok(placed(CgroupStrategy::OwnCgroup, own_cg, e.controllers))
        }
        Ok(e) => {
            why.push(format!("own cgroup: {}", e.refused.join("; ")));
            own_cg.disable(&e.newly);
            Err(true)
        }
        Err(e) => {
            why.push(format!("own cgroup: {e}"));
            Err(false)
        }
    }
}

/// Strategy 3: move ourselves into a leaf, where we are alone.
fn moved_to_leaf(own_cg: &Cg<'_>, why: &mut Vec<String>) -> Option<V2Placement> {
    let placed = move_into_leaf(own_cg, false)
        .and_then(|leaf| enable_after_move(own_cg, &leaf, CgroupStrategy::MovedToLeaf));
    placed
        .map_err(|e| why.push(format!("move into {SUPERVISOR_LEAF}: {e}")))
        .ok()
}

/// The strategies in order (see the module's doc); every one's reason
/// for failing if none works.
fn place_auto(
    root: &openat2_root::Root,
    mount: &Path,
    own_cg: &Cg<'_>,
) -> Result<V2Placement, String> {
    let mut why = Vec::new();
    if let Some(p) = delegated_parent(own_cg, &mut why) {
        return Ok(p);
    }
    let partial = match own_cgroup(own_cg, &mut why) {
        Ok(p) => return Ok(p),
        Err(partial) => partial,
    };
    // On a systemd host, moving comes after a scope unless the unit was
    // delegated to us (systemd owns the cgroups of the others).
    let scope_first = systemd::host_runs_systemd() && !delegated_to_us(own_cg);
    if !scope_first && let Some(p) = moved_to_leaf(own_cg, &mut why) {
        return Ok(p);
    }
    // 4. A transient systemd scope.
    match systemd::place(root, mount) {
        Ok(p) => return Ok(p),
        Err(e) => why.push(format!("systemd scope: {e}")),
    }
    if scope_first && let Some(p) = moved_to_leaf(own_cg, &mut why) {
        return Ok(p);
    }
    if partial
        && let Ok(e) = own_cg.enable()
        && !e.controllers.is_empty()
    {
        // What the own cgroup can give (the threaded controllers); the
        // decision downgrades the rest, with `why`.
        return Ok(placed(CgroupStrategy::OwnCgroup, own_cg, e.controllers));
    }
    Err(why.join("; "))
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
