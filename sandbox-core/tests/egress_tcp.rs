#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The forwarder's TCP as real clients see it (perl and curl, the host's
//! own): a slow upstream handshake, resets both ways, refused destinations
//! and the connection cap. Each is compared with the same client run in
//! the test's world namespace, outside the sandbox. Servers live on the
//! world's loopback; nothing leaves namespaces the test made. Needs root,
//! as in CI.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sandbox_core::Sandbox;

mod common;
use common::world::*;
use common::*;

/// perl: connects to `$ARGV[0]:$ARGV[1]` and reads a line; prints
/// `connected after S s: LINE` or `failed after S s: ERROR`.
const PERL_CONNECT: &str = r#"use Socket; use Time::HiRes qw(time);
my $t = time;
socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!\n";
if (connect($s, sockaddr_in($ARGV[1], inet_aton($ARGV[0])))) {
  my $line = <$s>; printf "connected after %.1f s: %s", time - $t, $line;
} else { printf "failed after %.1f s: %s\n", time - $t, $! }"#;

/// perl: an upload aborted with a reset (`SO_LINGER` 0 then close) after
/// 1,000 bytes.
const PERL_ABORT: &str = r#"use Socket;
socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!\n";
connect($s, sockaddr_in($ARGV[1], inet_aton($ARGV[0]))) or die "connect: $!\n";
syswrite($s, "x" x 1000) == 1000 or die "write: $!\n";
select(undef, undef, undef, 0.3);
setsockopt($s, SOL_SOCKET, SO_LINGER, pack("ii", 1, 0)) or die "linger: $!\n";
close($s); print "aborted\n";"#;

/// perl: reads until the end; prints `eof after N bytes` or `reset after
/// N bytes: ERROR`.
const PERL_READ_ALL: &str = r#"use Socket;
socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!\n";
connect($s, sockaddr_in($ARGV[1], inet_aton($ARGV[0]))) or die "connect: $!\n";
my $got = 0;
while (1) {
  my $n = sysread($s, my $buf, 4096);
  if (!defined $n) { print "reset after $got bytes: $!\n"; last }
  if ($n == 0) { print "eof after $got bytes\n"; last }
  $got += $n;
}"#;

/// perl: opens `$ARGV[2]` connections to `$ARGV[0]:$ARGV[1]` and holds
/// them; prints each one's outcome (`ok` or the error) and how long the
/// last took.
const PERL_MANY: &str = r#"use Socket; use Time::HiRes qw(time);
my @held; my @out; my $t;
for my $i (1..$ARGV[2]) {
  socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!\n";
  $t = time;
  push @out, connect($s, sockaddr_in($ARGV[1], inet_aton($ARGV[0]))) ? "ok" : "$!";
  push @held, $s;
}
printf "%s (last in %.1f s)\n", join(", ", @out), time - $t;"#;

fn perl_here(script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("perl")
        .arg("-e")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string() + &String::from_utf8_lossy(&out.stderr)
}

fn perl_inside(sb: &Sandbox, script: &str, args: &[&str]) -> (String, sandbox_core::EgressStats) {
    let out = sb
        .command("perl")
        .arg("-e")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string()
        + &String::from_utf8_lossy(&out.stderr);
    (text, out.egress.expect("the forwarder's figures"))
}

/// "connected after 3.1 s: …" → 3.1.
fn seconds(text: &str) -> f64 {
    text.split(" after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no time in {text:?}"))
}

/// A listener on `addr` that answers no SYN for `hold`: the world's own
/// ruleset drops them until then (what a client sees of a slow or lossy
/// host), whatever the machine's speed. Then it greets each connection
/// with `hello`.
fn slow_listener(addr: &str, hold: Duration) {
    use sandbox_net::{Match, RuleSpec, Ruleset, Verdict};
    let sockaddr: std::net::SocketAddr = addr.parse().unwrap();
    fn rule(matches: Match, verdict: Verdict) -> RuleSpec {
        RuleSpec { matches, verdict }
    }
    let open = |input: Vec<RuleSpec>| Ruleset {
        output: vec![rule(Match::Any, Verdict::Accept)],
        input,
        sets: Vec::new(),
        cidr_sets: Vec::new(),
    };
    let port = sandbox_policy::PortRange::new(sockaddr.port(), sockaddr.port()).unwrap();
    open(vec![
        rule(
            Match::Destination {
                net: sandbox_policy::IpNet::new(sockaddr.ip(), 32).unwrap(),
                protocol: Some(sandbox_policy::Protocol::Tcp),
                ports: Some(port),
            },
            Verdict::Drop,
        ),
        rule(Match::Any, Verdict::Accept),
    ])
    .install()
    .unwrap();
    let listener = TcpListener::bind(addr).unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(hold);
        open(vec![rule(Match::Any, Verdict::Accept)])
            .install()
            .unwrap();
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(b"hello\n");
        }
    });
}

