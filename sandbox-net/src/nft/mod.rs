//! The egress ruleset: a typed model built from a policy's `network`
//! section, turned into one atomic nf_tables batch with libnftnl (the
//! `nftnl` crate), installed over netlink, and read back from the kernel.

use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd};

use nftnl::expr::{Bitwise, Cmp, CmpOp, Conntrack, Meta, Payload};
use nftnl::{
    Batch, Chain, FinalizedBatch, Hook, MsgType, Policy as ChainPolicy, ProtoFamily, Rule, Table,
};
use sandbox_policy::{IpNet, Network, PortRange, Protocol};

use crate::error::{Error, Result};
use crate::sys;
use sandbox_child::net::NetlinkFailure;

mod text;
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
    /// IPv6 neighbour discovery (ICMPv6 types 133–136: router and
    /// neighbour solicitations and advertisements). Without it a default
    /// drop would leave IPv6 unable to find its gateway.
    NeighborDiscovery,
    /// Every packet (the last rule of `output`).
    Any,
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

/// The rules for one network with optional protocol and ports: one rule,
/// or one per protocol when ports are given without one.
fn destination_rules(
    net: IpNet,
    protocol: Option<Protocol>,
    ports: Option<PortRange>,
    verdict: Verdict,
) -> Vec<RuleSpec> {
    let protocols: Vec<Option<Protocol>> = match (protocol, ports) {
        (None, Some(_)) => vec![Some(Protocol::Tcp), Some(Protocol::Udp)],
        (p, _) => vec![p],
    };
    protocols
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
        for rule in network.deny.iter().flatten() {
            block(rule.net(), rule.protocol(), rule.ports(), &mut output);
        }
        if network.dns.unwrap_or(false) {
            let gateways =
                std::iter::once(IpAddr::V4(gateway.v4)).chain(gateway.v6.map(IpAddr::V6));
            for gw in gateways {
                let prefix = if gw.is_ipv4() { 32 } else { 128 };
                if let (Ok(n), Ok(ports)) = (IpNet::new(gw, prefix), PortRange::new(53, 53)) {
                    output.extend(destination_rules(n, None, Some(ports), Verdict::Accept));
                }
            }
        }
        for rule in network.allow.iter().flatten() {
            output.extend(destination_rules(
                rule.net(),
                rule.protocol(),
                rule.ports(),
                Verdict::Accept,
            ));
        }
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
        let refuse_rules = [RefuseRule::TcpReset, RefuseRule::Prohibited];
        let mut batch = Batch::new();
        if replace {
            batch.add(&table, MsgType::Add);
            batch.add(&table, MsgType::Del);
        }
        batch.add(&table, MsgType::Add);
        batch.add(&output, MsgType::Add);
        batch.add(&input, MsgType::Add);
        batch.add(&refuse, MsgType::Add);
        for (chain, rules, outbound) in
            [(&output, &self.output, true), (&input, &self.input, false)]
        {
            for spec in rules {
                let mut rule = Rule::new(chain);
                add_expressions(&mut rule, spec, outbound)?;
                batch.add(&rule, MsgType::Add);
            }
        }
        for refusal in refuse_rules {
            let mut rule = Rule::new(&refuse);
            refusal.add_expressions(&mut rule);
            batch.add(&rule, MsgType::Add);
        }
        let finalized = batch.finalize();
        Ok(NftBatch::from_finalized(&finalized))
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
    /// rule by rule and expression by expression, with this model.
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
        Ok(())
    }
}

fn ip_header_daddr(v4: bool) -> Payload {
    use nftnl::expr::{Ipv4HeaderField, Ipv6HeaderField, NetworkHeaderField};
    Payload::Network(if v4 {
        NetworkHeaderField::Ipv4(Ipv4HeaderField::Daddr)
    } else {
        NetworkHeaderField::Ipv6(Ipv6HeaderField::Daddr)
    })
}

fn dport(protocol: Protocol) -> Payload {
    use nftnl::expr::{TcpHeaderField, TransportHeaderField, UdpHeaderField};
    Payload::Transport(match protocol {
        Protocol::Tcp => TransportHeaderField::Tcp(TcpHeaderField::Dport),
        Protocol::Udp => TransportHeaderField::Udp(UdpHeaderField::Dport),
    })
}

