//! The read side of the race campaign: while attackers swap each `sw`
//! with a symlink to the canary outside the root, workers read through it
//! with every read-side `Root` operation (`open_file` and read, `copy`'s
//! source, `metadata`, `symlink_metadata`, `read_dir`, `read_link`). An
//! escape is any returned byte, inode or entry that came from outside: the
//! canary's contents, the inode of any of its entries, a name only it
//! holds, its link's target.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openat2_root::{ErrorKind, OpenOptions, Root};

use crate::race::{Arena, choices, swap_point};

/// What to run.
#[derive(Debug, Clone)]
pub struct ReadRaceConfig {
    /// Read operations in total, across workers.
    pub ops: u64,
    /// Worker threads.
    pub workers: usize,
    /// Depths of the swap points (one attacker each).
    pub depths: Vec<usize>,
}

impl Default for ReadRaceConfig {
    fn default() -> Self {
        Self {
            ops: 200_000,
            workers: 4,
            depths: vec![1, 4, 16],
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct ReadRaceReport {
    /// Operations run.
    pub ops: u64,
    /// Reads that returned data (all of it from inside).
    pub succeeded: u64,
    /// Reads refused as escapes (`ErrorKind::Escape`).
    pub refused: u64,
    /// Reads that failed otherwise (`ENOENT` mid-swap, retries exhausted).
    pub other_errors: u64,
    /// Swaps the attackers made.
    pub swaps: u64,
    /// Reads that returned something from outside. Must be 0.
    pub escapes: u64,
    /// The first few, described.
    pub escape_details: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

impl std::fmt::Display for ReadRaceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "read race: {} reads in {:.1?} ({} returned data, {} refused as escapes, {} other errors), {} swaps, {} escapes",
            self.ops,
            self.elapsed,
            self.succeeded,
            self.refused,
            self.other_errors,
            self.swaps,
            self.escapes
        )
    }
}

/// What marks a result as coming from outside.
struct Outside {
    inodes: HashSet<(u64, u64)>,
}

/// Names only the canary holds: an entry listing one came from outside.
const OUTSIDE_ONLY_NAMES: &[&str] = &["victim", "tree"];

/// One read's verdict.
enum Verdict {
    Inside,
    Refused,
    Failed,
    Escaped(String),
}

/// How many distinct reads `read_op` knows.
const READS: usize = 8;

fn read_op(root: &Root, op: usize, base: &str, w: usize, outside: &Outside) -> Verdict {
    let p = |name: &str| PathBuf::from(format!("{base}/{name}"));
    let from_outside_bytes = |bytes: &[u8], what: &str| {
        if bytes.windows(6).any(|w| w == b"canary") {
            Verdict::Escaped(format!("{what}: read {:?}", String::from_utf8_lossy(bytes)))
        } else {
            Verdict::Inside
        }
    };
    let from_outside_inode = |dev: u64, ino: u64, what: &str| {
        if outside.inodes.contains(&(dev, ino)) {
            Verdict::Escaped(format!("{what}: inode {ino} is the canary's"))
        } else {
            Verdict::Inside
        }
    };
    let result = match op {
        0 | 1 => {
            let name = if op == 0 { "file" } else { "dir/file" };
            root.open_file(p(name), OpenOptions::new().read(true))
                .map(|mut f| {
                    let mut bytes = Vec::new();
                    // A read error after the open is not the resolution's.
                    let _ = f.read_to_end(&mut bytes);
                    from_outside_bytes(&bytes, name)
                })
        }
        2 => root
            .metadata(p("file"))
            .map(|m| from_outside_inode(m.dev(), m.ino(), "metadata file")),
        3 => root
            .metadata(p("dir"))
            .map(|m| from_outside_inode(m.dev(), m.ino(), "metadata dir")),
        4 => root
            .symlink_metadata(p("link"))
            .map(|m| from_outside_inode(m.dev(), m.ino(), "symlink_metadata link")),
        5 => root.read_dir(base).map(|entries| {
            let names: Vec<String> = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            match names
                .iter()
                .find(|n| OUTSIDE_ONLY_NAMES.contains(&n.as_str()))
            {
                Some(name) => Verdict::Escaped(format!("read_dir listed {name}")),
                None => Verdict::Inside,
            }
        }),
        6 => root.read_link(p("link")).map(|target| {
            if target == std::path::Path::new("file") {
                Verdict::Escaped("read_link returned the canary's target".into())
            } else {
                Verdict::Inside
            }
        }),
        _ => {
            // copy's source through the swap point, its destination at the
            // top of the root: the copy must hold inside data only.
            let dest = format!("copy-w{w}");
            root.copy(p("file"), &dest).and_then(|_| {
                let mut bytes = Vec::new();
                root.open_file(&dest, OpenOptions::new().read(true))
                    .map(|mut f| {
                        let _ = f.read_to_end(&mut bytes);
                        from_outside_bytes(&bytes, "copy")
                    })
            })
        }
    };
    match result {
        Ok(verdict) => verdict,
        Err(e) if e.kind() == ErrorKind::Escape => Verdict::Refused,
        Err(_) => Verdict::Failed,
    }
}

/// Runs the read-side campaign in a fresh temporary directory.
pub fn run_reads(config: &ReadRaceConfig) -> ReadRaceReport {
    let arena = Arena::plant(&config.depths, false);
    let outside = Arc::new(Outside {
        inodes: crate::canary::snapshot(&arena.outside, false)
            .keys()
            .filter_map(|rel| std::fs::symlink_metadata(arena.outside.join(rel)).ok())
            .map(|m| (m.dev(), m.ino()))
            .collect(),
    });
    assert!(outside.inodes.len() >= 6, "the canary's inodes are known");
    // [inside, refused, failed, escaped]
    let counters: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let details = Arc::new(std::sync::Mutex::new(Vec::new()));
    let start = Instant::now();
    let attackers = arena.attack();
    let per_worker = config.ops.div_ceil(config.workers as u64);
    let workers: Vec<_> = (0..config.workers)
        .map(|w| {
            let (root, outside) = (arena.root.clone(), outside.clone());
            let (counters, details) = (counters.clone(), details.clone());
            let depths = config.depths.clone();
            std::thread::spawn(move || {
                for (depth, op) in choices(w as u64 + 7, &depths, READS).take(per_worker as usize) {
                    let base = format!("{}/sw", swap_point(depth));
                    let slot = match read_op(&root, op, &base, w, &outside) {
                        Verdict::Inside => 0,
                        Verdict::Refused => 1,
                        Verdict::Failed => 2,
                        Verdict::Escaped(what) => {
                            let mut d = details.lock().unwrap();
                            if d.len() < 20 {
                                d.push(what);
                            }
                            3
                        }
                    };
                    counters[slot].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    arena.stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.join().unwrap();
    }
    arena.canary.assert_untouched("read race");
    let count = |i: usize| counters[i].load(Ordering::Relaxed);
    let escape_details = details.lock().unwrap().clone();
    ReadRaceReport {
        ops: (0..4).map(count).sum(),
        succeeded: count(0),
        refused: count(1),
        other_errors: count(2),
        swaps: arena.swaps.load(Ordering::Relaxed),
        escapes: count(3),
        escape_details,
        elapsed: start.elapsed(),
    }
}

/// The control: the same reads with `std::fs` on absolute paths (which
/// follow the swapped-in symlink) for `ops` rounds; returns how many read
/// the canary's data. A campaign whose control reads nothing from outside
/// shows nothing.
pub fn std_control(ops: u64) -> u64 {
    let arena = Arena::plant(&[1], false);
    let attackers = arena.attack();
    let file = arena.root_dir.join(swap_point(1)).join("sw/file");
    let mut outside = 0;
    for _ in 0..ops {
        if std::fs::read(&file).is_ok_and(|b| b.starts_with(b"canary")) {
            outside += 1;
        }
    }
    arena.stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.join().unwrap();
    }
    outside
}