fn allowlist(extra: &str) -> Sandbox {
    sandbox(&format!(
        "[network]\nmode = \"allowlist\"\nallow = [\"198.18.1.1/32\"]\n{extra}"
    ))
}

/// A host that takes 3 s to complete the handshake (its first two SYNs
/// dropped): the sandbox's client connects late, as the client outside
/// does, where the forwarder used to answer the sandbox's retransmitted
/// SYN (at 1 s, before the host side had connected) with a reset.
#[test]
#[ignore = "needs root"]
fn a_slow_upstream_handshake_completes_late_inside_as_outside() {
    common::require_root();
    std::thread::spawn(|| {
        enter_world(&["198.18.1.1"]);
        slow_listener("198.18.1.1:7000", Duration::from_millis(2500));
        let control = perl_here(PERL_CONNECT, &["198.18.1.1", "7000"]);
        assert!(control.starts_with("connected after"), "control: {control}");
        assert!(
            seconds(&control) >= 2.0,
            "control: the host was slow: {control}"
        );
        slow_listener("198.18.1.1:7001", Duration::from_millis(2500));
        let (inside, egress) = perl_inside(&allowlist(""), PERL_CONNECT, &["198.18.1.1", "7001"]);
        assert!(
            inside.starts_with("connected after") && inside.ends_with(": hello"),
            "inside: {inside}; outside: {control}; {egress}"
        );
        assert!(seconds(&inside) >= 2.0, "inside: {inside}");
        assert_eq!(egress.tcp_connections, 1, "{egress}");
        assert_eq!(egress.tcp_connect_failed, 0, "{egress}");
    })
    .join()
    .unwrap();
}

/// How a server saw a connection end.
fn serve_reads(addr: &str) -> mpsc::Receiver<String> {
    let listener = TcpListener::bind(addr).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut got = 0;
            let mut buf = [0u8; 4096];
            let end = loop {
                match stream.read(&mut buf) {
                    Ok(0) => break format!("eof after {got} bytes"),
                    Ok(n) => got += n,
                    Err(e) => break format!("{:?} after {got} bytes", e.kind()),
                }
            };
            let _ = tx.send(end);
        }
    });
    rx
}

/// A server that sends `partial\n` and then resets the connection.
fn serve_reset(addr: &str) {
    let listener = TcpListener::bind(addr).unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(b"partial\n");
            std::thread::sleep(Duration::from_millis(300));
            rustix::net::sockopt::set_socket_linger(stream.as_fd(), Some(Duration::ZERO)).unwrap();
        }
    });
}

/// An aborted upload reaches the server as a reset, not as a clean end;
/// and a server's reset reaches the sandbox's client as a reset.
#[test]
#[ignore = "needs root"]
fn a_reset_travels_as_a_reset_both_ways() {
    common::require_root();
    std::thread::spawn(|| {
        enter_world(&["198.18.1.1"]);
        let ends = serve_reads("198.18.1.1:7002");
        serve_reset("198.18.1.1:7003");
        let wait = |ends: &mpsc::Receiver<String>| ends.recv_timeout(Duration::from_secs(10));
        // Controls, outside.
        assert_eq!(perl_here(PERL_ABORT, &["198.18.1.1", "7002"]), "aborted");
        assert_eq!(
            wait(&ends).as_deref(),
            Ok("ConnectionReset after 1000 bytes")
        );
        let control = perl_here(PERL_READ_ALL, &["198.18.1.1", "7003"]);
        assert_eq!(
            control, "reset after 8 bytes: Connection reset by peer",
            "control"
        );
        // Inside.
        let sb = allowlist("");
        let (aborted, egress) = perl_inside(&sb, PERL_ABORT, &["198.18.1.1", "7002"]);
        assert_eq!(aborted, "aborted");
        assert_eq!(
            wait(&ends).as_deref(),
            Ok("ConnectionReset after 1000 bytes"),
            "the server saw the sandbox's reset; {egress}"
        );
        assert_eq!(egress.tcp_resets_from_sandbox, 1, "{egress}");
        let (read, _) = perl_inside(&sb, PERL_READ_ALL, &["198.18.1.1", "7003"]);
        assert_eq!(read, control, "the sandbox saw the server's reset");
    })
    .join()
    .unwrap();
}

