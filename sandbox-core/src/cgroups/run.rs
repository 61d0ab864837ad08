//! The cgroups of one run: made beneath the placement's parent (and v1
//! hierarchies' own cgroups), given the limits, joined by the run, read for
//! the outcome, removed after.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{CgroupSupport, systemd};

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

/// How a run's PID 1 joins its cgroups itself (see [`RunCgroups::joins`]):
/// each with the index of its cgroup in the run's.
#[derive(Debug, Default)]
pub(crate) struct CgroupJoins {
    /// The cgroup v2 directory, for `CLONE_INTO_CGROUP`.
    pub(crate) into: Option<(usize, std::os::fd::OwnedFd)>,
    /// The cgroup v1 `tasks` files, opened for writing.
    pub(crate) tasks: Vec<(usize, std::os::fd::OwnedFd)>,
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
        error: e.into(),
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

impl RunCgroupDir {
    /// Creates cgroup `path` beneath the hierarchy mounted at `mount`.
    fn make(
        mount: &std::path::Path,
        path: &std::path::Path,
        v2: bool,
        controllers: Vec<&'static str>,
    ) -> crate::Result<Self> {
        let root = openat2_root::Root::open(mount)
            .map_err(cgroup_error(format!("open {}", mount.display())))?;
        root.create_dir(path, 0o755).map_err(cgroup_error(format!(
            "create cgroup {}",
            mount.join(path).display()
        )))?;
        Ok(Self {
            root,
            mount: mount.to_path_buf(),
            path: path.to_path_buf(),
            v2,
            controllers,
        })
    }

