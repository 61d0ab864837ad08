//! The egress ruleset: a typed model built from a policy's `network`
//! section, turned into one atomic nf_tables batch with libnftnl (the
//! `nftnl` crate), installed over netlink, and read back from the kernel.

use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nftnl::{Batch, Chain, Hook, MsgType, Policy as ChainPolicy, ProtoFamily, Rule, Table};
use sandbox_policy::{IpNet, Network, PortRange, Protocol};

use crate::error::{Error, Result};

mod batch;
pub(crate) mod cidr_sets;
mod expr;
pub(crate) mod nla;
mod pins;
mod text;
pub use batch::{KernelRuleset, NftBatch};
pub use cidr_sets::{CidrSet, SET_THRESHOLD};
#[cfg(test)]
use expr::prefix_mask;
use expr::{RefuseRule, add_expressions, add_named_set};
pub use pins::{MAX_HOST_RULES, PinSet, PinUpdate, pin_batch};
#[cfg(test)]
use text::rule_text;

/// The table every sandbox ruleset lives in (family `inet`).
pub const TABLE: &str = "sandbox";

/// What a rule does with a packet it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Let it through.
    Accept,
    /// Drop it.
    Drop,
    /// Refuse it out loud (`goto refuse`): chain `refuse` answers TCP with
    /// a reset and anything else with ICMP administratively-prohibited, so
    /// a refused connect fails at once instead of waiting out its timeout.
    Refuse,
}

/// The regular chain [`Verdict::Refuse`] goes to.
pub const REFUSE_CHAIN: &str = "refuse";

/// What a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Match {
    /// Loopback traffic (`oifname "lo"` in `output`, `iifname "lo"` in
    /// `input`).
    Loopback,
    /// `ct state established,related`.
    EstablishedRelated,
    /// IPv6's link housekeeping: ICMPv6 types 130–143 (multicast listener
    /// queries and reports, router and neighbour solicitations and
    /// advertisements, redirects). Without neighbour discovery a default
    /// drop would leave IPv6 unable to find its gateway; the listener
    /// reports an interface sends as it comes up are no egress (only the
    /// forwarder sees them, and it relays no such thing), so they are not
    /// reported as refusals either.
    NeighborDiscovery,
    /// Every packet (the last rule of `output`).
    Any,
    /// An address in the interval set of allow group `group`, with the
    /// group's protocol and ports (as for `Destination`).
    InCidrSet {
        /// Which group.
        group: u16,
        /// The IPv6 set (else IPv4).
        v6: bool,
        /// The transport protocol, if restricted.
        protocol: Option<Protocol>,
        /// The destination ports, if restricted (needs `protocol`).
        ports: Option<PortRange>,
    },
    /// An address in one of the pin sets of a host-name rule, with the
    /// rule's protocol and ports (as for `Destination`).
    Pinned {
        /// The set.
        set: PinSet,
        /// The transport protocol, if restricted.
        protocol: Option<Protocol>,
        /// The destination ports, if restricted (needs `protocol`).
        ports: Option<PortRange>,
    },
    /// A destination network, optionally one transport protocol and a
    /// destination port range (ports without a protocol: make one rule per
    /// protocol).
    Destination {
        /// The network (IPv4 or IPv6).
        net: IpNet,
        /// The transport protocol, if restricted.
        protocol: Option<Protocol>,
        /// The destination ports, if restricted (needs `protocol`).
        ports: Option<PortRange>,
    },
}

/// One rule: a match and a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleSpec {
    /// What it matches.
    pub matches: Match,
    /// What it does.
    pub verdict: Verdict,
}

/// The sandbox's gateway addresses (DNS is allowed to them when the
/// policy says `dns = true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gateway {
    /// IPv4 gateway.
    pub v4: Ipv4Addr,
    /// IPv6 gateway, if the namespace has IPv6.
    pub v6: Option<Ipv6Addr>,
}

impl Default for Gateway {
    fn default() -> Self {
        Self {
            v4: Ipv4Addr::new(10, 0, 2, 2),
            v6: Some(Ipv6Addr::new(0xfd00, 0, 2, 0, 0, 0, 0, 2)),
        }
    }
}

