//! Offloads over a `virtio_net_hdr` tap: a TCP segment's partial checksum
//! (`NEEDS_CSUM`: the sandbox's kernel trusts it) and its layout for GSO,
//! and the MSS rewrite that lets the stack send 64 KiB segments.

use crate::forward::frame::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, PROTO_TCP, internet_checksum, u16_at};

/// Where a TCP segment's parts lie in its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentLayout {
    /// The TCP header's offset.
    pub(crate) l4: usize,
    /// The TCP header's length (options included).
    pub(crate) header_len: usize,
    /// The payload's length.
    pub(crate) payload_len: usize,
    /// IPv6 (else IPv4).
    pub(crate) v6: bool,
    /// Source and destination ports.
    pub(crate) ports: (u16, u16),
}

/// For a TCP segment whose checksum the tap will have the receiver skip
/// (`VIRTIO_NET_HDR_F_NEEDS_CSUM`): writes the pseudo-header's sum (not
/// complemented: the partial checksum) into the TCP checksum field and
/// returns the segment's layout. `None` (nothing written) for any other
/// frame.
pub(crate) fn partial_tcp_checksum(frame: &mut [u8]) -> Option<SegmentLayout> {
    let ethertype = u16_at(frame, 12)?;
    let (l4, len, pseudo_sum, v6) = match ethertype {
        ETHERTYPE_IPV4 => {
            let ihl = usize::from(*frame.get(14)? & 0x0f) * 4;
            if *frame.get(14 + 9)? != PROTO_TCP || ihl < 20 {
                return None;
            }
            let total = usize::from(u16_at(frame, 14 + 2)?);
            let len = total.checked_sub(ihl)?;
            let addrs = frame.get(14 + 12..14 + 20)?;
            let pseudo = [addrs, &[0, PROTO_TCP], &(len as u16).to_be_bytes()];
            (14 + ihl, len, !internet_checksum(&pseudo), false)
        }
        ETHERTYPE_IPV6 => {
            if *frame.get(14 + 6)? != PROTO_TCP {
                return None;
            }
            let len = usize::from(u16_at(frame, 14 + 4)?);
            let addrs = frame.get(14 + 8..14 + 40)?;
            let pseudo = [addrs, &(len as u32).to_be_bytes(), &[0, 0, 0, PROTO_TCP]];
            (14 + 40, len, !internet_checksum(&pseudo), true)
        }
        _ => return None,
    };
    let header_len = usize::from(*frame.get(l4 + 12)? >> 4) * 4;
    if frame.len() < l4 + len || len < 20 || header_len < 20 || header_len > len {
        return None;
    }
    let ports = (u16_at(frame, l4)?, u16_at(frame, l4 + 2)?);
    frame
        .get_mut(l4 + 16..l4 + 18)?
        .copy_from_slice(&pseudo_sum.to_be_bytes());
    Some(SegmentLayout {
        l4,
        header_len,
        payload_len: len - header_len,
        v6,
        ports,
    })
}

