//! Behaviour of each `Root` operation: the happy path, each error, trailing
//! slashes and modes, checked against what the filesystem holds afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openat2_root::{
    Error, ErrorKind, FileType, InvalidPathReason, OpenOptions, RemoveOptions, Root, RootOptions,
};

struct T {
    _dir: tempfile::TempDir,
    path: PathBuf,
    root: Root,
}

fn setup() -> T {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let root = Root::open(&path).unwrap();
    T {
        _dir: dir,
        path,
        root,
    }
}

impl T {
    fn p(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
    fn file(&self, rel: &str, contents: &str) {
        fs::write(self.p(rel), contents).unwrap();
    }
    fn dir(&self, rel: &str) {
        fs::create_dir_all(self.p(rel)).unwrap();
    }
    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.p(rel)).unwrap()
    }
    fn exists(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.p(rel)).is_ok()
    }
}

fn errno(e: &Error) -> i32 {
    e.raw_os_error()
        .unwrap_or_else(|| panic!("no errno in {e}"))
}

fn umask_applied(mode: u32) -> u32 {
    // Read, not set: setting the umask would race with the other tests.
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    let umask = u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap();
    mode & !umask
}

#[test]
fn open_root_requires_a_directory() {
    let t = setup();
    t.file("f", "x");
    let e = Root::open(t.p("f")).unwrap_err();
    assert_eq!(errno(&e), libc::ENOTDIR);
    let e = Root::open(t.p("missing")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let fd = fs::File::open(t.p("f")).unwrap();
    assert_eq!(errno(&Root::from_fd(fd.into()).unwrap_err()), libc::ENOTDIR);
    let fd = fs::File::open(&t.path).unwrap();
    let r = Root::from_fd(fd.into()).unwrap();
    assert!(r.metadata("f").unwrap().is_file());
}

#[test]
fn invalid_paths_are_refused_for_every_operation() {
    let t = setup();
    t.file("f", "x");
    let r = &t.root;
    for (bad, reason) in [
        ("", InvalidPathReason::Empty),
        ("/f", InvalidPathReason::Absolute),
        ("..", InvalidPathReason::ParentComponent),
        ("a/../f", InvalidPathReason::ParentComponent),
        ("f\0", InvalidPathReason::Nul),
    ] {
        let results: Vec<Result<(), Error>> = vec![
            r.create_dir(bad, 0o755),
            r.create_dir_all(bad, 0o755),
            r.remove_file(bad),
            r.remove_dir(bad),
            r.remove_dir_all(bad),
            r.remove(
                bad,
                RemoveOptions {
                    recursive: true,
                    force: true,
                },
            ),
            r.rename(bad, "g"),
            r.rename("f", bad),
            r.rename_noreplace(bad, "g"),
            r.rename_exchange("f", bad),
            r.hard_link(bad, "g"),
            r.hard_link("f", bad),
            r.symlink("target", bad),
            r.read_link(bad).map(drop),
            r.set_permissions(bad, 0o600),
            r.set_len(bad, 0),
            r.copy(bad, "g").map(drop),
            r.copy("f", bad).map(drop),
            r.set_times(bad, None, None),
            r.metadata(bad).map(drop),
            r.symlink_metadata(bad).map(drop),
            r.read_dir(bad).map(drop),
            r.open_dir(bad).map(drop),
            r.chown(bad, None, None),
            r.open_file(bad, OpenOptions::new().read(true)).map(drop),
            r.write_atomic(bad, b"x"),
        ];
        for (i, res) in results.into_iter().enumerate() {
            match res {
                Err(Error::InvalidPath {
                    reason: got, path, ..
                }) => {
                    assert_eq!(got, reason, "op #{i} on {bad:?}");
                    assert!(
                        path == Path::new(bad) || path == Path::new("f"),
                        "op #{i}: {path:?}"
                    );
                }
                other => panic!("op #{i} on {bad:?}: expected InvalidPath, got {other:?}"),
            }
        }
    }
    // Nothing was created along the way.
    let names: Vec<_> = fs::read_dir(&t.path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["f"]);
}

#[test]
fn operations_needing_an_entry_refuse_the_root_itself() {
    let t = setup();
    for p in [".", "./", "a/."] {
        let e = t.root.remove_dir(p).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidPath {
                    reason: InvalidPathReason::NoEntryName,
                    ..
                }
            ),
            "{p}: {e}"
        );
        assert_eq!(
            t.root.rename(p, "x").unwrap_err().kind(),
            ErrorKind::InvalidPath
        );
    }
    t.root.create_dir_all(".", 0o755).unwrap();
    assert!(t.root.metadata(".").unwrap().is_dir());
}

