#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `apply_changes` and `export_changes` on uppers made by hand (as
//! overlayfs makes them: whiteouts are 0:0 character devices, an opaque
//! directory has `trusted.overlay.opaque`), so they run on every kernel:
//! the tree after applying is the tree the changes describe, the exported
//! layer unpacked on the tree's own layer gives the same, and hostile
//! uppers are refused with nothing written or cannot leave the tree, each
//! with a control showing a naive copy would.

mod common;
use common::*;

#[path = "../../sandbox-image/tests/common/mod.rs"]
mod image;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Every entry beneath `dir`: path, type, permission bits, content or
/// symlink target.
fn state(dir: &Path) -> Vec<(String, char, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let mode = meta.mode() & 0o7777;
            if meta.is_dir() {
                stack.push(e.path());
                out.push((rel, 'd', mode, Vec::new()));
            } else if meta.is_symlink() {
                let target = std::fs::read_link(e.path()).unwrap();
                out.push((rel, 'l', 0, target.into_os_string().into_encoded_bytes()));
            } else {
                out.push((rel, 'f', mode, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A tree: `file`, `keep`, `sub/x`, `sub/deep/y`, `link -> file`, `gone/z`.
fn tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub/deep")).unwrap();
    std::fs::create_dir_all(dir.join("gone")).unwrap();
    std::fs::write(dir.join("file"), b"lower\n").unwrap();
    std::fs::write(dir.join("keep"), b"keep\n").unwrap();
    std::fs::write(dir.join("sub/x"), b"x\n").unwrap();
    std::fs::write(dir.join("sub/deep/y"), b"y\n").unwrap();
    std::fs::write(dir.join("gone/z"), b"z\n").unwrap();
    std::os::unix::fs::symlink("file", dir.join("link")).unwrap();
}

fn whiteout(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
}

fn opaque(dir: &Path) {
    rustix::fs::setxattr(
        dir,
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
}

/// The upper a run of this would leave over `tree`:
/// `echo mod >> file; chmod 600 keep; rm -r gone; rm -r sub && mkdir sub
/// && echo n > sub/n; mkdir -p new/d && echo a > new/d/a; ln -sfn keep
/// link; echo s > setid && chmod 4755 setid`.
fn upper(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::create_dir_all(dir.join("new/d")).unwrap();
    std::fs::write(dir.join("file"), b"lower\nmod\n").unwrap();
    std::fs::write(dir.join("keep"), b"keep\n").unwrap();
    mode(&dir.join("keep"), 0o600);
    whiteout(&dir.join("gone"));
    std::fs::write(dir.join("sub/n"), b"n\n").unwrap();
    opaque(&dir.join("sub"));
    std::fs::write(dir.join("new/d/a"), b"a\n").unwrap();
    std::os::unix::fs::symlink("keep", dir.join("link")).unwrap();
    std::fs::write(dir.join("setid"), b"s\n").unwrap();
    mode(&dir.join("setid"), 0o4755);
}

/// What the tree is after the changes `upper` describes.
fn changed(dir: &Path) {
    std::fs::write(dir.join("file"), b"lower\nmod\n").unwrap();
    mode(&dir.join("keep"), 0o600);
    std::fs::remove_dir_all(dir.join("gone")).unwrap();
    std::fs::remove_dir_all(dir.join("sub")).unwrap();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/n"), b"n\n").unwrap();
    std::fs::create_dir_all(dir.join("new/d")).unwrap();
    std::fs::write(dir.join("new/d/a"), b"a\n").unwrap();
    std::fs::remove_file(dir.join("link")).unwrap();
    std::os::unix::fs::symlink("keep", dir.join("link")).unwrap();
    std::fs::write(dir.join("setid"), b"s\n").unwrap();
    // The set-user-ID bit is not carried over.
    mode(&dir.join("setid"), 0o755);
}

/// A tree (`lower`), an upper of changes to it (`upper`), and a copy of
/// the tree with the changes made by hand (`expected`).
fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    require_root();
    let tmp = tempdir_off_overlayfs();
    let [lower, up, expected] = ["lower", "upper", "expected"].map(|n| tmp.path().join(n));
    tree(&lower);
    tree(&expected);
    upper(&up);
    changed(&expected);
    (tmp, lower, up, expected)
}

#[test]
#[ignore = "needs root"]
fn applying_an_upper_gives_the_tree_its_changes_describe() {
    let (_tmp, lower, up, expected) = fixture();
    let applied = sandbox_core::apply_changes(&up, &lower).unwrap();
    assert_eq!(state(&lower), state(&expected));
    let json = serde_json::to_value(&applied).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"added": 5, "modified": 3, "deleted": 1, "replaced": 1,
            "bytes": 21, "setid_dropped": 1}),
        "{json}"
    );
    // No staging entry is left behind.
    assert!(!state(&lower).iter().any(|e| e.0.contains(".sbx-apply-")));
}

