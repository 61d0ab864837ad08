#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Many sandboxes at once, and what they leave behind: nothing. A binary
//! of its own, so that no other test's runs are counted as leaks. Needs
//! root, as in CI.

mod common;
use common::*;

#[test]
fn two_hundred_sandboxes_at_once_leave_nothing_behind() {
    require_root!();
    let sb = sandbox("[resources]\npids = 32\nmemory = \"64MiB\"\n");
    // A first run, so that what is made once per process (the probe, the
    // seccomp program) is not counted as a leak.
    assert!(sh(&sb, "true").success());
    let before = common::leaks::held();
    // Control: a run in progress shows in every count but threads'.
    let running = sb.command("sleep").arg("30").spawn().unwrap();
    let during = common::leaks::held();
    running.kill().unwrap();
    running.wait().unwrap();
    assert!(
        during.cgroups >= 2 && during.children >= 1 && during.fds > before.fds,
        "the counts see a run: {during:?} against {before:?}"
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
}
