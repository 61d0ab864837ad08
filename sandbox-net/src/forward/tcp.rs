//! TCP relaying: the sandbox's side of each connection is terminated by a
//! userspace TCP stack (smoltcp, answering for every destination through
//! its AnyIP mode), the outside by a host socket. A SYN is held until the
//! host socket has connected, so the sandbox sees a refused destination as
//! a reset, a silent one as silence, and a slow one as a slow handshake
//! (its retransmitted SYNs are held too, never answered early). Data moves
//! only as far as the other side takes it: the host socket's buffer shows
//! in the window the sandbox is offered, and nothing is buffered without
//! bound. A reset travels as a reset both ways: one from the sandbox
//! closes the host socket with `SO_LINGER` 0, one from outside aborts the
//! sandbox's side.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use sandbox_policy::HostPattern;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpListenEndpoint};

use crate::egress::EgressAddressing;
use crate::forward::first_bytes::{FirstBytesRefusal, Inspect};
use crate::forward::frame::Mac;
use crate::forward::offload::replace_syn_mss;
use crate::forward::tcp_device::{POOL_SIZE, QueueDevice};
use crate::forward::tcp_dns::{DnsFraming, framed};

mod relay;

/// Each TCP connection's buffer in the forwarder, each way (what the
/// sandbox is offered as its window, and what the host may have in
/// flight towards it).
pub const TCP_BUFFER_BYTES: usize = 256 * 1024;
const BUFFER: usize = TCP_BUFFER_BYTES;

/// A connection in progress on the host side, its SYN held.
struct Pending {
    host: OwnedFd,
    syn: Vec<u8>,
    dst: SocketAddr,
    started: Instant,
    /// For a flow a name pin admitted: the names its first bytes must
    /// carry.
    check: Option<Vec<HostPattern>>,
    /// DNS over TCP to the gateway, to be screened message by message.
    dns: bool,
}

struct Connection {
    host: TcpStream,
    key: (SocketAddr, SocketAddr),
    /// When the host side connected (the handshake with the sandbox
    /// starts then).
    opened: Instant,
    host_eof: bool,
    host_write_shut: bool,
    /// First bytes being judged ([`first_bytes`](crate::forward::first_bytes)).
    inspect: Option<Inspect>,
    /// Judged bytes not yet written to the host.
    held: Vec<u8>,
    /// Reset here for what its first bytes said.
    refused: bool,
    /// DNS over TCP, screened message by message.
    dns: Option<DnsFraming>,
}

impl Connection {
    /// Closes the host side with a reset (`SO_LINGER` 0), not a FIN: what
    /// the sandbox's side did, or a handshake it never finished.
    fn reset_host(self) {
        let _ =
            rustix::net::sockopt::set_socket_linger(&self.host, Some(std::time::Duration::ZERO));
    }
}

/// What the TCP side has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpCounters {
    /// Connections relayed (host socket connected).
    pub connected: u64,
    /// Connections whose host connect failed (the sandbox got a reset).
    pub connect_failed: u64,
    /// Bytes relayed out (sandbox → host).
    pub bytes_out: u64,
    /// Bytes relayed in (host → sandbox).
    pub bytes_in: u64,
    /// Connections dropped because the sandbox never completed its
    /// handshake in time.
    pub handshakes_expired: u64,
    /// Connections the sandbox reset (passed on to the host side as a
    /// reset).
    pub reset_by_sandbox: u64,
    /// Connects still in progress that the sandbox gave up on (a reset
    /// for its SYN) or that went unanswered for 135 s.
    pub connects_abandoned: u64,
    /// Connections a name pin admitted, reset for a ClientHello whose SNI
    /// no pinned rule allows.
    pub sni_mismatch: u64,
    /// … for a ClientHello without SNI (or one that did not parse).
    pub no_sni: u64,
    /// … for an HTTP request whose `Host` no pinned rule allows (or with
    /// none).
    pub host_mismatch: u64,
}

/// The TCP half of the forwarder.
pub(crate) struct TcpRelay {
    iface: Interface,
    sockets: SocketSet<'static>,
    device: QueueDevice,
    epoch: Instant,
    pending: HashMap<(SocketAddr, SocketAddr), Pending>,
    connections: HashMap<SocketHandle, Connection>,
    active: HashMap<(SocketAddr, SocketAddr), SocketHandle>,
    pub(crate) counters: TcpCounters,
    /// Connections reset for their first bytes since the forwarder last
    /// took them: destination, why, the name presented.
    pub(crate) refused_first_bytes: Vec<(SocketAddr, FirstBytesRefusal, Option<String>)>,
    /// Whole DNS messages from screened DNS-over-TCP connections, for the
    /// forwarder to judge: the connection, whether it is the sandbox's (a
    /// query), the message.
    pub(crate) dns_messages: Vec<(SocketHandle, bool, Vec<u8>)>,
    /// Checksums and segmentation offloaded to the tap.
    offload: bool,
    /// The sandbox's MSS (IPv4, IPv6), from its latest SYN: with offloads
    /// the stack is told a larger one and sends segments up to 64 KiB,
    /// which the tap's GSO cuts to this.
    guest_mss: [u16; 2],
    handshake_timeout: std::time::Duration,
}

