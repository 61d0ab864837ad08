//! DNS over TCP to the gateway, screened as over UDP: the stream is cut
//! into its length-prefixed messages (RFC 1035 §4.2.2) both ways; each of
//! the sandbox's queries and each of the resolver's answers is judged by
//! the forwarder before it goes on (a refused query is answered on the
//! stream, an answer pins its addresses first).

use std::io::{self, Read};
use std::net::TcpStream;

use smoltcp::socket::tcp;

/// A DNS-over-TCP connection's bytes not yet judged or not yet written.
#[derive(Debug, Default)]
pub(crate) struct DnsFraming {
    /// From the sandbox, not yet a whole message.
    from_guest: Vec<u8>,
    /// From the resolver, not yet a whole message.
    from_host: Vec<u8>,
    /// Judged, framed, for the sandbox.
    pub(crate) to_guest: Vec<u8>,
}

/// The most bytes held each way (two messages of the largest size).
const MAX_HELD: usize = 2 * (2 + 65535);

/// The complete messages at the front of `buffer`, taken out.
fn messages(buffer: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while buffer.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([buffer[0], buffer[1]]));
        if buffer.len() < 2 + len {
            break;
        }
        out.push(buffer[2..2 + len].to_vec());
        buffer.drain(..2 + len);
    }
    out
}

/// `message` with its length in front.
pub(crate) fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + message.len());
    out.extend_from_slice(&(message.len().min(65535) as u16).to_be_bytes());
    out.extend_from_slice(&message[..message.len().min(65535)]);
    out
}

impl DnsFraming {
    /// Reads what the sandbox and the resolver sent, and writes what was
    /// judged for the sandbox. The whole messages, each with whether it is
    /// the sandbox's (a query), for the forwarder to judge; `None` if the
    /// connection must be reset (more held than a message can be, or the
    /// resolver's side failed).
    pub(crate) fn step(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        host: &mut TcpStream,
        host_eof: &mut bool,
    ) -> Option<Vec<(bool, Vec<u8>)>> {
        while socket.can_recv() && self.from_guest.len() < MAX_HELD {
            let from_guest = &mut self.from_guest;
            let _ = socket.recv(|data| {
                let n = data.len().min(MAX_HELD - from_guest.len());
                from_guest.extend_from_slice(&data[..n]);
                (n, ())
            });
        }
        let mut buf = [0u8; 4096];
        while !*host_eof && self.from_host.len() < MAX_HELD {
            match host.read(&mut buf) {
                Ok(0) => *host_eof = true,
                Ok(n) => self.from_host.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return None,
            }
        }
        if !self.to_guest.is_empty()
            && socket.can_send()
            && let Ok(n) = socket.send_slice(&self.to_guest)
        {
            self.to_guest.drain(..n);
        }
        let mut out: Vec<(bool, Vec<u8>)> = messages(&mut self.from_guest)
            .into_iter()
            .map(|m| (true, m))
            .collect();
        out.extend(
            messages(&mut self.from_host)
                .into_iter()
                .map(|m| (false, m)),
        );
        let stuck = self.from_guest.len() >= MAX_HELD || self.from_host.len() >= MAX_HELD;
        (!stuck).then_some(out)
    }

    /// Whether nothing is held for the sandbox (so a FIN may follow).
    pub(crate) fn drained(&self) -> bool {
        self.from_host.is_empty() && self.to_guest.is_empty()
    }

    /// Whether the sandbox's bytes are all judged.
    pub(crate) fn guest_drained(&self) -> bool {
        self.from_guest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_cut_into_messages() {
        let mut buffer = framed(b"first");
        buffer.extend_from_slice(&framed(b"second"));
        buffer.extend_from_slice(&[0, 9, b'p']);
        assert_eq!(
            messages(&mut buffer),
            vec![b"first".to_vec(), b"second".to_vec()]
        );
        assert_eq!(buffer, [0, 9, b'p'], "the part of a third waits");
        buffer.extend_from_slice(b"artial!!");
        assert_eq!(messages(&mut buffer), vec![b"partial!!".to_vec()]);
        assert!(buffer.is_empty());
    }
}
