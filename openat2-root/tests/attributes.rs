//! Permissions, length, times, ownership and metadata of entries, never
//! through a symlink.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{errno, setup};
use openat2_root::{ErrorKind, Root, RootOptions};

#[test]
fn set_permissions_on_mode_000_and_never_through_links() {
    let t = setup();
    t.file("f", "x");
    t.chmod("f", 0o000);
    t.root.set_permissions("f", 0o640).unwrap();
    assert_eq!(t.mode("f"), 0o640);
    t.root.set_permissions("f", 0o4755).unwrap();
    assert_eq!(t.mode("f"), 0o4755);
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
    assert_eq!(t.mode("f"), 0o4755);
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
