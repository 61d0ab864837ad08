//! The network half of the child's syscalls: netlink requests sent and
//! their ACKs checked, the tap made, loopback brought up and an fd passed
//! over a socket, all on stack buffers (no allocation), so that a child
//! cloned from a multithreaded process may run them. `sandbox-net` builds
//! the bytes and uses these for its own direct calls too.

use std::ffi::{CStr, c_int};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags,
    SocketType, netlink,
};

/// Why a netlink exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetlinkFailure {
    /// Sending or receiving on the socket failed (or the kernel sent a
    /// reply that was not netlink).
    Socket(Errno),
    /// The kernel refused a message: `at` is its 0-based index (for
    /// [`send_each_and_check_acks`]) or its sequence number (for
    /// [`send_batch_and_check_acks`]).
    Refused {
        /// The refused message's index or sequence number.
        at: u32,
        /// The kernel's errno for it.
        errno: Errno,
    },
}

impl NetlinkFailure {
    /// The errno, whichever side failed.
    pub fn errno(self) -> Errno {
        match self {
            Self::Socket(errno) | Self::Refused { errno, .. } => errno,
        }
    }
}

impl std::fmt::Display for NetlinkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Socket(errno) => write!(f, "the netlink socket failed: {errno}"),
            Self::Refused { at, errno } => write!(f, "message {at} refused: {errno}"),
        }
    }
}

impl std::error::Error for NetlinkFailure {}

fn word(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// The length of the netlink message at the start of `bytes`, if it has
/// a header.
fn message_len(bytes: &[u8]) -> Option<usize> {
    word(bytes, 0).map(|len| len as usize)
}

/// The first `NLMSG_ERROR` of a reply: `(sequence, errno)` (errno 0: an
/// ACK), or `None`.
pub fn first_error(reply: &[u8]) -> Option<(u32, i32)> {
    let mut offset = 0;
    while offset + 20 <= reply.len() {
        let len = word(reply, offset)? as usize;
        let kind = u16::from_ne_bytes([*reply.get(offset + 4)?, *reply.get(offset + 5)?]);
        if kind == libc::NLMSG_ERROR as u16 {
            let seq = word(reply, offset + 8)?;
            return Some((seq, -(word(reply, offset + 16)? as i32)));
        }
        if len < 16 {
            return None;
        }
        offset += (len + 3) & !3;
    }
    None
}

fn recv_some(socket: BorrowedFd<'_>, buffer: &mut [u8]) -> Result<usize, NetlinkFailure> {
    loop {
        match rustix::net::recv(socket, &mut *buffer, RecvFlags::empty()) {
            Ok((0, _)) => return Err(NetlinkFailure::Socket(Errno::PROTO)),
            Ok((n, _)) => return Ok(n),
            Err(Errno::INTR) => {}
            Err(e) => return Err(NetlinkFailure::Socket(e)),
        }
    }
}

fn send_whole(socket: BorrowedFd<'_>, bytes: &[u8]) -> Result<(), NetlinkFailure> {
    match rustix::net::send(socket, bytes, SendFlags::empty()) {
        Ok(n) if n == bytes.len() => Ok(()),
        Ok(_) => Err(NetlinkFailure::Socket(Errno::MSGSIZE)),
        Err(e) => Err(NetlinkFailure::Socket(e)),
    }
}

/// Sends the `count` netlink messages in `bytes` one at a time on
/// `socket`, waiting for each one's ACK, and stops at the first refusal.
/// Stack buffers only.
///
/// # Errors
///
/// The first refused message's index and errno, or the socket's errno.
pub fn send_each_and_check_acks(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    count: u32,
) -> Result<(), NetlinkFailure> {
    let mut rest = bytes;
    let mut reply = [0u8; 8192];
    for index in 0..count {
        let malformed = NetlinkFailure::Refused {
            at: index,
            errno: Errno::INVAL,
        };
        let len = message_len(rest).ok_or(malformed)?;
        let message = rest.get(..len).filter(|_| len >= 16).ok_or(malformed)?;
        send_whole(socket, message)?;
        loop {
            let n = recv_some(socket, &mut reply)?;
            match first_error(reply.get(..n).unwrap_or_default()) {
                Some((_, 0)) => break,
                Some((_, e)) => {
                    return Err(NetlinkFailure::Refused {
                        at: index,
                        errno: Errno::from_raw_os_error(e),
                    });
                }
                None => {}
            }
        }
        rest = rest.get((len + 3) & !3..).unwrap_or_default();
    }
    Ok(())
}

/// Sends an nf_tables batch (all of it in one `send`, as nfnetlink needs)
/// on `socket` and waits for `acks` ACKs. Stack buffers only.
///
/// # Errors
///
/// The sequence number and errno of the first error the kernel
/// answered, or the socket's errno.
pub fn send_batch_and_check_acks(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    acks: u32,
) -> Result<(), NetlinkFailure> {
    // A batch goes in one message, which must fit the socket's send
    // buffer (a ruleset with large sets passes the default): raise it,
    // past the system's maximum where we may (CAP_NET_ADMIN in the
    // namespace).
    if bytes.len() > 64 * 1024 {
        let size = bytes.len() + 64 * 1024;
        if rustix::net::sockopt::set_socket_send_buffer_size_force(socket, size).is_err() {
            let _ = rustix::net::sockopt::set_socket_send_buffer_size(socket, size);
        }
    }
    send_whole(socket, bytes)?;
    let mut reply = [0u8; 8192];
    let mut received = 0;
    while received < acks {
        let n = recv_some(socket, &mut reply)?;
        let mut rest = reply.get(..n).unwrap_or_default();
        while let Some((seq, error)) = first_error(rest) {
            if error != 0 {
                return Err(NetlinkFailure::Refused {
                    at: seq,
                    errno: Errno::from_raw_os_error(error),
                });
            }
            received += 1;
            // Move past this message (first_error found the first one).
            match message_len(rest) {
                Some(len) if len >= 16 => rest = rest.get((len + 3) & !3..).unwrap_or_default(),
                _ => break,
            }
        }
    }
    Ok(())
}

/// `socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol)`: `None` is
/// `NETLINK_ROUTE`, `Some(netlink::NETFILTER)` nf_tables. Receives time
/// out after 5 s (`EAGAIN`): a reply that never comes (a kernel that ACKs
/// less than we count) must not hang the caller or a child.
///
/// # Errors
///
/// `socket`'s or `setsockopt`'s errno.
pub fn netlink_socket(protocol: Option<rustix::net::Protocol>) -> Result<OwnedFd, Errno> {
    let socket = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        protocol,
    )?;
    rustix::net::sockopt::set_socket_timeout(
        &socket,
        rustix::net::sockopt::Timeout::Recv,
        Some(std::time::Duration::from_secs(5)),
    )?;
    Ok(socket)
}

