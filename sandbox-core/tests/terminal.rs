#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Terminals: a command given the caller's terminal gets a pipe instead,
//! and one given `pty(true)` a terminal of its own; either way the caller's
//! terminal keeps its modes, flags, size, exclusivity, output flow and
//! typed-ahead input whatever the command does to its own. The controls
//! give the same attacks the terminal itself. Needs root, as in CI.
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::time::Duration;

use sandbox_core::{Sandbox, Stdio};

mod common;
use common::pty::{canonical, pty, read_within, set_size};

/// Each attack of the issue against the terminal on fd 1: clear ECHO and
/// ICANON, flush the typed-ahead input, set TIOCEXCL, change the window
/// size (SIGWINCH to the terminal's foreground group), leave O_NONBLOCK on
/// the open file, and suspend its output (TCOOFF). Prints what worked on
/// stderr.
const ATTACK: &str = r#"
use POSIX; use Fcntl;
my @worked;
my $t = POSIX::Termios->new;
if ($t->getattr(1)) { $t->setlflag($t->getlflag & ~(ECHO|ICANON)); push @worked, "termios" if $t->setattr(1, TCSANOW); }
push @worked, "flush" if POSIX::tcflush(1, TCIFLUSH);
my $zero = 0; my $size = pack("S4", 11, 22, 0, 0);
push @worked, "excl" if ioctl(STDOUT, 0x540C, $zero);
push @worked, "winsize" if ioctl(STDOUT, 0x5414, $size);
push @worked, "nonblock" if fcntl(STDOUT, F_SETFL, O_NONBLOCK);
print STDERR "worked: @worked\n";
POSIX::tcflow(1, TCOOFF);
"#;

/// What the attacks could change on the caller's terminal.
#[derive(Debug, PartialEq, Eq)]
struct TerminalState {
    echo_and_icanon: bool,
    nonblocking: bool,
    exclusive: bool,
    size: (u16, u16),
    typed_ahead: bool,
    output_flows: bool,
}

#[allow(unsafe_code)]
fn exclusive(fd: &OwnedFd) -> bool {
    const TIOCGEXCL: libc::c_ulong = 0x8004_5440;
    let mut value: libc::c_int = 0;
    // SAFETY: TIOCGEXCL writes one int through the pointer, to a live local.
    let ret = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(fd), TIOCGEXCL, &mut value) };
    assert_eq!(ret, 0, "TIOCGEXCL");
    value != 0
}

/// Sets the caller's terminal up: 40 × 100, "typed\n" waiting as input.
fn set_up(master: &OwnedFd, slave: &OwnedFd) {
    set_size(slave, 40, 100);
    rustix::io::write(master, b"typed\n").unwrap();
}

/// The terminal's state (consuming the typed-ahead line and a probe byte
/// written through it).
fn state(master: &OwnedFd, slave: &OwnedFd) -> TerminalState {
    let flags = rustix::fs::fcntl_getfl(slave).unwrap();
    let size = rustix::termios::tcgetwinsize(slave).unwrap();
    TerminalState {
        echo_and_icanon: canonical(slave),
        nonblocking: flags.contains(rustix::fs::OFlags::NONBLOCK),
        exclusive: exclusive(slave),
        size: (size.ws_row, size.ws_col),
        typed_ahead: read_within(slave, Duration::from_millis(200)) == b"typed\n",
        output_flows: {
            // Drain what the command printed, then probe.
            while !read_within(master, Duration::from_millis(50)).is_empty() {}
            rustix::fs::fcntl_setfl(slave, rustix::fs::OFlags::NONBLOCK).unwrap();
            let _ = rustix::io::write(slave, b"!");
            rustix::fs::fcntl_setfl(slave, flags).unwrap();
            read_within(master, Duration::from_millis(500)).ends_with(b"!")
        },
    }
}

const UNTOUCHED: TerminalState = TerminalState {
    echo_and_icanon: true,
    nonblocking: false,
    exclusive: false,
    size: (40, 100),
    typed_ahead: true,
    output_flows: true,
};

