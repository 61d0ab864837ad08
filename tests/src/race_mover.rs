//! The mover campaign: the pinned-parent residual, measured. Workers run
//! operations on `a/b/<unique name>` while a mover renames `root/a` out of
//! the root (to `outside/e<N>`, a sibling on the same filesystem) and plants
//! a fresh `root/a/b`. Nothing is a symlink: resolution is never refused;
//! what can go wrong is an operation that resolved `a/b` before the move and
//! acted on it after, so that its effect lands outside.
//!
//! An *outside effect* is a change in a moved-out `b` made after it was
//! moved: a name there that was not in the listing the mover made right
//! after the move (a creation), or an entry of that listing that lost
//! entries or went (a removal). Changes made between the move and that
//! listing count as inside, so the figure is a lower bound.
//!
//! Three set-ups ([`MoverMode`]): a plain directory; the root a bind mount
//! of itself opened with `require_own_mount`, the mover renaming through
//! the same path (its renames fail with `EXDEV`); the same root, but the
//! mover working through a second view of the filesystem (a bind mount of
//! the parent elsewhere), which the mount does not stop.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openat2_root::{ErrorKind, Root, RootOptions};

/// Where the root is and how the mover reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoverMode {
    /// A plain directory; the mover renames through its path.
    Plain,
    /// The root is a bind mount of itself, opened with
    /// `require_own_mount`; the mover renames through its path. Needs root
    /// (it mounts, in a mount namespace of its own).
    OwnMount,
    /// As `OwnMount`, but the mover renames through a second bind mount of
    /// the parent directory. Needs root.
    OtherView,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct MoverConfig {
    /// Operations in total, across workers.
    pub ops: u64,
    /// Worker threads.
    pub workers: usize,
    /// The set-up.
    pub mode: MoverMode,
    /// The mover's pause between moves.
    pub pause: Duration,
    /// Where to make the tree: by default tmpfs (`/dev/shm`) where there is
    /// one (the residual is about resolution, and `write_atomic`'s flushes
    /// would dominate the time on a disk), else the temporary directory.
    pub parent: Option<PathBuf>,
}

impl Default for MoverConfig {
    fn default() -> Self {
        Self {
            ops: 200_000,
            workers: 4,
            mode: MoverMode::Plain,
            pause: Duration::from_micros(500),
            parent: None,
        }
    }
}

/// The operations, each named by the prefix of what it makes.
pub const KINDS: [(&str, &str); 4] = [
    ("d", "create_dir"),
    ("f", "write_atomic"),
    ("p", "create_dir_all"),
    ("t", "remove_dir_all"),
];

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct MoverReport {
    /// The set-up.
    pub mode: Option<MoverMode>,
    /// Operations run.
    pub ops: u64,
    /// Operations that succeeded.
    pub succeeded: u64,
    /// Operations refused as escapes (a re-check saw the move).
    pub refused: u64,
    /// Operations that failed otherwise (`ENOENT` while `a` was away, …).
    pub other_errors: u64,
    /// Renames the mover tried.
    pub move_attempts: u64,
    /// Renames that moved `a` out.
    pub moves: u64,
    /// Renames refused with `EXDEV`.
    pub moves_refused: u64,
    /// Outside effects per kind, in [`KINDS`] order.
    pub outside: [u64; 4],
    /// Wall time.
    pub elapsed: Duration,
}

impl MoverReport {
    /// All outside effects.
    pub fn outside_total(&self) -> u64 {
        self.outside.iter().sum()
    }
}

impl std::fmt::Display for MoverReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per_kind: Vec<String> = KINDS
            .iter()
            .zip(self.outside)
            .map(|((_, name), n)| format!("{name} {n}"))
            .collect();
        write!(
            f,
            "mover ({:?}): {} operations in {:.1?} ({} succeeded, {} refused as escapes, {} other errors); \
             {} moves of {} tries ({} refused with EXDEV); {} outside effects ({})",
            self.mode.unwrap_or(MoverMode::Plain),
            self.ops,
            self.elapsed,
            self.succeeded,
            self.refused,
            self.other_errors,
            self.moves,
            self.move_attempts,
            self.moves_refused,
            self.outside_total(),
            per_kind.join(", ")
        )
    }
}

/// The number of entries beneath `path` (itself included), not following
/// symlinks; 0 if it is gone.
fn entries_beneath(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return 1;
    }
    1 + fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| entries_beneath(&e.path())).sum())
        .unwrap_or(0)
}

