//! Network namespaces for the calling thread.

use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags};

use crate::error::{Error, Result};
use crate::sys;

/// `unshare(CLONE_NEWNET)`—Moves the calling *thread* into a new, empty
/// network namespace (only loopback, down). Other threads stay where they
/// are. Needs `CAP_SYS_ADMIN` (root, or a user namespace of one's own).
///
/// # Errors
///
/// [`Error::Os`] with the errno.
pub fn unshare_network_namespace() -> Result<()> {
    sys::unshare_netns().map_err(Error::os("unshare(CLONE_NEWNET)"))
}

/// An fd of the calling thread's network namespace
/// (`/proc/thread-self/ns/net`), to come back to or to hand to
/// [`enter_network_namespace`] from another thread.
///
/// # Errors
///
/// [`Error::Os`].
pub fn current_network_namespace() -> Result<OwnedFd> {
    rustix::fs::open(
        "/proc/thread-self/ns/net",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(Error::os("open /proc/thread-self/ns/net"))
}

/// `setns(fd, CLONE_NEWNET)`—Moves the calling thread into the network
/// namespace `fd` refers to.
///
/// # Errors
///
/// [`Error::Os`].
pub fn enter_network_namespace(fd: &OwnedFd) -> Result<()> {
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(fd),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(Error::os("setns(CLONE_NEWNET)"))
}
