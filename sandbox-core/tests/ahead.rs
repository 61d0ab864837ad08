#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Run cgroups made ahead: from a process's second run on, the next run's
//! cgroups are made before it asks (a set of `sandbox-<pid>-<n>`
//! directories holding no process), taken by that run, and removed with
//! their `Sandbox`, or at exit by a process that never drops it. A binary
//! of its own: every run cgroup of this process is this test's. Needs
//! root, as in CI.
use std::path::{Path, PathBuf};

mod common;
use common::leaks::{reported_run_cgroups, run_cgroups_of, wait_for_set_made_ahead};
use common::*;

fn procs(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default()
}

const LIMITS: &str = "[resources]\npids = 32\nmemory = \"256MiB\"\n";

#[test]
#[ignore = "needs root"]
fn the_next_runs_cgroups_are_made_ahead_and_go_with_their_sandbox() {
    common::require_root();
    let me = std::process::id();
    let sb = sandbox(LIMITS);
    let per_run = reported_run_cgroups(&sb);
    if per_run == 0 {
        eprintln!("skipped: no per-run cgroup here: {}", sb.report());
        return;
    }
    // The first run makes its own and nothing ahead (a process of one run,
    // as the CLI, makes nothing it does not use).
    assert!(sh(&sb, "true").success());
    assert_eq!(
        run_cgroups_of(me),
        Vec::<PathBuf>::new(),
        "nothing made ahead"
    );
    assert!(sh(&sb, "true").success());
    let ahead = wait_for_set_made_ahead(per_run);
    // The third run takes that set: its PID 1 is in those directories.
    let mut child = sb.command("sleep").arg("30").spawn().unwrap();
    let init = child.id().to_string();
    for dir in &ahead {
        assert!(
            procs(dir).lines().any(|l| l == init),
            "{} holds the run's PID 1",
            dir.display()
        );
    }
    child.kill().unwrap();
    let _ = child.wait().unwrap();
    // Gone with the run; the fourth run's set is made meanwhile.
    assert!(ahead.iter().all(|d| !d.exists()), "the run's cgroups went");
    let next = wait_for_set_made_ahead(per_run);
    // Another sandbox's run does not take them: it makes its own, and they
    // stay.
    let other = sandbox("[resources]\npids = 16\n");
    assert!(sh(&other, "true").success());
    assert!(
        next.iter().all(|d| d.exists()),
        "another sandbox's set stays"
    );
    drop(other);
    drop(sb);
    assert_eq!(
        run_cgroups_of(me),
        Vec::<PathBuf>::new(),
        "removed with their Sandbox"
    );
}

#[test]
#[ignore = "needs root"]
fn cgroups_made_ahead_are_removed_at_exit() {
    common::require_root();
    if reported_run_cgroups(&sandbox(LIMITS)) == 0 {
        eprintln!("skipped: no per-run cgroup here");
        return;
    }
    use std::io::{BufRead, BufReader};
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "child_process::keeps_its_sandbox_until_exit",
            "--include-ignored",
            "--nocapture",
        ])
        .env("SANDBOX_CORE_AHEAD_CHILD", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The control: a set made ahead exists while the child lives.
    let held: usize = lines
        .find_map(|l| l.unwrap().strip_prefix("AHEAD ").map(str::to_string))
        .expect("the child made runs")
        .parse()
        .unwrap();
    assert!(held > 0, "the child holds a set made ahead");
    assert!(!run_cgroups_of(pid).is_empty());
    assert!(child.wait().unwrap().success());
    assert_eq!(
        run_cgroups_of(pid),
        Vec::<PathBuf>::new(),
        "removed when the process exited"
    );
}

mod child_process {
    use super::*;

    /// Run by `cgroups_made_ahead_are_removed_at_exit`: makes runs, says
    /// how many run cgroups it holds (the set made ahead), and exits with
    /// its `Sandbox` never dropped.
    #[test]
    #[ignore = "run by cgroups_made_ahead_are_removed_at_exit in a child process"]
    fn keeps_its_sandbox_until_exit() {
        if std::env::var_os("SANDBOX_CORE_AHEAD_CHILD").is_none() {
            return;
        }
        let sb = sandbox(LIMITS);
        for _ in 0..3 {
            assert!(sh(&sb, "true").success());
        }
        let held = wait_for_set_made_ahead(reported_run_cgroups(&sb));
        println!("AHEAD {}", held.len());
        std::mem::forget(sb);
    }
}
