//! What a process holds that sandbox runs could leak: open fds, run
//! cgroups, mounts, child processes, threads. Compared before and after.
#![allow(dead_code)]

use std::path::Path;

/// A snapshot of what this process holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    /// Entries of `/proc/self/fd`.
    pub(crate) fds: usize,
    /// Run cgroups of this process (`sandbox-<pid>-*`) in any hierarchy.
    pub(crate) cgroups: usize,
    /// Lines of `/proc/self/mountinfo`.
    pub(crate) mounts: usize,
    /// Processes whose parent is this one.
    pub(crate) children: usize,
    /// Threads of this process.
    pub(crate) threads: usize,
}

fn count(dir: impl AsRef<Path>) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Run cgroups of this process, wherever its runs make theirs.
fn run_cgroups() -> usize {
    run_cgroups_of(std::process::id()).len()
}

/// The run cgroups (`sandbox-<pid>-*`) of caller `pid`, in every place this
/// process's runs would make theirs: the cgroup v2 placement's parent (or
/// the caller's own cgroup), and each writable v1 hierarchy.
pub(crate) fn run_cgroups_of(pid: u32) -> Vec<std::path::PathBuf> {
    let host = sandbox_core::probe();
    let prefix = format!("sandbox-{pid}-");
    let mut parents: Vec<std::path::PathBuf> = host
        .cgroups
        .v1
        .iter()
        .filter(|h| h.writable)
        .map(|h| h.mount.join(&h.own))
        .collect();
    if let Some(u) = &host.cgroups.unified {
        parents.push(
            u.mount
                .join(u.placement.as_ref().map_or(&u.own, |p| &p.parent)),
        );
    }
    parents.sort();
    parents.dedup();
    parents
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// How many cgroups the report says a run of `sandbox` gets: the distinct
/// places its resource mechanisms name ("… in a per-run cgroup beneath X",
/// "… tracked in a per-run cgroup v2 beneath X").
pub(crate) fn reported_run_cgroups(sandbox: &sandbox_core::Sandbox) -> usize {
    let mut places: Vec<&str> = sandbox
        .report()
        .resources
        .mechanisms
        .iter()
        .filter_map(|m| m.split_once("per-run cgroup").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split(" beneath ").nth(1))
        .map(|place| place.split([' ', ',']).next().unwrap_or(place))
        .collect();
    places.sort();
    places.dedup();
    places.len()
}

fn children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("stat")).is_ok_and(|stat| {
                        // pid (comm) state ppid …: the comm may hold spaces.
                        stat.rsplit_once(')')
                            .and_then(|(_, rest)| {
                                rest.split_whitespace().nth(1).map(str::to_string)
                            })
                            .is_some_and(|ppid| ppid == me)
                    })
                })
                .count()
        })
        .unwrap_or(0)
}

/// What this process holds now.
pub(crate) fn held() -> Held {
    Held {
        fds: count("/proc/self/fd"),
        cgroups: run_cgroups(),
        mounts: std::fs::read_to_string("/proc/self/mountinfo").map_or(0, |m| m.lines().count()),
        children: children(),
        threads: count("/proc/self/task"),
    }
}

/// Waits (up to 5 s) for threads that outlive their runs by a moment
/// (the supervisors' exits) to go, then the snapshot.
pub(crate) fn settled(baseline: &Held) -> Held {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let now = held();
        if now == *baseline || std::time::Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits (up to 10 s) until this process holds exactly one set of `count`
/// run cgroups with no process in them (the set made ahead for a
/// sandbox's next run); those.
pub(crate) fn wait_for_set_made_ahead(count: usize) -> Vec<std::path::PathBuf> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let empty: Vec<_> = run_cgroups_of(std::process::id())
            .into_iter()
            .filter(|d| {
                std::fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|p| p.trim().is_empty())
            })
            .collect();
        if empty.len() == count {
            return empty;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no set of {count} run cgroups made ahead: {:?}",
            run_cgroups_of(std::process::id())
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