/// A destination the policy refuses fails at once with a reset (curl's
/// "Connection refused"), where it used to hang for the whole connect
/// timeout; the control reaches the same servers with the rule loosened.
#[test]
#[ignore = "needs root"]
fn refused_destinations_fail_at_once() {
    common::require_root();
    std::thread::spawn(|| {
        enter_world(&["198.18.1.1", "198.18.1.13", "198.18.2.2", "169.254.169.254"]);
        for addr in ["198.18.1.13:80", "198.18.2.2:80", "169.254.169.254:80"] {
            serve_http(addr, "reached\n");
        }
        let curl = "for h in 198.18.1.13 198.18.2.2 169.254.169.254; do \
                    out=$(curl -sS --connect-timeout 5 http://$h/ 2>&1); echo \"$h: $out\"; done";
        let refused = sandbox(
            "[network]\nmode = \"allowlist\"\nallow = [\"198.18.1.0/24:80\"]\ndeny = [\"198.18.1.13/32\"]\n",
        );
        let out = refused.command("sh").args(["-c", curl]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // The kernel refused them (the forwarder never saw them), and the
        // outcome says so, each with its reason.
        let egress = out.egress.clone().expect("the forwarder's figures");
        for (reason, addr) in [
            ("denied", "198.18.1.13"),
            ("not-allowed", "198.18.2.2"),
            ("metadata", "169.254.169.254"),
        ] {
            assert!(
                egress.refusals.iter().any(|r| r.kernel
                    && r.reason == reason
                    && r.addr.as_deref() == Some(addr)
                    && r.port == Some(80)
                    && r.protocol == "tcp"),
                "{reason} {addr}: {egress}\n{:#?}",
                egress.refusals
            );
        }
        assert_eq!(egress.refused, 0, "the forwarder saw none: {egress}");
        // How long the connect took, as curl measured it ("after N ms"):
        // not curl's start-up, which under emulation takes seconds.
        for line in text.lines() {
            let ms: u64 = line
                .split(" after ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|ms| ms.parse().ok())
                .unwrap_or_else(|| panic!("{text}"));
            assert!(
                line.contains("Connection refused") || line.contains("Couldn't connect"),
                "{text}"
            );
            assert!(ms < 2000, "refused at once, not after a timeout: {text}");
        }
        assert_eq!(text.lines().count(), 3, "{text}");
        // Control: allowed, all three answer.
        let open = sandbox(
            "[network]\nmode = \"allowlist\"\nallow_metadata = true\nallow = [\"198.18.0.0/15:80\", \"169.254.169.254/32:80\"]\n",
        );
        let out = open.command("sh").args(["-c", curl]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(text.matches(": reached").count(), 3, "control: {text}");
    })
    .join()
    .unwrap();
}

/// Past `network.limits.tcp_connections` a connect is refused with a reset
/// at once, and the outcome counts it; the control (a cap one higher)
/// holds them all.
#[test]
#[ignore = "needs root"]
fn connections_over_the_cap_are_refused_and_counted() {
    common::require_root();
    std::thread::spawn(|| {
        enter_world(&["198.18.1.1"]);
        let listener = TcpListener::bind("198.18.1.1:7004").unwrap();
        std::thread::spawn(move || {
            let held: Vec<TcpStream> = listener.incoming().flatten().collect();
            drop(held);
        });
        let args = ["198.18.1.1", "7004", "5"];
        let started = Instant::now();
        let (capped, egress) = perl_inside(
            &allowlist("[network.limits]\ntcp_connections = 4\n"),
            PERL_MANY,
            &args,
        );
        assert!(
            capped.starts_with("ok, ok, ok, ok, Connection refused (last in 0."),
            "{capped}; {egress}"
        );
        assert_eq!(egress.over_limit, 1, "{egress}");
        assert!(started.elapsed() < Duration::from_secs(20));
        let (control, egress) = perl_inside(
            &allowlist("[network.limits]\ntcp_connections = 5\n"),
            PERL_MANY,
            &args,
        );
        assert!(control.starts_with("ok, ok, ok, ok, ok "), "{control}");
        assert_eq!(egress.over_limit, 0, "{egress}");
        assert_eq!(egress.tcp_connections, 5, "{egress}");
    })
    .join()
    .unwrap();
}
