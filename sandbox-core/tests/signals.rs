#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Signals to the command (PID 1 passes them on to its process group) and
//! job control (a stopped command is reported, and continued). Needs root,
//! as in CI.
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use sandbox_core::{Error, ExitStatus, JobControl, Sandbox};

mod common;

#[test]
#[ignore = "needs root"]
fn a_signal_reaches_the_command_and_others_are_refused() {
    common::require_root();
    let sandbox = Sandbox::from_profile("default").unwrap();
    let mut child = sandbox
        .command("sh")
        .args([
            "-c",
            "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "control: it runs until signalled"
    );
    child.signal(libc::SIGTERM).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "got-term");
    assert_eq!(child.wait().unwrap().status, ExitStatus::Exited(7));
    // Only the signals PID 1 passes on.
    assert!(matches!(
        child.signal(libc::SIGSEGV),
        Err(Error::InvalidCommand { .. })
    ));
}

#[test]
#[ignore = "needs root"]
fn a_stopped_command_is_reported_and_continued() {
    common::require_root();
    let sandbox = Sandbox::from_profile("default").unwrap();
    let (tx, rx) = mpsc::channel();
    let mut child = sandbox
        .command("sh")
        .args(["-c", "echo ready; kill -STOP $$; echo resumed"])
        .on_job_control(move |event| {
            let _ = tx.send(event);
        })
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        JobControl::Stopped(libc::SIGSTOP)
    );
    // Control: stopped, it stays so (no output, no end).
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none());
    child.signal(libc::SIGCONT).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        JobControl::Continued
    );
    assert_eq!(lines.next().unwrap().unwrap(), "resumed");
    assert!(child.wait().unwrap().success());
}
