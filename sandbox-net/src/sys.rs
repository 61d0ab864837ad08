//! The raw syscalls and FFI this crate makes. The only module allowed to
//! use `unsafe`; the netlink sender and the fd-passing sender allocate
//! nothing, so a child forked from a multithreaded process may call them.
#![allow(unsafe_code)]

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

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;

/// The netlink messages of a buffer: `(type, flags, seq, message)`.
fn messages(bytes: &[u8]) -> impl Iterator<Item = (u16, u16, u32, &[u8])> {
    let mut offset = 0usize;
    std::iter::from_fn(move || {
        if offset + 16 > bytes.len() {
            return None;
        }
        let word = |at: usize| [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        let len = u32::from_ne_bytes(word(offset)) as usize;
        if len < 16 || offset + len > bytes.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([bytes[offset + 4], bytes[offset + 5]]);
        let flags = u16::from_ne_bytes([bytes[offset + 6], bytes[offset + 7]]);
        let seq = u32::from_ne_bytes(word(offset + 8));
        let message = &bytes[offset..offset + len];
        offset += (len + 3) & !3;
        Some((kind, flags, seq, message))
    })
}

/// How many messages of a batch ask for an ACK.
pub(crate) fn count_ack_requests(bytes: &[u8]) -> u32 {
    messages(bytes)
        .filter(|(_, flags, _, _)| flags & libc::NLM_F_ACK as u16 != 0)
        .count() as u32
}

/// Sends a whole nfnetlink batch with one `send` and waits for `acks`
/// ACKs; the first error ends it: `Err((sequence, errno))`. Stack buffers
/// only.
pub(crate) fn send_batch_and_check_acks(
    fd: i32,
    bytes: &[u8],
    acks: u32,
) -> Result<(), (u32, i32)> {
    // SAFETY: send(2) of a live slice on the caller's socket.
    let sent = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), 0) };
    if sent != bytes.len() as isize {
        return Err((0, errno()));
    }
    let mut reply = [0u8; 8192];
    let mut received = 0;
    while received < acks {
        // SAFETY: recv(2) into a live stack buffer.
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

/// What to dump from table `inet <table>`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DumpKind {
    Chains,
    Rules,
}

/// An aligned copy of one netlink message, for libnftnl's parsers.
fn aligned(message: &[u8]) -> Vec<u64> {
    let mut buffer = vec![0u64; message.len().div_ceil(8)];
    // SAFETY: the u64 buffer has at least message.len() bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            message.as_ptr(),
            buffer.as_mut_ptr().cast::<u8>(),
            message.len(),
        );
    }
    buffer
}

/// Renders one NEWRULE message with libnftnl (no handle, position or id).
fn render_rule(message: &[u8]) -> Result<String, String> {
    use nftnl_sys as nft;
    let buffer = aligned(message);
    // SAFETY: libnftnl allocates a rule, parses the (aligned, complete)
    // message into it, prints it into our buffer, and we free it.
    unsafe {
        let rule = nft::nftnl_rule_alloc();
        if rule.is_null() {
            return Err("nftnl_rule_alloc failed".into());
        }
        let parsed = nft::nftnl_rule_nlmsg_parse(buffer.as_ptr().cast(), rule);
        let result = if parsed < 0 {
            Err(format!("nftnl_rule_nlmsg_parse: errno {}", errno()))
        } else {
            for attr in [
                nft::NFTNL_RULE_HANDLE,
                nft::NFTNL_RULE_POSITION,
                nft::NFTNL_RULE_ID,
            ] {
                nft::nftnl_rule_unset(rule, attr as u16);
            }
            let mut text = vec![0u8; 16 * 1024];
            let n = nft::nftnl_rule_snprintf(
                text.as_mut_ptr().cast(),
                text.len(),
                rule,
                nft::NFTNL_OUTPUT_DEFAULT,
                0,
            );
            if n < 0 {
                Err("nftnl_rule_snprintf failed".into())
            } else {
                text.truncate((n as usize).min(text.len()));
                Ok(String::from_utf8_lossy(&text).trim().to_string())
            }
        };
        nft::nftnl_rule_free(rule);
        result
    }
}

