//! Guest frames: a bounds-checked classifier of what the sandbox sends on
//! its tap (Ethernet, ARP, IPv4, IPv6, TCP, UDP, ICMP echo, neighbour
//! solicitation), and builders of the frames the forwarder answers with.
//!
//! Nothing here indexes a slice without a check: every read goes through
//! `get`, so a malformed frame is classified `Ignored` with a reason, never
//! a panic (the `guest_frames` fuzz target holds this).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// An Ethernet (MAC) address.
pub type Mac = [u8; 6];

/// The broadcast MAC address.
pub const BROADCAST: Mac = [0xff; 6];

pub(super) const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
pub(super) const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_ICMP: u8 = 1;
pub(super) const PROTO_TCP: u8 = 6;
pub(super) const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;

/// TCP flags of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags {
    /// SYN.
    pub syn: bool,
    /// ACK.
    pub ack: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
}

/// What a frame from the sandbox is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestPacket<'a> {
    /// ARP "who has `target`" from `sender_ip` at `sender_mac`.
    ArpRequest {
        /// The asker's MAC.
        sender_mac: Mac,
        /// The asker's IPv4 address.
        sender_ip: Ipv4Addr,
        /// The address asked about.
        target: Ipv4Addr,
    },
    /// IPv6 neighbour solicitation for `target`.
    NeighborSolicit {
        /// The asker's MAC.
        src_mac: Mac,
        /// The asker's IPv6 address.
        src_ip: Ipv6Addr,
        /// The address asked about.
        target: Ipv6Addr,
    },
    /// A TCP segment.
    Tcp {
        /// The guest's MAC.
        src_mac: Mac,
        /// Source (the guest).
        src: SocketAddr,
        /// Destination.
        dst: SocketAddr,
        /// Its flags.
        flags: TcpFlags,
        /// Sequence number.
        seq: u32,
        /// Acknowledgement number.
        ack: u32,
        /// Payload bytes.
        payload: &'a [u8],
    },
    /// A UDP datagram.
    Udp {
        /// The guest's MAC.
        src_mac: Mac,
        /// Source (the guest).
        src: SocketAddr,
        /// Destination.
        dst: SocketAddr,
        /// Payload bytes.
        payload: &'a [u8],
    },
    /// An ICMP or ICMPv6 echo request.
    EchoRequest {
        /// The guest's MAC.
        src_mac: Mac,
        /// Source (the guest).
        src: IpAddr,
        /// Destination.
        dst: IpAddr,
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq: u16,
        /// Payload bytes.
        payload: &'a [u8],
    },
    /// Anything else, with why it is not handled.
    Ignored(&'static str),
}

pub(super) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

/// Classifies a frame the sandbox sent. Never panics.
pub fn classify(frame: &[u8]) -> GuestPacket<'_> {
    classify_inner(frame).unwrap_or(GuestPacket::Ignored("truncated or malformed"))
}

