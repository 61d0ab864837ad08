#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Reachability through the egress ruleset, in a world made for the test:
//! a "sandbox" network namespace and a "world" namespace joined by a veth
//! pair (standing in for the forwarder), with test servers on
//! 198.18.0.0/15, 2001:db8::/32 and a fake metadata service on
//! 169.254.169.254 — all inside namespaces this test created. Every
//! "blocked" check has a control: the same target reached before the
//! ruleset is installed.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sandbox_net::{
    Gateway, KernelRuleset, Link, LinkChange, Requests, Rtnetlink, Ruleset,
    current_network_namespace, enter_network_namespace, unshare_network_namespace,
};
use sandbox_policy::Policy;

/// Fails the test where it is not root: a root-only test is
/// `#[ignore = "needs root"]`, and run with `--include-ignored` as root.
fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root: run as root with --include-ignored, as CI does"
    );
}

const TCP_TARGETS: [&str; 8] = [
    "198.18.1.1:443",
    "198.18.1.1:8080",
    "198.18.2.2:443",
    "198.18.3.3:443",
    "198.18.3.4:443",
    "169.254.169.254:80",
    "[2001:db8::1]:443",
    "[2001:db8::2]:443",
];
const UDP_TARGETS: [&str; 2] = ["198.18.1.1:5353", "198.18.1.1:5354"];

fn up(rtnl: &Rtnetlink, name: &str) {
    let mut r = Requests::new();
    r.set_link(
        Link::Name(name),
        LinkChange {
            up: Some(true),
            ..LinkChange::default()
        },
    )
    .unwrap();
    rtnl.execute(&r).unwrap();
}

fn serve_tcp(addr: SocketAddr, stop: Arc<AtomicBool>) {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(format!("ok {addr}\n").as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
}

fn serve_udp(addr: SocketAddr, stop: Arc<AtomicBool>) {
    let socket = UdpSocket::bind(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..n], peer);
            }
        }
    });
}

/// Connects and reads the server's greeting: `Ok(greeting)` or the error.
fn reach_tcp(target: &str) -> Result<String, String> {
    let addr: SocketAddr = target.parse().unwrap();
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_millis(400)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    Ok(text)
}

fn reach_udp(target: &str) -> Result<(), String> {
    let addr: SocketAddr = target.parse().unwrap();
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .unwrap();
    let s = UdpSocket::bind(local).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s.send_to(b"ping", addr).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 16];
    let (n, _) = s.recv_from(&mut buf).map_err(|e| e.to_string())?;
    (buf[..n] == *b"ping")
        .then_some(())
        .ok_or_else(|| "wrong echo".into())
}

#[test]
#[ignore = "needs root"]
fn the_ruleset_allows_what_the_policy_allows_and_nothing_else() {
    require_root();
    std::thread::spawn(world_test).join().unwrap();
}

fn world_test() {
    // The sandbox's namespace, then the world's (this thread moves).
    unshare_network_namespace().unwrap();
    let sandbox_ns = current_network_namespace().unwrap();
    unshare_network_namespace().unwrap();
    let world_ns = current_network_namespace().unwrap();

    // World side: lo, the veth (its peer created in the sandbox's
    // namespace), the gateway and the servers' addresses.
    let world = Rtnetlink::open().unwrap();
    up(&world, "lo");
    let mut veth = Requests::new();
    veth.add_veth("w0", "eth0", Some(std::os::fd::AsFd::as_fd(&sandbox_ns)))
        .unwrap();
    world.execute(&veth).unwrap();
    let w0 = world.link("w0").unwrap().unwrap().index;
    let mut addrs = Requests::new();
    for (addr, prefix) in [
        ("10.0.2.2", 24),
        ("fd00:0:2::2", 64),
        ("198.18.1.1", 32),
        ("198.18.2.2", 32),
        ("198.18.3.3", 32),
        ("198.18.3.4", 32),
        ("169.254.169.254", 32),
        ("2001:db8::1", 128),
        ("2001:db8::2", 128),
    ] {
        addrs
            .add_address(Link::Index(w0), addr.parse().unwrap(), prefix)
            .unwrap();
    }
    world.execute(&addrs).unwrap();
    up(&world, "w0");
    let stop = Arc::new(AtomicBool::new(false));
    for target in TCP_TARGETS {
        serve_tcp(target.parse().unwrap(), Arc::clone(&stop));
    }
    for target in UDP_TARGETS {
        serve_udp(target.parse().unwrap(), Arc::clone(&stop));
    }

    // Sandbox side.
    enter_network_namespace(&sandbox_ns).unwrap();
    let rtnl = Rtnetlink::open().unwrap();
    up(&rtnl, "lo");
    let eth0 = rtnl.link("eth0").unwrap().unwrap().index;
    let mut setup = Requests::new();
    setup
        .add_address(Link::Index(eth0), "10.0.2.100".parse().unwrap(), 24)
        .unwrap()
        .add_address(Link::Index(eth0), "fd00:0:2::100".parse().unwrap(), 64)
        .unwrap();
    setup
        .set_link(
            Link::Index(eth0),
            LinkChange {
                up: Some(true),
                ..LinkChange::default()
            },
        )
        .unwrap();
    setup
        .add_default_route("10.0.2.2".parse().unwrap(), Some(eth0))
        .add_default_route("fd00:0:2::2".parse().unwrap(), Some(eth0));
    rtnl.execute(&setup).unwrap();
    // Read back what was configured.
    let addresses = rtnl.addresses().unwrap();
    assert!(
        addresses
            .iter()
            .any(|a| a.index == eth0 && a.addr == "10.0.2.100".parse::<IpAddr>().unwrap())
    );
    let routes = rtnl.routes().unwrap();
    assert!(
        routes
            .iter()
            .any(|r| r.destination.is_none() && r.gateway == Some("10.0.2.2".parse().unwrap())),
        "{routes:?}"
    );
    // A listener in the sandbox, for the inbound check.
    serve_tcp("10.0.2.100:9000".parse().unwrap(), Arc::clone(&stop));

    // Controls: without a ruleset every target answers, and the world can
    // connect in.
    // (The veth's carrier and IPv6 neighbours take a moment after "up":
    // the controls wait up to 3 s for each target.)
    for target in TCP_TARGETS {
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let mut last = reach_tcp(target);
        while last.is_err() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            last = reach_tcp(target);
        }
        assert!(
            last.as_ref().is_ok_and(|g| g.starts_with("ok")),
            "control: {target} reachable without the ruleset: {last:?}"
        );
    }
    for target in UDP_TARGETS {
        assert_eq!(reach_udp(target), Ok(()), "control: UDP {target}");
    }
    let inbound = || {
        let here = current_network_namespace().unwrap();
        enter_network_namespace(&world_ns).unwrap();
        let result = reach_tcp("10.0.2.100:9000");
        enter_network_namespace(&here).unwrap();
        result
    };
    assert!(inbound().is_ok(), "control: inbound reachable");

    // The ruleset: as written, and again with 10,000 more networks of the
    // first's kind (the address rules then in interval sets), which must
    // change nothing for these targets.
    for extra in [0, 10_000] {
        check_ruleset(extra, &inbound);
    }
    stop.store(true, Ordering::Relaxed);
}

