//! Property: for random sequences of operations that never involve a
//! symlink, a `Root` gives the same results and errno as `std::fs` on the
//! absolute path, and leaves the same tree.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use integration_tests::canary::snapshot;
use openat2_root::{OpenOptions, Root};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    CreateDir(String),
    CreateDirAll(String),
    RemoveFile(String),
    RemoveDir(String),
    RemoveDirAll(String),
    Rename(String, String),
    RenameNoReplace(String, String),
    HardLink(String, String),
    Write(String, Vec<u8>),
    Append(String, Vec<u8>),
    SetLen(String, u64),
    SetPermissions(String, u32),
    Copy(String, String),
    Metadata(String),
    ReadDir(String),
    Read(String),
}

fn rel_path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..=3),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(parts, slash, dot)| {
            let mut p = parts.join("/");
            if dot {
                p = format!("./{p}");
            }
            if slash {
                p.push('/');
            }
            p
        })
}

fn op() -> impl Strategy<Value = Op> {
    let data = prop::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        3 => rel_path().prop_map(Op::CreateDir),
        2 => rel_path().prop_map(Op::CreateDirAll),
        2 => rel_path().prop_map(Op::RemoveFile),
        1 => rel_path().prop_map(Op::RemoveDir),
        1 => rel_path().prop_map(Op::RemoveDirAll),
        2 => (rel_path(), rel_path()).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => (rel_path(), rel_path()).prop_map(|(a, b)| Op::RenameNoReplace(a, b)),
        1 => (rel_path(), rel_path()).prop_map(|(a, b)| Op::HardLink(a, b)),
        3 => (rel_path(), data.clone()).prop_map(|(p, d)| Op::Write(p, d)),
        1 => (rel_path(), data).prop_map(|(p, d)| Op::Append(p, d)),
        1 => (rel_path(), 0u64..100).prop_map(|(p, n)| Op::SetLen(p, n)),
        1 => (rel_path(), prop::sample::select(vec![0o600u32, 0o644, 0o755, 0o700, 0o4750]))
            .prop_map(|(p, m)| Op::SetPermissions(p, m)),
        1 => (rel_path(), rel_path()).prop_map(|(a, b)| Op::Copy(a, b)),
        1 => rel_path().prop_map(Op::Metadata),
        1 => rel_path().prop_map(Op::ReadDir),
        1 => rel_path().prop_map(Op::Read),
    ]
}

/// The outcome of one operation: `Ok` with what it returned (rendered), or
/// the errno (`None` for errors without one, such as std's "not a regular
/// file" for `copy`).
type Outcome = Result<String, Option<i32>>;

fn std_errno(e: std::io::Error) -> Option<i32> {
    e.raw_os_error()
}

fn root_errno(e: openat2_root::Error) -> Option<i32> {
    e.raw_os_error()
}

/// What a metadata call is compared on.
fn render_metadata(is_dir: bool, len: u64, mode: u32) -> String {
    format!("{is_dir:?} {} {mode:o}", if is_dir { 0 } else { len })
}

/// A directory listing as compared: sorted `name:is_dir` entries.
fn render_listing<E>(
    entries: impl Iterator<Item = Result<(std::ffi::OsString, bool), E>>,
) -> Result<String, E> {
    let mut v = entries
        .map(|e| e.map(|(name, is_dir)| format!("{}:{is_dir}", name.to_string_lossy())))
        .collect::<Result<Vec<_>, _>>()?;
    v.sort();
    Ok(v.join(","))
}

fn via_std(base: &Path, op: &Op) -> Outcome {
    let p = |rel: &str| -> PathBuf {
        // Join keeping a trailing slash.
        let mut s = base.as_os_str().to_owned();
        s.push("/");
        s.push(rel);
        PathBuf::from(s)
    };
    let ok = |r: std::io::Result<()>| r.map(|()| String::new()).map_err(std_errno);
    match op {
        Op::CreateDir(a) => ok(fs::create_dir(p(a))),
        Op::CreateDirAll(a) => ok(fs::create_dir_all(p(a))),
        Op::RemoveFile(a) => ok(fs::remove_file(p(a))),
        Op::RemoveDir(a) => ok(fs::remove_dir(p(a))),
        Op::RemoveDirAll(a) => ok(fs::remove_dir_all(p(a))),
        Op::Rename(a, b) => ok(fs::rename(p(a), p(b))),
        Op::RenameNoReplace(a, b) => rustix::fs::renameat_with(
            rustix::fs::CWD,
            p(a).as_path(),
            rustix::fs::CWD,
            p(b).as_path(),
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map(|()| String::new())
        .map_err(|e| Some(e.raw_os_error())),
        Op::HardLink(a, b) => ok(fs::hard_link(p(a), p(b))),
        Op::Write(a, d) => fs::write(p(a), d)
            .map(|()| String::new())
            .map_err(std_errno),
        Op::Append(a, d) => fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p(a))
            .and_then(|mut f| f.write_all(d))
            .map(|()| String::new())
            .map_err(std_errno),
        Op::SetLen(a, n) => fs::OpenOptions::new()
            .write(true)
            .open(p(a))
            .and_then(|f| f.set_len(*n))
            .map(|()| String::new())
            .map_err(std_errno),
        Op::SetPermissions(a, m) => fs::set_permissions(p(a), fs::Permissions::from_mode(*m))
            .map(|()| String::new())
            .map_err(std_errno),
        Op::Copy(a, b) => fs::copy(p(a), p(b))
            .map(|n| n.to_string())
            .map_err(std_errno),
        Op::Metadata(a) => fs::metadata(p(a))
            .map(|m| render_metadata(m.is_dir(), m.len(), m.permissions().mode()))
            .map_err(std_errno),
        Op::ReadDir(a) => fs::read_dir(p(a))
            .and_then(|rd| {
                render_listing(
                    rd.map(|e| e.map(|e| (e.file_name(), e.file_type().is_ok_and(|t| t.is_dir())))),
                )
            })
            .map_err(std_errno),
        Op::Read(a) => fs::read(p(a)).map(|d| format!("{d:?}")).map_err(std_errno),
    }
}

