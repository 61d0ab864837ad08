#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `filesystem.overlay`: the sandbox changes, adds and deletes files in a
//! copy-on-write view of a host tree; the tree itself is never written
//! (its hash before and after), a tmpfs upper is discarded, a directory
//! upper keeps the writes (whiteouts included) for the next run, and
//! stacked lowers show the top one first. The control: the same commands
//! through a writable bind of the tree do change it.

mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A world-writable tree (the sandbox's user is not its owner): `file`,
/// `sub/x`, `keep`.
fn lower(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("file"), b"lower\n").unwrap();
    std::fs::write(dir.join("sub/x"), b"x\n").unwrap();
    std::fs::write(dir.join("keep"), b"keep\n").unwrap();
    for p in [dir.to_path_buf(), dir.join("sub")] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    for p in ["file", "sub/x", "keep"] {
        std::fs::set_permissions(dir.join(p), std::fs::Permissions::from_mode(0o666)).unwrap();
    }
}

/// Every path and its content beneath `dir`.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
                out.push((rel, Vec::new()));
            } else {
                out.push((rel, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Whether `dir`'s filesystem stores `user.` attributes (what overlayfs in
/// a user namespace needs of its upper): tried, as the library does.
fn stores_user_xattrs(dir: &Path) -> bool {
    let ok = rustix::fs::lsetxattr(dir, "user.test", b"1", rustix::fs::XattrFlags::empty()).is_ok();
    let _ = rustix::fs::lremovexattr(dir, "user.test");
    ok
}

/// Whether `dir` is on an overlayfs (which cannot be an upper).
fn on_overlayfs(dir: &Path) -> bool {
    rustix::fs::statfs(dir).is_ok_and(|st| st.f_type == 0x794c_7630)
}

/// On a host whose tmpfs cannot hold the upper's attributes (before 6.6),
/// a tmpfs-upper overlay is a downgrade: the run is refused, naming why.
/// Returns whether the host can (the test goes on).
fn tmpfs_upper_or_refused(sb: &sandbox_core::Sandbox) -> bool {
    if sandbox_core::probe().overlay_tmpfs_upper.is_available() {
        return true;
    }
    let refused = sb.command("true").output().unwrap_err().to_string();
    assert!(refused.contains("user.* attributes"), "{refused}");
    println!("tmpfs uppers are a downgrade here: {refused}");
    false
}

/// The one overlay's changes in `out`, as (path, kind, size).
fn listed(out: &sandbox_core::RunOutcome) -> Vec<(String, sandbox_core::ChangeKind, u64)> {
    let [changes] = &out.changes[..] else {
        panic!("{:?}", out.changes)
    };
    assert_eq!(changes.target, Path::new("/work"));
    assert!(changes.error.is_none(), "{changes:?}");
    changes
        .changes
        .iter()
        .map(|c| (c.path.display().to_string(), c.kind, c.size))
        .collect()
}

/// What `CHANGES` does to the tree of `lower`.
fn expected_changes() -> Vec<(String, sandbox_core::ChangeKind, u64)> {
    use sandbox_core::ChangeKind::{Added, Deleted, Modified};
    vec![
        ("d".to_string(), Added, 0),
        ("d/y".to_string(), Added, 2),
        ("file".to_string(), Modified, 10),
        ("keep".to_string(), Deleted, 5),
        ("new".to_string(), Added, 4),
        ("sub".to_string(), Deleted, 0),
    ]
}

const CHANGES: &str = "cd /work && echo new > new && echo mod >> file && rm -r sub && rm keep && mkdir d && echo y > d/y && ls /work && cat file";

#[test]
#[ignore = "needs root"]
fn an_overlay_takes_the_writes_and_leaves_the_lower_as_it_was() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    lower(&repo);
    let before = snapshot(&repo);
    let sb = sandbox(&format!(
        "[filesystem]\noverlay = [{{ lower = \"{}\", target = \"/work\", size = \"16MiB\" }}]\n",
        repo.display()
    ));
    if !tmpfs_upper_or_refused(&sb) {
        return;
    }
    let out = sh(&sb, CHANGES);
    assert!(out.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout(&out), "d\nfile\nnew\nlower\nmod\n");
    // The changes, read from the tmpfs upper before it went.
    assert_eq!(listed(&out), expected_changes());
    assert_eq!(snapshot(&repo), before, "the lower is unchanged");
    assert!(
        sb.report().to_string().contains("/work: overlay of"),
        "{}",
        sb.report()
    );
    // The tmpfs upper went with the run: the next one sees the lower.
    let again = sh(&sb, "ls /work; cat /work/file");
    assert_eq!(stdout(&again), "file\nkeep\nsub\nlower\n");

    // The control: the same commands through a writable bind change it.
    let bound = sandbox(&format!(
        "[filesystem]\nbinds = [{{ source = \"{}\", target = \"/work\", writable = true }}]\n",
        repo.display()
    ));
    assert!(sh(&bound, CHANGES).success());
    assert_ne!(snapshot(&repo), before, "the control changed the tree");
}

#[test]
#[ignore = "needs root"]
fn a_directory_upper_keeps_the_writes_for_the_next_run() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    lower(&repo);
    let before = snapshot(&repo);
    // An upper needs a filesystem that stores user.* attributes and is no
    // overlayfs (a VM's or container's /tmp often is): /tmp, else
    // /dev/shm; where neither serves, the run must be refused, naming why.
    let base = [tmp.path(), Path::new("/dev/shm")]
        .into_iter()
        .find(|b| b.is_dir() && !on_overlayfs(b) && stores_user_xattrs(b))
        .unwrap_or(tmp.path());
    let upper_home = tempfile::tempdir_in(base).unwrap();
    let upper = upper_home.path().join("upper");
    let sb = sandbox(&format!(
        "[filesystem]\noverlay = [{{ lower = \"{}\", target = \"/work\", upper = \"{}\" }}]\n",
        repo.display(),
        upper.display()
    ));
    if on_overlayfs(base) || !stores_user_xattrs(base) {
        let refused = sb.command("true").output().unwrap_err().to_string();
        assert!(
            refused.contains("does not store user.* attributes")
                || refused.contains("is on an overlayfs"),
            "{refused}"
        );
        return;
    }
    let out = sh(&sb, CHANGES);
    assert!(out.success());
    assert_eq!(snapshot(&repo), before, "the lower is unchanged");
    // The outcome lists what changed, read from the upper.
    assert_eq!(listed(&out), expected_changes());
    let diff = upper.join("diff");
    assert_eq!(std::fs::read(diff.join("new")).unwrap(), b"new\n");
    assert_eq!(std::fs::read(diff.join("file")).unwrap(), b"lower\nmod\n");
    // Deletions are whiteouts: character devices 0:0.
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for gone in ["keep", "sub"] {
        let meta = std::fs::symlink_metadata(diff.join(gone)).unwrap();
        assert!(
            meta.file_type().is_char_device() && meta.rdev() == 0,
            "{gone}"
        );
    }
    // Applied onto a copy of the tree, the upper gives what the same
    // commands give through a writable bind of another copy.
    let (applied_to, bound_to) = (tmp.path().join("applied"), tmp.path().join("bound"));
    lower(&applied_to);
    lower(&bound_to);
    let applied = sandbox_core::apply_changes(&diff, &applied_to).unwrap();
    assert_eq!(
        (applied.added, applied.modified, applied.deleted),
        (3, 1, 2)
    );
    let bound = sandbox(&format!(
        "[filesystem]\nbinds = [{{ source = \"{}\", target = \"/work\", writable = true }}]\n",
        bound_to.display()
    ));
    assert!(sh(&bound, CHANGES).success());
    assert_eq!(snapshot(&applied_to), snapshot(&bound_to));
    assert_ne!(snapshot(&applied_to), before);
    // The next run sees them; the work directory an earlier run left does
    // not make the mount read-only.
    let again = sh(
        &sb,
        "ls /work; cat /work/file; touch /work/second && echo writable",
    );
    assert_eq!(stdout(&again), "d\nfile\nnew\nlower\nmod\nwritable\n");
}

#[test]
#[ignore = "needs root"]
fn stacked_lowers_show_the_top_one_first() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let (top, bottom) = (tmp.path().join("top"), tmp.path().join("bottom"));
    lower(&bottom);
    std::fs::create_dir_all(&top).unwrap();
    std::fs::write(top.join("file"), b"top\n").unwrap();
    std::fs::write(top.join("only-top"), b"t\n").unwrap();
    let sb = sandbox(&format!(
        "[filesystem]\noverlay = [{{ lower = [\"{}\", \"{}\"], target = \"/work\" }}]\n",
        top.display(),
        bottom.display()
    ));
    if !tmpfs_upper_or_refused(&sb) {
        return;
    }
    let out = sh(&sb, "ls /work; cat /work/file");
    assert!(out.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout(&out), "file\nkeep\nonly-top\nsub\ntop\n");
}

