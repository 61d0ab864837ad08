//! Egress by name, what it costs: (1) a DNS lookup through the gateway
//! with `dns = "allowed-names"` (the query judged, the answer parsed and
//! its address pinned in the forwarder and the kernel's set) against
//! `dns = "any"` (relayed as it is), per query; (2) a bulk HTTP download
//! by name (a pinned flow: its first bytes read, then relayed) against the
//! same by address (an address rule), in MB/s. Interleaved rounds, in a
//! network namespace this benchmark makes (a web server and a resolver on
//! 198.18.1.1): nothing is sent outside it.
//!
//! `cargo xtask bench names` runs this as root; `NAMES_ROUNDS` (5) sets
//! the rounds.

use std::io::{Read, Write};
use std::net::TcpListener;

use sandbox_core::Sandbox;
use sandbox_net::{Link, LinkChange, Requests, Rtnetlink};
use sandbox_policy::Policy;

const LOOKUPS: u32 = 500;
const BULK_BYTES: usize = 512 << 20;

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("names bench: {what}: {e}");
    std::process::exit(1)
}

/// This thread's own network namespace: 198.18.1.1 on loopback, a web
/// server sending `BULK_BYTES` to each request, and a resolver that
/// answers `bulk.test` (TTL 600) with 198.18.1.1.
fn make_world() {
    sandbox_net::unshare_network_namespace().unwrap_or_else(|e| fail("unshare", e));
    let rtnl = Rtnetlink::open().unwrap_or_else(|e| fail("rtnetlink", e));
    let mut r = Requests::new();
    r.set_link(
        Link::Name("lo"),
        LinkChange {
            up: Some(true),
            ..Default::default()
        },
    )
    .and_then(|r| r.add_address(Link::Index(1), [198, 18, 1, 1].into(), 32))
    .unwrap_or_else(|e| fail("requests", e));
    rtnl.execute(&r).unwrap_or_else(|e| fail("world", e));
    let web = TcpListener::bind("198.18.1.1:80").unwrap_or_else(|e| fail("bind 80", e));
    std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        for mut stream in web.incoming().flatten() {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Length: {BULK_BYTES}\r\n\r\n"
            );
            for _ in 0..BULK_BYTES / chunk.len() {
                if stream.write_all(&chunk).is_err() {
                    break;
                }
            }
        }
    });
    benches::dns::serve_a(([198, 18, 1, 1], 53).into(), [198, 18, 1, 1].into())
        .unwrap_or_else(|e| fail("bind 53", e));
}

/// perl: `$ARGV[0]` lookups of bulk.test through the gateway, one socket
/// each; prints microseconds per lookup.
const PERL_LOOKUPS: &str = r#"use Socket; use Time::HiRes qw(time);
my $q = pack("n n n n n n", 0, 0x0100, 1, 0, 0, 0) . "\x04bulk\x04test\x00" . pack("n n", 1, 1);
my $t = time; my $ok = 0;
for my $i (1..$ARGV[0]) {
  socket(my $s, PF_INET, SOCK_DGRAM, 0) or die; connect($s, sockaddr_in(53, inet_aton("10.0.2.2"))) or die;
  substr($q, 0, 2) = pack("n", $i); send($s, $q, 0);
  my $rin = ''; vec($rin, fileno($s), 1) = 1;
  if (select(my $r = $rin, undef, undef, 1)) { recv($s, my $b, 1500, 0); $ok++ }
}
printf "%.1f %d\n", (time - $t) * 1e6 / $ARGV[0], $ok;"#;

fn sandbox(network: &str) -> Sandbox {
    let policy = Policy::from_toml_str(&format!(
        "[resources]\nwall_time = \"120s\"\ncpu_time = \"120s\"\n[network]\nmode = \"allowlist\"\n{network}"
    ))
    .unwrap_or_else(|e| fail("policy", e));
    Sandbox::new(policy)
        .unwrap_or_else(|e| fail("sandbox", e))
        .with_dns_upstream("198.18.1.1:53".parse().unwrap_or_else(|e| fail("addr", e)))
}

fn run(sb: &Sandbox, program: &str, args: &[&str]) -> String {
    let out = sb
        .command(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| fail(program, e));
    if !out.success() {
        fail(
            &format!("{program} {args:?}"),
            format!(
                "{}; {}; {:?}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                out.egress
            ),
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let rounds: usize = std::env::var("NAMES_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let rows = std::thread::spawn(move || {
        make_world();
        let names = sandbox("allow = [\"bulk.test:80/tcp\"]\n");
        let any = sandbox("dns = \"any\"\nallow = [\"198.18.1.1/32:80/tcp\"]\n");
        let (mut screened, mut relayed) = (Vec::new(), Vec::new());
        let (mut by_name, mut by_address) = (Vec::new(), Vec::new());
        let lookups = LOOKUPS.to_string();
        let curl = |sb: &Sandbox, url: &str| -> f64 {
            let out = run(
                sb,
                "curl",
                &[
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-H",
                    "Host: bulk.test",
                    "-w",
                    "%{speed_download}",
                    url,
                ],
            );
            out.parse::<f64>()
                .unwrap_or_else(|e| fail(&format!("curl said {out:?}"), e))
                / 1e6
        };
        let perl = |sb: &Sandbox| -> f64 {
            let out = run(sb, "perl", &["-e", PERL_LOOKUPS, &lookups]);
            let mut words = out.split_whitespace();
            let us: f64 = words
                .next()
                .and_then(|w| w.parse().ok())
                .unwrap_or(f64::NAN);
            let ok: u32 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            if ok != LOOKUPS {
                fail("lookups", format!("{ok} of {LOOKUPS} answered"));
            }
            us
        };
        for round in 0..rounds {
            if round % 2 == 0 {
                screened.push(perl(&names));
                relayed.push(perl(&any));
                by_name.push(curl(&names, "http://bulk.test/"));
                by_address.push(curl(&any, "http://198.18.1.1/"));
            } else {
                relayed.push(perl(&any));
                screened.push(perl(&names));
                by_address.push(curl(&any, "http://198.18.1.1/"));
                by_name.push(curl(&names, "http://bulk.test/"));
            }
        }
        [
            median(&mut screened),
            median(&mut relayed),
            median(&mut by_name),
            median(&mut by_address),
        ]
    })
    .join()
    .unwrap_or_else(|_| fail("the benchmark thread", "panicked"));
    let [screened, relayed, by_name, by_address] = rows;
    println!("\negress by name, {rounds} interleaved rounds (medians)\n");
    println!("| measure | by name | by address / relayed | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| DNS lookup through the gateway, µs ({LOOKUPS} a round) | {screened:.1} (judged, pinned) | {relayed:.1} (relayed) | {:.2}x |",
        screened / relayed
    );
    println!(
        "| HTTP download of {} MiB, MB/s | {by_name:.0} (pinned, Host checked) | {by_address:.0} (address rule) | {:.3}x |",
        BULK_BYTES >> 20,
        by_name / by_address
    );
    println!("\n(target: the pinned flow within 5 % of the address rule's throughput)");
}
