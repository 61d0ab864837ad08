//! A test world: a "world" network namespace with servers on its loopback
//! (addresses in 198.18.0.0/15 and a fake metadata service), a sandbox
//! namespace made rootless-style with tap0 and the ruleset, and the
//! forwarder between them, running in the world. Nothing leaves namespaces
//! the test made.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sandbox_net::forward::{Counters, EgressForwarder, EgressPolicy, ForwarderLimits};
use sandbox_net::{
    EgressAddressing, EgressNamespace, Gateway, Link, LinkChange, Requests, Rtnetlink,
    current_network_namespace, enter_network_namespace, unshare_network_namespace,
};

pub(crate) struct World {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) sandbox: OwnedFd,
    pub(crate) world: OwnedFd,
    forwarder: Option<JoinHandle<Counters>>,
}

impl World {
    /// Builds the world: `addresses` on its loopback, `servers` started in
    /// it (given the stop flag), the sandbox for `network`, the forwarder.
    pub(crate) fn new(
        addresses: &[&str],
        servers: impl FnOnce(Arc<AtomicBool>) + Send + 'static,
        network: &sandbox_policy::Network,
        dns_upstream: Option<&str>,
    ) -> World {
        Self::with_mtu(
            addresses,
            servers,
            network,
            dns_upstream,
            EgressAddressing::default().mtu,
        )
    }

    /// As [`new`](World::new), the sandbox's tap with MTU `mtu`.
    pub(crate) fn with_mtu(
        addresses: &[&str],
        servers: impl FnOnce(Arc<AtomicBool>) + Send + 'static,
        network: &sandbox_policy::Network,
        dns_upstream: Option<&str>,
        mtu: u32,
    ) -> World {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let addresses: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                unshare_network_namespace().unwrap();
                let rtnl = Rtnetlink::open().unwrap();
                let mut setup = Requests::new();
                setup
                    .set_link(
                        Link::Name("lo"),
                        LinkChange {
                            up: Some(true),
                            ..Default::default()
                        },
                    )
                    .unwrap();
                for addr in &addresses {
                    let ip: std::net::IpAddr = addr.parse().unwrap();
                    setup
                        .add_address(Link::Index(1), ip, if ip.is_ipv4() { 32 } else { 128 })
                        .unwrap();
                }
                rtnl.execute(&setup).unwrap();
                servers(Arc::clone(&stop));
                tx.send(current_network_namespace().unwrap()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
        let world = rx.recv().unwrap();
        let addressing = EgressAddressing {
            mtu,
            ..EgressAddressing::default()
        };
        let egress = EgressNamespace::create_rootless(network, &addressing).unwrap();
        let policy = EgressPolicy::from_network(network, Gateway::default());
        let world_for_forwarder = world.try_clone().unwrap();
        let dns = dns_upstream.map(|d| d.parse().unwrap());
        let forwarder = {
            let stop = Arc::clone(&stop);
            let tap = egress.tap;
            std::thread::spawn(move || {
                enter_network_namespace(&world_for_forwarder).unwrap();
                let mut forwarder =
                    EgressForwarder::new(tap, policy, &addressing, dns, ForwarderLimits::default())
                        .unwrap();
                forwarder.run(&stop).unwrap();
                forwarder.counters()
            })
        };
        World {
            stop,
            sandbox: egress.netns,
            world,
            forwarder: Some(forwarder),
        }
    }

    /// Runs `f` on a thread inside the sandbox's namespace.
    pub(crate) fn in_sandbox<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let ns = self.sandbox.try_clone().unwrap();
        std::thread::spawn(move || {
            enter_network_namespace(&ns).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    /// Runs `f` on a thread inside the world's namespace.
    pub(crate) fn in_world<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = self.world.try_clone().unwrap();
        std::thread::spawn(move || {
            enter_network_namespace(&ns).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    /// Stops everything; the forwarder's counters.
    pub(crate) fn finish(mut self) -> Counters {
        self.stop.store(true, Ordering::Relaxed);
        self.forwarder.take().unwrap().join().unwrap()
    }
}

/// A ruleset that lets everything out (and replies in): to show the
/// forwarder holds on its own.
pub(crate) fn open_ruleset() -> sandbox_net::Ruleset {
    use sandbox_net::{Match, RuleSpec, Verdict};
    let accept = |matches| RuleSpec {
        matches,
        verdict: Verdict::Accept,
    };
    sandbox_net::Ruleset {
        output: ["0.0.0.0", "::"]
            .iter()
            .map(|n| {
                accept(Match::Destination {
                    net: sandbox_policy::IpNet::new(n.parse().unwrap(), 0).unwrap(),
                    protocol: None,
                    ports: None,
                })
            })
            .chain([accept(Match::EstablishedRelated)])
            .collect(),
        input: vec![
            accept(Match::EstablishedRelated),
            accept(Match::NeighborDiscovery),
        ],
        sets: Vec::new(),
        cidr_sets: Vec::new(),
    }
}
