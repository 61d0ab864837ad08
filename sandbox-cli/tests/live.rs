#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `sbx run` live: output as it comes, a terminal of the command's own
//! (raw mode, sizes, signals, job control), and `-v`'s timings. Need root
//! (as CI has).

use std::process::Stdio;

mod common;
use common::*;

/// `sbx run` passes the command's output on as it comes (a long build is
/// not silent until it ends), and its report after all of it.
#[test]
#[ignore = "needs root"]
fn run_streams_the_output_as_it_comes() {
    use std::io::{BufRead, BufReader, Read};
    require_root();
    sandbox_core::probe();
    let started = std::time::Instant::now();
    let mut child = sbx_command()
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "echo first; echo e1 >&2; sleep 3; echo second",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "first\n");
    line.clear();
    stderr.read_line(&mut line).unwrap();
    assert_eq!(line, "e1\n");
    // Both came while the command sleeps.
    assert!(started.elapsed() < std::time::Duration::from_millis(2500));
    assert!(child.try_wait().unwrap().is_none(), "sbx still runs");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "second\n");
    let mut report = String::new();
    stderr.read_to_string(&mut report).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(
        report.starts_with("sbx: ---- the command's stderr ends here (3 bytes)"),
        "{report}"
    );
    assert!(report.contains("sbx: exit code 0"), "{report}");
}

#[path = "../../sandbox-core/tests/common/pty.rs"]
mod pty;

/// `sbx ARGS` with the terminal `tty` as its stdin, stdout and stderr.
fn sbx_on(tty: &std::os::fd::OwnedFd, args: &[&str]) -> std::process::Child {
    sandbox_core::probe();
    let stdio = || Stdio::from(tty.try_clone().unwrap());
    sbx_command()
        .args(args)
        .stdin(stdio())
        .stdout(stdio())
        .stderr(stdio())
        .spawn()
        .unwrap()
}

/// Reads the master until `needle` has come (10 s at most): all read.
fn read_until(master: &std::os::fd::OwnedFd, seen: &mut String, needle: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains(needle) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} in {seen:?}"
        );
        let got = pty::read_within(master, std::time::Duration::from_millis(100));
        seen.push_str(&String::from_utf8_lossy(&got));
    }
}

/// On a terminal `sbx run` gives the command one of its own, with our
/// size, our terminal raw meanwhile and restored after; a window size
/// change reaches the command; SIGTERM to sbx is passed on and the run
/// reported, terminal restored; a command stopped from its terminal
/// suspends sbx, and continuing sbx continues it.
#[test]
#[ignore = "needs root"]
fn run_on_a_terminal_gives_the_command_its_own() {
    require_root();
    sandbox_core::probe();
    let (master, slave) = pty::pty(50, 120);
    assert!(pty::canonical(&slave));
    let script = "tty; stty size; stty -echo; echo quiet; read x; echo got:$x; \
                  trap 'stty size; exit 3' WINCH; echo armed; while :; do sleep 0.1; done";
    let mut sbx = sbx_on(&slave, &["run", "--", "sh", "-c", script]);
    let mut seen = String::new();
    read_until(&master, &mut seen, "quiet\r\n");
    assert!(
        seen.starts_with("/dev/pts/0\r\n"),
        "its own terminal: {seen:?}"
    );
    assert!(
        !pty::canonical(&slave),
        "ours is raw while the command runs"
    );
    rustix::io::write(&master, b"secret\r").unwrap();
    read_until(&master, &mut seen, "armed\r\n");
    assert!(seen.contains("got:secret\r\n"), "{seen:?}");
    assert!(
        !seen.contains("secret\r\ngot"),
        "its echo is off, and only its own"
    );
    // A new size for our terminal, and the SIGWINCH a shell would get.
    pty::set_size(&slave, 33, 101);
    let pid = rustix::process::Pid::from_raw(sbx.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::WINCH).unwrap();
    read_until(&master, &mut seen, "33 101\r\n");
    assert_eq!(sbx.wait().unwrap().code(), Some(3));
    assert!(
        pty::canonical(&slave),
        "ours restored, untouched by the command's stty"
    );

    // SIGTERM to sbx: passed on to the command, the run reported.
    let mut sbx = sbx_on(
        &slave,
        &["run", "--", "sh", "-c", "echo alive-4242; sleep 30"],
    );
    let mut seen = String::new();
    read_until(&master, &mut seen, "alive-4242\r\n");
    let pid = rustix::process::Pid::from_raw(sbx.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    read_until(&master, &mut seen, "sbx: killed by signal 15");
    assert_eq!(sbx.wait().unwrap().code(), Some(128 + 15));
    assert!(pty::canonical(&slave), "restored after a signal");

    // Job control: the command stopped from its terminal (^Z) stops sbx
    // (our terminal given back meanwhile); a SIGCONT to sbx (the shell's
    // `fg`) continues both.
    let mut sbx = sbx_on(
        &slave,
        &[
            "run",
            "--",
            "sh",
            "-c",
            // A builtin waits, not a forked child: a dash that vforks is
            // in an unstoppable state until the child execs, and ^Z then
            // stops only the child.
            "echo ready-4243; read x; echo resumed-4243 $x",
        ],
    );
    let mut seen = String::new();
    read_until(&master, &mut seen, "ready-4243\r\n");
    // ^Z, typed on our (raw) terminal: the command's terminal stops it.
    rustix::io::write(&master, b"\x1a").unwrap();
    let pid = rustix::process::Pid::from_raw(sbx.id() as i32).unwrap();
    let stopped = || {
        std::fs::read_to_string(format!("/proc/{}/stat", sbx.id())).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('T'))
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !stopped() {
        assert!(
            std::time::Instant::now() < deadline,
            "sbx stopped with its command: {}",
            processes()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        pty::canonical(&slave),
        "our terminal given back while stopped"
    );
    assert!(!seen.contains("resumed-4243"));
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    // Continued, it reads on.
    rustix::io::write(&master, b"go\r").unwrap();
    read_until(&master, &mut seen, "resumed-4243 go\r\n");
    assert!(sbx.wait().unwrap().success());
    assert!(pty::canonical(&slave));
}

/// `sbx run -v` says what the decision cost and how long each phase of
/// the run took; without it, nothing of the kind.
#[test]
#[ignore = "needs root"]
fn run_verbose_prints_the_phase_timings() {
    require_root();
    let out = sbx(&["run", "-v", "--", "true"]);
    assert!(out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("sbx: sandbox decided (probe_us: "), "{err}");
    let ended = err
        .lines()
        .find(|l| l.starts_with("sbx: sandbox run ended"))
        .unwrap_or_else(|| panic!("{err}"));
    for part in [
        "status: exit code 0",
        "plan ",
        "clone ",
        "setup ",
        "filesystem ",
        "seccomp ",
        "run ",
        "teardown ",
    ] {
        assert!(ended.contains(part), "{part} in {ended}");
    }
    let quiet = sbx(&["run", "--", "true"]);
    assert!(!text(&quiet.stderr).contains("sandbox run ended"));
}

/// `pid comm state ppid pgrp session tty tpgid` of the processes a
/// sandboxed shell runs as, for a failure's message.
fn processes() -> String {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            ["(sh)", "(sleep)", "(sandbox-init)", "(sbx)"]
                .iter()
                .any(|c| stat.contains(c))
        })
        .map(|stat| {
            stat.split_whitespace()
                .take(8)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("; ")
}
