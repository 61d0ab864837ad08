//! Helpers shared by the per-operation test files.
#![allow(dead_code)] // each test file uses a different subset

use std::fs;
use std::path::PathBuf;

use openat2_root::{Error, Root};

pub(crate) struct T {
    _dir: tempfile::TempDir,
    pub(crate) path: PathBuf,
    pub(crate) root: Root,
}

pub(crate) fn setup() -> T {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let root = Root::open(&path).unwrap();
    T {
        _dir: dir,
        path,
        root,
    }
}

impl T {
    pub(crate) fn p(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
    pub(crate) fn file(&self, rel: &str, contents: &str) {
        fs::write(self.p(rel), contents).unwrap();
    }
    pub(crate) fn dir(&self, rel: &str) {
        fs::create_dir_all(self.p(rel)).unwrap();
    }
    pub(crate) fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.p(rel)).unwrap()
    }
    /// The permission bits of `rel` (not following a final symlink is not
    /// needed: the tests ask about files and directories).
    pub(crate) fn mode(&self, rel: &str) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(self.p(rel)).unwrap().permissions().mode() & 0o7777
    }
    /// Sets the permission bits of `rel` with std.
    pub(crate) fn chmod(&self, rel: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(self.p(rel), fs::Permissions::from_mode(mode)).unwrap();
    }
    pub(crate) fn exists(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.p(rel)).is_ok()
    }
}

pub(crate) fn errno(e: &Error) -> i32 {
    e.raw_os_error()
        .unwrap_or_else(|| panic!("no errno in {e}"))
}

pub(crate) fn umask_applied(mode: u32) -> u32 {
    // Read, not set: setting the umask would race with the other tests.
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    let umask = u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap();
    mode & !umask
}

/// Runs the ignored test `test` of this test binary in a child process,
/// with `env_var` set so that it does its work, after `configure` (uid,
/// working directory…), and asserts it succeeded and printed `marker`.
pub(crate) fn run_child_test(
    exe: &std::path::Path,
    test: &str,
    env_var: &str,
    marker: &str,
    configure: impl FnOnce(&mut std::process::Command),
) {
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--exact",
        test,
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(env_var, "1");
    configure(&mut cmd);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(marker),
        "{test} in a child process:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