fn classify_inner(frame: &[u8]) -> Option<GuestPacket<'_>> {
    let src_mac: Mac = array(frame, 6)?;
    let ethertype = u16_at(frame, 12)?;
    let l3 = frame.get(14..)?;
    match ethertype {
        ETHERTYPE_ARP => {
            // htype 1, ptype IPv4, hlen 6, plen 4, op 1 (request)
            if u16_at(l3, 0)? != 1
                || u16_at(l3, 2)? != ETHERTYPE_IPV4
                || *l3.get(4)? != 6
                || *l3.get(5)? != 4
            {
                return Some(GuestPacket::Ignored("ARP for something other than IPv4"));
            }
            if u16_at(l3, 6)? != 1 {
                return Some(GuestPacket::Ignored("ARP reply"));
            }
            Some(GuestPacket::ArpRequest {
                sender_mac: array(l3, 8)?,
                sender_ip: Ipv4Addr::from(array::<4>(l3, 14)?),
                target: Ipv4Addr::from(array::<4>(l3, 24)?),
            })
        }
        ETHERTYPE_IPV4 => {
            let version_ihl = *l3.first()?;
            if version_ihl >> 4 != 4 {
                return Some(GuestPacket::Ignored("IPv4 ethertype, other version"));
            }
            let ihl = usize::from(version_ihl & 0x0f) * 4;
            let total = usize::from(u16_at(l3, 2)?);
            if ihl < 20 || total < ihl || total > l3.len() {
                return None;
            }
            let flags_fragment = u16_at(l3, 6)?;
            if flags_fragment & 0x3fff != 0 {
                return Some(GuestPacket::Ignored("IPv4 fragment"));
            }
            let proto = *l3.get(9)?;
            let src = IpAddr::V4(Ipv4Addr::from(array::<4>(l3, 12)?));
            let dst = IpAddr::V4(Ipv4Addr::from(array::<4>(l3, 16)?));
            let l4 = l3.get(ihl..total)?;
            transport(src_mac, proto, src, dst, l4)
        }
        ETHERTYPE_IPV6 => {
            if *l3.first()? >> 4 != 6 {
                return Some(GuestPacket::Ignored("IPv6 ethertype, other version"));
            }
            let payload_len = usize::from(u16_at(l3, 4)?);
            let next = *l3.get(6)?;
            let src = Ipv6Addr::from(array::<16>(l3, 8)?);
            let dst = Ipv6Addr::from(array::<16>(l3, 24)?);
            let l4 = l3.get(40..40 + payload_len)?;
            if next == PROTO_ICMPV6 && *l4.first()? == 135 {
                // Neighbour solicitation: type 135, code 0, target at 8.
                return Some(GuestPacket::NeighborSolicit {
                    src_mac,
                    src_ip: src,
                    target: Ipv6Addr::from(array::<16>(l4, 8)?),
                });
            }
            transport(src_mac, next, IpAddr::V6(src), IpAddr::V6(dst), l4)
        }
        _ => Some(GuestPacket::Ignored("ethertype not handled")),
    }
}

fn transport<'a>(
    src_mac: Mac,
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    l4: &'a [u8],
) -> Option<GuestPacket<'a>> {
    match proto {
        PROTO_TCP => {
            let offset = usize::from(*l4.get(12)? >> 4) * 4;
            if offset < 20 {
                return None;
            }
            let flags = *l4.get(13)?;
            Some(GuestPacket::Tcp {
                src_mac,
                src: SocketAddr::new(src, u16_at(l4, 0)?),
                dst: SocketAddr::new(dst, u16_at(l4, 2)?),
                flags: TcpFlags {
                    fin: flags & 0x01 != 0,
                    syn: flags & 0x02 != 0,
                    rst: flags & 0x04 != 0,
                    ack: flags & 0x10 != 0,
                },
                seq: u32_at(l4, 4)?,
                ack: u32_at(l4, 8)?,
                payload: l4.get(offset..)?,
            })
        }
        PROTO_UDP => {
            let len = usize::from(u16_at(l4, 4)?);
            if len < 8 {
                return None;
            }
            Some(GuestPacket::Udp {
                src_mac,
                src: SocketAddr::new(src, u16_at(l4, 0)?),
                dst: SocketAddr::new(dst, u16_at(l4, 2)?),
                payload: l4.get(8..len)?,
            })
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            let echo_request = if proto == PROTO_ICMP { 8 } else { 128 };
            if *l4.first()? != echo_request {
                return Some(GuestPacket::Ignored("ICMP other than echo request"));
            }
            Some(GuestPacket::EchoRequest {
                src_mac,
                src,
                dst,
                ident: u16_at(l4, 4)?,
                seq: u16_at(l4, 6)?,
                payload: l4.get(8..)?,
            })
        }
        _ => Some(GuestPacket::Ignored("transport protocol not handled")),
    }
}

