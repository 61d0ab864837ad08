//! Reassembly of the sandbox's fragmented IP datagrams (a UDP datagram
//! larger than the tap's MTU leaves the sandbox's kernel as IPv4 fragments,
//! or IPv6 ones with a Fragment header), so the forwarder relays the whole
//! datagram as the sender meant it.
//!
//! Bounded: at most [`MAX_DATAGRAMS`] datagrams in reassembly, each at
//! most 64 KiB in at most [`MAX_PIECES`] fragments, each given
//! [`TIMEOUT`]. Overlapping fragments drop the whole datagram (RFC 5722),
//! as does anything malformed; a repeated fragment is ignored.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::forward::frame::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, internet_checksum, u16_at};

/// Datagrams in reassembly at once; a new one past this evicts the oldest.
pub(crate) const MAX_DATAGRAMS: usize = 64;
/// Fragments of one datagram at most.
pub(crate) const MAX_PIECES: usize = 128;
/// How long a datagram may take to arrive whole.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

/// The IPv6 Fragment header's next-header number.
const IPV6_FRAGMENT: u8 = 44;

/// One datagram: (source, destination, identification, protocol).
type Key = (IpAddr, IpAddr, u32, u8);

/// A fragment, as found in a frame.
#[derive(Debug)]
pub(super) struct Fragment<'a> {
    key: Key,
    /// Its place in the datagram's payload, in bytes.
    offset: usize,
    /// More fragments follow.
    more: bool,
    data: &'a [u8],
    /// The frame's Ethernet and IP headers (the IPv6 one without its
    /// Fragment header), kept from the first fragment for the whole
    /// datagram.
    header: &'a [u8],
}

/// `frame`'s fragment, if it is one.
pub(super) fn fragment_of(frame: &[u8]) -> Option<Fragment<'_>> {
    let l3 = frame.get(14..)?;
    match u16_at(frame, 12)? {
        ETHERTYPE_IPV4 => {
            let ihl = usize::from(*l3.first()? & 0x0f) * 4;
            let total = usize::from(u16_at(l3, 2)?);
            let flags_offset = u16_at(l3, 6)?;
            if *l3.first()? >> 4 != 4 || flags_offset & 0x3fff == 0 || ihl < 20 || total < ihl {
                return None;
            }
            let src = IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(l3.get(12..16)?).ok()?));
            let dst = IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(l3.get(16..20)?).ok()?));
            Some(Fragment {
                key: (src, dst, u32::from(u16_at(l3, 4)?), *l3.get(9)?),
                offset: usize::from(flags_offset & 0x1fff) * 8,
                more: flags_offset & 0x2000 != 0,
                data: l3.get(ihl..total)?,
                header: frame.get(..14 + ihl)?,
            })
        }
        ETHERTYPE_IPV6 => {
            if *l3.first()? >> 4 != 6 || *l3.get(6)? != IPV6_FRAGMENT {
                return None;
            }
            let payload_len = usize::from(u16_at(l3, 4)?);
            let fragment = l3.get(40..48)?;
            let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(l3.get(8..24)?).ok()?));
            let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(l3.get(24..40)?).ok()?));
            let offset_more = u16_at(fragment, 2)?;
            let id = u32::from_be_bytes(fragment.get(4..8)?.try_into().ok()?);
            Some(Fragment {
                key: (src, dst, id, fragment[0]),
                offset: usize::from(offset_more >> 3) * 8,
                more: offset_more & 1 != 0,
                data: l3.get(48..40 + payload_len)?,
                header: frame.get(..14 + 40)?,
            })
        }
        _ => None,
    }
}

struct Partial {
    started: Instant,
    /// From the fragment at offset 0.
    header: Option<Vec<u8>>,
    /// (offset, bytes), in arrival order.
    pieces: Vec<(usize, Vec<u8>)>,
    /// The payload's length, once the last fragment came.
    total: Option<usize>,
    received: usize,
}

/// What reassembly has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FragmentCounters {
    /// Fragments taken.
    pub fragments: u64,
    /// Datagrams put back together.
    pub reassembled: u64,
    /// Datagrams given up: overlapping, malformed, too large, in too many
    /// pieces, too slow, or evicted by newer ones.
    pub dropped: u64,
}

