#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `SandboxCommand::spawn_async` (sandbox-core's `tokio` feature): output
//! as it comes through the runtime's reactor, input, the outcome, kills on
//! drop and on cancellation, many at once without a thread each. Needs
//! root, as in CI.

use std::time::{Duration, Instant};

use sandbox_core::{ExitStatus, Sandbox, Stdio};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root: run as root with --include-ignored, as CI does"
    );
}

/// The tests of this binary one at a time: a run in setup has a thread of
/// its own for a moment (a root caller's, see `spawn_init`), named after
/// the spawner that made it until it names itself, which the thread count
/// of `a_hundred_at_once_cost_no_thread_each` would see.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[path = "../../sandbox-core/tests/common/threads.rs"]
mod threads;
use threads::{assert_shared_threads, sandbox_threads};

/// Whether a process with `marker` on its command line is alive.
fn alive(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(marker))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn output_input_and_the_outcome_on_the_runtime() {
    require_root();
    let _serial = SERIAL.lock().await;
    let sandbox = Sandbox::from_profile("default").unwrap();
    let mut child = sandbox
        .command("sh")
        .args([
            "-c",
            "echo ready; read line; echo got:$line; echo err >&2; sleep 1; echo late",
        ])
        .stdin(Stdio::Piped)
        .spawn_async()
        .await
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "ready");
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"hello\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "got:hello");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "before the sleep ends"
    );
    assert!(child.try_wait().unwrap().is_none(), "still running");
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "late");
    let out = child.wait().await.unwrap();
    assert!(out.success());
    assert_eq!(out.stderr, b"err\n", "the stderr nobody took");
    assert_eq!(child.wait().await.unwrap().status, out.status, "again");

    // output(): everything captured.
    let out = sandbox
        .command("sh")
        .args(["-c", "echo out; exit 4"])
        .spawn_async()
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Exited(4));
    assert_eq!(out.stdout, b"out\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn dropping_or_cancelling_kills_the_sandbox() {
    require_root();
    let _serial = SERIAL.lock().await;
    let sandbox = Sandbox::from_profile("default").unwrap();
    let child = sandbox
        .command("sleep")
        .arg("7341.5")
        .spawn_async()
        .await
        .unwrap();
    // (Its new command line shows a moment after its exec let the spawn
    // return.)
    let deadline = Instant::now() + Duration::from_secs(2);
    while !alive("7341.5") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(alive("7341.5"), "control: it runs");
    drop(child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive("7341.5") {
        assert!(Instant::now() < deadline, "dropping the child killed it");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A wait cancelled by a timeout loses nothing: waited again, it ends.
    let mut child = sandbox
        .command("sh")
        .args(["-c", "echo partial; sleep 1; echo rest"])
        .spawn_async()
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), child.wait())
            .await
            .is_err()
    );
    let out = child.wait().await.unwrap();
    assert_eq!(out.stdout, b"partial\nrest\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn a_hundred_at_once_cost_no_thread_each() {
    require_root();
    let _serial = SERIAL.lock().await;
    let sandbox = Sandbox::from_profile("default").unwrap();
    // (Two runs: the second starts the network namespace pool's thread.)
    for _ in 0..2 {
        sandbox
            .command("true")
            .spawn_async()
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
    }
    let before = sandbox_threads();
    let mut children = Vec::new();
    for i in 0..100 {
        let child = sandbox
            .command("sh")
            .args(["-c", &format!("sleep 1; echo {i}")])
            .spawn_async()
            .await
            .unwrap();
        children.push(child);
    }
    assert_eq!(sandbox_threads(), before, "100 running, no thread each");
    assert_shared_threads(before);
    for (i, child) in children.into_iter().enumerate() {
        let out = child.output().await.unwrap();
        assert_eq!(out.stdout, format!("{i}\n").as_bytes());
    }
}
