//! The ICMP errors the gateway answers a refused datagram with: ICMP
//! "administratively prohibited" (type 3 code 13, or ICMPv6 type 1 code 1),
//! carrying the start of the refused packet so the sender's kernel finds
//! the socket it came from (a connected UDP socket then fails with
//! `EHOSTUNREACH`, or `EACCES` over IPv6, instead of waiting for an answer
//! that never comes).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::forward::frame::{
    ETHERTYPE_IPV4, ETHERTYPE_IPV6, Mac, ethernet, internet_checksum, ipv4_header, ipv6_header,
    pseudo_header_v6, u16_at,
};

const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;

/// Most bytes of the refused packet an ICMPv4 error carries (576 in all,
/// as Linux sends).
const QUOTE_V4: usize = 576 - 20 - 8;
/// … and an ICMPv6 one (the IPv6 minimum MTU, 1280, in all).
const QUOTE_V6: usize = 1280 - 40 - 8;

/// The "administratively prohibited" error for the packet `frame` (an
/// Ethernet frame from the sandbox), from the packet's destination to its
/// source, or `None` if `frame` is not an IP packet an error may answer
/// (an ICMP error is never answered with one).
pub fn prohibited_frame(gateway_mac: Mac, guest_mac: Mac, frame: &[u8]) -> Option<Vec<u8>> {
    let l3 = frame.get(14..)?;
    match u16_at(frame, 12)? {
        ETHERTYPE_IPV4 => {
            let total = usize::from(u16_at(l3, 2)?).min(l3.len());
            let ihl = usize::from(*l3.first()? & 0x0f) * 4;
            let src = Ipv4Addr::from(<[u8; 4]>::try_from(l3.get(12..16)?).ok()?);
            let dst = Ipv4Addr::from(<[u8; 4]>::try_from(l3.get(16..20)?).ok()?);
            // Not for ICMP errors (types other than echo), fragments past
            // the first, or broadcast and multicast.
            let icmp_error = *l3.get(9)? == PROTO_ICMP && !matches!(l3.get(ihl), Some(8));
            let later_fragment = u16_at(l3, 6)? & 0x1fff != 0;
            if icmp_error || later_fragment || src.is_unspecified() || dst.is_multicast() {
                return None;
            }
            let quote = l3.get(..total.min(QUOTE_V4))?;
            let mut icmp = vec![3, 13, 0, 0, 0, 0, 0, 0];
            icmp.extend_from_slice(quote);
            let checksum = internet_checksum(&[&icmp]);
            icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
            let length = u16::try_from(20 + icmp.len()).ok()?;
            let mut out = ethernet(guest_mac, gateway_mac, ETHERTYPE_IPV4, length.into());
            out.extend_from_slice(&ipv4_header(dst, src, PROTO_ICMP, length));
            out.extend_from_slice(&icmp);
            Some(out)
        }
        ETHERTYPE_IPV6 => {
            let total = (40 + usize::from(u16_at(l3, 4)?)).min(l3.len());
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(l3.get(8..24)?).ok()?);
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(l3.get(24..40)?).ok()?);
            // ICMPv6 errors have types below 128.
            let icmp_error = *l3.get(6)? == PROTO_ICMPV6 && l3.get(40).is_some_and(|t| *t < 128);
            if icmp_error || src.is_unspecified() || dst.is_multicast() {
                return None;
            }
            let quote = l3.get(..total.min(QUOTE_V6))?;
            let mut icmp = vec![1, 1, 0, 0, 0, 0, 0, 0];
            icmp.extend_from_slice(quote);
            let pseudo = pseudo_header_v6(dst, src, PROTO_ICMPV6, icmp.len());
            let checksum = internet_checksum(&[&pseudo, &icmp]);
            icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
            let mut out = ethernet(guest_mac, gateway_mac, ETHERTYPE_IPV6, 40 + icmp.len());
            out.extend_from_slice(&ipv6_header(dst, src, PROTO_ICMPV6, icmp.len(), 64));
            out.extend_from_slice(&icmp);
            Some(out)
        }
        _ => None,
    }
}
