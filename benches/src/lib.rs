//! The filesystem hot paths measured by the benches, each written once for
//! `std::fs` on absolute paths (the unsafe floor), `cap-std` (the peer) and
//! `Root`. `benches/fs.rs` runs them under criterion; `benches/fs_pairwise.rs`
//! interleaves the three in rounds and prints the ratio table that
//! `cargo xtask bench fs` shows.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing benchmark operation is a bug to see at once

use std::fs;
use std::hint::black_box;
use std::path::PathBuf;

use cap_std::ambient_authority;
use openat2_root::{OpenOptions, Root};

pub mod data;
pub mod dns;

/// bubblewrap's arguments for the sandbox the spawn benches compare with:
/// every namespace, the host's root read-only, a fresh /dev and /proc
/// (the command follows).
pub const BWRAP_SANDBOX: [&str; 8] = [
    "--unshare-all",
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--proc",
    "/proc",
];

/// The path depths measured (components, the last one included).
pub const DEPTHS: [usize; 3] = [1, 4, 16];

/// The operations measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `metadata` of a file.
    Metadata,
    /// Open a file for reading, then close it.
    OpenClose,
    /// Create a new file, close it, remove it.
    CreateRemove,
    /// Rename a file and back.
    Rename,
    /// `create_dir_all` of a directory whose parent exists, then remove it.
    CreateDirAll,
}

impl Op {
    /// Every operation, in table order.
    pub const ALL: [Op; 5] = [
        Op::Metadata,
        Op::OpenClose,
        Op::CreateRemove,
        Op::Rename,
        Op::CreateDirAll,
    ];

    /// The name used in tables and criterion ids.
    pub fn name(self) -> &'static str {
        match self {
            Op::Metadata => "metadata",
            Op::OpenClose => "open_close",
            Op::CreateRemove => "create_remove",
            Op::Rename => "rename",
            Op::CreateDirAll => "create_dir_all",
        }
    }
}

/// Who performs the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imp {
    /// `std::fs` on absolute paths.
    Std,
    /// `cap_std::fs::Dir`.
    CapStd,
    /// `openat2_root::Root`.
    Root,
    /// `Root`, opening with `allow_special_files(true)` (no FIFO/device
    /// check); only differs for [`Op::OpenClose`].
    RootAllowSpecial,
}

impl Imp {
    /// The three compared in every row.
    pub const COMPARED: [Imp; 3] = [Imp::Std, Imp::CapStd, Imp::Root];

    /// The name used in tables and criterion ids.
    pub fn name(self) -> &'static str {
        match self {
            Imp::Std => "std",
            Imp::CapStd => "cap-std",
            Imp::Root => "root",
            Imp::RootAllowSpecial => "root-allow-special",
        }
    }
}

/// A tree with a file `f` at each depth (`depth - 1` directories, then `f`),
/// and the three handles on it.
pub struct Tree {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: Root,
    cap: cap_std::fs::Dir,
}

/// The paths one depth uses: `f` (exists) and `g` (free), relative and
/// absolute.
pub struct Paths {
    rel_f: String,
    rel_g: String,
    abs_f: PathBuf,
    abs_g: PathBuf,
}

impl Tree {
    /// Builds the tree on tmpfs (`/dev/shm`) unless `BENCH_DIR` names another
    /// place: the resolution paths are measured without a disk journal's
    /// noise.
    pub fn new() -> Self {
        let tmp = tempfile::tempdir_in(bench_parent()).unwrap();
        let base = tmp.path().to_path_buf();
        for depth in DEPTHS {
            let dir = base.join(dir_of(depth));
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

    /// The paths at `depth`.
    pub fn paths(&self, depth: usize) -> Paths {
        let (rel_f, rel_g) = (rel(depth, "f"), rel(depth, "g"));
        Paths {
            abs_f: self.base.join(&rel_f),
            abs_g: self.base.join(&rel_g),
            rel_f,
            rel_g,
        }
    }

    /// Runs `op` once with `imp`.
    pub fn run(&self, op: Op, imp: Imp, p: &Paths) {
        let read = || *OpenOptions::new().read(true);
        match (op, imp) {
            (Op::Metadata, Imp::Std) => drop(black_box(fs::metadata(&p.abs_f).unwrap())),
            (Op::Metadata, Imp::CapStd) => drop(black_box(self.cap.metadata(&p.rel_f).unwrap())),
            (Op::Metadata, _) => drop(black_box(self.root.metadata(&p.rel_f).unwrap())),
            (Op::OpenClose, Imp::Std) => drop(black_box(fs::File::open(&p.abs_f).unwrap())),
            (Op::OpenClose, Imp::CapStd) => drop(black_box(self.cap.open(&p.rel_f).unwrap())),
            (Op::OpenClose, Imp::Root) => {
                drop(black_box(self.root.open_file(&p.rel_f, &read()).unwrap()))
            }
            (Op::OpenClose, Imp::RootAllowSpecial) => {
                let opts = *read().allow_special_files(true);
                drop(black_box(self.root.open_file(&p.rel_f, &opts).unwrap()))
            }
            (Op::CreateRemove, Imp::Std) => {
                drop(fs::File::create_new(&p.abs_g).unwrap());
                fs::remove_file(&p.abs_g).unwrap();
            }
            (Op::CreateRemove, Imp::CapStd) => {
                drop(self.cap.create(&p.rel_g).unwrap());
                self.cap.remove_file(&p.rel_g).unwrap();
            }
            (Op::CreateRemove, _) => {
                let create = *OpenOptions::new().write(true).create_new(true);
                drop(self.root.open_file(&p.rel_g, &create).unwrap());
                self.root.remove_file(&p.rel_g).unwrap();
            }
            (Op::Rename, Imp::Std) => {
                fs::rename(&p.abs_f, &p.abs_g).unwrap();
                fs::rename(&p.abs_g, &p.abs_f).unwrap();
            }
            (Op::Rename, Imp::CapStd) => {
                self.cap.rename(&p.rel_f, &self.cap, &p.rel_g).unwrap();
                self.cap.rename(&p.rel_g, &self.cap, &p.rel_f).unwrap();
            }
            (Op::Rename, _) => {
                self.root.rename(&p.rel_f, &p.rel_g).unwrap();
                self.root.rename(&p.rel_g, &p.rel_f).unwrap();
            }
            (Op::CreateDirAll, Imp::Std) => {
                fs::create_dir_all(&p.abs_g).unwrap();
                fs::remove_dir(&p.abs_g).unwrap();
            }
            (Op::CreateDirAll, Imp::CapStd) => {
                self.cap.create_dir_all(&p.rel_g).unwrap();
                self.cap.remove_dir(&p.rel_g).unwrap();
            }
            (Op::CreateDirAll, _) => {
                self.root.create_dir_all(&p.rel_g, 0o755).unwrap();
                self.root.remove_dir(&p.rel_g).unwrap();
            }
        }
    }
}

/// The syscalls an `open_close` of `Root` with the FIFO/device check makes,
/// each measured alone, to explain its ratio to cap-std (one `openat2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syscall {
    /// `openat2(O_RDONLY)` and `close`: all cap-std's open makes.
    Openat2Read,
    /// `openat2(O_PATH)` and `close`: resolves without opening.
    Openat2Path,
    /// `fstat` of that `O_PATH` fd: is it a regular file?
    Fstat,
    /// `openat(/proc/self/fd, "N", O_RDONLY)` and `close`: the reopen.
    ProcReopen,
}

impl Syscall {
    /// All four, in table order.
    pub const ALL: [Syscall; 4] = [
        Syscall::Openat2Read,
        Syscall::Openat2Path,
        Syscall::Fstat,
        Syscall::ProcReopen,
    ];

