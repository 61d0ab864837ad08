//! UDP relaying: a host socket per flow (a source and destination pair),
//! opened once the policy and the caps allow it; DNS to the gateway goes
//! to the resolver, and a lookup's flow ends at its answer.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Instant;

use sandbox_policy::Protocol;

use crate::forward::dns::Screened;
use crate::forward::forwarder::{EgressForwarder, GATEWAY_MAC};
use crate::forward::frame::udp_frame;
use crate::forward::icmp::prohibited_frame;
use crate::forward::policy::{Refusal, Verdict};
use crate::forward::quic::QuicInspect;

pub(super) struct UdpFlow {
    pub(super) socket: UdpSocket,
    /// The guest's address and the destination it sent to (replies come
    /// from there, as the guest sees it).
    guest: SocketAddr,
    remote: SocketAddr,
    pub(super) last: Instant,
    /// For a DNS flow: the ids of the queries not yet answered. The flow
    /// ends as soon as none is left (a resolver opens a new port for each
    /// lookup: held for the idle time, lookups would run out of flows).
    dns: Option<Vec<u16>>,
    /// Whether this is a flow to the gateway's DNS (its answers are
    /// screened when names are).
    is_dns: bool,
    /// For a flow a name pin admitted: its datagrams held until the first
    /// shows what it is (a QUIC ClientHello's SNI is checked).
    quic: Option<QuicInspect>,
    /// Refused for what its first datagrams said: the rest are dropped.
    refused: bool,
}

/// Most queries a DNS flow tracks at once (past that it is tracked no
/// more, and lives until its idle time).
const DNS_PENDING: usize = 16;

/// The id of a DNS query (a message with QR clear), if `payload` is one.
fn dns_query_id(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 12 && payload[2] & 0x80 == 0)
        .then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

/// The id of a DNS answer (QR set), if `payload` is one.
fn dns_answer_id(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 12 && payload[2] & 0x80 != 0)
        .then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

impl EgressForwarder {
    /// Answers a refused datagram (`frame`) with ICMP administratively
    /// prohibited.
    pub(super) fn prohibit(&mut self, frame: &[u8]) {
        let Some(guest_mac) = self.guest_mac else {
            return;
        };
        // At most ICMP_ERRORS_PER_SECOND, as a router limits its own: a
        // flood of refused datagrams must not become a flood back.
        if !self.icmp_errors.take() {
            return;
        }
        if let Some(error) = prohibited_frame(GATEWAY_MAC, guest_mac, frame) {
            self.counters.prohibited_sent += 1;
            self.send_frame(&error);
        }
    }

