#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A hostile guest: tens of thousands of garbage frames, mutated frames and
//! a flood of new flows. The forwarder keeps its flow table within its
//! limits, refuses what the policy refuses, and still answers a real
//! request at the end. The "tap" here is one end of a SOCK_SEQPACKET pair
//! (it delivers frames whole, as a tap does); the one server is on
//! loopback.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use std::os::fd::OwnedFd;

use sandbox_net::forward::{
    Counters, EgressForwarder, EgressPolicy, ForwarderLimits, GuestPacket, classify,
    internet_checksum, udp_frame,
};
use sandbox_net::{EgressAddressing, Gateway};
use sandbox_policy::Policy;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A forwarder for `network_toml` whose "tap" is one end of a
/// SOCK_SEQPACKET pair (it delivers frames whole, as a tap does): the
/// guest's end, and the thread returning the counters once `stop` is set.
fn start_forwarder(
    network_toml: &str,
    limits: ForwarderLimits,
    stop: &Arc<AtomicBool>,
) -> (OwnedFd, std::thread::JoinHandle<Counters>) {
    let network = Policy::from_toml_str(network_toml).unwrap().network;
    let (guest, tap) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let stop = Arc::clone(stop);
    let policy = EgressPolicy::from_network(&network, Gateway::default());
    let forwarder = std::thread::spawn(move || {
        let mut f =
            EgressForwarder::new(tap, policy, &EgressAddressing::default(), None, limits).unwrap();
        f.run(&stop).unwrap();
        f.counters()
    });
    (guest, forwarder)
}

/// Sends one frame from the guest. The forwarder may fall behind: a full
/// socket buffer is waited on briefly (it only slows a flood down).
fn send(guest: &OwnedFd, bytes: &[u8]) {
    for _ in 0..1000 {
        match rustix::net::send(guest, bytes, rustix::net::SendFlags::empty()) {
            Ok(_) => return,
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::NOBUFS) => {
                std::thread::sleep(Duration::from_micros(50))
            }
            Err(e) => panic!("send: {e}"),
        }
    }
}

#[test]
fn garbage_and_floods_leave_the_forwarder_bounded_and_responsive() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        server
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = server.recv_from(&mut buf) {
                    let _ = server.send_to(&buf[..n], peer);
                }
            }
        });
    }
    let limits = ForwarderLimits {
        max_udp_flows: 64,
        ..ForwarderLimits::default()
    };
    let (guest, forwarder) = start_forwarder(
        &format!("[network]\nmode = \"allowlist\"\nallow = [\"127.0.0.1/32:{port}/udp\"]\n"),
        limits,
        &stop,
    );

    let guest_mac = [2, 0, 0, 0, 0, 1];
    let frame_to = |dst: &str, src_port: u16, payload: &[u8]| {
        // A frame as the guest would send it: from the guest to `dst`.
        let src: SocketAddr = format!("10.0.2.100:{src_port}").parse().unwrap();
        udp_frame(
            guest_mac,
            [2, 0, 0, 0, 0, 2],
            src,
            dst.parse().unwrap(),
            payload,
        )
        .unwrap()
    };
    let allowed = format!("127.0.0.1:{port}");
    let valid = frame_to(&allowed, 40000, b"first");
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let started = Instant::now();
    let mut sent = 0usize;
    let send = |bytes: &[u8]| send(&guest, bytes);
    // 1. Pure garbage and mutated valid frames.
    for i in 0..30_000 {
        let frame: Vec<u8> = if i % 2 == 0 {
            let len = (rng.next() % 1600) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            let mut f = valid.clone();
            let flips = 1 + rng.next() % 4;
            for _ in 0..flips {
                let at = (rng.next() as usize) % f.len();
                f[at] = rng.next() as u8;
            }
            f.truncate((rng.next() as usize) % (f.len() + 1));
            f
        };
        if !frame.is_empty() {
            send(&frame);
            sent += 1;
        }
    }
    // 2. A flood of new flows: 2000 to a refused destination, 500 to the
    // allowed one from as many source ports (only 64 may be open).
    for i in 0..2000u16 {
        send(&frame_to("127.0.0.2:9", 20000 + i, b"x"));
    }
    for i in 0..500u16 {
        send(&frame_to(&allowed, 30000 + i, b"y"));
    }
    // 3. A real request on a flow that exists (the first of the flood).
    send(&frame_to(&allowed, 30000, b"still there?"));
    let mut buf = vec![0u8; 70_000];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answered = false;
    rustix::net::sockopt::set_socket_timeout(
        &guest,
        rustix::net::sockopt::Timeout::Recv,
        Some(Duration::from_millis(200)),
    )
    .unwrap();
    while !answered && Instant::now() < deadline {
        if let Ok(n) = rustix::io::read(&guest, &mut buf)
            && let GuestPacket::Udp { payload, .. } = classify(&buf[..n])
        {
            answered = payload == b"still there?";
        }
    }
    stop.store(true, Ordering::Relaxed);
    let counters = forwarder.join().unwrap();
    println!(
        "{sent} garbage frames in {:?}; {counters:#?}",
        started.elapsed()
    );
    assert!(answered, "the forwarder still relays after the flood");
    assert!(
        counters.refused >= 2000,
        "every flow to the refused destination: {counters:?}"
    );
    assert!(
        counters.over_limit >= 400,
        "flows beyond the cap of 64 refused: {counters:?}"
    );
    assert!(counters.ignored > 0, "garbage was classified and ignored");
}

const GUEST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const GUEST_IP: [u8; 4] = [10, 0, 2, 100];