#[test]
#[ignore = "needs root"]
fn the_callers_terminal_is_untouched_by_a_command_with_or_without_a_pty() {
    common::require_root();
    let sandbox = Sandbox::from_profile("default").unwrap();
    for pty_mode in [false, true] {
        let (master, slave) = pty(24, 80);
        set_up(&master, &slave);
        let out = sandbox
            .command("perl")
            .args(["-e", ATTACK])
            .pty(pty_mode)
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::Piped)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        if pty_mode {
            // Every attack worked — on the command's own terminal (its
            // stderr is that terminal, relayed to the caller's).
            let echoed = read_within(&master, Duration::from_millis(500));
            let text = String::from_utf8_lossy(&echoed).into_owned();
            assert!(
                text.contains("worked: termios flush excl winsize nonblock"),
                "{text}"
            );
        } else {
            // Only O_NONBLOCK, on its own pipe: the rest need a terminal.
            assert_eq!(said.trim(), "worked: nonblock");
        }
        assert_eq!(state(&master, &slave), UNTOUCHED, "pty({pty_mode})");
    }

    // Control: the same attacks with the terminal given to the command.
    let (master, slave) = pty(24, 80);
    set_up(&master, &slave);
    let control = std::process::Command::new("perl")
        .args(["-e", ATTACK])
        .stdout(std::process::Stdio::from(slave.try_clone().unwrap()))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&control.stderr).into_owned();
    assert!(
        said.contains("worked: termios flush excl winsize nonblock"),
        "{said}"
    );
    assert_eq!(
        state(&master, &slave),
        TerminalState {
            echo_and_icanon: false,
            nonblocking: true,
            exclusive: true,
            size: (11, 22),
            typed_ahead: false,
            output_flows: false,
        }
    );
}

#[test]
#[ignore = "needs root"]
fn a_pty_is_the_commands_controlling_terminal_and_takes_input_and_sizes() {
    common::require_root();
    let sandbox = Sandbox::from_profile("default").unwrap();
    let out = sandbox
        .command("sh")
        .args([
            "-c",
            "tty; stty size; test -t 0 && test -t 2 && echo all-terminal",
        ])
        .pty(true)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.success(), "{text}");
    assert_eq!(
        text, "/dev/pts/0\r\n24 80\r\nall-terminal\r\n",
        "the sandbox's own devpts"
    );
    // Whatever the root: the terminal comes from the sandbox's /dev/ptmx.
    for mode in ["host-readonly", "off"] {
        let policy =
            sandbox_policy::Policy::from_toml_str(&format!("[filesystem]\nmode = \"{mode}\"\n"))
                .unwrap();
        let out = Sandbox::new(policy)
            .unwrap()
            .command("sh")
            .args(["-c", "tty; test -t 0 && test -t 2 && echo all-terminal"])
            .pty(true)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.starts_with("/dev/pts/") && text.ends_with("\r\nall-terminal\r\n"),
            "{mode}: {text}"
        );
    }
    // Control: without a pty, none of it.
    let plain = sandbox
        .command("sh")
        .args(["-c", "tty; test -t 1 || echo no-terminal"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&plain.stdout),
        "not a tty\nno-terminal\n"
    );

    // Interactive: input typed into it, echoed by its line discipline, and
    // a resize reaching it as SIGWINCH.
    let mut child = sandbox
        .command("sh")
        .args([
            "-c",
            "echo ready; read line; echo got:$line; trap 'stty size; exit' WINCH; echo armed; \
             while :; do sleep 0.1; done",
        ])
        .pty(true)
        .stdin(Stdio::Piped)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    child.stdin.as_mut().unwrap().write_all(b"hello\n").unwrap();
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "hello",
        "the terminal echoes"
    );
    assert_eq!(lines.next().unwrap().unwrap(), "got:hello");
    assert_eq!(lines.next().unwrap().unwrap(), "armed");
    child.resize(33, 101).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "33 101");
    assert!(child.wait().unwrap().success());
}
