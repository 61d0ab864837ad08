#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Many sandboxes at once, then the error paths in a loop (refused before
//! the clone, a missing program, a failing step in the child, wall-time
//! kills, caller kills, dropped children), and what they leave behind:
//! nothing. A binary of its own, so that no other test's runs are counted
//! as leaks. Needs root, as in CI.

mod common;
use common::*;

#[test]
#[ignore = "needs root"]
fn two_hundred_sandboxes_at_once_leave_nothing_behind() {
    common::require_root();
    // A wall time far above the default's 30 s: this counts leaks, and
    // 200 runs at once under emulation (the kernel matrix) queue for the
    // CPU longer than that.
    let sb = sandbox("[resources]\npids = 32\nmemory = \"64MiB\"\nwall_time = \"300s\"\n");
    // A first run, and a first spawn, so that what is made once per
    // process (the probe, the seccomp program, the shared supervisor's
    // threads and wake pipe) is not counted as a leak.
    warm_up(&sb);
    // As many run cgroups as the report says this host gives a run.
    let reported = common::leaks::reported_run_cgroups(&sb);
    assert!(reported >= 1, "{}", sb.report());
    // From the second run on, the next run's cgroups are made ahead: one
    // set, empty, belonging to `sb` (and counted while it lives).
    common::leaks::wait_for_set_made_ahead(reported);
    let before = common::leaks::held();
    // Control: a run in progress shows in every count but threads'. (It
    // took the set made ahead; the next is made meanwhile.)
    let mut running = sb.command("sleep").arg("30").spawn().unwrap();
    common::leaks::wait_for_set_made_ahead(reported);
    let during = common::leaks::held();
    running.kill().unwrap();
    running.wait().unwrap();
    assert!(
        during.cgroups == before.cgroups + reported
            && during.children >= 1
            && during.fds > before.fds,
        "the counts see a run ({reported} cgroups reported): {during:?} against {before:?}\n{}",
        sb.report()
    );
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let sb = sb.clone();
            std::thread::spawn(move || {
                sb.command("sh")
                    .args([
                        "-c",
                        &format!("echo {i} $$; cat /proc/self/uid_map | wc -l"),
                    ])
                    .output()
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let out = h.join().unwrap().unwrap();
        assert!(out.success(), "run {i}: {out:?}");
        // The shell is PID 2 of its own pid namespace (PID 1 is the reaper).
        assert_eq!(stdout(&out), format!("{i} 2\n2\n"));
    }
    let after = common::leaks::settled(&before);
    assert_eq!(after, before, "fds, run cgroups, mounts, children, threads");

    // The error paths, in a loop: each must release what it took.
    let missing_source =
        sandbox("[filesystem]\nbinds = [{ source = \"/nonexistent/source\", target = \"/x\" }]\n");
    let bad_target = sandbox(
        "[filesystem]\nbinds = [{ source = \"/etc/hostname\", target = \"/proc/sys/x/y\" }]\n",
    );
    let quick = sandbox("[resources]\nwall_time = \"100ms\"\npids = 8\n");
    for _ in 0..25 {
        // Refused in the parent, before the clone.
        assert!(missing_source.command("true").output().is_err());
        // A missing program.
        assert!(sb.command("/nonexistent/program").output().is_err());
        // A step failing in the child (a mount target that cannot be made).
        assert!(bad_target.command("true").output().is_err());
        // Killed at the wall-time limit.
        assert!(quick.command("sleep").arg("5").output().unwrap().timed_out);
        // Killed by the caller.
        let mut child = sb.command("sleep").arg("5").spawn().unwrap();
        child.kill().unwrap();
        assert!(!child.wait().unwrap().success());
        // Dropped without a wait (like std's Child, that does not end it:
        // its supervisor finishes the run when the command ends).
        drop(sb.command("sleep").arg("0.2").spawn().unwrap());
    }
    // The other sandboxes' sets made ahead go with them.
    drop((missing_source, bad_target, quick));
    let after_errors = common::leaks::settled(&before);
    assert_eq!(
        after_errors, before,
        "after 150 failing, killed or dropped runs"
    );
}