#[test]
fn create_dir_modes_and_errors() {
    let t = setup();
    t.root.create_dir("d", 0o750).unwrap();
    let m = fs::metadata(t.p("d")).unwrap();
    assert!(m.is_dir());
    assert_eq!(m.permissions().mode() & 0o7777, umask_applied(0o750));
    assert_eq!(
        t.root.create_dir("d", 0o755).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        t.root.create_dir("x/y", 0o755).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    t.root.create_dir("e/", 0o755).unwrap();
    assert!(t.p("e").is_dir());
    t.file("f", "");
    assert_eq!(
        errno(&t.root.create_dir("f/g", 0o755).unwrap_err()),
        libc::ENOTDIR
    );
    // An existing symlink, even dangling, is never followed to create its target.
    fs::create_dir(t.p("target_parent")).unwrap();
    std::os::unix::fs::symlink("target_parent/new", t.p("dangling")).unwrap();
    assert_eq!(
        t.root.create_dir("dangling", 0o755).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert!(!t.exists("target_parent/new"));
}

#[test]
fn create_dir_all_builds_missing_components() {
    let t = setup();
    t.root.create_dir_all("a/b/c/d", 0o700).unwrap();
    assert!(t.p("a/b/c/d").is_dir());
    t.root.create_dir_all("a/b/c/d", 0o700).unwrap(); // existing: fine
    t.root.create_dir_all("a/b/x/y/", 0o755).unwrap();
    t.root.create_dir_all("./a//b/./z", 0o755).unwrap();
    assert!(t.p("a/b/z").is_dir());
    assert_eq!(
        fs::metadata(t.p("a/b/c")).unwrap().permissions().mode() & 0o777,
        umask_applied(0o700)
    );
    t.file("a/file", "");
    let e = t.root.create_dir_all("a/file/sub", 0o755).unwrap_err();
    assert_eq!(errno(&e), libc::ENOTDIR, "{e}");
    let e = t.root.create_dir_all("a/file", 0o755).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    std::os::unix::fs::symlink("b", t.p("a/lnk")).unwrap();
    assert_eq!(
        t.root.create_dir_all("a/lnk", 0o755).unwrap_err().kind(),
        ErrorKind::Escape
    );
    assert_eq!(
        t.root
            .create_dir_all("a/lnk/q/r", 0o755)
            .unwrap_err()
            .kind(),
        ErrorKind::Escape
    );
    assert!(!t.exists("a/b/q"));
}

#[test]
fn create_dir_all_follows_inside_links_only_when_asked() {
    let t = setup();
    t.dir("real");
    std::os::unix::fs::symlink("/real", t.p("abs")).unwrap();
    let r = Root::open_with(&t.path, RootOptions::new().follow_symlinks_in_root(true)).unwrap();
    r.create_dir_all("abs/x/y", 0o755).unwrap();
    assert!(
        t.p("real/x/y").is_dir(),
        "the absolute link was resolved inside the root"
    );
    r.create_dir_all("abs", 0o755).unwrap();
}

#[test]
fn remove_file_and_remove_dir() {
    let t = setup();
    t.file("f", "x");
    t.dir("d/sub");
    t.root.remove_file("f").unwrap();
    assert!(!t.exists("f"));
    assert_eq!(
        t.root.remove_file("f").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(errno(&t.root.remove_file("d").unwrap_err()), libc::EISDIR);
    assert_eq!(errno(&t.root.remove_dir("d").unwrap_err()), libc::ENOTEMPTY);
    t.root.remove_dir("d/sub/").unwrap();
    t.root.remove_dir("d").unwrap();
    assert!(!t.exists("d"));
    t.file("g", "");
    assert_eq!(errno(&t.root.remove_dir("g").unwrap_err()), libc::ENOTDIR);
    assert_eq!(errno(&t.root.remove_file("g/").unwrap_err()), libc::ENOTDIR);
    assert!(t.exists("g"));
    // A symlink is removed itself; its target stays.
    std::os::unix::fs::symlink("g", t.p("l")).unwrap();
    t.root.remove_file("l").unwrap();
    assert!(!t.exists("l") && t.exists("g"));
    // A symlink to a directory is not a directory to remove_dir.
    t.dir("dd");
    std::os::unix::fs::symlink("dd", t.p("ld")).unwrap();
    assert_eq!(errno(&t.root.remove_dir("ld").unwrap_err()), libc::ENOTDIR);
    assert_eq!(
        errno(&t.root.remove_file("ld/").unwrap_err()),
        libc::ENOTDIR
    );
    assert!(t.exists("ld") && t.exists("dd"));
}

#[test]
fn remove_dir_all_removes_trees_and_not_link_targets() {
    let t = setup();
    t.dir("tree/a/b/c");
    t.dir("keep/inner");
    t.file("keep/inner/precious", "p");
    t.file("tree/a/f1", "1");
    t.file("tree/a/b/c/f2", "2");
    std::os::unix::fs::symlink(t.p("keep"), t.p("tree/a/abs_link")).unwrap();
    std::os::unix::fs::symlink("../../keep", t.p("tree/a/rel_link")).unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        t.p("tree/fifo").as_path(),
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .unwrap();
    fs::set_permissions(t.p("tree/a/b"), fs::Permissions::from_mode(0o700)).unwrap();
    t.root.remove_dir_all("tree").unwrap();
    assert!(!t.exists("tree"));
    assert_eq!(t.read("keep/inner/precious"), "p");
    // A symlink at the top is removed itself.
    std::os::unix::fs::symlink("keep", t.p("top_link")).unwrap();
    t.root.remove_dir_all("top_link").unwrap();
    assert!(!t.exists("top_link") && t.exists("keep/inner/precious"));
    t.file("file", "");
    assert_eq!(
        errno(&t.root.remove_dir_all("file").unwrap_err()),
        libc::ENOTDIR
    );
    assert_eq!(
        t.root.remove_dir_all("missing").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn remove_dir_all_handles_wide_and_deep_trees() {
    let t = setup();
    for i in 0..300 {
        t.dir(&format!("wide/d{i}/x"));
        t.file(&format!("wide/f{i}"), "");
    }
    t.root.remove_dir_all("wide").unwrap();
    assert!(!t.exists("wide"));
    // Deeper than MAX_OPEN_DIRS, so ancestors are reopened through `..`.
    let deep = vec!["d"; 200].join("/");
    t.root.create_dir_all(&deep, 0o755).unwrap();
    t.root.write_atomic(format!("{deep}/leaf"), b"x").unwrap();
    t.root.write_atomic("d/d/side", b"x").unwrap();
    t.root.remove_dir_all("d").unwrap();
    assert!(!t.exists("d"));
}

#[test]
fn remove_like_rm() {
    let t = setup();
    t.dir("d/e");
    t.file("f", "");
    let rf = RemoveOptions {
        recursive: true,
        force: true,
    };
    assert_eq!(
        errno(&t.root.remove("d", RemoveOptions::default()).unwrap_err()),
        libc::EISDIR
    );
    t.root.remove("f", RemoveOptions::default()).unwrap();
    assert_eq!(
        t.root
            .remove("f", RemoveOptions::default())
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    t.root
        .remove(
            "f",
            RemoveOptions {
                recursive: false,
                force: true,
            },
        )
        .unwrap();
    t.root.remove("missing/deeper", rf).unwrap();
    t.root.remove("d", rf).unwrap();
    assert!(!t.exists("d"));
}

#[test]
fn rename_family() {
    let t = setup();
    t.file("a", "A");
    t.file("b", "B");
    t.dir("d");
    t.root.rename("a", "d/a2").unwrap();
    assert_eq!(t.read("d/a2"), "A");
    assert_eq!(
        t.root.rename("a", "x").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    t.root.rename("d/a2", "b").unwrap(); // replaces
    assert_eq!(t.read("b"), "A");
    t.file("c", "C");
    let e = t.root.rename_noreplace("c", "b").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert!(
        matches!(&e, Error::Os { to: Some(to), .. } if to == Path::new("b")),
        "{e}"
    );
    assert_eq!(t.read("b"), "A");
    assert_eq!(t.read("c"), "C");
    t.root.rename_noreplace("c", "c2").unwrap();
    t.root.rename_exchange("b", "c2").unwrap();
    assert_eq!((t.read("b"), t.read("c2")), ("C".into(), "A".into()));
    t.root.rename_exchange("b", "d").unwrap(); // different types
    assert!(t.p("b").is_dir() && t.p("d").is_file());
    assert_eq!(
        t.root.rename_exchange("b", "nope").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // Trailing slashes: the source must be a directory.
    assert_eq!(errno(&t.root.rename("d/", "e").unwrap_err()), libc::ENOTDIR);
    t.root.rename("b/", "e/").unwrap();
    assert!(t.p("e").is_dir());
    // A directory into itself.
    assert_eq!(
        errno(&t.root.rename("e", "e/inner").unwrap_err()),
        libc::EINVAL
    );
    // A symlink is renamed itself.
    std::os::unix::fs::symlink("/etc/passwd", t.p("l")).unwrap();
    t.root.rename("l", "e/l").unwrap();
    assert_eq!(fs::read_link(t.p("e/l")).unwrap(), Path::new("/etc/passwd"));
}

#[test]
fn hard_link_and_symlink_and_read_link() {
    let t = setup();
    t.file("f", "F");
    t.root.hard_link("f", "g").unwrap();
    assert_eq!(
        fs::metadata(t.p("f")).unwrap().ino(),
        fs::metadata(t.p("g")).unwrap().ino()
    );
    assert_eq!(
        t.root.hard_link("f", "g").unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    t.dir("d");
    assert_eq!(
        errno(&t.root.hard_link("d", "d2").unwrap_err()),
        libc::EPERM
    );
    assert_eq!(
        errno(&t.root.hard_link("d/", "d2").unwrap_err()),
        libc::EPERM
    );
    assert_eq!(
        errno(&t.root.hard_link("f/", "d2").unwrap_err()),
        libc::ENOTDIR
    );
    t.root.symlink("../../outside", "d/l").unwrap();
    assert_eq!(t.root.read_link("d/l").unwrap(), Path::new("../../outside"));
    assert_eq!(
        t.root.symlink("x", "d/l").unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        t.root.symlink("", "d/m").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(errno(&t.root.read_link("f").unwrap_err()), libc::EINVAL);
    assert_eq!(
        t.root.read_link("d/l/").unwrap_err().kind(),
        ErrorKind::Escape
    );
    // Hard-linking a symlink links the symlink itself.
    t.root.hard_link("d/l", "l2").unwrap();
    assert_eq!(
        fs::read_link(t.p("l2")).unwrap(),
        Path::new("../../outside")
    );
}

#[test]
fn set_permissions_on_mode_000_and_never_through_links() {
    let t = setup();
    t.file("f", "x");
    fs::set_permissions(t.p("f"), fs::Permissions::from_mode(0o000)).unwrap();
    t.root.set_permissions("f", 0o640).unwrap();
    assert_eq!(
        fs::metadata(t.p("f")).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    t.root.set_permissions("f", 0o4755).unwrap();
    assert_eq!(
        fs::metadata(t.p("f")).unwrap().permissions().mode() & 0o7777,
        0o4755
    );
    t.dir("d");
    t.root.set_permissions("d/", 0o700).unwrap();
    assert_eq!(
        errno(&t.root.set_permissions("f/", 0o700).unwrap_err()),
        libc::ENOTDIR
    );
    std::os::unix::fs::symlink("f", t.p("l")).unwrap();
    assert_eq!(
        t.root.set_permissions("l", 0o777).unwrap_err().kind(),
        ErrorKind::Escape
    );
    assert_eq!(
        fs::metadata(t.p("f")).unwrap().permissions().mode() & 0o7777,
        0o4755
    );
}

#[test]
fn set_len_truncates_and_extends() {
    let t = setup();
    t.file("f", "hello world");
    t.root.set_len("f", 5).unwrap();
    assert_eq!(t.read("f"), "hello");
    t.root.set_len("f", 8).unwrap();
    assert_eq!(fs::read(t.p("f")).unwrap(), b"hello\0\0\0");
    t.dir("d");
    assert_eq!(errno(&t.root.set_len("d", 0).unwrap_err()), libc::EISDIR);
    assert_eq!(
        t.root.set_len("missing", 0).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn copy_regular_files_only() {
    let t = setup();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(t.p("src"), &data).unwrap();
    fs::set_permissions(t.p("src"), fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(t.root.copy("src", "dst").unwrap(), data.len() as u64);
    assert_eq!(fs::read(t.p("dst")).unwrap(), data);
    assert_eq!(
        fs::metadata(t.p("dst")).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // Over an existing, longer file: replaced, not overlaid.
    t.file("small", "abc");
    t.root.copy("small", "dst").unwrap();
    assert_eq!(t.read("dst"), "abc");
    // Same file: refused, nothing truncated.
    let e = t.root.copy("small", "small").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    t.root.hard_link("small", "small2").unwrap();
    assert_eq!(
        t.root.copy("small", "small2").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(t.read("small"), "abc");
    t.dir("d");
    assert!(matches!(
        t.root.copy("d", "x").unwrap_err(),
        Error::SpecialFile {
            file_type: FileType::Dir,
            ..
        }
    ));
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        t.p("fifo").as_path(),
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .unwrap();
    assert!(matches!(
        t.root.copy("fifo", "x").unwrap_err(),
        Error::SpecialFile {
            file_type: FileType::Fifo,
            ..
        }
    ));
    assert!(!t.exists("x"));
    std::os::unix::fs::symlink("small", t.p("l")).unwrap();
    assert_eq!(t.root.copy("l", "x").unwrap_err().kind(), ErrorKind::Escape);
    assert_eq!(
        t.root.copy("small", "l").unwrap_err().kind(),
        ErrorKind::Escape
    );
    assert_eq!(t.read("small"), "abc");
}

#[test]
fn set_times_with_nanoseconds_and_omitted_fields() {
    let t = setup();
    t.file("f", "");
    let at = UNIX_EPOCH + Duration::new(1_500_000_000, 1);
    let mt = UNIX_EPOCH + Duration::new(1_600_000_000, 999_999_999);
    t.root.set_times("f", Some(at), Some(mt)).unwrap();
    let m = t.root.metadata("f").unwrap();
    assert_eq!((m.accessed(), m.modified()), (at, mt));
    let mt2 = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
    t.root.set_times("f", None, Some(mt2)).unwrap();
    let m = t.root.metadata("f").unwrap();
    assert_eq!((m.accessed(), m.modified()), (at, mt2));
    // Before the epoch.
    let old = UNIX_EPOCH - Duration::new(10, 250_000_000);
    t.root.set_times("f", Some(old), None).unwrap();
    assert_eq!(t.root.metadata("f").unwrap().accessed(), old);
    std::os::unix::fs::symlink("f", t.p("l")).unwrap();
    assert_eq!(
        t.root
            .set_times("l", None, Some(SystemTime::now()))
            .unwrap_err()
            .kind(),
        ErrorKind::Escape
    );
    assert_eq!(t.root.metadata("f").unwrap().modified(), mt2);
}

#[test]
fn metadata_and_symlink_metadata() {
    let t = setup();
    t.file("f", "12345");
    t.dir("d");
    std::os::unix::fs::symlink("f", t.p("l")).unwrap();
    let m = t.root.metadata("f").unwrap();
    let s = fs::metadata(t.p("f")).unwrap();
    assert!(m.is_file() && !m.is_dir());
    assert_eq!(
        (m.len(), m.ino(), m.dev(), m.mode(), m.uid(), m.nlink()),
        (5, s.ino(), s.dev(), s.mode(), s.uid(), 1)
    );
    assert_eq!(m.modified(), s.modified().unwrap());
    assert!(t.root.metadata("d/").unwrap().is_dir());
    assert_eq!(errno(&t.root.metadata("f/").unwrap_err()), libc::ENOTDIR);
    assert_eq!(t.root.metadata("l").unwrap_err().kind(), ErrorKind::Escape);
    assert!(t.root.symlink_metadata("l").unwrap().is_symlink());
    assert_eq!(
        t.root.symlink_metadata("l/").unwrap_err().kind(),
        ErrorKind::Escape
    );
    assert!(t.root.metadata(".").unwrap().is_dir());
    assert_eq!(
        t.root.metadata("nope").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let fol = Root::open_with(&t.path, RootOptions::new().follow_symlinks_in_root(true)).unwrap();
    assert_eq!(fol.metadata("l").unwrap().len(), 5);
}

#[test]
fn read_dir_lists_types_without_following() {
    let t = setup();
    t.dir("d/sub");
    t.file("d/f", "");
    std::os::unix::fs::symlink("/", t.p("d/l")).unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        t.p("d/p").as_path(),
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .unwrap();
    let mut entries: Vec<(String, FileType)> = t
        .root
        .read_dir("d")
        .unwrap()
        .map(|e| e.map(|e| (e.file_name().to_string_lossy().into_owned(), e.file_type())))
        .collect::<Result<_, _>>()
        .unwrap();
    entries.sort();
    assert_eq!(
        entries,
        [
            ("f".into(), FileType::File),
            ("l".into(), FileType::Symlink),
            ("p".into(), FileType::Fifo),
            ("sub".into(), FileType::Dir)
        ]
    );
    assert_eq!(errno(&t.root.read_dir("d/f").unwrap_err()), libc::ENOTDIR);
    assert_eq!(
        t.root.read_dir("d/l").unwrap_err().kind(),
        ErrorKind::Escape
    );
    assert_eq!(t.root.read_dir(".").unwrap().count(), 1);
}

#[test]
fn open_dir_confines_to_the_subdirectory() {
    let t = setup();
    t.dir("a/b");
    t.file("secret", "s");
    let sub = t.root.open_dir("a").unwrap();
    assert!(sub.metadata("b").unwrap().is_dir());
    assert_eq!(
        sub.metadata("../secret").unwrap_err().kind(),
        ErrorKind::InvalidPath
    );
    std::os::unix::fs::symlink("../secret", t.p("a/up")).unwrap();
    assert_eq!(sub.metadata("up").unwrap_err().kind(), ErrorKind::Escape);
    t.file("a/f", "");
    assert_eq!(errno(&t.root.open_dir("a/f").unwrap_err()), libc::ENOTDIR);
    // In follow mode, `..` in a link is clamped at the subroot.
    let fol = Root::open_with(&t.path, RootOptions::new().follow_symlinks_in_root(true)).unwrap();
    let sub = fol.open_dir("a").unwrap();
    assert_eq!(sub.metadata("up").unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn chown_changes_owner_without_following() {
    let t = setup();
    t.file("f", "");
    std::os::unix::fs::symlink("f", t.p("l")).unwrap();
    assert_eq!(
        t.root.chown("l", Some(0), None).unwrap_err().kind(),
        ErrorKind::Escape
    );
    let uid = fs::metadata(t.p("f")).unwrap().uid();
    t.root.chown("f", None, None).unwrap();
    if rustix::process::geteuid().is_root() {
        t.root.chown("f", Some(65534), Some(65534)).unwrap();
        let m = fs::metadata(t.p("f")).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65534));
    } else {
        assert_eq!(
            errno(&t.root.chown("f", Some(uid + 1), None).unwrap_err()),
            libc::EPERM
        );
    }
}

#[test]
fn open_file_options() {
    let t = setup();
    let mut f = t
        .root
        .open_file(
            "new",
            OpenOptions::new().write(true).create_new(true).mode(0o600),
        )
        .unwrap();
    f.write_all(b"abc").unwrap();
    drop(f);
    assert_eq!(
        fs::metadata(t.p("new")).unwrap().permissions().mode() & 0o777,
        umask_applied(0o600)
    );
    let e = t
        .root
        .open_file("new", OpenOptions::new().write(true).create_new(true))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    let mut s = String::new();
    t.root
        .open_file("new", OpenOptions::new().read(true))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "abc");
    t.root
        .open_file("new", OpenOptions::new().append(true))
        .unwrap()
        .write_all(b"def")
        .unwrap();
    assert_eq!(t.read("new"), "abcdef");
    t.root
        .open_file("new", OpenOptions::new().write(true).truncate(true))
        .unwrap();
    assert_eq!(t.read("new"), "");
    // The returned file is blocking, close-on-exec, and not in append mode
    // unless asked.
    let f = t
        .root
        .open_file("new", OpenOptions::new().read(true).write(true))
        .unwrap();
    let fl = rustix::fs::fcntl_getfl(&f).unwrap();
    assert!(!fl.contains(rustix::fs::OFlags::NONBLOCK) && !fl.contains(rustix::fs::OFlags::APPEND));
    assert!(
        rustix::io::fcntl_getfd(&f)
            .unwrap()
            .contains(rustix::io::FdFlags::CLOEXEC)
    );
    // Refused combinations, as std refuses them.
    for opts in [
        OpenOptions::new(),
        *OpenOptions::new().read(true).create(true),
        *OpenOptions::new().read(true).truncate(true),
    ] {
        assert_eq!(
            t.root.open_file("new", &opts).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
    assert_eq!(
        t.root
            .open_file("missing", OpenOptions::new().read(true))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        errno(
            &t.root
                .open_file("new/", OpenOptions::new().read(true))
                .unwrap_err()
        ),
        libc::ENOTDIR
    );
    // Creating through a dangling symlink is refused, and creates nothing.
    std::os::unix::fs::symlink("created_elsewhere", t.p("dangling")).unwrap();
    let e = t
        .root
        .open_file("dangling", OpenOptions::new().write(true).create(true))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Escape);
    assert!(!t.exists("created_elsewhere"));
}

#[test]
fn open_file_refuses_special_files_without_blocking() {
    let t = setup();
    let fifo = t.p("fifo");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        fifo.as_path(),
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .unwrap();
    // Neither of these may block: there is no other end.
    for opts in [
        *OpenOptions::new().read(true),
        *OpenOptions::new().write(true),
    ] {
        let e = t.root.open_file("fifo", &opts).unwrap_err();
        assert!(
            matches!(
                e,
                Error::SpecialFile {
                    file_type: FileType::Fifo,
                    ..
                }
            ),
            "{e}"
        );
    }
    assert!(matches!(
        t.root.set_len("fifo", 0).unwrap_err(),
        Error::SpecialFile { .. }
    ));
    // Explicitly allowed: opens (read side with O_RDWR so it cannot block).
    t.root
        .open_file(
            "fifo",
            OpenOptions::new()
                .read(true)
                .write(true)
                .allow_special_files(true),
        )
        .unwrap();
    // A device node through a bind of /dev would be refused the same way;
    // a Unix socket cannot be opened at all.
    let sock = std::os::unix::net::UnixListener::bind(t.p("sock")).unwrap();
    let e = t
        .root
        .open_file("sock", OpenOptions::new().read(true))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::SpecialFile {
                file_type: FileType::Socket,
                ..
            }
        ) || errno(&e) == libc::ENXIO,
        "{e}"
    );
    drop(sock);
}

#[test]
fn special_device_nodes_are_refused() {
    // /dev itself as a root: null is a character device.
    let dev = Root::open("/dev").unwrap();
    let e = dev
        .open_file("null", OpenOptions::new().read(true))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::SpecialFile {
                file_type: FileType::CharDevice,
                ..
            }
        ),
        "{e}"
    );
    dev.open_file(
        "null",
        OpenOptions::new().read(true).allow_special_files(true),
    )
    .unwrap();
}

#[test]
fn write_atomic_replaces_whole_files() {
    let t = setup();
    t.root.write_atomic("f", b"first").unwrap();
    assert_eq!(t.read("f"), "first");
    t.root.write_atomic("f", b"second!").unwrap();
    assert_eq!(t.read("f"), "second!");
    // A symlink at the path is replaced by the file; its target is untouched.
    t.file("target", "T");
    std::os::unix::fs::symlink("target", t.p("l")).unwrap();
    t.root.write_atomic("l", b"new").unwrap();
    assert!(fs::symlink_metadata(t.p("l")).unwrap().is_file());
    assert_eq!(t.read("target"), "T");
    t.dir("d");
    t.root.write_atomic("d", b"x").unwrap_err();
    assert_eq!(
        errno(&t.root.write_atomic("e/", b"x").unwrap_err()),
        libc::EISDIR
    );
    assert_eq!(
        t.root.write_atomic("missing/f", b"x").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // No temporary file is left behind, after success or failure.
    let names: Vec<String> = fs::read_dir(&t.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn no_xdev_refuses_mount_crossings() {
    // /proc is a separate mount from /: crossing into it is refused.
    let root = Root::open_with("/", RootOptions::new().no_xdev(true)).unwrap();
    let e = root.metadata("proc/self").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Escape, "{e}");
    let plain = Root::open("/").unwrap();
    assert!(
        plain.metadata("proc/version").unwrap().is_file(),
        "control: reachable without no_xdev"
    );
}

#[test]
fn errors_name_operation_and_path() {
    let t = setup();
    let e = t.root.remove_file("a/b/c").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("remove_file") && msg.contains("a/b/c"),
        "{msg}"
    );
    assert_eq!(e.path(), Path::new("a/b/c"));
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    t.file("x", "");
    let e = t.root.rename_noreplace("x", "x").unwrap_err();
    assert!(e.to_string().contains("\"x\" -> \"x\""), "{e}");
}

/// The checks that only mean something without root's DAC override. Run by
/// `unprivileged_paths` as `nobody`; ignored when run directly.
#[test]
#[ignore = "run by unprivileged_paths as an unprivileged user"]
fn as_unprivileged_user() {
    if std::env::var_os("OPENAT2_ROOT_UNPRIVILEGED_CHILD").is_none() {
        return;
    }
    assert!(
        !rustix::process::geteuid().is_root(),
        "must run unprivileged"
    );
    let t = setup();
    t.file("f", "data");
    fs::set_permissions(t.p("f"), fs::Permissions::from_mode(0o000)).unwrap();
    // No read or write access is needed to change the mode of one's own file.
    t.root.set_permissions("f", 0o600).unwrap();
    assert_eq!(
        fs::metadata(t.p("f")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    fs::set_permissions(t.p("f"), fs::Permissions::from_mode(0o000)).unwrap();
    // Opening for read or write is refused by the kernel, as for std.
    let e = t
        .root
        .open_file("f", OpenOptions::new().read(true))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EACCES);
    assert_eq!(errno(&t.root.set_len("f", 0).unwrap_err()), libc::EACCES);
    // Metadata, times and removal work without access to the file itself.
    assert_eq!(t.root.metadata("f").unwrap().len(), 4);
    t.root
        .set_times("f", None, Some(UNIX_EPOCH + Duration::from_secs(7)))
        .unwrap();
    // Someone else's file: no chmod, no chown.
    let e = Root::open("/")
        .unwrap()
        .set_permissions("etc/hostname", 0o777)
        .unwrap_err();
    assert_eq!(errno(&e), libc::EPERM);
    assert_eq!(
        errno(&t.root.chown("f", Some(0), None).unwrap_err()),
        libc::EPERM
    );
    // A directory without search permission cannot be resolved through.
    t.dir("locked/inner");
    fs::set_permissions(t.p("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    assert_eq!(
        errno(&t.root.metadata("locked/inner").unwrap_err()),
        libc::EACCES
    );
    t.root.set_permissions("locked", 0o700).unwrap();
    t.root.remove_dir_all("locked").unwrap();
    t.root.remove_file("f").unwrap();
    println!("UNPRIVILEGED-CHECKS-PASSED");
}

#[test]
fn unprivileged_paths() {
    use std::os::unix::process::CommandExt;
    if !rustix::process::geteuid().is_root() {
        // Already unprivileged: run the checks in a child all the same.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "as_unprivileged_user",
                "--include-ignored",
                "--nocapture",
            ])
            .env("OPENAT2_ROOT_UNPRIVILEGED_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("UNPRIVILEGED-CHECKS-PASSED"),
            "{stdout}"
        );
        return;
    }
    // A copy of this test binary that `nobody` can read and run, wherever
    // the checkout lives.
    let bin_dir = tempfile::tempdir().unwrap();
    fs::set_permissions(bin_dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let exe = bin_dir.path().join("ops-test");
    fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(&exe)
        .args([
            "--exact",
            "as_unprivileged_user",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("OPENAT2_ROOT_UNPRIVILEGED_CHILD", "1")
        .env("TMPDIR", "/tmp")
        .current_dir("/")
        .uid(65534)
        .gid(65534) // std also drops supplementary groups when root sets a uid
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("UNPRIVILEGED-CHECKS-PASSED"),
        "as nobody:\n{stdout}\n{stderr}"
    );
}
