//! Path validation, root handles and error reporting, for every operation.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

mod common;

use std::fs;
use std::path::Path;

use common::{errno, setup};
use openat2_root::{
    Error, ErrorKind, InvalidPathReason, OpenOptions, RemoveOptions, Root, RootOptions,
};

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
            r.remove(bad, RemoveOptions::new().recursive(true).force(true)),
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
    // The mount point itself, by the one-name fast paths (a statx of the
    // name crosses onto the mount): refused too, not the outside inode.
    let root_dev = plain.metadata(".").unwrap().dev();
    for path in ["proc", "proc/"] {
        let e = root.metadata(path).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Escape, "metadata {path}: {e}");
        assert_ne!(
            plain.metadata(path).unwrap().dev(),
            root_dev,
            "control: {path} is another mount"
        );
    }
    let e = root.symlink_metadata("proc").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Escape, "symlink_metadata proc: {e}");
    // Names on the root's own mount are still answered at once.
    assert!(root.metadata("etc").unwrap().is_dir());
    assert!(root.symlink_metadata("etc").unwrap().is_dir());
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