/// The Internet checksum (RFC 1071) of `parts`, concatenated.
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &byte in *part {
            match odd.take() {
                Some(high) => sum += u32::from(u16::from_be_bytes([high, byte])),
                None => odd = Some(byte),
            }
        }
    }
    if let Some(high) = odd {
        sum += u32::from(u16::from_be_bytes([high, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub(super) fn ethernet(dst: Mac, src: Mac, ethertype: u16, payload_len: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload_len);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

/// The ARP reply "`gateway_ip` is at `gateway_mac`" to a request.
pub fn arp_reply(
    gateway_mac: Mac,
    gateway_ip: Ipv4Addr,
    asker_mac: Mac,
    asker_ip: Ipv4Addr,
) -> Vec<u8> {
    let mut frame = ethernet(asker_mac, gateway_mac, ETHERTYPE_ARP, 28);
    frame.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    frame.extend_from_slice(&gateway_mac);
    frame.extend_from_slice(&gateway_ip.octets());
    frame.extend_from_slice(&asker_mac);
    frame.extend_from_slice(&asker_ip.octets());
    frame
}

/// An IPv4 header (no options, don't fragment, TTL 64) with its checksum.
pub(super) fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, total_len: u16) -> [u8; 20] {
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total_len.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = protocol;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let checksum = internet_checksum(&[&ip]);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    ip
}

pub(super) fn ipv6_header(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    payload_len: usize,
    hop_limit: u8,
) -> [u8; 40] {
    let mut h = [0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    h[6] = next;
    h[7] = hop_limit;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    h
}

pub(super) fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, len: usize) -> [u8; 40] {
    let mut p = [0u8; 40];
    p[0..16].copy_from_slice(&src.octets());
    p[16..32].copy_from_slice(&dst.octets());
    p[32..36].copy_from_slice(&(len as u32).to_be_bytes());
    p[39] = next;
    p
}

/// The neighbour advertisement "`target` is at `gateway_mac`" (solicited,
/// router, override) to `asker`.
pub fn neighbor_advert(
    gateway_mac: Mac,
    target: Ipv6Addr,
    asker_mac: Mac,
    asker_ip: Ipv6Addr,
) -> Vec<u8> {
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[136, 0, 0, 0]); // type, code, checksum
    icmp.extend_from_slice(&[0xe0, 0, 0, 0]); // R, S, O
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[2, 1]); // target link-layer address option
    icmp.extend_from_slice(&gateway_mac);
    let checksum = internet_checksum(&[
        &pseudo_header_v6(target, asker_ip, PROTO_ICMPV6, icmp.len()),
        &icmp,
    ]);
    icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
    let mut frame = ethernet(asker_mac, gateway_mac, ETHERTYPE_IPV6, 40 + icmp.len());
    frame.extend_from_slice(&ipv6_header(
        target,
        asker_ip,
        PROTO_ICMPV6,
        icmp.len(),
        255,
    ));
    frame.extend_from_slice(&icmp);
    frame
}

/// A UDP datagram from `from` (the remote end, as the guest sees it) to
/// `to` (the guest), in a frame from the gateway.
///
/// Returns `None` when the address families differ or the payload does not
/// fit one datagram.
pub fn udp_frame(
    gateway_mac: Mac,
    guest_mac: Mac,
    from: SocketAddr,
    to: SocketAddr,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let udp_len = 8 + payload.len();
    let udp_len16 = u16::try_from(udp_len).ok()?;
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&from.port().to_be_bytes());
    udp.extend_from_slice(&to.port().to_be_bytes());
    udp.extend_from_slice(&udp_len16.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    match (from.ip(), to.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let total = u16::try_from(20 + udp_len).ok()?;
            let mut pseudo = [0u8; 12];
            pseudo[0..4].copy_from_slice(&src.octets());
            pseudo[4..8].copy_from_slice(&dst.octets());
            pseudo[9] = PROTO_UDP;
            pseudo[10..12].copy_from_slice(&udp_len16.to_be_bytes());
            let checksum = match internet_checksum(&[&pseudo, &udp]) {
                0 => 0xffff,
                c => c,
            };
            udp[6..8].copy_from_slice(&checksum.to_be_bytes());
            let mut frame = ethernet(guest_mac, gateway_mac, ETHERTYPE_IPV4, 20 + udp_len);
            frame.extend_from_slice(&ipv4_header(src, dst, PROTO_UDP, total));
            frame.extend_from_slice(&udp);
            Some(frame)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let checksum =
                match internet_checksum(&[&pseudo_header_v6(src, dst, PROTO_UDP, udp_len), &udp]) {
                    0 => 0xffff,
                    c => c,
                };
            udp[6..8].copy_from_slice(&checksum.to_be_bytes());
            let mut frame = ethernet(guest_mac, gateway_mac, ETHERTYPE_IPV6, 40 + udp_len);
            frame.extend_from_slice(&ipv6_header(src, dst, PROTO_UDP, udp_len, 64));
            frame.extend_from_slice(&udp);
            Some(frame)
        }
        _ => None,
    }
}

