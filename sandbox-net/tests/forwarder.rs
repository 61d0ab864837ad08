#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The forwarder between a real sandbox namespace (tap0, the ruleset) and a
//! "world" namespace made for the test (UDP servers on 198.18.0.0/15, a
//! test resolver, a fake metadata service). Nothing leaves namespaces this
//! test made.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sandbox_policy::Policy;

mod common;
use common::open_ruleset;

/// Fails the test where it is not root: a root-only test is
/// `#[ignore = "needs root"]`, and run with `--include-ignored` as root.
fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root: run as root with --include-ignored, as CI does"
    );
}

fn echo_server(addr: &str, prefix: &'static [u8], stop: Arc<AtomicBool>) {
    let socket = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                let mut reply = prefix.to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = socket.send_to(&reply, peer);
            }
        }
    });
}

/// Sends `payload` to `target` and waits for an answer (retrying: the
/// first datagram may wait on ARP).
fn ask(target: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    let target: SocketAddr = target.parse().unwrap();
    let mut last = String::new();
    for _ in 0..4 {
        if let Err(e) = socket.send_to(payload, target) {
            return Err(e.to_string());
        }
        let mut buf = [0u8; 1500];
        match socket.recv_from(&mut buf) {
            Ok((n, from)) if from == target => return Ok(buf[..n].to_vec()),
            Ok((_, from)) => last = format!("reply from {from}"),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

#[test]
#[ignore = "needs root"]
fn udp_and_dns_through_the_forwarder_with_both_enforcement_points() {
    require_root();
    let network = Policy::from_toml_str(
        "[network]\nmode = \"allowlist\"\ndns = true\nallow = [\"198.18.1.1/32:5353/udp\"]\n",
    )
    .unwrap()
    .network;
    let world = common::World::new(
        &["198.18.1.1", "198.18.2.2", "198.18.9.9", "169.254.169.254"],
        |stop| {
            echo_server("198.18.1.1:5353", b"echo:", Arc::clone(&stop));
            echo_server("198.18.2.2:5353", b"echo:", Arc::clone(&stop));
            echo_server("169.254.169.254:53", b"metadata:", Arc::clone(&stop));
            echo_server("198.18.9.9:53", b"dns:", Arc::clone(&stop));
        },
        &network,
        Some("198.18.9.9:53"),
    );
    // Controls, from the world itself: every server answers.
    world.in_world(|| {
        for target in ["198.18.1.1:5353", "198.18.2.2:5353", "169.254.169.254:53"] {
            assert!(ask(target, b"control").is_ok(), "control: {target}");
        }
    });
    let guest = world.in_sandbox(|| {
        let mut results = vec![
            ("allowed", ask("198.18.1.1:5353", b"hi")),
            ("dns", ask("10.0.2.2:53", b"query")),
            ("other host", ask("198.18.2.2:5353", b"hi")),
            ("metadata", ask("169.254.169.254:53", b"hi")),
        ];
        // Now without the ruleset (everything accepted in the kernel): the
        // forwarder alone must still refuse.
        open_ruleset().install().unwrap();
        results.push(("other host, no ruleset", ask("198.18.2.2:5353", b"hi")));
        results.push(("metadata, no ruleset", ask("169.254.169.254:53", b"hi")));
        results.push(("allowed, no ruleset", ask("198.18.1.1:5353", b"again")));
        results
    });
    let counters = world.finish();

    let get = |name: &str| guest.iter().find(|(n, _)| *n == name).unwrap().1.clone();
    assert_eq!(get("allowed"), Ok(b"echo:hi".to_vec()));
    assert_eq!(
        get("dns"),
        Ok(b"dns:query".to_vec()),
        "relayed to the test resolver"
    );
    assert!(get("other host").is_err(), "blocked by the ruleset");
    assert!(get("metadata").is_err(), "blocked by the ruleset");
    assert!(
        get("other host, no ruleset").is_err(),
        "blocked by the forwarder alone"
    );
    assert!(
        get("metadata, no ruleset").is_err(),
        "blocked by the forwarder alone"
    );
    assert_eq!(get("allowed, no ruleset"), Ok(b"echo:again".to_vec()));
    assert!(counters.neighbours_answered >= 1, "{counters:?}");
    assert!(
        counters.refused >= 2 && counters.refused_metadata >= 1,
        "{counters:?}"
    );
    assert!(
        counters.udp_out >= 3 && counters.udp_in >= 3,
        "{counters:?}"
    );
    println!("{counters:?}");
}

/// Lets every group open ping sockets in the calling thread's network
/// namespace (the default, "1 0", lets none).
fn allow_ping_sockets() {
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647").unwrap();
}

/// One echo request through an unprivileged ping socket; the reply's
/// payload (retrying: the first request may wait on neighbour discovery).
fn ping(target: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    use rustix::net::{AddressFamily, SocketType, ipproto};
    let target: std::net::IpAddr = target.parse().unwrap();
    let (family, protocol, request, reply) = match target {
        std::net::IpAddr::V4(_) => (AddressFamily::INET, ipproto::ICMP, 8u8, 0u8),
        std::net::IpAddr::V6(_) => (AddressFamily::INET6, ipproto::ICMPV6, 128, 129),
    };
    let socket = rustix::net::socket(family, SocketType::DGRAM, Some(protocol))
        .map_err(|e| format!("ping socket: {e}"))?;
    rustix::net::sockopt::set_socket_timeout(
        &socket,
        rustix::net::sockopt::Timeout::Recv,
        Some(Duration::from_millis(300)),
    )
    .unwrap();
    rustix::net::connect(&socket, &SocketAddr::new(target, 0)).map_err(|e| e.to_string())?;
    let mut last = String::new();
    for seq in 1..=4u16 {
        let mut message = vec![request, 0, 0, 0, 0, 0];
        message.extend_from_slice(&seq.to_be_bytes());
        message.extend_from_slice(payload);
        rustix::net::send(&socket, &message, rustix::net::SendFlags::empty())
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 1500];
        match rustix::net::recv(&socket, &mut buf, rustix::net::RecvFlags::empty()) {
            Ok((n, _)) if n >= 8 && buf[0] == reply => return Ok(buf[8..n].to_vec()),
            Ok((n, _)) => last = format!("unexpected {n}-byte message"),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

#[test]
#[ignore = "needs root"]
fn icmp_echo_through_ping_sockets_with_both_enforcement_points() {
    require_root();
    let network = Policy::from_toml_str(
        "[network]\nmode = \"allowlist\"\nallow = [\"198.18.1.1/32\", \"198.18.2.2/32:80/tcp\", \"[2001:db8::1]\"]\n",
    )
    .unwrap()
    .network;
    let world = common::World::new(
        &["198.18.1.1", "198.18.2.2", "2001:db8::1", "169.254.169.254"],
        |_| allow_ping_sockets(),
        &network,
        None,
    );
    // Controls, from the world itself: every address answers.
    world.in_world(|| {
        for target in ["198.18.1.1", "198.18.2.2", "2001:db8::1", "169.254.169.254"] {
            assert_eq!(
                ping(target, b"control"),
                Ok(b"control".to_vec()),
                "{target}"
            );
        }
    });
    let guest = world.in_sandbox(|| {
        allow_ping_sockets();
        let mut results = vec![
            ("allowed", ping("198.18.1.1", b"hello")),
            ("allowed v6", ping("2001:db8::1", b"hello6")),
            ("port-only rule", ping("198.18.2.2", b"hi")),
            ("metadata", ping("169.254.169.254", b"hi")),
        ];
        open_ruleset().install().unwrap();
        results.push(("port-only rule, no ruleset", ping("198.18.2.2", b"hi")));
        results.push(("metadata, no ruleset", ping("169.254.169.254", b"hi")));
        results.push(("allowed, no ruleset", ping("198.18.1.1", b"again")));
        results
    });
    let counters = world.finish();
    let get = |name: &str| guest.iter().find(|(n, _)| *n == name).unwrap().1.clone();
    assert_eq!(get("allowed"), Ok(b"hello".to_vec()));
    assert_eq!(get("allowed v6"), Ok(b"hello6".to_vec()));
    assert_eq!(get("allowed, no ruleset"), Ok(b"again".to_vec()));
    for blocked in [
        "port-only rule",
        "metadata",
        "port-only rule, no ruleset",
        "metadata, no ruleset",
    ] {
        assert!(get(blocked).is_err(), "{blocked}: {:?}", get(blocked));
    }
    assert!(
        counters.echo_out >= 3 && counters.echo_in >= 3,
        "{counters:?}"
    );
    assert!(
        counters.refused >= 2 && counters.refused_metadata >= 1,
        "the forwarder refused on its own: {counters:?}"
    );
    println!("{counters:?}");
}
