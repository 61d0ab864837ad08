//! The second enforcement point: the forwarder opens a host socket only to
//! a destination the policy allows, with the same semantics as the
//! nftables ruleset (metadata blocks, deny over allow) and more: IPv4-mapped
//! and IPv4-compatible IPv6 forms are judged as the IPv4 address they
//! carry, and addresses no socket should reach (unspecified, multicast,
//! broadcast) are never forwarded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use sandbox_policy::{DnsMode, IpNet, NetRule, Network, Protocol};

use crate::forward::names::Names;
use crate::forward::net_index::NetIndex;

use crate::nft::{Gateway, METADATA_BLOCKS};

/// Why a destination is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// A link-local or cloud-metadata address (`allow_metadata` is off).
    Metadata,
    /// A `deny` rule matches.
    Denied,
    /// No `allow` rule matches.
    NotAllowed,
    /// Unspecified, multicast or broadcast: nothing to connect to.
    NotForwardable,
    /// The gateway itself, other than DNS when `dns = true`.
    Gateway,
}

/// What the forwarder does with a new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Open a host socket to the destination.
    Forward,
    /// A DNS query to the gateway: relay it to the host's resolver.
    Dns,
    /// Drop it (and count it).
    Refuse(Refusal),
}

/// The policy's `network` section, as the forwarder applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    allow: Vec<NetRule>,
    /// The address allow rules, indexed (O(log n) a flow).
    allow_index: NetIndex,
    deny: Vec<NetRule>,
    metadata: Vec<IpNet>,
    dns: DnsMode,
    gateway: Gateway,
    /// The host-name rules and their pins.
    pub(crate) names: Names,
}

/// The IPv4 address an IPv6 address carries, if it is IPv4-mapped
/// (`::ffff:a.b.c.d`) or IPv4-compatible (`::a.b.c.d`, deprecated but still
/// routed by some stacks); any other address as it is.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let o = v6.octets();
            if o[..12].iter().all(|&b| b == 0)
                && v6 != Ipv6Addr::UNSPECIFIED
                && v6 != Ipv6Addr::LOCALHOST
            {
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            addr
        }
        IpAddr::V4(_) => addr,
    }
}

impl EgressPolicy {
    /// The forwarder's view of `network`.
    pub fn from_network(network: &Network, gateway: Gateway) -> Self {
        let metadata = if network.allow_metadata.unwrap_or(false) {
            Vec::new()
        } else {
            METADATA_BLOCKS
                .iter()
                .filter_map(|(addr, prefix)| IpNet::new(addr.parse().ok()?, *prefix).ok())
                .collect()
        };
        let allow = network.allow.clone().unwrap_or_default();
        Self {
            allow_index: NetIndex::new(&allow),
            allow,
            deny: network.deny.clone().unwrap_or_default(),
            metadata,
            dns: network.dns_mode(),
            gateway,
            names: Names::from_network(network),
        }
    }

    /// The DNS mode in effect (never `Auto`).
    pub fn dns_mode(&self) -> DnsMode {
        self.dns
    }

    /// The verdict for a new flow to `dest:port` over `protocol`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sandbox_net::forward::{EgressPolicy, Refusal, Verdict};
    /// use sandbox_net::Gateway;
    /// use sandbox_policy::{Policy, Protocol};
    ///
    /// let network = Policy::profile("networked")?.network;
    /// let policy = EgressPolicy::from_network(&network, Gateway::default());
    /// let ip = |s: &str| s.parse().unwrap();
    /// assert_eq!(policy.decide(ip("198.51.100.7"), 443, Protocol::Tcp), Verdict::Forward);
    /// assert_eq!(policy.decide(ip("198.51.100.13"), 443, Protocol::Tcp), Verdict::Refuse(Refusal::Denied));
    /// // The same address written as IPv4-mapped IPv6 is judged the same.
    /// assert_eq!(policy.decide(ip("::ffff:169.254.169.254"), 80, Protocol::Tcp), Verdict::Refuse(Refusal::Metadata));
    /// assert_eq!(policy.decide(ip("10.0.2.2"), 53, Protocol::Udp), Verdict::Dns);
    /// # Ok::<(), sandbox_policy::Error>(())
    /// ```
    pub fn decide(&self, dest: IpAddr, port: u16, protocol: Protocol) -> Verdict {
        self.judge(dest, Some((port, protocol)))
    }