/// The prefix mask of `prefix` bits over `len` bytes.
fn prefix_mask(prefix: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let bits = (prefix as usize).saturating_sub(i * 8).min(8);
            if bits == 0 { 0 } else { 0xffu8 << (8 - bits) }
        })
        .collect()
}

/// The rules of chain `refuse`, in order.
#[derive(Debug, Clone, Copy)]
enum RefuseRule {
    /// `meta l4proto tcp reject with tcp reset`
    TcpReset,
    /// `reject with icmpx admin-prohibited`
    Prohibited,
}

impl RefuseRule {
    fn add_expressions(self, rule: &mut Rule<'_>) {
        use nftnl::expr::{IcmpCode, RejectionType};
        let rejection = match self {
            RefuseRule::TcpReset => {
                rule.add_expr(&Meta::L4Proto);
                rule.add_expr(&Cmp::new(CmpOp::Eq, &[libc::IPPROTO_TCP as u8][..]));
                RejectionType::TcpRst
            }
            RefuseRule::Prohibited => RejectionType::Icmp(IcmpCode::AdminProhibited),
        };
        rule.add_expr(&nftnl::expr::Verdict::Reject(rejection));
    }
}

fn add_expressions(rule: &mut Rule<'_>, spec: &RuleSpec, outbound: bool) -> Result<()> {
    match spec.matches {
        Match::Any => {}
        Match::Loopback => {
            let mut name = [0u8; 16];
            name[..2].copy_from_slice(b"lo");
            rule.add_expr(&if outbound {
                Meta::OifName
            } else {
                Meta::IifName
            });
            rule.add_expr(&Cmp::new(CmpOp::Eq, &name[..]));
        }
        Match::EstablishedRelated => {
            // NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED)
            let states: u32 = (1 << 1) | (1 << 2);
            rule.add_expr(&Conntrack::State);
            rule.add_expr(&Bitwise::new(&states.to_ne_bytes()[..], &[0u8; 4][..]));
            rule.add_expr(&Cmp::new(CmpOp::Neq, &[0u8; 4][..]));
        }
        Match::NeighborDiscovery => {
            use nftnl::expr::{Icmpv6HeaderField, TransportHeaderField};
            rule.add_expr(&Meta::NfProto);
            rule.add_expr(&Cmp::new(CmpOp::Eq, &[libc::NFPROTO_IPV6 as u8][..]));
            rule.add_expr(&Meta::L4Proto);
            rule.add_expr(&Cmp::new(CmpOp::Eq, &[libc::IPPROTO_ICMPV6 as u8][..]));
            rule.add_expr(&Payload::Transport(TransportHeaderField::Icmpv6(
                Icmpv6HeaderField::Type,
            )));
            rule.add_expr(&Cmp::new(CmpOp::Gte, &[133u8][..]));
            rule.add_expr(&Cmp::new(CmpOp::Lte, &[136u8][..]));
        }
        Match::Destination {
            net,
            protocol,
            ports,
        } => {
            let v4 = net.addr().is_ipv4();
            let family = if v4 {
                libc::NFPROTO_IPV4
            } else {
                libc::NFPROTO_IPV6
            } as u8;
            rule.add_expr(&Meta::NfProto);
            rule.add_expr(&Cmp::new(CmpOp::Eq, &[family][..]));
            if let Some(protocol) = protocol {
                let number = match protocol {
                    Protocol::Tcp => libc::IPPROTO_TCP,
                    Protocol::Udp => libc::IPPROTO_UDP,
                } as u8;
                rule.add_expr(&Meta::L4Proto);
                rule.add_expr(&Cmp::new(CmpOp::Eq, &[number][..]));
            }
            let addr: Vec<u8> = match net.addr() {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            let full = if v4 { 32 } else { 128 };
            rule.add_expr(&ip_header_daddr(v4));
            if net.prefix() < full {
                let mask = prefix_mask(net.prefix(), addr.len());
                let zero = vec![0u8; addr.len()];
                rule.add_expr(&Bitwise::new(&mask[..], &zero[..]));
            }
            rule.add_expr(&Cmp::new(CmpOp::Eq, &addr[..]));
            if let (Some(protocol), Some(ports)) = (protocol, ports) {
                rule.add_expr(&dport(protocol));
                if ports.start() == ports.end() {
                    rule.add_expr(&Cmp::new(CmpOp::Eq, &ports.start().to_be_bytes()[..]));
                } else {
                    rule.add_expr(&Cmp::new(CmpOp::Gte, &ports.start().to_be_bytes()[..]));
                    rule.add_expr(&Cmp::new(CmpOp::Lte, &ports.end().to_be_bytes()[..]));
                }
            }
        }
    }
    rule.add_expr(&match spec.verdict {
        Verdict::Accept => nftnl::expr::Verdict::Accept,
        Verdict::Drop => nftnl::expr::Verdict::Drop,
        Verdict::Refuse => nftnl::expr::Verdict::Goto {
            chain: CString::new(REFUSE_CHAIN).map_err(|_| Error::Invalid {
                what: "nftables name",
                detail: REFUSE_CHAIN.into(),
            })?,
        },
    });
    Ok(())
}

/// An nf_tables batch as bytes, with how many ACKs it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftBatch {
    bytes: Vec<u8>,
    acks: u32,
}

