//! Pseudo-terminal helpers, shared by sandbox-core's and sbx's tests
//! (`#[path]`-included there).
#![allow(dead_code, clippy::unwrap_used)]

use std::os::fd::OwnedFd;
use std::time::Duration;

/// A pseudo-terminal pair (master, slave) of the host's devpts, sized
/// `rows` × `cols`.
pub(crate) fn pty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
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
    set_size(&slave, rows, cols);
    (master, slave)
}

/// `TIOCSWINSZ`.
pub(crate) fn set_size(tty: &OwnedFd, rows: u16, cols: u16) {
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(tty, size).unwrap();
}

/// What `fd` has to read within `wait` (one read; empty if nothing came).
pub(crate) fn read_within(fd: &OwnedFd, wait: Duration) -> Vec<u8> {
    let mut pollfd = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    let timeout = rustix::time::Timespec {
        tv_sec: wait.as_secs() as i64,
        tv_nsec: i64::from(wait.subsec_nanos()),
    };
    if rustix::event::poll(&mut pollfd, Some(&timeout)).unwrap() == 0 {
        return Vec::new();
    }
    let mut buf = [0u8; 4096];
    let n = rustix::io::read(fd, &mut buf).unwrap_or(0);
    buf[..n].to_vec()
}

/// Whether ECHO and ICANON are set (a terminal in its cooked mode).
pub(crate) fn canonical(tty: &OwnedFd) -> bool {
    use rustix::termios::LocalModes;
    rustix::termios::tcgetattr(tty)
        .unwrap()
        .local_modes
        .contains(LocalModes::ECHO | LocalModes::ICANON)
}
