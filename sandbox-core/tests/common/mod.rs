//! Helpers shared by the sandbox test binaries.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub(crate) mod fs;
pub(crate) mod pty;
pub(crate) mod threads;

#[allow(unused_imports)] // not every test binary makes whiteouts
pub(crate) use fs::tempdir_off_overlayfs;
use sandbox_core::{RunOutcome, Sandbox};
use sandbox_policy::Policy;

pub(crate) fn sandbox(toml: &str) -> Sandbox {
    Sandbox::new(Policy::from_toml_str(toml).unwrap()).unwrap()
}

/// A sandbox decided against this host with `/dev/net/tun` unusable (as on
/// hosts where it is root's only and the caller is not).
pub(crate) fn sandbox_without_tun(toml: &str) -> Sandbox {
    let mut host = sandbox_core::probe().clone();
    host.tun = sandbox_core::Capability::Unavailable {
        reason: "open /dev/net/tun: Permission denied (as on a host without tun)".into(),
    };
    Sandbox::with_host(Policy::from_toml_str(toml).unwrap(), &host).unwrap()
}

/// A sandbox decided against this host with tmpfs unable to hold an
/// overlay upper's `user.*` attributes (as before Linux 6.6).
pub(crate) fn sandbox_without_tmpfs_upper(toml: &str) -> Sandbox {
    let mut host = sandbox_core::probe().clone();
    host.overlay_tmpfs_upper = sandbox_core::Capability::Unavailable {
        reason: "setxattr user.* on a tmpfs in a user namespace: Operation not supported (as before 6.6)".into(),
    };
    Sandbox::with_host(Policy::from_toml_str(toml).unwrap(), &host).unwrap()
}

/// One run and one spawn, so that what is made once per process (the
/// probe, the seccomp program, the shared supervisor's threads and wake
/// pipe) exists before a test counts what runs hold.
pub(crate) fn warm_up(sandbox: &Sandbox) {
    assert!(sh(sandbox, "true").success());
    let mut child = sandbox.command("true").spawn().unwrap();
    assert!(child.wait().unwrap().success());
}

pub(crate) fn sh(sandbox: &Sandbox, script: &str) -> RunOutcome {
    sandbox.command("sh").args(["-c", script]).output().unwrap()
}

pub(crate) fn stdout(outcome: &RunOutcome) -> String {
    String::from_utf8_lossy(&outcome.stdout).into_owned()
}

pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Fails the test where it is not root: a root-only test is
/// `#[ignore = "needs root"]`, and run with `--include-ignored` as root.
pub(crate) fn require_root() {
    assert!(
        is_root(),
        "needs root: run as root with --include-ignored, as CI does"
    );
}

pub(crate) fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .trim()
        .to_string()
}

/// The pids of processes whose command line contains `marker`.
pub(crate) fn pids_with(marker: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

pub(crate) fn processes_with(marker: &str) -> usize {
    pids_with(marker).len()
}

/// [`processes_with`] once it is `expected`, or what it is after 2 s: a
/// process shows its new command line a moment after its exec has let the
/// spawn return (the kernel sets it once the old address space is gone,
/// which is what wakes a vfork parent).
pub(crate) fn processes_with_soon(marker: &str, expected: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let n = processes_with(marker);
        if n == expected || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
pub(crate) mod leaks;
pub(crate) mod world;
