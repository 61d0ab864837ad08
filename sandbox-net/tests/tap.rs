#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Tap creation and fd passing, in a throwaway network namespace.

use std::os::fd::{AsFd, AsRawFd};

use sandbox_net::{Rtnetlink, TapOptions, create_tap, recv_fd, send_fd};

/// Fails the test where it is not root: a root-only test is
/// `#[ignore = "needs root"]`, and run with `--include-ignored` as root.
fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root: run as root with --include-ignored, as CI does"
    );
}

fn tun_name(fd: &impl AsRawFd) -> String {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("iff:"))
        .unwrap_or("")
        .trim()
        .to_string()
}

#[test]
#[ignore = "needs root"]
fn a_tap_is_made_and_its_fd_passed() {
    require_root();
    std::thread::spawn(|| {
        sandbox_net::unshare_network_namespace().unwrap();
        let tap = create_tap("tap0", TapOptions::default()).unwrap();
        assert_eq!(tun_name(&tap), "tap0");
        let link = Rtnetlink::open().unwrap().link("tap0").unwrap().unwrap();
        assert!(!link.up, "a new tap is down until configured");

        let (a, b) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        send_fd(&a, &tap).unwrap();
        let received = recv_fd(&b).unwrap();
        assert_ne!(received.as_raw_fd(), tap.as_raw_fd());
        assert_eq!(tun_name(&received), "tap0", "the same tap queue");

        // The child-side sender (sandbox-child's, stack buffers only).
        sandbox_child::net::send_fd(a.as_fd(), tap.as_fd()).unwrap();
        assert_eq!(tun_name(&recv_fd(&b).unwrap()), "tap0");

        // Errors name what failed.
        let err = create_tap("name-far-too-long-for-ifnamsiz", TapOptions::default()).unwrap_err();
        assert!(err.to_string().contains("interface name"), "{err}");
        assert!(recv_fd_with_nothing(&a, &b));
    })
    .join()
    .unwrap();
}

/// A message without an fd is refused by `recv_fd` with a clear error.
fn recv_fd_with_nothing(a: &impl rustix::fd::AsFd, b: &impl rustix::fd::AsFd) -> bool {
    rustix::io::write(a, b"x").unwrap();
    matches!(recv_fd(b), Err(sandbox_net::Error::Malformed { .. }))
}
