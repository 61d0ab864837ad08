//! Many address rules at once: allow rules that share a protocol and ports
//! go into an interval set per family (`cidr<N>v4`, `cidr<N>v6`, flag
//! `interval`) matched by one rule, once a group has more than
//! [`SET_THRESHOLD`] networks: a policy of 10,000 CIDRs installs in one
//! batch and matches in O(log n). The networks are merged into disjoint
//! ranges first (the kernel refuses overlapping intervals).

use super::nla::{attr, nested};
use std::net::IpAddr;

use sandbox_policy::{IpNet, PortRange, Protocol};

use super::{Match, RuleSpec, TABLE, Verdict};

/// Allow rules' networks grouped by (protocol, ports).
pub(super) type Groups = Vec<((Option<Protocol>, Option<PortRange>), Vec<IpNet>)>;

/// A group of allow rules with more networks than this is a set.
pub const SET_THRESHOLD: usize = 8;

/// One interval set of networks: group `group`, one family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CidrSet {
    /// Which group (0 for the first).
    pub group: u16,
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// The disjoint ranges (first and last address, as integers), sorted.
    pub ranges: Vec<(u128, u128)>,
}

impl CidrSet {
    /// The set's name in table `inet sandbox`: `cidr0v4`, `cidr0v6`, ….
    pub fn name(&self) -> String {
        format!("cidr{}{}", self.group, if self.v6 { "v6" } else { "v4" })
    }

    fn bytes(&self, value: u128) -> Vec<u8> {
        if self.v6 {
            value.to_be_bytes().to_vec()
        } else {
            (value as u32).to_be_bytes().to_vec()
        }
    }

    fn max(&self) -> u128 {
        if self.v6 {
            u128::MAX
        } else {
            u128::from(u32::MAX)
        }
    }
}

/// A network's first and last address, as integers.
pub(crate) fn range_of(net: IpNet) -> (u128, u128) {
    match net.addr() {
        IpAddr::V4(a) => {
            let lo = u32::from(a);
            let host = u32::MAX.checked_shr(u32::from(net.prefix())).unwrap_or(0);
            (u128::from(lo), u128::from(lo | host))
        }
        IpAddr::V6(a) => {
            let lo = u128::from(a);
            let host = u128::MAX.checked_shr(u32::from(net.prefix())).unwrap_or(0);
            (lo, lo | host)
        }
    }
}

/// Sorted, disjoint, adjacent ranges merged.
pub(crate) fn merge(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Splits `nets` (allow rules' networks with one protocol and ports) into
/// what stays a rule each and the interval sets; `group` numbers the sets.
pub(super) fn group_rules(groups: Groups) -> (Vec<RuleSpec>, Vec<CidrSet>) {
    let mut rules = Vec::new();
    let mut sets = Vec::new();
    let mut group = 0u16;
    for ((protocol, ports), nets) in groups {
        if nets.len() <= SET_THRESHOLD {
            for net in nets {
                rules.extend(super::destination_rules(
                    net,
                    protocol,
                    ports,
                    Verdict::Accept,
                ));
            }
            continue;
        }
        for v6 in [false, true] {
            let ranges: Vec<(u128, u128)> = nets
                .iter()
                .filter(|n| n.addr().is_ipv6() == v6)
                .map(|n| range_of(*n))
                .collect();
            if ranges.is_empty() {
                continue;
            }
            let set = CidrSet {
                group,
                v6,
                ranges: merge(ranges),
            };
            for protocol in super::protocols_of(protocol, ports) {
                rules.push(RuleSpec {
                    matches: Match::InCidrSet {
                        group,
                        v6,
                        protocol,
                        ports,
                    },
                    verdict: Verdict::Accept,
                });
            }
            sets.push(set);
        }
        group += 1;
    }
    (rules, sets)
}

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;
/// Elements per message (each under 64 KiB: a netlink attribute's length
/// is 16 bits).
const PER_MESSAGE: usize = 1000;

/// `set`'s elements as the kernel should hold them: each key, and whether
/// it ends an interval; sorted.
pub(super) fn boundaries(set: &CidrSet) -> Vec<(Vec<u8>, bool)> {
    let mut out: Vec<(Vec<u8>, bool)> = Vec::with_capacity(set.ranges.len() * 2);
    for &(lo, hi) in &set.ranges {
        out.push((set.bytes(lo), false));
        if hi < set.max() {
            out.push((set.bytes(hi + 1), true));
        }
    }
    out.sort();
    out
}

const NFT_MSG_GETSETELEM: u16 = 13;

/// The elements of set `name` of table `inet sandbox`, read from the
/// kernel on `socket` (a `NETLINK_NETFILTER` socket): each key and whether
/// it ends an interval, sorted.
///
/// # Errors
///
/// The errno of the dump (`ENOENT`: no such set).
pub(super) fn dump_elements(
    socket: std::os::fd::BorrowedFd<'_>,
    name: &str,
) -> Result<Vec<(Vec<u8>, bool)>, rustix::io::Errno> {
    use rustix::net::{RecvFlags, SendFlags};
    let mut table = TABLE.as_bytes().to_vec();
    table.push(0);
    let mut set = name.as_bytes().to_vec();
    set.push(0);
    let mut request = Vec::new();
    request.extend_from_slice(&[0; 4]);
    request.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM).to_ne_bytes());
    request.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(&[libc::NFPROTO_INET as u8, 0, 0, 0]);
    attr(&mut request, NFTA_SET_ELEM_LIST_TABLE, &table);
    attr(&mut request, NFTA_SET_ELEM_LIST_SET, &set);
    let len = request.len() as u32;
    request[..4].copy_from_slice(&len.to_ne_bytes());
    rustix::net::send(socket, &request, SendFlags::empty())?;
    let mut out = Vec::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = rustix::net::recv(socket, &mut buffer, RecvFlags::empty())?.0;
        let mut at = 0;
        while at + 16 <= n {
            let len =
                u32::from_ne_bytes(buffer[at..at + 4].try_into().unwrap_or_default()) as usize;
            let kind = u16::from_ne_bytes([buffer[at + 4], buffer[at + 5]]);
            if len < 16 || at + len > n {
                return Err(rustix::io::Errno::INVAL);
            }
            match kind {
                k if k == libc::NLMSG_DONE as u16 => {
                    out.sort();
                    return Ok(out);
                }
                k if k == libc::NLMSG_ERROR as u16 => {
                    let code =
                        i32::from_ne_bytes(buffer[at + 16..at + 20].try_into().unwrap_or_default());
                    return Err(rustix::io::Errno::from_raw_os_error(-code));
                }
                _ => collect_elements(&buffer[at + 20..at + len], &mut out),
            }
            at += len.next_multiple_of(4);
        }
    }
}