/// Installs the test's ruleset with `extra` more allow rules on
/// 20.0.0.0/8 (a tenth of them IPv6, on 2001:db8:100::/40), reads it back
/// and checks each target.
fn check_ruleset(extra: usize, inbound: &dyn Fn() -> Result<String, String>) {
    let mut allow: Vec<String> = [
        "198.18.1.1/32:443/tcp",
        "198.18.1.1/32:5353/udp",
        "198.18.3.0/24:443/tcp",
        "[2001:db8::1/128]:443/tcp",
    ]
    .map(String::from)
    .to_vec();
    for i in 0..extra {
        allow.push(if i % 10 == 9 {
            format!("[2001:db8:1{:02x}:{:x}::/64]:443/tcp", i / 10 % 256, i)
        } else {
            format!("20.{}.{}.0/24:443/tcp", i * 2 / 256 % 256, i * 2 % 256)
        });
    }
    let policy = Policy::from_toml_str(&format!(
        "[network]\nmode = \"allowlist\"\nallow = {allow:?}\ndeny = [\"198.18.3.3/32\"]\n"
    ))
    .unwrap();
    let ruleset = Ruleset::from_network(&policy.network, &Gateway::default());
    if extra > 0 {
        assert_eq!(ruleset.cidr_sets.len(), 2, "one interval set per family");
        assert!(ruleset.output.len() < 20, "{} rules", ruleset.output.len());
    }
    let started = std::time::Instant::now();
    ruleset.install().unwrap();
    println!(
        "{} allow rules: {} output rules, installed in {:?}",
        allow.len(),
        ruleset.output.len(),
        started.elapsed()
    );
    ruleset.read_back().unwrap();
    if extra > 0 {
        // The read-back compares the sets' elements: a model one range
        // short differs from what the kernel holds.
        let mut short = ruleset.clone();
        short.cidr_sets[0].ranges.pop();
        let err = short.read_back().unwrap_err().to_string();
        assert!(err.contains("set cidr0v4"), "{err}");
    }
    let kernel = KernelRuleset::read().unwrap();
    assert_eq!(
        kernel.rules.len(),
        ruleset.output.len() + ruleset.input.len() + 3,
        "and chain refuse's three"
    );

    let mut results = Vec::new();
    for target in TCP_TARGETS {
        // A refused connect fails at once with a reset from the ruleset
        // (every target answered the control), not after the timeout.
        let started = std::time::Instant::now();
        let result = match reach_tcp(target) {
            Ok(_) => "reached".to_string(),
            Err(e) if e.contains("refused") && started.elapsed() < Duration::from_millis(300) => {
                "refused".to_string()
            }
            Err(e) => format!("{e} after {:?}", started.elapsed()),
        };
        results.push((target, result));
    }
    assert_eq!(
        results,
        [
            ("198.18.1.1:443", "reached"),     // allowed host and port
            ("198.18.1.1:8080", "refused"),    // same host, other port
            ("198.18.2.2:443", "refused"),     // other host
            ("198.18.3.3:443", "refused"),     // denied inside an allowed range
            ("198.18.3.4:443", "reached"),     // the rest of that range
            ("169.254.169.254:80", "refused"), // metadata, always blocked
            ("[2001:db8::1]:443", "reached"),  // IPv6 allowed
            ("[2001:db8::2]:443", "refused"),  // IPv6 not allowed
        ]
        .map(|(t, r)| (t, r.to_string())),
        "with {extra} more networks"
    );
    assert_eq!(reach_udp("198.18.1.1:5353"), Ok(()), "UDP allowed");
    assert!(reach_udp("198.18.1.1:5354").is_err(), "UDP other port");
    // Replies to what the sandbox opened are accepted (the TCP greetings
    // above came back); a new connection from outside is not.
    assert!(inbound().is_err(), "inbound refused by the input chain");
}