/// An ICMP (or ICMPv6) echo reply from `from` to `to` (the guest), in a
/// frame from the gateway, carrying `ident`, `seq` and `payload`.
///
/// Returns `None` when the address families differ or the payload does not
/// fit one packet.
pub fn echo_reply_frame(
    gateway_mac: Mac,
    guest_mac: Mac,
    from: IpAddr,
    to: IpAddr,
    ident: u16,
    seq: u16,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let icmp_len = 8 + payload.len();
    let mut icmp = Vec::with_capacity(icmp_len);
    icmp.extend_from_slice(&[0, 0, 0, 0]);
    icmp.extend_from_slice(&ident.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(payload);
    match (from, to) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let total = u16::try_from(20 + icmp_len).ok()?;
            let checksum = internet_checksum(&[&icmp]);
            icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
            let mut frame = ethernet(guest_mac, gateway_mac, ETHERTYPE_IPV4, 20 + icmp_len);
            frame.extend_from_slice(&ipv4_header(src, dst, PROTO_ICMP, total));
            frame.extend_from_slice(&icmp);
            Some(frame)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            u16::try_from(icmp_len).ok()?;
            icmp[0] = 129;
            let checksum =
                internet_checksum(&[&pseudo_header_v6(src, dst, PROTO_ICMPV6, icmp_len), &icmp]);
            icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
            let mut frame = ethernet(guest_mac, gateway_mac, ETHERTYPE_IPV6, 40 + icmp_len);
            frame.extend_from_slice(&ipv6_header(src, dst, PROTO_ICMPV6, icmp_len, 64));
            frame.extend_from_slice(&icmp);
            Some(frame)
        }
        _ => None,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) const GUEST: Mac = [2, 0, 0, 0, 0, 1];
    pub(crate) const GW: Mac = [2, 0, 0, 0, 0, 2];

    #[test]
    fn udp_frames_round_trip_through_the_classifier() {
        let from: SocketAddr = "198.18.1.1:53".parse().unwrap();
        let to: SocketAddr = "10.0.2.100:40000".parse().unwrap();
        let frame = udp_frame(GW, GUEST, from, to, b"hello").unwrap();
        match classify(&frame) {
            GuestPacket::Udp {
                src,
                dst,
                payload,
                src_mac,
            } => {
                assert_eq!((src, dst, payload, src_mac), (from, to, &b"hello"[..], GW));
            }
            other => panic!("{other:?}"),
        }
        // The IPv4 header checksums to zero, as a receiver checks.
        assert_eq!(internet_checksum(&[&frame[14..34]]), 0);
        let v6 = udp_frame(
            GW,
            GUEST,
            "[2001:db8::1]:53".parse().unwrap(),
            "[fd00:0:2::100]:4000".parse().unwrap(),
            b"x",
        )
        .unwrap();
        assert!(matches!(classify(&v6), GuestPacket::Udp { .. }));
        assert!(udp_frame(GW, GUEST, from, "[::1]:1".parse().unwrap(), b"").is_none());
    }

    #[test]
    fn arp_and_neighbour_discovery() {
        let reply = arp_reply(
            GW,
            Ipv4Addr::new(10, 0, 2, 2),
            GUEST,
            Ipv4Addr::new(10, 0, 2, 100),
        );
        assert_eq!(reply.len(), 42);
        assert_eq!(classify(&reply), GuestPacket::Ignored("ARP reply"));
        let mut request = reply.clone();
        request[20..22].copy_from_slice(&[0, 1]);
        assert!(matches!(classify(&request), GuestPacket::ArpRequest { .. }));
        let advert = neighbor_advert(
            GW,
            "fd00:0:2::2".parse().unwrap(),
            GUEST,
            "fd00:0:2::100".parse().unwrap(),
        );
        // ICMPv6 checksum verifies over the pseudo-header.
        let icmp = &advert[54..];
        let pseudo = pseudo_header_v6(
            "fd00:0:2::2".parse().unwrap(),
            "fd00:0:2::100".parse().unwrap(),
            PROTO_ICMPV6,
            icmp.len(),
        );
        assert_eq!(internet_checksum(&[&pseudo, icmp]), 0);
    }

    #[test]
    fn truncated_and_odd_frames_are_ignored_not_panicked_on() {
        let frame = udp_frame(
            GW,
            GUEST,
            "198.18.1.1:53".parse().unwrap(),
            "10.0.2.100:4".parse().unwrap(),
            b"abc",
        )
        .unwrap();
        for len in 0..frame.len() {
            let _ = classify(&frame[..len]);
        }
        assert!(matches!(classify(&[]), GuestPacket::Ignored(_)));
        let mut bad_ihl = frame.clone();
        bad_ihl[14] = 0x4f;
        assert!(matches!(classify(&bad_ihl), GuestPacket::Ignored(_)));
    }
}