/// The datagrams in reassembly.
#[derive(Default)]
pub(super) struct Reassembly {
    partial: HashMap<Key, Partial>,
    pub(super) counters: FragmentCounters,
}

impl std::fmt::Debug for Reassembly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reassembly")
            .field("partial", &self.partial.len())
            .field("counters", &self.counters)
            .finish()
    }
}

impl Reassembly {
    /// Takes a fragment; returns the whole datagram's frame (Ethernet and
    /// IP headers as one unfragmented packet) once every piece is in.
    pub(super) fn add(&mut self, fragment: Fragment<'_>, now: Instant) -> Option<Vec<u8>> {
        self.counters.fragments += 1;
        let Fragment {
            key,
            offset,
            more,
            data,
            header,
        } = fragment;
        let v4 = key.0.is_ipv4();
        let header_len = if v4 { header.len() - 14 } else { 0 };
        let end = offset + data.len();
        // Every piece but the last is a multiple of 8 bytes; the whole fits
        // an IP packet.
        let malformed = (more && data.len() % 8 != 0) || header_len + end > 65535;
        if !self.partial.contains_key(&key) {
            if malformed {
                self.counters.dropped += 1;
                return None;
            }
            self.make_room(now);
            self.partial.insert(
                key,
                Partial {
                    started: now,
                    header: None,
                    pieces: Vec::new(),
                    total: None,
                    received: 0,
                },
            );
        }
        let partial = self.partial.get_mut(&key)?;
        if partial
            .pieces
            .iter()
            .any(|(o, d)| *o == offset && d.as_slice() == data)
        {
            return None; // a repeat
        }
        let overlaps = partial
            .pieces
            .iter()
            .any(|(o, d)| offset < o + d.len() && *o < end);
        let past_end = partial
            .total
            .is_some_and(|t| end > t || (!more && end != t));
        if malformed || overlaps || past_end || partial.pieces.len() >= MAX_PIECES {
            self.partial.remove(&key);
            self.counters.dropped += 1;
            return None;
        }
        if !more {
            if partial.pieces.iter().any(|(o, d)| o + d.len() > end) {
                self.partial.remove(&key);
                self.counters.dropped += 1;
                return None;
            }
            partial.total = Some(end);
        }
        if offset == 0 {
            partial.header = Some(header.to_vec());
        }
        partial.received += data.len();
        partial.pieces.push((offset, data.to_vec()));
        if partial.total != Some(partial.received) || partial.header.is_none() {
            return None;
        }
        let mut whole = self.partial.remove(&key)?;
        let mut frame = whole.header.take()?;
        let total = whole.received;
        whole.pieces.sort_by_key(|(o, _)| *o);
        if v4 {
            let ip = &mut frame[14..];
            let length = u16::try_from(header_len + total).ok()?;
            ip[2..4].copy_from_slice(&length.to_be_bytes());
            ip[6..8].fill(0);
            ip[10..12].fill(0);
            let checksum = internet_checksum(&[&ip[..header_len]]);
            ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        } else {
            let ip = &mut frame[14..];
            ip[4..6].copy_from_slice(&u16::try_from(total).ok()?.to_be_bytes());
            ip[6] = key.3;
        }
        frame.reserve(total);
        for (_, piece) in whole.pieces {
            frame.extend_from_slice(&piece);
        }
        self.counters.reassembled += 1;
        Some(frame)
    }

    /// Drops what took too long, and the oldest datagram if still full.
    fn make_room(&mut self, now: Instant) {
        let before = self.partial.len();
        self.partial
            .retain(|_, p| now.duration_since(p.started) < TIMEOUT);
        self.counters.dropped += (before - self.partial.len()) as u64;
        if self.partial.len() >= MAX_DATAGRAMS
            && let Some(oldest) = self
                .partial
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| *k)
        {
            self.partial.remove(&oldest);
            self.counters.dropped += 1;
        }
    }

    /// Datagrams in reassembly now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.partial.len()
    }
}

#[cfg(test)]
#[path = "fragments_tests.rs"]
mod tests;
