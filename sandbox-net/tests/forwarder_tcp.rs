#![allow(clippy::unwrap_used, clippy::expect_used)]
//! TCP through the forwarder: an HTTP-style GET, 100 MiB each way with a
//! checksum, 50 parallel connections, half-close, a server's reset, a
//! closed port refused quickly, and blocked destinations dropped by both
//! enforcement points — the forwarder alone included.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sandbox_policy::Policy;

/// Fails the test where it is not root: a root-only test is
/// `#[ignore = "needs root"]`, and run with `--include-ignored` as root.
fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root: run as root with --include-ignored, as CI does"
    );
}

fn serve(addr: &str, stop: Arc<AtomicBool>, handler: fn(TcpStream)) {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    std::thread::spawn(move || handler(s));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
}

fn http(mut s: TcpStream) {
    // Read the whole request head (it may come in several segments).
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let first = String::from_utf8_lossy(&request)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let _ = write!(s, "HTTP/1.0 200 OK\r\n\r\nyou asked: {first}");
}

/// Reads until EOF, hashing; answers the byte count and hash, then sends
/// the same amount of a pattern.
fn bulk(mut s: TcpStream) {
    let mut hash: u64 = 0xcbf29ce484222325;
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                for &b in &buf[..n] {
                    hash = (hash ^ u64::from(b)).wrapping_mul(0x100000001b3);
                }
                total += n as u64;
            }
        }
    }
    let _ = s.write_all(&total.to_be_bytes());
    let _ = s.write_all(&hash.to_be_bytes());
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(buf.len() as u64) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = ((sent as usize + i) % 251) as u8;
        }
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
        sent += n as u64;
    }
}

fn echo_until_eof(mut s: TcpStream) {
    let mut data = Vec::new();
    let _ = s.read_to_end(&mut data);
    let _ = s.write_all(&data);
}

fn reset(s: TcpStream) {
    // SO_LINGER 0: closing sends a reset.
    let _ = rustix::net::sockopt::set_socket_linger(&s, Some(Duration::ZERO));
    drop(s);
}

fn connect(target: &str, timeout_ms: u64) -> std::io::Result<TcpStream> {
    let addr: SocketAddr = target.parse().unwrap();
    let s = TcpStream::connect_timeout(&addr, Duration::from_millis(timeout_ms))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    Ok(s)
}

fn fnv(data: impl Iterator<Item = u8>) -> u64 {
    data.fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// Sends `total` bytes to the bulk server at `target`, checks its count
/// and hash, and reads and checks the `total` bytes it sends back.
fn bulk_round_trip(target: &str, total: usize) -> Result<String, String> {
    let started = Instant::now();
    let mut s = connect(target, 2000).map_err(|e| e.to_string())?;
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 256) as u8).collect();
    for _ in 0..total / chunk.len() {
        s.write_all(&chunk).map_err(|e| e.to_string())?;
    }
    s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    let mut header = [0u8; 16];
    s.read_exact(&mut header).map_err(|e| e.to_string())?;
    let count = u64::from_be_bytes(header[..8].try_into().unwrap());
    let hash = u64::from_be_bytes(header[8..].try_into().unwrap());
    let expected_hash = fnv((0..total / chunk.len()).flat_map(|_| chunk.iter().copied()));
    let mut back = Vec::with_capacity(total);
    s.read_to_end(&mut back).map_err(|e| e.to_string())?;
    let back_ok =
        back.len() == total && back.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8);
    let elapsed = started.elapsed();
    if count == total as u64 && hash == expected_hash && back_ok {
        Ok(format!(
            "{:.0} MiB/s each way",
            (total >> 20) as f64 / elapsed.as_secs_f64()
        ))
    } else {
        Err(format!(
            "count {count}, hash ok {}, back {} ok {back_ok}",
            hash == expected_hash,
            back.len()
        ))
    }
}

