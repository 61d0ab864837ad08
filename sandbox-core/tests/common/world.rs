//! A "world" for egress tests: the calling thread moves into a network
//! namespace of its own (the forwarder's host sockets, and any process the
//! thread starts, live there), with test servers on its loopback. Nothing
//! is sent outside namespaces the test made.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

/// Moves the calling thread into a new network namespace with loopback up
/// and `addrs` (IPv4, /32) on it.
pub(crate) fn enter_world(addrs: &[&str]) {
    sandbox_net::unshare_network_namespace().unwrap();
    let rtnl = sandbox_net::Rtnetlink::open().unwrap();
    let mut setup = sandbox_net::Requests::new();
    setup
        .set_link(
            sandbox_net::Link::Name("lo"),
            sandbox_net::LinkChange {
                up: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
    for addr in addrs {
        setup
            .add_address(sandbox_net::Link::Index(1), addr.parse().unwrap(), 32)
            .unwrap();
    }
    rtnl.execute(&setup).unwrap();
    // Ping sockets for every group (the forwarder relays echo requests
    // through them).
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647").unwrap();
}

/// A perl script (perl is in every Debian) that pings its first argument
/// through an unprivileged ping socket: prints `reply <payload>`, or
/// `no reply` (a dropped request, or one the ruleset refused to send).
pub(crate) const PERL_PING: &str = r#"use Socket;
socket(my $s, PF_INET, SOCK_DGRAM, 1) or die "ping socket: $!\n";
connect($s, sockaddr_in(0, inet_aton($ARGV[0]))) or die "connect: $!\n";
for my $i (1..6) {
  send($s, pack("CCnnn", 8, 0, 0, 0, $i) . "hello", 0) or do { print "no reply (send: $!)\n"; exit 1 };
  my $rin = ''; vec($rin, fileno($s), 1) = 1;
  if (select(my $rout = $rin, undef, undef, 0.5)) {
    recv($s, my $buf, 1500, 0);
    if (ord($buf) == 0) { print "reply ", substr($buf, 8), "\n"; exit 0 }
  }
}
print "no reply\n"; exit 1;"#;

/// An HTTP/1.0 server on `addr` answering every request with `body`.
/// It reads the whole request first: closing with unread bytes would
/// send a reset, as any server's kernel does.
pub(crate) fn serve_http(addr: &str, body: &'static str) {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n{body}"
            );
        }
    });
}

/// A GET of `/` from `addr`; the reply's body.
pub(crate) fn http_get(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// The question of a DNS query: id, name (dotted, lower case), type, and
/// where the question ends.
fn question(query: &[u8]) -> Option<(u16, String, u16, usize)> {
    let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    Some((id, labels.join("."), qtype, at + 4))
}

/// The answer to `query` from `records`: A records for the names there;
/// other names NXDOMAIN, other types of known names empty.
fn answer(records: &[(&'static str, [u8; 4])], query: &[u8]) -> Option<(String, Vec<u8>)> {
    let (id, name, qtype, end) = question(query)?;
    // `n<k>.many.test` is 23.k.k.1 (k < 65,536): a distinct address per
    // name, only ever resolved, never connected to.
    let numbered = name
        .strip_prefix('n')
        .and_then(|rest| rest.strip_suffix(".many.test"))
        .and_then(|k| k.parse::<u16>().ok())
        .map(|k| [23, (k >> 8) as u8, k as u8, 1]);
    let known = records
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, ip)| *ip)
        .or(numbered);
    let mut reply = Vec::with_capacity(end + 16);
    reply.extend_from_slice(&id.to_be_bytes());
    let rcode = if known.is_some() { 0 } else { 3 };
    reply.extend_from_slice(&[0x81, 0x80 | rcode, 0, 1]);
    let answers: u16 = if known.is_some() && qtype == 1 { 1 } else { 0 };
    reply.extend_from_slice(&answers.to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]);
    reply.extend_from_slice(&query[12..end]);
    if let (Some(ip), 1) = (known, answers) {
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        reply.extend_from_slice(&ip);
    }
    Some((name, reply))
}

/// A DNS server on `addr`, over UDP and TCP, answering from `records` (A
/// records; other names NXDOMAIN, other types of known names empty). The
/// names it was asked, in order.
pub(crate) fn serve_dns(
    addr: &str,
    records: &'static [(&'static str, [u8; 4])],
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let socket = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}/tcp: {e}"));
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&asked);
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            if let Some((name, reply)) = answer(records, &buf[..n]) {
                log.lock().unwrap().push(name);
                let _ = socket.send_to(&reply, peer);
            }
        }
    });
    let log = std::sync::Arc::clone(&asked);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let log = std::sync::Arc::clone(&log);
            std::thread::spawn(move || {
                let mut len = [0u8; 2];
                while stream.read_exact(&mut len).is_ok() {
                    let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if stream.read_exact(&mut query).is_err() {
                        break;
                    }
                    let Some((name, reply)) = answer(records, &query) else {
                        break;
                    };
                    log.lock().unwrap().push(format!("{name} (tcp)"));
                    let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&reply);
                    if stream.write_all(&framed).is_err() {
                        break;
                    }
                }
            });
        }
    });
    asked
}

/// Asks the DNS server at `server` for `name`'s A record.
pub(crate) fn dns_lookup(server: &str, name: &str) -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut query = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let server: SocketAddr = server.parse().unwrap();
    socket.send_to(&query, server).ok()?;
    let mut buf = [0u8; 1500];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    let reply = &buf[..n];
    if reply.get(7).copied()? == 0 {
        return None;
    }
    let ip = reply.get(n - 4..n)?;
    Some(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]))
}
