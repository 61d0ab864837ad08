//! The attack fixture: symlinks to `/`, to `../../..`, to `/proc/self/root`,
//! to an outside directory (absolute and relative), as an intermediate
//! component and as the last one, against every operation. Each must be
//! refused as an escape — or, for operations that act on a symlink itself
//! (remove, rename, lstat, readlink, link), act on the link only — and the
//! canary outside must keep its listing, contents, modes and mtimes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use integration_tests::canary::Canary;
use openat2_root::{Error, ErrorKind, OpenOptions, RemoveOptions, Root, RootOptions};

/// A fresh fixture: `tmp/outside` (the canary) and `tmp/root` with attack
/// symlinks at depth 1 and 2.
struct Fixture {
    _tmp: tempfile::TempDir,
    root_dir: PathBuf,
    canary: Canary,
}

/// An attack symlink: its name inside the root, its target, and the path
/// through it that would reach the canary if it were followed.
struct Link {
    name: &'static str,
    target: String,
    to_canary: String,
}

impl Link {
    /// `PREFIX<link>/<way to the canary>/TAIL`: the path that, followed,
    /// would reach `TAIL` in the canary.
    fn attack_path(&self, prefix: &str, tail: &str) -> String {
        if self.to_canary.is_empty() {
            format!("{prefix}{}/{tail}", self.name)
        } else {
            format!("{prefix}{}/{}/{tail}", self.name, self.to_canary)
        }
    }
}

fn links(outside: &Path) -> Vec<Link> {
    let outside_rel_to_fs_root = outside.strip_prefix("/").unwrap().display().to_string();
    vec![
        Link {
            name: "to_slash",
            target: "/".into(),
            to_canary: outside_rel_to_fs_root.clone(),
        },
        Link {
            name: "to_dotdots",
            target: "../../../../../../../../../../..".into(),
            to_canary: outside_rel_to_fs_root.clone(),
        },
        Link {
            name: "to_proc_root",
            target: "/proc/self/root".into(),
            to_canary: outside_rel_to_fs_root,
        },
        Link {
            name: "to_outside_abs",
            target: outside.display().to_string(),
            to_canary: String::new(),
        },
        // root/ and outside/ are siblings; from root/sub/ it is one more `..`.
        Link {
            name: "to_outside_rel",
            target: "../outside".into(),
            to_canary: String::new(),
        },
    ]
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        let root_dir = tmp.path().join("root");
        fs::create_dir_all(root_dir.join("sub")).unwrap();
        fs::write(root_dir.join("inside"), b"inside\n").unwrap();
        for link in links(&outside) {
            std::os::unix::fs::symlink(&link.target, root_dir.join(link.name)).unwrap();
            let deeper = if link.target.starts_with("../outside") {
                format!("../{}", link.target)
            } else {
                link.target.clone()
            };
            std::os::unix::fs::symlink(&deeper, root_dir.join("sub").join(link.name)).unwrap();
        }
        // Planted after the links so that its snapshot is the one to keep.
        let canary = Canary::plant(&outside);
        Self {
            _tmp: tmp,
            root_dir,
            canary,
        }
    }
}

/// Whether an operation follows (or needs) the entry its path names, so that
/// a symlink as the last component must be refused too.
#[derive(Clone, Copy, PartialEq)]
enum Leaf {
    /// The symlink at the end is an escape.
    Follows,
    /// The operation acts on the symlink itself (or fails because it exists).
    OnLink,
}

