//! Helpers shared by sbx's test binaries.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::{Command, Output, Stdio};

#[path = "../../../sandbox-core/tests/common/fs.rs"]
mod fs;
#[allow(unused_imports)] // not every test binary makes whiteouts
pub(crate) use fs::tempdir_off_overlayfs;

/// Fails the test where it is not root: a root-only test is
/// `#[ignore = "needs root"]`, and run with `--include-ignored` as root.
pub(crate) fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root: run as root with --include-ignored, as CI does"
    );
}

pub(crate) fn sbx(args: &[&str]) -> Output {
    sbx_command()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `sbx`, with its probe cache in the test's target directory (not the
/// host's `/run/sbx`).
pub(crate) fn sbx_command() -> Command {
    // As a supervisor using the library would, this process places itself
    // first: on a cgroup v2 host where it is alone in a leaf, it moves into
    // `<leaf>/supervisor`, and the sbx it starts finds the delegated parent.
    sandbox_core::probe();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sbx"));
    cmd.env("SBX_PROBE_CACHE", probe_cache_dir());
    cmd
}

/// A directory of this test process's own for sbx's probe cache (a
/// read-only target directory, as in the VM matrix, leaves sbx without a
/// cache: it probes).
pub(crate) fn probe_cache_dir() -> std::path::PathBuf {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sbx-probe-cache-{}", std::process::id()));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    dir
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
