//! `EgressForwarder`: reads the sandbox's frames from the tap fd and
//! relays each allowed flow through a host socket of its own: TCP through a
//! userspace stack ([`super::tcp`]), UDP datagram by datagram, DNS to the
//! gateway to the host's resolver. ARP and neighbour discovery for the
//! gateway are answered by the stack; ICMP echo goes through unprivileged
//! ping sockets.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::Instant;

use sandbox_policy::Protocol;

use crate::egress::EgressAddressing;
use crate::error::{Error, Result};
use crate::forward::counters::Counters;
use crate::forward::echo::{EchoKey, EchoRelay};
use crate::forward::fragments::{Reassembly, fragment_of};
use crate::forward::frame::{GuestPacket, Mac, classify, neighbor_advert};
use crate::forward::limits::{ForwarderLimits, RateLimit};
use crate::forward::offload::partial_tcp_checksum;
use crate::forward::policy::{EgressPolicy, Refusal, Verdict};
use crate::forward::refusals::{RefusalLog, RefusalReason, protocol_name};
use crate::forward::tcp::{TCP_BUFFER_BYTES, TcpRelay};
use crate::forward::udp::UdpFlow;
use crate::tap::VNET_HDR_LEN;

/// The gateway's MAC address on the tap (locally administered).
pub const GATEWAY_MAC: Mac = [0x02, 0x53, 0x42, 0x58, 0x00, 0x02];

/// The largest frame read from the tap: a 64 KiB segment (GSO), its
/// Ethernet header and the virtio_net_hdr, rounded up.
pub(super) const FRAME_CAPACITY: usize = 65536 + 64;

/// ICMP errors the forwarder sends the sandbox per second at most (with a
/// burst of as many).
pub(super) const ICMP_ERRORS_PER_SECOND: u32 = 100;

/// Frames read from the tap before the stack runs: a sandbox flooding
/// the tap waits in its own queue, not in the forwarder's memory.
const TAP_BATCH: usize = 256;

/// The userspace side of a sandbox's egress.
pub struct EgressForwarder {
    pub(super) tap: OwnedFd,
    /// The tap's frames carry a `virtio_net_hdr`.
    vnet: bool,
    /// … and TCP checksums and segmentation are offloaded.
    offload: bool,
    pub(super) policy: EgressPolicy,
    pub(super) guest_mac: Option<Mac>,
    pub(super) dns_upstream: Option<SocketAddr>,
    pub(super) limits: ForwarderLimits,
    new_flows: RateLimit,
    /// ICMP errors sent to the sandbox.
    pub(super) icmp_errors: RateLimit,
    gateway_v6: Option<Ipv6Addr>,
    pub(super) flows: HashMap<(SocketAddr, SocketAddr), UdpFlow>,
    pub(super) echoes: EchoRelay,
    pub(super) tcp: TcpRelay,
    fragments: Reassembly,
    /// The `NETLINK_NETFILTER` socket in the sandbox's namespace, for the
    /// pin sets.
    pub(super) pin_socket: Option<OwnedFd>,
    /// The socket of the ruleset's log group (what the kernel refused).
    pub(super) log_socket: Option<OwnedFd>,
    /// Every refusal, bounded.
    pub(super) refusals: RefusalLog,
    pub(super) counters: Counters,
}