#[test]
#[ignore = "needs root"]
fn an_exported_upper_is_an_oci_layer_that_unpacks_to_the_same_tree() {
    let (tmp, lower, up, expected) = fixture();
    // A plain tree exports as a whole layer: the base.
    let mut base = Vec::new();
    sandbox_core::export_changes(&lower, &mut base).unwrap();
    let mut diff = Vec::new();
    let exported = sandbox_core::export_changes(&up, &mut diff).unwrap();
    let json = serde_json::to_value(&exported).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"entries": 9, "whiteouts": 2, "bytes": 21, "setid_dropped": 1}),
        "{json}"
    );
    // The layer's names, as OCI spells deletions.
    std::fs::write(tmp.path().join("diff.tar"), &diff).unwrap();
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(tmp.path().join("diff.tar"))
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&listing.stdout);
    for name in [".wh.gone", "sub/.wh..wh..opq", "new/d/a", "link", "setid"] {
        assert!(names.lines().any(|l| l == name), "{name} in {names}");
    }
    // Unpacked by sandbox-image on the base layer: the changed tree.
    let layout = tmp.path().join("oci");
    image::layout(
        &layout,
        "t",
        &[(base, image::Stored::Plain), (diff, image::Stored::Gzip)],
        &["true"],
    );
    let dest = tmp.path().join("unpacked");
    sandbox_image::unpack(
        &layout,
        Some("t"),
        &dest,
        &sandbox_image::UnpackOptions::default(),
    )
    .unwrap();
    let unpacked = state(&dest.join("rootfs"));
    // The unpacker sets modes as the layer says; compare the entries and
    // their content, and the modes the diff set.
    assert_eq!(
        unpacked
            .iter()
            .map(|e| (&e.0, e.1, &e.3))
            .collect::<Vec<_>>(),
        state(&expected)
            .iter()
            .map(|e| (&e.0, e.1, &e.3))
            .collect::<Vec<_>>()
    );
    let mode_of = |p: &str| {
        std::fs::metadata(dest.join("rootfs").join(p))
            .unwrap()
            .mode()
            & 0o7777
    };
    assert_eq!(mode_of("keep"), 0o600);
    assert_eq!(mode_of("setid"), 0o755);
}

#[test]
#[ignore = "needs root"]
fn an_upper_holding_a_special_file_is_refused_with_nothing_written() {
    require_root();
    let tmp = tempdir_off_overlayfs();
    let (lower, up) = (tmp.path().join("lower"), tmp.path().join("upper"));
    tree(&lower);
    upper(&up);
    let before = state(&lower);
    // A FIFO, sorted after every other entry: the refusal must come before
    // the first write, not when the walk reaches it.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        up.join("zz-fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let err = sandbox_core::apply_changes(&up, &lower).unwrap_err();
    assert!(
        matches!(
            &err,
            sandbox_core::ApplyError::Refused { path, refusal: sandbox_core::ApplyRefusal::SpecialFile }
                if path == Path::new("zz-fifo")
        ),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was written"), "{err}");
    assert_eq!(state(&lower), before);
    let mut out = Vec::new();
    assert!(sandbox_core::export_changes(&up, &mut out).is_err());
    assert!(out.is_empty(), "no byte of the archive was written");
    // A device node (not a whiteout) likewise.
    std::fs::remove_file(up.join("zz-fifo")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        up.join("zz-null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    assert!(matches!(
        sandbox_core::apply_changes(&up, &lower),
        Err(sandbox_core::ApplyError::Refused {
            refusal: sandbox_core::ApplyRefusal::SpecialFile,
            ..
        })
    ));
    // A redirect (a renamed lower directory's upper) would lose its data.
    std::fs::remove_file(up.join("zz-null")).unwrap();
    rustix::fs::setxattr(
        up.join("new"),
        "trusted.overlay.redirect",
        b"/sub",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    assert!(matches!(
        sandbox_core::apply_changes(&up, &lower),
        Err(sandbox_core::ApplyError::Refused {
            refusal: sandbox_core::ApplyRefusal::Redirected,
            ..
        })
    ));
    assert_eq!(state(&lower), before);
}

#[test]
#[ignore = "needs root"]
fn changes_through_a_symlink_in_the_tree_stay_in_the_tree() {
    require_root();
    let tmp = tempdir_off_overlayfs();
    let (lower, up, outside) = (
        tmp.path().join("lower"),
        tmp.path().join("upper"),
        tmp.path().join("outside"),
    );
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"precious\n").unwrap();
    let outside_before = state(&outside);
    // The tree has `sub -> ../outside`; the upper has a directory `sub`
    // with a new file and a whiteout of `victim` in it.
    let make = |dir: &Path| {
        std::fs::create_dir_all(dir).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("sub")).unwrap();
    };
    make(&lower);
    std::fs::create_dir_all(up.join("sub")).unwrap();
    std::fs::write(up.join("sub/planted"), b"p\n").unwrap();
    whiteout(&up.join("sub/victim"));
    let applied = sandbox_core::apply_changes(&up, &lower).unwrap();
    assert_eq!(state(&outside), outside_before, "nothing outside changed");
    // The symlink was replaced by the directory the upper has.
    assert_eq!(
        state(&lower),
        vec![
            ("sub".to_string(), 'd', 0o755, Vec::new()),
            ("sub/planted".to_string(), 'f', 0o644, b"p\n".to_vec())
        ]
    );
    assert_eq!((applied.added, applied.modified), (1, 1));

    // The control: the same entries applied by path string (copy the
    // file to its path, remove the whiteout's) write through the symlink.
    let naive = tmp.path().join("naive");
    make(&naive);
    let naive_apply = std::process::Command::new("sh")
        .args([
            "-c",
            r#"cp "$1/sub/planted" "$2/sub/planted" && rm -rf "$2/sub/victim""#,
            "sh",
        ])
        .arg(&up)
        .arg(&naive)
        .status()
        .unwrap();
    assert!(naive_apply.success());
    assert!(
        outside.join("planted").exists(),
        "the naive apply wrote outside"
    );
    assert!(
        !outside.join("victim").exists(),
        "the naive apply deleted outside"
    );
}
