//! QUIC Initial reading: the RFC 9001 Appendix A keys, and Initials built
//! here (protected as a client protects them) opened again.
#![allow(clippy::unwrap_used)]

use super::*;

#[path = "../../tests/common/quic_client.rs"]
mod quic_client;
use quic_client::{client_hello, crypto, initial};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn the_keys_are_rfc_9001s() {
    // RFC 9001 A.1: Destination Connection ID 0x8394c8f03e515708.
    let (key, iv, hp) = client_initial_keys(&hex("8394c8f03e515708")).unwrap();
    assert_eq!(key.to_vec(), hex("1f369613dd76d5467730efcbe3b1a22d"));
    assert_eq!(iv.to_vec(), hex("fa044b2f42a3fd3b46fb255c"));
    assert_eq!(hp.to_vec(), hex("9f50449e04a0e810283a1e9933adedd2"));
}

#[test]
fn initials_open_and_their_hello_is_put_together() {
    let dcid = hex("8394c8f03e515708");
    let hello = client_hello("pypi.org", 1500);
    // Split over two Initials, second half first.
    let (a, b) = hello.split_at(900);
    let second = initial(&dcid, 1, &crypto(900, b));
    let first = initial(&dcid, 0, &crypto(0, a));
    let mut assembly = HelloAssembly::default();
    for (datagram, complete) in [(second, false), (first, true)] {
        let Initial::Crypto(id, frames) = open_initial(&datagram) else {
            panic!("not opened");
        };
        assert_eq!(id, dcid);
        let got = assembly.add(&frames).unwrap().map(<[u8]>::to_vec);
        assert_eq!(got.is_some(), complete);
        if let Some(got) = got {
            assert_eq!(got, hello);
        }
    }
    // A flipped bit anywhere in the protected part: no longer opens.
    let mut bad = initial(&dcid, 0, &crypto(0, a));
    bad[100] ^= 1;
    assert_eq!(open_initial(&bad), Initial::Malformed);
    // Not QUIC: a DNS query, a short header.
    assert_eq!(open_initial(&[0x12, 0x34, 1, 0, 0, 1]), Initial::Other);
    assert_eq!(open_initial(&[0x40, 1, 2, 3]), Initial::Other);
}

#[test]
fn a_pinned_flow_is_judged_by_its_first_datagrams() {
    let allowed = vec!["pypi.org".parse().unwrap()];
    let dcid = hex("0011223344556677");
    // Not QUIC at all: passes on the pin.
    let mut other = QuicInspect::new(allowed.clone());
    assert_eq!(other.judge(b"\x12\x34 a game's datagram"), Some(Ok(())));
    // A ClientHello for the pinned name, in two Initials: held, then let
    // go with both.
    let hello = client_hello("pypi.org", 1500);
    let mut ok = QuicInspect::new(allowed.clone());
    assert_eq!(
        ok.judge(&initial(&dcid, 0, &crypto(0, &hello[..900]))),
        None
    );
    assert_eq!(
        ok.judge(&initial(&dcid, 1, &crypto(900, &hello[900..]))),
        Some(Ok(()))
    );
    assert_eq!(ok.held.len(), 2);
    // Another name: refused, with the name.
    let mut fronted = QuicInspect::new(allowed.clone());
    let evil = client_hello("evil.test", 10);
    assert_eq!(
        fronted.judge(&initial(&dcid, 0, &crypto(0, &evil))),
        Some(Err((
            crate::forward::FirstBytesRefusal::SniMismatch,
            Some("evil.test".into())
        )))
    );
    // A long header that does not open: refused.
    let mut broken = QuicInspect::new(allowed);
    let mut bad = initial(&dcid, 0, &crypto(0, &evil));
    bad[200] ^= 0xff;
    assert_eq!(
        broken.judge(&bad),
        Some(Err((crate::forward::FirstBytesRefusal::NoSni, None)))
    );
}