fn via_root(root: &Root, op: &Op) -> Outcome {
    use std::io::Read;
    let ok = |r: openat2_root::Result<()>| r.map(|()| String::new()).map_err(root_errno);
    match op {
        Op::CreateDir(a) => ok(root.create_dir(a, 0o777)),
        Op::CreateDirAll(a) => ok(root.create_dir_all(a, 0o777)),
        Op::RemoveFile(a) => ok(root.remove_file(a)),
        Op::RemoveDir(a) => ok(root.remove_dir(a)),
        Op::RemoveDirAll(a) => ok(root.remove_dir_all(a)),
        Op::Rename(a, b) => ok(root.rename(a, b)),
        Op::RenameNoReplace(a, b) => ok(root.rename_noreplace(a, b)),
        Op::HardLink(a, b) => ok(root.hard_link(a, b)),
        Op::Write(a, d) => root
            .open_file(
                a,
                OpenOptions::new().write(true).create(true).truncate(true),
            )
            .map_err(root_errno)
            .and_then(|mut f| f.write_all(d).map_err(std_errno))
            .map(|()| String::new()),
        Op::Append(a, d) => root
            .open_file(a, OpenOptions::new().append(true).create(true))
            .map_err(root_errno)
            .and_then(|mut f| f.write_all(d).map_err(std_errno))
            .map(|()| String::new()),
        Op::SetLen(a, n) => ok(root.set_len(a, *n)),
        Op::SetPermissions(a, m) => ok(root.set_permissions(a, *m)),
        Op::Copy(a, b) => root.copy(a, b).map(|n| n.to_string()).map_err(root_errno),
        Op::Metadata(a) => root
            .metadata(a)
            .map(|m| render_metadata(m.is_dir(), m.len(), m.mode()))
            .map_err(root_errno),
        Op::ReadDir(a) => root
            .read_dir(a)
            .and_then(|rd| {
                render_listing(
                    rd.map(|e| e.map(|e| (e.file_name().to_owned(), e.file_type().is_dir()))),
                )
            })
            .map_err(root_errno),
        Op::Read(a) => root
            .open_file(a, OpenOptions::new().read(true))
            .map_err(root_errno)
            .and_then(|mut f| {
                let mut d = Vec::new();
                f.read_to_end(&mut d).map_err(std_errno)?;
                Ok(format!("{d:?}"))
            }),
    }
}

/// Whether `op` is a copy of a file onto itself (the same path, or two hard
/// links): std::fs::copy truncates the file, losing its data; Root refuses.
fn copy_onto_itself(std_base: &Path, op: &Op) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Op::Copy(a, b) = op else {
        return false;
    };
    match (
        fs::metadata(std_base.join(a)),
        fs::metadata(std_base.join(b)),
    ) {
        (Ok(x), Ok(y)) => x.is_file() && (x.dev(), x.ino()) == (y.dev(), y.ino()),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn root_matches_std_fs(ops in prop::collection::vec(op(), 1..40)) {
        let std_dir = tempfile::tempdir().unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        let root = Root::open(root_dir.path()).unwrap();
        for (i, op) in ops.iter().enumerate() {
            if copy_onto_itself(std_dir.path(), op) {
                let refused = via_root(&root, op);
                prop_assert_eq!(refused, Err(None), "op #{} {:?} must be refused", i, op);
                continue;
            }
            let expected = via_std(std_dir.path(), op);
            let got = via_root(&root, op);
            prop_assert_eq!(&got, &expected, "op #{} {:?}", i, op);
        }
        let mut a = snapshot(std_dir.path(), false);
        let mut b = snapshot(root_dir.path(), false);
        // The roots' own directories differ in name and mode only.
        a.remove(Path::new("."));
        b.remove(Path::new("."));
        prop_assert_eq!(a, b);
    }
}