impl NftBatch {
    fn from_finalized(batch: &FinalizedBatch) -> Self {
        let bytes: Vec<u8> = batch.iter().flatten().copied().collect();
        let acks = sys::count_ack_requests(&bytes);
        Self { bytes, acks }
    }

    /// The bytes, as sent.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many ACKs the kernel sends back when the batch succeeds.
    pub fn acks(&self) -> u32 {
        self.acks
    }

    /// Sends the batch on a new `NETLINK_NETFILTER` socket in the caller's
    /// network namespace and checks the ACKs.
    ///
    /// # Errors
    ///
    /// [`Error::Netlink`] with the first errno the kernel answered (the
    /// batch is then rolled back whole).
    pub fn send(&self) -> Result<()> {
        let socket = netfilter_socket()?;
        sandbox_child::net::send_batch_and_check_acks(socket.as_fd(), &self.bytes, self.acks)
            .map_err(|failure| Error::Netlink {
                request: match failure {
                    NetlinkFailure::Refused { at, .. } => {
                        format!("nftables batch (message {at})")
                    }
                    NetlinkFailure::Socket(_) => "nftables batch (send or receive)".into(),
                },
                error: failure.errno().into(),
            })
    }

    /// The batch's rules rendered by libnftnl (table, chain and
    /// expressions; no handle), in order.
    fn rules(&self) -> Result<Vec<String>> {
        sys::render_rules(&self.bytes).map_err(|detail| Error::Malformed {
            request: "our own nftables batch".into(),
            detail,
        })
    }
}

/// A `NETLINK_NETFILTER` socket in the caller's network namespace.
fn netfilter_socket() -> Result<std::os::fd::OwnedFd> {
    sandbox_child::net::netlink_socket(Some(rustix::net::netlink::NETFILTER))
        .map_err(Error::os("socket(NETLINK_NETFILTER)"))
}

/// What the kernel holds in table `inet sandbox`, rendered by libnftnl.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KernelRuleset {
    /// Chains as `name (hook H, policy P)`, sorted.
    pub chains: Vec<String>,
    /// Rules in chain order (`output` then `input`), each rendered as
    /// libnftnl prints its expressions (no handle).
    pub rules: Vec<String>,
}

impl KernelRuleset {
    /// Dumps table `inet sandbox` of the caller's network namespace.
    ///
    /// # Errors
    ///
    /// [`Error::Mismatch`] if there is no such table; [`Error::Os`] or
    /// [`Error::Netlink`] if the dump failed.
    pub fn read() -> Result<Self> {
        let socket = netfilter_socket()?;
        let dump = |kind| {
            sys::nft_dump(socket.as_raw_fd(), kind, TABLE).map_err(|(what, errno)| {
                if errno == libc::ENOENT {
                    Error::Mismatch {
                        detail: format!("no table inet {TABLE} in this network namespace"),
                    }
                } else {
                    Error::Netlink {
                        request: what,
                        error: std::io::Error::from_raw_os_error(errno),
                    }
                }
            })
        };
        let mut chains = dump(sys::DumpKind::Chains)?;
        chains.sort();
        let mut rules = dump(sys::DumpKind::Rules)?;
        // The dump lists chains in creation order (output, input): keep it.
        rules.retain(|r| !r.is_empty());
        Ok(Self { chains, rules })
    }
}

#[cfg(test)]
mod tests;