/// A root of one's own made of a static busybox, its directories writable
/// by others (the sandbox's user is not the tree's owner).
fn busybox_root(dir: &Path) {
    for d in ["bin", "proc", "dev", "tmp", "etc", "work"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("a static busybox (busybox-static)");
    for tool in ["sh", "ls", "cat", "echo", "rm", "mkdir"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(tool)).unwrap();
    }
    std::fs::write(dir.join("etc/os-release"), b"ID=test-root\n").unwrap();
    std::fs::write(dir.join("etc/gone"), b"gone\n").unwrap();
    for d in ["", "etc", "work"] {
        std::fs::set_permissions(dir.join(d), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
}

#[test]
#[ignore = "needs root"]
fn a_writable_root_takes_the_writes_and_leaves_the_tree_as_it_was() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("rootfs");
    busybox_root(&root);
    let before = snapshot(&root);
    let policy = |root_overlay: &str| {
        format!(
            "[filesystem]\nmode = \"rootfs\"\nroot = \"{}\"\nroot_overlay = {root_overlay}\n[network]\nmode = \"none\"\n",
            root.display()
        )
    };
    let script = "echo new > /new-file && rm /etc/gone && mkdir /work/d && echo y > /work/d/y && cat /etc/os-release /new-file && ls /etc";
    // The control: the same root read-only refuses every write.
    let read_only = sandbox(&policy("{}").replace("root_overlay = {}\n", ""));
    let out = sh(&read_only, script);
    assert!(!out.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));

    let sb = sandbox(&policy(r#"{ size = "16MiB" }"#));
    if !tmpfs_upper_or_refused(&sb) {
        return;
    }
    let out = sh(&sb, script);
    assert!(out.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout(&out), "ID=test-root\nnew\nos-release\n");
    let [changes] = &out.changes[..] else {
        panic!("{:?}", out.changes)
    };
    assert_eq!(changes.target, Path::new("/"));
    use sandbox_core::ChangeKind::{Added, Deleted};
    assert_eq!(
        changes
            .changes
            .iter()
            .map(|c| (c.path.display().to_string(), c.kind))
            .collect::<Vec<_>>(),
        [
            ("etc/gone".to_string(), Deleted),
            ("new-file".to_string(), Added),
            ("work/d".to_string(), Added),
            ("work/d/y".to_string(), Added),
        ]
    );
    assert_eq!(snapshot(&root), before, "the tree is unchanged");
    let report = sb.report().to_string();
    assert!(report.contains("writable through an overlay"), "{report}");
    // The tmpfs upper went with the run.
    assert_eq!(stdout(&sh(&sb, "ls /etc")), "gone\nos-release\n");
}

#[test]
#[ignore = "needs root"]
fn where_overlayfs_cannot_serve_a_copy_does_and_reports_the_same_changes() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    lower(&repo);
    let before = snapshot(&repo);
    let policy = |fallback: &str| {
        format!(
            "[filesystem]\noverlay = [{{ lower = \"{}\", target = \"/work\", size = \"16MiB\"{fallback} }}]\n",
            repo.display()
        )
    };
    // The control: without the fallback, such a host refuses the run.
    let refused = sandbox_without_tmpfs_upper(&policy(""))
        .command("true")
        .output()
        .unwrap_err()
        .to_string();
    assert!(refused.contains("user.* attributes"), "{refused}");

    let sb = sandbox_without_tmpfs_upper(&policy(", fallback = \"copy\""));
    let report = sb.report().to_string();
    assert!(report.contains("/work: a copy of"), "{report}");
    let out = sh(&sb, CHANGES);
    assert!(out.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout(&out), "d\nfile\nnew\nlower\nmod\n");
    assert_eq!(listed(&out), expected_changes());
    assert_eq!(out.changes[0].upper, Path::new("tmpfs (a copy)"));
    assert_eq!(snapshot(&repo), before, "the lower is unchanged");
    // The copy went with the run.
    assert_eq!(stdout(&sh(&sb, "ls /work")), "file\nkeep\nsub\n");
    // A tree larger than the tmpfs fails the run, naming the copy.
    std::fs::write(repo.join("big"), vec![7u8; 32 << 20]).unwrap();
    let err = sh_err(&sb);
    assert!(
        err.contains("copy") && err.contains("No space left"),
        "{err}"
    );
}

/// The error of a run that fails to start.
fn sh_err(sb: &sandbox_core::Sandbox) -> String {
    sb.command("true").output().unwrap_err().to_string()
}

/// Whether `dir` is on a filesystem every kernel of the matrix can idmap
/// (ext4, xfs, btrfs).
fn idmappable_everywhere(dir: &Path) -> bool {
    const MAGICS: [i64; 3] = [0xef53, 0x5846_5342, 0x9123_683e];
    rustix::fs::statfs(dir).is_ok_and(|st| MAGICS.contains(&st.f_type))
}

/// A root caller's run has a host uid of its own: through idmapped lowers
/// a file keeps its numeric owner in the sandbox, so the sandbox's uid
/// 1000 may change uid 1000's file and make files in its directory, and
/// still not change uid 1001's (the control; an id the run does not map
/// shows as 65534); the lower is unchanged. Where the lower's filesystem cannot
/// be idmapped the outcome says so and neither write is allowed.
#[test]
#[ignore = "needs root"]
fn a_lower_keeps_its_owners_for_a_root_callers_run() {
    require_root();
    let tmp = tempdir_off_overlayfs();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    for (name, uid) in [("mine", 1000), ("theirs", 1001)] {
        std::fs::write(repo.join(name), b"lower\n").unwrap();
        std::os::unix::fs::chown(repo.join(name), Some(uid), Some(uid)).unwrap();
    }
    std::os::unix::fs::chown(&repo, Some(1000), Some(1000)).unwrap();
    let before = snapshot(&repo);
    let sb = sandbox(&format!(
        "[filesystem]\noverlay = [{{ lower = \"{}\", target = \"/work\" }}]\n[privilege]\nuser = 1000\n",
        repo.display()
    ));
    if !tmpfs_upper_or_refused(&sb) {
        return;
    }
    let out = sh(
        &sb,
        "echo more >> /work/mine && echo mine-written; echo x >> /work/theirs || echo theirs-refused; echo new > /work/new && echo dir-written; stat -c %u /work/mine /work/theirs",
    );
    let [changes] = &out.changes[..] else {
        panic!("{:?}", out.changes)
    };
    let text = stdout(&out);
    if changes.idmapped {
        assert_eq!(
            text,
            "mine-written\ntheirs-refused\ndir-written\n1000\n65534\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        assert!(
            !idmappable_everywhere(tmp.path()),
            "ext4, xfs and btrfs lowers are idmapped"
        );
        assert!(
            !text.contains("mine-written") && text.contains("theirs-refused"),
            "{text}"
        );
    }
    assert_eq!(snapshot(&repo), before, "the lower is unchanged");

    // A root of one's own, owned by root (as an unpacked image is): the
    // sandbox's root may change its /etc through a writable root.
    let root = tmp.path().join("rootfs");
    busybox_root(&root);
    for d in ["", "etc"] {
        std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let image = sandbox(&format!(
        "[filesystem]\nmode = \"rootfs\"\nroot = \"{}\"\nroot_overlay = {{}}\n[privilege]\nuser = \"root\"\n",
        root.display()
    ));
    let out = sh(
        &image,
        "echo x > /etc/new && echo etc-written; echo y > /new && echo root-written",
    );
    let text = stdout(&out);
    if out.changes[0].idmapped {
        assert_eq!(
            text,
            "etc-written\nroot-written\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        assert!(!idmappable_everywhere(tmp.path()));
        assert_eq!(text, "", "{}", String::from_utf8_lossy(&out.stderr));
    }
}
