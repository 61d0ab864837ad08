#![allow(clippy::unwrap_used, clippy::expect_used)]
//! UDP through the forwarder beyond the everyday: datagrams larger than the
//! tap's MTU (the sandbox's kernel sends them as IPv4 or IPv6 fragments),
//! and refused datagrams answered with ICMP "administratively prohibited"
//! so a connected socket fails at once. Between a real sandbox namespace
//! and a world namespace made for the test; nothing leaves them.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sandbox_policy::Policy;

mod common;
use common::open_ruleset;

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root: run as root with --include-ignored, as CI does"
    );
}

/// Echoes every datagram on `addr`, whole.
fn echo(addr: &str, stop: Arc<AtomicBool>) {
    let socket = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..n], peer);
            }
        }
    });
}

/// Sends `len` patterned bytes to `target` from a connected socket and
/// waits for them back (retrying: the first may wait on neighbour
/// discovery); the error otherwise.
fn round_trip(target: &str, len: usize) -> Result<(), String> {
    let target: SocketAddr = target.parse().unwrap();
    let local = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local).unwrap();
    socket.connect(target).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
    let mut last = String::new();
    for _ in 0..4 {
        socket.send(&payload).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 65536];
        match socket.recv(&mut buf) {
            Ok(n) if buf[..n] == payload[..] => return Ok(()),
            Ok(n) => last = format!("{n} bytes, not the {len} sent"),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// One datagram to `target` on a connected socket: how the socket's next
/// receive ends, and how soon.
fn refused(target: &str) -> (String, Duration) {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket.connect(target).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let started = Instant::now();
    let end = match socket.send(b"hello") {
        Err(e) => format!("send: {e}"),
        Ok(_) => match socket.recv(&mut [0u8; 64]) {
            Ok(_) => "answered".into(),
            Err(e) => format!("recv: {e}"),
        },
    };
    (end, started.elapsed())
}

#[test]
#[ignore = "needs root"]
fn large_datagrams_are_reassembled_and_refusals_answered() {
    require_root();
    let network = Policy::from_toml_str(
        "[network]\nmode = \"allowlist\"\nallow = [\"198.18.1.1/32:5353/udp\", \"[2001:db8::1/128]:5353/udp\"]\n",
    )
    .unwrap()
    .network;
    let world = common::World::with_mtu(
        &["198.18.1.1", "198.18.2.2", "2001:db8::1"],
        |stop| {
            echo("198.18.1.1:5353", Arc::clone(&stop));
            echo("198.18.2.2:5353", Arc::clone(&stop));
            echo("[2001:db8::1]:5353", stop);
        },
        &network,
        None,
        1500,
    );
    // Controls, from the world: every server echoes 8,000 bytes.
    world.in_world(|| {
        for target in ["198.18.1.1:5353", "198.18.2.2:5353", "[2001:db8::1]:5353"] {
            assert_eq!(round_trip(target, 8000), Ok(()), "control: {target}");
        }
    });
    let results = world.in_sandbox(|| {
        let mut out = vec![
            (
                "small v4",
                round_trip("198.18.1.1:5353", 1000).map(|_| "ok".into()),
            ),
            (
                "8000 v4",
                round_trip("198.18.1.1:5353", 8000).map(|_| "ok".into()),
            ),
            (
                "30000 v4",
                round_trip("198.18.1.1:5353", 30000).map(|_| "ok".into()),
            ),
            (
                "8000 v6",
                round_trip("[2001:db8::1]:5353", 8000).map(|_| "ok".into()),
            ),
        ];
        let (end, took) = refused("198.18.2.2:5353");
        out.push(("refused by the ruleset", Ok(format!("{end} in {took:?}"))));
        // The kernel lets everything out: the forwarder refuses alone,
        // with ICMP the socket understands.
        open_ruleset().install().unwrap();
        let (end, took) = refused("198.18.2.2:5353");
        out.push(("refused by the forwarder", Ok(format!("{end} in {took:?}"))));
        out
    });
    let counters = world.finish();
    println!("{results:#?}\n{counters:?}");
    let get = |name: &str| {
        results
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
            .clone()
            .unwrap_or_else(|e| format!("failed: {e}"))
    };
    for name in ["small v4", "8000 v4", "30000 v4", "8000 v6"] {
        assert_eq!(get(name), "ok", "{name}: {counters:?}");
    }
    let by_ruleset = get("refused by the ruleset");
    assert!(
        by_ruleset.starts_with("send: Operation not permitted"),
        "{by_ruleset}"
    );
    let by_forwarder = get("refused by the forwarder");
    assert!(
        by_forwarder.starts_with("recv: No route to host"),
        "ICMP administratively prohibited, at once: {by_forwarder}"
    );
    assert!(counters.fragments.reassembled >= 3, "{counters:?}");
    assert_eq!(counters.fragments.dropped, 0, "{counters:?}");
    assert!(counters.prohibited_sent >= 1, "{counters:?}");
}
