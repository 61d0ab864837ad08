//! The runtime on its own: a trial child runs its steps and reports the
//! first failure; the child-side fd sender passes a working fd.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

use std::io::{Read, Write};
use std::os::fd::AsFd;

use rustix::io::Errno;
use sandbox_child::{Step, StepFailure, Trial};

fn write(path: &std::ffi::CStr, contents: &[u8]) -> Step {
    Step::WriteSetting {
        path: path.to_owned(),
        contents: contents.to_vec(),
    }
}

fn run(steps: &[Step], registers: usize) -> Result<(), StepFailure> {
    Trial::start(0, steps, registers).and_then(Trial::finish)
}

#[test]
fn a_trial_reports_its_first_failing_step_and_errno() {
    let steps = [
        write(c"/proc/self/comm", b"trial-test"),
        write(c"/nonexistent/file", b"x"),
        write(c"/proc/self/comm", b"never"),
    ];
    assert_eq!(run(&steps, 0), Err(StepFailure::at(1, Errno::NOENT)));
    assert_eq!(run(&steps[..1], 0), Ok(()));
    assert_eq!(run(&[], 0), Ok(()));
}

#[test]
fn registers_carry_fds_between_steps() {
    // Open into register 0, then close it; closing an empty register is a
    // no-op, so the control is the failing open.
    let steps = [
        Step::OpenFile {
            path: c"/proc/self/status".to_owned(),
            flags: libc::O_RDONLY,
            out: 0,
        },
        Step::Close(0),
    ];
    assert_eq!(run(&steps, 1), Ok(()));
    let missing = [Step::OpenFile {
        path: c"/nonexistent".to_owned(),
        flags: libc::O_RDONLY,
        out: 0,
    }];
    assert_eq!(run(&missing, 1).unwrap_err().errno, Errno::NOENT);
}

#[test]
fn the_child_sender_passes_a_working_fd() {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
    let (a, b) = socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let (pipe_read, pipe_write) = rustix::pipe::pipe().unwrap();
    sandbox_child::net::send_fd(a.as_fd(), pipe_write.as_fd()).unwrap();
    drop(pipe_write);
    // Received with rustix's recvmsg: the same pipe, writable.
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    recvmsg(
        &b,
        &mut [std::io::IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .unwrap();
    let received = control
        .drain()
        .find_map(|m| match m {
            RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
            _ => None,
        })
        .expect("an fd in the message");
    std::fs::File::from(received).write_all(b"through").unwrap();
    let mut text = String::new();
    std::fs::File::from(pipe_read)
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "through");
}

/// A child stuck in a step is killed at the deadline and named by that
/// step (`ETIMEDOUT`); control: the same trial, unblocked, succeeds.
#[test]
fn a_stuck_trial_is_killed_and_names_its_step() {
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};
    let (read_end, write_end) = rustix::pipe::pipe().unwrap();
    let steps = [
        write(c"/proc/self/comm", b"stuck-test"),
        Step::WaitForParent(read_end.as_raw_fd()),
        write(c"/proc/self/comm", b"after"),
    ];
    let started = Instant::now();
    let trial = Trial::start(0, &steps, 0).unwrap();
    let pid = trial.pid();
    let failure = trial.finish_within(Duration::from_millis(300)).unwrap_err();
    assert_eq!(failure, StepFailure::at(1, Errno::TIMEDOUT));
    assert!(started.elapsed() < Duration::from_secs(10));
    // Killed and reaped: the pid is gone.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    // Control: with the byte written, the same steps finish.
    let trial = Trial::start(0, &steps, 0).unwrap();
    rustix::io::write(&write_end, &[1]).unwrap();
    assert_eq!(trial.finish_within(Duration::from_secs(10)), Ok(()));
}
