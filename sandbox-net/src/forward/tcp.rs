//! TCP relaying: the sandbox's side of each connection is terminated by a
//! userspace TCP stack (smoltcp, answering for every destination through
//! its AnyIP mode), the outside by a host socket. A SYN is held until the
//! host socket has connected, so the sandbox sees a refused destination as
//! a reset and a blocked one as silence. Data moves only as far as the
//! other side takes it: the host socket's buffer shows in the window the
//! sandbox is offered, and nothing is buffered without bound.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpListenEndpoint};

use crate::egress::EgressAddressing;
use crate::forward::frame::Mac;

/// Each TCP connection's buffer in the forwarder, each way (what the
/// sandbox is offered as its window, and what the host may have in
/// flight towards it).
pub const TCP_BUFFER_BYTES: usize = 256 * 1024;
const BUFFER: usize = TCP_BUFFER_BYTES;

/// A device whose frames are queues the forwarder fills and drains.
struct QueueDevice {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    mtu: usize,
}

struct Rx(Vec<u8>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let result = f(&mut frame);
        self.0.push_back(frame);
        result
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(Rx, Tx<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((Rx(frame), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps
    }
}

/// A connection in progress on the host side, its SYN held.
struct Pending {
    host: OwnedFd,
    syn: Vec<u8>,
    dst: SocketAddr,
    started: Instant,
}

struct Connection {
    host: TcpStream,
    key: (SocketAddr, SocketAddr),
    /// When the host side connected (the handshake with the sandbox
    /// starts then).
    opened: Instant,
    host_eof: bool,
    host_write_shut: bool,
}

/// What the TCP side has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
    scratch: Vec<u8>,
    handshake_timeout: std::time::Duration,
}

fn smol_now(epoch: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(epoch.elapsed().as_micros() as i64)
}

/// How long a host connect may take before the sandbox gets a reset.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl TcpRelay {
    pub(crate) fn new(
        gateway_mac: Mac,
        addressing: &EgressAddressing,
        handshake_timeout: std::time::Duration,
    ) -> Self {
        let mut device = QueueDevice {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            mtu: addressing.mtu as usize,
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
            scratch: vec![0u8; 64 * 1024],
            handshake_timeout,
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

    /// A frame for the stack (ARP, neighbour discovery, segments of known
    /// connections, or anything it should answer with a reset).
    pub(crate) fn feed(&mut self, frame: Vec<u8>) {
        self.device.rx.push_back(frame);
    }

    /// A new connection the policy allows: start the host connect and hold
    /// the SYN until it completes.
    pub(crate) fn open(&mut self, key: (SocketAddr, SocketAddr), target: SocketAddr, syn: Vec<u8>) {
        match start_connect(target) {
            Ok(host) => {
                self.pending.insert(
                    key,
                    Pending {
                        host,
                        syn,
                        dst: key.1,
                        started: Instant::now(),
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

    /// The host fds to poll, with whether each wants to write.
    pub(crate) fn host_fds(&self) -> Vec<(BorrowedFd<'_>, bool)> {
        let pending = self.pending.values().map(|p| (p.host.as_fd(), true));
        let connections = self.connections.iter().map(|(handle, c)| {
            let socket = self.sockets.get::<tcp::Socket<'_>>(*handle);
            (c.host.as_fd(), socket.recv_queue() > 0)
        });
        pending.chain(connections).collect()
    }

    /// Completes host connects, relays data both ways, runs the stack, and
    /// returns the frames to write to the tap.
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
                        },
                    );
                    self.active.insert(key, handle);
                    self.counters.connected += 1;
                    // Let the stack take this SYN now, while this socket is
                    // the only one listening on its endpoint: two held SYNs
                    // to the same destination must not cross their sockets.
                    self.feed(p.syn);
                    let now = smol_now(self.epoch);
                    self.iface.poll(now, &mut self.device, &mut self.sockets);
                }
                _ => {
                    // Refused, unreachable or too slow: feeding the SYN with
                    // no socket listening makes the stack answer a reset.
                    if let Some(p) = self.pending.remove(&key) {
                        self.counters.connect_failed += 1;
                        self.feed(p.syn);
                    }
                }
            }
        }
    }

    fn relay(&mut self) {
        let handles: Vec<SocketHandle> = self.connections.keys().copied().collect();
        for handle in handles {
            let Some(conn) = self.connections.get_mut(&handle) else {
                continue;
            };
            let socket = self.sockets.get_mut::<tcp::Socket<'_>>(handle);
            // Sandbox → host: only what the host socket takes.
            while socket.can_recv() {
                let written = socket.recv(|data| match conn.host.write(data) {
                    Ok(n) => (n, Ok(n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => (0, Ok(0)),
                    Err(e) => (0, Err(e)),
                });
                match written {
                    Ok(Ok(0)) | Err(_) => break,
                    Ok(Ok(n)) => self.counters.bytes_out += n as u64,
                    Ok(Err(_)) => {
                        socket.abort();
                        break;
                    }
                }
            }
            // The sandbox closed its side: pass the FIN on.
            let guest_closed = matches!(
                socket.state(),
                tcp::State::CloseWait
                    | tcp::State::LastAck
                    | tcp::State::Closing
                    | tcp::State::TimeWait
            );
            if guest_closed && socket.recv_queue() == 0 && !conn.host_write_shut {
                let _ = conn.host.shutdown(Shutdown::Write);
                conn.host_write_shut = true;
            }
            // Host → sandbox: only as much as the socket has room for.
            while !conn.host_eof && socket.may_send() {
                let room = socket.send_capacity() - socket.send_queue();
                if room == 0 {
                    break;
                }
                let want = room.min(self.scratch.len());
                match conn.host.read(&mut self.scratch[..want]) {
                    Ok(0) => {
                        conn.host_eof = true;
                        socket.close();
                    }
                    Ok(n) => {
                        let _ = socket.send_slice(&self.scratch[..n]);
                        self.counters.bytes_in += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        socket.abort();
                        conn.host_eof = true;
                        break;
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
                if !matches!(
                    self.sockets.get::<tcp::Socket<'_>>(handle).state(),
                    tcp::State::Closed | tcp::State::TimeWait
                ) {
                    self.counters.handshakes_expired += 1;
                }
            }
            self.sockets.remove(handle);
        }
    }
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
