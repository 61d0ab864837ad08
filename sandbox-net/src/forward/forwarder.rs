//! `EgressForwarder`: reads the sandbox's frames from the tap fd and
//! relays each allowed flow through a host socket of its own: TCP through a
//! userspace stack ([`super::tcp`]), UDP datagram by datagram, DNS to the
//! gateway to the host's resolver. ARP and neighbour discovery for the
//! gateway are answered by the stack. ICMP echo is not relayed yet.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use sandbox_policy::Protocol;

use crate::egress::EgressAddressing;
use crate::error::{Error, Result};
use crate::forward::frame::{GuestPacket, Mac, classify, neighbor_advert, udp_frame};
use crate::forward::policy::{EgressPolicy, Refusal, Verdict};
use crate::forward::tcp::{TCP_BUFFER_BYTES, TcpCounters, TcpRelay};

/// The gateway's MAC address on the tap (locally administered).
pub const GATEWAY_MAC: Mac = [0x02, 0x53, 0x42, 0x58, 0x00, 0x02];

/// Limits that keep one sandbox from exhausting the forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwarderLimits {
    /// UDP flows open at once; new ones beyond are refused.
    pub max_udp_flows: usize,
    /// A UDP flow with no traffic for this long is closed.
    pub udp_idle: Duration,
    /// TCP connections open (or opening) at once; new SYNs beyond are
    /// dropped and counted.
    pub max_tcp_flows: usize,
    /// Bytes of connection buffers (each TCP connection holds
    /// [`TCP_BUFFER_BYTES`] each way) at most: a new connection that would
    /// exceed it is dropped and counted.
    pub max_buffered_bytes: usize,
    /// New flows (TCP connections and UDP flows) per second, with a burst
    /// of as many; beyond, a SYN is dropped (the sandbox retries) and a
    /// datagram opening a flow too.
    pub new_flows_per_second: u32,
    /// How long the sandbox has to complete a TCP handshake once the host
    /// side connected; then the connection is dropped, its slot freed.
    pub tcp_handshake_timeout: Duration,
}

