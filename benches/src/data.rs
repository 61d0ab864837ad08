//! The data paths: `copy` (a dense and a sparse file) against `std::fs::copy`,
//! cap-std's `Dir::copy` and `cp --reflink=auto --sparse=auto`, and
//! `write_atomic` with and without its flushes against `std::fs::write`;
//! each in interleaved rounds on the same directory as the path table.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use openat2_root::{DurableWrite, Root};

/// The size of each file copied.
pub const COPY_SIZE: u64 = 64 << 20;

/// A file to copy: its name and how it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// 64 MiB of data.
    Dense,
    /// 64 MiB long, with 1 MiB of data at the start and 1 MiB at the end;
    /// the rest is a hole.
    Sparse,
}

impl Source {
    /// Both, in table order.
    pub const ALL: [Source; 2] = [Source::Dense, Source::Sparse];

    /// The file's name, and its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Source::Dense => "dense",
            Source::Sparse => "sparse",
        }
    }
}

/// Who copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copier {
    /// `std::fs::copy` on absolute paths.
    Std,
    /// `cap_std::fs::Dir::copy`.
    CapStd,
    /// `Root::copy`.
    Root,
    /// `cp --reflink=auto --sparse=auto` (a process: its start is included).
    Cp,
}

impl Copier {
    /// All four, in table order.
    pub const ALL: [Copier; 4] = [Copier::Std, Copier::CapStd, Copier::Root, Copier::Cp];

    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            Copier::Std => "std::fs::copy",
            Copier::CapStd => "cap-std",
            Copier::Root => "Root",
            Copier::Cp => "cp --reflink=auto --sparse=auto",
        }
    }
}

/// A directory holding the sources, and handles on it.
pub struct DataDir {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: Root,
    cap: cap_std::fs::Dir,
}

impl DataDir {
    /// Makes the sources in a new directory beneath `parent`.
    pub fn new(parent: &Path) -> Self {
        let tmp = tempfile::tempdir_in(parent).unwrap();
        let base = tmp.path().to_path_buf();
        let block: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
        let dense = fs::File::create(base.join(Source::Dense.name())).unwrap();
        for _ in 0..(COPY_SIZE >> 20) {
            std::io::Write::write_all(&mut &dense, &block).unwrap();
        }
        let sparse = fs::File::create(base.join(Source::Sparse.name())).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&sparse, &block, 0).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&sparse, &block, COPY_SIZE - (1 << 20)).unwrap();
        dense.sync_all().unwrap();
        sparse.sync_all().unwrap();
        let root = Root::open(&base).unwrap();
        let cap = cap_std::fs::Dir::open_ambient_dir(&base, cap_std::ambient_authority()).unwrap();
        Self {
            _tmp: tmp,
            base,
            root,
            cap,
        }
    }

    /// Copies `source` to a new file with `copier`; returns the seconds it
    /// took and the bytes the copy occupies on disk. The copy is removed
    /// afterwards (untimed).
    pub fn copy(&self, source: Source, copier: Copier) -> (f64, u64) {
        let from = source.name();
        let to = format!("{from}.copy");
        let (abs_from, abs_to) = (self.base.join(from), self.base.join(&to));
        let start = Instant::now();
        match copier {
            Copier::Std => drop(fs::copy(&abs_from, &abs_to).unwrap()),
            Copier::CapStd => drop(self.cap.copy(from, &self.cap, &to).unwrap()),
            Copier::Root => drop(self.root.copy(from, &to).unwrap()),
            Copier::Cp => {
                let status = Command::new("cp")
                    .args(["--reflink=auto", "--sparse=auto"])
                    .arg(&abs_from)
                    .arg(&abs_to)
                    .status()
                    .unwrap();
                assert!(status.success(), "cp failed");
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let meta = fs::metadata(&abs_to).unwrap();
        assert_eq!(
            meta.len(),
            COPY_SIZE,
            "{} copied {from} wrongly",
            copier.name()
        );
        fs::remove_file(&abs_to).unwrap();
        (secs, meta.blocks() * 512)
    }

    /// Replaces the 4 KiB file `w` with `how`; the seconds it took.
    pub fn write(&self, how: Writer, data: &[u8]) -> f64 {
        let start = Instant::now();
        match how {
            Writer::Std => fs::write(self.base.join("w"), data).unwrap(),
            Writer::Atomic(durable) => self.root.write_atomic_with("w", data, durable).unwrap(),
        }
        start.elapsed().as_secs_f64()
    }
}

/// Who replaces a small file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// `std::fs::write`: truncate and write in place, no flush (not atomic).
    Std,
    /// `Root::write_atomic_with`.
    Atomic(DurableWrite),
}

impl Writer {
    /// All three, in table order.
    pub const ALL: [Writer; 3] = [
        Writer::Std,
        Writer::Atomic(DurableWrite::NoSync),
        Writer::Atomic(DurableWrite::Sync),
    ];

    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            Writer::Std => "std::fs::write (not atomic)",
            Writer::Atomic(DurableWrite::NoSync) => "write_atomic NoSync",
            Writer::Atomic(_) => "write_atomic (durable)",
        }
    }
}

/// The median of `samples`.
pub fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}