#[test]
#[ignore = "needs root"]
fn bulk_at_mtu_1500_through_the_offloads() {
    require_root();
    // At MTU 1500 the sandbox hands over 64 KiB TSO segments and gets 64
    // KiB GSO ones back, cut to its MSS by its kernel: the bytes must
    // still arrive whole and in order, each way.
    let network = Policy::from_toml_str(
        "[network]\nmode = \"allowlist\"\nallow = [\"198.18.1.1/32:9000/tcp\"]\n",
    )
    .unwrap()
    .network;
    let world = common::World::with_mtu(
        &["198.18.1.1"],
        |stop| serve("198.18.1.1:9000", stop, bulk),
        &network,
        None,
        1500,
    );
    let (mtu, result) = world.in_sandbox(|| {
        let mtu = sandbox_net::Rtnetlink::open()
            .unwrap()
            .link("tap0")
            .unwrap()
            .and_then(|l| l.mtu);
        (mtu, bulk_round_trip("198.18.1.1:9000", 32 << 20))
    });
    let counters = world.finish();
    println!("MTU {mtu:?}: {result:?}; {counters:?}");
    assert_eq!(mtu, Some(1500));
    assert!(result.is_ok(), "{result:?}");
    assert!(
        counters.frames_in < (64 << 20) / 1448,
        "segments larger than the MTU came in: {counters:?}"
    );
}

