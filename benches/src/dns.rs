//! A test resolver for the egress benches: it answers every A query with
//! one address and every other query with no records, from a thread, on
//! a UDP socket bound in the caller's network namespace.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

/// Binds `listen` and answers from a new thread: each A query (whatever
/// the name) with `answer`, TTL 600; any other type with an empty answer.
/// What follows the question (an EDNS record) is not echoed.
///
/// # Errors
///
/// The error of binding `listen`.
pub fn serve_a(listen: SocketAddr, answer: Ipv4Addr) -> std::io::Result<()> {
    let socket = UdpSocket::bind(listen)?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            if let Some(reply) = reply(&buf[..n], answer) {
                let _ = socket.send_to(&reply, peer);
            }
        }
    });
    Ok(())
}

/// The answer to `query`, `None` if it is too short to hold a question.
fn reply(query: &[u8], answer: Ipv4Addr) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut end = 12;
    while end < query.len() && query[end] != 0 {
        end += 1 + usize::from(query[end]);
    }
    let end = end + 5;
    if end > query.len() {
        return None;
    }
    let mut reply = query[..end].to_vec();
    let a = query[end - 4..end - 2] == [0, 1];
    reply[2] = 0x81;
    reply[3] = 0x80;
    reply[6..12].copy_from_slice(&[0, u8::from(a), 0, 0, 0, 0]);
    if a {
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 2, 0x58, 0, 4]);
        reply.extend_from_slice(&answer.octets());
    }
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_a_query_gets_the_address_and_others_nothing() {
        // id 7, RD, one question: bulk.test A IN.
        let mut query = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        query.extend_from_slice(b"\x04bulk\x04test\x00\x00\x01\x00\x01");
        let r = reply(&query, Ipv4Addr::new(198, 18, 1, 1)).unwrap();
        assert_eq!(&r[..2], &[0, 7]);
        assert_eq!(&r[6..8], &[0, 1], "one answer");
        assert_eq!(&r[r.len() - 4..], &[198, 18, 1, 1]);
        let len = query.len();
        query[len - 3] = 28; // AAAA
        let r = reply(&query, Ipv4Addr::new(198, 18, 1, 1)).unwrap();
        assert_eq!(&r[6..8], &[0, 0], "no answer");
        assert_eq!(r.len(), query.len());
        assert!(reply(&query[..11], Ipv4Addr::LOCALHOST).is_none());
    }
}
