//! The raw syscalls and FFI this crate makes in the parent (tun ioctls,
//! libnftnl's parsers). The only module allowed to use `unsafe`; what a
//! child runs (the netlink senders, fd passing) is `sandbox-child`'s.
#![allow(unsafe_code)]

mod nft;

pub(crate) use nft::{
    DumpKind, LogGroup, SetLookup, count_ack_requests, nft_dump, render_rules, set_flags,
};

use std::os::fd::BorrowedFd;

use rustix::io::Errno;

use sandbox_child::errno;

/// `ioctl(fd, TUNGETIFF)`: the tap's flags (`IFF_*`).
pub(crate) fn tun_get_flags(fd: BorrowedFd<'_>) -> Result<libc::c_short, Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: ifreq is plain data; zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes one ifreq, which lives for the call; on an
    // fd that is not a tun device it fails (EBADFD, ENOTTY) and writes
    // nothing.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF as _, &mut request) };
    if ret < 0 {
        Err(Errno::from_raw_os_error(errno()))
    } else {
        // SAFETY: TUNGETIFF filled the flags member.
        Ok(unsafe { request.ifr_ifru.ifru_flags })
    }
}

/// `ioctl(fd, request, value)` for the tun ioctls that take an integer by
/// value (`TUNSETOFFLOAD`) or by pointer (`TUNSETVNETLE`, by `by_pointer`).
pub(crate) fn tun_set(
    fd: BorrowedFd<'_>,
    request: libc::c_ulong,
    value: libc::c_uint,
    by_pointer: bool,
) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let value_int = value as libc::c_int;
    // SAFETY: the request takes an unsigned long argument, or a pointer to
    // an int that lives for the call.
    let ret = unsafe {
        if by_pointer {
            libc::ioctl(
                fd.as_raw_fd(),
                request as _,
                &value_int as *const libc::c_int,
            )
        } else {
            libc::ioctl(fd.as_raw_fd(), request as _, value as libc::c_ulong)
        }
    };
    if ret < 0 {
        Err(Errno::from_raw_os_error(errno()))
    } else {
        Ok(())
    }
}

/// `unshare(CLONE_NEWNET)` for the calling thread only.
pub(crate) fn unshare_netns() -> Result<(), Errno> {
    // SAFETY: CLONE_NEWNET changes only the calling thread's network
    // namespace; it does not unshare the fd table or anything Rust's
    // runtime relies on (the hazard `unshare_unsafe` warns about).
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
}
