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

use sandbox_net::forward::{
    EgressForwarder, EgressPolicy, ForwarderLimits, GuestPacket, classify, udp_frame,
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
    let network = Policy::from_toml_str(&format!(
        "[network]\nmode = \"allowlist\"\nallow = [\"127.0.0.1/32:{port}/udp\"]\n"
    ))
    .unwrap()
    .network;
    let (guest, tap) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let limits = ForwarderLimits {
        max_udp_flows: 64,
        ..ForwarderLimits::default()
    };
    let forwarder = {
        let stop = Arc::clone(&stop);
        let policy = EgressPolicy::from_network(&network, Gateway::default());
        std::thread::spawn(move || {
            let mut f =
                EgressForwarder::new(tap, policy, &EgressAddressing::default(), None, limits)
                    .unwrap();
            f.run(&stop).unwrap();
            f.counters()
        })
    };

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
    let send = |bytes: &[u8]| {
        // The forwarder may fall behind: a full socket buffer is fine to
        // wait on briefly, it only slows the flood down.
        for _ in 0..1000 {
            match rustix::net::send(&guest, bytes, rustix::net::SendFlags::empty()) {
                Ok(_) => return,
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::NOBUFS) => {
                    std::thread::sleep(Duration::from_micros(50))
                }
                Err(e) => panic!("send: {e}"),
            }
        }
    };
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
