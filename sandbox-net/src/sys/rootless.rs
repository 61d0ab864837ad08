//! The child of `EgressNamespace::create_rootless`.

use rustix::io::Errno;

use super::nft::send_batch_and_check_acks;
use super::{errno, send_and_check_acks, send_fd_raw};

/// Everything the child of [`EgressNamespace::create_rootless`] needs,
/// built before the clone.
///
/// [`EgressNamespace::create_rootless`]: crate::EgressNamespace::create_rootless
pub(crate) struct RootlessPlan {
    pub(crate) sync_read: i32,
    pub(crate) status_write: i32,
    pub(crate) fd_socket: i32,
    pub(crate) lo_up: Vec<u8>,
    pub(crate) lo_up_count: u32,
    pub(crate) nft_batch: Vec<u8>,
    pub(crate) nft_acks: u32,
    pub(crate) tap_name: std::ffi::CString,
    pub(crate) tap_index: i32,
    pub(crate) tap_setup: Vec<u8>,
    pub(crate) tap_setup_count: u32,
    pub(crate) fd_buffer: Vec<u8>,
}

/// The steps of the rootless child, for error messages.
pub(crate) const ROOTLESS_STEPS: [&str; 9] = [
    "wait for the id maps",
    "open a NETLINK_ROUTE socket",
    "bring loopback up",
    "install the ruleset (NETLINK_NETFILTER)",
    "open /dev/net/tun",
    "TUNSETIFF",
    "check the tap's index",
    "configure the tap (MTU, queue, addresses, up, routes)",
    "pass the tap and namespace fds to the parent",
];

fn child_fail(status: i32, step: usize, errno: i32) -> ! {
    let record = [step as i32, errno];
    // SAFETY: write(2) of a live local, then _exit(2).
    unsafe {
        libc::write(status, record.as_ptr().cast(), 8);
        libc::_exit(1)
    }
}

fn rootless_child(plan: &mut RootlessPlan) -> ! {
    let status = plan.status_write;
    let fail = |step: usize, errno: i32| -> ! { child_fail(status, step, errno) };
    // SAFETY (whole function): raw syscalls on buffers the plan owns (this
    // process's copy) and on fds the parent prepared; no allocation.
    unsafe {
        let mut byte = 0u8;
        if libc::read(plan.sync_read, (&mut byte as *mut u8).cast(), 1) != 1 {
            fail(0, libc::ECANCELED);
        }
        let route = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        );
        if route < 0 {
            fail(1, errno());
        }
        if let Err((_, e)) = send_and_check_acks(route, &plan.lo_up, plan.lo_up_count) {
            fail(2, e);
        }
        let nft = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        );
        if nft < 0 {
            fail(3, errno());
        }
        if let Err((_, e)) = send_batch_and_check_acks(nft, &plan.nft_batch, plan.nft_acks) {
            fail(3, e);
        }
        let tun = libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if tun < 0 {
            fail(4, errno());
        }
        let mut request: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(plan.tap_name.as_bytes()) {
            *slot = *byte as libc::c_char;
        }
        // A virtio_net_hdr on every frame: the forwarder offloads
        // checksums and segmentation.
        request.ifr_ifru.ifru_flags =
            (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
        if libc::ioctl(tun, libc::TUNSETIFF as _, &mut request) < 0 {
            fail(5, errno());
        }
        if libc::ioctl(route, libc::SIOCGIFINDEX as _, &mut request) < 0 {
            fail(6, errno());
        }
        if request.ifr_ifru.ifru_ifindex != plan.tap_index {
            fail(6, libc::ENXIO);
        }
        if let Err((_, e)) = send_and_check_acks(route, &plan.tap_setup, plan.tap_setup_count) {
            fail(7, e);
        }
        let netns = libc::open(
            c"/proc/self/ns/net".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if netns < 0 {
            fail(8, errno());
        }
        for fd in [tun, netns] {
            if let Err(e) = send_fd_raw(plan.fd_socket, fd, &mut plan.fd_buffer) {
                fail(8, e);
            }
        }
        libc::_exit(0)
    }
}

/// Clones the rootless child (new user and network namespaces) and runs
/// `plan` in it; returns its pid.
pub(crate) fn spawn_rootless(plan: &mut RootlessPlan) -> Result<i32, Errno> {
    let flags = (libc::CLONE_NEWUSER | libc::CLONE_NEWNET) as u64 | libc::SIGCHLD as u64;
    // SAFETY: clone(2) without CLONE_VM and with a NULL stack behaves like
    // fork: the child gets a copy of the address space and runs only
    // rootless_child (raw syscalls, no allocation, no locks), then _exit.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
            0usize,
        )
    };
    if pid < 0 {
        return Err(Errno::from_raw_os_error(errno()));
    }
    if pid == 0 {
        rootless_child(plan);
    }
    Ok(pid as i32)
}

/// Reaps our child `pid`.
pub(crate) fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid(2) on our own child with a live local.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && errno() == libc::EINTR {}
}