    /// Writes the limits of this cgroup's controllers.
    fn write_limits(&self, limits: &CgroupLimits) -> crate::Result<()> {
        let CgroupLimits { memory, pids, cpu } = *limits;
        let dir = self;
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
        Ok(())
    }
}

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
                    error: std::io::ErrorKind::NotFound.into(),
                });
            };
            if let Some(dir) = run.dirs.iter_mut().find(|d| d.v2 && h.v2) {
                dir.controllers.push(controller);
                continue;
            }
            run.dirs.push(RunCgroupDir::make(
                &h.mount,
                &h.parent.join(&name),
                h.v2,
                vec![controller],
            )?);
        }
        // The unified hierarchy tracks the run too where it is writable and
        // no controller put the run there already: `cgroup.events` says
        // whether anything of the run is alive, `cgroup.kill` ends it all.
        if let Some((mount, parent)) = support.tracking_parent()
            && !run.dirs.iter().any(|d| d.v2)
        {
            run.dirs.push(RunCgroupDir::make(
                &mount,
                &parent.join(&name),
                true,
                Vec::new(),
            )?);
        }
        for dir in &run.dirs {
            dir.write_limits(limits)?;
        }
        Ok(run)
    }

    /// How the run's PID 1 joins these cgroups itself: the cgroup v2
    /// directory to clone it into (`CLONE_INTO_CGROUP`), and the cgroup v1
    /// `tasks` files it writes `0` to as its first steps. A cgroup only
    /// systemd can move processes into is in neither: [`Self::attach_rest`]
    /// moves PID 1 there.
    pub(crate) fn joins(&self) -> crate::Result<CgroupJoins> {
        let mut joins = CgroupJoins::default();
        for (i, dir) in self.dirs.iter().enumerate() {
            if systemd::moves_into(&dir.mount, &dir.path) {
                continue;
            }
            if dir.v2 {
                let fd = dir
                    .root
                    .open_dir(&dir.path)
                    .map_err(cgroup_error(format!(
                        "open cgroup {}",
                        dir.mount.join(&dir.path).display()
                    )))?
                    .into_fd();
                joins.into = Some((i, fd));
            } else {
                let path = dir.path.join("tasks");
                let file = dir
                    .root
                    .open_file(&path, openat2_root::OpenOptions::new().write(true))
                    .map_err(cgroup_error(format!(
                        "open {}",
                        dir.mount.join(&path).display()
                    )))?;
                joins.tasks.push((i, std::os::fd::OwnedFd::from(file)));
            }
        }
        Ok(joins)
    }

    /// Moves `pid` into every cgroup of the run that it has not joined
    /// itself: those of `joins` but the v2 one if `in_v2` is false.
    pub(crate) fn attach_rest(
        &self,
        pid: i32,
        joins: &CgroupJoins,
        in_v2: bool,
    ) -> crate::Result<()> {
        let joined = |i: usize| {
            joins.tasks.iter().any(|(j, _)| *j == i)
                || (in_v2 && joins.into.as_ref().is_some_and(|(j, _)| *j == i))
        };
        for (i, dir) in self.dirs.iter().enumerate() {
            if !joined(i) {
                dir.attach(pid)?;
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
    /// Moves `pid` into this cgroup.
    fn attach(&self, pid: i32) -> crate::Result<()> {
        if let Err(direct) = self.write("cgroup.procs", &pid.to_string()) {
            // A systemd scope the caller cannot move its processes into
            // itself: systemd moves them.
            match systemd::attach(&self.mount, &self.path, pid) {
                Some(Ok(())) => {}
                Some(Err(through)) => {
                    return Err(crate::Error::Prepare {
                        what: format!("{direct}; through systemd: {through}"),
                        error: std::io::ErrorKind::PermissionDenied.into(),
                    });
                }
                None => return Err(direct),
            }
        }
        Ok(())
    }

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

/// What a run's cgroups were made for: where, and with which limits.
type AheadKey = (CgroupSupport, CgroupLimits);

#[derive(Default)]
struct AheadState {
    ready: Option<(AheadKey, RunCgroups)>,
    making: bool,
    asked: u32,
}

/// Run cgroups made ahead for a `Sandbox`'s runs (on the `ahead` thread):
/// one set kept ready, taken by the next run with the same placement and
/// limits, so that its `mkdir`s and limit writes are off its path. A
/// process's first run makes its own (the CLI makes one run). Unused ones
/// go with their `Sandbox`; those of a process that exits without dropping
/// it are empty, and the next `Sandbox` made beneath the same parent
/// removes them (`remove_stale_runs`), as it removes those of a caller that
/// was killed.
#[derive(Default)]
pub(crate) struct Ahead {
    state: std::sync::Arc<std::sync::Mutex<AheadState>>,
}

impl Clone for Ahead {
    /// A copy of a `Sandbox` that is then changed (another placement)
    /// starts with none ready.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for Ahead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ahead")
    }
}

fn lock_ahead(state: &std::sync::Mutex<AheadState>) -> std::sync::MutexGuard<'_, AheadState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Ahead {
    /// A run's cgroups: those made ahead for `support` and `limits` if
    /// there are, else made now; from the second run on, the next run's
    /// are made ahead.
    pub(crate) fn take(
        &self,
        support: &CgroupSupport,
        limits: &CgroupLimits,
    ) -> crate::Result<RunCgroups> {
        let key = (support.clone(), *limits);
        // Never waits for the lock (the `ahead` thread may hold it while it
        // waits for a CPU): held, the run makes its own.
        let Some(mut state) = crate::ahead::try_lock_briefly(&self.state) else {
            return RunCgroups::create(support, limits);
        };
        let (found, stale) = {
            state.asked = state.asked.saturating_add(1);
            let (found, stale) = match state.ready.take() {
                Some((k, cgroups)) if k == key => (Some(cgroups), None),
                other => (None, other),
            };
            if state.asked >= 2 && !state.making && !EXITING.load(Ordering::Acquire) {
                state.making = true;
                let pool = std::sync::Arc::clone(&self.state);
                let (support, limits) = key.clone();
                let submitted = crate::ahead::submit(move || make_ahead(&pool, support, limits));
                if submitted == crate::ahead::Submitted::Queued {
                    at_exit_remove(&self.state);
                } else {
                    state.making = false;
                }
            }
            drop(state);
            (found, stale)
        };
        // (Cgroups made for another placement go, outside the lock.)
        drop(stale);
        match found {
            Some(cgroups) => Ok(cgroups),
            None => RunCgroups::create(support, limits),
        }
    }
}

/// The process is exiting: nothing more is made ahead.
static EXITING: AtomicBool = AtomicBool::new(false);
/// Every `Ahead` that had cgroups made, for [`remove_at_exit`].
static LIVE: std::sync::Mutex<Vec<std::sync::Weak<std::sync::Mutex<AheadState>>>> =
    std::sync::Mutex::new(Vec::new());
/// The process that registered the exit hook.
static HOOKED_BY: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
/// Notified when a set made ahead is done.
static MADE: std::sync::Condvar = std::sync::Condvar::new();

/// Makes a run's cgroups for `pool` (on the `ahead` thread), unless nobody
/// wants them any more.
fn make_ahead(
    pool: &std::sync::Arc<std::sync::Mutex<AheadState>>,
    support: CgroupSupport,
    limits: CgroupLimits,
) {
    let wanted = || std::sync::Arc::strong_count(pool) > 1 && !EXITING.load(Ordering::Acquire);
    let made = wanted().then(|| RunCgroups::create(&support, &limits));
    let mut state = lock_ahead(pool);
    state.making = false;
    let unused = match made {
        Some(Ok(cgroups)) if state.ready.is_none() && wanted() => {
            state.ready = Some(((support, limits), cgroups));
            None
        }
        Some(Ok(cgroups)) => Some(cgroups),
        // The run that needs them makes them, and says why it cannot.
        Some(Err(e)) => {
            tracing::debug!(error = %e, "run cgroups not made ahead");
            None
        }
        None => None,
    };
    drop(state);
    drop(unused);
    MADE.notify_all();
}

/// Registers `state` (once per process, the exit hook) so that the
/// cgroups it holds at exit are removed.
fn at_exit_remove(state: &std::sync::Arc<std::sync::Mutex<AheadState>>) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        HOOKED_BY.get_or_init(std::process::id);
        if let Err(e) = crate::sys::at_exit(remove_at_exit) {
            tracing::debug!(error = %e, "run cgroups made ahead are left to the next process's sweep at exit");
        }
    });
    let mut live = LIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    live.retain(|w| w.strong_count() > 0);
    if !live
        .iter()
        .any(|w| w.as_ptr() == std::sync::Arc::as_ptr(state))
    {
        live.push(std::sync::Arc::downgrade(state));
    }
}

/// At exit: waits (a moment) for the sets being made, and removes every
/// set made ahead and not used.
extern "C" fn remove_at_exit() {
    // Not in a forked copy of the process that exits: the sets are the
    // parent's.
    if std::process::id() != *HOOKED_BY.get_or_init(|| 0) {
        return;
    }
    EXITING.store(true, Ordering::Release);
    let live: Vec<_> = LIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    for pool in live {
        let mut state = lock_ahead(&pool);
        while state.making {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            state = MADE
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        let ready = state.ready.take();
        drop(state);
        drop(ready);
    }
}
