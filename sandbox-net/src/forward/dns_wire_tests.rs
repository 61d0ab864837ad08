//! The DNS reader's unit tests, on messages built by hand.
#![allow(clippy::unwrap_used)]

use super::*;

fn encode(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(&encode(name));
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// An answer to `query(id, name, A)`: `www.Example.COM` CNAME
/// `edge.cdn.test` (its owner a pointer to the question), that name's A
/// record, and an A record of an unrelated name.
fn cname_answer() -> Vec<u8> {
    let mut a = query(7, "www.Example.COM", TYPE_A);
    a[2] = 0x81;
    a[3] = 0x80;
    a[7] = 3; // ANCOUNT
    // CNAME: owner -> pointer to offset 12.
    a.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60]);
    let target = encode("edge.cdn.test");
    a.extend_from_slice(&(target.len() as u16).to_be_bytes());
    let target_at = a.len();
    a.extend_from_slice(&target);
    // A of the target, by pointer.
    a.extend_from_slice(&[
        0xc0,
        target_at as u8,
        0,
        1,
        0,
        1,
        0,
        0,
        0,
        30,
        0,
        4,
        192,
        0,
        2,
        7,
    ]);
    // A of another name.
    a.extend_from_slice(&encode("evil.test"));
    a.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 99, 0, 4, 10, 0, 0, 1]);
    a
}

#[test]
fn questions_are_read_and_refused() {
    let q = query(0x1234, "PyPI.org", TYPE_AAAA);
    let read_q = question(&q).unwrap();
    assert_eq!(read_q.name, "pypi.org");
    assert_eq!(
        (read_q.id, read_q.qtype, read_q.end),
        (0x1234, TYPE_AAAA, q.len())
    );
    let refused = answer_with_rcode(&q, &read_q, RCODE_REFUSED);
    let read = answer(&refused).unwrap();
    assert_eq!(
        (read.id, read.rcode, read.name.as_str()),
        (0x1234, RCODE_REFUSED, "pypi.org")
    );
    assert!(read.addresses.is_empty());
    // Not queries: an answer, two questions, another opcode.
    assert!(question(&refused).is_none());
    let mut two = q.clone();
    two[5] = 2;
    assert!(question(&two).is_none());
    let mut notify = q.clone();
    notify[2] = 0x20;
    assert!(question(&notify).is_none());
}

#[test]
fn answers_give_the_addresses_of_the_name_and_its_aliases_only() {
    let read = answer(&cname_answer()).unwrap();
    assert_eq!(read.name, "www.example.com");
    assert_eq!(read.addresses, vec![("192.0.2.7".parse().unwrap(), 30)]);
    assert!(!read.truncated);
}

#[test]
fn malformed_messages_are_none() {
    let a = cname_answer();
    for cut in 0..a.len() {
        let _ = answer(&a[..cut]);
        let _ = question(&a[..cut]);
    }
    // A pointer to itself (a loop) or forward.
    let mut looped = query(1, "a.test", TYPE_A);
    looped[12] = 0xc0;
    looped[13] = 12;
    assert!(question(&looped).is_none());
    let mut forward = query(1, "a.test", TYPE_A);
    forward[12] = 0xc0;
    forward[13] = 40;
    assert!(question(&forward).is_none());
}
