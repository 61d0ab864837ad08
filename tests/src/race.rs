//! The race campaign: attacker threads swap a directory and a symlink to an
//! outside canary with `renameat2(RENAME_EXCHANGE)` at several depths, while
//! worker threads run every mutating `Root` operation through the swapped
//! component in a loop. Every result must be success or an error; the canary
//! must be untouched.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openat2_root::{ErrorKind, OpenOptions, RemoveOptions, Root, RootOptions};

use crate::canary::Canary;

/// What to run.
#[derive(Debug, Clone)]
pub struct RaceConfig {
    /// Operations to run in total, across workers.
    pub ops: u64,
    /// Worker threads running operations.
    pub workers: usize,
    /// Depths (number of components before the swapped one, plus one) at
    /// which a swap point is planted; each has an attacker thread.
    pub depths: Vec<usize>,
    /// Check the canary every this many operations per worker.
    pub check_every: u64,
    /// Open the root with `follow_symlinks_in_root` and reach the swap
    /// point through a symlink holding `..` (`sw/up -> ../sw`), so that
    /// resolution crosses `..` while renames race (the `EAGAIN` path).
    pub follow_in_root: bool,
}

impl Default for RaceConfig {
    fn default() -> Self {
        Self {
            ops: 200_000,
            workers: 4,
            depths: vec![1, 4, 16],
            check_every: 25_000,
            follow_in_root: false,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct RaceReport {
    /// Operations run.
    pub ops: u64,
    /// Operations that succeeded.
    pub succeeded: u64,
    /// Operations refused as escapes (`ErrorKind::Escape`).
    pub refused: u64,
    /// Operations given up after repeated `EAGAIN` (`RetryExhausted`).
    pub retry_exhausted: u64,
    /// Operations that failed otherwise (`ENOENT` after a swap, …).
    pub other_errors: u64,
    /// Swaps the attackers made.
    pub swaps: u64,
    /// Changes found in the canary outside the root: escapes. Must be 0.
    pub escapes: u64,
    /// The changes, if any.
    pub escape_details: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
    /// Whether the root followed symlinks within itself.
    pub follow_in_root: bool,
}

impl std::fmt::Display for RaceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "race{}: {} operations in {:.1?} ({} succeeded, {} refused as escapes, {} retries exhausted, {} other errors), {} swaps, {} escapes",
            if self.follow_in_root {
                " (follow-in-root)"
            } else {
                ""
            },
            self.ops,
            self.elapsed,
            self.succeeded,
            self.refused,
            self.retry_exhausted,
            self.other_errors,
            self.swaps,
            self.escapes
        )
    }
}

/// The path of the swap point at `depth`: `d{depth}/p/p/…/sw`.
/// A worker's stream of choices: for each operation, the depth of the
/// swap point it goes through and which of `ops` operations it is
/// (xorshift, seeded by the worker's number, so runs are repeatable).
pub(crate) fn choices(
    seed: u64,
    depths: &[usize],
    ops: usize,
) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut rng = (seed + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    std::iter::repeat_with(move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (
            depths[(rng % depths.len() as u64) as usize],
            ((rng >> 8) % ops as u64) as usize,
        )
    })
}

pub(crate) fn swap_point(depth: usize) -> String {
    let mut p = format!("d{depth}");
    for _ in 1..depth {
        p.push_str("/p");
    }
    p
}

/// The campaign's ground: a root with a swap point at each depth, a
/// canary outside it, and the attackers that swap `sw` with `alt` (a
/// symlink to the canary).
pub(crate) struct Arena {
    // Held for its drop: the whole tree goes with it.
    _tmp: tempfile::TempDir,
    pub(crate) outside: PathBuf,
    pub(crate) canary: Canary,
    pub(crate) root: Arc<Root>,
    pub(crate) root_dir: PathBuf,
    swap_dirs: Vec<PathBuf>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) swaps: Arc<AtomicU64>,
}

