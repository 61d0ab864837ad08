//! The ruleset in `nft -f` syntax (for people, and for the benchmark's
//! peer).

use std::fmt;

use super::{Match, REFUSE_CHAIN, RuleSpec, Ruleset, TABLE, Verdict};

impl fmt::Display for Ruleset {
    /// The ruleset in `nft -f` syntax (what the benchmark feeds `nft`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "table inet {TABLE} {{")?;
        for set in &self.sets {
            let kind = if set.v6 { "ipv6_addr" } else { "ipv4_addr" };
            writeln!(f, "  set {} {{ type {kind}; flags timeout; }}", set.name())?;
        }
        for set in &self.cidr_sets {
            let kind = if set.v6 { "ipv6_addr" } else { "ipv4_addr" };
            let show = |v: u128| {
                if set.v6 {
                    std::net::Ipv6Addr::from(v).to_string()
                } else {
                    std::net::Ipv4Addr::from(v as u32).to_string()
                }
            };
            let elements: Vec<String> = set
                .ranges
                .iter()
                .map(|&(lo, hi)| format!("{}-{}", show(lo), show(hi)))
                .collect();
            writeln!(
                f,
                "  set {} {{ type {kind}; flags interval; elements = {{ {} }} }}",
                set.name(),
                elements.join(", ")
            )?;
        }
        for (name, hook, rules) in [
            ("output", "output", &self.output),
            ("input", "input", &self.input),
        ] {
            writeln!(f, "  chain {name} {{")?;
            writeln!(f, "    type filter hook {hook} priority 0; policy drop;")?;
            for rule in rules {
                writeln!(f, "    {}", rule_text(rule, name == "output"))?;
            }
            writeln!(f, "  }}")?;
        }
        writeln!(f, "  chain {REFUSE_CHAIN} {{")?;
        writeln!(
            f,
            "    log group {} snaplen {}",
            crate::forward::LOG_GROUP,
            crate::forward::LOG_SNAPLEN
        )?;
        writeln!(f, "    meta l4proto tcp reject with tcp reset")?;
        writeln!(f, "    reject with icmpx admin-prohibited")?;
        writeln!(f, "  }}")?;
        writeln!(f, "}}")
    }
}

pub(super) fn rule_text(rule: &RuleSpec, outbound: bool) -> String {
    let verdict = match rule.verdict {
        Verdict::Accept => "accept",
        Verdict::Drop => "drop",
        Verdict::Refuse => "goto refuse",
    };
    let matches = match rule.matches {
        Match::Any => return verdict.to_string(),
        Match::InCidrSet {
            group,
            v6,
            protocol,
            ports,
        } => format!(
            "{} daddr @cidr{group}{}{}",
            if v6 { "ip6" } else { "ip" },
            if v6 { "v6" } else { "v4" },
            super::pins::ports_text(protocol, ports)
        ),
        Match::Pinned {
            set,
            protocol,
            ports,
        } => format!(
            "{} daddr @{}{}",
            if set.v6 { "ip6" } else { "ip" },
            set.name(),
            super::pins::ports_text(protocol, ports)
        ),
        Match::Loopback => format!("{} \"lo\"", if outbound { "oifname" } else { "iifname" }),
        Match::EstablishedRelated => "ct state established,related".to_string(),
        Match::NeighborDiscovery => "icmpv6 type 130-143".to_string(),
        Match::Destination {
            net,
            protocol,
            ports,
        } => {
            let family = if net.addr().is_ipv4() { "ip" } else { "ip6" };
            format!(
                "{family} daddr {}/{}{}",
                net.addr(),
                net.prefix(),
                super::pins::ports_text(protocol, ports)
            )
        }
    };
    format!("{matches} {verdict}")
}
