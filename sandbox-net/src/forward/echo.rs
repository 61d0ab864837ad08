//! ICMP echo: each request the policy allows goes out through an
//! unprivileged ping socket of its own (the host kernel picks the
//! identifier and checks the checksum); replies come back with the
//! sandbox's identifier. A relay of its own, like the TCP one: the
//! forwarder decides (policy, caps) and moves frames; this owns the
//! sockets.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::forward::frame::{Mac, echo_reply_frame};

/// An echo "flow": the guest's identifier towards one destination, over a
/// ping socket of its own (the kernel gives it another identifier).
struct EchoFlow {
    socket: OwnedFd,
    guest: IpAddr,
    remote: IpAddr,
    ident: u16,
    last: Instant,
}

/// `(guest, remote, identifier)`.
pub(super) type EchoKey = (IpAddr, IpAddr, u16);

/// The echo flows, by key.
#[derive(Default)]
pub(super) struct EchoRelay {
    flows: HashMap<EchoKey, EchoFlow>,
}

impl EchoRelay {
    /// How many flows are open.
    pub(super) fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether `key` has a flow already (no policy decision needed).
    pub(super) fn has(&self, key: &EchoKey) -> bool {
        self.flows.contains_key(key)
    }

    /// Opens the flow of `key` (the forwarder admitted it).
    ///
    /// # Errors
    ///
    /// The host refused a ping socket.
    pub(super) fn open(&mut self, key: EchoKey) -> io::Result<()> {
        let (guest, remote, ident) = key;
        let socket = open_ping(remote)?;
        self.flows.insert(
            key,
            EchoFlow {
                socket,
                guest,
                remote,
                ident,
                last: Instant::now(),
            },
        );
        Ok(())
    }

    /// Sends request `seq` with `payload` on the flow of `key`; whether it
    /// went out.
    pub(super) fn send(&mut self, key: &EchoKey, seq: u16, payload: &[u8]) -> bool {
        let Some(flow) = self.flows.get_mut(key) else {
            return false;
        };
        flow.last = Instant::now();
        // The kernel sets its own identifier and the checksum.
        let request_type = if flow.remote.is_ipv4() { 8 } else { 128 };
        let mut message = Vec::with_capacity(8 + payload.len());
        message.extend_from_slice(&[request_type, 0, 0, 0]);
        message.extend_from_slice(&flow.ident.to_be_bytes());
        message.extend_from_slice(&seq.to_be_bytes());
        message.extend_from_slice(payload);
        rustix::net::send(&flow.socket, &message, rustix::net::SendFlags::empty()).is_ok()
    }

    /// The flows' sockets, to poll.
    pub(super) fn sockets(&self) -> Vec<(EchoKey, BorrowedFd<'_>)> {
        use std::os::fd::AsFd;
        self.flows
            .iter()
            .map(|(key, flow)| (*key, flow.socket.as_fd()))
            .collect()
    }

    /// The replies waiting on the flow of `key`, as frames from
    /// `gateway_mac` to `guest_mac`.
    pub(super) fn replies(
        &mut self,
        key: &EchoKey,
        buffer: &mut [u8],
        gateway_mac: Mac,
        guest_mac: Mac,
    ) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let Some(flow) = self.flows.get_mut(key) else {
            return frames;
        };
        let reply_type = if flow.remote.is_ipv4() { 0 } else { 129 };
        while let Ok((n, _)) =
            rustix::net::recv(&flow.socket, &mut *buffer, rustix::net::RecvFlags::empty())
        {
            let message = &buffer[..n.min(buffer.len())];
            if message.len() < 8 || message[0] != reply_type {
                continue;
            }
            flow.last = Instant::now();
            let seq = u16::from_be_bytes([message[6], message[7]]);
            frames.extend(echo_reply_frame(
                gateway_mac,
                guest_mac,
                flow.remote,
                flow.guest,
                flow.ident,
                seq,
                &message[8..],
            ));
        }
        frames
    }

    /// Closes the flows idle for `idle` or longer.
    pub(super) fn expire(&mut self, idle: Duration) {
        self.flows.retain(|_, flow| flow.last.elapsed() < idle);
    }
}

/// An unprivileged ICMP (or ICMPv6) "ping" socket connected to `target`.
fn open_ping(target: IpAddr) -> io::Result<OwnedFd> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, ipproto};
    let (family, protocol) = match target {
        IpAddr::V4(_) => (AddressFamily::INET, ipproto::ICMP),
        IpAddr::V6(_) => (AddressFamily::INET6, ipproto::ICMPV6),
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        Some(protocol),
    )?;
    rustix::net::connect(&fd, &SocketAddr::new(target, 0))?;
    Ok(fd)
}