/// Addresses blocked unless `allow_metadata = true`: link-local (where
/// cloud metadata services live) and the known metadata addresses.
pub const METADATA_BLOCKS: [(&str, u8); 4] = [
    ("169.254.0.0", 16),
    ("fe80::", 10),
    ("fd00:ec2::254", 128),
    ("100.100.100.200", 32),
];

/// The egress ruleset of a sandbox: table `inet sandbox`, chain `output`
/// (policy drop), chain `input` (policy drop) and the regular chain
/// `refuse` that `output`'s refusals go to (a TCP reset, or ICMP
/// administratively-prohibited).
///
/// # Examples
///
/// ```
/// use sandbox_net::{Gateway, Ruleset};
/// use sandbox_policy::Policy;
///
/// let policy = Policy::from_toml_str(
///     "[network]\nmode = \"allowlist\"\nallow = [\"198.51.100.0/24:443/tcp\"]\n",
/// )?;
/// let ruleset = Ruleset::from_network(&policy.network, &Gateway::default());
/// let text = ruleset.to_string(); // nft syntax
/// assert!(text.contains("ip daddr 198.51.100.0/24 tcp dport 443 accept"));
/// assert!(text.contains("ip daddr 169.254.0.0/16 goto refuse")); // always-on block
/// # Ok::<(), sandbox_policy::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// The `output` chain, in order.
    pub output: Vec<RuleSpec>,
    /// The `input` chain, in order.
    pub input: Vec<RuleSpec>,
    /// The sets of pinned addresses (one per family for each host-name
    /// allow rule), made empty.
    pub sets: Vec<PinSet>,
    /// The interval sets of allow groups with more than
    /// [`SET_THRESHOLD`] networks, made with their elements.
    pub cidr_sets: Vec<CidrSet>,
}

fn net(addr: &str, prefix: u8) -> Option<IpNet> {
    IpNet::new(addr.parse().ok()?, prefix).ok()
}

/// The IPv4-mapped IPv6 form of an IPv4 network (`::ffff:a.b.c.d/96+p`).
pub fn ipv4_mapped(v4: IpNet) -> Option<IpNet> {
    match v4.addr() {
        IpAddr::V4(a) => IpNet::new(IpAddr::V6(a.to_ipv6_mapped()), 96 + v4.prefix()).ok(),
        IpAddr::V6(_) => None,
    }
}

/// The protocols a rule with `protocol` and `ports` needs one nftables
/// rule each for: ports without a protocol mean TCP and UDP.
fn protocols_of(protocol: Option<Protocol>, ports: Option<PortRange>) -> Vec<Option<Protocol>> {
    match (protocol, ports) {
        (None, Some(_)) => vec![Some(Protocol::Tcp), Some(Protocol::Udp)],
        (p, _) => vec![p],
    }
}

/// The rules for one network with optional protocol and ports: one rule,
/// or one per protocol when ports are given without one.
fn destination_rules(
    net: IpNet,
    protocol: Option<Protocol>,
    ports: Option<PortRange>,
    verdict: Verdict,
) -> Vec<RuleSpec> {
    protocols_of(protocol, ports)
        .into_iter()
        .map(|protocol| RuleSpec {
            matches: Match::Destination {
                net,
                protocol,
                ports,
            },
            verdict,
        })
        .collect()
}