    /// Relays a datagram out; `false` if the policy refused it (the caller
    /// answers with ICMP). Over a cap it is dropped (counted).
    pub(super) fn relay_out(&mut self, guest: SocketAddr, dst: SocketAddr, payload: &[u8]) -> bool {
        let key = (guest, dst);
        if self.screens_names()
            && self.policy.decide(dst.ip(), dst.port(), Protocol::Udp) == Verdict::Dns
        {
            match self.screen_query(payload) {
                Screened::Pass => {}
                Screened::Drop => return true,
                Screened::Answer(answer) => {
                    let frame = self
                        .guest_mac
                        .and_then(|mac| udp_frame(GATEWAY_MAC, mac, dst, guest, &answer));
                    if let Some(frame) = frame {
                        self.send_frame(&frame);
                    }
                    return true;
                }
            }
        }
        if !self.flows.contains_key(&key) {
            let Some((target, dns)) = self.flow_target(dst, Protocol::Udp) else {
                return false;
            };
            let is_dns = dns;
            let dns = dns.then(Vec::new);
            if !self.admit_datagram_flow((dst.ip(), Some(dst.port())), "udp") {
                return true;
            }
            match open_udp(target) {
                Ok(socket) => {
                    self.flows.insert(
                        key,
                        UdpFlow {
                            socket,
                            guest,
                            remote: dst,
                            last: Instant::now(),
                            dns,
                            is_dns,
                            quic: self
                                .policy
                                .pin_check(dst.ip(), dst.port(), Protocol::Udp)
                                .map(QuicInspect::new),
                            refused: false,
                        },
                    );
                }
                Err(_) => {
                    self.refuse(Refusal::NotAllowed, (dst.ip(), Some(dst.port())), "udp");
                    return false;
                }
            }
        } else if self.policy.decide(dst.ip(), dst.port(), Protocol::Udp) == Verdict::Dns {
            self.counters.dns_queries += 1;
        }
        // A pinned flow's first datagrams: held until judged.
        let verdict = match self.flows.get_mut(&key) {
            Some(flow) if flow.refused => return true,
            Some(UdpFlow {
                quic: Some(quic), ..
            }) => match quic.judge(payload) {
                None => return true,
                Some(verdict) => Some(verdict),
            },
            _ => None,
        };
        match verdict {
            Some(Ok(())) => {
                let Some(flow) = self.flows.get_mut(&key) else {
                    return true;
                };
                let held = flow.quic.take().map(|q| q.held).unwrap_or_default();
                flow.last = Instant::now();
                for datagram in held {
                    if flow.socket.send(&datagram).is_ok() {
                        self.counters.udp_out += 1;
                    }
                }
                return true;
            }
            Some(Err((refusal, name))) => {
                if let Some(flow) = self.flows.get_mut(&key) {
                    flow.quic = None;
                    flow.refused = true;
                }
                self.refuse_first_bytes(refusal, name, dst, "udp");
                return false;
            }
            None => {}
        }
        if let Some(flow) = self.flows.get_mut(&key) {
            flow.last = Instant::now();
            if flow.socket.send(payload).is_ok() {
                self.counters.udp_out += 1;
                if let (Some(pending), Some(id)) = (&mut flow.dns, dns_query_id(payload))
                    && !pending.contains(&id)
                {
                    if pending.len() < DNS_PENDING {
                        pending.push(id);
                    } else {
                        // Too many to track: the flow lives its idle time.
                        flow.dns = None;
                    }
                }
            }
        }
        true
    }

    pub(super) fn relay_in(&mut self, key: (SocketAddr, SocketAddr), buffer: &mut [u8]) {
        let Some(guest_mac) = self.guest_mac else {
            return;
        };
        let mut replies = Vec::new();
        let mut answered = false;
        let Some(flow) = self.flows.get_mut(&key) else {
            return;
        };
        let (remote, guest, is_dns) = (flow.remote, flow.guest, flow.is_dns);
        loop {
            match flow.socket.recv(buffer) {
                Ok(n) => {
                    flow.last = Instant::now();
                    if let (Some(pending), Some(id)) = (&mut flow.dns, dns_answer_id(&buffer[..n]))
                    {
                        pending.retain(|&p| p != id);
                        answered |= pending.is_empty();
                    }
                    replies.push(buffer[..n].to_vec());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        let screen = is_dns && self.screens_names();
        for reply in replies {
            let reply = if screen {
                match self.screen_answer(&reply) {
                    Screened::Pass => reply,
                    Screened::Answer(answer) => answer,
                    Screened::Drop => continue,
                }
            } else {
                reply
            };
            if let Some(frame) = udp_frame(GATEWAY_MAC, guest_mac, remote, guest, &reply) {
                self.counters.udp_in += 1;
                self.send_frame(&frame);
            }
        }
        // Every query of the lookup is answered: the flow ends now.
        if answered {
            self.flows.remove(&key);
        }
    }
}

fn open_udp(target: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = if target.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(target)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

#[cfg(test)]
mod dns_tests {
    use super::*;

    #[test]
    fn queries_and_answers_are_told_apart_by_their_qr_bit() {
        let mut query = [0u8; 12];
        query[..2].copy_from_slice(&0xbeefu16.to_be_bytes());
        query[2] = 0x01; // RD
        assert_eq!(dns_query_id(&query), Some(0xbeef));
        assert_eq!(dns_answer_id(&query), None);
        let mut answer = query;
        answer[2] |= 0x80; // QR
        assert_eq!(dns_answer_id(&answer), Some(0xbeef));
        assert_eq!(dns_query_id(&answer), None);
        // Shorter than a header: neither.
        assert_eq!(dns_query_id(&query[..11]), None);
        assert_eq!(dns_answer_id(&answer[..11]), None);
    }
}
