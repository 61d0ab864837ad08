#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Arbitrary valid network policies → ruleset → libnftnl batch → installed
//! in a throwaway network namespace → read back: the kernel holds exactly
//! the model, every time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use sandbox_net::{Gateway, Ruleset};
use sandbox_policy::{IpNet, NetRule, Network, PortRange, Protocol};

/// Fails the test where it is not root: a root-only test is
/// `#[ignore = "needs root"]`, and run with `--include-ignored` as root.
fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root: run as root with --include-ignored, as CI does"
    );
}

fn net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, p)| {
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            IpNet::new(IpAddr::V4(Ipv4Addr::from(a & mask)), p).unwrap()
        }),
        (any::<u128>(), 0u8..=128).prop_map(|(a, p)| {
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            IpNet::new(IpAddr::V6(Ipv6Addr::from(a & mask)), p).unwrap()
        }),
    ]
}

fn rule() -> impl Strategy<Value = NetRule> {
    (
        net(),
        proptest::option::of((1u16..=65535, 0u16..=100)),
        proptest::option::of(prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)]),
        any::<u8>(),
    )
        .prop_map(|(n, ports, protocol, pick)| {
            let ports = ports
                .map(|(start, span)| PortRange::new(start, start.saturating_add(span)).unwrap());
            // One rule in four names a host (its sets and lookups).
            match pick % 8 {
                0 => NetRule::host("pypi.org".parse().unwrap(), ports, protocol),
                1 => NetRule::host("*.example.com".parse().unwrap(), ports, protocol),
                _ => NetRule::new(n, ports, protocol),
            }
        })
}

fn network() -> impl Strategy<Value = Network> {
    (
        proptest::collection::vec(rule(), 0..12),
        proptest::collection::vec(rule(), 0..6),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(allow, deny, dns, allow_metadata)| Network {
            mode: Some(sandbox_policy::NetMode::Allowlist),
            allow: Some(allow),
            deny: Some(deny),
            dns: Some(if dns {
                sandbox_policy::DnsMode::Any
            } else {
                sandbox_policy::DnsMode::Auto
            }),
            allow_metadata: Some(allow_metadata),
            limits: Default::default(),
        })
}

#[test]
#[ignore = "needs root"]
fn any_network_policy_reads_back_as_its_model() {
    require_root();
    std::thread::spawn(|| {
        sandbox_net::unshare_network_namespace().unwrap();
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 96,
            ..ProptestConfig::default()
        });
        runner
            .run(&network(), |network| {
                let ruleset = Ruleset::from_network(&network, &Gateway::default());
                ruleset
                    .install()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                ruleset
                    .read_back()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                // After the fixed prefix (loopback, established, neighbour
                // discovery), every refusal comes before every accept.
                const PREFIX: usize = 3;
                let last_drop = ruleset.output.iter().rposition(|r| {
                    r.verdict == sandbox_net::Verdict::Refuse
                        && r.matches != sandbox_net::Match::Any
                });
                let first_accept = ruleset
                    .output
                    .iter()
                    .skip(PREFIX)
                    .position(|r| r.verdict == sandbox_net::Verdict::Accept)
                    .map(|i| i + PREFIX);
                if let (Some(d), Some(a)) = (last_drop, first_accept) {
                    prop_assert!(d < a, "refusals before accepts");
                }
                Ok(())
            })
            .unwrap();
    })
    .join()
    .unwrap();
}