type Op = (&'static str, Leaf, fn(&Root, &Path) -> Result<(), Error>);

/// Every operation, with the attacked path in each path position.
fn operations() -> Vec<Op> {
    vec![
        ("create_dir", Leaf::OnLink, |r, p| r.create_dir(p, 0o777)),
        ("create_dir_all", Leaf::Follows, |r, p| {
            r.create_dir_all(p.join("new/deeper"), 0o777)
        }),
        ("create_dir_all(leaf)", Leaf::Follows, |r, p| {
            r.create_dir_all(p, 0o777)
        }),
        ("remove_file", Leaf::OnLink, |r, p| r.remove_file(p)),
        ("remove_dir", Leaf::OnLink, |r, p| r.remove_dir(p)),
        ("remove_dir_all", Leaf::OnLink, |r, p| r.remove_dir_all(p)),
        ("remove -rf", Leaf::OnLink, |r, p| {
            r.remove(p, RemoveOptions::new().recursive(true).force(true))
        }),
        ("rename(from)", Leaf::OnLink, |r, p| r.rename(p, "renamed")),
        ("rename(to)", Leaf::OnLink, |r, p| r.rename("inside", p)),
        ("rename_noreplace(from)", Leaf::OnLink, |r, p| {
            r.rename_noreplace(p, "renamed")
        }),
        ("rename_noreplace(to)", Leaf::OnLink, |r, p| {
            r.rename_noreplace("inside", p)
        }),
        ("rename_exchange(a)", Leaf::OnLink, |r, p| {
            r.rename_exchange(p, "inside")
        }),
        ("rename_exchange(b)", Leaf::OnLink, |r, p| {
            r.rename_exchange("inside", p)
        }),
        ("hard_link(original)", Leaf::OnLink, |r, p| {
            r.hard_link(p, "linked")
        }),
        ("hard_link(link)", Leaf::OnLink, |r, p| {
            r.hard_link("inside", p)
        }),
        ("symlink", Leaf::OnLink, |r, p| r.symlink("/etc/passwd", p)),
        ("read_link", Leaf::OnLink, |r, p| r.read_link(p).map(drop)),
        ("set_permissions", Leaf::Follows, |r, p| {
            r.set_permissions(p, 0o777)
        }),
        ("set_len", Leaf::Follows, |r, p| r.set_len(p, 0)),
        ("copy(from)", Leaf::Follows, |r, p| {
            r.copy(p, "copied").map(drop)
        }),
        ("copy(to)", Leaf::Follows, |r, p| {
            r.copy("inside", p).map(drop)
        }),
        ("set_times", Leaf::Follows, |r, p| {
            r.set_times(p, Some(UNIX_EPOCH), Some(UNIX_EPOCH))
        }),
        ("metadata", Leaf::Follows, |r, p| r.metadata(p).map(drop)),
        ("symlink_metadata", Leaf::OnLink, |r, p| {
            r.symlink_metadata(p).map(drop)
        }),
        ("read_dir", Leaf::Follows, |r, p| r.read_dir(p).map(drop)),
        ("open_dir", Leaf::Follows, |r, p| r.open_dir(p).map(drop)),
        ("chown", Leaf::Follows, |r, p| {
            r.chown(p, Some(65534), Some(65534))
        }),
        ("open_file(read)", Leaf::Follows, |r, p| {
            r.open_file(p, OpenOptions::new().read(true)).map(drop)
        }),
        ("open_file(write,truncate)", Leaf::Follows, |r, p| {
            r.open_file(p, OpenOptions::new().write(true).truncate(true))
                .map(drop)
        }),
        ("open_file(create)", Leaf::Follows, |r, p| {
            r.open_file(p, OpenOptions::new().write(true).create(true))
                .map(drop)
        }),
        ("open_file(create_new)", Leaf::OnLink, |r, p| {
            r.open_file(p, OpenOptions::new().write(true).create_new(true))
                .map(drop)
        }),
        ("write_atomic", Leaf::OnLink, |r, p| {
            r.write_atomic(p, b"pwned")
        }),
    ]
}

/// Names an attack path may end with: canary entries of every type.
const TAILS: &[&str] = &[
    "file", "dir", "dir/file", "link", "victim", "tree", "tree/a/b", "absent",
];

#[test]
fn symlinks_in_the_middle_are_refused_for_every_operation() {
    let mut cases = 0;
    for (name, _, op) in operations() {
        for prefix in ["", "sub/"] {
            let fx = Fixture::new();
            let root = Root::open(&fx.root_dir).unwrap();
            for link in links(fx.canary.path()) {
                for tail in TAILS {
                    let path = link.attack_path(prefix, tail);
                    let result = op(&root, Path::new(&path));
                    match &result {
                        Err(e) if e.kind() == ErrorKind::Escape => {}
                        other => panic!("{name} {path:?}: expected an escape error, got {other:?}"),
                    }
                    cases += 1;
                }
            }
            fx.canary
                .assert_untouched(&format!("{name} through {prefix}<link>/"));
        }
    }
    println!("{cases} intermediate-symlink attacks refused");
    assert!(cases > 2000);
}

#[test]
fn symlinks_at_the_end_are_refused_or_acted_on_themselves() {
    let mut refused = 0;
    for (name, leaf, op) in operations() {
        for prefix in ["", "sub/"] {
            for link in links(Path::new("/nonexistent")) {
                let fx = Fixture::new();
                let root = Root::open(&fx.root_dir).unwrap();
                let path = format!("{prefix}{}", link.name);
                let result = op(&root, Path::new(&path));
                fx.canary
                    .assert_untouched(&format!("{name} {path:?} -> {result:?}"));
                match (leaf, &result) {
                    (_, Err(e)) if e.kind() == ErrorKind::Escape => refused += 1,
                    (Leaf::Follows, other) => {
                        panic!("{name} {path:?}: expected an escape error, got {other:?}")
                    }
                    (Leaf::OnLink, _) => {}
                }
                // Whatever happened happened to the link: the fixture's own
                // file is the only thing an operation may have read or moved.
                assert!(fx.root_dir.join("sub").is_dir());
            }
        }
    }
    println!("{refused} last-component symlink attacks refused");
}

#[test]
fn follow_in_root_mode_scopes_every_link_to_the_root() {
    // With RESOLVE_IN_ROOT the same links are followed, but as if the root
    // were `/`: they can only reach inside it.
    let mut cases = 0;
    for (name, _, op) in operations() {
        let fx = Fixture::new();
        let root = Root::open_with(
            &fx.root_dir,
            RootOptions::new().follow_symlinks_in_root(true),
        )
        .unwrap();
        for link in links(fx.canary.path()) {
            for tail in TAILS {
                let path = link.attack_path("", tail);
                let _ = op(&root, Path::new(&path));
                cases += 1;
            }
        }
        fx.canary
            .assert_untouched(&format!("{name} in follow-in-root mode"));
    }
    println!("{cases} attacks in follow-in-root mode, canary untouched");
}

#[test]
fn magic_links_are_refused_even_in_follow_mode() {
    let fx = Fixture::new();
    let file = fs::File::open(fx.canary.path().join("file")).unwrap();
    let fd_link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    std::os::unix::fs::symlink(&fd_link, fx.root_dir.join("fdlink")).unwrap();
    for options in [
        RootOptions::new(),
        RootOptions::new().follow_symlinks_in_root(true),
    ] {
        let root = Root::open_with(&fx.root_dir, options).unwrap();
        for (name, leaf, op) in operations() {
            let result = op(&root, Path::new("fdlink"));
            if leaf == Leaf::Follows {
                // In follow mode the link is read as a path inside the root
                // (`root/proc/self/fd/N`, absent), or refused.
                assert!(result.is_err(), "{name}: {result:?}");
            }
        }
    }
    fx.canary.assert_untouched("magic links");
    // Control: the magic link does reach the canary when followed by std.
    assert_eq!(fs::read(&fd_link).unwrap(), b"canary file\n");
}

#[test]
fn control_the_canary_is_reachable_through_the_links() {
    // Without a Root, the same paths do reach the canary: the refusals above
    // are the library's doing, not a broken fixture.
    let fx = Fixture::new();
    for link in links(fx.canary.path()) {
        for prefix in ["", "sub/"] {
            let abs = fx.root_dir.join(link.attack_path(prefix, "file"));
            assert_eq!(
                fs::read(&abs).unwrap(),
                b"canary file\n",
                "{}",
                abs.display()
            );
        }
    }
}

#[test]
fn magic_links_in_a_mounted_proc_are_refused() {
    let file = fs::File::open("/proc/self/status").unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let magic = format!("proc/{}/fd/{fd}", std::process::id());
    // Control: followed by std, the magic link leads to the open file.
    assert!(fs::metadata(format!("/{magic}")).unwrap().is_file());
    for options in [
        RootOptions::new(),
        RootOptions::new().follow_symlinks_in_root(true),
    ] {
        let root = Root::open_with("/", options).unwrap();
        let e = root.metadata(&magic).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Escape, "{options:?}: {e}");
        let e = root
            .metadata(format!("proc/{}/root/etc", std::process::id()))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Escape, "{options:?}: {e}");
    }
}
