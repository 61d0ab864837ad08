#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A command's stdin, stdout and stderr: output as it comes (readers of a
//! spawned child, the caller's own streams and files), capped; a reader
//! that goes away gives the command EPIPE; what nobody read is collected;
//! and no fd of the caller's enters the sandbox (terminals: `terminal.rs`).
//! Needs root, as in CI.
use std::io::{BufRead, BufReader, Read, Seek};
use std::time::{Duration, Instant};

use sandbox_core::{ExitStatus, Sandbox, Stdio};

mod common;
use common::threads::{assert_shared_threads, sandbox_threads};
use common::*;

/// The tests of this binary one at a time: a spawned run in setup has a
/// thread of its own for a moment (a root caller's, see `spawn_init`),
/// named after the spawner that made it until it names itself, which the
/// thread count below would see.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn default() -> Sandbox {
    Sandbox::from_profile("default").unwrap()
}

#[test]
#[ignore = "needs root"]
fn a_spawned_childs_output_comes_as_it_is_written() {
    common::require_root();
    let _serial = serial();
    let mut child = default()
        .command("sh")
        .args(["-c", "echo one; echo err >&2; sleep 2; echo two"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = Instant::now();
    assert_eq!(lines.next().unwrap().unwrap(), "one");
    // The first line came while the command still runs (it sleeps 2 s
    // before the second): nothing was held back until the end.
    assert!(child.try_wait().unwrap().is_none());
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(lines.next().unwrap().unwrap(), "two");
    assert!(
        lines.next().is_none(),
        "EOF once the command's stdout closed"
    );
    let out = child.wait().unwrap();
    assert!(out.success());
    assert!(out.stdout.is_empty(), "the caller read stdout itself");
    assert_eq!(out.stderr, b"err\n", "the stderr left in the child");
}

#[test]
#[ignore = "needs root"]
fn a_reader_gets_at_most_the_cap_and_one_dropped_gives_the_command_epipe() {
    common::require_root();
    let _serial = serial();
    let sb = sandbox("[resources]\nmax_output_bytes = 1000\n");
    let mut child = sh_spawn(&sb, "head -c 100000 /dev/zero; echo done >&2");
    let mut got = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 1000);
    let out = child.wait().unwrap();
    assert!(out.success(), "the rest was drained: the writer finished");
    assert!(out.stdout_truncated);
    assert_eq!(out.stderr, b"done\n");
    assert!(!out.stderr_truncated);

    // A reader dropped: the command learns it as from a pipe of its own.
    let mut yes = default().command("yes").spawn().unwrap();
    drop(yes.stdout.take());
    let out = yes.wait().unwrap();
    assert_eq!(out.status, ExitStatus::Signaled(libc::SIGPIPE));
    assert!(out.stdout_truncated);
}

fn sh_spawn(sb: &Sandbox, script: &str) -> sandbox_core::SandboxChild {
    sb.command("sh").args(["-c", script]).spawn().unwrap()
}

#[test]
#[ignore = "needs root"]
fn output_nobody_took_is_collected_by_try_wait_and_wait() {
    common::require_root();
    let _serial = serial();
    let sb = sandbox("[resources]\nmax_output_bytes = \"8MiB\"\n");
    // More than the pipe and socket buffers hold: the command would wait
    // for room for ever if try_wait did not read.
    let mut child = sh_spawn(
        &sb,
        "head -c 3000000 /dev/zero; head -c 500000 /dev/zero >&2",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = loop {
        if let Some(out) = child.try_wait().unwrap() {
            break out;
        }
        assert!(Instant::now() < deadline, "the command never finished");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(out.success());
    assert_eq!(out.stdout.len(), 3_000_000);
    assert_eq!(out.stderr.len(), 500_000);
}

#[test]
#[ignore = "needs root"]
fn the_callers_files_are_relayed_and_never_enter_the_sandbox() {
    common::require_root();
    let _serial = serial();
    let mut input = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut input, b"from the caller's file\n").unwrap();
    input.rewind().unwrap();
    let mut output = tempfile::tempfile().unwrap();
    let out = default()
        .command("sh")
        .args(["-c", "readlink /proc/self/fd/0 /proc/self/fd/1; cat"])
        .stdin(Stdio::from(input))
        .stdout(Stdio::from(output.try_clone().unwrap()))
        .status()
        .unwrap();
    assert!(out.success());
    assert!(out.stdout.is_empty(), "relayed, not captured");
    output.rewind().unwrap();
    let mut text = String::new();
    output.read_to_string(&mut text).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("pipe:") && lines[1].starts_with("pipe:"),
        "{text}"
    );
    assert_eq!(lines[2], "from the caller's file");
}

/// Spawned sandboxes share one supervisor: no thread each; and a sandbox
/// outlives the thread that spawned it (its parent-death signal is tied to
/// a spawner thread that never ends, not to the caller's).
#[test]
#[ignore = "needs root"]
fn spawned_sandboxes_cost_no_thread_and_outlive_the_spawning_thread() {
    common::require_root();
    let _serial = serial();
    let sb = default();
    warm_up(&sb);
    let before = sandbox_threads();
    let mut children: Vec<_> = (0..40)
        .map(|_| sb.command("sleep").arg("1").spawn().unwrap())
        .collect();
    let during = sandbox_threads();
    assert_eq!(
        during, before,
        "sandbox threads with 40 running, and before"
    );
    assert_shared_threads(before);
    // Spawned from a thread that then ends.
    let sb2 = sb.clone();
    let orphan = std::thread::spawn(move || {
        sb2.command("sh")
            .args(["-c", "sleep 0.5; echo alive"])
            .spawn()
            .unwrap()
    })
    .join()
    .unwrap();
    let mut orphan = orphan;
    let out = orphan.wait().unwrap();
    assert!(out.success(), "{:?}", out.status);
    assert_eq!(out.stdout, b"alive\n");
    for child in &mut children {
        assert!(child.wait().unwrap().success());
    }
}