/// Renders one NEWCHAIN message as `name (hook H, policy P)`.
fn render_chain(message: &[u8]) -> Result<String, String> {
    use nftnl_sys as nft;
    let buffer = aligned(message);
    // SAFETY: as in render_rule, for a chain; the strings libnftnl returns
    // live as long as the chain, which we free after copying them.
    unsafe {
        let chain = nft::nftnl_chain_alloc();
        if chain.is_null() {
            return Err("nftnl_chain_alloc failed".into());
        }
        let result = if nft::nftnl_chain_nlmsg_parse(buffer.as_ptr().cast(), chain) < 0 {
            Err(format!("nftnl_chain_nlmsg_parse: errno {}", errno()))
        } else {
            let name = nft::nftnl_chain_get_str(chain, nft::NFTNL_CHAIN_NAME as u16);
            let name = if name.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(name)
                    .to_string_lossy()
                    .into_owned()
            };
            let hook = match nft::nftnl_chain_get_u32(chain, nft::NFTNL_CHAIN_HOOKNUM as u16) {
                0 => "prerouting",
                1 => "input",
                2 => "forward",
                3 => "output",
                4 => "postrouting",
                _ => "?",
            };
            let policy = match nft::nftnl_chain_get_u32(chain, nft::NFTNL_CHAIN_POLICY as u16) {
                0 => "drop",
                1 => "accept",
                _ => "?",
            };
            Ok(format!("{name} (hook {hook}, policy {policy})"))
        };
        nft::nftnl_chain_free(chain);
        result
    }
}

/// The NEWRULE messages of our own batch, rendered.
pub(crate) fn render_rules(batch: &[u8]) -> Result<Vec<String>, String> {
    messages(batch)
        .filter(|(kind, _, _, _)| *kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE)
        .map(|(_, _, _, message)| render_rule(message))
        .collect()
}

