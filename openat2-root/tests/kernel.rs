//! Behaviour that depends on kernel facilities, tested against the real
//! kernel: mounts inside a tree, the fd limit, and a kernel or seccomp
//! filter without `openat2`. Process-wide changes happen in a thread of
//! their own (mount namespace, seccomp filter) or in a child process
//! (rlimit).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure
#![allow(unsafe_code)] // seccomp and unshare for the tests below; each block says why it is sound

use std::fs;
use std::path::Path;

mod common;

use common::run_child_test;
use openat2_root::{Error, ErrorKind, Root};

/// Fails the test where it is not root: a root-only test is
/// `#[ignore = "needs root"]`, and run with `--include-ignored` as root.
fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root: run as root with --include-ignored, as CI does"
    );
}

#[test]
#[ignore = "needs root"]
fn remove_dir_all_never_crosses_a_mount() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir_all(tree.join("sub/mnt")).unwrap();
    fs::write(tree.join("sub/file"), b"x").unwrap();
    let tree_for_thread = tree.clone();
    // A thread of its own, in a mount namespace of its own: the mount is
    // seen by this thread only and disappears with it.
    in_private_mount_ns(move || {
        let tree = tree_for_thread;
        tmpfs_at(&tree.join("sub/mnt"), None);
        fs::write(tree.join("sub/mnt/on-the-mount"), b"keep me").unwrap();

        let root = Root::open(tree.parent().unwrap()).unwrap();
        let e = root.remove_dir_all("tree").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Escape, "{e}");
        assert_eq!(
            fs::read(tree.join("sub/mnt/on-the-mount")).unwrap(),
            b"keep me"
        );
        // Control: with the mount gone, the same call removes the tree.
        rustix::mount::unmount(
            tree.join("sub/mnt").as_path(),
            rustix::mount::UnmountFlags::empty(),
        )
        .unwrap();
        root.remove_dir_all("tree").unwrap();
        assert!(!tree.exists());
    });
}

/// Runs `f` in a thread of its own, in a mount namespace of its own where
/// every mount is private: what it mounts is seen by that thread only and
/// disappears with it.
fn in_private_mount_ns(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        // SAFETY: CLONE_NEWNS (which implies CLONE_FS) changes only this
        // thread's mount namespace and fs context; no fd table is unshared,
        // so no thread can observe fds of another table.
        unsafe {
            rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS).unwrap();
        }
        rustix::mount::mount_change(
            "/",
            rustix::mount::MountPropagationFlags::REC
                | rustix::mount::MountPropagationFlags::PRIVATE,
        )
        .unwrap();
        f();
    })
    .join()
    .unwrap();
}

/// Mounts a tmpfs at `dir` with `options` (in the caller's mount namespace:
/// call it inside [`in_private_mount_ns`]).
fn tmpfs_at(dir: &Path, options: Option<&std::ffi::CStr>) {
    rustix::mount::mount(
        "tmpfs",
        dir,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        options,
    )
    .unwrap();
}

/// A filesystem that fills up while `write_atomic` writes: the error names
/// the step (`Step::Write`, `ENOSPC`), the old file is untouched and
/// nothing is left behind; control: the same call with data that fits.
#[test]
#[ignore = "needs root"]
fn write_atomic_on_a_full_filesystem_names_the_step() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    in_private_mount_ns(move || {
        tmpfs_at(&dir, Some(c"size=64k"));
        let root = Root::open(&dir).unwrap();
        root.write_atomic("f", b"old").unwrap();
        let e = root.write_atomic("f", vec![7u8; 1 << 20]).unwrap_err();
        assert_eq!(e.step(), Some(openat2_root::Step::Write), "{e}");
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
        assert!(e.to_string().contains("writing the contents"), "{e}");
        assert_eq!(fs::read(dir.join("f")).unwrap(), b"old");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f"], "nothing left behind");
        // Control: what fits is written.
        root.write_atomic("f", vec![7u8; 16 << 10]).unwrap();
        assert_eq!(fs::metadata(dir.join("f")).unwrap().len(), 16 << 10);
    });
}

/// `require_own_mount`: a bind mount of the directory on itself is
/// accepted, and then a rename out of it through its path is `EXDEV`;
/// the plain directory is refused; a root opened beneath it does not
/// keep the option. Control: before the bind mount, the same rename
/// moves the directory out.
#[test]
#[ignore = "needs root"]
fn require_own_mount_wants_a_mount_and_stops_moves_out() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().to_path_buf();
    in_private_mount_ns(move || {
        let (dir, outside) = (base.join("root"), base.join("outside"));
        fs::create_dir_all(dir.join("a/b")).unwrap();
        fs::create_dir(&outside).unwrap();
        let own = openat2_root::RootOptions::new().require_own_mount(true);
        let e = Root::open_with(&dir, own).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("mount --bind"), "{e}");
        // Control: a plain directory lets a directory move out, and back.
        fs::rename(dir.join("a"), outside.join("a")).unwrap();
        fs::rename(outside.join("a"), dir.join("a")).unwrap();
        rustix::mount::mount_bind(dir.as_path(), dir.as_path()).unwrap();
        let root = Root::open_with(&dir, own).unwrap();
        assert_eq!(root.options(), own);
        let e = fs::rename(dir.join("a"), outside.join("a")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EXDEV), "{e}");
        root.create_dir("a/b/still-inside", 0o755).unwrap();
        assert!(dir.join("a/b/still-inside").is_dir());
        let below = root.open_dir("a").unwrap();
        assert_eq!(below.options(), openat2_root::RootOptions::new());
    });
}

