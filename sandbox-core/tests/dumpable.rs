#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The caller's dumpable flag after overlapping runs (a binary of its own:
//! a run of another test in flight would clear the flag meanwhile).

mod common;
use common::*;

use sandbox_core::Sandbox;

/// A root caller's runs each change the spawning thread's effective uid
/// for the clone, which makes the whole process non-dumpable meanwhile:
/// runs overlapping from many threads leave the caller as dumpable as it
/// was (the last to finish puts the flag back, not one that saw another's
/// change).
#[test]
#[ignore = "needs root"]
fn overlapping_runs_leave_the_caller_dumpable() {
    common::require_root();
    let dumpable = || rustix::process::dumpable_behavior().unwrap();
    assert_eq!(dumpable(), rustix::process::DumpableBehavior::Dumpable);
    let sandbox = Sandbox::from_profile("default").unwrap();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..10 {
                    assert!(sh(&sandbox, "true").success());
                }
            });
        }
    });
    assert_eq!(dumpable(), rustix::process::DumpableBehavior::Dumpable);
}
