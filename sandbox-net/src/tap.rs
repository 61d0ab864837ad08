//! Tap devices through `/dev/net/tun`, and passing their fds over a unix
//! socket (`SCM_RIGHTS`).

use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

use crate::error::{Error, Result};
use crate::sys;

/// How a tap device is created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapOptions {
    /// `IFF_VNET_HDR`: frames carry a `virtio_net_hdr` (for offloads).
    pub vnet_hdr: bool,
    /// `IFF_MULTI_QUEUE`: more queues can be attached with the same name.
    pub multi_queue: bool,
}

/// The longest interface name the kernel takes (`IFNAMSIZ` - 1).
pub const MAX_NAME_LEN: usize = 15;

pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name
            .bytes()
            .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace())
    {
        return Err(Error::Invalid {
            what: "interface name",
            detail: format!("{name:?}: 1 to {MAX_NAME_LEN} bytes, no NUL, '/' or whitespace"),
        });
    }
    Ok(())
}

/// `open("/dev/net/tun")` + `ioctl(TUNSETIFF, IFF_TAP | IFF_NO_PI)`—Creates
/// (or attaches to) tap device `name` in the caller's network namespace and
/// returns its queue fd (`O_CLOEXEC`, blocking).
///
/// The caller needs `CAP_NET_ADMIN` over the network namespace (root, or
/// root of a user namespace owning it).
///
/// # Errors
///
/// [`Error::Invalid`] for a bad name; [`Error::Os`] with the errno of the
/// open or the ioctl.
///
/// # References
///  - [Linux](https://docs.kernel.org/networking/tuntap.html)
#[doc(alias = "TUNSETIFF")]
pub fn create_tap(name: &str, options: TapOptions) -> Result<OwnedFd> {
    check_name(name)?;
    let tun = rustix::fs::open(
        "/dev/net/tun",
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(Error::os("open /dev/net/tun"))?;
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if options.vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    if options.multi_queue {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    let c_name = std::ffi::CString::new(name).map_err(|_| Error::Invalid {
        what: "tap name",
        detail: format!("{name:?} contains a NUL byte"),
    })?;
    sandbox_child::net::tun_set_iff(tun.as_fd(), &c_name, flags as libc::c_short)
        .map_err(Error::os(format!("TUNSETIFF {name}")))?;
    Ok(tun)
}

/// The size of the `virtio_net_hdr` in front of every frame of a tap
/// created with [`TapOptions::vnet_hdr`] (the kernel's default).
pub const VNET_HDR_LEN: usize = 10;

/// Whether `tap` is a tap device whose frames carry a `virtio_net_hdr`
/// (`false` for anything else, a socket say).
pub fn has_vnet_hdr(tap: impl AsFd) -> bool {
    sys::tun_get_flags(tap.as_fd())
        .is_ok_and(|flags| flags & libc::IFF_VNET_HDR as libc::c_short != 0)
}

/// Lets the sandbox side of a `vnet_hdr` tap hand over TCP segments with
/// only a partial checksum and up to 64 KiB long whatever the MTU
/// (`TUNSETOFFLOAD` with `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`), its
/// headers little-endian (`TUNSETVNETLE`): the reader then sees
/// `NEEDS_CSUM` and GSO frames.
///
/// # Errors
///
/// [`Error::Os`] with the errno of the ioctl.
pub fn enable_offloads(tap: impl AsFd) -> Result<()> {
    const TUN_F_CSUM: libc::c_uint = 0x01;
    const TUN_F_TSO4: libc::c_uint = 0x02;
    const TUN_F_TSO6: libc::c_uint = 0x04;
    const TUNSETVNETLE: libc::c_ulong = 0x400454dc;
    // Little-endian headers on every host (a no-op on little-endian ones;
    // kernels without cross-endian support refuse it, harmlessly there).
    let _ = sys::tun_set(tap.as_fd(), TUNSETVNETLE, 1, true);
    sys::tun_set(
        tap.as_fd(),
        libc::TUNSETOFFLOAD as libc::c_ulong,
        TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
        false,
    )
    .map_err(Error::os("TUNSETOFFLOAD"))
}

/// Sends `fd` over the unix socket `socket` (`SCM_RIGHTS`, one byte of
/// payload).
///
/// # Errors
///
/// [`Error::Os`] with the errno of `sendmsg`.
pub fn send_fd(socket: impl AsFd, fd: impl AsFd) -> Result<()> {
    sandbox_child::net::send_fd(socket.as_fd(), fd.as_fd())
        .map_err(Error::os("sendmsg(SCM_RIGHTS)"))
}

/// Receives one fd sent by [`send_fd`] (or by a sandbox's child); it comes
/// `O_CLOEXEC`.
///
/// # Errors
///
/// [`Error::Os`] with the errno of `recvmsg`; [`Error::Malformed`] if the
/// message carried no fd.
pub fn recv_fd(socket: impl AsFd) -> Result<OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    recvmsg(
        socket,
        &mut [std::io::IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(Error::os("recvmsg(SCM_RIGHTS)"))?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err(Error::Malformed {
        request: "recvmsg(SCM_RIGHTS)".into(),
        detail: "no fd in the message".into(),
    })
}