/// Helpers run in a child process by the test that names them; each
/// returns at once when run any other way (CI skips `child_process::`).
mod child_process {
    use super::*;

    /// Run by `remove_dir_all_deeper_than_the_fd_limit` in a child process
    /// whose fd limit is 48; ignored when run directly.
    #[test]
    #[ignore = "run by remove_dir_all_deeper_than_the_fd_limit in a child process"]
    fn deep_tree_with_few_fds() {
        if std::env::var_os("OPENAT2_ROOT_FD_LIMIT_CHILD").is_none() {
            return;
        }
        use rustix::process::{Resource, Rlimit, setrlimit};
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::open(tmp.path()).unwrap();
        // 400 levels, each created beneath the last one's fd.
        let mut dir = root.try_clone().unwrap();
        for i in 0..400 {
            dir.create_dir("d", 0o755).unwrap();
            if i % 50 == 0 {
                dir.write_atomic(format!("d/f{i}"), b"x").unwrap();
            }
            dir = dir.open_dir("d").unwrap();
        }
        drop(dir);
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(48),
                maximum: Some(48),
            },
        )
        .unwrap();
        // Control: the limit is real.
        let held: Vec<_> = (0..64)
            .map_while(|_| fs::File::open("/dev/null").ok())
            .collect();
        assert!(held.len() < 48, "the fd limit is not in force");
        drop(held);
        root.remove_dir_all("d").unwrap();
        assert_eq!(root.metadata("d").unwrap_err().kind(), ErrorKind::NotFound);
        println!("DEEP-TREE-REMOVED");
    }
}

#[test]
fn remove_dir_all_deeper_than_the_fd_limit() {
    run_child_test(
        &std::env::current_exe().unwrap(),
        "child_process::deep_tree_with_few_fds",
        "OPENAT2_ROOT_FD_LIMIT_CHILD",
        "DEEP-TREE-REMOVED",
        |_| {},
    );
}

/// Runs `f` in a thread whose seccomp filter makes `openat2` fail with
/// `errno`, as on an old kernel (`ENOSYS`) or under a container runtime's
/// filter (`EPERM`).
fn without_openat2<T: Send + 'static>(errno: i32, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        const RET_ERRNO: u32 = 0x0005_0000;
        const RET_ALLOW: u32 = 0x7fff_0000;
        let filter = [
            // A = seccomp_data.nr
            libc::sock_filter {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 0,
            },
            // if A == openat2: return ERRNO(errno), else: allow
            libc::sock_filter {
                code: 0x15,
                jt: 0,
                jf: 1,
                k: libc::SYS_openat2 as u32,
            },
            libc::sock_filter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: RET_ERRNO | errno as u32,
            },
            libc::sock_filter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: RET_ALLOW,
            },
        ];
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
        };
        rustix::thread::set_no_new_privs(true).unwrap();
        // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER, 0, &prog) reads the
        // program, which lives on this stack for the call. Without
        // SECCOMP_FILTER_FLAG_TSYNC it applies to this thread only, which
        // ends when `f` returns.
        let rc =
            unsafe { libc::syscall(libc::SYS_seccomp, 1, 0, &prog as *const libc::sock_fprog) };
        assert_eq!(rc, 0, "seccomp: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

fn assert_not_supported(errno: i32) {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("a/b")).unwrap();
    let root = Root::open(tmp.path()).unwrap();
    // Control: it works with openat2 available.
    assert!(root.metadata("a/b").unwrap().is_dir());
    let base = tmp.path().to_path_buf();
    let results = without_openat2(errno, move || {
        vec![
            root.metadata("a/b").map(drop),
            root.create_dir("a/b/c", 0o755),
            root.remove_dir("a/b"),
            root.write_atomic("a/b/f", b"x"),
            root.set_permissions("a", 0o700),
        ]
    });
    for result in results {
        match result {
            Err(e @ Error::NotSupported { .. }) => {
                assert!(e.to_string().contains("openat2"), "{e}");
                assert_eq!(e.kind(), ErrorKind::NotSupported);
            }
            other => panic!("expected NotSupported, got {other:?}"),
        }
    }
    // No fallback to string paths happened: nothing changed.
    assert!(!base.join("a/b/c").exists() && !base.join("a/b/f").exists());
    assert!(Path::new(&base.join("a/b")).is_dir());
}

#[test]
fn a_kernel_without_openat2_is_not_supported() {
    assert_not_supported(libc::ENOSYS);
}

#[test]
fn openat2_refused_by_seccomp_is_not_supported() {
    assert_not_supported(libc::EPERM);
}
