//! The everyday calls std and cap-std have (`read`, `read_to_string`,
//! `write`, `open_read`, `create`, `try_exists`, `DirBuilder`,
//! `Permissions`, `DirEntry::{metadata, open}`, `RemoveOptions`), each
//! compared with std on the same tree and each refusing what the rest of
//! the crate refuses.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::path::Path;

mod common;

use common::{errno, setup, umask_applied};
use openat2_root::{
    DirBuilder, DurableWrite, ErrorKind, Permissions, RemoveOptions, Root, RootOptions,
};

#[test]
fn read_write_and_read_to_string_match_std() {
    let t = setup();
    t.root.write("a.bin", [0u8, 159, 146, 150]).unwrap();
    assert_eq!(
        t.root.read("a.bin").unwrap(),
        fs::read(t.p("a.bin")).unwrap()
    );
    // write truncates what was longer, as std's does.
    t.file("text", "a much longer first version");
    t.root.write("text", "short").unwrap();
    assert_eq!(t.read("text"), "short");
    assert_eq!(t.root.read_to_string("text").unwrap(), "short");
    // Not UTF-8: a typed error naming the offset, as std refuses it.
    assert!(fs::read_to_string(t.p("a.bin")).is_err(), "control");
    let e = t.root.read_to_string("a.bin").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
    assert!(e.to_string().contains("offset 1"), "{e}");
    assert_eq!(
        std::io::Error::from(e).kind(),
        std::io::ErrorKind::InvalidData
    );
    // A new file gets 0o666 less the umask, as std's.
    t.root.write("new", "").unwrap();
    assert_eq!(t.mode("new"), umask_applied(0o666));
}

#[test]
fn shortcuts_refuse_symlinks_and_special_files() {
    let t = setup();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), "outside").unwrap();
    symlink(outside.path(), t.p("out")).unwrap();
    symlink(outside.path().join("secret"), t.p("leaf")).unwrap();
    // Control: std follows both.
    assert_eq!(fs::read_to_string(t.p("out/secret")).unwrap(), "outside");
    assert_eq!(fs::read_to_string(t.p("leaf")).unwrap(), "outside");
    for path in ["out/secret", "leaf"] {
        let kinds = [
            t.root.read(path).map(drop).unwrap_err().kind(),
            t.root.read_to_string(path).map(drop).unwrap_err().kind(),
            t.root.write(path, "pwned").unwrap_err().kind(),
            t.root.open_read(path).map(drop).unwrap_err().kind(),
            t.root.create(path).map(drop).unwrap_err().kind(),
            t.root.try_exists(path).unwrap_err().kind(),
        ];
        assert_eq!(kinds, [ErrorKind::Escape; 6], "{path}");
    }
    assert_eq!(
        fs::read_to_string(outside.path().join("secret")).unwrap(),
        "outside"
    );
    // A FIFO is refused, not opened (an open would block here for ever).
    rustix::fs::mknodat(
        rustix::fs::CWD,
        t.p("fifo").as_path(),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    assert_eq!(
        t.root.read("fifo").unwrap_err().kind(),
        ErrorKind::SpecialFile
    );
    assert_eq!(
        t.root.write("fifo", "x").unwrap_err().kind(),
        ErrorKind::SpecialFile
    );
}

#[test]
fn open_read_and_create() {
    let t = setup();
    let mut f = t.root.create("c").unwrap();
    f.write_all(b"first").unwrap();
    drop(f);
    // create truncates, as File::create.
    t.root.create("c").unwrap().write_all(b"2").unwrap();
    let mut text = String::new();
    t.root
        .open_read("c")
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "2");
    // open_read does not create, and cannot write.
    assert_eq!(
        t.root.open_read("missing").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(t.root.open_read("c").unwrap().write_all(b"x").is_err());
}

#[test]
fn try_exists_matches_std() {
    let t = setup();
    t.file("file", "");
    t.dir("dir");
    for (path, expected) in [
        ("file", true),
        ("dir", true),
        ("dir/", true),
        ("missing", false),
        ("dir/missing", false),
        ("missing/x", false),
    ] {
        assert_eq!(t.root.try_exists(path).unwrap(), expected, "{path}");
        assert_eq!(t.p(path).try_exists().unwrap(), expected, "std {path}");
    }
    // A file used as a directory is an error for both, not `false`.
    assert_eq!(
        errno(&t.root.try_exists("file/x").unwrap_err()),
        libc::ENOTDIR
    );
    assert!(t.p("file/x").try_exists().is_err(), "control: std errs too");
}