impl Ruleset {
    /// The ruleset a policy's `network` section asks for. In `output`:
    /// loopback, established/related and IPv6 neighbour discovery accepted;
    /// then the metadata blocks
    /// (with IPv4-mapped forms) unless `allow_metadata`; then `deny` rules
    /// (with IPv4-mapped forms); then DNS to the gateway if `dns`; then
    /// `allow` rules; everything else refused ([`Verdict::Refuse`]: a
    /// reset or ICMP administratively-prohibited). In `input`: loopback,
    /// established/related and neighbour discovery; everything else dropped.
    pub fn from_network(network: &Network, gateway: &Gateway) -> Ruleset {
        let accept = |matches| RuleSpec {
            matches,
            verdict: Verdict::Accept,
        };
        let mut output = vec![
            accept(Match::Loopback),
            accept(Match::EstablishedRelated),
            accept(Match::NeighborDiscovery),
        ];
        let block = |n: IpNet, protocol, ports, output: &mut Vec<RuleSpec>| {
            output.extend(destination_rules(n, protocol, ports, Verdict::Refuse));
            if let Some(mapped) = ipv4_mapped(n) {
                output.extend(destination_rules(mapped, protocol, ports, Verdict::Refuse));
            }
        };
        if !network.allow_metadata.unwrap_or(false) {
            for (addr, prefix) in METADATA_BLOCKS {
                if let Some(n) = net(addr, prefix) {
                    block(n, None, None, &mut output);
                }
            }
        }
        // Host-name deny rules are the forwarder's: it never resolves nor
        // pins what they match.
        for rule in network.deny.iter().flatten() {
            if let Some(net) = rule.net() {
                block(net, rule.protocol(), rule.ports(), &mut output);
            }
        }
        if network.dns_mode() != sandbox_policy::DnsMode::Off {
            let gateways =
                std::iter::once(IpAddr::V4(gateway.v4)).chain(gateway.v6.map(IpAddr::V6));
            for gw in gateways {
                let prefix = if gw.is_ipv4() { 32 } else { 128 };
                if let (Ok(n), Ok(ports)) = (IpNet::new(gw, prefix), PortRange::new(53, 53)) {
                    output.extend(destination_rules(n, None, Some(ports), Verdict::Accept));
                }
            }
        }
        // Address allow rules, grouped by protocol and ports (in order of
        // first appearance); a large group is an interval set.
        let mut groups: cidr_sets::Groups = Vec::new();
        for rule in network.allow.iter().flatten() {
            if let Some(net) = rule.net() {
                let key = (rule.protocol(), rule.ports());
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, nets)) => nets.push(net),
                    None => groups.push((key, vec![net])),
                }
            }
        }
        let (allow_rules, cidr_sets) = cidr_sets::group_rules(groups);
        output.extend(allow_rules);
        let (sets, pinned) = pins::sets_and_rules(network);
        output.extend(pinned);
        output.push(RuleSpec {
            matches: Match::Any,
            verdict: Verdict::Refuse,
        });
        Ruleset {
            output,
            input: vec![
                accept(Match::Loopback),
                accept(Match::EstablishedRelated),
                accept(Match::NeighborDiscovery),
            ],
            sets,
            cidr_sets,
        }
    }

    /// The ruleset as one nf_tables batch for a network namespace that has
    /// no `inet sandbox` table yet, as a new one (begin, the table, its
    /// chains and rules, end), ready to send on a `NETLINK_NETFILTER`
    /// socket: what a sandbox's child sends, prebuilt so that it need not
    /// allocate. It asks for nothing a kernel before 6.3 lacks (no
    /// `DESTROYTABLE`).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if a name cannot be a C string.
    pub fn batch(&self) -> Result<NftBatch> {
        self.build(false)
    }

    /// The ruleset as one batch that replaces any `inet sandbox` table
    /// atomically: add the table (a no-op if it exists), delete it, then
    /// create it anew with its chains and rules. Works on every kernel
    /// with nf_tables; what [`install`](Ruleset::install) sends.
    ///
    /// # Errors
    ///
    /// As for [`batch`](Ruleset::batch).
    pub fn replace_batch(&self) -> Result<NftBatch> {
        self.build(true)
    }

    fn build(&self, replace: bool) -> Result<NftBatch> {
        let name = |s: &str| {
            CString::new(s).map_err(|_| Error::Invalid {
                what: "nftables name",
                detail: s.into(),
            })
        };
        let table = Table::new(name(TABLE)?, ProtoFamily::Inet);
        let mut output = Chain::new(name("output")?, &table);
        output.set_hook(Hook::Out, 0);
        output.set_policy(ChainPolicy::Drop);
        let mut input = Chain::new(name("input")?, &table);
        input.set_hook(Hook::In, 0);
        input.set_policy(ChainPolicy::Drop);
        let refuse = Chain::new(name(REFUSE_CHAIN)?, &table);
        let refuse_rules = [
            RefuseRule::Log,
            RefuseRule::TcpReset,
            RefuseRule::Prohibited,
        ];
        let mut batch = Batch::new();
        if replace {
            batch.add(&table, MsgType::Add);
            batch.add(&table, MsgType::Del);
        }
        batch.add(&table, MsgType::Add);
        batch.add(&output, MsgType::Add);
        batch.add(&input, MsgType::Add);
        batch.add(&refuse, MsgType::Add);
        let mut lookups = std::collections::HashMap::new();
        let named = self
            .sets
            .iter()
            .map(|s| (s.name(), s.v6, libc::NFT_SET_TIMEOUT as u32))
            .chain(
                self.cidr_sets
                    .iter()
                    .map(|s| (s.name(), s.v6, libc::NFT_SET_INTERVAL as u32)),
            );
        for (id, (set, v6, flags)) in named.enumerate() {
            let set_name = name(&set)?;
            let id = id as u32 + 1;
            let lookup = if v6 {
                add_named_set::<Ipv6Addr>(&mut batch, &table, &set_name, id, flags)
            } else {
                add_named_set::<Ipv4Addr>(&mut batch, &table, &set_name, id, flags)
            };
            lookups.insert(set, lookup);
        }
        for (chain, rules, outbound) in
            [(&output, &self.output, true), (&input, &self.input, false)]
        {
            for spec in rules {
                let mut rule = Rule::new(chain);
                add_expressions(&mut rule, spec, outbound, &lookups)?;
                batch.add(&rule, MsgType::Add);
            }
        }
        for refusal in refuse_rules {
            let mut rule = Rule::new(&refuse);
            refusal.add_expressions(&mut rule);
            batch.add(&rule, MsgType::Add);
        }
        let finalized = batch.finalize();
        let mut bytes: Vec<u8> = finalized.iter().flatten().copied().collect();
        // The interval sets' elements, before the batch's end (the last
        // message: a header and an nfgenmsg).
        if !self.cidr_sets.is_empty() && bytes.len() >= 20 {
            let end = bytes.split_off(bytes.len() - 20);
            let mut seq = 1 << 20;
            for set in &self.cidr_sets {
                let (elements, next) = cidr_sets::element_messages(set, seq);
                bytes.extend_from_slice(&elements);
                seq = next;
            }
            bytes.extend_from_slice(&end);
        }
        Ok(NftBatch::from_bytes(bytes))
    }

    /// Installs the ruleset in the caller's network namespace, as one
    /// atomic batch replacing any previous `inet sandbox` table
    /// ([`replace_batch`](Ruleset::replace_batch)).
    ///
    /// # Errors
    ///
    /// [`Error::Netlink`] with the kernel's errno (nothing changed: the
    /// batch is all or nothing); [`Error::Os`] for the socket.
    pub fn install(&self) -> Result<()> {
        self.replace_batch()?.send()
    }

    /// Reads table `inet sandbox` back from the kernel and compares it,
    /// rule by rule and expression by expression, and its interval sets
    /// element by element, with this model.
    ///
    /// # Errors
    ///
    /// [`Error::Mismatch`] naming the first difference (or a missing
    /// table); [`Error::Os`]/[`Error::Netlink`] if the dump failed.
    pub fn read_back(&self) -> Result<()> {
        let meant = self.batch()?.rules()?;
        let found = KernelRuleset::read()?;
        if found.chains
            != [
                "input (hook input, policy drop)",
                "output (hook output, policy drop)",
                "refuse (regular)",
            ]
        {
            return Err(Error::Mismatch {
                detail: format!("chains in the kernel: {:?}", found.chains),
            });
        }
        if found.rules.len() != meant.len() {
            return Err(Error::Mismatch {
                detail: format!(
                    "{} rules in the kernel, {} meant",
                    found.rules.len(),
                    meant.len()
                ),
            });
        }
        for (i, (k, m)) in found.rules.iter().zip(&meant).enumerate() {
            if k != m {
                return Err(Error::Mismatch {
                    detail: format!("rule {i}: kernel has\n{k}\nmeant\n{m}"),
                });
            }
        }
        // The interval sets, element by element.
        let socket = batch::netfilter_socket()?;
        for set in &self.cidr_sets {
            let found = cidr_sets::dump_elements(std::os::fd::AsFd::as_fd(&socket), &set.name())
                .map_err(|e| Error::Netlink {
                    request: format!("list the elements of set {}", set.name()),
                    error: e.into(),
                })?;
            let meant = cidr_sets::boundaries(set);
            if found != meant {
                return Err(Error::Mismatch {
                    detail: format!(
                        "set {}: the kernel has {} elements, {} meant{}",
                        set.name(),
                        found.len(),
                        meant.len(),
                        found
                            .iter()
                            .zip(&meant)
                            .position(|(f, m)| f != m)
                            .map(|i| format!(" (first difference at {i})"))
                            .unwrap_or_default()
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