/// The names in `b` with their entry counts.
fn listing(b: &Path) -> HashMap<String, u64> {
    fs::read_dir(b)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        entries_beneath(&e.path()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the campaign in a fresh temporary directory. `OwnMount` and
/// `OtherView` mount, and so must run in a mount namespace of their own
/// (the caller's thread, after `unshare(CLONE_NEWNS)` and a private `/`).
pub fn run_mover(config: &MoverConfig) -> MoverReport {
    let shm = Path::new("/dev/shm");
    let tmp = match &config.parent {
        Some(parent) => tempfile::tempdir_in(parent).unwrap(),
        None if shm.is_dir() => tempfile::tempdir_in(shm).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let base = tmp.path().to_path_buf();
    let (root_dir, outside) = (base.join("root"), base.join("outside"));
    fs::create_dir_all(root_dir.join("a/b")).unwrap();
    fs::create_dir(&outside).unwrap();
    // Where the mover reaches `root` and `outside` from.
    let mut mover_base = base.clone();
    let mut options = RootOptions::new();
    if config.mode != MoverMode::Plain {
        let view = base.join("view");
        fs::create_dir(&view).unwrap();
        // The second view first: a bind of the parent, made before the
        // root became a mount, holds the plain directory.
        if config.mode == MoverMode::OtherView {
            rustix::mount::mount_bind(base.as_path(), view.as_path()).unwrap();
            mover_base = view;
        }
        rustix::mount::mount_bind(root_dir.as_path(), root_dir.as_path()).unwrap();
        options = options.require_own_mount(true);
    }
    let root = Arc::new(Root::open_with(&root_dir, options).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mover = {
        let stop = stop.clone();
        let (from, to_dir) = (mover_base.join("root/a"), mover_base.join("outside"));
        let pause = config.pause;
        std::thread::spawn(move || {
            let (mut attempts, mut refused) = (0u64, 0u64);
            let mut epochs: Vec<(PathBuf, HashMap<String, u64>)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(pause);
                attempts += 1;
                let to = to_dir.join(format!("e{}", epochs.len()));
                match fs::rename(&from, &to) {
                    Ok(()) => {
                        epochs.push((to.join("b"), listing(&to.join("b"))));
                        fs::create_dir_all(from.join("b")).unwrap();
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EXDEV) => refused += 1,
                    Err(e) => panic!("mover: {e}"),
                }
            }
            (attempts, refused, epochs)
        })
    };
    // [succeeded, refused, other]
    let counters: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let per_worker = config.ops.div_ceil(config.workers as u64);
    let workers: Vec<_> = (0..config.workers)
        .map(|w| {
            let (root, counters) = (root.clone(), counters.clone());
            std::thread::spawn(move || {
                for i in 0..per_worker {
                    let slot = match mover_op(&root, (i % 4) as usize, w, i) {
                        Ok(()) => 0,
                        Err(e) if e.kind() == ErrorKind::Escape => 1,
                        Err(_) => 2,
                    };
                    counters[slot].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (move_attempts, moves_refused, epochs) = mover.join().unwrap();
    let mut outside_effects = [0u64; 4];
    for (b, before) in &epochs {
        let after = listing(b);
        for (name, count) in &after {
            let made = !before.contains_key(name);
            let emptied = name.starts_with('t') && before.get(name).is_some_and(|n| n != count);
            if made || emptied {
                bump(&mut outside_effects, name);
            }
        }
        for name in before.keys() {
            if !after.contains_key(name) && name.starts_with('t') {
                bump(&mut outside_effects, name);
            }
        }
    }
    let elapsed = start.elapsed();
    if config.mode != MoverMode::Plain {
        let flags = rustix::mount::UnmountFlags::DETACH;
        let _ = rustix::mount::unmount(root_dir.as_path(), flags);
        if config.mode == MoverMode::OtherView {
            let _ = rustix::mount::unmount(base.join("view").as_path(), flags);
        }
    }
    MoverReport {
        mode: Some(config.mode),
        ops: counters.iter().map(|c| c.load(Ordering::Relaxed)).sum(),
        succeeded: counters[0].load(Ordering::Relaxed),
        refused: counters[1].load(Ordering::Relaxed),
        other_errors: counters[2].load(Ordering::Relaxed),
        move_attempts,
        moves: epochs.len() as u64,
        moves_refused,
        outside: outside_effects,
        elapsed,
    }
}

fn bump(counts: &mut [u64; 4], name: &str) {
    if let Some(k) = KINDS.iter().position(|(p, _)| name.starts_with(p)) {
        counts[k] += 1;
    }
}

/// Operation `kind` (a [`KINDS`] index) on a name of worker `w`'s own.
fn mover_op(root: &Root, kind: usize, w: usize, i: u64) -> openat2_root::Result<()> {
    let name = format!("a/b/{}-w{w}-{i}", KINDS[kind].0);
    match kind {
        0 => root.create_dir(&name, 0o755),
        1 => root.write_atomic(&name, b"made by a worker\n"),
        2 => root.create_dir_all(format!("{name}/q/r"), 0o755),
        _ => {
            // A small tree, then its removal (the move may come between
            // the two, or during the removal).
            root.create_dir_all(format!("{name}/x"), 0o755)?;
            for f in 0..6 {
                root.write(format!("{name}/x/{f}"), "")?;
            }
            root.remove_dir_all(&name)
        }
    }
}

/// Runs `f` in a thread of its own in a mount namespace of its own, with
/// every mount private: what it mounts is seen there only and goes with
/// the thread. Needs root (or `CAP_SYS_ADMIN`).
pub fn in_private_mount_ns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: CLONE_NEWNS (which implies CLONE_FS) changes this
        // thread's mount namespace and fs context only (threads it starts
        // inherit them); no fd table is unshared.
        #[allow(unsafe_code)]
        unsafe {
            rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS).unwrap();
        }
        rustix::mount::mount_change(
            "/",
            rustix::mount::MountPropagationFlags::REC
                | rustix::mount::MountPropagationFlags::PRIVATE,
        )
        .unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// Whether this process may run the mount set-ups (it is root).
pub fn may_mount() -> bool {
    rustix::process::geteuid().is_root()
}
