//! Finding the cgroup hierarchies of this host and the caller's own place in
//! each: the unified (v2) hierarchy, and v1 controllers on hybrid hosts.

mod placement;
pub(crate) mod systemd;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use placement::{CgroupPlacement, CgroupStrategy, SUPERVISOR_LEAF, V2Placement};
pub(crate) use placement::{place, remove_stale};

/// The unified (cgroup v2) hierarchy, as seen from this process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
            self.strategy.map(|s| format!(" ({s})")).unwrap_or_default()
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

/// One per-run cgroup directory, reached through `openat2-root` beneath
/// its hierarchy's mount.
#[derive(Debug)]
struct RunCgroupDir {
    root: openat2_root::Root,
    mount: PathBuf,
    path: PathBuf,
    v2: bool,
    controllers: Vec<&'static str>,
}

/// The cgroups of one run, beneath the caller's own cgroup in each
/// hierarchy; removed on drop.
#[derive(Debug, Default)]
pub(crate) struct RunCgroups {
    dirs: Vec<RunCgroupDir>,
}

fn cgroup_error(what: String) -> impl FnOnce(openat2_root::Error) -> crate::Error {
    move |e| crate::Error::Prepare {
        what,
        source: e.into(),
    }
}

/// The limits a run's cgroups enforce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CgroupLimits {
    /// `memory.max` / `memory.limit_in_bytes`, bytes.
    pub(crate) memory: Option<u64>,
    /// `pids.max`.
    pub(crate) pids: Option<u32>,
    /// CPU bandwidth, percent of one CPU.
    pub(crate) cpu: Option<u32>,
}

impl CgroupLimits {
    /// Whether any limit needs a cgroup.
    pub(crate) fn any(&self) -> bool {
        self.memory.is_some() || self.pids.is_some() || self.cpu.is_some()
    }
}

/// The CFS period the CPU limit's quota is a share of.
const CPU_PERIOD_US: u64 = 100_000;

