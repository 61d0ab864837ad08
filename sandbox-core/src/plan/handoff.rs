//! The socket pairs a run hands fds over.

use crate::error::{Error, Result};

/// A socket pair the child and the parent hand fds over (the tap, tmpfs
/// uppers, idmapped lowers), if `wanted`.
pub(crate) fn handoff_sockets(
    wanted: bool,
    what: &str,
) -> Result<Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>> {
    if !wanted {
        return Ok(None);
    }
    rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map(Some)
    .map_err(Error::prepare_errno(format!("the {what} socket pair")))
}