/// An ARP request from the guest for the gateway (the stack learns the
/// guest's MAC from it).
fn arp_request() -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&GUEST_IP);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[10, 0, 2, 2]);
    f
}

/// A TCP SYN from the guest's `src_port` to `dst` (IPv4), with an MSS
/// option and correct checksums.
fn syn(dst: SocketAddr, src_port: u16, seq: u32) -> Vec<u8> {
    let SocketAddr::V4(dst) = dst else {
        panic!("IPv4 only")
    };
    let mut tcp = Vec::with_capacity(24);
    tcp.extend_from_slice(&src_port.to_be_bytes());
    tcp.extend_from_slice(&dst.port().to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0]);
    tcp.extend_from_slice(&[6 << 4, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    tcp.extend_from_slice(&[2, 4, 0x05, 0xb4]);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&GUEST_IP);
    pseudo.extend_from_slice(&dst.ip().octets());
    pseudo.extend_from_slice(&[0, 6, 0, tcp.len() as u8]);
    let checksum = internet_checksum(&[&pseudo, &tcp]);
    tcp[16..18].copy_from_slice(&checksum.to_be_bytes());
    let mut ip = vec![
        0x45,
        0,
        0,
        (20 + tcp.len()) as u8,
        0,
        0,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ];
    ip.extend_from_slice(&GUEST_IP);
    ip.extend_from_slice(&dst.ip().octets());
    let checksum = internet_checksum(&[&ip]);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    let mut f = Vec::with_capacity(14 + ip.len() + tcp.len());
    f.extend_from_slice(&sandbox_net::forward::GATEWAY_MAC);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp);
    f
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

#[test]
fn a_syn_flood_leaves_the_forwarder_bounded_and_responsive() {
    // A server that accepts and holds every connection (the flood's
    // handshakes never complete on the sandbox's side).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server: SocketAddr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let limits = ForwarderLimits {
        max_tcp_flows: 64,
        new_flows_per_second: 500,
        tcp_handshake_timeout: Duration::from_secs(1),
        ..ForwarderLimits::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let before = resident_bytes();
    let (guest, forwarder) = start_forwarder(
        &format!(
            "[network]\nmode = \"allowlist\"\nallow = [\"127.0.0.1/32:{}/tcp\"]\n",
            server.port()
        ),
        limits,
        &stop,
    );
    // The guest side: drain whatever the forwarder sends (SYN-ACKs), and
    // note a SYN-ACK to `watch` once it is set.
    let guest = Arc::new(guest);
    let watch = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = Arc::new(AtomicBool::new(false));
    let synacks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = {
        let (guest, watch, seen, synacks, stop) = (
            Arc::clone(&guest),
            Arc::clone(&watch),
            Arc::clone(&seen),
            Arc::clone(&synacks),
            Arc::clone(&stop),
        );
        rustix::net::sockopt::set_socket_timeout(
            &*guest,
            rustix::net::sockopt::Timeout::Recv,
            Some(Duration::from_millis(100)),
        )
        .unwrap();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 70_000];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = rustix::io::read(&*guest, &mut buf)
                    && let GuestPacket::Tcp { dst, flags, .. } = classify(&buf[..n])
                    && flags.syn
                    && flags.ack
                {
                    synacks.fetch_add(1, Ordering::Relaxed);
                    if u32::from(dst.port()) == watch.load(Ordering::Relaxed) {
                        seen.store(true, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let send = |bytes: &[u8]| send(&guest, bytes);
    send(&arp_request());
    // Control: a SYN before the flood is answered.
    watch.store(9999, Ordering::Relaxed);
    send(&syn(server, 9999, 1));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !seen.load(Ordering::Relaxed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        seen.swap(false, Ordering::Relaxed),
        "control: the forwarder answers a SYN to the allowed server"
    );
    watch.store(0, Ordering::Relaxed);

    // The flood: 20 000 SYNs to the allowed server from as many source
    // ports, and 20 000 to a refused destination, as fast as they go.
    let started = Instant::now();
    let refused: SocketAddr = "127.0.0.2:9".parse().unwrap();
    for i in 0..20_000u32 {
        let port = 10_000 + (i % 50_000) as u16;
        send(&syn(server, port, i));
        send(&syn(refused, port, i));
    }
    let flood_time = started.elapsed();
    // Once the flood's half-open handshakes expire (1 s here), a new
    // connection gets its SYN-ACK.
    std::thread::sleep(Duration::from_millis(1500));
    let deadline = Instant::now() + Duration::from_secs(10);
    watch.store(65_000, Ordering::Relaxed);
    // The sandbox's TCP would retransmit its SYN: so does this.
    while !seen.load(Ordering::Relaxed) && Instant::now() < deadline {
        send(&syn(server, 65_000, 7));
        std::thread::sleep(Duration::from_millis(200));
    }
    let answered = seen.load(Ordering::Relaxed);
    let after = resident_bytes();
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let counters = forwarder.join().unwrap();
    println!(
        "flood of 40 000 SYNs in {flood_time:?}; {} SYN-ACKs; resident memory {} → {} MiB; {counters:#?}",
        synacks.load(Ordering::Relaxed),
        before >> 20,
        after >> 20
    );
    assert!(answered, "a SYN after the flood is answered");
    assert!(counters.refused >= 20_000, "{counters:?}");
    assert!(
        counters.over_limit + counters.over_rate >= 10_000,
        "most of the flood never reached a host socket: {counters:?}"
    );
    assert!(counters.tcp.handshakes_expired >= 60, "{counters:?}");
    assert!(
        after.saturating_sub(before) < 200 << 20,
        "memory stays bounded: {before} → {after}"
    );
}
