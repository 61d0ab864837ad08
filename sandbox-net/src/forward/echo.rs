//! ICMP echo: each request the policy allows goes out through an
//! unprivileged ping socket of its own (the host kernel picks the
//! identifier and checks the checksum); replies come back with the
//! sandbox's identifier.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::Instant;

use crate::forward::forwarder::{EgressForwarder, GATEWAY_MAC};
use crate::forward::frame::echo_reply_frame;
use crate::forward::policy::Verdict;

/// An echo "flow": the guest's identifier towards one destination, over a
/// ping socket of its own (the kernel gives it another identifier).
pub(super) struct EchoFlow {
    pub(super) socket: OwnedFd,
    guest: IpAddr,
    remote: IpAddr,
    ident: u16,
    pub(super) last: Instant,
}

pub(super) type EchoKey = (IpAddr, IpAddr, u16);

impl EgressForwarder {
    pub(super) fn echo_out(
        &mut self,
        guest: IpAddr,
        dst: IpAddr,
        ident: u16,
        seq: u16,
        payload: &[u8],
    ) {
        let key = (guest, dst, ident);
        if !self.echoes.contains_key(&key) {
            if let Verdict::Refuse(refusal) = self.policy.decide_echo(dst) {
                return self.refuse(refusal);
            }
            if !self.admit_datagram_flow() {
                return;
            }
            match open_ping(dst) {
                Ok(socket) => {
                    self.echoes.insert(
                        key,
                        EchoFlow {
                            socket,
                            guest,
                            remote: dst,
                            ident,
                            last: Instant::now(),
                        },
                    );
                }
                Err(_) => {
                    self.counters.echo_unavailable += 1;
                    return;
                }
            }
        }
        if let Some(flow) = self.echoes.get_mut(&key) {
            flow.last = Instant::now();
            // The kernel sets its own identifier and the checksum.
            let request_type = if dst.is_ipv4() { 8 } else { 128 };
            let mut message = Vec::with_capacity(8 + payload.len());
            message.extend_from_slice(&[request_type, 0, 0, 0]);
            message.extend_from_slice(&ident.to_be_bytes());
            message.extend_from_slice(&seq.to_be_bytes());
            message.extend_from_slice(payload);
            if rustix::net::send(&flow.socket, &message, rustix::net::SendFlags::empty()).is_ok() {
                self.counters.echo_out += 1;
            }
        }
    }

    pub(super) fn echo_in(&mut self, key: EchoKey, buffer: &mut [u8]) {
        let Some(guest_mac) = self.guest_mac else {
            return;
        };
        let mut replies = Vec::new();
        if let Some(flow) = self.echoes.get_mut(&key) {
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
                if let Some(frame) = echo_reply_frame(
                    GATEWAY_MAC,
                    guest_mac,
                    flow.remote,
                    flow.guest,
                    flow.ident,
                    seq,
                    &message[8..],
                ) {
                    replies.push(frame);
                }
            }
        }
        for frame in replies {
            self.counters.echo_in += 1;
            self.send_frame(&frame);
        }
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
