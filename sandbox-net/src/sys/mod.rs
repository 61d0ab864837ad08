//! The raw syscalls and FFI this crate makes. The only module allowed to
//! use `unsafe`; the netlink sender and the fd-passing sender allocate
//! nothing, so a child forked from a multithreaded process may call them.
#![allow(unsafe_code)]

mod nft;
mod rootless;

pub(crate) use nft::{
    DumpKind, count_ack_requests, nft_dump, render_rules, send_batch_and_check_acks,
};
pub(crate) use rootless::{ROOTLESS_STEPS, RootlessPlan, reap, spawn_rootless};

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

use rustix::io::Errno;

fn errno() -> i32 {
    // SAFETY: reading the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

/// `ioctl(fd, TUNSETIFF, {name, flags})`.
pub(crate) fn tun_set_iff(
    fd: BorrowedFd<'_>,
    name: &str,
    flags: libc::c_short,
) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: ifreq is plain data; zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = flags;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which lives for the
    // call; the name is NUL-terminated (checked to be < IFNAMSIZ bytes).
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &mut request) };
    if ret < 0 {
        Err(Errno::from_raw_os_error(errno()))
    } else {
        Ok(())
    }
}

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

/// `socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol)`.
pub(crate) fn netlink_socket(protocol: libc::c_int) -> Result<OwnedFd, Errno> {
    // SAFETY: socket(2) returns a new fd or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(Errno::from_raw_os_error(errno()));
    }
    // SAFETY: a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // A reply that never comes (a kernel that ACKs less than we count)
    // must not hang the caller: receives time out after 5 s (EAGAIN).
    rustix::net::sockopt::set_socket_timeout(
        &fd,
        rustix::net::sockopt::Timeout::Recv,
        Some(std::time::Duration::from_secs(5)),
    )?;
    Ok(fd)
}

/// The first `NLMSG_ERROR` of a reply: `(sequence, errno)` (errno 0: an
/// ACK), or `None`.
pub(crate) fn first_error(reply: &[u8]) -> Option<(u32, i32)> {
    let mut offset = 0;
    while offset + 20 <= reply.len() {
        let word = |at: usize| [reply[at], reply[at + 1], reply[at + 2], reply[at + 3]];
        let len = u32::from_ne_bytes(word(offset)) as usize;
        let kind = u16::from_ne_bytes([reply[offset + 4], reply[offset + 5]]);
        let seq = u32::from_ne_bytes(word(offset + 8));
        if kind == libc::NLMSG_ERROR as u16 {
            return Some((seq, -i32::from_ne_bytes(word(offset + 16))));
        }
        if len < 16 {
            return None;
        }
        offset += (len + 3) & !3;
    }
    None
}

/// Sends the `count` netlink messages in `bytes` one at a time on `fd`,
/// waiting for each one's ACK, and stops at the first refusal:
/// `Err((index, errno))` (`index` `u32::MAX` when the socket itself
/// failed). Stack buffers only.
pub(crate) fn send_and_check_acks(fd: i32, bytes: &[u8], count: u32) -> Result<(), (u32, i32)> {
    let mut offset = 0usize;
    let mut index = 0u32;
    let mut reply = [0u8; 8192];
    while index < count && offset + 16 <= bytes.len() {
        let len = u32::from_ne_bytes([
            bytes[offset],
            bytes[offset + 1],
            bytes[offset + 2],
            bytes[offset + 3],
        ]) as usize;
        if len < 16 || offset + len > bytes.len() {
            return Err((index, libc::EINVAL));
        }
        let message = &bytes[offset..offset + len];
        // SAFETY: send(2) of a live slice on the caller's socket.
        let sent = unsafe { libc::send(fd, message.as_ptr().cast(), message.len(), 0) };
        if sent != message.len() as isize {
            return Err((u32::MAX, errno()));
        }
        loop {
            // SAFETY: recv(2) into a live stack buffer.
            let n = unsafe { libc::recv(fd, reply.as_mut_ptr().cast(), reply.len(), 0) };
            if n < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                return Err((u32::MAX, errno()));
            }
            match first_error(&reply[..n as usize]) {
                Some((_, 0)) => break,
                Some((_, e)) => return Err((index, e)),
                None if n == 0 => return Err((u32::MAX, libc::EPROTO)),
                None => {}
            }
        }
        offset += (len + 3) & !3;
        index += 1;
    }
    Ok(())
}

/// A `cmsghdr` for one `SCM_RIGHTS` fd, fd slot zeroed.
pub(crate) fn scm_rights_template() -> Vec<u8> {
    // SAFETY: CMSG_SPACE and CMSG_LEN are pure arithmetic.
    let (space, len) = unsafe {
        (
            libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) as usize,
            libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as usize,
        )
    };
    let mut control = vec![0u8; space];
    let header = libc::cmsghdr {
        cmsg_len: len as _,
        cmsg_level: libc::SOL_SOCKET,
        cmsg_type: libc::SCM_RIGHTS,
    };
    // SAFETY: the buffer holds at least one cmsghdr (CMSG_SPACE ≥ its size);
    // write_unaligned copes with the Vec's alignment.
    unsafe {
        std::ptr::write_unaligned(control.as_mut_ptr().cast::<libc::cmsghdr>(), header);
    }
    control
}

/// `sendmsg(socket, 1 byte, SCM_RIGHTS [fd])` using a prebuilt control
/// buffer: the fd is written into it in place. No allocation.
pub(crate) fn send_fd_raw(socket: i32, fd: i32, control: &mut [u8]) -> Result<(), i32> {
    let data_offset = std::mem::size_of::<libc::cmsghdr>();
    if control.len() < data_offset + 4 {
        return Err(libc::EINVAL);
    }
    control[data_offset..data_offset + 4].copy_from_slice(&fd.to_ne_bytes());
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: msghdr is plain data; zero is a valid value.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = control.len() as _;
    // SAFETY: sendmsg(2) with an iovec and a control buffer that live for
    // the call.
    let ret = unsafe { libc::sendmsg(socket, &message, 0) };
    if ret < 0 { Err(errno()) } else { Ok(()) }
}

/// `unshare(CLONE_NEWNET)` for the calling thread only.
pub(crate) fn unshare_netns() -> Result<(), Errno> {
    // SAFETY: CLONE_NEWNET changes only the calling thread's network
    // namespace; it does not unshare the fd table or anything Rust's
    // runtime relies on (the hazard `unshare_unsafe` warns about).
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
}