/// In a TCP SYN (an Ethernet frame), replaces the MSS option's value with
/// `mss` and returns the value it had (`None`, nothing changed, if the
/// frame is not a TCP segment with an MSS option). The checksum is left
/// as it was: only for a stack that does not check it.
pub(crate) fn replace_syn_mss(frame: &mut [u8], mss: u16) -> Option<u16> {
    let l4 = match u16_at(frame, 12)? {
        ETHERTYPE_IPV4 if *frame.get(14 + 9)? == PROTO_TCP => {
            14 + usize::from(*frame.get(14)? & 0x0f) * 4
        }
        ETHERTYPE_IPV6 if *frame.get(14 + 6)? == PROTO_TCP => 14 + 40,
        _ => return None,
    };
    let header_len = usize::from(*frame.get(l4 + 12)? >> 4) * 4;
    let mut at = l4 + 20;
    let end = l4 + header_len;
    while at < end {
        match *frame.get(at)? {
            0 => return None,
            1 => at += 1,
            2 => {
                if *frame.get(at + 1)? != 4 || at + 4 > end {
                    return None;
                }
                let old = u16_at(frame, at + 2)?;
                frame
                    .get_mut(at + 2..at + 4)?
                    .copy_from_slice(&mss.to_be_bytes());
                return Some(old);
            }
            _ => {
                let len = usize::from(*frame.get(at + 1)?);
                if len < 2 {
                    return None;
                }
                at += len;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::forward::frame::tests::{GUEST, GW};
    use crate::forward::frame::{ethernet, ipv4_header, ipv6_header, pseudo_header_v6, udp_frame};

    #[test]
    fn the_syn_mss_is_replaced_in_place() {
        let mut tcp = vec![0u8; 20];
        tcp[12] = 8 << 4; // 32-byte header: 12 bytes of options
        tcp[13] = 0x02;
        // NOP, window scale (3 bytes), NOP, NOP, MSS 1460, SACK permitted.
        tcp.extend_from_slice(&[1, 3, 3, 7, 1, 1, 2, 4, 0x05, 0xb4, 4, 2]);
        let mut frame = ethernet(GW, GUEST, ETHERTYPE_IPV4, 20 + tcp.len());
        frame.extend_from_slice(&ipv4_header(
            Ipv4Addr::new(10, 0, 2, 100),
            Ipv4Addr::new(198, 18, 1, 1),
            PROTO_TCP,
            (20 + tcp.len()) as u16,
        ));
        frame.extend_from_slice(&tcp);
        let before = frame.clone();
        assert_eq!(replace_syn_mss(&mut frame, 65460), Some(1460));
        assert_eq!(&frame[34 + 28..34 + 30], &65460u16.to_be_bytes());
        assert_eq!(frame[..34 + 28], before[..34 + 28]);
        // No MSS option, or not TCP: untouched.
        let mut no_mss = before.clone();
        no_mss[34 + 26] = 0; // end of options before the MSS
        assert_eq!(replace_syn_mss(&mut no_mss, 9000), None);
        let mut udp = udp_frame(
            GW,
            GUEST,
            "10.0.2.2:53".parse().unwrap(),
            "10.0.2.100:5000".parse().unwrap(),
            b"x",
        )
        .unwrap();
        assert_eq!(replace_syn_mss(&mut udp, 9000), None);
        // Truncated options never read out of bounds.
        for len in 0..before.len() {
            let mut cut = before[..len].to_vec();
            let _ = replace_syn_mss(&mut cut, 9000);
            let _ = partial_tcp_checksum(&mut cut);
        }
    }

    #[test]
    fn a_partial_checksum_completes_to_the_full_one() {
        // A TCP segment (IPv4, then IPv6) with a full checksum: the
        // partial one plus the segment's own sum gives it back.
        for (src, dst) in [("10.0.2.2", "10.0.2.100"), ("fd00:0:2::2", "fd00:0:2::100")] {
            let src: IpAddr = src.parse().unwrap();
            let dst: IpAddr = dst.parse().unwrap();
            let mut tcp = vec![0u8; 20];
            tcp[0..2].copy_from_slice(&80u16.to_be_bytes());
            tcp[2..4].copy_from_slice(&40000u16.to_be_bytes());
            tcp[12] = 5 << 4;
            tcp[13] = 0x18;
            tcp.extend_from_slice(b"some payload, odd length");
            let (mut frame, l4) = match (src, dst) {
                (IpAddr::V4(s4), IpAddr::V4(d4)) => {
                    let mut f = ethernet(GUEST, GW, ETHERTYPE_IPV4, 20 + tcp.len());
                    f.extend_from_slice(&ipv4_header(s4, d4, PROTO_TCP, (20 + tcp.len()) as u16));
                    (f, 34)
                }
                (IpAddr::V6(s6), IpAddr::V6(d6)) => {
                    let mut f = ethernet(GUEST, GW, ETHERTYPE_IPV6, 40 + tcp.len());
                    f.extend_from_slice(&ipv6_header(s6, d6, PROTO_TCP, tcp.len(), 64));
                    (f, 54)
                }
                _ => unreachable!(),
            };
            frame.extend_from_slice(&tcp);
            assert_eq!(partial_tcp_checksum(&mut frame).map(|s| s.l4), Some(l4));
            // Completing it as the receiver's kernel does: the sum over the
            // segment from the partial value on, complemented.
            let full = internet_checksum(&[&frame[l4..]]);
            let expected = match (src, dst) {
                (IpAddr::V4(s4), IpAddr::V4(d4)) => {
                    let mut pseudo = Vec::new();
                    pseudo.extend_from_slice(&s4.octets());
                    pseudo.extend_from_slice(&d4.octets());
                    pseudo.extend_from_slice(&[0, PROTO_TCP]);
                    pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
                    internet_checksum(&[&pseudo, &tcp])
                }
                (IpAddr::V6(s6), IpAddr::V6(d6)) => {
                    internet_checksum(&[&pseudo_header_v6(s6, d6, PROTO_TCP, tcp.len()), &tcp])
                }
                _ => unreachable!(),
            };
            assert_eq!(full, expected, "{src} → {dst}");
        }
        // Not TCP: untouched.
        let mut udp = udp_frame(
            GW,
            GUEST,
            "10.0.2.2:53".parse().unwrap(),
            "10.0.2.100:5000".parse().unwrap(),
            b"x",
        )
        .unwrap();
        let before = udp.clone();
        assert_eq!(partial_tcp_checksum(&mut udp), None);
        assert_eq!(udp, before);
    }
}
