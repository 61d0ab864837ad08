//! Arbitrary sequences of `Root` operations — symlinks with arbitrary
//! targets included — over a fresh temporary root. Nothing outside the root
//! may change: a canary beside it is compared after every input.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use arbitrary::Arbitrary;
use integration_tests::canary::Canary;
use libfuzzer_sys::fuzz_target;
use openat2_root::{OpenOptions, RemoveOptions, Root, RootOptions};

#[derive(Debug, Arbitrary)]
enum Name {
    A,
    B,
    Dir,
    File,
    Link,
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct P(Vec<Name>, bool);

impl P {
    fn path(&self) -> PathBuf {
        let mut s: Vec<u8> = Vec::new();
        for (i, n) in self.0.iter().take(6).enumerate() {
            if i > 0 {
                s.push(b'/');
            }
            s.extend_from_slice(match n {
                Name::A => b"a",
                Name::B => b"b",
                Name::Dir => b"dir",
                Name::File => b"file",
                Name::Link => b"link",
                Name::Raw(raw) => raw.as_slice(),
            });
        }
        if self.1 {
            s.push(b'/');
        }
        PathBuf::from(std::ffi::OsString::from(
            String::from_utf8_lossy(&s).into_owned(),
        ))
    }
}

#[derive(Debug, Arbitrary)]
enum Target {
    Slash,
    DotDots,
    ProcRoot,
    Canary,
    Inside,
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum Op {
    CreateDir(P),
    CreateDirAll(P),
    RemoveFile(P),
    RemoveDir(P),
    RemoveDirAll(P),
    Remove(P, bool, bool),
    Rename(P, P),
    RenameNoReplace(P, P),
    RenameExchange(P, P),
    HardLink(P, P),
    Symlink(Target, P),
    ReadLink(P),
    SetPermissions(P, u16),
    SetLen(P, u16),
    Copy(P, P),
    SetTimes(P, Option<u32>, Option<u32>),
    Metadata(P),
    SymlinkMetadata(P),
    ReadDir(P),
    OpenDir(P),
    Chown(P, Option<u16>, Option<u16>),
    Open(P, u8),
    WriteAtomic(P, Vec<u8>),
    Write(P, Vec<u8>),
    ReadToString(P),
    TryExists(P),
    /// Lists a directory and, for each entry, as the bits say: metadata,
    /// open, open_dir, remove_file.
    Entries(P, u8),
}

#[derive(Debug, Arbitrary)]
struct Input {
    follow_in_root: bool,
    ops: Vec<Op>,
}

/// One canary for the whole run, planted beside the roots.
struct World {
    tmp: tempfile::TempDir,
    canary: Canary,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let canary = Canary::plant(&tmp.path().join("outside"));
        World { tmp, canary }
    })
}

fuzz_target!(|input: Input| {
    let world = world();
    let outside = world.canary.path();
    let root_dir = world.tmp.path().join("root");
    std::fs::create_dir(&root_dir).expect("root directory");
    let options = RootOptions::new().follow_symlinks_in_root(input.follow_in_root);
    let root = Root::open_with(&root_dir, options).expect("open root");
    for op in input.ops.iter().take(64) {
        run(&root, op, outside);
    }
    drop(root);
    world
        .canary
        .assert_untouched(&format!("after {:?}", input.ops));
    // std's remove_dir_all does not follow symlinks either; restore
    // permissions first so that a mode-000 directory can be emptied.
    restore_permissions(&root_dir);
    std::fs::remove_dir_all(&root_dir).expect("clean up the root");
});

fn restore_permissions(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                restore_permissions(&entry.path());
            }
        }
    }
}

fn run(r: &Root, op: &Op, outside: &std::path::Path) {
    let t = |s: Option<u32>| s.map(|s| UNIX_EPOCH + Duration::from_secs(u64::from(s)));
    // Results are not checked here: any result is fine as long as nothing
    // panics and nothing outside changes.
    let _ = match op {
        Op::CreateDir(p) => r.create_dir(p.path(), 0o777),
        Op::CreateDirAll(p) => r.create_dir_all(p.path(), 0o777),
        Op::RemoveFile(p) => r.remove_file(p.path()),
        Op::RemoveDir(p) => r.remove_dir(p.path()),
        Op::RemoveDirAll(p) => r.remove_dir_all(p.path()),
        Op::Remove(p, recursive, force) => r.remove(
            p.path(),
            RemoveOptions::new().recursive(*recursive).force(*force),
        ),
        Op::Rename(a, b) => r.rename(a.path(), b.path()),
        Op::RenameNoReplace(a, b) => r.rename_noreplace(a.path(), b.path()),
        Op::RenameExchange(a, b) => r.rename_exchange(a.path(), b.path()),
        Op::HardLink(a, b) => r.hard_link(a.path(), b.path()),
        Op::Symlink(target, p) => {
            let target = match target {
                Target::Slash => "/".to_string(),
                Target::DotDots => "../../../../..".to_string(),
                Target::ProcRoot => "/proc/self/root".to_string(),
                Target::Canary => outside.display().to_string(),
                Target::Inside => "a".to_string(),
                Target::Raw(s) => s.clone(),
            };
            r.symlink(target, p.path())
        }
        Op::ReadLink(p) => r.read_link(p.path()).map(drop),
        Op::SetPermissions(p, m) => r.set_permissions(p.path(), u32::from(*m)),
        Op::SetLen(p, n) => r.set_len(p.path(), u64::from(*n)),
        Op::Copy(a, b) => r.copy(a.path(), b.path()).map(drop),
        Op::SetTimes(p, a, m) => r.set_times(p.path(), t(*a), t(*m)),
        Op::Metadata(p) => r.metadata(p.path()).map(drop),
        Op::SymlinkMetadata(p) => r.symlink_metadata(p.path()).map(drop),
        Op::ReadDir(p) => r.read_dir(p.path()).map(|rd| rd.for_each(drop)),
        Op::OpenDir(p) => r.open_dir(p.path()).map(drop),
        Op::Chown(p, u, g) => r.chown(p.path(), u.map(u32::from), g.map(u32::from)),
        Op::Open(p, flags) => {
            let mut o = OpenOptions::new();
            o.read(flags & 1 != 0)
                .write(flags & 2 != 0)
                .append(flags & 4 != 0)
                .truncate(flags & 8 != 0)
                .create(flags & 16 != 0)
                .create_new(flags & 32 != 0);
            r.open_file(p.path(), &o).map(drop)
        }
        Op::WriteAtomic(p, data) => r.write_atomic(p.path(), data),
        Op::Write(p, data) => r.write(p.path(), data),
        Op::ReadToString(p) => r.read_to_string(p.path()).map(drop),
        Op::TryExists(p) => r.try_exists(p.path()).map(drop),
        Op::Entries(p, bits) => r.read_dir(p.path()).map(|entries| {
            for entry in entries.flatten() {
                let _ = (bits & 1 != 0).then(|| entry.metadata());
                let _ = (bits & 2 != 0).then(|| entry.open());
                let _ = (bits & 4 != 0).then(|| entry.open_dir());
                let _ = (bits & 8 != 0).then(|| entry.remove_file());
            }
        }),
    };
}
