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

/// Run cgroups of this process beneath its own cgroup, in every hierarchy
/// mounted under `/sys/fs/cgroup`.
fn run_cgroups() -> usize {
    let prefix = format!("sandbox-{}-", std::process::id());
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut total = 0;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        let mount = if controllers.is_empty() {
            "/sys/fs/cgroup/unified".to_string()
        } else {
            format!("/sys/fs/cgroup/{}", controllers.trim_start_matches("name="))
        };
        for base in [mount, "/sys/fs/cgroup".to_string()] {
            let dir = Path::new(&base).join(path.trim_start_matches('/'));
            if let Ok(entries) = std::fs::read_dir(&dir) {
                total += entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .count();
                break;
            }
        }
    }
    total
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