fn smol_now(epoch: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(epoch.elapsed().as_micros() as i64)
}

/// The stack's IP MTU with offloads (the largest a tap takes).
const OFFLOAD_MTU: usize = 65520;

/// The MSS the stack is told the sandbox has, with offloads: the largest
/// segment an IPv6 packet of [`OFFLOAD_MTU`] carries.
const OFFLOAD_MSS: u16 = (OFFLOAD_MTU - 40 - 20) as u16;

/// How long a host connect may stay in progress before the attempt is
/// dropped (silently: by then the sandbox's own connect, with the kernel's
/// default six SYN retries, has timed out after ~127 s, as a client
/// outside would). The host's own SYN retries normally end it first, with
/// `ETIMEDOUT`, also passed on as silence.
pub(crate) const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(135);

impl TcpRelay {
    /// `headroom`: bytes left free in front of every frame the stack
    /// sends; `offload`: TCP checksums are left to the tap (see
    /// [`crate::enable_offloads`]).
    pub(crate) fn new(
        gateway_mac: Mac,
        addressing: &EgressAddressing,
        handshake_timeout: std::time::Duration,
        headroom: usize,
        offload: bool,
    ) -> Self {
        let mut device = QueueDevice {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            pool: Vec::new(),
            // With offloads, segments up to 64 KiB whatever the link's MTU.
            mtu: if offload {
                OFFLOAD_MTU
            } else {
                addressing.mtu as usize
            },
            headroom,
            offload,
        };
        let epoch = Instant::now();
        let config = Config::new(HardwareAddress::Ethernet(EthernetAddress(gateway_mac)));
        let mut iface = Interface::new(config, &mut device, smol_now(epoch));
        let gw4 = addressing.gateway.v4;
        let gw6 = addressing.gateway.v6;
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(gw4), addressing.v4.1));
            if let (Some(g), Some((_, prefix))) = (gw6, addressing.v6) {
                let _ = addrs.push(IpCidr::new(IpAddress::Ipv6(g), prefix));
            }
        });
        // AnyIP: accept every destination routed "via" our own address.
        iface.set_any_ip(true);
        let _ = iface.routes_mut().add_default_ipv4_route(gw4);
        if let Some(g) = gw6 {
            let _ = iface.routes_mut().add_default_ipv6_route(g);
        }
        Self {
            iface,
            sockets: SocketSet::new(Vec::new()),
            device,
            epoch,
            pending: HashMap::new(),
            connections: HashMap::new(),
            active: HashMap::new(),
            counters: TcpCounters::default(),
            refused_first_bytes: Vec::new(),
            dns_messages: Vec::new(),
            handshake_timeout,
            offload,
            guest_mss: [536, 1220],
        }
    }

    /// How many connections are open or being opened.
    pub(crate) fn flows(&self) -> usize {
        self.pending.len() + self.connections.len()
    }

    /// Whether the 4-tuple already belongs to a connection (or one being
    /// opened).
    pub(crate) fn knows(&self, key: &(SocketAddr, SocketAddr)) -> bool {
        self.active.contains_key(key) || self.pending.contains_key(key)
    }

    /// Whether the 4-tuple's host connect is still in progress (its SYN
    /// held).
    pub(crate) fn is_pending(&self, key: &(SocketAddr, SocketAddr)) -> bool {
        self.pending.contains_key(key)
    }

    /// The sandbox gave up on a connect still in progress (it reset it):
    /// the host attempt is dropped.
    pub(crate) fn abandon(&mut self, key: &(SocketAddr, SocketAddr)) {
        if self.pending.remove(key).is_some() {
            self.counters.connects_abandoned += 1;
        }
    }

    /// A frame for the stack (ARP, neighbour discovery, segments of known
    /// connections, or anything it should answer with a reset).
    pub(crate) fn feed(&mut self, frame: Vec<u8>) {
        self.feed_at(frame, 0);
    }

    /// As [`feed`](Self::feed), the frame being `frame[start..]`.
    pub(crate) fn feed_at(&mut self, frame: Vec<u8>, start: usize) {
        self.device.rx.push_back((frame, start));
    }

    /// A new connection the policy allows: start the host connect and hold
    /// the SYN until it completes.
    /// With `check`, the connection's first bytes must name one of those
    /// hosts (SNI, or HTTP `Host`) before they go upstream.
    pub(crate) fn open(
        &mut self,
        key: (SocketAddr, SocketAddr),
        target: SocketAddr,
        syn: Vec<u8>,
        check: Option<Vec<HostPattern>>,
        dns: bool,
    ) {
        match start_connect(target) {
            Ok(host) => {
                self.pending.insert(
                    key,
                    Pending {
                        host,
                        syn,
                        dst: key.1,
                        started: Instant::now(),
                        check,
                        dns,
                    },
                );
            }
            Err(_) => {
                // No host socket at all: the sandbox gets a reset now.
                self.counters.connect_failed += 1;
                self.feed(syn);
            }
        }
    }

    /// The host fds to poll, each with whether to wait for it to be
    /// readable (there is room to take what it has) and writable (there is
    /// something for it, or its connect is pending). Waiting on a socket
    /// whose data has nowhere to go would spin.
    pub(crate) fn host_fds(&self) -> Vec<(BorrowedFd<'_>, bool, bool)> {
        let pending = self.pending.values().map(|p| (p.host.as_fd(), false, true));
        let connections = self.connections.iter().map(|(handle, c)| {
            let socket = self.sockets.get::<tcp::Socket<'_>>(*handle);
            let room = socket.send_queue() < socket.send_capacity();
            let judged = c.inspect.is_none();
            let to_write = (judged && socket.recv_queue() > 0) || !c.held.is_empty();
            (c.host.as_fd(), !c.host_eof && room, to_write)
        });
        pending.chain(connections).collect()
    }

    /// Completes host connects, relays data both ways, runs the stack, and
    /// returns the frames to write to the tap (each after its headroom).
    pub(crate) fn pump(&mut self) -> Vec<Vec<u8>> {
        self.finish_connects();
        self.relay();
        let now = smol_now(self.epoch);
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        self.relay();
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        self.reap();
        self.device.tx.drain(..).collect()
    }

    /// Gives back a frame buffer [`pump`](Self::pump) returned, once
    /// written.
    pub(crate) fn recycle(&mut self, frame: Vec<u8>) {
        if self.device.pool.len() < POOL_SIZE {
            self.device.pool.push(frame);
        }
    }

    /// Sends a judged DNS message on a screened connection: to the
    /// resolver (`to_host`) or to the sandbox.
    pub(crate) fn dns_send(&mut self, handle: SocketHandle, to_host: bool, message: &[u8]) {
        if let Some(conn) = self.connections.get_mut(&handle) {
            let bytes = framed(message);
            match (&mut conn.dns, to_host) {
                (_, true) => conn.held.extend_from_slice(&bytes),
                (Some(framing), false) => framing.to_guest.extend_from_slice(&bytes),
                (None, false) => {}
            }
        }
    }

    /// The sandbox's MSS for IPv4 (or IPv6), as its latest SYN said.
    pub(crate) fn guest_mss(&self, v6: bool) -> u16 {
        self.guest_mss[usize::from(v6)]
    }

    /// When the stack next needs to run (retransmissions, timers).
    pub(crate) fn next_timer(&mut self) -> Option<std::time::Duration> {
        self.iface
            .poll_delay(smol_now(self.epoch), &self.sockets)
            .map(|d| std::time::Duration::from_micros(d.total_micros()))
    }

    fn finish_connects(&mut self) {
        let keys: Vec<(SocketAddr, SocketAddr)> = self.pending.keys().copied().collect();
        for key in keys {
            let Some(p) = self.pending.get(&key) else {
                continue;
            };
            let outcome = connect_outcome(&p.host);
            let timed_out = p.started.elapsed() > CONNECT_TIMEOUT;
            match outcome {
                None if !timed_out => continue,
                Some(Ok(())) => {
                    let Some(p) = self.pending.remove(&key) else {
                        continue;
                    };
                    let host = TcpStream::from(p.host);
                    let _ = host.set_nodelay(true);
                    let mut socket = tcp::Socket::new(
                        tcp::SocketBuffer::new(vec![0u8; BUFFER]),
                        tcp::SocketBuffer::new(vec![0u8; BUFFER]),
                    );
                    socket.set_nagle_enabled(false);
                    // Delayed ACKs would cap throughput at one window per
                    // delay (256 KiB per 10 ms): acknowledge at once.
                    socket.set_ack_delay(None);
                    let endpoint = IpListenEndpoint {
                        addr: Some(IpAddress::from(p.dst.ip())),
                        port: p.dst.port(),
                    };
                    if socket.listen(endpoint).is_err() {
                        continue;
                    }
                    let handle = self.sockets.add(socket);
                    self.connections.insert(
                        handle,
                        Connection {
                            host,
                            key,
                            opened: Instant::now(),
                            host_eof: false,
                            host_write_shut: false,
                            inspect: p.check.map(Inspect::new),
                            held: Vec::new(),
                            refused: false,
                            dns: p.dns.then(DnsFraming::default),
                        },
                    );
                    self.active.insert(key, handle);
                    self.counters.connected += 1;
                    // Let the stack take this SYN now, while this socket is
                    // the only one listening on its endpoint: two held SYNs
                    // to the same destination must not cross their sockets.
                    let mut syn = p.syn;
                    if self.offload
                        && let Some(mss) = replace_syn_mss(&mut syn, OFFLOAD_MSS)
                    {
                        self.guest_mss[usize::from(key.0.is_ipv6())] = mss;
                    }
                    self.feed(syn);
                    let now = smol_now(self.epoch);
                    self.iface.poll(now, &mut self.device, &mut self.sockets);
                }
                None => {
                    // Unanswered for longer than the sandbox waits: dropped
                    // in silence, as the sandbox's connect has timed out.
                    self.pending.remove(&key);
                    self.counters.connects_abandoned += 1;
                }
                Some(Err(e)) => {
                    let Some(p) = self.pending.remove(&key) else {
                        continue;
                    };
                    self.counters.connect_failed += 1;
                    // A host that never answered: the sandbox sees the same
                    // silence (its connect times out on its own). Refused
                    // or unreachable: feeding the SYN with no socket
                    // listening makes the stack answer a reset.
                    if e.raw_os_error() != Some(rustix::io::Errno::TIMEDOUT.raw_os_error()) {
                        self.feed(p.syn);
                    }
                }
            }
        }
    }

    fn reap(&mut self) {
        let timeout = self.handshake_timeout;
        let done: Vec<SocketHandle> = self
            .connections
            .iter()
            .filter(
                |(h, c)| match self.sockets.get::<tcp::Socket<'_>>(**h).state() {
                    tcp::State::Closed | tcp::State::TimeWait => true,
                    // A handshake the sandbox never completes (a SYN flood)
                    // gives its slot back.
                    tcp::State::Listen | tcp::State::SynReceived => c.opened.elapsed() > timeout,
                    _ => false,
                },
            )
            .map(|(h, _)| *h)
            .collect();
        for handle in done {
            if let Some(conn) = self.connections.remove(&handle) {
                self.active.remove(&conn.key);
                match self.sockets.get::<tcp::Socket<'_>>(handle).state() {
                    tcp::State::TimeWait => {}
                    // Closed with both sides finished is a clean close;
                    // short of that, a reset (the sandbox's, or an abort
                    // here after the host side failed).
                    tcp::State::Closed => {
                        if !(conn.host_eof && conn.host_write_shut) {
                            if !conn.host_eof && !conn.refused {
                                self.counters.reset_by_sandbox += 1;
                            }
                            conn.reset_host();
                        }
                    }
                    _ => {
                        self.counters.handshakes_expired += 1;
                        conn.reset_host();
                    }
                }
            }
            self.sockets.remove(handle);
        }
    }
}

/// Whether the sandbox closed its side (FIN or reset); not while the
/// handshake is still going.
fn sandbox_closed(state: tcp::State) -> bool {
    matches!(
        state,
        tcp::State::CloseWait
            | tcp::State::LastAck
            | tcp::State::Closing
            | tcp::State::TimeWait
            | tcp::State::Closed
    )
}

/// A non-blocking `connect` to `target`.
fn start_connect(target: SocketAddr) -> io::Result<OwnedFd> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let family = match target.ip() {
        IpAddr::V4(_) => AddressFamily::INET,
        IpAddr::V6(_) => AddressFamily::INET6,
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    match rustix::net::connect(&fd, &target) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => Ok(fd),
        Err(e) => Err(e.into()),
    }
}

/// `None` while connecting; then whether it connected.
fn connect_outcome(fd: &OwnedFd) -> Option<io::Result<()>> {
    let mut pfd = [rustix::event::PollFd::new(
        fd,
        rustix::event::PollFlags::OUT,
    )];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut pfd, Some(&zero)) {
        Ok(0) => None,
        Ok(_) => Some(match rustix::net::sockopt::socket_error(fd) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(e.into()),
        }),
        Err(e) => Some(Err(e.into())),
    }
}