/// The attributes of `bytes`: (kind without flags, payload).
fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if bytes.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([bytes[0], bytes[1]]));
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & 0x3fff;
        if len < 4 || len > bytes.len() {
            return None;
        }
        let payload = &bytes[4..len];
        bytes = bytes.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, payload))
    })
}

/// The elements of one NEWSETELEM message's attributes.
fn collect_elements(attrs: &[u8], out: &mut Vec<(Vec<u8>, bool)>) {
    for (kind, list) in attributes(attrs) {
        if kind != NFTA_SET_ELEM_LIST_ELEMENTS {
            continue;
        }
        for (_, element) in attributes(list) {
            let mut key = None;
            let mut end = false;
            for (kind, value) in attributes(element) {
                match kind {
                    NFTA_SET_ELEM_KEY => {
                        key = attributes(value)
                            .find(|(k, _)| *k == NFTA_DATA_VALUE)
                            .map(|(_, v)| v.to_vec());
                    }
                    NFTA_SET_ELEM_FLAGS => {
                        end = value.get(..4).is_some_and(|f| {
                            u32::from_be_bytes([f[0], f[1], f[2], f[3]]) & NFT_SET_ELEM_INTERVAL_END
                                != 0
                        });
                    }
                    _ => {}
                }
            }
            if let Some(key) = key {
                out.push((key, end));
            }
        }
    }
}

/// The NEWSETELEM messages that fill `set` (starts, and ends flagged
/// `interval end` one past each range), sequence numbers from `seq`; no
/// ACK asked (an error is still answered, and fails the batch).
pub(super) fn element_messages(set: &CidrSet, mut seq: u32) -> (Vec<u8>, u32) {
    let boundaries = boundaries(set);
    let mut table = TABLE.as_bytes().to_vec();
    table.push(0);
    let mut name = set.name().into_bytes();
    name.push(0);
    let mut out = Vec::new();
    for chunk in boundaries.chunks(PER_MESSAGE) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM).to_ne_bytes());
        out.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_CREATE) as u16).to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&[libc::NFPROTO_INET as u8, 0, 0, 0]);
        attr(&mut out, NFTA_SET_ELEM_LIST_TABLE, &table);
        attr(&mut out, NFTA_SET_ELEM_LIST_SET, &name);
        nested(&mut out, NFTA_SET_ELEM_LIST_ELEMENTS, |m| {
            for (key, end) in chunk {
                nested(m, NFTA_LIST_ELEM, |m| {
                    nested(m, NFTA_SET_ELEM_KEY, |m| attr(m, NFTA_DATA_VALUE, key));
                    if *end {
                        attr(
                            m,
                            NFTA_SET_ELEM_FLAGS,
                            &NFT_SET_ELEM_INTERVAL_END.to_be_bytes(),
                        );
                    }
                });
            }
        });
        let len = (out.len() - start) as u32;
        out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
        seq += 1;
    }
    (out, seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_cover_what_the_networks_do() {
        let net = |s: &str| {
            let (a, p) = s.split_once('/').unwrap_or((s, "32"));
            IpNet::new(
                a.parse().unwrap_or(IpAddr::V4(0.into())),
                p.parse().unwrap_or(32),
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let merged = merge(
            [
                "10.0.0.0/8",
                "10.1.0.0/16",
                "11.0.0.0/8",
                "192.0.2.0/24",
                "0.0.0.0/32",
            ]
            .iter()
            .map(|s| range_of(net(s)))
            .collect(),
        );
        assert_eq!(
            merged,
            vec![
                (0, 0),
                (0x0a00_0000, 0x0bff_ffff),
                (0xc000_0200, 0xc000_02ff)
            ]
        );
        let all = CidrSet {
            group: 0,
            v6: false,
            ranges: merge(vec![range_of(net("0.0.0.0/0"))]),
        };
        let (bytes, next) = element_messages(&all, 7);
        assert_eq!(next, 8, "one message");
        assert!(!bytes.is_empty());
    }
}
