//! Creating, removing, renaming and linking entries: the happy path, each
//! error, trailing slashes and modes, checked against the filesystem.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{errno, setup, umask_applied};
use openat2_root::{Error, ErrorKind, RemoveOptions, Root, RootOptions};

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
    assert_eq!((t.mode("a/b/c") & 0o777), umask_applied(0o700));
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
    // Links below the top level resolve against the root too, not against
    // the directory holding them: on the fast path (parent exists) and on
    // the slow path (directories missing).
    t.dir("sub");
    std::os::unix::fs::symlink("/real", t.p("sub/abs")).unwrap();
    std::os::unix::fs::symlink("../real", t.p("sub/rel")).unwrap();
    r.create_dir_all("sub/abs", 0o755).unwrap();
    r.create_dir_all("sub/abs/p/q/r", 0o755).unwrap();
    r.create_dir_all("sub/rel/s/t", 0o755).unwrap();
    assert!(t.p("real/p/q/r").is_dir() && t.p("real/s/t").is_dir());
    assert!(!t.exists("sub/real"));
    // Strict mode refuses the same paths.
    let strict = Root::open(&t.path).unwrap();
    assert_eq!(
        strict
            .create_dir_all("sub/abs/z/w", 0o755)
            .unwrap_err()
            .kind(),
        ErrorKind::Escape
    );
    assert_eq!(
        strict.create_dir_all("sub/abs", 0o755).unwrap_err().kind(),
        ErrorKind::Escape
    );
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
    t.chmod("tree/a/b", 0o700);
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
    let rf = RemoveOptions::new().recursive(true).force(true);
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
        .remove("f", RemoveOptions::new().recursive(false).force(true))
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

/// `...` and `....` are directory names like any other: an operation on
/// `.../x` acts on the `x` inside `...`, never on the root's `x` (every
/// operation that splits a parent from its last component).
#[test]
fn dot_named_directories_are_not_the_root() {
    let t = setup();
    for dots in ["...", "....", "./..."] {
        let name = dots.trim_start_matches("./");
        t.dir(name);
        t.file("x", "root's x");
        t.file(&format!("{name}/x"), "dots' x");
        // Reads.
        assert_eq!(
            t.root.metadata(format!("{dots}/x")).unwrap().len(),
            "dots' x".len() as u64,
            "{dots}"
        );
        // Writes, each checked against the root's own `x`.
        t.root.write_atomic(format!("{dots}/new"), b"n").unwrap();
        assert!(
            t.p(&format!("{name}/new")).exists() && !t.p("new").exists(),
            "{dots}"
        );
        t.root.remove_file(format!("{dots}/x")).unwrap();
        assert!(
            t.p("x").exists() && !t.p(&format!("{name}/x")).exists(),
            "{dots}"
        );
        t.root.create_dir(format!("{dots}/d"), 0o755).unwrap();
        assert!(
            t.p(&format!("{name}/d")).is_dir() && !t.p("d").exists(),
            "{dots}"
        );
        t.root.create_dir_all(format!("{dots}/e/f"), 0o755).unwrap();
        assert!(
            t.p(&format!("{name}/e/f")).is_dir() && !t.p("e").exists(),
            "{dots}"
        );
        t.root
            .rename(format!("{dots}/new"), format!("{dots}/moved"))
            .unwrap();
        assert!(
            t.p(&format!("{name}/moved")).exists() && !t.p("moved").exists(),
            "{dots}"
        );
        t.root
            .hard_link(format!("{dots}/moved"), format!("{dots}/hl"))
            .unwrap();
        assert!(
            t.p(&format!("{name}/hl")).exists() && !t.p("hl").exists(),
            "{dots}"
        );
        t.root.symlink("target", format!("{dots}/sl")).unwrap();
        assert_eq!(
            t.root.read_link(format!("{dots}/sl")).unwrap(),
            Path::new("target")
        );
        assert!(
            t.p(&format!("{name}/sl")).is_symlink() && !t.p("sl").is_symlink(),
            "{dots}"
        );
        t.root.remove_dir(format!("{dots}/d")).unwrap();
        t.root.remove_dir_all(format!("{dots}/e")).unwrap();
        assert!(!t.p(&format!("{name}/e")).exists(), "{dots}");
        t.root.remove_dir_all(name).unwrap();
        assert!(t.p("x").exists(), "the root's x is untouched");
        fs::remove_file(t.p("x")).unwrap();
    }
}