impl std::fmt::Debug for EgressForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressForwarder")
            .field("flows", &self.flows.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// The first `nameserver` of `/etc/resolv.conf`-style text, on port 53.
pub fn resolver_from(resolv_conf: &str) -> Option<SocketAddr> {
    resolv_conf.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next()?.parse::<IpAddr>().ok())
            .flatten()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

impl EgressForwarder {
    /// A forwarder for the tap `tap` (non-blocking is set here), enforcing
    /// `policy`. DNS queries to the gateway go to `dns_upstream`, or to the
    /// host's resolver from `/etc/resolv.conf` when `None`.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if the tap cannot be made non-blocking.
    pub fn new(
        tap: OwnedFd,
        policy: EgressPolicy,
        addressing: &EgressAddressing,
        dns_upstream: Option<SocketAddr>,
        limits: ForwarderLimits,
    ) -> Result<Self> {
        rustix::fs::fcntl_setfl(&tap, rustix::fs::OFlags::NONBLOCK)
            .map_err(Error::os("make the tap non-blocking"))?;
        let dns_upstream = dns_upstream.or_else(|| {
            std::fs::read_to_string("/etc/resolv.conf")
                .ok()
                .and_then(|text| resolver_from(&text))
        });
        // A tap with a virtio_net_hdr: checksums and segmentation offloaded
        // (frames up to 64 KiB each way, no checksum computed on either
        // side of the tap).
        let vnet = crate::has_vnet_hdr(&tap);
        let offload = vnet && crate::enable_offloads(&tap).is_ok();
        let headroom = if vnet { VNET_HDR_LEN } else { 0 };
        let mut policy = policy;
        policy
            .names
            .set_ttl_bounds(limits.min_pin_ttl, limits.max_pin_ttl);
        Ok(Self {
            tap,
            vnet,
            offload,
            policy,
            guest_mac: None,
            dns_upstream,
            limits,
            new_flows: RateLimit::new(limits.new_flows_per_second),
            icmp_errors: RateLimit::new(ICMP_ERRORS_PER_SECOND),
            gateway_v6: addressing.gateway.v6,
            flows: HashMap::new(),
            echoes: EchoRelay::default(),
            tcp: TcpRelay::new(
                GATEWAY_MAC,
                addressing,
                limits.tcp_handshake_timeout,
                headroom,
                offload,
            ),
            fragments: Reassembly::default(),
            pin_socket: None,
            log_socket: None,
            refusals: RefusalLog::default(),
            counters: Counters::default(),
        })
    }

    /// Gives the forwarder the `NETLINK_NETFILTER` socket a sandbox's
    /// child opened in its network namespace: the addresses DNS answers
    /// pin to allowed names are added to the ruleset's sets through it
    /// (without it, host-name rules pin nothing and their answers get
    /// SERVFAIL).
    pub fn set_pin_socket(&mut self, socket: OwnedFd) {
        self.pin_socket = Some(socket);
    }

    /// What it has done so far.
    pub fn counters(&self) -> Counters {
        Counters {
            tcp: self.tcp.counters,
            fragments: self.fragments.counters,
            ..self.counters
        }
    }

    /// Reads a batch of frames from the tap; `false` once it is closed.
    pub(super) fn read_tap(&mut self) -> Result<bool> {
        for _ in 0..TAP_BATCH {
            // Read into a buffer of its own that the stack then
            // takes as it is (no copy).
            let mut bytes = Vec::with_capacity(FRAME_CAPACITY);
            match rustix::io::read(&self.tap, rustix::buffer::spare_capacity(&mut bytes)) {
                Ok(0) => return Ok(false),
                Ok(_) => {
                    self.counters.frames_in += 1;
                    // The virtio_net_hdr says how the checksum and
                    // segmentation were offloaded: nothing here
                    // checks guest checksums, so it is skipped.
                    let start = if self.vnet { VNET_HDR_LEN } else { 0 };
                    if bytes.len() > start {
                        self.handle_frame(bytes, start);
                    }
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::os("read the tap")(e)),
            }
        }
        Ok(true)
    }

    /// Writes a frame the forwarder built itself (checksums complete).
    pub(super) fn send_frame(&mut self, frame: &[u8]) {
        let written = if self.vnet {
            let header = [0u8; VNET_HDR_LEN];
            rustix::io::writev(
                &self.tap,
                &[std::io::IoSlice::new(&header), std::io::IoSlice::new(frame)],
            )
        } else {
            rustix::io::write(&self.tap, frame)
        };
        if written.is_ok() {
            self.counters.frames_out += 1;
        }
    }

    /// Writes a frame of the TCP stack, which left room for the
    /// virtio_net_hdr in front (and, with offloads, no TCP checksum: the
    /// header tells the sandbox's kernel to trust the partial one).
    pub(super) fn send_stack_frame(&mut self, mut out: Vec<u8>) {
        if self.vnet {
            let (header, frame) = out.split_at_mut(VNET_HDR_LEN);
            header.fill(0);
            if self.offload
                && let Some(segment) = partial_tcp_checksum(frame)
            {
                const NEEDS_CSUM: u8 = 1;
                const GSO_TCPV4: u8 = 1;
                const GSO_TCPV6: u8 = 4;
                header[0] = NEEDS_CSUM;
                // Larger than the sandbox's MSS (the stack was told a
                // larger one): one write, segmented by the sandbox's
                // kernel as GSO.
                let mss = self.tcp.guest_mss(segment.v6);
                if segment.payload_len > usize::from(mss) {
                    header[1] = if segment.v6 { GSO_TCPV6 } else { GSO_TCPV4 };
                    let headers = (segment.l4 + segment.header_len) as u16;
                    header[2..4].copy_from_slice(&headers.to_le_bytes());
                    header[4..6].copy_from_slice(&mss.to_le_bytes());
                }
                header[6..8].copy_from_slice(&(segment.l4 as u16).to_le_bytes());
                header[8..10].copy_from_slice(&16u16.to_le_bytes());
            }
        }
        if rustix::io::write(&self.tap, &out).is_ok() {
            self.counters.frames_out += 1;
        }
        self.tcp.recycle(out);
    }

    /// A frame from the tap, starting at `frame[start..]`.
    fn handle_frame(&mut self, frame: Vec<u8>, start: usize) {
        // A fragment waits for the rest of its datagram; the whole one is
        // handled as if it had come in one frame.
        if let Some(fragment) = fragment_of(&frame[start..]) {
            if let Some(whole) = self.fragments.add(fragment, Instant::now()) {
                self.handle_frame(whole, 0);
            }
            return;
        }
        enum Action {
            Stack,
            Udp(SocketAddr, SocketAddr, Vec<u8>),
            Echo(IpAddr, IpAddr, u16, u16, Vec<u8>),
            NewTcp((SocketAddr, SocketAddr)),
        }
        let action = match classify(&frame[start..]) {
            GuestPacket::ArpRequest { sender_mac, .. } => {
                self.guest_mac = Some(sender_mac);
                self.counters.neighbours_answered += 1;
                Action::Stack
            }
            GuestPacket::NeighborSolicit {
                src_mac,
                src_ip,
                target,
            } => {
                self.guest_mac = Some(src_mac);
                self.counters.neighbours_answered += 1;
                // Answer for the gateway ourselves too (the stack learns
                // the sandbox's address from the solicitation it is given).
                if Some(target) == self.gateway_v6 && !src_ip.is_unspecified() {
                    let advert = neighbor_advert(GATEWAY_MAC, target, src_mac, src_ip);
                    self.send_frame(&advert);
                }
                Action::Stack
            }
            GuestPacket::Udp {
                src_mac,
                src,
                dst,
                payload,
            } => {
                self.guest_mac = Some(src_mac);
                Action::Udp(src, dst, payload.to_vec())
            }
            GuestPacket::Tcp {
                src, dst, flags, ..
            } => {
                if self.tcp.is_pending(&(src, dst)) {
                    // The host side is still connecting: a retransmitted
                    // SYN is held like the first (answered now, with no
                    // socket listening yet, it would get a reset), and a
                    // reset means the sandbox gave up.
                    if flags.rst {
                        self.tcp.abandon(&(src, dst));
                    }
                    return;
                }
                if flags.syn && !flags.ack && !self.tcp.knows(&(src, dst)) {
                    Action::NewTcp((src, dst))
                } else {
                    Action::Stack
                }
            }
            // Relayed through a ping socket, never to the stack (it would
            // answer for any address, faking reachability).
            GuestPacket::EchoRequest {
                src_mac,
                src,
                dst,
                ident,
                seq,
                payload,
            } => {
                self.guest_mac = Some(src_mac);
                Action::Echo(src, dst, ident, seq, payload.to_vec())
            }
            // ARP replies, neighbour advertisements and the like: the
            // stack's business (it drops what it has no use for).
            GuestPacket::Ignored(_) => {
                self.counters.ignored += 1;
                Action::Stack
            }
        };
        match action {
            Action::Stack => self.tcp.feed_at(frame, start),
            Action::Udp(src, dst, payload) => {
                if !self.relay_out(src, dst, &payload) {
                    self.prohibit(&frame[start..]);
                }
            }
            Action::Echo(src, dst, ident, seq, payload) => {
                self.echo_out(src, dst, ident, seq, &payload)
            }
            Action::NewTcp(key) => {
                let syn = frame[start..].to_vec();
                self.open_tcp(key, syn)
            }
        }
    }

    fn open_tcp(&mut self, key: (SocketAddr, SocketAddr), syn: Vec<u8>) {
        let dst = key.1;
        let Some((target, dns)) = self.flow_target(dst, Protocol::Tcp) else {
            return self.reset_syn(syn);
        };
        // DNS over TCP with names screened: message by message.
        let screened_dns = dns && self.screens_names();
        let flows = self.tcp.flows();
        if flows >= self.limits.max_tcp_flows
            || (flows + 1) * 2 * TCP_BUFFER_BYTES > self.limits.max_buffered_bytes
        {
            self.counters.over_limit += 1;
            self.record_refusal(
                RefusalReason::Cap,
                None,
                Some((dst.ip(), Some(dst.port()))),
                "tcp",
            );
            return self.reset_syn(syn);
        }
        if !self.new_flows.take() {
            // Over the rate: dropped, so the sandbox's retransmission a
            // second later goes through (a reset would fail the connect).
            self.counters.over_rate += 1;
            self.counters.tcp_dropped += 1;
            self.record_refusal(
                RefusalReason::Rate,
                None,
                Some((dst.ip(), Some(dst.port()))),
                "tcp",
            );
            return;
        }
        let check = self.policy.pin_check(dst.ip(), dst.port(), Protocol::Tcp);
        self.tcp.open(key, target, syn, check, screened_dns);
    }

    /// Where a new flow to `dst` goes: `dst` itself, or the resolver for
    /// DNS to the gateway (then `true`); `None`, the refusal counted, if
    /// the policy refuses it.
    pub(super) fn flow_target(
        &mut self,
        dst: SocketAddr,
        protocol: Protocol,
    ) -> Option<(SocketAddr, bool)> {
        match self.policy.decide(dst.ip(), dst.port(), protocol) {
            Verdict::Forward => Some((dst, false)),
            Verdict::Dns => match self.dns_upstream {
                Some(upstream) => {
                    self.counters.dns_queries += 1;
                    Some((upstream, true))
                }
                None => {
                    self.refuse(
                        Refusal::Gateway,
                        (dst.ip(), Some(dst.port())),
                        protocol_name(protocol),
                    );
                    None
                }
            },
            Verdict::Refuse(refusal) => {
                self.refuse(
                    refusal,
                    (dst.ip(), Some(dst.port())),
                    protocol_name(protocol),
                );
                None
            }
        }
    }

    /// Refuses a new connection at once: its SYN, given to the stack with
    /// no socket listening, is answered with a reset (the sandbox's
    /// connect fails with `ECONNREFUSED` rather than waiting out its
    /// timeout).
    fn reset_syn(&mut self, syn: Vec<u8>) {
        self.counters.tcp_dropped += 1;
        self.tcp.feed(syn);
    }

    /// An echo request from the guest: a new flow once the policy and the
    /// caps allow it, then the request out on its ping socket.
    fn echo_out(&mut self, guest: IpAddr, dst: IpAddr, ident: u16, seq: u16, payload: &[u8]) {
        let key = (guest, dst, ident);
        if !self.echoes.has(&key) {
            if let Verdict::Refuse(refusal) = self.policy.decide_echo(dst) {
                return self.refuse(refusal, (dst, None), "icmp");
            }
            if !self.admit_datagram_flow((dst, None), "icmp") {
                return;
            }
            if self.echoes.open(key).is_err() {
                self.counters.echo_unavailable += 1;
                return;
            }
        }
        if self.echoes.send(&key, seq, payload) {
            self.counters.echo_out += 1;
        }
    }

    /// The replies waiting on an echo flow, to the guest.
    pub(super) fn echo_in(&mut self, key: EchoKey, buffer: &mut [u8]) {
        let Some(guest_mac) = self.guest_mac else {
            return;
        };
        for frame in self.echoes.replies(&key, buffer, GATEWAY_MAC, guest_mac) {
            self.counters.echo_in += 1;
            self.send_frame(&frame);
        }
    }

    /// Whether a new UDP or echo flow fits the caps and the rate (counting
    /// it where it does not).
    pub(super) fn admit_datagram_flow(
        &mut self,
        dest: (IpAddr, Option<u16>),
        protocol: &'static str,
    ) -> bool {
        if self.flows.len() + self.echoes.len() >= self.limits.max_udp_flows {
            self.counters.over_limit += 1;
            self.record_refusal(RefusalReason::Cap, None, Some(dest), protocol);
            return false;
        }
        if !self.new_flows.take() {
            self.counters.over_rate += 1;
            self.record_refusal(RefusalReason::Rate, None, Some(dest), protocol);
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resolver_comes_from_resolv_conf() {
        let text = "# comment\nsearch example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n";
        assert_eq!(resolver_from(text), Some("192.0.2.53:53".parse().unwrap()));
        assert_eq!(
            resolver_from("nameserver ::1\n"),
            Some("[::1]:53".parse().unwrap())
        );
        assert_eq!(resolver_from("nameserver nonsense\n"), None);
        assert_eq!(resolver_from(""), None);
    }
}