impl Default for ForwarderLimits {
    fn default() -> Self {
        Self {
            max_udp_flows: 256,
            udp_idle: Duration::from_secs(60),
            max_tcp_flows: 256,
            max_buffered_bytes: 256 * 2 * TCP_BUFFER_BYTES,
            new_flows_per_second: 1000,
            tcp_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// A token bucket: `rate` tokens a second, at most `rate` saved.
#[derive(Debug)]
struct RateLimit {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new(rate: u32) -> Self {
        Self {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Frames read from the tap before the stack runs: a sandbox flooding
/// the tap waits in its own queue, not in the forwarder's memory.
const TAP_BATCH: usize = 256;

/// What the forwarder has done, for the report and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames read from the tap.
    pub frames_in: u64,
    /// Frames written to the tap.
    pub frames_out: u64,
    /// ARP and neighbour discovery frames handled.
    pub neighbours_answered: u64,
    /// UDP datagrams relayed out.
    pub udp_out: u64,
    /// UDP datagrams relayed back in.
    pub udp_in: u64,
    /// DNS queries relayed.
    pub dns_queries: u64,
    /// New flows refused by the policy.
    pub refused: u64,
    /// … of which to metadata addresses.
    pub refused_metadata: u64,
    /// New flows refused because a limit on flows or buffered bytes was
    /// reached.
    pub over_limit: u64,
    /// New flows refused by the rate limit.
    pub over_rate: u64,
    /// New TCP connections refused or over the limit (their SYNs dropped).
    pub tcp_dropped: u64,
    /// The TCP relay's own counters.
    pub tcp: TcpCounters,
    /// Frames the classifier did not handle itself (other protocols,
    /// malformed, ARP replies and the like), left to the TCP stack.
    pub ignored: u64,
}

struct UdpFlow {
    socket: UdpSocket,
    /// The guest's address and the destination it sent to (replies come
    /// from there, as the guest sees it).
    guest: SocketAddr,
    remote: SocketAddr,
    last: Instant,
}

/// The userspace side of a sandbox's egress.
pub struct EgressForwarder {
    tap: OwnedFd,
    policy: EgressPolicy,
    guest_mac: Option<Mac>,
    dns_upstream: Option<SocketAddr>,
    limits: ForwarderLimits,
    new_flows: RateLimit,
    gateway_v6: Option<Ipv6Addr>,
    flows: HashMap<(SocketAddr, SocketAddr), UdpFlow>,
    tcp: TcpRelay,
    counters: Counters,
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
        Ok(Self {
            tap,
            policy,
            guest_mac: None,
            dns_upstream,
            limits,
            new_flows: RateLimit::new(limits.new_flows_per_second),
            gateway_v6: addressing.gateway.v6,
            flows: HashMap::new(),
            tcp: TcpRelay::new(GATEWAY_MAC, addressing, limits.tcp_handshake_timeout),
            counters: Counters::default(),
        })
    }

    /// What it has done so far.
    pub fn counters(&self) -> Counters {
        Counters {
            tcp: self.tcp.counters,
            ..self.counters
        }
    }

    /// Runs until `stop` is set (checked at least every 100 ms) or the tap
    /// is closed.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if polling or the tap fails.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        let mut frame = vec![0u8; 65536 + 64];
        while !stop.load(Ordering::Relaxed) {
            let keys: Vec<(SocketAddr, SocketAddr)> = self.flows.keys().copied().collect();
            let timer = self
                .tcp
                .next_timer()
                .unwrap_or(Duration::from_millis(100))
                .min(Duration::from_millis(100));
            let ready: Vec<bool> = {
                let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(1 + keys.len());
                fds.push(PollFd::new(&self.tap, PollFlags::IN));
                for key in &keys {
                    if let Some(flow) = self.flows.get(key) {
                        fds.push(PollFd::new(&flow.socket, PollFlags::IN));
                    }
                }
                let host_fds = self.tcp.host_fds();
                for (fd, wants_write) in &host_fds {
                    let flags = if *wants_write {
                        PollFlags::IN | PollFlags::OUT
                    } else {
                        PollFlags::IN
                    };
                    fds.push(PollFd::from_borrowed_fd(*fd, flags));
                }
                let timeout = rustix::time::Timespec {
                    tv_sec: 0,
                    tv_nsec: timer.as_nanos() as i64,
                };
                match rustix::event::poll(&mut fds, Some(&timeout)) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(Error::os("poll")(e)),
                }
                fds.iter().map(|p| !p.revents().is_empty()).collect()
            };
            if ready.first().copied().unwrap_or(false) {
                for _ in 0..TAP_BATCH {
                    match rustix::io::read(&self.tap, &mut frame) {
                        Ok(0) => return Ok(()),
                        Ok(n) => {
                            self.counters.frames_in += 1;
                            let copy = frame[..n].to_vec();
                            self.handle_frame(copy);
                        }
                        Err(rustix::io::Errno::AGAIN) => break,
                        Err(rustix::io::Errno::INTR) => {}
                        Err(e) => return Err(Error::os("read the tap")(e)),
                    }
                }
            }
            for (key, is_ready) in keys.iter().zip(ready.iter().skip(1)) {
                if *is_ready {
                    self.relay_in(*key, &mut frame);
                }
            }
            for out in self.tcp.pump() {
                self.send_frame(&out);
            }
            let idle = self.limits.udp_idle;
            self.flows.retain(|_, flow| flow.last.elapsed() < idle);
        }
        Ok(())
    }

    fn send_frame(&mut self, frame: &[u8]) {
        if rustix::io::write(&self.tap, frame).is_ok() {
            self.counters.frames_out += 1;
        }
    }

    fn handle_frame(&mut self, frame: Vec<u8>) {
        enum Action {
            Stack,
            Udp(SocketAddr, SocketAddr, Vec<u8>),
            NewTcp((SocketAddr, SocketAddr)),
            Drop,
        }
        let action = match classify(&frame) {
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
                if flags.syn && !flags.ack && !self.tcp.knows(&(src, dst)) {
                    Action::NewTcp((src, dst))
                } else {
                    Action::Stack
                }
            }
            // The stack would answer echo requests for any address (AnyIP):
            // that would fake reachability, so they go nowhere for now.
            GuestPacket::EchoRequest { .. } => Action::Drop,
            // ARP replies, neighbour advertisements and the like: the
            // stack's business (it drops what it has no use for).
            GuestPacket::Ignored(_) => {
                self.counters.ignored += 1;
                Action::Stack
            }
        };
        match action {
            Action::Stack => self.tcp.feed(frame),
            Action::Udp(src, dst, payload) => self.relay_out(src, dst, &payload),
            Action::NewTcp(key) => self.open_tcp(key, frame),
            Action::Drop => self.counters.ignored += 1,
        }
    }

    fn open_tcp(&mut self, key: (SocketAddr, SocketAddr), syn: Vec<u8>) {
        let dst = key.1;
        let target = match self.policy.decide(dst.ip(), dst.port(), Protocol::Tcp) {
            Verdict::Forward => dst,
            Verdict::Dns => match self.dns_upstream {
                Some(upstream) => {
                    self.counters.dns_queries += 1;
                    upstream
                }
                None => {
                    self.counters.tcp_dropped += 1;
                    return self.refuse(Refusal::Gateway);
                }
            },
            Verdict::Refuse(refusal) => {
                self.counters.tcp_dropped += 1;
                return self.refuse(refusal);
            }
        };
        let flows = self.tcp.flows();
        if flows >= self.limits.max_tcp_flows
            || (flows + 1) * 2 * TCP_BUFFER_BYTES > self.limits.max_buffered_bytes
        {
            self.counters.over_limit += 1;
            self.counters.tcp_dropped += 1;
            return;
        }
        if !self.new_flows.take() {
            self.counters.over_rate += 1;
            self.counters.tcp_dropped += 1;
            return;
        }
        self.tcp.open(key, target, syn);
    }

    fn refuse(&mut self, refusal: Refusal) {
        self.counters.refused += 1;
        if refusal == Refusal::Metadata {
            self.counters.refused_metadata += 1;
        }
    }

    fn relay_out(&mut self, guest: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        let key = (guest, dst);
        if !self.flows.contains_key(&key) {
            let target = match self.policy.decide(dst.ip(), dst.port(), Protocol::Udp) {
                Verdict::Forward => dst,
                Verdict::Dns => match self.dns_upstream {
                    Some(upstream) => {
                        self.counters.dns_queries += 1;
                        upstream
                    }
                    None => return self.refuse(Refusal::Gateway),
                },
                Verdict::Refuse(refusal) => return self.refuse(refusal),
            };
            if self.flows.len() >= self.limits.max_udp_flows {
                self.counters.over_limit += 1;
                return;
            }
            if !self.new_flows.take() {
                self.counters.over_rate += 1;
                return;
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
                        },
                    );
                }
                Err(_) => return self.refuse(Refusal::NotAllowed),
            }
        } else if self.policy.decide(dst.ip(), dst.port(), Protocol::Udp) == Verdict::Dns {
            self.counters.dns_queries += 1;
        }
        if let Some(flow) = self.flows.get_mut(&key) {
            flow.last = Instant::now();
            if flow.socket.send(payload).is_ok() {
                self.counters.udp_out += 1;
            }
        }
    }

    fn relay_in(&mut self, key: (SocketAddr, SocketAddr), buffer: &mut [u8]) {
        let Some(guest_mac) = self.guest_mac else {
            return;
        };
        let mut replies = Vec::new();
        if let Some(flow) = self.flows.get_mut(&key) {
            loop {
                match flow.socket.recv(buffer) {
                    Ok(n) => {
                        flow.last = Instant::now();
                        if let Some(frame) = udp_frame(
                            GATEWAY_MAC,
                            guest_mac,
                            flow.remote,
                            flow.guest,
                            &buffer[..n],
                        ) {
                            replies.push(frame);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
        }
        for frame in replies {
            self.counters.udp_in += 1;
            self.send_frame(&frame);
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
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_allows_a_burst_then_its_rate() {
        let mut limit = RateLimit::new(100);
        let burst = (0..1000).filter(|_| limit.take()).count();
        assert!((100..=101).contains(&burst), "{burst}");
        std::thread::sleep(Duration::from_millis(100));
        let refilled = (0..1000).filter(|_| limit.take()).count();
        assert!(
            (9..=15).contains(&refilled),
            "{refilled} after 100 ms at 100/s"
        );
    }

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