#[test]
#[ignore = "needs root"]
fn tcp_through_the_forwarder() {
    require_root();
    let network = Policy::from_toml_str(
        "[network]\nmode = \"allowlist\"\nallow = [\"198.18.1.1/32\", \"[2001:db8::1/128]:80/tcp\"]\n",
    )
    .unwrap()
    .network;
    let world = common::World::new(
        &["198.18.1.1", "198.18.2.2", "169.254.169.254", "2001:db8::1"],
        |stop| {
            serve("198.18.1.1:80", Arc::clone(&stop), http);
            serve("198.18.1.1:9000", Arc::clone(&stop), bulk);
            serve("198.18.1.1:83", Arc::clone(&stop), echo_until_eof);
            serve("198.18.1.1:82", Arc::clone(&stop), reset);
            serve("198.18.2.2:80", Arc::clone(&stop), http);
            serve("169.254.169.254:80", Arc::clone(&stop), http);
            serve("[2001:db8::1]:80", Arc::clone(&stop), http);
        },
        &network,
        None,
    );
    // Controls from the world itself: the servers answer there.
    world.in_world(|| {
        for target in ["198.18.1.1:80", "198.18.2.2:80", "169.254.169.254:80"] {
            let mut s = connect(target, 1000).unwrap();
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            let mut reply = String::new();
            s.read_to_string(&mut reply).unwrap();
            assert!(reply.starts_with("HTTP/1.0 200"), "control {target}");
        }
    });

    let report = world.in_sandbox(|| {
        let mut out = Vec::new();
        // A GET.
        let get = |target: &str| -> Result<String, String> {
            let mut s = connect(target, 2000).map_err(|e| e.to_string())?;
            s.write_all(b"GET /hello HTTP/1.0\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut reply = String::new();
            s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
            Ok(reply)
        };
        out.push(("get", get("198.18.1.1:80")));
        out.push(("get v6", get("[2001:db8::1]:80")));

        // 100 MiB each way, checksummed.
        out.push(("bulk", bulk_round_trip("198.18.1.1:9000", 100 << 20)));

        // 50 at once.
        let handles: Vec<_> = (0..50)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut s = connect("198.18.1.1:80", 5000)?;
                    write!(s, "GET /{i} HTTP/1.0\r\n\r\n")?;
                    let mut reply = String::new();
                    s.read_to_string(&mut reply)?;
                    if reply.contains(&format!("GET /{i} ")) {
                        Ok(true)
                    } else {
                        Err(std::io::Error::other(format!("request {i} got {reply:?}")))
                    }
                })
            })
            .collect();
        let results: Vec<Result<bool, String>> = handles
            .into_iter()
            .map(|h| h.join().unwrap().map_err(|e| e.to_string()))
            .collect();
        let parallel_ok = results.iter().filter(|r| matches!(r, Ok(true))).count();
        out.push((
            "parallel",
            if parallel_ok == 50 {
                Ok("50".into())
            } else {
                Err(format!(
                    "{parallel_ok}/50: {:?}",
                    results.iter().find(|r| !matches!(r, Ok(true)))
                ))
            },
        ));

        // Half-close: write, shut our side, read the echo to EOF.
        let half = (|| -> std::io::Result<Vec<u8>> {
            let mut s = connect("198.18.1.1:83", 2000)?;
            s.write_all(b"half-closed")?;
            s.shutdown(Shutdown::Write)?;
            let mut back = Vec::new();
            s.read_to_end(&mut back)?;
            Ok(back)
        })();
        out.push((
            "half-close",
            half.map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| e.to_string()),
        ));

        // The server resets.
        let rst = (|| -> std::io::Result<usize> {
            let mut s = connect("198.18.1.1:82", 2000)?;
            let mut buf = [0u8; 16];
            s.read(&mut buf)
        })();
        out.push((
            "server reset",
            match rst {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok("reset".into()),
                Ok(0) => Ok("eof".into()),
                other => Err(format!("{other:?}")),
            },
        ));

        // A closed port: refused, quickly.
        let t = Instant::now();
        let closed = connect("198.18.1.1:81", 3000);
        out.push((
            "closed port",
            match closed {
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionRefused
                        && t.elapsed() < Duration::from_secs(1) =>
                {
                    Ok(format!("refused in {:?}", t.elapsed()))
                }
                other => Err(format!("{other:?} after {:?}", t.elapsed())),
            },
        ));

        // Blocked by the ruleset.
        out.push(("other host", get("198.18.2.2:80")));
        out.push(("metadata", get("169.254.169.254:80")));
        // With the ruleset opened wide, the forwarder alone must hold.
        common::open_ruleset().install().unwrap();
        out.push(("other host, no ruleset", get("198.18.2.2:80")));
        out.push(("metadata, no ruleset", get("169.254.169.254:80")));
        out.push(("allowed, no ruleset", get("198.18.1.1:80")));
        out
    });
    let counters = world.finish();
    let get = |name: &str| report.iter().find(|(n, _)| *n == name).unwrap().1.clone();
    println!("{report:#?}\n{counters:#?}");
    assert!(get("get").unwrap().contains("you asked: GET /hello"));
    assert!(get("get v6").unwrap().contains("you asked: GET /hello"));
    assert!(get("bulk").is_ok(), "{:?}", get("bulk"));
    assert_eq!(get("parallel"), Ok("50".into()));
    assert_eq!(get("half-close"), Ok("half-closed".into()));
    assert!(get("server reset").is_ok(), "{:?}", get("server reset"));
    assert!(get("closed port").is_ok(), "{:?}", get("closed port"));
    // Refused at once (a reset), not left to time out, by the ruleset and
    // by the forwarder alone.
    let refused = |r: Result<String, String>| r.is_err_and(|e| e.contains("refused"));
    assert!(refused(get("other host")), "{:?}", get("other host"));
    assert!(refused(get("metadata")), "{:?}", get("metadata"));
    assert!(
        refused(get("other host, no ruleset")),
        "the forwarder alone holds: {:?}",
        get("other host, no ruleset")
    );
    assert!(
        refused(get("metadata, no ruleset")),
        "the forwarder alone holds: {:?}",
        get("metadata, no ruleset")
    );
    assert!(get("allowed, no ruleset").is_ok());
    assert!(
        counters.tcp_dropped >= 2 && counters.refused_metadata >= 1,
        "{counters:?}"
    );
    assert_eq!(counters.tcp.connect_failed, 1, "only the closed port");
    assert!(counters.tcp.bytes_out >= 100 << 20 && counters.tcp.bytes_in >= 100 << 20);
}