    /// For a flow no address rule allows but a name pin does: the host
    /// patterns of the pinned rules, one of which its first bytes must name
    /// (SNI, or HTTP `Host`). `None` for anything else.
    pub fn pin_check(
        &self,
        dest: IpAddr,
        port: u16,
        protocol: Protocol,
    ) -> Option<Vec<sandbox_policy::HostPattern>> {
        let canonical_dest = canonical(dest);
        let transport = Some((port, protocol));
        let by_address = self.allow_index.matches(canonical_dest, transport)
            || self.allow_index.matches(dest, transport);
        if by_address {
            return None;
        }
        let patterns = self
            .names
            .patterns_for(canonical_dest, (port, protocol), Instant::now());
        (!patterns.is_empty()).then_some(patterns)
    }

    /// The verdict for an ICMP echo request to `dest`: allowed by a rule
    /// that names neither ports nor a protocol (as the nftables ruleset
    /// has it), refused as [`decide`](Self::decide) refuses otherwise.
    pub fn decide_echo(&self, dest: IpAddr) -> Verdict {
        self.judge(dest, None)
    }

    /// `transport`: the port and protocol of a TCP or UDP flow; `None`
    /// for ICMP.
    fn judge(&self, dest: IpAddr, transport: Option<(u16, Protocol)>) -> Verdict {
        let canonical_dest = canonical(dest);
        let is_gateway = canonical_dest == IpAddr::V4(self.gateway.v4)
            || self.gateway.v6.is_some_and(|g| dest == IpAddr::V6(g));
        if is_gateway {
            return if self.dns != DnsMode::Off && transport.is_some_and(|(port, _)| port == 53) {
                Verdict::Dns
            } else {
                Verdict::Refuse(Refusal::Gateway)
            };
        }
        let forwardable = match canonical_dest {
            IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
            IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
        };
        if !forwardable {
            return Verdict::Refuse(Refusal::NotForwardable);
        }
        if self
            .metadata
            .iter()
            .any(|n| n.contains_addr(canonical_dest))
        {
            return Verdict::Refuse(Refusal::Metadata);
        }
        let matches = |rules: &[NetRule]| {
            rules.iter().any(|r| match transport {
                Some((port, protocol)) => {
                    r.matches(canonical_dest, port, protocol) || r.matches(dest, port, protocol)
                }
                None => r.matches_any_transport(canonical_dest) || r.matches_any_transport(dest),
            })
        };
        if matches(&self.deny) {
            return Verdict::Refuse(Refusal::Denied);
        }
        if self.allow_index.matches(canonical_dest, transport)
            || self.allow_index.matches(dest, transport)
            || self.names.allows(canonical_dest, transport, Instant::now())
            || self.names.allows(dest, transport, Instant::now())
        {
            Verdict::Forward
        } else {
            Verdict::Refuse(Refusal::NotAllowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox_policy::Policy;

    fn policy(toml: &str) -> EgressPolicy {
        EgressPolicy::from_network(
            &Policy::from_toml_str(toml).unwrap().network,
            Gateway::default(),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn echo_needs_a_rule_for_every_protocol() {
        let p = policy(
            "[network]\nmode = \"allowlist\"\nallow = [\"198.18.1.0/24\", \"198.18.2.0/24:443/tcp\", \"[2001:db8::/32]\"]\ndeny = [\"198.18.1.9/32\", \"198.18.1.10/32:22\"]\n",
        );
        assert_eq!(p.decide_echo(ip("198.18.1.1")), Verdict::Forward);
        assert_eq!(p.decide_echo(ip("::ffff:198.18.1.1")), Verdict::Forward);
        assert_eq!(p.decide_echo(ip("2001:db8::1")), Verdict::Forward);
        assert_eq!(
            p.decide_echo(ip("198.18.2.1")),
            Verdict::Refuse(Refusal::NotAllowed),
            "a port-only rule allows no echo"
        );
        assert_eq!(
            p.decide_echo(ip("198.18.1.9")),
            Verdict::Refuse(Refusal::Denied)
        );
        assert_eq!(
            p.decide_echo(ip("198.18.1.10")),
            Verdict::Forward,
            "a deny rule with ports denies only those"
        );
        assert_eq!(
            p.decide_echo(ip("10.0.2.2")),
            Verdict::Refuse(Refusal::Gateway)
        );
        assert_eq!(
            p.decide_echo(ip("169.254.169.254")),
            Verdict::Refuse(Refusal::Metadata)
        );
    }

    #[test]
    fn same_semantics_as_the_ruleset() {
        let p = policy(
            "[network]\nmode = \"allowlist\"\nallow = [\"198.18.3.0/24:443/tcp\", \"[2001:db8::/32]:443\"]\ndeny = [\"198.18.3.3/32\"]\n",
        );
        assert_eq!(
            p.decide(ip("198.18.3.4"), 443, Protocol::Tcp),
            Verdict::Forward
        );
        assert_eq!(
            p.decide(ip("198.18.3.4"), 443, Protocol::Udp),
            Verdict::Refuse(Refusal::NotAllowed)
        );
        assert_eq!(
            p.decide(ip("198.18.3.4"), 80, Protocol::Tcp),
            Verdict::Refuse(Refusal::NotAllowed)
        );
        assert_eq!(
            p.decide(ip("198.18.3.3"), 443, Protocol::Tcp),
            Verdict::Refuse(Refusal::Denied)
        );
        assert_eq!(
            p.decide(ip("2001:db8::5"), 443, Protocol::Udp),
            Verdict::Forward
        );
        assert_eq!(
            p.decide(ip("fe80::1"), 443, Protocol::Tcp),
            Verdict::Refuse(Refusal::Metadata)
        );
        assert_eq!(
            p.decide(ip("100.100.100.200"), 80, Protocol::Tcp),
            Verdict::Refuse(Refusal::Metadata)
        );
        assert_eq!(
            p.decide(ip("fd00:ec2::254"), 80, Protocol::Tcp),
            Verdict::Refuse(Refusal::Metadata)
        );
    }

    #[test]
    fn mapped_and_compatible_forms_are_judged_as_ipv4() {
        let p = policy(
            "[network]\nmode = \"allowlist\"\nallow = [\"198.18.3.0/24:443/tcp\"]\ndeny = [\"198.18.3.3/32\"]\n",
        );
        assert_eq!(
            p.decide(ip("::ffff:198.18.3.4"), 443, Protocol::Tcp),
            Verdict::Forward
        );
        assert_eq!(
            p.decide(ip("::ffff:198.18.3.3"), 443, Protocol::Tcp),
            Verdict::Refuse(Refusal::Denied)
        );
        assert_eq!(
            p.decide(ip("::198.18.3.3"), 443, Protocol::Tcp),
            Verdict::Refuse(Refusal::Denied)
        );
        assert_eq!(
            p.decide(ip("::ffff:169.254.169.254"), 80, Protocol::Tcp),
            Verdict::Refuse(Refusal::Metadata)
        );
        assert_eq!(canonical(ip("::1")), ip("::1"));
    }

    #[test]
    fn gateway_dns_and_unforwardable_addresses() {
        let with_dns =
            policy("[network]\nmode = \"allowlist\"\ndns = true\nallow = [\"0.0.0.0/0\"]\n");
        assert_eq!(
            with_dns.decide(ip("10.0.2.2"), 53, Protocol::Udp),
            Verdict::Dns
        );
        assert_eq!(
            with_dns.decide(ip("fd00:0:2::2"), 53, Protocol::Tcp),
            Verdict::Dns
        );
        assert_eq!(
            with_dns.decide(ip("10.0.2.2"), 22, Protocol::Tcp),
            Verdict::Refuse(Refusal::Gateway)
        );
        assert_eq!(
            with_dns.decide(ip("255.255.255.255"), 53, Protocol::Udp),
            Verdict::Refuse(Refusal::NotForwardable)
        );
        assert_eq!(
            with_dns.decide(ip("224.0.0.1"), 53, Protocol::Udp),
            Verdict::Refuse(Refusal::NotForwardable)
        );
        assert_eq!(
            with_dns.decide(ip("0.0.0.0"), 53, Protocol::Udp),
            Verdict::Refuse(Refusal::NotForwardable)
        );
        let without = policy("[network]\nmode = \"allowlist\"\n");
        assert_eq!(
            without.decide(ip("10.0.2.2"), 53, Protocol::Udp),
            Verdict::Refuse(Refusal::Gateway)
        );
        let metadata_ok =
            policy("[network]\nallow_metadata = true\nallow = [\"169.254.169.254/32:80/tcp\"]\n");
        assert_eq!(
            metadata_ok.decide(ip("169.254.169.254"), 80, Protocol::Tcp),
            Verdict::Forward
        );
    }
}
