//! The checks that only mean something without root's DAC override, run as
//! `nobody` in a child process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, UNIX_EPOCH};

use common::{errno, run_child_test, setup};
use openat2_root::{OpenOptions, Root};

/// Helpers run in a child process by the test that names them; each
/// returns at once when run any other way (CI skips `child_process::`).
mod child_process {
    use super::*;

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
        t.chmod("f", 0o000);
        // No read or write access is needed to change the mode of one's own file.
        t.root.set_permissions("f", 0o600).unwrap();
        assert_eq!((t.mode("f") & 0o777), 0o600);
        t.chmod("f", 0o000);
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
        t.chmod("locked", 0o000);
        assert_eq!(
            errno(&t.root.metadata("locked/inner").unwrap_err()),
            libc::EACCES
        );
        t.root.set_permissions("locked", 0o700).unwrap();
        t.root.remove_dir_all("locked").unwrap();
        t.root.remove_file("f").unwrap();
        println!("UNPRIVILEGED-CHECKS-PASSED");
    }
}

#[test]
fn unprivileged_paths() {
    use std::os::unix::process::CommandExt;
    if !rustix::process::geteuid().is_root() {
        // Already unprivileged: run the checks in a child all the same.
        run_child_test(
            &std::env::current_exe().unwrap(),
            "child_process::as_unprivileged_user",
            "OPENAT2_ROOT_UNPRIVILEGED_CHILD",
            "UNPRIVILEGED-CHECKS-PASSED",
            |_| {},
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
    run_child_test(
        &exe,
        "child_process::as_unprivileged_user",
        "OPENAT2_ROOT_UNPRIVILEGED_CHILD",
        "UNPRIVILEGED-CHECKS-PASSED",
        |cmd| {
            // std also drops supplementary groups when root sets a uid.
            cmd.env("TMPDIR", "/tmp")
                .current_dir("/")
                .uid(65534)
                .gid(65534);
        },
    );
}