    /// The name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Syscall::Openat2Read => "openat2(O_RDONLY) + close",
            Syscall::Openat2Path => "openat2(O_PATH) + close",
            Syscall::Fstat => "fstat(O_PATH fd)",
            Syscall::ProcReopen => "openat(/proc/self/fd, N) + close",
        }
    }
}

/// Handles for [`Tree::syscall`]: an `O_PATH` fd of the file and
/// `/proc/self/fd`.
pub struct Primitives {
    path_fd: std::os::fd::OwnedFd,
    fd_name: std::ffi::CString,
    proc_fd: std::os::fd::OwnedFd,
}

impl Tree {
    /// Opens what [`Tree::syscall`] needs for the file at `p`.
    pub fn primitives(&self, p: &Paths) -> Primitives {
        use rustix::fs::{Mode, OFlags};
        use std::os::fd::AsRawFd;
        let path_fd = rustix::fs::openat2(
            &self.root,
            p.rel_f.as_str(),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
        .unwrap();
        let proc_fd = rustix::fs::open(
            "/proc/self/fd",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        Primitives {
            fd_name: std::ffi::CString::new(path_fd.as_raw_fd().to_string()).unwrap(),
            path_fd,
            proc_fd,
        }
    }

    /// Makes one `which` on the file at `p`.
    pub fn syscall(&self, which: Syscall, p: &Paths, prims: &Primitives) {
        use rustix::fs::{Mode, OFlags};
        let open = |flags: OFlags| {
            rustix::fs::openat2(
                &self.root,
                p.rel_f.as_str(),
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                RESOLVE,
            )
            .unwrap()
        };
        match which {
            Syscall::Openat2Read => drop(black_box(open(OFlags::RDONLY))),
            Syscall::Openat2Path => drop(black_box(open(OFlags::PATH))),
            Syscall::Fstat => drop(black_box(rustix::fs::fstat(&prims.path_fd).unwrap())),
            Syscall::ProcReopen => drop(black_box(
                rustix::fs::openat(
                    &prims.proc_fd,
                    prims.fd_name.as_c_str(),
                    OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .unwrap(),
            )),
        }
    }
}

/// The resolve flags of a default `Root` (and of cap-std's openat2).
const RESOLVE: rustix::fs::ResolveFlags = rustix::fs::ResolveFlags::BENEATH
    .union(rustix::fs::ResolveFlags::NO_SYMLINKS)
    .union(rustix::fs::ResolveFlags::NO_MAGICLINKS);

/// Where the benchmarks make their trees: `BENCH_DIR` if set, else tmpfs
/// (`/dev/shm`), so that resolution is measured without a disk journal's
/// noise.
pub fn bench_parent() -> PathBuf {
    std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let shm = PathBuf::from("/dev/shm");
            if shm.is_dir() {
                shm
            } else {
                std::env::temp_dir()
            }
        })
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

/// The directory holding the file at `depth`, relative (`.` at depth 1).
fn dir_of(depth: usize) -> String {
    let mut dir = format!("t{depth}");
    for _ in 2..depth {
        dir.push_str("/d");
    }
    if depth == 1 { ".".into() } else { dir }
}

/// The relative path of `name` at `depth` components.
fn rel(depth: usize, name: &str) -> String {
    if depth == 1 {
        name.to_string()
    } else {
        format!("{}/{name}", dir_of(depth))
    }
}