/// Dumps the chains or rules of table `inet <table>` on `fd`, rendered by
/// libnftnl. `Err((what, errno))` if the kernel refused.
pub(crate) fn nft_dump(fd: i32, kind: DumpKind, table: &str) -> Result<Vec<String>, (String, i32)> {
    use nftnl_sys as nft;
    let what = match kind {
        DumpKind::Chains => format!("list chains of inet {table}"),
        DumpKind::Rules => format!("list rules of inet {table}"),
    };
    let table_name = std::ffi::CString::new(table).map_err(|_| (what.clone(), libc::EINVAL))?;
    let mut request = vec![0u64; 512];
    // SAFETY: libnftnl writes a header and a payload into our 4 KiB aligned
    // buffer (far more than a dump request needs); the objects are freed.
    let len = unsafe {
        let buf = request.as_mut_ptr().cast::<libc::c_char>();
        let (msg, flags) = match kind {
            DumpKind::Chains => (NFT_MSG_GETCHAIN, libc::NLM_F_DUMP),
            DumpKind::Rules => (NFT_MSG_GETRULE, libc::NLM_F_DUMP),
        };
        let header =
            nft::nftnl_nlmsg_build_hdr(buf, msg, libc::NFPROTO_INET as u16, flags as u16, 1);
        match kind {
            DumpKind::Chains => {
                let chain = nft::nftnl_chain_alloc();
                if chain.is_null() {
                    return Err((what, libc::ENOMEM));
                }
                nft::nftnl_chain_set_str(chain, nft::NFTNL_CHAIN_TABLE as u16, table_name.as_ptr());
                nft::nftnl_chain_nlmsg_build_payload(header, chain);
                nft::nftnl_chain_free(chain);
            }
            DumpKind::Rules => {
                let rule = nft::nftnl_rule_alloc();
                if rule.is_null() {
                    return Err((what, libc::ENOMEM));
                }
                nft::nftnl_rule_set_str(rule, nft::NFTNL_RULE_TABLE as u16, table_name.as_ptr());
                nft::nftnl_rule_nlmsg_build_payload(header, rule);
                nft::nftnl_rule_free(rule);
            }
        }
        (*header).nlmsg_len as usize
    };
    let request_bytes =
        // SAFETY: the buffer holds `len` initialized bytes written above.
        unsafe { std::slice::from_raw_parts(request.as_ptr().cast::<u8>(), len.min(4096)) };
    // SAFETY: send(2) of a live slice.
    if unsafe { libc::send(fd, request_bytes.as_ptr().cast(), request_bytes.len(), 0) } < 0 {
        return Err((what, errno()));
    }
    let mut out = Vec::new();
    let mut reply = vec![0u64; 16 * 1024];
    loop {
        // SAFETY: recv(2) into a live buffer of the size given.
        let n = unsafe { libc::recv(fd, reply.as_mut_ptr().cast(), reply.len() * 8, 0) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err((what, errno()));
        }
        // SAFETY: recv wrote n bytes into the buffer.
        let bytes = unsafe { std::slice::from_raw_parts(reply.as_ptr().cast::<u8>(), n as usize) };
        if bytes.is_empty() {
            return Err((what, libc::EPROTO));
        }
        for (kind, _, _, message) in messages(bytes) {
            match kind {
                k if k == libc::NLMSG_DONE as u16 => return Ok(out),
                k if k == libc::NLMSG_ERROR as u16 => {
                    if let Some((_, e)) = first_error(message)
                        && e != 0
                    {
                        return Err((what, e));
                    }
                }
                k if k == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE => {
                    out.push(render_rule(message).map_err(|_| (what.clone(), libc::EPROTO))?);
                }
                k if k == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWCHAIN => {
                    out.push(render_chain(message).map_err(|_| (what.clone(), libc::EPROTO))?);
                }
                _ => {}
            }
        }
    }
}

/// `unshare(CLONE_NEWNET)` for the calling thread only.
pub(crate) fn unshare_netns() -> Result<(), Errno> {
    // SAFETY: CLONE_NEWNET changes only the calling thread's network
    // namespace; it does not unshare the fd table or anything Rust's
    // runtime relies on (the hazard `unshare_unsafe` warns about).
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
}

/// `NFT_MSG_DESTROYTABLE` (Linux 6.3): delete a table if it exists, no
/// error if it does not.
const NFT_MSG_DESTROYTABLE: u16 = 26;

/// A "destroy table `inet <name>`" message for an nftnl batch.
pub(crate) struct DestroyTable {
    name: std::ffi::CString,
}

impl DestroyTable {
    pub(crate) fn new(name: std::ffi::CString) -> Self {
        Self { name }
    }
}

// SAFETY: `write` builds one message (a header and a name attribute, far
// below nft_nlmsg_maxsize) in the buffer nftnl's Batch provides.
unsafe impl nftnl::NlMsg for DestroyTable {
    unsafe fn write(&self, buf: *mut libc::c_void, seq: u32, _msg_type: nftnl::MsgType) {
        use nftnl_sys as nft;
        // SAFETY: libnftnl writes the header and the payload into `buf`
        // (the caller guarantees its size); the table object is freed.
        unsafe {
            let header = nft::nftnl_nlmsg_build_hdr(
                buf.cast(),
                NFT_MSG_DESTROYTABLE,
                libc::NFPROTO_INET as u16,
                libc::NLM_F_ACK as u16,
                seq,
            );
            let table = nft::nftnl_table_alloc();
            if table.is_null() {
                std::process::abort();
            }
            nft::nftnl_table_set_str(table, nft::NFTNL_TABLE_NAME as u16, self.name.as_ptr());
            nft::nftnl_table_nlmsg_build_payload(header, table);
            nft::nftnl_table_free(table);
        }
    }
}

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
        request.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
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
