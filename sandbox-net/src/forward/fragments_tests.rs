//! Reassembly's unit tests, on fragments built by hand.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::forward::frame::{GuestPacket, classify};

/// An IPv4 UDP datagram of `len` payload bytes from 10.0.2.100:4000 to
/// 192.0.2.1:5000, cut into frames of at most `piece` payload bytes (a
/// multiple of 8), id `id`.
fn v4_fragments(len: usize, piece: usize, id: u16) -> Vec<Vec<u8>> {
    let mut udp = Vec::new();
    udp.extend_from_slice(&4000u16.to_be_bytes());
    udp.extend_from_slice(&5000u16.to_be_bytes());
    udp.extend_from_slice(&((8 + len) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend((0..len).map(|i| (i % 251) as u8));
    udp.chunks(piece)
        .enumerate()
        .map(|(i, chunk)| {
            let offset = i * piece;
            let more = offset + chunk.len() < udp.len();
            let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + chunk.len()) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&id.to_be_bytes());
            let flags = ((offset / 8) as u16) | if more { 0x2000 } else { 0 };
            ip[6..8].copy_from_slice(&flags.to_be_bytes());
            ip[8] = 64;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&[10, 0, 2, 100]);
            ip[16..20].copy_from_slice(&[192, 0, 2, 1]);
            frame.extend_from_slice(&ip);
            frame.extend_from_slice(chunk);
            frame
        })
        .collect()
}

fn feed(r: &mut Reassembly, frames: &[Vec<u8>]) -> Option<Vec<u8>> {
    let now = Instant::now();
    let mut out = None;
    for f in frames {
        let fragment = fragment_of(f).unwrap();
        if let Some(whole) = r.add(fragment, now) {
            out = Some(whole);
        }
    }
    out
}

fn udp_payload_len(frame: &[u8]) -> usize {
    match classify(frame) {
        GuestPacket::Udp { payload, .. } => {
            assert!(
                payload
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == (i % 251) as u8)
            );
            payload.len()
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn fragments_in_any_order_make_the_datagram() {
    let mut frames = v4_fragments(4000, 1480, 7);
    assert_eq!(frames.len(), 3);
    assert!(fragment_of(&frames[0]).is_some());
    let mut r = Reassembly::default();
    let whole = feed(&mut r, &frames).unwrap();
    assert_eq!(udp_payload_len(&whole), 4000);
    assert_eq!(r.len(), 0);
    // The header is an unfragmented one, with a right checksum.
    assert!(fragment_of(&whole).is_none());
    assert_eq!(internet_checksum(&[&whole[14..34]]), 0);
    frames.reverse();
    let whole = feed(&mut r, &frames).unwrap();
    assert_eq!(udp_payload_len(&whole), 4000);
    assert_eq!(r.counters.reassembled, 2);
}

#[test]
fn overlaps_repeats_and_bad_sizes() {
    let mut r = Reassembly::default();
    let frames = v4_fragments(4000, 1480, 8);
    // A repeat is ignored.
    let repeated = [
        frames[0].clone(),
        frames[0].clone(),
        frames[1].clone(),
        frames[2].clone(),
    ];
    assert!(feed(&mut r, &repeated).is_some());
    // An overlapping piece (another datagram's cut, same id) drops it.
    let other = v4_fragments(4000, 1000, 8);
    assert!(feed(&mut r, &[frames[0].clone(), other[1].clone()]).is_none());
    assert_eq!(r.len(), 0);
    assert_eq!(r.counters.dropped, 1);
    // A middle piece not a multiple of 8 is malformed.
    let odd = v4_fragments(4000, 1001, 9);
    assert!(feed(&mut r, &odd).is_none());
    assert!(r.counters.dropped >= 2);
}

#[test]
fn reassembly_is_bounded() {
    let mut r = Reassembly::default();
    // Many first pieces, never completed: at most MAX_DATAGRAMS held.
    for id in 0..1000u16 {
        let frames = v4_fragments(4000, 1480, id);
        assert!(feed(&mut r, &frames[..1]).is_none());
        assert!(r.len() <= MAX_DATAGRAMS);
    }
    assert_eq!(r.counters.dropped, 1000 - MAX_DATAGRAMS as u64);
    // Past MAX_PIECES, a datagram is dropped.
    let tiny = v4_fragments(8 * (MAX_PIECES + 10), 8, 5000);
    assert!(feed(&mut r, &tiny).is_none());
}
