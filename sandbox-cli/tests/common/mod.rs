//! Helpers shared by sbx's test binaries.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::{Command, Output, Stdio};

/// Fails the test where it is not root: a root-only test is
/// `#[ignore = "needs root"]`, and run with `--include-ignored` as root.
pub(crate) fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root: run as root with --include-ignored, as CI does"
    );
}

pub(crate) fn sbx(args: &[&str]) -> Output {
    // As a supervisor using the library would, this process places itself
    // first: on a cgroup v2 host where it is alone in a leaf, it moves into
    // `<leaf>/supervisor`, and the sbx it starts finds the delegated parent.
    sandbox_core::probe();
    Command::new(env!("CARGO_BIN_EXE_sbx"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
