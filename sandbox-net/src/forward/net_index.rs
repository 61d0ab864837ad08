//! The forwarder's address allow rules, indexed: grouped by protocol and
//! ports, each group's networks merged into sorted disjoint ranges per
//! family, so a policy of 10,000 CIDRs is matched in O(log n) per new
//! flow, as the kernel's interval sets match it.

use std::net::IpAddr;

use sandbox_policy::{NetRule, PortRange, Protocol};

use crate::nft::cidr_sets::{merge, range_of};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    protocol: Option<Protocol>,
    ports: Option<PortRange>,
    v4: Vec<(u128, u128)>,
    v6: Vec<(u128, u128)>,
}

/// Address rules, indexed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NetIndex {
    groups: Vec<Group>,
}

fn contains(ranges: &[(u128, u128)], value: u128) -> bool {
    // The last range starting at or below the value.
    let i = ranges.partition_point(|(lo, _)| *lo <= value);
    i > 0 && ranges[i - 1].1 >= value
}

impl NetIndex {
    /// The index of `rules`' address rules (host-name rules aside).
    pub(crate) fn new(rules: &[NetRule]) -> Self {
        let mut groups: Vec<Group> = Vec::new();
        for rule in rules {
            let Some(net) = rule.net() else { continue };
            let (protocol, ports) = (rule.protocol(), rule.ports());
            let index = match groups
                .iter()
                .position(|g| g.protocol == protocol && g.ports == ports)
            {
                Some(i) => i,
                None => {
                    groups.push(Group {
                        protocol,
                        ports,
                        v4: Vec::new(),
                        v6: Vec::new(),
                    });
                    groups.len() - 1
                }
            };
            let group = &mut groups[index];
            if net.addr().is_ipv4() {
                group.v4.push(range_of(net));
            } else {
                group.v6.push(range_of(net));
            }
        }
        for group in &mut groups {
            group.v4 = merge(std::mem::take(&mut group.v4));
            group.v6 = merge(std::mem::take(&mut group.v6));
        }
        Self { groups }
    }

    /// Whether a rule matches `addr` with `transport` (`None`: ICMP echo,
    /// which needs a rule with neither ports nor a protocol).
    pub(crate) fn matches(&self, addr: IpAddr, transport: Option<(u16, Protocol)>) -> bool {
        let (v6, value) = match addr {
            IpAddr::V4(a) => (false, u128::from(u32::from(a))),
            IpAddr::V6(a) => (true, u128::from(a)),
        };
        self.groups.iter().any(|g| {
            let transport_ok = match transport {
                Some((port, protocol)) => {
                    g.protocol.is_none_or(|p| p == protocol)
                        && g.ports.is_none_or(|r| r.start() <= port && port <= r.end())
                }
                None => g.protocol.is_none() && g.ports.is_none(),
            };
            transport_ok && contains(if v6 { &g.v6 } else { &g.v4 }, value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_matches_as_the_rules_do() {
        let rules: Vec<NetRule> = [
            "10.0.0.0/8:443/tcp",
            "192.0.2.0/24",
            "[2001:db8::/32]:53/udp",
        ]
        .iter()
        .map(|r| r.parse().unwrap_or_else(|e| panic!("{r}: {e}")))
        .collect();
        let index = NetIndex::new(&rules);
        let probes = [
            ("10.1.2.3", Some((443, Protocol::Tcp))),
            ("10.1.2.3", Some((443, Protocol::Udp))),
            ("10.1.2.3", Some((80, Protocol::Tcp))),
            ("11.0.0.0", Some((443, Protocol::Tcp))),
            ("9.255.255.255", Some((443, Protocol::Tcp))),
            ("192.0.2.255", Some((1, Protocol::Udp))),
            ("192.0.2.255", None),
            ("10.1.2.3", None),
            ("2001:db8::1", Some((53, Protocol::Udp))),
            ("2001:db9::1", Some((53, Protocol::Udp))),
        ];
        for (addr, transport) in probes {
            let addr: IpAddr = addr.parse().unwrap_or(IpAddr::V4(0.into()));
            let linear = rules.iter().any(|r| match transport {
                Some((port, protocol)) => r.matches(addr, port, protocol),
                None => r.matches_any_transport(addr),
            });
            assert_eq!(
                index.matches(addr, transport),
                linear,
                "{addr} {transport:?}"
            );
        }
    }
}