#[test]
fn dir_builder_matches_std() {
    let t = setup();
    let mut plain = DirBuilder::new();
    plain.mode(0o750);
    t.root.create_dir_with("one", &plain).unwrap();
    assert_eq!(t.mode("one"), umask_applied(0o750));
    // Not recursive: the parent must exist and the directory must not.
    assert_eq!(
        t.root.create_dir_with("a/b", &plain).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        t.root.create_dir_with("one", &plain).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    let recursive = *DirBuilder::new().recursive(true).mode(0o700);
    t.root.create_dir_with("a/b/c", &recursive).unwrap();
    t.root.create_dir_with("a/b/c", &recursive).unwrap();
    assert_eq!(t.mode("a/b"), umask_applied(0o700));
    // A symlinked parent is refused, as everywhere.
    symlink("/tmp", t.p("link")).unwrap();
    assert_eq!(
        t.root
            .create_dir_with("link/x", &recursive)
            .unwrap_err()
            .kind(),
        ErrorKind::Escape
    );
}

#[test]
fn permissions_type() {
    let t = setup();
    t.file("f", "");
    t.chmod("f", 0o644);
    let mut perms = t.root.metadata("f").unwrap().permissions();
    assert_eq!(perms.mode(), 0o644);
    assert_eq!(format!("{perms:o}"), "644");
    assert!(!perms.readonly());
    perms.set_readonly(true);
    assert_eq!(perms.mode(), 0o444);
    t.root.set_permissions("f", perms).unwrap();
    assert_eq!(t.mode("f"), 0o444);
    perms.set_readonly(false);
    assert_eq!(perms.mode(), 0o644, "only the owner's w bit comes back");
    // From std's type and a plain mode, both ways.
    use std::os::unix::fs::PermissionsExt;
    let std_perms = fs::metadata(t.p("f")).unwrap().permissions();
    assert_eq!(Permissions::from(std_perms.clone()).mode(), 0o444);
    assert_eq!(std::fs::Permissions::from(perms).mode(), 0o644);
    t.root.set_permissions("f", 0o100_600).unwrap();
    assert_eq!(t.mode("f"), 0o600, "type bits dropped");
    assert_eq!(u32::from(Permissions::from_mode(0o104_755)), 0o4755);
}

#[test]
fn dir_entries_look_open_and_remove() {
    let t = setup();
    t.dir("d/sub");
    fs::write(t.p("d/file"), "contents").unwrap();
    let mut entries: Vec<_> = t.root.read_dir("d").unwrap().map(Result::unwrap).collect();
    entries.sort_by(|a, b| a.file_name().cmp(b.file_name()));
    let [file, sub] = &entries[..] else {
        panic!("{entries:?}")
    };
    assert_eq!(file.path(), Path::new("d/file"));
    let std_meta = fs::symlink_metadata(t.p("d/file")).unwrap();
    let meta = file.metadata().unwrap();
    assert_eq!(
        (meta.len(), meta.ino()),
        (8, std::os::unix::fs::MetadataExt::ino(&std_meta))
    );
    let mut text = String::new();
    file.open().unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(text, "contents");
    assert!(sub.metadata().unwrap().is_dir());
    let sub_root = sub.open_dir().unwrap();
    sub_root.write("inner", "x").unwrap();
    assert_eq!(t.read("d/sub/inner"), "x");
    // Swapped for a symlink after it was listed: refused, not followed;
    // the error names the whole path.
    fs::remove_file(t.p("d/file")).unwrap();
    symlink("/etc/passwd", t.p("d/file")).unwrap();
    let e = file.open().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Escape, "{e}");
    assert_eq!(e.path(), Path::new("d/file"));
    assert!(file.metadata().unwrap().is_symlink(), "not followed");
    // Removed through the entry: the symlink itself.
    file.remove_file().unwrap();
    assert!(!t.exists("d/file"));
    assert!(fs::metadata("/etc/passwd").is_ok());
    assert_eq!(errno(&sub.remove_dir().unwrap_err()), libc::ENOTEMPTY);
    fs::remove_file(t.p("d/sub/inner")).unwrap();
    sub.remove_dir().unwrap();
    assert!(!t.exists("d/sub"));
}

#[test]
fn dir_entry_metadata_honours_no_xdev() {
    // /proc is a mount on /: with no_xdev, its entry in a listing of / is
    // refused, as `metadata("proc")` is; without, it is described.
    let strict = Root::open_with("/", RootOptions::new().no_xdev(true)).unwrap();
    let proc_entry = |root: &Root| {
        root.read_dir(".")
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.file_name() == "proc")
            .expect("/proc is listed")
    };
    let e = proc_entry(&strict).metadata().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Escape, "{e}");
    assert!(
        proc_entry(&Root::open("/").unwrap())
            .metadata()
            .unwrap()
            .is_dir(),
        "control: described without no_xdev"
    );
}

#[test]
fn remove_options_builder() {
    let t = setup();
    t.dir("tree/a/b");
    let e = t.root.remove("tree", RemoveOptions::new()).unwrap_err();
    assert_eq!(errno(&e), libc::EISDIR);
    t.root
        .remove("tree", RemoveOptions::new().recursive(true))
        .unwrap();
    assert!(!t.exists("tree"));
    assert_eq!(
        t.root
            .remove("tree", RemoveOptions::new())
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    t.root
        .remove("tree", RemoveOptions::new().force(true))
        .unwrap();
}

#[test]
fn write_atomic_without_sync_is_still_atomic() {
    let t = setup();
    t.file("f", "old");
    t.chmod("f", 0o600);
    t.root
        .write_atomic_with("f", "new", DurableWrite::NoSync)
        .unwrap();
    assert_eq!(t.read("f"), "new");
    assert_eq!(t.mode("f"), 0o600);
    let names: Vec<_> = fs::read_dir(t.p(""))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["f"]);
}
