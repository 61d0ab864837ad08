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
fn udp_and_dns_through_the_forwarder_with_both_enforcement_points() {
    if !rustix::process::geteuid().is_root() {
        return;
    }
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
