//! The network half of the child's syscalls: netlink requests sent and
//! their ACKs checked, and an fd passed over a socket, all on stack
//! buffers (no allocation), so that a child cloned from a multithreaded
//! process may run them. `sandbox-net` builds the bytes and uses these for
//! its own direct calls too.

use std::ffi::c_int;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::errno;

/// The first `NLMSG_ERROR` of a reply: `(sequence, errno)` (errno 0: an
/// ACK), or `None`.
pub fn first_error(reply: &[u8]) -> Option<(u32, i32)> {
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

/// Sends the `count` netlink messages in `bytes` one at a time on
/// `socket`, waiting for each one's ACK, and stops at the first refusal:
/// `Err((index, errno))` (`index` `u32::MAX` when the socket itself
/// failed). Stack buffers only.
pub fn send_each_and_check_acks(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    count: u32,
) -> Result<(), (u32, i32)> {
    let fd = socket.as_raw_fd();
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
        // SAFETY: send(2) of a live slice on a socket the caller lends.
        let sent = unsafe { libc::send(fd, message.as_ptr().cast(), message.len(), 0) };
        if sent != message.len() as isize {
            return Err((u32::MAX, errno()));
        }
        loop {
            // SAFETY: recv(2) into a live stack buffer of its length.
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

/// Sends an nf_tables batch (all of it in one `send`, as nfnetlink needs)
/// on `socket` and waits for `acks` ACKs: `Err((sequence, errno))` of the
/// first error the kernel answered (sequence 0 when the socket failed).
/// Stack buffers only.
pub fn send_batch_and_check_acks(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    acks: u32,
) -> Result<(), (u32, i32)> {
    let fd = socket.as_raw_fd();
    // SAFETY: send(2) of a live slice on a socket the caller lends.
    let sent = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), 0) };
    if sent != bytes.len() as isize {
        return Err((0, errno()));
    }
    let mut reply = [0u8; 8192];
    let mut received = 0;
    while received < acks {
        // SAFETY: recv(2) into a live stack buffer of its length.
        let n = unsafe { libc::recv(fd, reply.as_mut_ptr().cast(), reply.len(), 0) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err((0, errno()));
        }
        if n == 0 {
            return Err((0, libc::EPROTO));
        }
        let mut offset = 0usize;
        while let Some((seq, error)) = first_error(&reply[offset..n as usize]) {
            if error != 0 {
                return Err((seq, error));
            }
            received += 1;
            // Move past this message (first_error found the first one).
            let len = u32::from_ne_bytes([
                reply[offset],
                reply[offset + 1],
                reply[offset + 2],
                reply[offset + 3],
            ]) as usize;
            if len < 16 {
                break;
            }
            offset += (len + 3) & !3;
            if offset >= n as usize {
                break;
            }
        }
    }
    Ok(())
}

/// `sendmsg(socket, 1 byte, SCM_RIGHTS [fd])`, with the control message
/// built on the stack: no allocation.
pub fn send_fd(socket: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> Result<(), c_int> {
    send_fd_raw(socket.as_raw_fd(), fd.as_raw_fd())
}

/// [`send_fd`] on the child's raw register fds.
pub(crate) fn send_fd_raw(socket: c_int, fd: c_int) -> Result<(), c_int> {
    // Room for one cmsghdr and one int, 8-aligned (CMSG_SPACE(4) is 24 on
    // 64-bit Linux; 32 leaves margin).
    let mut control = [0u64; 4];
    // SAFETY: CMSG_SPACE and CMSG_LEN are pure arithmetic.
    let (space, len) = unsafe {
        (
            libc::CMSG_SPACE(std::mem::size_of::<c_int>() as u32) as usize,
            libc::CMSG_LEN(std::mem::size_of::<c_int>() as u32) as usize,
        )
    };
    if space > std::mem::size_of_val(&control) {
        return Err(libc::EINVAL);
    }
    let header = libc::cmsghdr {
        cmsg_len: len as _,
        cmsg_level: libc::SOL_SOCKET,
        cmsg_type: libc::SCM_RIGHTS,
    };
    let base = control.as_mut_ptr().cast::<u8>();
    // SAFETY: `control` is 32 bytes, 8-aligned (a u64 array), and holds a
    // cmsghdr (16 bytes) followed by the int at CMSG_DATA's offset (the
    // header's size, already aligned), as checked against CMSG_SPACE.
    unsafe {
        std::ptr::write(base.cast::<libc::cmsghdr>(), header);
        std::ptr::write_unaligned(
            base.add(std::mem::size_of::<libc::cmsghdr>())
                .cast::<c_int>(),
            fd,
        );
    }
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: msghdr is plain data; zero is a valid value.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = base.cast();
    message.msg_controllen = space as _;
    // SAFETY: sendmsg(2) with an iovec and a control buffer that live on
    // this stack frame for the call.
    let ret = unsafe { libc::sendmsg(socket, &message, 0) };
    if ret < 0 { Err(errno()) } else { Ok(()) }
}
