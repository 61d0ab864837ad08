//! Filesystem hot paths at path depths 1, 4 and 16: `Root` against
//! `std::fs` on absolute paths (the unsafe floor) and `cap-std` (the peer),
//! in the same run. `cargo xtask bench fs` prints the ratio table.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)] // criterion's macros; a panic is a failed bench

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cap_std::ambient_authority;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use openat2_root::{OpenOptions, Root};

const DEPTHS: [usize; 3] = [1, 4, 16];

/// A tree with `d/d/…/f` at each depth: `depth - 1` directories, then `f`.
struct Tree {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: Root,
    cap: cap_std::fs::Dir,
}

impl Tree {
    /// On tmpfs (`/dev/shm`) unless `BENCH_DIR` names another place: the
    /// resolution paths are measured without a disk journal's noise.
    fn new() -> Self {
        let parent = std::env::var_os("BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let shm = PathBuf::from("/dev/shm");
                if shm.is_dir() {
                    shm
                } else {
                    std::env::temp_dir()
                }
            });
        let tmp = tempfile::tempdir_in(&parent).unwrap();
        let base = tmp.path().to_path_buf();
        for depth in DEPTHS {
            let dir = base.join(Self::dir_of(depth));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("f"), b"benchmark file\n").unwrap();
        }
        let root = Root::open(&base).unwrap();
        let cap = cap_std::fs::Dir::open_ambient_dir(&base, ambient_authority()).unwrap();
        Self {
            _tmp: tmp,
            base,
            root,
            cap,
        }
    }

    /// The directory holding the leaf at `depth`, relative (`.` at depth 1).
    fn dir_of(depth: usize) -> String {
        if depth == 1 {
            ".".into()
        } else {
            format!("t{depth}/{}", vec!["d"; depth - 2].join("/"))
                .trim_end_matches('/')
                .to_string()
        }
    }

    /// The relative path of `name` at `depth` components.
    fn rel(depth: usize, name: &str) -> String {
        if depth == 1 {
            name.to_string()
        } else {
            format!("{}/{name}", Self::dir_of(depth))
        }
    }

    fn abs(&self, depth: usize, name: &str) -> PathBuf {
        self.base.join(Self::rel(depth, name))
    }
}

/// One group: `op` at every depth, for std, cap-std and Root.
fn group(
    c: &mut Criterion,
    op: &str,
    tree: &Tree,
    std_fn: impl Fn(&Path, &Path),
    cap_fn: impl Fn(&cap_std::fs::Dir, &str, &str),
    root_fn: impl Fn(&Root, &str, &str),
) {
    let mut g = c.benchmark_group(op);
    for depth in DEPTHS {
        let (rel_f, rel_g) = (Tree::rel(depth, "f"), Tree::rel(depth, "g"));
        let (abs_f, abs_g) = (tree.abs(depth, "f"), tree.abs(depth, "g"));
        g.bench_with_input(BenchmarkId::new("std", depth), &depth, |b, _| {
            b.iter(|| std_fn(&abs_f, &abs_g))
        });
        g.bench_with_input(BenchmarkId::new("cap-std", depth), &depth, |b, _| {
            b.iter(|| cap_fn(&tree.cap, &rel_f, &rel_g))
        });
        g.bench_with_input(BenchmarkId::new("root", depth), &depth, |b, _| {
            b.iter(|| root_fn(&tree.root, &rel_f, &rel_g))
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let tree = Tree::new();
    group(
        c,
        "metadata",
        &tree,
        |f, _| {
            black_box(fs::metadata(f).unwrap());
        },
        |d, f, _| {
            black_box(d.metadata(f).unwrap());
        },
        |r, f, _| {
            black_box(r.metadata(f).unwrap());
        },
    );
    group(
        c,
        "open_close",
        &tree,
        |f, _| drop(black_box(fs::File::open(f).unwrap())),
        |d, f, _| drop(black_box(d.open(f).unwrap())),
        |r, f, _| {
            drop(black_box(
                r.open_file(f, OpenOptions::new().read(true)).unwrap(),
            ))
        },
    );
    // The same open with the special-file check off: what the FIFO/device
    // check (fstat + fcntl) costs.
    let mut g = c.benchmark_group("open_close");
    for depth in DEPTHS {
        let rel = Tree::rel(depth, "f");
        let mut opts = OpenOptions::new();
        opts.read(true).allow_special_files(true);
        g.bench_with_input(
            BenchmarkId::new("root-allow-special", depth),
            &depth,
            |b, _| b.iter(|| drop(black_box(tree.root.open_file(&rel, &opts).unwrap()))),
        );
    }
    g.finish();
    group(
        c,
        "create_remove",
        &tree,
        |_, g| {
            drop(fs::File::create_new(g).unwrap());
            fs::remove_file(g).unwrap();
        },
        |d, _, g| {
            drop(d.create(g).unwrap());
            d.remove_file(g).unwrap();
        },
        |r, _, g| {
            drop(
                r.open_file(g, OpenOptions::new().write(true).create_new(true))
                    .unwrap(),
            );
            r.remove_file(g).unwrap();
        },
    );
    group(
        c,
        "rename",
        &tree,
        |f, g| {
            fs::rename(f, g).unwrap();
            fs::rename(g, f).unwrap();
        },
        |d, f, g| {
            d.rename(f, d, g).unwrap();
            d.rename(g, d, f).unwrap();
        },
        |r, f, g| {
            r.rename(f, g).unwrap();
            r.rename(g, f).unwrap();
        },
    );
    group(
        c,
        "create_dir_all",
        &tree,
        |_, g| {
            fs::create_dir_all(g).unwrap();
            fs::remove_dir(g).unwrap();
        },
        |d, _, g| {
            d.create_dir_all(g).unwrap();
            d.remove_dir(g).unwrap();
        },
        |r, _, g| {
            r.create_dir_all(g, 0o755).unwrap();
            r.remove_dir(g).unwrap();
        },
    );
}

criterion_group! {
    name = fs_benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = benches
}
criterion_main!(fs_benches);