impl Arena {
    /// Plants the trees. Inside each `sw` the canary's names `file` and
    /// `dir/file` hold `inside` data, `link` points to `inside-target`.
    pub(crate) fn plant(depths: &[usize], follow_in_root: bool) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        let canary = Canary::plant(&outside);
        let root_dir = tmp.path().join("root");
        fs::create_dir(&root_dir).unwrap();
        let mut swap_dirs = Vec::new();
        for &depth in depths {
            let base = root_dir.join(swap_point(depth));
            fs::create_dir_all(base.join("sw")).unwrap();
            // The same names as the canary, so an escape would hit them.
            fs::create_dir_all(base.join("sw/dir")).unwrap();
            fs::write(base.join("sw/file"), b"inside\n").unwrap();
            fs::write(base.join("sw/dir/file"), b"inside dir/file\n").unwrap();
            std::os::unix::fs::symlink("inside-target", base.join("sw/link")).unwrap();
            std::os::unix::fs::symlink(&outside, base.join("alt")).unwrap();
            std::os::unix::fs::symlink("../sw", base.join("sw/up")).unwrap();
            swap_dirs.push(base);
        }
        let options = RootOptions::new().follow_symlinks_in_root(follow_in_root);
        let root = Arc::new(Root::open_with(&root_dir, options).unwrap());
        Self {
            _tmp: tmp,
            outside,
            canary,
            root,
            root_dir,
            swap_dirs,
            stop: Arc::new(AtomicBool::new(false)),
            swaps: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Starts one attacker per swap point; they run until `stop`.
    pub(crate) fn attack(&self) -> Vec<std::thread::JoinHandle<()>> {
        self.swap_dirs
            .iter()
            .map(|base| {
                let (a, b) = (base.join("sw"), base.join("alt"));
                let (stop, swaps) = (self.stop.clone(), self.swaps.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        rustix::fs::renameat_with(
                            rustix::fs::CWD,
                            a.as_path(),
                            rustix::fs::CWD,
                            b.as_path(),
                            rustix::fs::RenameFlags::EXCHANGE,
                        )
                        .unwrap();
                        swaps.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect()
    }
}

/// Runs the campaign in a fresh temporary directory.
pub fn run(config: &RaceConfig) -> RaceReport {
    let arena = Arena::plant(&config.depths, config.follow_in_root);
    let (outside, canary, root) = (&arena.outside, &arena.canary, &arena.root);
    let (stop, swaps) = (&arena.stop, &arena.swaps);
    let counters: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let start = Instant::now();
    let attackers = arena.attack();

    let per_worker = config.ops.div_ceil(config.workers as u64);
    let escape_found = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..config.workers)
        .map(|w| {
            let root = root.clone();
            let counters = counters.clone();
            let depths = config.depths.clone();
            let check_every = config.check_every.max(1);
            let outside = outside.clone();
            let escape_found = escape_found.clone();
            let via = if config.follow_in_root { "sw/up" } else { "sw" };
            std::thread::spawn(move || {
                let picks = choices(w as u64, &depths, OPS).take(per_worker as usize);
                for (i, (depth, op)) in picks.enumerate() {
                    let i = i as u64;
                    let base = format!("{}/{via}", swap_point(depth));
                    let outcome = run_op(&root, op, &base, w);
                    counters[outcome].fetch_add(1, Ordering::Relaxed);
                    if (i + 1).is_multiple_of(check_every) && quick_escape_check(&outside) {
                        escape_found.store(true, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.join().unwrap();
    }
    let escape_details = canary.changes();
    let mut escapes = escape_details.len() as u64;
    if escapes == 0 && escape_found.load(Ordering::Relaxed) {
        escapes = 1;
    }
    RaceReport {
        ops: counters.iter().map(|c| c.load(Ordering::Relaxed)).sum(),
        succeeded: counters[0].load(Ordering::Relaxed),
        refused: counters[1].load(Ordering::Relaxed),
        other_errors: counters[2].load(Ordering::Relaxed),
        retry_exhausted: counters[3].load(Ordering::Relaxed),
        follow_in_root: config.follow_in_root,
        swaps: swaps.load(Ordering::Relaxed),
        escapes,
        escape_details,
        elapsed: start.elapsed(),
    }
}

/// A cheap mid-run check: a worker's name showing up in the canary.
fn quick_escape_check(outside: &Path) -> bool {
    fs::read_dir(outside)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().contains("-w"))
        })
        .unwrap_or(false)
        || fs::read(outside.join("file"))
            .map(|c| c != b"canary file\n")
            .unwrap_or(true)
}

/// How many distinct operations `run_op` knows.
const OPS: usize = 18;

/// Runs operation `op` through the swap point `base`; returns 0 for
/// success, 1 for a refused escape, 2 for another error, 3 for retries
/// exhausted.
fn run_op(root: &Root, op: usize, base: &str, w: usize) -> usize {
    let p = |name: &str| PathBuf::from(format!("{base}/{name}"));
    let mine = |name: &str| p(&format!("{name}-w{w}"));
    let result = match op {
        0 => root
            .create_dir(mine("newdir"), 0o755)
            .and_then(|()| root.remove_dir(mine("newdir"))),
        1 => root.write_atomic(p("file"), b"inside\n"),
        2 => root
            .write_atomic(mine("victim"), b"v")
            .and_then(|()| root.remove_file(mine("victim"))),
        3 => root.remove_file(p("victim")),
        4 => root.set_permissions(p("file"), [0o600, 0o644][w % 2]),
        5 => root.set_len(p("file"), 3),
        6 => root.set_times(p("file"), None, Some(std::time::UNIX_EPOCH)),
        7 => root.chown(p("file"), None, Some(w as u32 + 1)),
        8 => root
            .hard_link(p("file"), mine("hl"))
            .and_then(|()| root.remove_file(mine("hl"))),
        9 => root
            .symlink("/", mine("sl"))
            .and_then(|()| root.remove_file(mine("sl"))),
        10 => root
            .copy(p("file"), mine("copy"))
            .map(drop)
            .and_then(|()| root.remove_file(mine("copy"))),
        11 => root
            .create_dir_all(mine("tree").join("a/b"), 0o755)
            .and_then(|()| root.remove_dir_all(mine("tree"))),
        12 => root.remove_dir_all(p("tree")),
        13 => root
            .open_file(
                mine("new"),
                OpenOptions::new().write(true).create(true).truncate(true),
            )
            .map(drop)
            .and_then(|()| root.remove(mine("new"), RemoveOptions::default())),
        14 => root
            .rename(p("file"), mine("moved"))
            .and_then(|()| root.rename(mine("moved"), p("file"))),
        15 => root
            .rename_exchange(p("file"), p("dir"))
            .and_then(|()| root.rename_exchange(p("file"), p("dir"))),
        16 => root.rename_noreplace(p("link"), mine("nr")),
        _ => root
            .open_file(p("dir/file"), OpenOptions::new().write(true).create(true))
            .map(drop),
    };
    match result {
        Ok(()) => 0,
        Err(e) if e.kind() == ErrorKind::Escape => 1,
        Err(e) if e.kind() == ErrorKind::RetryExhausted => 3,
        Err(_) => 2,
    }
}