impl RunCgroups {
    /// Creates the cgroups and writes the limits.
    pub(crate) fn create(support: &CgroupSupport, limits: &CgroupLimits) -> crate::Result<Self> {
        let CgroupLimits { memory, pids, cpu } = *limits;
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let name = format!(
            "sandbox-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut run = RunCgroups::default();
        let wanted = [
            ("memory", memory.is_some()),
            ("pids", pids.is_some()),
            ("cpu", cpu.is_some()),
        ];
        for (controller, _) in wanted.iter().filter(|(_, w)| *w) {
            let Some(h) = support.hierarchy_for(controller) else {
                return Err(crate::Error::Prepare {
                    what: format!("a cgroup for the {controller} controller"),
                    source: std::io::ErrorKind::NotFound.into(),
                });
            };
            if let Some(dir) = run.dirs.iter_mut().find(|d| d.v2 && h.v2) {
                dir.controllers.push(controller);
                continue;
            }
            let root = openat2_root::Root::open(&h.mount)
                .map_err(cgroup_error(format!("open {}", h.mount.display())))?;
            let path = h.parent.join(&name);
            root.create_dir(&path, 0o755).map_err(cgroup_error(format!(
                "create cgroup {}",
                h.mount.join(&path).display()
            )))?;
            run.dirs.push(RunCgroupDir {
                root,
                mount: h.mount.clone(),
                path,
                v2: h.v2,
                controllers: vec![controller],
            });
        }
        // The unified hierarchy tracks the run too where it is writable and
        // no controller put the run there already: `cgroup.events` says
        // whether anything of the run is alive, `cgroup.kill` ends it all.
        if let Some((mount, parent)) = support.tracking_parent()
            && !run.dirs.iter().any(|d| d.v2)
        {
            let root = openat2_root::Root::open(&mount)
                .map_err(cgroup_error(format!("open {}", mount.display())))?;
            let path = parent.join(&name);
            root.create_dir(&path, 0o755).map_err(cgroup_error(format!(
                "create cgroup {}",
                mount.join(&path).display()
            )))?;
            run.dirs.push(RunCgroupDir {
                root,
                mount: mount.clone(),
                path,
                v2: true,
                controllers: Vec::new(),
            });
        }
        for dir in &run.dirs {
            for controller in &dir.controllers {
                match (*controller, dir.v2) {
                    ("memory", v2) => {
                        let bytes = memory.unwrap_or(u64::MAX).to_string();
                        if v2 {
                            dir.write("memory.max", &bytes)?;
                            dir.write_if_present("memory.swap.max", "0")?;
                            // An OOM kill ends the whole run, not one
                            // process of it.
                            dir.write_if_present("memory.oom.group", "1")?;
                        } else {
                            dir.write("memory.limit_in_bytes", &bytes)?;
                            dir.write_if_present("memory.memsw.limit_in_bytes", &bytes)?;
                        }
                    }
                    ("pids", _) => dir.write("pids.max", &pids.unwrap_or(u32::MAX).to_string())?,
                    ("cpu", v2) => {
                        // Percent of one CPU → microseconds per 100 ms.
                        let quota = u64::from(cpu.unwrap_or(100)) * CPU_PERIOD_US / 100;
                        if v2 {
                            dir.write("cpu.max", &format!("{quota} {CPU_PERIOD_US}"))?;
                        } else {
                            dir.write("cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
                            dir.write("cpu.cfs_quota_us", &quota.to_string())?;
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(run)
    }

    /// Moves `pid` into every cgroup of the run.
    pub(crate) fn attach(&self, pid: i32) -> crate::Result<()> {
        for dir in &self.dirs {
            if let Err(direct) = dir.write("cgroup.procs", &pid.to_string()) {
                // A systemd scope the caller cannot move its processes into
                // itself: systemd moves them.
                match systemd::attach(&dir.mount, &dir.path, pid) {
                    Some(Ok(())) => {}
                    Some(Err(through)) => {
                        return Err(crate::Error::Prepare {
                            what: format!("{direct}; through systemd: {through}"),
                            source: std::io::ErrorKind::PermissionDenied.into(),
                        });
                    }
                    None => return Err(direct),
                }
            }
        }
        Ok(())
    }

    /// The memory high-water mark, where the hierarchy keeps one.
    pub(crate) fn peak_memory(&self) -> Option<u64> {
        let dir = self
            .dirs
            .iter()
            .find(|d| d.controllers.contains(&"memory"))?;
        let file = if dir.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        dir.read(file)?.trim().parse().ok()
    }

    /// CPU time of every process of the run, where the run has a cgroup
    /// accounting it (`cpu.stat` on v2, `cpuacct.usage` on v1).
    pub(crate) fn cpu_time(&self) -> Option<std::time::Duration> {
        let dir = self.dirs.iter().find(|d| d.controllers.contains(&"cpu"))?;
        if dir.v2 {
            let usec = dir.counter("cpu.stat", "usage_usec");
            (usec > 0).then(|| std::time::Duration::from_micros(usec))
        } else {
            let nanos: u64 = dir.read("cpuacct.usage")?.trim().parse().ok()?;
            Some(std::time::Duration::from_nanos(nanos))
        }
    }

    /// Whether the kernel's OOM killer killed a process of the run.
    pub(crate) fn oom_killed(&self) -> bool {
        let Some(dir) = self.dirs.iter().find(|d| d.controllers.contains(&"memory")) else {
            return false;
        };
        let file = if dir.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        dir.counter(file, "oom_kill") > 0
    }

    /// Whether a fork or clone of the run failed at the pids limit
    /// (`pids.events`, in both hierarchies).
    pub(crate) fn pids_limit_hit(&self) -> bool {
        self.dirs
            .iter()
            .find(|d| d.controllers.contains(&"pids"))
            .is_some_and(|dir| dir.counter("pids.events", "max") > 0)
    }
}

impl RunCgroupDir {
    /// The value of `key` in a flat-keyed file (`key value` lines), 0 if
    /// absent.
    fn counter(&self, file: &str, key: &str) -> u64 {
        self.read(file)
            .and_then(|text| {
                text.lines().find_map(|line| {
                    let (k, v) = line.split_once(' ')?;
                    (k == key).then(|| v.trim().parse().ok()).flatten()
                })
            })
            .unwrap_or(0)
    }

    fn write(&self, file: &str, value: &str) -> crate::Result<()> {
        use std::io::Write;
        let path = self.path.join(file);
        let what = || format!("write {value:?} to {}", path.display());
        let mut f = self
            .root
            .open_file(&path, openat2_root::OpenOptions::new().write(true))
            .map_err(cgroup_error(what()))?;
        f.write_all(value.as_bytes())
            .map_err(crate::Error::prepare(what()))
    }

    fn write_if_present(&self, file: &str, value: &str) -> crate::Result<()> {
        match self.root.symlink_metadata(self.path.join(file)) {
            Ok(_) => self.write(file, value),
            Err(_) => Ok(()),
        }
    }

    fn read(&self, file: &str) -> Option<String> {
        use std::io::Read;
        let mut text = String::new();
        self.root
            .open_file(
                self.path.join(file),
                openat2_root::OpenOptions::new().read(true),
            )
            .ok()?
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    }
}

impl Drop for RunCgroups {
    fn drop(&mut self) {
        for dir in &self.dirs {
            // Whatever of the run is left (nothing, normally: its pid
            // namespace died with PID 1) is killed by the kernel.
            if dir.v2 {
                let _ = dir.write_if_present("cgroup.kill", "1");
            }
            // The run's processes are gone (their pid namespace is), but
            // the kernel may take a moment to let go of the cgroup.
            for attempt in 0..100 {
                match dir.root.remove_dir(&dir.path) {
                    Err(e) if e.kind() == openat2_root::ErrorKind::Os(libc::EBUSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(1 + attempt / 10));
                    }
                    _ => break,
                }
            }
        }
    }
}
