//! The expressions of the ruleset's rules, with libnftnl.

use std::ffi::CString;
use std::net::IpAddr;

use nftnl::expr::{Bitwise, Cmp, CmpOp, Conntrack, Meta, Payload};
use nftnl::{Batch, MsgType, ProtoFamily, Rule, Table};
use sandbox_policy::{PortRange, Protocol};

use super::{Match, REFUSE_CHAIN, RuleSpec, Verdict};
use crate::error::{Error, Result};
use crate::sys;

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
pub(super) fn prefix_mask(prefix: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let bits = (prefix as usize).saturating_sub(i * 8).min(8);
            if bits == 0 { 0 } else { 0xffu8 << (8 - bits) }
        })
        .collect()
}

/// The rules of chain `refuse`, in order.
#[derive(Debug, Clone, Copy)]
pub(super) enum RefuseRule {
    /// `log group 1 snaplen 96`: the forwarder reads what was refused.
    Log,
    /// `meta l4proto tcp reject with tcp reset`
    TcpReset,
    /// `reject with icmpx admin-prohibited`
    Prohibited,
}

impl RefuseRule {
    pub(super) fn add_expressions(self, rule: &mut Rule<'_>) {
        use nftnl::expr::{IcmpCode, RejectionType};
        let rejection = match self {
            RefuseRule::Log => {
                rule.add_expr(&sys::LogGroup {
                    group: crate::forward::LOG_GROUP,
                    snaplen: crate::forward::LOG_SNAPLEN,
                });
                return;
            }
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

/// Adds a named set of `K` keys with `flags` (timeouts, intervals) to
/// `batch`; the lookup expression for it.
pub(super) fn add_named_set<K: nftnl::set::SetKey>(
    batch: &mut Batch,
    table: &Table,
    name: &std::ffi::CStr,
    id: u32,
    flags: u32,
) -> sys::SetLookup {
    let set = nftnl::set::Set::<K>::new_named(name, id, table, ProtoFamily::Inet);
    sys::set_flags(&set, flags);
    batch.add(&set, MsgType::Add);
    sys::SetLookup::new(&set)
}

/// `meta nfproto` of the family, and the destination address into
/// register 1 (for a set lookup).
fn load_daddr(rule: &mut Rule<'_>, v6: bool) {
    let family = if v6 {
        libc::NFPROTO_IPV6
    } else {
        libc::NFPROTO_IPV4
    } as u8;
    rule.add_expr(&Meta::NfProto);
    rule.add_expr(&Cmp::new(CmpOp::Eq, &[family][..]));
    rule.add_expr(&ip_header_daddr(!v6));
}

/// The lookup of register 1 in the ruleset's set `name`.
fn lookup_in(
    rule: &mut Rule<'_>,
    lookups: &std::collections::HashMap<String, sys::SetLookup>,
    name: &str,
) -> Result<()> {
    let lookup = lookups.get(name).ok_or_else(|| Error::Invalid {
        what: "nftables set",
        detail: format!("{name} is not in the ruleset's sets"),
    })?;
    rule.add_expr(lookup);
    Ok(())
}

/// `meta l4proto` and the destination ports, as a rule restricts them.
fn add_transport(rule: &mut Rule<'_>, protocol: Option<Protocol>, ports: Option<PortRange>) {
    if let Some(protocol) = protocol {
        let number = match protocol {
            Protocol::Tcp => libc::IPPROTO_TCP,
            Protocol::Udp => libc::IPPROTO_UDP,
        } as u8;
        rule.add_expr(&Meta::L4Proto);
        rule.add_expr(&Cmp::new(CmpOp::Eq, &[number][..]));
    }
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

pub(super) fn add_expressions(
    rule: &mut Rule<'_>,
    spec: &RuleSpec,
    outbound: bool,
    lookups: &std::collections::HashMap<String, sys::SetLookup>,
) -> Result<()> {
    match spec.matches {
        Match::Any => {}
        Match::Pinned {
            set,
            protocol,
            ports,
        } => {
            load_daddr(rule, set.v6);
            lookup_in(rule, lookups, &set.name())?;
            add_transport(rule, protocol, ports);
        }
        Match::InCidrSet {
            group,
            v6,
            protocol,
            ports,
        } => {
            load_daddr(rule, v6);
            let name = format!("cidr{group}{}", if v6 { "v6" } else { "v4" });
            lookup_in(rule, lookups, &name)?;
            add_transport(rule, protocol, ports);
        }
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
            rule.add_expr(&Cmp::new(CmpOp::Gte, &[130u8][..]));
            rule.add_expr(&Cmp::new(CmpOp::Lte, &[143u8][..]));
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
            add_transport(rule, protocol, ports);
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
