#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A command's stdin, stdout and stderr: output as it comes (readers of a
//! spawned child, the caller's own streams and files), capped; a reader
//! that goes away gives the command EPIPE; what nobody read is collected;
//! and no fd of the caller's, a terminal least of all, enters the sandbox.
//! Needs root, as in CI.
use std::io::{BufRead, BufReader, Read, Seek};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::termios::LocalModes;
use sandbox_core::{ExitStatus, Sandbox, Stdio};

mod common;
use common::*;

fn default() -> Sandbox {
    Sandbox::from_profile("default").unwrap()
}

#[test]
#[ignore = "needs root"]
fn a_spawned_childs_output_comes_as_it_is_written() {
    common::require_root();
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

/// A pseudo-terminal pair (master, slave).
fn pty() -> (OwnedFd, OwnedFd) {
    use rustix::pty::OpenptFlags;
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    rustix::pty::grantpt(&master).unwrap();
    rustix::pty::unlockpt(&master).unwrap();
    let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    (master, slave)
}

/// Clears ECHO and ICANON on stdin's terminal and leaves `O_NONBLOCK` on
/// stdin's open file.
const TERMINAL_ATTACK: &str = "stty -echo -icanon; echo stty=$?; perl -e 'use Fcntl; fcntl(STDIN, F_SETFL, O_NONBLOCK) or die'";

fn nonblocking(fd: &OwnedFd) -> bool {
    rustix::fs::fcntl_getfl(fd)
        .unwrap()
        .contains(rustix::fs::OFlags::NONBLOCK)
}

fn echo_and_icanon(fd: &OwnedFd) -> bool {
    let modes = rustix::termios::tcgetattr(fd).unwrap().local_modes;
    modes.contains(LocalModes::ECHO | LocalModes::ICANON)
}

#[test]
#[ignore = "needs root"]
fn a_terminal_of_the_callers_is_replaced_by_a_pipe() {
    common::require_root();
    let (_master, slave) = pty();
    assert!(echo_and_icanon(&slave) && !nonblocking(&slave));
    let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
    let out = default()
        .command("sh")
        .args(["-c", TERMINAL_ATTACK])
        .stdin(stdio(&slave))
        .stdout(Stdio::Piped)
        .stderr(Stdio::Piped)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("stty=1"),
        "stty has no terminal inside: {text}"
    );
    assert!(echo_and_icanon(&slave), "the caller's termios is unchanged");
    assert!(
        !nonblocking(&slave),
        "the caller's file flags are unchanged"
    );

    // Control: the same commands with the terminal given straight to them.
    let control = std::process::Command::new("sh")
        .args(["-c", TERMINAL_ATTACK])
        .stdin(std::process::Stdio::from(slave.try_clone().unwrap()))
        .output()
        .unwrap();
    assert!(control.status.success());
    assert!(String::from_utf8_lossy(&control.stdout).contains("stty=0"));
    assert!(
        !echo_and_icanon(&slave),
        "the attack works on a shared terminal"
    );
    assert!(nonblocking(&slave), "and on a shared open file");
}
