//! Host names in the kernel ruleset: each `allow` rule that names a host
//! gets a set of addresses per family (`pin<N>v4`, `pin<N>v6`, flag
//! `timeout`), and a rule in `output` accepting the rule's ports and
//! protocol to the addresses in it. The sets start empty; the forwarder
//! adds each address a DNS answer pinned to an allowed name, with the
//! answer's TTL as the element's timeout ([`PinUpdate`]), through a
//! `NETLINK_NETFILTER` socket the sandbox's child opened in its namespace.

use super::nla::{attr, nested};
use std::net::IpAddr;
use std::time::Duration;

use sandbox_policy::{Network, PortRange, Protocol};

use super::{Match, RuleSpec, TABLE, Verdict};

/// One set of pinned addresses: allow rule `rule` (counting only the
/// rules that name hosts, from 0), one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PinSet {
    /// Which host-name allow rule (0 for the first).
    pub rule: u16,
    /// IPv6 (else IPv4).
    pub v6: bool,
}

impl PinSet {
    /// The set's name in table `inet sandbox`: `pin0v4`, `pin0v6`, ….
    pub fn name(&self) -> String {
        format!("pin{}{}", self.rule, if self.v6 { "v6" } else { "v4" })
    }
}

/// The most host-name allow rules a policy may have in the kernel (each
/// has two sets and up to four rules).
pub const MAX_HOST_RULES: usize = 256;

/// The sets and `output` rules for `network`'s host-name allow rules.
pub(super) fn sets_and_rules(network: &Network) -> (Vec<PinSet>, Vec<RuleSpec>) {
    let mut sets = Vec::new();
    let mut rules = Vec::new();
    let hosts = network
        .allow
        .iter()
        .flatten()
        .filter(|r| r.host_pattern().is_some());
    for (index, rule) in hosts.take(MAX_HOST_RULES).enumerate() {
        let index = index as u16;
        for v6 in [false, true] {
            let set = PinSet { rule: index, v6 };
            sets.push(set);
            // A host-name rule without a protocol is TCP only.
            let protocol = rule.protocol().unwrap_or(Protocol::Tcp);
            for protocol in super::protocols_of(Some(protocol), rule.ports()) {
                rules.push(RuleSpec {
                    matches: Match::Pinned {
                        set,
                        protocol,
                        ports: rule.ports(),
                    },
                    verdict: Verdict::Accept,
                });
            }
        }
    }
    (sets, rules)
}

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_DATA_VALUE: u16 = 1;

/// One change to the pin sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinUpdate {
    /// The set.
    pub set: PinSet,
    /// The address.
    pub addr: IpAddr,
    /// How long it stays; `None` removes it.
    pub timeout: Option<Duration>,
    /// The element may be there already: remove it first (in the same
    /// batch), so its timeout starts again.
    pub replace: bool,
}

/// Appends one nfnetlink message: header, `nfgenmsg` (family, version 0,
/// `res_id`), then what `fill` writes.
fn message(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    res_id: u16,
    fill: impl FnOnce(&mut Vec<u8>),
) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    let family = if kind == NFNL_MSG_BATCH_BEGIN || kind == NFNL_MSG_BATCH_END {
        libc::AF_UNSPEC as u8
    } else {
        libc::NFPROTO_INET as u8
    };
    out.extend_from_slice(&[family, 0]);
    out.extend_from_slice(&res_id.to_be_bytes());
    fill(out);
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// One element change as its own message.
fn element(out: &mut Vec<u8>, kind: u16, seq: u32, update: &PinUpdate) {
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16
        | if kind == NFT_MSG_NEWSETELEM {
            libc::NLM_F_CREATE as u16
        } else {
            0
        };
    let key: Vec<u8> = match update.addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut table = TABLE.as_bytes().to_vec();
    table.push(0);
    let mut set = update.set.name().into_bytes();
    set.push(0);
    message(
        out,
        (NFNL_SUBSYS_NFTABLES << 8) | kind,
        flags,
        seq,
        0,
        |m| {
            attr(m, NFTA_SET_ELEM_LIST_TABLE, &table);
            attr(m, NFTA_SET_ELEM_LIST_SET, &set);
            nested(m, NFTA_SET_ELEM_LIST_ELEMENTS, |m| {
                nested(m, NFTA_LIST_ELEM, |m| {
                    nested(m, NFTA_SET_ELEM_KEY, |m| attr(m, NFTA_DATA_VALUE, &key));
                    if let (NFT_MSG_NEWSETELEM, Some(timeout)) = (kind, update.timeout) {
                        let ms = timeout.as_millis().min(u128::from(u64::MAX)) as u64;
                        attr(m, NFTA_SET_ELEM_TIMEOUT, &ms.to_be_bytes());
                    }
                });
            });
        },
    );
}

/// The batch that applies `updates` (all or nothing), with the number of
/// ACKs it asks for.
pub fn pin_batch(updates: &[PinUpdate]) -> super::NftBatch {
    let mut out = Vec::with_capacity(64 + updates.len() * 128);
    let mut seq = 1;
    message(
        &mut out,
        NFNL_MSG_BATCH_BEGIN,
        libc::NLM_F_REQUEST as u16,
        seq,
        NFNL_SUBSYS_NFTABLES,
        |_| {},
    );
    for update in updates {
        if update.replace || update.timeout.is_none() {
            seq += 1;
            element(&mut out, NFT_MSG_DELSETELEM, seq, update);
        }
        if update.timeout.is_some() {
            seq += 1;
            element(&mut out, NFT_MSG_NEWSETELEM, seq, update);
        }
    }
    seq += 1;
    message(
        &mut out,
        NFNL_MSG_BATCH_END,
        libc::NLM_F_REQUEST as u16,
        seq,
        NFNL_SUBSYS_NFTABLES,
        |_| {},
    );
    super::NftBatch::from_bytes(out)
}

/// What a port range means in the rule text.
pub(super) fn ports_text(protocol: Option<Protocol>, ports: Option<PortRange>) -> String {
    let name = |p: Protocol| match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    match (protocol, ports) {
        (Some(p), Some(r)) if r.start() == r.end() => format!(" {} dport {}", name(p), r.start()),
        (Some(p), Some(r)) => format!(" {} dport {}-{}", name(p), r.start(), r.end()),
        (Some(p), None) => format!(" meta l4proto {}", name(p)),
        (None, _) => String::new(),
    }
}