/// Sends prebuilt rtnetlink requests on a new `NETLINK_ROUTE` socket,
/// checking every ACK.
pub(crate) fn rtnetlink(bytes: &[u8], count: u32) -> Result<(), Errno> {
    let socket = netlink_socket(None)?;
    send_each_and_check_acks(socket.as_fd(), bytes, count).map_err(NetlinkFailure::errno)
}

/// Sends a prebuilt nf_tables batch on a new `NETLINK_NETFILTER` socket.
pub(crate) fn nft_batch(bytes: &[u8], acks: u32) -> Result<(), Errno> {
    let socket = netlink_socket(Some(netlink::NETFILTER))?;
    send_batch_and_check_acks(socket.as_fd(), bytes, acks).map_err(NetlinkFailure::errno)
}

/// `RTM_NEWLINK` for link 1 (loopback is the first link of every new
/// network namespace) with `IFF_UP` set in `ifi_flags` and `ifi_change`,
/// asking for an ACK: `struct nlmsghdr` then `struct ifinfomsg`.
const LOOPBACK_UP: [u8; 32] = {
    let mut m = [0u8; 32];
    let len = 32u32.to_ne_bytes();
    let kind = libc::RTM_NEWLINK.to_ne_bytes();
    let flags = ((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes();
    let seq = 1u32.to_ne_bytes();
    let index = 1i32.to_ne_bytes();
    let up = (libc::IFF_UP as u32).to_ne_bytes();
    let mut i = 0;
    while i < 4 {
        m[i] = len[i];
        m[8 + i] = seq[i];
        // ifinfomsg: family (1), pad (1), type (2), index (4), flags (4),
        // change (4), from byte 16.
        m[20 + i] = index[i];
        m[24 + i] = up[i];
        m[28 + i] = up[i];
        if i < 2 {
            m[4 + i] = kind[i];
            m[6 + i] = flags[i];
        }
        i += 1;
    }
    m
};

/// Brings loopback (link 1) up in the calling thread's network namespace
/// (by rtnetlink: no `ifreq` to lay out).
pub fn loopback_up() -> Result<(), Errno> {
    rtnetlink(&LOOPBACK_UP, 1)
}

/// Opens `/dev/net/tun` and makes tap `name` on it (no packet info, with a
/// virtio-net header so that the forwarder can offload checksums and
/// segmentation); it must come out as link `index` (the requests that
/// follow assume it).
pub(crate) fn create_tap(name: &CStr, index: c_int) -> Result<OwnedFd, Errno> {
    use rustix::fs::{Mode, OFlags};
    let tun = rustix::fs::open(
        c"/dev/net/tun",
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
    tun_set_iff(tun.as_fd(), name, flags as i16)?;
    let name = name.to_str().map_err(|_| Errno::INVAL)?;
    // SIOCGIFINDEX wants a socket on some kernels.
    let actual = rustix::net::netdevice::name_to_index(&tun, name).or_else(|_| {
        let socket = rustix::net::socket_with(
            AddressFamily::INET,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::netdevice::name_to_index(&socket, name)
    })?;
    if i64::from(actual) != i64::from(index) {
        return Err(Errno::NXIO);
    }
    Ok(tun)
}

/// `ioctl(tun, TUNSETIFF, {name, flags})`: makes (or attaches to) the
/// tun/tap device `name` on an open `/dev/net/tun`.
///
/// # Errors
///
/// `ENAMETOOLONG` for a name of `IFNAMSIZ` bytes or more; the ioctl's
/// errno.
pub fn tun_set_iff(tun: BorrowedFd<'_>, name: &CStr, flags: i16) -> Result<(), Errno> {
    // SAFETY: `ifreq` is plain data (arrays and integers in a union), for
    // which all zero bytes are a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = name.to_bytes();
    if name.len() >= request.ifr_name.len() {
        return Err(Errno::NAMETOOLONG);
    }
    for (slot, byte) in request.ifr_name.iter_mut().zip(name) {
        *slot = *byte as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = flags;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq` (libc's type,
    // the kernel's layout), a live local for the call, whose name is
    // NUL-terminated (shorter than the array, which was zeroed); `tun` is
    // open for the call.
    let ret = unsafe {
        libc::ioctl(
            rustix::fd::AsRawFd::as_raw_fd(&tun),
            libc::TUNSETIFF as _,
            &raw mut request,
        )
    };
    if ret < 0 {
        return Err(crate::last_errno());
    }
    Ok(())
}

/// `sendmsg(socket, 1 byte, SCM_RIGHTS [fd])`, the control message on the
/// stack: no allocation.
///
/// # Errors
///
/// `sendmsg`'s errno.
pub fn send_fd(socket: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let fds = [fd];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(Errno::NOBUFS);
    }
    rustix::net::sendmsg(
        socket,
        &[std::io::IoSlice::new(&[0])],
        &mut control,
        SendFlags::empty(),
    )
    .map(drop)
}

/// `Step::RecvMount`: the mount the parent sent, if it sent one,
/// attached over `path`.
pub(crate) fn recv_mount(socket: BorrowedFd<'_>, path: &CStr) -> Result<(), Errno> {
    match recv_optional_fd(socket)? {
        Some(fd) => crate::mounts::attach_at(fd.as_fd(), path),
        None => Ok(()),
    }
}

/// Receives one byte from `socket`, and the fd sent with it if one was
/// (`SCM_RIGHTS`): what the parent sends for each lower it may have
/// idmapped. Allocates nothing.
fn recv_optional_fd(socket: BorrowedFd<'_>) -> Result<Option<OwnedFd>, Errno> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let got = rustix::net::recvmsg(
        socket,
        &mut [std::io::IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    if got.bytes == 0 {
        // The parent went away before sending.
        return Err(Errno::CONNRESET);
    }
    let mut fd = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message {
            fd = fds.next();
        }
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_up_is_one_newlink_request() {
        assert_eq!(message_len(&LOOPBACK_UP), Some(32));
        assert_eq!(
            u16::from_ne_bytes([LOOPBACK_UP[4], LOOPBACK_UP[5]]),
            libc::RTM_NEWLINK
        );
        assert_eq!(word(&LOOPBACK_UP, 20), Some(1));
        assert_eq!(word(&LOOPBACK_UP, 24), Some(libc::IFF_UP as u32));
    }

    #[test]
    fn first_error_reads_acks_and_refusals_and_nothing_else() {
        let mut ack = [0u8; 36];
        ack[..4].copy_from_slice(&36u32.to_ne_bytes());
        ack[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        ack[8..12].copy_from_slice(&7u32.to_ne_bytes());
        assert_eq!(first_error(&ack), Some((7, 0)));
        ack[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(first_error(&ack), Some((7, libc::EPERM)));
        assert_eq!(first_error(&ack[..19]), None);
        ack[4] = 0;
        ack[5] = 0;
        assert_eq!(first_error(&ack), None);
    }
}
