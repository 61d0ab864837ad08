#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `sbx changes list|apply|export` on a kept upper made by hand (as
//! overlayfs makes one: a deletion is a 0:0 character device, which only
//! root can make), and the errors a wrong argument gets.

mod common;
use common::{require_root, sbx_command, tempdir_off_overlayfs, text};

use std::path::Path;

fn sbx(args: &[&Path]) -> std::process::Output {
    sbx_command().args(args).output().unwrap()
}

/// A lower with `file`, `old` and `sub/x`, and an upper (`UPPER/diff`)
/// that modifies `file`, deletes `old` and adds `new`.
fn upper_and_lower(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (lower, upper) = (tmp.join("lower"), tmp.join("upper"));
    std::fs::create_dir_all(lower.join("sub")).unwrap();
    std::fs::write(lower.join("file"), b"lower\n").unwrap();
    std::fs::write(lower.join("old"), b"old\n").unwrap();
    std::fs::write(lower.join("sub/x"), b"x\n").unwrap();
    let diff = upper.join("diff");
    std::fs::create_dir_all(&diff).unwrap();
    std::fs::create_dir_all(upper.join("work")).unwrap();
    std::fs::write(diff.join("file"), b"lower\nmore\n").unwrap();
    std::fs::write(diff.join("new"), b"new\n").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        diff.join("old"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    (upper, lower)
}

#[test]
#[ignore = "needs root"]
fn changes_are_listed_applied_and_exported() {
    require_root();
    let tmp = tempdir_off_overlayfs();
    let (upper, lower) = upper_and_lower(tmp.path());

    let out = sbx(&["changes".as_ref(), "list".as_ref(), &upper, &lower]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(
        listed.contains("1 added, 1 modified, 1 deleted, 0 replaced"),
        "{listed}"
    );
    for line in [
        "added    /new (4 B)",
        "modified /file (11 B)",
        "deleted  /old (4 B)",
    ] {
        assert!(listed.contains(line), "{line} in {listed}");
    }

    let tar = tmp.path().join("changes.tar");
    let out = sbx(&[
        "changes".as_ref(),
        "export".as_ref(),
        &upper,
        "--output".as_ref(),
        &tar,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("exported 2 entries and 1 whiteouts"),
        "{}",
        text(&out.stderr)
    );
    let names = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .unwrap();
    assert_eq!(text(&names.stdout), "file\nnew\n.wh.old\n");
    // An existing file is not overwritten.
    let again = sbx(&[
        "changes".as_ref(),
        "export".as_ref(),
        &upper,
        "-o".as_ref(),
        &tar,
    ]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("File exists"),
        "{}",
        text(&again.stderr)
    );

    let out = sbx(&["changes".as_ref(), "apply".as_ref(), &upper, &lower]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 added, 1 modified, 1 deleted, 0 replaced (15 B written)"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(std::fs::read(lower.join("file")).unwrap(), b"lower\nmore\n");
    assert_eq!(std::fs::read(lower.join("new")).unwrap(), b"new\n");
    assert!(!lower.join("old").exists());
    assert_eq!(std::fs::read(lower.join("sub/x")).unwrap(), b"x\n");
}

#[test]
fn a_directory_without_diff_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = sbx(&["changes".as_ref(), "apply".as_ref(), tmp.path(), tmp.path()]);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(err.contains("has no diff directory"), "{err}");
}
